/* webpush_provider.h -- Web Push (RFC 8030) as a push_provider: an HTTP
 * POST of the RFC 8291 encrypted payload with TTL, Urgency and Topic and a
 * VAPID Authorization (RFC 8292), many at once over libcurl's multi
 * interface on the push thread (HTTP/2 where the push service offers it,
 * connections kept and reused). */
#ifndef PARLEY_PUSH_WEBPUSH_PROVIDER_H
#define PARLEY_PUSH_WEBPUSH_PROVIDER_H

#include "push/push_config.h"
#include "push/push_provider.h"
#include "push/vapid.h"

/* vapid is borrowed: it outlives the provider. NULL on failure. */
push_provider *webpush_provider_new(const push_config *cfg, const vapid_key *vapid);
void webpush_provider_free(push_provider *p);

/* Whether endpoint is one we would POST to: an https URL of at most
 * WEBPUSH_ENDPOINT_MAX bytes of visible ASCII with a host. */
enum { WEBPUSH_ENDPOINT_MAX = 1024 };
int webpush_endpoint_valid(const char *endpoint, size_t len);

#endif
