/* test_drain.c -- SIGTERM drains: the listener closes, every connected
 * client gets close code 1012 (spread over the drain window), the server
 * exits 0 having counted every close in its log, and every acknowledged
 * message is there after the restart, including the ones acknowledged while
 * the drain ran. A second SIGTERM during a long drain window exits at once,
 * with status 0, losing nothing acknowledged. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 20000, N_CLIENTS = 40, LIVENESS_MS = 20000 };

static h_server S;

/* Has the server process exited (a zombie, not reaped yet)? Leaves the
 * reaping, and so the exit status, to h_server_stop. */
static int server_exited(const h_server *s) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');   /* "pid (comm) S ..." */
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static int wait_exited(const h_server *s, int ms) {
    uint64_t until = h_now_ms() + (uint64_t)ms;
    while (h_now_ms() < until) {
        if (server_exited(s)) return 1;
        h_sleep_ms(20);
    }
    return 0;
}

/* The server log (bounded read) into buf; returns the length or -1. */
static long read_log(const h_server *s, char *buf, size_t cap) {
    FILE *f = fopen(s->log, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return (long)n;
}

/* The count in the server's last "drain done: N connections closed with
 * 1012" log line (the process is gone, so is its /metrics), or -1. */
static long drain_closes_logged(const h_server *s) {
    static char buf[1 << 20];
    if (read_log(s, buf, sizeof buf) < 0) return -1;
    const char *key = "drain done: ", *p = NULL;
    for (const char *q = strstr(buf, key); q; q = strstr(q + 1, key)) p = q;
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static int log_has(const h_server *s, const char *text) {
    static char buf[1 << 20];
    return read_log(s, buf, sizeof buf) >= 0 && strstr(buf, text) != NULL;
}

/* Clients that do not reconnect, so the close code is the last error. */
static h_dev *quiet_dev(h_dev *d) {
    pc_options o;
    h_client_options(&S, &o);
    o.max_reconnects = 0;
    pc_client *c = pc_new(&o);
    if (!c || pc_connect(c) != 0 || pc_sign_in(c, &d->id) != 0) {
        fprintf(stderr, "  quiet client: %s\n", c ? pc_error(c) : "out of memory");
        pc_free(c);
        return NULL;
    }
    pc_free(d->c);
    d->c = c;
    return d;
}

static void sigterm_drains_with_1012_and_loses_nothing(void) {
    const char *flags[] = {"--drain-window", "1500", "--workers", "2", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *recv = h_user_new(&S, "receiver");
    NEED(recv);
    h_dev *devs[N_CLIENTS];
    memset(devs, 0, sizeof devs);
    for (int i = 0; i < N_CLIENTS; i++) {
        devs[i] = h_user_new(&S, NULL);
        NEED(devs[i] && quiet_dev(devs[i]));
    }
    /* every client has a conversation with the receiver and one acked message */
    uint64_t convs[N_CLIENTS], seqs[N_CLIENTS][64];
    int n_acked[N_CLIENTS];
    memset(n_acked, 0, sizeof n_acked);
    for (int i = 0; i < N_CLIENTS; i++) {
        NEED(pc_open_direct(devs[i]->c, recv->id.user_id, &convs[i]) == 0);
        NEED(h_accept(recv, convs[i]) == 0);   /* not a message request: no bound */
        uint64_t seq = 0;
        NEED(pc_send_text(devs[i]->c, convs[i], "before the drain", &seq) == 0);
        seqs[i][n_acked[i]++] = seq;
    }
    h_dev_disconnect(recv);   /* catches up after the restart */

    CHECK(kill(S.pid, SIGTERM) == 0, "kill");
    /* keep sending until the drain closes each client: what is acked counts */
    int got_1012 = 0, other = 0;
    int done[N_CLIENTS];
    memset(done, 0, sizeof done);
    uint64_t until = h_now_ms() + LIVENESS_MS;
    for (int left = N_CLIENTS; left > 0 && h_now_ms() < until;) {
        for (int i = 0; i < N_CLIENTS; i++) {
            if (done[i]) continue;
            uint64_t seq = 0;
            int rc = n_acked[i] < 64 ? pc_send_text(devs[i]->c, convs[i], "during the drain", &seq)
                                      : pc_poll(devs[i]->c, 10);
            if (rc == 0 && seq) seqs[i][n_acked[i]++] = seq;
            if (rc < 0) {
                done[i] = 1;
                left--;
                if (strstr(pc_error(devs[i]->c), "(1012)")) got_1012++;
                else {
                    other++;
                    fprintf(stderr, "  client %d: %s\n", i, pc_error(devs[i]->c));
                }
            }
        }
        h_sleep_ms(20);
    }
    CHECK(wait_exited(&S, LIVENESS_MS), "server still running after the drain");
    int st = h_server_stop(&S);   /* reaps it */
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    CHECK(got_1012 == N_CLIENTS, "%d of %d clients got 1012 (%d something else)", got_1012,
          N_CLIENTS, other);
    long closes = drain_closes_logged(&S);
    CHECK(closes == N_CLIENTS, "the drain counted %ld closes with 1012, want %d", closes, N_CLIENTS);
    int total = 0;
    for (int i = 0; i < N_CLIENTS; i++) total += n_acked[i];
    fprintf(stderr, "  %d messages acknowledged, %d of them during the drain\n", total,
            total - N_CLIENTS);

    CHECK(h_server_restart(&S) == 0, "restart");
    NEED(h_dev_reconnect(&S, recv, 0) == 0);
    NEED(h_dev_sync(recv, WAIT_MS) == 0);
    for (int i = 0; i < N_CLIENTS; i++)
        for (int k = 0; k < n_acked[i]; k++)
            CHECK(h_dev_has(recv, convs[i], seqs[i][k]) == 1,
                  "acked message conv %llu seq %llu: seen %d times after the restart",
                  (unsigned long long)convs[i], (unsigned long long)seqs[i][k],
                  h_dev_has(recv, convs[i], seqs[i][k]));
    for (int i = 0; i < N_CLIENTS; i++) h_dev_free(devs[i]);
    h_dev_free(recv);
    h_server_destroy(&S);
}

static void second_sigterm_exits_at_once(void) {
    /* a drain that would take a minute: 30 connections, one every 2 s */
    const char *flags[] = {"--drain-window", "60000", "--workers", "1", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *recv = h_user_new(&S, NULL);
    NEED(recv);
    enum { N = 30 };
    h_dev *devs[N];
    uint64_t convs[N], seqs[N];
    for (int i = 0; i < N; i++) {
        devs[i] = h_user_new(&S, NULL);
        NEED(devs[i]);
        NEED(pc_open_direct(devs[i]->c, recv->id.user_id, &convs[i]) == 0);
        NEED(pc_send_text(devs[i]->c, convs[i], "acked before the signals", &seqs[i]) == 0);
    }
    h_dev_disconnect(recv);
    CHECK(kill(S.pid, SIGTERM) == 0, "kill");
    /* the drain is under way: the listener is closed */
    int refused = 0;
    for (int i = 0; i < 100 && !refused; i++) {
        int fd = h_tcp_connect(S.port, 1000);
        if (fd < 0) refused = 1;
        else close(fd);
        if (!refused) h_sleep_ms(50);
    }
    CHECK(refused, "still accepting connections after SIGTERM");
    CHECK(!server_exited(&S), "the server did not wait for its drain window");
    CHECK(kill(S.pid, SIGTERM) == 0, "kill");
    CHECK(wait_exited(&S, LIVENESS_MS), "a second SIGTERM did not end the drain");
    int st = h_server_stop(&S);
    /* the stop the operator asked for, nothing acknowledged lost: exit 0 */
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status after the second SIGTERM: %s %d",
          st == -1 ? "killed" : WIFEXITED(st) ? "exit" : "signal",
          st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    CHECK(log_has(&S, "second signal during the drain"), "the server did not log the cut-short drain");
    CHECK(h_server_restart(&S) == 0, "restart");
    NEED(h_dev_reconnect(&S, recv, 0) == 0);
    NEED(h_dev_sync(recv, WAIT_MS) == 0);
    for (int i = 0; i < N; i++)
        CHECK(h_dev_has(recv, convs[i], seqs[i]) == 1, "acked message %d missing after restart", i);
    for (int i = 0; i < N; i++) {
        /* their server went away; do not let a graceful close wait on it */
        h_dev_free(devs[i]);
    }
    h_dev_free(recv);
    h_server_destroy(&S);
}

int main(void) {
    RUN(sigterm_drains_with_1012_and_loses_nothing);
    RUN(second_sigterm_exits_at_once);
    h_server_destroy(&S);
    CHECK_EXIT();
}
