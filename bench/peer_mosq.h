/* peer_mosq.h -- the libmosquitto epoll loop of the MQTT peer drivers
 * (bench-peer-mosquitto against mosquitto, bench-peer-parley-mqtt against
 * parley's MQTT listener): libmosquitto's non-blocking interface
 * (mosquitto_loop_read/_write) on one epoll of ours, no thread per
 * connection, and the read pump that keeps a receiving client's
 * deliveries from falling behind. Each driver keeps its topics, its
 * callbacks and what it publishes. */
#ifndef PARLEY_BENCH_PEER_MOSQ_H
#define PARLEY_BENCH_PEER_MOSQ_H

#include <mosquitto.h>
#include <stdbool.h>
#include <stdint.h>

#include "peer_common.h"

/* What the loop knows of a client: the first member of each driver's
 * client struct, so the epoll's pointer is the driver's client too. */
typedef struct mosq_conn {
    struct mosquitto *m;
    int fd;
    bool out_armed, dead, ready;
    uint32_t index, inflight;
} mosq_conn;

/* libmosquitto and the epoll; tag prefixes messages ("peer-mosquitto"),
 * t counts the errors */
void mosq_loop_init(const char *tag, peer_tally *t);
/* connects begun so far */
uint64_t mosq_loop_pending(void);

/* A libmosquitto client without the socketpair it opens per client to
 * wake its own select loop, which we never use (19,900 clients x 3
 * descriptors would not fit in the 20,000 open-file limit): created while
 * no descriptor can be opened, libmosquitto goes without it (it only
 * warns). NULL on failure. */
struct mosquitto *mosq_new_quiet(const char *id, bool clean_session, void *obj);
/* Connects c (its m made, callbacks set) from the k-th loopback source to
 * 127.0.0.1:port without waiting, and puts it on the loop; exits on failure. */
void mosq_connect_from(mosq_conn *c, int port, uint32_t k);

/* arms EPOLLOUT only while libmosquitto has bytes the socket did not take */
void mosq_set_out(mosq_conn *c, bool want);
void mosq_mark_dead(mosq_conn *c, int rc, const char *where);
/* writes what libmosquitto has queued */
void mosq_flush(mosq_conn *c);
/* one epoll turn: reads what came (callbacks run), writes what they queued */
void mosq_poll_once(int timeout_ms);
/* keepalive pings of the live clients among n of stride bytes from first */
void mosq_misc_all(void *first, long n, size_t stride);
/* at exit: reset instead of FIN, so that the ports bound to 127.x.y.z
 * sources do not sit in TIME_WAIT for a minute (a bound port in TIME_WAIT
 * is skipped by every other process's automatic port choice) */
void mosq_reset_all(void *first, long n, size_t stride);

#endif
