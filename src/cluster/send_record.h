/* send_record.h -- one record of the 'sends' topic (--kafka): a device's
 * per-conversation request on its way from the node holding the device's
 * socket (the origin) to the chat node that owns the conversation's
 * partition. Keyed by conversation id (the Kafka key, not in the value).
 *
 * Value, all integers big-endian:
 *   u8  version (1)
 *   u8  origin name length n (1..SEND_RECORD_NAME_MAX)
 *   n   origin node name
 *   u64 conn id on the origin, u64 request id, u64 signed-in user
 *   u32 signed-in device
 *   the request: an encoded Frame (1..LINK_BODY_MAX bytes)
 * A value that does not parse exactly is malformed and is skipped. */
#ifndef PARLEY_CLUSTER_SEND_RECORD_H
#define PARLEY_CLUSTER_SEND_RECORD_H

#include <stddef.h>
#include <stdint.h>

enum {
    SEND_RECORD_VERSION = 1,
    SEND_RECORD_NAME_MAX = 63,
    SEND_RECORD_HEAD_MAX = 2 + SEND_RECORD_NAME_MAX + 8 * 3 + 4,
};

typedef struct send_record {
    char origin[SEND_RECORD_NAME_MAX + 1];
    uint64_t conn_id, request_id, user_id;
    uint32_t device_id;
    const uint8_t *frame;   /* points into the value */
    size_t frame_len;
} send_record;

/* The head of r (origin .. device) into out; its length, or 0 when the
 * origin name is empty or too long. The frame bytes follow it. */
size_t send_record_head(const send_record *r, uint8_t out[SEND_RECORD_HEAD_MAX]);
/* 0 and *r (frame pointing into value), or -1 when malformed. */
int send_record_parse(const void *value, size_t len, send_record *r);

#endif
