/* redis_cluster_node.h -- one real Redis Cluster (three masters) for a test
 * program: scripts/redis-cluster.sh in a temporary directory, stopped by
 * the PIDs the script recorded at exit and on a fatal signal, and the
 * directory removed. If redis-server is missing the start fails, and so
 * does the test: it never skips. Linked into the tests that need it (CMake). */
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

/* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" */
const char *redis_cluster_seeds(void);
int redis_cluster_port(int i);
pid_t redis_cluster_pid(int i);

#endif
