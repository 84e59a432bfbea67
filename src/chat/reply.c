#include "chat/reply.h"

#include <stdbool.h>
#include <stdlib.h>

#include "core/metrics.h"

outbound *outbound_new(outbound_kind kind, uint64_t conn_id, size_t len) {
    outbound *m = calloc(1, sizeof *m + len);
    if (!m) abort(); /* an answer we cannot build is a client left waiting */
    m->kind = kind;
    m->conn_id = conn_id;
    m->len = len;
    return m;
}

void outbound_free(outbound *m) { free(m); }

void outbound_send(const outbox *o, outbound *m) {
    switch (m->kind) {
    case OUT_ANSWER: outbox_answer(o, m->conn_id, m->data, m->len, m->user_id, m->device_id); break;
    case OUT_PUSH: outbox_push(o, m->conn_id, m->data, m->len); break;
    case OUT_CLOSE_DEVICE: outbox_close_device(o, m->user_id, m->device_id); break;
    case OUT_DROP_PRESENCE: outbox_drop_presence(o, m->user_id, m->about_user); break;
    }
    outbound_free(m);
}

outbound *reply_pack(outbound_kind kind, uint64_t conn_id, const Parley__V1__Frame *frame) {
    size_t n = parley__v1__frame__get_packed_size(frame);
    outbound *m = outbound_new(kind, conn_id, n);
    parley__v1__frame__pack(frame, m->data);
    return m;
}

/* Most answers and pushes are a few dozen bytes: packed on the stack, and
 * the port copies them once into what crosses threads. */
enum { SMALL_FRAME = 512 };

static void send_now(const outbox *o, bool answer, uint64_t conn_id, const Parley__V1__Frame *frame) {
    uint8_t small[SMALL_FRAME];
    size_t n = parley__v1__frame__get_packed_size(frame);
    uint8_t *b = n <= sizeof small ? small : malloc(n);
    if (!b) abort(); /* as outbound_new */
    parley__v1__frame__pack(frame, b);
    if (answer) outbox_answer(o, conn_id, b, n, 0, 0);
    else outbox_push(o, conn_id, b, n);
    if (b != small) free(b);
}

void reply_answer_now(const outbox *o, uint64_t conn_id, const Parley__V1__Frame *frame) {
    send_now(o, true, conn_id, frame);
}

void reply_push_now(const outbox *o, uint64_t conn_id, const Parley__V1__Frame *frame) {
    send_now(o, false, conn_id, frame);
}

void reply_init(Parley__V1__Frame *frame, Parley__V1__Response *resp, uint64_t request_id,
                Parley__V1__Status status, const char *error) {
    parley__v1__frame__init(frame);
    parley__v1__response__init(resp);
    frame->request_id = request_id;
    frame->body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    frame->response = resp;
    resp->status = status;
    if (error) resp->error = (char *)error;
    if (status != PARLEY__V1__STATUS__OK) METRIC_INC(request_errors_total);
}

outbound *reply_error(uint64_t conn_id, uint64_t request_id, Parley__V1__Status status,
                      const char *error) {
    Parley__V1__Frame f;
    Parley__V1__Response r;
    reply_init(&f, &r, request_id, status, error);
    return reply_pack(OUT_ANSWER, conn_id, &f);
}

outbound *reply_ok(uint64_t conn_id, uint64_t request_id) {
    return reply_error(conn_id, request_id, PARLEY__V1__STATUS__OK, NULL);
}
