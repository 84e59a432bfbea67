#include "gateway/in_flight.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/request_limits.h"

struct in_flight_entry {
    uint64_t request_id;
    size_t bytes;
};

/* Allocated at the first request and freed when the last is answered, so
 * an idle connection holds one NULL pointer for all of this. */
struct in_flight_table {
    uint32_t n;             /* requests at the writer, not yet answered */
    size_t bytes;           /* their decoded bytes */
    struct in_flight_entry e[];   /* the oldest first; cap entries */
};

uint32_t in_flight_count(const conn *c) { return c->in_flight ? c->in_flight->n : 0; }
size_t in_flight_bytes(const conn *c) { return c->in_flight ? c->in_flight->bytes : 0; }

void in_flight_add(conn *c, uint32_t cap, uint64_t request_id, size_t decoded_bytes) {
    if (!c->in_flight)
        c->in_flight = calloc(1, sizeof *c->in_flight + (size_t)cap * sizeof c->in_flight->e[0]);
    struct in_flight_table *t = c->in_flight;
    /* out of memory or (never, by the pause) full: counted by nothing, so
     * the caps do not hold this one back; the global byte bound still does */
    if (!t || t->n >= cap) return;
    t->e[t->n].request_id = request_id;
    t->e[t->n].bytes = decoded_bytes;
    t->n++;
    t->bytes += decoded_bytes;
}

void in_flight_answered(conn *c, const uint8_t *reply, size_t len) {
    struct in_flight_table *t = c->in_flight;
    frame_peek pk;
    if (!t || t->n == 0 || frame_peek_parse(reply, len, &pk)) return;
    /* the oldest with that id: a client reusing an id gets its answers in order */
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->e[i].request_id != pk.request_id) continue;
        t->bytes -= t->e[i].bytes;
        memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof t->e[0]);
        t->n--;
        break;
    }
    if (t->n == 0) in_flight_free(c);   /* an idle connection holds no table */
}

void in_flight_free(conn *c) {
    free(c->in_flight);
    c->in_flight = NULL;
}
