/* redis_cluster_node.h -- one real Redis Cluster (three masters) for a test
 * program: scripts/redis-cluster.sh in a temporary directory, stopped by
 * the PIDs the script recorded at exit and on a fatal signal, and the
 * directory removed. If redis-server is missing the start fails, and so
 * does the test: it never skips. Linked into the tests that need it (CMake).
 *
 * With PARLEY_TEST_REDIS_CLUSTER=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
 * (tests/run.sh starts one cluster for a pass) none is started: the
 * program uses that one, emptied (FLUSHALL on each master) at its start
 * and at its stop; programs sharing it run one at a time. A test that
 * kills, restarts or signals a node cannot share: on a shared cluster
 * redis_cluster_kill and _restart fail and redis_cluster_pid aborts, and
 * run.sh gives the variable only to the tests whose source names none of
 * them. */
#ifndef PARLEY_TESTS_REDIS_CLUSTER_NODE_H
#define PARLEY_TESTS_REDIS_CLUSTER_NODE_H

#include <sys/types.h>

#define REDIS_CLUSTER_MASTERS 3

/* Makes the temporary directory (named after tag), installs the stop at
 * exit and on SIGINT, SIGTERM, SIGABRT and SIGSEGV, starts the cluster and
 * reads its ports and PIDs. 0, or -1 with the reason on stderr. */
int redis_cluster_start(const char *tag);
/* Stops every node by PID and removes the directory; safe to call twice. */
void redis_cluster_stop(void);

/* SIGKILL to node i (0-based) and waits until it is gone. 0 or -1. */
int redis_cluster_kill(int i);
/* Starts node i again on its port with its nodes.conf (same identity). 0 or -1. */
int redis_cluster_restart(int i);

/* A plain (not cluster-aware) hiredis connection to node i with 10 s
 * timeouts, for checks and admin; NULL, or one with ->err set. */
struct redisContext *redis_cluster_direct(int i);
/* owners[slot]: the node index (0..2) serving each of the 16384 slots,
 * from node 0's CLUSTER SLOTS (-1: unknown). 0, or -1 when it did not
 * answer or parse. */
int redis_cluster_owner_map(int owners[16384]);

/* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" */
const char *redis_cluster_seeds(void);
int redis_cluster_port(int i);
pid_t redis_cluster_pid(int i);

#endif
