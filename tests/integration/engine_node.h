/* engine_node.h -- what the helpers that run a real engine for a test
 * (cassandra_node, kafka_node, redis_cluster_node) share: running the
 * engine's script and waiting for it, reading the numbers the script
 * leaves in its directory, a temp directory that is removed at the end,
 * stopping the engine at exit and on fatal signals, and freezing a process
 * (SIGSTOP, then waiting until every thread is stopped: kill() returns
 * before a group stop completes). */
#ifndef PARLEY_TESTS_ENGINE_NODE_H
#define PARLEY_TESTS_ENGINE_NODE_H

#include <stddef.h>
#include <sys/types.h>

/* Runs /bin/sh with argv (argv[0] "sh", then the script and its
 * arguments, NULL-terminated), its stdout to /dev/null when quiet; returns
 * its exit status, or -1. */
int engine_run(const char *const argv[], int quiet);
/* The first number in DIR/NAME: 0 with *out, or -1. */
int engine_read_long(const char *dir, const char *name, long *out);
/* Makes dir (a template ending in XXXXXX, rewritten in place) and arranges
 * that stop runs at exit and on SIGINT, SIGTERM, SIGABRT and SIGSEGV (at
 * most 4 engines per program). 0, or -1. */
int engine_dir_and_cleanup(char *dir, void (*stop)(void));
/* The same arrangement for an engine with no directory of ours (one
 * shared by the run: PARLEY_TEST_CASSANDRA and the like). 0, or -1. */
int engine_cleanup(void (*stop)(void));
/* 1 while the stops run from a fatal signal: a stop then does only what is
 * needed to end processes, not talk to a shared engine (which may hang). */
int engine_stopping_on_signal(void);
/* The shared engine's address from environment variable name ("" or unset:
 * none, NULL); too long to be one is a failure said on stderr, and NULL
 * too, with *bad set. */
const char *engine_shared(const char *name, size_t max, int *bad);
/* rm -rf dir, saying so on stderr when it fails. */
void engine_remove_dir(const char *dir);
/* SIGSTOP to pid and wait (up to timeout_ms) until each of its threads is
 * stopped. 0, or -1 (gone, or not stopped in time). */
int engine_freeze(pid_t pid, int timeout_ms);

#endif
