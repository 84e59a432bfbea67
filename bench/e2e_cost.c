/* e2e_cost.c -- parley-e2e-cost: what end-to-end encryption costs one CPU
 * core, per message, with client/e2e (no network, no server):
 *   - 1:1 (Double Ratchet): encrypt, decrypt, and a message that turns the
 *     ratchet (the reply direction: two X25519 per message)
 *   - group (Sender Keys): encrypt once, decrypt per receiving device
 *   - a rotation in a group of N member devices (a member left): a new
 *     sender key handed to each over an existing pairwise session; and the
 *     same when every session is new (X3DH first)
 * Usage: parley-e2e-cost [N=250] [MESSAGES=20000]. Figures are medians of 5
 * runs, in microseconds of this thread's CPU time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "e2e/e2e.h"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);   /* CPU time: the machine may be shared */
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median5(double v[5]) {
    qsort(v, 5, sizeof v[0], cmp);
    return v[2];
}

typedef struct device {
    e2e_identity id;
    e2e_prekey spk, otk;
    uint8_t sig[64];
} device;

static void device_new(device *d) {
    e2e_identity_generate(&d->id);
    e2e_prekey_generate(&d->spk, 1);
    e2e_prekey_generate(&d->otk, 2);
    e2e_prekey_sign(&d->id, &d->spk, d->sig);
}

static e2e_bundle bundle_of(const device *d) {
    e2e_bundle b = {0};
    memcpy(b.identity, d->id.pk, 32);
    b.spk_id = 1;
    memcpy(b.spk, d->spk.pk, 32);
    memcpy(b.spk_sig, d->sig, 64);
    b.has_otk = true;
    b.otk_id = 2;
    memcpy(b.otk, d->otk.pk, 32);
    return b;
}

/* A pair of sessions, a -> b established (b accepted a's first message). */
static int pair(e2e_session **as, e2e_session **bs) {
    device a, b;
    device_new(&a);
    device_new(&b);
    e2e_bundle bb = bundle_of(&b);
    uint8_t *m = NULL, *pt = NULL;
    size_t n = 0, pn = 0;
    if (e2e_session_initiate(as, &a.id, &bb) || e2e_session_encrypt(*as, (const uint8_t *)"x", 1, &m, &n) ||
        e2e_session_accept(bs, &b.id, &b.spk, &b.otk, m, n, &pt, &pn))
        return -1;
    free(m);
    free(pt);
    /* one answer, so a stops sending the X3DH header */
    if (e2e_session_encrypt(*bs, (const uint8_t *)"y", 1, &m, &n) || e2e_session_decrypt(*as, m, n, &pt, &pn)) return -1;
    free(m);
    free(pt);
    return 0;
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) return 1;
    int members = argc > 1 ? atoi(argv[1]) : 250;
    int msgs = argc > 2 ? atoi(argv[2]) : 20000;
    if (members < 1 || members > 100000 || msgs < 10 || msgs > 10000000) {
        fprintf(stderr, "usage: parley-e2e-cost [MEMBERS 1..100000] [MESSAGES 10..10000000]\n");
        return 2;
    }
    uint8_t text[100];
    randombytes_buf(text, sizeof text);
    uint8_t **ct = calloc((size_t)msgs, sizeof *ct);
    size_t *ct_len = calloc((size_t)msgs, sizeof *ct_len);
    if (!ct || !ct_len) return 1;
    double enc1[5], dec1[5], turn[5], encg[5], decg[5], rot[5], rot_new[5];
    for (int run = 0; run < 5; run++) {
        e2e_session *as = NULL, *bs = NULL;
        if (pair(&as, &bs)) return 1;
        double t0 = now_us();
        for (int i = 0; i < msgs; i++) e2e_session_encrypt(as, text, sizeof text, &ct[i], &ct_len[i]);
        double t1 = now_us();
        for (int i = 0; i < msgs; i++) {
            uint8_t *pt = NULL;
            size_t n = 0;
            if (e2e_session_decrypt(bs, ct[i], ct_len[i], &pt, &n)) return 1;
            free(pt);
            free(ct[i]);
        }
        double t2 = now_us();
        enc1[run] = (t1 - t0) / msgs;
        dec1[run] = (t2 - t1) / msgs;
        /* ping-pong: every message turns the ratchet (encrypt + decrypt) */
        int turns = msgs / 10;
        double t3 = now_us();
        for (int i = 0; i < turns; i++) {
            e2e_session *from = i % 2 ? as : bs, *to = i % 2 ? bs : as;
            uint8_t *m = NULL, *pt = NULL;
            size_t n = 0, pn = 0;
            if (e2e_session_encrypt(from, text, sizeof text, &m, &n) || e2e_session_decrypt(to, m, n, &pt, &pn)) return 1;
            free(m);
            free(pt);
        }
        turn[run] = (now_us() - t3) / turns;
        e2e_session_free(as);
        e2e_session_free(bs);

        e2e_sender_key *own = NULL, *rcv = NULL;
        uint8_t *d = NULL;
        size_t dn = 0;
        if (e2e_sender_key_create(&own) || e2e_sender_key_distribution(own, &d, &dn) ||
            e2e_sender_key_from_distribution(&rcv, d, dn))
            return 1;
        double t4 = now_us();
        for (int i = 0; i < msgs; i++) e2e_sender_key_encrypt(own, text, sizeof text, &ct[i], &ct_len[i]);
        double t5 = now_us();
        for (int i = 0; i < msgs; i++) {
            uint8_t *pt = NULL;
            size_t n = 0;
            if (e2e_sender_key_decrypt(rcv, ct[i], ct_len[i], &pt, &n)) return 1;
            free(pt);
            free(ct[i]);
        }
        double t6 = now_us();
        encg[run] = (t5 - t4) / msgs;
        decg[run] = (t6 - t5) / msgs;
        e2e_sender_key_free(rcv);

        /* rotation to `members` devices: existing sessions, then new ones */
        e2e_session **s = calloc((size_t)members, sizeof *s), **r = calloc((size_t)members, sizeof *r);
        if (!s || !r) return 1;
        for (int i = 0; i < members; i++)
            if (pair(&s[i], &r[i])) return 1;
        double t7 = now_us();
        e2e_sender_key *fresh = NULL;
        e2e_sender_key_create(&fresh);
        uint8_t *fd = NULL;
        size_t fdn = 0;
        e2e_sender_key_distribution(fresh, &fd, &fdn);
        for (int i = 0; i < members; i++) {
            uint8_t *m = NULL;
            size_t n = 0;
            e2e_session_encrypt(s[i], fd, fdn, &m, &n);
            free(m);
        }
        double t8 = now_us();
        rot[run] = t8 - t7;
        device *peers = calloc((size_t)members, sizeof *peers);
        if (!peers) return 1;
        for (int i = 0; i < members; i++) device_new(&peers[i]);
        device me;
        device_new(&me);
        double t9 = now_us();
        for (int i = 0; i < members; i++) {
            e2e_bundle b = bundle_of(&peers[i]);
            e2e_session *ns = NULL;
            uint8_t *m = NULL;
            size_t n = 0;
            if (e2e_session_initiate(&ns, &me.id, &b) || e2e_session_encrypt(ns, fd, fdn, &m, &n)) return 1;
            free(m);
            e2e_session_free(ns);
        }
        rot_new[run] = now_us() - t9;
        for (int i = 0; i < members; i++) {
            e2e_session_free(s[i]);
            e2e_session_free(r[i]);
        }
        free(s);
        free(r);
        free(peers);
        free(d);
        free(fd);
        e2e_sender_key_free(own);
        e2e_sender_key_free(fresh);
    }
    printf("e2e cost per message (100-byte plaintext, CPU time of one core, median of 5 runs of %d)\n", msgs);
    printf("  1:1 encrypt                         %8.2f us\n", median5(enc1));
    printf("  1:1 decrypt                         %8.2f us\n", median5(dec1));
    printf("  1:1 reply turning the ratchet       %8.2f us (encrypt + decrypt)\n", median5(turn));
    printf("  group encrypt (any group size)      %8.2f us\n", median5(encg));
    printf("  group decrypt (per member device)   %8.2f us\n", median5(decg));
    printf("  rotation to %d devices, sessions exist  %8.0f us\n", members, median5(rot));
    printf("  rotation to %d devices, X3DH first      %8.0f us\n", members, median5(rot_new));
    free(ct);
    free(ct_len);
    return 0;
}
