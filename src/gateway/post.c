/* post.c -- handing many messages to one worker at once (fan-out's path). */
#include "gateway/conn.h"

void worker_post_many(server *srv, uint32_t worker, worker_msg **msgs, size_t n) {
    size_t queued = 0;
    if (worker < (uint32_t)srv->n_workers)
        queued = mpsc_push_many(&srv->workers[worker]->inbox, (void *const *)msgs, n);
    for (size_t i = queued; i < n; i++) worker_msg_free(msgs[i]);
}
