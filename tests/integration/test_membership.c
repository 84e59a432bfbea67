/* test_membership.c -- membership edge cases and the state that hangs off
 * it: a direct conversation's members cannot change; a removed member
 * re-added gets what was sent after the re-add and nothing from the gap,
 * also when fan-out reaches the removal only after the re-add is stored
 * (PARLEY_TEST_HOLD_FANOUT holds it there);
 * both sides opening the same direct conversation at once get one
 * conversation; a user in more conversations than membership_shared's
 * index bound (4096) is still recognised as sharing one; presence of a user
 * with several devices, and across a server restart.
 *
 * Presence is tested between users who share a conversation both have
 * written in, so the cases stay valid under a consent model. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../check.h"
#include "harness.h"
#include "hold_file.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 20000, INDEX_BOUND = 4096 };

static h_server S;
static hold_file fanout_hold;   /* PARLEY_TEST_HOLD_FANOUT: fan-out waits while it exists */

/* ------------------------------------------------------ direct members */

static void direct_members_are_fixed(void) {
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL);
    NEED(a && b && c);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    uint64_t cid = c->id.user_id;
    int add = pc_add_members(a->c, conv, &cid, 1);
    int add_st = pc_status(a->c);
    int rm = pc_remove_member(a->c, conv, b->id.user_id);
    int rm_st = pc_status(a->c);
    int leave = pc_remove_member(b->c, conv, b->id.user_id);
    int leave_st = pc_status(b->c);
    /* c still cannot read it; a and b still can write */
    Parley__V1__HistoryPage *p = NULL;
    int c_reads = pc_history(c->c, conv, 0, 10, &p) == 0;
    if (p) parley__v1__history_page__free_unpacked(p, NULL);
    uint64_t s1 = h_send(a, conv, "still two of us"), s2 = h_send(b, conv, "yes");
    /* the same conversation from both sides, every time */
    uint64_t again = 0, back = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &again) == 0);
    NEED(pc_open_direct(b->c, a->id.user_id, &back) == 0);
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    /* refused as a bad request, or (where groups have admins) as not an
     * admin of it: either way nothing changes, checked below */
    CHECK(add != 0 && (add_st == PARLEY__V1__STATUS__BAD_REQUEST ||
                       add_st == PARLEY__V1__STATUS__FORBIDDEN),
          "adding to a direct conversation: rc %d status %d", add, add_st);
    CHECK(rm != 0 && (rm_st == PARLEY__V1__STATUS__BAD_REQUEST ||
                      rm_st == PARLEY__V1__STATUS__FORBIDDEN),
          "removing from a direct conversation: rc %d status %d", rm, rm_st);
    CHECK(leave != 0 && leave_st == PARLEY__V1__STATUS__BAD_REQUEST,
          "leaving a direct conversation: rc %d status %d", leave, leave_st);
    CHECK(!c_reads, "the user refused as a member reads the conversation");
    CHECK(s1 && s2, "members could not write after the refused changes");
    CHECK(again == conv && back == conv, "direct ids %llu, %llu, want %llu",
          (unsigned long long)again, (unsigned long long)back, (unsigned long long)conv);
}

/* ---------------------------------------------------- re-adding a member */

static size_t texts_in(const h_dev *d, uint64_t conv, const char *text) {
    size_t n = 0;
    for (size_t i = 0; i < d->n_ev; i++)
        if (d->ev[i].conversation_id == conv && h_event_body_is(&d->ev[i], text)) n++;
    return n;
}

static const h_event *membership_event(const h_dev *d, uint64_t conv, int action, uint64_t user) {
    for (size_t i = 0; i < d->n_ev; i++) {
        const h_event *e = &d->ev[i];
        if (e->conversation_id != conv || e->type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP ||
            e->membership_action != action)
            continue;
        for (size_t j = 0; j < e->n_membership_users; j++)
            if (e->membership_users[j] == user) return e;
    }
    return NULL;
}

static void readd_removed_member(void) {
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL);
    NEED(a && b && c);
    uint64_t ids[2] = {b->id.user_id, c->id.user_id}, conv = 0;
    NEED(pc_create_group(a->c, "readd", ids, 2, &conv) == 0);
    /* fan-out held from here to the last send: when it reads the removal,
     * b's record says b was added after it (the earlier span must count) */
    NEED(hold_file_make(&fanout_hold) == 0);
    NEED(h_send(a, conv, "before") != 0);
    NEED(pc_remove_member(a->c, conv, b->id.user_id) == 0);
    uint64_t gap = h_send(a, conv, "in the gap");
    NEED(gap != 0);
    /* b, removed, cannot read or write it */
    Parley__V1__HistoryPage *p = NULL;
    int hist = pc_history(b->c, conv, 0, 10, &p);
    int hist_st = pc_status(b->c);
    if (p) parley__v1__history_page__free_unpacked(p, NULL);
    p = NULL;
    uint64_t bseq = 0;
    int send = pc_send_text(b->c, conv, "let me in", &bseq);
    int send_st = pc_status(b->c);
    /* removing b twice: not a member */
    int twice = pc_remove_member(a->c, conv, b->id.user_id);
    int twice_st = pc_status(a->c);
    uint64_t bid = b->id.user_id;
    NEED(pc_add_members(a->c, conv, &bid, 1) == 0);
    /* adding an active member again changes nothing */
    NEED(pc_add_members(a->c, conv, &bid, 1) == 0);
    uint64_t after = h_send(a, conv, "after");
    uint64_t mine = h_send(b, conv, "back");
    NEED(fanout_hold.held);
    hold_file_release(&fanout_hold);
    NEED(after && mine);

    /* b's inbox, from scratch */
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    h_dev *one[1] = {b};
    h_count_goal g = {one, 1, conv, 3, 1};   /* before, after, back */
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    size_t n_before = texts_in(b, conv, "before"), n_gap = texts_in(b, conv, "in the gap"),
           n_after = texts_in(b, conv, "after"), n_back = texts_in(b, conv, "back");
    const h_event *removed = membership_event(b, conv, PARLEY__V1__MEMBERSHIP__ACTION__REMOVED, bid);
    const h_event *added = membership_event(b, conv, PARLEY__V1__MEMBERSHIP__ACTION__ADDED, bid);
    uint64_t removed_seq = removed ? removed->seq : 0, added_seq = added ? added->seq : 0;
    size_t n_added = 0;
    for (size_t i = 0; i < b->n_ev; i++)
        if (b->ev[i].conversation_id == conv && b->ev[i].type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP &&
            b->ev[i].membership_action == PARLEY__V1__MEMBERSHIP__ACTION__ADDED)
            n_added++;
    char why[256] = "";
    int order = h_dev_check_order(b, conv, why, sizeof why);
    /* one member entry for b in the list */
    Parley__V1__ConversationList *l = NULL;
    size_t b_listed = 0, members = 0;
    if (pc_list_conversations(a->c, &l) == 0) {
        for (size_t i = 0; i < l->n_conversations; i++) {
            if (l->conversations[i]->conversation_id != conv) continue;
            members = l->conversations[i]->n_member_user_ids;
            for (size_t j = 0; j < members; j++) b_listed += l->conversations[i]->member_user_ids[j] == bid;
        }
        parley__v1__conversation_list__free_unpacked(l, NULL);
    }
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    CHECK(hist != 0 && hist_st == PARLEY__V1__STATUS__FORBIDDEN, "removed member reads: status %d",
          hist_st);
    CHECK(send != 0 && send_st == PARLEY__V1__STATUS__FORBIDDEN, "removed member sends: status %d",
          send_st);
    CHECK(twice != 0 && twice_st == PARLEY__V1__STATUS__NOT_FOUND,
          "removing a removed member: status %d", twice_st);
    CHECK(n_before == 1 && n_after == 1 && n_back == 1,
          "b's inbox: before %zu, after %zu, back %zu (want 1 each)", n_before, n_after, n_back);
    CHECK(n_gap == 0, "b was given the message sent while removed (%zu)", n_gap);
    CHECK(removed_seq && added_seq && removed_seq < gap && gap < added_seq,
          "b's inbox lacks REMOVED before / ADDED after the gap");
    CHECK(n_added == 1, "%zu ADDED events (the second add of an active member made one)", n_added);
    CHECK(order == 0, "b's events out of order: %s", why);
    CHECK(members == 3 && b_listed == 1, "members %zu, b listed %zu times", members, b_listed);
}

/* ------------------------------------------- concurrent OpenDirect */

enum { PAIRS = 24 };

typedef struct opener {
    h_dev *self;
    uint64_t peer;
    uint64_t conv;
    int rc;
    pthread_barrier_t *go;
} opener;

static void *open_main(void *arg) {
    opener *o = arg;
    pthread_barrier_wait(o->go);
    o->rc = pc_open_direct(o->self->c, o->peer, &o->conv);
    return NULL;
}

static void concurrent_open_direct(void) {
    h_dev *x[PAIRS], *y[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        x[i] = h_user_new(&S, NULL);
        y[i] = h_user_new(&S, NULL);
        NEED(x[i] && y[i]);
    }
    opener o[2 * PAIRS];
    pthread_t t[2 * PAIRS];
    pthread_barrier_t go;
    NEED(pthread_barrier_init(&go, NULL, 2 * PAIRS) == 0);
    for (int i = 0; i < PAIRS; i++) {
        o[2 * i] = (opener){x[i], y[i]->id.user_id, 0, -1, &go};
        o[2 * i + 1] = (opener){y[i], x[i]->id.user_id, 0, -1, &go};
    }
    int started = 0;
    for (int i = 0; i < 2 * PAIRS; i++)
        if (pthread_create(&t[i], NULL, open_main, &o[i]) == 0) started++;
    NEED(started == 2 * PAIRS);   /* the barrier needs them all */
    for (int i = 0; i < 2 * PAIRS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    int bad = 0, lists_bad = 0;
    for (int i = 0; i < PAIRS; i++) {
        if (o[2 * i].rc != 0 || o[2 * i + 1].rc != 0 || o[2 * i].conv != o[2 * i + 1].conv ||
            o[2 * i].conv == 0) {
            fprintf(stderr, "  pair %d: rc %d/%d, conv %llu vs %llu\n", i, o[2 * i].rc,
                    o[2 * i + 1].rc, (unsigned long long)o[2 * i].conv,
                    (unsigned long long)o[2 * i + 1].conv);
            bad++;
        }
        /* exactly one conversation in each list */
        Parley__V1__ConversationList *l = NULL;
        if (pc_list_conversations(x[i]->c, &l) != 0 || l->n_conversations != 1) lists_bad++;
        if (l) parley__v1__conversation_list__free_unpacked(l, NULL);
    }
    for (int i = 0; i < PAIRS; i++) {
        h_dev_free(x[i]);
        h_dev_free(y[i]);
    }
    CHECK(bad == 0, "%d of %d pairs opening at once got different or no conversations", bad,
          PAIRS);
    CHECK(lists_bad == 0, "%d users list other than one conversation", lists_bad);
}

/* -------------------------------------------- beyond the index bound */

static int n_envelopes;
static void count_envelope(void *ud, const Parley__V1__DeviceMessage *m) {
    (void)ud;
    (void)m;
    n_envelopes++;
}
static int got_envelope(void *ud) {
    (void)ud;
    return n_envelopes > 0;
}

/* d joins INDEX_BOUND + 10 groups of its own, so what it opens next comes
 * after the bound in its conversation index. 0 or -1. */
static int fill_index(h_dev *d) {
    for (int i = 0; i < INDEX_BOUND + 10; i++) {
        uint64_t g = 0;
        if (pc_create_group(d->c, "solo", NULL, 0, &g) != 0) {
            fprintf(stderr, "  group %d: %s\n", i, pc_error(d->c));
            return -1;
        }
    }
    return 0;
}

static void more_conversations_than_the_index_bound(void) {
    h_dev *big = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(big && b);
    NEED(fill_index(big) == 0);
    uint64_t conv = 0;
    NEED(pc_open_direct(big->c, b->id.user_id, &conv) == 0);
    NEED(h_send(big, conv, "hi b") && h_send(b, conv, "hi big"));
    uint64_t bid = b->id.user_id;
    int presence = pc_subscribe_presence(big->c, &bid, 1);
    int presence_st = pc_status(big->c);
    Parley__V1__KeyBundles *kb = NULL;
    int keys = pc_fetch_keys(big->c, bid, &kb);
    int keys_st = pc_status(big->c);
    if (kb) parley__v1__key_bundles__free_unpacked(kb, NULL);
    int dm = pc_send_device_message(big->c, bid, b->id.device_id, "k", 1, NULL);
    int dm_st = pc_status(big->c);
    n_envelopes = 0;
    pc_on_device_message(b->c, count_envelope, NULL);
    int synced = dm == 0 && h_dev_sync(b, WAIT_MS) == 0;
    if (synced) h_pump(&b, 1, got_envelope, NULL, WAIT_MS);
    /* both sides past the bound */
    h_dev *big2 = h_user_new(&S, NULL), *stranger = h_user_new(&S, NULL);
    NEED(big2 && stranger);
    NEED(fill_index(big2) == 0);
    uint64_t conv2 = 0;
    NEED(pc_open_direct(big->c, big2->id.user_id, &conv2) == 0);
    NEED(h_send(big, conv2, "hi big2") && h_send(big2, conv2, "hi big"));
    uint64_t b2id = big2->id.user_id, bigid = big->id.user_id, sid = stranger->id.user_id;
    int both_ways = pc_subscribe_presence(big->c, &b2id, 1) == 0 &&
                    pc_subscribe_presence(big2->c, &bigid, 1) == 0;
    /* and no false positive: a stranger is still refused */
    int strange = pc_subscribe_presence(big->c, &sid, 1);
    int strange_st = pc_status(big->c);
    h_dev_free(big);
    h_dev_free(b);
    h_dev_free(big2);
    h_dev_free(stranger);
    CHECK(presence == 0, "presence of a user sharing a conversation: status %d", presence_st);
    CHECK(keys == 0, "keys of a user sharing a conversation: status %d", keys_st);
    CHECK(dm == 0, "device message to a user sharing a conversation: status %d", dm_st);
    CHECK(n_envelopes == 1, "the envelope reached b %d times", n_envelopes);
    CHECK(both_ways, "two users both past the bound: presence refused");
    CHECK(strange != 0 && strange_st == PARLEY__V1__STATUS__FORBIDDEN,
          "presence of a stranger from a user past the bound: status %d", strange_st);
}

/* ------------------------------------------------------------ presence */

typedef struct pres_rec {
    uint64_t user;
    size_t n;
    size_t n_offline;       /* how many said offline */
    int online;             /* of the last one */
    uint64_t last_seen;
} pres_rec;

static void on_presence(void *ud, const Parley__V1__Presence *p) {
    pres_rec *r = ud;
    if (p->user_id != r->user) return;
    r->n++;
    r->n_offline += !p->online;
    r->online = p->online;
    r->last_seen = p->last_seen_ts;
}

typedef struct pres_goal {
    pres_rec *r;
    size_t after;           /* a presence past the first `after` ones */
    int online;
} pres_goal;
static int pred_presence(void *ud) {
    pres_goal *g = ud;
    return g->r->n > g->after && g->r->online == g->online;
}

/* Subscribes viewer to user and returns the state told at once. 0/1, or -1. */
static int presence_now(h_dev *viewer, pres_rec *r, uint64_t *last_seen) {
    size_t before = r->n;
    if (pc_subscribe_presence(viewer->c, &r->user, 1) != 0) return -1;
    uint64_t until = h_now_ms() + WAIT_MS;
    while (r->n == before && h_now_ms() < until) h_pump(&viewer, 1, NULL, NULL, 50);
    if (r->n == before) return -1;
    if (last_seen) *last_seen = r->last_seen;
    return r->online;
}

static void presence_with_several_devices(void) {
    h_dev *a = h_user_new(&S, NULL), *b1 = h_user_new(&S, NULL);
    NEED(a && b1);
    h_dev *b2 = h_device_link(&S, b1);
    NEED(b2);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b1->id.user_id, &conv) == 0);
    NEED(h_send(a, conv, "hello") && h_send(b1, conv, "hi"));
    /* presence counts devices signed in and syncing */
    NEED(h_dev_sync(b1, WAIT_MS) == 0 && h_dev_sync(b2, WAIT_MS) == 0);
    pres_rec r = {.user = b1->id.user_id};
    pc_on_presence(a->c, on_presence, &r);
    int both = presence_now(a, &r, NULL);
    /* b1 leaves; once the server has seen it go (its connection count
     * drops), b is still online through b2 */
    size_t offline_before = r.n_offline;
    double conns = 0, now_conns = 0;
    NEED(h_metric(&S, "parley_connections", &conns) == 0);
    h_dev_disconnect(b1);
    uint64_t until = h_now_ms() + WAIT_MS;
    while (h_now_ms() < until && h_metric(&S, "parley_connections", &now_conns) == 0 &&
           now_conns >= conns)
        h_pump(&a, 1, NULL, NULL, 50);
    int one = presence_now(a, &r, NULL);
    size_t offline_told = r.n_offline - offline_before;   /* pushed or answered */
    h_dev_disconnect(b2);
    pres_goal off = {&r, r.n, 0};
    int went_off = h_pump(&a, 1, pred_presence, &off, WAIT_MS);
    uint64_t seen = r.last_seen;
    uint64_t seen_now = 0;
    int none = presence_now(a, &r, &seen_now);
    /* one device back: online again */
    int back = h_dev_reconnect(&S, b2, 0) == 0 && h_dev_sync(b2, WAIT_MS) == 0;
    pres_goal on = {&r, r.n, 1};
    int came_back = back && h_pump(&a, 1, pred_presence, &on, WAIT_MS);
    h_dev_free(a);
    h_dev_free(b1);
    h_dev_free(b2);
    CHECK(both == 1, "two devices online: presence %d", both);
    CHECK(one == 1 && offline_told == 0,
          "one of two devices gone: presence %d, %zu offline states told; want still online", one,
          offline_told);
    CHECK(went_off, "no offline presence once both devices left");
    CHECK(none == 0 && seen > 0 && seen_now == seen,
          "after both left: presence %d, last_seen %llu then %llu", none,
          (unsigned long long)seen, (unsigned long long)seen_now);
    CHECK(came_back, "no online presence when one device came back");
}

static void presence_across_a_restart(void) {
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_send(a, conv, "hello") && h_send(b, conv, "hi"));
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    pres_rec r = {.user = b->id.user_id};
    pc_on_presence(a->c, on_presence, &r);
    int before = presence_now(a, &r, NULL);
    CHECK(before == 1, "b online before the restart: %d", before);
    /* the restart: every connection goes; libparley reconnects a and b */
    NEED(h_server_restart(&S) == 0);
    /* a's subscription belonged to the old connection: after a's reconnect,
     * subscribe again. b is not back yet (disconnected on purpose). */
    h_dev_disconnect(b);
    Parley__V1__ConversationList *l = NULL;
    NEED(pc_list_conversations(a->c, &l) == 0);   /* reconnects a */
    parley__v1__conversation_list__free_unpacked(l, NULL);
    int after = presence_now(a, &r, NULL);
    CHECK(after == 0, "b, not reconnected after the restart: presence %d, want offline", after);
    /* b comes back: a is told */
    NEED(h_dev_reconnect(&S, b, 0) == 0 && h_dev_sync(b, WAIT_MS) == 0);
    pres_goal on = {&r, r.n, 1};
    CHECK(h_pump(&a, 1, pred_presence, &on, WAIT_MS), "no online presence after b reconnected");
    h_dev_disconnect(b);
    pres_goal off = {&r, r.n, 0};
    CHECK(h_pump(&a, 1, pred_presence, &off, WAIT_MS), "no offline presence after b left");
    CHECK(r.last_seen > 0, "offline after the restart without last_seen");
    h_dev_free(a);
    h_dev_free(b);
}

/* 1 when `parley serve --help` lists opt (a build may or may not have it). */
static int serve_has_option(const char *opt) {
    const char *bin = getenv("PARLEY_BIN");
    if (!bin || !*bin) bin = "./build/parley";
    char cmd[700];
    snprintf(cmd, sizeof cmd, "'%s' serve --help 2>&1", bin);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[512];
    size_t n = strlen(opt);
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, opt);
        if (at && at[n] == ' ') found = 1;
    }
    pclose(p);
    return found;
}

int main(void) {
    if (sodium_init() < 0) return 1;
    /* fsync off and no write quota: the index-bound case makes 8000
     * conversations, which a per-device write rate (where the build has
     * one, --write-rate) would stretch over minutes */
    const char *args[12] = {"--fsync", "off", "--send-rate", "100000"};
    int n = 4;
    if (serve_has_option("--write-rate")) {
        args[n++] = "--write-rate";
        args[n++] = "100000";
    }
    if (serve_has_option("--user-write-rate")) {
        args[n++] = "--user-write-rate";
        args[n++] = "100000";
    }
    args[n] = NULL;
    if (hold_file_init(&fanout_hold, "PARLEY_TEST_HOLD_FANOUT") != 0) return 1;   /* the server inherits it */
    if (h_server_start(&S, args) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(direct_members_are_fixed);
    RUN(readd_removed_member);
    RUN(concurrent_open_direct);
    RUN(presence_with_several_devices);
    RUN(presence_across_a_restart);
    RUN(more_conversations_than_the_index_bound);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    hold_file_destroy(&fanout_hold);
    CHECK_EXIT();
}
