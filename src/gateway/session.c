/* session.c -- a device's requests, after the WebSocket layer.
 *
 * Sign-in and reads (lookups, conversation list, history) are answered here
 * from the store; every mutation goes to the writer thread, which answers
 * through the worker's inbox once it is durable. StartSync and Ack drive
 * delivery (delivery.c).
 *
 * Where the reads run depends on the store. RocksDB: on the loop thread,
 * point lookups and short range scans served from its memtable and block
 * cache (a miss waits on disk). Cassandra: every read is a network round
 * trip and a frozen node holds it for the client's deadline, so a
 * sign-in's device read, the device messages and catch-up pages of a sync
 * (realtime.c, delivery.c) and History, ListConversations and LookupUser
 * (gateway/request_read.h) go to the reader pool (gateway/store_reads.h)
 * and come back as worker messages: a frozen node must not hold the
 * worker. Still on the loop thread there: the request reads of realtime.c
 * (receipts, devices, presence, typing). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "chat/writer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/clock.h"
#include "gateway/admission.h"
#include "gateway/conn.h"
#include "gateway/conn_auth.h"
#include "gateway/conn_side.h"
#include "gateway/in_flight.h"
#include "gateway/mqtt_conn.h"
#include "gateway/realtime.h"
#include "gateway/register_limit.h"
#include "gateway/request_read.h"
#include "gateway/request_limits.h"
#include "gateway/send_read.h"
#include "gateway/store_reads.h"
#include "gateway/store_watch.h"
#include "push/push_gateway.h"
#include "push/webpush_crypto.h"

static const char AUTH_CONTEXT[] = "parley.v1 auth";   /* 14 bytes, no NUL */
enum { MAX_AUTH_HOST = 255 };   /* http.h keeps at most this much of Host */

/* The device signs AUTH_CONTEXT || nonce || the Host header it sent with the
 * upgrade, so a signature made for one server (or one name of it) proves
 * nothing to another. */
static bool signature_valid(const conn *c, const ProtobufCBinaryData *public_key,
                            const ProtobufCBinaryData *signature) {
    if (public_key->len != crypto_sign_PUBLICKEYBYTES || signature->len != crypto_sign_BYTES)
        return false;
    const conn_auth *a = c->auth;
    if (!a) return false;   /* signed in already: no challenge to sign */
    size_t host_len = strnlen(a->host, MAX_AUTH_HOST + 1);
    if (host_len > MAX_AUTH_HOST) return false;
    uint8_t signed_bytes[sizeof AUTH_CONTEXT - 1 + sizeof a->nonce + MAX_AUTH_HOST];
    memcpy(signed_bytes, AUTH_CONTEXT, sizeof AUTH_CONTEXT - 1);
    memcpy(signed_bytes + sizeof AUTH_CONTEXT - 1, a->nonce, sizeof a->nonce);
    memcpy(signed_bytes + sizeof AUTH_CONTEXT - 1 + sizeof a->nonce, a->host, host_len);
    return crypto_sign_verify_detached(signature->data, signed_bytes,
                                       sizeof AUTH_CONTEXT - 1 + sizeof a->nonce + host_len,
                                       public_key->data) == 0;
}

void session_challenge(worker *w, conn *c) {
    conn_auth *a = c->auth;
    if (!a) return;   /* signed in: no more challenges */
    randombytes_buf(a->nonce, sizeof a->nonce);
    c->nonce_spent = false;
    Parley__V1__Frame f;
    Parley__V1__Challenge ch;
    parley__v1__frame__init(&f);
    parley__v1__challenge__init(&ch);
    ch.nonce.data = a->nonce;
    ch.nonce.len = sizeof a->nonce;
    ch.server_ts = clock_wall_ms();
    f.body_case = PARLEY__V1__FRAME__BODY_CHALLENGE;
    f.challenge = &ch;
    conn_send_frame(w, c, &f);
}

static void respond_ok(worker *w, conn *c, uint64_t request_id) {
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    conn_respond(w, c, request_id, &r);
}

typedef enum submit_result { SUBMIT_TAKEN, SUBMIT_OVER_SHARE, SUBMIT_WRITER_FULL } submit_result;

/* Hands f to the writer. A signed-in user's request counts in its share
 * of the writer queue until the writer is done with it (admission.h), and
 * its decoded bytes in the process-wide bound on what waits for the writer
 * (per connection, max-in-flight requests of at most their decode budget
 * each bound it too).
 * Requests that get no response (AckDeviceMessages) use this directly:
 * nothing is said when it is not taken, the device acks again later.
 * flat: f is one block (send_frame_read), which the request frees with free(). */
static submit_result submit_quietly(worker *w, conn *c, Parley__V1__Frame *f, bool flat, size_t bytes) {
    /* the connection's held acks go first: the writer sees its requests in
     * the order the device sent them */
    session_flush_acks(w, c);
    long queued = atomic_fetch_add(&g_metrics.writer_queued_bytes, (long)bytes);
    if ((size_t)queued + bytes > w->srv->cfg.writer_queue_bytes) {
        atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
        METRIC_INC(writer_bytes_refusals_total);
        return SUBMIT_WRITER_FULL;
    }
    bool counted = c->user_id != 0;
    if (counted && !admission_enter_writer(w, c)) {
        atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
        return SUBMIT_OVER_SHARE;
    }
    chat_request *r = calloc(1, sizeof *r);
    if (!r) {
        atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
        if (counted) quota_writer_leave(w->srv->quota, c->user_id);
        return SUBMIT_WRITER_FULL;
    }
    r->op = CHAT_FRAME;
    r->conn_id = c->id;
    r->request_id = f->request_id;
    r->user_id = c->user_id;
    r->device_id = c->device_id;
    r->frame = f;
    r->frame_flat = flat;
    r->share = counted ? w->srv->quota : NULL;
    r->queued_bytes = bytes;
    if (server_submit(w->srv, r) == 0) return SUBMIT_TAKEN;
    r->frame = NULL;   /* the caller still owns f */
    chat_request_free(r);   /* leaves the share, uncounts the bytes */
    return SUBMIT_WRITER_FULL;
}

/* submit_quietly, and when it was not taken the device is told to retry.
 * The writer answers every request it takes: counted in flight until then. */
static bool submit(worker *w, conn *c, Parley__V1__Frame *f, bool flat) {
    uint64_t request_id = f->request_id;   /* f is the writer's once taken */
    submit_result s = submit_quietly(w, c, f, flat, w->decoded_bytes);
    if (s == SUBMIT_TAKEN) {
        in_flight_add(c, w->srv->cfg.max_in_flight, request_id, w->decoded_bytes);
        return true;
    }
    if (s == SUBMIT_OVER_SHARE)
        conn_send_rate_limited(w, c, request_id, "too many of your requests are waiting to be written; "
                               "retry after retry_after_ms", ADMISSION_SHARE_RETRY_MS);
    else
        conn_send_error(w, c, request_id, PARLEY__V1__STATUS__UNAVAILABLE, "server busy; retry shortly");
    return false;
}

/* The VAPID public key (PushGetKey): UNAVAILABLE when push is off. */
static void push_answer_key(worker *w, conn *c, uint64_t request_id) {
    if (!w->srv->push) {
        conn_send_error(w, c, request_id, PARLEY__V1__STATUS__UNAVAILABLE, "push is off on this server");
        return;
    }
    Parley__V1__Response r;
    Parley__V1__PushKey key;
    parley__v1__response__init(&r);
    parley__v1__push_key__init(&key);
    key.vapid_public_key.data = (uint8_t *)push_gateway_vapid_key(w->srv->push);
    key.vapid_public_key.len = WEBPUSH_PUBLIC_KEY_BYTES;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_PUSH_KEY;
    r.push_key = &key;
    conn_respond(w, c, request_id, &r);
}

/* ---------------------------------------------------------------- sign-in */

static void signed_in(worker *w, conn *c, uint64_t request_id, uint64_t user, uint32_t device) {
    if (c->signed_in) return;   /* never switches a signed-in connection to another device */
    registry_presence_connected(w->srv->registry, user);
    conn_signed_in(w, c);
    c->signed_in = true;
    conn_auth_free(c->auth);   /* the sign-in state is not needed again */
    c->auth = NULL;
    c->user_id = user;
    c->device_id = device;
    if (request_id == 0) return;
    Parley__V1__Response r;
    Parley__V1__Registered reg;
    parley__v1__response__init(&r);
    parley__v1__registered__init(&reg);
    reg.user_id = user;
    reg.device_id = device;
    if (w->srv->push) {   /* so a web client can subscribe without asking again */
        reg.push_vapid_public_key.data = (uint8_t *)push_gateway_vapid_key(w->srv->push);
        reg.push_vapid_public_key.len = WEBPUSH_PUBLIC_KEY_BYTES;
    }
    r.result_case = PARLEY__V1__RESPONSE__RESULT_REGISTERED;
    r.registered = &reg;
    conn_respond(w, c, request_id, &r);
}

void session_sign_in_device(worker *w, conn *c, uint64_t user, uint32_t device) {
    signed_in(w, c, 0, user, device);
}

/* Whether an auth request may be tried now; answers when not. One at a time
 * per connection, each on a fresh nonce, none once signed in. */
static bool auth_allowed(worker *w, conn *c, uint64_t rid) {
    if (c->signed_in) {
        conn_send_error(w, c, rid, PARLEY__V1__STATUS__BAD_REQUEST, "already signed in");
        return false;
    }
    if (c->auth_pending || c->nonce_spent) {
        METRIC_INC(auth_refused_total);
        conn_send_error(w, c, rid, PARLEY__V1__STATUS__CONFLICT,
                        c->auth_pending ? "a sign-in is already in progress on this connection"
                                        : "the challenge was used; sign the new one");
        return false;
    }
    return true;
}

/* An attempt that failed: the nonce it used is gone; a new one goes out
 * before the error, so the device can sign it for its next attempt. */
static void auth_failed(worker *w, conn *c, uint64_t rid, Parley__V1__Status status, const char *why) {
    session_challenge(w, c);
    conn_send_error(w, c, rid, status, why);
}

/* The answer to a SignIn once its device read is done, on the worker or
 * off it (found: 1, 0 no such device, -1 the read failed). */
static void sign_in_answer(worker *w, conn *c, uint64_t rid, int found, const ProtobufCBinaryData *public_key,
                           const ProtobufCBinaryData *signature, uint64_t user, uint32_t device) {
    if (found != 1 || !signature_valid(c, public_key, signature)) {
        /* a read that failed is not a refusal: the device tries again */
        auth_failed(w, c, rid, found < 0 ? PARLEY__V1__STATUS__UNAVAILABLE : PARLEY__V1__STATUS__UNAUTHENTICATED,
                    found < 0 ? "store read failed; retry" : "unknown device or bad signature");
        return;
    }
    signed_in(w, c, rid, user, device);
}

/* The read goes to the reader pool (gateway/store_reads.h): the worker
 * does not wait on a store that may not answer. The connection stays
 * auth_pending (a second SignIn or a register is refused meanwhile) until
 * session_device_read. */
static void sign_in_queue(worker *w, conn *c, const Parley__V1__Frame *f) {
    const Parley__V1__SignIn *q = f->sign_in;
    store_read_job job;
    memset(&job, 0, sizeof job);
    job.conn_id = c->id;
    job.request_id = f->request_id;
    job.user_id = q->user_id;
    job.device_id = q->device_id;
    if (q->signature.len <= STORE_READS_SIG_MAX) {   /* longer: sig_len 0, never valid */
        memcpy(job.sig, q->signature.data, q->signature.len);
        job.sig_len = (uint8_t)q->signature.len;
    }
    if (store_reads_submit(w->srv->store_reads, &job) != 0) {
        auth_failed(w, c, f->request_id, PARLEY__V1__STATUS__UNAVAILABLE, "server busy; retry");
        return;
    }
    c->auth_pending = true;
    c->auth->request_id = f->request_id;
}

void session_device_read(worker *w, conn *c, const worker_msg *m) {
    store_read_result r;
    if (m->len != sizeof r) return;
    memcpy(&r, m->data, sizeof r);
    /* not the read this connection waits for (it cannot be: one at a time) */
    if (c->signed_in || !c->auth_pending || !c->auth || c->auth->request_id != r.job.request_id) return;
    c->auth_pending = false;
    ProtobufCBinaryData key = {r.key_len, r.key}, sig = {r.job.sig_len, r.job.sig};
    sign_in_answer(w, c, r.job.request_id, r.found, &key, &sig, r.job.user_id, r.job.device_id);
}

static void handle_sign_in(worker *w, conn *c, const Parley__V1__Frame *f) {
    const Parley__V1__SignIn *q = f->sign_in;
    c->nonce_spent = true;
    if (store_watch_reads_held(w->srv)) {   /* not read while it fails: gateway/store_watch.h */
        auth_failed(w, c, f->request_id, PARLEY__V1__STATUS__UNAVAILABLE, "the store is not answering; retry");
        return;
    }
    if (w->srv->store_reads && c->auth) {
        sign_in_queue(w, c, f);
        return;
    }
    /* RocksDB: a local read, answered inline */
    Parley__Store__Device *d = NULL;
    int found = store_get_device(w->srv->store, q->user_id, q->device_id, &d);
    ProtobufCBinaryData none = {0, NULL};
    sign_in_answer(w, c, f->request_id, found, d ? &d->public_key : &none, &q->signature, q->user_id, q->device_id);
    if (d) parley__store__device__free_unpacked(d, NULL);
}

/* RegisterUser / RegisterDevice: the signature is checked here (the worker
 * holds the nonce), the rest by the writer, whose answer ends the attempt
 * (session_apply_reply). Returns true when the writer took f. */
static bool submit_auth(worker *w, conn *c, Parley__V1__Frame *f, const ProtobufCBinaryData *public_key,
                        const ProtobufCBinaryData *signature) {
    uint64_t rid = f->request_id;   /* f is the writer's once submitted */
    c->nonce_spent = true;
    if (!signature_valid(c, public_key, signature)) {
        auth_failed(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "bad key or signature");
        return false;
    }
    if (submit_quietly(w, c, f, false, w->decoded_bytes) != SUBMIT_TAKEN) {
        auth_failed(w, c, rid, PARLEY__V1__STATUS__UNAVAILABLE, "server busy; retry shortly");
        return false;
    }
    c->auth_pending = true;
    c->auth->request_id = rid;   /* signature_valid passed: c->auth is set */
    return true;
}

static uint64_t reply_request_id(const worker_msg *m) {
    frame_peek pk;   /* the top level only: no decode of the whole answer */
    return frame_peek_parse(m->data, m->len, &pk) == 0 ? pk.request_id : 0;
}

void session_apply_reply(worker *w, conn *c, worker_msg *m) {
    in_flight_answered(c, m->data, m->len);
    if (c->auth_pending && c->auth && reply_request_id(m) == c->auth->request_id) {
        c->auth_pending = false;
        if (m->user_id) signed_in(w, c, 0, m->user_id, m->device_id);
        else session_challenge(w, c);   /* refused: a fresh nonce for the next attempt */
    }
    conn_send(w, c, WS_OP_BINARY, m->data, m->len);
}

void session_close_device(worker *w, uint64_t user, uint32_t device) {
    for (uint32_t i = 0; i < w->table.n_slots; i++) {
        conn *c = conn_table_at(&w->table, i);
        if (c && c->state == CONN_WS && c->signed_in && c->user_id == user && c->device_id == device) {
            METRIC_INC(devices_removed_closed_total);
            conn_close(w, c, WS_CLOSE_POLICY, "device removed");
        }
    }
}

void session_drop_presence(worker *w, uint64_t user, uint64_t about_user) {
    for (uint32_t i = 0; i < w->table.n_slots; i++) {
        conn *c = conn_table_at(&w->table, i);
        if (c && c->signed_in && c->user_id == user &&
            registry_presence_unsubscribe_user(w->srv->registry, c->id, about_user))
            METRIC_INC(presence_subscriptions_dropped_total);
    }
}

/* ------------------------------------------------------------------ reads */

/* The answer request_read_answer made: the Frame it carries, written as is. */
static void request_answer(worker *w, conn *c, const worker_msg *m) {
    request_read_ask q;
    const uint8_t *frame = NULL;
    size_t len = 0;
    if (request_read_of(m, &q, &frame, &len)) conn_send(w, c, WS_OP_BINARY, frame, len);
}

/* History, ListConversations and LookupUser (gateway/request_read.h). On Cassandra the
 * read goes to the reader pool and the connection's input waits until the
 * answer is back (session_request_read); on RocksDB it is made here. The
 * answer is the same Frame either way. */
static void request_read(worker *w, conn *c, const Parley__V1__Frame *f) {
    request_read_ask q;
    memset(&q, 0, sizeof q);
    q.request_id = f->request_id;
    q.user_id = c->user_id;
    if (f->body_case == PARLEY__V1__FRAME__BODY_HISTORY) {
        q.kind = REQUEST_READ_HISTORY;
        q.conversation_id = f->history->conversation_id;
        q.before_seq = f->history->before_seq;
        q.limit = f->history->limit;
        q.max_bytes = w->srv->cfg.history_page_bytes;
    } else if (f->body_case == PARLEY__V1__FRAME__BODY_LOOKUP_USER) {
        q.kind = REQUEST_READ_LOOKUP_USER;
        size_t n = strlen(f->lookup_user->name);
        if (n > REQUEST_READ_NAME_MAX) {   /* longer than any stored name: what the read would say */
            conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__NOT_FOUND, "no such user");
            return;
        }
        memcpy(q.name, f->lookup_user->name, n);
        q.name_len = (uint8_t)n;
    } else {
        q.kind = REQUEST_READ_LIST;
    }
    if (store_watch_reads_held(w->srv)) {   /* not read while it fails: gateway/store_watch.h */
        conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__UNAVAILABLE, "the store is not answering; retry");
        return;
    }
    if (w->srv->store_reads) {
        if (request_read_submit(w->srv->store_reads, c->id, &q) != 0)
            conn_send_error(w, c, f->request_id, PARLEY__V1__STATUS__UNAVAILABLE, "server busy; retry shortly");
        else
            c->read_wait = true;
        return;
    }
    worker_msg *m = request_read_answer(w->srv->store, c->id, &q);   /* RocksDB: local reads */
    request_answer(w, c, m);
    worker_msg_free(m);
}

void session_request_read(worker *w, conn *c, const worker_msg *m) {
    request_read_ask q;
    const uint8_t *frame = NULL;
    size_t len = 0;
    /* the connection waits for its one read (a signed-in connection keeps its user) */
    if (!c->read_wait || !request_read_of(m, &q, &frame, &len) || !c->signed_in || q.user_id != c->user_id)
        return;
    c->read_wait = false;
    request_answer(w, c, m);
    /* the input waited (worker.c conn_input_blocked): this turn's flush
     * resumes it, also when nothing was queued (an MQTT device's Maximum
     * Packet Size can discard the answer); MQTT packets held with it over
     * WebSocket go on now */
    conn_mark_dirty(w, c);
    if (c->mqtt) mqtt_conn_input_held(w, c);
}

/* ------------------------------------------------------------------ sync */

void session_start_sync(worker *w, conn *c, uint64_t request_id, uint64_t after, bool respond) {
    session_flush_acks(w, c);   /* acks before it are about the cursor it replaces */
    conn_side *side = conn_side_get(c);   /* holds sync_from until SyncDone */
    if (!side) {
        conn_send_error(w, c, request_id, PARLEY__V1__STATUS__INTERNAL, "out of memory");
        return;
    }
    if (!c->syncing) {
        registry_entry e = {.conn_id = c->id, .device_id = c->device_id, .worker = w->index};
        if (registry_add(w->srv->registry, c->user_id, &e)) {
            conn_send_error(w, c, request_id, PARLEY__V1__STATUS__INTERNAL, "out of memory");
            return;
        }
        c->syncing = true;
    }
    c->sent_upto = c->acked_upto = side->sync_from = after;
    c->cursor_submitted_upto = after;
    c->lagging = true;
    c->sync_done_sent = false;
    if (respond) respond_ok(w, c, request_id);
    realtime_push_device_messages(w, c);
    delivery_pump(w, c);
}

static void handle_start_sync(worker *w, conn *c, const Parley__V1__Frame *f) {
    session_start_sync(w, c, f->request_id, f->start_sync->after_user_seq, true);
}

/* Records the device's newest Ack; the writer gets one request per
 * connection per loop turn (session_flush_acks), however many arrived. The
 * window moves at once, so catch-up does not wait for the flush. */
void session_ack_upto(worker *w, conn *c, uint64_t user_seq) {
    if (!c->syncing) return;
    /* a device cannot acknowledge what it was not sent */
    uint64_t to = user_seq < c->sent_upto ? user_seq : c->sent_upto;
    if (to <= c->acked_upto) return;
    if (c->ack_pending) METRIC_INC(acks_coalesced_total);   /* the earlier one folds into this */
    c->ack_pending = true;
    conn_mark_dirty(w, c);
    c->acked_upto = to;
    if (c->lagging) delivery_pump(w, c);
}

static void handle_ack(worker *w, conn *c, const Parley__V1__Frame *f) {
    session_ack_upto(w, c, f->ack->user_seq);
}

/* The newest AckDeviceMessages waits on the connection until the end of the
 * turn; one that does not advance is not written. Returns true when f was kept. */
static bool hold_device_ack(worker *w, conn *c, Parley__V1__Frame *f) {
    uint64_t up_to = f->ack_device_messages->up_to;
    conn_side *s = c->side;   /* the held ack lives in the side state for the turn */
    uint64_t held = s && s->device_ack ? s->device_ack->ack_device_messages->up_to : 0;
    if (up_to <= c->device_acked_upto || up_to <= held) {
        METRIC_INC(device_acks_coalesced_total);
        return false;
    }
    if (!s && !(s = conn_side_get(c))) return false;   /* out of memory: the device acks again later */
    if (s->device_ack) {
        METRIC_INC(device_acks_coalesced_total);
        parley__v1__frame__free_unpacked(s->device_ack, NULL);
    }
    s->device_ack = f;
    s->device_ack_bytes = w->decoded_bytes;
    conn_mark_dirty(w, c);
    return true;
}

void session_flush_acks(worker *w, conn *c) {
    if (c->ack_pending) {
        c->ack_pending = false;
        chat_request *r = c->syncing && c->acked_upto > c->cursor_submitted_upto ? calloc(1, sizeof *r) : NULL;
        if (r) {
            r->op = CHAT_ACK;
            r->conn_id = c->id;
            r->user_id = c->user_id;
            r->device_id = c->device_id;
            r->ack_from = c->cursor_submitted_upto;
            r->ack_to = c->acked_upto;
            /* when the writer is saturated the cursor is not stored this time:
             * the next ack covers the whole range, and a device dedupes what
             * it sees again */
            if (server_submit(w->srv, r) == 0) {
                METRIC_INC(acks_submitted_total);
                c->cursor_submitted_upto = c->acked_upto;
            } else {
                free(r);
            }
        }
    }
    if (c->side && c->side->device_ack) {
        Parley__V1__Frame *f = c->side->device_ack;
        size_t bytes = c->side->device_ack_bytes;
        c->side->device_ack = NULL;
        uint64_t up_to = f->ack_device_messages->up_to;
        bool taken = admission_take_quietly(w, c, QUOTA_WRITE) && submit_quietly(w, c, f, false, bytes) == SUBMIT_TAKEN;
        if (taken) c->device_acked_upto = up_to;
        else parley__v1__frame__free_unpacked(f, NULL);
    }
}

void session_closed(worker *w, conn *c) {
    /* a device's last acks count, also those held back (mqtt_conn.c handle_puback) */
    if (c->acked_upto > c->cursor_submitted_upto) c->ack_pending = true;
    session_flush_acks(w, c);
    if (c->syncing) registry_remove(w->srv->registry, c->user_id, c->id);
    if (c->signed_in) {
        registry_presence_disconnected(w->srv->registry, c->user_id, clock_wall_ms());
        registry_presence_unsubscribe(w->srv->registry, c->id);
    }
    c->syncing = false;
    c->signed_in = false;
    conn_auth_free(c->auth);
    c->auth = NULL;
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
    uint64_t acked;   /* signed in: an Ack before sign-in was dropped above */
    if (pk.body == PARLEY__V1__FRAME__BODY_ACK && frame_read_ack(data, len, &acked)) {
        METRIC_INC(requests_total);
        session_ack_upto(w, c, acked);   /* as handle_ack, without the decode */
        return;
    }
    if (pk.body == PARLEY__V1__FRAME__BODY_SEND_MESSAGE) {   /* signed in, as above */
        size_t bytes;
        Parley__V1__Frame *f = send_frame_read(data, len, &bytes);
        if (f) {   /* as the SEND_MESSAGE case below, without the decode */
            METRIC_INC(requests_total);
            w->decoded_bytes = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
            if (!(admission_take(w, c, f->request_id, QUOTA_SEND) && submit(w, c, f, true))) free(f);
            return;
        }
    }
    bool over_budget = false;
    size_t decoded = 0;
    Parley__V1__Frame *f = request_decode(data, len, &over_budget, &decoded);
    w->decoded_bytes = decoded > UINT32_MAX ? UINT32_MAX : (uint32_t)decoded;   /* budget-bounded */
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
    case PARLEY__V1__FRAME__BODY_REGISTER_USER: {
        uint64_t wait_ms = 0;
        if (!auth_allowed(w, c, rid)) break;
        if (!register_limit_take(w, c, &wait_ms)) {
            METRIC_INC(registrations_rate_limited_total);
            conn_send_rate_limited(w, c, rid, "too many registrations from this address", wait_ms);
        } else {
            taken = submit_auth(w, c, f, &f->register_user->device_public_key, &f->register_user->signature);
        }
        break;
    }
    case PARLEY__V1__FRAME__BODY_REGISTER_DEVICE:
        if (auth_allowed(w, c, rid))
            taken = submit_auth(w, c, f, &f->register_device->device_public_key, &f->register_device->signature);
        break;
    case PARLEY__V1__FRAME__BODY_SIGN_IN:
        if (auth_allowed(w, c, rid)) handle_sign_in(w, c, f);
        break;
    case PARLEY__V1__FRAME__BODY_SEND_MESSAGE:
        if (!c->signed_in) conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        else if (admission_take(w, c, rid, QUOTA_SEND)) taken = submit(w, c, f, false);
        break;
    case PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN:
    case PARLEY__V1__FRAME__BODY_UPLOAD_KEYS:
    case PARLEY__V1__FRAME__BODY_FETCH_KEYS:
    case PARLEY__V1__FRAME__BODY_REMOVE_DEVICE:
    case PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE:
    case PARLEY__V1__FRAME__BODY_OPEN_DIRECT:
    case PARLEY__V1__FRAME__BODY_CREATE_GROUP:
    case PARLEY__V1__FRAME__BODY_ADD_MEMBERS:
    case PARLEY__V1__FRAME__BODY_REMOVE_MEMBER:
    case PARLEY__V1__FRAME__BODY_RENAME_GROUP:
    case PARLEY__V1__FRAME__BODY_ACCEPT_REQUEST:
    case PARLEY__V1__FRAME__BODY_DECLINE_REQUEST:
    case PARLEY__V1__FRAME__BODY_BLOCK_USER:
    case PARLEY__V1__FRAME__BODY_MARK_READ:
    case PARLEY__V1__FRAME__BODY_PUSH_REGISTER:
    case PARLEY__V1__FRAME__BODY_PUSH_UNREGISTER:
        if (!c->signed_in) conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        else if (admission_take(w, c, rid, QUOTA_WRITE)) taken = submit(w, c, f, false);
        break;
    case PARLEY__V1__FRAME__BODY_PUSH_GET_KEY:
        if (!c->signed_in) conn_send_error(w, c, rid, PARLEY__V1__STATUS__UNAUTHENTICATED, "sign in first");
        else push_answer_key(w, c, rid);
        break;
    case PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES:
        /* like Ack: no response, and nothing to do before sign-in; the
         * newest of a turn is written at its end (session_flush_acks) */
        if (c->signed_in) taken = hold_device_ack(w, c, f);
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
        } else if (f->body_case == PARLEY__V1__FRAME__BODY_LOOKUP_USER ||
                   f->body_case == PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS ||
                   f->body_case == PARLEY__V1__FRAME__BODY_HISTORY) {
            request_read(w, c, f);
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
