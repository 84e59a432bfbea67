/* mqtt_connect_read.h -- what an MQTT CONNECT reads from the store, and the
 * sign-in check made with it.
 *
 * A CONNECT (or, with MQTT 5 enhanced authentication, the AUTH answering
 * the server's nonce) needs the device's public key, which either sign-in
 * scheme checks (gateway/mqtt_auth.h), and for a persistent session (clean
 * start 0) the stored cursor: CONNACK's Session Present says one is there.
 * On Cassandra each read is a network round trip (a frozen node: the
 * client's deadline, 12 s), so there both are one job for the reader pool
 * (gateway/store_reads.h, STORE_READ_MQTT_CONNECT) and come back to the
 * connection's worker as a WM_MQTT_CONNECT_READ; on RocksDB the worker
 * reads them itself (local reads). Either way the answer is this one value
 * and mqtt_connect_read_check decides on it on the worker, so both stores
 * take one path there. What travels with the job is what the device sent
 * (a password's TS and signature, an AUTH signature); the nonce it signed
 * never leaves the worker.
 *
 * Test hook: with the environment variable PARLEY_TEST_HOLD_MQTT_CONNECT_READS
 * set to a path, every CONNECT read first waits while that file exists (at
 * most TEST_HOLD_MAX_MS, core/test_hold.h): test_mqtt_connect_off_worker. */
#ifndef PARLEY_GATEWAY_MQTT_CONNECT_READ_H
#define PARLEY_GATEWAY_MQTT_CONNECT_READ_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/mqtt_auth.h"
#include "gateway/worker_msg.h"

struct store;
struct store_reads;

typedef enum mqtt_connect_scheme {
    MQTT_CONNECT_PASSWORD = 1,  /* User Name and Password ("TS.SIG") */
    MQTT_CONNECT_SIGNATURE,     /* MQTT 5 AUTH: a signature over the worker's nonce */
} mqtt_connect_scheme;

/* What the worker asks for, with what it checks the answer against. */
typedef struct mqtt_connect_ask {
    uint64_t user_id;
    uint64_t ts;                /* PASSWORD: the password's TS */
    uint32_t device_id;
    uint8_t scheme;             /* mqtt_connect_scheme */
    bool want_cursor;           /* a persistent session: Session Present needs the cursor */
    uint8_t sig[MQTT_AUTH_SIG_BYTES];
} mqtt_connect_ask;

/* The answer: the data of a WM_MQTT_CONNECT_READ. */
typedef struct mqtt_connect_read {
    mqtt_connect_ask ask;
    int found;                  /* the device's key: 1 read, 0 no such device (or no Ed25519
                                   key), -1 the read failed */
    bool present;               /* asked for, a cursor is stored (a failed read: false) */
    uint8_t key[MQTT_AUTH_KEY_BYTES];
} mqtt_connect_read;

/* Reads what q asks for from st into r (after the test hook). Any thread. */
void mqtt_connect_read_store(struct store *st, const mqtt_connect_ask *q, mqtt_connect_read *r);

/* On a reader thread: the same, as a WM_MQTT_CONNECT_READ for conn_id (the
 * caller owns it). */
worker_msg *mqtt_connect_read_msg(struct store *st, uint64_t conn_id, const mqtt_connect_ask *q);

/* The read as a STORE_READ_MQTT_CONNECT job for conn_id: store_reads_submit
 * (0 queued, -1 the queue is full). */
int mqtt_connect_read_submit(struct store_reads *p, uint64_t conn_id, const mqtt_connect_ask *q);

/* The answer a WM_MQTT_CONNECT_READ carries; false when m is not one. */
bool mqtt_connect_read_of(const worker_msg *m, mqtt_connect_read *r);

/* On the worker: the sign-in check of r's scheme against the key read.
 * nonce: the one the worker sent (SIGNATURE; NULL for PASSWORD); now_ms: the
 * server's wall clock. A read that failed is MQTT_AUTH_UNAVAILABLE. */
mqtt_auth_result mqtt_connect_read_check(const mqtt_connect_read *r, const uint8_t *nonce, uint64_t now_ms);

#endif
