/* test_stop_delivered.c -- a graceful stop (SIGTERM) keeps every delivered
 * mark that an Ack raised before it.
 *
 * An Ack is stored by the conversation writer of its user's partition; the
 * delivered seqs it raises in conversations other writers own are handed
 * on to them (writer_route.c). If a stop closed every writer's queue at
 * once, a writer still working through its queue could hand a raise to a
 * writer already closed: the cursor stored, the mark lost, the sender's
 * receipt saying less than the device acked after the restart.
 *
 * Each round: eight senders each send Bob one message in their own direct
 * conversation (spread over the writers); Bob, on a raw connection, syncs,
 * then in one write sends a burst of his own messages to those
 * conversations (queued at every writer, ahead of what follows) and one
 * Ack of everything he synced, and a LookupUser whose answer says the Ack
 * was handed to the write path. Then SIGTERM at once (no drain window),
 * restart, and every sender's GetReceipts must show exactly the seq Bob
 * acked in their conversation. Several rounds, to make the race likely;
 * no timing is assumed anywhere. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

enum {
    SENDERS = 8,
    ROUNDS = 4,
    BURST = 1000,                /* Bob's own messages ahead of his Ack */
    IO_TIMEOUT_MS = 30000,
    RESPONSE_MAX_FRAMES = 200000,
    SYNC_ACK_EVERY = 256,        /* well inside the server's sync window */
};

static h_server S;

static int raw_sign_in(h_raw *w, const pc_identity *id) {
    const h_raw_opts o = {.io_ms = IO_TIMEOUT_MS};
    return h_raw_open_port(S.port, &o, w) == 0 && h_raw_sign_in(w, id) == 0 ? 0 : -1;
}

/* Acks user_seq without waiting for an answer (an Ack has none). */
static int raw_ack(h_raw *w, uint64_t user_seq) {
    Parley__V1__Ack ack = PARLEY__V1__ACK__INIT;
    ack.user_seq = user_seq;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ACK;
    f.ack = &ack;
    return h_raw_send_frame(w, &f);
}

/* StartSync from the start, frames until SyncDone: *head, the highest
 * user_seq, and for each conversation of convs the highest seq seen.
 * It acks as it reads, as a device does: the server sends at most
 * --sync-window (1024) events past the last Ack, and Bob's inbox grows
 * past that by the bursts of earlier rounds. */
static int raw_sync_all(h_raw *w, uint64_t *head, const uint64_t *convs, uint64_t *seqs) {
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    if (h_raw_send_frame(w, &f) != 0) return -1;
    *head = 0;
    uint64_t acked_to = 0;
    for (int i = 0; i < 1000000; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) return -1;
        int done = r->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT && r->event) {
            if (r->event->user_seq > *head) *head = r->event->user_seq;
            const Parley__V1__Message *m = r->event->message;
            for (int k = 0; m && k < SENDERS; k++)
                if (m->conversation_id == convs[k] && m->seq > seqs[k]) seqs[k] = m->seq;
        }
        parley__v1__frame__free_unpacked(r, NULL);
        if (done) return 0;
        if (*head >= acked_to + SYNC_ACK_EVERY) {
            if (raw_ack(w, *head) != 0) return -1;
            acked_to = *head;
        }
    }
    return -1;
}

/* the frames of one round's write: BURST sends, the Ack, the LookupUser */
typedef struct round_frames {
    int round;
    uint64_t head;
    const uint64_t *convs;
    char id[32];
    Parley__V1__SendMessage sm;
    Parley__V1__Ack ack;
    Parley__V1__LookupUser lu;
} round_frames;

static int make_round_frame(void *ud, size_t i, Parley__V1__Frame *f) {
    round_frames *r = ud;
    if (i < BURST) {
        snprintf(r->id, sizeof r->id, "r%d-%zu", r->round, i);
        h_frame_send_text(f, &r->sm, 100 + (uint64_t)i, r->convs[i % SENDERS], r->id, "x");
    } else if (i == BURST) {
        parley__v1__ack__init(&r->ack);
        r->ack.user_seq = r->head;
        f->body_case = PARLEY__V1__FRAME__BODY_ACK;
        f->ack = &r->ack;
    } else {
        parley__v1__lookup_user__init(&r->lu);
        r->lu.name = "nobody-by-this-name";
        f->request_id = 3;
        f->body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
        f->lookup_user = &r->lu;
    }
    return 0;
}

/* One write: BURST SendMessages over the conversations, an Ack of head,
 * a LookupUser; then waits for the LookupUser's answer (the worker handed
 * the Ack on at the end of the turn that read it, before answering). */
static int raw_burst_then_ack(h_raw *w, int round, uint64_t head, const uint64_t *convs) {
    round_frames r = {.round = round, .head = head, .convs = convs};
    if (h_raw_send_frames(w, BURST + 2, make_round_frame, &r) != 0) return -1;
    return h_raw_await_response(w, 3, RESPONSE_MAX_FRAMES, NULL) >= 0 ? 0 : -1;
}

/* Bob's delivered seq in conv as d's GetReceipts says (0 if absent), or -1 */
static int64_t delivered_seq_of(h_dev *d, uint64_t conv, uint64_t user) {
    Parley__V1__ReceiptList *l = NULL;
    if (pc_get_receipts(d->c, conv, &l) != 0) {
        fprintf(stderr, "  pc_get_receipts: %s (status %d)\n", pc_error(d->c), pc_status(d->c));
        return -1;
    }
    int64_t seq = 0;
    for (size_t i = 0; i < l->n_members; i++)
        if (l->members[i]->user_id == user) seq = (int64_t)l->members[i]->delivered_seq;
    parley__v1__receipt_list__free_unpacked(l, NULL);
    return seq;
}

static void delivered_marks_survive_sigterm(void) {
    const char *args[] = {"--writers", "4", "--drain-window", "0", "--send-rate", "100000",
                          "--user-send-rate", "100000", NULL};
    CHECK(h_server_start(&S, args) == 0, "server did not start");
    h_dev *bob = h_user_new(&S, "bob");
    h_dev *senders[SENDERS];
    uint64_t convs[SENDERS];
    CHECK(bob, "bob");
    for (int k = 0; k < SENDERS; k++) {
        char name[16];
        snprintf(name, sizeof name, "sender%d", k);
        senders[k] = h_user_new(&S, name);
        CHECK(senders[k], "%s", name);
        CHECK(pc_open_direct(senders[k]->c, bob->id.user_id, &convs[k]) == 0, "open direct: %s",
              pc_error(senders[k]->c));
        CHECK(h_accept(bob, convs[k]) == 0, "bob accepts");
    }
    h_dev_disconnect(bob);   /* libparley would ack on its own */
    int lost = 0;
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t sent[SENDERS];
        for (int k = 0; k < SENDERS; k++) CHECK((sent[k] = h_send(senders[k], convs[k], "hello bob")) != 0, "send");
        /* the fan-out appends to Bob's inbox after the senders' acks: sync
         * again (bounded) until his inbox has all eight */
        h_raw *w = NULL;
        uint64_t head = 0, acked[SENDERS] = {0};
        for (int attempt = 0; attempt < 100; attempt++) {
            if (w) {
                h_raw_close(w);
                h_free(w);
                h_sleep_ms(50);
            }
            w = h_calloc(1, sizeof *w);
            memset(acked, 0, sizeof acked);
            CHECK(w && raw_sign_in(w, &bob->id) == 0, "raw sign-in");
            CHECK(raw_sync_all(w, &head, convs, acked) == 0, "sync");
            int all = 1;
            for (int k = 0; k < SENDERS; k++) all &= acked[k] >= sent[k];
            if (all) break;
        }
        for (int k = 0; k < SENDERS; k++) CHECK(acked[k] >= sent[k], "bob got conversation %d's message", k);
        CHECK(raw_burst_then_ack(w, round, head, convs) == 0, "burst and ack");
        /* SIGTERM now, with the writers' queues full of Bob's burst */
        h_raw_close(w);   /* nobody connected: the stop reaches the writers at once */
        h_free(w);
        for (int k = 0; k < SENDERS; k++) h_dev_disconnect(senders[k]);
        int status = h_server_stop(&S);
        if (status != 0) h_server_log_tail(&S, 40);
        CHECK(status == 0, "graceful stop exited %d", status);
        CHECK(h_server_restart(&S) == 0, "restart");
        for (int k = 0; k < SENDERS; k++) {
            CHECK(h_dev_reconnect(&S, senders[k], 0) == 0, "sender %d back", k);
            int64_t d = delivered_seq_of(senders[k], convs[k], bob->id.user_id);
            if (d != (int64_t)acked[k]) {
                fprintf(stderr, "  round %d conversation %d: delivered %lld after restart, acked %llu\n", round,
                        k, (long long)d, (unsigned long long)acked[k]);
                lost++;
            }
        }
    }
    CHECK(lost == 0, "%d delivered marks differ from what bob acked", lost);
    for (int k = 0; k < SENDERS; k++) h_dev_free(senders[k]);
    h_dev_free(bob);
    int exit_status = h_server_stop(&S);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(delivered_marks_survive_sigterm);
    h_server_destroy(&S);
    CHECK_EXIT();
}
