/* worker.c -- one epoll loop per thread: accept, read, parse, write.
 *
 * A loop turn: wait for socket events and the inbox's eventfd; read and
 * handle what arrived; take every posted worker_msg (replies, deliveries,
 * pushes); then write each connection that has output once (so a burst of
 * deliveries to one socket is one write). Sockets are level-triggered;
 * EPOLLOUT is armed only while output is waiting. */
#include "gateway/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "gateway/conn.h"
#include "gateway/http_endpoint.h"
#include "net/http.h"

enum {
    INBOX_CAP = 1 << 16,
    EVENTS_PER_WAIT = 256,
    READ_CHUNK = 16384,
    TAG_LISTEN = 0,
    TAG_INBOX = 1,
    TAG_FIRST_CONN = 2,
    MSGS_PER_TURN = 4096,
};

/* ------------------------------------------------------------ conn table */

static conn *conn_by_id(worker *w, uint64_t id) {
    uint32_t slot = (uint32_t)(id & 0xffffff);
    if (slot >= w->n_slots) return NULL;
    conn *c = w->conns[slot];
    return c && c->id == id ? c : NULL;
}

static conn *conn_new(worker *w, int fd) {
    uint32_t slot;
    if (w->n_free) {
        slot = w->free_slots[--w->n_free];
    } else {
        if (w->n_slots == (1u << 24)) return NULL;
        if (w->n_slots == w->cap_slots) {
            uint32_t cap = w->cap_slots ? w->cap_slots * 2 : 1024;
            conn **conns = realloc(w->conns, cap * sizeof *conns);
            if (!conns) return NULL;
            w->conns = conns;
            uint32_t *gens = realloc(w->generations, cap * sizeof *gens);
            if (!gens) return NULL;
            w->generations = gens;
            uint32_t *free_slots = realloc(w->free_slots, cap * sizeof *free_slots);
            if (!free_slots) return NULL;
            w->free_slots = free_slots;
            w->cap_slots = cap;
        }
        slot = w->n_slots++;
        w->generations[slot] = 0;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        w->free_slots[w->n_free++] = slot;
        return NULL;
    }
    uint32_t gen = ++w->generations[slot];
    c->fd = fd;
    c->slot = slot;
    c->id = ((uint64_t)w->index << 56) | ((uint64_t)gen << 24) | slot;
    c->state = CONN_HTTP;
    c->opened_ms = clock_mono_ms();
    ws_reader_init(&c->reader, true, w->srv->cfg.max_message_bytes);
    w->conns[slot] = c;
    return c;
}

static void conn_free(worker *w, conn *c) {
    if (c->state == CONN_WS) atomic_fetch_sub(&g_metrics.connections, 1);
    session_closed(w, c);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    ws_reader_free(&c->reader);
    w->conns[c->slot] = NULL;
    w->free_slots[w->n_free++] = c->slot;
    free(c);
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
    uint8_t *dst = buf_reserve(&c->out, WS_MAX_HEADER + len);
    if (!dst) {
        log_error("worker: out of memory for output; closing connection");
        c->state = CONN_CLOSING;
        conn_mark_dirty(w, c);
        return;
    }
    size_t h = ws_write_header(dst, opcode, true, len, NULL);
    if (len) memcpy(dst + h, data, len);
    c->out.end += h + len;
    METRIC_INC(frames_out_total);
    conn_mark_dirty(w, c);
}

void conn_send_frame(worker *w, conn *c, const Parley__V1__Frame *f) {
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *dst = buf_reserve(&c->out, WS_MAX_HEADER + n);
    if (!dst) {
        c->state = CONN_CLOSING;
        conn_mark_dirty(w, c);
        return;
    }
    size_t h = ws_write_header(dst, WS_OP_BINARY, true, n, NULL);
    parley__v1__frame__pack(f, dst + h);
    c->out.end += h + n;
    METRIC_INC(frames_out_total);
    conn_mark_dirty(w, c);
}

void conn_send_error(worker *w, conn *c, uint64_t request_id, Parley__V1__Status status,
                     const char *error) {
    Parley__V1__Frame f;
    Parley__V1__Response r;
    parley__v1__frame__init(&f);
    parley__v1__response__init(&r);
    f.request_id = request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = &r;
    r.status = status;
    r.error = (char *)error;
    if (status != PARLEY__V1__STATUS__OK) METRIC_INC(request_errors_total);
    conn_send_frame(w, c, &f);
}

void conn_close(worker *w, conn *c, uint16_t code, const char *reason) {
    if (c->state == CONN_CLOSING) return;
    if (c->state == CONN_WS) {
        uint8_t payload[125];
        size_t n = ws_close_payload(payload, code, reason);
        conn_send(w, c, WS_OP_CLOSE, payload, n);
        atomic_fetch_sub(&g_metrics.connections, 1);
    }
    c->state = CONN_CLOSING;
    conn_mark_dirty(w, c);
}

static void set_epollout(worker *w, conn *c, bool on) {
    if (c->epollout == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.u64 = TAG_FIRST_CONN + c->slot};
    epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = on;
}

/* Writes what is queued. Returns false when the connection was closed. */
static bool conn_flush(worker *w, conn *c) {
    while (buf_len(&c->out) > 0) {
        ssize_t n = send(c->fd, buf_head(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            METRIC_ADD(bytes_out_total, (unsigned long)n);
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_epollout(w, c, true);
            return true;
        }
        conn_free(w, c);   /* peer gone: nothing more to say */
        return false;
    }
    set_epollout(w, c, false);
    if (c->state == CONN_CLOSING) {
        conn_free(w, c);
        return false;
    }
    /* room again: a lagging device catches up from the store */
    if (c->lagging) delivery_pump(w, c);
    return true;
}

static void flush_dirty(worker *w) {
    /* pumping may queue more output on the same connections; bounded by the
     * output cap, so two passes settle it */
    for (int pass = 0; pass < 2 && w->dirty; pass++) {
        conn *c = w->dirty;
        w->dirty = NULL;
        while (c) {
            conn *next = c->next_dirty;
            c->dirty = false;
            c->next_dirty = NULL;
            conn_flush(w, c);
            c = next;
        }
    }
}

/* ------------------------------------------------------------------ input */

static void handle_ws(worker *w, conn *c) {
    while (c->state == CONN_WS && buf_len(&c->in) > 0) {
        size_t used = 0;
        ws_message m;
        int r = ws_reader_feed(&c->reader, buf_head(&c->in), buf_len(&c->in), &used, &m);
        if (r == WS_ERROR) {
            METRIC_INC(protocol_errors_total);
            conn_close(w, c, m.close_code, "protocol error");
            return;
        }
        if (r == WS_NEED_MORE) {
            buf_consume(&c->in, used);
            return;
        }
        METRIC_INC(frames_in_total);
        switch (m.kind) {
        case WS_MSG_BINARY:
            session_handle(w, c, m.data, m.len);
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
        buf_consume(&c->in, used);
    }
}

static void conn_readable(worker *w, conn *c) {
    if (c->state == CONN_CLOSING) {
        /* discard: we are only waiting to finish writing */
        char sink[4096];
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) conn_free(w, c);
        return;
    }
    uint8_t *dst = buf_reserve(&c->in, READ_CHUNK);
    if (!dst) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    ssize_t n = recv(c->fd, dst, READ_CHUNK, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_free(w, c);
        return;
    }
    if (n < 0) return;
    c->in.end += (size_t)n;
    METRIC_ADD(bytes_in_total, (unsigned long)n);
    if (c->state == CONN_HTTP) {
        /* the head parser rescans from the start: only when a line ended,
         * so a client trickling bytes costs one scan per line, not per byte */
        if (!memchr(dst, '\n', (size_t)n)) {
            if (buf_len(&c->in) > HTTP_MAX_HEAD_BYTES) conn_free(w, c);
            return;
        }
        if (!http_endpoint_handle(w, c)) return;
    }
    if (c->state == CONN_WS) handle_ws(w, c);
    /* a WebSocket message can be at most max_message plus a header; the
     * reader refuses larger declared lengths, so this holds the buffer bound */
    if (buf_len(&c->in) == 0) buf_free(&c->in);
}

/* ------------------------------------------------------------------ inbox */

static void handle_inbox(worker *w) {
    mpsc_drain_wakeup(&w->inbox);
    worker_msg *msgs[256];
    size_t total = 0, n;
    /* bounded per turn so sockets are served between bursts */
    while (total < MSGS_PER_TURN && (n = mpsc_pop_many(&w->inbox, (void **)msgs, 256)) > 0) {
        total += n;
        for (size_t i = 0; i < n; i++) {
            worker_msg *m = msgs[i];
            conn *c = conn_by_id(w, m->conn_id);
            if (c && c->state == CONN_WS) {
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
                }
            }
            worker_msg_free(m);
        }
    }
    if (total >= MSGS_PER_TURN) {
        /* more may be waiting without a new wake-up: wake ourselves */
        uint64_t one = 1;
        ssize_t r = write(w->inbox.wake_fd, &one, sizeof one);
        (void)r;
    }
}

/* ------------------------------------------------------------------ accept */

static void accept_all(worker *w) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_warn("worker %u: out of file descriptors", w->index);
            return;
        }
        METRIC_INC(connections_accepted_total);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = conn_new(w, fd);
        if (!c) {
            close(fd);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_FIRST_CONN + c->slot};
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) conn_free(w, c);
    }
}

/* closes connections that have not finished the upgrade in time */
static void sweep(worker *w) {
    uint64_t now = clock_mono_ms();
    if (now - w->last_sweep_ms < 1000) return;
    w->last_sweep_ms = now;
    for (uint32_t i = 0; i < w->n_slots; i++) {
        conn *c = w->conns[i];
        if (c && c->state == CONN_HTTP && now - c->opened_ms > w->srv->cfg.handshake_timeout_ms)
            conn_free(w, c);
    }
}

/* ------------------------------------------------------------------ loop */

static void close_all(worker *w, uint16_t code) {
    for (uint32_t i = 0; i < w->n_slots; i++) {
        conn *c = w->conns[i];
        if (!c) continue;
        if (c->state == CONN_WS) conn_close(w, c, code, "server restarting");
        else c->state = CONN_CLOSING;
        conn_mark_dirty(w, c);
    }
    flush_dirty(w);
    /* whatever could not be written at once is dropped: the devices resume
     * from their cursors when they reconnect */
    for (uint32_t i = 0; i < w->n_slots; i++)
        if (w->conns[i]) conn_free(w, w->conns[i]);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    while (!atomic_load(&w->stopping)) {
        int n = epoll_wait(w->epoll_fd, events, EVENTS_PER_WAIT, 1000);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == TAG_LISTEN) {
                accept_all(w);
                continue;
            }
            if (tag == TAG_INBOX) continue;   /* handled below every turn */
            conn *c = w->conns[tag - TAG_FIRST_CONN];
            if (!c) continue;
            if (events[i].events & EPOLLOUT) {
                if (!conn_flush(w, c)) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_readable(w, c);
        }
        handle_inbox(w);
        flush_dirty(w);
        sweep(w);
    }
    close(w->listen_fd);
    w->listen_fd = -1;
    close_all(w, WS_CLOSE_RESTART);
    return NULL;
}

static int listen_socket(const config *cfg) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->listen_port)};
    if (inet_pton(AF_INET, cfg->listen_host, &addr.sin_addr) != 1) {
        if (strcmp(cfg->listen_host, "localhost") == 0) addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else {
            log_error("listen: '%s' is not an IPv4 address", cfg->listen_host);
            return -1;
        }
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 4096)) {
        log_error("listen on %s:%d: %s", cfg->listen_host, cfg->listen_port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static worker *worker_new(server *srv, uint32_t index) {
    worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->srv = srv;
    w->index = index;
    w->listen_fd = listen_socket(&srv->cfg);
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (w->listen_fd < 0 || w->epoll_fd < 0 || mpsc_init(&w->inbox, INBOX_CAP)) {
        if (w->listen_fd >= 0) close(w->listen_fd);
        if (w->epoll_fd >= 0) close(w->epoll_fd);
        free(w);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev);
    ev.data.u64 = TAG_INBOX;
    epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->inbox.wake_fd, &ev);
    return w;
}

int workers_start(server *srv) {
    srv->workers = calloc((size_t)srv->n_workers, sizeof *srv->workers);
    if (!srv->workers) return -1;
    for (int i = 0; i < srv->n_workers; i++) {
        srv->workers[i] = worker_new(srv, (uint32_t)i);
        if (!srv->workers[i]) return -1;
    }
    for (int i = 0; i < srv->n_workers; i++)
        if (pthread_create(&srv->workers[i]->thread, NULL, worker_main, srv->workers[i])) return -1;
    return 0;
}

void workers_stop(server *srv) {
    for (int i = 0; i < srv->n_workers; i++) {
        worker *w = srv->workers[i];
        atomic_store(&w->stopping, true);
        uint64_t one = 1;
        ssize_t r = write(w->inbox.wake_fd, &one, sizeof one);
        (void)r;
    }
    for (int i = 0; i < srv->n_workers; i++) {
        pthread_join(srv->workers[i]->thread, NULL);
        /* from now on posts are dropped: nobody would read them */
        mpsc_close(&srv->workers[i]->inbox);
    }
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
        free(w->conns);
        free(w->generations);
        free(w->free_slots);
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
