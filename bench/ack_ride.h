/* ack_ride.h -- when parley-bench sends its cumulative Ack.
 *
 * The protocol has no Ack inside a SendMessage (a Frame carries one body),
 * so an Ack is always its own frame; what the bench decides is when it is
 * written. A connection that sends load writes its Ack just before its
 * next SendMessage frame, into the same WebSocket write: the server reads
 * both in one read of one segment instead of waking for a lone Ack. The
 * Ack still covers every event received so far (it is cumulative), and goes
 * out once ack_every events are owed, as before.
 *
 * It goes alone only when riding would hold it too long: a connection that
 * sends no load acks alone at ack_every events, a sender alone at
 * ACK_RIDE_ALONE_FACTOR times that (its sends stalled while events keep
 * coming), and the loop's 100 ms housekeeping acks whatever is owed. So
 * the events the server keeps unacknowledged per device stay bounded. */
#ifndef PARLEY_BENCH_ACK_RIDE_H
#define PARLEY_BENCH_ACK_RIDE_H

#include <stdbool.h>
#include <stdint.h>

enum { ACK_RIDE_ALONE_FACTOR = 4 };

/* An event arrived; owed events are unacknowledged. Write the Ack now, in a
 * frame of its own? sends_load: the connection is one of the load's senders
 * and the load is still running (a send will come to ride on). */
static inline bool ack_ride_alone(uint64_t owed, uint32_t ack_every, bool sends_load) {
    uint64_t at = sends_load ? (uint64_t)ack_every * ACK_RIDE_ALONE_FACTOR : ack_every;
    return owed >= at;
}

/* A SendMessage is about to be written: write the owed Ack just before it? */
static inline bool ack_ride_on_send(uint64_t owed, uint32_t ack_every) {
    return owed >= ack_every;
}

#endif
