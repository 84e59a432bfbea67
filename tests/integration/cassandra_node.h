/* cassandra_node.h -- one real Apache Cassandra for a test program:
 * scripts/cassandra.sh in a temporary directory, stopped by the PID the
 * script recorded at exit and on a fatal signal, and the directory removed.
 * If Java, Maven or the jars are not available the start fails, and so does
 * the test: it never skips. Linked into the tests that need it (CMake).
 *
 * With PARLEY_TEST_CASSANDRA=HOST:PORT (tests/run.sh starts one node for a
 * pass) no node is started: the program uses that one, and at stop drops
 * the keyspaces it made there (those the node did not have at its start).
 * A test that stops, freezes, restarts or signals its node cannot share
 * one: on a shared node cassandra_node_restart and _freeze fail and
 * cassandra_node_pid aborts, and run.sh gives the variable only to the
 * tests whose source names none of them. */
#ifndef PARLEY_TESTS_CASSANDRA_NODE_H
#define PARLEY_TESTS_CASSANDRA_NODE_H

#include <sys/types.h>

/* Makes the temporary directory (named after tag), installs the stop at
 * exit and on SIGINT, SIGTERM, SIGABRT and SIGSEGV, starts the node and
 * reads its CQL port and PID. 0, or -1 with the reason on stderr (a
 * half-started node is still stopped at exit). */
int cassandra_node_start(const char *tag);
/* Starts it again on the same directory and CQL port (after a kill). 0 or -1. */
int cassandra_node_restart(void);
/* Stops it (SIGCONT first, in case a test left it stopped) and removes the
 * directory; safe to call twice. */
void cassandra_node_stop(void);

/* SIGSTOP to the node, then waits (up to timeout_ms) until every one of
 * its threads is stopped: a group stop is not complete when kill returns,
 * and a thread still running could answer one more request. 0 or -1. */
int cassandra_node_freeze(int timeout_ms);

/* "127.0.0.1:PORT" of the running node */
const char *cassandra_node_hosts(void);
long cassandra_node_port(void);
pid_t cassandra_node_pid(void);

#endif
