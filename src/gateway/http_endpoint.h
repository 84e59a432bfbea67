/* http_endpoint.h -- what a connection says before it is a WebSocket: the
 * upgrade to parley.v1, /healthz, /metrics; anything else gets an HTTP
 * error and the connection is closed. */
#ifndef PARLEY_GATEWAY_HTTP_ENDPOINT_H
#define PARLEY_GATEWAY_HTTP_ENDPOINT_H

#include <stdbool.h>

#include "gateway/conn.h"

/* Parses the request head in c->in, if complete, and answers it. Returns
 * true if the connection is now a WebSocket (bytes after the head stay in
 * c->in) or still waiting for the head; false when it is closing. */
bool http_endpoint_handle(worker *w, conn *c);
/* Answers 503 + Retry-After at once (over the accept rate) and closes. */
void http_endpoint_shed(worker *w, conn *c);

#endif
