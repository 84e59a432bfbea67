/* test_bench_acks.c -- parley-bench's Ack timing (bench/ack_ride.h), on a
 * model of one connection's traffic: a load sender's Acks go out just
 * before one of its sends (none alone) while its sends keep coming, each
 * covering at least ack_every events; when its sends stop, an Ack goes
 * alone at ACK_RIDE_ALONE_FACTOR * ack_every owed, so what it owes stays
 * bounded; a connection that sends no load acks alone at ack_every. */
#include <stdbool.h>
#include <stdint.h>

#include "../check.h"
#include "../../bench/ack_ride.h"

enum { EVERY = 64 };

struct model {
    uint64_t last, acked;      /* highest event seen, last Ack sent */
    uint64_t alone, riding;    /* Acks written on their own, before a send */
    uint64_t max_owed;         /* most owed right after an event was handled */
    uint64_t min_covered;      /* fewest events one Ack covered */
};

static void ack(struct model *m) {
    uint64_t covered = m->last - m->acked;
    if (!m->min_covered || covered < m->min_covered) m->min_covered = covered;
    m->acked = m->last;
}

static void event(struct model *m, bool sends_load) {
    m->last++;
    if (ack_ride_alone(m->last - m->acked, EVERY, sends_load)) {
        ack(m);
        m->alone++;
    }
    if (m->last - m->acked > m->max_owed) m->max_owed = m->last - m->acked;
}

static void send(struct model *m) {
    if (ack_ride_on_send(m->last - m->acked, EVERY)) {
        ack(m);
        m->riding++;
    }
}

static void a_sender_acks_only_on_its_sends(void) {
    struct model m = {0};
    /* a window of 8: per send acknowledged, about 3 events arrive (its own
     * echo and the peer's messages) */
    for (int i = 0; i < 30000; i++) {
        event(&m, true);
        if (i % 3 == 2) send(&m);
    }
    CHECK(m.alone == 0, "%llu Acks went alone while the connection kept sending", (unsigned long long)m.alone);
    CHECK(m.riding >= 30000 / (EVERY + 3), "only %llu Acks rode on sends", (unsigned long long)m.riding);
    CHECK(m.min_covered >= EVERY, "an Ack covered only %llu events", (unsigned long long)m.min_covered);
    CHECK(m.max_owed < EVERY + 3, "owed up to %llu events", (unsigned long long)m.max_owed);
}

static void a_stalled_sender_acks_alone_at_the_bound(void) {
    struct model m = {0};
    for (int i = 0; i < 10 * EVERY * ACK_RIDE_ALONE_FACTOR; i++) event(&m, true);   /* no sends */
    CHECK(m.alone == 10, "%llu lone Acks, want 10", (unsigned long long)m.alone);
    CHECK(m.max_owed < (uint64_t)EVERY * ACK_RIDE_ALONE_FACTOR, "owed up to %llu events",
          (unsigned long long)m.max_owed);
}

static void a_receiver_acks_alone_at_ack_every(void) {
    struct model m = {0};
    for (int i = 0; i < 10 * EVERY; i++) event(&m, false);
    CHECK(m.alone == 10 && m.riding == 0, "%llu lone Acks, want 10", (unsigned long long)m.alone);
    CHECK(m.max_owed < EVERY, "owed up to %llu events", (unsigned long long)m.max_owed);
}

int main(void) {
    RUN(a_sender_acks_only_on_its_sends);
    RUN(a_stalled_sender_acks_alone_at_the_bound);
    RUN(a_receiver_acks_alone_at_ack_every);
    CHECK_EXIT();
}
