/* redis_cluster.h -- an asynchronous Redis Cluster client on hiredis's RESP
 * parser (Debian's hiredis 0.14 has no cluster support, so the routing is
 * here): every command names its key, goes to the master owning the key's
 * slot (CRC16, {hash tags}) per the slot map read with CLUSTER SLOTS, and
 * follows MOVED (map updated, command resent), ASK (ASKING + the command on
 * the target, once), TRYAGAIN and CLUSTERDOWN (retried with backoff, a
 * bounded number of times). Commands are pipelined: many in flight on each
 * node's one connection, answered in order.
 *
 * Threads: one I/O thread with its own epoll loop owns every connection and
 * the slot map. rc_command may be called from any thread; callbacks run on
 * the I/O thread and must not block (hand the result to the owner's queue).
 * With external_loop set there is no thread: the caller adds rc_loop_fd to
 * its own epoll set and calls rc_loop_run from one thread (the "I/O thread"
 * then) when that fd is readable and at least as often as it asks.
 *
 * Failure: a command is completed exactly once, with a reply or an error
 * string: "timeout" (no reply within timeout_ms of submission, retries
 * included), "connection lost" (it was written, the connection died: it
 * may or may not have run), "unreachable" (the connection to its node
 * failed before it was written), "reply too large", "protocol error",
 * "out of memory", "closed" (rc_free). After max_redirects MOVED/ASK or
 * max_retries TRYAGAIN/CLUSTERDOWN the last such error reply is handed
 * back as the reply. A lost connection is retried with backoff and the
 * slot map read again (rate-limited); a map read a node leaves unanswered
 * for 500 ms is asked of another node too, so one stopped master (TCP open,
 * silent) costs only its own slots. Nothing waits without a deadline.
 * Order: commands to one node are written in submission order until a
 * redirect or retry sends one of them round again. */
#ifndef PARLEY_REGISTRY_REDIS_CLUSTER_H
#define PARLEY_REGISTRY_REDIS_CLUSTER_H

#include "registry/redis_cluster_parse.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rc_client rc_client;

typedef struct rc_options {
    const char *seeds;              /* "HOST:PORT[,HOST:PORT...]", IP literals; required */
    int timeout_ms;                 /* per command, retries included (default 2000) */
    int connect_timeout_ms;         /* default 1000 */
    size_t max_in_flight_per_node;  /* written, reply pending, per node (default 1024) */
    size_t max_queued;              /* submitted, not completed, all nodes (default 65536) */
    size_t max_reply_bytes;         /* unparsed bytes of one reply (default 4 MiB) */
    size_t max_command_bytes;       /* one encoded command (default 1 MiB) */
    int max_redirects;              /* MOVED + ASK per command (default 5) */
    int max_retries;                /* TRYAGAIN + CLUSTERDOWN per command (default 8) */
    int refresh_min_interval_ms;    /* between two CLUSTER SLOTS (default 100) */
    int external_loop;              /* 1: no thread of its own (rc_loop_fd, rc_loop_run) */
} rc_options;

/* reply: owned by the callback (freeReplyObject), NULL when error is set.
 * A Redis error reply (other than the redirects handled here) is a reply
 * of type REDIS_REPLY_ERROR, error NULL. */
typedef void (*rc_callback)(void *ud, redisReply *reply, const char *error);

/* Starts the I/O thread and the first slot map read; does not wait for it
 * (rc_wait_ready). NULL with the reason in err on bad options. */
rc_client *rc_new(const rc_options *opts, char *err, size_t errlen);
/* Waits until the slot map covers every slot: 0, or -1 after timeout_ms. */
int rc_wait_ready(rc_client *c, int timeout_ms);
/* Completes every pending command with "closed" (on the I/O thread, or
 * with external_loop on the calling thread), stops it, frees everything. */
void rc_free(rc_client *c);

/* external_loop only: an fd (itself an epoll set) that is readable when the
 * client has work; -1 without external_loop. */
int rc_loop_fd(rc_client *c);
/* external_loop only: does what is ready without blocking (completions run
 * here); returns the ms within which it wants to run again (timers), at
 * most 10; -1 without external_loop. Never call rc_command_sync, or
 * rc_wait_ready with a timeout, on this thread: nothing would run the loop. */
int rc_loop_run(rc_client *c);

/* Queues argv (argvlen NULL: C strings) for the master of key's slot.
 * 0, or -1 (queue full, command too large, closing): cb is then not called. */
int rc_command(rc_client *c, const char *key, size_t keylen, int argc, const char **argv, const size_t *argvlen,
               rc_callback cb, void *ud);

/* The same, waiting for the reply (never on the I/O thread). The reply
 * (caller frees), or NULL with the error copied into err. */
redisReply *rc_command_sync(rc_client *c, const char *key, size_t keylen, int argc, const char **argv,
                            const size_t *argvlen, char *err, size_t errlen);

/* The slot map as the client last applied it, from whichever node answered
 * (no round trip: a map read asked of one key's master fails while that
 * master is stopped): ranges of consecutive slots with their master's
 * address into out[0..max). How many there are (more than max: only max
 * written), 0 before the first map. Any thread. */
int rc_slot_map(rc_client *c, rc_slot_range *out, int max);
/* Asks for a map read soon (a caller found the map wrong: MOVED on a
 * connection of its own); rate-limited like every read. Any thread. */
void rc_refresh(rc_client *c);

typedef struct rc_stats {
    uint64_t commands;     /* accepted by rc_command */
    uint64_t rejected;     /* refused by rc_command (bounds) */
    uint64_t moved, ask, tryagain, clusterdown;
    uint64_t slot_refreshes; /* CLUSTER SLOTS answered and applied */
    uint64_t connects;       /* connections established */
    uint64_t conn_failures;  /* connections refused, timed out or lost */
    uint64_t timeouts;
    uint64_t peak_in_flight; /* on one node */
} rc_stats;
void rc_get_stats(rc_client *c, rc_stats *out);

#endif
