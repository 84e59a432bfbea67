/* test_group.c -- one group of 50 members with 2 devices each (100 clients
 * in this process), 20 members sending concurrently from 20 threads: every
 * device ends with the same sequence of messages, seqs strictly increasing
 * with no gap, every acknowledged send present exactly once. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

enum {
    USERS = 50,
    DEVS = USERS * 2,
    SENDERS = 20,
    PER_SENDER = 10,
    THREADS = SENDERS,          /* each thread owns DEVS / THREADS devices */
    DEVS_PER_THREAD = DEVS / THREADS,
    WAIT_MS = 40000,
};

static h_server S;
static h_dev *devs[DEVS];       /* user u: devs[2u] (first device), devs[2u+1] (linked) */
static uint64_t group_id;

typedef struct acked {
    uint64_t seq;
    uint64_t sender;
    char text[32];
    int ok;
} acked;
static acked sent[SENDERS][PER_SENDER];
static atomic_int senders_done;
static atomic_int total_acked;

typedef struct worker {
    int index;
    h_dev *own[DEVS_PER_THREAD];
    int timed_out;
    int send_failures;
} worker;

static void poll_all(worker *w) {
    for (int i = 0; i < DEVS_PER_THREAD; i++)
        if (w->own[i]->c) pc_poll(w->own[i]->c, 0);
}

typedef struct worker_goal {
    worker *w;
} worker_goal;

static int worker_done(void *ud) {
    worker *w = ud;
    if (atomic_load(&senders_done) < SENDERS) return 0;
    size_t want = (size_t)atomic_load(&total_acked);
    for (int i = 0; i < DEVS_PER_THREAD; i++)
        if (h_dev_conv_events(w->own[i], group_id, 1, NULL, 0) < want) return 0;
    return 1;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    /* the thread's first device is the sender: devs[2 * index] (a first device) */
    h_dev *sender = w->own[0];
    for (int k = 0; k < PER_SENDER; k++) {
        acked *a = &sent[w->index][k];
        snprintf(a->text, sizeof a->text, "s%02d-m%02d", w->index, k);
        uint64_t seq = 0;
        if (pc_send_text(sender->c, group_id, a->text, &seq) == 0) {
            a->seq = seq;
            a->sender = sender->id.user_id;
            a->ok = 1;
            atomic_fetch_add(&total_acked, 1);
        } else {
            fprintf(stderr, "  sender %d message %d: %s (status %d)\n", w->index, k,
                    pc_error(sender->c), pc_status(sender->c));
            w->send_failures++;
        }
        poll_all(w);
    }
    atomic_fetch_add(&senders_done, 1);
    w->timed_out = !h_pump(w->own, DEVS_PER_THREAD, worker_done, w, WAIT_MS);
    return NULL;
}

static void group_of_50_concurrent_senders(void) {
    /* users and devices */
    for (int u = 0; u < USERS; u++) {
        devs[2 * u] = h_user_new(&S, NULL);
        CHECK(devs[2 * u], "register user %d failed", u);
        devs[2 * u + 1] = h_device_link(&S, devs[2 * u]);
        CHECK(devs[2 * u + 1], "link device for user %d failed", u);
    }
    uint64_t members[USERS - 1];
    for (int u = 1; u < USERS; u++) members[u - 1] = devs[2 * u]->id.user_id;
    CHECK(pc_create_group(devs[0]->c, "fifty", members, USERS - 1, &group_id) == 0,
          "create_group with %d members: %s (status %d)", USERS, pc_error(devs[0]->c),
          pc_status(devs[0]->c));
    for (int i = 0; i < DEVS; i++)
        CHECK(pc_start_sync(devs[i]->c) == 0, "start_sync %s: %s", devs[i]->name,
              pc_error(devs[i]->c));
    h_count_goal sg = { devs, DEVS, 0, 0, 0 };
    CHECK(h_pump(devs, DEVS, h_pred_sync_done, &sg, WAIT_MS), "not every device got SyncDone");

    /* 20 threads, each owning 5 devices; thread t sends from user t's first device */
    worker w[THREADS];
    memset(w, 0, sizeof w);
    int used[DEVS] = { 0 };
    for (int t = 0; t < THREADS; t++) {
        w[t].index = t;
        w[t].own[0] = devs[2 * t];
        used[2 * t] = 1;
    }
    int next = 0;
    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < DEVS_PER_THREAD; i++) {
            while (used[next]) next++;
            w[t].own[i] = devs[next];
            used[next] = 1;
        }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, worker_main, &w[t]);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);

    int failures = 0;
    for (int t = 0; t < THREADS; t++) failures += w[t].send_failures;
    CHECK(failures == 0, "%d sends failed", failures);
    int n = atomic_load(&total_acked);

    /* the reference: device 0's list */
    const h_event **ref = h_calloc(4096, sizeof *ref);
    const h_event **got = h_calloc(4096, sizeof *got);
    CHECK(ref && got, "oom");
    size_t nref = h_dev_conv_events(devs[0], group_id, 1, ref, 4096);
    int bad = 0;
    for (int i = 0; i < DEVS && !bad; i++) {
        size_t k = h_dev_conv_events(devs[i], group_id, 1, got, 4096);
        if (k != (size_t)n) {
            fprintf(stderr, "  %s has %zu messages, want %d\n", devs[i]->name, k, n);
            bad = 1;
            break;
        }
        for (size_t j = 0; j < k; j++)
            if (got[j]->seq != ref[j]->seq || got[j]->sender_user_id != ref[j]->sender_user_id ||
                got[j]->body_len != ref[j]->body_len ||
                memcmp(got[j]->body, ref[j]->body, got[j]->body_len) != 0) {
                fprintf(stderr, "  %s differs from %s at #%zu (seq %llu vs %llu)\n",
                        devs[i]->name, devs[0]->name, j, (unsigned long long)got[j]->seq,
                        (unsigned long long)ref[j]->seq);
                bad = 1;
                break;
            }
        /* every event of the group, MEMBERSHIP included: consecutive seqs */
        size_t all = h_dev_conv_events(devs[i], group_id, 0, got, 4096);
        for (size_t j = 1; j < all && !bad; j++)
            if (got[j]->seq != got[j - 1]->seq + 1) {
                fprintf(stderr, "  %s: seq %llu follows %llu (gap or disorder)\n", devs[i]->name,
                        (unsigned long long)got[j]->seq, (unsigned long long)got[j - 1]->seq);
                bad = 1;
            }
    }
    int timeouts = 0;
    for (int t = 0; t < THREADS; t++) timeouts += w[t].timed_out;
    /* every acknowledged send exactly once, with its sender and text */
    int missing = 0;
    for (int s = 0; s < SENDERS && !bad; s++)
        for (int k = 0; k < PER_SENDER; k++) {
            const acked *a = &sent[s][k];
            if (!a->ok) continue;
            int found = 0;
            for (size_t j = 0; j < nref; j++)
                if (ref[j]->seq == a->seq) {
                    found++;
                    if (ref[j]->sender_user_id != a->sender ||
                        ref[j]->body_len != strlen(a->text) ||
                        memcmp(ref[j]->body, a->text, ref[j]->body_len) != 0)
                        found = 100;
                }
            if (found != 1) {
                if (missing++ < 5)
                    fprintf(stderr, "  acked %s (seq %llu) found %d times (100: wrong content)\n",
                            a->text, (unsigned long long)a->seq, found);
            }
        }
    /* per sender: its seqs increase in the order it sent */
    int misorder = 0;
    for (int s = 0; s < SENDERS; s++)
        for (int k = 1; k < PER_SENDER; k++)
            if (sent[s][k].ok && sent[s][k - 1].ok && sent[s][k].seq <= sent[s][k - 1].seq)
                misorder++;
    h_free(ref);
    h_free(got);
    CHECK(!bad, "devices disagree or have gaps (%d worker threads timed out waiting)", timeouts);
    CHECK(missing == 0, "%d acknowledged messages not present exactly once", missing);
    CHECK(misorder == 0, "%d sends got a seq not above the same sender's previous one", misorder);
    CHECK(timeouts == 0, "%d worker threads timed out", timeouts);
    for (int i = 0; i < DEVS; i++) {
        pc_stats st;
        pc_get_stats(devs[i]->c, &st);
        CHECK(st.reconnects == 0, "%s reconnected %llu times", devs[i]->name,
              (unsigned long long)st.reconnects);
    }
}

int main(void) {
    const char *flags[] = { "--max-group-members", "128", NULL };
    if (h_server_start(&S, flags) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(group_of_50_concurrent_senders);
    double stored = 0, deliveries = 0;
    if (h_metric(&S, "parley_messages_stored_total", &stored) == 0 &&
        h_metric(&S, "parley_deliveries_total", &deliveries) == 0)
        fprintf(stderr, "  metrics: stored %.0f deliveries %.0f\n", stored, deliveries);
    int alive = h_server_alive(&S);
    if (!alive) {
        h_server_log_tail(&S, 40);
        printf("FAIL server_survived\n");
        check_failures_total++;
    }
    for (int i = 0; i < DEVS; i++) h_dev_free(devs[i]);
    h_server_destroy(&S);
    CHECK_EXIT();
}
