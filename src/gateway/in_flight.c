#include "gateway/in_flight.h"

#include <stdlib.h>

#include "gateway/request_limits.h"

struct in_flight_entry {
    uint64_t request_id;
    size_t bytes;
};

void in_flight_add(conn *c, uint32_t cap, uint64_t request_id, size_t decoded_bytes) {
    if (!c->in_flight_tab) c->in_flight_tab = calloc(cap, sizeof *c->in_flight_tab);
    /* out of memory or (never, by the pause) full: counted by nothing, so
     * the caps do not hold this one back; the global byte bound still does */
    if (!c->in_flight_tab || c->in_flight >= cap) return;
    c->in_flight_tab[c->in_flight].request_id = request_id;
    c->in_flight_tab[c->in_flight].bytes = decoded_bytes;
    c->in_flight++;
    c->in_flight_bytes += decoded_bytes;
}

void in_flight_answered(conn *c, const uint8_t *reply, size_t len) {
    frame_peek pk;
    if (c->in_flight == 0 || frame_peek_parse(reply, len, &pk)) return;
    /* the oldest with that id: a client reusing an id gets its answers in order */
    for (uint32_t i = 0; i < c->in_flight; i++) {
        if (c->in_flight_tab[i].request_id != pk.request_id) continue;
        c->in_flight_bytes -= c->in_flight_tab[i].bytes;
        for (uint32_t j = i + 1; j < c->in_flight; j++) c->in_flight_tab[j - 1] = c->in_flight_tab[j];
        c->in_flight--;
        break;
    }
    if (c->in_flight == 0) {
        free(c->in_flight_tab);   /* an idle connection holds no table */
        c->in_flight_tab = NULL;
    }
}

void in_flight_free(conn *c) {
    free(c->in_flight_tab);
    c->in_flight_tab = NULL;
    c->in_flight = 0;
    c->in_flight_bytes = 0;
}
