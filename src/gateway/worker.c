/* worker.c -- one epoll loop per thread: accept, read, parse, write.
 *
 * A loop turn: wait for socket events and the inbox's eventfd; read and
 * handle what arrived; take every posted worker_msg (replies, deliveries,
 * pushes); then write each connection that has output once (so a burst of
 * deliveries to one socket is one write). Posts from other threads wake
 * the loop only when it is about to wait with an empty inbox (core/mpsc.h):
 * while it works, a burst of posts costs no eventfd write and no wake-up.
 * Sockets are level-triggered;
 * EPOLLOUT is armed only while output is waiting (or a TLS read needs it).
 *
 * Limits live here: the accept-rate bucket and a cap on open sockets at
 * accept, the handshake and idle timeouts and the linger of closing
 * connections (swept once a second), and the output caps: at
 * conn-output-cap (or max-in-flight requests) a connection's input is not
 * read until its output drains, and one that takes none of its output for
 * output-stall-timeout, or queues past conn-output-max, is closed with 1008.
 * A closing socket shuts its write side and reads to the peer's EOF. So
 * does the drain: on
 * SIGTERM each worker closes its listener and then its WebSocket
 * connections with 1012, a share per loop turn so they are spread over the
 * drain window, and exits once everything it closed is flushed. */
#include "gateway/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "gateway/address_limit.h"
#include "gateway/conn.h"
#include "gateway/conn_auth.h"
#include "gateway/conn_side.h"
#include "gateway/http_endpoint.h"
#include "gateway/in_flight.h"
#include "gateway/mqtt_conn.h"
#include "gateway/realtime.h"
#include "net/http.h"
#include "net/tls.h"

enum {
    INBOX_CAP = 1 << 16,
    EVENTS_PER_WAIT = 256,
    READ_CHUNK = 16384,     /* >= one TLS record, so a record is read whole */
    TAG_LISTEN = 0,
    TAG_INBOX = 1,
    TAG_FIRST_CONN = 2,
    TAG_MQTT_LISTEN = UINT32_MAX,   /* above every TAG_FIRST_CONN + slot (slots < 2^24) */
    MSGS_PER_TURN = 4096,
    CLOSE_LINGER_MS = 5000, /* a closing connection gets this long to take its output */
    CLOSE_DRAIN_MS = 2000,  /* then, write side shut, this long of silence ends it */
    CLOSE_DRAIN_MAX_MS = 10000, /* and a peer that keeps sending is cut after this */
    DISCARD_CHUNK = 16384,  /* input read and dropped per read while closing */
    DRAIN_GRACE_MS = 1000,  /* after the drain window, for the last close frames */
    DRAIN_TICK_MS = 10,     /* loop wake-ups while a drain closes connections */
    TLS_READS_PER_EVENT = 8,
    /* sockets still in the HTTP handshake allowed on top of max_connections */
    HANDSHAKE_SLACK_MIN = 1024,
};

/* ------------------------------------------------------------ conn table */

static conn *conn_new(worker *w, int fd) {
    conn *c = conn_table_alloc(&w->table, w->index);
    if (!c) return NULL;
    c->fd = fd;
    c->state = CONN_HTTP;
    c->phase_ms = conn_clock();
    /* the small limit until sign-in (conn_signed_in raises it) */
    ws_reader_init(&c->reader, true, w->srv->cfg.unauth_max_message);
    w->n_live++;
    atomic_fetch_add(&g_metrics.sockets_open, 1);
    return c;
}

static void conn_free(worker *w, conn *c) {
    if (c->dirty) {
        /* freed before this turn's flush (e.g. the peer hung up right after
         * output was queued): off the write list first. Rare, so a walk. */
        for (conn **p = &w->dirty; *p; p = &(*p)->next_dirty)
            if (*p == c) {
                *p = c->next_dirty;
                break;
            }
    }
    if (c->state == CONN_WS) atomic_fetch_sub(&g_metrics.connections, 1);
    if (c->addr_counted) address_limit_release(c->peer_addr);
    session_closed(w, c);
    if (c->mqtt) mqtt_conn_free(w, c);
    in_flight_free(c);
    if (c->ssl) tls_free(c->ssl, c->tls_ready && !c->tls_failed);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    ws_reader_free(&c->reader);
    conn_side_free(c);
    w->n_live--;
    atomic_fetch_sub(&g_metrics.sockets_open, 1);
    conn_table_release(&w->table, c);
}

static void conn_set_closing(conn *c) {
    if (c->state != CONN_CLOSING) c->phase_ms = conn_clock();
    c->state = CONN_CLOSING;
}

/* ------------------------------------------------------------------ output */

void conn_mark_dirty(worker *w, conn *c) {
    if (c->dirty) return;
    c->dirty = true;
    c->next_dirty = w->dirty;
    w->dirty = c;
}

void conn_send(worker *w, conn *c, uint8_t opcode, const void *data, size_t len) {
    if (c->fd < 0) return;
    if (c->mqtt && opcode == WS_OP_BINARY) {   /* a frame becomes a PUBLISH */
        mqtt_conn_send_bytes(w, c, data, len);
        return;
    }
    if (c->mqtt && !c->framed) return;   /* WebSocket control frames have no MQTT form */
    uint8_t *dst = buf_reserve(&c->out, WS_MAX_HEADER + len);
    if (!dst) {
        log_error("worker: out of memory for output; closing connection");
        conn_set_closing(c);
        conn_mark_dirty(w, c);
        return;
    }
    size_t h = ws_write_header(dst, opcode, true, len, NULL);
    if (len) memcpy(dst + h, data, len);
    buf_commit(&c->out, h + len);
    METRIC_INC(frames_out_total);
    conn_mark_dirty(w, c);
}

void conn_send_frame(worker *w, conn *c, const Parley__V1__Frame *f) {
    if (c->mqtt) {
        mqtt_conn_send_frame(w, c, f);
        return;
    }
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *dst = buf_reserve(&c->out, WS_MAX_HEADER + n);
    if (!dst) {
        conn_set_closing(c);
        conn_mark_dirty(w, c);
        return;
    }
    size_t h = ws_write_header(dst, WS_OP_BINARY, true, n, NULL);
    parley__v1__frame__pack(f, dst + h);
    buf_commit(&c->out, h + n);
    METRIC_INC(frames_out_total);
    conn_mark_dirty(w, c);
}

void conn_respond(worker *w, conn *c, uint64_t request_id, Parley__V1__Response *resp) {
    Parley__V1__Frame f;
    parley__v1__frame__init(&f);
    f.request_id = request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = resp;
    if (resp->status != PARLEY__V1__STATUS__OK) METRIC_INC(request_errors_total);
    conn_send_frame(w, c, &f);
}

void conn_send_error(worker *w, conn *c, uint64_t request_id, Parley__V1__Status status,
                     const char *error) {
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    r.status = status;
    r.error = (char *)error;
    conn_respond(w, c, request_id, &r);
}

void conn_send_rate_limited(worker *w, conn *c, uint64_t request_id, const char *error,
                            uint64_t retry_after_ms) {
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    r.status = PARLEY__V1__STATUS__RATE_LIMITED;
    r.error = (char *)error;
    r.retry_after_ms = retry_after_ms;
    METRIC_INC(rate_limited_total);
    conn_respond(w, c, request_id, &r);
}

void conn_close(worker *w, conn *c, uint16_t code, const char *reason) {
    if (c->state == CONN_CLOSING) return;
    if (c->state == CONN_WS) {
        uint8_t payload[125];
        size_t n = ws_close_payload(payload, code, reason);
        if (c->mqtt) mqtt_conn_disconnect(w, c, code);
        conn_send(w, c, WS_OP_CLOSE, payload, n);   /* MQTT over TCP: nothing */
        atomic_fetch_sub(&g_metrics.connections, 1);
    }
    conn_set_closing(c);
    conn_mark_dirty(w, c);
}

/* EPOLLOUT while output waits; EPOLLIN unless the input is paused (a TLS
 * write waiting for readability needs it even then). */
static void set_epollout(worker *w, conn *c, bool on) {
    bool in_off = c->input_paused && !c->tls_write_wants_read;
    if (c->epollout == on && c->epollin_off == in_off) return;
    struct epoll_event ev = {.events = (in_off ? 0 : EPOLLIN) | (on ? EPOLLOUT : 0),
                             .data.u64 = TAG_FIRST_CONN + conn_slot(c)};
    epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = on;
    c->epollin_off = in_off;
}

/* Length of the unmasked frame (header + payload) our own code wrote at p:
 * every frame in c->out is whole, so the header is all there. */
static size_t frame_size(const uint8_t *p, size_t avail) {
    if (avail < 2) return avail;
    uint64_t len = p[1] & 0x7f;
    size_t head = 2;
    if (len == 126) {
        head = 4;
        len = avail >= 4 ? ((uint64_t)p[2] << 8 | p[3]) : 0;
    } else if (len == 127) {
        head = 10;
        len = 0;
        for (int i = 0; i < 8 && avail >= 10; i++) len = len << 8 | p[2 + i];
    }
    return head + len > avail ? avail : head + (size_t)len;
}

/* Keeps c->out_unit_left right as n bytes of c->out leave: walks the frame
 * headers those bytes cross. Lets an overflowing connection be cut at a
 * frame boundary, so its close frame still parses. */
static void track_units(conn *c, size_t n) {
    if (!c->framed) return;
    const uint8_t *p = buf_head(&c->out);
    size_t len = buf_len(&c->out), pos = 0, left = c->out_unit_left;
    while (pos < n) {
        if (left == 0) left = frame_size(p + pos, len - pos);
        if (left == 0) break;
        size_t take = left < n - pos ? left : n - pos;
        pos += take;
        left -= take;
    }
    c->out_unit_left = (uint32_t)left;   /* one frame: under 2^32 (max-message) */
}

/* The peer keeps asking and does not read the answers: past the hard cap
 * the connection goes. What is queued is dropped, except the rest of the
 * frame already partly written, and the 1008 close frame follows it. */
static void overflow_close(worker *w, conn *c) {
    METRIC_INC(output_overflow_closes_total);
    log_debug("worker %u: connection %llx queued %zu bytes of output; closing (1008)", w->index,
              (unsigned long long)c->id, buf_len(&c->out));
    if (c->framed && c->out_unit_left < buf_len(&c->out)) buf_truncate(&c->out, c->out_unit_left);
    if (buf_len(&c->out) == 0) buf_free(&c->out);
    conn_close(w, c, WS_CLOSE_POLICY, "output limit: read your responses");
}

/* One write of c->out. > 0 bytes written, 0 would block (EPOLLOUT or, for
 * TLS, EPOLLIN arranged), -1 the connection is gone. */
static ssize_t conn_write_some(conn *c) {
    if (!c->ssl) {
        for (;;) {
            ssize_t n = send(c->fd, buf_head(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
            if (n > 0) return n;
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            return -1;
        }
    }
    size_t n = 0;
    switch (tls_write(c->ssl, buf_head(&c->out), buf_len(&c->out), &n)) {
    case TLS_OK:
        return (ssize_t)n;
    case TLS_WANT_WRITE:
        return 0;
    case TLS_WANT_READ:
        c->tls_write_wants_read = true;   /* EPOLLIN is always armed */
        return 0;
    default:
        c->tls_failed = true;
        METRIC_INC(tls_errors_total);
        return -1;
    }
}

static void handle_ws(worker *w, conn *c);

bool conn_input_blocked(const worker *w, const conn *c) {
    const config *cfg = &w->srv->cfg;
    return c->read_wait || (c->side && c->side->dm_reading) || buf_len(&c->out) >= cfg->conn_output_cap ||
           in_flight_count(c) >= cfg->max_in_flight || in_flight_bytes(c) >= cfg->max_in_flight_bytes;
}

/* Stops reading c: what the peer sends waits in its socket (the kernel's
 * memory and the peer's problem), not in ours. */
static void pause_input(worker *w, conn *c) {
    if (c->input_paused) return;
    c->input_paused = true;
    c->out_moved_ms = conn_clock();
    METRIC_INC(input_pauses_total);
    set_epollout(w, c, c->epollout);
}

/* Room again: the requests already read are handled, then reading goes on. */
static void resume_input(worker *w, conn *c) {
    c->input_paused = false;
    set_epollout(w, c, c->epollout);
    handle_ws(w, c);
    if (buf_len(&c->in) == 0) buf_free(&c->in);
}

/* Output done on a closing connection. A plain socket shuts its write side
 * and waits (reading and dropping) for the peer to close: closing with
 * unread input would reset the connection, and the peer would lose the
 * close frame still in flight. TLS sends close_notify as it frees. */
static bool finish_closing(worker *w, conn *c) {
    if (c->ssl) {
        conn_free(w, c);
        return false;
    }
    if (!c->write_shut) {
        shutdown(c->fd, SHUT_WR);
        c->write_shut = true;
        c->phase_ms = c->last_rx_ms = conn_clock();
        buf_free(&c->in);
        buf_free(&c->out);
    }
    return true;
}

/* Writes what is queued. Returns false when the connection was closed. */
static bool conn_flush(worker *w, conn *c) {
    c->tls_write_wants_read = false;
    while (buf_len(&c->out) > 0) {
        ssize_t n = conn_write_some(c);
        if (n > 0) {
            METRIC_INC(socket_writes_total);
            METRIC_ADD(bytes_out_total, (unsigned long)n);
            if (c->input_paused) c->out_moved_ms = conn_clock();
            track_units(c, (size_t)n);
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n == 0) {
            if (c->state == CONN_WS && buf_len(&c->out) > w->srv->cfg.conn_output_max) {
                overflow_close(w, c);
                if (buf_len(&c->out) == 0) break;
            }
            if (c->input_paused && c->state == CONN_WS && !conn_input_blocked(w, c)) resume_input(w, c);
            set_epollout(w, c, !c->tls_write_wants_read || c->tls_read_wants_write);
            return true;
        }
        conn_free(w, c);   /* peer gone: nothing more to say */
        return false;
    }
    if (c->state == CONN_CLOSING) {
        c->input_paused = false;   /* read (and drop) to the peer's EOF */
        set_epollout(w, c, false);
        return finish_closing(w, c);
    }
    /* requests first (they were waiting), then pushes fill what room is left */
    if (c->input_paused && c->state == CONN_WS && !conn_input_blocked(w, c)) resume_input(w, c);
    set_epollout(w, c, c->tls_read_wants_write || buf_len(&c->out) > 0);
    /* room again: a lagging device catches up from the store */
    if (c->state == CONN_WS && (c->lagging || c->dm_pending)) delivery_pump(w, c);
    return true;
}

static void flush_dirty(worker *w) {
    /* pumping may queue more output on the same connections; bounded by the
     * output cap, so two passes settle it */
    uint64_t now = w->dirty ? clock_mono_ms() : 0;
    for (int pass = 0; pass < 2 && w->dirty; pass++) {
        conn *c = w->dirty;
        w->dirty = NULL;
        while (c) {
            conn *next = c->next_dirty;
            c->dirty = false;
            c->next_dirty = NULL;
            session_flush_acks(w, c);
            /* side state whose use ended this turn (a sync that reached
             * SyncDone, device messages paged, the held ack handed over) goes
             * now: freed in the turn it was made, it leaves no hole between
             * longer-lived allocations (the sweep catches the rest) */
            conn_side_trim(c, now);
            conn_flush(w, c);
            c = next;
        }
    }
}

/* ------------------------------------------------------------------ input */

/* The close reason for a reader error: what happened, not just its code. */
static const char *ws_error_reason(const conn *c, uint16_t code, char *buf, size_t cap) {
    switch (code) {
    case WS_CLOSE_TOO_BIG:
        snprintf(buf, cap, "message too big: at most %zu bytes%s", (size_t)c->reader.max_message,
                 c->signed_in ? "" : " before sign-in");
        return buf;
    case WS_CLOSE_INVALID_DATA:
        return "invalid UTF-8 in a text message or close reason";
    case WS_CLOSE_INTERNAL:
        return "out of memory reassembling a fragmented message";
    default:
        return "WebSocket protocol error (framing, masking, opcode or close code)";
    }
}

/* Handles the whole messages at the front of data[0..len) (payloads are
 * unmasked in place) until the input must pause or the connection closes.
 * Returns the bytes used: the rest is a partial frame, or waits for the
 * pause to end. */
static size_t handle_ws_bytes(worker *w, conn *c, uint8_t *data, size_t len) {
    if (c->mqtt && !c->framed) {   /* MQTT over TCP: the bytes are MQTT packets */
        bool blocked = false;
        size_t used = mqtt_conn_input(w, c, data, len, &blocked);
        if (blocked) pause_input(w, c);
        return used;
    }
    size_t done = 0;
    while (c->state == CONN_WS && done < len) {
        /* output is bounded before it is produced: no request is handled
         * while the answers to earlier ones wait for the peer to read */
        if (conn_input_blocked(w, c)) {
            pause_input(w, c);
            break;
        }
        size_t used = 0;
        ws_message m;
        int r = ws_reader_feed(&c->reader, data + done, len - done, &used, &m);
        if (r == WS_ERROR) {
            METRIC_INC(protocol_errors_total);
            char why[96];
            conn_close(w, c, m.close_code, ws_error_reason(c, m.close_code, why, sizeof why));
            break;
        }
        if (r == WS_NEED_MORE) {
            done += used;
            break;
        }
        METRIC_INC(frames_in_total);
        c->last_rx_ms = conn_clock();   /* pings count: they are how idle clients say so */
        switch (m.kind) {
        case WS_MSG_BINARY:
            if (c->mqtt) mqtt_conn_ws_message(w, c, m.data, m.len);
            else session_handle(w, c, m.data, m.len);
            break;
        case WS_MSG_TEXT:
            METRIC_INC(protocol_errors_total);
            conn_close(w, c, WS_CLOSE_UNSUPPORTED, "parley.v1 uses binary messages");
            break;
        case WS_MSG_PING:
            conn_send(w, c, WS_OP_PONG, m.data, m.len);
            break;
        case WS_MSG_PONG:
            break;
        case WS_MSG_CLOSE:
            conn_close(w, c, m.close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : m.close_code, "");
            break;
        }
        /* a reassembled message is handled: its buffer goes now, not at
         * the next input (which an idle connection may not send for long) */
        if (c->reader.frag && c->reader.frag_opcode == 0) ws_reader_free(&c->reader);
        done += used;
    }
    return done;
}

/* The input held on c (a partial frame, or what waited for a pause). */
static void handle_ws(worker *w, conn *c) {
    buf_consume(&c->in, handle_ws_bytes(w, c, buf_head(&c->in), buf_len(&c->in)));
}

static ssize_t conn_read_some(worker *w, conn *c, uint8_t *dst, size_t cap);

/* A WebSocket connection with no input held reads into the worker's
 * buffer, and keeps only what is left over (a partial frame, or input that
 * must wait for a pause to end): at rest a connection holds no input
 * buffer, and a read costs no allocation. */
static bool read_ws_direct(worker *w, conn *c) {
    ssize_t n = conn_read_some(w, c, w->read_buf, READ_CHUNK);
    if (n < 0) {
        conn_free(w, c);
        return false;
    }
    if (n == 0) return false;
    METRIC_ADD(bytes_in_total, (unsigned long)n);
    size_t used = handle_ws_bytes(w, c, w->read_buf, (size_t)n);
    if (used < (size_t)n && c->state != CONN_CLOSING && buf_append(&c->in, w->read_buf + used, (size_t)n - used)) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        return false;
    }
    return c->ssl != NULL && c->state != CONN_CLOSING;
}

/* One read into dst. > 0 bytes, 0 nothing for now, -1 the connection is
 * over (EOF, error, TLS close). */
static ssize_t conn_read_some(worker *w, conn *c, uint8_t *dst, size_t cap) {
    if (!c->ssl) {
        ssize_t n = recv(c->fd, dst, cap, 0);
        if (n > 0) {
            METRIC_INC(socket_reads_total);
            return n;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
        return -1;
    }
    c->tls_read_wants_write = false;
    size_t n = 0;
    tls_result r = tls_read(c->ssl, dst, cap, &n);
    if (!c->tls_ready && r != TLS_ERROR && tls_handshake_done(c->ssl)) {
        c->tls_ready = true;
        METRIC_INC(tls_handshakes_total);
    }
    switch (r) {
    case TLS_OK:
        METRIC_INC(socket_reads_total);
        return (ssize_t)n;
    case TLS_WANT_READ:
        return 0;
    case TLS_WANT_WRITE:
        /* the handshake or a key update must write first */
        c->tls_read_wants_write = true;
        set_epollout(w, c, true);
        return 0;
    case TLS_CLOSED:
        return -1;
    default:
        c->tls_failed = true;
        METRIC_INC(tls_errors_total);
        return -1;
    }
}

/* A plain socket over the accept rate holds no input buffer: its first
 * read (on the stack) is all it gets. A whole /healthz or /metrics head is
 * answered (monitoring keeps working in a flood); anything else, whole or
 * not, gets the 503 + Retry-After at once. */
static bool shed_read(worker *w, conn *c) {
    uint8_t head[HTTP_MAX_HEAD_BYTES];
    ssize_t n = conn_read_some(w, c, head, sizeof head);
    if (n < 0) {
        conn_free(w, c);
        return false;
    }
    if (n == 0) return false;
    METRIC_ADD(bytes_in_total, (unsigned long)n);
    http_request req;
    int r = http_parse_request((const char *)head, (size_t)n, &req);
    size_t plen = strcspn(req.path, "?");
    bool monitoring = r > 0 && ((plen == 8 && strncmp(req.path, "/healthz", 8) == 0) ||
                                (plen == 8 && strncmp(req.path, "/metrics", 8) == 0));
    if (monitoring && buf_append(&c->in, head, (size_t)n) == 0) http_endpoint_handle(w, c);
    else http_endpoint_shed(w, c);
    buf_free(&c->in);
    return false;
}

/* Reads once and handles what came. Returns true while c is alive and a
 * TLS record may still hold bytes. */
static bool conn_read_once(worker *w, conn *c) {
    if (c->state == CONN_CLOSING) {
        /* discard: we are only waiting to finish writing, or for the EOF */
        uint8_t sink[DISCARD_CHUNK];
        ssize_t n = conn_read_some(w, c, sink, sizeof sink);
        if (n < 0) {
            conn_free(w, c);
            return false;
        }
        if (n > 0) c->last_rx_ms = conn_clock();
        return n > 0 && c->ssl;
    }
    if (c->input_paused) return false;   /* EPOLLIN only for a TLS write */
    if (c->state == CONN_HTTP && c->shed) return shed_read(w, c);
    if ((c->state == CONN_WS || c->mqtt) && buf_len(&c->in) == 0) return read_ws_direct(w, c);
    uint8_t *dst = buf_reserve(&c->in, READ_CHUNK);
    if (!dst) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        return false;
    }
    ssize_t n = conn_read_some(w, c, dst, READ_CHUNK);
    if (n < 0) {
        conn_free(w, c);
        return false;
    }
    if (n == 0) {
        if (buf_len(&c->in) == 0) buf_free(&c->in);
        return false;
    }
    buf_commit(&c->in, (size_t)n);
    METRIC_ADD(bytes_in_total, (unsigned long)n);
    if (c->state == CONN_HTTP && !c->mqtt) {
        /* the head parser rescans from the start: only when a line ended,
         * so a client trickling bytes costs one scan per line, not per byte */
        if (!memchr(dst, '\n', (size_t)n)) {
            if (buf_len(&c->in) > HTTP_MAX_HEAD_BYTES) {
                conn_free(w, c);
                return false;
            }
            return c->ssl != NULL;
        }
        if (!http_endpoint_handle(w, c)) return false;
    }
    if (c->state == CONN_WS || c->mqtt) handle_ws(w, c);
    /* a WebSocket message can be at most max_message plus a header; the
     * reader refuses larger declared lengths, so this holds the buffer bound */
    if (buf_len(&c->in) == 0) buf_free(&c->in);
    return c->ssl != NULL && c->state != CONN_CLOSING;
}

static void conn_readable(worker *w, conn *c) {
    uint32_t slot = conn_slot(c);
    conn_table *t = &w->table;
    /* a flush that waited for readability goes first */
    if (c->tls_write_wants_read && !conn_flush(w, c)) return;
    /* TLS may hold decrypted bytes the socket no longer signals: keep
     * reading while it does. Without read-ahead OpenSSL holds at most one
     * record, which one READ_CHUNK takes whole, so the bound is never hit */
    for (int i = 0; i < TLS_READS_PER_EVENT; i++) {
        bool more = conn_read_once(w, c);
        if (conn_table_at(t, slot) != c) return;   /* freed */
        if (!more || !c->ssl || !tls_pending(c->ssl)) return;
    }
}

void conn_signed_in(worker *w, conn *c) {
    c->reader.max_message = (uint32_t)w->srv->cfg.max_message_bytes;   /* <= 64 MiB (config.c) */
    if (c->addr_counted) address_limit_release(c->peer_addr);
    c->addr_counted = false;
}

/* ------------------------------------------------------------------ inbox */

/* The eventfd is read only in a turn whose epoll_wait reported it (worker_main):
 * posts to a busy worker do not write it (core/mpsc.h). */
static void handle_inbox(worker *w) {
    worker_msg *msgs[256];
    size_t total = 0, n = 256;
    /* bounded per turn so sockets are served between bursts. A short pop
     * ends it: popping again to see the queue empty would mark the worker
     * as maybe asleep while it still has this turn's writes to do, and
     * every post meanwhile would wake it; worker_main looks once more
     * (mpsc_prepare_sleep) right before it waits */
    while (total < MSGS_PER_TURN && n == 256 && (n = mpsc_pop_many(&w->inbox, (void **)msgs, 256)) > 0) {
        total += n;
        for (size_t i = 0; i < n; i++) {
            worker_msg *m = msgs[i];
            if (m->kind == WM_CLOSE_DEVICE || m->kind == WM_DROP_PRESENCE) {   /* names no connection: a scan */
                if (m->kind == WM_CLOSE_DEVICE) session_close_device(w, m->user_id, m->device_id);
                else session_drop_presence(w, m->user_id, m->about_user);
                worker_msg_free(m);
                continue;
            }
            conn *c = conn_table_by_id(&w->table, m->conn_id);
            if (c && m->kind == WM_MQTT_CONNECT_READ) {
                /* before CONNACK: MQTT over TCP is still in the HTTP state */
                mqtt_conn_connect_read(w, c, m);
            } else if (c && c->state == CONN_WS) {
                switch (m->kind) {
                case WM_REPLY:
                    session_apply_reply(w, c, m);
                    break;
                case WM_PUSH:
                    conn_send(w, c, WS_OP_BINARY, m->data, m->len);
                    break;
                case WM_DELIVER:
                    delivery_live(w, c, m->user_seq, m->message);
                    break;
                case WM_MQTT_TAKEOVER:
                    mqtt_conn_taken_over(w, c, m->user_id, m->device_id);
                    break;
                case WM_RESYNC:   /* no gap, no duplicate: the pump reads past sent_upto */
                    delivery_catch_up(w, c);
                    break;
                case WM_DEVICE_READ:
                    session_device_read(w, c, m);
                    break;
                case WM_INBOX_PAGE:
                    delivery_page(w, c, m);
                    break;
                case WM_CURSOR_READ:
                    mqtt_conn_cursor_read(w, c, m);
                    break;
                case WM_REQUEST_READ:
                    session_request_read(w, c, m);
                    break;
                case WM_DEVICE_MESSAGES:
                    realtime_device_messages_page(w, c, m);
                    break;
                case WM_MQTT_CONNECT_READ:   /* above */
                case WM_CLOSE_DEVICE:
                case WM_DROP_PRESENCE:
                    break;
                }
            }
            worker_msg_free(m);
        }
    }
    /* more may be waiting without a new wake-up: worker_main's
     * mpsc_prepare_sleep sees them and does not block */
}

/* ------------------------------------------------------------------ accept */

/* The accept-rate bucket, shared by the workers of the process (SO_REUSEPORT
 * spreads connections unevenly, so per-worker buckets would shed early on a
 * busy worker). Taken once per accepted socket: a short lock. */
static struct {
    pthread_mutex_t lock;
    double tokens;
    uint64_t last_ms;
} accept_bucket = {PTHREAD_MUTEX_INITIALIZER, 0, 0};

static void accept_bucket_init(const config *cfg) {
    pthread_mutex_lock(&accept_bucket.lock);
    accept_bucket.tokens = cfg->accept_burst;
    accept_bucket.last_ms = clock_mono_ms();
    pthread_mutex_unlock(&accept_bucket.lock);
}

static bool accept_bucket_take(const config *cfg) {
    if (cfg->accept_rate == 0) return true;
    pthread_mutex_lock(&accept_bucket.lock);
    uint64_t now = clock_mono_ms();
    accept_bucket.tokens += (double)(now - accept_bucket.last_ms) * cfg->accept_rate / 1000.0;
    if (accept_bucket.tokens > cfg->accept_burst) accept_bucket.tokens = cfg->accept_burst;
    accept_bucket.last_ms = now;
    bool ok = accept_bucket.tokens >= 1.0;
    if (ok) accept_bucket.tokens -= 1.0;
    pthread_mutex_unlock(&accept_bucket.lock);
    return ok;
}

/* Out of file descriptors, the listener stays readable and a level-
 * triggered loop would spin on it: give up the spare descriptor, accept the
 * oldest waiting connection and close it at once, then take the spare back. */
static void shed_one_without_fds(worker *w, int listen_fd) {
    if (!w->fd_warned) {
        log_warn("worker %u: out of file descriptors; refusing connections", w->index);
        w->fd_warned = true;
    }
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        w->spare_fd = -1;
    }
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        METRIC_INC(upgrades_rejected_total);
        close(fd);
    }
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* mqtt: listen_fd is the MQTT listener (no HTTP: over the rate is a close). */
static void accept_all(worker *w, int listen_fd, bool mqtt) {
    const config *cfg = &w->srv->cfg;
    /* WebSocket connections are capped at upgrade (503); sockets still in
     * the handshake get some room on top, and past that are closed at once */
    long slack = cfg->max_connections / 8 > HANDSHAKE_SLACK_MIN ? (long)cfg->max_connections / 8
                                                                 : HANDSHAKE_SLACK_MIN;
    long max_sockets = (long)cfg->max_connections + slack;
    for (int i = 0; i < 256 && listen_fd >= 0; i++) {
        struct sockaddr_in peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(listen_fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) shed_one_without_fds(w, listen_fd);
            return;
        }
        METRIC_INC(connections_accepted_total);
        uint32_t addr = peer.sin_family == AF_INET ? ntohl(peer.sin_addr.s_addr) : 0;
        /* one address holding many sockets that never sign in: refused
         * before anything is allocated for them */
        if (!address_limit_take(addr, cfg->max_pending_per_address)) {
            METRIC_INC(address_limited_total);
            close(fd);
            continue;
        }
        bool over_rate = !accept_bucket_take(cfg);
        if (over_rate) METRIC_INC(accept_rate_limited_total);
        /* a TLS handshake is the expensive part the bucket protects, so a
         * TLS connection over the rate is closed before it; a plain one
         * gets a 503 with Retry-After at its first read (shed_read) */
        if (atomic_load(&g_metrics.sockets_open) >= max_sockets || (over_rate && (w->tls || mqtt))) {
            if (!over_rate) METRIC_INC(upgrades_rejected_total);
            address_limit_release(addr);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = conn_new(w, fd);
        if (!c) {
            address_limit_release(addr);
            close(fd);
            continue;
        }
        c->peer_addr = addr;
        c->addr_counted = true;
        c->shed = over_rate;
        if (mqtt && !mqtt_conn_accepted(w, c)) {
            conn_free(w, c);
            continue;
        }
        if (w->tls) {
            c->ssl = tls_server_new(w->tls, fd);
            if (!c->ssl) {
                conn_free(w, c);
                continue;
            }
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_FIRST_CONN + conn_slot(c)};
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) conn_free(w, c);
    }
}

/* Once a second: connections that did not finish the upgrade in time
 * (slow-loris), WebSocket connections silent past the idle timeout, and
 * closing connections whose peer does not take the rest of the output. */
static void sweep(worker *w) {
    uint64_t now = clock_mono_ms();
    uint32_t now32 = (uint32_t)now;   /* conn_clock() */
    if (now - w->last_sweep_ms < 1000) return;
    w->last_sweep_ms = now;
    w->fd_warned = false;
    if (w->spare_fd < 0) w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const config *cfg = &w->srv->cfg;
    for (uint32_t i = 0; i < w->table.n_slots; i++) {
        conn *c = conn_table_at(&w->table, i);
        if (!c) continue;
        conn_side_trim(c, now);   /* rarely used state that no longer matters goes */
        uint32_t idle_ms;   /* MQTT: from the keep-alive */
        switch (c->state) {
        case CONN_HTTP:
            /* an MQTT CONNECT whose store read is out (over TCP the link is
             * in the handshake until CONNACK) is answered when the read
             * ends, within the store's deadline (Cassandra: 12 s, above
             * the handshake timeout's default) */
            if (!c->read_wait && (uint32_t)(now32 - c->phase_ms) > cfg->handshake_timeout_ms) {
                METRIC_INC(handshake_timeouts_total);
                conn_free(w, c);
            }
            break;
        case CONN_WS:
            if (!c->signed_in && c->auth && !c->read_wait && now - c->auth->since_ms > cfg->signin_timeout_ms) {
                METRIC_INC(signin_timeouts_total);
                conn_close(w, c, WS_CLOSE_POLICY, "sign-in timeout: sign in right after the upgrade");
            } else if (c->input_paused && buf_len(&c->out) >= cfg->conn_output_cap &&
                       (uint32_t)(now32 - c->out_moved_ms) > cfg->output_stall_ms) {
                /* asks and does not read: nothing it is owed moves */
                overflow_close(w, c);
            } else if ((idle_ms = c->mqtt ? mqtt_conn_idle_ms(w, c) : cfg->idle_timeout_ms) &&
                       (uint32_t)(now32 - c->last_rx_ms) > idle_ms) {
                METRIC_INC(idle_timeouts_total);
                conn_close(w, c, WS_CLOSE_GOING_AWAY, "idle timeout");
            } else if (c->lagging || c->dm_pending) {
                delivery_pump(w, c);   /* again: its last pump may have waited for a failing store */
            }
            break;
        case CONN_CLOSING:
            if (c->write_shut ? (uint32_t)(now32 - c->last_rx_ms) > CLOSE_DRAIN_MS ||
                                    (uint32_t)(now32 - c->phase_ms) > CLOSE_DRAIN_MAX_MS
                              : (uint32_t)(now32 - c->phase_ms) > CLOSE_LINGER_MS)
                conn_free(w, c);
            break;
        }
    }
}

/* ------------------------------------------------------------------ drain */

static void drain_begin(worker *w) {
    w->draining = true;
    w->drain_start_ms = clock_mono_ms();
    /* no new connections here; the kernel refuses them once every worker's
     * listener is closed, and clients retry elsewhere or later */
    if (w->listen_fd >= 0) {
        epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->listen_fd, NULL);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    if (w->mqtt_listen_fd >= 0) {
        epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->mqtt_listen_fd, NULL);
        close(w->mqtt_listen_fd);
        w->mqtt_listen_fd = -1;
    }
    for (uint32_t i = 0; i < w->table.n_slots; i++) {
        conn *c = conn_table_at(&w->table, i);
        if (!c) continue;
        if (c->state == CONN_WS) w->drain_total++;
        /* not yet a user's connection: it would only get a 503 */
        else if (c->state == CONN_HTTP) conn_free(w, c);
    }
}

/* Closes this turn's share: by now, elapsed/window of the connections the
 * drain began with. Returns true once the drain is over: everything closed
 * and flushed, or a short grace after the window (a peer that does not read
 * would otherwise hold the exit for the whole linger). */
static bool drain_step(worker *w) {
    uint64_t elapsed = clock_mono_ms() - w->drain_start_ms;
    uint32_t window = w->srv->cfg.drain_window_ms;
    uint64_t target = w->drain_total;
    if (window && elapsed < window) target = ((uint64_t)w->drain_total * elapsed + window - 1) / window;
    while (w->drain_closed < target) {
        if (w->drain_cursor >= w->table.n_slots) {
            w->drain_closed = w->drain_total;   /* the rest left by themselves */
            break;
        }
        conn *c = conn_table_at(&w->table, w->drain_cursor++);
        if (!c || c->state != CONN_WS) continue;
        METRIC_INC(drain_closes_total);
        conn_close(w, c, WS_CLOSE_RESTART, "server restarting");
        w->drain_closed++;
    }
    if (w->drain_closed >= w->drain_total && w->n_live == 0) return true;
    return elapsed >= (uint64_t)window + DRAIN_GRACE_MS;
}

/* ------------------------------------------------------------------ loop */

/* Frees whatever is left: what could not be written is dropped; the devices
 * resume from their cursors when they reconnect. */
static void free_all(worker *w) {
    flush_dirty(w);
    for (uint32_t i = 0; i < w->table.n_slots; i++) {
        conn *c = conn_table_at(&w->table, i);
        if (c) conn_free(w, c);
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    for (;;) {
        int timeout = 1000;
        if (atomic_load(&w->stopping)) {
            if (!w->draining) drain_begin(w);
            if (drain_step(w)) break;
            flush_dirty(w);   /* the close frames go out now, not after the wait */
            timeout = DRAIN_TICK_MS;
        }
        if (w->dirty) timeout = 0;   /* output queued by resumed input: write it now */
        /* posts wake this thread only from here on, and only if the inbox
         * is empty now; if it is not, no wait */
        if (timeout != 0 && !mpsc_prepare_sleep(&w->inbox)) timeout = 0;
        int n = epoll_wait(w->epoll_fd, events, EVENTS_PER_WAIT, timeout);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == TAG_LISTEN || tag == TAG_MQTT_LISTEN) {
                accept_all(w, tag == TAG_LISTEN ? w->listen_fd : w->mqtt_listen_fd, tag == TAG_MQTT_LISTEN);
                continue;
            }
            if (tag == TAG_INBOX) {
                /* cleared before handle_inbox pops: a post after the pops
                 * leaves it readable for the next turn */
                mpsc_drain_wakeup(&w->inbox);
                continue;   /* handled below every turn */
            }
            conn *c = conn_table_at(&w->table, (uint32_t)(tag - TAG_FIRST_CONN));
            if (!c) continue;
            if (events[i].events & EPOLLOUT) {
                bool read_first = c->tls_read_wants_write;
                if (read_first) conn_readable(w, c);
                c = conn_table_at(&w->table, (uint32_t)(tag - TAG_FIRST_CONN));
                if (!c || !conn_flush(w, c)) continue;
                if (read_first) continue;
            }
            if (c->input_paused && (events[i].events & (EPOLLHUP | EPOLLERR))) {
                conn_free(w, c);   /* not read while paused: would be reported again and again */
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_readable(w, c);
        }
        handle_inbox(w);
        flush_dirty(w);
        sweep(w);
    }
    free_all(w);
    return NULL;
}

static int listen_socket(const char *host, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        if (strcmp(host, "localhost") == 0) addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else {
            log_error("listen: '%s' is not an IPv4 address", host);
            return -1;
        }
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 4096)) {
        log_error("listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static worker *worker_new(server *srv, uint32_t index, SSL_CTX *tls) {
    worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->srv = srv;
    w->index = index;
    w->tls = tls;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->listen_fd = listen_socket(srv->cfg.listen_host, srv->cfg.listen_port);
    w->mqtt_listen_fd = srv->cfg.mqtt_host[0] ? listen_socket(srv->cfg.mqtt_host, srv->cfg.mqtt_port) : -1;
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    w->read_buf = malloc(READ_CHUNK);
    if (w->listen_fd < 0 || w->epoll_fd < 0 || !w->read_buf || mpsc_init(&w->inbox, INBOX_CAP) ||
        (srv->cfg.mqtt_host[0] && w->mqtt_listen_fd < 0)) {
        free(w->read_buf);
        if (w->listen_fd >= 0) close(w->listen_fd);
        if (w->mqtt_listen_fd >= 0) close(w->mqtt_listen_fd);
        if (w->epoll_fd >= 0) close(w->epoll_fd);
        if (w->spare_fd >= 0) close(w->spare_fd);
        free(w);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev);
    ev.data.u64 = TAG_INBOX;
    epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->inbox.wake_fd, &ev);
    if (w->mqtt_listen_fd >= 0) {
        ev.data.u64 = TAG_MQTT_LISTEN;
        epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->mqtt_listen_fd, &ev);
    }
    return w;
}

int workers_start(server *srv) {
    SSL_CTX *tls = NULL;
    if (srv->cfg.tls_cert[0]) {
        char err[512];
        tls = tls_server_ctx_new(srv->cfg.tls_cert, srv->cfg.tls_key, err, sizeof err);
        if (!tls) {
            log_error("tls: %s", err);
            return -1;
        }
    }
    accept_bucket_init(&srv->cfg);
    srv->workers = calloc((size_t)srv->n_workers, sizeof *srv->workers);
    if (!srv->workers) {
        tls_ctx_free(tls);
        return -1;
    }
    for (int i = 0; i < srv->n_workers; i++) {
        srv->workers[i] = worker_new(srv, (uint32_t)i, tls);
        if (!srv->workers[i]) return -1;   /* the process exits: nothing to free */
    }
    for (int i = 0; i < srv->n_workers; i++)
        if (pthread_create(&srv->workers[i]->thread, NULL, worker_main, srv->workers[i])) return -1;
    return 0;
}

void workers_stop(server *srv) {
    atomic_store(&g_metrics.draining, 1);
    for (int i = 0; i < srv->n_workers; i++) {
        worker *w = srv->workers[i];
        atomic_store(&w->stopping, true);
        mpsc_wake(&w->inbox);
    }
    for (int i = 0; i < srv->n_workers; i++) {
        pthread_join(srv->workers[i]->thread, NULL);
        /* from now on posts are dropped: nobody would read them */
        mpsc_close(&srv->workers[i]->inbox);
    }
    /* /metrics went with the listeners: the drain's count goes to the log */
    log_info("drain done: %lu connections closed with 1012", atomic_load(&g_metrics.drain_closes_total));
}

/* Called after the writer and fan-out have stopped: nothing posts anymore. */
void workers_free(server *srv) {
    for (int i = 0; i < srv->n_workers; i++) {
        worker *w = srv->workers[i];
        worker_msg *msgs[256];
        size_t n;
        while ((n = mpsc_pop_many(&w->inbox, (void **)msgs, 256)) > 0)
            for (size_t j = 0; j < n; j++) worker_msg_free(msgs[j]);
        mpsc_destroy(&w->inbox);
        close(w->epoll_fd);
        if (w->listen_fd >= 0) close(w->listen_fd);
        if (w->mqtt_listen_fd >= 0) close(w->mqtt_listen_fd);
        if (w->mqtt_links) {
            u64map_free(w->mqtt_links);   /* empty: every connection was freed */
            free(w->mqtt_links);
        }
        if (w->spare_fd >= 0) close(w->spare_fd);
        if (i == 0) tls_ctx_free(w->tls);   /* one context, shared */
        conn_table_free(&w->table);
        free(w->read_buf);
        free(w);
    }
    free(srv->workers);
    srv->workers = NULL;
}

void worker_post(server *srv, worker_msg *m) {
    uint32_t index = conn_id_worker(m->conn_id);
    if (index >= (uint32_t)srv->n_workers || mpsc_push(&srv->workers[index]->inbox, m))
        worker_msg_free(m);
}
