/* test_e2e.c -- client/e2e: X3DH, the Double Ratchet and Sender Keys.
 *   - behaviours: out-of-order and lost messages, the skipped-key bounds
 *     (a message needing more than E2E_MAX_SKIP skips is refused; beyond
 *     E2E_MAX_SKIPPED_KEPT kept keys the oldest is dropped), tampered
 *     ciphertexts and headers refused with the state unchanged, replays
 *     refused, states round-trip through their bytes, a reset peer (new
 *     identity) starts a new session, a bundle without a one-time pre-key
 *     (exhausted) or with a bad signature, sender-key rotation
 *   - vectors: the JSON files of tests/vectors regenerated from fixed randomness (the
 *     test-only RNG hook) must equal the committed files byte for byte;
 *     `test_e2e --write-vectors DIR` writes them. tests/vectors/check_vectors.py
 *     re-derives them independently with Python's `cryptography`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../check.h"
#include "e2e.h"
#include "e2e_internal.h"
#include "e2e_store.h"
#include "parley_e2e.h"

/* ------------------------------------------------------------- helpers */

typedef struct device {
    e2e_identity id;
    e2e_prekey spk, otk;
    uint8_t spk_sig[64];
} device;

static void device_new(device *d, uint32_t spk_id, uint32_t otk_id) {
    e2e_identity_generate(&d->id);
    e2e_prekey_generate(&d->spk, spk_id);
    e2e_prekey_generate(&d->otk, otk_id);
    e2e_prekey_sign(&d->id, &d->spk, d->spk_sig);
}

static e2e_bundle bundle_of(const device *d, int with_otk) {
    e2e_bundle b;
    memset(&b, 0, sizeof b);
    memcpy(b.identity, d->id.pk, 32);
    b.spk_id = d->spk.id;
    memcpy(b.spk, d->spk.pk, 32);
    memcpy(b.spk_sig, d->spk_sig, 64);
    if (with_otk) {
        b.has_otk = true;
        b.otk_id = d->otk.id;
        memcpy(b.otk, d->otk.pk, 32);
    }
    return b;
}

typedef struct msg {
    uint8_t *b;
    size_t n;
} msg;

static msg enc(e2e_session *s, const char *text) {
    msg m = {NULL, 0};
    if (e2e_session_encrypt(s, (const uint8_t *)text, strlen(text), &m.b, &m.n) != E2E_OK) m.b = NULL;
    return m;
}

/* E2E_OK only if m decrypts to text; the e2e status otherwise, 99 for
 * a wrong plaintext. */
static int dec(e2e_session *s, msg m, const char *text) {
    uint8_t *pt = NULL;
    size_t n = 0;
    int r = e2e_session_decrypt(s, m.b, m.n, &pt, &n);
    if (r == E2E_OK && (n != strlen(text) || memcmp(pt, text, n) != 0)) r = 99;
    free(pt);
    return r;
}

static void msg_free(msg *m) {
    free(m->b);
    m->b = NULL;
}

/* Alice starts a session with Bob's bundle; Bob accepts her first message
 * "hello". 0 on success. */
static int start(const device *a, const device *b, int with_otk, e2e_session **as, e2e_session **bs) {
    e2e_bundle bundle = bundle_of(b, with_otk);
    if (e2e_session_initiate(as, &a->id, &bundle) != E2E_OK) return -1;
    msg m = enc(*as, "hello");
    uint8_t *pt = NULL;
    size_t n = 0;
    int r = e2e_session_accept(bs, &b->id, &b->spk, with_otk ? &b->otk : NULL, m.b, m.n, &pt, &n);
    int ok = r == E2E_OK && n == 5 && memcmp(pt, "hello", 5) == 0;
    free(pt);
    msg_free(&m);
    return ok ? 0 : -1;
}

/* --------------------------------------------------------- behaviours */

static void out_of_order_and_lost(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 1, &as, &bs) == 0, "session");
    /* Alice sends 6; Bob gets 5, 0, 3, 1 (2 and 4 are lost for now) */
    msg m[6];
    char text[6][8];
    for (int i = 0; i < 6; i++) {
        snprintf(text[i], sizeof text[i], "a%d", i);
        m[i] = enc(as, text[i]);
        CHECK(m[i].b, "encrypt %d", i);
    }
    const int order[] = {5, 0, 3, 1};
    for (int i = 0; i < 4; i++)
        CHECK(dec(bs, m[order[i]], text[order[i]]) == E2E_OK, "message %d out of order", order[i]);
    CHECK(e2e_session_skipped_count(bs) == 2, "%zu skipped keys kept, want 2", e2e_session_skipped_count(bs));
    /* Bob answers (a DH ratchet step each way), Alice replies; 4 arrives late */
    msg r1 = enc(bs, "b1"), r2 = enc(bs, "b2");
    CHECK(dec(as, r2, "b2") == E2E_OK && dec(as, r1, "b1") == E2E_OK, "Bob's replies, reversed");
    msg a6 = enc(as, "a6");
    CHECK(dec(bs, a6, "a6") == E2E_OK, "after a ratchet step");
    CHECK(dec(bs, m[4], "a4") == E2E_OK, "a message of the previous chain, late");
    /* 2 is never delivered: nothing else depends on it */
    CHECK(e2e_session_skipped_count(bs) == 1, "%zu skipped kept, want 1 (message 2)", e2e_session_skipped_count(bs));
    for (int i = 0; i < 6; i++) msg_free(&m[i]);
    msg_free(&r1);
    msg_free(&r2);
    msg_free(&a6);
    e2e_session_free(as);
    e2e_session_free(bs);
}

/* One message may skip at most E2E_MAX_SKIP (1000) keys: the one needing
 * 1001 is refused and changes nothing; the one needing 1000 is read. With
 * 1000 kept, one more skipped key drops the oldest: its message is then
 * refused as a replay/too old, the others still read. */
static void skipped_keys_bounded(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 1, &as, &bs) == 0, "session");   /* "hello" was n = 0 */
    enum { N = E2E_MAX_SKIP + 5 };
    msg *m = calloc(N, sizeof *m);
    CHECK(m, "oom");
    for (int i = 1; i < N; i++) {
        char t[16];
        snprintf(t, sizeof t, "m%d", i);
        m[i] = enc(as, t);
        CHECK(m[i].b, "encrypt %d", i);
    }
    const int too_far = E2E_MAX_SKIP + 2;   /* skips 1..1001: 1001 keys */
    CHECK(dec(bs, m[too_far], "m1002") == E2E_ERR_TOO_FAR, "skipping %d keys was not refused", E2E_MAX_SKIP + 1);
    CHECK(e2e_session_skipped_count(bs) == 0, "a refused message left %zu skipped keys", e2e_session_skipped_count(bs));
    CHECK(dec(bs, m[E2E_MAX_SKIP + 1], "m1001") == E2E_OK, "skipping exactly %d keys", E2E_MAX_SKIP);
    CHECK(e2e_session_skipped_count(bs) == E2E_MAX_SKIPPED_KEPT, "%zu kept", e2e_session_skipped_count(bs));
    /* 1003 skips 1002: one more key, the oldest (message 1) goes */
    CHECK(dec(bs, m[E2E_MAX_SKIP + 3], "m1003") == E2E_OK, "m1003");
    CHECK(e2e_session_skipped_count(bs) == E2E_MAX_SKIPPED_KEPT, "%zu kept after the bound",
          e2e_session_skipped_count(bs));
    CHECK(dec(bs, m[1], "m1") == E2E_ERR_REPLAY, "the oldest skipped key was not dropped");
    CHECK(dec(bs, m[2], "m2") == E2E_OK, "the second oldest is still there");
    CHECK(dec(bs, m[E2E_MAX_SKIP + 2], "m1002") == E2E_OK, "the one refused before, now within the bound");
    for (int i = 0; i < N; i++) msg_free(&m[i]);
    free(m);
    e2e_session_free(as);
    e2e_session_free(bs);
}

static void tampered_refused(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 1, &as, &bs) == 0, "session");
    /* round 0: a first message (X3DH header too); round 1: an ordinary one */
    for (int round = 0; round < 2; round++) {
        msg m = enc(as, "the real text");
        CHECK(m.b, "encrypt");
        CHECK(e2e_message_prekey_info(m.b, m.n, &(e2e_prekey_info){0}) == (round == 0), "round %d kind", round);
        /* every byte: flipping it anywhere (type, X3DH header, ratchet key,
         * PN, N, ciphertext, tag) must not decrypt */
        for (size_t i = 0; i < m.n; i++) {
            m.b[i] ^= 0x20;
            int r = dec(bs, m, "the real text");
            m.b[i] ^= 0x20;
            CHECK(r != E2E_OK, "round %d, byte %zu flipped: decrypted", round, i);
            CHECK(r != 99, "round %d, byte %zu flipped: a different plaintext came out", round, i);
        }
        msg cut = {m.b, m.n - 1};
        CHECK(dec(bs, cut, "the real text") != E2E_OK, "truncated");
        /* nothing of that changed the session: the real one still reads */
        CHECK(dec(bs, m, "the real text") == E2E_OK, "round %d: the untampered message after the tampered ones",
              round);
        msg_free(&m);
        msg r = enc(bs, "reply");   /* Alice stops sending the X3DH header */
        CHECK(dec(as, r, "reply") == E2E_OK, "reply");
        msg_free(&r);
    }
    e2e_session_free(as);
    e2e_session_free(bs);
}

static void replay_refused(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 1, &as, &bs) == 0, "session");
    msg m1 = enc(as, "one"), m2 = enc(as, "two"), m3 = enc(as, "three");
    CHECK(dec(bs, m1, "one") == E2E_OK, "one");
    CHECK(dec(bs, m1, "one") == E2E_ERR_REPLAY, "the same message again");
    CHECK(dec(bs, m3, "three") == E2E_OK && dec(bs, m2, "two") == E2E_OK, "three, then two from the skipped keys");
    CHECK(dec(bs, m2, "two") == E2E_ERR_REPLAY, "a consumed skipped key again");
    /* after ratchet steps both ways, a message of the old chain */
    msg r = enc(bs, "reply");
    CHECK(dec(as, r, "reply") == E2E_OK, "reply");
    msg m4 = enc(as, "four");
    CHECK(dec(bs, m4, "four") == E2E_OK, "four");
    CHECK(dec(bs, m3, "three") == E2E_ERR_REPLAY, "a message of the previous chain again");
    CHECK(dec(as, r, "reply") == E2E_ERR_REPLAY, "the reply again");
    msg_free(&m1);
    msg_free(&m2);
    msg_free(&m3);
    msg_free(&m4);
    msg_free(&r);
    e2e_session_free(as);
    e2e_session_free(bs);
}

static e2e_session *reload(e2e_session *s) {
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    e2e_session *t = NULL;
    if (e2e_session_save(s, &b1, &n1) != E2E_OK || e2e_session_load(&t, b1, n1) != E2E_OK ||
        e2e_session_save(t, &b2, &n2) != E2E_OK || n1 != n2 || memcmp(b1, b2, n1) != 0) {
        e2e_session_free(t);
        t = NULL;
    }
    free(b1);
    free(b2);
    e2e_session_free(s);
    return t;
}

static void state_round_trip(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 0, &as, &bs) == 0, "session");
    msg m1 = enc(as, "one"), m2 = enc(as, "two");
    CHECK(dec(bs, m2, "two") == E2E_OK, "two first");
    /* both restart: saved, freed, loaded (and saved again: the same bytes) */
    as = reload(as);
    bs = reload(bs);
    CHECK(as && bs, "a state did not round-trip byte for byte");
    CHECK(e2e_session_skipped_count(bs) == 1, "the skipped key was not kept");
    CHECK(dec(bs, m1, "one") == E2E_OK, "the late message after the restart");
    msg r = enc(bs, "reply");
    CHECK(dec(as, r, "reply") == E2E_OK, "a reply after the restart");
    msg m3 = enc(as, "three");
    as = reload(as);
    bs = reload(bs);
    CHECK(as && bs, "second round trip");
    CHECK(dec(bs, m3, "three") == E2E_OK, "three");
    /* garbage is refused, not read */
    uint8_t *buf = NULL;
    size_t n = 0;
    CHECK(e2e_session_save(as, &buf, &n) == E2E_OK, "save");
    e2e_session *t = NULL;
    CHECK(e2e_session_load(&t, buf, n - 1) == E2E_ERR_MALFORMED && !t, "a truncated state was loaded");
    buf[1] = 99;
    CHECK(e2e_session_load(&t, buf, n) == E2E_ERR_VERSION && !t, "a state of version 99 was loaded");
    free(buf);
    msg_free(&m1);
    msg_free(&m2);
    msg_free(&m3);
    msg_free(&r);
    e2e_session_free(as);
    e2e_session_free(bs);
}

/* Bob's device is reset: new identity and pre-keys. Alice's old session
 * cannot read him; the new one, from his new bundle, works both ways, and
 * its peer identity is the new key (what a client warns about). */
static void reset_peer_new_session(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 1, &as, &bs) == 0, "session");
    uint8_t old_identity[32];
    memcpy(old_identity, b.id.pk, 32);
    e2e_session_free(bs);
    device_new(&b, 3, 300);   /* reset */
    /* Bob, fresh, starts towards Alice: his first message is not for the old session */
    e2e_session *bs2 = NULL, *as2 = NULL;
    e2e_bundle ab = bundle_of(&a, 1);
    CHECK(e2e_session_initiate(&bs2, &b.id, &ab) == E2E_OK, "Bob's new session");
    msg m = enc(bs2, "I am new");
    CHECK(dec(as, m, "I am new") == E2E_ERR_WRONG_KEY, "the old session took a new session's first message");
    uint8_t *pt = NULL;
    size_t n = 0;
    CHECK(e2e_session_accept(&as2, &a.id, &a.spk, &a.otk, m.b, m.n, &pt, &n) == E2E_OK && n == 8 &&
              memcmp(pt, "I am new", 8) == 0,
          "Alice accepts the new session");
    free(pt);
    CHECK(memcmp(e2e_session_peer_identity(as2), old_identity, 32) != 0 &&
              memcmp(e2e_session_peer_identity(as2), b.id.pk, 32) == 0,
          "the new session's peer identity is Bob's new key");
    msg r = enc(as2, "welcome back");
    CHECK(dec(bs2, r, "welcome back") == E2E_OK, "Alice's answer");
    msg_free(&m);
    msg_free(&r);
    e2e_session_free(as);
    e2e_session_free(as2);
    e2e_session_free(bs2);
}

/* No one-time pre-key left (the server hands out the bundle without one):
 * X3DH runs on the signed pre-key alone; a bundle whose signature fails is
 * refused; a second first message before the answer reads with the session. */
static void exhausted_and_bad_bundles(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 0, &as, &bs) == 0, "a session without a one-time pre-key");
    msg again = enc(as, "second before any answer");
    e2e_prekey_info info;
    CHECK(e2e_message_prekey_info(again.b, again.n, &info) == 1 && !info.has_otk, "still an X3DH header, no OTK");
    CHECK(e2e_session_from_prekey(bs, &info), "Bob does not recognise his own session's X3DH");
    CHECK(dec(bs, again, "second before any answer") == E2E_OK, "second first message");
    msg r = enc(bs, "answer");
    CHECK(dec(as, r, "answer") == E2E_OK, "answer");
    msg plain = enc(as, "after the answer");
    CHECK(e2e_message_prekey_info(plain.b, plain.n, &info) == 0, "X3DH header still sent after the answer");
    msg_free(&again);
    msg_free(&r);
    msg_free(&plain);

    e2e_bundle bad = bundle_of(&b, 1);
    bad.spk_sig[0] ^= 1;
    e2e_session *s = NULL;
    CHECK(e2e_session_initiate(&s, &a.id, &bad) == E2E_ERR_BAD_BUNDLE && !s, "a bad signature was accepted");
    bad = bundle_of(&b, 1);
    bad.spk[3] ^= 1;
    CHECK(e2e_session_initiate(&s, &a.id, &bad) == E2E_ERR_BAD_BUNDLE && !s, "a swapped signed pre-key");
    /* a first message for the wrong one-time key is not accepted */
    e2e_session *as3 = NULL, *bs3 = NULL;
    e2e_bundle good = bundle_of(&b, 1);
    CHECK(e2e_session_initiate(&as3, &a.id, &good) == E2E_OK, "initiate");
    msg first = enc(as3, "x");
    uint8_t *pt = NULL;
    size_t n = 0;
    CHECK(e2e_session_accept(&bs3, &b.id, &b.spk, NULL, first.b, first.n, &pt, &n) == E2E_ERR_WRONG_KEY && !bs3,
          "accepted without the one-time key it names");
    msg_free(&first);
    e2e_session_free(as3);
    e2e_session_free(as);
    e2e_session_free(bs);
}

static void safety_numbers(void) {
    device a, b, c;
    device_new(&a, 1, 1);
    device_new(&b, 1, 1);
    device_new(&c, 1, 1);
    char ab[E2E_SAFETY_NUMBER_LEN], ba[E2E_SAFETY_NUMBER_LEN], ac[E2E_SAFETY_NUMBER_LEN];
    e2e_safety_number(a.id.pk, b.id.pk, ab);
    e2e_safety_number(b.id.pk, a.id.pk, ba);
    e2e_safety_number(a.id.pk, c.id.pk, ac);
    CHECK(strcmp(ab, ba) == 0, "not the same on both sides: %s / %s", ab, ba);
    CHECK(strcmp(ab, ac) != 0, "another key, the same number");
    CHECK(strlen(ab) == 71 && ab[5] == ' ', "format: '%s'", ab);
}

static uint8_t *heap_copy(const uint8_t *b, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    if (p && len) memcpy(p, b, len);
    return p;
}

/* Bytes from the network or a damaged state file: random bytes of every
 * length up to 400, also behind each valid type byte (and, for the states,
 * every truncation of a real one), are refused by every parser, never read
 * out of bounds (the ASan build checks) and never yield a plaintext. */
static void garbage_refused(void) {
    device a, b;
    device_new(&a, 1, 100);
    device_new(&b, 2, 200);
    e2e_session *as = NULL, *bs = NULL;
    CHECK(start(&a, &b, 1, &as, &bs) == 0, "session");
    e2e_sender_key *sk = NULL;
    CHECK(e2e_sender_key_create(&sk) == E2E_OK, "sender key");
    static const uint8_t types[] = {0x00, E2E_TYPE_PREKEY_MESSAGE, E2E_TYPE_MESSAGE, E2E_TYPE_SENDER_MESSAGE,
                                    E2E_TYPE_DISTRIBUTION, E2E_TYPE_SESSION_STATE, E2E_TYPE_SENDER_STATE};
    uint8_t buf[400];
    for (size_t len = 0; len <= sizeof buf; len++) {
        for (size_t t = 0; t < sizeof types; t++) {
            randombytes_buf(buf, sizeof buf);
            if (len) buf[0] = types[t];
            if (len > 1 && (types[t] == E2E_TYPE_SESSION_STATE || types[t] == E2E_TYPE_SENDER_STATE)) buf[1] = 1;
            /* exactly len bytes on the heap: a read past them is an ASan error */
            uint8_t *in = heap_copy(buf, len);
            CHECK(in, "oom");
            uint8_t *pt = NULL;
            size_t n = 0;
            e2e_session *s = NULL;
            e2e_sender_key *k = NULL;
            int r1 = e2e_session_decrypt(bs, in, len, &pt, &n);
            int r2 = r1 != E2E_OK && !pt ? e2e_session_accept(&s, &b.id, &b.spk, &b.otk, in, len, &pt, &n) : E2E_OK;
            int r3 = r2 != E2E_OK && !s && !pt ? e2e_sender_key_decrypt(sk, in, len, &pt, &n) : E2E_OK;
            if (e2e_sender_key_from_distribution(&k, in, len) == E2E_OK) e2e_sender_key_free(k);   /* any 73 bytes are a key */
            k = NULL;
            int r4 = e2e_session_load(&s, in, len);
            int r5 = e2e_sender_key_load(&k, in, len);
            free(in);
            CHECK(r1 != E2E_OK && r2 != E2E_OK && r3 != E2E_OK && !pt, "a message of %zu random bytes decrypted", len);
            CHECK(r4 != E2E_OK && !s && r5 != E2E_OK && !k, "a state of %zu random bytes loaded", len);
        }
    }
    uint8_t *st = NULL;
    size_t st_len = 0;
    CHECK(e2e_session_save(as, &st, &st_len) == E2E_OK, "save");
    for (size_t cut = 0; cut < st_len; cut++) {
        e2e_session *s = NULL;
        uint8_t *in = heap_copy(st, cut);
        CHECK(in, "oom");
        int r = e2e_session_load(&s, in, cut);
        free(in);
        e2e_session_free(s);
        CHECK(r != E2E_OK, "a session state cut to %zu of %zu bytes loaded", cut, st_len);
    }
    free(st);
    e2e_sender_key_free(sk);
    e2e_session_free(as);
    e2e_session_free(bs);
}

/* ------------------------------------------------------------ sender keys */

typedef struct smsg {
    uint8_t *b;
    size_t n;
} smsg;

static int sdec(e2e_sender_key *k, smsg m, const char *text) {
    uint8_t *pt = NULL;
    size_t n = 0;
    int r = e2e_sender_key_decrypt(k, m.b, m.n, &pt, &n);
    if (r == E2E_OK && (n != strlen(text) || memcmp(pt, text, n) != 0)) r = 99;
    free(pt);
    return r;
}

static e2e_sender_key *receiver_of(const e2e_sender_key *own) {
    uint8_t *d = NULL;
    size_t n = 0;
    e2e_sender_key *k = NULL;
    if (e2e_sender_key_distribution(own, &d, &n) == E2E_OK) e2e_sender_key_from_distribution(&k, d, n);
    free(d);
    return k;
}

static void sender_keys_behaviour(void) {
    e2e_sender_key *alice = NULL, *mallory = NULL;
    CHECK(e2e_sender_key_create(&alice) == E2E_OK && e2e_sender_key_create(&mallory) == E2E_OK, "create");
    e2e_sender_key *bob = receiver_of(alice), *carol = receiver_of(alice);
    CHECK(bob && carol, "distribution");
    smsg m[5];
    const char *text[5] = {"s0", "s1", "s2", "s3", "s4"};
    for (int i = 0; i < 5; i++)
        CHECK(e2e_sender_key_encrypt(alice, (const uint8_t *)text[i], 2, &m[i].b, &m[i].n) == E2E_OK, "enc %d", i);
    /* every receiver reads the same bytes, in any order, each once */
    const int order[] = {3, 0, 4, 1, 2};
    for (int i = 0; i < 5; i++) {
        CHECK(sdec(bob, m[order[i]], text[order[i]]) == E2E_OK, "bob: %d", order[i]);
        CHECK(sdec(carol, m[i], text[i]) == E2E_OK, "carol: %d", i);
    }
    CHECK(sdec(bob, m[2], "s2") == E2E_ERR_REPLAY && sdec(carol, m[4], "s4") == E2E_ERR_REPLAY, "replay");
    /* tampered anywhere: refused, the state unchanged */
    smsg t;
    CHECK(e2e_sender_key_encrypt(alice, (const uint8_t *)"s5", 2, &t.b, &t.n) == E2E_OK, "enc 5");
    for (size_t i = 0; i < t.n; i++) {
        t.b[i] ^= 0x01;
        int r = sdec(bob, t, "s5");
        t.b[i] ^= 0x01;
        CHECK(r != E2E_OK && r != 99, "byte %zu flipped: %d", i, r);
    }
    CHECK(sdec(bob, t, "s5") == E2E_OK, "the real one after the tampered ones");
    /* a member who holds the chain key cannot forge Alice's messages:
     * re-signing with another key fails the signature check */
    smsg f;
    CHECK(e2e_sender_key_encrypt(alice, (const uint8_t *)"s6", 2, &f.b, &f.n) == E2E_OK, "enc 6");
    uint8_t seed[32], pk[32], sk[64];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    crypto_sign_detached(f.b + f.n - 64, NULL, f.b, f.n - 64, sk);
    CHECK(sdec(carol, f, "s6") == E2E_ERR_AUTH, "a message signed by another key");
    /* skipping: at most E2E_MAX_SKIP keys at once */
    smsg far = {NULL, 0};
    for (int i = 0; i < E2E_MAX_SKIP + 1; i++) {
        free(far.b);
        CHECK(e2e_sender_key_encrypt(alice, (const uint8_t *)"x", 1, &far.b, &far.n) == E2E_OK, "enc");
    }
    /* carol is at iteration 6, the last one is 7 + 1000: 1001 skips */
    CHECK(sdec(carol, far, "x") == E2E_ERR_TOO_FAR, "skipping %d sender keys", E2E_MAX_SKIP + 1);
    /* rotation: Alice's new key goes to Bob only (Carol left); Carol's old
     * key does not read it */
    e2e_sender_key *alice2 = NULL;
    CHECK(e2e_sender_key_create(&alice2) == E2E_OK, "rotate");
    e2e_sender_key *bob2 = receiver_of(alice2);
    smsg after;
    CHECK(e2e_sender_key_encrypt(alice2, (const uint8_t *)"after", 5, &after.b, &after.n) == E2E_OK, "enc");
    CHECK(sdec(bob2, after, "after") == E2E_OK, "bob reads the new key");
    CHECK(sdec(carol, after, "after") == E2E_ERR_WRONG_KEY, "carol, gone, read the rotated key's message");
    free(t.b);
    CHECK(e2e_sender_key_encrypt(bob, (const uint8_t *)"x", 1, &t.b, &t.n) == E2E_ERR_WRONG_KEY && !t.b,
          "a received key encrypted");
    /* round trip of a receiver state with skipped keys */
    smsg g[3];
    for (int i = 0; i < 3; i++)
        CHECK(e2e_sender_key_encrypt(alice2, (const uint8_t *)"g", 1, &g[i].b, &g[i].n) == E2E_OK, "enc");
    CHECK(sdec(bob2, g[2], "g") == E2E_OK, "g2");
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1, n2;
    e2e_sender_key *loaded = NULL;
    CHECK(e2e_sender_key_save(bob2, &b1, &n1) == E2E_OK && e2e_sender_key_load(&loaded, b1, n1) == E2E_OK &&
              e2e_sender_key_save(loaded, &b2, &n2) == E2E_OK && n1 == n2 && memcmp(b1, b2, n1) == 0,
          "sender key state round trip");
    CHECK(sdec(loaded, g[0], "g") == E2E_OK && sdec(loaded, g[1], "g") == E2E_OK, "skipped keys survived");
    e2e_sender_key *cut = NULL;
    CHECK(e2e_sender_key_load(&cut, b1, n1 - 1) == E2E_ERR_MALFORMED && !cut, "truncated state loaded");
    free(b1);
    free(b2);
    for (int i = 0; i < 5; i++) free(m[i].b);
    for (int i = 0; i < 3; i++) free(g[i].b);
    free(f.b);
    free(far.b);
    free(after.b);
    e2e_sender_key_free(alice);
    e2e_sender_key_free(alice2);
    e2e_sender_key_free(mallory);
    e2e_sender_key_free(bob);
    e2e_sender_key_free(bob2);
    e2e_sender_key_free(carol);
    e2e_sender_key_free(loaded);
}

/* ------------------------------------------------- libparley's key store */

/* A device message that opens a session: 0x01 envelope with a sender key
 * of conv, pairwise-encrypted from `from` to bob's store. */
static msg key_envelope(const e2e_identity *from, const pc_e2e *bob, uint32_t otk_slot, uint64_t conv,
                        e2e_sender_key *k, e2e_session **s) {
    msg out = {NULL, 0};
    e2e_bundle b;
    memset(&b, 0, sizeof b);
    memcpy(b.identity, bob->id.pk, 32);
    b.spk_id = bob->spk.id;
    memcpy(b.spk, bob->spk.pk, 32);
    memcpy(b.spk_sig, bob->spk_sig, 64);
    b.has_otk = true;
    b.otk_id = bob->otk[otk_slot].id;
    memcpy(b.otk, bob->otk[otk_slot].pk, 32);
    uint8_t env[9 + 73], *dist = NULL;
    size_t dn = 0;
    if (e2e_session_initiate(s, from, &b) != E2E_OK || e2e_sender_key_distribution(k, &dist, &dn) != E2E_OK ||
        dn != 73)
        return out;
    env[0] = 0x01;
    for (int i = 0; i < 8; i++) env[1 + i] = (uint8_t)(conv >> (56 - 8 * i));
    memcpy(env + 9, dist, 73);
    free(dist);
    if (e2e_session_encrypt(*s, env, sizeof env, &out.b, &out.n) != E2E_OK) out.b = NULL;
    return out;
}

/* The server decides who a device message says it is from. Another
 * identity key for a device bob already has a session with (which a real
 * device can never have) is refused, and the real session goes on. */
static void store_refuses_identity_change(void) {
    pc_e2e *bob = pc_e2e_new();
    CHECK(bob, "store");
    device alice, mallory;
    device_new(&alice, 1, 1);
    device_new(&mallory, 1, 1);
    e2e_sender_key *ka = NULL, *km = NULL;
    CHECK(e2e_sender_key_create(&ka) == E2E_OK && e2e_sender_key_create(&km) == E2E_OK, "sender keys");
    e2e_session *as = NULL, *ms = NULL;
    msg from_alice = key_envelope(&alice.id, bob, 0, 77, ka, &as);
    msg from_mallory = key_envelope(&mallory.id, bob, 1, 77, km, &ms);
    CHECK(from_alice.b && from_mallory.b, "envelopes");
    Parley__V1__DeviceMessage dm = PARLEY__V1__DEVICE_MESSAGE__INIT;
    dm.sender_user_id = 5;
    dm.sender_device_id = 1;
    dm.body.data = from_alice.b;
    dm.body.len = from_alice.n;
    CHECK(pc_e2e_handle_device_message(bob, &dm) == 0, "alice's sender key");
    dm.body.data = from_mallory.b;   /* the same sender ids, another identity */
    dm.body.len = from_mallory.n;
    int st = pc_e2e_handle_device_message(bob, &dm);
    CHECK(st == E2E_ERR_IDENTITY_CHANGED, "mallory as alice's device: %s", st ? e2e_strerror(st) : "accepted");
    /* alice's key is the one held: her group message reads, mallory's does not */
    uint8_t *ct = NULL, *pt = NULL;
    size_t ct_len = 0, n = 0;
    CHECK(e2e_sender_key_encrypt(ka, (const uint8_t *)"real", 4, &ct, &ct_len) == E2E_OK, "encrypt");
    Parley__V1__Message m = PARLEY__V1__MESSAGE__INIT;
    m.conversation_id = 77;
    m.sender_user_id = 5;
    m.sender_device_id = 1;
    m.body.data = ct;
    m.body.len = ct_len;
    st = pc_e2e_decrypt(bob, &m, &pt, &n);
    int ok = st == 0 && n == 4 && memcmp(pt, "real", 4) == 0;
    free(pt);
    free(ct);
    CHECK(ok, "alice's message: %s", e2e_strerror(st));
    CHECK(e2e_sender_key_encrypt(km, (const uint8_t *)"fake", 4, &ct, &ct_len) == E2E_OK, "encrypt");
    m.body.data = ct;
    m.body.len = ct_len;
    st = pc_e2e_decrypt(bob, &m, &pt, &n);
    free(pt);
    free(ct);
    CHECK(st == E2E_ERR_WRONG_KEY, "mallory's message: %s", st ? e2e_strerror(st) : "decrypted");
    msg_free(&from_alice);
    msg_free(&from_mallory);
    e2e_session_free(as);
    e2e_session_free(ms);
    e2e_sender_key_free(ka);
    e2e_sender_key_free(km);
    pc_e2e_free(bob);
}

/* ------------------------------------------------------------- vectors */

/* The test RNG: one stream per party. Each request takes whole 32-byte
 * blocks SHA-256(label || u32 counter) and logs them, so the vectors list
 * every random value a party used, in order. */
typedef struct stream {
    const char *label;
    uint32_t counter;
    uint8_t log[32][32];
    size_t n;
} stream;
static stream *rng_stream;

static void test_rng(void *buf, size_t len) {
    uint8_t *out = buf;
    while (len) {
        uint8_t block[32], in[64], ctr[4];
        size_t ll = strlen(rng_stream->label);
        e2e_put32(ctr, rng_stream->counter++);
        memcpy(in, rng_stream->label, ll);
        memcpy(in + ll, ctr, 4);
        crypto_hash_sha256(block, in, ll + 4);
        if (rng_stream->n < 32) memcpy(rng_stream->log[rng_stream->n++], block, 32);
        size_t n = len < 32 ? len : 32;
        memcpy(out, block, n);
        out += n;
        len -= n;
    }
}

typedef struct json {
    char *buf;
    size_t len;
    FILE *f;
    int first;                 /* no comma before the next member */
} json;

static void j_begin(json *j) {
    j->f = open_memstream(&j->buf, &j->len);
    fputs("{", j->f);
    j->first = 1;
}
static void j_key(json *j, const char *key) {
    fprintf(j->f, "%s\n  \"%s\": ", j->first ? "" : ",", key);
    j->first = 0;
}
static void j_hexval(json *j, const uint8_t *b, size_t n) {
    fputc('"', j->f);
    for (size_t i = 0; i < n; i++) fprintf(j->f, "%02x", b[i]);
    fputc('"', j->f);
}
static void j_hex(json *j, const char *key, const uint8_t *b, size_t n) {
    j_key(j, key);
    j_hexval(j, b, n);
}
static void j_str(json *j, const char *key, const char *v) {
    j_key(j, key);
    fprintf(j->f, "\"%s\"", v);
}
static void j_num(json *j, const char *key, unsigned long v) {
    j_key(j, key);
    fprintf(j->f, "%lu", v);
}
static void j_log(json *j, const char *key, const stream *s) {
    j_key(j, key);
    fputs("[", j->f);
    for (size_t i = 0; i < s->n; i++) {
        fputs(i ? ",\n    " : "\n    ", j->f);
        j_hexval(j, s->log[i], 32);
    }
    fputs("\n  ]", j->f);
}
static char *j_end(json *j) {
    fputs("\n}\n", j->f);
    fclose(j->f);
    return j->buf;
}

static void identity_fields(json *j, const char *who, const e2e_identity *id) {
    char k[64];
    uint8_t x[32];
    snprintf(k, sizeof k, "%s_identity_seed", who);
    j_hex(j, k, id->sk, 32);
    snprintf(k, sizeof k, "%s_identity_public", who);
    j_hex(j, k, id->pk, 32);
    e2e_identity_x25519_sk(x, id->sk);
    snprintf(k, sizeof k, "%s_identity_x25519_private", who);
    j_hex(j, k, x, 32);
    e2e_identity_x25519_pk(x, id->pk);
    snprintf(k, sizeof k, "%s_identity_x25519_public", who);
    j_hex(j, k, x, 32);
}

static stream alice_rng, bob_rng;

/* Alice and Bob as in every vector: alice random[0] = identity seed; bob
 * random[0] = identity seed, [1] = signed pre-key 7, [2] = one-time pre-key 42. */
static void vector_parties(device *a, device *b) {
    alice_rng = (stream){.label = "parley.e2e vectors alice"};
    bob_rng = (stream){.label = "parley.e2e vectors bob"};
    e2e_test_set_rng(test_rng);
    rng_stream = &alice_rng;
    e2e_identity_generate(&a->id);
    rng_stream = &bob_rng;
    e2e_identity_generate(&b->id);
    e2e_prekey_generate(&b->spk, 7);
    e2e_prekey_generate(&b->otk, 42);
    e2e_prekey_sign(&b->id, &b->spk, b->spk_sig);
}

static void bob_fields(json *j, const device *b) {
    identity_fields(j, "bob", &b->id);
    j_num(j, "bob_signed_prekey_id", b->spk.id);
    j_hex(j, "bob_signed_prekey_private", b->spk.sk, 32);
    j_hex(j, "bob_signed_prekey_public", b->spk.pk, 32);
    j_hex(j, "bob_signed_prekey_signature", b->spk_sig, 64);
    j_num(j, "bob_one_time_prekey_id", b->otk.id);
    j_hex(j, "bob_one_time_prekey_private", b->otk.sk, 32);
    j_hex(j, "bob_one_time_prekey_public", b->otk.pk, 32);
}

static char *vector_x3dh(void) {
    device a, b;
    vector_parties(&a, &b);
    uint8_t ek_pk[32], ek_sk[32], sk1[32], sk2[32], r1[32], r2[32];
    rng_stream = &alice_rng;
    e2e_dh_keypair(ek_pk, ek_sk);
    e2e_bundle with = bundle_of(&b, 1), without = bundle_of(&b, 0);
    int ok = e2e_x3dh_initiate(&a.id, ek_sk, &with, sk1) == E2E_OK &&
             e2e_x3dh_initiate(&a.id, ek_sk, &without, sk2) == E2E_OK &&
             e2e_x3dh_respond(&b.id, &b.spk, &b.otk, a.id.pk, ek_pk, r1) == E2E_OK &&
             e2e_x3dh_respond(&b.id, &b.spk, NULL, a.id.pk, ek_pk, r2) == E2E_OK && !memcmp(sk1, r1, 32) &&
             !memcmp(sk2, r2, 32);
    e2e_test_set_rng(NULL);
    if (!ok) return NULL;
    json j;
    j_begin(&j);
    j_str(&j, "description", "X3DH: SK = HKDF-SHA256(salt = 32 zero bytes, ikm = 32 0xFF bytes || DH1 || DH2 || DH3 "
                             "[|| DH4], info = 'parley.e2e x3dh v1', 32 bytes); identity keys are Ed25519, "
                             "converted to X25519 (libsodium crypto_sign_ed25519_*_to_curve25519)");
    identity_fields(&j, "alice", &a.id);
    bob_fields(&j, &b);
    j_hex(&j, "alice_ephemeral_private", ek_sk, 32);
    j_hex(&j, "alice_ephemeral_public", ek_pk, 32);
    j_hex(&j, "shared_secret_with_one_time_prekey", sk1, 32);
    j_hex(&j, "shared_secret_without_one_time_prekey", sk2, 32);
    j_log(&j, "alice_random", &alice_rng);
    j_log(&j, "bob_random", &bob_rng);
    return j_end(&j);
}

/* The exchange: each step is a send (its ciphertext) or a receive (its
 * plaintext), in the order they happen. */
typedef struct step {
    char party;            /* 'a' or 'b' */
    char op;               /* 's' send, 'r' receive */
    const char *id;        /* message name */
    const char *text;
} step;

static const step EXCHANGE[] = {
    {'a', 's', "A1", "Hello Bob, this is Alice."},
    {'a', 's', "A2", "A second message (it will arrive late)."},
    {'a', 's', "A3", "A third."},
    {'b', 'r', "A1", NULL},
    {'b', 'r', "A3", NULL},
    {'b', 's', "B1", "Hi Alice (arrives second)."},
    {'b', 's', "B2", "Bob again (arrives first)."},
    {'a', 'r', "B2", NULL},
    {'a', 'r', "B1", NULL},
    {'b', 'r', "A2", NULL},
    {'a', 's', "A4", "After a DH ratchet step."},
    {'b', 'r', "A4", NULL},
    {'b', 's', "B3", ""},
    {'a', 'r', "B3", NULL},
};
enum { EXCHANGE_LEN = sizeof EXCHANGE / sizeof EXCHANGE[0] };

static char *vector_ratchet(void) {
    device a, b;
    vector_parties(&a, &b);
    e2e_session *as = NULL, *bs = NULL;
    e2e_bundle bundle = bundle_of(&b, 1);
    rng_stream = &alice_rng;
    if (e2e_session_initiate(&as, &a.id, &bundle) != E2E_OK) return NULL;
    struct {
        const char *id, *text;
        msg m;
    } sent[EXCHANGE_LEN];
    size_t n_sent = 0;
    json j;
    j_begin(&j);
    j_str(&j, "description",
          "Double Ratchet exchange after the X3DH of x3dh.json (same keys); each party's random values in "
          "the order used: see README.md");
    identity_fields(&j, "alice", &a.id);
    bob_fields(&j, &b);
    j_key(&j, "steps");
    fputs("[", j.f);
    int ok = 1;
    for (size_t i = 0; i < EXCHANGE_LEN && ok; i++) {
        const step *st = &EXCHANGE[i];
        rng_stream = st->party == 'a' ? &alice_rng : &bob_rng;
        e2e_session *s = st->party == 'a' ? as : bs;
        fprintf(j.f, "%s\n    {\"party\": \"%s\", \"op\": \"%s\", \"message\": \"%s\", ", i ? "," : "",
                st->party == 'a' ? "alice" : "bob", st->op == 's' ? "send" : "receive", st->id);
        if (st->op == 's') {
            sent[n_sent].id = st->id;
            sent[n_sent].text = st->text;
            sent[n_sent].m = enc(s, st->text);
            ok = sent[n_sent].m.b != NULL;
            fprintf(j.f, "\"plaintext\": \"%s\", \"ciphertext\": ", st->text);
            if (ok) j_hexval(&j, sent[n_sent].m.b, sent[n_sent].m.n);
            n_sent++;
        } else {
            size_t k = 0;
            while (k < n_sent && strcmp(sent[k].id, st->id) != 0) k++;
            ok = k < n_sent;
            if (ok && !bs) {
                uint8_t *pt = NULL;
                size_t n = 0;
                ok = e2e_session_accept(&bs, &b.id, &b.spk, &b.otk, sent[k].m.b, sent[k].m.n, &pt, &n) == E2E_OK &&
                     n == strlen(sent[k].text) && memcmp(pt, sent[k].text, n) == 0;
                free(pt);
            } else if (ok) {
                ok = dec(s, sent[k].m, sent[k].text) == E2E_OK;
            }
            fprintf(j.f, "\"plaintext\": \"%s\"", ok ? sent[k].text : "?");
        }
        fputs("}", j.f);
    }
    fputs("\n  ]", j.f);
    j_log(&j, "alice_random", &alice_rng);
    j_log(&j, "bob_random", &bob_rng);
    e2e_test_set_rng(NULL);
    for (size_t i = 0; i < n_sent; i++) msg_free(&sent[i].m);
    e2e_session_free(as);
    e2e_session_free(bs);
    char *out = j_end(&j);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

static char *vector_sender_keys(void) {
    stream s = {.label = "parley.e2e vectors sender"};
    e2e_test_set_rng(test_rng);
    rng_stream = &s;
    e2e_sender_key *own = NULL;
    int ok = e2e_sender_key_create(&own) == E2E_OK;   /* random[0]: key id (first 4 bytes), [1] chain key, [2] signing seed */
    e2e_test_set_rng(NULL);
    if (!ok) return NULL;
    e2e_sender_key *rcv = receiver_of(own);
    uint8_t *dist = NULL;
    size_t dist_n = 0;
    ok = rcv && e2e_sender_key_distribution(own, &dist, &dist_n) == E2E_OK;
    json j;
    j_begin(&j);
    j_str(&j, "description", "Sender Keys: distribution message, chain steps (message key, next chain key), "
                             "messages; received in the order of receive_order");
    j_log(&j, "sender_random", &s);
    j_num(&j, "key_id", e2e_sender_key_id(own));
    j_hex(&j, "chain_key", s.log[1], 32);
    j_hex(&j, "signing_seed", s.log[2], 32);
    if (ok) j_hex(&j, "distribution", dist, dist_n);
    /* the chain: what KDF_CK gives at each iteration */
    uint8_t ck[32], mk[32];
    memcpy(ck, s.log[1], 32);
    j_key(&j, "chain");
    fputs("[", j.f);
    for (int i = 0; i < 4; i++) {
        e2e_kdf_ck(ck, mk);
        fprintf(j.f, "%s\n    {\"iteration\": %d, \"message_key\": ", i ? "," : "", i);
        j_hexval(&j, mk, 32);
        fputs(", \"next_chain_key\": ", j.f);
        j_hexval(&j, ck, 32);
        fputs("}", j.f);
    }
    fputs("\n  ]", j.f);
    static const char *texts[4] = {"group message 0", "group message 1", "", "group message 3"};
    smsg m[4] = {{0}};
    j_key(&j, "messages");
    fputs("[", j.f);
    for (int i = 0; i < 4 && ok; i++) {
        ok = e2e_sender_key_encrypt(own, (const uint8_t *)texts[i], strlen(texts[i]), &m[i].b, &m[i].n) == E2E_OK;
        fprintf(j.f, "%s\n    {\"iteration\": %d, \"plaintext\": \"%s\", \"ciphertext\": ", i ? "," : "", i,
                texts[i]);
        if (ok) j_hexval(&j, m[i].b, m[i].n);
        fputs("}", j.f);
    }
    fputs("\n  ]", j.f);
    static const int order[4] = {2, 0, 3, 1};
    j_key(&j, "receive_order");
    fputs("[2, 0, 3, 1]", j.f);
    for (int i = 0; i < 4 && ok; i++) ok = sdec(rcv, m[order[i]], texts[order[i]]) == E2E_OK;
    for (int i = 0; i < 4; i++) free(m[i].b);
    free(dist);
    e2e_sender_key_free(own);
    e2e_sender_key_free(rcv);
    char *out = j_end(&j);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

static const struct {
    const char *file;
    char *(*make)(void);
} VECTORS[] = {
    {"x3dh.json", vector_x3dh},
    {"ratchet.json", vector_ratchet},
    {"sender_keys.json", vector_sender_keys},
};

static int write_vectors(const char *dir) {
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
        char *text = VECTORS[i].make();
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, VECTORS[i].file);
        FILE *f = text ? fopen(path, "w") : NULL;
        if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "cannot make %s\n", path);
            free(text);
            return 1;
        }
        printf("wrote %s\n", path);
        free(text);
    }
    return 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

/* The committed vectors are what this code makes from the same randomness. */
static void vectors_match(void) {
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/vectors/%s", PARLEY_SOURCE_DIR, VECTORS[i].file);
        char *want = read_file(path), *got = VECTORS[i].make();
        int same = want && got && strcmp(want, got) == 0;
        if (!same && got) fprintf(stderr, "  made now:\n%s\n", got);
        free(want);
        free(got);
        CHECK(same, "%s: the code no longer makes the committed vector (or could not make it)", path);
    }
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) return 1;
    if (argc == 3 && strcmp(argv[1], "--write-vectors") == 0) return write_vectors(argv[2]);
    RUN(out_of_order_and_lost);
    RUN(skipped_keys_bounded);
    RUN(tampered_refused);
    RUN(replay_refused);
    RUN(state_round_trip);
    RUN(reset_peer_new_session);
    RUN(exhausted_and_bad_bundles);
    RUN(safety_numbers);
    RUN(garbage_refused);
    RUN(sender_keys_behaviour);
    RUN(store_refuses_identity_change);
    RUN(vectors_match);
    CHECK_EXIT();
}
