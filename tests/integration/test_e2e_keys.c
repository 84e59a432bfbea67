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
#include "e2e_reader.h"
#include "harness.h"
#include "parley_e2e.h"

enum { WAIT_MS = 20000 };

static h_server S;

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
