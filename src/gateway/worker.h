/* worker.h -- the event-loop threads that own the sockets. */
#ifndef PARLEY_GATEWAY_WORKER_H
#define PARLEY_GATEWAY_WORKER_H

#include "server.h"

/* Creates srv->n_workers workers, each with its own SO_REUSEPORT listener
 * on the configured address. 0, or -1 with the reason logged. */
int workers_start(server *srv);
/* Drains and joins the workers: each closes its listener, then closes its
 * WebSocket connections with 1012 spread over cfg.drain_window_ms, lets
 * their output flush (a peer that does not read gets a few seconds), and
 * exits. Replies and deliveries keep flowing to connections not yet closed.
 * Blocks for about the drain window. */
void workers_stop(server *srv);
/* Frees the workers once nothing posts to them any more. */
void workers_free(server *srv);

#endif
