/* worker.h -- the event-loop threads that own the sockets. */
#ifndef PARLEY_GATEWAY_WORKER_H
#define PARLEY_GATEWAY_WORKER_H

#include "server.h"

/* Creates srv->n_workers workers, each with its own SO_REUSEPORT listener
 * on the configured address. 0, or -1 with the reason logged. */
int workers_start(server *srv);
/* Stops accepting, closes every connection with 1012, joins the threads. */
void workers_stop(server *srv);
/* Frees the workers once nothing posts to them any more. */
void workers_free(server *srv);

#endif
