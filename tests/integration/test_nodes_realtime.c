/* test_nodes_realtime.c -- what is ephemeral crosses nodes too
 * (cluster/presence_bus.h): a chat node and two gateway nodes on a real
 * Redis Cluster (sharded pub/sub) and a real Cassandra node.
 *
 *   - presence: ann on gateway 1 subscribes to bob on gateway 2: she is
 *     told he is online, then offline (with a last seen) when he leaves,
 *     then online when he comes back;
 *   - typing: ann types in a group with bob (gateway 2) and cid (the chat
 *     node): both get the indicator, ann (the typist) does not;
 *   - the connect race: bob syncs on gateway 2, then his session entry is
 *     deleted from Redis (as if its connect were not written yet); cid
 *     sends to him and the chat node's lookup finds no entry (not sent
 *     live); once gateway 2's heartbeat writes the entry again, he gets
 *     the message without syncing again (cluster/session_registry.h
 *     session_registry_set_live);
 *   - push decided by the inbox owner for devices on any node: eve
 *     (gateway 2) sends to a group with dan, online on gateway 1, and fay,
 *     offline; each device and eve's has a Web Push subscription of the
 *     push service double (tests/push/push_double.py, as test_push): fay's
 *     gets one valid push, dan's (online on another node than the chat
 *     node's) and eve's (the sender) none. SKIP without the double.
 * Every wait is on observable state (frames, /metrics) with a generous
 * bound; nothing is timed.
 *
 * What each case guards (each broken in a scratch build, seen to FAIL):
 *   presence_across_nodes  no 'P' published on a session write and no
 *                          sweep -> "ann was never told bob left gateway 2"
 *   typing_across_nodes    presence_bus_typing publishing nothing ->
 *                          "typing did not reach the other nodes (bob 0, cid 0)"
 *   connect_race           session_registry's live callback not called ->
 *                          "bob never got seq 2 once his entry was written again"
 *   push_by_inbox_owner    push_gateway asking the local registry only ->
 *                          "dan (online on gateway 1) got 1 pushes" */
#include <ftw.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "engine_node.h"
#include "harness.h"
#include "node_pair.h"
#include "push_double.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 120000, MAX_SEEN = 256 };

static h_server chat, gw1, gw2;
static int started;

/* ------------------------------------------- the push service double */

enum { SUBS = 3 };
static char ddir[128];
static push_double dbl;   /* subscriptions dbl.subs[1..SUBS] */
static int have_double;

static void stop_double(void);

/* as test_push, in a directory of its own that goes at exit */
static int start_double(void) {
    snprintf(ddir, sizeof ddir, "/tmp/parley-push-rt-XXXXXX");
    /* stopped at exit and on fatal signals, as the engines are */
    if (engine_dir_and_cleanup(ddir, stop_double)) return -1;
    return push_double_start(&dbl, ddir, SUBS, WAIT_MS);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void stop_double(void) {
    push_double_stop(&dbl);
    if (ddir[0] && !getenv("PARLEY_KEEP_DATA")) nftw(ddir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    ddir[0] = 0;
}

/* requests the double logged for subscription id, and how many were valid */
static int double_requests(const char *id, int *valid) {
    char path[256], line[16384], want[64];
    snprintf(path, sizeof path, "%s/log.jsonl", ddir);
    snprintf(want, sizeof want, "\"sub\": \"%s\"", id);
    int n = 0;
    *valid = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, want)) continue;
        n++;
        *valid += strstr(line, "\"valid\": true") != NULL;
    }
    fclose(f);
    return n;
}

static int start_node(h_server *s, const char *name, int gateway) {
    /* the chat node owns the inboxes and decides push; a long coalescing
     * window so one push per device does not depend on speed */
    const char *extra[] = {"--push-coalesce-ms", "600000", !gateway && have_double ? "--push-ca" : NULL, dbl.cert, NULL};
    node_opts o = {.keyspace = "nodes_rt", .node_ttl_ms = "30000", .session_ttl_ms = "30000", .extra = extra};
    return node_start(s, name, gateway, &o);
}

static int chat_linked(h_server *s) { return node_chat_linked(s, WAIT_MS); }

static void start_nodes(void) {
    have_double = start_double() == 0;
    if (!have_double) stop_double();
    CHECK(redis_cluster_start("nodes-rt") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-nodes-rt") == 0, "no Cassandra");
    CHECK(start_node(&chat, "chat-1", 0) == 0, "the chat node did not start");
    CHECK(start_node(&gw1, "gw-1", 1) == 0, "gateway 1 did not start");
    CHECK(start_node(&gw2, "gw-2", 1) == 0, "gateway 2 did not start");
    CHECK(chat_linked(&gw1), "gateway 1 never linked to the chat node");
    CHECK(chat_linked(&gw2), "gateway 2 never linked to the chat node");
    started = 1;
}

/* ---------------------------------------------------- what a device saw */

typedef struct seen {
    uint64_t pres_user[MAX_SEEN], pres_last_seen[MAX_SEEN];
    int pres_online[MAX_SEEN];
    size_t n_pres;
    uint64_t typing_conv[MAX_SEEN], typing_user[MAX_SEEN];
    size_t n_typing;
} seen;

static void on_presence(void *ud, const Parley__V1__Presence *p) {
    seen *s = ud;
    if (s->n_pres == MAX_SEEN) return;
    s->pres_user[s->n_pres] = p->user_id;
    s->pres_online[s->n_pres] = p->online;
    s->pres_last_seen[s->n_pres] = p->last_seen_ts;
    s->n_pres++;
}

static void on_typing(void *ud, const Parley__V1__TypingIndicator *t) {
    seen *s = ud;
    if (s->n_typing == MAX_SEEN) return;
    s->typing_conv[s->n_typing] = t->conversation_id;
    s->typing_user[s->n_typing] = t->user_id;
    s->n_typing++;
}

static void hook(h_dev *d, seen *s) {
    pc_on_presence(d->c, on_presence, s);
    pc_on_typing(d->c, on_typing, s);
}

typedef struct presence_goal {
    const seen *s;
    uint64_t user;
    int online;
    size_t after;   /* only pushes from this index on count */
} presence_goal;

/* the latest presence of user from index after on says online */
static int pred_presence(void *ud) {
    const presence_goal *g = ud;
    for (size_t i = g->s->n_pres; i > g->after; i--)
        if (g->s->pres_user[i - 1] == g->user) return g->s->pres_online[i - 1] == g->online;
    return 0;
}

static h_dev *ann, *bob, *cid;   /* on gateway 1, gateway 2, the chat node */
static seen ann_seen, bob_seen, cid_seen;

static void users(void) {
    NEED(started);
    ann = h_user_new(&gw1, "ann");
    bob = h_user_new(&gw2, "bob");
    cid = h_user_new(&chat, "cid");
    CHECK(ann && bob && cid, "sign-up through the nodes failed");
    hook(ann, &ann_seen);
    hook(bob, &bob_seen);
    hook(cid, &cid_seen);
    NEED(h_dev_sync(ann, WAIT_MS) == 0 && h_dev_sync(bob, WAIT_MS) == 0 && h_dev_sync(cid, WAIT_MS) == 0);
}

/* ann (gateway 1) watches bob (gateway 2) go online, offline, online */
static void presence_across_nodes(void) {
    NEED(ann && bob);
    uint64_t direct = 0;
    NEED(pc_open_direct(ann->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);   /* presence only of those who accepted you */
    uint64_t bob_id = bob->id.user_id;
    CHECK(pc_subscribe_presence(ann->c, &bob_id, 1) == 0, "subscribe: %s", pc_error(ann->c));
    h_dev *one[] = {ann};
    presence_goal online = {&ann_seen, bob_id, 1, 0};
    CHECK(h_pump(one, 1, pred_presence, &online, WAIT_MS), "ann was never told bob (gateway 2) is online (%zu pushes)",
          ann_seen.n_pres);

    size_t before = ann_seen.n_pres;
    h_dev_disconnect(bob);
    presence_goal offline = {&ann_seen, bob_id, 0, before};
    CHECK(h_pump(one, 1, pred_presence, &offline, WAIT_MS), "ann was never told bob left gateway 2");
    CHECK(ann_seen.pres_last_seen[ann_seen.n_pres - 1] > 0, "the offline presence has no last seen");

    before = ann_seen.n_pres;
    CHECK(h_dev_reconnect(&gw2, bob, 0) == 0, "bob could not sign in again on gateway 2");
    hook(bob, &bob_seen);
    NEED(h_dev_sync(bob, WAIT_MS) == 0);
    presence_goal back = {&ann_seen, bob_id, 1, before};
    CHECK(h_pump(one, 1, pred_presence, &back, WAIT_MS), "ann was never told bob is back on gateway 2");

    double published = 0, received = 0;
    CHECK(h_metric(&gw2, "parley_cluster_bus_published_total", &published) == 0 && published > 0,
          "gateway 2 published nothing (%g)", published);
    CHECK(h_metric(&gw1, "parley_cluster_bus_received_total", &received) == 0 && received > 0,
          "gateway 1 received nothing (%g)", received);
}

typedef struct typing_goal {
    const seen *const *who;
    size_t n;
    uint64_t conv, user;
} typing_goal;

static size_t typing_count(const seen *s, uint64_t conv, uint64_t user) {
    size_t k = 0;
    for (size_t i = 0; i < s->n_typing; i++) k += s->typing_conv[i] == conv && s->typing_user[i] == user;
    return k;
}

static int pred_typing(void *ud) {
    const typing_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (typing_count(g->who[i], g->conv, g->user) == 0) return 0;
    return 1;
}

/* ann types in a group over the three nodes: bob and cid see it */
static void typing_across_nodes(void) {
    NEED(ann && bob && cid && ann->c && bob->c && cid->c);   /* connected (a failed case before may have left one closed) */
    uint64_t members[] = {bob->id.user_id, cid->id.user_id}, group = 0;
    NEED(pc_create_group(ann->c, "typing-rt", members, 2, &group) == 0);
    NEED(h_accept(bob, group) == 0 && h_accept(cid, group) == 0);
    h_dev *all[] = {ann, bob, cid};
    const seen *others[] = {&bob_seen, &cid_seen};
    typing_goal g = {others, 2, group, ann->id.user_id};
    CHECK(pc_typing(ann->c, group, 1) == 0, "typing: %s", pc_error(ann->c));
    int ok = h_pump(all, 3, pred_typing, &g, WAIT_MS);
    CHECK(ok, "typing did not reach the other nodes (bob %zu, cid %zu)",
          typing_count(&bob_seen, group, ann->id.user_id), typing_count(&cid_seen, group, ann->id.user_id));
    CHECK(typing_count(&ann_seen, group, ann->id.user_id) == 0, "the typist got her own indicator");
}

/* redis-cli -c (follows MOVED) VERB {u:user} device: its integer answer, -1 */
static long session_field(const char *verb, uint64_t user, uint32_t device) {
    char cmd[256], out[64] = "";
    snprintf(cmd, sizeof cmd, "redis-cli -c -h 127.0.0.1 -p %d %s '{u:%llu}' %u 2>/dev/null", redis_cluster_port(0),
             verb, (unsigned long long)user, device);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char *got = fgets(out, sizeof out, p);
    pclose(p);
    return got ? strtol(out, NULL, 10) : -1;
}

/* Deletes (user, device)'s session entry from the Redis Cluster once it is
 * there, as if its connect had not been written yet. 0, or -1. */
static int forget_session(uint64_t user, uint32_t device) {
    for (int i = 0; i < WAIT_MS / 100 && session_field("HEXISTS", user, device) != 1; i++) h_sleep_ms(100);
    return session_field("HDEL", user, device) == 1 ? 0 : -1;
}

typedef struct has_goal {
    h_dev *d;
    uint64_t conv, seq;
} has_goal;

static int pred_has(void *ud) {
    const has_goal *g = ud;
    return h_dev_has(g->d, g->conv, g->seq);
}

/* bob has synced on gateway 2 but his session entry is not in Redis (it
 * is deleted, as if its connect were still on its way): cid's message
 * finds no entry at the chat node's lookup and is not sent live. The next
 * heartbeat of gateway 2 finds the entry gone and connects it again; once
 * Redis answers, bob must get the message with no new sync. */
static void connect_race(void) {
    NEED(bob && cid && bob->c && cid->c);
    uint64_t direct = 0;
    NEED(pc_open_direct(cid->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);
    h_dev_disconnect(bob);
    h_dev_clear(bob);
    CHECK(h_dev_reconnect(&gw2, bob, 0) == 0 && h_dev_sync(bob, WAIT_MS) == 0, "bob's sync on gateway 2");
    CHECK(forget_session(bob->id.user_id, bob->id.device_id) == 0, "HDEL of bob's session failed");
    h_sent exp[2];
    size_t n = 0;
    CHECK(h_send_rec(cid, direct, "while bob's entry is not written", exp, &n) == 0, "cid's send");
    h_dev *both[] = {bob, cid};
    has_goal g = {bob, direct, exp[0].seq};
    CHECK(h_pump(both, 2, pred_has, &g, WAIT_MS), "bob never got seq %llu once his entry was written again",
          (unsigned long long)exp[0].seq);
    char why[256];
    CHECK(h_expect_exact(bob, direct, exp, n, why, sizeof why) == 0, "bob: %s", why);
}

/* PushRegister for d on a raw connection to s (closed again): the status */
static int push_register(const h_server *s, h_dev *d, const push_sub *x) {
    h_raw w;
    memset(&w, 0, sizeof w);
    if (h_raw_open(s, &w) != 0) return -1;
    if (h_raw_sign_in(&w, &d->id) != 0) {
        h_raw_close(&w);
        return -1;
    }
    Parley__V1__PushRegister pr = PARLEY__V1__PUSH_REGISTER__INIT;
    pr.endpoint = (char *)x->endpoint;
    pr.p256dh.data = (uint8_t *)x->p256dh;
    pr.p256dh.len = sizeof x->p256dh;
    pr.auth.data = (uint8_t *)x->auth;
    pr.auth.len = sizeof x->auth;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH_REGISTER;
    f.push_register = &pr;
    int st = h_raw_request(&w, &f, NULL, NULL);
    h_raw_close(&w);
    return st;
}

static int metric_reaches(h_server *s, const char *name, double goal) {
    double v = 0;
    for (int i = 0; i < WAIT_MS / 100; i++) {
        if (h_metric(s, name, &v) == 0 && v >= goal) return 1;
        h_sleep_ms(100);
    }
    return 0;
}

static void push_by_inbox_owner(void) {
    if (!have_double) {
        printf("SKIP push_by_inbox_owner: the push service double did not start (python3 with cryptography?)\n");
        return;
    }
    NEED(started);
    /* the double checks each request's VAPID key against the chat node's */
    char vapid[256];
    int st = 0;
    CHECK(h_http_get(chat.port, "/push/vapid-public-key", &st, vapid, sizeof vapid) == 0 && st == 200,
          "GET /push/vapid-public-key: %d", st);
    vapid[strcspn(vapid, "\r\n")] = 0;
    CHECK(push_double_set_vapid_key(&dbl, vapid) == 0, "tell the double the VAPID key");
    h_dev *dan = h_user_new(&gw1, "dan"), *fay = h_user_new(&gw1, "fay"), *eve = h_user_new(&gw2, "eve");
    CHECK(dan && fay && eve, "sign-up failed");
    NEED(h_dev_sync(dan, WAIT_MS) == 0 && h_dev_sync(eve, WAIT_MS) == 0);
    uint64_t members[] = {dan->id.user_id, fay->id.user_id}, group = 0;
    NEED(pc_create_group(eve->c, "push-rt", members, 2, &group) == 0);
    NEED(h_accept(dan, group) == 0 && h_accept(fay, group) == 0);
    /* subscriptions: s1 fay (offline), s2 dan (online on gateway 1), s3 eve (the sender) */
    CHECK(push_register(&chat, fay, &dbl.subs[1]) == 0, "fay's PushRegister");
    CHECK(push_register(&chat, dan, &dbl.subs[2]) == 0, "dan's PushRegister");
    CHECK(push_register(&chat, eve, &dbl.subs[3]) == 0, "eve's PushRegister");
    h_dev_disconnect(fay);
    double sent = 0, handled = 0;
    NEED(h_metric(&chat, "parley_push_sent_total", &sent) == 0);
    NEED(h_metric(&chat, "parley_push_hints_handled_total", &handled) == 0);
    h_sent exp[1];
    size_t n = 0;
    CHECK(h_send_rec(eve, group, "to dan and fay", exp, &n) == 0, "eve's send");
    /* two hints (dan, fay): both decided once both are handled; fay's push sent */
    CHECK(metric_reaches(&chat, "parley_push_hints_handled_total", handled + 2), "the chat node handled no hints");
    if (!metric_reaches(&chat, "parley_push_sent_total", sent + 1)) {
        const char *names[] = {"parley_push_hints_total", "parley_push_hints_handled_total", "parley_push_sent_total",
                               "parley_push_failed_total", "parley_push_retried_total", "parley_push_coalesced_total",
                               "parley_push_skipped_online_total", "parley_push_hints_unsubscribed_total",
                               "parley_push_rate_limited_total", "parley_push_hints_dropped_total"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            double v = -1;
            h_metric(&chat, names[i], &v);
            fprintf(stderr, "  chat node %s %g\n", names[i], v);
        }
        h_server_log_tail(&chat, 30);
        CHECK(0, "no push was sent");
    }
    int valid = 0;
    int fay_n = double_requests(dbl.subs[1].id, &valid);
    CHECK(fay_n == 1 && valid == 1, "fay (offline): %d pushes, %d valid; want 1", fay_n, valid);
    int dan_n = double_requests(dbl.subs[2].id, &valid);
    CHECK(dan_n == 0, "dan (online on gateway 1) got %d pushes", dan_n);
    int eve_n = double_requests(dbl.subs[3].id, &valid);
    CHECK(eve_n == 0, "eve (the sender) got %d pushes", eve_n);
    double now = 0;
    CHECK(h_metric(&chat, "parley_push_sent_total", &now) == 0 && now == sent + 1, "%g pushes sent, want 1",
          now - sent);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    RUN(start_nodes);
    RUN(users);
    RUN(presence_across_nodes);
    RUN(typing_across_nodes);
    RUN(connect_race);
    RUN(push_by_inbox_owner);
    h_server_destroy(&gw1);
    h_server_destroy(&gw2);
    h_server_destroy(&chat);
    cassandra_node_stop();
    redis_cluster_stop();
    stop_double();
    CHECK_EXIT();
}
