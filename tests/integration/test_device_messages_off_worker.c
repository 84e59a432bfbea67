/* test_device_messages_off_worker.c -- the device messages a StartSync
 * pushes are read off the gateway worker on Cassandra
 * (src/gateway/device_message_read.h).
 *
 * With one worker on Cassandra and the test hook
 * PARLEY_TEST_HOLD_DEVICE_MESSAGE_READS (every page read of them waits
 * while the hook's file exists): bob is offline while alice sends his
 * device DMS device messages and a chat message; the hold file is made; a
 * raw connection Y signs in as bob and sends StartSync, whose first page
 * of device messages is now held. What must hold:
 *   - Y's StartSync is answered (before any device message), and the
 *     worker answers others meanwhile: a raw connection X (alice) gets its
 *     PushGetKey answered and alice's second chat message is acknowledged,
 *     while Y has been sent nothing more;
 *   - once the file is gone, Y gets the device messages, in queue_seq
 *     order with their bodies, before any event (they may unlock them),
 *     then both chat messages and SyncDone;
 *   - the pages went through the reader pool
 *     (parley_gateway_device_message_pages_total: the page of DMS and the
 *     empty one that ends the paging).
 *
 * Seen failing: with realtime_pump_device_messages reading on the worker
 * again (its store_reads branch made dead; the hook then holds the worker
 * itself), Y's StartSync is not answered while the hold lasts (its OK
 * waits in the worker's output behind the held read), and the page count
 * does not move.
 *
 * Every wait is on observable state with a generous bound. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "hold_file.h"

enum {
    DMS = 3,
    IO_MS = 30000,          /* bound on each raw read: the worker answers at once when it is free */
    RID_SYNC = 21,
    RID_KEY = 7,
    MAX_FRAMES = 64,        /* bound on the frames read after the release */
};

#define NEED(x) CHECK((x), "%s", #x)
#define HOOK "PARLEY_TEST_HOLD_DEVICE_MESSAGE_READS"
#define PAGES "parley_gateway_device_message_pages_total"

static h_server S;
static h_dev *alice, *bob;
static h_raw X, Y;
static uint64_t conv;
static uint64_t queue_seq[DMS];
static h_sent expected[2];
static size_t n_expected;
static hold_file hold;
static double pages_before = -1;

static void body_of(int k, char *out, size_t cap) { snprintf(out, cap, "envelope %d", k); }

/* Nothing from the server is waiting on Y, read or unread. */
static int y_silent(void) {
    struct pollfd p = {.fd = Y.fd, .events = POLLIN};
    return Y.len == Y.off && poll(&p, 1, 0) == 0;
}

static void start_sync_answered_while_held(void) {
    NEED(hold_file_init(&hold, HOOK) == 0);   /* the server inherits it */
    NEED(cassandra_node_start("dm_reads") == 0);
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "dm_reads", "--workers", "1", NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(h_direct_pair(&S, &alice, &bob, &conv) == 0);
    h_dev_disconnect(bob);   /* offline: the device messages wait in its queue */
    for (int k = 0; k < DMS; k++) {
        char body[32];
        body_of(k, body, sizeof body);
        NEED(pc_send_device_message(alice->c, bob->id.user_id, bob->id.device_id, body, strlen(body),
                                    &queue_seq[k]) == 0);
    }
    NEED(h_send_rec(alice, conv, "before the hold", expected, &n_expected) == 0);
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &X) == 0);
    NEED(h_raw_sign_in(&X, &alice->id) == 0);
    NEED(h_raw_open_port(S.port, &o, &Y) == 0);
    NEED(h_raw_sign_in(&Y, &bob->id) == 0);
    NEED(h_metric(&S, PAGES, &pages_before) == 0);

    NEED(hold_file_make(&hold) == 0);
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    f.request_id = RID_SYNC;
    NEED(h_raw_send_frame(&Y, &f) == 0);
    /* its OK goes out in the turn that asked for the first page */
    int answered = 0, dms = 0;
    for (int i = 0; i < 16 && !answered; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(&Y, NULL);
        if (!r) break;
        dms += r->body_case == PARLEY__V1__FRAME__BODY_DEVICE_MESSAGE;
        answered = r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id == RID_SYNC &&
                   r->response->status == PARLEY__V1__STATUS__OK;
        parley__v1__frame__free_unpacked(r, NULL);
    }
    CHECK(answered, "Y's StartSync unanswered while its device-message read was held: the worker waits on it");
    CHECK(dms == 0, "%d device messages before the hold was released", dms);

    CHECK(h_raw_worker_answers(&X, RID_KEY), "X's PushGetKey unanswered while Y's device-message read was held");
    NEED(h_send_rec(alice, conv, "during the hold", expected, &n_expected) == 0);
    CHECK(y_silent(), "Y was sent something while its device-message read was held");
}

static void device_messages_then_events(void) {
    NEED(hold.held && Y.fd >= 0);
    hold_file_release(&hold);
    int dms = 0, events_before_last_dm = 0, events = 0, sync_done = 0, order_ok = 1;
    uint64_t seen_texts = 0;   /* bit i: expected[i] arrived */
    for (int i = 0; i < MAX_FRAMES && !sync_done; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(&Y, NULL);
        if (!r) break;
        if (r->body_case == PARLEY__V1__FRAME__BODY_DEVICE_MESSAGE) {
            const Parley__V1__DeviceMessage *dm = r->device_message;
            char body[32];
            body_of(dms, body, sizeof body);
            if (dms >= DMS || dm->queue_seq != queue_seq[dms] || dm->body.len != strlen(body) ||
                memcmp(dm->body.data, body, dm->body.len) != 0 || dm->sender_user_id != alice->id.user_id)
                order_ok = 0;
            dms++;
            events_before_last_dm += events;
            events = 0;
        } else if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT) {
            events++;
            const Parley__V1__Message *m = r->event->message;
            for (size_t e = 0; m && e < n_expected; e++)
                if (m->seq == expected[e].seq && m->body.len == strlen(expected[e].text) &&
                    memcmp(m->body.data, expected[e].text, m->body.len) == 0)
                    seen_texts |= 1u << e;
        } else if (r->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE) {
            sync_done = 1;
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    CHECK(dms == DMS && order_ok, "%d device messages (want %d, in queue_seq order with their bodies: %s)", dms, DMS,
          order_ok ? "yes" : "no");
    CHECK(events_before_last_dm == 0, "%d events came before the last device message", events_before_last_dm);
    CHECK(seen_texts == (1u << n_expected) - 1, "chat messages seen: mask %llx of %zu",
          (unsigned long long)seen_texts, n_expected);
    CHECK(sync_done, "no SyncDone after the release");
    double pages = -1;
    NEED(h_metric(&S, PAGES, &pages) == 0);
    CHECK(pages >= pages_before + 2, "%s %.0f -> %.0f, want 2 more", PAGES, pages_before, pages);
}

int main(void) {
    unsetenv("PARLEY_TEST_STORE");   /* its own server on Cassandra, with the hook */
    RUN(start_sync_answered_while_held);
    RUN(device_messages_then_events);
    hold_file_release(&hold);
    h_raw_close(&X);
    h_raw_close(&Y);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cassandra_node_stop();
    hold_file_destroy(&hold);
    CHECK_EXIT();
}
