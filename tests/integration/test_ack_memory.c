/* test_ack_memory.c -- a device's Ack finds which conversations its range
 * covers in fan-out's memory of the entries it just routed
 * (src/chat/recent_inbox.c), and falls back to reading the inbox from the
 * store when the range is not all there. Either way the delivered marks
 * must be exactly those of the entries the Ack covers.
 *
 * Bob (a raw connection, so the test chooses every Ack's range) gets
 * messages from four senders, each in its own direct conversation (on a
 * server with four conversation writers), interleaved in his inbox. He acks
 * in steps that end in the middle of a round, so every conversation's mark
 * is a different message, and the test checks each sender's GetReceipts:
 *  - ranges of live entries (from memory: parley_ack_inbox_memory_total);
 *  - a range longer than memory keeps for one user (1,024 entries,
 *    RECENT_INBOX_RUN_MAX) (from the store: parley_ack_inbox_store_total),
 *    then a short range after it (from memory again);
 *  - after kill -9 and a restart: a range that starts with entries made
 *    before the restart (not in memory: the store), then a range of
 *    entries made after it (memory). */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

enum {
    IO_TIMEOUT_MS = 30000,
    RESPONSE_MAX_FRAMES = 20000,
    WAIT_MS = 60000,
    SENDERS = 4,
    RUN_MAX = 1024,                   /* RECENT_INBOX_RUN_MAX */
    MANY = RUN_MAX + 100,             /* more than memory keeps for one user */
    SEEN_MAX = 4096,
};

static const char *const args[] = {"--writers", "4", "--sync-window", "4096", NULL};

/* The Events bob's raw connection saw: (user_seq, conversation, seq). */
typedef struct seen {
    uint64_t user_seq[SEEN_MAX], conv[SEEN_MAX], seq[SEEN_MAX];
    size_t n;
    uint64_t head;   /* the highest user_seq seen */
} seen;

static bool has(const seen *v, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < v->n; i++)
        if (v->conv[i] == conv && v->seq[i] == seq) return true;
    return false;
}

static uint64_t user_seq_of(const seen *v, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < v->n; i++)
        if (v->conv[i] == conv && v->seq[i] == seq) return v->user_seq[i];
    return 0;
}

/* Frames until every (convs[i], lasts[i]) has come (lasts[i] 0: none) (and SyncDone, if
 * want_sync_done), recording the Events. 0 or -1. */
static int read_until(h_raw *w, const uint64_t *convs, const uint64_t *lasts, bool want_sync_done, seen *v) {
    bool synced = !want_sync_done;
    for (int i = 0; i < 20000; i++) {
        bool all = synced;
        for (size_t k = 0; all && k < SENDERS; k++) all = lasts[k] == 0 || has(v, convs[k], lasts[k]);
        if (all) return 0;
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) return -1;
        if (r->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE) synced = true;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT && r->event->message && v->n < SEEN_MAX) {
            v->user_seq[v->n] = r->event->user_seq;
            v->conv[v->n] = r->event->message->conversation_id;
            v->seq[v->n] = r->event->message->seq;
            if (r->event->user_seq > v->head) v->head = r->event->user_seq;
            v->n++;
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return -1;
}

static int start_sync(h_raw *w, uint64_t after) {
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    ss.after_user_seq = after;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    return h_raw_send_frame(w, &f);
}

static int raw_sign_in(h_raw *w, const pc_identity *id) {
    const h_raw_opts o = {.io_ms = IO_TIMEOUT_MS};
    return h_raw_open_port(S.port, &o, w) == 0 && h_raw_sign_in(w, id) == 0 ? 0 : -1;
}

static int raw_ack(h_raw *w, uint64_t user_seq, uint64_t request_id) {
    return h_raw_ack_barrier(w, user_seq, request_id, RESPONSE_MAX_FRAMES);
}

/* delivered_seq of user in conv, as GetReceipts says (0 if absent), or -1 */
static int64_t delivered_seq_of(h_dev *d, uint64_t conv, uint64_t user) {
    uint64_t delivered, read;
    return h_member_marks(d, conv, user, &delivered, &read) < 0 ? -1 : (int64_t)delivered;
}

static double metric(const char *name) {
    double v = -1;
    return h_metric(&S, name, &v) == 0 ? v : -1;
}

typedef struct world {
    h_dev *bob, *alice[SENDERS];
    uint64_t conv[SENDERS], last[SENDERS];
    h_raw *w;
    seen *v;
    uint64_t next_request;
} world;

/* rounds x one message from each sender, round robin (so bob's inbox
 * interleaves the conversations); bob reads them all */
static int send_rounds(world *x, int rounds) {
    for (int k = 0; k < rounds; k++)
        for (size_t i = 0; i < SENDERS; i++)
            if (!(x->last[i] = h_send(x->alice[i], x->conv[i], "m"))) return -1;
    return read_until(x->w, x->conv, x->last, false, x->v);
}

/* Bob acks through ack_to; then every sender's GetReceipts must say the
 * highest seq of its conversation among the entries ack_to covers (polled
 * until it is at least that, then it must be exactly that). */
static void ack_and_check(world *x, uint64_t ack_to, const char *what) {
    uint64_t want[SENDERS] = {0};
    for (size_t i = 0; i < x->v->n; i++)
        for (size_t k = 0; k < SENDERS; k++)
            if (x->v->conv[i] == x->conv[k] && x->v->user_seq[i] <= ack_to && x->v->seq[i] > want[k])
                want[k] = x->v->seq[i];
    CHECK(raw_ack(x->w, ack_to, x->next_request++) == 0, "%s: ack %llu", what, (unsigned long long)ack_to);
    for (size_t k = 0; k < SENDERS; k++) {
        int64_t d = -1;
        uint64_t until = h_now_ms() + WAIT_MS;
        while ((d = delivered_seq_of(x->alice[k], x->conv[k], x->bob->id.user_id)) < (int64_t)want[k] &&
               h_now_ms() < until)
            h_sleep_ms(20);
        CHECK(d == (int64_t)want[k], "%s: sender %zu's conversation delivered %lld, want %llu", what, k, (long long)d,
              (unsigned long long)want[k]);
    }
}

static uint64_t user_seq_of_last_but(const world *x, size_t back) {
    /* the entry `back` places before the newest one of the last round */
    uint64_t newest = 0;
    for (size_t k = 0; k < SENDERS; k++) {
        uint64_t u = user_seq_of(x->v, x->conv[k], x->last[k]);
        if (u > newest) newest = u;
    }
    return newest - back;
}

static void acks_from_memory_and_store_give_exact_marks(void) {
    CHECK(h_server_start(&S, args) == 0, "server did not start");
    world *x = h_calloc(1, sizeof *x);
    CHECK(x, "alloc");
    x->next_request = 100;
    x->bob = h_user_new(&S, NULL);
    CHECK(x->bob, "bob");
    for (size_t i = 0; i < SENDERS; i++) {
        x->alice[i] = h_user_new(&S, NULL);
        CHECK(x->alice[i], "sender %zu", i);
        CHECK(pc_open_direct(x->alice[i]->c, x->bob->id.user_id, &x->conv[i]) == 0, "open direct: %s",
              pc_error(x->alice[i]->c));
        CHECK(h_accept(x->bob, x->conv[i]) == 0, "bob accepts %zu", i);
    }
    h_dev_disconnect(x->bob);   /* libparley would ack on its own */

    x->w = h_calloc(1, sizeof *x->w);
    x->v = h_calloc(1, sizeof *x->v);
    CHECK(x->w && x->v && raw_sign_in(x->w, &x->bob->id) == 0, "raw sign-in");
    CHECK(start_sync(x->w, 0) == 0, "start sync");
    for (size_t i = 0; i < SENDERS; i++) x->last[i] = 0;
    CHECK(read_until(x->w, x->conv, x->last, true, x->v) == 0, "bob syncs");
    if (x->v->head) ack_and_check(x, x->v->head, "synced entries");

    /* live entries: in memory */
    double mem0 = metric("parley_ack_inbox_memory_total");
    CHECK(send_rounds(x, 3) == 0, "3 rounds reach bob");
    ack_and_check(x, user_seq_of_last_but(x, SENDERS + 2), "live, part way");
    ack_and_check(x, user_seq_of_last_but(x, 0), "live, the rest");
    CHECK(metric("parley_ack_inbox_memory_total") >= mem0 + 2, "the live ranges were answered from memory (%.0f -> %.0f)",
          mem0, metric("parley_ack_inbox_memory_total"));

    /* past the bound: the store, then memory for a short range */
    uint64_t before = x->v->head;
    CHECK(send_rounds(x, MANY / SENDERS) == 0, "%d rounds reach bob", MANY / SENDERS);
    CHECK(x->v->head - before > RUN_MAX, "more entries than memory keeps: %llu",
          (unsigned long long)(x->v->head - before));
    double store0 = metric("parley_ack_inbox_store_total");
    mem0 = metric("parley_ack_inbox_memory_total");
    ack_and_check(x, user_seq_of_last_but(x, 3), "a range longer than memory keeps");
    CHECK(metric("parley_ack_inbox_store_total") >= store0 + 1, "it was read from the store (%.0f -> %.0f)", store0,
          metric("parley_ack_inbox_store_total"));
    ack_and_check(x, user_seq_of_last_but(x, 0), "the short range after it");
    CHECK(metric("parley_ack_inbox_memory_total") >= mem0 + 1, "it was answered from memory (%.0f -> %.0f)", mem0,
          metric("parley_ack_inbox_memory_total"));

    /* entries bob received and did not ack, then kill -9 */
    uint64_t acked = x->v->head;
    CHECK(send_rounds(x, 3) == 0, "3 more rounds reach bob (not acked)");
    h_raw_close(x->w);
    for (size_t i = 0; i < SENDERS; i++) h_dev_disconnect(x->alice[i]);
    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart");
    for (size_t i = 0; i < SENDERS; i++) CHECK(h_dev_reconnect(&S, x->alice[i], 0) == 0, "sender %zu reconnects", i);
    memset(x->w, 0, sizeof *x->w);
    CHECK(raw_sign_in(x->w, &x->bob->id) == 0, "raw sign-in after the restart");
    CHECK(start_sync(x->w, acked) == 0, "start sync after the restart");
    CHECK(read_until(x->w, x->conv, x->last, true, x->v) == 0, "bob syncs what he did not ack");
    store0 = metric("parley_ack_inbox_store_total");
    mem0 = metric("parley_ack_inbox_memory_total");
    CHECK(send_rounds(x, 2) == 0, "2 rounds after the restart reach bob live");
    ack_and_check(x, user_seq_of_last_but(x, SENDERS - 1), "after the restart, over entries from before it");
    CHECK(metric("parley_ack_inbox_store_total") >= store0 + 1, "it was read from the store (%.0f -> %.0f)", store0,
          metric("parley_ack_inbox_store_total"));
    ack_and_check(x, user_seq_of_last_but(x, 0), "after the restart, live entries");
    CHECK(metric("parley_ack_inbox_memory_total") >= mem0 + 1, "they were answered from memory (%.0f -> %.0f)", mem0,
          metric("parley_ack_inbox_memory_total"));

    h_raw_close(x->w);
    for (size_t i = 0; i < SENDERS; i++) h_dev_free(x->alice[i]);
    h_dev_free(x->bob);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(acks_from_memory_and_store_give_exact_marks);
    CHECK_EXIT();
}
