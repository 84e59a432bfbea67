/* redis_coverage.h -- tells the operator, at a node's start, which Redis
 * Cluster masters run with cluster-require-full-coverage yes (Redis's
 * default). With it, once one master stops answering and the others flag it
 * as failed, every master answers CLUSTERDOWN to every key: every user's
 * sessions and lookups fail, not only that master's (README, "Redis
 * Cluster: a master that stops answering"). A warning per such master, an
 * info line per master that runs with "no"; nothing when CONFIG is not
 * allowed (a managed Redis may rename it). */
#ifndef PARLEY_CLUSTER_REDIS_COVERAGE_H
#define PARLEY_CLUSTER_REDIS_COVERAGE_H

#include "registry/redis_cluster.h"

/* Asks every master of rc's slot map (CONFIG GET, asynchronous: the lines
 * are logged from rc's I/O thread as the answers come). rc must be ready
 * (rc_wait_ready) and outlive the answers (rc_free completes them). */
void redis_coverage_check(rc_client *rc);

#endif
