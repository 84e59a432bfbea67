/* server.c -- the write path's parts of one process, started and stopped
 * in one place: the server, the request-dispatch fuzz target and the tests
 * that run the write path without sockets all assemble the same thing. */
#include "server.h"

#include "chat/recent_inbox.h"
#include "chat/writer.h"
#include "chat/partition.h"
#include "cluster/chat_owner.h"
#include "cluster/cluster_node.h"
#include "cluster/node_forward.h"
#include "cluster/presence_bus.h"
#include "cluster/send_log.h"
#include "core/log.h"
#include "core/quota.h"
#include "fanout/fanout.h"
#include "gateway/conn.h"
#include "gateway/store_reads.h"
#include "gateway/store_watch.h"
#include "gateway/worker_msg.h"

/* A session entry is live in Redis (cluster/session_registry.h): the
 * connection catches up on what a lookup before it missed. On the Redis
 * client's thread: never blocks; a full worker queue drops it (the device
 * gets the event at its next sync or next live event). */
static void session_live(void *ud, uint64_t conn_id) {
    server *srv = ud;
    uint32_t index = conn_id_worker(conn_id);
    if (!srv->workers || index >= (uint32_t)srv->n_workers) return;
    worker_msg *m = worker_msg_new(WM_RESYNC, conn_id, 0);
    if (m && mpsc_try_push(&srv->workers[index]->inbox, m)) worker_msg_free(m);
}

/* --kafka: sends go to the 'sends' topic (every node); a chat node owns
 * some of its partitions (cluster/send_log.h, chat_owner.h). */
static int server_kafka_start(server *srv) {
    const cluster_config *cc = &srv->cfg.cluster;
    uint32_t partitions = 0, user_partitions = 0;
    char err[512];
    if (!srv->forward || partitions_load(srv->store, &partitions, &user_partitions)) {
        log_error("node %s: --kafka needs the node link and the store's partition count", cc->node);
        return -1;
    }
    send_log *sl = send_log_start(cc->kafka_brokers, cc->node, partitions, srv->outbox, err, sizeof err);
    if (!sl) {
        log_error("node %s: %s", cc->node, err);
        return -1;
    }
    /* the writers, running already, read it (chat/delivered_log.c) */
    __atomic_store_n(&srv->send_log, sl, __ATOMIC_RELEASE);
    if ((cc->roles & CLUSTER_ROLE_CHAT) && !(srv->chat_owner = chat_owner_start(srv, cc->kafka_brokers, err, sizeof err))) {
        log_error("node %s: %s", cc->node, err);
        return -1;
    }
    log_info("node %s: sends through kafka %s (topic %s, %u partitions)%s", cc->node, cc->kafka_brokers,
             SEND_LOG_TOPIC, partitions, srv->chat_owner ? "; owner in group parley-chat" : "");
    /* several chat nodes fan out to shared users: the store's conditional
     * heads give each user_seq once (store_cassandra_fence.c, README "Two
     * writers: conditional heads") */
    return 0;
}

int server_core_start(server *srv) {
    /* one queue consumer per fan-out thread */
    srv->queue = queue_local_new(65536, fanout_threads(srv));
    srv->registry = registry_local_new();
    srv->quota = quota_new_for_config(&srv->cfg);
    srv->recent_inbox = recent_inbox_new();
    srv->store_watch = store_watch_start(srv);
    srv->store_reads = store_reads_start(srv);
    if (!srv->queue || !srv->registry || !srv->quota || !srv->recent_inbox) return -1;
    const cluster_config *cc = &srv->cfg.cluster;
    /* with a link and a directory, writes and deliveries cross nodes: the
     * write path's outbox is wrapped before the writer starts */
    if (cc->internal_port && cc->redis_seeds[0] && !(srv->forward = node_forward_new(srv))) return -1;
    /* a gateway node runs no write path: its requests go to a chat node */
    if (cc->roles & CLUSTER_ROLE_CHAT) {
        srv->writer = writer_start(srv);
        srv->fanout = srv->writer ? fanout_start(srv) : NULL;
        if (!srv->fanout) return -1;
    }
    /* last: a node is in the directory only once it can serve */
    if (cc->internal_port || cc->redis_seeds[0]) {
        char err[256];
        srv->cluster = srv->forward ? cluster_node_start_receiving(cc, node_forward_receive, srv->forward, err, sizeof err)
                                    : cluster_node_start(cc, err, sizeof err);
        if (!srv->cluster) {
            log_error("node %s: %s", cc->node, err);
            return -1;
        }
        if (srv->forward && node_forward_start(srv->forward, srv->cluster)) {
            log_error("node %s: cannot start finding peers", cc->node);
            return -1;
        }
        session_registry *sessions = cluster_node_sessions(srv->cluster);
        if (sessions) {   /* this node's sessions go to Redis too, presence and typing over its pub/sub */
            presence_bus_options po = {.srv = srv, .rc = cluster_node_rc(srv->cluster),
                                       .rr = cluster_node_redis(srv->cluster), .node = cc->node};
            if (!(srv->presence_bus = presence_bus_start(&po))) {
                log_error("node %s: cannot start the presence bus", cc->node);
                return -1;
            }
            session_registry_set_bus(sessions, srv->presence_bus);
            session_registry_set_live(sessions, session_live, srv);
            registry_mirror m;
            session_registry_mirror(sessions, &m);
            registry_set_mirror(srv->registry, &m);
        }
    }
    if (cc->kafka_brokers[0] && server_kafka_start(srv)) return -1;
    return 0;
}

void server_core_stop(server *srv) {
    /* the workers have stopped and closed their queues: results are dropped */
    store_reads_free(srv->store_reads);
    srv->store_reads = NULL;
    /* the workers have stopped: nothing adds to the registry now */
    if (srv->registry) registry_set_mirror(srv->registry, NULL);
    chat_owner_stop(srv->chat_owner);   /* leaves the group: its partitions move now */
    node_forward_stop(srv->forward);   /* lets go of the link before it stops */
    presence_bus_stop(srv->presence_bus);
    cluster_node_stop(srv->cluster);   /* first: peers stop finding this node */
    srv->cluster = NULL;
    presence_bus_free(srv->presence_bus);   /* the Redis client that called it back is gone */
    srv->presence_bus = NULL;
    if (srv->writer) writer_stop(srv->writer);   /* finishes what was queued */
    /* after the writer: its last acks hand delivered raises to the log
     * (chat/delivered_log.c); flushes what the workers and writers logged */
    send_log_free(srv->send_log);
    srv->send_log = NULL;
    if (srv->fanout) fanout_stop(srv->fanout);   /* fans out what the writer published */
    srv->writer = NULL;
    srv->fanout = NULL;
}

void server_core_free(server *srv) {
    chat_owner_free(srv->chat_owner);   /* the writer that answered into it has stopped */
    srv->chat_owner = NULL;
    node_forward_free(srv->forward);   /* the writer and fan-out that used its outbox have stopped */
    srv->forward = NULL;
    if (srv->registry) registry_free(srv->registry);
    if (srv->queue) queue_free(srv->queue);
    if (srv->quota) quota_free(srv->quota);
    recent_inbox_free(srv->recent_inbox);
    srv->recent_inbox = NULL;
    store_watch_stop(srv->store_watch);   /* the workers that asked it have stopped */
    srv->store_watch = NULL;
    srv->registry = NULL;
    srv->queue = NULL;
    srv->quota = NULL;
}

int server_submit(server *srv, chat_request *r) {
    if (srv->send_log && send_log_takes(srv->send_log, r)) return send_log_submit(srv->send_log, r);
    if (srv->writer) return writer_submit(srv->writer, r);
    return srv->forward ? node_forward_submit(srv->forward, r) : -1;
}
