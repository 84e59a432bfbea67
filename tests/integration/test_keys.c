/* test_keys.c -- the key directory, device lists and device messages, end to
 * end through libparley against the real server:
 *   - upload and fetch: one bundle per device with its identity key, signed
 *     pre-key and a one-time pre-key; bad uploads are refused
 *   - 100 connections claim one user's one-time pre-keys at the same moment:
 *     no key goes to two claimers, and exactly min(100, uploaded) are
 *     handed out per device; KeysLow reaches the device that runs low
 *   - device list: the change counter moves on link and remove, and
 *     DeviceListChanged reaches a contact; a removed device cannot sign in
 *   - strangers get FORBIDDEN for keys, devices and device messages
 *   - device messages: delivered once live, delivered again after a
 *     reconnect while not acked, gone once acked, deduped by queue_seq
 *   - uploads: every key exactly 32 bytes; the signed pre-key's Ed25519
 *     signature by the identity key verified (refused otherwise). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "../check.h"
#include "harness.h"

enum {
    WAIT_MS = 15000,
    CLAIMERS = 100,
    MANY_KEYS = 150,            /* more than CLAIMERS: every claimer gets one */
    FEW_KEYS = 60,              /* fewer: 40 claimers get none */
    MAX_SEEN = 64,
};

static h_server S;

/* ------------------------------------------------------------- helpers */

static void fill(uint8_t *b, size_t n, uint8_t tag) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(tag * 31 + i);
}

/* Uploads identity (32 bytes, tagged), a signed pre-key and n one-time keys
 * with ids first..first+n-1, in batches of 200. Returns the remaining count
 * from the last answer, or -1. */
static long upload(h_dev *d, uint8_t tag, uint32_t first, size_t n) {
    uint8_t ik[32], spk[32], sig[64];
    h_test_keys(tag, ik, spk, sig);
    pc_prekey signed_pk = {7, spk, sizeof spk, sig, sizeof sig};
    static uint8_t keys[200][32];
    pc_prekey otk[200];
    uint32_t remaining = 0;
    size_t done = 0;
    do {
        size_t batch = n - done > 200 ? 200 : n - done;
        for (size_t i = 0; i < batch; i++) {
            uint32_t id = first + (uint32_t)(done + i);
            fill(keys[i], 32, (uint8_t)id);
            keys[i][0] = (uint8_t)(id >> 8);
            otk[i] = (pc_prekey){id, keys[i], 32, NULL, 0};
        }
        if (pc_upload_keys(d->c, ik, sizeof ik, &signed_pk, otk, batch, &remaining) != 0) {
            fprintf(stderr, "  pc_upload_keys %s: %s (status %d)\n", d->name, pc_error(d->c), pc_status(d->c));
            return -1;
        }
        done += batch;
    } while (done < n);
    return remaining;
}

static const Parley__V1__DeviceBundle *bundle_of(const Parley__V1__KeyBundles *kb, uint32_t device) {
    for (size_t i = 0; i < kb->n_devices; i++)
        if (kb->devices[i]->device_id == device) return kb->devices[i];
    return NULL;
}

/* ------------------------------------------------------- upload / fetch */

static void keys_upload_and_fetch(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    h_dev *alice2 = h_device_link(&S, alice);
    CHECK(alice2, "alice's second device");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));

    /* one-time keys before any identity key: refused */
    uint8_t k[32];
    fill(k, sizeof k, 9);
    pc_prekey lone = {1, k, sizeof k, NULL, 0};
    CHECK(pc_upload_keys(alice->c, NULL, 0, NULL, &lone, 1, NULL) != 0 &&
          pc_status(alice->c) == PARLEY__V1__STATUS__BAD_REQUEST, "keys before the identity key: status %d",
          pc_status(alice->c));

    CHECK(upload(alice, 1, 100, 5) == 5, "alice's upload");
    CHECK(upload(alice2, 2, 200, 3) == 3, "alice2's upload");
    /* the same identity again is fine; another one is a conflict */
    uint32_t left = 0;
    uint8_t ik[32], spk[32], sig[64];
    h_test_keys(1, ik, spk, sig);
    CHECK(pc_upload_keys(alice->c, ik, sizeof ik, NULL, NULL, 0, &left) == 0 && left == 5,
          "same identity again: %s, %u left", pc_error(alice->c), left);
    h_test_keys(3, ik, spk, sig);
    CHECK(pc_upload_keys(alice->c, ik, sizeof ik, NULL, NULL, 0, &left) != 0 &&
          pc_status(alice->c) == PARLEY__V1__STATUS__CONFLICT, "a new identity key: status %d",
          pc_status(alice->c));

    uint32_t first_ids[2] = {0, 0};
    for (int round = 0; round < 2; round++) {
        Parley__V1__KeyBundles *kb = NULL;
        CHECK(pc_fetch_keys(bob->c, alice->id.user_id, &kb) == 0, "fetch: %s", pc_error(bob->c));
        int ok = kb->user_id == alice->id.user_id && kb->n_devices == 2;
        const Parley__V1__DeviceBundle *b1 = bundle_of(kb, alice->id.device_id);
        const Parley__V1__DeviceBundle *b2 = bundle_of(kb, alice2->id.device_id);
        uint8_t want_ik[32], want_spk[32], want_sig[64];
        h_test_keys(1, want_ik, want_spk, want_sig);
        ok = ok && b1 && b2 && b1->identity_key.len == 32 && !memcmp(b1->identity_key.data, want_ik, 32) &&
             b1->signed_pre_key && b1->signed_pre_key->key_id == 7 && b1->signed_pre_key->public_key.len == 32 &&
             !memcmp(b1->signed_pre_key->public_key.data, want_spk, 32) &&
             b1->signed_pre_key->signature.len == 64 && b1->one_time_pre_key && b2->one_time_pre_key &&
             b1->one_time_pre_key->key_id >= 100 && b1->one_time_pre_key->key_id < 105 &&
             b1->one_time_pre_key->public_key.len == 32 && b2->one_time_pre_key->key_id >= 200 &&
             b2->one_time_pre_key->key_id < 203;
        uint32_t id1 = ok ? b1->one_time_pre_key->key_id : 0, id2 = ok ? b2->one_time_pre_key->key_id : 0;
        parley__v1__key_bundles__free_unpacked(kb, NULL);
        CHECK(ok, "round %d: the bundles are not what was uploaded", round);
        if (round == 0) {
            first_ids[0] = id1;
            first_ids[1] = id2;
        } else {
            CHECK(id1 != first_ids[0] && id2 != first_ids[1], "a one-time pre-key was handed out twice");
        }
    }
    /* two claims left alice's first device 3 keys */
    CHECK(pc_upload_keys(alice->c, NULL, 0, NULL, NULL, 0, &left) == 0 && left == 3, "%u keys left, want 3", left);
    h_dev_free(alice2);
    h_dev_free(alice);
    h_dev_free(bob);
}

/* ------------------------------------------------ concurrent claiming */

typedef struct claimer {
    h_dev *d;
    uint64_t target;
    pthread_barrier_t *start;
    int ok;
    uint32_t ids[2];            /* the one-time key ids got, per target device (0: none) */
    uint32_t devices[2];
    size_t n;
    char err[160];
} claimer;

static void *claim_main(void *arg) {
    claimer *c = arg;
    pthread_barrier_wait(c->start);
    Parley__V1__KeyBundles *kb = NULL;
    if (pc_fetch_keys(c->d->c, c->target, &kb) != 0) {
        snprintf(c->err, sizeof c->err, "%s (status %d)", pc_error(c->d->c), pc_status(c->d->c));
        return NULL;
    }
    for (size_t i = 0; i < kb->n_devices && c->n < 2; i++) {
        c->devices[c->n] = kb->devices[i]->device_id;
        c->ids[c->n] = kb->devices[i]->one_time_pre_key ? kb->devices[i]->one_time_pre_key->key_id : 0;
        c->n++;
    }
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    c->ok = 1;
    return NULL;
}

static uint32_t keys_low_last = UINT32_MAX;
static int keys_low_count;
static void on_keys_low(void *ud, uint32_t left) {
    (void)ud;
    keys_low_last = left;
    keys_low_count++;
}

static int pred_keys_low_zero(void *ud) {
    (void)ud;
    return keys_low_count > 0 && keys_low_last == 0;
}

static void one_time_keys_claimed_once(void) {
    h_dev *target = h_user_new(&S, NULL);
    CHECK(target, "target user");
    h_dev *target2 = h_device_link(&S, target);
    CHECK(target2, "target's second device");
    CHECK(upload(target, 4, 1000, MANY_KEYS) == MANY_KEYS, "upload %d", MANY_KEYS);
    CHECK(upload(target2, 5, 5000, FEW_KEYS) == FEW_KEYS, "upload %d", FEW_KEYS);
    pc_on_keys_low(target2->c, on_keys_low, NULL);
    CHECK(h_dev_sync(target2, WAIT_MS) == 0, "target2 sync");

    claimer *cl = h_calloc(CLAIMERS, sizeof *cl);
    uint64_t *ids = h_calloc(CLAIMERS, sizeof *ids);
    CHECK(cl && ids, "oom");
    for (int i = 0; i < CLAIMERS; i++) {
        cl[i].d = h_user_new(&S, NULL);
        CHECK(cl[i].d, "claimer %d", i);
        ids[i] = cl[i].d->id.user_id;
    }
    uint64_t group;
    CHECK(pc_create_group(target->c, "claimers", ids, CLAIMERS, &group) == 0, "group: %s", pc_error(target->c));

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CLAIMERS);
    pthread_t th[CLAIMERS];
    int started = 0;
    for (int i = 0; i < CLAIMERS; i++) {
        cl[i].target = target->id.user_id;
        cl[i].start = &start;
        if (pthread_create(&th[i], NULL, claim_main, &cl[i]) == 0) started++;
    }
    /* a thread that did not start would hold the others at the barrier */
    CHECK(started == CLAIMERS, "started %d threads", started);
    for (int i = 0; i < CLAIMERS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    /* per target device: the claimed ids, no duplicates */
    uint32_t devs[2] = {target->id.device_id, target2->id.device_id};
    uint32_t first_id[2] = {1000, 5000};
    size_t uploaded[2] = {MANY_KEYS, FEW_KEYS};
    for (int d = 0; d < 2; d++) {
        unsigned char *taken = h_calloc(uploaded[d], 1);
        CHECK(taken, "oom");
        size_t got = 0, none = 0;
        for (int i = 0; i < CLAIMERS; i++) {
            CHECK(cl[i].ok, "claimer %d: %s", i, cl[i].err);
            CHECK(cl[i].n == 2, "claimer %d got %zu bundles, want 2", i, cl[i].n);
            uint32_t id = 0;
            int found = 0;
            for (size_t j = 0; j < cl[i].n; j++)
                if (cl[i].devices[j] == devs[d]) {
                    id = cl[i].ids[j];
                    found = 1;
                }
            CHECK(found, "claimer %d: no bundle for device %u", i, devs[d]);
            if (id == 0) {
                none++;
                continue;
            }
            CHECK(id >= first_id[d] && id < first_id[d] + uploaded[d], "claimer %d: key id %u never uploaded", i, id);
            CHECK(!taken[id - first_id[d]], "key %u of device %u handed out twice", id, devs[d]);
            taken[id - first_id[d]] = 1;
            got++;
        }
        size_t want = uploaded[d] < CLAIMERS ? uploaded[d] : CLAIMERS;
        CHECK(got == want, "device %u: %zu distinct keys handed out, want %zu (%zu got none)", devs[d], got, want,
              none);
        h_free(taken);
    }
    /* what is left on the server agrees */
    uint32_t left = 0;
    CHECK(pc_upload_keys(target->c, NULL, 0, NULL, NULL, 0, &left) == 0 && left == MANY_KEYS - CLAIMERS,
          "first device: %u keys left, want %d", left, MANY_KEYS - CLAIMERS);

    /* the device that ran out heard about it */
    h_dev *one[1] = {target2};
    CHECK(h_pump(one, 1, pred_keys_low_zero, NULL, WAIT_MS), "no KeysLow(0) (%d pushes, last %u)",
          keys_low_count, keys_low_last);

    for (int i = 0; i < CLAIMERS; i++) h_dev_free(cl[i].d);
    h_free(cl);
    h_free(ids);
    h_dev_free(target2);
    h_dev_free(target);
}

/* --------------------------------------------------------- device list */

typedef struct list_change {
    uint64_t user, counter;
} list_change;
static list_change changes[MAX_SEEN];
static size_t n_changes;
static void on_list_changed(void *ud, uint64_t user, uint64_t counter) {
    (void)ud;
    if (n_changes < MAX_SEEN) changes[n_changes++] = (list_change){user, counter};
}

typedef struct change_goal {
    uint64_t user, counter;
} change_goal;
static int pred_change(void *ud) {
    const change_goal *g = ud;
    for (size_t i = 0; i < n_changes; i++)
        if (changes[i].user == g->user && changes[i].counter == g->counter) return 1;
    return 0;
}

/* GetDevices of user as d sees it: 0, counter and ids filled; -1 otherwise. */
static int devices_of(h_dev *d, uint64_t user, uint64_t *counter, uint32_t *ids, size_t cap, size_t *n) {
    Parley__V1__DeviceList *l = NULL;
    if (pc_get_devices(d->c, user, &l) != 0) {
        fprintf(stderr, "  pc_get_devices: %s (status %d)\n", pc_error(d->c), pc_status(d->c));
        return -1;
    }
    *counter = l->change_counter;
    *n = 0;
    for (size_t i = 0; i < l->n_device_ids && *n < cap; i++) ids[(*n)++] = l->device_ids[i];
    parley__v1__device_list__free_unpacked(l, NULL);
    return 0;
}

static void device_list_changes(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    n_changes = 0;
    pc_on_device_list_changed(bob->c, on_list_changed, NULL);
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "bob sync");

    uint64_t c0, c1, c2, own;
    uint32_t ids[8];
    size_t n;
    CHECK(devices_of(bob, alice->id.user_id, &c0, ids, 8, &n) == 0, "devices");
    CHECK(n == 1 && ids[0] == alice->id.device_id, "%zu devices at first", n);
    CHECK(devices_of(alice, 0, &own, ids, 8, &n) == 0 && own == c0 && n == 1, "own list");

    h_dev *alice2 = h_device_link(&S, alice);
    CHECK(alice2, "link");
    CHECK(devices_of(bob, alice->id.user_id, &c1, ids, 8, &n) == 0, "devices after link");
    CHECK(c1 > c0 && n == 2, "after link: counter %llu (was %llu), %zu devices", (unsigned long long)c1,
          (unsigned long long)c0, n);
    change_goal g1 = {alice->id.user_id, c1};
    h_dev *one[1] = {bob};
    CHECK(h_pump(one, 1, pred_change, &g1, WAIT_MS), "bob: no DeviceListChanged(%llu) after link",
          (unsigned long long)c1);

    /* a device cannot remove itself */
    CHECK(pc_remove_device(alice->c, alice->id.device_id) != 0 &&
          pc_status(alice->c) == PARLEY__V1__STATUS__BAD_REQUEST, "self removal: status %d", pc_status(alice->c));
    CHECK(pc_remove_device(alice->c, alice2->id.device_id) == 0, "remove: %s", pc_error(alice->c));
    CHECK(devices_of(bob, alice->id.user_id, &c2, ids, 8, &n) == 0, "devices after remove");
    CHECK(c2 > c1 && n == 1 && ids[0] == alice->id.device_id, "after remove: counter %llu (was %llu), %zu devices",
          (unsigned long long)c2, (unsigned long long)c1, n);
    change_goal g2 = {alice->id.user_id, c2};
    CHECK(h_pump(one, 1, pred_change, &g2, WAIT_MS), "bob: no DeviceListChanged(%llu) after remove",
          (unsigned long long)c2);
    /* removing it again: it is gone */
    CHECK(pc_remove_device(alice->c, alice2->id.device_id) != 0 &&
          pc_status(alice->c) == PARLEY__V1__STATUS__NOT_FOUND, "second removal: status %d", pc_status(alice->c));
    /* the removed device can no longer sign in */
    h_dev_disconnect(alice2);
    pc_options o;
    h_client_options(&S, &o);
    pc_client *c = pc_new(&o);
    CHECK(c, "pc_new");
    int rc = pc_connect(c) == 0 ? pc_sign_in(c, &alice2->id) : -2;
    int st = pc_status(c);
    pc_close(c);
    pc_free(c);
    CHECK(rc == -1 && st == PARLEY__V1__STATUS__UNAUTHENTICATED, "removed device signs in: rc %d status %d", rc, st);
    h_dev_free(alice2);
    h_dev_free(alice);
    h_dev_free(bob);
}

static void strangers_forbidden(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *eve = h_user_new(&S, NULL);
    CHECK(alice && eve, "users");
    CHECK(upload(alice, 6, 1, 3) == 3, "upload");
    Parley__V1__KeyBundles *kb = NULL;
    CHECK(pc_fetch_keys(eve->c, alice->id.user_id, &kb) != 0 && pc_status(eve->c) == PARLEY__V1__STATUS__FORBIDDEN,
          "stranger FetchKeys: status %d", pc_status(eve->c));
    Parley__V1__DeviceList *dl = NULL;
    CHECK(pc_get_devices(eve->c, alice->id.user_id, &dl) != 0 && pc_status(eve->c) == PARLEY__V1__STATUS__FORBIDDEN,
          "stranger GetDevices: status %d", pc_status(eve->c));
    uint64_t q = 0;
    CHECK(pc_send_device_message(eve->c, alice->id.user_id, alice->id.device_id, "x", 1, &q) != 0 &&
              pc_status(eve->c) == PARLEY__V1__STATUS__FORBIDDEN,
          "stranger SendDeviceMessage: status %d", pc_status(eve->c));
    /* nothing was claimed by the refused fetch; one's own keys are fine to fetch */
    CHECK(pc_fetch_keys(alice->c, alice->id.user_id, &kb) == 0, "own FetchKeys: %s", pc_error(alice->c));
    int own_ok = kb->n_devices == 1 && kb->devices[0]->one_time_pre_key != NULL;
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    CHECK(own_ok, "own bundle");
    uint32_t left = 0;
    CHECK(pc_upload_keys(alice->c, NULL, 0, NULL, NULL, 0, &left) == 0 && left == 2, "%u left, want 2", left);
    h_dev_free(alice);
    h_dev_free(eve);
}

/* ----------------------------------------------------- device messages */

typedef struct dm_rec {
    uint64_t queue_seq[MAX_SEEN];
    uint64_t sender[MAX_SEEN];
    uint32_t sender_device[MAX_SEEN];
    char body[MAX_SEEN][32];
    size_t n;
    int forget;                 /* forget it in the callback: the ack says 0 (nothing is
                                   deleted) and a second copy is not deduped by the client */
    pc_client *c;
} dm_rec;

static void on_dm(void *ud, const Parley__V1__DeviceMessage *m) {
    dm_rec *r = ud;
    if (r->n < MAX_SEEN) {
        r->queue_seq[r->n] = m->queue_seq;
        r->sender[r->n] = m->sender_user_id;
        r->sender_device[r->n] = m->sender_device_id;
        snprintf(r->body[r->n], sizeof r->body[r->n], "%.*s", (int)(m->body.len < 31 ? m->body.len : 31),
                 (const char *)m->body.data);
        r->n++;
    }
    if (r->forget) pc_set_device_messages_seen(r->c, 0);
}

typedef struct dm_goal {
    const dm_rec *r;
    size_t n;
} dm_goal;
static int pred_dm(void *ud) {
    const dm_goal *g = ud;
    return g->r->n >= g->n;
}

/* A device of id whose client never reconnects, recording device messages. */
static h_dev *device_no_reconnect(const pc_identity *id, dm_rec *rec) {
    h_dev *d = h_dev_for_identity(&S, id, "no-reconnect", 0);
    if (!d) return NULL;
    /* replace the harness's client with one that gives up at the first loss */
    pc_close(d->c);
    pc_free(d->c);
    pc_options o;
    h_client_options(&S, &o);
    o.max_reconnects = 0;
    d->c = pc_new(&o);
    if (!d->c || pc_connect(d->c) != 0 || pc_sign_in(d->c, id) != 0) {
        h_dev_free(d);
        return NULL;
    }
    rec->c = d->c;
    pc_on_device_message(d->c, on_dm, rec);
    return d;
}

static void device_messages(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    pc_identity bob_id = bob->id;
    h_dev_free(bob);

    /* live, once; the device forgets it in the callback, so it is not acked
     * and a copy sent again on this connection would show */
    static dm_rec r1;
    memset(&r1, 0, sizeof r1);
    r1.forget = 1;
    h_dev *b1 = device_no_reconnect(&bob_id, &r1);
    CHECK(b1, "bob's device");
    CHECK(pc_start_sync(b1->c) == 0, "sync: %s", pc_error(b1->c));
    uint64_t q1 = 0;
    CHECK(pc_send_device_message(alice->c, bob_id.user_id, bob_id.device_id, "envelope-1", 10, &q1) == 0 && q1 > 0,
          "send: %s", pc_error(alice->c));
    h_dev *one[1] = {b1};
    dm_goal g1 = {&r1, 1};
    CHECK(h_pump(one, 1, pred_dm, &g1, WAIT_MS), "no live device message");
    /* a round trip through the accounts owner on the same connection:
     * whatever it pushed for the message went out before its answer */
    CHECK(h_accounts_barrier(b1) == 0, "barrier");
    CHECK(r1.n == 1, "%zu deliveries, want 1", r1.n);
    CHECK(r1.queue_seq[0] == q1 && r1.sender[0] == alice->id.user_id && r1.sender_device[0] == alice->id.device_id &&
              strcmp(r1.body[0], "envelope-1") == 0,
          "got queue_seq %llu sender %llu/%u body '%s'", (unsigned long long)r1.queue_seq[0],
          (unsigned long long)r1.sender[0], r1.sender_device[0], r1.body[0]);
    h_dev_free(b1);

    /* not acked: after a reconnect it comes again, with one sent meanwhile */
    uint64_t q2 = 0;
    CHECK(pc_send_device_message(alice->c, bob_id.user_id, bob_id.device_id, "envelope-2", 10, &q2) == 0 && q2 > q1,
          "send 2: %s (q %llu)", pc_error(alice->c), (unsigned long long)q2);
    static dm_rec r2;
    memset(&r2, 0, sizeof r2);
    h_dev *b2 = device_no_reconnect(&bob_id, &r2);
    CHECK(b2, "bob's device again");
    CHECK(h_dev_sync(b2, WAIT_MS) == 0, "sync");
    h_dev *two[1] = {b2};
    dm_goal g2 = {&r2, 2};
    CHECK(h_pump(two, 1, pred_dm, &g2, WAIT_MS), "after reconnect: %zu device messages, want 2", r2.n);
    CHECK(r2.queue_seq[0] == q1 && r2.queue_seq[1] == q2 && strcmp(r2.body[1], "envelope-2") == 0,
          "after reconnect: queue_seqs %llu %llu", (unsigned long long)r2.queue_seq[0],
          (unsigned long long)r2.queue_seq[1]);
    /* the ack left with pc_poll; a round trip through the accounts owner
     * (which stores device-message acks) on the same connection orders
     * after it, so once answered the ack is committed */
    CHECK(h_accounts_barrier(b2) == 0, "barrier");
    h_dev_free(b2);

    /* acked: gone */
    static dm_rec r3;
    memset(&r3, 0, sizeof r3);
    h_dev *b3 = device_no_reconnect(&bob_id, &r3);
    CHECK(b3, "bob's device, third time");
    CHECK(h_dev_sync(b3, WAIT_MS) == 0, "sync");
    h_dev *three[1] = {b3};
    h_pump(three, 1, NULL, NULL, 200);
    CHECK(r3.n == 0, "%zu device messages after the ack (first queue_seq %llu)", r3.n,
          (unsigned long long)r3.queue_seq[0]);

    h_dev_free(b3);

    /* dedupe by queue_seq: with both still queued, a device that says it has
     * seen the first gets only the second (and acks both) */
    uint64_t q3 = 0, q4 = 0;
    CHECK(pc_send_device_message(alice->c, bob_id.user_id, bob_id.device_id, "envelope-3", 10, &q3) == 0 &&
              pc_send_device_message(alice->c, bob_id.user_id, bob_id.device_id, "envelope-4", 10, &q4) == 0 &&
              q3 > q2 && q4 > q3,
          "send 3, 4: %s", pc_error(alice->c));
    static dm_rec r4;
    memset(&r4, 0, sizeof r4);
    h_dev *b4 = device_no_reconnect(&bob_id, &r4);
    CHECK(b4, "bob's device, fourth time");
    pc_set_device_messages_seen(b4->c, q3);
    CHECK(h_dev_sync(b4, WAIT_MS) == 0, "sync");
    h_dev *four[1] = {b4};
    dm_goal g4 = {&r4, 1};
    CHECK(h_pump(four, 1, pred_dm, &g4, WAIT_MS), "no device message after the seen one");
    CHECK(h_accounts_barrier(b4) == 0, "barrier");
    CHECK(r4.n == 1 && r4.queue_seq[0] == q4, "%zu handed out (first %llu), want only %llu", r4.n,
          (unsigned long long)r4.queue_seq[0], (unsigned long long)q4);
    CHECK(pc_device_messages_seen(b4->c) == q4, "seen is %llu", (unsigned long long)pc_device_messages_seen(b4->c));
    /* pc_poll sends the due ack first; an accounts round trip orders after it */
    CHECK(pc_poll(b4->c, 0) >= 0, "poll: %s", pc_error(b4->c));
    CHECK(h_accounts_barrier(b4) == 0, "barrier");
    h_dev_free(b4);
    static dm_rec r5;
    memset(&r5, 0, sizeof r5);
    h_dev *b5 = device_no_reconnect(&bob_id, &r5);
    CHECK(b5, "bob's device, fifth time");
    CHECK(h_dev_sync(b5, WAIT_MS) == 0, "sync");
    h_dev *five[1] = {b5};
    h_pump(five, 1, NULL, NULL, 200);
    CHECK(r5.n == 0, "%zu device messages left after acking through %llu", r5.n, (unsigned long long)q4);
    h_dev_free(b5);

    /* an empty envelope is refused before it leaves */
    CHECK(pc_send_device_message(alice->c, bob_id.user_id, bob_id.device_id, "", 0, NULL) != 0, "empty envelope");
    h_dev_free(alice);
}

/* ------------------------------------------------ upload checks (issue 9) */

/* 0 when the upload was refused BAD_REQUEST with a message containing
 * `says`; -1 (and why on stderr) otherwise. */
static int refused(h_dev *d, const uint8_t *ik, size_t ik_len, const pc_prekey *spk, const pc_prekey *otk,
                   size_t n_otk, const char *says) {
    uint32_t left = 0;
    if (pc_upload_keys(d->c, ik, ik_len, spk, otk, n_otk, &left) == 0) {
        fprintf(stderr, "  accepted (%u one-time keys stored), want a refusal\n", left);
        return -1;
    }
    if (pc_status(d->c) != PARLEY__V1__STATUS__BAD_REQUEST || !strstr(pc_error(d->c), says)) {
        fprintf(stderr, "  status %d '%s', want BAD_REQUEST saying '%s'\n", pc_status(d->c), pc_error(d->c), says);
        return -1;
    }
    return 0;
}

/* Every public key is exactly 32 bytes: 31, 33 and 64 are refused, for the
 * identity key, the signed pre-key and a one-time pre-key, nothing of a
 * refused upload is stored, and parley_keys_refused_total counts them. */
static void keys_not_32_bytes_refused(void) {
    h_dev *d = h_user_new(&S, NULL);
    CHECK(d, "user");
    double before = 0, after = 0;
    CHECK(h_metric(&S, "parley_keys_refused_total", &before) == 0, "no parley_keys_refused_total");
    uint8_t ik[64] = {0}, spk[64] = {0}, sig[64], otk[64];
    h_test_keys(30, ik, spk, sig);
    memcpy(ik + 32, ik, 32);
    fill(otk, sizeof otk, 31);
    const size_t wrong[] = {31, 33, 64};
    for (size_t i = 0; i < 3; i++)
        CHECK(refused(d, ik, wrong[i], NULL, NULL, 0, "exactly 32 bytes") == 0, "identity key of %zu bytes",
              wrong[i]);
    CHECK(pc_upload_keys(d->c, ik, 32, NULL, NULL, 0, NULL) == 0, "a 32-byte identity key: %s", pc_error(d->c));
    for (size_t i = 0; i < 3; i++) {
        pc_prekey one[2] = {{1, otk, 32, NULL, 0}, {2, otk, wrong[i], NULL, 0}};
        CHECK(refused(d, NULL, 0, NULL, one, 2, "exactly 32 bytes") == 0, "one-time pre-key of %zu bytes",
              wrong[i]);
        pc_prekey signed_pk = {7, spk, wrong[i], sig, sizeof sig};
        CHECK(refused(d, NULL, 0, &signed_pk, NULL, 0, "exactly 32 bytes") == 0, "signed pre-key of %zu bytes",
              wrong[i]);
    }
    /* nothing of them was kept: no one-time key, no signed pre-key */
    uint32_t left = 99;
    CHECK(pc_upload_keys(d->c, NULL, 0, NULL, NULL, 0, &left) == 0 && left == 0, "%u one-time keys stored", left);
    Parley__V1__KeyBundles *kb = NULL;
    CHECK(pc_fetch_keys(d->c, d->id.user_id, &kb) == 0, "own fetch: %s", pc_error(d->c));
    int empty = kb->n_devices == 1 && !kb->devices[0]->one_time_pre_key &&
                (!kb->devices[0]->signed_pre_key || kb->devices[0]->signed_pre_key->public_key.len == 0);
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    CHECK(empty, "a refused key was stored");
    CHECK(h_metric(&S, "parley_keys_refused_total", &after) == 0 && after >= before + 9,
          "parley_keys_refused_total %.0f -> %.0f, want +9", before, after);
    h_dev_free(d);
}

/* The signed pre-key carries the device identity key's Ed25519 signature
 * of it: a flipped bit, a signature by another identity key, a short
 * signature and none at all are refused; a good one is accepted, handed out
 * with its signature (which verifies), and a refused one replaces nothing. */
static void signed_pre_key_signature_verified(void) {
    h_dev *d = h_user_new(&S, NULL);
    h_dev *peer = h_user_new(&S, NULL);
    CHECK(d && peer, "users");
    uint64_t conv;
    CHECK(pc_open_direct(peer->c, d->id.user_id, &conv) == 0, "open_direct: %s", pc_error(peer->c));
    uint8_t ik[32], spk[32], sig[64], other_ik[32], other_spk[32], other_sig[64];
    h_test_keys(40, ik, spk, sig);
    h_test_keys(41, other_ik, other_spk, other_sig);
    CHECK(pc_upload_keys(d->c, ik, 32, NULL, NULL, 0, NULL) == 0, "identity: %s", pc_error(d->c));

    uint8_t flipped[64];
    memcpy(flipped, sig, 64);
    flipped[10] ^= 0x04;
    pc_prekey bad_bit = {7, spk, 32, flipped, 64};
    CHECK(refused(d, NULL, 0, &bad_bit, NULL, 0, "signature") == 0, "a signature with a flipped bit");
    pc_prekey by_other = {7, other_spk, 32, other_sig, 64};   /* valid, but by another identity */
    CHECK(refused(d, NULL, 0, &by_other, NULL, 0, "signature") == 0, "a signature by another identity key");
    pc_prekey short_sig = {7, spk, 32, sig, 63};
    CHECK(refused(d, NULL, 0, &short_sig, NULL, 0, "signature") == 0, "a 63-byte signature");
    pc_prekey no_sig = {7, spk, 32, NULL, 0};
    CHECK(refused(d, NULL, 0, &no_sig, NULL, 0, "signature") == 0, "no signature");
    /* with the identity key in the same request: checked against that one */
    CHECK(refused(d, ik, 32, &by_other, NULL, 0, "signature") == 0, "identity and a foreign signature together");

    pc_prekey good = {8, spk, 32, sig, 64};
    CHECK(pc_upload_keys(d->c, NULL, 0, &good, NULL, 0, NULL) == 0, "a good signed pre-key: %s", pc_error(d->c));
    CHECK(refused(d, NULL, 0, &bad_bit, NULL, 0, "signature") == 0, "a bad one after a good one");

    Parley__V1__KeyBundles *kb = NULL;
    CHECK(pc_fetch_keys(peer->c, d->id.user_id, &kb) == 0, "fetch: %s", pc_error(peer->c));
    const Parley__V1__DeviceBundle *b = kb->n_devices == 1 ? kb->devices[0] : NULL;
    int ok = b && b->signed_pre_key && b->signed_pre_key->key_id == 8 && b->identity_key.len == 32 &&
             b->signed_pre_key->public_key.len == 32 && b->signed_pre_key->signature.len == 64 &&
             crypto_sign_verify_detached(b->signed_pre_key->signature.data, b->signed_pre_key->public_key.data,
                                         32, b->identity_key.data) == 0;
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    CHECK(ok, "the bundle does not carry the good signed pre-key 8 with a signature that verifies");
    h_dev_free(peer);
    h_dev_free(d);
}

int main(void) {
    const char *flags[] = {"--max-group-members", "128", NULL};
    if (h_server_start(&S, flags) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(keys_upload_and_fetch);
    RUN(one_time_keys_claimed_once);
    RUN(device_list_changes);
    RUN(strangers_forbidden);
    RUN(device_messages);
    RUN(keys_not_32_bytes_refused);
    RUN(signed_pre_key_signature_verified);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
