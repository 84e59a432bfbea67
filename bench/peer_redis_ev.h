/* peer_redis_ev.h -- hiredis async contexts on one epoll loop of ours, for
 * bench-peer-redis (pub/sub) and bench-peer-redis-streams.
 *
 * Every context has an owner; when its connection fails or is closed (by
 * Redis too: maxclients, output-buffer limits) hiredis frees the context and
 * the owner is told through on_lost, so that a driver never touches a freed
 * context and can count the run as broken rather than print a figure. */
#ifndef PARLEY_BENCH_PEER_REDIS_EV_H
#define PARLEY_BENCH_PEER_REDIS_EV_H

#include <hiredis/async.h>
#include <stdint.h>

/* Creates the epoll set; on_lost(owner) is called once per context lost. */
void rev_init(void (*on_lost)(void *owner));
/* Connects to 127.0.0.1:port from the src_index-th loopback source address.
 * ac->data is owner. NULL (and on_lost not called) if it cannot start. */
redisAsyncContext *rev_connect(int port, uint32_t src_index, void *owner);
/* One epoll_wait and the reads and writes it reports. */
void rev_poll(int timeout_ms);
/* Contexts connected, and lost, so far. */
uint64_t rev_connected(void);
uint64_t rev_lost(void);

#endif
