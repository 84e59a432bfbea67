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

int main(int argc, char **argv) {
    if (sodium_init() < 0) return 1;
    (void)argc;
    (void)argv;
    RUN(out_of_order_and_lost);
    RUN(skipped_keys_bounded);
    RUN(tampered_refused);
    RUN(replay_refused);
    RUN(state_round_trip);
    RUN(reset_peer_new_session);
    RUN(exhausted_and_bad_bundles);
    RUN(safety_numbers);
    RUN(sender_keys_behaviour);
    CHECK_EXIT();
}
