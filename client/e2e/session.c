/* session.c -- pairwise sessions: X3DH to start, then the Double Ratchet
 * (Signal's specification: a DH ratchet step whenever the peer's ratchet
 * key changes, symmetric chains per direction, skipped message keys kept
 * for messages that arrive late).
 *
 * Message:        0x02 | DH ratchet pub (32) | PN (u32) | N (u32) | AEAD
 * First messages: 0x01 | initiator identity (32) | ephemeral (32) |
 *                 signed pre-key id (u32) | one-time pre-key id (u32) |
 *                 has one-time key (u8) | message as above
 * AEAD associated data: initiator identity || responder identity || the
 * 41-byte header (0x02 .. N), so a header cannot be changed or a message
 * moved to another pair of devices.
 *
 * Bounds: one message may make us skip at most E2E_MAX_SKIP keys in a chain
 * (refused otherwise, nothing changes); a session keeps at most
 * E2E_MAX_SKIPPED_KEPT skipped keys and drops the oldest beyond that (its
 * message can then no longer be read and is reported as too old). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bytes.h"
#include "e2e_internal.h"

enum {
    HEADER_LEN = 1 + 32 + 4 + 4,
    PREKEY_PREFIX_LEN = 1 + 32 + 32 + 4 + 4 + 1,
    AD_LEN = 64,
};

typedef struct skipped_key {
    uint8_t dh[32];
    uint32_t n;
    uint8_t mk[32];
} skipped_key;

struct e2e_session {
    uint8_t ad[AD_LEN];              /* initiator identity || responder identity */
    uint8_t peer_identity[32];
    uint8_t rk[32];
    uint8_t dhs_pk[32], dhs_sk[32];  /* our ratchet key pair */
    uint8_t dhr[32], prev_dhr[32];   /* the peer's current and previous ratchet key */
    uint8_t cks[32], ckr[32];
    bool have_dhr, have_prev_dhr, have_cks, have_ckr;
    uint32_t ns, nr, pn;
    /* the X3DH it came from: sent with every message until the peer
     * answers (pending), and recognised in a repeated first message */
    bool initiator, pending, has_otk;
    uint8_t base_ek[32];
    uint32_t spk_id, otk_id;
    size_t n_skipped;                /* oldest first */
    skipped_key skipped[E2E_MAX_SKIPPED_KEPT];
};

static void session_wipe_free(e2e_session *s) {
    if (!s) return;
    sodium_memzero(s, sizeof *s);
    free(s);
}

void e2e_session_free(e2e_session *s) { session_wipe_free(s); }
const uint8_t *e2e_session_peer_identity(const e2e_session *s) { return s->peer_identity; }
size_t e2e_session_skipped_count(const e2e_session *s) { return s->n_skipped; }

/* ------------------------------------------------------------- starting */

int e2e_session_initiate(e2e_session **out, const e2e_identity *me, const e2e_bundle *peer) {
    *out = NULL;
    e2e_session *s = calloc(1, sizeof *s);
    if (!s) return E2E_ERR_NOMEM;
    uint8_t ek_sk[32], sk[32], dh[32];
    e2e_dh_keypair(s->base_ek, ek_sk);
    int r = e2e_x3dh_initiate(me, ek_sk, peer, sk);
    sodium_memzero(ek_sk, sizeof ek_sk);
    if (r != E2E_OK) {
        session_wipe_free(s);
        return r;
    }
    memcpy(s->ad, me->pk, 32);
    memcpy(s->ad + 32, peer->identity, 32);
    memcpy(s->peer_identity, peer->identity, 32);
    /* the peer's signed pre-key is its first ratchet key */
    memcpy(s->dhr, peer->spk, 32);
    s->have_dhr = true;
    e2e_dh_keypair(s->dhs_pk, s->dhs_sk);
    if (e2e_dh(dh, s->dhs_sk, s->dhr) != 0) {
        sodium_memzero(sk, sizeof sk);
        session_wipe_free(s);
        return E2E_ERR_BAD_BUNDLE;
    }
    e2e_kdf_rk(s->rk, s->cks, sk, dh);
    s->have_cks = true;
    s->initiator = s->pending = true;
    s->spk_id = peer->spk_id;
    s->has_otk = peer->has_otk;
    s->otk_id = peer->has_otk ? peer->otk_id : 0;
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(dh, sizeof dh);
    *out = s;
    return E2E_OK;
}

int e2e_message_prekey_info(const uint8_t *msg, size_t len, e2e_prekey_info *info) {
    memset(info, 0, sizeof *info);
    if (len < 1) return E2E_ERR_MALFORMED;
    if (msg[0] == E2E_TYPE_MESSAGE) return len >= HEADER_LEN + E2E_AEAD_TAG ? 0 : E2E_ERR_MALFORMED;
    if (msg[0] != E2E_TYPE_PREKEY_MESSAGE || len < PREKEY_PREFIX_LEN + HEADER_LEN + E2E_AEAD_TAG)
        return E2E_ERR_MALFORMED;
    e2e_reader r = {msg + 1, len - 1, false};
    rd_bytes(&r, info->identity, 32);
    rd_bytes(&r, info->ek, 32);
    info->spk_id = rd_u32(&r);
    info->otk_id = rd_u32(&r);
    uint8_t has = rd_u8(&r);
    if (r.bad || has > 1 || msg[PREKEY_PREFIX_LEN] != E2E_TYPE_MESSAGE) return E2E_ERR_MALFORMED;
    info->has_otk = has == 1;
    if (!info->has_otk && info->otk_id != 0) return E2E_ERR_MALFORMED;
    return 1;
}

bool e2e_session_from_prekey(const e2e_session *s, const e2e_prekey_info *info) {
    /* every field: a header that differs in any byte is not this session's */
    return !s->initiator && sodium_memcmp(s->base_ek, info->ek, 32) == 0 &&
           sodium_memcmp(s->peer_identity, info->identity, 32) == 0 && s->spk_id == info->spk_id &&
           s->has_otk == info->has_otk && s->otk_id == info->otk_id;
}

/* ------------------------------------------------------------ the ratchet */

static void remember_skipped(e2e_session *s, uint32_t n, const uint8_t mk[32]) {
    if (s->n_skipped == E2E_MAX_SKIPPED_KEPT) {   /* full: the oldest goes */
        sodium_memzero(&s->skipped[0], sizeof s->skipped[0]);
        memmove(&s->skipped[0], &s->skipped[1], (s->n_skipped - 1) * sizeof s->skipped[0]);
        s->n_skipped--;
    }
    skipped_key *k = &s->skipped[s->n_skipped++];
    memcpy(k->dh, s->dhr, 32);
    k->n = n;
    memcpy(k->mk, mk, 32);
}

/* Keys of the receiving chain up to (not including) message `until`. */
static int skip_until(e2e_session *s, uint32_t until) {
    if (!s->have_ckr || until <= s->nr) return E2E_OK;
    if (until - s->nr > E2E_MAX_SKIP) return E2E_ERR_TOO_FAR;
    uint8_t mk[32];
    while (s->nr < until) {
        e2e_kdf_ck(s->ckr, mk);
        remember_skipped(s, s->nr, mk);
        s->nr++;
    }
    sodium_memzero(mk, sizeof mk);
    return E2E_OK;
}

static int dh_ratchet(e2e_session *s, const uint8_t peer_dh[32]) {
    uint8_t dh[32];
    s->pn = s->ns;
    s->ns = s->nr = 0;
    if (s->have_dhr) {
        memcpy(s->prev_dhr, s->dhr, 32);
        s->have_prev_dhr = true;
    }
    memcpy(s->dhr, peer_dh, 32);
    s->have_dhr = true;
    if (e2e_dh(dh, s->dhs_sk, s->dhr) != 0) return E2E_ERR_AUTH;
    e2e_kdf_rk(s->rk, s->ckr, s->rk, dh);
    s->have_ckr = true;
    e2e_dh_keypair(s->dhs_pk, s->dhs_sk);
    if (e2e_dh(dh, s->dhs_sk, s->dhr) != 0) return E2E_ERR_AUTH;
    e2e_kdf_rk(s->rk, s->cks, s->rk, dh);
    s->have_cks = true;
    sodium_memzero(dh, sizeof dh);
    return E2E_OK;
}

static int open_with(const e2e_session *s, const uint8_t mk[32], const uint8_t *header, const uint8_t *ct,
                     size_t ct_len, uint8_t *pt) {
    uint8_t ad[AD_LEN + HEADER_LEN];
    memcpy(ad, s->ad, AD_LEN);
    memcpy(ad + AD_LEN, header, HEADER_LEN);
    return e2e_open(pt, ct, ct_len, ad, sizeof ad, mk, E2E_INFO_MESSAGE);
}

/* Decrypts one 0x02 message into pt, changing s (a scratch copy). */
static int decrypt_step(e2e_session *s, const uint8_t *msg, size_t len, uint8_t *pt) {
    const uint8_t *header = msg, *dh = msg + 1, *ct = msg + HEADER_LEN;
    size_t ct_len = len - HEADER_LEN;
    uint32_t pn = e2e_get32(msg + 33), n = e2e_get32(msg + 37);
    for (size_t i = 0; i < s->n_skipped; i++) {
        skipped_key *k = &s->skipped[i];
        if (k->n != n || sodium_memcmp(k->dh, dh, 32) != 0) continue;
        int r = open_with(s, k->mk, header, ct, ct_len, pt);
        if (r != E2E_OK) return r;
        sodium_memzero(k, sizeof *k);
        memmove(k, k + 1, (s->n_skipped - i - 1) * sizeof *k);
        s->n_skipped--;
        return E2E_OK;
    }
    bool current = s->have_dhr && sodium_memcmp(dh, s->dhr, 32) == 0;
    if (current && n < s->nr) return E2E_ERR_REPLAY;
    if (!current && s->have_prev_dhr && sodium_memcmp(dh, s->prev_dhr, 32) == 0) return E2E_ERR_REPLAY;
    int r;
    if (!current) {
        if ((r = skip_until(s, pn)) != E2E_OK) return r;
        if ((r = dh_ratchet(s, dh)) != E2E_OK) return r;
    }
    if ((r = skip_until(s, n)) != E2E_OK) return r;
    uint8_t mk[32];
    e2e_kdf_ck(s->ckr, mk);
    s->nr++;
    r = open_with(s, mk, header, ct, ct_len, pt);
    sodium_memzero(mk, sizeof mk);
    return r;
}

/* Runs decrypt_step on a copy of s and keeps the copy only if it worked:
 * a forged, replayed or tampered message changes nothing. */
static int decrypt_message(e2e_session *s, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len) {
    *pt = NULL;
    *pt_len = 0;
    if (len < HEADER_LEN + E2E_AEAD_TAG || msg[0] != E2E_TYPE_MESSAGE) return E2E_ERR_MALFORMED;
    size_t n = len - HEADER_LEN - E2E_AEAD_TAG;
    if (n > E2E_MAX_PLAINTEXT) return E2E_ERR_TOO_LARGE;
    e2e_session *scratch = malloc(sizeof *scratch);
    uint8_t *out = malloc(n ? n : 1);
    if (!scratch || !out) {
        free(scratch);
        free(out);
        return E2E_ERR_NOMEM;
    }
    memcpy(scratch, s, sizeof *s);
    int r = decrypt_step(scratch, msg, len, out);
    if (r == E2E_OK) {
        scratch->pending = false;   /* the peer has the session: no more X3DH headers */
        memcpy(s, scratch, sizeof *s);
        *pt = out;
        *pt_len = n;
    } else {
        sodium_memzero(out, n);
        free(out);
    }
    session_wipe_free(scratch);
    return r;
}

int e2e_session_decrypt(e2e_session *s, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len) {
    e2e_prekey_info info;
    int kind = e2e_message_prekey_info(msg, len, &info);
    if (kind < 0) return kind;
    if (kind == 1) {
        /* a first message: ours only if it is a repeat of the one this session came from */
        if (!e2e_session_from_prekey(s, &info)) return E2E_ERR_WRONG_KEY;
        msg += PREKEY_PREFIX_LEN;
        len -= PREKEY_PREFIX_LEN;
    }
    return decrypt_message(s, msg, len, pt, pt_len);
}

int e2e_session_accept(e2e_session **out, const e2e_identity *me, const e2e_prekey *spk, const e2e_prekey *otk,
                       const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len) {
    *out = NULL;
    e2e_prekey_info info;
    int kind = e2e_message_prekey_info(msg, len, &info);
    if (kind < 0) return kind;
    if (kind != 1 || info.spk_id != spk->id || info.has_otk != (otk != NULL) || (otk && otk->id != info.otk_id))
        return E2E_ERR_WRONG_KEY;
    e2e_session *s = calloc(1, sizeof *s);
    if (!s) return E2E_ERR_NOMEM;
    int r = e2e_x3dh_respond(me, spk, otk, info.identity, info.ek, s->rk);
    if (r != E2E_OK) {
        session_wipe_free(s);
        return r;
    }
    memcpy(s->ad, info.identity, 32);
    memcpy(s->ad + 32, me->pk, 32);
    memcpy(s->peer_identity, info.identity, 32);
    memcpy(s->dhs_pk, spk->pk, 32);   /* our signed pre-key is our first ratchet key */
    memcpy(s->dhs_sk, spk->sk, 32);
    memcpy(s->base_ek, info.ek, 32);
    s->spk_id = info.spk_id;
    s->has_otk = info.has_otk;
    s->otk_id = info.otk_id;
    r = decrypt_message(s, msg + PREKEY_PREFIX_LEN, len - PREKEY_PREFIX_LEN, pt, pt_len);
    if (r != E2E_OK) {
        session_wipe_free(s);
        return r;
    }
    *out = s;
    return E2E_OK;
}

int e2e_session_encrypt(e2e_session *s, const uint8_t *pt, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len > E2E_MAX_PLAINTEXT) return E2E_ERR_TOO_LARGE;
    if (!s->have_cks) return E2E_ERR_WRONG_KEY;
    size_t prefix = s->pending ? PREKEY_PREFIX_LEN : 0;
    size_t total = prefix + HEADER_LEN + len + E2E_AEAD_TAG;
    uint8_t *m = malloc(total);
    if (!m) return E2E_ERR_NOMEM;
    e2e_writer w = {m, 0, total, false};
    if (s->pending) {
        wr_u8(&w, E2E_TYPE_PREKEY_MESSAGE);
        wr_bytes(&w, s->ad, 32);          /* our identity: we initiated */
        wr_bytes(&w, s->base_ek, 32);
        wr_u32(&w, s->spk_id);
        wr_u32(&w, s->otk_id);
        wr_u8(&w, s->has_otk ? 1 : 0);
    }
    uint8_t *header = m + w.len;
    wr_u8(&w, E2E_TYPE_MESSAGE);
    wr_bytes(&w, s->dhs_pk, 32);
    wr_u32(&w, s->pn);
    wr_u32(&w, s->ns);
    uint8_t mk[32], ad[AD_LEN + HEADER_LEN];
    e2e_kdf_ck(s->cks, mk);
    s->ns++;
    memcpy(ad, s->ad, AD_LEN);
    memcpy(ad + AD_LEN, header, HEADER_LEN);
    e2e_seal(m + w.len, pt, len, ad, sizeof ad, mk, E2E_INFO_MESSAGE);
    sodium_memzero(mk, sizeof mk);
    *out = m;
    *out_len = total;
    return E2E_OK;
}

/* ------------------------------------------------------------ persisting */

enum {
    F_HAVE_DHR = 1, F_HAVE_PREV_DHR = 2, F_HAVE_CKS = 4, F_HAVE_CKR = 8,
    F_HAS_OTK = 16, F_PENDING = 32, F_INITIATOR = 64,
    STATE_FIXED = 2 + AD_LEN + 32 * 8 + 1 + 4 * 3 + 32 + 4 * 2 + 4,
    SKIPPED_LEN = 32 + 4 + 32,
};

int e2e_session_save(const e2e_session *s, uint8_t **out, size_t *out_len) {
    size_t cap = STATE_FIXED + s->n_skipped * SKIPPED_LEN;
    uint8_t *b = malloc(cap);
    if (!b) return E2E_ERR_NOMEM;
    e2e_writer w = {b, 0, cap, false};
    wr_u8(&w, E2E_TYPE_SESSION_STATE);
    wr_u8(&w, E2E_VERSION);
    wr_bytes(&w, s->ad, AD_LEN);
    wr_bytes(&w, s->peer_identity, 32);
    wr_bytes(&w, s->rk, 32);
    wr_bytes(&w, s->dhs_pk, 32);
    wr_bytes(&w, s->dhs_sk, 32);
    wr_bytes(&w, s->dhr, 32);
    wr_bytes(&w, s->prev_dhr, 32);
    wr_bytes(&w, s->cks, 32);
    wr_bytes(&w, s->ckr, 32);
    wr_u8(&w, (uint8_t)((s->have_dhr ? F_HAVE_DHR : 0) | (s->have_prev_dhr ? F_HAVE_PREV_DHR : 0) |
                        (s->have_cks ? F_HAVE_CKS : 0) | (s->have_ckr ? F_HAVE_CKR : 0) |
                        (s->has_otk ? F_HAS_OTK : 0) | (s->pending ? F_PENDING : 0) |
                        (s->initiator ? F_INITIATOR : 0)));
    wr_u32(&w, s->ns);
    wr_u32(&w, s->nr);
    wr_u32(&w, s->pn);
    wr_bytes(&w, s->base_ek, 32);
    wr_u32(&w, s->spk_id);
    wr_u32(&w, s->otk_id);
    wr_u32(&w, (uint32_t)s->n_skipped);
    for (size_t i = 0; i < s->n_skipped; i++) {
        wr_bytes(&w, s->skipped[i].dh, 32);
        wr_u32(&w, s->skipped[i].n);
        wr_bytes(&w, s->skipped[i].mk, 32);
    }
    if (w.bad || w.len != cap) {   /* cannot happen: cap is exact */
        sodium_memzero(b, cap);
        free(b);
        return E2E_ERR_NOMEM;
    }
    *out = b;
    *out_len = cap;
    return E2E_OK;
}

int e2e_session_load(e2e_session **out, const uint8_t *buf, size_t len) {
    *out = NULL;
    if (len < 2 || len > E2E_MAX_STATE_BYTES || buf[0] != E2E_TYPE_SESSION_STATE) return E2E_ERR_MALFORMED;
    if (buf[1] != E2E_VERSION) return E2E_ERR_VERSION;
    e2e_session *s = calloc(1, sizeof *s);
    if (!s) return E2E_ERR_NOMEM;
    e2e_reader r = {buf + 2, len - 2, false};
    rd_bytes(&r, s->ad, AD_LEN);
    rd_bytes(&r, s->peer_identity, 32);
    rd_bytes(&r, s->rk, 32);
    rd_bytes(&r, s->dhs_pk, 32);
    rd_bytes(&r, s->dhs_sk, 32);
    rd_bytes(&r, s->dhr, 32);
    rd_bytes(&r, s->prev_dhr, 32);
    rd_bytes(&r, s->cks, 32);
    rd_bytes(&r, s->ckr, 32);
    uint8_t f = rd_u8(&r);
    s->have_dhr = f & F_HAVE_DHR;
    s->have_prev_dhr = f & F_HAVE_PREV_DHR;
    s->have_cks = f & F_HAVE_CKS;
    s->have_ckr = f & F_HAVE_CKR;
    s->has_otk = f & F_HAS_OTK;
    s->pending = f & F_PENDING;
    s->initiator = f & F_INITIATOR;
    s->ns = rd_u32(&r);
    s->nr = rd_u32(&r);
    s->pn = rd_u32(&r);
    rd_bytes(&r, s->base_ek, 32);
    s->spk_id = rd_u32(&r);
    s->otk_id = rd_u32(&r);
    uint32_t n = rd_u32(&r);
    if (r.bad || n > E2E_MAX_SKIPPED_KEPT || r.left != (size_t)n * SKIPPED_LEN) {
        session_wipe_free(s);
        return E2E_ERR_MALFORMED;
    }
    for (uint32_t i = 0; i < n; i++) {
        rd_bytes(&r, s->skipped[i].dh, 32);
        s->skipped[i].n = rd_u32(&r);
        rd_bytes(&r, s->skipped[i].mk, 32);
    }
    s->n_skipped = n;
    *out = s;
    return E2E_OK;
}
