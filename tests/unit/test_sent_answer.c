/* test_sent_answer.c -- chat/sent_answer.c writes the SENT answer by hand:
 * its bytes must be the ones protobuf-c packs for the same Frame (zeros
 * left out, varints of every length, duplicate on and off), and decode to
 * the same fields.
 *
 * Seen failing: sent_answer.c changed to write seq before conversation_id,
 * and changed to write fields that are 0, each made all three cases fail. */
#include <string.h>

#include "../check.h"
#include "chat/sent_answer.h"
#include "proto/parley.pb-c.h"

/* the answer as writer.c built it before: through protobuf-c */
static size_t packed(const sent_answer *a, uint8_t *out, size_t cap) {
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    Parley__V1__Response r = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__Sent s = PARLEY__V1__SENT__INIT;
    s.conversation_id = a->conversation_id;
    s.seq = a->seq;
    s.server_ts = a->server_ts;
    s.duplicate = a->duplicate;
    r.status = PARLEY__V1__STATUS__OK;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_SENT;
    r.sent = &s;
    f.request_id = a->request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = &r;
    size_t n = parley__v1__frame__get_packed_size(&f);
    if (n > cap) return 0;
    return parley__v1__frame__pack(&f, out);
}

/* 1 when a's hand-written bytes equal protobuf-c's and decode back to a */
static int same_as_protobuf(const sent_answer *a) {
    uint8_t mine[SENT_ANSWER_MAX], theirs[256];
    size_t n = sent_answer_encode(a, mine), m = packed(a, theirs, sizeof theirs);
    if (n != m || memcmp(mine, theirs, n) != 0) return 0;
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, n, mine);
    int ok = f && f->request_id == a->request_id && f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE &&
             f->response->status == PARLEY__V1__STATUS__OK &&
             f->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT &&
             f->response->sent->conversation_id == a->conversation_id && f->response->sent->seq == a->seq &&
             f->response->sent->server_ts == a->server_ts && (bool)f->response->sent->duplicate == a->duplicate;
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    return ok;
}

static void a_usual_answer(void) {
    sent_answer a = {.request_id = 7, .conversation_id = 1234567, .seq = 42, .server_ts = 1764672000123ull};
    CHECK(same_as_protobuf(&a), "a new message's SENT");
    a.duplicate = true;
    CHECK(same_as_protobuf(&a), "a duplicate's SENT");
}

/* proto3: a field at 0 is not written (a duplicate found in the store has
 * no server_ts; a request without an id) */
static void zeros_left_out(void) {
    sent_answer zero = {0};
    CHECK(same_as_protobuf(&zero), "every field 0");
    sent_answer a = {.request_id = 0, .conversation_id = 9, .seq = 1, .server_ts = 0, .duplicate = true};
    CHECK(same_as_protobuf(&a), "request_id and server_ts 0");
    sent_answer b = {.request_id = 3, .conversation_id = 0, .seq = 0, .server_ts = 5};
    CHECK(same_as_protobuf(&b), "conversation_id and seq 0");
}

/* every varint length, 1 to 10 bytes, in every field: the largest answer
 * fits SENT_ANSWER_MAX */
static void every_varint_length(void) {
    for (int bits = 0; bits <= 70; bits += 7) {   /* 70: UINT64_MAX, 10 bytes */
        uint64_t v = bits >= 64 ? UINT64_MAX : (1ull << bits);
        sent_answer a = {v, v, v, v, true};
        CHECK(same_as_protobuf(&a), "values of %d bits", bits);
        sent_answer b = {v - 1 ? v - 1 : 1, v, 1, v, false};
        CHECK(same_as_protobuf(&b), "values just under %d bits", bits);
    }
}

int main(void) {
    RUN(a_usual_answer);
    RUN(zeros_left_out);
    RUN(every_varint_length);
    CHECK_EXIT();
}
