/* mqtt_takeover.c -- see mqtt_takeover.h. */
#include "gateway/mqtt_takeover.h"

#include <pthread.h>

#include "core/metrics.h"
#include "core/u64map.h"
#include "gateway/conn_table.h"
#include "gateway/mqtt_conn.h"
#include "gateway/worker_msg.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static u64map newest;   /* device key -> conn id of its newest signed-in MQTT connection */

/* The key mixes the server in (tests may run more than one per process) and
 * is a hash: two devices sharing a key only cost a missed takeover, since
 * the closing side checks the connection's own user and device first. */
static uint64_t device_key(const worker *w, uint64_t user, uint32_t device) {
    uint64_t k = user * 0x9E3779B97F4A7C15ull ^ ((uint64_t)device + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
                 (uint64_t)(uintptr_t)w->srv;
    k ^= k >> 31;
    k *= 0x94D049BB133111EBull;
    k ^= k >> 29;
    return k ? k : 1;   /* 0 means an empty slot */
}

bool mqtt_takeover_claim(worker *w, conn *c, uint64_t user, uint32_t device) {
    uint64_t key = device_key(w, user, device), older = 0;
    bool ok = true;
    pthread_mutex_lock(&lock);
    uint64_t *v = u64map_get(&newest, key);
    if (v && *v != c->id) older = *v;
    uint32_t owner = older ? conn_id_worker(older) : w->index;
    if (owner != w->index) {
        /* never blocks: a loop must not wait on another loop's inbox */
        worker_msg *m = worker_msg_new(WM_MQTT_TAKEOVER, older, 0);
        m->user_id = user;
        m->device_id = device;
        if (owner >= (uint32_t)w->srv->n_workers || mpsc_try_push(&w->srv->workers[owner]->inbox, m)) {
            worker_msg_free(m);
            ok = false;
        }
    }
    /* out of memory for the entry: no takeover later, the connection still works */
    if (ok) (void)u64map_put(&newest, key, c->id);
    pthread_mutex_unlock(&lock);
    if (!ok) {
        METRIC_INC(mqtt_takeovers_refused_total);
        return false;
    }
    if (older && owner == w->index) {
        conn *o = conn_table_by_id(&w->table, older);
        if (o) mqtt_conn_taken_over(w, o, user, device);
    }
    return true;
}

void mqtt_takeover_release(const worker *w, const conn *c, uint64_t user, uint32_t device) {
    uint64_t key = device_key(w, user, device);
    pthread_mutex_lock(&lock);
    uint64_t *v = u64map_get(&newest, key);
    if (v && *v == c->id) u64map_remove(&newest, key, NULL);
    if (newest.count == 0) u64map_free(&newest);   /* the table's memory goes with its last entry */
    pthread_mutex_unlock(&lock);
}
