/* redis_cluster.c -- the asynchronous Redis Cluster client: one epoll I/O
 * thread, one connection per master, a FIFO of written commands per
 * connection (replies come back in order), a queue per node of commands
 * waiting to be written, a list of commands waiting for the slot map or a
 * retry backoff, deadlines, and reconnect with backoff. See redis_cluster.h
 * for the contract. Everything below "I/O thread" runs only on that thread;
 * the submit side shares only `mu`-protected fields and the atomics. */
#include "registry/redis_cluster.h"
#include "core/clock.h"
#include "registry/redis_cluster_parse.h"

#include <arpa/inet.h>
#include <errno.h>
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

#define MAX_NODES 64      /* masters (and addresses ever seen) per client */
#define MAX_SEEDS_LEN 1024
#define TICK_MS 10
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define RETRY_BACKOFF_MIN_MS 10
#define RETRY_BACKOFF_MAX_MS 400
/* a slot map read unanswered this long goes to another node as well: a
 * master that is stopped (SIGSTOP, a long GC-like stall) keeps its TCP
 * connection open and answers nothing, and waiting timeout_ms for it held
 * up every map read (at start: every command) while the others were fine */
#define REFRESH_PATIENCE_MS 500
#define READ_CHUNK 65536

static const char ASKING_CMD[] = "*1\r\n$6\r\nASKING\r\n";

enum cmd_kind { CMD_USER, CMD_SLOTS };

typedef struct cmd {
    struct cmd *next;
    enum cmd_kind kind;
    char *buf; /* the encoded command (owned) */
    size_t len;
    int slot;
    rc_callback cb;
    void *ud;
    int64_t deadline_ms, not_before_ms;
    int redirects, retries;
    int ask_node;  /* >= 0: the next try goes there, after ASKING */
    int to_node;   /* CMD_SLOTS: the node asked */
    int answered;  /* completed (timeout) while its reply is still due */
} cmd;

typedef struct cmd_list {
    cmd *head, *tail;
    size_t len;
} cmd_list;

/* a written command, or the ASKING in front of one (c == NULL) */
typedef struct ring_entry {
    cmd *c;
} ring_entry;

enum node_state { N_DOWN, N_CONNECTING, N_UP };

typedef struct node {
    char host[RC_HOST_MAX];
    int port;
    int fd;
    enum node_state state;
    redisReader *reader;
    char *wbuf;
    size_t wlen, woff, wcap;
    int want_out;
    ring_entry *ring; /* written, reply pending: 2 * max_in_flight (ASKING) */
    size_t rhead, rcount;
    size_t user_in_flight;
    cmd_list queue; /* routed here, not written yet */
    size_t since_reply; /* bytes received towards the reply being read */
    int64_t next_attempt_ms, connect_deadline_ms;
    int backoff_ms;
    int slots_pending;       /* a CLUSTER SLOTS of ours is queued or written here, unanswered */
    int64_t last_reply_ms;   /* the last reply read from this connection */
} node;

struct rc_client {
    rc_options o;
    pthread_t thread;
    int epfd, evfd;
    /* shared with submitters */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    cmd_list inbox;
    size_t queued; /* accepted, not completed; bounded by max_queued */
    int closing;
    int ready;     /* the slot map covers every slot */
    int8_t shared_owner[RC_SLOTS]; /* owner as last applied, for rc_slot_map; -1 unknown */
    int have_map;
    _Atomic int refresh_asked;     /* rc_refresh */
    _Atomic uint64_t n_commands, n_rejected, n_moved, n_ask, n_tryagain, n_clusterdown, n_refreshes, n_connects,
        n_conn_failures, n_timeouts, n_peak;
    /* I/O thread only */
    node nodes[MAX_NODES];
    int nnodes;
    int8_t owner[RC_SLOTS]; /* node index, -1 unknown */
    cmd_list waiting;       /* no owner known yet, or backing off */
    int want_refresh, refresh_in_flight, refresh_rr; /* in flight: CLUSTER SLOTS unanswered, <= nnodes */
    int64_t last_refresh_ms, last_tick_ms;
    int64_t wanted_ms; /* the last request_refresh: a read sent before it does not satisfy it */
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void list_push(cmd_list *l, cmd *c) {
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->len++;
}

static cmd *list_pop(cmd_list *l) {
    cmd *c = l->head;
    if (!c)
        return NULL;
    l->head = c->next;
    if (!l->head)
        l->tail = NULL;
    l->len--;
    c->next = NULL;
    return c;
}

static void cmd_free(cmd *c) {
    if (!c)
        return;
    free(c->buf);
    free(c);
}

/* ---- completion ---- */

static void set_ready(rc_client *c, int ready) {
    pthread_mutex_lock(&c->mu);
    c->ready = ready;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void request_refresh(rc_client *c) {
    c->want_refresh = 1;
    c->wanted_ms = now_ms();
}

/* hands cmd's outcome to its owner; frees cmd unless it is still in a ring
 * (keep: the reply is due and must be read past) */
static void complete(rc_client *c, cmd *k, redisReply *reply, const char *error, int keep) {
    if (k->answered) {
        /* already completed (timeout): this is the reply it still owed */
        if (reply)
            freeReplyObject(reply);
    } else if (k->kind == CMD_SLOTS) {
        /* internal: a failed map read lets the next node try */
        k->answered = 1;
        if (reply)
            freeReplyObject(reply);
        c->refresh_in_flight--;
        c->nodes[k->to_node].slots_pending = 0;
        if (error)
            request_refresh(c);
    } else {
        k->answered = 1;
        if (k->cb)
            k->cb(k->ud, reply, error);
        else if (reply)
            freeReplyObject(reply);
        pthread_mutex_lock(&c->mu);
        c->queued--;
        pthread_mutex_unlock(&c->mu);
    }
    if (!keep)
        cmd_free(k);
}

/* ---- I/O thread: connections ---- */

static void update_events(rc_client *c, node *n) {
    struct epoll_event ev = {.events = EPOLLIN | (n->want_out ? EPOLLOUT : 0), .data.u64 = (uint64_t)(n - c->nodes) + 1};
    epoll_ctl(c->epfd, EPOLL_CTL_MOD, n->fd, &ev);
}

static void fail_queue(rc_client *c, node *n, const char *why) {
    cmd *k;
    while ((k = list_pop(&n->queue)))
        complete(c, k, NULL, why, 0);
}

/* closes n: what was written completes with "connection lost" (it may have
 * run); what was queued waits for the reconnect, or fails when the node
 * refused us (unreachable). Schedules the reconnect and a slot map read. */
static void node_down(rc_client *c, node *n, const char *why, int refused) {
    if (n->fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, n->fd, NULL);
        close(n->fd);
        n->fd = -1;
    }
    atomic_fetch_add(&c->n_conn_failures, 1);
    n->state = N_DOWN;
    while (n->rcount > 0) {
        cmd *k = n->ring[n->rhead].c;
        n->rhead = (n->rhead + 1) % (2 * c->o.max_in_flight_per_node);
        n->rcount--;
        if (k)
            complete(c, k, NULL, why, 0);
    }
    n->user_in_flight = 0;
    n->wlen = n->woff = 0;
    n->want_out = 0;
    n->since_reply = 0;
    if (n->reader) {
        redisReaderFree(n->reader);
        n->reader = NULL;
    }
    if (refused)
        fail_queue(c, n, "unreachable");
    if (n->backoff_ms < BACKOFF_MIN_MS)
        n->backoff_ms = BACKOFF_MIN_MS;
    n->next_attempt_ms = now_ms() + n->backoff_ms;
    n->backoff_ms = n->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : n->backoff_ms * 2;
    request_refresh(c);
}

static int sockaddr_of(const node *n, struct sockaddr_storage *ss, socklen_t *sl) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, n->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)n->port);
        *sl = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, n->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)n->port);
        *sl = sizeof *a6;
        return 0;
    }
    return -1;
}

static void node_connect(rc_client *c, node *n) {
    struct sockaddr_storage ss;
    socklen_t sl;
    if (sockaddr_of(n, &ss, &sl) != 0) {
        node_down(c, n, "unreachable", 1);
        return;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        node_down(c, n, "unreachable", 1);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    n->fd = fd;
    n->reader = redisReaderCreate();
    if (!n->reader) {
        node_down(c, n, "out of memory", 1);
        return;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
        node_down(c, n, "unreachable", 1);
        return;
    }
    n->state = N_CONNECTING;
    n->connect_deadline_ms = now_ms() + c->o.connect_timeout_ms;
    n->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)(n - c->nodes) + 1};
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* index of the node at host:port, added when new; -1 when the table is full */
static int node_index(rc_client *c, const char *host, int port) {
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].port == port && strcmp(c->nodes[i].host, host) == 0)
            return i;
    if (c->nnodes == MAX_NODES)
        return -1;
    node *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->fd = -1;
    n->ring = calloc(2 * c->o.max_in_flight_per_node, sizeof *n->ring);
    if (!n->ring)
        return -1;
    return c->nnodes++;
}

/* ---- I/O thread: writing ---- */

static int wbuf_append(node *n, const char *p, size_t len) {
    if (n->wlen + len > n->wcap) {
        size_t cap = n->wcap ? n->wcap : 4096;
        while (cap < n->wlen + len)
            cap *= 2;
        char *b = realloc(n->wbuf, cap);
        if (!b)
            return -1;
        n->wbuf = b;
        n->wcap = cap;
    }
    memcpy(n->wbuf + n->wlen, p, len);
    n->wlen += len;
    return 0;
}

static void ring_push(rc_client *c, node *n, cmd *k) {
    size_t cap = 2 * c->o.max_in_flight_per_node;
    n->ring[(n->rhead + n->rcount) % cap].c = k;
    n->rcount++;
}

static void node_flush(rc_client *c, node *n) {
    while (n->woff < n->wlen) {
        ssize_t w = send(n->fd, n->wbuf + n->woff, n->wlen - n->woff, MSG_NOSIGNAL);
        if (w > 0) {
            n->woff += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!n->want_out) {
                n->want_out = 1;
                update_events(c, n);
            }
            return;
        }
        node_down(c, n, "connection lost", 0);
        return;
    }
    n->wlen = n->woff = 0;
    if (n->want_out) {
        n->want_out = 0;
        update_events(c, n);
    }
}

/* moves queued commands into the pipeline while the node has room */
static void node_dispatch(rc_client *c, node *n) {
    if (n->state == N_DOWN && n->queue.len > 0 && now_ms() >= n->next_attempt_ms)
        node_connect(c, n);
    if (n->state != N_UP)
        return;
    int idx = (int)(n - c->nodes);
    size_t wrote = 0;
    while (n->queue.head && n->user_in_flight < c->o.max_in_flight_per_node) {
        cmd *k = list_pop(&n->queue);
        int asking = k->ask_node == idx;
        if ((asking && wbuf_append(n, ASKING_CMD, sizeof ASKING_CMD - 1) != 0) || wbuf_append(n, k->buf, k->len) != 0) {
            complete(c, k, NULL, "out of memory", 0);
            continue;
        }
        if (asking) {
            ring_push(c, n, NULL);
            k->ask_node = -1; /* one try only */
        }
        ring_push(c, n, k);
        n->user_in_flight++;
        wrote++;
    }
    if (n->user_in_flight > atomic_load(&c->n_peak))
        atomic_store(&c->n_peak, n->user_in_flight);
    if (wrote)
        node_flush(c, n);
}

/* ---- I/O thread: routing ---- */

/* puts k where it goes next: a node's queue, or the waiting list (no
 * owner known, or backing off) */
static void route(rc_client *c, cmd *k) {
    int to;
    if (k->not_before_ms > now_ms())
        to = -1;
    else if (k->kind == CMD_SLOTS)
        to = k->to_node;
    else if (k->ask_node >= 0)
        to = k->ask_node;
    else
        to = c->owner[k->slot];
    if (to < 0) {
        list_push(&c->waiting, k);
        if (k->kind == CMD_USER && k->not_before_ms <= now_ms())
            request_refresh(c);
        return;
    }
    list_push(&c->nodes[to].queue, k);
}

/* after the map changed: commands queued for a node that no longer owns
 * their slot move to the owner */
static void reroute_queued(rc_client *c) {
    for (int i = 0; i < c->nnodes; i++) {
        node *n = &c->nodes[i];
        cmd_list keep = {0};
        cmd *k;
        size_t count = n->queue.len;
        while (count-- > 0 && (k = list_pop(&n->queue))) {
            if (k->kind == CMD_USER && k->ask_node < 0 && c->owner[k->slot] != i)
                route(c, k);
            else
                list_push(&keep, k);
        }
        while ((k = list_pop(&keep)))
            list_push(&n->queue, k);
    }
    cmd_list w = c->waiting;
    memset(&c->waiting, 0, sizeof c->waiting);
    cmd *k;
    while ((k = list_pop(&w)))
        route(c, k);
}

static void apply_slots(rc_client *c, redisReply *r, node *asked) {
    rc_slot_range ranges[RC_SLOTS > 1024 ? 1024 : RC_SLOTS];
    int nr = rc_parse_slots(r, asked->host, ranges, sizeof ranges / sizeof ranges[0]);
    if (nr < 0) {
        request_refresh(c);
        return;
    }
    int8_t owner[RC_SLOTS];
    memset(owner, -1, sizeof owner);
    int covered = 0;
    for (int i = 0; i < nr; i++) {
        int idx = node_index(c, ranges[i].host, ranges[i].port);
        if (idx < 0)
            continue;
        for (int s = ranges[i].start; s <= ranges[i].end; s++) {
            covered += owner[s] < 0;
            owner[s] = (int8_t)idx;
        }
    }
    memcpy(c->owner, owner, sizeof owner);
    /* nodes below nnodes never change address, so the indices suffice */
    pthread_mutex_lock(&c->mu);
    memcpy(c->shared_owner, owner, sizeof owner);
    c->have_map = 1;
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(&c->n_refreshes, 1);
    set_ready(c, covered == RC_SLOTS);
    reroute_queued(c);
}

static int64_t retry_backoff(int retries) {
    int64_t ms = RETRY_BACKOFF_MIN_MS;
    for (int i = 1; i < retries && ms < RETRY_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms > RETRY_BACKOFF_MAX_MS ? RETRY_BACKOFF_MAX_MS : ms;
}

/* one reply for k, which n had in flight */
static void handle_reply(rc_client *c, node *n, cmd *k, redisReply *r) {
    if (k->answered) { /* timed out meanwhile; this was the reply it owed */
        complete(c, k, r, NULL, 0);
        return;
    }
    if (k->kind == CMD_SLOTS) {
        if (r->type == REDIS_REPLY_ARRAY) {
            c->last_refresh_ms = now_ms();
            /* a read sent after the last request for one answers it */
            if (k->deadline_ms - c->o.timeout_ms >= c->wanted_ms)
                c->want_refresh = 0;
            apply_slots(c, r, n);
            complete(c, k, r, NULL, 0);
        } else {
            complete(c, k, r, "bad CLUSTER SLOTS reply", 0);
        }
        return;
    }
    if (r->type != REDIS_REPLY_ERROR) {
        complete(c, k, r, NULL, 0);
        return;
    }
    char host[RC_HOST_MAX];
    int slot = 0, port = 0;
    enum rc_error_kind kind = rc_parse_error(r->str, r->len, &slot, host, &port);
    if (kind == RC_ERR_OTHER) {
        complete(c, k, r, NULL, 0);
        return;
    }
    if (kind == RC_ERR_MOVED || kind == RC_ERR_ASK) {
        atomic_fetch_add(kind == RC_ERR_MOVED ? &c->n_moved : &c->n_ask, 1);
        int to = node_index(c, host, port);
        if (to < 0 || ++k->redirects > c->o.max_redirects) {
            complete(c, k, r, NULL, 0);
            return;
        }
        freeReplyObject(r);
        if (kind == RC_ERR_MOVED) {
            /* the slot moved for good: take the news now, read the rest of the map soon */
            c->owner[slot] = (int8_t)to;
            request_refresh(c);
        } else {
            k->ask_node = to;
        }
        route(c, k);
        return;
    }
    atomic_fetch_add(kind == RC_ERR_TRYAGAIN ? &c->n_tryagain : &c->n_clusterdown, 1);
    if (++k->retries > c->o.max_retries) {
        complete(c, k, r, NULL, 0);
        return;
    }
    freeReplyObject(r);
    if (kind == RC_ERR_CLUSTERDOWN)
        request_refresh(c);
    k->not_before_ms = now_ms() + retry_backoff(k->retries);
    route(c, k);
}

/* ---- I/O thread: reading ---- */

static void node_read(rc_client *c, node *n) {
    char buf[READ_CHUNK];
    for (int rounds = 0; rounds < 16 && n->state == N_UP; rounds++) {
        ssize_t got = recv(n->fd, buf, sizeof buf, 0);
        if (got == 0) {
            node_down(c, n, "connection lost", 0);
            return;
        }
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                node_down(c, n, "connection lost", 0);
            return;
        }
        if (redisReaderFeed(n->reader, buf, (size_t)got) != REDIS_OK) {
            node_down(c, n, "protocol error", 0);
            return;
        }
        n->since_reply += (size_t)got;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(n->reader, &reply) != REDIS_OK) {
                node_down(c, n, "protocol error", 0);
                return;
            }
            if (!reply)
                break;
            /* what is still buffered belongs to the next replies */
            size_t rest = n->reader->len - n->reader->pos;
            size_t size = n->since_reply > rest ? n->since_reply - rest : 0;
            n->since_reply = rest;
            if (n->rcount == 0) { /* a reply nobody asked for */
                freeReplyObject(reply);
                node_down(c, n, "protocol error", 0);
                return;
            }
            cmd *k = n->ring[n->rhead].c;
            n->rhead = (n->rhead + 1) % (2 * c->o.max_in_flight_per_node);
            n->rcount--;
            if (!k) { /* the ASKING in front of a command: its +OK */
                freeReplyObject(reply);
                continue;
            }
            n->user_in_flight--;
            n->last_reply_ms = now_ms();
            if (size > c->o.max_reply_bytes) { /* whole, but over the bound */
                freeReplyObject(reply);
                complete(c, k, NULL, "reply too large", 0);
                continue;
            }
            handle_reply(c, n, k, reply);
            if (n->state != N_UP)
                return;
        }
        /* a reply still incomplete: bound the bytes it may take (elements
         * of a long array are parsed as they come, so count what arrived,
         * not what is buffered) */
        if (n->since_reply > c->o.max_reply_bytes) {
            node_down(c, n, "reply too large", 0);
            return;
        }
        if ((size_t)got < sizeof buf)
            return;
    }
}

static void node_event(rc_client *c, node *n, uint32_t events) {
    if (n->state == N_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if ((events & (EPOLLERR | EPOLLHUP)) || getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            node_down(c, n, "unreachable", 1);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        n->state = N_UP;
        n->backoff_ms = 0;
        atomic_fetch_add(&c->n_connects, 1);
        n->want_out = 0;
        update_events(c, n);
        node_dispatch(c, n);
        return;
    }
    if (n->state != N_UP)
        return;
    if (events & EPOLLIN)
        node_read(c, n);
    if (n->state == N_UP && (events & EPOLLOUT))
        node_flush(c, n);
    if (n->state == N_UP && (events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN))
        node_down(c, n, "connection lost", 0);
}

/* ---- I/O thread: timers ---- */

static void expire_list(rc_client *c, cmd_list *l, int64_t now) {
    cmd_list keep = {0};
    cmd *k;
    while ((k = list_pop(l))) {
        if (now >= k->deadline_ms) {
            if (k->kind == CMD_USER)
                atomic_fetch_add(&c->n_timeouts, 1);
            complete(c, k, NULL, "timeout", 0);
        } else {
            list_push(&keep, k);
        }
    }
    *l = keep;
}

/* 1 when n has a command written and unanswered for REFRESH_PATIENCE_MS
 * and nothing was read from it meanwhile: stopped or very slow */
static int node_stalled(const rc_client *c, const node *n, int64_t now) {
    size_t cap = 2 * c->o.max_in_flight_per_node;
    for (size_t j = 0; j < n->rcount; j++) { /* the oldest command; an ASKING has none */
        const cmd *k = n->ring[(n->rhead + j) % cap].c;
        if (!k)
            continue;
        int64_t sent = k->deadline_ms - c->o.timeout_ms; /* submitted: written then or later */
        return now - sent >= REFRESH_PATIENCE_MS && now - n->last_reply_ms >= REFRESH_PATIENCE_MS;
    }
    return 0;
}

/* A map read is wanted until one sent after the last request for it is
 * applied (handle_reply). One is asked at a time, but one left unanswered past REFRESH_PATIENCE_MS does not hold
 * up the next: another node is asked too (one read per node at most, so
 * at most nnodes in flight), and a node that looks stalled is asked last. */
static void start_refresh(rc_client *c, int64_t now) {
    if (!c->want_refresh || now - c->last_refresh_ms < c->o.refresh_min_interval_ms || c->nnodes == 0)
        return;
    if (c->refresh_in_flight > 0 && now - c->last_refresh_ms < REFRESH_PATIENCE_MS)
        return;
    /* a connected node that answers; else the next one that may be
     * (re)connected; else a connected one that looks stalled */
    int pick = -1;
    for (int pass = 0; pass < 3 && pick < 0; pass++)
        for (int i = 0; i < c->nnodes && pick < 0; i++) {
            int j = (c->refresh_rr + i) % c->nnodes;
            const node *n = &c->nodes[j];
            if (n->slots_pending)
                continue;
            if (pass == 0 ? n->state == N_UP && !node_stalled(c, n, now)
                : pass == 1 ? n->state == N_DOWN && now >= n->next_attempt_ms
                            : n->state == N_UP)
                pick = j;
        }
    if (pick < 0)
        return;
    c->refresh_rr = pick + 1;
    cmd *k = calloc(1, sizeof *k);
    static const char slots_cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    if (!k || !(k->buf = malloc(sizeof slots_cmd - 1))) {
        free(k);
        return;
    }
    memcpy(k->buf, slots_cmd, sizeof slots_cmd - 1);
    k->len = sizeof slots_cmd - 1;
    k->kind = CMD_SLOTS;
    k->to_node = pick;
    k->ask_node = -1;
    k->deadline_ms = now + c->o.timeout_ms;
    c->refresh_in_flight++;
    c->nodes[pick].slots_pending = 1;
    c->last_refresh_ms = now;
    route(c, k);
}

static void tick(rc_client *c) {
    int64_t now = now_ms();
    if (atomic_exchange(&c->refresh_asked, 0))
        request_refresh(c);
    for (int i = 0; i < c->nnodes; i++) {
        node *n = &c->nodes[i];
        if (n->state == N_CONNECTING && now >= n->connect_deadline_ms)
            node_down(c, n, "unreachable", 1);
        expire_list(c, &n->queue, now);
        /* written, unanswered: the caller hears "timeout" at the deadline;
         * a node silent for another timeout on its oldest command is dead */
        size_t cap = 2 * c->o.max_in_flight_per_node;
        for (size_t j = 0; j < n->rcount; j++) {
            cmd *k = n->ring[(n->rhead + j) % cap].c;
            if (k && !k->answered && now >= k->deadline_ms) {
                if (k->kind == CMD_USER)
                    atomic_fetch_add(&c->n_timeouts, 1);
                complete(c, k, NULL, "timeout", 1);
            }
        }
        if (n->state == N_UP && n->rcount > 0) {
            cmd *oldest = n->ring[n->rhead].c;
            if (oldest && now >= oldest->deadline_ms + c->o.timeout_ms)
                node_down(c, n, "connection lost", 0);
        }
    }
    expire_list(c, &c->waiting, now);
    /* commands whose backoff ended, or whose owner is now known */
    cmd_list w = c->waiting;
    memset(&c->waiting, 0, sizeof c->waiting);
    cmd *k;
    while ((k = list_pop(&w)))
        route(c, k);
    start_refresh(c, now);
}

/* ---- I/O thread: the loop ---- */

static void drain_inbox(rc_client *c) {
    pthread_mutex_lock(&c->mu);
    cmd_list in = c->inbox;
    memset(&c->inbox, 0, sizeof c->inbox);
    pthread_mutex_unlock(&c->mu);
    cmd *k;
    while ((k = list_pop(&in)))
        route(c, k);
}

static void fail_everything(rc_client *c) {
    cmd *k;
    drain_inbox(c);
    for (int i = 0; i < c->nnodes; i++) {
        node *n = &c->nodes[i];
        fail_queue(c, n, "closed");
        size_t cap = 2 * c->o.max_in_flight_per_node;
        while (n->rcount > 0) {
            k = n->ring[n->rhead].c;
            n->rhead = (n->rhead + 1) % cap;
            n->rcount--;
            if (k)
                complete(c, k, NULL, "closed", 0);
        }
    }
    while ((k = list_pop(&c->waiting)))
        complete(c, k, NULL, "closed", 0);
}

/* one pass of the loop: what epoll reports within wait_ms, submissions,
 * timers when due, writes. 1 when the client is closing. */
static int loop_once(rc_client *c, int wait_ms) {
    struct epoll_event evs[64];
    int ne = epoll_wait(c->epfd, evs, 64, wait_ms);
    for (int i = 0; i < ne; i++) {
        if (evs[i].data.u64 == 0) {
            uint64_t v;
            if (read(c->evfd, &v, sizeof v) < 0) { /* drained: nothing to do */
            }
            continue;
        }
        node_event(c, &c->nodes[evs[i].data.u64 - 1], evs[i].events);
    }
    pthread_mutex_lock(&c->mu);
    int closing = c->closing;
    pthread_mutex_unlock(&c->mu);
    if (closing)
        return 1;
    drain_inbox(c);
    int64_t now = now_ms();
    if (now - c->last_tick_ms >= TICK_MS) {
        c->last_tick_ms = now;
        tick(c);
    }
    for (int i = 0; i < c->nnodes; i++)
        node_dispatch(c, &c->nodes[i]);
    return 0;
}

static void *io_main(void *arg) {
    rc_client *c = arg;
    while (!loop_once(c, TICK_MS)) {
    }
    fail_everything(c);
    return NULL;
}

int rc_loop_fd(rc_client *c) { return c->o.external_loop ? c->epfd : -1; }

int rc_loop_run(rc_client *c) {
    if (!c->o.external_loop)
        return -1;
    loop_once(c, 0);
    int64_t due = c->last_tick_ms + TICK_MS - now_ms();
    return due < 0 ? 0 : due > TICK_MS ? TICK_MS : (int)due;
}

/* ---- the submit side ---- */

static void defaults(rc_options *o) {
    if (o->timeout_ms <= 0) o->timeout_ms = 2000;
    if (o->connect_timeout_ms <= 0) o->connect_timeout_ms = 1000;
    if (o->max_in_flight_per_node == 0) o->max_in_flight_per_node = 1024;
    if (o->max_queued == 0) o->max_queued = 65536;
    if (o->max_reply_bytes == 0) o->max_reply_bytes = 4u << 20;
    if (o->max_command_bytes == 0) o->max_command_bytes = 1u << 20;
    if (o->max_redirects <= 0) o->max_redirects = 5;
    if (o->max_retries <= 0) o->max_retries = 8;
    if (o->refresh_min_interval_ms <= 0) o->refresh_min_interval_ms = 100;
}

static int add_seeds(rc_client *c, const char *seeds, char *err, size_t errlen) {
    size_t len = strlen(seeds);
    if (len == 0 || len > MAX_SEEDS_LEN) {
        snprintf(err, errlen, "seeds: 1..%d characters", MAX_SEEDS_LEN);
        return -1;
    }
    const char *p = seeds;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char host[RC_HOST_MAX];
        int port;
        struct sockaddr_storage ss;
        socklen_t sl;
        node probe;
        if (rc_split_host_port(p, n, host, &port) != 0) {
            snprintf(err, errlen, "seed '%.*s' is not HOST:PORT", (int)(n > 80 ? 80 : n), p);
            return -1;
        }
        snprintf(probe.host, sizeof probe.host, "%s", host);
        probe.port = port;
        if (sockaddr_of(&probe, &ss, &sl) != 0) {
            snprintf(err, errlen, "seed host '%s' is not an IP address", host);
            return -1;
        }
        if (node_index(c, host, port) < 0) {
            snprintf(err, errlen, "too many seeds (%d)", MAX_NODES);
            return -1;
        }
        p = end ? end + 1 : p + n;
    }
    return 0;
}

rc_client *rc_new(const rc_options *opts, char *err, size_t errlen) {
    if (!opts || !opts->seeds) {
        snprintf(err, errlen, "no seeds");
        return NULL;
    }
    rc_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->o = *opts;
    defaults(&c->o);
    c->o.seeds = NULL; /* not kept: the caller owns the string */
    memset(c->owner, -1, sizeof c->owner);
    memset(c->shared_owner, -1, sizeof c->shared_owner);
    c->epfd = c->evfd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (add_seeds(c, opts->seeds, err, errlen) != 0)
        goto fail;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (c->epfd < 0 || c->evfd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) != 0) {
        snprintf(err, errlen, "epoll: %s", strerror(errno));
        goto fail;
    }
    c->want_refresh = 1;
    c->last_refresh_ms = now_ms() - c->o.refresh_min_interval_ms;
    if (!c->o.external_loop && pthread_create(&c->thread, NULL, io_main, c) != 0) {
        snprintf(err, errlen, "pthread_create failed");
        goto fail;
    }
    return c;
fail:
    for (int i = 0; i < c->nnodes; i++)
        free(c->nodes[i].ring);
    if (c->epfd >= 0) close(c->epfd);
    if (c->evfd >= 0) close(c->evfd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
    return NULL;
}

int rc_wait_ready(rc_client *c, int timeout_ms) {
    struct timespec until = clock_realtime_deadline(timeout_ms);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (!c->ready && rc == 0)
        rc = pthread_cond_timedwait(&c->cond, &c->mu, &until);
    int ready = c->ready;
    pthread_mutex_unlock(&c->mu);
    return ready ? 0 : -1;
}

static void wake(rc_client *c) {
    uint64_t one = 1;
    if (write(c->evfd, &one, sizeof one) < 0) { /* already signalled */
    }
}

int rc_command(rc_client *c, const char *key, size_t keylen, int argc, const char **argv, const size_t *argvlen,
               rc_callback cb, void *ud) {
    if (argc <= 0 || !key) {
        atomic_fetch_add(&c->n_rejected, 1);
        return -1;
    }
    cmd *k = calloc(1, sizeof *k);
    if (!k) {
        atomic_fetch_add(&c->n_rejected, 1);
        return -1;
    }
    int len = redisFormatCommandArgv(&k->buf, argc, argv, argvlen);
    if (len < 0 || (size_t)len > c->o.max_command_bytes) {
        cmd_free(k);
        atomic_fetch_add(&c->n_rejected, 1);
        return -1;
    }
    k->len = (size_t)len;
    k->kind = CMD_USER;
    k->slot = rc_key_slot(key, keylen);
    k->cb = cb;
    k->ud = ud;
    k->ask_node = -1;
    k->deadline_ms = now_ms() + c->o.timeout_ms;
    pthread_mutex_lock(&c->mu);
    if (c->closing || c->queued >= c->o.max_queued) {
        pthread_mutex_unlock(&c->mu);
        cmd_free(k);
        atomic_fetch_add(&c->n_rejected, 1);
        return -1;
    }
    c->queued++;
    int was_empty = c->inbox.head == NULL;
    list_push(&c->inbox, k);
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(&c->n_commands, 1);
    if (was_empty)
        wake(c);
    return 0;
}

typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done;
    redisReply *reply;
    char error[128];
} sync_wait;

static void sync_done(void *ud, redisReply *reply, const char *error) {
    sync_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->reply = reply;
    if (error)
        snprintf(w->error, sizeof w->error, "%s", error);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

redisReply *rc_command_sync(rc_client *c, const char *key, size_t keylen, int argc, const char **argv,
                            const size_t *argvlen, char *err, size_t errlen) {
    sync_wait w = {.done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    if (rc_command(c, key, keylen, argc, argv, argvlen, sync_done, &w) != 0) {
        snprintf(err, errlen, "rejected");
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cond);
        return NULL;
    }
    /* the I/O thread completes every command by its deadline, so this ends */
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cond);
    if (!w.reply)
        snprintf(err, errlen, "%s", w.error);
    return w.reply;
}

int rc_slot_map(rc_client *c, rc_slot_range *out, int max) {
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int s = 0; c->have_map && s < RC_SLOTS;) {
        int idx = c->shared_owner[s], e = s;
        while (e + 1 < RC_SLOTS && c->shared_owner[e + 1] == idx)
            e++;
        if (idx >= 0) {
            if (n < max) {
                out[n].start = (uint16_t)s;
                out[n].end = (uint16_t)e;
                snprintf(out[n].host, sizeof out[n].host, "%s", c->nodes[idx].host);
                out[n].port = c->nodes[idx].port;
            }
            n++;
        }
        s = e + 1;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

void rc_refresh(rc_client *c) {
    atomic_store(&c->refresh_asked, 1);
    wake(c);
}

void rc_get_stats(rc_client *c, rc_stats *out) {
    out->commands = atomic_load(&c->n_commands);
    out->rejected = atomic_load(&c->n_rejected);
    out->moved = atomic_load(&c->n_moved);
    out->ask = atomic_load(&c->n_ask);
    out->tryagain = atomic_load(&c->n_tryagain);
    out->clusterdown = atomic_load(&c->n_clusterdown);
    out->slot_refreshes = atomic_load(&c->n_refreshes);
    out->connects = atomic_load(&c->n_connects);
    out->conn_failures = atomic_load(&c->n_conn_failures);
    out->timeouts = atomic_load(&c->n_timeouts);
    out->peak_in_flight = atomic_load(&c->n_peak);
}

void rc_free(rc_client *c) {
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    pthread_mutex_unlock(&c->mu);
    wake(c);
    if (c->o.external_loop)
        fail_everything(c); /* on the caller's thread, which runs the loop */
    else
        pthread_join(c->thread, NULL);
    for (int i = 0; i < c->nnodes; i++) {
        node *n = &c->nodes[i];
        if (n->fd >= 0)
            close(n->fd);
        if (n->reader)
            redisReaderFree(n->reader);
        free(n->wbuf);
        free(n->ring);
    }
    close(c->epfd);
    close(c->evfd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}
