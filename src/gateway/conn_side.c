#include "gateway/conn_side.h"

#include <stdlib.h>

conn_side *conn_side_get(conn *c) {
    if (!c->side) c->side = calloc(1, sizeof *c->side);
    return c->side;
}

void conn_side_bucket_until(conn_side *s, uint64_t full_ms) {
    if (full_ms > s->buckets_full_ms) s->buckets_full_ms = full_ms;
}

bool conn_side_trim(conn *c, uint64_t now_ms) {
    conn_side *s = c->side;
    if (!s) return true;
    if ((c->syncing && !c->sync_done_sent) || c->dm_pending || s->device_ack || now_ms < s->buckets_full_ms)
        return false;
    conn_side_free(c);
    return true;
}

void conn_side_free(conn *c) {
    if (c->side && c->side->device_ack) parley__v1__frame__free_unpacked(c->side->device_ack, NULL);
    free(c->side);
    c->side = NULL;
}
