#include "chat/reply.h"

#include <stdlib.h>

#include "core/metrics.h"

worker_msg *worker_msg_new(worker_msg_kind kind, uint64_t conn_id, size_t len) {
    worker_msg *m = calloc(1, sizeof *m + len);
    if (!m) abort(); /* an answer we cannot build is a client left waiting */
    m->kind = kind;
    m->conn_id = conn_id;
    m->len = len;
    return m;
}

void worker_msg_free(worker_msg *m) {
    if (!m) return;
    blob_unref(m->message);
    free(m);
}

worker_msg *reply_pack(worker_msg_kind kind, uint64_t conn_id, const Parley__V1__Frame *frame) {
    size_t n = parley__v1__frame__get_packed_size(frame);
    worker_msg *m = worker_msg_new(kind, conn_id, n);
    parley__v1__frame__pack(frame, m->data);
    return m;
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

worker_msg *reply_error(uint64_t conn_id, uint64_t request_id, Parley__V1__Status status,
                        const char *error) {
    Parley__V1__Frame f;
    Parley__V1__Response r;
    reply_init(&f, &r, request_id, status, error);
    return reply_pack(WM_REPLY, conn_id, &f);
}

worker_msg *reply_ok(uint64_t conn_id, uint64_t request_id) {
    return reply_error(conn_id, request_id, PARLEY__V1__STATUS__OK, NULL);
}
