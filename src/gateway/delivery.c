/* delivery.c -- events to a device, live or from its inbox.
 *
 * Each connection knows the last user_seq it wrote (sent_upto) and the last
 * one the device acknowledged (acked_upto). A live event is written only if
 * it is exactly the next one, the unacknowledged window has room and the
 * output is under its cap; otherwise the connection is marked lagging and
 * catches up from the store (delivery_pump) as room appears. Because
 * fan-out commits an inbox entry before it posts the live event, whatever a
 * lagging connection skips is already in the store when it pumps: no gap
 * and no duplicate at the seam between sync and live. */
#include <stdlib.h>
#include <string.h>

#include "chat/consent.h"
#include "core/log.h"
#include "core/metrics.h"
#include "gateway/conn.h"
#include "gateway/conn_side.h"
#include "gateway/mqtt_conn.h"
#include "gateway/realtime.h"
#include "gateway/store_watch.h"

enum { PAGE = 128 };

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) { v >>= 7; n++; }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) { *p++ = (uint8_t)(v | 0x80); v >>= 7; }
    *p++ = (uint8_t)v;
    return p;
}

/* Frame{event = Event{user_seq, message}} written by hand around the stored
 * message bytes, so a delivery copies the message once, into the socket's
 * output, and never re-encodes it. */
static void write_event(worker *w, conn *c, uint64_t user_seq, const uint8_t *msg, size_t len) {
    const uint64_t event_tag = (42u << 3) | 2;  /* Frame.event, length-delimited */
    size_t inner = 1 + varint_len(user_seq) + 1 + varint_len(len) + len;
    size_t outer = varint_len(event_tag) + varint_len(inner) + inner;
    uint8_t *dst = buf_reserve(&c->out, (c->mqtt ? MQTT_EVENT_HEAD_MAX : WS_MAX_HEADER) + outer);
    if (!dst) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    /* MQTT: a QoS 1 PUBLISH to T/ev whose packet id stands for user_seq */
    size_t head = c->mqtt ? mqtt_conn_event_head(w, c, dst, user_seq, outer)
                          : ws_write_header(dst, WS_OP_BINARY, true, outer, NULL);
    if (head == 0) {   /* not subscribed to T/ev: sent, unacknowledged, comes again next session */
        c->sent_upto = user_seq;
        return;
    }
    uint8_t *p = dst + head;
    p = put_varint(p, event_tag);
    p = put_varint(p, inner);
    *p++ = (1u << 3) | 0;               /* Event.user_seq, varint */
    p = put_varint(p, user_seq);
    *p++ = (2u << 3) | 2;               /* Event.message, length-delimited */
    p = put_varint(p, len);
    memcpy(p, msg, len);
    p += len;
    buf_commit(&c->out, (size_t)(p - dst));
    c->sent_upto = user_seq;
    METRIC_INC(frames_out_total);
    METRIC_INC(deliveries_total);
    conn_mark_dirty(w, c);
}

/* Events in flight before the device must ack (MQTT: also its Receive Maximum). */
static uint32_t window_of(const worker *w, const conn *c) {
    return c->mqtt ? mqtt_conn_window(w, c) : w->srv->cfg.sync_window;
}

static bool has_room(const worker *w, const conn *c) {
    return buf_len(&c->out) < w->srv->cfg.conn_output_cap &&
           c->sent_upto - c->acked_upto < window_of(w, c);
}

void delivery_live(worker *w, conn *c, uint64_t user_seq, const blob *message) {
    if (!c->syncing || user_seq <= c->sent_upto) return;   /* not asked for, or already sent */
    if (!c->lagging && user_seq == c->sent_upto + 1 && has_room(w, c)) {
        write_event(w, c, user_seq, message->data, message->len);
        return;
    }
    METRIC_INC(live_pushes_skipped_total);
    c->lagging = true;
    delivery_pump(w, c);
}

typedef struct page {
    size_t n;
    struct { uint64_t user_seq, conv, seq; } e[PAGE];
} page;

static int page_add(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)sender;
    page *pg = ud;
    pg->e[pg->n].user_seq = user_seq;
    pg->e[pg->n].conv = conv;
    pg->e[pg->n].seq = seq;
    pg->n++;
    return 0;
}

/* The receipts a device needs after a catch-up: for each conversation that
 * had events in it, where every other member has received and read to. */
enum { SYNC_RECEIPT_CONVS = 64, SYNC_RECEIPTS_MAX = 1024, SYNC_RECEIPT_SCAN = 4096 };

typedef struct sync_receipts {
    store *store;
    uint64_t self;
    uint64_t convs[SYNC_RECEIPT_CONVS];
    size_t n_convs;
    uint64_t conv;                 /* the conversation whose members are being read */
    Parley__V1__Receipt items[SYNC_RECEIPTS_MAX];
    Parley__V1__Receipt *ptrs[SYNC_RECEIPTS_MAX];
    size_t n;
} sync_receipts;

static int note_conv(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)user_seq; (void)seq; (void)sender;
    sync_receipts *sr = ud;
    for (size_t i = 0; i < sr->n_convs; i++)
        if (sr->convs[i] == conv) return 0;
    sr->convs[sr->n_convs++] = conv;
    return sr->n_convs == SYNC_RECEIPT_CONVS;
}

static void add_receipt(sync_receipts *sr, uint64_t user, Parley__V1__ReceiptKind kind, uint64_t seq) {
    if (sr->n == SYNC_RECEIPTS_MAX || seq == 0) return;
    Parley__V1__Receipt *r = &sr->items[sr->n];
    parley__v1__receipt__init(r);
    r->conversation_id = sr->conv;
    r->user_id = user;
    r->kind = kind;
    r->seq = seq;
    sr->ptrs[sr->n++] = r;
}

static int note_member(void *ud, uint64_t user, const Parley__Store__Member *m) {
    sync_receipts *sr = ud;
    if (user == sr->self || m->left_seq != 0) return 0;
    add_receipt(sr, user, PARLEY__V1__RECEIPT_KIND__DELIVERED, m->delivered_seq);
    /* a member who has not accepted the conversation shows no read mark */
    if (!consent_is_request(sr->store, user, m)) add_receipt(sr, user, PARLEY__V1__RECEIPT_KIND__READ, m->read_seq);
    return sr->n == SYNC_RECEIPTS_MAX;
}

static void send_sync_done(worker *w, conn *c) {
    sync_receipts *sr = malloc(sizeof *sr);
    if (!sr) abort();
    sr->self = c->user_id;
    sr->store = w->srv->store;
    sr->n_convs = sr->n = 0;
    /* c->side holds sync_from from StartSync until this SyncDone */
    store_scan_inbox(w->srv->store, c->user_id, c->side->sync_from, c->sent_upto, SYNC_RECEIPT_SCAN, note_conv, sr);
    for (size_t i = 0; i < sr->n_convs && sr->n < SYNC_RECEIPTS_MAX; i++) {
        sr->conv = sr->convs[i];
        store_scan_members(w->srv->store, sr->conv, note_member, sr);
    }
    Parley__V1__Frame f;
    Parley__V1__SyncDone done;
    parley__v1__frame__init(&f);
    parley__v1__sync_done__init(&done);
    done.user_seq = c->sent_upto;
    done.receipts = sr->ptrs;
    done.n_receipts = sr->n;
    f.body_case = PARLEY__V1__FRAME__BODY_SYNC_DONE;
    f.sync_done = &done;
    conn_send_frame(w, c, &f);
    c->sync_done_sent = true;
    free(sr);
}

bool delivery_output_room(const worker *w, const conn *c) {
    return buf_len(&c->out) < w->srv->cfg.conn_output_cap;
}

void delivery_pump(worker *w, conn *c) {
    if (!c->syncing || c->state != CONN_WS) return;
    /* a failing store is not read from here (gateway/store_watch.h): the
     * device stays lagging and the sweep pumps it again */
    if ((c->lagging || c->dm_pending) && store_watch_reads_held(w->srv)) return;
    /* device messages (key hand-outs) before the events they may unlock,
     * under the same output cap */
    if (c->dm_pending) {
        realtime_pump_device_messages(w, c);
        if (c->dm_pending) return;
    }
    while (c->lagging && has_room(w, c)) {
        uint64_t room = window_of(w, c) - (c->sent_upto - c->acked_upto);
        page pg;
        pg.n = 0;
        if (store_scan_inbox(w->srv->store, c->user_id, c->sent_upto, 0,
                             (uint32_t)(room < PAGE ? room : PAGE), page_add, &pg) < 0) {
            /* still lagging: the sweep tries again (closing would only bring
             * the device back to sign in, another read of the same store) */
            METRIC_INC(sync_read_failures_total);
            return;
        }
        if (pg.n == 0) {
            /* caught up: from here the next live event is exactly the next one */
            c->lagging = false;
            if (!c->sync_done_sent) send_sync_done(w, c);
            return;
        }
        for (size_t i = 0; i < pg.n; i++) {
            store_bytes msg;
            int found = store_get_message(w->srv->store, pg.e[i].conv, pg.e[i].seq, &msg);
            if (found < 0) {   /* not gone, unreadable now: from this entry on, later */
                METRIC_INC(sync_read_failures_total);
                return;
            }
            if (found == 1) {
                write_event(w, c, pg.e[i].user_seq, msg.data, msg.len);
                store_bytes_free(&msg);
                METRIC_INC(sync_events_total);
            } else {
                /* the message is gone (retention): skip its entry */
                c->sent_upto = pg.e[i].user_seq;
            }
        }
    }
}
