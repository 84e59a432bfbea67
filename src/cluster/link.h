/* link.h -- the node link: persistent TCP connections between parley
 * nodes carrying link frames (link_frame.h), in batches.
 *
 * Each direction uses the sender's own connection: a node connects out to
 * every peer it sends to (by the peer's internal address, from the node
 * directory) and only writes there; connections it accepts on
 * --internal-listen it only reads, after the handshake: each side sends a
 * HELLO (its name, roles and a fresh nonce), then a PROOF that it holds
 * the cluster secret (link_auth.h); the connector's peer counts as up, and
 * the acceptor takes its frames, only once the other's PROOF verifies. A
 * PROOF that does not verify closes the connection (counted in
 * auth_failed), as does a handshake unfinished within 10 s.
 *
 * One thread with its own epoll loop owns every socket. link_send may be
 * called from any thread: the frame is encoded into the peer's pending
 * bytes (a bounded queue) and the thread writes everything pending in one
 * write per turn: frames queued while a write was in flight leave
 * together (batching without a timer, so a lone frame is not delayed).
 * TCP_NODELAY on every connection.
 *
 * Failure: a peer that cannot be reached, or whose connection breaks, is
 * retried with exponential backoff and full jitter (50 ms doubling to 5 s).
 * While a peer is not connected, link_send refuses (returns -1) and what
 * was pending or half written is dropped: callers treat the link as
 * lossy. Requests are retried by the device (same client_msg_id, deduped);
 * deliveries are caught up by sync, since the device's inbox and cursor in
 * the store are the truth. A malformed frame closes the connection it came
 * on (counted); the sender reconnects. */
#ifndef PARLEY_CLUSTER_LINK_H
#define PARLEY_CLUSTER_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/link_frame.h"

typedef struct node_link node_link;

/* A frame from peer (its HELLO name), on the link thread: copy what you
 * keep (f->body points into the link's buffer) and do not block. */
typedef void (*link_receive_fn)(void *ud, const char *peer, const link_frame *f);

typedef struct link_options {
    const char *name;          /* this node's name, sent in HELLO (link_frame.h token rules) */
    unsigned roles;            /* cluster_config.h CLUSTER_ROLE_* bits, sent in HELLO */
    const char *listen_host;   /* NULL: accept nothing (send only) */
    int listen_port;           /* 0: any free port (link_listen_port says which) */
    size_t queue_bytes;        /* pending bytes per peer before link_send refuses (default 64 MiB) */
    size_t max_peers;          /* peers connected out to, and accepted (default 1024 each) */
    const uint8_t *key;        /* LINK_AUTH_BYTES (link_auth.h link_auth_key); NULL: all zero (loopback) */
    link_receive_fn on_frame;  /* may be NULL (frames are then counted and dropped) */
    void *ud;
} link_options;

typedef struct link_stats {
    uint64_t frames_sent;      /* queued by link_send */
    uint64_t frames_refused;   /* link_send: peer not connected, queue full, bad frame */
    uint64_t frames_received;  /* decoded and handed to on_frame (HELLO included) */
    uint64_t malformed;        /* connections closed for a malformed frame */
    uint64_t connects;         /* outgoing connections established */
    uint64_t disconnects;      /* outgoing connections lost or refused */
    uint64_t bytes_dropped;    /* pending or half-written bytes dropped with a connection */
    uint64_t auth_failed;      /* connections closed for a PROOF that did not verify */
} link_stats;

/* Starts the thread (and the listener). NULL with the reason in err. */
node_link *link_start(const link_options *o, char *err, size_t errlen);
/* Closes every connection, stops the thread, frees everything. */
void link_stop(node_link *l);
int link_listen_port(const node_link *l);

/* Starts connecting to the peer at addr ("IPv4:PORT") if not yet known;
 * idempotent. 0, or -1 (bad address, too many peers). */
int link_connect(node_link *l, const char *addr);
/* Whether the connection to addr is up (the peer's PROOF verified). */
bool link_peer_up(node_link *l, const char *addr);
/* Queues f for the peer at addr (connecting to it if unknown). 0, or -1
 * when refused: not connected now, its queue is full, or f is invalid. */
int link_send(node_link *l, const char *addr, const link_frame *f);

link_stats link_get_stats(node_link *l);

#endif
