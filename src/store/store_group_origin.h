/* store_group_origin.h -- the group origin record of store.h (CreateGroup
 * re-runs) as both backends store it. Only backends and store_group_origin.c
 * include this header.
 *
 *   'g' partition(4) slot(4) -> offset(8) user(8) device(8) request id(8) conv(8)
 *
 * slot = offset % STORE_GROUP_ORIGIN_SLOTS, so a partition holds at most
 * that many records (a ring: the next record of a slot replaces it). */
#ifndef PARLEY_STORE_GROUP_ORIGIN_H
#define PARLEY_STORE_GROUP_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

enum {
    GROUP_ORIGIN_TAG = 'g',
    GROUP_ORIGIN_KEY_LEN = 1 + 4 + 4,
    GROUP_ORIGIN_FIELDS = 5,     /* offset, user, device, request id, conv */
    GROUP_ORIGIN_VALUE_LEN = 8 * GROUP_ORIGIN_FIELDS,
};

/* the key of (partition, slot) into out */
void group_origin_key(uint8_t out[GROUP_ORIGIN_KEY_LEN], uint32_t partition, uint32_t slot);

#endif
