/* vapid.h -- RFC 8292 VAPID: the server's P-256 key pair, made at first
 * start and kept in the data directory (mode 0600), and the
 * "Authorization: vapid t=JWT, k=KEY" header that identifies us to a push
 * service. */
#ifndef PARLEY_PUSH_VAPID_H
#define PARLEY_PUSH_VAPID_H

#include <stddef.h>
#include <stdint.h>

#include "push/webpush_crypto.h"

enum {
    VAPID_KEY_B64_BYTES = 88,        /* 65 bytes in base64url, no padding, with its NUL */
    VAPID_AUDIENCE_MAX = 512,        /* scheme://host[:port] of a push endpoint */
    VAPID_HEADER_MAX = 1024,         /* the Authorization value */
};

typedef struct vapid_key vapid_key;

/* Loads dir/push-vapid-key.pem, or makes it (a new P-256 key, 0600) when
 * absent. NULL after logging why. */
vapid_key *vapid_load_or_create(const char *dir);
void vapid_free(vapid_key *k);
/* The public point (65 bytes): the applicationServerKey clients subscribe with. */
const uint8_t *vapid_public_key(const vapid_key *k);
/* The same in base64url without padding (what GET /push/vapid-public-key serves). */
const char *vapid_public_key_b64(const vapid_key *k);

/* The Authorization header's value for a request to audience (the
 * endpoint's origin), good until exp (seconds since the epoch; at most 24 h
 * ahead, RFC 8292), with subject as "sub". 0 or -1. */
int vapid_authorization(const vapid_key *k, const char *audience, uint64_t exp, const char *subject, char *out,
                        size_t cap);

/* The origin (scheme://host[:port]) of an https URL into out. 0 or -1. */
int vapid_audience_of(const char *endpoint, char *out, size_t cap);

#endif
