/* fenced_store.h -- the setup the fence tests share: fenced Cassandra store
 * handles (store_options.cassandra_fence) on a fresh keyspace of a real
 * node, standing for several writers on one keyspace (two chat nodes, or a
 * stalled owner and its successor), and an admin CQL connection to that
 * node for what a test sets up or looks at by hand.
 *
 * The test program itself starts its node (cassandra_node_start, unless
 * PARLEY_TEST_CASSANDRA names one: tests/run.sh shares a node with the
 * programs whose source calls it) and hands the hosts to
 * fenced_store_connect. Each case opens its handles with fenced_store_pair
 * in a keyspace of its own, dropped by fenced_store_pair_close. */
#ifndef PARLEY_TEST_FENCED_STORE_H
#define PARLEY_TEST_FENCED_STORE_H

#include <stdbool.h>

#include "store/cql/cql.h"
#include "store/store.h"

/* PARLEY_TEST_CASSANDRA when set and not empty, else NULL */
const char *fenced_store_shared_hosts(void);
/* The admin connection to hosts ("HOST:PORT"), ready. 0 or -1. */
int fenced_store_connect(const char *hosts);
void fenced_store_disconnect(void);
cql_client *fenced_store_admin(void);
const char *fenced_store_hosts(void);
/* the keyspace of the open pair ("" before the first) */
const char *fenced_store_keyspace(void);

/* Closes the pair *a, *b left open (a case that failed half way) and
 * drops its keyspace, then opens two fenced handles on a fresh keyspace
 * named prefix_PID_N. 0, or -1 (what is open is closed at the next call). */
int fenced_store_pair(const char *prefix, store **a, store **b);
/* closes *a and *b (either may be NULL), sets them NULL, drops the keyspace */
void fenced_store_pair_close(store **a, store **b);
/* one more handle on the pair's keyspace, fenced or not; NULL on error
 * (said on stderr) */
store *fenced_store_open(bool fence);

/* A CQL statement on the admin connection, fmt with the keyspace first and
 * then two numbers (as "UPDATE %s.t SET x = %llu WHERE k = %llu"). 0 or
 * -1 (said on stderr). */
int fenced_store_cql(const char *fmt, unsigned long long a, unsigned long long b);

#endif
