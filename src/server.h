/* server.h -- the parts of one parley process and who owns them.
 *
 * main.c builds this once, starts the threads, and tears it down in the
 * reverse order on SIGTERM: workers (stop accepting, close connections),
 * then the writer (finishes queued writes), then fan-out, then the store. */
#ifndef PARLEY_SERVER_H
#define PARLEY_SERVER_H

#include "core/config.h"
#include "queue/queue.h"
#include "registry/registry.h"
#include "store/store.h"

struct writer;
struct fanout;
struct worker;
struct quota;
struct outbox;
struct push_gateway;
struct cluster_node;
struct recent_inbox;
struct node_forward;
struct presence_bus;
struct chat_request;
struct send_log;
struct chat_owner;

typedef struct server {
    config cfg;
    store *store;
    queue *queue;
    registry *registry;
    struct writer *writer;
    struct fanout *fanout;
    struct quota *quota;       /* per-device and per-user buckets, writer shares */
    const struct outbox *outbox; /* the write path's way out to devices (chat/outbox.h) */
    struct push_gateway *push; /* Web Push to offline devices; NULL when off (push/push_gateway.h) */
    struct cluster_node *cluster; /* node link and directory (cluster/cluster_node.h); NULL: one node */
    struct store_watch *store_watch; /* workers hold their store reads while it fails (gateway/store_watch.h); NULL: never */
    struct store_reads *store_reads; /* sign-in reads off the workers (gateway/store_reads.h); NULL: read inline */
    struct recent_inbox *recent_inbox; /* fan-out's last inbox entries, read by Acks (chat/recent_inbox.h) */
    struct node_forward *forward; /* requests and deliveries across nodes (cluster/node_forward.h); NULL: one node */
    struct presence_bus *presence_bus; /* presence and typing across nodes (cluster/presence_bus.h); NULL: one node */
    struct send_log *send_log;    /* --kafka: sends go to the 'sends' topic (cluster/send_log.h); NULL: no Kafka */
    struct chat_owner *chat_owner; /* --kafka chat node: owner of 'sends' partitions (cluster/chat_owner.h) */
    struct worker **workers;
    int n_workers;
} server;

/* server.c. On an open store whose fan-out log was replayed
 * (fanout_replay), with cfg and outbox set: the queue, the registry, the
 * quotas, the writer and the fan-out threads. 0, or -1 (the caller stops
 * and frees what started). */
int server_core_start(server *srv);
/* Stops the writer (it finishes what was queued) and then fan-out. */
void server_core_stop(server *srv);
/* Hands a device's request to the write path: this node's writer, or on a
 * gateway node (--roles gateway) a chat node over the link. Never blocks;
 * 0 when taken (r is no longer the caller's), -1 when the device is to be
 * told to retry. */
int server_submit(server *srv, struct chat_request *r);
/* Frees the registry, queue and quotas: after the workers are freed (a
 * closing connection leaves the registry). */
void server_core_free(server *srv);

#endif
