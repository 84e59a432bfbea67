#include "gateway/in_flight.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/request_limits.h"

struct in_flight_entry {
    uint64_t request_id;
    size_t bytes;
};

/* Allocated at the first request and freed when the last is answered, so
 * an idle connection holds one NULL pointer for all of this. It starts with
 * room for IN_FLIGHT_FIRST entries and doubles up to --max-in-flight: most
 * connections have one or two requests out at a time, and a table sized
 * for the cap (64 entries, 1 KiB) on every busy connection is memory for
 * requests that are never sent. */
struct in_flight_table {
    uint32_t n;             /* requests at the writer, not yet answered */
    uint32_t room;          /* entries allocated */
    size_t bytes;           /* their decoded bytes */
    struct in_flight_entry e[];   /* the oldest first */
};

uint32_t in_flight_count(const conn *c) { return c->in_flight ? c->in_flight->n : 0; }
size_t in_flight_bytes(const conn *c) { return c->in_flight ? c->in_flight->bytes : 0; }
uint32_t in_flight_room(const conn *c) { return c->in_flight ? c->in_flight->room : 0; }

/* c's table with room for one more entry (at most cap in all), or NULL:
 * out of memory, or (never, by the pause) full */
static struct in_flight_table *room_for_one(conn *c, uint32_t cap) {
    struct in_flight_table *t = c->in_flight;
    if (t && t->n < t->room) return t;
    uint32_t n = t ? t->n : 0;
    if (n >= cap) return NULL;
    uint32_t room = t ? t->room * 2 : IN_FLIGHT_FIRST;
    if (room > cap) room = cap;
    struct in_flight_table *grown = realloc(t, sizeof *t + (size_t)room * sizeof t->e[0]);
    if (!grown) return NULL;   /* the old table, if any, is still c's */
    if (!t) {
        grown->n = 0;
        grown->bytes = 0;
    }
    grown->room = room;
    c->in_flight = grown;
    return grown;
}

void in_flight_add(conn *c, uint32_t cap, uint64_t request_id, size_t decoded_bytes) {
    struct in_flight_table *t = room_for_one(c, cap);
    /* out of memory or full: counted by nothing, so the caps do not hold
     * this one back; the global byte bound still does */
    if (!t) return;
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
