/* worker_msg.c -- the messages other threads hand to a worker
 * (worker_msg.h). */
#include "gateway/worker_msg.h"

#include <stdlib.h>
#include <string.h>

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

worker_msg *worker_msg_copy(worker_msg_kind kind, uint64_t conn_id, const uint8_t *data, size_t len) {
    worker_msg *m = worker_msg_new(kind, conn_id, len);
    if (len) memcpy(m->data, data, len);
    return m;
}

worker_msg *worker_msg_pack(worker_msg_kind kind, uint64_t conn_id, const Parley__V1__Frame *frame) {
    size_t n = parley__v1__frame__get_packed_size(frame);
    worker_msg *m = worker_msg_new(kind, conn_id, n);
    parley__v1__frame__pack(frame, m->data);
    return m;
}
