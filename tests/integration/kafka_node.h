/* kafka_node.h -- one real Apache Kafka broker (KRaft, broker and
 * controller in one process) for a test program: scripts/kafka.sh in a
 * temporary directory, stopped by the PID the script recorded at exit and
 * on a fatal signal, and the directory removed. If Java, Maven or the jars
 * are not available the start fails, and so does the test: it never skips.
 * Linked into the tests that need it (CMake). */
#ifndef PARLEY_TESTS_KAFKA_NODE_H
#define PARLEY_TESTS_KAFKA_NODE_H

#include <sys/types.h>

/* Makes the temporary directory (named after tag), installs the stop at
 * exit and on SIGINT, SIGTERM, SIGABRT and SIGSEGV, starts the broker with
 * the extra broker properties in props ("key=value" strings, NULL-ended;
 * props itself may be NULL) and reads its port and PID. 0, or -1 with the
 * reason on stderr (a half-started broker is still stopped at exit). */
int kafka_node_start(const char *tag, const char *const *props);
/* Stops it (SIGTERM by PID) and starts it again on the same directory and
 * port, with the same props. 0 or -1. */
int kafka_node_restart(void);
/* Stops it (SIGCONT first, in case a test left it stopped) and removes the
 * directory; safe to call twice. */
void kafka_node_stop(void);

/* SIGSTOP to the broker, then waits (up to timeout_ms) until every one of
 * its threads is stopped. 0 or -1. */
int kafka_node_freeze(int timeout_ms);
/* SIGCONT to the broker. 0 or -1. */
int kafka_node_thaw(void);

/* "127.0.0.1:PORT" of the running broker (librdkafka's bootstrap.servers) */
const char *kafka_node_brokers(void);
long kafka_node_port(void);
pid_t kafka_node_pid(void);
/* the temporary directory (the broker's log is DIR/kafka.log) */
const char *kafka_node_dir(void);

#endif
