/* sync.c -- the device's view of its inbox: StartSync from the cursor,
 * server pushes (events, SyncDone, receipts, challenges; the real-time ones
 * are passed on to realtime.c), the dedupe that
 * makes at-least-once delivery look exactly-once, cumulative acks, and
 * pc_poll. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------ seen map */

enum { SEEN_INITIAL_CAP = 16 };

static size_t seen_slot(const pc_seen_map *m, uint64_t key) {
    /* Fibonacci hashing: conversation ids are sequential, spread them */
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (m->cap - 1);
    while (m->keys[i] != 0 && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

static uint64_t seen_get(const pc_seen_map *m, uint64_t conv) {
    if (m->cap == 0) return 0;
    size_t i = seen_slot(m, conv);
    return m->keys[i] == conv ? m->vals[i] : 0;
}

static int seen_grow(pc_seen_map *m) {
    size_t cap = m->cap ? m->cap * 2 : SEEN_INITIAL_CAP;
    pc_seen_map n = {calloc(cap, sizeof *n.keys), calloc(cap, sizeof *n.vals), cap, 0};
    if (!n.keys || !n.vals) {
        free(n.keys);
        free(n.vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == 0) continue;
        size_t j = seen_slot(&n, m->keys[i]);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
        n.count++;
    }
    free(m->keys);
    free(m->vals);
    *m = n;
    return 0;
}

/* Returns 0, or -1 when out of memory (then the entry is not kept, and
 * dedupe for that conversation falls back to the cursor alone). */
static int seen_set(pc_seen_map *m, uint64_t conv, uint64_t seq) {
    if (conv == 0) return 0;
    if ((m->count + 1) * 2 > m->cap && seen_grow(m) < 0) return -1;
    size_t i = seen_slot(m, conv);
    if (m->keys[i] == 0) {
        m->keys[i] = conv;
        m->count++;
    }
    m->vals[i] = seq;
    return 0;
}

void pc_seen_free(pc_seen_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

void pc_set_seen(pc_client *c, uint64_t conversation_id, uint64_t seq) {
    seen_set(&c->seen, conversation_id, seq);
}

void pc_foreach_seen(const pc_client *c, void (*fn)(void *ud, uint64_t conv, uint64_t seq),
                     void *ud) {
    for (size_t i = 0; i < c->seen.cap; i++)
        if (c->seen.keys[i] != 0) fn(ud, c->seen.keys[i], c->seen.vals[i]);
}

/* -------------------------------------------------------------- cursor */

void pc_set_cursor(pc_client *c, uint64_t acked_user_seq) {
    c->acked = acked_user_seq;
    c->delivered = acked_user_seq;
    c->unacked_events = 0;
}

uint64_t pc_cursor(const pc_client *c) { return c->acked; }
int pc_sync_done(const pc_client *c) { return c->sync_done; }

void pc_on_event(pc_client *c, pc_event_fn fn, void *ud) {
    c->on_event = fn;
    c->on_event_ud = ud;
}

void pc_on_receipt(pc_client *c, pc_receipt_fn fn, void *ud) {
    c->on_receipt = fn;
    c->on_receipt_ud = ud;
}

int pc_flush_acks(pc_client *c) {
    if (c->fd >= 0 && pc_flush_device_acks(c) < 0) return -1;
    if (c->delivered <= c->acked) return 0;
    if (c->fd < 0) return pc_fail(c, -1, "not connected");
    Parley__V1__Ack ack = PARLEY__V1__ACK__INIT;
    ack.user_seq = c->delivered;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ACK;
    f.ack = &ack;
    if (pc_conn_send_frame(c, &f) < 0) return -1;
    c->acked = ack.user_seq;
    c->unacked_events = 0;
    return 0;
}

/* ------------------------------------------------------------- pushes */

static void handle_event(pc_client *c, const Parley__V1__Event *e) {
    const Parley__V1__Message *m = e->message;
    bool fresh = true;
    if (e->user_seq != 0 && e->user_seq <= c->acked) {
        fresh = false;          /* replayed from before our cursor */
    } else if (m && m->conversation_id != 0 && m->seq <= seen_get(&c->seen, m->conversation_id)) {
        fresh = false;          /* already handed out (or older than what was) */
    }
    if (fresh && m) {
        /* recorded before the callback, so a callback that re-enters pc_poll
         * cannot see the same event again */
        seen_set(&c->seen, m->conversation_id, m->seq);
        c->stats.events++;
        if (c->on_event) {
            c->in_callback = true;
            c->on_event(c->on_event_ud, e->user_seq, m);
            c->in_callback = false;
        }
    } else {
        c->stats.duplicates_dropped++;
    }
    /* dropped events are acked too: the cursor must move past them */
    if (e->user_seq > c->delivered) {
        c->delivered = e->user_seq;
        if (++c->unacked_events >= PC_ACK_EVERY) pc_flush_acks(c);
    }
}

static void handle_receipt(pc_client *c, const Parley__V1__Receipt *r) {
    if (!r || !c->on_receipt) return;
    c->in_callback = true;
    c->on_receipt(c->on_receipt_ud, r);
    c->in_callback = false;
}

void pc_dispatch_push(pc_client *c, const Parley__V1__Frame *f) {
    switch (f->body_case) {
    case PARLEY__V1__FRAME__BODY_CHALLENGE:
        if (f->challenge && f->challenge->nonce.len == PC_NONCE_BYTES) {
            memcpy(c->nonce, f->challenge->nonce.data, PC_NONCE_BYTES);
            c->have_nonce = true;
        }
        break;
    case PARLEY__V1__FRAME__BODY_EVENT:
        if (f->event) handle_event(c, f->event);
        break;
    case PARLEY__V1__FRAME__BODY_SYNC_DONE:
        c->sync_done = true;
        /* where the other members are in the conversations just caught up
         * on: the same news as Receipt pushes, for the same callback */
        for (size_t i = 0; f->sync_done && i < f->sync_done->n_receipts; i++)
            handle_receipt(c, f->sync_done->receipts[i]);
        pc_flush_acks(c);
        break;
    case PARLEY__V1__FRAME__BODY_RECEIPT:
        handle_receipt(c, f->receipt);
        break;
    default:
        /* presence, typing, keys, devices, device messages; requests are
         * not for clients, and unknown pushes are ignored */
        pc_realtime_dispatch(c, f);
        break;
    }
}

/* ---------------------------------------------------------------- sync */

static void fill_start_sync(pc_client *c, Parley__V1__StartSync *ss, Parley__V1__Frame *f) {
    ss->after_user_seq = c->delivered;
    f->body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f->start_sync = ss;
    /* before sending: SyncDone may be read in the same pass as the OK */
    c->sync_done = false;
}

int pc_start_sync_once(pc_client *c) {
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    fill_start_sync(c, &ss, &f);
    pc_request req = {.frame = &f, .retry_safe = true, .cursor = &ss.after_user_seq};
    Parley__V1__Frame *resp;
    if (pc_request_once(c, &req, &resp) < 0) return -1;
    parley__v1__frame__free_unpacked(resp, NULL);
    /* events handled but not acked before the loss: tell the server now */
    return pc_flush_acks(c);
}

int pc_start_sync(pc_client *c) {
    if (c->fd >= 0) pc_flush_acks(c);
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    fill_start_sync(c, &ss, &f);
    pc_request req = {.frame = &f, .retry_safe = true, .cursor = &ss.after_user_seq};
    Parley__V1__Frame *resp;
    if (pc_request_run(c, &req, &resp) < 0) return -1;
    parley__v1__frame__free_unpacked(resp, NULL);
    c->sync_started = true;
    return 0;
}

/* ---------------------------------------------------------------- poll */

enum { POLL_DRAIN_ROUNDS = 64 };   /* bounds pc_poll(c, 0) against a server that never pauses */

int pc_poll(pc_client *c, int timeout_ms) {
    if (c->in_callback) return pc_fail(c, -1, "pc_poll called from a libparley callback");
    int64_t deadline = timeout_ms < 0 ? -1 : pc_now_ms() + timeout_ms;
    int handled = 0;
    if (c->fd < 0) {
        if (!c->want_connected) return pc_fail(c, -1, "not connected");
        int r = pc_reconnect_until(c, deadline);
        if (r <= 0) return r;
    }
    /* first wait (up to the deadline) for anything, then take whatever
     * else is already there without waiting */
    bool waiting = true;
    for (int round = 0; round < POLL_DRAIN_ROUNDS; round++) {
        /* about to (maybe) block: let the server free its window first,
         * and tell its idle timeout we are still here */
        pc_flush_acks(c);
        if (c->fd >= 0) pc_conn_keepalive(c);
        int64_t until = waiting ? deadline : pc_now_ms();
        int64_t ping_due = pc_conn_ping_due(c);
        bool woke_for_ping = false;
        if (waiting && ping_due >= 0 && (until < 0 || ping_due < until)) {
            until = ping_due;
            woke_for_ping = true;
        }
        int r = c->fd < 0 ? -1 : pc_conn_pump(c, 0, until, true, NULL, &handled);
        if (r < 0) {
            if (!c->want_connected) return -1;
            int rr = pc_reconnect_until(c, deadline);
            if (rr < 0) return -1;
            if (rr == 0) break;   /* the next attempt is for a later pc_poll */
            continue;
        }
        if (r == 0) {
            /* the wait ended for a keepalive, not the caller's deadline */
            if (woke_for_ping && pc_ms_left(deadline) != 0) {
                round--;
                continue;
            }
            break;   /* nothing (more) within the time */
        }
        waiting = false;
    }
    if (c->fd >= 0) pc_flush_acks(c);
    if (handled > 0) c->backoff_attempt = 0;
    return handled;
}
