/* delivered_record.h -- a 'sends' record that carries delivered raises
 * (--kafka): a device on the origin node acknowledged its inbox, and the
 * conversations those entries were in get the user's delivered mark raised
 * by the owner of their partition (the only writer of their member
 * records), not by the origin. One record per Ack and 'sends' partition
 * (every conversation in it is of that partition), keyed like the
 * partition's other records, so it reaches the same owner, in order with
 * them.
 *
 * Value, all integers big-endian:
 *   u8  kind (DELIVERED_RECORD_KIND: distinct from send_record.h's
 *       version byte, so a 'sends' record is one or the other)
 *   u64 user whose devices received
 *   u16 raises n (1..DELIVERED_RECORD_RAISES_MAX)
 *   n x { u64 conversation, u64 seq delivered up to,
 *         u8 senders m (0..DELIVERED_RECORD_SENDERS), m x u64 sender }
 * A value that does not parse exactly is malformed and is skipped. Applying
 * a record raises marks only upward (max), so a record read twice (a batch
 * replayed after a crash or a rewind) changes nothing the second time. */
#ifndef PARLEY_CLUSTER_DELIVERED_RECORD_H
#define PARLEY_CLUSTER_DELIVERED_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    DELIVERED_RECORD_KIND = 0x44,      /* 'D' */
    DELIVERED_RECORD_RAISES_MAX = 256, /* an Ack raises at most this many conversations (chat/writer.c ACK_CONVS) */
    DELIVERED_RECORD_SENDERS = 8,      /* senders told per raise (chat/writer_internal.h NOTE_SENDERS) */
    DELIVERED_RECORD_RAISE_MAX = 8 + 8 + 1 + 8 * DELIVERED_RECORD_SENDERS,
    DELIVERED_RECORD_MAX = 1 + 8 + 2 + DELIVERED_RECORD_RAISES_MAX * DELIVERED_RECORD_RAISE_MAX,
};

typedef struct delivered_raise {
    uint64_t conv, seq;
    uint64_t senders[DELIVERED_RECORD_SENDERS];
    uint32_t n_senders;
} delivered_raise;

/* The record of user's raises (n: 1..DELIVERED_RECORD_RAISES_MAX; senders
 * past DELIVERED_RECORD_SENDERS are left out) into out (at least
 * DELIVERED_RECORD_MAX bytes): its length, or 0 when n is out of range. */
size_t delivered_record_encode(uint64_t user, const delivered_raise *raises, size_t n, uint8_t *out);
/* Whether value is a delivered record (by its first byte), well formed or not. */
bool delivered_record_is(const void *value, size_t len);
/* 0 with *user, raises[0..*n) (room for DELIVERED_RECORD_RAISES_MAX), or -1
 * when malformed. */
int delivered_record_parse(const void *value, size_t len, uint64_t *user, delivered_raise *raises, size_t *n);

#endif
