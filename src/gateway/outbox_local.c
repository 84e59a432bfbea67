/* outbox_local.c -- see outbox_local.h. */
#include "gateway/outbox_local.h"

#include "gateway/worker_msg.h"

static void local_answer(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len, uint64_t user,
                         uint32_t device) {
    worker_msg *m = worker_msg_copy(WM_REPLY, conn_id, frame, len);
    m->user_id = user;
    m->device_id = device;
    worker_post(impl, m);
}

static void local_push(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len) {
    worker_post(impl, worker_msg_copy(WM_PUSH, conn_id, frame, len));
}

/* Deliveries are gathered per worker and handed over in runs, one lock per
 * run rather than one per delivery; each worker's run keeps the order given. */
enum { POST_RUN = 256 };

static void local_deliver(void *impl, const outbox_delivery *d, size_t n) {
    server *srv = impl;
    worker_msg *run[POST_RUN];
    for (uint32_t wi = 0; wi < (uint32_t)srv->n_workers; wi++) {
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            if (conn_id_worker(d[i].conn_id) != wi) continue;
            worker_msg *m = worker_msg_new(WM_DELIVER, d[i].conn_id, 0);
            m->user_id = d[i].user_id;
            m->user_seq = d[i].user_seq;
            m->message = blob_ref(d[i].message);
            run[len++] = m;
            if (len == POST_RUN) {
                worker_post_many(srv, wi, run, len);
                len = 0;
            }
        }
        if (len) worker_post_many(srv, wi, run, len);
    }
}

/* conn_id names only the worker (its top bits): each one scans its own
 * connections */
static void local_close_device(void *impl, uint64_t user, uint32_t device) {
    server *srv = impl;
    for (int i = 0; i < srv->n_workers; i++) {
        worker_msg *m = worker_msg_new(WM_CLOSE_DEVICE, (uint64_t)i << 56, 0);
        m->user_id = user;
        m->device_id = device;
        worker_post(srv, m);
    }
}

static void local_drop_presence(void *impl, uint64_t user, uint64_t about_user) {
    server *srv = impl;
    for (int i = 0; i < srv->n_workers; i++) {
        worker_msg *m = worker_msg_new(WM_DROP_PRESENCE, (uint64_t)i << 56, 0);
        m->user_id = user;
        m->about_user = about_user;
        worker_post(srv, m);
    }
}

static const outbox_ops local_ops = {
    .answer = local_answer,
    .push = local_push,
    .deliver = local_deliver,
    .close_device = local_close_device,
    .drop_presence = local_drop_presence,
};

void outbox_local_init(outbox *o, server *srv) {
    o->ops = &local_ops;
    o->impl = srv;
}
