/* peer_mosq.c -- see peer_mosq.h. */
#include "peer_mosq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

static int g_ep = -1;
static const char *g_tag = "peer";
static peer_tally *g_t;
static uint64_t g_pending;   /* connects begun */

void mosq_loop_init(const char *tag, peer_tally *t) {
    g_tag = tag;
    g_t = t;
    mosquitto_lib_init();
    g_ep = epoll_create1(0);
    if (g_ep < 0) {
        fprintf(stderr, "%s: epoll_create1: %s\n", tag, strerror(errno));
        exit(1);
    }
}

uint64_t mosq_loop_pending(void) { return g_pending; }

struct mosquitto *mosq_new_quiet(const char *id, bool clean_session, void *obj) {
    struct rlimit rl, zero;
    getrlimit(RLIMIT_NOFILE, &rl);
    zero = rl;
    zero.rlim_cur = 0;
    setrlimit(RLIMIT_NOFILE, &zero);
    struct mosquitto *m = mosquitto_new(id, clean_session, obj);
    setrlimit(RLIMIT_NOFILE, &rl);
    return m;
}

void mosq_connect_from(mosq_conn *c, int port, uint32_t k) {
    char src[32];
    peer_src_str(src, sizeof src, k);
    int rc = mosquitto_connect_bind_async(c->m, "127.0.0.1", port, 60, src);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "%s: connect from %s: %s (%s)\n", g_tag, src, mosquitto_strerror(rc), strerror(errno));
        exit(1);
    }
    c->fd = mosquitto_socket(c->m);
    c->out_armed = true;   /* until the TCP connect completes and CONNECT is written */
    struct epoll_event x = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &x);
    g_pending++;
}

void mosq_set_out(mosq_conn *c, bool want) {
    if (c->dead || c->fd < 0 || want == c->out_armed) return;
    c->out_armed = want;
    struct epoll_event x = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &x);
}

void mosq_mark_dead(mosq_conn *c, int rc, const char *where) {
    if (c->dead) return;
    c->dead = true;
    g_t->errors++;
    if (g_t->errors <= 5) fprintf(stderr, "%s: client %u: %s: %s\n", g_tag, c->index, where, mosquitto_strerror(rc));
}

void mosq_flush(mosq_conn *c) {
    if (c->dead) return;
    if (mosquitto_want_write(c->m)) {
        int rc = mosquitto_loop_write(c->m, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            mosq_mark_dead(c, rc, "write");
            return;
        }
    }
    mosq_set_out(c, mosquitto_want_write(c->m));
}

/* libmosquitto's loop_read reads at most as many packets as the client has
 * QoS 1 messages in flight (at least one), so a client that only receives
 * got one packet per epoll turn however many the server had queued for it:
 * its deliveries fell behind the senders' acks. Read on while the socket
 * has bytes waiting, at most READS_PER_TURN times (one busy client does not
 * hold the loop). */
enum { READS_PER_TURN = 64, EVENTS_PER_TURN = 512 };
static int read_waiting(mosq_conn *c) {
    int rc = MOSQ_ERR_SUCCESS;
    for (int i = 0; i < READS_PER_TURN; i++) {
        rc = mosquitto_loop_read(c->m, 1);
        int waiting = 0;
        if (rc != MOSQ_ERR_SUCCESS || ioctl(c->fd, FIONREAD, &waiting) != 0 || waiting <= 0) break;
    }
    return rc;
}

void mosq_poll_once(int timeout_ms) {
    struct epoll_event evs[EVENTS_PER_TURN];
    int n = epoll_wait(g_ep, evs, EVENTS_PER_TURN, timeout_ms);
    for (int i = 0; i < n; i++) {
        mosq_conn *c = evs[i].data.ptr;
        if (c->dead) continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            int rc = read_waiting(c);
            if (rc != MOSQ_ERR_SUCCESS) {
                mosq_mark_dead(c, rc, "read");
                continue;
            }
        }
        mosq_flush(c);   /* what the callbacks queued (SUBSCRIBE, PUBACKs), or EPOLLOUT */
    }
}

void mosq_misc_all(void *first, long n, size_t stride) {
    for (long i = 0; i < n; i++) {
        mosq_conn *c = (mosq_conn *)((char *)first + (size_t)i * stride);
        if (c->dead || !c->m) continue;
        mosquitto_loop_misc(c->m);
        mosq_flush(c);
    }
}

void mosq_reset_all(void *first, long n, size_t stride) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (long i = 0; i < n; i++) {
        mosq_conn *c = (mosq_conn *)((char *)first + (size_t)i * stride);
        if (c->m && mosquitto_socket(c->m) >= 0)
            setsockopt(mosquitto_socket(c->m), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
}
