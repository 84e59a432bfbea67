/* test_in_flight.c -- a connection's table of requests at the writer
 * (in_flight.c): none while idle, IN_FLIGHT_FIRST entries at the first
 * request, doubling as requests pile up and never past the cap; every
 * request and its bytes kept through the growth and matched by id when
 * answered (the oldest of a reused id first); freed when the last is
 * answered. */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "gateway/conn.h"
#include "gateway/in_flight.h"
#include "proto/parley.pb-c.h"

/* the writer's reply to request id: an encoded Frame that carries it */
static size_t reply_for(uint64_t id, uint8_t *b) {
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = id;
    return protobuf_c_message_pack(&f.base, b);
}

static void answer(conn *c, uint64_t id) {
    uint8_t b[32];
    in_flight_answered(c, b, reply_for(id, b));
}

static void idle_holds_no_table(void) {
    conn *c = calloc(1, sizeof *c);
    CHECK(c, "calloc");
    int none = c->in_flight == NULL && in_flight_room(c) == 0 && in_flight_count(c) == 0;
    in_flight_add(c, 64, 1, 100);
    uint32_t first_room = in_flight_room(c);
    int first = first_room == IN_FLIGHT_FIRST && in_flight_count(c) == 1;
    answer(c, 1);
    int freed = c->in_flight == NULL && in_flight_count(c) == 0 && in_flight_bytes(c) == 0;
    in_flight_free(c);
    free(c);
    CHECK(none, "a new connection has a table");
    CHECK(first, "the first request's table has room for %u, not %d", first_room, IN_FLIGHT_FIRST);
    CHECK(freed, "the table outlived its last request");
}

static void grows_by_doubling_up_to_the_cap(void) {
    conn *c = calloc(1, sizeof *c);
    CHECK(c, "calloc");
    static const uint32_t want_room[] = {4, 4, 4, 4, 8, 8, 8, 8, 16};
    int wrong_at = -1;
    for (uint32_t i = 0; i < 9; i++) {
        in_flight_add(c, 64, 100 + i, 10);
        if (in_flight_room(c) != want_room[i] && wrong_at < 0) wrong_at = (int)i;
    }
    for (uint32_t i = 9; i < 64; i++) in_flight_add(c, 64, 100 + i, 10);
    uint32_t room_at_cap = in_flight_room(c), count_at_cap = in_flight_count(c);
    in_flight_add(c, 64, 999, 10);   /* past the cap (the pause prevents it): not counted */
    uint32_t count_past = in_flight_count(c), room_past = in_flight_room(c);
    in_flight_free(c);
    /* a cap under the first size is the table's size */
    in_flight_add(c, 2, 1, 1);
    in_flight_add(c, 2, 2, 1);
    in_flight_add(c, 2, 3, 1);
    uint32_t small_room = in_flight_room(c), small_count = in_flight_count(c);
    in_flight_free(c);
    free(c);
    CHECK(wrong_at < 0, "after request %d the table has the wrong room", wrong_at + 1);
    CHECK(room_at_cap == 64 && count_at_cap == 64, "at the cap: room %u, count %u", room_at_cap, count_at_cap);
    CHECK(count_past == 64 && room_past == 64, "past the cap: room %u, count %u", room_past, count_past);
    CHECK(small_room == 2 && small_count == 2, "cap 2: room %u, count %u", small_room, small_count);
}

static void entries_survive_growth_and_answer_by_id(void) {
    conn *c = calloc(1, sizeof *c);
    CHECK(c, "calloc");
    size_t total = 0;
    for (uint64_t i = 1; i <= 20; i++) {
        in_flight_add(c, 64, i, i * 10);
        total += i * 10;
    }
    in_flight_add(c, 64, 5, 7);   /* a reused id: its answers go to the oldest first */
    total += 7;
    int bytes_ok = in_flight_bytes(c) == total && in_flight_count(c) == 21;
    answer(c, 5);
    int oldest_first = in_flight_bytes(c) == total - 50;
    answer(c, 5);
    int then_newer = in_flight_bytes(c) == total - 57;
    answer(c, 12345);   /* an id not in flight: nothing changes */
    int unknown_ignored = in_flight_count(c) == 19 && in_flight_bytes(c) == total - 57;
    size_t left = total - 57;
    int each_ok = 1;
    for (uint64_t i = 20; i >= 1; i--) {
        if (i == 5) continue;
        answer(c, i);
        left -= i * 10;
        if (in_flight_bytes(c) != left) each_ok = 0;
    }
    int freed = c->in_flight == NULL;
    in_flight_free(c);
    free(c);
    CHECK(bytes_ok, "21 requests: count or bytes wrong after the table grew");
    CHECK(oldest_first && then_newer, "a reused id did not answer the oldest first");
    CHECK(unknown_ignored, "an unknown id changed the table");
    CHECK(each_ok, "answering by id lost track of the bytes");
    CHECK(freed, "the table outlived its last request");
}

int main(void) {
    RUN(idle_holds_no_table);
    RUN(grows_by_doubling_up_to_the_cap);
    RUN(entries_survive_growth_and_answer_by_id);
    CHECK_EXIT();
}
