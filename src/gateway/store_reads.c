/* store_reads.c -- see store_reads.h. */
#include "gateway/store_reads.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

struct store_reads {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    store_read_job *ring;   /* cap jobs, by value */
    size_t cap, head, count;
    bool stop;
    store_reads_read_fn read;
    store_reads_done_fn done;
    store_reads_run_fn run;
    void *ctx;
    size_t n_threads;       /* started */
    pthread_t threads[];
};

static void *reader_main(void *arg) {
    store_reads *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->count == 0) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        store_read_result r;
        memset(&r, 0, sizeof r);
        r.job = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        METRIC_ADD(gateway_store_reads_queued, -1);
        pthread_mutex_unlock(&p->mu);
        if (r.job.kind != STORE_READ_DEVICE) {
            METRIC_INC(gateway_store_reads_total);
            p->run(p->ctx, &r.job);   /* submit took it only with a run fn */
        } else {
            r.found = p->read(p->ctx, r.job.user_id, r.job.device_id, r.key, &r.key_len);
            if (r.found != 1 || r.key_len > STORE_READS_KEY_MAX) r.key_len = 0;
            METRIC_INC(gateway_store_reads_total);
            p->done(p->ctx, &r);
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int store_reads_submit(store_reads *p, const store_read_job *job) {
    pthread_mutex_lock(&p->mu);
    bool taken = !p->stop && p->count < p->cap && (job->kind == STORE_READ_DEVICE || p->run);
    if (taken) {
        p->ring[(p->head + p->count) % p->cap] = *job;
        p->count++;
        METRIC_INC(gateway_store_reads_queued);
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (!taken) METRIC_INC(gateway_store_reads_refused_total);
    return taken ? 0 : -1;
}

int store_reads_submit_page(store_reads *p, uint64_t conn_id, const catchup_ask *q) {
    store_read_job job;
    memset(&job, 0, sizeof job);
    job.kind = STORE_READ_CATCHUP_PAGE;
    job.conn_id = conn_id;
    job.page = *q;
    return store_reads_submit(p, &job);
}

int store_reads_submit_cursor(store_reads *p, uint64_t conn_id, uint64_t user_id, uint32_t device_id) {
    store_read_job job;
    memset(&job, 0, sizeof job);
    job.kind = STORE_READ_MQTT_CURSOR;
    job.conn_id = conn_id;
    job.user_id = user_id;
    job.device_id = device_id;
    return store_reads_submit(p, &job);
}

store_reads *store_reads_new(size_t threads, size_t cap, store_reads_read_fn read, store_reads_done_fn done,
                             store_reads_run_fn run, void *ctx) {
    if (threads == 0 || threads > 64 || cap == 0 || cap > (1u << 20)) return NULL;
    store_reads *p = calloc(1, sizeof *p + threads * sizeof(pthread_t));
    if (!p) return NULL;
    p->ring = calloc(cap, sizeof *p->ring);
    if (!p->ring) {
        free(p);
        return NULL;
    }
    p->cap = cap;
    p->read = read;
    p->done = done;
    p->run = run;
    p->ctx = ctx;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (size_t i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, reader_main, p) != 0) {
            store_reads_free(p);   /* stops the ones that started */
            return NULL;
        }
        p->n_threads++;
    }
    return p;
}

void store_reads_free(store_reads *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    METRIC_ADD(gateway_store_reads_queued, -(long)p->count);   /* dropped: their connections close */
    p->count = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->ring);
    free(p);
}
