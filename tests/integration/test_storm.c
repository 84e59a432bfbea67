/* test_storm.c -- a reconnect storm: 5,000 connected, syncing clients; the
 * server is drained (SIGTERM) and restarted on the same data. Every client
 * reconnects by itself (libparley's backoff with full jitter, driven by
 * pc_poll(c, 0) round robin in a few threads), the reconnects are spread
 * over more than one second, and no acknowledged message is lost: neither
 * those acked before the drain nor those a sender kept sending through the
 * drain and the restart (retried on the same client_msg_id; every sender
 * gets messages acknowledged after the restart).
 *
 * The jitter itself: every client's backoff draws from a recording wrapper
 * around the real random source (pc_set_jitter_source), and after each
 * pc_poll the test reads when the client scheduled its next attempt. Every
 * client backs off at least once; no window exceeds the cap; each scheduled
 * delay divided by its window is uniform on [0, 1] (Kolmogorov-Smirnov
 * distance and ten buckets, bounds a true uniform misses with probability
 * < 1e-10), so reconnects are not at the windows' edges nor at one
 * instant; and no client draws again (attempts again) before the time it
 * had scheduled.
 *
 * Asserts outcomes only; every wait is a liveness bound. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <sodium.h>

#include "../check.h"
#include "harness.h"
#include "internal.h"   /* pc_set_jitter_source */

#define NEED(x) CHECK((x), "%s", #x)

enum {
    N_CLIENTS = 5000,
    N_THREADS = 8,
    PER_THREAD = N_CLIENTS / N_THREADS,
    N_PAIRS = 250,             /* client s < N_PAIRS sends to client s + N_CLIENTS/2 */
    N_STREAM = 10,             /* senders through the drain, to clients STREAM_TO + k */
    STREAM_TO = 4000,
    MAX_EXP = 512,
    SETUP_MS = 120000,
    STORM_MS = 60000,
    BASE_MS = 100,
    CAP_MS = 2000,
    MAX_DRAWS = 1 << 18,
};

/* Every delay a storm client scheduled, with the window it was drawn over. */
typedef struct schedule {
    uint32_t window;
    int64_t delay_ms;
} schedule;
static schedule schedules[MAX_DRAWS];
static atomic_int n_schedules, n_wide_windows, n_early, n_at_cap;

typedef struct sclient {
    pc_client *c;
    pc_identity id;
    uint64_t *conv, *seq;      /* events seen (owned by the client's thread) */
    size_t n, cap;
    uint64_t reconnected_s;    /* second (monotonic) of the first reconnect; 0: none */
    /* backoff, as the client's own thread saw it */
    int draws;
    uint64_t draw_ms;          /* the last draw: when, over which window */
    uint32_t draw_window;
    int64_t scheduled_ms;      /* the attempt time last seen in c->next_attempt_ms */
} sclient;

static h_server S;
static sclient cl[N_CLIENTS];
/* what each receiver must have: written before `published` is raised */
static uint64_t exp_conv[N_CLIENTS][4], exp_seq[N_CLIENTS][4];
static int exp_n[N_CLIENTS];
static uint64_t stream_conv[N_STREAM], stream_seq[N_STREAM][MAX_EXP];
static int stream_n[N_STREAM];

static atomic_int phase;         /* 0 register, 1 pairs send, 2 poll, 3 after restart: send, 4 stop */
static atomic_int registered, paired, resent, failures, reconnected, complete;
static atomic_int published;     /* every expected seq is known */

static void on_event(void *ud, uint64_t user_seq, const Parley__V1__Message *m) {
    (void)user_seq;
    sclient *s = ud;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        uint64_t *a = realloc(s->conv, nc * sizeof *a), *b = a ? realloc(s->seq, nc * sizeof *b) : NULL;
        if (a) s->conv = a;
        if (!a || !b) return;
        s->seq = b;
        s->cap = nc;
    }
    s->conv[s->n] = m->conversation_id;
    s->seq[s->n++] = m->seq;
}

static int seen(const sclient *s, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < s->n; i++)
        if (s->conv[i] == conv && s->seq[i] == seq) return 1;
    return 0;
}

/* The storm clients' random source: the real one, watched. Runs on the
 * client's own thread (inside pc_poll or a blocking call). */
static uint32_t recorded_jitter(void *ud, uint32_t bound) {
    sclient *s = ud;
    uint64_t now = h_now_ms();
    /* a new draw follows an attempt, which follows the time scheduled */
    if (s->scheduled_ms && (int64_t)now + 1 < s->scheduled_ms) atomic_fetch_add(&n_early, 1);
    s->scheduled_ms = 0;
    s->draws++;
    s->draw_ms = now;
    s->draw_window = bound - 1;
    if (bound - 1 > CAP_MS || bound - 1 < BASE_MS) atomic_fetch_add(&n_wide_windows, 1);
    if (bound - 1 == CAP_MS) atomic_fetch_add(&n_at_cap, 1);
    return randombytes_uniform(bound);
}

/* After a pc_poll: a new scheduled attempt is the delay of the last draw. */
static void note_schedule(sclient *s) {
    int64_t next = s->c->next_attempt_ms;
    if (!next || next == s->scheduled_ms || !s->draws) return;
    s->scheduled_ms = next;
    int i = atomic_fetch_add(&n_schedules, 1);
    if (i < MAX_DRAWS) schedules[i] = (schedule){s->draw_window, next - (int64_t)s->draw_ms};
}

static pc_client *new_client(void) {
    pc_options o;
    h_client_options(&S, &o);
    o.reconnect_base_ms = BASE_MS;
    o.reconnect_cap_ms = CAP_MS;
    o.max_reconnects = 200;     /* in a row: the restart takes a few seconds */
    return pc_new(&o);
}

static void fail(const char *what, int i, const pc_client *c) {
    if (atomic_fetch_add(&failures, 1) < 10)
        fprintf(stderr, "  client %d: %s: %s\n", i, what, c ? pc_error(c) : "out of memory");
}

static int wait_phase(int want, int ms) {
    uint64_t until = h_now_ms() + (uint64_t)ms;
    while (atomic_load(&phase) < want && h_now_ms() < until) h_sleep_ms(5);
    return atomic_load(&phase) >= want;
}

/* Does receiver r have everything expected of it? */
static int receiver_complete(int r) {
    for (int k = 0; k < exp_n[r]; k++)
        if (!seen(&cl[r], exp_conv[r][k], exp_seq[r][k])) return 0;
    if (r >= STREAM_TO && r < STREAM_TO + N_STREAM) {
        int k = r - STREAM_TO;
        for (int j = 0; j < stream_n[k]; j++)
            if (!seen(&cl[r], stream_conv[k], stream_seq[k][j])) return 0;
    }
    return 1;
}

static void *client_thread(void *arg) {
    int t = (int)(intptr_t)arg, lo = t * PER_THREAD, hi = lo + PER_THREAD;
    for (int i = lo; i < hi; i++) {
        sclient *s = &cl[i];
        s->c = new_client();
        if (s->c) pc_set_jitter_source(s->c, recorded_jitter, s);
        pc_identity_generate(&s->id);
        char name[32];
        snprintf(name, sizeof name, "storm%04d", i);
        if (!s->c || pc_connect(s->c) != 0 || pc_register_user(s->c, name, &s->id) != 0) {
            fail("register", i, s->c);
            continue;
        }
        pc_on_event(s->c, on_event, s);
        if (pc_start_sync(s->c) != 0) fail("sync", i, s->c);
        atomic_fetch_add(&registered, 1);
    }
    /* senders: a direct conversation with their receiver, two acked messages */
    if (!wait_phase(1, SETUP_MS)) return NULL;
    for (int i = lo; i < hi && i < N_PAIRS; i++) {
        int r = i + N_CLIENTS / 2;
        uint64_t conv = 0, seq = 0;
        if (pc_open_direct(cl[i].c, cl[r].id.user_id, &conv) != 0) {
            fail("open", i, cl[i].c);
            continue;
        }
        for (int k = 0; k < 2; k++) {
            if (pc_send_text(cl[i].c, conv, "before the storm", &seq) != 0) {
                fail("send", i, cl[i].c);
                continue;
            }
            exp_conv[r][exp_n[r]] = conv;
            exp_seq[r][exp_n[r]++] = seq;
        }
    }
    atomic_fetch_add(&paired, 1);

    /* the storm: poll everyone; after the restart, the senders send again */
    int sent_again = 0, counted_done = 0;
    int done[PER_THREAD];
    memset(done, 0, sizeof done);
    int n_done = 0, n_reconnected = 0;
    while (atomic_load(&phase) < 4) {
        int busy = 0;
        for (int i = lo; i < hi; i++) {
            sclient *s = &cl[i];
            if (!s->c) continue;
            int r = pc_poll(s->c, 0);
            note_schedule(s);
            if (r < 0 && atomic_load(&failures) < 1000) fail("poll", i, s->c);
            if (r > 0) busy = 1;
            if (!s->reconnected_s) {
                pc_stats st;
                pc_get_stats(s->c, &st);
                if (st.reconnects > 0) {
                    s->reconnected_s = h_now_ms() / 1000;
                    n_reconnected++;
                    atomic_fetch_add(&reconnected, 1);
                }
            }
        }
        if (atomic_load(&phase) == 3 && !sent_again) {
            sent_again = 1;
            for (int i = lo; i < hi && i < N_PAIRS; i++) {
                int r = i + N_CLIENTS / 2;
                uint64_t seq = 0;
                if (exp_n[r] == 0) continue;
                if (pc_send_text(cl[i].c, exp_conv[r][0], "after the storm", &seq) != 0) {
                    fail("send again", i, cl[i].c);
                    continue;
                }
                exp_conv[r][exp_n[r]] = exp_conv[r][0];
                exp_seq[r][exp_n[r]++] = seq;
            }
            atomic_fetch_add(&resent, 1);
        }
        if (atomic_load(&published)) {
            for (int i = lo; i < hi; i++)
                if (!done[i - lo] && receiver_complete(i)) {
                    done[i - lo] = 1;
                    n_done++;
                }
            if (n_done == PER_THREAD && !counted_done) {
                counted_done = 1;
                atomic_fetch_add(&complete, 1);
            }
        }
        if (!busy) h_sleep_ms(2);
    }
    (void)n_reconnected;
    for (int i = lo; i < hi; i++) {
        /* cut instead of a graceful close: 5,000 handshakes are not the point */
        if (cl[i].c && pc_fd(cl[i].c) >= 0) shutdown(pc_fd(cl[i].c), SHUT_RDWR);
        pc_free(cl[i].c);
        free(cl[i].conv);
        free(cl[i].seq);
        cl[i].c = NULL;
    }
    return NULL;
}

/* Sends one message after another to its receiver from before the drain
 * until after the restart: each pc_send_text returns once acked, retrying
 * across the outage on the same client_msg_id. */
static atomic_int stream_stop, stream_ready;
static atomic_int stream_acked[N_STREAM];   /* stream_n as the main thread may read it */
static void *stream_thread(void *arg) {
    (void)arg;
    pc_client *c[N_STREAM];
    for (int k = 0; k < N_STREAM; k++) {
        c[k] = new_client();
        pc_identity id;
        pc_identity_generate(&id);
        char name[32];
        snprintf(name, sizeof name, "stream%d", k);
        if (!c[k] || pc_connect(c[k]) != 0 || pc_register_user(c[k], name, &id) != 0 ||
            /* a group, not a direct conversation: the receiver's client is
             * another thread's, so it cannot accept a message request, and
             * a request is bounded (consent); groups of strangers are not */
            pc_create_group(c[k], "stream", &cl[STREAM_TO + k].id.user_id, 1, &stream_conv[k]) != 0) {
            fail("stream setup", k, c[k]);
            stream_n[k] = -1;
        }
    }
    atomic_store(&stream_ready, 1);
    while (!atomic_load(&stream_stop)) {
        for (int k = 0; k < N_STREAM; k++) {
            uint64_t seq = 0;
            if (stream_n[k] < 0 || stream_n[k] >= MAX_EXP) continue;
            if (pc_send_text(c[k], stream_conv[k], "through the storm", &seq) == 0) {
                stream_seq[k][stream_n[k]++] = seq;
                atomic_fetch_add(&stream_acked[k], 1);
            } else
                fail("stream send", k, c[k]);
        }
        h_sleep_ms(20);
    }
    for (int k = 0; k < N_STREAM; k++) {
        if (c[k] && pc_fd(c[k]) >= 0) shutdown(pc_fd(c[k]), SHUT_RDWR);
        pc_free(c[k]);
        if (stream_n[k] < 0) stream_n[k] = 0;
    }
    return NULL;
}

static int server_exited(const h_server *s) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static int wait_counter(atomic_int *v, int want, int ms) {
    uint64_t until = h_now_ms() + (uint64_t)ms;
    while (atomic_load(v) < want && h_now_ms() < until) h_sleep_ms(20);
    return atomic_load(v) >= want;
}

/* Until every stream sender has more than base[k] messages acked. */
static int wait_streams_past(const int *base, int ms) {
    int all = 0;
    for (uint64_t until = h_now_ms() + (uint64_t)ms; !all && h_now_ms() < until;) {
        all = 1;
        for (int k = 0; k < N_STREAM; k++)
            if (atomic_load(&stream_acked[k]) <= base[k]) all = 0;
        if (!all) h_sleep_ms(20);
    }
    return all;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Checks the recorded backoff (see the top of the file), after the client
 * threads are joined. 0, or -1 with why. */
enum { JITTER_BUCKETS = 10 };
static int check_jitter(char *why, size_t cap) {
    int n = atomic_load(&n_schedules);
    if (n > MAX_DRAWS) n = MAX_DRAWS;
    int clients = 0, draws = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        clients += cl[i].draws > 0;
        draws += cl[i].draws;
    }
    double *u = malloc((size_t)(n ? n : 1) * sizeof *u);
    if (!u) return snprintf(why, cap, "out of memory"), -1;
    for (int i = 0; i < n; i++) {
        /* the discrete uniform on 0..window, mid-step, against U(0,1); the
         * scheduled time is read 0-1 ms after the draw's clock reading */
        double x = (schedules[i].delay_ms + 0.5) / (schedules[i].window + 1.0);
        u[i] = x < 0 ? 0 : x > 1 ? 1 : x;
    }
    qsort(u, (size_t)n, sizeof *u, cmp_double);
    double ks = 0;
    int buckets[JITTER_BUCKETS] = {0};
    for (int i = 0; i < n; i++) {
        double lo = u[i] - (double)i / n, hi = (double)(i + 1) / n - u[i];
        if (lo > ks) ks = lo;
        if (hi > ks) ks = hi;
        buckets[u[i] >= 1 ? JITTER_BUCKETS - 1 : (int)(u[i] * JITTER_BUCKETS)]++;
    }
    free(u);
    fprintf(stderr, "  %d backoff draws by %d clients (%d over the cap's window), %d delays seen "
            "scheduled; KS distance from uniform %.4f; buckets", draws, clients,
            atomic_load(&n_at_cap), n, ks);
    for (int b = 0; b < JITTER_BUCKETS; b++) fprintf(stderr, " %d", buckets[b]);
    fputc('\n', stderr);
    if (atomic_load(&n_schedules) > MAX_DRAWS) return snprintf(why, cap, "more than %d delays", MAX_DRAWS), -1;
    if (clients != N_CLIENTS)
        return snprintf(why, cap, "%d of %d clients backed off before reconnecting", clients, N_CLIENTS), -1;
    if (atomic_load(&n_wide_windows))
        return snprintf(why, cap, "%d draws over a window outside [%d, %d] ms", atomic_load(&n_wide_windows),
                        BASE_MS, CAP_MS), -1;
    if (atomic_load(&n_early))
        return snprintf(why, cap, "%d attempts came before their scheduled time", atomic_load(&n_early)), -1;
    if (n < N_CLIENTS) return snprintf(why, cap, "only %d scheduled delays seen", n), -1;
    /* n >= 5000: a true uniform exceeds 0.05 with probability 2*exp(-2*n*0.05^2) < 1e-10 */
    if (ks >= 0.05) return snprintf(why, cap, "delays/window: KS distance %.4f from uniform", ks), -1;
    for (int b = 0; b < JITTER_BUCKETS; b++)
        if (buckets[b] < n / JITTER_BUCKETS * 7 / 10 || buckets[b] > n / JITTER_BUCKETS * 13 / 10)
            return snprintf(why, cap, "delays/window: bucket %d holds %d of %d", b, buckets[b], n), -1;
    return 0;
}

static void storm(void) {
    struct rlimit rl;
    NEED(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    CHECK(rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 2 * N_CLIENTS + 256,
          "open-file limit %llu is too low for %d clients and their server",
          (unsigned long long)rl.rlim_cur, N_CLIENTS);
    const char *flags[] = {"--drain-window", "3000", "--workers", "2", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");

    pthread_t th[N_THREADS], st;
    int stream_started = 0;
    for (int t = 0; t < N_THREADS; t++) pthread_create(&th[t], NULL, client_thread, (void *)(intptr_t)t);
    uint64_t until_reg = h_now_ms() + SETUP_MS;
    while (atomic_load(&registered) + atomic_load(&failures) < N_CLIENTS && h_now_ms() < until_reg)
        h_sleep_ms(20);
    int ok = atomic_load(&registered) == N_CLIENTS;
    fprintf(stderr, "  %d clients registered in %llu ms\n", atomic_load(&registered),
            (unsigned long long)(h_now_ms() + SETUP_MS - until_reg));
    if (ok) {
        atomic_store(&phase, 1);
        ok = wait_counter(&paired, N_THREADS, SETUP_MS) && atomic_load(&failures) == 0;
    }
    double conns = 0;
    if (ok) {
        h_metric(&S, "parley_connections", &conns);
        fprintf(stderr, "  %d clients connected (server: %.0f connections)\n",
                atomic_load(&registered), conns);
        stream_started = pthread_create(&st, NULL, stream_thread, NULL) == 0;
        atomic_store(&phase, 2);
        ok = wait_counter(&stream_ready, 1, SETUP_MS) && atomic_load(&failures) == 0;
        /* the stream is under way: every sender has an ack */
        int zero[N_STREAM] = {0};
        ok = ok && wait_streams_past(zero, SETUP_MS);
    }
    int exit_status = -1;
    uint64_t t_term = h_now_ms();
    int at_term[N_STREAM], at_restart[N_STREAM];
    for (int k = 0; k < N_STREAM; k++) at_term[k] = at_restart[k] = atomic_load(&stream_acked[k]);
    int stream_through = 0;
    if (ok) {
        ok = kill(S.pid, SIGTERM) == 0;
        uint64_t until = h_now_ms() + 30000;
        while (ok && !server_exited(&S) && h_now_ms() < until) h_sleep_ms(20);
        exit_status = h_server_stop(&S);   /* reaps (or kills, if it hangs) */
        fprintf(stderr, "  drained in %llu ms, exit status %d; %d clients reconnect-pending\n",
                (unsigned long long)(h_now_ms() - t_term), exit_status, N_CLIENTS);
        ok = ok && h_server_restart(&S) == 0;
        for (int k = 0; k < N_STREAM; k++) at_restart[k] = atomic_load(&stream_acked[k]);
    }
    if (ok) {
        atomic_store(&phase, 3);
        ok = wait_counter(&reconnected, N_CLIENTS, STORM_MS);
        fprintf(stderr, "  %d of %d clients reconnected within %llu ms of SIGTERM\n",
                atomic_load(&reconnected), N_CLIENTS, (unsigned long long)(h_now_ms() - t_term));
        ok = wait_counter(&resent, N_THREADS, STORM_MS) && ok;
        /* every stream sender gets acks from the restarted server */
        stream_through = wait_streams_past(at_restart, STORM_MS);
    }
    atomic_store(&stream_stop, 1);
    if (stream_started) pthread_join(st, NULL);
    atomic_store(&published, 1);
    int all_complete = ok && wait_counter(&complete, N_THREADS, STORM_MS);
    if (ok) h_metric(&S, "parley_connections", &conns);
    atomic_store(&phase, 4);
    for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);

    CHECK(atomic_load(&failures) == 0, "%d client failures (first ones above)", atomic_load(&failures));
    CHECK(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0, "drain exit status %d", exit_status);
    CHECK(ok, "the storm did not settle (%d reconnected)", atomic_load(&reconnected));
    /* spread by jitter and the drain window, not one wave */
    uint64_t first = UINT64_MAX, last = 0;
    int distinct = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        uint64_t s = cl[i].reconnected_s;
        if (s < first) first = s;
        if (s > last) last = s;
    }
    for (uint64_t s = first; s <= last && last - first < 3600; s++)
        for (int i = 0; i < N_CLIENTS; i++)
            if (cl[i].reconnected_s == s) {
                distinct++;
                break;
            }
    fprintf(stderr, "  reconnects spread over %d distinct seconds\n", distinct);
    CHECK(distinct > 1, "every client reconnected in the same second");
    int streamed = 0, after_term = 0;
    for (int k = 0; k < N_STREAM; k++) {
        streamed += stream_n[k];
        after_term += stream_n[k] - at_term[k];
    }
    fprintf(stderr, "  %d messages acked by the stream senders, %d of them after SIGTERM; server now "
            "has %.0f connections\n", streamed, after_term, conns);
    CHECK(stream_through, "a stream sender got no ack from the restarted server");
    for (int k = 0; k < N_STREAM; k++)
        CHECK(stream_n[k] > at_restart[k] && at_restart[k] >= at_term[k] && at_term[k] >= 1,
              "stream %d: %d acked before SIGTERM, %d at the restart, %d in all", k, at_term[k],
              at_restart[k], stream_n[k]);
    char why[256];
    CHECK(check_jitter(why, sizeof why) == 0, "reconnect jitter: %s", why);
    CHECK(all_complete, "some receivers are missing acknowledged messages (%d of %d threads complete)",
          atomic_load(&complete), N_THREADS);
    h_server_destroy(&S);
}

int main(void) {
    RUN(storm);
    h_server_destroy(&S);
    CHECK_EXIT();
}
