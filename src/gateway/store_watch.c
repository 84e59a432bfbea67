/* store_watch.c -- see store_watch.h. */
#include "gateway/store_watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "store/store.h"

enum { PROBE_MS = 1000 };

struct store_watch {
    server *srv;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

static bool reads_wait(const server *srv) { return strcmp(srv->cfg.store, "cassandra") == 0; }

bool store_watch_reads_held(const server *srv) {
    return srv->store_watch && store_get_health(srv->store) == STORE_FAILING;
}

static void *watch_main(void *arg) {
    store_watch *sw = arg;
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop) {
        pthread_mutex_unlock(&sw->mu);
        if (store_get_health(sw->srv->store) == STORE_FAILING) {
            /* any read that succeeds tells the store it answers again */
            uint64_t ignored = 0;
            store_get_counter(sw->srv->store, "user", &ignored);
            METRIC_INC(store_watch_probes_total);
        }
        pthread_mutex_lock(&sw->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += PROBE_MS / 1000;
        if (!sw->stop) pthread_cond_timedwait(&sw->cv, &sw->mu, &until);
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

store_watch *store_watch_start(server *srv) {
    if (!reads_wait(srv)) return NULL;
    store_watch *sw = calloc(1, sizeof *sw);
    if (!sw) return NULL;
    sw->srv = srv;
    pthread_mutex_init(&sw->mu, NULL);
    pthread_cond_init(&sw->cv, NULL);
    if (pthread_create(&sw->thread, NULL, watch_main, sw) != 0) {
        pthread_mutex_destroy(&sw->mu);
        pthread_cond_destroy(&sw->cv);
        free(sw);
        return NULL;
    }
    return sw;
}

void store_watch_stop(store_watch *sw) {
    if (!sw) return;
    pthread_mutex_lock(&sw->mu);
    sw->stop = true;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);   /* at most one read's deadline */
    pthread_mutex_destroy(&sw->mu);
    pthread_cond_destroy(&sw->cv);
    free(sw);
}
