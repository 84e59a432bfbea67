/* peer_nats_js.h -- the JetStream set-up of bench-peer-nats --jetstream 1:
 * one file-storage stream and a push consumer per receiving client, made
 * through a connection of their own (libnats's threaded API, synchronous
 * requests), apart from the event-loop connections that carry the load. */
#ifndef PARLEY_BENCH_PEER_NATS_JS_H
#define PARLEY_BENCH_PEER_NATS_JS_H

#include <stdbool.h>

/* Connects to 127.0.0.1:port and adds stream `name` on `subjects` (a
 * wildcard), file storage, one replica, at most max_msgs kept (oldest
 * dropped). Prints why on stderr and returns false if it cannot. */
bool pjs_open(int port, const char *name, const char *subjects, long max_msgs);
/* A push consumer on the stream: every message on `filter`, from the first,
 * pushed to `deliver` with no acks expected (AckNone). */
bool pjs_add_push_consumer(const char *filter, const char *deliver);
void pjs_close(void);

#endif
