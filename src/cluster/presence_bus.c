/* presence_bus.c -- see presence_bus.h.
 *
 * State, under b->mu: one entry per user this node has a reason to hear
 * (watched by a local presence subscription, or with a device session
 * here), at most max_channels. The thread alone subscribes and
 * unsubscribes: hooks only mark an entry and queue its user on `todo`;
 * the thread compares what is wanted with what is subscribed. Every
 * REPAIR_MS it also queues the entries that want a channel and have none
 * (a connection lost, a MOVED, a master that was down), so every failure
 * heals the same way. Lock order: the registry's presence lock may be held
 * when b->mu is taken (the watch hook); never the other way round. */
#include "cluster/presence_bus.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chat/push.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "gateway/conn.h"
#include "gateway/worker_msg.h"
#include "registry/redis_cluster_parse.h"
#include "server.h"

enum {
    MAX_MASTERS = 64,
    REPAIR_MS = 500,
    PRESENCE_SWEEP_MS = 5000,   /* re-read users told online: a dead node's sessions expire silently */
    CONNECT_TIMEOUT_MS = 1000,
    RECONNECT_MS = 500,
    CHANNEL_MAX = 40,           /* "{u:" + 20 digits + "}e" + NUL */
    MAX_DEVICES = 64,
    MAX_SUBSCRIBERS = 4096,     /* local subscribers told per change (the rest at the next) */
};

/* One per user with a device session here: 24 B, so malloc's 32-byte
 * chunk (fields ordered by size; `on` < MAX_MASTERS fits a byte). */
typedef struct bus_user {
    uint64_t told_last_seen;
    uint32_t devices;    /* local device sessions */
    int8_t on;           /* master index subscribed on, -1 none */
    bool watched;        /* a local presence subscription */
    bool queued;         /* on todo */
    bool told_valid, told_online;
    bool reading, reread;
} bus_user;
_Static_assert(sizeof(bus_user) <= 24, "bus_user past malloc's 32-byte chunk");
_Static_assert(MAX_MASTERS <= 127, "bus_user.on is a byte");

typedef struct master {
    char host[RC_HOST_MAX];
    int port;
    redisContext *ctx;
    uint64_t retry_at_ms;
} master;

struct presence_bus {
    struct server *srv;
    rc_client *rc;
    registry_redis *rr;
    char node[RR_NODE_MAX];
    size_t max_channels;
    pthread_mutex_t mu;
    u64map users;        /* user -> bus_user * */
    uint64_t *todo;      /* users to reconsider, bounded by the entries (queued flag) */
    size_t n_todo, cap_todo;
    int wake_fd;
    atomic_bool stopping;
    pthread_t thread;
    /* the thread's own */
    master masters[MAX_MASTERS];
    int n_masters;
    rc_slot_range map[MAX_MASTERS * 8];
    int n_map;
    bool map_stale;
};

static void channel_of(uint64_t user, char out[CHANNEL_MAX]) {
    snprintf(out, CHANNEL_MAX, "{u:%" PRIu64 "}e", user);
}

/* the user of a channel name, 0 when it is not one of ours */
static uint64_t user_of(const char *ch, size_t len) {
    if (len < 6 || len >= CHANNEL_MAX || memcmp(ch, "{u:", 3) != 0 || ch[len - 2] != '}' || ch[len - 1] != 'e')
        return 0;
    uint64_t u = 0;
    for (size_t i = 3; i < len - 2; i++) {
        if (ch[i] < '0' || ch[i] > '9' || u > (UINT64_MAX - 9) / 10) return 0;
        u = u * 10 + (uint64_t)(ch[i] - '0');
    }
    return u;
}

static void wake(presence_bus *b) {
    uint64_t one = 1;
    ssize_t w = write(b->wake_fd, &one, sizeof one);
    (void)w;   /* a full counter already wakes the thread */
}

/* Under b->mu: the entry of user, made when create and under the bound. */
static bus_user *entry(presence_bus *b, uint64_t user, bool create) {
    if (user == 0) return NULL;   /* no user has id 0; the map's empty key */
    uint64_t *slot = u64map_get(&b->users, user);
    if (slot) return (bus_user *)(uintptr_t)*slot;
    if (!create) return NULL;
    if (b->users.count >= b->max_channels) {
        METRIC_INC(cluster_bus_refused_total);
        return NULL;
    }
    bus_user *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->on = -1;
    if (u64map_put(&b->users, user, (uint64_t)(uintptr_t)u)) {
        free(u);
        return NULL;
    }
    return u;
}

/* Under b->mu: the thread looks at user again. */
static void enqueue(presence_bus *b, uint64_t user, bus_user *u) {
    if (u->queued) return;
    if (b->n_todo == b->cap_todo) {
        size_t cap = b->cap_todo ? b->cap_todo * 2 : 64;
        uint64_t *grown = realloc(b->todo, cap * sizeof *grown);
        if (!grown) return;   /* the repair pass finds it */
        b->todo = grown;
        b->cap_todo = cap;
    }
    b->todo[b->n_todo++] = user;
    u->queued = true;
}

/* ------------------------------------------------------ telling locally */

static void post_frame(presence_bus *b, uint64_t conn_id, const Parley__V1__Frame *f) {
    struct server *srv = b->srv;
    uint32_t index = conn_id_worker(conn_id);
    if (!srv->workers || index >= (uint32_t)srv->n_workers) return;
    worker_msg *m = worker_msg_pack(WM_PUSH, conn_id, f);
    if (m && mpsc_try_push(&srv->workers[index]->inbox, m)) {
        worker_msg_free(m);
        METRIC_INC(cluster_bus_dropped_total);
    }
}

static void tell_subscribers(presence_bus *b, uint64_t user, int online, uint64_t last_seen) {
    uint64_t *conns = malloc(MAX_SUBSCRIBERS * sizeof *conns);
    if (!conns) return;
    size_t n = registry_presence_subscribers(b->srv->registry, user, conns, MAX_SUBSCRIBERS);
    Parley__V1__Frame f;
    Parley__V1__Presence p;
    push_frame_presence(&f, &p, user, online, last_seen);
    for (size_t i = 0; i < n && i < MAX_SUBSCRIBERS; i++) post_frame(b, conns[i], &f);
    free(conns);
}

/* ------------------------------------------------------ presence reads */

typedef struct presence_read {
    presence_bus *b;
    uint64_t user;
} presence_read;

static void start_read(presence_bus *b, uint64_t user);

static void read_done(void *ud, int online, uint64_t last_seen_ms, const char *error) {
    presence_read *r = ud;
    presence_bus *b = r->b;
    uint64_t user = r->user;
    free(r);
    bool tell = false, again = false;
    pthread_mutex_lock(&b->mu);
    bus_user *u = entry(b, user, false);
    if (u) {
        u->reading = false;
        again = u->reread;
        u->reread = false;
        if (error) {
            METRIC_INC(cluster_bus_failures_total);
        } else if (!atomic_load(&b->stopping) && u->watched &&
                   (!u->told_valid || u->told_online != (online != 0) ||
                    (!online && u->told_last_seen != last_seen_ms))) {
            u->told_valid = true;
            u->told_online = online != 0;
            u->told_last_seen = last_seen_ms;
            tell = true;
        }
    }
    pthread_mutex_unlock(&b->mu);
    /* outside b->mu: the subscriber list takes the presence lock */
    if (tell) tell_subscribers(b, user, online, last_seen_ms);
    if (again) start_read(b, user);
}

/* One read in flight per user; a change meanwhile asks for one more. */
static void start_read(presence_bus *b, uint64_t user) {
    if (atomic_load(&b->stopping)) return;
    pthread_mutex_lock(&b->mu);
    bus_user *u = entry(b, user, false);
    bool go = u && u->watched && !u->reading;
    if (u && u->reading) u->reread = true;
    if (go) u->reading = true;
    pthread_mutex_unlock(&b->mu);
    if (!go) return;
    presence_read *r = malloc(sizeof *r);
    if (r) *r = (presence_read){b, user};
    if (!r || registry_redis_presence(b->rr, user, read_done, r) != 0) {
        free(r);
        METRIC_INC(cluster_bus_failures_total);
        pthread_mutex_lock(&b->mu);
        if ((u = entry(b, user, false))) u->reading = false;   /* the sweep or the next change reads again */
        pthread_mutex_unlock(&b->mu);
    }
}

/* ------------------------------------------------------------- hooks */

static void watch_changed(void *ud, uint64_t user, bool watched) {
    presence_bus *b = ud;
    pthread_mutex_lock(&b->mu);
    bus_user *u = entry(b, user, watched);
    if (u) {
        u->watched = watched;
        if (!watched) u->told_valid = false;   /* a new subscriber is told afresh */
        enqueue(b, user, u);
    }
    pthread_mutex_unlock(&b->mu);
    if (u) wake(b);
}

static void publish_done(void *ud, redisReply *reply, const char *error) {
    (void)ud;
    if (error || !reply || reply->type == REDIS_REPLY_ERROR) METRIC_INC(cluster_bus_failures_total);
    if (reply) freeReplyObject(reply);
}

static void publish(presence_bus *b, uint64_t user, const char *payload, size_t len) {
    char ch[CHANNEL_MAX];
    channel_of(user, ch);
    const char *argv[] = {"SPUBLISH", ch, payload};
    size_t argvlen[] = {8, strlen(ch), len};
    if (rc_command(b->rc, ch, strlen(ch), 3, argv, argvlen, publish_done, NULL) != 0)
        METRIC_INC(cluster_bus_failures_total);
    else METRIC_INC(cluster_bus_published_total);
}

static void device_changed(presence_bus *b, uint64_t user, int delta) {
    pthread_mutex_lock(&b->mu);
    bus_user *u = entry(b, user, delta > 0);
    if (u) {
        if (delta > 0) u->devices++;
        else if (u->devices > 0) u->devices--;
        enqueue(b, user, u);
    }
    pthread_mutex_unlock(&b->mu);
    if (u) wake(b);
    publish(b, user, "P", 1);
}

void presence_bus_device_up(presence_bus *b, uint64_t user) { device_changed(b, user, 1); }
void presence_bus_device_down(presence_bus *b, uint64_t user) { device_changed(b, user, -1); }

bool presence_bus_state(presence_bus *b, uint64_t user, int *online, uint64_t *last_seen_ms) {
    pthread_mutex_lock(&b->mu);
    bus_user *u = entry(b, user, false);
    bool known = u && u->told_valid;
    if (known) {
        *online = u->told_online;
        *last_seen_ms = u->told_last_seen;
    }
    pthread_mutex_unlock(&b->mu);
    return known;
}

void presence_bus_typing(presence_bus *b, uint64_t member, const Parley__V1__TypingIndicator *ti) {
    uint8_t msg[BUS_MAX_PAYLOAD];
    size_t node_len = strlen(b->node);
    size_t body = parley__v1__typing_indicator__get_packed_size(ti);
    if (2 + node_len + body > sizeof msg) return;
    msg[0] = 'T';
    msg[1] = (uint8_t)node_len;
    memcpy(msg + 2, b->node, node_len);
    parley__v1__typing_indicator__pack(ti, msg + 2 + node_len);
    publish(b, member, (const char *)msg, 2 + node_len + body);
}

/* ---------------------------------------------------- receiving a message */

static void typing_arrived(presence_bus *b, uint64_t user, const uint8_t *p, size_t len) {
    if (len < 2 || (size_t)p[1] + 2 > len || p[1] >= RR_NODE_MAX) return;
    size_t node_len = p[1];
    /* this node's own devices were reached where it was typed */
    if (node_len == strlen(b->node) && memcmp(p + 2, b->node, node_len) == 0) return;
    Parley__V1__TypingIndicator *ti = parley__v1__typing_indicator__unpack(NULL, len - 2 - node_len, p + 2 + node_len);
    if (!ti) return;
    Parley__V1__Frame f;
    parley__v1__frame__init(&f);
    f.body_case = PARLEY__V1__FRAME__BODY_TYPING_INDICATOR;
    f.typing_indicator = ti;
    registry_entry e[MAX_DEVICES];
    size_t n = registry_lookup(b->srv->registry, user, e, MAX_DEVICES);
    for (size_t i = 0; i < n && i < MAX_DEVICES; i++) post_frame(b, e[i].conn_id, &f);
    parley__v1__typing_indicator__free_unpacked(ti, NULL);
}

static void message_arrived(presence_bus *b, const redisReply *ch, const redisReply *payload) {
    uint64_t user = user_of(ch->str, ch->len);
    if (!user || payload->type != REDIS_REPLY_STRING || payload->len == 0 || payload->len > BUS_MAX_PAYLOAD) return;
    METRIC_INC(cluster_bus_received_total);
    const uint8_t *p = (const uint8_t *)payload->str;
    if (p[0] == 'P') start_read(b, user);
    else if (p[0] == 'T') typing_arrived(b, user, p, payload->len);
}

/* ------------------------------------------------- the subscriber thread */

/* The client's own map, kept from whichever master answers. A CLUSTER
 * SLOTS sent from here went to the master of the key "slots": while that
 * one master was stopped, each read blocked this thread for the client's
 * timeout and failed, and a bus started meanwhile had no map at all, so it
 * subscribed no channel on the healthy masters either. */
static void refresh_map(presence_bus *b) {
    rc_refresh(b->rc);   /* it was found wrong (or missing): read it again soon */
    int max = (int)(sizeof b->map / sizeof b->map[0]);
    int n = rc_slot_map(b->rc, b->map, max);
    if (n > 0 && n <= max) {
        b->n_map = n;
        b->map_stale = false;
    }
}

static int master_index(presence_bus *b, const char *host, int port) {
    for (int i = 0; i < b->n_masters; i++)
        if (b->masters[i].port == port && strcmp(b->masters[i].host, host) == 0) return i;
    if (b->n_masters == MAX_MASTERS) return -1;
    master *m = &b->masters[b->n_masters];
    memset(m, 0, sizeof *m);
    snprintf(m->host, sizeof m->host, "%s", host);
    m->port = port;
    return b->n_masters++;
}

/* the connected master holding user's channel, -1 when there is none now */
static int master_for(presence_bus *b, uint64_t user) {
    char ch[CHANNEL_MAX];
    channel_of(user, ch);
    uint16_t slot = rc_key_slot(ch, strlen(ch));
    int at = -1;
    for (int i = 0; i < b->n_map && at < 0; i++)
        if (slot >= b->map[i].start && slot <= b->map[i].end) at = master_index(b, b->map[i].host, b->map[i].port);
    if (at < 0) {
        b->map_stale = true;
        return -1;
    }
    master *m = &b->masters[at];
    if (m->ctx) return at;
    uint64_t now = clock_mono_ms();
    if (now < m->retry_at_ms) return -1;
    struct timeval tv = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(m->host, m->port, tv);
    if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        if (c) redisFree(c);
        m->retry_at_ms = now + RECONNECT_MS;
        b->map_stale = true;
        return -1;
    }
    m->ctx = c;
    return at;
}

/* The master's connection is gone: its channels are subscribed again by the
 * repair pass (and their presence read again once confirmed). */
static void master_lost(presence_bus *b, int at) {
    master *m = &b->masters[at];
    if (m->ctx) redisFree(m->ctx);
    m->ctx = NULL;
    m->retry_at_ms = clock_mono_ms() + RECONNECT_MS;
    b->map_stale = true;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->users.cap; i++) {
        if (!b->users.slots[i].key) continue;
        bus_user *u = (bus_user *)(uintptr_t)b->users.slots[i].value;
        if (u->on == at) u->on = -1;
    }
    pthread_mutex_unlock(&b->mu);
}

static int send_command(presence_bus *b, int at, const char *verb, uint64_t user) {
    char ch[CHANNEL_MAX];
    channel_of(user, ch);
    const char *argv[] = {verb, ch};
    redisContext *c = b->masters[at].ctx;
    if (redisAppendCommandArgv(c, 2, argv, NULL) != REDIS_OK) return -1;
    int done = 0;
    for (int i = 0; i < 64 && !done; i++)
        if (redisBufferWrite(c, &done) != REDIS_OK) return -1;
    return done ? 0 : -1;
}

/* The thread compares what user wants with what it has. */
static void reconsider(presence_bus *b, uint64_t user) {
    pthread_mutex_lock(&b->mu);
    bus_user *u = entry(b, user, false);
    if (!u) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    u->queued = false;
    bool want = u->watched || u->devices > 0;
    int on = u->on;
    /* watched again while still subscribed: the new subscriber is told */
    bool read = want && u->watched && !u->told_valid && on >= 0;
    if (!want) {   /* the entry goes; a read in flight finds none */
        u64map_remove(&b->users, user, NULL);
        free(u);
        atomic_store(&g_metrics.cluster_bus_channels, (long)b->users.count);
    }
    pthread_mutex_unlock(&b->mu);
    if (!want) {
        if (on >= 0 && b->masters[on].ctx && send_command(b, on, "SUNSUBSCRIBE", user)) master_lost(b, on);
        return;
    }
    if (read) start_read(b, user);
    if (on >= 0) return;
    int at = master_for(b, user);
    if (at < 0) return;   /* the repair pass tries again */
    if (send_command(b, at, "SSUBSCRIBE", user)) {
        master_lost(b, at);
        return;
    }
    pthread_mutex_lock(&b->mu);
    if ((u = entry(b, user, false))) u->on = (int8_t)at;
    atomic_store(&g_metrics.cluster_bus_channels, (long)b->users.count);
    pthread_mutex_unlock(&b->mu);
}

/* A MOVED answer to an SSUBSCRIBE: the slot has moved; its channels on this
 * master are subscribed again after the map is read again. */
static void slot_moved(presence_bus *b, int at, int slot) {
    b->map_stale = true;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->users.cap; i++) {
        if (!b->users.slots[i].key) continue;
        bus_user *u = (bus_user *)(uintptr_t)b->users.slots[i].value;
        char ch[CHANNEL_MAX];
        channel_of(b->users.slots[i].key, ch);
        if (u->on == at && rc_key_slot(ch, strlen(ch)) == slot) u->on = -1;
    }
    pthread_mutex_unlock(&b->mu);
}

static void reply_arrived(presence_bus *b, int at, redisReply *r) {
    if (r->type == REDIS_REPLY_ERROR) {
        int slot = -1, port = 0;
        char host[RC_HOST_MAX];
        if (rc_parse_error(r->str, r->len, &slot, host, &port) == RC_ERR_MOVED) slot_moved(b, at, slot);
        else METRIC_INC(cluster_bus_failures_total);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = r->element[0], *ch = r->element[1];
    uint64_t user = user_of(ch->str, ch->len);
    if (strcmp(kind->str, "smessage") == 0) {
        message_arrived(b, ch, r->element[2]);
    } else if (strcmp(kind->str, "ssubscribe") == 0) {
        start_read(b, user);   /* what changed before the subscription took */
    } else if (strcmp(kind->str, "sunsubscribe") == 0 && user) {
        /* asked for (the entry is gone), or the slot left this master */
        pthread_mutex_lock(&b->mu);
        bus_user *u = entry(b, user, false);
        if (u && u->on == at) {
            u->on = -1;
            b->map_stale = true;
        }
        pthread_mutex_unlock(&b->mu);
    }
}

static void read_master(presence_bus *b, int at) {
    redisContext *c = b->masters[at].ctx;
    if (redisBufferRead(c) != REDIS_OK) {
        master_lost(b, at);
        return;
    }
    for (int i = 0; i < 4096; i++) {   /* what one read brought; the rest at the next poll */
        void *reply = NULL;
        if (redisGetReplyFromReader(c, &reply) != REDIS_OK) {
            master_lost(b, at);
            return;
        }
        if (!reply) return;
        reply_arrived(b, at, reply);
        freeReplyObject(reply);
    }
}

/* Queues the entries that want a channel and have none; with sweep, reads
 * again those last told online. */
static void repair(presence_bus *b, bool sweep) {
    uint64_t *reads = NULL;
    size_t n_reads = 0;
    pthread_mutex_lock(&b->mu);
    if (sweep && b->users.count) reads = malloc(b->users.count * sizeof *reads);
    for (size_t i = 0; i < b->users.cap; i++) {
        if (!b->users.slots[i].key) continue;
        bus_user *u = (bus_user *)(uintptr_t)b->users.slots[i].value;
        if (u->on < 0) enqueue(b, b->users.slots[i].key, u);
        if (reads && u->watched && u->told_valid && u->told_online && n_reads < b->users.count)
            reads[n_reads++] = b->users.slots[i].key;
    }
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < n_reads; i++) start_read(b, reads[i]);
    free(reads);
}

static void *bus_thread(void *arg) {
    presence_bus *b = arg;
    uint64_t repaired = clock_mono_ms(), swept = repaired;
    while (!atomic_load(&b->stopping)) {
        if (b->map_stale || b->n_map == 0) refresh_map(b);
        /* the users queued now; those queued meanwhile at the next turn */
        pthread_mutex_lock(&b->mu);
        size_t n = b->n_todo;
        uint64_t *todo = b->todo;
        b->todo = NULL;
        b->n_todo = b->cap_todo = 0;
        pthread_mutex_unlock(&b->mu);
        for (size_t i = 0; i < n; i++) reconsider(b, todo[i]);
        free(todo);
        struct pollfd p[1 + MAX_MASTERS];
        int who[1 + MAX_MASTERS], np = 0;
        p[np] = (struct pollfd){.fd = b->wake_fd, .events = POLLIN};
        who[np++] = -1;
        for (int i = 0; i < b->n_masters; i++) {
            if (!b->masters[i].ctx) continue;
            p[np] = (struct pollfd){.fd = b->masters[i].ctx->fd, .events = POLLIN};
            who[np++] = i;
        }
        if (poll(p, (nfds_t)np, 100) < 0 && errno != EINTR) break;
        for (int i = 0; i < np; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (who[i] < 0) {
                uint64_t v;
                ssize_t r = read(b->wake_fd, &v, sizeof v);
                (void)r;
            } else if (b->masters[who[i]].ctx) {
                read_master(b, who[i]);
            }
        }
        uint64_t now = clock_mono_ms();
        if (now - repaired >= REPAIR_MS) {
            bool sweep = now - swept >= PRESENCE_SWEEP_MS;
            repair(b, sweep);
            repaired = now;
            if (sweep) swept = now;
        }
    }
    return NULL;
}

presence_bus *presence_bus_start(const presence_bus_options *o) {
    presence_bus *b = calloc(1, sizeof *b);
    if (!b || strlen(o->node) >= sizeof b->node) {
        free(b);
        return NULL;
    }
    b->srv = o->srv;
    b->rc = o->rc;
    b->rr = o->rr;
    snprintf(b->node, sizeof b->node, "%s", o->node);
    b->max_channels = o->max_channels ? o->max_channels : BUS_DEFAULT_MAX_CHANNELS;
    b->map_stale = true;
    pthread_mutex_init(&b->mu, NULL);
    b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->wake_fd < 0 || pthread_create(&b->thread, NULL, bus_thread, b) != 0) {
        if (b->wake_fd >= 0) close(b->wake_fd);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return NULL;
    }
    presence_watch w = {.changed = watch_changed, .ud = b};
    registry_set_presence_watch(b->srv->registry, &w);
    return b;
}

void presence_bus_stop(presence_bus *b) {
    if (!b) return;
    registry_set_presence_watch(b->srv->registry, NULL);
    atomic_store(&b->stopping, true);
    wake(b);
    pthread_join(b->thread, NULL);
    for (int i = 0; i < b->n_masters; i++)
        if (b->masters[i].ctx) redisFree(b->masters[i].ctx);
    b->n_masters = 0;
}

void presence_bus_free(presence_bus *b) {
    if (!b) return;
    for (size_t i = 0; i < b->users.cap; i++)
        if (b->users.slots[i].key) free((void *)(uintptr_t)b->users.slots[i].value);
    u64map_free(&b->users);
    atomic_store(&g_metrics.cluster_bus_channels, 0);
    free(b->todo);
    close(b->wake_fd);
    pthread_mutex_destroy(&b->mu);
    free(b);
}
