/* cql_client.c -- the asynchronous client: one epoll I/O thread, one
 * connection per host, stream ids multiplexed per connection, a queue of
 * requests waiting for a stream or a connection, the prepared-statement
 * cache with re-prepare on UNPREPARED, deadlines, and reconnect with backoff.
 * See cql.h for the contract. Everything below "I/O thread" runs only on
 * that thread; the submit side shares only `mu`-protected fields. */
#include "store/cql/cql.h"
#include "core/clock.h"
#include "store/cql/cql_result_internal.h"
#include "store/cql/cql_wire.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOSTS 16
#define MAX_HOSTS_LEN 1024
#define MAX_STATEMENTS 4096
#define MAX_QUERY_LEN (1u << 20)
#define MAX_STREAMS 32768
#define TICK_MS 50
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define READ_CHUNK 65536

enum req_kind { REQ_USER, REQ_REPREPARE, REQ_STARTUP, REQ_USE };

struct cql_prepared {
    struct cql_prepared *next; /* cache list */
    char *query;
    size_t query_len;
    uint8_t *id; /* server id; read and written on the I/O thread only */
    size_t id_len;
    _Atomic int ready;              /* an id has come (set on the I/O thread) */
    _Atomic int64_t async_sent_ms;  /* cql_prepare_async's last PREPARE, 0 none */
};

typedef struct request {
    struct request *next;
    enum req_kind kind;
    uint8_t opcode;
    cql_callback cb;
    void *ud;
    cql_prepared *stmt;  /* EXECUTE, PREPARE */
    char *query;         /* QUERY (owned); PREPARE uses stmt->query */
    cql_buf params;      /* encoded query parameters (owned) */
    cql_batch *batch;    /* BATCH: its statements (owned), framed at each send */
    cql_consistency cl;  /* BATCH: its consistency */
    int64_t deadline_ms;
    int reprepared;      /* a user request is re-prepared at most once (a batch:
                            at most once per prepared statement in it) */
    struct request *parked; /* REQ_REPREPARE: the user request waiting on it */
} request;

enum conn_state { C_DOWN, C_CONNECTING, C_STARTUP, C_USE, C_READY };

typedef struct conn {
    char host[256], port[16];
    int fd;
    enum conn_state state;
    request **streams;   /* max_streams slots; ORPHAN: timed out, answer pending */
    int in_flight;
    int next_stream;
    uint8_t *rbuf;
    size_t rlen, rcap;
    cql_buf wbuf;
    size_t woff;
    int want_out;
    int64_t next_attempt_ms, connect_deadline_ms;
    int backoff_ms;
} conn;

static request orphan_slot;
#define ORPHAN (&orphan_slot)

struct cql_client {
    cql_options opts;
    char *keyspace;
    pthread_t thread;
    int epfd, evfd;
    conn conns[MAX_HOSTS];
    int nconns;
    int rr;
    /* shared with submitters */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    request *inbox_head, *inbox_tail;
    size_t queued; /* inbox + waiting, bounded by max_queued */
    int closing;
    int ready_conns;
    cql_prepared *stmts;
    size_t nstmts;
    _Atomic uint64_t n_requests, n_timeouts, n_reprepares, n_reconnects, n_conn_failures;
    _Atomic int peak_in_flight; /* written by the I/O thread */
    _Atomic int64_t cancel_at_ms; /* cql_cancel_after: 0, or when every request fails */
    /* I/O thread only */
    request *wait_head, *wait_tail;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void req_free(request *r) {
    if (!r || r == ORPHAN)
        return;
    free(r->query);
    cql_buf_free(&r->params);
    cql_batch_free(r->batch);
    free(r);
}

/* completes a user request: the callback owns res */
static void complete(request *r, cql_result *res) {
    if (!res)
        res = cql_result_error(CQL_ERR_NOMEM, "out of memory");
    if (r->cb)
        r->cb(res, r->ud);
    else
        cql_result_free(res);
}

static void complete_error(request *r, cql_status st, const char *msg) {
    complete(r, cql_result_error(st, msg));
}

static void dequeue_done(cql_client *c) {
    pthread_mutex_lock(&c->mu);
    c->queued--;
    pthread_mutex_unlock(&c->mu);
}

/* ---- I/O thread: connections ---- */

static void set_ready_count(cql_client *c) {
    int n = 0;
    for (int i = 0; i < c->nconns; i++)
        n += c->conns[i].state == C_READY;
    pthread_mutex_lock(&c->mu);
    c->ready_conns = n;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* fails or finishes what a connection had in flight; schedules a reconnect */
static void conn_down(cql_client *c, conn *k, const char *why) {
    if (k->fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
        k->fd = -1;
    }
    if (k->state != C_DOWN)
        atomic_fetch_add(&c->n_conn_failures, 1);
    k->state = C_DOWN;
    for (int s = 0; s < c->opts.max_streams; s++) {
        request *r = k->streams[s];
        k->streams[s] = NULL;
        if (!r || r == ORPHAN)
            continue;
        request *user = r->kind == REQ_REPREPARE ? r->parked : r->kind == REQ_USER ? r : NULL;
        if (user) {
            complete_error(user, CQL_ERR_CONNECTION, why);
            if (user != r)
                req_free(user);
            dequeue_done(c);
        }
        req_free(r);
    }
    k->in_flight = 0;
    k->rlen = 0;
    k->wbuf.len = 0;
    k->woff = 0;
    k->want_out = 0;
    if (k->backoff_ms < BACKOFF_MIN_MS)
        k->backoff_ms = BACKOFF_MIN_MS;
    k->next_attempt_ms = now_ms() + k->backoff_ms;
    k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
    set_ready_count(c);
}

static void update_events(cql_client *c, conn *k) {
    struct epoll_event ev = {.events = EPOLLIN | (k->want_out ? EPOLLOUT : 0), .data.ptr = k};
    epoll_ctl(c->epfd, EPOLL_CTL_MOD, k->fd, &ev);
}

/* writes what is pending; header and body of each frame went into wbuf
 * together, so one write carries whole frames */
static int conn_flush(cql_client *c, conn *k) {
    while (k->woff < k->wbuf.len) {
        ssize_t n = send(k->fd, k->wbuf.data + k->woff, k->wbuf.len - k->woff, MSG_NOSIGNAL);
        if (n > 0) {
            k->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!k->want_out) {
                k->want_out = 1;
                update_events(c, k);
            }
            return 0;
        }
        return -1;
    }
    k->wbuf.len = k->woff = 0;
    if (k->want_out) {
        k->want_out = 0;
        update_events(c, k);
    }
    return 0;
}

static int alloc_stream(cql_client *c, conn *k) {
    if (k->in_flight >= c->opts.max_streams)
        return -1;
    for (int i = 0; i < c->opts.max_streams; i++) {
        int s = (k->next_stream + i) % c->opts.max_streams;
        if (!k->streams[s]) {
            k->next_stream = (s + 1) % c->opts.max_streams;
            return s;
        }
    }
    return -1;
}

/* frames r on a free stream of k (the caller checked there is one) */
static int conn_send(cql_client *c, conn *k, request *r) {
    int s = alloc_stream(c, k);
    if (s < 0)
        return -1;
    cql_buf *b = &k->wbuf;
    size_t start = cql_frame_begin(b, (int16_t)s, r->opcode);
    switch (r->opcode) {
    case CQL_OP_STARTUP:
        cql_body_startup(b);
        break;
    case CQL_OP_QUERY:
        cql_put_long_string(b, r->query, strlen(r->query));
        cql_put_raw(b, r->params.data, r->params.len);
        break;
    case CQL_OP_PREPARE:
        cql_put_long_string(b, r->stmt->query, r->stmt->query_len);
        break;
    case CQL_OP_EXECUTE:
        cql_put_short_bytes(b, r->stmt->id, r->stmt->id_len);
        cql_put_raw(b, r->params.data, r->params.len);
        break;
    case CQL_OP_BATCH: /* framed here: a re-prepared statement's id is new */
        if (cql_batch_body(r->batch, r->cl, b) != CQL_OK)
            b->oom = 1;
        break;
    }
    cql_frame_end(b, start);
    if (b->oom) {
        b->oom = 0;
        b->len = start;
        return -2;
    }
    k->streams[s] = r;
    k->in_flight++;
    if (k->in_flight > atomic_load(&c->peak_in_flight))
        atomic_store(&c->peak_in_flight, k->in_flight);
    return 0;
}

static void conn_start(cql_client *c, conn *k) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    k->next_attempt_ms = now_ms() + k->backoff_ms;
    if (getaddrinfo(k->host, k->port, &hints, &ai) != 0 || !ai) {
        k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
        return;
    }
    k->fd = fd;
    k->state = C_CONNECTING;
    k->connect_deadline_ms = now_ms() + c->opts.connect_timeout_ms;
    k->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = k};
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
    atomic_fetch_add(&c->n_reconnects, 1);
}

static void send_internal(cql_client *c, conn *k, enum req_kind kind) {
    request *r = calloc(1, sizeof *r);
    if (!r) {
        conn_down(c, k, "out of memory");
        return;
    }
    r->kind = kind;
    r->deadline_ms = k->connect_deadline_ms;
    if (kind == REQ_STARTUP) {
        r->opcode = CQL_OP_STARTUP;
    } else {
        size_t n = strlen(c->keyspace) + 8;
        r->opcode = CQL_OP_QUERY;
        r->query = malloc(n);
        if (r->query)
            snprintf(r->query, n, "USE \"%s\"", c->keyspace);
        cql_body_params(&r->params, CQL_ONE, NULL, 0, NULL, 0);
    }
    if (!r->query && kind == REQ_USE) {
        req_free(r);
        conn_down(c, k, "out of memory");
        return;
    }
    if (conn_send(c, k, r) != 0) {
        req_free(r);
        conn_down(c, k, "out of memory");
        return;
    }
    if (conn_flush(c, k) != 0)
        conn_down(c, k, "write failed");
}

/* ---- I/O thread: requests ---- */

static void wait_push_front(cql_client *c, request *r) {
    r->next = c->wait_head;
    c->wait_head = r;
    if (!c->wait_tail)
        c->wait_tail = r;
}

/* hands waiting requests to ready connections with free streams, round-robin */
static void dispatch(cql_client *c) {
    while (c->wait_head) {
        conn *k = NULL;
        for (int i = 0; i < c->nconns; i++) {
            conn *cand = &c->conns[(c->rr + i) % c->nconns];
            if (cand->state == C_READY && cand->in_flight < c->opts.max_streams) {
                k = cand;
                c->rr = (c->rr + i + 1) % c->nconns;
                break;
            }
        }
        if (!k)
            break; /* the rest waits for a stream; what was framed is flushed below */
        request *r = c->wait_head;
        c->wait_head = r->next;
        if (!c->wait_head)
            c->wait_tail = NULL;
        r->next = NULL;
        int rc = conn_send(c, k, r);
        if (rc != 0) {
            complete_error(r, CQL_ERR_NOMEM, "out of memory framing the request");
            req_free(r);
            dequeue_done(c);
        }
    }
    for (int i = 0; i < c->nconns; i++)
        if (c->conns[i].fd >= 0 && c->conns[i].wbuf.len > c->conns[i].woff &&
            conn_flush(c, &c->conns[i]) != 0)
            conn_down(c, &c->conns[i], "write failed");
}

static int set_stmt_id(cql_prepared *st, const cql_result *res) {
    const uint8_t *id;
    size_t len;
    if (cql_result_prepared_id(res, &id, &len) != 0)
        return -1;
    uint8_t *copy = malloc(len);
    if (!copy)
        return -1;
    memcpy(copy, id, len);
    free(st->id);
    st->id = copy;
    st->id_len = len;
    atomic_store(&st->ready, 1);
    return 0;
}

/* the statement an UNPREPARED answer to r names, if r may re-prepare it:
 * an EXECUTE's own (once), or the batch statement whose id it names (at
 * most once per prepared statement of the batch) */
static cql_prepared *unprepared_statement(request *r, const cql_result *res) {
    if (r->kind != REQ_USER)
        return NULL;
    if (r->opcode == CQL_OP_EXECUTE)
        return r->stmt && !r->reprepared ? r->stmt : NULL;
    if (r->opcode != CQL_OP_BATCH || !r->batch)
        return NULL;
    const uint8_t *id;
    size_t len;
    if (cql_result_unprepared_id(res, &id, &len) != 0)
        return NULL;
    size_t n = 0;
    const cql_prepared *named = NULL, *st;
    for (size_t i = 0; (st = cql_batch_statement(r->batch, i)); i++) {
        n++;
        if (!named && st->id_len == len && st->id && memcmp(st->id, id, len) == 0)
            named = st;
    }
    if (!named || (size_t)r->reprepared >= n)
        return NULL;
    return (cql_prepared *)named; /* the client owns it; only this thread changes its id */
}

const uint8_t *cql_prepared_id(const cql_prepared *st) { return st->id; }
size_t cql_prepared_id_len(const cql_prepared *st) { return st->id_len; }

/* a response for stream s of k */
static void on_response(cql_client *c, conn *k, int s, cql_result *res) {
    request *r = k->streams[s];
    k->streams[s] = NULL;
    k->in_flight--;
    if (r == ORPHAN) { /* it timed out; the caller has had its answer */
        cql_result_free(res);
        return;
    }
    switch (r->kind) {
    case REQ_STARTUP:
    case REQ_USE: {
        int ok = res && res->status == CQL_OK;
        enum req_kind kind = r->kind;
        cql_result_free(res);
        req_free(r);
        if (!ok) {
            conn_down(c, k, "handshake refused");
            return;
        }
        if (kind == REQ_STARTUP && c->keyspace) {
            k->state = C_USE;
            send_internal(c, k, REQ_USE);
            return;
        }
        k->state = C_READY;
        k->backoff_ms = BACKOFF_MIN_MS;
        set_ready_count(c);
        return;
    }
    case REQ_REPREPARE: {
        request *user = r->parked;
        cql_prepared *st = r->stmt; /* the statement prepared again (a batch has many) */
        req_free(r);
        if (res && res->status == CQL_OK && set_stmt_id(st, res) == 0) {
            cql_result_free(res);
            wait_push_front(c, user); /* re-sent with the new id */
            return;
        }
        complete(user, res);
        req_free(user);
        dequeue_done(c);
        return;
    }
    case REQ_USER:
        break;
    }
    cql_prepared *lost = res && res->status == CQL_ERR_UNPREPARED ? unprepared_statement(r, res) : NULL;
    if (lost) {
        /* the server lost the id: prepare again on this connection, then re-send */
        request *p = calloc(1, sizeof *p);
        if (p) {
            p->kind = REQ_REPREPARE;
            p->opcode = CQL_OP_PREPARE;
            p->stmt = lost;
            p->parked = r;
            p->deadline_ms = r->deadline_ms;
            r->reprepared++;
            if (conn_send(c, k, p) == 0) {
                atomic_fetch_add(&c->n_reprepares, 1);
                cql_result_free(res);
                return;
            }
            r->reprepared--;
            free(p);
        }
    }
    if (res && r->opcode == CQL_OP_PREPARE && r->stmt && res->status == CQL_OK)
        set_stmt_id(r->stmt, res);
    complete(r, res);
    req_free(r);
    dequeue_done(c);
}

static void conn_readable(cql_client *c, conn *k) {
    for (int rounds = 0; rounds < 64; rounds++) {
        if (k->rcap - k->rlen < READ_CHUNK) {
            /* whole frames are consumed as they complete, so the buffer holds
             * at most one partial frame (bounded by CQL_MAX_BODY) and a read */
            size_t limit = CQL_MAX_BODY + CQL_HEADER_LEN + READ_CHUNK;
            size_t need = k->rlen + READ_CHUNK;
            if (need > limit) {
                conn_down(c, k, "response too large");
                return;
            }
            size_t cap = k->rcap ? k->rcap : READ_CHUNK * 2;
            while (cap < need)
                cap *= 2;
            if (cap > limit)
                cap = limit;
            uint8_t *nb = realloc(k->rbuf, cap);
            if (!nb) {
                conn_down(c, k, "out of memory");
                return;
            }
            k->rbuf = nb;
            k->rcap = cap;
        }
        ssize_t n = recv(k->fd, k->rbuf + k->rlen, k->rcap - k->rlen, 0);
        if (n == 0) {
            conn_down(c, k, "connection closed by the server");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_down(c, k, strerror(errno));
            return;
        }
        k->rlen += (size_t)n;
        size_t pos = 0;
        for (;;) {
            cql_header h;
            const uint8_t *body;
            int got = cql_frame_next(k->rbuf + pos, k->rlen - pos, CQL_MAX_BODY, &h, &body);
            if (got < 0) {
                conn_down(c, k, "bad frame header");
                return;
            }
            if (got == 0)
                break; /* partial frame: wait for the rest */
            pos += CQL_HEADER_LEN + h.length;
            if (h.stream < 0 || h.stream >= c->opts.max_streams || !k->streams[h.stream])
                continue; /* events (stream -1) and answers nobody waits for */
            if (h.flags & 0x01) { /* compression was never negotiated */
                conn_down(c, k, "compressed frame");
                return;
            }
            cql_result *res = cql_response_parse(h.flags, h.opcode, body, h.length);
            on_response(c, k, h.stream, res);
            if (k->state == C_DOWN)
                return;
        }
        memmove(k->rbuf, k->rbuf + pos, k->rlen - pos);
        k->rlen -= pos;
    }
}

static void conn_event(cql_client *c, conn *k, uint32_t events) {
    if (k->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if ((events & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            conn_down(c, k, "connect failed");
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        k->state = C_STARTUP;
        k->want_out = 0;
        update_events(c, k);
        send_internal(c, k, REQ_STARTUP);
        return;
    }
    if (events & EPOLLIN)
        conn_readable(c, k);
    if (k->state != C_DOWN && (events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN))
        conn_down(c, k, "connection error");
    if (k->state != C_DOWN && (events & EPOLLOUT) && conn_flush(c, k) != 0)
        conn_down(c, k, "write failed");
}

/* deadlines: waiting requests and streams in flight; connects and reconnects */
static void tick(cql_client *c) {
    int64_t now = now_ms();
    /* past cql_cancel_after's moment every request is due */
    int64_t cancel_at = atomic_load(&c->cancel_at_ms);
    if (cancel_at && now >= cancel_at)
        now = INT64_MAX;
    request **pp = &c->wait_head;
    c->wait_tail = NULL;
    while (*pp) {
        request *r = *pp;
        if (now >= r->deadline_ms) {
            *pp = r->next;
            atomic_fetch_add(&c->n_timeouts, 1);
            complete_error(r, CQL_ERR_TIMEOUT, "no connection ready within the deadline");
            req_free(r);
            dequeue_done(c);
            continue;
        }
        c->wait_tail = r;
        pp = &r->next;
    }
    for (int i = 0; i < c->nconns; i++) {
        conn *k = &c->conns[i];
        if (k->state == C_DOWN) {
            if (now >= k->next_attempt_ms && now != INT64_MAX)
                conn_start(c, k);
            continue;
        }
        if (k->state != C_READY && now >= k->connect_deadline_ms) {
            conn_down(c, k, "connect timed out");
            continue;
        }
        for (int s = 0; s < c->opts.max_streams && k->in_flight > 0; s++) {
            request *r = k->streams[s];
            if (!r || r == ORPHAN || now < r->deadline_ms)
                continue;
            /* the stream stays taken until its late answer arrives */
            k->streams[s] = ORPHAN;
            request *user = r->kind == REQ_REPREPARE ? r->parked : r->kind == REQ_USER ? r : NULL;
            if (user) {
                atomic_fetch_add(&c->n_timeouts, 1);
                complete_error(user, CQL_ERR_TIMEOUT, "no answer within the deadline");
                if (user != r)
                    req_free(user);
                dequeue_done(c);
            }
            req_free(r);
        }
    }
}

static void take_inbox(cql_client *c) {
    uint64_t v;
    if (read(c->evfd, &v, sizeof v) < 0) { /* nothing to clear */ }
    pthread_mutex_lock(&c->mu);
    request *head = c->inbox_head;
    c->inbox_head = c->inbox_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    while (head) {
        request *r = head;
        head = r->next;
        r->next = NULL;
        if (c->wait_tail)
            c->wait_tail->next = r;
        else
            c->wait_head = r;
        c->wait_tail = r;
    }
}

static int is_closing(cql_client *c) {
    pthread_mutex_lock(&c->mu);
    int v = c->closing;
    pthread_mutex_unlock(&c->mu);
    return v;
}

static void *io_main(void *arg) {
    cql_client *c = arg;
    struct epoll_event evs[64];
    int64_t last_tick = 0;
    while (!is_closing(c)) {
        int n = epoll_wait(c->epfd, evs, 64, TICK_MS);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                take_inbox(c);
                continue;
            }
            conn *k = evs[i].data.ptr;
            if (k->fd >= 0)
                conn_event(c, k, evs[i].events);
        }
        int64_t now = now_ms();
        if (now - last_tick >= TICK_MS) {
            tick(c);
            last_tick = now;
        }
        dispatch(c);
    }
    /* closing: what waits was never sent (CQL_ERR_CLOSED); what is in
     * flight may have been applied (CQL_ERR_CONNECTION) */
    take_inbox(c);
    while (c->wait_head) {
        request *r = c->wait_head;
        c->wait_head = r->next;
        complete_error(r, CQL_ERR_CLOSED, "client closed");
        req_free(r);
        dequeue_done(c);
    }
    c->wait_tail = NULL;
    for (int i = 0; i < c->nconns; i++)
        conn_down(c, &c->conns[i], "client closed");
    return NULL;
}

/* ---- submit side (any thread) ---- */

static int parse_hosts(cql_client *c, const char *hosts) {
    if (!hosts || strlen(hosts) >= MAX_HOSTS_LEN)
        return -1;
    char buf[MAX_HOSTS_LEN];
    strcpy(buf, hosts);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (c->nconns >= MAX_HOSTS)
            return -1;
        conn *k = &c->conns[c->nconns];
        char *host = tok, *colon;
        if (tok[0] == '[') { /* [v6]:port */
            char *end = strchr(tok, ']');
            if (!end || end[1] != ':')
                return -1;
            *end = '\0';
            host = tok + 1;
            colon = end + 1;
        } else {
            colon = strrchr(tok, ':');
            if (!colon)
                return -1;
            *colon = '\0';
        }
        if (strlen(host) == 0 || strlen(host) >= sizeof k->host || strlen(colon + 1) == 0 ||
            strlen(colon + 1) >= sizeof k->port || strspn(colon + 1, "0123456789") != strlen(colon + 1))
            return -1;
        strcpy(k->host, host);
        strcpy(k->port, colon + 1);
        c->nconns++;
    }
    return c->nconns > 0 ? 0 : -1;
}

static int valid_keyspace(const char *ks) {
    size_t n = strlen(ks);
    return n > 0 && n <= 48 &&
           strspn(ks, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

cql_client *cql_connect(const cql_options *opts) {
    cql_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->opts = *opts;
    if (c->opts.request_timeout_ms <= 0)
        c->opts.request_timeout_ms = 12000;
    if (c->opts.connect_timeout_ms <= 0)
        c->opts.connect_timeout_ms = 5000;
    if (c->opts.max_streams <= 0)
        c->opts.max_streams = 1024;
    if (c->opts.max_streams > MAX_STREAMS)
        c->opts.max_streams = MAX_STREAMS;
    if (c->opts.max_queued <= 0)
        c->opts.max_queued = 65536;
    c->epfd = c->evfd = -1;
    if (parse_hosts(c, opts->hosts) != 0)
        goto fail;
    c->opts.hosts = NULL; /* not kept: the caller owns the string */
    if (opts->keyspace) {
        if (!valid_keyspace(opts->keyspace) || !(c->keyspace = strdup(opts->keyspace)))
            goto fail;
    }
    c->opts.keyspace = NULL;
    for (int i = 0; i < c->nconns; i++) {
        c->conns[i].fd = -1;
        c->conns[i].backoff_ms = BACKOFF_MIN_MS;
        c->conns[i].streams = calloc((size_t)c->opts.max_streams, sizeof(request *));
        if (!c->conns[i].streams)
            goto fail;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->epfd < 0 || c->evfd < 0)
        goto fail_sync;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) != 0)
        goto fail_sync;
    if (pthread_create(&c->thread, NULL, io_main, c) != 0)
        goto fail_sync;
    return c;
fail_sync:
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
fail:
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->evfd >= 0)
        close(c->evfd);
    for (int i = 0; i < c->nconns; i++)
        free(c->conns[i].streams);
    free(c->keyspace);
    free(c);
    return NULL;
}

int cql_wait_ready(cql_client *c, int timeout_ms) {
    struct timespec until = clock_realtime_deadline(timeout_ms);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->ready_conns == 0 && rc == 0)
        rc = pthread_cond_timedwait(&c->cond, &c->mu, &until);
    int ok = c->ready_conns > 0;
    pthread_mutex_unlock(&c->mu);
    return ok ? 0 : -1;
}

void cql_close(cql_client *c) {
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    pthread_mutex_unlock(&c->mu);
    uint64_t one = 1;
    if (write(c->evfd, &one, sizeof one) < 0) { /* the tick ends the loop anyway */ }
    pthread_join(c->thread, NULL);
    for (int i = 0; i < c->nconns; i++) {
        free(c->conns[i].streams);
        free(c->conns[i].rbuf);
        cql_buf_free(&c->conns[i].wbuf);
    }
    while (c->stmts) {
        cql_prepared *s = c->stmts;
        c->stmts = s->next;
        free(s->query);
        free(s->id);
        free(s);
    }
    close(c->epfd);
    close(c->evfd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c->keyspace);
    free(c);
}

/* queues r for the I/O thread; on failure r is freed and the status given */
static cql_status submit(cql_client *c, request *r) {
    int64_t now = now_ms();
    r->deadline_ms = now + c->opts.request_timeout_ms;
    int64_t cancel_at = atomic_load(&c->cancel_at_ms);
    if (cancel_at && cancel_at < r->deadline_ms)
        r->deadline_ms = cancel_at;
    pthread_mutex_lock(&c->mu);
    cql_status st = CQL_OK;
    if (c->closing || (cancel_at && now >= cancel_at))
        st = CQL_ERR_CLOSED;
    else if (c->queued >= (size_t)c->opts.max_queued)
        st = CQL_ERR_BUSY;
    if (st != CQL_OK) {
        pthread_mutex_unlock(&c->mu);
        req_free(r);
        return st;
    }
    c->queued++;
    if (c->inbox_tail)
        c->inbox_tail->next = r;
    else
        c->inbox_head = r;
    c->inbox_tail = r;
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(&c->n_requests, 1);
    uint64_t one = 1;
    if (write(c->evfd, &one, sizeof one) < 0) { /* counter saturated: already woken */ }
    return CQL_OK;
}

static request *new_request(uint8_t opcode, cql_callback cb, void *ud) {
    request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = REQ_USER;
    r->opcode = opcode;
    r->cb = cb;
    r->ud = ud;
    return r;
}

static cql_status add_params(request *r, const cql_values *values, cql_consistency cl,
                             int32_t page_size, const uint8_t *ps, size_t ps_len) {
    if (values && values->error)
        return CQL_ERR_ARG;
    if (ps_len > CQL_MAX_VALUE_LEN)
        return CQL_ERR_ARG;
    cql_body_params(&r->params, cl, values, page_size, ps, ps_len);
    return r->params.oom ? CQL_ERR_NOMEM : CQL_OK;
}

cql_status cql_execute(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                       cql_consistency cl, int32_t page_size, const uint8_t *paging_state,
                       size_t paging_len, cql_callback cb, void *ud) {
    if (!stmt)
        return CQL_ERR_ARG;
    request *r = new_request(CQL_OP_EXECUTE, cb, ud);
    if (!r)
        return CQL_ERR_NOMEM;
    r->stmt = (cql_prepared *)stmt; /* the client owns it; its id changes on the I/O thread only */
    cql_status st = add_params(r, values, cl, page_size, paging_state, paging_len);
    if (st != CQL_OK) {
        req_free(r);
        return st;
    }
    return submit(c, r);
}

cql_status cql_execute_lwt(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                           cql_consistency cl, cql_consistency serial, cql_callback cb, void *ud) {
    if (!stmt || (serial != CQL_SERIAL && serial != CQL_LOCAL_SERIAL) || (values && values->error))
        return CQL_ERR_ARG;
    request *r = new_request(CQL_OP_EXECUTE, cb, ud);
    if (!r)
        return CQL_ERR_NOMEM;
    r->stmt = (cql_prepared *)stmt;
    cql_body_params_serial(&r->params, cl, serial, values, 0, NULL, 0);
    if (r->params.oom) {
        req_free(r);
        return CQL_ERR_NOMEM;
    }
    return submit(c, r);
}

cql_status cql_query(cql_client *c, const char *query, const cql_values *values,
                     cql_consistency cl, cql_callback cb, void *ud) {
    if (!query || strlen(query) > MAX_QUERY_LEN)
        return CQL_ERR_ARG;
    request *r = new_request(CQL_OP_QUERY, cb, ud);
    if (!r)
        return CQL_ERR_NOMEM;
    r->query = strdup(query);
    cql_status st = r->query ? add_params(r, values, cl, 0, NULL, 0) : CQL_ERR_NOMEM;
    if (st != CQL_OK) {
        req_free(r);
        return st;
    }
    return submit(c, r);
}

cql_status cql_execute_batch(cql_client *c, const cql_batch *b, cql_consistency cl, cql_callback cb,
                             void *ud) {
    /* what cql_batch_body would refuse, refused now, not at framing */
    cql_status st = cql_batch_check(b);
    if (st != CQL_OK)
        return st;
    request *r = new_request(CQL_OP_BATCH, cb, ud);
    if (!r)
        return CQL_ERR_NOMEM;
    r->batch = cql_batch_copy(b);
    r->cl = cl;
    if (!r->batch) {
        req_free(r);
        return CQL_ERR_NOMEM;
    }
    return submit(c, r);
}

/* ---- synchronous wrappers ---- */

typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done;
    cql_result *res;
} sync_wait;

static void sync_done(cql_result *res, void *ud) {
    sync_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->res = res;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/* the request carries its own deadline, so the wait ends */
static cql_result *sync_finish(sync_wait *w, cql_status st) {
    if (st != CQL_OK) {
        w->res = cql_result_error(st, cql_status_name(st));
    } else {
        pthread_mutex_lock(&w->mu);
        while (!w->done)
            pthread_cond_wait(&w->cond, &w->mu);
        pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    return w->res;
}

static void sync_init(sync_wait *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
}

cql_result *cql_execute_sync(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                             cql_consistency cl, int32_t page_size,
                             const uint8_t *paging_state, size_t paging_len) {
    sync_wait w;
    sync_init(&w);
    cql_status st = cql_execute(c, stmt, values, cl, page_size, paging_state, paging_len,
                                sync_done, &w);
    return sync_finish(&w, st);
}

cql_result *cql_execute_lwt_sync(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                                 cql_consistency cl, cql_consistency serial) {
    sync_wait w;
    sync_init(&w);
    cql_status st = cql_execute_lwt(c, stmt, values, cl, serial, sync_done, &w);
    return sync_finish(&w, st);
}

cql_result *cql_query_sync(cql_client *c, const char *query, cql_consistency cl) {
    sync_wait w;
    sync_init(&w);
    cql_status st = cql_query(c, query, NULL, cl, sync_done, &w);
    return sync_finish(&w, st);
}

/* the cache's handle of query (made if new); NULL when the cache is full
 * or out of memory */
static cql_prepared *cached_statement(cql_client *c, const char *query, size_t qlen) {
    pthread_mutex_lock(&c->mu);
    cql_prepared *st = c->stmts;
    while (st && strcmp(st->query, query) != 0)
        st = st->next;
    if (!st && c->nstmts < MAX_STATEMENTS) {
        st = calloc(1, sizeof *st);
        if (st && !(st->query = strdup(query))) {
            free(st);
            st = NULL;
        }
        if (st) {
            st->query_len = qlen;
            st->next = c->stmts;
            c->stmts = st;
            c->nstmts++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

cql_prepared *cql_prepare_async(cql_client *c, const char *query) {
    size_t qlen = query ? strlen(query) : 0;
    if (!query || qlen > MAX_QUERY_LEN)
        return NULL;
    cql_prepared *st = cached_statement(c, query, qlen);
    if (!st || atomic_load(&st->ready))
        return st;
    /* one PREPARE in flight at a time; again once the last could have timed out */
    int64_t now = now_ms(), sent = atomic_load(&st->async_sent_ms);
    if ((sent == 0 || now - sent > c->opts.request_timeout_ms) &&
        atomic_compare_exchange_strong(&st->async_sent_ms, &sent, now)) {
        request *r = new_request(CQL_OP_PREPARE, NULL, NULL); /* the answer sets the id */
        if (r) {
            r->stmt = st;
            submit(c, r);
        }
    }
    return st;
}

int cql_prepared_ready(const cql_prepared *st) { return atomic_load(&st->ready); }

cql_prepared *cql_prepare(cql_client *c, const char *query, cql_result **err) {
    if (err)
        *err = NULL;
    size_t qlen = query ? strlen(query) : 0;
    if (!query || qlen > MAX_QUERY_LEN) {
        if (err)
            *err = cql_result_error(CQL_ERR_ARG, "query missing or too long");
        return NULL;
    }
    cql_prepared *st = cached_statement(c, query, qlen);
    if (!st) {
        if (err)
            *err = cql_result_error(CQL_ERR_NOMEM, "statement cache full or out of memory");
        return NULL;
    }
    /* prepared (again) each time it is asked for: the id is set on the I/O thread */
    sync_wait w;
    sync_init(&w);
    request *r = new_request(CQL_OP_PREPARE, sync_done, &w);
    cql_status s = CQL_ERR_NOMEM;
    if (r) {
        r->stmt = st;
        s = submit(c, r);
    }
    cql_result *res = sync_finish(&w, s);
    if (res && res->status == CQL_OK) {
        cql_result_free(res);
        return st;
    }
    if (err)
        *err = res;
    else
        cql_result_free(res);
    return NULL;
}

void cql_cancel_after(cql_client *c, int ms) {
    int64_t at = now_ms() + (ms > 0 ? ms : 0);
    if (at == 0)
        at = 1;
    int64_t cur = atomic_load(&c->cancel_at_ms);
    while ((cur == 0 || at < cur) && !atomic_compare_exchange_weak(&c->cancel_at_ms, &cur, at)) {
    }
    uint64_t one = 1;
    if (write(c->evfd, &one, sizeof one) < 0) { /* the tick sees it anyway */ }
}

int cql_cancelled(cql_client *c) {
    int64_t at = atomic_load(&c->cancel_at_ms);
    return at && now_ms() >= at;
}

void cql_get_stats(cql_client *c, cql_stats *out) {
    out->requests = atomic_load(&c->n_requests);
    out->timeouts = atomic_load(&c->n_timeouts);
    out->reprepares = atomic_load(&c->n_reprepares);
    out->reconnects = atomic_load(&c->n_reconnects);
    out->connection_failures = atomic_load(&c->n_conn_failures);
    out->peak_in_flight = atomic_load(&c->peak_in_flight);
    pthread_mutex_lock(&c->mu);
    out->ready_connections = c->ready_conns;
    pthread_mutex_unlock(&c->mu);
}
