/* in_flight.h -- a connection's requests at the write path, not yet
 * answered: how many and how many decoded bytes they hold (the writer's
 * queue holds the decoded frames). Both are capped per connection
 * (--max-in-flight, --max-in-flight-bytes) by pausing the connection's
 * input (worker.c). Answers are matched by request id, peeked from the
 * encoded reply. */
#ifndef PARLEY_GATEWAY_IN_FLIGHT_H
#define PARLEY_GATEWAY_IN_FLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/conn.h"

/* The table's first size; it doubles as requests pile up, up to cap. */
enum { IN_FLIGHT_FIRST = 4 };

/* A request handed to the writer. cap: --max-in-flight (the table's largest
 * size; the input pauses at it, so it is not exceeded). */
void in_flight_add(conn *c, uint32_t cap, uint64_t request_id, size_t decoded_bytes);
/* The writer's reply (an encoded Frame) arrived. */
void in_flight_answered(conn *c, const uint8_t *reply, size_t len);
void in_flight_free(conn *c);
uint32_t in_flight_count(const conn *c);
size_t in_flight_bytes(const conn *c);
/* entries the table has room for now, 0 without a table (for tests) */
uint32_t in_flight_room(const conn *c);

#endif
