/* realtime.c -- see realtime.h. Everything here is ephemeral or a read;
 * nothing waits for the writer. Pushes to connections on other workers use
 * a non-blocking post: a loop thread never waits on another's queue, and a
 * typing indicator that finds a full queue is dropped (it is ephemeral). */
#include "gateway/realtime.h"

#include <string.h>

#include "chat/consent.h"
#include "chat/membership.h"
#include "chat/push.h"
#include "cluster/presence_bus.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "gateway/conn_side.h"
#include "gateway/device_message_read.h"
#include "gateway/presence_access.h"
#include "gateway/store_watch.h"

enum {
    MAX_PRESENCE_USERS = 1024,
    TYPING_RATE = 5,            /* indicators per second per device, bursts of 2x */
    MAX_DEVICE_MESSAGES_AT_SYNC = 1000,
    MAX_DEVICES = 64,
};

static void try_post(worker *w, worker_msg *m) {
    uint32_t index = conn_id_worker(m->conn_id);
    if (index >= (uint32_t)w->srv->n_workers || mpsc_try_push(&w->srv->workers[index]->inbox, m))
        worker_msg_free(m);
}

/* --------------------------------------------------------------- presence */

static void send_presence(worker *w, conn *c, uint64_t user) {
    int online = 0;
    uint64_t last_seen = 0;
    /* many nodes: what the presence bus last read from Redis; not known
     * yet, the bus tells every subscriber once its read is answered */
    if (w->srv->presence_bus) {
        if (!presence_bus_state(w->srv->presence_bus, user, &online, &last_seen)) return;
    } else {
        registry_presence_state(w->srv->registry, user, &online, &last_seen);
    }
    Parley__V1__Frame f;
    Parley__V1__Presence p;
    push_frame_presence(&f, &p, user, online, last_seen);
    conn_send_frame(w, c, &f);
}

/* Ids a connection may subscribe to per second (a subscription replaces the
 * previous one, so this bounds the work of resubscribing, not what is
 * watched), bursts of PRESENCE_IDS_BURST. */
enum { PRESENCE_IDS_PER_S = 1024, PRESENCE_IDS_BURST = 4096 };

/* The bucket lives in c's side state (conn_side.h), which the worker
 * drops once it is full again. */
static bool take_presence_tokens(conn *c, size_t n, uint64_t *retry_after_ms) {
    uint64_t now = clock_mono_ms();
    conn_side *s = conn_side_get(c);
    if (!s) {   /* out of memory: try again shortly */
        *retry_after_ms = 1000;
        return false;
    }
    if (s->presence_refilled_ms == 0) s->presence_tokens = PRESENCE_IDS_BURST;
    else s->presence_tokens += (float)(now - s->presence_refilled_ms) * PRESENCE_IDS_PER_S / 1000.0f;
    if (s->presence_tokens > PRESENCE_IDS_BURST) s->presence_tokens = PRESENCE_IDS_BURST;
    s->presence_refilled_ms = now;
    float cost = n ? (float)n : 1.0f;
    bool ok = s->presence_tokens >= cost;
    if (ok) s->presence_tokens -= cost;
    else *retry_after_ms = (uint64_t)((cost - s->presence_tokens) * 1000.0f / PRESENCE_IDS_PER_S) + 1;
    conn_side_bucket_until(s, now + (uint64_t)((PRESENCE_IDS_BURST - s->presence_tokens) * 1000.0f / PRESENCE_IDS_PER_S) + 1);
    return ok;
}

void realtime_subscribe_presence(worker *w, conn *c, const Parley__V1__Frame *f) {
    const Parley__V1__SubscribePresence *q = f->subscribe_presence;
    if (q->n_user_ids > MAX_PRESENCE_USERS) {
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__TOO_LARGE, "at most 1024 users");
        return;
    }
    uint64_t ids[MAX_PRESENCE_USERS];
    if (q->n_user_ids) memcpy(ids, q->user_ids, q->n_user_ids * sizeof ids[0]);
    size_t n = presence_unique_ids(ids, q->n_user_ids);
    uint64_t wait_ms = 0;
    if (!take_presence_tokens(c, n, &wait_ms)) {
        conn_send_rate_limited(w, c, f->request_id, "presence subscriptions are limited to 1024 users per second",
                               wait_ms);
        return;
    }
    uint64_t denied = 0;
    switch (presence_access_check(w->srv->store, c->user_id, ids, n, &denied)) {
    case PRESENCE_ACCESS_OK:
        break;
    case PRESENCE_ACCESS_DENIED:
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__FORBIDDEN,
                        "presence only of users who share a conversation with you and accepted you");
        return;
    case PRESENCE_ACCESS_TOO_COSTLY:
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__TOO_LARGE,
                        "too costly to check: subscribe to fewer users");
        return;
    default:
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__INTERNAL, "store read failed");
        return;
    }
    if (registry_presence_subscribe(w->srv->registry, c->id, ids, n)) {
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__INTERNAL, "out of memory");
        return;
    }
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    conn_respond(w, c, f->request_id, &r);
    for (size_t i = 0; i < n; i++) send_presence(w, c, ids[i]);
}

/* ----------------------------------------------------------------- typing */

static const float TYPING_CAP = 2.0f * TYPING_RATE;

/* The bucket lives in c's side state (conn_side.h); NULL: out of memory. */
static conn_side *refill(conn *c) {
    uint64_t now = clock_mono_ms();
    conn_side *s = conn_side_get(c);
    if (!s) return NULL;
    if (s->typing_refilled_ms == 0) {
        s->typing_tokens = TYPING_CAP;
    } else {
        float dt = (float)(now - s->typing_refilled_ms) / 1000.0f;
        s->typing_tokens += dt * TYPING_RATE;
        if (s->typing_tokens > TYPING_CAP) s->typing_tokens = TYPING_CAP;
    }
    s->typing_refilled_ms = now;
    return s;
}

typedef struct typing_fanout {
    worker *w;
    conn *c;
    const Parley__V1__Frame *frame;
} typing_fanout;

static int typing_to_member(void *ud, uint64_t user, const Parley__Store__Member *m) {
    typing_fanout *t = ud;
    if (m->left_seq != 0 || user == t->c->user_id) return 0;
    if (consent_is_request(t->w->srv->store, user, m)) return 0;   /* not accepted: hears nothing */
    registry_entry e[MAX_DEVICES];
    size_t n = registry_lookup(t->w->srv->registry, user, e, MAX_DEVICES);
    for (size_t i = 0; i < n && i < MAX_DEVICES; i++) try_post(t->w, worker_msg_pack(WM_PUSH, e[i].conn_id, t->frame));
    /* the member's devices on other nodes */
    if (t->w->srv->presence_bus) presence_bus_typing(t->w->srv->presence_bus, user, t->frame->typing_indicator);
    return 0;
}

void realtime_typing(worker *w, conn *c, const Parley__V1__Frame *f) {
    const Parley__V1__Typing *q = f->typing;
    conn_side *s = refill(c);
    if (!s || s->typing_tokens < 1.0f) {
        conn_send_rate_limited(w, c, f->request_id, "typing indicators are limited to 5 per second",
                               s ? (uint64_t)((1.0f - s->typing_tokens) * 1000.0f / TYPING_RATE) + 1 : 1000);
        return;
    }
    s->typing_tokens -= 1.0f;
    conn_side_bucket_until(s, s->typing_refilled_ms +
                                  (uint64_t)((TYPING_CAP - s->typing_tokens) * 1000.0f / TYPING_RATE) + 1);
    Parley__Store__Member *me = NULL;
    if (membership_current(w->srv->store, q->conversation_id, c->user_id, &me) != 1) {
        if (me) parley__store__member__free_unpacked(me, NULL);
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__FORBIDDEN, "not a member of this conversation");
        return;
    }
    /* typing in a conversation one has not accepted shows nobody anything */
    bool silent = consent_is_request(w->srv->store, c->user_id, me);
    parley__store__member__free_unpacked(me, NULL);
    if (silent) {
        Parley__V1__Response ok;
        parley__v1__response__init(&ok);
        conn_respond(w, c, f->request_id, &ok);
        return;
    }
    Parley__V1__Frame push;
    Parley__V1__TypingIndicator ti;
    parley__v1__frame__init(&push);
    parley__v1__typing_indicator__init(&ti);
    ti.conversation_id = q->conversation_id;
    ti.user_id = c->user_id;
    ti.device_id = c->device_id;
    ti.typing = q->typing;
    push.body_case = PARLEY__V1__FRAME__BODY_TYPING_INDICATOR;
    push.typing_indicator = &ti;
    typing_fanout t = {w, c, &push};
    store_scan_members(w->srv->store, q->conversation_id, typing_to_member, &t);
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    conn_respond(w, c, f->request_id, &r);
}

/* --------------------------------------------------------------- receipts */

typedef struct receipt_list {
    Parley__V1__MemberReceipt *items;
    Parley__V1__MemberReceipt **ptrs;
    size_t n, cap;
    store *store;
    uint64_t viewer;
} receipt_list;

static int add_receipt(void *ud, uint64_t user, const Parley__Store__Member *m) {
    receipt_list *l = ud;
    if (m->joined_seq == 0 || m->left_seq != 0) return 0;
    if (l->n == l->cap) return 1;
    Parley__V1__MemberReceipt *r = &l->items[l->n];
    parley__v1__member_receipt__init(r);
    r->user_id = user;
    r->delivered_seq = m->delivered_seq;
    /* a member who has not accepted the conversation shows no read mark */
    bool hidden = user != l->viewer && consent_is_request(l->store, user, m);
    r->read_seq = hidden ? 0 : m->read_seq;
    l->ptrs[l->n++] = r;
    return 0;
}

void realtime_get_receipts(worker *w, conn *c, const Parley__V1__Frame *f) {
    uint64_t conv = f->get_receipts->conversation_id;
    if (membership_current(w->srv->store, conv, c->user_id, NULL) != 1) {
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__FORBIDDEN, "not a member of this conversation");
        return;
    }
    receipt_list l = {0};
    l.store = w->srv->store;
    l.viewer = c->user_id;
    l.cap = w->srv->cfg.max_group_members;
    l.items = malloc(l.cap * sizeof *l.items);
    l.ptrs = malloc(l.cap * sizeof *l.ptrs);
    if (!l.items || !l.ptrs) abort();
    store_scan_members(w->srv->store, conv, add_receipt, &l);
    Parley__V1__Response r;
    Parley__V1__ReceiptList rl;
    parley__v1__response__init(&r);
    parley__v1__receipt_list__init(&rl);
    rl.conversation_id = conv;
    rl.members = l.ptrs;
    rl.n_members = l.n;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_RECEIPTS;
    r.receipts = &rl;
    conn_respond(w, c, f->request_id, &r);
    free(l.items);
    free(l.ptrs);
}

/* ---------------------------------------------------------------- devices */

typedef struct device_ids {
    uint32_t ids[MAX_DEVICES];
    size_t n;
} device_ids;

static int add_device(void *ud, uint32_t device, const Parley__Store__Device *d) {
    (void)d;
    device_ids *l = ud;
    if (l->n == MAX_DEVICES) return 1;
    l->ids[l->n++] = device;
    return 0;
}

void realtime_get_devices(worker *w, conn *c, const Parley__V1__Frame *f) {
    uint64_t user = f->get_devices->user_id;
    Parley__Store__User *u = NULL;
    if (store_get_user(w->srv->store, user, &u) != 1) {
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__NOT_FOUND, "no such user");
        return;
    }
    if (!consent_devices_visible(w->srv->store, c->user_id, user)) {
        parley__store__user__free_unpacked(u, NULL);
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__FORBIDDEN,
                        "devices only of users who share a group with you, or a conversation and accepted you");
        return;
    }
    device_ids l = {{0}, 0};
    store_scan_devices(w->srv->store, user, add_device, &l);
    Parley__V1__Response r;
    Parley__V1__DeviceList dl;
    parley__v1__response__init(&r);
    parley__v1__device_list__init(&dl);
    dl.user_id = user;
    dl.change_counter = u->device_list_counter;
    dl.device_ids = l.ids;
    dl.n_device_ids = l.n;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_DEVICES;
    r.devices = &dl;
    conn_respond(w, c, f->request_id, &r);
    parley__store__user__free_unpacked(u, NULL);
}

/* -------------------------------------------------------- device messages */

/* Writes the page's messages while the output has room (at most one past
 * the cap) and the sync's share lasts; what is left is read again from the
 * last one written. A page asked before the latest StartSync is not
 * written: the paging starts again. The paging ends with a page that holds
 * nothing (or whose read failed: the rest at the next StartSync). */
static void write_dm_page(worker *w, conn *c, const worker_msg *m) {
    conn_side *s = c->side;
    dm_page_head h;
    if (!dm_page_head_of(m, &h) || h.ask.after != s->dm_after) return;   /* asked before the latest StartSync */
    dm_entries it;
    dm_entries_start(m, &it);
    uint64_t queue_seq;
    const uint8_t *msg;
    size_t len;
    while (dm_entries_next(&it, &queue_seq, &msg, &len)) {
        if (c->state != CONN_WS || !delivery_output_room(w, c) || s->dm_sent >= MAX_DEVICE_MESSAGES_AT_SYNC)
            break;
        s->dm_after = queue_seq;
        s->dm_sent++;
        Parley__V1__DeviceMessage *dm = parley__v1__device_message__unpack(NULL, len, msg);
        if (dm) {
            Parley__V1__Frame f;
            parley__v1__frame__init(&f);
            f.body_case = PARLEY__V1__FRAME__BODY_DEVICE_MESSAGE;
            f.device_message = dm;
            conn_send_frame(w, c, &f);
            parley__v1__device_message__free_unpacked(dm, NULL);
        }
    }
    if (h.failed || h.n == 0) c->dm_pending = false;
}

/* The paging lives in c's side state (conn_side.h) while dm_pending. */
void realtime_push_device_messages(worker *w, conn *c) {
    conn_side *s = conn_side_get(c);
    c->dm_pending = s != NULL;   /* out of memory: at the next StartSync */
    if (!s) return;
    s->dm_after = 0;
    s->dm_sent = 0;
    realtime_pump_device_messages(w, c);
}

void realtime_pump_device_messages(worker *w, conn *c) {
    /* a failing store is not read (gateway/store_watch.h): the sweep pumps
     * again each second */
    if (c->dm_pending && store_watch_reads_held(w->srv)) return;
    while (c->dm_pending && !c->side->dm_reading && c->state == CONN_WS && delivery_output_room(w, c)) {
        if (c->side->dm_sent >= MAX_DEVICE_MESSAGES_AT_SYNC) {
            c->dm_pending = false;   /* the rest at the next StartSync, after acks */
            return;
        }
        dm_ask q = {.user_id = c->user_id, .device_id = c->device_id, .after = c->side->dm_after};
        if (w->srv->store_reads) {
            /* Cassandra: the read goes to the reader pool, its page comes
             * back to realtime_device_messages_page; one per connection */
            if (dm_read_submit(w->srv->store_reads, c->id, &q) != 0) {
                METRIC_INC(sync_read_failures_total);   /* the pool is full: the sweep pumps again */
                return;
            }
            c->side->dm_reading = true;
            return;
        }
        /* RocksDB: local reads, on this thread */
        worker_msg *m = dm_read_page(w->srv->store, c->id, &q);
        write_dm_page(w, c, m);
        worker_msg_free(m);
    }
}

void realtime_device_messages_page(worker *w, conn *c, const worker_msg *m) {
    if (!c->side || !c->side->dm_reading) return;   /* cannot be: one page at a time */
    c->side->dm_reading = false;
    if (c->dm_pending) write_dm_page(w, c, m);
    /* the input waited for the page (worker.c conn_input_blocked): this
     * turn's flush resumes it, also when nothing was written */
    conn_mark_dirty(w, c);
    delivery_pump(w, c);   /* the next page, or the catch-up that waited for these */
}
