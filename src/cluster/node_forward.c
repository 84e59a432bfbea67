/* node_forward.c -- see node_forward.h. */
#include "cluster/node_forward.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/reply.h"
#include "cluster/chat_owner.h"
#include "cluster/send_log.h"
#include "core/log.h"
#include "core/metrics.h"
#include "gateway/ops_http.h"
#include "registry/registry_redis.h"

enum {
    PEERS_MAX = 256,          /* nodes remembered (a name keeps its index for good) */
    REMOTE_IDS = 1 << 16,     /* remote ids per ring */
    DISCOVER_MS = 1000,       /* the node directory is listed this often */
    LOCAL_RUN = 256,          /* local deliveries handed on at once */
    PREFETCH_MAX = 4096,      /* users looked up together for one fan-out run */
    NO_PEER = -1,
};
#define REMOTE_BIT (1ull << 63)   /* conn ids of other nodes' connections */
#define LOOKUP_BIT (1ull << 62)   /* ... from a session lookup (else from a request) */
#define REMOTE_WORKER 0xffu       /* registry_entry.worker of a remote id: no local worker */

typedef struct peer {
    char name[RR_NODE_MAX];
    char addr[RR_ADDR_MAX];   /* "" until the directory lists it with an address */
    unsigned roles;
    bool listed;              /* in the last listing that heard its directory shard */
    bool hello;               /* it connected to us (its answers can reach us) */
} peer;

typedef struct remote_id {
    uint64_t seq;             /* 0: never used */
    int peer;
    uint64_t conn_id;         /* the connection's id on its node */
} remote_id;

typedef struct ring {
    remote_id ids[REMOTE_IDS];
    uint64_t next;            /* last seq given */
} ring;

struct node_forward {
    server *srv;
    const outbox *local;      /* this node's workers */
    outbox port;              /* what srv->outbox points to on a chat node */
    bool chat;                /* this node runs the write path */
    char self[RR_NODE_MAX];

    pthread_rwlock_t use;     /* link and rr: read while used, written to let go */
    node_link *link;
    registry_redis *rr;

    pthread_mutex_t mu;       /* peers, rings, discovery state */
    pthread_cond_t cv;
    peer peers[PEERS_MAX];
    int n_peers;
    ring requests, lookups;
    bool wake, stopping, running;
    pthread_t discover;
    atomic_bool chat_up;      /* gateway node: a chat node linked both ways (read by /healthz) */
};

/* ------------------------------------------------------------- peers */

/* Under mu. The peer named name, added when new; NO_PEER when full. */
static int peer_index(node_forward *nf, const char *name) {
    for (int i = 0; i < nf->n_peers; i++)
        if (strcmp(nf->peers[i].name, name) == 0) return i;
    if (nf->n_peers == PEERS_MAX || strlen(name) >= RR_NODE_MAX) return NO_PEER;
    peer *p = &nf->peers[nf->n_peers];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    return nf->n_peers++;
}

static void wake_discovery(node_forward *nf) {
    pthread_mutex_lock(&nf->mu);
    nf->wake = true;
    pthread_cond_signal(&nf->cv);
    pthread_mutex_unlock(&nf->mu);
}

/* Under mu: a new remote id for (peer, conn_id) in ring r. */
static uint64_t remember(ring *r, uint64_t bit, int peer_i, uint64_t conn_id) {
    uint64_t seq = ++r->next;
    r->ids[seq % REMOTE_IDS] = (remote_id){seq, peer_i, conn_id};
    return REMOTE_BIT | bit | seq;
}

/* The node's address and the connection's id there, for a remote id; false
 * when it was overwritten or the node has no address. */
static bool resolve(node_forward *nf, uint64_t id, char addr[RR_ADDR_MAX], uint64_t *conn_id) {
    ring *r = id & LOOKUP_BIT ? &nf->lookups : &nf->requests;
    uint64_t seq = id & ~(REMOTE_BIT | LOOKUP_BIT);
    bool ok = false;
    pthread_mutex_lock(&nf->mu);
    const remote_id *e = &r->ids[seq % REMOTE_IDS];
    if (seq && e->seq == seq && nf->peers[e->peer].addr[0]) {
        strcpy(addr, nf->peers[e->peer].addr);
        *conn_id = e->conn_id;
        ok = true;
    }
    pthread_mutex_unlock(&nf->mu);
    return ok;
}

/* Sends f to addr over the link; a refusal (peer down, queue full, link let
 * go) drops it and is counted. */
static void send_to(node_forward *nf, const char *addr, const link_frame *f) {
    pthread_rwlock_rdlock(&nf->use);
    int rc = nf->link ? link_send(nf->link, addr, f) : -1;
    pthread_rwlock_unlock(&nf->use);
    if (rc) METRIC_INC(cluster_frames_dropped_total);
}

static bool chat_addr(node_forward *nf, char addr[RR_ADDR_MAX]);

/* ------------------------------------------------------------- discovery */

typedef struct listing {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    bool answered;    /* some shard of the directory answered (and nodes was copied) */
    unsigned missing; /* the shards that did not (registry_redis.h) */
    rr_node *nodes;   /* owned by the waiter */
    size_t n;
} listing;

static void listed(void *ud, const rr_node *nodes, size_t n, unsigned missing, const char *error) {
    listing *l = ud;
    pthread_mutex_lock(&l->mu);
    l->missing = missing;
    if (!error) {
        if (n > RR_MAX_NODES) n = RR_MAX_NODES;
        l->nodes = n ? malloc(n * sizeof *nodes) : NULL;
        if (l->nodes || n == 0) {
            if (n) memcpy(l->nodes, nodes, n * sizeof *nodes);
            l->n = n;
            l->answered = true;
        }
    }
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* One listing of the directory: the peers' addresses and roles, and a link
 * to each node this one sends to (a gateway node to chat nodes, a chat node
 * to gateway nodes). A listing that missed some shards (their master
 * silent) updates the peers of the shards that answered; a peer whose
 * shard is missing keeps what the last listing that heard it said. */
static void discover_once(node_forward *nf) {
    listing l = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_rwlock_rdlock(&nf->use);
    int q = nf->rr ? registry_redis_nodes(nf->rr, listed, &l) : -1;
    pthread_rwlock_unlock(&nf->use);
    if (q) return;
    /* no deadline: the Redis client completes every command within its
     * own timeout (redis_cluster.h) */
    pthread_mutex_lock(&l.mu);
    while (!l.done) pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    if (!l.answered) {   /* Redis failed: keep what was known */
        atomic_store(&g_metrics.cluster_directory_shards_missing, __builtin_popcount(l.missing));
        return;
    }

    char connect[PEERS_MAX][RR_ADDR_MAX];
    int n_connect = 0;
    pthread_mutex_lock(&nf->mu);
    for (int i = 0; i < nf->n_peers; i++)
        if (!(l.missing & (1u << rr_node_shard(nf->peers[i].name)))) nf->peers[i].listed = false;
    for (size_t k = 0; k < l.n; k++) {
        const rr_node *d = &l.nodes[k];
        if (strcmp(d->name, nf->self) == 0) continue;
        /* the entry is "HOST:PORT/ROLES" ("-" for no address) */
        const char *slash = strrchr(d->addr, '/');
        unsigned roles = 0;
        if (!slash || slash == d->addr || d->addr[0] == '-' || cluster_roles_parse(slash + 1, &roles)) continue;
        int i = peer_index(nf, d->name);
        if (i == NO_PEER) continue;
        peer *p = &nf->peers[i];
        snprintf(p->addr, sizeof p->addr, "%.*s", (int)(slash - d->addr), d->addr);
        p->roles = roles;
        p->listed = true;
    }
    for (int i = 0; i < nf->n_peers; i++) {
        const peer *p = &nf->peers[i];
        bool sends_there = nf->chat ? (p->roles & CLUSTER_ROLE_GATEWAY) : (p->roles & CLUSTER_ROLE_CHAT);
        if (p->listed && sends_there && p->addr[0]) strcpy(connect[n_connect++], p->addr);
    }
    pthread_mutex_unlock(&nf->mu);
    free(l.nodes);
    /* after the peers took this listing: a reader of the gauge sees them so */
    atomic_store(&g_metrics.cluster_directory_shards_missing, __builtin_popcount(l.missing));
    pthread_rwlock_rdlock(&nf->use);
    for (int i = 0; nf->link && i < n_connect; i++) link_connect(nf->link, connect[i]);
    pthread_rwlock_unlock(&nf->use);
}

static void *discover_main(void *arg) {
    node_forward *nf = arg;
    pthread_mutex_lock(&nf->mu);
    while (!nf->stopping) {
        nf->wake = false;
        pthread_mutex_unlock(&nf->mu);
        discover_once(nf);
        if (!nf->chat) {   /* what /metrics says a gateway node can do now */
            char addr[RR_ADDR_MAX];
            pthread_rwlock_rdlock(&nf->use);
            long up = nf->link && chat_addr(nf, addr);
            pthread_rwlock_unlock(&nf->use);
            atomic_store(&g_metrics.cluster_chat_link_up, up);
            atomic_store(&nf->chat_up, up != 0);
        }
        pthread_mutex_lock(&nf->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += DISCOVER_MS / 1000;
        while (!nf->stopping && !nf->wake && pthread_cond_timedwait(&nf->cv, &nf->mu, &until) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&nf->mu);
    return NULL;
}

/* ------------------------------------------------------------- gateway node */

/* The address of a chat node both ways connected (ours up, its HELLO
 * seen); false when there is none now. */
static bool chat_addr(node_forward *nf, char addr[RR_ADDR_MAX]) {
    char found[RR_ADDR_MAX] = "";
    pthread_mutex_lock(&nf->mu);
    for (int i = 0; i < nf->n_peers && !found[0]; i++) {
        const peer *p = &nf->peers[i];
        if (p->listed && p->hello && (p->roles & CLUSTER_ROLE_CHAT) && p->addr[0]) strcpy(found, p->addr);
    }
    pthread_mutex_unlock(&nf->mu);
    if (!found[0] || !nf->link || !link_peer_up(nf->link, found)) return false;
    strcpy(addr, found);
    return true;
}

int node_forward_submit(node_forward *nf, chat_request *r) {
    char addr[RR_ADDR_MAX];
    link_frame f = {.conn_id = r->conn_id, .user_id = r->user_id, .device_id = r->device_id};
    uint8_t *body = NULL;
    int rc = -1;
    pthread_rwlock_rdlock(&nf->use);
    if (!nf->link || !chat_addr(nf, addr)) goto done;
    if (r->op == CHAT_FRAME) {
        size_t len = parley__v1__frame__get_packed_size(r->frame);
        if (len == 0 || len > LINK_BODY_MAX || !(body = malloc(len))) goto done;
        parley__v1__frame__pack(r->frame, body);
        f.type = LINK_REQUEST;
        f.request_id = r->request_id;
        f.body = body;
        f.body_len = len;
    } else if (r->op == CHAT_ACK) {
        f.type = LINK_ACK;
        f.ack_from = r->ack_from;
        f.ack_to = r->ack_to;
    } else {
        goto done;
    }
    rc = link_send(nf->link, addr, &f);
done:
    pthread_rwlock_unlock(&nf->use);
    free(body);
    if (rc) {
        METRIC_INC(cluster_requests_refused_total);
        return -1;
    }
    METRIC_INC(cluster_requests_forwarded_total);
    chat_request_free(r);
    return 0;
}

/* ------------------------------------------------------------- chat node: requests in */

/* Feeds an encoded request into the writers under conn id id: 0, or -1
 * when it was not taken (malformed: counted; or over the bound / queue
 * full: counted as a bytes refusal). */
/* log: the 'sends' record the request came in, or NULL (from the link) */
static int submit_frame(node_forward *nf, uint64_t id, uint64_t request_id, uint64_t user, uint32_t device,
                        const uint8_t *body, size_t len, const chat_request *log) {
    server *srv = nf->srv;
    Parley__V1__Frame *frame = parley__v1__frame__unpack(NULL, len, body);
    if (!frame) {
        METRIC_INC(cluster_link_malformed_total);
        return -1;
    }
    /* the same process-wide bound as a local request's decoded bytes */
    size_t bytes = len;
    long queued = atomic_fetch_add(&g_metrics.writer_queued_bytes, (long)bytes);
    chat_request *r = (size_t)queued + bytes <= srv->cfg.writer_queue_bytes ? calloc(1, sizeof *r) : NULL;
    if (r) {
        r->op = CHAT_FRAME;
        r->conn_id = id;
        r->request_id = request_id;
        r->user_id = user;
        r->device_id = device;
        r->frame = frame;
        r->queued_bytes = bytes;
        if (log) {
            r->from_log = true;
            r->log_partition = log->log_partition;
            r->log_offset = log->log_offset;
        }
        if (writer_submit(srv->writer, r) == 0) return 0;
        chat_request_free(r);   /* frees frame, uncounts the bytes */
    } else {
        atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)bytes);
        parley__v1__frame__free_unpacked(frame, NULL);
    }
    METRIC_INC(writer_bytes_refusals_total);
    return -1;
}

static void take_request(node_forward *nf, int peer_i, const link_frame *f) {
    pthread_mutex_lock(&nf->mu);
    uint64_t id = remember(&nf->requests, 0, peer_i, f->conn_id);
    pthread_mutex_unlock(&nf->mu);
    if (submit_frame(nf, id, f->request_id, f->user_id, f->device_id, f->body, f->body_len, NULL) == 0) {
        METRIC_INC(cluster_remote_requests_total);
        return;
    }
    outbound_send(&nf->port, reply_error(id, f->request_id, PARLEY__V1__STATUS__UNAVAILABLE,
                                         "server busy; retry shortly"));
}

int node_forward_submit_owned(node_forward *nf, uint64_t id, uint64_t request_id, uint64_t user, uint32_t device,
                              const uint8_t *body, size_t len, uint32_t log_partition, uint64_t log_offset) {
    chat_request log = {.from_log = true, .log_partition = log_partition, .log_offset = log_offset};
    return nf && nf->chat ? submit_frame(nf, id, request_id, user, device, body, len, &log) : -1;
}

void node_forward_answer_origin(node_forward *nf, const char *origin, uint64_t conn_id, const uint8_t *frame,
                                size_t len, uint64_t user, uint32_t device) {
    if (strcmp(origin, nf->self) == 0) {
        send_log_answered(nf->srv->send_log, conn_id, frame, len);
        outbox_answer(nf->local, conn_id, frame, len, user, device);
        return;
    }
    char addr[RR_ADDR_MAX] = "";
    pthread_mutex_lock(&nf->mu);
    int p = peer_index(nf, origin);
    if (p != NO_PEER) strcpy(addr, nf->peers[p].addr);
    pthread_mutex_unlock(&nf->mu);
    if (!addr[0]) {   /* not in our directory listing yet: the device retries */
        wake_discovery(nf);
        METRIC_INC(cluster_frames_dropped_total);
        return;
    }
    link_frame f = {.type = LINK_ANSWER, .conn_id = conn_id, .user_id = user, .device_id = device,
                    .body = frame, .body_len = len};
    send_to(nf, addr, &f);
}

static void take_ack(node_forward *nf, const link_frame *f) {
    chat_request *r = calloc(1, sizeof *r);
    if (!r) return;   /* the device's next ack covers the range */
    r->op = CHAT_ACK;
    r->conn_id = REMOTE_BIT;   /* answers nothing */
    r->user_id = f->user_id;
    r->device_id = f->device_id;
    r->ack_from = f->ack_from;
    r->ack_to = f->ack_to;
    if (writer_submit(nf->srv->writer, r) == 0) METRIC_INC(acks_submitted_total);
    else free(r);
}

void node_forward_receive(void *ud, const char *peer_name, const link_frame *f) {
    node_forward *nf = ud;
    pthread_mutex_lock(&nf->mu);
    int peer_i = peer_index(nf, peer_name);
    /* a new node (find its address now), or a (re)connected one */
    bool unknown = peer_i != NO_PEER && (!nf->peers[peer_i].addr[0] || f->type == LINK_HELLO);
    if (peer_i != NO_PEER && f->type == LINK_HELLO) nf->peers[peer_i].hello = true;
    pthread_mutex_unlock(&nf->mu);
    if (unknown) wake_discovery(nf);
    if (peer_i == NO_PEER) {
        METRIC_INC(cluster_frames_dropped_total);
        return;
    }
    switch (f->type) {
    case LINK_REQUEST:
        if (nf->chat) take_request(nf, peer_i, f);
        break;
    case LINK_ACK:
        if (nf->chat) take_ack(nf, f);
        break;
    /* from the chat node to this node's connections */
    case LINK_ANSWER:
        send_log_answered(nf->srv->send_log, f->conn_id, f->body, f->body_len);   /* no ACCEPTED now */
        outbox_answer(nf->local, f->conn_id, f->body, f->body_len, f->user_id, f->device_id);
        break;
    case LINK_PUSH:
        outbox_push(nf->local, f->conn_id, f->body, f->body_len);
        break;
    case LINK_DELIVER: {
        blob *m = blob_new(f->body, f->body_len);
        if (!m) break;   /* caught up by sync */
        outbox_delivery d = {f->conn_id, f->user_id, f->user_seq, m};
        outbox_deliver(nf->local, &d, 1);
        blob_unref(m);
        break;
    }
    case LINK_CLOSE_DEVICE:
        outbox_close_device(nf->local, f->user_id, f->device_id);
        break;
    case LINK_DROP_PRESENCE:
        outbox_drop_presence(nf->local, f->user_id, f->about_user);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------- chat node: the outbox */

static void send_remote(node_forward *nf, link_frame *f) {
    char addr[RR_ADDR_MAX];
    uint64_t conn_id;
    if (!resolve(nf, f->conn_id, addr, &conn_id)) {
        METRIC_INC(cluster_frames_dropped_total);
        return;
    }
    f->conn_id = conn_id;
    send_to(nf, addr, f);
}

static void fw_answer(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len, uint64_t user,
                      uint32_t device) {
    node_forward *nf = impl;
    if (!(conn_id & REMOTE_BIT)) {
        outbox_answer(nf->local, conn_id, frame, len, user, device);
        return;
    }
    if ((conn_id & CHAT_OWNER_ID_BITS) == CHAT_OWNER_ID_BITS) {   /* a 'sends' record's (--kafka) */
        if (nf->srv->chat_owner) chat_owner_answered(nf->srv->chat_owner, conn_id, frame, len, user, device);
        return;
    }
    link_frame f = {.type = LINK_ANSWER, .conn_id = conn_id, .user_id = user, .device_id = device,
                    .body = frame, .body_len = len};
    send_remote(nf, &f);
}

static void fw_push(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len) {
    node_forward *nf = impl;
    if (!(conn_id & REMOTE_BIT)) {
        outbox_push(nf->local, conn_id, frame, len);
        return;
    }
    link_frame f = {.type = LINK_PUSH, .conn_id = conn_id, .body = frame, .body_len = len};
    send_remote(nf, &f);
}

/* Local deliveries go on in runs; each remote one is a DELIVER frame to its
 * node (the link batches what is queued together). Per connection the
 * order given is kept: one link connection per node, in order. */
static void fw_deliver(void *impl, const outbox_delivery *d, size_t n) {
    node_forward *nf = impl;
    outbox_delivery run[LOCAL_RUN];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(d[i].conn_id & REMOTE_BIT)) {
            run[len++] = d[i];
            if (len == LOCAL_RUN) {
                outbox_deliver(nf->local, run, len);
                len = 0;
            }
            continue;
        }
        link_frame f = {.type = LINK_DELIVER, .conn_id = d[i].conn_id, .user_id = d[i].user_id,
                        .user_seq = d[i].user_seq, .body = d[i].message->data, .body_len = d[i].message->len};
        send_remote(nf, &f);
        METRIC_INC(cluster_remote_deliveries_total);
    }
    outbox_deliver(nf->local, run, len);
}

/* Orders about every connection of a device or user: here, and on every
 * gateway node that connected to this one. */
static void to_gateways(node_forward *nf, const link_frame *f) {
    char addrs[PEERS_MAX][RR_ADDR_MAX];
    int n = 0;
    pthread_mutex_lock(&nf->mu);
    for (int i = 0; i < nf->n_peers; i++) {
        const peer *p = &nf->peers[i];
        if (p->listed && p->hello && (p->roles & CLUSTER_ROLE_GATEWAY) && p->addr[0]) strcpy(addrs[n++], p->addr);
    }
    pthread_mutex_unlock(&nf->mu);
    for (int i = 0; i < n; i++) send_to(nf, addrs[i], f);
}

static void fw_close_device(void *impl, uint64_t user, uint32_t device) {
    node_forward *nf = impl;
    outbox_close_device(nf->local, user, device);
    link_frame f = {.type = LINK_CLOSE_DEVICE, .user_id = user, .device_id = device};
    to_gateways(nf, &f);
}

static void fw_drop_presence(void *impl, uint64_t user, uint64_t about_user) {
    node_forward *nf = impl;
    outbox_drop_presence(nf->local, user, about_user);
    link_frame f = {.type = LINK_DROP_PRESENCE, .user_id = user, .about_user = about_user};
    to_gateways(nf, &f);
}

static const outbox_ops forward_ops = {
    .answer = fw_answer,
    .push = fw_push,
    .deliver = fw_deliver,
    .close_device = fw_close_device,
    .drop_presence = fw_drop_presence,
};

/* ------------------------------------------------------------- session lookups */

/* One user's devices as Redis answered; done under the batch's mu. */
typedef struct lookup {
    uint64_t user;
    bool failed;
    size_t n;
    rr_device *devs;   /* malloc'd, n of them */
    struct lookups *batch;
} lookup;

/* Lookups waited for together: one pipelined round of Redis commands. */
typedef struct lookups {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    size_t n;
    lookup *items;     /* sorted by user */
    const server *srv;
} lookups;

static void looked_up(void *ud, const rr_device *devs, size_t n, const char *error) {
    lookup *l = ud;
    lookups *b = l->batch;
    if (n > RR_MAX_DEVICES) n = RR_MAX_DEVICES;
    rr_device *copy = !error && n ? malloc(n * sizeof *devs) : NULL;
    if (copy) memcpy(copy, devs, n * sizeof *devs);
    pthread_mutex_lock(&b->mu);
    l->failed = error || (n && !copy);
    l->devs = copy;
    l->n = copy ? n : 0;
    b->pending--;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Asks Redis for every item of b at once and waits for all the answers
 * (the Redis client's own timeout bounds the wait). */
static void lookups_run(node_forward *nf, lookups *b) {
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    pthread_rwlock_rdlock(&nf->use);
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n; i++) {
        lookup *l = &b->items[i];
        l->batch = b;
        b->pending++;
        pthread_mutex_unlock(&b->mu);   /* the answer may come on this thread */
        int q = nf->rr ? registry_redis_lookup(nf->rr, l->user, looked_up, l) : -1;
        pthread_mutex_lock(&b->mu);
        if (q) {
            b->pending--;
            l->failed = true;
        }
    }
    while (b->pending) pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    pthread_rwlock_unlock(&nf->use);
}

static void lookups_free(lookups *b) {
    for (size_t i = 0; i < b->n; i++) free(b->items[i].devs);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

/* Adds l's devices on other nodes to out (remote ids) from have on; the
 * new count of entries there are. */
static size_t add_remote(node_forward *nf, const lookup *l, registry_entry *out, size_t max, size_t n) {
    if (l->failed) {
        /* those devices miss this event live and get it at their next sync */
        METRIC_INC(cluster_lookup_failures_total);
        return n;
    }
    size_t have = n < max ? n : max;
    bool unknown = false;
    pthread_mutex_lock(&nf->mu);
    for (size_t i = 0; i < l->n; i++) {
        const rr_device *d = &l->devs[i];
        if (strcmp(d->node, nf->self) == 0) continue;   /* the local registry has it */
        int p = peer_index(nf, d->node);
        if (p == NO_PEER || !nf->peers[p].addr[0]) {
            /* a node not (yet) in our directory listing: that device
             * catches up by sync */
            unknown = true;
            METRIC_INC(cluster_frames_dropped_total);
            continue;
        }
        if (have < max)
            out[have++] = (registry_entry){remember(&nf->lookups, LOOKUP_BIT, p, d->conn_id), d->device, REMOTE_WORKER};
        n++;
    }
    pthread_mutex_unlock(&nf->mu);
    if (unknown) wake_discovery(nf);
    return n;
}

/* The fan-out thread's prefetched lookups (node_sessions_prefetch). */
static _Thread_local lookups *prefetched;

static int lookup_order(const void *x, const void *y) {
    const lookup *a = x, *b = y;
    return a->user < b->user ? -1 : a->user > b->user;
}

void node_sessions_prefetch(server *srv, const uint64_t *first_user, size_t n, size_t stride) {
    node_forward *nf = srv->forward;
    node_sessions_prefetch_end();
    if (!nf || !nf->chat || n == 0) return;
    lookups *b = calloc(1, sizeof *b);
    lookup *items = b ? calloc(n, sizeof *items) : NULL;
    if (!items) {
        free(b);
        return;
    }
    for (size_t i = 0; i < n; i++) items[i].user = *(const uint64_t *)((const char *)first_user + i * stride);
    /* in any order, with repeats (a sender of many receipts): each user
     * once. Fan-out's runs come sorted already: not sorted again. */
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++) sorted = items[i - 1].user <= items[i].user;
    if (!sorted) qsort(items, n, sizeof *items, lookup_order);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (!distinct || items[distinct - 1].user != items[i].user) items[distinct++] = items[i];
    if (distinct > PREFETCH_MAX) distinct = PREFETCH_MAX;   /* the rest are looked up one by one */
    b->items = items;
    b->n = distinct;
    b->srv = srv;
    lookups_run(nf, b);
    METRIC_INC(cluster_session_prefetches_total);
    METRIC_ADD(cluster_session_lookups_prefetched_total, distinct);
    prefetched = b;
}

void node_sessions_prefetch_end(void) {
    lookups *b = prefetched;
    if (!b) return;
    prefetched = NULL;
    lookups_free(b);
    free(b->items);
    free(b);
}

size_t node_sessions_lookup(server *srv, uint64_t user, registry_entry *out, size_t max) {
    size_t n = registry_lookup(srv->registry, user, out, max);
    node_forward *nf = srv->forward;
    if (!nf || !nf->chat) return n;
    if (prefetched && prefetched->srv == srv) {
        lookup key = {.user = user};
        const lookup *l = bsearch(&key, prefetched->items, prefetched->n, sizeof key, lookup_order);
        if (l) return add_remote(nf, l, out, max, n);
    }
    lookups b = {.n = 1, .items = &(lookup){.user = user}, .srv = srv};
    lookups_run(nf, &b);
    METRIC_INC(cluster_session_lookups_single_total);
    n = add_remote(nf, &b.items[0], out, max, n);
    lookups_free(&b);
    return n;
}

/* ------------------------------------------------------------- life */

node_forward *node_forward_new(server *srv) {
    node_forward *nf = calloc(1, sizeof *nf);
    if (!nf) return NULL;
    nf->srv = srv;
    nf->local = srv->outbox;
    nf->chat = (srv->cfg.cluster.roles & CLUSTER_ROLE_CHAT) != 0;
    snprintf(nf->self, sizeof nf->self, "%s", srv->cfg.cluster.node);
    pthread_rwlock_init(&nf->use, NULL);
    pthread_mutex_init(&nf->mu, NULL);
    pthread_cond_init(&nf->cv, NULL);
    nf->port = (outbox){&forward_ops, nf};
    if (nf->chat) srv->outbox = &nf->port;
    return nf;
}

/* /healthz of a gateway node: no chat node linked, so every write is
 * answered UNAVAILABLE */
static bool chat_link_waiting(void *ctx) { return !atomic_load(&((node_forward *)ctx)->chat_up); }

int node_forward_start(node_forward *nf, cluster_node *cn) {
    pthread_rwlock_wrlock(&nf->use);
    nf->link = cluster_node_link(cn);
    nf->rr = cluster_node_redis(cn);
    pthread_rwlock_unlock(&nf->use);
    if (!nf->chat) ops_health_wait_on("chat link", chat_link_waiting, nf);
    if (pthread_create(&nf->discover, NULL, discover_main, nf) != 0) return -1;
    nf->running = true;
    return 0;
}

void node_forward_stop(node_forward *nf) {
    if (!nf) return;
    ops_health_wait_off(nf);
    if (nf->running) {
        pthread_mutex_lock(&nf->mu);
        nf->stopping = true;
        pthread_cond_signal(&nf->cv);
        pthread_mutex_unlock(&nf->mu);
        pthread_join(nf->discover, NULL);
        nf->running = false;
    }
    pthread_rwlock_wrlock(&nf->use);
    nf->link = NULL;
    nf->rr = NULL;
    pthread_rwlock_unlock(&nf->use);
}

void node_forward_free(node_forward *nf) {
    if (!nf) return;
    if (nf->srv->outbox == &nf->port) nf->srv->outbox = nf->local;
    pthread_rwlock_destroy(&nf->use);
    pthread_mutex_destroy(&nf->mu);
    pthread_cond_destroy(&nf->cv);
    free(nf);
}
