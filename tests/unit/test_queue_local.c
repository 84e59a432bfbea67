/* test_queue_local.c -- the embedded fan-out queue (src/queue/queue_local.c):
 * each item goes to exactly one consumer, the one of its conversation
 * partition (partition mod consumers), in the order published, whether
 * published one by one or as a group commit; and a consumer's wake-up fd
 * is readable once it has items. Fan-out's order guarantee rests on this:
 * one reader per conversation partition (src/fanout/fanout.c). */
#include <poll.h>
#include <stdlib.h>

#include "../check.h"
#include "queue/queue.h"

enum { CONSUMERS = 3, PARTITIONS = 8, ITEMS = 240 };

static queue_item *item(uint32_t partition, uint64_t offset) {
    queue_item *it = calloc(1, sizeof *it);
    if (!it) abort();
    it->partition = partition;
    it->offset = offset;
    it->conversation_id = partition + 1;
    it->seq = offset;
    it->message = blob_new("m", 1);
    return it;
}

static bool readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* every consumer gets exactly its partitions' items, each partition's in
 * offset order; `many`: published in group commits of 16, else one by one */
static void route_and_order(bool many) {
    queue *q = queue_local_new(ITEMS, CONSUMERS);
    CHECK(q, "queue_local_new");
    for (uint32_t c = 0; c < CONSUMERS; c++) CHECK(!readable(queue_wake_fd(q, c)), "consumer %u woken early", c);
    queue_item *batch[16];
    size_t n = 0;
    for (uint64_t off = 1; off <= ITEMS; off++) {
        queue_item *it = item((uint32_t)(off * 5 % PARTITIONS), off);   /* partitions interleaved */
        if (!many) {
            CHECK(queue_publish(q, it) == 0, "publish %llu", (unsigned long long)off);
            continue;
        }
        batch[n++] = it;
        if (n == 16) {
            CHECK(queue_publish_many(q, batch, n) == 0, "publish_many at %llu", (unsigned long long)off);
            n = 0;
        }
    }
    size_t total = 0;
    for (uint32_t c = 0; c < CONSUMERS; c++) {
        CHECK(readable(queue_wake_fd(q, c)), "consumer %u not woken", c);
        uint64_t last[PARTITIONS] = {0};
        queue_item *out[ITEMS];
        size_t got = queue_consume(q, c, out, ITEMS, 0);
        int wrong = -1, unordered = -1;
        for (size_t i = 0; i < got; i++) {
            uint32_t p = out[i]->partition;
            if (p % CONSUMERS != c) wrong = (int)i;
            else if (out[i]->offset <= last[p]) unordered = (int)i;
            else last[p] = out[i]->offset;
        }
        size_t want = 0;
        for (uint64_t off = 1; off <= ITEMS; off++) want += off * 5 % PARTITIONS % CONSUMERS == c;
        for (size_t i = 0; i < got; i++) queue_item_free(out[i]);
        CHECK(wrong < 0, "consumer %u got an item of another consumer's partition (#%d)", c, wrong);
        CHECK(unordered < 0, "consumer %u: a partition's items out of order at #%d", c, unordered);
        CHECK(got == want, "consumer %u got %zu items, want %zu", c, got, want);
        total += got;
    }
    CHECK(total == ITEMS, "%zu items consumed, %d published", total, ITEMS);
    queue_close(q);
    queue_free(q);
}

static void one_by_one(void) { route_and_order(false); }
static void group_commits(void) { route_and_order(true); }

int main(void) {
    RUN(one_by_one);
    RUN(group_commits);
    CHECK_EXIT();
}
