/* test_partitions.c -- the partitioned write path under kill -9.
 *
 * A server with three conversation writers (--writers 3) and a new store
 * (64 partitions, chat/partition.h). Groups are created until there is a
 * conversation in every one of the 64 partitions (conversation id mod 64),
 * each with three of eight users, so every user's inbox mixes conversations
 * of every writer. Eight senders, one thread each, send round robin into
 * all their conversations at once; the server is killed with -9 each time
 * another batch of acks is in and restarted, until a restart reports in
 * parley_fanout_replayed_total that it fanned out again what the killed one
 * had acknowledged but not fanned out (at most KILL_ROUNDS kills). The
 * clients retry in-flight sends (same client_msg_id) by themselves.
 *
 * Then every user syncs from 0 on a fresh connection, and for every
 * conversation it is in it sees exactly the acknowledged messages, each
 * once, in seq order; its inbox (user_seq) is strictly increasing; the
 * server sent it no duplicate; and no two acknowledged sends in one
 * conversation got the same seq.
 *
 * group_order_across_owners: one group with two or more members in every
 * user partition (so every fan-out thread owns some of them) with four fan-out
 * threads, and concurrent senders into it and into a second group of
 * another partition (read by another thread); every member, synced from 0,
 * has each conversation's messages exactly once and in seq order: a
 * message is read by one thread, and the runs it hands each owner are
 * appended in the order they were read. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 60000,
    PARTITIONS = 64,        /* PARTITIONS_NEW_STORE in src/chat/partition.h */
    USERS = 8,
    PER_CONV = 3,           /* members of each conversation */
    MAX_CREATES = 4000,     /* groups made while looking for every partition */
    PER_SENDER_MAX = 3000,
    KILL_EVERY = 600,       /* acks between kills */
    KILL_ROUNDS = 8,
};

static h_server S;

/* the conversation chosen for each partition and its members (user indexes) */
static uint64_t convs[PARTITIONS];
static int members[PARTITIONS][PER_CONV];

typedef struct sender {
    h_dev *d;
    int index;
    uint64_t conv[PER_SENDER_MAX], seq[PER_SENDER_MAX];
    int k[PER_SENDER_MAX];
    int n, failures;
} sender;

static sender senders[USERS];
static atomic_int acked, stop;

static void *send_main(void *arg) {
    sender *s = arg;
    int mine[PARTITIONS], n_mine = 0;
    for (int p = 0; p < PARTITIONS; p++)
        for (int j = 0; j < PER_CONV; j++)
            if (members[p][j] == s->index) mine[n_mine++] = p;
    for (int k = 0; k < PER_SENDER_MAX && n_mine && !atomic_load(&stop); k++) {
        uint64_t conv = convs[mine[k % n_mine]];
        char text[64];
        snprintf(text, sizeof text, "u%d m%05d", s->index, k);
        uint64_t seq = 0;
        if (pc_send_text(s->d->c, conv, text, &seq) != 0) {
            if (s->failures++ < 3)
                fprintf(stderr, "  sender %d: %s (status %d)\n", s->index, pc_error(s->d->c),
                        pc_status(s->d->c));
            continue;
        }
        s->conv[s->n] = conv;
        s->seq[s->n] = seq;
        s->k[s->n] = k;
        s->n++;
        atomic_fetch_add(&acked, 1);
    }
    return NULL;
}

static int by_seq(const void *x, const void *y) {
    const h_sent *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* what was acknowledged in conv, by seq; returns the count */
static size_t acked_in(uint64_t conv, h_sent *out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < USERS; i++)
        for (int m = 0; m < senders[i].n && n < cap; m++) {
            if (senders[i].conv[m] != conv) continue;
            out[n].seq = senders[i].seq[m];
            out[n].sender = senders[i].d->id.user_id;
            snprintf(out[n].text, sizeof out[n].text, "u%d m%05d", i, senders[i].k[m]);
            n++;
        }
    qsort(out, n, sizeof *out, by_seq);
    return n;
}

typedef struct total_goal {
    h_dev *d;
    size_t want;
} total_goal;

static int has_total(void *ud) {
    const total_goal *g = ud;
    size_t n = 0;
    for (int p = 0; p < PARTITIONS; p++) n += h_dev_conv_events(g->d, convs[p], 1, NULL, 0);
    return n >= g->want;
}

static void many_partitions_kill9(void) {
    const char *flags[] = {"--writers", "3", "--fanouts", "3", "--fsync", "batch", "--send-rate", "100000",
                           "--write-rate", "100000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *u[USERS];
    for (int i = 0; i < USERS; i++) {
        u[i] = h_user_new(&S, NULL);
        CHECK(u[i], "user %d", i);
    }
    /* groups until each partition has one; members rotate over the users */
    int found = 0;
    for (int c = 0; c < MAX_CREATES && found < PARTITIONS; c++) {
        int m[PER_CONV] = {c % USERS, (c + 1) % USERS, (c + 3) % USERS};
        uint64_t others[PER_CONV - 1] = {u[m[1]]->id.user_id, u[m[2]]->id.user_id};
        uint64_t conv = 0;
        CHECK(pc_create_group(u[m[0]]->c, "p", others, PER_CONV - 1, &conv) == 0, "create_group: %s",
              pc_error(u[m[0]]->c));
        uint32_t p = (uint32_t)(conv % PARTITIONS);
        if (convs[p]) continue;
        convs[p] = conv;
        memcpy(members[p], m, sizeof m);
        found++;
    }
    CHECK(found == PARTITIONS, "only %d of %d partitions got a conversation", found, PARTITIONS);

    atomic_store(&acked, 0);
    atomic_store(&stop, 0);
    pthread_t th[USERS];
    for (int i = 0; i < USERS; i++) {
        senders[i].d = u[i];
        senders[i].index = i;
        CHECK(pthread_create(&th[i], NULL, send_main, &senders[i]) == 0, "thread");
    }
    int restarted = 1, rounds = 0, at_kill = 0, short_round = 0;
    double replayed = 0;
    while (restarted && replayed == 0 && rounds < KILL_ROUNDS && !short_round) {
        int want = at_kill + KILL_EVERY;
        uint64_t deadline = h_now_ms() + WAIT_MS;
        while (atomic_load(&acked) < want && h_now_ms() < deadline) h_sleep_ms(1);
        h_server_kill9(&S);
        at_kill = atomic_load(&acked);
        short_round = at_kill < want;
        rounds++;
        restarted = h_server_restart(&S) == 0;
        /* the replay runs before the listener opens: final by now */
        if (restarted && h_metric(&S, "parley_fanout_replayed_total", &replayed) != 0) replayed = -1;
    }
    /* some more sends on the restarted server, into every writer's partitions */
    int after = atomic_load(&acked) + KILL_EVERY / 2;
    uint64_t deadline = h_now_ms() + WAIT_MS;
    while (restarted && atomic_load(&acked) < after && h_now_ms() < deadline) h_sleep_ms(1);
    atomic_store(&stop, 1);
    for (int i = 0; i < USERS; i++) pthread_join(th[i], NULL);
    CHECK(restarted, "restart failed");
    CHECK(!short_round, "only %d acks before the deadline", at_kill);
    fprintf(stderr, "  %.0f messages replayed by the fan-out after kill %d; %d acked in all\n", replayed,
            rounds, atomic_load(&acked));
    CHECK(replayed > 0, "no fan-out replay after %d kills -9 (parley_fanout_replayed_total %.0f)", rounds,
          replayed);
    int failures = 0;
    for (int i = 0; i < USERS; i++) failures += senders[i].failures;
    CHECK(failures == 0, "%d sends failed across the kills (the clients should retry)", failures);

    size_t cap = (size_t)USERS * PER_SENDER_MAX;
    h_sent *exp = h_calloc(cap, sizeof *exp);
    NEED(exp);
    for (int p = 0; p < PARTITIONS; p++) {
        size_t n = acked_in(convs[p], exp, cap);
        CHECK(n > 0, "nothing acknowledged in the conversation of partition %d", p);
        for (size_t i = 1; i < n; i++)
            CHECK(exp[i].seq != exp[i - 1].seq, "two acknowledged sends in conversation %llu got seq %llu",
                  (unsigned long long)convs[p], (unsigned long long)exp[i].seq);
    }

    /* every user, from 0, on a fresh connection */
    for (int i = 0; i < USERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "resync%d", i);
        h_dev *r = h_dev_for_identity(&S, &u[i]->id, name, 0);
        CHECK(r && h_dev_sync(r, WAIT_MS) == 0, "user %d could not sync", i);
        total_goal goal = {r, 0};
        for (int p = 0; p < PARTITIONS; p++)
            for (int j = 0; j < PER_CONV; j++)
                if (members[p][j] == i) goal.want += acked_in(convs[p], exp, cap);
        h_dev *one[1] = {r};
        h_pump(one, 1, has_total, &goal, WAIT_MS);
        char why[4096];
        int ok = 1;
        for (int p = 0; p < PARTITIONS && ok; p++) {
            bool member = false;
            for (int j = 0; j < PER_CONV; j++) member |= members[p][j] == i;
            if (!member) {
                ok = h_dev_count(r, convs[p]) == 0;
                if (!ok) snprintf(why, sizeof why, "events of conversation %llu it is not in",
                                  (unsigned long long)convs[p]);
                continue;
            }
            size_t n = acked_in(convs[p], exp, cap);
            ok = h_expect_exact(r, convs[p], exp, n, why, sizeof why) == 0;
        }
        uint64_t last_user_seq = 0, bad_user_seq = 0;
        for (size_t e = 0; e < r->n_ev && !bad_user_seq; e++) {
            if (r->ev[e].user_seq <= last_user_seq) bad_user_seq = r->ev[e].user_seq;
            last_user_seq = r->ev[e].user_seq;
        }
        pc_stats st;
        pc_get_stats(r->c, &st);
        h_dev_free(r);
        CHECK(ok, "user %d: %s", i, why);
        CHECK(bad_user_seq == 0, "user %d: inbox not strictly increasing at user_seq %llu", i,
              (unsigned long long)bad_user_seq);
        CHECK(st.duplicates_dropped == 0, "user %d: the server sent %llu duplicate events", i,
              (unsigned long long)st.duplicates_dropped);
    }
    h_free(exp);
    for (int i = 0; i < USERS; i++) h_dev_free(u[i]);
    h_server_destroy(&S);
}

enum {
    ORDER_USERS = 64,       /* at most: users are made until every user partition has two */
    ORDER_PER_PARTITION = 2,
    ORDER_SENDERS = 6,
    ORDER_SENDS = 250,      /* per sender and conversation */
};

typedef struct order_sender {
    h_dev *d;
    int index;
    uint64_t conv[2];
    h_sent sent[2][ORDER_SENDS];
    size_t n[2];
    int failures;
} order_sender;

static void *order_send_main(void *arg) {
    order_sender *s = arg;
    for (int k = 0; k < ORDER_SENDS; k++)
        for (int c = 0; c < 2; c++) {
            char text[64];
            snprintf(text, sizeof text, "s%d c%d m%04d", s->index, c, k);
            if (h_send_rec(s->d, s->conv[c], text, s->sent[c], &s->n[c]) != 0) s->failures++;
        }
    return NULL;
}

/* the splitmix64 finaliser of src/chat/partition.c: user_partition() */
static uint32_t user_partition_of(uint64_t user, uint32_t partitions) {
    uint64_t x = user ^ 0x5bd1e9955bd1e995ull;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (uint32_t)(x % partitions);
}

static void group_order_across_owners(void) {
    const char *flags[] = {"--writers", "2", "--fanouts", "4", "--fsync", "off", "--send-rate", "100000",
                           "--write-rate", "100000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *u[ORDER_USERS];
    uint64_t others[ORDER_USERS - 1];
    int in_partition[8] = {0}, filled = 0, n_users = 0;
    while (n_users < ORDER_USERS && (filled < 8 || n_users < ORDER_SENDERS)) {
        h_dev *d = h_user_new(&S, NULL);
        CHECK(d, "user %d", n_users);
        if (n_users) others[n_users - 1] = d->id.user_id;
        u[n_users++] = d;
        if (++in_partition[user_partition_of(d->id.user_id, 8)] == ORDER_PER_PARTITION) filled++;
    }
    CHECK(filled == 8, "only %d of 8 user partitions got %d of %d users", filled, ORDER_PER_PARTITION, n_users);
    /* two groups of everyone, in different conversation partitions (read by
     * different fan-out threads unless they share p mod 4) */
    uint64_t conv[2] = {0, 0};
    for (int c = 0; c < 2; c++)
        CHECK(pc_create_group(u[0]->c, "order", others, (size_t)n_users - 1, &conv[c]) == 0, "create_group: %s",
              pc_error(u[0]->c));
    static order_sender snd[ORDER_SENDERS];
    pthread_t th[ORDER_SENDERS];
    for (int i = 0; i < ORDER_SENDERS; i++) {
        memset(&snd[i], 0, sizeof snd[i]);
        snd[i].d = u[i];
        snd[i].index = i;
        memcpy(snd[i].conv, conv, sizeof conv);
        CHECK(pthread_create(&th[i], NULL, order_send_main, &snd[i]) == 0, "thread");
    }
    int failures = 0;
    for (int i = 0; i < ORDER_SENDERS; i++) {
        pthread_join(th[i], NULL);
        failures += snd[i].failures;
    }
    CHECK(failures == 0, "%d sends failed", failures);
    /* what each conversation acknowledged, by seq */
    size_t cap = (size_t)ORDER_SENDERS * ORDER_SENDS;
    h_sent *exp[2];
    size_t n_exp[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        exp[c] = h_calloc(cap, sizeof *exp[c]);
        NEED(exp[c]);
        for (int i = 0; i < ORDER_SENDERS; i++)
            for (size_t m = 0; m < snd[i].n[c]; m++) exp[c][n_exp[c]++] = snd[i].sent[c][m];
        qsort(exp[c], n_exp[c], sizeof *exp[c], by_seq);
        CHECK(n_exp[c] == cap, "conversation %d: %zu acknowledged, want %zu", c, n_exp[c], cap);
    }
    for (int i = 0; i < n_users; i++) {
        char name[32];
        snprintf(name, sizeof name, "order%d", i);
        h_dev *r = h_dev_for_identity(&S, &u[i]->id, name, 0);
        CHECK(r && h_dev_sync(r, WAIT_MS) == 0, "user %d could not sync", i);
        h_dev *one[1] = {r};
        for (int c = 0; c < 2; c++) {
            h_count_goal goal = {one, 1, conv[c], cap, 1};
            h_pump(one, 1, h_pred_count, &goal, WAIT_MS);
        }
        char why[4096] = "";
        int ok = 1;
        for (int c = 0; c < 2 && ok; c++) ok = h_expect_exact(r, conv[c], exp[c], n_exp[c], why, sizeof why) == 0;
        pc_stats st;
        pc_get_stats(r->c, &st);
        h_dev_free(r);
        CHECK(ok, "user %d: %s", i, why);
        CHECK(st.duplicates_dropped == 0, "user %d: %llu events out of seq order or repeated", i,
              (unsigned long long)st.duplicates_dropped);
    }
    for (int c = 0; c < 2; c++) h_free(exp[c]);
    for (int i = 0; i < n_users; i++) h_dev_free(u[i]);
    h_server_destroy(&S);
}

int main(void) {
    RUN(many_partitions_kill9);
    RUN(group_order_across_owners);
    h_server_destroy(&S);
    CHECK_EXIT();
}
