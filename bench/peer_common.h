/* peer_common.h -- what the peer drivers (bench-peer-mosquitto, -nats,
 * -redis) share: their command line, the counters and histograms they fill,
 * the send loop that drives a shape for its seconds, and the JSON they print.
 * Each driver keeps what depends on its client library. */
#ifndef PARLEY_BENCH_PEER_COMMON_H
#define PARLEY_BENCH_PEER_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

uint64_t peer_now_ns(void);

/* The command line every driver takes: SHAPE followed by --option value
 * pairs; unknown options are ignored, so the script can pass one set.
 * SHAPE live is read as group with every member sending at --rate (default
 * 1,000 msgs/s in all). */
typedef struct peer_args {
    const char *shape;      /* direct, group or idle ("live" is group, all sending, --rate 1000) */
    int port, pid, window, body;
    long pairs, size, senders, n;   /* senders -1: all */
    double rate, seconds;   /* rate 0: as fast as the window allows */
} peer_args;

/* Fills a with the defaults and argv, then clamps the body to
 * [min_body, 4096] (the body carries the sender and timestamps, min_body
 * bytes of them) and seconds to (0, 600]. Prints the usage line for prog
 * and returns false when no shape is given. */
bool peer_parse_args(peer_args *a, int argc, char **argv, const char *prog, int default_port, int min_body);
/* The further clamps of the mosquitto and nats drivers: a window of at least
 * 1 and n, pairs and size within bounds (back to their defaults if not). */
void peer_clamp_counts(peer_args *a);

/* Raises the open-file soft limit to the hard limit. With a tag, warns on
 * stderr when conns connections (and a few spare) would not fit in it. */
void peer_raise_nofile(const char *tag, long conns);

/* A value in kB from /proc/PID/status (key e.g. "VmRSS"), -1 if unknown. */
long peer_status_kb(int pid, const char *key);

/* The k-th loopback source address, 127.(30..229).x.y (host byte order):
 * each connection binds its own source, so that tens of thousands of them
 * do not exhaust the ports of one address. */
uint32_t peer_src_ip(uint32_t k);
void peer_src_str(char *buf, size_t len, uint32_t k);

typedef struct peer_tally {
    hist ack, deliv;        /* send->ack, send->delivery (ns) */
    uint64_t sent, acked, delivered, ready, errors;
    uint64_t receivers;     /* deliveries each acked message owes (1 direct, size-1 group) */
    uint64_t acked_total, delivered_total;   /* after peer_drain: window + drain */
} peer_tally;

void peer_tally_init(peer_tally *t);

/* What a driver supplies to peer_send_for. c is an entry of its sendv. */
typedef struct peer_sender {
    bool (*room)(void *c, uint32_t cap);      /* may c send with cap in flight at most */
    void (*send)(void *c, uint64_t due_ns);   /* publish one message timed from due_ns */
    void (*turn)(uint64_t now_ns, int timeout_ms);   /* one turn of the driver's loop */
} peer_sender;

/* Sends from the nsend clients of sendv for a->seconds: at a->rate messages
 * a second round-robin (a client with paced_cap in flight skips its turn),
 * or with rate 0 each keeping a->window in flight. Returns the seconds it
 * ran. */
double peer_send_for(void *const *sendv, long nsend, const peer_args *a, uint32_t paced_cap,
                     const peer_sender *ops);

/* After the send loop: lets what is in flight land (at most 10 s: every
 * send acked and every acked message delivered to t->receivers others), so
 * that the latencies of the last messages are recorded rather than dropped
 * and the totals can be checked, while the rates keep counting only what
 * came within the run's seconds. Sets acked_total and delivered_total. */
void peer_drain(peer_tally *t, void (*poll_once)(int timeout_ms));

/* The rates and latencies of a direct or group run, as JSON members without
 * braces or a trailing comma; the driver prints the rest of the object.
 * With them the totals after the drain and "valid": true only when some
 * message was acked and the deliveries are exactly acked_total x receivers
 * and driver_ok (the driver's own checks) (scripts/bench.sh prints no
 * figure of an invalid run). */
void peer_print_rates(const peer_tally *t, double secs, bool driver_ok);
bool peer_run_valid(const peer_tally *t);

/* The JSON object of an idle run (mosquitto and nats): connections held,
 * their connect rate and the server's memory per connection. */
void peer_print_held(const char *system, uint64_t held, double connect_s, long before_kb, long after_kb,
                     uint64_t errors);

#endif
