/* redis_cluster_parse.h -- the pure parts of the Redis Cluster client, apart
 * so unit tests reach them without a server: the key -> slot hash (CRC16
 * XMODEM of the key, or of its first non-empty {hash tag}, mod 16384), the
 * CLUSTER SLOTS reply, and the redirect / retry errors (MOVED, ASK,
 * TRYAGAIN, CLUSTERDOWN). */
#ifndef PARLEY_REGISTRY_REDIS_CLUSTER_PARSE_H
#define PARLEY_REGISTRY_REDIS_CLUSTER_PARSE_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define RC_SLOTS 16384
#define RC_HOST_MAX 64 /* an IPv4 or IPv6 literal, with its NUL */

uint16_t rc_crc16(const char *buf, size_t len);
/* the cluster slot of key: CRC16 of the hash tag when there is one */
uint16_t rc_key_slot(const char *key, size_t len);

typedef struct rc_slot_range {
    uint16_t start, end; /* inclusive */
    char host[RC_HOST_MAX];
    int port;
} rc_slot_range;

/* The masters of a CLUSTER SLOTS reply into out[0..max). An empty host
 * ("" or "?": the node does not know its own address) becomes asked_host.
 * Returns the number of ranges, or -1 when the reply is malformed or has
 * more than max ranges. */
int rc_parse_slots(const redisReply *r, const char *asked_host, rc_slot_range *out, size_t max);

enum rc_error_kind { RC_ERR_OTHER, RC_ERR_MOVED, RC_ERR_ASK, RC_ERR_TRYAGAIN, RC_ERR_CLUSTERDOWN };

/* The kind of an error reply's text; for MOVED and ASK also the slot and
 * the target "host:port" (host into host[RC_HOST_MAX]). A MOVED/ASK whose
 * target does not parse is RC_ERR_OTHER. */
enum rc_error_kind rc_parse_error(const char *str, size_t len, int *slot, char *host, int *port);

/* "host:port" (the last colon splits, so "::1:6379" works) into host
 * (RC_HOST_MAX) and port; 0, or -1 when malformed or too long. */
int rc_split_host_port(const char *s, size_t len, char *host, int *port);

#endif
