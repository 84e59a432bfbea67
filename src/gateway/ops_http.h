/* ops_http.h -- what operators read: /healthz and /metrics, on the public
 * port (the default) or on a listener of their own (--metrics-listen
 * HOST:PORT), plain HTTP, one short request at a time on one thread, so a
 * scraper never shares a port or a loop with clients. */
#ifndef PARLEY_GATEWAY_OPS_HTTP_H
#define PARLEY_GATEWAY_OPS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "server.h"

/* "ok" (HTTP 200) or why not (503): the disk is under the watermark, the
 * store is failing, and/or "waiting for A, B" (ops_health_wait_on). The
 * text is the caller's thread's until its next call; at most
 * OPS_HEALTH_TEXT_MAX bytes with its NUL. */
const char *ops_health(server *srv, int *http_status);
/* Every metric of the process (Prometheus text) into out; the length. */
size_t ops_metrics_text(server *srv, char *out, size_t cap);

typedef struct ops_listener ops_listener;
/* Binds host:port and serves /metrics and /healthz there. NULL with the
 * error logged. */
ops_listener *ops_listener_start(server *srv, const char *host, int port);
void ops_listener_stop(ops_listener *l);

/* What a node waits for besides its store, so /healthz says it (issue 13:
 * the Redis Cluster, the node link to the chat node, Kafka): while
 * waiting(ctx) is true, /healthz answers 503 "waiting for NAME" (the names
 * of all that wait, comma-separated, in the order given). Called by the
 * component that owns the dependency once it exists, before the workers
 * start; removed with ops_health_wait_off before ctx goes away. waiting()
 * runs on any thread (the workers', the ops listener's) and must only read.
 * At most OPS_HEALTH_WAITS, names 1..OPS_HEALTH_NAME_MAX-1 bytes; 0 or -1. */
enum { OPS_HEALTH_WAITS = 8, OPS_HEALTH_NAME_MAX = 24, OPS_HEALTH_TEXT_MAX = 256 };
int ops_health_wait_on(const char *name, bool (*waiting)(void *ctx), void *ctx);
void ops_health_wait_off(void *ctx);   /* every entry with this ctx */

#endif
