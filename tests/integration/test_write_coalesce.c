/* test_write_coalesce.c -- output queued for a connection during one loop
 * turn leaves in one socket write, never one write per frame, and every
 * frame arrives whole and in order.
 *
 * A raw connection (not signed in) sends 200 SendMessage requests packed
 * back to back in one write. The worker answers each in the turn it reads
 * it (UNAUTHENTICATED: "sign in first"), so the answers to what one read
 * brought are queued in one turn. The server is otherwise idle, so over
 * the exchange /metrics' parley_socket_writes_total may grow by at most
 * parley_socket_reads_total's growth (each turn that queued answers read
 * first; the /metrics request itself adds one read and one write). One
 * write per frame would be ~200 writes against a read or two.
 *
 * And a reader that does not read still holds the server back as before:
 * with --conn-output-cap 4096 and a 4 KiB receive buffer, 20,000 pipelined
 * requests (their answers ~500 KB, far past what the sockets absorb)
 * pause the connection's input (parley_input_pauses_total grows, waited
 * for with a generous bound), and once the client reads, every answer
 * comes, in order. The memory bound under a stalled reader is
 * test_backpressure's and test_abuse_memory's. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"

enum { REQUESTS = 200, SLOW_REQUESTS = 20000, SLOT = 96, PAUSE_WAIT_MS = 60000 };

static h_server S;

/* Packs n SendMessages (request ids 1..n) and sends them in one write.
 * NULL, or what went wrong. */
static const char *send_burst(h_raw *w, int n) {
    static uint8_t all[SLOW_REQUESTS * SLOT];
    size_t used = 0;
    for (int i = 0; i < n && i < SLOW_REQUESTS; i++) {
        char id[32];
        snprintf(id, sizeof id, "wc%d", i);
        Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
        sm.conversation_id = 1;
        sm.client_msg_id.data = (uint8_t *)id;
        sm.client_msg_id.len = strlen(id);
        sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
        sm.body.data = (uint8_t *)"x";
        sm.body.len = 1;
        Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
        f.request_id = (uint64_t)i + 1;
        f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
        f.send_message = &sm;
        size_t len = h_raw_pack_frame(&f, all + used, sizeof all - used);
        if (len == 0) return "a frame did not fit";
        used += len;
    }
    return h_raw_send_bytes(w, all, used) == 0 ? NULL : "the burst was not sent whole";
}

/* Reads n answers: each a Response to request ids 1, 2, ... in order,
 * UNAUTHENTICATED. NULL, or what went wrong (in why). */
static const char *read_answers(h_raw *w, int n, char *why, size_t cap) {
    for (int i = 0; i < n; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) {
            snprintf(why, cap, "answer %d of %d did not come", i + 1, n);
            return why;
        }
        bool ok = r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id == (uint64_t)i + 1 &&
                  r->response->status == PARLEY__V1__STATUS__UNAUTHENTICATED;
        if (!ok)
            snprintf(why, cap, "answer %d: body %d request %llu status %d, want a Response to %d, UNAUTHENTICATED",
                     i + 1, (int)r->body_case, (unsigned long long)r->request_id,
                     r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE ? (int)r->response->status : -1, i + 1);
        parley__v1__frame__free_unpacked(r, NULL);
        if (!ok) return why;
    }
    return NULL;
}

static void frames_of_one_turn_leave_in_one_write(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    char why[160] = "";
    const char *failure = NULL;
    double r0 = 0, w0 = 0, f0 = 0, r1 = 0, w1 = 0, f1 = 0;
    h_raw *w = h_calloc(1, sizeof *w);
    if (!w || h_raw_open(&S, w)) failure = "raw connection";
    else if (h_metric(&S, "parley_socket_reads_total", &r0) || h_metric(&S, "parley_socket_writes_total", &w0) ||
             h_metric(&S, "parley_frames_out_total", &f0))
        failure = "metrics before";
    else if ((failure = send_burst(w, REQUESTS)) == NULL && (failure = read_answers(w, REQUESTS, why, sizeof why)) == NULL &&
             (h_metric(&S, "parley_socket_reads_total", &r1) || h_metric(&S, "parley_socket_writes_total", &w1) ||
              h_metric(&S, "parley_frames_out_total", &f1)))
        failure = "metrics after";
    if (w) h_raw_close(w);
    h_free(w);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(!failure, "%s", failure);
    double reads = r1 - r0, writes = w1 - w0, frames = f1 - f0;
    fprintf(stderr, "  %d answers: %.0f frames out in %.0f socket writes, %.0f socket reads\n", REQUESTS, frames,
            writes, reads);
    CHECK(frames >= REQUESTS, "%.0f frames out, want >= %d", frames, REQUESTS);
    CHECK(writes <= reads, "%.0f socket writes for %.0f frames, against %.0f reads: not one write per turn",
          writes, frames, reads);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

static const char *slow_sender_failure;

static void *slow_sender(void *arg) {
    slow_sender_failure = send_burst(arg, SLOW_REQUESTS);
    return NULL;
}

/* Waits (bounded) until parley_input_pauses_total passes before. */
static bool input_paused_since(double before) {
    uint64_t deadline = h_now_ms() + PAUSE_WAIT_MS;
    for (;;) {
        double now = 0;
        if (h_metric(&S, "parley_input_pauses_total", &now) == 0 && now > before) return true;
        if (h_now_ms() > deadline) return false;
        h_sleep_ms(50);
    }
}

static void slow_reader_still_pauses_input(void) {
    const char *args[] = {"--conn-output-cap", "4096", "--signin-timeout", "600000", NULL};
    CHECK(h_server_start(&S, args) == 0, "server did not start");
    char why[160] = "";
    const char *failure = NULL;
    double pauses0 = 0;
    bool paused = false, sender_started = false;
    pthread_t sender;
    h_raw_opts o = {.rcvbuf = 4096};
    h_raw *w = h_calloc(1, sizeof *w);
    slow_sender_failure = NULL;
    if (!w || h_raw_open_port(S.port, &o, w)) failure = "raw connection";
    else if (h_metric(&S, "parley_input_pauses_total", &pauses0)) failure = "metrics before";
    else if (pthread_create(&sender, NULL, slow_sender, w)) failure = "sender thread";
    else {
        sender_started = true;
        /* nothing is read until the server has paused this connection */
        paused = input_paused_since(pauses0);
        if (!paused) failure = "input was never paused: the output cap did not hold the reader back";
        else failure = read_answers(w, SLOW_REQUESTS, why, sizeof why);
    }
    if (w && w->fd >= 0 && failure) shutdown(w->fd, SHUT_RDWR);   /* frees a blocked sender */
    if (sender_started) pthread_join(sender, NULL);
    if (!failure && slow_sender_failure) failure = slow_sender_failure;
    if (w) h_raw_close(w);
    h_free(w);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(!failure, "%s", failure);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    RUN(frames_of_one_turn_leave_in_one_write);
    RUN(slow_reader_still_pauses_input);
    CHECK_EXIT();
}
