/* test_kafka_nodes.c -- sends through Kafka to the chat owners (--kafka:
 * cluster/send_log.h, cluster/chat_owner.h) on a real Kafka broker
 * (kafka_node.c), a real Redis Cluster and a real Cassandra node, all nodes
 * on one keyspace: two chat nodes (every role) and one `--roles gateway`
 * node, all with --kafka.
 *
 *   - owners_share_partitions: the two chat nodes split the 'sends'
 *     topic's partitions between them (/metrics parley_kafka_owner_partitions
 *     adds up to the store's 64, each has some);
 *   - chat_node_killed_mid_traffic: users on every node send to direct
 *     conversations between nodes and to one group; in one round the users
 *     not on B send at once (a thread each) and chat node B is killed
 *     (kill -9) while they do, so B likely dies with sends stored and
 *     acknowledged but not fanned out; the senders left go on (B's
 *     partitions move to A after the group's session timeout: their sends
 *     are answered ACCEPTED, then SENT; A fans out what B left, the
 *     hand-over replay). Then every acknowledged message is in each
 *     conversation's history exactly once at its seq, the seqs are 1..n
 *     without gaps or doubles, and every member's inbox (a fresh device per
 *     user on the gateway node, synced from zero) holds each conversation's
 *     messages exactly once in seq order, and no user_seq twice. (Two chat
 *     nodes both fan out to the same users before the kill: the store's
 *     conditional inbox heads keep their appends apart; every request of a
 *     conversation, not only its sends, is stored by its partition's owner,
 *     so one node at a time numbers a partition's fan-out log.)
 *   - store_frozen_sends_accepted: new users on A and on the gateway node
 *     (A alone fans out to them); Cassandra SIGSTOPped; a sender for each
 *     of three conversations sends (one thread each); every send is answered ACCEPTED
 *     (libparley counts it) while the owner's /healthz says "waiting for the
 *     store"; after SIGCONT every one is SENT with its seq, stored once in
 *     conversation order and delivered to every member (live or by its next
 *     sync: the inbox is the truth).
 * Every wait is on observable state with a generous bound; nothing is timed.
 *
 * What each case guards (seen failing on a scratch edit): a per-node
 * consumer group -> owners_share_partitions "A 64, B 64"; the writers not
 * reloading their caches when given partitions (writer_forget_cached not
 * called) -> chat_node_killed_mid_traffic "acknowledged 'r0 u0 c0' is not
 * at seq 2"; the hand-over replay not run (chat_owner.c replay_handed
 * skipping fanout_replay) -> chat_node_killed_mid_traffic "pair 2:
 * p2x-fresh has 7 events of conv 9, want 12" (with it: the pairs pass, and
 * the ring users fail only on the two-node inbox race, e.g. "u2-fresh has
 * 14 events of conv 1, want 15"); the owner passing INTERNAL to the sender instead of reading
 * the batch again -> store_frozen_sends_accepted "store read failed (status
 * 500)". */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "kafka_node.h"
#include "node_pair.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 180000,
    PARTITIONS = 64,        /* a new store's conversation partitions (chat/partition.h) */
    USERS = 6,              /* two per node: chat A, chat B, gateway */
    CONVS = USERS + 1,      /* direct i -> i+1, and one group of all */
    PAIRS = 6,              /* further direct conversations, each its two users' only one */
    ALL_CONVS = CONVS + PAIRS,
    ROUNDS = 10,
    KILL_ROUND = 4,         /* B is killed in the middle of this round */
    BURST = 12,             /* sends per user not on B in the kill round */
    EXP_MAX = 2 * ROUNDS * USERS + 64,
    FROZEN_SENDS = 3,       /* per sender while Cassandra is stopped */
};

static h_server chat_a, chat_b, gw;
static int started;

static int start_node(h_server *s, const char *name, int gateway) {
    node_opts o = {.keyspace = "kafkanodes", .kafka = kafka_node_brokers()};
    return node_start(s, name, gateway, &o);
}

static double metric_or_zero(const h_server *s, const char *name) { return node_metric_or_zero(s, name); }

/* the owned partitions add up to all of them; with both chat nodes up,
 * each owns some */
static int owners_settled(int both) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        double a = metric_or_zero(&chat_a, "parley_kafka_owner_partitions");
        double b = both ? metric_or_zero(&chat_b, "parley_kafka_owner_partitions") : 0;
        if (a + b == PARTITIONS && a > 0 && (!both || b > 0)) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

static int chat_linked(h_server *s) { return node_chat_linked(s, WAIT_MS); }

static void owners_share_partitions(void) {
    CHECK(redis_cluster_start("kafka-nodes") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-kafka-nodes") == 0, "no Cassandra");
    CHECK(kafka_node_start("kafka-nodes", NULL) == 0, "no Kafka broker");
    CHECK(start_node(&chat_a, "chat-a", 0) == 0, "chat node A did not start");
    CHECK(start_node(&chat_b, "chat-b", 0) == 0, "chat node B did not start");
    CHECK(start_node(&gw, "gw-1", 1) == 0, "the gateway node did not start");
    CHECK(chat_linked(&gw), "the gateway node never linked to a chat node");
    CHECK(owners_settled(1), "the chat nodes do not share the %d partitions (A %g, B %g)", PARTITIONS,
          metric_or_zero(&chat_a, "parley_kafka_owner_partitions"),
          metric_or_zero(&chat_b, "parley_kafka_owner_partitions"));
    started = 1;
}

static h_dev *users[USERS];
static uint64_t convs[ALL_CONVS];
static h_sent *exp_sent[ALL_CONVS];
static size_t n_exp[ALL_CONVS];
static h_dev *pair_dev[PAIRS][2];   /* conversation CONVS + j: pair j's, and all they have */

static h_server *node_of(int i) { return i < 2 ? &chat_a : i < 4 ? &chat_b : &gw; }
static int on_b(int i) { return i == 2 || i == 3; }

/* the members of conversation k (user indexes into out); their count */
static int members_of(int k, int out[USERS]) {
    if (k == USERS) {
        for (int i = 0; i < USERS; i++) out[i] = i;
        return USERS;
    }
    out[0] = k;
    out[1] = (k + 1) % USERS;
    return 2;
}

/* Conversation k's stored history against what was acknowledged: seqs
 * 1..n without gaps or doubles (membership messages included), every
 * acknowledged send at its seq with its text, no text twice. */
static int history_exact(h_dev *reader, int k, char *why, size_t cap) {
    Parley__V1__HistoryPage *page = NULL;
    if (pc_history(reader->c, convs[k], 0, 100, &page) != 0 || !page) {
        snprintf(why, cap, "history of conv %d failed: %s", k, pc_error(reader->c));
        return -1;
    }
    int rc = 0;
    if (page->has_more) {
        snprintf(why, cap, "conv %d has more than 100 messages", k);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < page->n_messages; i++) {
        const Parley__V1__Message *m = page->messages[i];
        if (m->seq != i + 1) {
            snprintf(why, cap, "conv %d: message %zu has seq %llu (gap or double)", k, i, (unsigned long long)m->seq);
            rc = -1;
        }
        for (size_t j = 0; rc == 0 && j < i; j++) {
            const Parley__V1__Message *o = page->messages[j];
            if (m->type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP && o->body.len == m->body.len &&
                m->body.len && memcmp(o->body.data, m->body.data, m->body.len) == 0) {
                snprintf(why, cap, "conv %d: '%.*s' stored twice (seqs %llu, %llu)", k, (int)m->body.len,
                         (const char *)m->body.data, (unsigned long long)o->seq, (unsigned long long)m->seq);
                rc = -1;
            }
        }
    }
    for (size_t e = 0; rc == 0 && e < n_exp[k]; e++) {
        const h_sent *s = &exp_sent[k][e];
        const Parley__V1__Message *m = s->seq >= 1 && s->seq <= page->n_messages ? page->messages[s->seq - 1] : NULL;
        if (!m || m->body.len != strlen(s->text) || memcmp(m->body.data, s->text, m->body.len) != 0) {
            snprintf(why, cap, "conv %d: acknowledged '%s' is not at seq %llu", k, s->text, (unsigned long long)s->seq);
            rc = -1;
        }
    }
    parley__v1__history_page__free_unpacked(page, NULL);
    return rc;
}

/* The non-membership messages of conv k in the history, as the member d
 * must have them: the same seqs in the same order, each once. */
static int member_has_history(h_dev *reader, h_dev *d, int k, char *why, size_t cap) {
    Parley__V1__HistoryPage *page = NULL;
    if (pc_history(reader->c, convs[k], 0, 100, &page) != 0 || !page) {
        snprintf(why, cap, "history of conv %d failed", k);
        return -1;
    }
    uint64_t want[128];
    size_t n_want = 0;
    for (size_t i = 0; i < page->n_messages && n_want < 128; i++)
        if (page->messages[i]->type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) want[n_want++] = page->messages[i]->seq;
    parley__v1__history_page__free_unpacked(page, NULL);
    /* a live delivery lost on the way (a frame dropped while the store was
     * away) is caught up by sync: the inbox in the store is the truth */
    if (h_dev_sync(d, WAIT_MS) != 0) {
        snprintf(why, cap, "%s could not sync", d->name);
        return -1;
    }
    h_dev *one[] = {d};
    h_count_goal g = {one, 1, convs[k], n_want, 1};
    if (!h_pump(one, 1, h_pred_count, &g, WAIT_MS)) {
        snprintf(why, cap, "%s has %zu events of conv %d, want %zu", d->name,
                 h_dev_conv_events(d, convs[k], 1, NULL, 0), k, n_want);
        return -1;
    }
    const h_event *got[128];
    size_t n_got = h_dev_conv_events(d, convs[k], 1, got, 128);
    if (n_got != n_want) {
        snprintf(why, cap, "%s has %zu events of conv %d, the history %zu", d->name, n_got, k, n_want);
        return -1;
    }
    for (size_t i = 0; i < n_got; i++) {
        if (got[i]->seq != want[i]) {
            snprintf(why, cap, "%s: event %zu of conv %d has seq %llu, want %llu", d->name, i, k,
                     (unsigned long long)got[i]->seq, (unsigned long long)want[i]);
            return -1;
        }
    }
    return 0;
}

/* one sender of the kill round: alternately conversations conv[0] and
 * conv[1] (the same for a pair); what was acknowledged is recorded in its
 * own tables */
typedef struct burst_sender {
    h_dev *d;
    int conv[2];
    h_sent sent[2][BURST];
    size_t n[2];
    atomic_int *acked;
} burst_sender;

static void *burst_main(void *arg) {
    burst_sender *b = arg;
    for (int j = 0; j < BURST; j++) {
        int t = j % 2, k = b->conv[t];
        char text[96];
        snprintf(text, sizeof text, "r%d %.16s c%d #%d", KILL_ROUND, b->d->name, k, j);
        if (h_send_rec(b->d, convs[k], text, b->sent[t], &b->n[t]) == 0) atomic_fetch_add(b->acked, 1);
    }
    return NULL;
}

/* The users not on B, and the first of each pair, send at once; B is
 * killed once half of their sends are acknowledged, while the rest flow.
 * The acknowledged sends join exp_sent. 0, or -1 if a thread did not
 * start. */
static int burst_and_kill_b(void) {
    enum { SENDERS = USERS + PAIRS };
    static burst_sender b[SENDERS];
    pthread_t th[SENDERS];
    int started_th[SENDERS] = {0};
    atomic_int acked = 0;
    int senders = 0, rc = 0;
    for (int i = 0; i < SENDERS; i++) {
        if (i < USERS && on_b(i)) continue;
        memset(&b[i], 0, sizeof b[i]);
        b[i].d = i < USERS ? users[i] : pair_dev[i - USERS][0];
        b[i].conv[0] = i < USERS ? i : CONVS + (i - USERS);
        b[i].conv[1] = i < USERS ? USERS : CONVS + (i - USERS);
        b[i].acked = &acked;
        if (pthread_create(&th[i], NULL, burst_main, &b[i]) != 0) {
            rc = -1;
            break;
        }
        started_th[i] = 1;
        senders++;
    }
    for (int i = 0; i < WAIT_MS / 10 && atomic_load(&acked) < senders * BURST / 2; i++) h_sleep_ms(10);
    h_server_kill9(&chat_b);
    for (int i = 0; i < SENDERS; i++) {
        if (!started_th[i]) continue;
        pthread_join(th[i], NULL);
        for (int t = 0; t < 2; t++) {
            int k = b[i].conv[t];
            for (size_t e = 0; e < b[i].n[t] && n_exp[k] < EXP_MAX; e++) exp_sent[k][n_exp[k]++] = b[i].sent[t][e];
        }
    }
    return rc;
}

/* d (a fresh device synced from zero: its inbox): no user_seq twice, no
 * (conversation, seq) twice. 0, or -1 with the first double. */
static int inbox_unique(const h_dev *d, char *why, size_t cap) { return node_record_unique(d, 1, why, cap); }

static void chat_node_killed_mid_traffic(void) {
    NEED(started);
    h_server *where[USERS];
    for (int i = 0; i < USERS; i++) where[i] = node_of(i);
    CHECK(node_ring_start(users, USERS, where, "u", "kafka-six", convs, WAIT_MS) == 0, "the users' set-up failed");
    /* pairs on A and the gateway node: their inboxes hold one conversation,
     * fanned out by its owner alone (B, until it dies, for about half) */
    for (int j = 0; j < PAIRS; j++) {
        for (int e = 0; e < 2; e++) {
            char name[16];
            snprintf(name, sizeof name, "p%d%c", j, "xy"[e]);
            pair_dev[j][e] = h_user_new((j + e) % 2 ? &chat_a : &gw, name);
            CHECK(pair_dev[j][e], "sign-up of %s failed", name);
        }
        NEED(pc_open_direct(pair_dev[j][0]->c, pair_dev[j][1]->id.user_id, &convs[CONVS + j]) == 0);
        NEED(h_accept(pair_dev[j][1], convs[CONVS + j]) == 0);
    }
    for (int k = 0; k < ALL_CONVS; k++) NEED(exp_sent[k] = h_calloc(EXP_MAX, sizeof(h_sent)));

    int killed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (r == KILL_ROUND) {   /* B owns half the partitions: killed with sends in flight */
            CHECK(burst_and_kill_b() == 0, "a sender thread did not start");
            killed = 1;
            continue;
        }
        for (int i = 0; i < USERS; i++) {
            if (killed && on_b(i)) continue;   /* their node is gone */
            int targets[2] = {i, USERS};
            for (int t = 0; t < 2; t++) {
                int k = targets[t];
                char text[48];
                snprintf(text, sizeof text, "r%d u%d c%d", r, i, k);
                CHECK(h_send_rec(users[i], convs[k], text, exp_sent[k], &n_exp[k]) == 0, "send '%s' failed", text);
            }
        }
    }
    CHECK(owners_settled(0), "chat node A does not own all %d partitions after B died (%g)", PARTITIONS,
          metric_or_zero(&chat_a, "parley_kafka_owner_partitions"));
    /* B's users come back on the gateway node and sync from the start */
    for (int i = 2; i < 4; i++) {
        h_dev_clear(users[i]);
        CHECK(h_dev_reconnect(&gw, users[i], 0) == 0, "u%d could not sign in on the gateway node", i);
        NEED(h_dev_sync(users[i], WAIT_MS) == 0);
    }
    char why[512];
    for (int k = 0; k < CONVS; k++) CHECK(history_exact(users[k % USERS], k, why, sizeof why) == 0, "%s", why);
    for (int j = 0; j < PAIRS; j++) CHECK(history_exact(pair_dev[j][0], CONVS + j, why, sizeof why) == 0, "%s", why);
    double replayed = metric_or_zero(&chat_a, "parley_kafka_handover_replayed_total");
    printf("chat node A read %g fan-out log entries again when given B's partitions\n", replayed);
    /* every member's inbox, read from zero on a fresh device: each
     * conversation's messages exactly once, in seq order (what B stored and
     * acknowledged but did not fan out, A did: the hand-over replay). Read
     * once A's fan-out has routed everything published to it, so nothing
     * arrives live during the sync: a (conv, seq) the client drops as seen
     * is then a double in the inbox itself. */
    CHECK(node_fanout_idle(&chat_a, WAIT_MS), "chat node A's fan-out never drained (parley_fanout_pending_deliveries %g)",
          metric_or_zero(&chat_a, "parley_fanout_pending_deliveries"));
    /* first the pairs: one fan-out node at a time writes their inboxes, so
     * a message missing here was lost in the hand-over */
    for (int j = 0; j < PAIRS; j++) {
        for (int e = 0; e < 2; e++) {
            char name[16];
            snprintf(name, sizeof name, "p%d%c-fresh", j, "xy"[e]);
            h_dev *f = h_dev_for_identity(&gw, &pair_dev[j][e]->id, name, 0);
            CHECK(f, "%s could not sign in again", name);
            char why2[512] = "";
            int rc = member_has_history(f, f, CONVS + j, why, sizeof why);
            pc_stats st;
            pc_get_stats(f->c, &st);
            int unique = inbox_unique(f, why2, sizeof why2);
            h_dev_free(f);
            CHECK(rc == 0, "pair %d: %s", j, why);
            CHECK(st.duplicates_dropped == 0, "%s: %llu message(s) twice or out of order", name,
                  (unsigned long long)st.duplicates_dropped);
            CHECK(unique == 0, "%s", why2);
        }
    }
    h_dev *fresh[USERS];
    for (int i = 0; i < USERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%d-fresh", i);
        fresh[i] = h_dev_for_identity(&gw, &users[i]->id, name, 0);
        CHECK(fresh[i], "u%d could not sign in again on the gateway node", i);
        NEED(h_dev_sync(fresh[i], WAIT_MS) == 0);
        pc_stats st;
        pc_get_stats(fresh[i]->c, &st);
        CHECK(st.duplicates_dropped == 0, "u%d (user %llu)'s inbox holds %llu message(s) twice or out of order", i,
              (unsigned long long)users[i]->id.user_id, (unsigned long long)st.duplicates_dropped);
        CHECK(inbox_unique(fresh[i], why, sizeof why) == 0, "%s", why);
    }
    for (int k = 0; k < CONVS; k++) {
        int m[USERS];
        int n = members_of(k, m);
        for (int j = 0; j < n; j++)
            CHECK(member_has_history(fresh[k % USERS], fresh[m[j]], k, why, sizeof why) == 0, "%s", why);
    }
    for (int i = 0; i < USERS; i++) CHECK(inbox_unique(fresh[i], why, sizeof why) == 0, "%s", why);
    /* the devices of this case go: a device left connected and lagging
     * would have the next case's frozen store read on its worker's thread
     * (a catch-up read waits out the store's deadline: README "--kafka") */
    for (int i = 0; i < USERS; i++) {
        h_dev_free(fresh[i]);
        h_dev_free(users[i]);
        users[i] = NULL;
    }
    for (int j = 0; j < PAIRS; j++)
        for (int e = 0; e < 2; e++) {
            h_dev_free(pair_dev[j][e]);
            pair_dev[j][e] = NULL;
        }
}

typedef struct frozen_sender {
    h_dev *d;
    int user, conv;
    int ok;
    h_sent sent[FROZEN_SENDS];
    size_t n;
    char error[160];
} frozen_sender;

static void *send_while_frozen(void *arg) {
    frozen_sender *s = arg;
    for (int j = 0; j < FROZEN_SENDS; j++) {
        char text[48];
        snprintf(text, sizeof text, "frozen u%d %d", s->user, j);
        uint64_t seq = 0;
        if (pc_send_text(s->d->c, convs[s->conv], text, &seq) != 0 || seq == 0) {
            snprintf(s->error, sizeof s->error, "'%s': %s (status %d)", text, pc_error(s->d->c), pc_status(s->d->c));
            return NULL;
        }
        s->sent[s->n].seq = seq;
        s->sent[s->n].sender = s->d->id.user_id;
        snprintf(s->sent[s->n].text, sizeof s->sent[s->n].text, "%s", text);
        s->n++;
    }
    s->ok = 1;
    return NULL;
}

static uint64_t accepted_count(const h_dev *d) {
    pc_stats st;
    pc_get_stats(d->c, &st);
    return st.accepted;
}

/* A's /healthz answers 503 with text in it (bounded) */
static int health_says(h_server *s, int want_status, const char *text) {
    char body[512];
    for (int i = 0; i < WAIT_MS / 100; i++) {
        int status = 0;
        if (h_http_get(s->port, "/healthz", &status, body, sizeof body) == 0 && status == want_status &&
            strstr(body, text))
            return 1;
        h_sleep_ms(100);
    }
    return 0;
}

/* Fresh users and conversations, made once B is gone: chat node A alone
 * stores and fans out to them (no inbox written by two nodes). */
static void store_frozen_sends_accepted(void) {
    NEED(started);
    h_dev *v[3];
    h_server *where[3] = {&chat_a, &gw, &gw};
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", i);
        v[i] = h_user_new(where[i], name);
        CHECK(v[i], "sign-up of %s failed", name);
        NEED(h_dev_sync(v[i], WAIT_MS) == 0);
    }
    /* conversations 0: v0-v1, 1: v1-v2, 2: the three (reusing the tables above) */
    uint64_t conv[3];
    NEED(pc_open_direct(v[0]->c, v[1]->id.user_id, &conv[0]) == 0 && h_accept(v[1], conv[0]) == 0);
    NEED(pc_open_direct(v[1]->c, v[2]->id.user_id, &conv[1]) == 0 && h_accept(v[2], conv[1]) == 0);
    uint64_t two[] = {v[1]->id.user_id, v[2]->id.user_id};
    NEED(pc_create_group(v[0]->c, "frozen-three", two, 2, &conv[2]) == 0);
    NEED(h_accept(v[1], conv[2]) == 0 && h_accept(v[2], conv[2]) == 0);
    for (int k = 0; k < 3; k++) {   /* history_exact reads these tables */
        convs[k] = conv[k];
        n_exp[k] = 0;
        if (!exp_sent[k]) NEED(exp_sent[k] = h_calloc(EXP_MAX, sizeof(h_sent)));   /* the case before stopped early */
    }
    /* the sender of each conversation: v0 on A, v1 and v2 on the gateway node */
    frozen_sender s[3] = {{.d = v[0], .user = 0, .conv = 0}, {.d = v[1], .user = 1, .conv = 1},
                          {.d = v[2], .user = 2, .conv = 2}};
    uint64_t accepted_before[3];
    for (int i = 0; i < 3; i++) accepted_before[i] = accepted_count(s[i].d);
    CHECK(cassandra_node_freeze(60000) == 0, "Cassandra did not stop");
    pthread_t th[3];
    int running = 0;
    for (; running < 3; running++)
        if (pthread_create(&th[running], NULL, send_while_frozen, &s[running]) != 0) break;
    /* every sender's first send is ACCEPTED (they wait for its SENT), and A
     * says what it waits for */
    int all_accepted = 0;
    for (int i = 0; i < WAIT_MS / 100 && !all_accepted; i++) {
        all_accepted = 1;
        for (int j = 0; j < running; j++)
            if (accepted_count(s[j].d) == accepted_before[j]) all_accepted = 0;
        if (!all_accepted) h_sleep_ms(100);
    }
    int waiting = health_says(&chat_a, 503, "waiting for the store");
    kill(cassandra_node_pid(), SIGCONT);
    for (int i = 0; i < running; i++) pthread_join(th[i], NULL);
    NEED(running == 3);
    CHECK(all_accepted, "not every sender was answered ACCEPTED while Cassandra was stopped");
    CHECK(waiting, "chat node A's /healthz never said 'waiting for the store'");
    for (int i = 0; i < 3; i++) {
        CHECK(s[i].ok, "sender v%d: %s", s[i].user, s[i].error);
        for (size_t j = 0; j < s[i].n; j++) exp_sent[s[i].conv][n_exp[s[i].conv]++] = s[i].sent[j];
    }
    CHECK(health_says(&chat_a, 200, "ok"), "chat node A did not become healthy again");
    char why[512];
    for (int k = 0; k < 3; k++) {
        CHECK(history_exact(v[k], k, why, sizeof why) == 0, "%s", why);
        int m[3] = {k == 2 ? 0 : k, k == 2 ? 1 : k + 1, 2};
        int n = k == 2 ? 3 : 2;
        for (int j = 0; j < n; j++)
            CHECK(member_has_history(v[k], v[m[j]], k, why, sizeof why) == 0, "%s", why);
    }
}

int main(void) {
    RUN(owners_share_partitions);
    RUN(chat_node_killed_mid_traffic);
    RUN(store_frozen_sends_accepted);
    h_server_destroy(&gw);
    h_server_destroy(&chat_b);   /* killed: only its directory goes */
    h_server_destroy(&chat_a);
    kafka_node_stop();
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
