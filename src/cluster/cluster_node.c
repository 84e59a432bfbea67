/* cluster_node.c -- see cluster_node.h. */
#include "cluster/cluster_node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "gateway/ops_http.h"
#include "registry/redis_cluster.h"
#include "registry/registry_redis.h"
#include "cluster/redis_coverage.h"
#include "cluster/session_registry.h"

enum { REDIS_READY_MS = 5000 };

struct cluster_node {
    cluster_config cfg;
    node_link *link;
    rc_client *rc;
    registry_redis *rr;
    session_registry *sessions;
    char entry[RR_ADDR_MAX];
    pthread_t heartbeat;
    bool heartbeat_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    atomic_ulong heartbeat_failures;
    atomic_bool heartbeat_failing;   /* the last refresh failed: /healthz waits for "redis" */
};

/* A registration's answer, waited for by the caller (start, stop). */
typedef struct answer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int applied;
    char error[128];
} answer;

static void answered(void *ud, int applied, const char *error) {
    answer *a = ud;
    pthread_mutex_lock(&a->mu);
    a->applied = applied;
    snprintf(a->error, sizeof a->error, "%s", error ? error : "");
    a->done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void deadline_in(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Registers (or unregisters) and waits for Redis's answer. 0, or -1 with
 * the reason in err. */
static int registration(cluster_node *n, bool add, char *err, size_t errlen) {
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    int q = add ? registry_redis_node_register(n->rr, n->cfg.node, n->entry, answered, &a)
                : registry_redis_node_unregister(n->rr, n->cfg.node, answered, &a);
    if (q != 0) {
        snprintf(err, errlen, "the node directory command could not be queued");
        return -1;
    }
    /* no deadline here: the Redis client completes every command within
     * its own timeout (redis_cluster.h), with an error if need be */
    pthread_mutex_lock(&a.mu);
    while (!a.done) pthread_cond_wait(&a.cv, &a.mu);
    pthread_mutex_unlock(&a.mu);
    if (a.error[0] || a.applied < 0) {
        snprintf(err, errlen, "Redis: %s", a.error[0] ? a.error : "refused");
        return -1;
    }
    return 0;
}

static void heartbeat_answered(void *ud, int applied, const char *error) {
    cluster_node *n = ud;
    atomic_store(&n->heartbeat_failing, error || applied < 0);
    if (error || applied < 0) {
        atomic_fetch_add(&n->heartbeat_failures, 1);
        METRIC_INC(cluster_node_heartbeat_failures_total);
        log_warn("node directory: refreshing %s failed: %s", n->cfg.node, error ? error : "refused");
    }
}

/* Every third of the TTL: one failed refresh leaves two more tries before
 * the entry expires. */
static void *heartbeat_thread(void *arg) {
    cluster_node *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!n->stopping) {
        struct timespec until;
        deadline_in(&until, n->cfg.node_ttl_ms / 3);
        while (!n->stopping && pthread_cond_timedwait(&n->cv, &n->mu, &until) != ETIMEDOUT) {
        }
        if (n->stopping) break;
        pthread_mutex_unlock(&n->mu);
        if (registry_redis_node_register(n->rr, n->cfg.node, n->entry, heartbeat_answered, n) != 0) {
            atomic_store(&n->heartbeat_failing, true);
            atomic_fetch_add(&n->heartbeat_failures, 1);
            METRIC_INC(cluster_node_heartbeat_failures_total);
        }
        pthread_mutex_lock(&n->mu);
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* /healthz: the directory entry is not being refreshed (it expires, and
 * with it the sessions this node holds) */
static bool redis_waiting(void *ctx) { return atomic_load(&((cluster_node *)ctx)->heartbeat_failing); }

static void node_free(cluster_node *n) {
    ops_health_wait_off(n);
    session_registry_stop(n->sessions);
    /* rc_free completes what is pending (callbacks that use rr, the
     * session registry and n): first */
    if (n->rc) rc_free(n->rc);
    session_registry_free(n->sessions);
    if (n->rr) registry_redis_free(n->rr);
    link_stop(n->link);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

cluster_node *cluster_node_start(const cluster_config *c, char *err, size_t errlen) {
    return cluster_node_start_receiving(c, NULL, NULL, err, errlen);
}

cluster_node *cluster_node_start_receiving(const cluster_config *c, link_receive_fn on_frame, void *ud, char *err,
                                           size_t errlen) {
    cluster_node *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->cfg = *c;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    char roles[CLUSTER_ROLES_TEXT];
    cluster_roles_text(c->roles, roles);
    if (c->internal_port) {
        link_options lo = {.name = c->node, .roles = c->roles, .listen_host = c->internal_host,
                           .listen_port = c->internal_port, .on_frame = on_frame, .ud = ud,
                           .key = c->has_link_key ? c->link_key : NULL};
        n->link = link_start(&lo, err, errlen);
        if (!n->link) {
            node_free(n);
            return NULL;
        }
        snprintf(n->entry, sizeof n->entry, "%s:%d/%s", c->internal_host, link_listen_port(n->link), roles);
    } else {
        snprintf(n->entry, sizeof n->entry, "-/%s", roles);
    }
    if (c->redis_seeds[0]) {
        rc_options ro = {.seeds = c->redis_seeds};
        n->rc = rc_new(&ro, err, errlen);
        if (!n->rc) {
            node_free(n);
            return NULL;
        }
        rr_options rro = {.node_ttl_ms = c->node_ttl_ms, .session_ttl_ms = c->session_ttl_ms};
        n->rr = registry_redis_new(n->rc, &rro);
        if (!n->rr || rc_wait_ready(n->rc, REDIS_READY_MS) != 0) {
            snprintf(err, errlen, "Redis Cluster %s: no slot map within %d ms", c->redis_seeds, REDIS_READY_MS);
            node_free(n);
            return NULL;
        }
        redis_coverage_check(n->rc);
        n->sessions = session_registry_start(n->rr, c->node, c->session_ttl_ms);
        if (!n->sessions) {
            snprintf(err, errlen, "cannot start the session registry");
            node_free(n);
            return NULL;
        }
        if (registration(n, true, err, errlen)) {
            node_free(n);
            return NULL;
        }
        if (pthread_create(&n->heartbeat, NULL, heartbeat_thread, n) != 0) {
            snprintf(err, errlen, "cannot start the node heartbeat");
            node_free(n);
            return NULL;
        }
        n->heartbeat_running = true;
        ops_health_wait_on("redis", redis_waiting, n);
        log_info("node %s registered in the node directory as %s", c->node, n->entry);
    }
    return n;
}

void cluster_node_stop(cluster_node *n) {
    if (!n) return;
    if (n->heartbeat_running) {
        pthread_mutex_lock(&n->mu);
        n->stopping = true;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->heartbeat, NULL);
        char err[160];
        if (registration(n, false, err, sizeof err))
            log_warn("node %s: leaving the node directory failed (%s); its entry expires", n->cfg.node, err);
    }
    node_free(n);
}

node_link *cluster_node_link(cluster_node *n) { return n ? n->link : NULL; }
session_registry *cluster_node_sessions(cluster_node *n) { return n ? n->sessions : NULL; }
registry_redis *cluster_node_redis(cluster_node *n) { return n ? n->rr : NULL; }
rc_client *cluster_node_rc(cluster_node *n) { return n ? n->rc : NULL; }
const char *cluster_node_entry(const cluster_node *n) { return n->entry; }
unsigned long cluster_node_heartbeat_failures(const cluster_node *n) {
    return atomic_load(&n->heartbeat_failures);
}
