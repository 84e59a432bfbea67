/* store_reads_server.c -- the server's read pool (store_reads.h): reads
 * srv->store and posts each result (a sign-in's device, a catch-up page, an
 * MQTT session's cursor, an MQTT CONNECT's reads, the answer to a History,
 * ListConversations or LookupUser, a page of device messages) to the connection's worker. */
#include <string.h>

#include "core/metrics.h"
#include "gateway/catchup_read.h"
#include "gateway/device_message_read.h"
#include "gateway/mqtt_connect_read.h"
#include "gateway/request_read.h"
#include "gateway/store_reads.h"
#include "gateway/worker_msg.h"
#include "server.h"
#include "store/store.h"

static int read_device(void *ctx, uint64_t user_id, uint32_t device_id, uint8_t key[STORE_READS_KEY_MAX],
                       uint8_t *key_len) {
    server *srv = ctx;
    Parley__Store__Device *d = NULL;
    int found = store_get_device(srv->store, user_id, device_id, &d);
    *key_len = 0;
    if (found == 1 && d && d->public_key.len <= STORE_READS_KEY_MAX) {
        memcpy(key, d->public_key.data, d->public_key.len);
        *key_len = (uint8_t)d->public_key.len;
    }
    if (d) parley__store__device__free_unpacked(d, NULL);
    return found;
}

/* a worker that stopped has closed its queue: the result is dropped there */
static void post_result(void *ctx, const store_read_result *r) {
    worker_msg *m = worker_msg_copy(WM_DEVICE_READ, r->job.conn_id, (const uint8_t *)r, sizeof *r);
    if (m) worker_post(ctx, m);
}

static void run_job(void *ctx, const store_read_job *job) {
    server *srv = ctx;
    if (job->kind == STORE_READ_CATCHUP_PAGE) {
        worker_msg *m = catchup_read_page(srv->store, job->conn_id, &job->page);
        METRIC_INC(gateway_catchup_pages_total);
        worker_post(srv, m);
    } else if (job->kind == STORE_READ_MQTT_CURSOR) {
        store_cursor_read r = {.user_id = job->user_id, .device_id = job->device_id};
        r.rc = catchup_read_cursor(srv->store, job->user_id, job->device_id, &r.cursor) < 0 ? -1 : 0;
        worker_post(srv, worker_msg_copy(WM_CURSOR_READ, job->conn_id, (const uint8_t *)&r, sizeof r));
    } else if (job->kind == STORE_READ_MQTT_CONNECT) {
        worker_msg *m = mqtt_connect_read_msg(srv->store, job->conn_id, &job->connect);
        METRIC_INC(gateway_mqtt_connect_reads_total);
        worker_post(srv, m);
    } else if (job->kind == STORE_READ_REQUEST) {
        worker_msg *m = request_read_answer(srv->store, job->conn_id, &job->request);
        METRIC_INC(gateway_request_reads_total);
        worker_post(srv, m);
    } else if (job->kind == STORE_READ_DEVICE_MESSAGES) {
        worker_msg *m = dm_read_page(srv->store, job->conn_id, &job->dm);
        METRIC_INC(gateway_device_message_pages_total);
        worker_post(srv, m);
    }
}

store_reads *store_reads_start(server *srv) {
    if (strcmp(srv->cfg.store, "cassandra") != 0) return NULL;   /* local reads: inline */
    return store_reads_new(STORE_READS_THREADS, STORE_READS_QUEUE, read_device, post_result, run_job, srv);
}
