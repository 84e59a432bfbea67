/* test_conn_memory.c -- what an idle signed-in connection holds, counted:
 * the bounds that keep it at or under 512 B of server user space at 19,900
 * connections (parley-bench connections measures the whole; bench/RESULTS.md
 * "Idle connection memory").
 *
 * An idle connection holds its struct conn in the worker's conn table and
 * one registry entry and one presence record for its user; nothing else of
 * its own (no buffers, no sign-in state, no side state, no fragment buffer).
 * The tests fail when struct conn grows past CONN_STRUCT_MAX (a hot field
 * added back), when one of those allocations stays after it is needed, or
 * when the table, registry or presence cost more per connection.
 *
 * Also: the state that was moved out of struct conn or made smaller still
 * does its job (the sign-in state keeps its Host, a user's registry table
 * grows past its first entry, a stale conn id finds nothing). */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "core/clock.h"
#include "gateway/conn.h"
#include "gateway/conn_auth.h"
#include "gateway/conn_side.h"
#include "gateway/conn_table.h"
#include "registry/registry.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#endif

enum {
    /* struct conn, held in place by the conn table (no malloc header) */
    CONN_STRUCT_MAX = 152,
    /* a user's registry entry and presence record, with their map slots */
    USER_RECORDS_MAX = 128,
    /* what the connection's own state may cost in all: the rest of the
     * 512 B budget is the store's block cache and allocator slack, which
     * only parley-bench connections sees */
    IDLE_CONN_OWN_MAX = 280,
    USERS = 19900,
};

/* Bytes in use by malloc (glibc; ASan's allocator does not report them). */
static size_t heap_in_use(void) { return mallinfo2().uordblks; }

static void auth_keeps_host_and_deadline_start(void) {
    conn_auth *a = conn_auth_new("chat.example:8443", 255, 1234);
    CHECK(a != NULL, "conn_auth_new failed");
    int same = strcmp(a->host, "chat.example:8443") == 0;
    uint64_t since = a->since_ms, rid = a->request_id;
    conn_auth_free(a);
    CHECK(same, "host not kept");
    CHECK(since == 1234, "since_ms %llu", (unsigned long long)since);
    CHECK(rid == 0, "request_id starts at %llu", (unsigned long long)rid);
}

static void auth_refuses_host_over_bound(void) {
    char host[300];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    conn_auth *a = conn_auth_new(host, 255, 0);
    conn_auth_free(a);
    CHECK(a == NULL, "a 299-byte Host was taken with a 255-byte bound");
    host[255] = '\0';
    a = conn_auth_new(host, 255, 0);
    size_t len = a ? strlen(a->host) : 0;
    conn_auth_free(a);
    CHECK(len == 255, "a 255-byte Host kept as %zu bytes", len);
}

static bool has_conn(const registry_entry *e, size_t n, uint64_t conn_id, uint32_t device) {
    for (size_t i = 0; i < n; i++)
        if (e[i].conn_id == conn_id && e[i].device_id == device) return true;
    return false;
}

static void registry_holds_every_device_of_a_user(void) {
    registry *r = registry_local_new();
    CHECK(r != NULL, "registry_local_new failed");
    enum { DEVICES = 5 };
    registry_entry out[8];
    for (uint32_t d = 1; d <= DEVICES; d++) {
        registry_entry e = {.conn_id = 100 + d, .device_id = d, .worker = 0};
        if (registry_add(r, 42, &e) != 0) {
            registry_free(r);
            CHECK(0, "registry_add of device %u failed", d);
        }
    }
    size_t n = registry_lookup(r, 42, out, 8);
    bool all = n == DEVICES;
    for (uint32_t d = 1; d <= DEVICES && all; d++) all = has_conn(out, n, 100 + d, d);
    registry_remove(r, 42, 103);
    size_t after = registry_lookup(r, 42, out, 8);
    bool gone = !has_conn(out, after, 103, 3) && has_conn(out, after, 101, 1) && has_conn(out, after, 105, 5);
    registry_free(r);
    CHECK(all, "lookup found %zu of %d devices, or the wrong ones", n, DEVICES);
    CHECK(after == DEVICES - 1 && gone, "after removing one: %zu entries", after);
}

static void conn_struct_within_bound(void) {
    fprintf(stderr, "  sizeof(conn) %zu B, bound %d B\n", sizeof(conn), CONN_STRUCT_MAX);
    CHECK(sizeof(conn) <= CONN_STRUCT_MAX, "struct conn is %zu B, over %d B: an idle connection "
          "carries every field; put rarely used state in conn_side.h", sizeof(conn), CONN_STRUCT_MAX);
}

/* Bytes c holds beyond its struct: buffers, sign-in state, side state
 * (a held AckDeviceMessages included), in-flight table, fragment buffer. */
static size_t conn_extra_bytes(const conn *c) {
    size_t n = buf_held(&c->in) + buf_held(&c->out);
    if (c->auth) n += sizeof *c->auth + strlen(c->auth->host) + 1;
    if (c->side) n += sizeof *c->side;
    if (c->in_flight) n += 1;   /* opaque (in_flight.c): any is too much */
    if (c->reader.frag) n += sizeof *c->reader.frag + c->reader.frag->cap;
    return n;
}

/* Output queued and written, input of a partial frame completed: the
 * buffers go when they drain; side state made for a rate bucket goes once
 * the bucket is full again, and not before, nor while a sync or device-
 * message paging needs it. */
static void drained_conn_holds_nothing_extra(void) {
    conn_table t = {0};
    conn *c = conn_table_alloc(&t, 0);
    CHECK(c != NULL, "conn_table_alloc failed");
    CHECK(conn_extra_bytes(c) == 0, "a new connection holds %zu extra bytes", conn_extra_bytes(c));
    CHECK(buf_append(&c->out, "0123456789", 10) == 0 && buf_append(&c->in, "abc", 3) == 0, "append");
    size_t busy = conn_extra_bytes(c);
    buf_consume(&c->out, 4);
    buf_consume(&c->out, 6);
    buf_consume(&c->in, 3);
    size_t drained = conn_extra_bytes(c);

    uint64_t now = clock_mono_ms();
    conn_side *s = conn_side_get(c);
    bool got = s != NULL;
    if (s) conn_side_bucket_until(s, now + 1000);
    bool kept_while_refilling = !conn_side_trim(c, now) && c->side;
    c->dm_pending = true;
    bool kept_while_paging = !conn_side_trim(c, now + 1000) && c->side;
    c->dm_pending = false;
    c->syncing = true;
    bool kept_until_sync_done = !conn_side_trim(c, now + 1000) && c->side;
    c->sync_done_sent = true;
    bool dropped = conn_side_trim(c, now + 1000) && !c->side;
    size_t idle = conn_extra_bytes(c);
    conn_side_free(c);
    conn_table_release(&t, c);
    conn_table_free(&t);
    CHECK(busy >= 13, "buffers with bytes in transit hold %zu bytes", busy);
    CHECK(drained == 0, "drained buffers still hold %zu bytes", drained);
    CHECK(got && kept_while_refilling, "side state dropped while a bucket refills");
    CHECK(kept_while_paging, "side state dropped while device messages page");
    CHECK(kept_until_sync_done, "side state (sync_from) dropped before SyncDone");
    CHECK(dropped, "side state kept once nothing in it matters");
    CHECK(idle == 0, "an idle connection holds %zu extra bytes", idle);
}

/* A fragmented message is reassembled in a buffer the reader frees (the
 * worker frees it once the message is handled, or the next feed does). */
static void reader_frees_fragment_buffer(void) {
    ws_reader r;
    ws_reader_init(&r, false, 1000);
    uint8_t b[64];
    size_t n = ws_write_header(b, WS_OP_BINARY, false, 3, NULL);
    memcpy(b + n, "abc", 3);
    n += 3;
    size_t m1 = ws_write_header(b + n, WS_OP_CONT, true, 2, NULL);
    memcpy(b + n + m1, "de", 2);
    n += m1 + 2;
    size_t used = 0;
    ws_message m;
    int rc = ws_reader_feed(&r, b, n, &used, &m);
    bool whole = rc == WS_READY && m.len == 5 && memcmp(m.data, "abcde", 5) == 0;
    bool held = r.frag != NULL;
    rc = ws_reader_feed(&r, b, 0, &used, &m);
    bool freed = rc == WS_NEED_MORE && r.frag == NULL;
    ws_reader_free(&r);
    CHECK(sizeof(ws_reader) <= 16, "ws_reader is %zu B", sizeof(ws_reader));
    CHECK(whole && held, "fragmented message not reassembled (rc %d)", rc);
    CHECK(freed, "fragment buffer kept after its message");
}

/* A slot's next connection gets a new id; the old id finds nothing. */
static void table_stale_id_finds_nothing(void) {
    conn_table t = {0};
    conn *a = conn_table_alloc(&t, 3);
    CHECK(a != NULL, "alloc");
    uint64_t old = a->id;
    uint32_t slot = conn_slot(a);
    bool found = conn_table_by_id(&t, old) == a && conn_table_at(&t, slot) == a && conn_id_worker(old) == 3;
    conn_table_release(&t, a);
    bool gone = conn_table_by_id(&t, old) == NULL && conn_table_at(&t, slot) == NULL;
    conn *b = conn_table_alloc(&t, 3);
    bool reused = b && conn_slot(b) == slot && b->id != old && conn_id_worker(b->id) == 3;
    bool stale = conn_table_by_id(&t, old) == NULL && b && conn_table_by_id(&t, b->id) == b;
    bool zeroed = b && b->user_id == 0 && b->next_dirty == NULL && b->state == 0;
    if (b) conn_table_release(&t, b);
    conn_table_free(&t);
    CHECK(found, "a live connection is not found by id and slot");
    CHECK(gone, "a released slot is still found");
    CHECK(reused, "the free slot was not reused with a new id");
    CHECK(stale, "the old id names the slot's next connection");
    CHECK(zeroed, "a reused slot is not zeroed");
}

/* The table costs a connection its struct: no chunk header, no per-slot
 * arrays. Counted for USERS connections in one table. */
static void table_costs_the_struct(void) {
    conn_table t = {0};
    conn **all = malloc(USERS * sizeof *all);
    CHECK(all != NULL, "malloc");
    size_t before = heap_in_use();
    size_t n = 0;
    while (n < USERS && (all[n] = conn_table_alloc(&t, 0)) != NULL) n++;
    size_t after = heap_in_use();
    size_t pages_bytes = (size_t)t.n_pages * CONN_TABLE_PAGE * sizeof(conn) + t.cap_pages * sizeof(conn *);
    for (size_t i = 0; i < n; i++) conn_table_release(&t, all[i]);
    conn_table_free(&t);
    free(all);
    CHECK(n == USERS, "%zu of %d connections", n, USERS);
    double per = (double)pages_bytes / USERS;
    fprintf(stderr, "  conn table: %.1f B per connection (struct %zu B)\n", per, sizeof(conn));
    CHECK(per <= sizeof(conn) * 1.02 + 1, "the table holds %.1f B per connection", per);
#ifndef UNDER_ASAN
    double heap = (double)(after - before) / USERS;
    CHECK(heap <= per + 1, "malloc counts %.1f B per connection in the table", heap);
#else
    (void)after;
    (void)before;
#endif
}

#ifndef UNDER_ASAN
/* What the registry and presence keep for a signed-in, syncing user with
 * one connection. malloc's own count (glibc); not under ASan. */
static size_t user_records_bytes(void) {
    registry *r = registry_local_new();
    if (!r) return SIZE_MAX;
    size_t before = heap_in_use();
    for (uint64_t u = 1; u <= USERS; u++) {
        registry_entry e = {.conn_id = u, .device_id = 1, .worker = 0};
        registry_presence_connected(r, u);
        if (registry_add(r, u, &e)) break;
    }
    size_t after = heap_in_use();
    registry_free(r);
    return (after - before + USERS / 2) / USERS;
}
#endif

static void idle_conn_own_memory_within_budget(void) {
#ifdef UNDER_ASAN
    fprintf(stderr, "  per-user registry/presence bytes not counted (AddressSanitizer build)\n");
#else
    size_t user = user_records_bytes();
    size_t own = sizeof(conn) + user;
    fprintf(stderr, "  registry + presence %zu B per user; an idle connection's own memory %zu B "
            "(bound %d of the 512 B budget)\n", user, own, IDLE_CONN_OWN_MAX);
    CHECK(user <= USER_RECORDS_MAX, "registry + presence keep %zu B per user", user);
    CHECK(own <= IDLE_CONN_OWN_MAX, "an idle connection's own memory is %zu B", own);
#endif
}

int main(void) {
    RUN(conn_struct_within_bound);
    RUN(drained_conn_holds_nothing_extra);
    RUN(reader_frees_fragment_buffer);
    RUN(table_stale_id_finds_nothing);
    RUN(table_costs_the_struct);
    RUN(idle_conn_own_memory_within_budget);
    RUN(auth_keeps_host_and_deadline_start);
    RUN(auth_refuses_host_over_bound);
    RUN(registry_holds_every_device_of_a_user);
    CHECK_EXIT();
}
