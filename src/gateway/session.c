/* session.c -- a device's requests, after the WebSocket layer.
 *
 * Sign-in and reads (lookups, conversation list, history) are answered here
 * from the store; every mutation goes to the writer thread, which answers
 * through the worker's inbox once it is durable. StartSync and Ack drive
 * delivery (delivery.c).
 *
 * Reads run on the loop thread: they are point lookups and short range
 * scans that RocksDB serves from its memtable and block cache. A read that
 * misses the cache waits on disk; moving reads to a pool is future work
 * (noted in DESIGN). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "chat/membership.h"
#include "chat/writer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/clock.h"
#include "gateway/conn.h"
#include "gateway/in_flight.h"
#include "gateway/realtime.h"
#include "gateway/request_limits.h"

enum {
    MAX_LIST = 1000,        /* conversations in one ListConversations answer */
    HISTORY_DEFAULT = 50,
    HISTORY_MAX = 200,
};

static const char AUTH_CONTEXT[] = "parley.v1 auth";   /* 14 bytes, no NUL */

static bool signature_valid(const conn *c, const ProtobufCBinaryData *public_key,
                            const ProtobufCBinaryData *signature) {
    if (public_key->len != crypto_sign_PUBLICKEYBYTES || signature->len != crypto_sign_BYTES)
        return false;
    uint8_t signed_bytes[sizeof AUTH_CONTEXT - 1 + sizeof c->nonce];
    memcpy(signed_bytes, AUTH_CONTEXT, sizeof AUTH_CONTEXT - 1);
    memcpy(signed_bytes + sizeof AUTH_CONTEXT - 1, c->nonce, sizeof c->nonce);
    return crypto_sign_verify_detached(signature->data, signed_bytes, sizeof signed_bytes,
                                       public_key->data) == 0;
}

static void respond_ok(worker *w, conn *c, uint64_t request_id) {
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    conn_respond(w, c, request_id, &r);
}

/* Hands f to the writer; true when it took it (false: its queue is full).
 * Requests that get no response (AckDeviceMessages) use this directly:
 * nothing is said when the writer is full, the device acks again later. */
static bool submit_quietly(worker *w, conn *c, Parley__V1__Frame *f) {
    /* the decoded frames waiting for the writer are bounded in bytes for
     * the whole process (and per connection by max-in-flight requests of
     * at most their decode budget each) */
    size_t bytes = c->decoded_bytes;
    long queued = atomic_fetch_add(&g_metrics.writer_queued_bytes, (long)bytes);
    if ((size_t)queued + bytes > w->srv->cfg.writer_queue_bytes) {
        atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
        METRIC_INC(writer_bytes_refusals_total);
        return false;
    }
    chat_request *r = calloc(1, sizeof *r);
    if (!r) {
        atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
        return false;
    }
    r->op = CHAT_FRAME;
    r->conn_id = c->id;
    r->request_id = f->request_id;
    r->user_id = c->user_id;
    r->device_id = c->device_id;
    r->frame = f;
    r->queued_bytes = bytes;
    if (writer_submit(w->srv->writer, r) == 0) return true;
    atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
    free(r);
    return false;
}

/* submit_quietly, and when the writer is full the device is told to retry.
 * The writer answers every request it takes: counted in flight until then. */
static bool submit(worker *w, conn *c, Parley__V1__Frame *f) {
    uint64_t request_id = f->request_id;   /* f is the writer's once taken */
    if (submit_quietly(w, c, f)) {
        in_flight_add(c, w->srv->cfg.max_in_flight, request_id, c->decoded_bytes);
        return true;
    }
    conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__UNAVAILABLE, "server busy; retry shortly");
    return false;
}

/* ---------------------------------------------------------------- sign-in */

static void signed_in(worker *w, conn *c, uint64_t request_id, uint64_t user, uint32_t device) {
    if (!c->signed_in) registry_presence_connected(w->srv->registry, user);
    if (!c->signed_in) conn_signed_in(w, c);
    c->signed_in = true;
    c->user_id = user;
    c->device_id = device;
    if (request_id == 0) return;
    Parley__V1__Response r;
    Parley__V1__Registered reg;
    parley__v1__response__init(&r);
    parley__v1__registered__init(&reg);
    reg.user_id = user;
    reg.device_id = device;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_REGISTERED;
    r.registered = &reg;
    conn_respond(w, c, request_id, &r);
}

static void handle_sign_in(worker *w, conn *c, const Parley__V1__Frame *f) {
    const Parley__V1__SignIn *q = f->sign_in;
    Parley__Store__Device *d = NULL;
    int found = store_get_device(w->srv->store, q->user_id, q->device_id, &d);
    bool ok = found == 1 && signature_valid(c, &d->public_key, &q->signature);
    if (d) parley__store__device__free_unpacked(d, NULL);
    if (!ok) {
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__UNAUTHENTICATED,
                        found < 0 ? "store read failed" : "unknown device or bad signature");
        return;
    }
    signed_in(w, c, f->request_id, q->user_id, q->device_id);
}

void session_apply_reply(worker *w, conn *c, worker_msg *m) {
    in_flight_answered(c, m->data, m->len);
    if (m->user_id) signed_in(w, c, 0, m->user_id, m->device_id);
    conn_send(w, c, WS_OP_BINARY, m->data, m->len);
}

/* ------------------------------------------------------------------ reads */

static void handle_lookup_user(worker *w, conn *c, const Parley__V1__Frame *f) {
    uint64_t id = 0;
    int found = store_get_user_id(w->srv->store, f->lookup_user->name, &id);
    if (found != 1) {
        conn_send_error(w, c, f->request_id,
                        found < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__NOT_FOUND,
                        found < 0 ? "store read failed" : "no such user");
        return;
    }
    Parley__V1__Response r;
    Parley__V1__UserInfo u;
    parley__v1__response__init(&r);
    parley__v1__user_info__init(&u);
    u.user_id = id;
    u.name = f->lookup_user->name;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_USER;
    r.user = &u;
    conn_respond(w, c, f->request_id, &r);
}

static int current_member(worker *w, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    return membership_current(w->srv->store, conv, user, out);
}

typedef struct id_list {
    uint64_t *ids;
    size_t n, cap;
} id_list;

static int collect_id(void *ud, uint64_t id) {
    id_list *l = ud;
    if (l->n == l->cap) {
        if (l->cap >= MAX_LIST * 2) return 1;
        l->cap = l->cap ? l->cap * 2 : 16;
        uint64_t *grown = realloc(l->ids, l->cap * sizeof *grown);
        if (!grown) return 1;
        l->ids = grown;
    }
    l->ids[l->n++] = id;
    return 0;
}

static int collect_active_member(void *ud, uint64_t user, const Parley__Store__Member *m) {
    if (m->joined_seq > 0 && m->left_seq == 0) return collect_id(ud, user);
    return 0;
}

static void free_summary(Parley__V1__ConversationSummary *s) {
    free(s->name);
    free(s->member_user_ids);
    free(s);
}

static void handle_list(worker *w, conn *c, const Parley__V1__Frame *f) {
    store *st = w->srv->store;
    id_list convs = {0};
    store_scan_user_conversations(st, c->user_id, collect_id, &convs);
    Parley__V1__ConversationSummary **items = calloc(convs.n ? convs.n : 1, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < convs.n && n < MAX_LIST && items; i++) {
        Parley__Store__Member *me = NULL;
        if (current_member(w, convs.ids[i], c->user_id, &me) != 1) continue;
        Parley__Store__Conversation *rec = NULL;
        if (store_get_conversation(st, convs.ids[i], &rec) != 1) {
            parley__store__member__free_unpacked(me, NULL);
            continue;
        }
        Parley__V1__ConversationSummary *s = malloc(sizeof *s);
        if (!s) abort();
        parley__v1__conversation_summary__init(s);
        s->conversation_id = convs.ids[i];
        s->kind = (Parley__V1__ConversationKind)rec->kind;
        s->name = strdup(rec->name);
        store_last_seq(st, convs.ids[i], &s->last_seq);
        s->read_seq = me->read_seq;
        s->unread = s->last_seq > me->read_seq ? s->last_seq - me->read_seq : 0;
        id_list members = {0};
        store_scan_members(st, convs.ids[i], collect_active_member, &members);
        s->member_user_ids = members.ids;
        s->n_member_user_ids = members.n;
        items[n++] = s;
        parley__store__conversation__free_unpacked(rec, NULL);
        parley__store__member__free_unpacked(me, NULL);
    }
    free(convs.ids);

    Parley__V1__Response r;
    Parley__V1__ConversationList list;
    parley__v1__response__init(&r);
    parley__v1__conversation_list__init(&list);
    list.conversations = items;
    list.n_conversations = n;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_CONVERSATIONS;
    r.conversations = &list;
    conn_respond(w, c, f->request_id, &r);
    for (size_t i = 0; i < n; i++) free_summary(items[i]);
    free(items);
}

typedef struct history_scan {
    Parley__V1__Message *m[HISTORY_MAX + 1];
    size_t n;
    size_t bytes, max_bytes;    /* encoded messages taken; the page's byte cap */
    bool byte_capped;           /* stopped by max_bytes: older messages remain */
} history_scan;

/* A page holds whole messages up to the byte cap (at least one, so a
 * conversation of messages near the cap still reads page by page): the
 * answer is bounded before it is built, and fits a client's frame limit. */
static int collect_message(void *ud, uint64_t seq, const uint8_t *msg, size_t len) {
    (void)seq;
    history_scan *h = ud;
    if (h->n > 0 && h->bytes + len > h->max_bytes) {
        h->byte_capped = true;
        return 1;
    }
    Parley__V1__Message *m = parley__v1__message__unpack(NULL, len, msg);
    if (m) {
        h->m[h->n++] = m;
        h->bytes += len;
    }
    return 0;
}

static void handle_history(worker *w, conn *c, const Parley__V1__Frame *f) {
    const Parley__V1__History *q = f->history;
    int member = current_member(w, q->conversation_id, c->user_id, NULL);
    if (member != 1) {
        conn_send_error(w, c, f->request_id,
                        member < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__FORBIDDEN,
                        "not a member of this conversation");
        return;
    }
    uint32_t limit = q->limit == 0 ? HISTORY_DEFAULT : q->limit > HISTORY_MAX ? HISTORY_MAX : q->limit;
    history_scan *h = calloc(1, sizeof *h);
    if (!h) abort();
    h->max_bytes = w->srv->cfg.history_page_bytes;
    /* one more than asked tells whether older messages exist */
    store_scan_messages_back(w->srv->store, q->conversation_id, q->before_seq, limit + 1,
                             collect_message, h);
    bool more = h->n > limit || h->byte_capped;
    size_t n = h->n > limit ? limit : h->n;
    if (h->byte_capped) METRIC_INC(history_pages_byte_capped_total);
    /* newest first from the scan; the page is oldest first */
    Parley__V1__Message *page[HISTORY_MAX];
    for (size_t i = 0; i < n; i++) page[i] = h->m[n - 1 - i];

    Parley__V1__Response r;
    Parley__V1__HistoryPage hp;
    parley__v1__response__init(&r);
    parley__v1__history_page__init(&hp);
    hp.messages = page;
    hp.n_messages = n;
    hp.has_more = more;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_HISTORY;
    r.history = &hp;
    conn_respond(w, c, f->request_id, &r);
    for (size_t i = 0; i < h->n; i++) parley__v1__message__free_unpacked(h->m[i], NULL);
    free(h);
}

/* ------------------------------------------------------------------ sync */

static void handle_start_sync(worker *w, conn *c, const Parley__V1__Frame *f) {
    if (!c->syncing) {
        registry_entry e = {.conn_id = c->id, .device_id = c->device_id, .worker = w->index};
        if (registry_add(w->srv->registry, c->user_id, &e)) {
            conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__INTERNAL, "out of memory");
            return;
        }
        c->syncing = true;
    }
    c->sent_upto = c->acked_upto = c->sync_from = f->start_sync->after_user_seq;
    c->lagging = true;
    c->sync_done_sent = false;
    respond_ok(w, c, f->request_id);
    realtime_push_device_messages(w, c);
    delivery_pump(w, c);
}

static void handle_ack(worker *w, conn *c, const Parley__V1__Frame *f) {
    if (!c->syncing) return;
    /* a device cannot acknowledge what it was not sent */
    uint64_t to = f->ack->user_seq < c->sent_upto ? f->ack->user_seq : c->sent_upto;
    if (to <= c->acked_upto) return;
    chat_request *r = calloc(1, sizeof *r);
    if (r) {
        r->op = CHAT_ACK;
        r->conn_id = c->id;
        r->user_id = c->user_id;
        r->device_id = c->device_id;
        r->ack_from = c->acked_upto;
        r->ack_to = to;
        /* when the writer is saturated the cursor is not stored this time:
         * the next ack covers it, and a device dedupes what it sees again */
        if (writer_submit(w->srv->writer, r)) free(r);
    }
    c->acked_upto = to;
    if (c->lagging) delivery_pump(w, c);
}

void session_closed(worker *w, conn *c) {
    if (c->syncing) registry_remove(w->srv->registry, c->user_id, c->id);
    if (c->signed_in) {
        registry_presence_disconnected(w->srv->registry, c->user_id, clock_wall_ms());
        registry_presence_unsubscribe(w->srv->registry, c->id);
    }
    c->syncing = false;
    c->signed_in = false;
}

/* ---------------------------------------------------------------- dispatch */

void session_handle(worker *w, conn *c, const uint8_t *data, size_t len) {
    /* what the request is, and whether it may be decoded at all, is known
     * from its top-level fields, before anything is allocated */
    frame_peek pk;
    if (frame_peek_parse(data, len, &pk)) {
        METRIC_INC(protocol_errors_total);
        conn_close(w, c, WS_CLOSE_INVALID_DATA, "undecodable frame: not a parley.v1 Frame");
        return;
    }
    if (!c->signed_in && !request_allowed_before_sign_in(pk.body)) {
        METRIC_INC(requests_total);
        /* Ack gets no response, signed in or not */
        if (pk.body != PARLEY__V1__FRAME__BODY_ACK && pk.body != PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES)
            conn_send_error(w, c, pk.request_id, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        return;
    }
    size_t limit = request_size_limit(&w->srv->cfg, pk.body);
    if (len > limit) {
        METRIC_INC(requests_total);
        METRIC_INC(requests_too_large_total);
        char why[96];
        snprintf(why, sizeof why, "request of %zu bytes; this request type takes at most %zu", len, limit);
        conn_send_error(w, c, pk.request_id, PARLEY__V1__STATUS__TOO_LARGE, why);
        return;
    }
    bool over_budget = false;
    Parley__V1__Frame *f = request_decode(data, len, &over_budget, &c->decoded_bytes);
    if (!f && over_budget) {
        METRIC_INC(requests_total);
        METRIC_INC(decode_budget_refusals_total);
        conn_send_error(w, c, pk.request_id, PARLEY__V1__STATUS__TOO_LARGE,
                        "request too costly to decode (too many elements for its size)");
        return;
    }
    if (!f) {
        METRIC_INC(protocol_errors_total);
        conn_close(w, c, WS_CLOSE_INVALID_DATA, "undecodable frame");
        return;
    }
    METRIC_INC(requests_total);
    bool taken = false;
    uint64_t rid = f->request_id;
    switch (f->body_case) {
    case PARLEY__V1__FRAME__BODY_REGISTER_USER:
        if (c->signed_in)
            conn_send_error(w, c, rid, PARLEY__V1__STATUS__BAD_REQUEST, "already signed in");
        else if (!signature_valid(c, &f->register_user->device_public_key, &f->register_user->signature))
            conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "bad key or signature");
        else
            taken = submit(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_REGISTER_DEVICE:
        if (c->signed_in)
            conn_send_error(w, c, rid, PARLEY__V1__STATUS__BAD_REQUEST, "already signed in");
        else if (!signature_valid(c, &f->register_device->device_public_key,
                                  &f->register_device->signature))
            conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "bad key or signature");
        else
            taken = submit(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_SIGN_IN:
        if (c->signed_in) conn_send_error(w, c, rid, PARLEY__V1__STATUS__BAD_REQUEST, "already signed in");
        else handle_sign_in(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_SEND_MESSAGE: {
        uint64_t wait_ms = 0;
        if (!c->signed_in) {
            conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        } else if (!realtime_take_send_token(w, c, &wait_ms)) {
            conn_send_rate_limited(w, c, rid, "sending too fast; retry after retry_after_ms", wait_ms);
        } else {
            taken = submit(w, c, f);
        }
        break;
    }
    case PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN:
    case PARLEY__V1__FRAME__BODY_UPLOAD_KEYS:
    case PARLEY__V1__FRAME__BODY_FETCH_KEYS:
    case PARLEY__V1__FRAME__BODY_REMOVE_DEVICE:
    case PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE:
    case PARLEY__V1__FRAME__BODY_OPEN_DIRECT:
    case PARLEY__V1__FRAME__BODY_CREATE_GROUP:
    case PARLEY__V1__FRAME__BODY_ADD_MEMBERS:
    case PARLEY__V1__FRAME__BODY_REMOVE_MEMBER:
    case PARLEY__V1__FRAME__BODY_MARK_READ:
        if (!c->signed_in) conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        else taken = submit(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES:
        /* like Ack: no response, and nothing to do before sign-in */
        if (c->signed_in) taken = submit_quietly(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_SUBSCRIBE_PRESENCE:
    case PARLEY__V1__FRAME__BODY_TYPING:
    case PARLEY__V1__FRAME__BODY_GET_RECEIPTS:
    case PARLEY__V1__FRAME__BODY_GET_DEVICES:
        if (!c->signed_in)
            conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        else if (f->body_case == PARLEY__V1__FRAME__BODY_SUBSCRIBE_PRESENCE)
            realtime_subscribe_presence(w, c, f);
        else if (f->body_case == PARLEY__V1__FRAME__BODY_TYPING)
            realtime_typing(w, c, f);
        else if (f->body_case == PARLEY__V1__FRAME__BODY_GET_RECEIPTS)
            realtime_get_receipts(w, c, f);
        else
            realtime_get_devices(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_LOOKUP_USER:
    case PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS:
    case PARLEY__V1__FRAME__BODY_HISTORY:
    case PARLEY__V1__FRAME__BODY_START_SYNC:
    case PARLEY__V1__FRAME__BODY_ACK:
        if (!c->signed_in) {
            if (f->body_case != PARLEY__V1__FRAME__BODY_ACK)
                conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        } else if (f->body_case == PARLEY__V1__FRAME__BODY_LOOKUP_USER) {
            handle_lookup_user(w, c, f);
        } else if (f->body_case == PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS) {
            handle_list(w, c, f);
        } else if (f->body_case == PARLEY__V1__FRAME__BODY_HISTORY) {
            handle_history(w, c, f);
        } else if (f->body_case == PARLEY__V1__FRAME__BODY_START_SYNC) {
            handle_start_sync(w, c, f);
        } else {
            handle_ack(w, c, f);
        }
        break;
    default:
        conn_send_error(w, c, rid, PARLEY__V1__STATUS__BAD_REQUEST, "unknown request");
        break;
    }
    if (!taken) parley__v1__frame__free_unpacked(f, NULL);
}
