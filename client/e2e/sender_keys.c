/* sender_keys.c -- Sender Keys (as in Signal's groups and WhatsApp's
 * security whitepaper): each sending device has, per conversation, a chain
 * key and an Ed25519 signing key. It hands both to every member device once
 * (the distribution message, sent pairwise-encrypted), then encrypts each
 * message once, whatever the number of members.
 *
 * Distribution:   0x04 | key id (u32) | iteration (u32) | chain key (32) | signing pub (32)
 * Message:        0x03 | key id (u32) | iteration (u32) | AEAD | Ed25519 signature (64)
 * The AEAD's associated data is the 9-byte header; the signature covers
 * header and AEAD output, so a member (who holds the chain key, and could
 * encrypt) still cannot forge a message of another member's device.
 * Per message: mk = HMAC(ck, 0x01), ck = HMAC(ck, 0x02) (KDF_CK). Late
 * messages: as in session.c, E2E_MAX_SKIP and E2E_MAX_SKIPPED_KEPT. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bytes.h"
#include "e2e_internal.h"

enum {
    DIST_LEN = 1 + 4 + 4 + 32 + 32,
    SENDER_HEADER_LEN = 1 + 4 + 4,
    SENDER_OVERHEAD = SENDER_HEADER_LEN + E2E_AEAD_TAG + E2E_SIG_BYTES,
};

typedef struct skipped_mk {
    uint32_t iteration;
    uint8_t mk[32];
} skipped_mk;

struct e2e_sender_key {
    uint32_t key_id;
    uint32_t iteration;              /* of the next message key ck gives */
    uint8_t ck[32];
    uint8_t sig_pk[32];
    bool own;                        /* sig_sk is set: we send with it */
    uint8_t sig_sk[64];
    size_t n_skipped;                /* oldest first */
    skipped_mk skipped[E2E_MAX_SKIPPED_KEPT];
};

static void sk_wipe_free(e2e_sender_key *k) {
    if (!k) return;
    sodium_memzero(k, sizeof *k);
    free(k);
}

void e2e_sender_key_free(e2e_sender_key *k) { sk_wipe_free(k); }
uint32_t e2e_sender_key_id(const e2e_sender_key *k) { return k->key_id; }
uint32_t e2e_sender_key_iteration(const e2e_sender_key *k) { return k->iteration; }
bool e2e_sender_key_is_own(const e2e_sender_key *k) { return k->own; }

int e2e_sender_key_create(e2e_sender_key **out) {
    e2e_sender_key *k = calloc(1, sizeof *k);
    if (!k) return E2E_ERR_NOMEM;
    uint8_t id[4], seed[crypto_sign_SEEDBYTES];
    e2e_random(id, sizeof id);
    e2e_random(k->ck, sizeof k->ck);
    e2e_random(seed, sizeof seed);
    crypto_sign_seed_keypair(k->sig_pk, k->sig_sk, seed);
    sodium_memzero(seed, sizeof seed);
    k->key_id = e2e_get32(id);
    k->own = true;
    *out = k;
    return E2E_OK;
}

int e2e_sender_key_distribution(const e2e_sender_key *k, uint8_t **out, size_t *out_len) {
    uint8_t *b = malloc(DIST_LEN);
    if (!b) return E2E_ERR_NOMEM;
    e2e_writer w = {b, 0, DIST_LEN, false};
    wr_u8(&w, E2E_TYPE_DISTRIBUTION);
    wr_u32(&w, k->key_id);
    wr_u32(&w, k->iteration);
    wr_bytes(&w, k->ck, 32);
    wr_bytes(&w, k->sig_pk, 32);
    *out = b;
    *out_len = DIST_LEN;
    return E2E_OK;
}

int e2e_sender_key_from_distribution(e2e_sender_key **out, const uint8_t *msg, size_t len) {
    *out = NULL;
    if (len != DIST_LEN || msg[0] != E2E_TYPE_DISTRIBUTION) return E2E_ERR_MALFORMED;
    e2e_sender_key *k = calloc(1, sizeof *k);
    if (!k) return E2E_ERR_NOMEM;
    e2e_reader r = {msg + 1, len - 1, false};
    k->key_id = rd_u32(&r);
    k->iteration = rd_u32(&r);
    rd_bytes(&r, k->ck, 32);
    rd_bytes(&r, k->sig_pk, 32);
    *out = k;
    return E2E_OK;
}

int e2e_sender_message_key_id(const uint8_t *msg, size_t len, uint32_t *key_id) {
    if (len < SENDER_OVERHEAD || msg[0] != E2E_TYPE_SENDER_MESSAGE) return E2E_ERR_MALFORMED;
    *key_id = e2e_get32(msg + 1);
    return E2E_OK;
}

int e2e_sender_key_encrypt(e2e_sender_key *k, const uint8_t *pt, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!k->own) return E2E_ERR_WRONG_KEY;
    if (len > E2E_MAX_PLAINTEXT) return E2E_ERR_TOO_LARGE;
    if (k->iteration == UINT32_MAX) return E2E_ERR_TOO_FAR;   /* rotate long before */
    size_t total = len + SENDER_OVERHEAD;
    uint8_t *m = malloc(total);
    if (!m) return E2E_ERR_NOMEM;
    m[0] = E2E_TYPE_SENDER_MESSAGE;
    e2e_put32(m + 1, k->key_id);
    e2e_put32(m + 5, k->iteration);
    uint8_t mk[32];
    e2e_kdf_ck(k->ck, mk);
    k->iteration++;
    e2e_seal(m + SENDER_HEADER_LEN, pt, len, m, SENDER_HEADER_LEN, mk, E2E_INFO_SENDER);
    sodium_memzero(mk, sizeof mk);
    crypto_sign_detached(m + total - E2E_SIG_BYTES, NULL, m, total - E2E_SIG_BYTES, k->sig_sk);
    *out = m;
    *out_len = total;
    return E2E_OK;
}

static void remember(e2e_sender_key *k, uint32_t iteration, const uint8_t mk[32]) {
    if (k->n_skipped == E2E_MAX_SKIPPED_KEPT) {
        sodium_memzero(&k->skipped[0], sizeof k->skipped[0]);
        memmove(&k->skipped[0], &k->skipped[1], (k->n_skipped - 1) * sizeof k->skipped[0]);
        k->n_skipped--;
    }
    k->skipped[k->n_skipped].iteration = iteration;
    memcpy(k->skipped[k->n_skipped].mk, mk, 32);
    k->n_skipped++;
}

/* The message key of `iteration` in k (a scratch copy), consuming it. */
static int take_message_key(e2e_sender_key *k, uint32_t iteration, uint8_t mk[32]) {
    if (iteration < k->iteration) {
        for (size_t i = 0; i < k->n_skipped; i++) {
            if (k->skipped[i].iteration != iteration) continue;
            memcpy(mk, k->skipped[i].mk, 32);
            sodium_memzero(&k->skipped[i], sizeof k->skipped[i]);
            memmove(&k->skipped[i], &k->skipped[i + 1], (k->n_skipped - i - 1) * sizeof k->skipped[0]);
            k->n_skipped--;
            return E2E_OK;
        }
        return E2E_ERR_REPLAY;
    }
    if (iteration - k->iteration > E2E_MAX_SKIP) return E2E_ERR_TOO_FAR;
    while (k->iteration < iteration) {
        e2e_kdf_ck(k->ck, mk);
        remember(k, k->iteration, mk);
        k->iteration++;
    }
    e2e_kdf_ck(k->ck, mk);
    k->iteration++;
    return E2E_OK;
}

int e2e_sender_key_decrypt(e2e_sender_key *k, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len) {
    *pt = NULL;
    *pt_len = 0;
    uint32_t key_id;
    if (e2e_sender_message_key_id(msg, len, &key_id) != E2E_OK) return E2E_ERR_MALFORMED;
    if (key_id != k->key_id) return E2E_ERR_WRONG_KEY;
    size_t n = len - SENDER_OVERHEAD;
    if (n > E2E_MAX_PLAINTEXT) return E2E_ERR_TOO_LARGE;
    if (crypto_sign_verify_detached(msg + len - E2E_SIG_BYTES, msg, len - E2E_SIG_BYTES, k->sig_pk) != 0)
        return E2E_ERR_AUTH;
    e2e_sender_key *scratch = malloc(sizeof *scratch);
    uint8_t *out = malloc(n ? n : 1);
    if (!scratch || !out) {
        free(scratch);
        free(out);
        return E2E_ERR_NOMEM;
    }
    memcpy(scratch, k, sizeof *k);
    uint8_t mk[32];
    int r = take_message_key(scratch, e2e_get32(msg + 5), mk);
    if (r == E2E_OK)
        r = e2e_open(out, msg + SENDER_HEADER_LEN, n + E2E_AEAD_TAG, msg, SENDER_HEADER_LEN, mk, E2E_INFO_SENDER);
    sodium_memzero(mk, sizeof mk);
    if (r == E2E_OK) {
        memcpy(k, scratch, sizeof *k);
        *pt = out;
        *pt_len = n;
    } else {
        sodium_memzero(out, n);
        free(out);
    }
    sk_wipe_free(scratch);
    return r;
}

/* ------------------------------------------------------------ persisting */

enum { SENDER_STATE_FIXED = 2 + 4 + 4 + 32 + 32 + 1 + 64 + 4, SKIPPED_MK_LEN = 4 + 32 };

int e2e_sender_key_save(const e2e_sender_key *k, uint8_t **out, size_t *out_len) {
    size_t cap = SENDER_STATE_FIXED + k->n_skipped * SKIPPED_MK_LEN;
    uint8_t *b = malloc(cap);
    if (!b) return E2E_ERR_NOMEM;
    e2e_writer w = {b, 0, cap, false};
    wr_u8(&w, E2E_TYPE_SENDER_STATE);
    wr_u8(&w, E2E_VERSION);
    wr_u32(&w, k->key_id);
    wr_u32(&w, k->iteration);
    wr_bytes(&w, k->ck, 32);
    wr_bytes(&w, k->sig_pk, 32);
    wr_u8(&w, k->own ? 1 : 0);
    wr_bytes(&w, k->sig_sk, 64);
    wr_u32(&w, (uint32_t)k->n_skipped);
    for (size_t i = 0; i < k->n_skipped; i++) {
        wr_u32(&w, k->skipped[i].iteration);
        wr_bytes(&w, k->skipped[i].mk, 32);
    }
    if (w.bad || w.len != cap) {
        sodium_memzero(b, cap);
        free(b);
        return E2E_ERR_NOMEM;
    }
    *out = b;
    *out_len = cap;
    return E2E_OK;
}

int e2e_sender_key_load(e2e_sender_key **out, const uint8_t *buf, size_t len) {
    *out = NULL;
    if (len < 2 || len > E2E_MAX_STATE_BYTES || buf[0] != E2E_TYPE_SENDER_STATE) return E2E_ERR_MALFORMED;
    if (buf[1] != E2E_VERSION) return E2E_ERR_VERSION;
    e2e_sender_key *k = calloc(1, sizeof *k);
    if (!k) return E2E_ERR_NOMEM;
    e2e_reader r = {buf + 2, len - 2, false};
    k->key_id = rd_u32(&r);
    k->iteration = rd_u32(&r);
    rd_bytes(&r, k->ck, 32);
    rd_bytes(&r, k->sig_pk, 32);
    uint8_t own = rd_u8(&r);
    rd_bytes(&r, k->sig_sk, 64);
    uint32_t n = rd_u32(&r);
    if (r.bad || own > 1 || n > E2E_MAX_SKIPPED_KEPT || r.left != (size_t)n * SKIPPED_MK_LEN) {
        sk_wipe_free(k);
        return E2E_ERR_MALFORMED;
    }
    k->own = own == 1;
    for (uint32_t i = 0; i < n; i++) {
        k->skipped[i].iteration = rd_u32(&r);
        rd_bytes(&r, k->skipped[i].mk, 32);
    }
    k->n_skipped = n;
    *out = k;
    return E2E_OK;
}
