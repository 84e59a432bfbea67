/* peer_redis_ev.c -- hiredis async contexts on one epoll loop (see
 * peer_redis_ev.h). hiredis asks for read/write interest through the ev
 * hooks; epoll_ctl is called only when the interest changes, not per
 * command. */
#include "peer_redis_ev.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "peer_common.h"

typedef struct rev {
    int fd;
    uint32_t mask;
    bool live;                 /* hiredis has not freed ac */
    redisAsyncContext *ac;
} rev;

static int g_ep = -1;
static void (*g_on_lost)(void *owner);
static uint64_t g_connected, g_lost;

static void set_mask(rev *e, uint32_t mask) {
    if (mask == e->mask || !e->live) return;
    e->mask = mask;
    struct epoll_event x = {.events = mask, .data.ptr = e};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, e->fd, &x);
}
static void add_read(void *p) { rev *e = p; set_mask(e, e->mask | EPOLLIN); }
static void del_read(void *p) { rev *e = p; set_mask(e, e->mask & ~(uint32_t)EPOLLIN); }
static void add_write(void *p) { rev *e = p; set_mask(e, e->mask | EPOLLOUT); }
static void del_write(void *p) { rev *e = p; set_mask(e, e->mask & ~(uint32_t)EPOLLOUT); }
/* hiredis frees the context after this; the rev stays (owned by the epoll
 * entry's last events of this turn) and is freed with the process */
static void cleanup(void *p) {
    rev *e = p;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, e->fd, NULL);
    e->live = false;
    e->ac = NULL;
}

static void on_connect(const redisAsyncContext *ac, int status) {
    if (status == REDIS_OK) {
        g_connected++;
        return;
    }
    if (g_lost++ < 5) fprintf(stderr, "peer-redis: connect: %s\n", ac->errstr);
    g_on_lost(ac->data);
}
static void on_disconnect(const redisAsyncContext *ac, int status) {
    if (g_lost++ < 5)
        fprintf(stderr, "peer-redis: connection closed%s%s\n", status == REDIS_OK ? "" : ": ",
                status == REDIS_OK ? "" : ac->errstr);
    g_on_lost(ac->data);
}

void rev_init(void (*on_lost)(void *owner)) {
    g_ep = epoll_create1(0);
    g_on_lost = on_lost;
}

redisAsyncContext *rev_connect(int port, uint32_t src_index, void *owner) {
    char src[32];
    peer_src_str(src, sizeof src, src_index);
    redisAsyncContext *ac = redisAsyncConnectBind("127.0.0.1", port, src);
    if (!ac || ac->err) {
        if (g_lost++ < 5) fprintf(stderr, "peer-redis: connect: %s\n", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        return NULL;
    }
    rev *e = calloc(1, sizeof *e);
    if (!e) {
        redisAsyncFree(ac);
        return NULL;
    }
    e->fd = ac->c.fd;
    e->ac = ac;
    e->live = true;
    struct epoll_event x = {.events = 0, .data.ptr = e};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, e->fd, &x);
    ac->data = owner;
    ac->ev.data = e;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* hiredis learns that a non-blocking connect finished from a write
     * event; ask for one now, so that every context connects (and fails
     * visibly) before the load, not at its first command */
    add_write(e);
    return ac;
}

void rev_poll(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(g_ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        rev *e = evs[i].data.ptr;
        if (e->live && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(e->ac);
        if (e->live && (evs[i].events & EPOLLOUT)) redisAsyncHandleWrite(e->ac);
    }
}

uint64_t rev_connected(void) { return g_connected; }
uint64_t rev_lost(void) { return g_lost; }
