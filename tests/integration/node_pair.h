/* node_pair.h -- a parley node of a cluster test on the engines the test
 * program started (redis_cluster_node.h, cassandra_node.h, and
 * kafka_node.h for --kafka): the arguments every such test gives a node,
 * in one place. Linked into the tests that use it (CMakeLists.txt). */
#ifndef PARLEY_TEST_NODE_PAIR_H
#define PARLEY_TEST_NODE_PAIR_H

#include "harness.h"

typedef struct node_opts {
    const char *keyspace;         /* the one Cassandra keyspace of the nodes */
    const char *kafka;            /* brokers for --kafka, or NULL */
    const char *node_ttl_ms;      /* --node-ttl-ms; NULL: "3000" */
    const char *session_ttl_ms;   /* --session-ttl-ms; NULL: "6000" */
    const char *const *extra;     /* further arguments, NULL-terminated (at most 8), or NULL */
} node_opts;

/* Starts s as node name with a free internal port, on Cassandra and the
 * Redis Cluster; `--roles gateway` when gateway, every role otherwise.
 * 0 or -1 (h_server_start). */
int node_start(h_server *s, const char *name, int gateway, const node_opts *o);
/* The gateway node s has a chat node linked both ways (its requests go
 * out): /metrics parley_cluster_chat_link_up 1 within wait_ms. 1 or 0. */
int node_chat_linked(const h_server *s, int wait_ms);
/* The /metrics value of name on s; 0 when s is not running or has none. */
double node_metric_or_zero(const h_server *s, const char *name);
/* Everything published to s's fan-out is routed
 * (parley_fanout_pending_deliveries 0) within wait_ms. 1 or 0. */
int node_fanout_idle(const h_server *s, int wait_ms);
/* n users (3 or more) in a ring: user i signs up on where[i] as
 * "<prefix><i>" and syncs; direct conversation i -> i+1 (mod n) in convs[i],
 * accepted; a group of all named group, made by user 0 and accepted, in
 * convs[n]. 0, or -1 (said on stderr). */
int node_ring_start(h_dev **users, int n, h_server *const *where, const char *prefix, const char *group,
                    uint64_t *convs, int wait_ms);
/* d's record: no (conversation, seq) twice and, with user_seqs, no
 * user_seq twice. 0, or -1 naming the first double in why. */
int node_record_unique(const h_dev *d, int user_seqs, char *why, size_t cap);

#endif
