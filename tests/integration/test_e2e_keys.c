/* test_e2e_keys.c -- one-time pre-keys through the real server with
 * libparley's key store:
 *   - bob claims all 100 of alice's one-time pre-keys (FetchKeys; they are
 *     group peers, so unbounded): the next bundle has none, and carol's
 *     first send to the group opens her session with alice on the signed
 *     pre-key alone; alice decrypts it (the fallback)
 *   - alice hears KeysLow and refills (pc_e2e_refill): a later claim gets a
 *     one-time pre-key again, from the new ids, and bob's session opened on
 *     one of them decrypts at alice's
 *   - the signed pre-key rotates a week after it was made
 *     (pc_e2e_maintain): the server hands out the new one, and a session
 *     carol began on the previous one before the rotation still opens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "../check.h"
#include "e2e/e2e.h"
#include "harness.h"
#include "parley_e2e.h"

enum { WAIT_MS = 20000, MAX_TEXTS = 8, TEXT_MAX = 96, MAX_DONE = 64 };

static h_server S;

/* One device and what it has decrypted of conversation conv. */
typedef struct reader {
    h_dev *d;
    pc_e2e *e;
    uint64_t conv;
    char texts[MAX_TEXTS][TEXT_MAX];
    size_t n_texts;
    uint64_t done[MAX_DONE];         /* seqs decrypted or failed for good */
    size_t n_done;
    int dm_failures;                 /* device messages that did not apply */
    int failures;                    /* conversation messages that will never decrypt */
} reader;

static void on_device_message(void *ud, const Parley__V1__DeviceMessage *m) {
    reader *r = ud;
    int st = pc_e2e_handle_device_message(r->e, m);
    if (st != 0) {
        fprintf(stderr, "  %s: device message from %llu/%u: %s\n", r->d->name, (unsigned long long)m->sender_user_id,
                m->sender_device_id, e2e_strerror(st));
        r->dm_failures++;
    }
}

static Parley__V1__Message as_message(const h_event *ev) {
    Parley__V1__Message m = PARLEY__V1__MESSAGE__INIT;
    m.conversation_id = ev->conversation_id;
    m.seq = ev->seq;
    m.sender_user_id = ev->sender_user_id;
    m.sender_device_id = ev->sender_device_id;
    m.body.data = ev->body;
    m.body.len = ev->body_len;
    return m;
}

static int is_done(const reader *r, uint64_t seq) {
    for (size_t i = 0; i < r->n_done; i++)
        if (r->done[i] == seq) return 1;
    return 0;
}

/* Tries every recorded text message of conv not decrypted yet. A message
 * whose sender key has not arrived yet (WRONG_KEY) waits for the device
 * message; any other failure is final. */
static void read_new(reader *r) {
    for (size_t i = 0; i < r->d->n_ev; i++) {
        const h_event *ev = &r->d->ev[i];
        if (ev->conversation_id != r->conv || ev->type != PARLEY__V1__MESSAGE_TYPE__TEXT || is_done(r, ev->seq))
            continue;
        if (ev->sender_user_id == r->d->id.user_id && ev->sender_device_id == r->d->id.device_id) continue;
        Parley__V1__Message m = as_message(ev);
        uint8_t *pt = NULL;
        size_t n = 0;
        int st = pc_e2e_decrypt(r->e, &m, &pt, &n);
        if (st == E2E_ERR_WRONG_KEY) continue;
        if (r->n_done < MAX_DONE) r->done[r->n_done++] = ev->seq;
        if (st == 0 && r->n_texts < MAX_TEXTS) {
            snprintf(r->texts[r->n_texts++], TEXT_MAX, "%.*s", (int)(n < TEXT_MAX - 1 ? n : TEXT_MAX - 1),
                     (const char *)pt);
        } else if (st != 0) {
            fprintf(stderr, "  %s: seq %llu: %s\n", r->d->name, (unsigned long long)ev->seq, e2e_strerror(st));
            r->failures++;
        }
        free(pt);
    }
}

static int has_text(const reader *r, const char *text) {
    for (size_t i = 0; i < r->n_texts; i++)
        if (strcmp(r->texts[i], text) == 0) return 1;
    return 0;
}

typedef struct goal {
    reader **readers;
    size_t n;
    const char *text;                /* each reader has decrypted this one */
} goal;

static int pred_decrypted(void *ud) {
    goal *g = ud;
    int all = 1;
    for (size_t i = 0; i < g->n; i++) {
        read_new(g->readers[i]);
        all &= has_text(g->readers[i], g->text);
    }
    return all;
}

static reader *reader_new(h_dev *d, uint64_t conv) {
    reader *r = h_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->d = d;
    r->conv = conv;
    r->e = pc_e2e_new();
    if (!r->e || pc_e2e_publish(r->e, d->c) != 0) {
        fprintf(stderr, "  %s: publish keys: %s\n", d->name, pc_error(d->c));
        return NULL;
    }
    pc_on_device_message(d->c, on_device_message, r);
    return r;
}

static int keys_low_heard;
static void on_keys_low(void *ud, uint32_t left) {
    (void)ud;
    (void)left;
    keys_low_heard++;
}
static int pred_keys_low(void *ud) {
    (void)ud;
    return keys_low_heard > 0;
}

/* One claim of user's keys by d: 1 with the one-time pre-key id in *otk_id
 * (0 when the bundle had none), 0 on failure. */
static int claim(h_dev *d, uint64_t user, uint32_t *otk_id) {
    Parley__V1__KeyBundles *kb = NULL;
    if (pc_fetch_keys(d->c, user, &kb) != 0 || !kb || kb->n_devices != 1) {
        if (kb) parley__v1__key_bundles__free_unpacked(kb, NULL);
        return 0;
    }
    const Parley__V1__PreKey *otk = kb->devices[0]->one_time_pre_key;
    *otk_id = otk ? otk->key_id : 0;
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    return 1;
}

static void one_time_keys_run_out_and_refill(void) {
    h_dev *alice = h_user_new(&S, NULL), *bob = h_user_new(&S, NULL), *carol = h_user_new(&S, NULL);
    CHECK(alice && bob && carol, "users");
    uint64_t invited[2] = {bob->id.user_id, carol->id.user_id}, conv = 0;
    CHECK(pc_create_group(alice->c, "keys", invited, 2, &conv) == 0, "group: %s", pc_error(alice->c));
    reader *ra = reader_new(alice, conv), *rb = reader_new(bob, conv), *rc = reader_new(carol, conv);
    CHECK(ra && rb && rc, "key stores");
    pc_on_keys_low(alice->c, on_keys_low, NULL);
    h_dev *all[3] = {alice, bob, carol};
    for (int i = 0; i < 3; i++) CHECK(h_dev_sync(all[i], WAIT_MS) == 0, "sync %s", all[i]->name);

    uint32_t id = 0;
    for (int i = 0; i < PC_E2E_ONE_TIME_KEYS; i++) {
        CHECK(claim(bob, alice->id.user_id, &id), "claim %d: %s", i + 1, pc_error(bob->c));
        CHECK(id != 0, "claim %d had no one-time pre-key", i + 1);
    }
    CHECK(claim(bob, alice->id.user_id, &id) && id == 0, "claim 101 still had one-time pre-key %u", id);

    /* carol's session with alice: the signed pre-key alone */
    uint64_t members[3] = {alice->id.user_id, bob->id.user_id, carol->id.user_id}, seq = 0;
    const char *t1 = "opened-on-the-signed-pre-key";
    CHECK(pc_e2e_send(rc->e, carol->c, conv, members, 3, t1, strlen(t1), &seq) == 0, "carol sends: %s",
          pc_error(carol->c));
    reader *only_a[1] = {ra};
    goal g1 = {only_a, 1, t1};
    CHECK(h_pump(all, 3, pred_decrypted, &g1, WAIT_MS), "alice did not decrypt carol's message");

    /* KeysLow, then the refill */
    CHECK(h_pump(all, 3, pred_keys_low, NULL, WAIT_MS), "alice never heard KeysLow");
    CHECK(pc_e2e_refill(ra->e, alice->c) == 0, "refill: %s", pc_error(alice->c));
    const char *t2 = "opened-on-a-refilled-one-time-key";
    CHECK(pc_e2e_send(rb->e, bob->c, conv, members, 3, t2, strlen(t2), &seq) == 0, "bob sends: %s", pc_error(bob->c));
    goal g2 = {only_a, 1, t2};
    CHECK(h_pump(all, 3, pred_decrypted, &g2, WAIT_MS), "alice did not decrypt bob's message");
    CHECK(claim(bob, alice->id.user_id, &id) && id >= 1000 + PC_E2E_ONE_TIME_KEYS,
          "after the refill, a claim got one-time pre-key %u (want a new id)", id);
    CHECK(ra->failures == 0 && ra->dm_failures == 0, "alice: failures");

    /* the refilled store survives a save and load */
    uint8_t *saved = NULL;
    size_t n = 0;
    pc_e2e *back = NULL;
    CHECK(pc_e2e_save(ra->e, &saved, &n) == 0 && pc_e2e_load(&back, saved, n) == 0, "save and load alice's store");
    free(saved);
    pc_e2e_free(back);

    reader *rs[3] = {ra, rb, rc};
    for (int i = 0; i < 3; i++) {
        pc_e2e_free(rs[i]->e);
        h_free(rs[i]);
        h_dev_free(all[i]);
    }
}

/* The signed pre-key a claim of user's keys by d shows: its id, 0 on failure. */
static uint32_t spk_of(h_dev *d, uint64_t user) {
    Parley__V1__KeyBundles *kb = NULL;
    uint32_t id = 0;
    if (pc_fetch_keys(d->c, user, &kb) == 0 && kb && kb->n_devices == 1 && kb->devices[0]->signed_pre_key)
        id = kb->devices[0]->signed_pre_key->key_id;
    if (kb) parley__v1__key_bundles__free_unpacked(kb, NULL);
    return id;
}

static void signed_pre_key_rotates(void) {
    h_dev *alice = h_user_new(&S, NULL), *bob = h_user_new(&S, NULL), *carol = h_user_new(&S, NULL);
    CHECK(alice && bob && carol, "users");
    uint64_t invited[2] = {bob->id.user_id, carol->id.user_id}, conv = 0;
    CHECK(pc_create_group(alice->c, "spk", invited, 2, &conv) == 0, "group: %s", pc_error(alice->c));
    reader *ra = reader_new(alice, conv), *rb = reader_new(bob, conv), *rc = reader_new(carol, conv);
    CHECK(ra && rb && rc, "key stores");
    h_dev *all[3] = {alice, bob, carol};
    for (int i = 0; i < 3; i++) CHECK(h_dev_sync(all[i], WAIT_MS) == 0, "sync %s", all[i]->name);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    CHECK(pc_e2e_maintain(ra->e, alice->c, now) == 0, "a new signed pre-key rotated at once");
    uint32_t before = spk_of(bob, alice->id.user_id);
    CHECK(before != 0, "alice's signed pre-key: %s", pc_error(bob->c));

    /* carol's session with alice is begun on the current signed pre-key;
     * alice rotates before she reads it (her client has not polled) */
    uint64_t members[3] = {alice->id.user_id, bob->id.user_id, carol->id.user_id}, seq = 0;
    const char *t1 = "begun-before-the-rotation";
    CHECK(pc_e2e_send(rc->e, carol->c, conv, members, 3, t1, strlen(t1), &seq) == 0, "carol sends: %s",
          pc_error(carol->c));
    now += PC_E2E_SPK_ROTATE_MS;
    CHECK(pc_e2e_maintain(ra->e, alice->c, now) == 1, "no rotation after a week: %s", pc_error(alice->c));
    uint32_t after = spk_of(bob, alice->id.user_id);
    CHECK(after == before + 1, "alice's signed pre-key on the server after the rotation: %u, want %u", after,
          before + 1);
    reader *only_a[1] = {ra};
    goal g1 = {only_a, 1, t1};
    CHECK(h_pump(all, 3, pred_decrypted, &g1, WAIT_MS), "alice did not decrypt what began on her previous key");
    /* bob's new session uses the new key (signature checked by libparley) */
    const char *t2 = "begun-after-the-rotation";
    CHECK(pc_e2e_send(rb->e, bob->c, conv, members, 3, t2, strlen(t2), &seq) == 0, "bob sends: %s", pc_error(bob->c));
    goal g2 = {only_a, 1, t2};
    CHECK(h_pump(all, 3, pred_decrypted, &g2, WAIT_MS), "alice did not decrypt bob's message");
    CHECK(ra->failures == 0 && ra->dm_failures == 0, "alice: failures");

    reader *rs[3] = {ra, rb, rc};
    for (int i = 0; i < 3; i++) {
        pc_e2e_free(rs[i]->e);
        h_free(rs[i]);
        h_dev_free(all[i]);
    }
}

int main(void) {
    if (sodium_init() < 0 || h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(one_time_keys_run_out_and_refill);
    RUN(signed_pre_key_rotates);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
