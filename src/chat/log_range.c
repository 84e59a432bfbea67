/* log_range.c -- taking a range of fan-out log offsets. See log_range.h. */
#include "chat/log_range.h"

#include <stdio.h>

#include "chat/partition.h"
#include "core/log.h"
#include "core/metrics.h"

static void counter_name(char *out, size_t cap, uint32_t partition) {
    snprintf(out, cap, "log_range.%u", partition);
}

static void raise_to(uint32_t *above, uint32_t r) {
    if (r > *above) *above = r;
}

int log_range_seen(store *s, uint32_t partition, uint32_t user_partitions, uint32_t *range) {
    uint64_t last = 0, checkpoint = 0, counter = 0;
    if (store_last_log_offset(s, partition, &last) < 0) return -1;
    uint32_t above = log_range_of(last);
    for (uint32_t u = 0; u < user_partitions; u++) {
        if (store_get_checkpoint(s, checkpoint_id(partition, u, user_partitions), &checkpoint) < 0) return -1;
        raise_to(&above, log_range_of(checkpoint));
    }
    char name[32];
    counter_name(name, sizeof name, partition);
    if (store_get_counter(s, name, &counter) < 0) return -1;
    raise_to(&above, counter > LOG_RANGE_MAX ? LOG_RANGE_MAX : (uint32_t)counter);
    *range = above;
    return 0;
}

int log_range_take(store *s, store_batch *b, uint32_t partition, uint32_t above, uint32_t *range) {
    for (int i = 0; i < LOG_RANGE_CLAIMS; i++) {
        if (above >= LOG_RANGE_MAX) {
            log_error("log range: partition %u has used every range", partition);
            return -1;
        }
        uint32_t r = above + 1;
        int won = store_claim_log_range(s, partition, r);
        if (won < 0) return -1;
        if (won == 0) {   /* another writer took it (a stalled owner, or one loading with us) */
            METRIC_INC(log_ranges_unclaimed_total);
            above = r;
            continue;
        }
        METRIC_INC(log_ranges_taken_total);
        char name[32];
        counter_name(name, sizeof name, partition);
        store_put_counter(b, name, r);
        *range = r;
        return 0;
    }
    log_error("log range: partition %u: %d ranges in a row claimed by others", partition, LOG_RANGE_CLAIMS);
    return -1;
}

int log_range_load(store *s, store_batch *b, uint32_t partition, uint32_t user_partitions, uint32_t had,
                   uint32_t *range) {
    uint32_t above = 0;
    if (log_range_seen(s, partition, user_partitions, &above) < 0) return -1;
    raise_to(&above, had);
    return log_range_take(s, b, partition, above, range);
}
