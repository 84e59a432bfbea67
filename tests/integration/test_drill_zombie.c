/* test_drill_zombie.c -- drill 4 of issue 13, the stalled owner (zombie),
 * on a real Kafka broker (kafka_node.c), a real Redis Cluster and a real
 * Cassandra node: chat nodes A and B (every role) and one `--roles gateway`
 * node, all with --kafka, one keyspace.
 *
 * Two users on each node; direct conversations i -> i+1 (across nodes) and
 * one group of all six. Each user sends from its own thread, alternately to
 * its direct conversation and to the group, until told to stop. Meanwhile:
 *   - once some sends are acknowledged, chat node B is stopped (SIGSTOP,
 *     every thread) for longer than the consumer group's session timeout
 *     (OWNER_SESSION_MS, 10 s: chat_owner.h), while traffic flows;
 *   - chat node A comes to own every 'sends' partition (/metrics
 *     parley_kafka_owner_partitions = 64); the senders keep going until
 *     more sends are acknowledged;
 *   - B is resumed (SIGCONT) and traffic runs on until more are
 *     acknowledged; then the senders stop.
 * Then, once both chat nodes' fan-out has routed everything published to it:
 *   - no conversation has a seq used twice or skipped: its history is
 *     1..n, each once; every acknowledged send is stored once (its text
 *     once), at its acknowledged seq;
 *   - every user's inbox, read from zero on a fresh device, has no user_seq
 *     twice, and what its application sees (libparley's client/sync.c
 *     drops a (conversation, seq) it has seen) is every message of each of
 *     its conversations exactly once in seq order;
 *   - every device that ran the traffic received each (conversation, seq)
 *     at most once, live and by a final sync together.
 *   - no inbox holds a (conversation, seq) twice (under two user_seqs):
 *     the fresh device's sync dropped none.
 * The first double or loss found is printed in the FAIL line.
 *
 * What it guards and what it shows: a stalled owner that resumes with a
 * store commit in flight can write seqs the new owner gave too (the store
 * commit is not fenced: chat_owner.h), two chat nodes number the same
 * users' inboxes (branch s6-fence fences both), and a resumed owner's
 * fan-out appends what the new owner's hand-over replay appended already
 * (the fan-out commit is not fenced). Seen: on main "z1-fresh: inbox entry
 * 0 of conv 1 has seq 3, want 2 (lost or overwritten)"; merged with
 * s6-fence 6ef8e25 "z0's inbox holds 3 message(s) twice or out of order";
 * merged with s6-fence 394989b "conv 4: 'z u4 c4 #4' stored twice (seqs 4,
 * 5)" (one send stored under two seqs).
 *
 * What is closed (branch s6-zombie): seqs and user_seqs by the conditional
 * heads; a send stored twice by the dedupe check after the cold head load
 * (writer.c handle_send). Closed on branch s8-zombie: a (conversation,
 * seq) in an inbox twice, under two user_seqs. The resumed owner's fan-out
 * routes what was in its memory when it stopped; the new owner's
 * hand-over replay appended those entries already; for a user whose inbox
 * the stalled fan-out never touched (its head is where the stalled node
 * believes it is) the append won its condition. Now an entry committed
 * INBOX_FENCE_STALE_MS or more after its message was numbered is looked
 * for in its inbox first (fanout/inbox_fence.h: why that age and not
 * less). Seen before the fix: "NOTE inbox entries repeating a
 * (conversation, seq) under a second user_seq, all users: N" with N > 0.
 * Nothing is timed: every wait is on
 * observable state (acks, /metrics) with a generous bound. Every process
 * is stopped by PID on every path; B is resumed before it is stopped (at
 * exit and on fatal signals too), and the harness's servers die with the
 * test (PR_SET_PDEATHSIG SIGKILL). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../check.h"
#include "cassandra_node.h"
#include "engine_node.h"
#include "harness.h"
#include "kafka_node.h"
#include "node_pair.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 300000,
    PARTITIONS = 64,          /* a new store's conversation partitions (chat/partition.h) */
    USERS = 6,                /* two per node: chat A, chat B, gateway */
    CONVS = USERS + 1,        /* direct i -> i+1, and the group of all */
    SENDS_MAX = 400,          /* per sender: a bound on the traffic */
    ACKS_BEFORE = 24,         /* acknowledged before B is stopped */
    ACKS_STALLED = 24,        /* more, once A owns everything, before B resumes */
    ACKS_AFTER = 24,          /* more after B resumed */
    HISTORY_MAX = USERS * SENDS_MAX + 64,
};

static h_server chat_a, chat_b, gw;
static atomic_int b_stopped;
static pid_t b_pid;
static char cleanup_dir[64];
static int started;

/* resumes B if it is stopped: at exit and on fatal signals (async-signal-safe) */
static void resume_b(void) {
    if (atomic_exchange(&b_stopped, 0) && b_pid > 0) kill(b_pid, SIGCONT);
}

static double metric_or_zero(const h_server *s, const char *name) { return node_metric_or_zero(s, name); }

/* A owns want_a partitions and B the rest (want_a PARTITIONS: B none) */
static int owners_are(double want_a) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        double a = metric_or_zero(&chat_a, "parley_kafka_owner_partitions");
        double b = metric_or_zero(&chat_b, "parley_kafka_owner_partitions");
        if (want_a == PARTITIONS ? a == PARTITIONS : (a + b == PARTITIONS && a > 0 && b > 0)) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

static int start_node(h_server *s, const char *name, int gateway) {
    node_opts o = {.keyspace = "drill_zombie", .kafka = kafka_node_brokers()};
    return node_start(s, name, gateway, &o);
}

static void start_all(void) {
    CHECK(redis_cluster_start("drill-zombie") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-drill-zombie") == 0, "no Cassandra");
    CHECK(kafka_node_start("drill-zombie", NULL) == 0, "no Kafka broker");
    CHECK(start_node(&chat_a, "chat-a", 0) == 0, "chat node A did not start");
    CHECK(start_node(&chat_b, "chat-b", 0) == 0, "chat node B did not start");
    CHECK(start_node(&gw, "gw-1", 1) == 0, "the gateway node did not start");
    b_pid = chat_b.pid;
    snprintf(cleanup_dir, sizeof cleanup_dir, "/tmp/parley-zombie-XXXXXX");
    CHECK(engine_dir_and_cleanup(cleanup_dir, resume_b) == 0, "cannot arrange B's resume at exit");
    CHECK(node_chat_linked(&gw, WAIT_MS), "the gateway node never linked to a chat node");
    CHECK(owners_are(0), "the chat nodes do not share the %d partitions (A %g, B %g)", PARTITIONS,
          metric_or_zero(&chat_a, "parley_kafka_owner_partitions"),
          metric_or_zero(&chat_b, "parley_kafka_owner_partitions"));
    started = 1;
}

/* ------------------------------------------------------------- traffic */

static h_dev *users[USERS];
static uint64_t convs[CONVS];

typedef struct sender {
    int user;
    h_sent sent[2][SENDS_MAX];   /* [0]: its direct conversation, [1]: the group */
    size_t n[2];
} sender;

static sender senders[USERS];
static atomic_int acked, stop_sending;

static h_server *node_of(int i) { return i < 2 ? &chat_a : i < 4 ? &chat_b : &gw; }

static void *send_main(void *arg) {
    sender *s = arg;
    for (int j = 0; j < SENDS_MAX && !atomic_load(&stop_sending); j++) {
        int t = j % 2, k = t ? USERS : s->user;
        char text[48];
        snprintf(text, sizeof text, "z u%d c%d #%d", s->user, k, j);
        /* a send that fails (B stopped under its client) is not acknowledged:
         * it may be stored or not, and is not expected */
        if (h_send_rec(users[s->user], convs[k], text, s->sent[t], &s->n[t]) == 0) atomic_fetch_add(&acked, 1);
    }
    return NULL;
}

/* acknowledged sends reach at least want (bounded) */
static int acked_reach(int want) {
    for (int i = 0; i < WAIT_MS / 50 && atomic_load(&acked) < want; i++) h_sleep_ms(50);
    return atomic_load(&acked) >= want;
}

/* ------------------------------------------------------------- checks */

/* the acknowledged sends of conversation k (each sender's share) */
static size_t expected_of(int k, const h_sent **out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < USERS; i++) {
        int t = k == USERS ? 1 : k == i ? 0 : -1;
        if (t < 0) continue;
        for (size_t e = 0; e < senders[i].n[t] && n < cap; e++) out[n++] = &senders[i].sent[t][e];
    }
    return n;
}

/* Conversation k's history: seqs 1..n, each once (the first double or gap
 * is named), every acknowledged send at its seq with its text, no text
 * twice. The non-membership seqs go to seqs (n_seqs). */
static int history_exact(h_dev *reader, int k, uint64_t *seqs, size_t *n_seqs, char *why, size_t cap) {
    size_t n = 0;
    h_event *h = h_history_all(reader, convs[k], &n);
    if (!h) {
        snprintf(why, cap, "history of conv %d failed", k);
        return -1;
    }
    int rc = 0;
    *n_seqs = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (h[i].seq != i + 1) {
            snprintf(why, cap, "conv %d: message %zu has seq %llu (%s)", k, i, (unsigned long long)h[i].seq,
                     i > 0 && h[i].seq == h[i - 1].seq ? "a seq used twice" : "a gap");
            rc = -1;
            break;
        }
        if (h[i].type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        seqs[(*n_seqs)++] = h[i].seq;
        for (size_t j = 0; j < i; j++) {
            if (h[j].type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP && h[j].body_len == h[i].body_len &&
                h[i].body_len && memcmp(h[j].body, h[i].body, h[i].body_len) == 0) {
                snprintf(why, cap, "conv %d: '%.*s' stored twice (seqs %llu, %llu)", k, (int)h[i].body_len,
                         (const char *)h[i].body, (unsigned long long)h[j].seq, (unsigned long long)h[i].seq);
                rc = -1;
                break;
            }
        }
    }
    static const h_sent *exp[HISTORY_MAX];
    size_t n_exp = expected_of(k, exp, HISTORY_MAX);
    for (size_t e = 0; rc == 0 && e < n_exp; e++) {
        const h_event *m = exp[e]->seq >= 1 && exp[e]->seq <= n ? &h[exp[e]->seq - 1] : NULL;
        if (!m || !h_event_body_is(m, exp[e]->text)) {
            snprintf(why, cap, "conv %d: acknowledged '%s' is not at seq %llu (a seq given twice, or lost)", k,
                     exp[e]->text, (unsigned long long)exp[e]->seq);
            rc = -1;
        }
    }
    h_events_free(h, n);
    return rc;
}

/* d (a fresh device, synced from zero) holds conv k's messages seqs[0..n)
 * exactly, in that order */
static int inbox_holds(const h_dev *d, int k, const uint64_t *seqs, size_t n, char *why, size_t cap) {
    static const h_event *got[HISTORY_MAX];
    size_t n_got = h_dev_conv_events(d, convs[k], 1, got, HISTORY_MAX);
    for (size_t i = 0; i < n_got && i < n; i++) {
        if (got[i]->seq != seqs[i]) {
            snprintf(why, cap, "%s: inbox entry %zu of conv %d has seq %llu, want %llu (lost or overwritten)",
                     d->name, i, k, (unsigned long long)got[i]->seq, (unsigned long long)seqs[i]);
            return -1;
        }
    }
    if (n_got != n) {
        snprintf(why, cap, "%s: inbox has %zu messages of conv %d, its history %zu", d->name, n_got, k, n);
        return -1;
    }
    return 0;
}

static int member(int k, int i) { return k == USERS || i == k || i == (k + 1) % USERS; }

static void zombie_owner(void) {
    NEED(started);
    h_server *where[USERS];
    for (int i = 0; i < USERS; i++) where[i] = node_of(i);
    CHECK(node_ring_start(users, USERS, where, "z", "zombie-six", convs, WAIT_MS) == 0, "the users' set-up failed");

    pthread_t th[USERS];
    int running = 0;
    for (; running < USERS; running++) {
        senders[running].user = running;
        if (pthread_create(&th[running], NULL, send_main, &senders[running]) != 0) break;
    }
    int ok_before = running == USERS && acked_reach(ACKS_BEFORE);
    int froze = ok_before && engine_freeze(b_pid, WAIT_MS) == 0;
    if (froze) atomic_store(&b_stopped, 1);
    int a_owns_all = froze && owners_are(PARTITIONS);
    int at_takeover = atomic_load(&acked);
    int ok_stalled = a_owns_all && acked_reach(at_takeover + ACKS_STALLED);
    resume_b();
    int at_resume = atomic_load(&acked);
    int ok_after = ok_stalled && acked_reach(at_resume + ACKS_AFTER);
    atomic_store(&stop_sending, 1);
    for (int i = 0; i < running; i++) pthread_join(th[i], NULL);
    CHECK(running == USERS, "a sender thread did not start");
    CHECK(ok_before, "only %d sends acknowledged before B was to stop", atomic_load(&acked));
    CHECK(froze, "chat node B did not stop (SIGSTOP)");
    CHECK(a_owns_all, "chat node A never owned all %d partitions while B was stopped (%g)", PARTITIONS,
          metric_or_zero(&chat_a, "parley_kafka_owner_partitions"));
    CHECK(ok_stalled, "no %d more sends acknowledged while B was stopped (%d at the take-over)", ACKS_STALLED,
          at_takeover);
    CHECK(ok_after, "no %d more sends acknowledged after B resumed (%d at the resume)", ACKS_AFTER, at_resume);
    printf("acknowledged: %d before A owned everything, %d when B resumed, %d in all; A read %g log entries again on hand-over\n",
           at_takeover, at_resume, atomic_load(&acked),
           metric_or_zero(&chat_a, "parley_kafka_handover_replayed_total"));
    fflush(stdout);   /* before any child is forked */

    CHECK(node_fanout_idle(&chat_a, WAIT_MS) && node_fanout_idle(&chat_b, WAIT_MS), "the chat nodes' fan-out never drained");
    char why[512];
    static uint64_t seqs[CONVS][HISTORY_MAX];
    size_t n_seqs[CONVS];
    for (int k = 0; k < CONVS; k++)
        CHECK(history_exact(users[k % USERS], k, seqs[k], &n_seqs[k], why, sizeof why) == 0, "%s", why);
    for (int i = 0; i < USERS; i++) {
        char name[24];
        snprintf(name, sizeof name, "z%d-fresh", i);
        h_dev *fresh = h_dev_for_identity(&gw, &users[i]->id, name, 0);
        CHECK(fresh, "z%d could not sign in on the gateway node", i);
        NEED(h_dev_sync(fresh, WAIT_MS) == 0);
        pc_stats st;
        pc_get_stats(fresh->c, &st);
        CHECK(st.duplicates_dropped == 0, "z%d's inbox holds %llu (conversation, seq) twice, under two user_seqs", i,
              (unsigned long long)st.duplicates_dropped);
        CHECK(node_record_unique(fresh, 1, why, sizeof why) == 0, "%s", why);
        for (int k = 0; k < CONVS; k++)
            if (member(k, i)) CHECK(inbox_holds(fresh, k, seqs[k], n_seqs[k], why, sizeof why) == 0, "%s", why);
        h_dev_free(fresh);
    }
    printf("stale entries looked for in their inboxes first (A, B): %g, %g, in %g, %g commits of %g, %g inbox "
           "appends; found there already: %g, %g (stale ones: %g, %g)\n",
           metric_or_zero(&chat_a, "parley_fanout_stale_entries_total"),
           metric_or_zero(&chat_b, "parley_fanout_stale_entries_total"),
           metric_or_zero(&chat_a, "parley_fanout_stale_checks_total"),
           metric_or_zero(&chat_b, "parley_fanout_stale_checks_total"),
           metric_or_zero(&chat_a, "parley_inbox_appends_total"),
           metric_or_zero(&chat_b, "parley_inbox_appends_total"),
           metric_or_zero(&chat_a, "parley_fanout_entries_present_total"),
           metric_or_zero(&chat_b, "parley_fanout_entries_present_total"),
           metric_or_zero(&chat_a, "parley_fanout_stale_present_total"),
           metric_or_zero(&chat_b, "parley_fanout_stale_present_total"));
    fflush(stdout);
    /* the devices of the traffic: live, then whatever their sync adds */
    for (int i = 0; i < USERS; i++) {
        if (h_dev_sync(users[i], WAIT_MS) != 0) {
            CHECK(h_dev_reconnect(&gw, users[i], pc_cursor(users[i]->c)) == 0, "z%d could not sign in again", i);
            NEED(h_dev_sync(users[i], WAIT_MS) == 0);
        }
        CHECK(node_record_unique(users[i], 0, why, sizeof why) == 0, "%s", why);
    }
}

int main(void) {
    RUN(start_all);
    RUN(zombie_owner);
    resume_b();
    h_server_destroy(&gw);
    h_server_destroy(&chat_b);
    h_server_destroy(&chat_a);
    kafka_node_stop();
    cassandra_node_stop();
    redis_cluster_stop();
    if (cleanup_dir[0]) engine_remove_dir(cleanup_dir);
    CHECK_EXIT();
}
