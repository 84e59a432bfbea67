/* test_e2e_strangers.c -- members of one group who never accepted each
 * other exchange keys and sender keys (src/chat/consent.c:
 * consent_group_peers, consent_devices_visible):
 *   - a group of five made by alice; each invitee accepts the group (which
 *     accepts alice only), so no two of bob, carol, dave and erin accepted
 *     each other; each of the five sends an encrypted message and every
 *     other member decrypts every one of them
 *   - and with no message-request bound: 4 pre-key claims (3 an hour for
 *     a stranger), 11 sender keys from one to another (10 device messages)
 *   - a block still ends it: after erin blocks dave, dave gets neither her
 *     device list nor her keys (FORBIDDEN)
 * and device lists kept by a key store that watches them (client/
 * e2e_client.c devices_of): a second send to a group of 8 asks no
 * GetDevices; after bob links a device, the next asks bob's list only and
 * his new device reads it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../check.h"
#include "e2e/e2e.h"
#include "e2e_reader.h"
#include "harness.h"
#include "parley_e2e.h"

enum { WAIT_MS = 20000, USERS = 5, LIST_USERS_MAX = 250 };

/* group size of device_lists_cached: 8, or PARLEY_E2E_LIST_USERS (2..250)
 * to measure a larger group (the requests per send are printed) */
static int LIST_USERS = 8;

static h_server S;

static void group_of_strangers(void) {
    h_dev *u[USERS] = {0};
    for (int i = 0; i < USERS; i++) CHECK((u[i] = h_user_new(&S, NULL)) != NULL, "user %d", i);
    uint64_t invited[USERS - 1], members[USERS], conv = 0;
    for (int i = 0; i < USERS; i++) members[i] = u[i]->id.user_id;
    for (int i = 1; i < USERS; i++) invited[i - 1] = u[i]->id.user_id;
    CHECK(pc_create_group(u[0]->c, "strangers", invited, USERS - 1, &conv) == 0, "group: %s", pc_error(u[0]->c));
    for (int i = 1; i < USERS; i++)
        CHECK(pc_accept_request(u[i]->c, conv) == 0, "accept %d: %s", i, pc_error(u[i]->c));

    reader *r[USERS] = {0};
    for (int i = 0; i < USERS; i++) CHECK((r[i] = reader_new(u[i], conv)) != NULL, "key store %d", i);
    for (int i = 0; i < USERS; i++) CHECK(h_dev_sync(u[i], WAIT_MS) == 0, "sync %s", u[i]->name);

    char texts[USERS][64];
    uint32_t tag = randombytes_random();
    for (int i = 0; i < USERS; i++) {
        snprintf(texts[i], sizeof texts[i], "stranger-%d-says-%08x", i, tag);
        uint64_t seq = 0;
        CHECK(pc_e2e_send(r[i]->e, u[i]->c, conv, members, USERS, texts[i], strlen(texts[i]), &seq) == 0,
              "%s sends: %s", u[i]->name, pc_error(u[i]->c));
        reader *others[USERS - 1];
        size_t n = 0;
        for (int j = 0; j < USERS; j++)
            if (j != i) others[n++] = r[j];
        goal g = {others, n, texts[i]};
        CHECK(h_pump(u, USERS, pred_decrypted, &g, WAIT_MS), "message of %s not decrypted by every other member",
              u[i]->name);
    }
    for (int i = 0; i < USERS; i++) {
        CHECK(r[i]->n_texts == USERS - 1, "%s decrypted %zu messages, not %d", u[i]->name, r[i]->n_texts, USERS - 1);
        CHECK(r[i]->failures == 0 && r[i]->dm_failures == 0, "%s: failures", u[i]->name);
    }

    /* no bound of a message request between them: more pre-key claims
     * than a stranger may make in an hour (REQUEST_KEY_CLAIMS, 3), and more
     * sender-key hand-outs than a stranger's device messages (10): bob
     * rotates his key before each of 11 sends; carol reads the last */
    for (int i = 0; i < 4; i++) {
        Parley__V1__KeyBundles *claimed = NULL;
        int ok = pc_fetch_keys(u[2]->c, u[3]->id.user_id, &claimed);
        if (claimed) parley__v1__key_bundles__free_unpacked(claimed, NULL);
        CHECK(ok == 0, "carol's claim %d of dave's keys: %s", i + 1, pc_error(u[2]->c));
    }
    char last[64];
    for (int i = 0; i < 11; i++) {
        snprintf(last, sizeof last, "rotated-%d-%08x", i, tag);
        pc_e2e_rotate(r[1]->e, conv);
        uint64_t seq = 0;
        CHECK(pc_e2e_send(r[1]->e, u[1]->c, conv, members, USERS, last, strlen(last), &seq) == 0,
              "bob's send %d after a rotation: %s", i + 1, pc_error(u[1]->c));
    }
    reader *carol_only[1] = {r[2]};
    goal gl = {carol_only, 1, last};
    CHECK(h_pump(u, USERS, pred_decrypted, &gl, WAIT_MS), "carol did not read bob's 11th key");

    /* erin blocks dave: nothing of hers for him any more */
    h_dev *dave = u[3], *erin = u[4];
    CHECK(pc_block_user(erin->c, dave->id.user_id, 0) == 0, "block: %s", pc_error(erin->c));
    Parley__V1__DeviceList *dl = NULL;
    int got = pc_get_devices(dave->c, erin->id.user_id, &dl);
    if (dl) parley__v1__device_list__free_unpacked(dl, NULL);
    CHECK(got != 0 && pc_status(dave->c) == PARLEY__V1__STATUS__FORBIDDEN, "blocked dave got erin's devices");
    Parley__V1__KeyBundles *kb = NULL;
    got = pc_fetch_keys(dave->c, erin->id.user_id, &kb);
    if (kb) parley__v1__key_bundles__free_unpacked(kb, NULL);
    CHECK(got != 0 && pc_status(dave->c) == PARLEY__V1__STATUS__FORBIDDEN, "blocked dave got erin's keys");

    for (int i = 0; i < USERS; i++) {
        pc_e2e_free(r[i]->e);
        h_free(r[i]);
        h_dev_free(u[i]);
    }
}

/* ------------------------------------------------ device lists are kept */

typedef struct list_watch {
    pc_e2e *e;
    uint64_t user;          /* whose change is awaited */
    int heard;
} list_watch;

static void on_list_changed(void *ud, uint64_t user, uint64_t counter) {
    (void)counter;
    list_watch *w = ud;
    pc_e2e_device_list_changed(w->e, user);
    if (user == w->user) w->heard++;
}

static int pred_heard(void *ud) { return ((list_watch *)ud)->heard > 0; }

static double requests_now(void) {
    double v = -1;
    h_metric(&S, "parley_requests_total", &v);
    return v;
}

static void device_lists_cached(void) {
    const char *env = getenv("PARLEY_E2E_LIST_USERS");
    if (env && atoi(env) >= 2 && atoi(env) <= LIST_USERS_MAX) LIST_USERS = atoi(env);
    h_dev *u[LIST_USERS_MAX] = {0};
    for (int i = 0; i < LIST_USERS; i++) CHECK((u[i] = h_user_new(&S, NULL)) != NULL, "user %d", i);
    uint64_t invited[LIST_USERS_MAX], members[LIST_USERS_MAX], conv = 0;
    for (int i = 0; i < LIST_USERS; i++) members[i] = u[i]->id.user_id;
    for (int i = 1; i < LIST_USERS; i++) invited[i - 1] = u[i]->id.user_id;
    CHECK(pc_create_group(u[0]->c, "lists", invited, LIST_USERS - 1, &conv) == 0, "group: %s", pc_error(u[0]->c));
    reader *r[LIST_USERS_MAX] = {0};
    for (int i = 0; i < LIST_USERS; i++) CHECK((r[i] = reader_new(u[i], conv)) != NULL, "key store %d", i);
    for (int i = 0; i < LIST_USERS; i++) CHECK(h_dev_sync(u[i], WAIT_MS) == 0, "sync %s", u[i]->name);
    pc_e2e_watch_device_lists(r[0]->e, u[0]->c);
    /* ours forwards to the store and tells us when bob's list changed */
    list_watch watch = {r[0]->e, u[1]->id.user_id, 0};
    pc_on_device_list_changed(u[0]->c, on_list_changed, &watch);

    const char *texts[3] = {"lists-one", "lists-two", "lists-three"};
    uint64_t fetched[4] = {pc_e2e_device_list_fetches(r[0]->e)};
    double reqs[3] = {0};
    for (int i = 0; i < 2; i++) {
        uint64_t seq = 0;
        double before = requests_now();
        CHECK(pc_e2e_send(r[0]->e, u[0]->c, conv, members, LIST_USERS, texts[i], strlen(texts[i]), &seq) == 0,
              "send %d: %s", i + 1, pc_error(u[0]->c));
        reqs[i] = requests_now() - before;
        fetched[i + 1] = pc_e2e_device_list_fetches(r[0]->e);
    }
    CHECK(fetched[1] - fetched[0] == (uint64_t)LIST_USERS, "first send: %llu GetDevices, not one per user (%d)",
          (unsigned long long)(fetched[1] - fetched[0]), LIST_USERS);
    CHECK(fetched[2] == fetched[1], "second send asked GetDevices %llu times again",
          (unsigned long long)(fetched[2] - fetched[1]));
    /* for the figure: a send with every list forgotten (as without the cache) */
    pc_e2e_device_list_changed(r[0]->e, 0);
    uint64_t seq0 = 0;
    double before0 = requests_now();
    CHECK(pc_e2e_send(r[0]->e, u[0]->c, conv, members, LIST_USERS, "lists-uncached", 14, &seq0) == 0,
          "uncached send: %s", pc_error(u[0]->c));
    reqs[2] = requests_now() - before0;
    fetched[2] = pc_e2e_device_list_fetches(r[0]->e);
    printf("  group of %d: requests on the server: first send %.0f, next send %.0f with the lists kept, %.0f "
           "without\n", LIST_USERS, reqs[0], reqs[1], reqs[2]);

    /* bob links a device: alice hears it, asks for bob's list only, and the
     * new device gets her key */
    h_dev *bob2 = h_device_link(&S, u[1]);
    CHECK(bob2, "bob's second device");
    reader *rb2 = reader_new(bob2, conv);
    CHECK(rb2, "bob2's key store");
    CHECK(h_dev_sync(bob2, WAIT_MS) == 0, "sync bob2");
    CHECK(h_pump(u, 1, pred_heard, &watch, WAIT_MS), "alice never heard that bob's devices changed");
    uint64_t seq = 0;
    CHECK(pc_e2e_send(r[0]->e, u[0]->c, conv, members, LIST_USERS, texts[2], strlen(texts[2]), &seq) == 0,
          "send 3: %s", pc_error(u[0]->c));
    fetched[3] = pc_e2e_device_list_fetches(r[0]->e);
    CHECK(fetched[3] - fetched[2] == 1, "after bob's change: %llu GetDevices, not 1",
          (unsigned long long)(fetched[3] - fetched[2]));
    h_dev *pair[2] = {u[0], bob2};
    reader *only[1] = {rb2};
    goal g = {only, 1, texts[2]};
    CHECK(h_pump(pair, 2, pred_decrypted, &g, WAIT_MS), "bob's new device did not read alice's next message");

    /* key distribution when a member leaves (alice's next send rotates: a
     * new key to every remaining device) and when one joins (her key to
     * the new member's device only); figures, and the hand-outs asserted */
    uint64_t last = members[LIST_USERS - 1];
    CHECK(pc_remove_member(u[0]->c, conv, last) == 0, "remove: %s", pc_error(u[0]->c));
    double b1 = requests_now();
    CHECK(pc_e2e_send(r[0]->e, u[0]->c, conv, members, LIST_USERS - 1, "after-leave", 11, &seq) == 0,
          "send after the leave: %s", pc_error(u[0]->c));
    double leave_reqs = requests_now() - b1;
    CHECK(pc_add_members(u[0]->c, conv, &last, 1) == 0, "add back: %s", pc_error(u[0]->c));
    pc_e2e_device_list_changed(r[0]->e, last);   /* a member (re)joins: ask its list again */
    double b2 = requests_now();
    CHECK(pc_e2e_send(r[0]->e, u[0]->c, conv, members, LIST_USERS, "after-join", 10, &seq) == 0,
          "send after the join: %s", pc_error(u[0]->c));
    double join_reqs = requests_now() - b2;
    printf("  group of %d: requests for alice's next send after a member left %.0f, after one joined %.0f\n",
           LIST_USERS, leave_reqs, join_reqs);
    /* leave: one device message per remaining device but hers (the other
     * members' and bob2) plus the send; join: GetDevices, one device
     * message (and FetchKeys when no session is left), the send: far fewer */
    CHECK(leave_reqs >= LIST_USERS - 1 && join_reqs < leave_reqs / 2, "leave %.0f, join %.0f requests", leave_reqs,
          join_reqs);

    pc_e2e_free(rb2->e);
    h_free(rb2);
    h_dev_free(bob2);
    for (int i = 0; i < LIST_USERS; i++) {
        pc_e2e_free(r[i]->e);
        h_free(r[i]);
        h_dev_free(u[i]);
    }
}

int main(void) {
    if (sodium_init() < 0 || h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(group_of_strangers);
    RUN(device_lists_cached);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
