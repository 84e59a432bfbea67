/* delivery.c -- events to a device, live or from its inbox.
 *
 * Each connection knows the last user_seq it wrote (sent_upto) and the last
 * one the device acknowledged (acked_upto). A live event is written only if
 * it is exactly the next one, the unacknowledged window has room and the
 * output is under its cap; otherwise the connection is marked lagging and
 * catches up from the store (delivery_pump) as room appears. Because
 * fan-out commits an inbox entry before it posts the live event, whatever a
 * lagging connection skips is already in the store when it pumps: no gap
 * and no duplicate at the seam between sync and live. The catch-up goes a
 * page at a time (gateway/catchup_read.h); on Cassandra each page is read
 * off the worker and comes back later, so an event skipped while a page
 * was out makes the catch-up read once more before it calls itself done
 * (that page may have been read before the event was committed). */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "gateway/conn.h"
#include "gateway/catchup_read.h"
#include "gateway/conn_side.h"
#include "gateway/mqtt_conn.h"
#include "gateway/realtime.h"
#include "gateway/store_reads.h"
#include "gateway/store_watch.h"

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
    delivery_catch_up(w, c);
}

/* The first SyncDone after a StartSync, with the receipts its last page
 * read (catchup_read.c). */
static void send_sync_done(worker *w, conn *c, const worker_msg *page) {
    Parley__V1__Receipt *items = malloc(CATCHUP_RECEIPTS_MAX * sizeof *items);
    Parley__V1__Receipt **ptrs = malloc(CATCHUP_RECEIPTS_MAX * sizeof *ptrs);
    if (!items || !ptrs) abort();
    size_t n = catchup_page_receipts(page, items, CATCHUP_RECEIPTS_MAX);
    for (size_t i = 0; i < n; i++) ptrs[i] = &items[i];
    Parley__V1__Frame f;
    Parley__V1__SyncDone done;
    parley__v1__frame__init(&f);
    parley__v1__sync_done__init(&done);
    done.user_seq = c->sent_upto;
    done.receipts = ptrs;
    done.n_receipts = n;
    f.body_case = PARLEY__V1__FRAME__BODY_SYNC_DONE;
    f.sync_done = &done;
    conn_send_frame(w, c, &f);
    c->sync_done_sent = true;
    free(ptrs);
    free(items);
}

bool delivery_output_room(const worker *w, const conn *c) {
    return buf_len(&c->out) < w->srv->cfg.conn_output_cap;
}

/* What the next page of c's catch-up is to read. */
static catchup_ask next_ask(const worker *w, const conn *c) {
    uint64_t room = window_of(w, c) - (c->sent_upto - c->acked_upto);
    catchup_ask q = {.user_id = c->user_id, .after = c->sent_upto, .limit = (uint32_t)(room < CATCHUP_PAGE ? room : CATCHUP_PAGE),
                     .receipts = !c->sync_done_sent};
    /* c->side holds sync_from from StartSync until its SyncDone */
    if (q.receipts && c->side) q.sync_from = c->side->sync_from;
    return q;
}

/* Writes a page read for c. Returns true when the catch-up goes on with
 * another page now, false when it stops here: caught up, out of room, or
 * a read failed (still lagging: the sweep pumps it again each second;
 * closing would only bring the device back to sign in, another read of
 * the same store). */
static bool write_page(worker *w, conn *c, const worker_msg *m) {
    catchup_page_head h;
    if (!catchup_page_head_of(m, &h)) return false;
    /* read for another state of c (a StartSync moved its cursor, or it was
     * sent more meanwhile): read again for this one */
    catchup_ask now = next_ask(w, c);
    if (h.ask.after != now.after || h.ask.receipts != now.receipts || h.ask.sync_from != now.sync_from) return true;
    catchup_entries it;
    catchup_entries_start(m, &it);
    uint64_t user_seq;
    const uint8_t *msg;
    size_t len;
    bool gone;
    while (catchup_entries_next(&it, &user_seq, &msg, &len, &gone)) {
        if (gone) {   /* the message is gone (retention): skip its entry */
            c->sent_upto = user_seq;
            continue;
        }
        write_event(w, c, user_seq, msg, len);
        METRIC_INC(sync_events_total);
    }
    if (h.failed) {
        METRIC_INC(sync_read_failures_total);
        return false;
    }
    if (h.n_entries > 0) return true;
    if (c->page_recheck) {
        /* live events came while it was read, maybe after: they are in the
         * store already (fan-out commits before it posts), so one more read
         * sees them */
        c->page_recheck = false;
        return true;
    }
    /* caught up: from here the next live event is exactly the next one */
    c->lagging = false;
    if (!c->sync_done_sent) send_sync_done(w, c, m);
    return false;
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
    while (c->lagging && !c->page_pending && has_room(w, c)) {
        catchup_ask q = next_ask(w, c);
        if (w->srv->store_reads) {
            /* Cassandra: the read goes to the reader pool, its page comes
             * back to delivery_page; one page in flight per connection */
            if (store_reads_submit_page(w->srv->store_reads, c->id, &q) != 0) {
                METRIC_INC(sync_read_failures_total);   /* the pool is full: the sweep tries again */
                return;
            }
            c->page_pending = true;
            c->page_recheck = false;
            return;
        }
        /* RocksDB: local reads, on this thread */
        worker_msg *m = catchup_read_page(w->srv->store, c->id, &q);
        bool more = write_page(w, c, m);
        worker_msg_free(m);
        if (!more) return;
    }
}

void delivery_page(worker *w, conn *c, const worker_msg *m) {
    if (!c->page_pending) return;   /* cannot be: one page at a time */
    c->page_pending = false;
    if (c->syncing && c->lagging && write_page(w, c, m)) delivery_pump(w, c);
}

void delivery_catch_up(worker *w, conn *c) {
    if (!c->syncing) return;
    c->lagging = true;
    if (c->page_pending) c->page_recheck = true;   /* the page in flight may have been read before */
    delivery_pump(w, c);
}
