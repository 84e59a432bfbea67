/* test_ack_delivered.c -- what a device's Ack raises, on a server with
 * several conversation writers: the device's user acks messages from many
 * conversations, most of them owned by another writer than the one that
 * takes the user's acks (their delivered raises are handed on in one
 * request per owner per loop turn), and every sender gets its DELIVERED
 * receipt for exactly the last message the ack covered, with GetReceipts
 * saying the same. After kill -9 the delivered seq is exactly what was
 * acked (committed before the receipt went out), never what the device
 * received but did not ack.
 * Raw connections (h_raw_*) let the test choose exactly which user_seq each
 * Ack covers: one Ack per entry (short ranges), or one for all of them. */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

enum { IO_TIMEOUT_MS = 30000, RESPONSE_MAX_FRAMES = 10000, WAIT_MS = 60000 };
enum { SENDERS = 12, PER_SENDER = 3 };

static const char *const writers4[] = {"--writers", "4", NULL};

static int raw_sign_in(h_raw *w, const pc_identity *id) {
    const h_raw_opts o = {.io_ms = IO_TIMEOUT_MS};
    return h_raw_open_port(S.port, &o, w) == 0 && h_raw_sign_in(w, id) == 0 ? 0 : -1;
}

/* The Events a raw connection saw: (user_seq, conversation, seq). */
typedef struct seen {
    uint64_t user_seq[256], conv[256], seq[256];
    size_t n;
} seen;

/* the user_seq of the Event carrying (conv, seq), 0 if not seen */
static uint64_t user_seq_of(const seen *v, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < v->n; i++)
        if (v->conv[i] == conv && v->seq[i] == seq) return v->user_seq[i];
    return 0;
}

static bool saw_all(const seen *v, const uint64_t *convs, const uint64_t *lasts, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!user_seq_of(v, convs[i], lasts[i])) return false;
    return true;
}

/* StartSync, then frames until SyncDone and until the message lasts[i] of
 * every convs[i] has arrived (a send is acknowledged before the fan-out
 * appends it to the inbox: it may come after SyncDone, live). 0 or -1. */
static int raw_sync_until(h_raw *w, const uint64_t *convs, const uint64_t *lasts, size_t n, seen *v) {
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    if (h_raw_send_frame(w, &f) != 0) return -1;
    v->n = 0;
    bool synced = false;
    for (int i = 0; i < 10000; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) return -1;
        if (r->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE) synced = true;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT && r->event->message &&
            v->n < sizeof v->seq / sizeof v->seq[0]) {
            v->user_seq[v->n] = r->event->user_seq;
            v->conv[v->n] = r->event->message->conversation_id;
            v->seq[v->n] = r->event->message->seq;
            v->n++;
        }
        parley__v1__frame__free_unpacked(r, NULL);
        if (synced && saw_all(v, convs, lasts, n)) return 0;
    }
    return -1;
}

static int raw_ack(h_raw *w, uint64_t user_seq, uint64_t request_id) {
    return h_raw_ack_barrier(w, user_seq, request_id, RESPONSE_MAX_FRAMES);
}

/* delivered_seq of user in conv, as GetReceipts says (0 if absent), or -1 */
static int64_t delivered_seq_of(h_dev *d, uint64_t conv, uint64_t user) {
    uint64_t delivered, read;
    return h_member_marks(d, conv, user, &delivered, &read) < 0 ? -1 : (int64_t)delivered;
}

/* the highest DELIVERED receipt d got from user about conv (0: none) */
static uint64_t delivered_receipt(const h_dev *d, uint64_t conv, uint64_t user) {
    uint64_t seq = 0;
    for (size_t i = 0; i < d->n_rc; i++)
        if (d->rc[i].conversation_id == conv && d->rc[i].user_id == user &&
            d->rc[i].kind == PARLEY__V1__RECEIPT_KIND__DELIVERED && d->rc[i].seq > seq)
            seq = d->rc[i].seq;
    return seq;
}

typedef struct receipts_goal {
    h_dev **senders;
    const uint64_t *convs, *want;
    size_t n;
    uint64_t reader;
} receipts_goal;

static int all_receipts(void *ud) {
    const receipts_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (delivered_receipt(g->senders[i], g->convs[i], g->reader) < g->want[i]) return 0;
    return 1;
}

/* Bob gets PER_SENDER messages from each of SENDERS users (one direct
 * conversation each); one_ack_each: he acks every entry on its own (ranges
 * of one), else one Ack for all of them (a range of more than 16). */
static void acks_raise_delivered(bool one_ack_each) {
    CHECK(h_server_start(&S, writers4) == 0, "server did not start");
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(bob, "bob");
    h_dev **alice = h_calloc(SENDERS, sizeof *alice);
    uint64_t *conv = h_calloc(SENDERS, sizeof *conv), *last = h_calloc(SENDERS, sizeof *last);
    CHECK(alice && conv && last, "alloc");
    for (size_t i = 0; i < SENDERS; i++) {
        alice[i] = h_user_new(&S, NULL);
        CHECK(alice[i], "sender %zu", i);
        CHECK(pc_open_direct(alice[i]->c, bob->id.user_id, &conv[i]) == 0, "open direct: %s", pc_error(alice[i]->c));
        CHECK(h_accept(bob, conv[i]) == 0, "bob accepts %zu", i);
        CHECK(h_dev_sync(alice[i], WAIT_MS) == 0, "sender %zu syncs (receipts go to syncing devices)", i);
    }
    /* round robin, so the inbox interleaves the conversations */
    for (int k = 0; k < PER_SENDER; k++)
        for (size_t i = 0; i < SENDERS; i++) {
            last[i] = h_send(alice[i], conv[i], "hello");
            CHECK(last[i] != 0, "send %zu/%d", i, k);
        }
    h_dev_disconnect(bob);   /* libparley would ack on its own */

    h_raw *w = h_calloc(1, sizeof *w);
    seen *v = h_calloc(1, sizeof *v);
    CHECK(w && v && raw_sign_in(w, &bob->id) == 0, "raw sign-in");
    CHECK(raw_sync_until(w, conv, last, SENDERS, v) == 0, "bob's raw connection gets every message");
    uint64_t head = 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->user_seq[i] > head) head = v->user_seq[i];
    if (one_ack_each) {
        for (uint64_t s = 1; s <= head; s++) CHECK(raw_ack(w, s, 100 + s) == 0, "ack %llu", (unsigned long long)s);
    } else {
        CHECK(head > 16, "one ack must cover more than 16 entries, head %llu", (unsigned long long)head);
        CHECK(raw_ack(w, head, 100) == 0, "ack all");
    }

    receipts_goal g = {alice, conv, last, SENDERS, bob->id.user_id};
    int got = h_pump(alice, SENDERS, all_receipts, &g, WAIT_MS);
    for (size_t i = 0; !got && i < SENDERS; i++)
        fprintf(stderr, "  sender %zu: conv %llu last %llu, DELIVERED receipt %llu\n", i,
                (unsigned long long)conv[i], (unsigned long long)last[i],
                (unsigned long long)delivered_receipt(alice[i], conv[i], bob->id.user_id));
    CHECK(got, "every sender gets a DELIVERED receipt for its last message within %d ms", WAIT_MS);
    for (size_t i = 0; i < SENDERS; i++) {
        CHECK(delivered_receipt(alice[i], conv[i], bob->id.user_id) == last[i], "sender %zu: receipt %llu, want %llu",
              i, (unsigned long long)delivered_receipt(alice[i], conv[i], bob->id.user_id),
              (unsigned long long)last[i]);
        int64_t d = delivered_seq_of(alice[i], conv[i], bob->id.user_id);
        CHECK(d == (int64_t)last[i], "sender %zu: GetReceipts delivered %lld, want %llu", i, (long long)d,
              (unsigned long long)last[i]);
    }
    h_raw_close(w);
    for (size_t i = 0; i < SENDERS; i++) h_dev_free(alice[i]);
    h_dev_free(bob);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

static void one_ack_per_entry_raises_every_sender(void) { acks_raise_delivered(true); }
static void one_ack_for_all_raises_every_sender(void) { acks_raise_delivered(false); }

enum { MESSAGES = 30, ACKED = 20 };

/* Bob receives 30 messages and acks the first 20; once Alice has the
 * receipt for the 20th (sent after the commit), kill -9: after the restart
 * bob's delivered seq is the 20th message's, not lower (it was committed)
 * and not higher (he never acked the rest). */
static void delivered_after_kill9_is_what_was_acked(void) {
    CHECK(h_server_start(&S, writers4) == 0, "server did not start");
    h_dev *alice = h_user_new(&S, NULL), *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv = 0, seq[MESSAGES];
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open direct: %s", pc_error(alice->c));
    CHECK(h_accept(bob, conv) == 0, "bob accepts");
    CHECK(h_dev_sync(alice, WAIT_MS) == 0, "alice syncs (receipts go to syncing devices)");
    for (int i = 0; i < MESSAGES; i++) CHECK((seq[i] = h_send(alice, conv, "m")) != 0, "send %d", i);
    h_dev_disconnect(bob);

    h_raw *w = h_calloc(1, sizeof *w);
    seen *v = h_calloc(1, sizeof *v);
    CHECK(w && v && raw_sign_in(w, &bob->id) == 0, "raw sign-in");
    CHECK(raw_sync_until(w, &conv, &seq[MESSAGES - 1], 1, v) == 0, "bob's raw connection gets every message");
    /* cumulative: acks every entry up to the one carrying message ACKED */
    uint64_t ack_to = user_seq_of(v, conv, seq[ACKED - 1]);
    CHECK(ack_to != 0 && ack_to < user_seq_of(v, conv, seq[MESSAGES - 1]), "user_seq of message %d", ACKED);
    CHECK(raw_ack(w, ack_to, 100) == 0, "ack");
    h_dev *a[] = {alice};
    receipts_goal g = {a, &conv, &seq[ACKED - 1], 1, bob->id.user_id};
    CHECK(h_pump(a, 1, all_receipts, &g, WAIT_MS), "alice gets the DELIVERED receipt for message %d", ACKED);
    CHECK(delivered_receipt(alice, conv, bob->id.user_id) == seq[ACKED - 1], "receipt %llu, want %llu",
          (unsigned long long)delivered_receipt(alice, conv, bob->id.user_id), (unsigned long long)seq[ACKED - 1]);
    h_raw_close(w);
    h_dev_disconnect(alice);
    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart");
    CHECK(h_dev_reconnect(&S, alice, 0) == 0, "alice reconnects");
    int64_t d = delivered_seq_of(alice, conv, bob->id.user_id);
    CHECK(d == (int64_t)seq[ACKED - 1], "bob's delivered seq after kill -9: %lld, want %llu (the last acked)",
          (long long)d, (unsigned long long)seq[ACKED - 1]);
    h_dev_free(alice);
    h_dev_free(bob);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(one_ack_per_entry_raises_every_sender);
    RUN(one_ack_for_all_raises_every_sender);
    RUN(delivered_after_kill9_is_what_was_acked);
    CHECK_EXIT();
}
