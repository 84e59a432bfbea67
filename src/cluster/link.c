/* link.c -- see link.h. */
#include "cluster/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "cluster/link_auth.h"

enum {
    BACKOFF_MIN_MS = 50,
    BACKOFF_MAX_MS = 5000,
    READ_CHUNK = 64 * 1024,
    READS_PER_EVENT = 16,      /* a busy peer yields to the others after this many chunks */
    MAX_EVENTS = 64,
    ADDR_MAX = 64,
    HANDSHAKE_MS = 10000,      /* HELLO and PROOF both ways, or the connection is closed */
    HANDSHAKE_BYTES_MAX = 4096,/* unproven input buffered: past a HELLO and a PROOF */
};

enum endpoint_kind { EP_LISTEN, EP_WAKE, EP_OUT, EP_IN };

typedef struct endpoint {
    enum endpoint_kind kind;   /* first: epoll data points at an endpoint */
} endpoint;

/* HANDSHAKE: our HELLO is out; up once the acceptor's PROOF verifies */
enum out_state { OUT_DOWN, OUT_CONNECTING, OUT_HANDSHAKE, OUT_UP };

typedef struct peer_out {
    endpoint ep;
    char addr[ADDR_MAX];
    struct sockaddr_in sa;
    int fd;
    enum out_state state;     /* written by the thread under l->mu; read by senders under it */
    buf pending;              /* l->mu: frames queued by link_send since the last turn */
    buf writing;              /* the thread's: being written */
    bool epollout;
    uint32_t backoff_ms;
    uint64_t next_attempt_ms; /* OUT_DOWN: when to try again */
    uint64_t deadline_ms;     /* OUT_HANDSHAKE: closed if not up by then */
    buf in;                   /* the thread's: the acceptor's HELLO and PROOF */
    bool peer_hello;          /* its HELLO arrived: peer_name, peer_nonce set */
    uint8_t nonce[LINK_AUTH_BYTES];       /* ours, this connection's */
    uint8_t peer_nonce[LINK_AUTH_BYTES];
    char peer_name[LINK_NAME_MAX + 1];
} peer_out;

typedef struct peer_in {
    endpoint ep;
    int fd;
    bool hello;               /* its HELLO arrived: name, roles, peer_nonce set */
    bool proven;              /* its PROOF verified: its frames are accepted */
    uint8_t roles;
    char name[LINK_NAME_MAX + 1];
    uint8_t nonce[LINK_AUTH_BYTES];       /* ours, sent in our HELLO */
    uint8_t peer_nonce[LINK_AUTH_BYTES];
    uint64_t deadline_ms;     /* not proven by then: closed */
    buf in;
} peer_in;

struct node_link {
    link_options o;
    char name[LINK_NAME_MAX + 1];
    uint8_t key[LINK_AUTH_BYTES];   /* link_auth.h: from --cluster-secret, or zero */
    int epfd, listen_fd, wake_fd, port;
    endpoint listen_ep, wake_ep;
    pthread_t thread;
    atomic_bool stopping;
    pthread_mutex_t mu;       /* outs (the array and each pending/state), n_outs */
    peer_out **outs;
    size_t n_outs;
    peer_in **ins;            /* the thread's */
    size_t n_ins;
    uint8_t *read_buf;        /* the thread's: outgoing connections' input is read and dropped */
    struct {
        atomic_uint_fast64_t frames_sent, frames_refused, frames_received, malformed, connects,
            disconnects, bytes_dropped, auth_failed;
    } st;
};

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int parse_addr(const char *addr, struct sockaddr_in *sa) {
    char host[ADDR_MAX];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host || colon == addr) return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 1 || port > 65535) return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void wake(node_link *l) {
    uint64_t one = 1;
    ssize_t r = write(l->wake_fd, &one, sizeof one);
    (void)r;   /* the counter saturating still leaves it readable */
}

/* ------------------------------------------------------------ outgoing */

static void out_watch(node_link *l, peer_out *p, bool want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = &p->ep};
    epoll_ctl(l->epfd, EPOLL_CTL_MOD, p->fd, &ev);
    p->epollout = want_out;
}

/* The connection is gone (or never came): drop what it held, try again
 * after a jittered backoff. */
static void out_down(node_link *l, peer_out *p) {
    if (p->fd >= 0) close(p->fd);   /* also leaves the epoll set */
    p->fd = -1;
    pthread_mutex_lock(&l->mu);
    p->state = OUT_DOWN;
    size_t dropped = buf_len(&p->pending) + buf_len(&p->writing);
    buf_free(&p->pending);
    pthread_mutex_unlock(&l->mu);
    buf_free(&p->writing);
    buf_free(&p->in);
    p->peer_hello = false;
    atomic_fetch_add(&l->st.bytes_dropped, dropped);
    atomic_fetch_add(&l->st.disconnects, 1);
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (p->backoff_ms > BACKOFF_MAX_MS) p->backoff_ms = BACKOFF_MAX_MS;
    /* full jitter: peers that lost one node together do not return together */
    p->next_attempt_ms = clock_mono_ms() + (uint64_t)(random() % (p->backoff_ms + 1));
}

/* Appends f to what the thread writes next on p (handshake frames). */
static int out_queue(peer_out *p, const link_frame *f) {
    size_t n = link_frame_size(f);
    uint8_t *dst = n ? buf_reserve(&p->writing, n) : NULL;
    if (!dst) return -1;
    buf_commit(&p->writing, link_frame_encode(f, dst, n));
    return 0;
}

static int out_flush(node_link *l, peer_out *p) {
    while (buf_len(&p->writing)) {
        ssize_t n = send(p->fd, buf_head(&p->writing), buf_len(&p->writing), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&p->writing, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!p->epollout) out_watch(l, p, true);
            return 0;
        }
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
    if (p->epollout) out_watch(l, p, false);
    return 0;
}

static void out_connected(node_link *l, peer_out *p) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        out_down(l, p);
        return;
    }
    link_frame hello = {.type = LINK_HELLO, .version = LINK_VERSION, .roles = (uint8_t)l->o.roles,
                        .body = (const uint8_t *)l->name, .body_len = strlen(l->name)};
    link_auth_nonce(p->nonce);
    memcpy(hello.auth, p->nonce, LINK_AUTH_BYTES);
    if (out_queue(p, &hello)) {
        out_down(l, p);
        return;
    }
    pthread_mutex_lock(&l->mu);
    p->state = OUT_HANDSHAKE;   /* link_send refuses until the acceptor proves itself */
    pthread_mutex_unlock(&l->mu);
    p->deadline_ms = clock_mono_ms() + HANDSHAKE_MS;
    if (out_flush(l, p)) out_down(l, p);
}

/* A handshake that failed: counted apart from a plain disconnect. */
static void out_refuse(node_link *l, peer_out *p, bool auth, const char *why) {
    if (auth) {
        atomic_fetch_add(&l->st.auth_failed, 1);
        METRIC_INC(cluster_link_auth_failed_total);
    } else {
        atomic_fetch_add(&l->st.malformed, 1);
        METRIC_INC(cluster_link_malformed_total);
    }
    log_warn("node link: %s: %s; connection closed", p->addr, why);
    out_down(l, p);
}

/* The acceptor's HELLO, then its PROOF; after our PROOF answers its HELLO.
 * Up when its PROOF verifies; anything else closes the connection. */
static void out_handshake_read(node_link *l, peer_out *p) {
    for (int k = 0; k < READS_PER_EVENT; k++) {
        uint8_t *dst = buf_reserve(&p->in, HANDSHAKE_BYTES_MAX);
        if (!dst) {
            out_down(l, p);
            return;
        }
        ssize_t n = recv(p->fd, dst, HANDSHAKE_BYTES_MAX, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            out_down(l, p);
            return;
        }
        buf_commit(&p->in, (size_t)n);
        for (;;) {
            size_t payload = 0;
            int r = link_frame_split(buf_head(&p->in), buf_len(&p->in), &payload);
            if (r == 0 && buf_len(&p->in) <= HANDSHAKE_BYTES_MAX) break;
            link_frame f;
            if (r <= 0 || link_frame_decode(buf_head(&p->in) + LINK_LENGTH_BYTES, payload, &f)) {
                out_refuse(l, p, false, "malformed handshake");
                return;
            }
            if (!p->peer_hello) {
                if (f.type != LINK_HELLO) {
                    out_refuse(l, p, false, "a frame before the peer's HELLO");
                    return;
                }
                memcpy(p->peer_name, f.body, f.body_len);
                p->peer_name[f.body_len] = 0;
                memcpy(p->peer_nonce, f.auth, LINK_AUTH_BYTES);
                p->peer_hello = true;
                link_frame proof = {.type = LINK_PROOF};
                link_auth_proof(l->key, LINK_AUTH_CONNECTOR, p->nonce, p->peer_nonce, l->name, p->peer_name,
                                proof.auth);
                if (out_queue(p, &proof) || out_flush(l, p)) {
                    out_down(l, p);
                    return;
                }
            } else if (f.type != LINK_PROOF) {
                out_refuse(l, p, false, "a frame before the peer's PROOF");
                return;
            } else if (!link_auth_verify(l->key, LINK_AUTH_ACCEPTOR, p->nonce, p->peer_nonce, l->name,
                                         p->peer_name, f.auth)) {
                out_refuse(l, p, true, "the peer's PROOF does not verify (another --cluster-secret?)");
                return;
            } else {
                buf_free(&p->in);   /* the acceptor writes nothing after its PROOF */
                pthread_mutex_lock(&l->mu);
                p->state = OUT_UP;
                pthread_mutex_unlock(&l->mu);
                p->backoff_ms = 0;
                atomic_fetch_add(&l->st.connects, 1);
                return;
            }
            buf_consume(&p->in, LINK_LENGTH_BYTES + payload);
        }
    }
}

static void out_start_connect(node_link *l, peer_out *p) {
    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        out_down(l, p);
        return;
    }
    set_nodelay(p->fd);
    pthread_mutex_lock(&l->mu);
    p->state = OUT_CONNECTING;
    pthread_mutex_unlock(&l->mu);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = &p->ep};
    p->epollout = true;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
        out_down(l, p);
        return;
    }
    if (connect(p->fd, (struct sockaddr *)&p->sa, sizeof p->sa) == 0) {
        out_connected(l, p);
    } else if (errno != EINPROGRESS) {
        out_down(l, p);
    }
}

static void out_event(node_link *l, peer_out *p, uint32_t events) {
    if (p->state == OUT_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) out_connected(l, p);
        return;
    }
    if (p->state == OUT_HANDSHAKE) {
        if ((events & EPOLLOUT) && out_flush(l, p)) {
            out_down(l, p);
            return;
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) out_handshake_read(l, p);
        return;
    }
    if (p->state != OUT_UP) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        /* the peer writes nothing here: input is its close (or noise, dropped) */
        ssize_t n = recv(p->fd, l->read_buf, READ_CHUNK, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            out_down(l, p);
            return;
        }
    }
    if ((events & EPOLLOUT) && out_flush(l, p)) out_down(l, p);
}

/* Each turn: what senders queued moves to the write buffer and is written
 * in one go; down peers whose backoff ran out are tried again. Returns the
 * ms until the next retry is due (at most 100). */
static int out_turn(node_link *l) {
    uint64_t now = clock_mono_ms();
    int timeout = 100;
    pthread_mutex_lock(&l->mu);
    size_t n = l->n_outs;
    pthread_mutex_unlock(&l->mu);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&l->mu);
        peer_out *p = l->outs[i];
        bool moved = true;
        if (p->state == OUT_UP && buf_len(&p->pending)) {
            if (!buf_len(&p->writing)) {
                /* hand the whole pending buffer over */
                buf_free(&p->writing);
                p->writing = p->pending;
                p->pending.m = NULL;
            } else {
                moved = buf_append(&p->writing, buf_head(&p->pending), buf_len(&p->pending)) == 0;
                if (moved) buf_free(&p->pending);
            }
        }
        enum out_state state = p->state;
        pthread_mutex_unlock(&l->mu);
        if (!moved) {
            out_down(l, p);
            continue;
        }
        if (state == OUT_UP && buf_len(&p->writing) && !p->epollout && out_flush(l, p)) out_down(l, p);
        if (p->state == OUT_HANDSHAKE) {
            if (now >= p->deadline_ms) {
                log_warn("node link: %s: no handshake within %d ms; connection closed", p->addr, HANDSHAKE_MS);
                out_down(l, p);
            } else if ((int)(p->deadline_ms - now) < timeout) {
                timeout = (int)(p->deadline_ms - now);
            }
        }
        if (p->state == OUT_DOWN) {
            if (now >= p->next_attempt_ms) {
                out_start_connect(l, p);
            } else if ((int)(p->next_attempt_ms - now) < timeout) {
                timeout = (int)(p->next_attempt_ms - now);
            }
        }
    }
    return timeout;
}

/* l->mu held. The peer at addr, added (down, due now) if new; NULL when
 * addr is bad or the table is full. */
static peer_out *out_find_or_add(node_link *l, const char *addr, bool *added) {
    *added = false;
    for (size_t i = 0; i < l->n_outs; i++)
        if (strcmp(l->outs[i]->addr, addr) == 0) return l->outs[i];
    if (l->n_outs >= l->o.max_peers || strlen(addr) >= ADDR_MAX) return NULL;
    peer_out *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (parse_addr(addr, &p->sa)) {
        free(p);
        return NULL;
    }
    peer_out **grown = realloc(l->outs, (l->n_outs + 1) * sizeof *grown);
    if (!grown) {
        free(p);
        return NULL;
    }
    l->outs = grown;
    p->ep.kind = EP_OUT;
    p->fd = -1;
    p->state = OUT_DOWN;
    strcpy(p->addr, addr);
    l->outs[l->n_outs++] = p;
    *added = true;
    return p;
}

int link_connect(node_link *l, const char *addr) {
    bool added;
    pthread_mutex_lock(&l->mu);
    peer_out *p = out_find_or_add(l, addr, &added);
    pthread_mutex_unlock(&l->mu);
    if (added) wake(l);
    return p ? 0 : -1;
}

bool link_peer_up(node_link *l, const char *addr) {
    bool up = false;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n_outs; i++)
        if (strcmp(l->outs[i]->addr, addr) == 0) up = l->outs[i]->state == OUT_UP;
    pthread_mutex_unlock(&l->mu);
    return up;
}

int link_send(node_link *l, const char *addr, const link_frame *f) {
    size_t size = link_frame_size(f);
    bool added = false, was_empty = false;
    int rc = -1;
    pthread_mutex_lock(&l->mu);
    peer_out *p = size ? out_find_or_add(l, addr, &added) : NULL;
    if (p && p->state == OUT_UP && buf_len(&p->pending) + size <= l->o.queue_bytes) {
        was_empty = buf_len(&p->pending) == 0;
        uint8_t *dst = buf_reserve(&p->pending, size);
        if (dst) {
            buf_commit(&p->pending, link_frame_encode(f, dst, size));
            rc = 0;
        }
    } else if (p && added) {
        was_empty = true;   /* the thread starts connecting to it */
    }
    pthread_mutex_unlock(&l->mu);
    if (was_empty) wake(l);
    atomic_fetch_add(rc == 0 ? &l->st.frames_sent : &l->st.frames_refused, 1);
    return rc;
}

/* ------------------------------------------------------------ incoming */

static void in_close(node_link *l, size_t i) {
    peer_in *p = l->ins[i];
    close(p->fd);
    buf_free(&p->in);
    free(p);
    l->ins[i] = l->ins[--l->n_ins];
}

/* One handshake frame (HELLO, PROOF) to a connecting peer, in one send:
 * a fresh connection's socket buffer holds these hundred bytes, so a short
 * write means the peer reads nothing and is no node. 0 or -1. */
static int in_send(peer_in *p, const link_frame *f) {
    uint8_t out[LINK_LENGTH_BYTES + LINK_FIXED_MAX + LINK_NAME_MAX];
    size_t n = link_frame_encode(f, out, sizeof out);
    return n && send(p->fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)n ? 0 : -1;
}

static void in_accept(node_link *l) {
    for (int k = 0; k < 64; k++) {
        int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        peer_in *p = l->n_ins < l->o.max_peers ? calloc(1, sizeof *p) : NULL;
        peer_in **grown = p ? realloc(l->ins, (l->n_ins + 1) * sizeof *grown) : NULL;
        if (!grown) {
            free(p);
            close(fd);
            continue;
        }
        l->ins = grown;
        set_nodelay(fd);
        p->ep.kind = EP_IN;
        p->fd = fd;
        p->deadline_ms = clock_mono_ms() + HANDSHAKE_MS;
        link_auth_nonce(p->nonce);
        link_frame hello = {.type = LINK_HELLO, .version = LINK_VERSION, .roles = (uint8_t)l->o.roles,
                            .body = (const uint8_t *)l->name, .body_len = strlen(l->name)};
        memcpy(hello.auth, p->nonce, LINK_AUTH_BYTES);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &p->ep};
        if (in_send(p, &hello) || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(p);
            continue;
        }
        l->ins[l->n_ins++] = p;
    }
}

enum { IN_MALFORMED = -1, IN_UNPROVEN = -2 };

/* The peer's HELLO (answered with our PROOF), then its PROOF, then its
 * frames: each whole one is handed to on_frame, its HELLO once its PROOF
 * verified. 0, IN_MALFORMED, or IN_UNPROVEN (the PROOF does not verify). */
static int in_frames(node_link *l, peer_in *p) {
    for (;;) {
        size_t payload = 0;
        int r = link_frame_split(buf_head(&p->in), buf_len(&p->in), &payload);
        /* before its proof a peer gets room for a HELLO and a PROOF, no more */
        if (r == 0) return !p->proven && buf_len(&p->in) > HANDSHAKE_BYTES_MAX ? IN_MALFORMED : 0;
        link_frame f;
        if (r < 0 || link_frame_decode(buf_head(&p->in) + LINK_LENGTH_BYTES, payload, &f)) return IN_MALFORMED;
        if (!p->hello) {
            if (f.type != LINK_HELLO) return IN_MALFORMED;
            memcpy(p->name, f.body, f.body_len);
            p->name[f.body_len] = 0;
            p->roles = f.roles;
            memcpy(p->peer_nonce, f.auth, LINK_AUTH_BYTES);
            p->hello = true;
            link_frame proof = {.type = LINK_PROOF};
            link_auth_proof(l->key, LINK_AUTH_ACCEPTOR, p->peer_nonce, p->nonce, p->name, l->name, proof.auth);
            if (in_send(p, &proof)) return IN_MALFORMED;
        } else if (!p->proven) {
            if (f.type != LINK_PROOF) return IN_MALFORMED;
            if (!link_auth_verify(l->key, LINK_AUTH_CONNECTOR, p->peer_nonce, p->nonce, p->name, l->name, f.auth))
                return IN_UNPROVEN;
            p->proven = true;
            /* the peer is known now: its HELLO is what says so */
            link_frame hello = {.type = LINK_HELLO, .version = LINK_VERSION, .roles = p->roles,
                                .body = (const uint8_t *)p->name, .body_len = strlen(p->name)};
            atomic_fetch_add(&l->st.frames_received, 1);
            if (l->o.on_frame) l->o.on_frame(l->o.ud, p->name, &hello);
        } else {
            if (f.type == LINK_HELLO || f.type == LINK_PROOF) return IN_MALFORMED;
            atomic_fetch_add(&l->st.frames_received, 1);
            if (l->o.on_frame) l->o.on_frame(l->o.ud, p->name, &f);
        }
        buf_consume(&p->in, LINK_LENGTH_BYTES + payload);
    }
}

/* Closes connections still unproven at their deadline; the wait until the
 * next one, at most timeout. */
static int in_turn(node_link *l, int timeout) {
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < l->n_ins;) {
        peer_in *p = l->ins[i];
        if (p->proven) {
            i++;
        } else if (now >= p->deadline_ms) {
            log_warn("node link: %s: no PROOF within %d ms; connection closed",
                     p->hello ? p->name : "a peer before its HELLO", HANDSHAKE_MS);
            in_close(l, i);
        } else {
            if ((int)(p->deadline_ms - now) < timeout) timeout = (int)(p->deadline_ms - now);
            i++;
        }
    }
    return timeout;
}

static void in_event(node_link *l, peer_in *p) {
    size_t i = 0;
    while (i < l->n_ins && l->ins[i] != p) i++;
    if (i == l->n_ins) return;
    for (int k = 0; k < READS_PER_EVENT; k++) {
        uint8_t *dst = buf_reserve(&p->in, READ_CHUNK);
        if (!dst) {
            in_close(l, i);
            return;
        }
        ssize_t n = recv(p->fd, dst, READ_CHUNK, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            in_close(l, i);
            return;
        }
        buf_commit(&p->in, (size_t)n);
        int r = in_frames(l, p);
        if (r == IN_UNPROVEN) {
            atomic_fetch_add(&l->st.auth_failed, 1);
            METRIC_INC(cluster_link_auth_failed_total);
            log_warn("node link: %s's PROOF does not verify (another --cluster-secret?): connection closed",
                     p->name);
            in_close(l, i);
            return;
        }
        if (r) {
            atomic_fetch_add(&l->st.malformed, 1);
            METRIC_INC(cluster_link_malformed_total);
            log_warn("node link: malformed frame from %s: connection closed",
                     p->hello ? p->name : "a peer before its HELLO");
            in_close(l, i);
            return;
        }
    }
}

/* ------------------------------------------------------------- thread */

static void *link_thread(void *arg) {
    node_link *l = arg;
    struct epoll_event evs[MAX_EVENTS];
    while (!atomic_load(&l->stopping)) {
        int timeout = in_turn(l, out_turn(l));
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            endpoint *ep = evs[i].data.ptr;
            switch (ep->kind) {
            case EP_LISTEN: in_accept(l); break;
            case EP_WAKE: {
                uint64_t v;
                ssize_t r = read(l->wake_fd, &v, sizeof v);
                (void)r;
                break;
            }
            case EP_OUT: out_event(l, (peer_out *)ep, evs[i].events); break;
            case EP_IN: in_event(l, (peer_in *)ep); break;
            }
        }
    }
    return NULL;
}

static int listen_on(node_link *l, char *err, size_t errlen) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)l->o.listen_port);
    if (inet_pton(AF_INET, l->o.listen_host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "internal-listen: '%s' is not an IPv4 address", l->o.listen_host);
        return -1;
    }
    l->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (l->listen_fd < 0 || setsockopt(l->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(l->listen_fd, (struct sockaddr *)&sa, sizeof sa) || listen(l->listen_fd, 128)) {
        snprintf(err, errlen, "internal-listen %s:%d: %s", l->o.listen_host, l->o.listen_port, strerror(errno));
        return -1;
    }
    socklen_t len = sizeof sa;
    getsockname(l->listen_fd, (struct sockaddr *)&sa, &len);
    l->port = ntohs(sa.sin_port);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->listen_ep};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->listen_fd, &ev);
}

static void link_free(node_link *l) {
    for (size_t i = 0; i < l->n_outs; i++) {
        if (l->outs[i]->fd >= 0) close(l->outs[i]->fd);
        buf_free(&l->outs[i]->pending);
        buf_free(&l->outs[i]->writing);
        buf_free(&l->outs[i]->in);
        free(l->outs[i]);
    }
    while (l->n_ins) in_close(l, 0);
    free(l->outs);
    free(l->ins);
    free(l->read_buf);
    if (l->listen_fd >= 0) close(l->listen_fd);
    if (l->wake_fd >= 0) close(l->wake_fd);
    if (l->epfd >= 0) close(l->epfd);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

node_link *link_start(const link_options *o, char *err, size_t errlen) {
    size_t name_len = o->name ? strlen(o->name) : 0;
    link_frame hello = {.type = LINK_HELLO, .version = LINK_VERSION, .body = (const uint8_t *)o->name,
                        .body_len = name_len};
    if (link_frame_size(&hello) == 0) {
        snprintf(err, errlen, "node link: '%s' is not a node name", o->name ? o->name : "");
        return NULL;
    }
    node_link *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->o = *o;
    if (!l->o.queue_bytes) l->o.queue_bytes = 64u << 20;
    if (!l->o.max_peers) l->o.max_peers = 1024;
    memcpy(l->name, o->name, name_len + 1);
    l->o.name = l->name;
    if (o->key) memcpy(l->key, o->key, LINK_AUTH_BYTES);
    l->o.key = NULL;   /* the caller's: only our copy is kept */
    l->listen_fd = l->wake_fd = -1;
    l->listen_ep.kind = EP_LISTEN;
    l->wake_ep.kind = EP_WAKE;
    pthread_mutex_init(&l->mu, NULL);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->read_buf = malloc(READ_CHUNK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->wake_ep};
    if (l->epfd < 0 || l->wake_fd < 0 || !l->read_buf || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_fd, &ev)) {
        snprintf(err, errlen, "node link: %s", strerror(errno));
        link_free(l);
        return NULL;
    }
    if (o->listen_host && listen_on(l, err, errlen)) {
        link_free(l);
        return NULL;
    }
    if (pthread_create(&l->thread, NULL, link_thread, l) != 0) {
        snprintf(err, errlen, "node link: cannot start its thread");
        link_free(l);
        return NULL;
    }
    return l;
}

void link_stop(node_link *l) {
    if (!l) return;
    atomic_store(&l->stopping, true);
    wake(l);
    pthread_join(l->thread, NULL);
    link_free(l);
}

int link_listen_port(const node_link *l) { return l->port; }

link_stats link_get_stats(node_link *l) {
    link_stats s = {
        .frames_sent = atomic_load(&l->st.frames_sent),
        .frames_refused = atomic_load(&l->st.frames_refused),
        .frames_received = atomic_load(&l->st.frames_received),
        .malformed = atomic_load(&l->st.malformed),
        .connects = atomic_load(&l->st.connects),
        .disconnects = atomic_load(&l->st.disconnects),
        .bytes_dropped = atomic_load(&l->st.bytes_dropped),
        .auth_failed = atomic_load(&l->st.auth_failed),
    };
    return s;
}
