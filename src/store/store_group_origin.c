/* store_group_origin.c -- store.h's group origin records (CreateGroup
 * re-runs) over either backend: the batch put, and the get that accepts a
 * slot's record only when it is the one asked about. */
#include "store/store_group_origin.h"

#include "core/bigendian.h"
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_batch_ops.h"

void group_origin_key(uint8_t out[GROUP_ORIGIN_KEY_LEN], uint32_t partition, uint32_t slot) {
    out[0] = GROUP_ORIGIN_TAG;
    put_be(put_be(out + 1, partition, 4), slot, 4);
}

static uint32_t slot_of(uint64_t offset) { return (uint32_t)(offset % STORE_GROUP_ORIGIN_SLOTS); }

void store_put_group_origin(store_batch *b, const store_group_origin *o, uint64_t conv) {
    uint8_t k[GROUP_ORIGIN_KEY_LEN], v[GROUP_ORIGIN_VALUE_LEN];
    group_origin_key(k, o->partition, slot_of(o->offset));
    uint8_t *p = put_be(v, o->offset, 8);
    p = put_be(p, o->user, 8);
    p = put_be(p, o->device, 8);
    p = put_be(p, o->request_id, 8);
    put_be(p, conv, 8);
    batch_ops_put(b, k, sizeof k, v, sizeof v);
}

int store_get_group_origin(store *s, const store_group_origin *o, uint64_t *conv) {
    if (!s->ops->get_group_origin) return 0;
    uint64_t f[GROUP_ORIGIN_FIELDS];
    int found = s->ops->get_group_origin(s->impl, o->partition, slot_of(o->offset), f);
    if (found != 1) return found;
    /* another record of the same slot (an older offset, or a 'sends' topic
     * made anew) is not this one */
    if (f[0] != o->offset || f[1] != o->user || f[2] != o->device || f[3] != o->request_id) return 0;
    *conv = f[4];
    return 1;
}
