/* conn.c -- the lean parley connection: non-blocking TCP from its own
 * 127.x.y.z source address, the HTTP upgrade, WebSocket framing both ways,
 * and the frames the bench needs, encoded with protobuf-c and decoded by
 * hand on the hot path (events, send acks, receipts) so that decoding a
 * delivery allocates nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "ack_ride.h"
#include "bench.h"
#include "bench_e2e.h"
#include "e2e/e2e.h"
#include "net/http.h"
#include "net/ws.h"
#include "proto/parley.pb-c.h"

static const char AUTH_CONTEXT[] = "parley.v1 auth";   /* 14 bytes signed before the nonce */
enum { BODY_MAGIC = 0x4e424c50u };                      /* "PLBN": a bench message */

bconn *conn_new(uint32_t index) {
    bconn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = -1;
    c->index = index;
    uint8_t pk[32];
    crypto_sign_keypair(pk, c->sk);
    return c;
}

void conn_free_mem(bconn *c) {
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    bench_e2e_free(c);
    free(c->in);
    free(c->out);
    free(c);
}

void conn_trim(bconn *c) {
    if (c->in_len == 0 && c->in) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    if (c->out_len == c->out_off && c->out) {
        free(c->out);
        c->out = NULL;
        c->out_cap = c->out_len = c->out_off = 0;
    }
}

static uint32_t next_rand(bloop *l) {
    /* xorshift64: masks need not be secret here, only present */
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 7;
    l->rng ^= l->rng << 17;
    return (uint32_t)l->rng;
}

/* ------------------------------------------------------------- output */

static void mark_dirty(bloop *l, bconn *c) {
    if (c->dirty) return;
    c->dirty = true;
    c->next_dirty = l->dirty;
    l->dirty = c;
}

static uint8_t *out_reserve(bconn *c, size_t n) {
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + n) cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (!nb) return NULL;
        c->out = nb;
        c->out_cap = (uint32_t)cap;
    }
    return c->out + c->out_len;
}

static void send_ws(bloop *l, bconn *c, uint8_t op, const uint8_t *payload, size_t len) {
    if (c->fd < 0) return;
    uint8_t *p = out_reserve(c, WS_MAX_HEADER + len);
    if (!p) return;
    uint32_t m = next_rand(l);
    uint8_t mask[4];
    memcpy(mask, &m, 4);
    size_t h = ws_write_header(p, op, true, len, mask);
    if (len) memcpy(p + h, payload, len);
    ws_mask(p + h, len, mask, 0);
    c->out_len += (uint32_t)(h + len);
    mark_dirty(l, c);
}

static void send_frame(bloop *l, bconn *c, const Parley__V1__Frame *f) {
    if (c->fd < 0) return;
    size_t len = parley__v1__frame__get_packed_size(f);
    uint8_t *p = out_reserve(c, WS_MAX_HEADER + len);
    if (!p) return;
    uint32_t m = next_rand(l);
    uint8_t mask[4];
    memcpy(mask, &m, 4);
    size_t h = ws_write_header(p, WS_OP_BINARY, true, len, mask);
    parley__v1__frame__pack(f, p + h);
    ws_mask(p + h, len, mask, 0);
    c->out_len += (uint32_t)(h + len);
    mark_dirty(l, c);
}

static void epoll_set(bloop *l, bconn *c, bool out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = out;
}

static void lost(bloop *l, bconn *c, const char *why);

/* Writes what is queued; arms EPOLLOUT for the rest. */
static void flush_conn(bloop *l, bconn *c) {
    while (c->fd >= 0 && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->epollout) epoll_set(l, c, true);
            return;
        }
        lost(l, c, "send failed");
        return;
    }
    if (c->fd < 0) return;
    c->out_off = c->out_len = 0;
    if (c->out_cap > 65536) {   /* a burst passed: give the memory back */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->epollout) epoll_set(l, c, false);
}

void loop_flush(bloop *l) {
    while (l->dirty) {
        bconn *c = l->dirty;
        l->dirty = c->next_dirty;
        c->dirty = false;
        c->next_dirty = NULL;
        flush_conn(l, c);
    }
}

/* ------------------------------------------------------------ requests */

static uint64_t setup_id(bconn *c, enum setup_op op) {
    return ((uint64_t)++c->req_seq << 8) | op;
}

static void send_auth(bloop *l, bconn *c) {
    uint8_t msg[sizeof AUTH_CONTEXT - 1 + 32 + 300], sig[64];
    memcpy(msg, AUTH_CONTEXT, sizeof AUTH_CONTEXT - 1);
    memcpy(msg + sizeof AUTH_CONTEXT - 1, c->nonce, 32);
    /* then the Host header of the upgrade (conn_start), as the server checks */
    int host_len = snprintf((char *)msg + sizeof AUTH_CONTEXT - 1 + 32, 300, "%s:%d", g_opt.hosts[c->server],
                            g_opt.ports[c->server]);
    if (host_len < 0 || host_len >= 300) host_len = 0;
    crypto_sign_detached(sig, NULL, msg, sizeof AUTH_CONTEXT - 1 + 32 + (size_t)host_len, c->sk);
    Parley__V1__Frame f;
    parley__v1__frame__init(&f);
    if (c->user_id == 0) {
        Parley__V1__RegisterUser r;
        parley__v1__register_user__init(&r);
        char name[40];
        snprintf(name, sizeof name, "b%d_%u_%u", g_opt.proc_index, (unsigned)getpid(), c->index);
        r.name = name;
        r.device_public_key = (ProtobufCBinaryData){32, c->sk + 32};
        r.device_name = "bench";
        r.signature = (ProtobufCBinaryData){64, sig};
        f.request_id = setup_id(c, OP_REGISTER);
        f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
        f.register_user = &r;
        send_frame(l, c, &f);
    } else {
        Parley__V1__SignIn s;
        parley__v1__sign_in__init(&s);
        s.user_id = c->user_id;
        s.device_id = c->device_id;
        s.signature = (ProtobufCBinaryData){64, sig};
        f.request_id = setup_id(c, OP_SIGNIN);
        f.body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
        f.sign_in = &s;
        send_frame(l, c, &f);
    }
    c->state = BC_AUTH;
}

void conn_open_direct(bloop *l, bconn *c, uint64_t peer_user) {
    Parley__V1__Frame f;
    Parley__V1__OpenDirect o;
    parley__v1__frame__init(&f);
    parley__v1__open_direct__init(&o);
    o.peer_user_id = peer_user;
    f.request_id = setup_id(c, OP_OPEN_DIRECT);
    f.body_case = PARLEY__V1__FRAME__BODY_OPEN_DIRECT;
    f.open_direct = &o;
    c->pending++;
    send_frame(l, c, &f);
}

void conn_create_group(bloop *l, bconn *c, const uint64_t *members, size_t n) {
    Parley__V1__Frame f;
    Parley__V1__CreateGroup g;
    parley__v1__frame__init(&f);
    parley__v1__create_group__init(&g);
    g.name = "bench";
    g.member_user_ids = (uint64_t *)members;
    g.n_member_user_ids = n;
    f.request_id = setup_id(c, OP_CREATE_GROUP);
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    f.create_group = &g;
    c->pending++;
    send_frame(l, c, &f);
}

void conn_start_sync(bloop *l, bconn *c) {
    Parley__V1__Frame f;
    Parley__V1__StartSync s;
    parley__v1__frame__init(&f);
    parley__v1__start_sync__init(&s);
    s.after_user_seq = c->acked_user_seq;
    f.request_id = setup_id(c, OP_START_SYNC);
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &s;
    c->sync_done = false;
    c->pending++;
    send_frame(l, c, &f);
}

void conn_send_message(bloop *l, bconn *c, uint64_t ts) {
    uint8_t body[65536];
    size_t blen = (size_t)g_opt.body_bytes;
    if (blen < 16) blen = 16;
    if (blen > sizeof body) blen = sizeof body;
    memset(body, 'x', blen);
    uint32_t magic = BODY_MAGIC;
    memcpy(body, &magic, 4);
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    uint8_t *sealed = NULL;   /* --e2e: the body on the wire is the Sender Keys message */
    if (c->e2e) {
        size_t slen;
        if (bench_e2e_seal(c, body, blen, &sealed, &slen) != 0) {
            CNT_ADD(l, errors, 1);
            snprintf(l->last_error, sizeof l->last_error, "conn %u: encrypt failed", c->index);
            return;
        }
        if (g_opt.e2e_tamper_every > 0 && CNT_GET(l, sent) % (uint64_t)g_opt.e2e_tamper_every == 0)
            sealed[slen / 2] ^= 0x01;   /* test-only: the receiver must reject it */
        atomic_store_explicit(&g_e2e_wire_bytes, slen, memory_order_relaxed);
        blen = slen;
    }
    /* the request id carries the real send time (for send->ack); strictly
     * increasing per connection so it doubles as the client_msg_id */
    uint64_t id = now_ns();
    if (id <= c->last_send_id) id = c->last_send_id + 1;
    c->last_send_id = id;
    uint64_t rid = SEND_ID_BIT | id;
    Parley__V1__Frame f;
    Parley__V1__SendMessage s;
    parley__v1__frame__init(&f);
    parley__v1__send_message__init(&s);
    s.conversation_id = c->conv;
    s.client_msg_id = (ProtobufCBinaryData){8, (uint8_t *)&rid};
    s.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    s.body = (ProtobufCBinaryData){blen, sealed ? sealed : body};
    f.request_id = rid;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &s;
    /* the owed Ack rides in the same write, just before the send */
    if (ack_ride_on_send(c->last_user_seq - c->acked_user_seq, (uint32_t)g_opt.ack_every)) conn_ack(l, c);
    send_frame(l, c, &f);
    free(sealed);
    c->inflight++;
    CNT_ADD(l, sent, 1);
}

void conn_ack(bloop *l, bconn *c) {
    if (c->last_user_seq <= c->acked_user_seq || c->fd < 0) return;
    Parley__V1__Frame f;
    Parley__V1__Ack a;
    parley__v1__frame__init(&f);
    parley__v1__ack__init(&a);
    a.user_seq = c->last_user_seq;
    f.body_case = PARLEY__V1__FRAME__BODY_ACK;
    f.ack = &a;
    send_frame(l, c, &f);
    c->acked_user_seq = c->last_user_seq;
}

void conn_ping(bloop *l, bconn *c) {
    send_ws(l, c, WS_OP_PING, NULL, 0);
}

/* ------------------------------------------------------------ incoming */

/* Minimal protobuf wire reader for the hot path. */
typedef struct pb {
    const uint8_t *p, *end;
} pb;

static bool pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Next field: number, wire type, and for varints the value, for
 * length-delimited fields the bytes. Skips other wire types. */
static bool pb_next(pb *r, uint32_t *field, uint64_t *v, pb *sub) {
    uint64_t key;
    if (r->p >= r->end || !pb_varint(r, &key)) return false;
    *field = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0: return pb_varint(r, v);
    case 1: if (r->end - r->p < 8) return false; r->p += 8; *v = 0; return true;
    case 5: if (r->end - r->p < 4) return false; r->p += 4; *v = 0; return true;
    case 2: {
        uint64_t len;
        if (!pb_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return false;
        sub->p = r->p;
        sub->end = r->p + len;
        r->p += len;
        *v = len;
        return true;
    }
    default: return false;
    }
}

static void on_event(bloop *l, bconn *c, pb ev, uint64_t now) {
    uint32_t fld;
    uint64_t v, user_seq = 0;
    pb msg = {0}, sub;
    while (pb_next(&ev, &fld, &v, &sub)) {
        if (fld == 1) user_seq = v;
        else if (fld == 2) msg = sub;
    }
    if (user_seq > c->last_user_seq) c->last_user_seq = user_seq;
    if (!c->sync_done) CNT_ADD(l, sync_events, 1);
    while (msg.p && pb_next(&msg, &fld, &v, &sub)) {
        if (fld != 6 || v < 16) continue;
        uint8_t *pt = NULL;
        if (c->e2e) {
            /* decrypted and its signature verified before the timestamp is read */
            size_t pt_len;
            int rc = bench_e2e_open(c, sub.p, (size_t)v, &pt, &pt_len);
            if (rc == BENCH_E2E_OWN) {
                CNT_ADD(l, echoes, 1);
                break;
            }
            if (rc < 0 || pt_len < 16) {
                CNT_ADD(l, decrypt_errors, 1);
                snprintf(l->last_error, sizeof l->last_error, "conn %u: delivery does not decrypt: %s",
                         c->index, rc < 0 ? e2e_strerror(rc) : "too short");
                free(pt);
                break;
            }
            sub.p = pt;
        }
        uint32_t magic, sender;
        uint64_t ts;
        memcpy(&magic, sub.p, 4);
        memcpy(&sender, sub.p + 4, 4);
        memcpy(&ts, sub.p + 8, 8);
        free(pt);
        if (magic != BODY_MAGIC) break;
        if (sender == c->index) {
            /* the sending device gets its own message too (every device of
             * every member does): counted apart from deliveries to others */
            CNT_ADD(l, echoes, 1);
            break;
        }
        CNT_ADD(l, delivered, 1);
        if (l->count_deliveries && now > ts) hist_record(&l->deliv_lat, now - ts);
        break;
    }
    if (ack_ride_alone(c->last_user_seq - c->acked_user_seq, (uint32_t)g_opt.ack_every, c->sends_load && l->sending))
        conn_ack(l, c);
}

static void setup_error(bloop *l, bconn *c, const char *what, const Parley__V1__Response *r) {
    CNT_ADD(l, errors, 1);
    snprintf(l->last_error, sizeof l->last_error, "conn %u: %s: status %d %s", c->index, what,
             r ? (int)r->status : -1, r && r->error ? r->error : "");
}

static void on_setup_response(bloop *l, bconn *c, uint64_t rid, const uint8_t *data, size_t len) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, len, data);
    if (!f || f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE) {
        if (f) parley__v1__frame__free_unpacked(f, NULL);
        setup_error(l, c, "undecodable response", NULL);
        return;
    }
    const Parley__V1__Response *r = f->response;
    bool ok = r->status == PARLEY__V1__STATUS__OK;
    switch ((enum setup_op)(rid & 0xff)) {
    case OP_REGISTER:
    case OP_SIGNIN:
        if (ok && r->result_case == PARLEY__V1__RESPONSE__RESULT_REGISTERED) {
            c->user_id = r->registered->user_id;
            c->device_id = r->registered->device_id;
            c->state = BC_SIGNED;
            c->attempts = 0;
            if (l->count_auth && l->connecting) l->connecting--;   /* state is BC_SIGNED now */
            if (l->close_after_auth) {
                CNT_ADD(l, ready, 1);
                conn_shutdown(l, c);
                conn_trim(c);
            } else if (l->auto_sync || c->want_sync) conn_start_sync(l, c);
            else CNT_ADD(l, ready, 1);
        } else {
            setup_error(l, c, (rid & 0xff) == OP_REGISTER ? "register" : "sign in", r);
            if (r->status == PARLEY__V1__STATUS__UNAVAILABLE) CNT_ADD(l, shed, 1);
        }
        break;
    case OP_OPEN_DIRECT:
    case OP_CREATE_GROUP:
        if (c->pending) c->pending--;
        if (ok && r->result_case == PARLEY__V1__RESPONSE__RESULT_CONVERSATION)
            c->conv = r->conversation->conversation_id;
        else setup_error(l, c, "open conversation", r);
        break;
    case OP_START_SYNC:
        if (c->pending) c->pending--;
        if (ok) {
            c->syncing = true;
            CNT_ADD(l, ready, 1);
            if (l->reconnect_t0 && l->back_at && l->n_back < l->n) {
                uint64_t t = now_ns();
                l->back_at[l->n_back++] = t > l->reconnect_t0 ? t - l->reconnect_t0 : 0;
            }
        } else setup_error(l, c, "start sync", r);
        break;
    default:
        break;
    }
    parley__v1__frame__free_unpacked(f, NULL);
}

static void on_frame(bloop *l, bconn *c, const uint8_t *data, size_t len, uint64_t now) {
    pb r = {data, data + len}, sub = {0}, body = {0};
    uint32_t fld, body_field = 0;
    uint64_t v, rid = 0;
    while (pb_next(&r, &fld, &v, &sub)) {
        if (fld == 1) rid = v;
        else if (fld >= 40) {
            body_field = fld;
            body = sub;
        }
    }
    switch (body_field) {
    case 42: on_event(l, c, body, now); return;
    case 44: CNT_ADD(l, receipts, 1); return;
    case 43: c->sync_done = true; return;
    case 41:
        if (body.p) {
            pb ch = body;
            while (pb_next(&ch, &fld, &v, &sub))
                if (fld == 1 && v == 32) memcpy(c->nonce, sub.p, 32);
        }
        if (c->state == BC_CHALLENGE) {
            if (l->connecting && !l->count_auth) l->connecting--;
            if (c->user_id != 0 || l->register_new) send_auth(l, c);
            else {
                c->state = BC_SIGNED;   /* challenged only, kept for later */
                CNT_ADD(l, ready, 1);
            }
        }
        return;
    case 40:
        if (rid & SEND_ID_BIT) {
            uint64_t status = 0;
            pb resp = body;
            while (pb_next(&resp, &fld, &v, &sub))
                if (fld == 1) status = v;
            if (c->inflight) c->inflight--;
            if (status != 0) {
                CNT_ADD(l, errors, 1);
                if (status == PARLEY__V1__STATUS__UNAVAILABLE) CNT_ADD(l, shed, 1);
                snprintf(l->last_error, sizeof l->last_error, "send: status %llu",
                         (unsigned long long)status);
                return;
            }
            CNT_ADD(l, acked, 1);
            uint64_t sent = rid & ~SEND_ID_BIT;
            if (now > sent) hist_record(&l->ack_lat, now - sent);
            return;
        }
        on_setup_response(l, c, rid, data, len);
        return;
    default:
        return;
    }
}

/* ------------------------------------------------------------- life */

static void close_fd(bloop *l, bconn *c) {
    if (c->fd < 0) return;
    if (((c->state >= BC_CONNECTING && c->state <= BC_CHALLENGE) || (c->state == BC_AUTH && l->count_auth)) &&
        l->connecting)
        l->connecting--;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->in_len = 0;
    c->out_len = c->out_off = 0;
    c->inflight = 0;
    c->pending = 0;
    if (c->syncing) CNT_ADD(l, closed, 1);
    c->syncing = c->sync_done = false;
    c->state = BC_IDLE;
}

/* The connection is gone: reconnect later with exponential backoff and full
 * jitter (base 100 ms, cap 5 s), as libparley does, and with several
 * servers to another one, at random among the others. A connect that
 * failed moves to another server even in scenarios that do not reconnect,
 * up to one attempt per server, so one dead URL in --server does not leave
 * its share of the connections unopened. */
static void lost(bloop *l, bconn *c, const char *why) {
    close_fd(l, c);
    bool failover = g_opt.n_servers > 1 && strcmp(why, "connect") == 0 &&
                    c->attempts + 1 < (uint32_t)g_opt.n_servers;
    if (!l->reconnect && !failover) return;
    if (g_opt.n_servers > 1) {
        uint32_t r = next_rand(l) % (uint32_t)(g_opt.n_servers - 1);
        c->server = (uint8_t)(r >= c->server ? r + 1 : r);
    }
    uint32_t a = c->attempts < 16 ? c->attempts : 16;
    uint64_t cap = 100ull * 1000000 << a;
    if (cap > 5000ull * 1000000) cap = 5000ull * 1000000;
    c->reconnect_at = now_ns() + (uint64_t)next_rand(l) % cap + 1;
    c->attempts++;
}

void conn_shutdown(bloop *l, bconn *c) {
    close_fd(l, c);
    c->reconnect_at = 0;
}

static void source_addr(uint32_t index, struct sockaddr_in *a) {
    /* one source address per 2^15 connections would do; spreading every
     * connection over its own address keeps the 4-tuples far apart */
    uint32_t k = index + (uint32_t)g_opt.proc_index * 200000u;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl((127u << 24) | ((10u + (k >> 16) % 200u) << 16) | (k & 0xffff));
    if ((k & 0xff) == 0 || (k & 0xff) == 255) a->sin_addr.s_addr ^= htonl(0x80);
}

void conn_open(bloop *l, bconn *c) {
    if (c->fd >= 0) close_fd(l, c);
    c->reconnect_at = 0;
    if (l->register_new && c->user_id == 0 && g_opt.register_server) {
        /* --register-server: the user is made there (its host:port is in
         * the signed auth context), its connections go to --server after */
        c->server = BENCH_REGISTER_SERVER;
        c->placed = false;
    } else if (!c->placed) {   /* several servers: spread the connections (at random by default) */
        if (g_opt.n_servers <= 1) c->server = 0;
        else if (g_opt.spread_even) c->server = (uint8_t)(c->index % (uint32_t)g_opt.n_servers);
        else c->server = (uint8_t)(next_rand(l) % (uint32_t)g_opt.n_servers);
        c->placed = true;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(l->last_error, sizeof l->last_error, "socket: %s", strerror(errno));
        CNT_ADD(l, errors, 1);
        lost(l, c, "socket");
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src;
    source_addr(c->index, &src);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        (connect(fd, (struct sockaddr *)&l->server[c->server], sizeof l->server[c->server]) < 0 &&
         errno != EINPROGRESS)) {
        snprintf(l->last_error, sizeof l->last_error, "connect: %s", strerror(errno));
        CNT_ADD(l, errors, 1);
        close(fd);
        lost(l, c, "connect");
        return;
    }
    c->fd = fd;
    c->state = BC_CONNECTING;
    l->connecting++;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
    c->epollout = true;
}

static void on_connected(bloop *l, bconn *c) {
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) err = errno;
    if (err) {
        snprintf(l->last_error, sizeof l->last_error, "connect: %s", strerror(err));
        CNT_ADD(l, errors, 1);
        lost(l, c, "connect");
        return;
    }
    char key[25], req[256];
    ws_make_client_key(key);
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: parley.v1\r\n\r\n",
                     g_opt.hosts[c->server], g_opt.ports[c->server], key);
    uint8_t *p = out_reserve(c, (size_t)n);
    if (!p) return;
    memcpy(p, req, (size_t)n);
    c->out_len += (uint32_t)n;
    c->state = BC_UPGRADING;
    epoll_set(l, c, false);
    flush_conn(l, c);
}

/* HTTP response head in c->in: 101 goes on, 503 is shed. Returns bytes used, 0 for more, -1 lost. */
static int on_upgrade(bloop *l, bconn *c, uint8_t *data, size_t len) {
    http_response res;
    int head = http_parse_response((const char *)data, len, &res);
    if (head == HTTP_NEED_MORE) return 0;
    if (head < 0 || res.status != 101) {
        if (head > 0 && res.status == 503) CNT_ADD(l, shed, 1);
        else {
            CNT_ADD(l, errors, 1);
            snprintf(l->last_error, sizeof l->last_error, "upgrade refused (HTTP %d)",
                     head > 0 ? res.status : -1);
        }
        lost(l, c, "upgrade");
        return -1;
    }
    c->state = BC_CHALLENGE;
    CNT_ADD(l, connected, 1);
    return head;
}

/* Handles every whole message in data[0..len); returns bytes used or -1. */
static long process(bloop *l, bconn *c, uint8_t *data, size_t len, uint64_t now) {
    size_t off = 0;
    if (c->state == BC_UPGRADING) {
        int h = on_upgrade(l, c, data, len);
        if (h <= 0) return h;
        off = (size_t)h;
    }
    ws_reader rd;
    /* the server never fragments its messages: a reader on the stack, with
     * no fragment buffer to keep per connection */
    ws_reader_init(&rd, false, 1u << 24);
    while (off < len && c->fd >= 0) {
        size_t used = 0;
        ws_message m;
        int r = ws_reader_feed(&rd, data + off, len - off, &used, &m);
        if (r == WS_NEED_MORE && used == 0) break;
        if (r == WS_ERROR || rd.frag_opcode) {
            ws_reader_free(&rd);
            CNT_ADD(l, errors, 1);
            snprintf(l->last_error, sizeof l->last_error, "WebSocket error from server");
            lost(l, c, "ws");
            return -1;
        }
        off += used;
        if (r == WS_NEED_MORE) continue;
        if (m.kind == WS_MSG_BINARY) on_frame(l, c, m.data, m.len, now);
        else if (m.kind == WS_MSG_PING) send_ws(l, c, WS_OP_PONG, m.data, m.len);
        else if (m.kind == WS_MSG_CLOSE) {
            if (m.close_code == WS_CLOSE_TRY_AGAIN) CNT_ADD(l, shed, 1);
            ws_reader_free(&rd);
            lost(l, c, "closed by server");
            return -1;
        }
    }
    ws_reader_free(&rd);
    return (long)off;
}

static void on_readable(bloop *l, bconn *c) {
    uint64_t now = now_ns();
    for (;;) {
        /* the incomplete frame from last time goes first in the shared buffer */
        size_t have = c->in_len;
        if (have) memcpy(l->rbuf, c->in, have);
        ssize_t n = recv(c->fd, l->rbuf + have, l->rcap - have, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            lost(l, c, "eof");
            return;
        }
        if (n < 0) return;
        size_t total = have + (size_t)n;
        long used = process(l, c, l->rbuf, total, now);
        if (used < 0 || c->fd < 0) return;
        size_t rest = total - (size_t)used;
        if (rest > c->in_cap) {
            uint8_t *nb = realloc(c->in, rest);
            if (!nb) {
                lost(l, c, "oom");
                return;
            }
            c->in = nb;
            c->in_cap = (uint32_t)rest;
        }
        if (rest) memmove(c->in, l->rbuf + used, rest);
        c->in_len = (uint32_t)rest;
        if (rest == 0 && c->in_cap > 4096) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
        if (rest >= l->rcap) {
            lost(l, c, "frame too large");
            return;
        }
        if (total < l->rcap) return;   /* the socket is drained */
    }
}

void conn_event(bloop *l, bconn *c, uint32_t events) {
    if (c->state == BC_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(l, c);
        return;
    }
    if (events & EPOLLOUT) flush_conn(l, c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(l, c);
}
