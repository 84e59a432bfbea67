/* ops_http.h -- what operators read: /healthz and /metrics, on the public
 * port (the default) or on a listener of their own (--metrics-listen
 * HOST:PORT), plain HTTP, one short request at a time on one thread, so a
 * scraper never shares a port or a loop with clients. */
#ifndef PARLEY_GATEWAY_OPS_HTTP_H
#define PARLEY_GATEWAY_OPS_HTTP_H

#include <stddef.h>

#include "server.h"

/* "ok" (HTTP 200) or why not (503): the disk is under the watermark, the
 * store is failing. */
const char *ops_health(server *srv, int *http_status);
/* Every metric of the process (Prometheus text) into out; the length. */
size_t ops_metrics_text(server *srv, char *out, size_t cap);

typedef struct ops_listener ops_listener;
/* Binds host:port and serves /metrics and /healthz there. NULL with the
 * error logged. */
ops_listener *ops_listener_start(server *srv, const char *host, int port);
void ops_listener_stop(ops_listener *l);

#endif
