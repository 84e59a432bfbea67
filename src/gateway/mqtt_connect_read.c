/* mqtt_connect_read.c -- see mqtt_connect_read.h. */
#include "gateway/mqtt_connect_read.h"

#include <stdio.h>
#include <string.h>

#include "core/test_hold.h"
#include "gateway/store_reads.h"
#include "store/store.h"

static test_hold hold = {.env_name = "PARLEY_TEST_HOLD_MQTT_CONNECT_READS", .what = "MQTT CONNECT reads"};

void mqtt_connect_read_store(store *st, const mqtt_connect_ask *q, mqtt_connect_read *r) {
    test_hold_wait(&hold);
    memset(r, 0, sizeof *r);
    r->ask = *q;
    Parley__Store__Device *d = NULL;
    r->found = store_get_device(st, q->user_id, q->device_id, &d);
    if (r->found == 1) {
        if (d->public_key.len == MQTT_AUTH_KEY_BYTES) memcpy(r->key, d->public_key.data, MQTT_AUTH_KEY_BYTES);
        else r->found = 0;   /* no key either scheme can check: refused like an unknown device */
    }
    if (d) parley__store__device__free_unpacked(d, NULL);
    /* an unknown device is refused whatever the cursor: no second round trip */
    uint64_t cursor = 0;
    r->present = r->found == 1 && q->want_cursor &&
                 store_get_cursor(st, q->user_id, q->device_id, &cursor) >= 0 && cursor > 0;
}

worker_msg *mqtt_connect_read_msg(store *st, uint64_t conn_id, const mqtt_connect_ask *q) {
    mqtt_connect_read r;
    mqtt_connect_read_store(st, q, &r);
    return worker_msg_copy(WM_MQTT_CONNECT_READ, conn_id, (const uint8_t *)&r, sizeof r);
}

int mqtt_connect_read_submit(store_reads *p, uint64_t conn_id, const mqtt_connect_ask *q) {
    store_read_job job;
    memset(&job, 0, sizeof job);
    job.kind = STORE_READ_MQTT_CONNECT;
    job.conn_id = conn_id;
    job.user_id = q->user_id;
    job.device_id = q->device_id;
    job.connect = *q;
    return store_reads_submit(p, &job);
}

bool mqtt_connect_read_of(const worker_msg *m, mqtt_connect_read *r) {
    if (m->kind != WM_MQTT_CONNECT_READ || m->len != sizeof *r) return false;
    memcpy(r, m->data, sizeof *r);
    return true;
}

mqtt_auth_result mqtt_connect_read_check(const mqtt_connect_read *r, const uint8_t *nonce, uint64_t now_ms) {
    const mqtt_connect_ask *q = &r->ask;
    if (r->found < 0) return MQTT_AUTH_UNAVAILABLE;
    if (r->found == 0) return MQTT_AUTH_BAD;
    if (q->scheme == MQTT_CONNECT_SIGNATURE)
        return nonce ? mqtt_auth_check_signature(r->key, nonce, q->sig, sizeof q->sig) : MQTT_AUTH_UNAVAILABLE;
    if (q->scheme != MQTT_CONNECT_PASSWORD) return MQTT_AUTH_BAD;
    /* the client id the password signs: mqtt_parse_client_id takes only the
     * canonical "USER.DEVICE", so printing the pair gives back its bytes */
    char id[32];
    int n = snprintf(id, sizeof id, "%llu.%u", (unsigned long long)q->user_id, q->device_id);
    if (n <= 0 || (size_t)n >= sizeof id) return MQTT_AUTH_BAD;
    return mqtt_auth_check_password(r->key, q->user_id, q->device_id, (const uint8_t *)id, (size_t)n, q->ts, q->sig,
                                    now_ms);
}
