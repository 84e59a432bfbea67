/* test_ack_coalesce.c -- acks are coalesced per connection per loop turn
 * before they cross to the write path: a device that sends a burst of Acks
 * costs the writer one cursor request, not one per Ack, and the cursor it
 * stores (with the delivered receipts it raises) is the last Ack's, durable
 * across a restart.
 * A raw connection (h_raw_* in the harness) sends the burst in one write,
 * so the acks arrive together; libparley would send one Ack per poll. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

/* Raw connections (h_raw_*) with this test's bounds: 30 s for each read
 * (a busy shared machine), up to 10000 frames before an awaited Response. */
enum { IO_TIMEOUT_MS = 30000, RESPONSE_MAX_FRAMES = 10000 };

/* A raw connection signed in as an existing device. 0 or -1. */
static int raw_sign_in(h_raw *w, const pc_identity *id) {
    const h_raw_opts o = { .io_ms = IO_TIMEOUT_MS };
    return h_raw_open_port(S.port, &o, w) == 0 && h_raw_sign_in(w, id) == 0 ? 0 : -1;
}

/* ----------------------------------------------------------------- cases */

enum { MESSAGES = 100 };

/* Catches up from the start: StartSync, then events until SyncDone and
 * until conv's message want_seq has come (fan-out may append the last
 * messages after the catch-up ended: they come live). *head: the highest
 * user_seq of an Event seen. 0 or -1. */
static int raw_sync_all(h_raw *w, uint64_t conv, uint64_t want_seq, uint64_t *head, size_t *events) {
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    if (h_raw_send_frame(w, &f) != 0) return -1;
    *head = 0;
    *events = 0;
    int sync_done = 0;
    uint64_t seen_seq = 0;
    for (int i = 0; i < 10000; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) return -1;
        sync_done |= r->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT) {
            (*events)++;
            if (r->event->user_seq > *head) *head = r->event->user_seq;
            const Parley__V1__Message *m = r->event->message;
            if (m && m->conversation_id == conv && m->seq > seen_seq) seen_seq = m->seq;
        }
        parley__v1__frame__free_unpacked(r, NULL);
        if (sync_done && seen_seq >= want_seq) return 0;
    }
    return -1;
}

static int make_ack(void *ud, size_t i, Parley__V1__Frame *f) {
    Parley__V1__Ack *ack = ud;
    parley__v1__ack__init(ack);
    ack->user_seq = i + 1;
    f->body_case = PARLEY__V1__FRAME__BODY_ACK;
    f->ack = ack;
    return 0;
}

/* One Ack per user_seq 1..head, packed back to back and sent with one
 * write, then a LookupUser: its answer comes after the worker handled
 * every Ack before it (and the turn that handled them ended). 0 or -1. */
static int raw_ack_burst(h_raw *w, uint64_t head) {
    Parley__V1__Ack ack;
    if (h_raw_send_frames(w, (size_t)head, make_ack, &ack) != 0) return -1;
    return h_raw_barrier(w, 3, RESPONSE_MAX_FRAMES);
}

/* delivered_seq of user in conv, as GetReceipts says (0 if absent), or -1 */
static int64_t delivered_seq_of(h_dev *d, uint64_t conv, uint64_t user) {
    uint64_t delivered, read;
    return h_member_marks(d, conv, user, &delivered, &read) < 0 ? -1 : (int64_t)delivered;
}

/* Bob catches up on 100 messages from Alice and acks every event in one
 * burst: the writer gets at most a few cursor requests (one per loop turn
 * the burst was read in; one write of a few KB is read in one), every
 * other Ack is counted as folded, and after a restart Bob's delivered seq is
 * Alice's last message (the highest Ack, stored). */
static void ack_burst_is_one_writer_request(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *alice = h_user_new(&S, NULL), *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv = 0, last = 0;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open direct: %s", pc_error(alice->c));
    CHECK(h_accept(bob, conv) == 0, "bob accepts");
    for (int i = 0; i < MESSAGES; i++) {
        char text[32];
        snprintf(text, sizeof text, "m%d", i);
        last = h_send(alice, conv, text);
        CHECK(last != 0, "send %d", i);
    }
    h_dev_disconnect(bob);   /* libparley would ack on its own */

    h_raw *w = h_calloc(1, sizeof *w);
    CHECK(w && raw_sign_in(w, &bob->id) == 0, "raw sign-in");
    uint64_t head = 0;
    size_t events = 0;
    CHECK(raw_sync_all(w, conv, last, &head, &events) == 0, "sync to SyncDone and the last message");
    CHECK(events >= MESSAGES && head >= MESSAGES, "bob caught up on %zu events (head %llu), want >= %d",
          events, (unsigned long long)head, MESSAGES);
    double sub0 = 0, fold0 = 0, sub1 = 0, fold1 = 0;
    CHECK(h_metric(&S, "parley_acks_submitted_total", &sub0) == 0, "metric");
    CHECK(h_metric(&S, "parley_acks_coalesced_total", &fold0) == 0, "metric");
    CHECK(raw_ack_burst(w, head) == 0, "ack burst");
    CHECK(h_metric(&S, "parley_acks_submitted_total", &sub1) == 0, "metric");
    CHECK(h_metric(&S, "parley_acks_coalesced_total", &fold1) == 0, "metric");
    h_raw_close(w);
    double submitted = sub1 - sub0, folded = fold1 - fold0;
    fprintf(stderr, "  %llu acks in one burst: %.0f cursor requests to the writer, %.0f folded\n",
            (unsigned long long)head, submitted, folded);
    CHECK(submitted >= 1 && submitted <= 3, "%.0f cursor requests for %llu acks in one burst", submitted,
          (unsigned long long)head);
    CHECK(submitted + folded == (double)head, "%.0f submitted + %.0f folded, want %llu (every ack accounted)",
          submitted, folded, (unsigned long long)head);

    /* the stored result is the last Ack's, and it survives a restart */
    h_dev_disconnect(alice);
    CHECK(h_server_restart(&S) == 0, "restart");
    CHECK(h_dev_reconnect(&S, alice, 0) == 0, "alice reconnects");
    int64_t delivered = delivered_seq_of(alice, conv, bob->id.user_id);
    CHECK(delivered == (int64_t)last, "bob's delivered seq after restart %lld, want %llu (the last message)",
          (long long)delivered, (unsigned long long)last);
    h_dev_free(alice);
    h_dev_free(bob);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(ack_burst_is_one_writer_request);
    CHECK_EXIT();
}
