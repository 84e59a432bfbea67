/* mqtt_client.h -- a minimal MQTT client over a plain TCP socket for the
 * integration tests, written with the server's own codec
 * (src/net/mqtt_codec.h): whole packets in, bytes out, and the CONNECT of
 * parley's password scheme. test_mqtt.c has its own, which also speaks
 * MQTT over WebSocket. */
#ifndef PARLEY_TEST_MQTT_CLIENT_H
#define PARLEY_TEST_MQTT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt_packet.h"
#include "parley.h"

enum { MQ_BUF = 1 << 17 };

/* one connection: its socket and what was read and not yet taken */
typedef struct mq {
    int fd;                 /* -1: closed */
    size_t len;
    uint8_t buf[MQ_BUF];
} mq;

/* 0, -1: connects m to 127.0.0.1:port within timeout_ms */
int mq_open(mq *m, int port, int timeout_ms);
void mq_close(mq *m);
/* The next whole packet: 1 (first byte, body copied into out, *len), 0
 * nothing within timeout_ms, -1 closed or unreadable. */
int mq_next(mq *m, uint8_t *first, uint8_t *out, size_t cap, size_t *len, int timeout_ms);
/* all n bytes: 0, -1 */
int mq_write(mq *m, const uint8_t *p, size_t n);

/* CONNECT (3.1.1, clean session 0) of id with the password scheme (README
 * "MQTT"): User Name = client id "USER.DEVICE", Password "TS.SIG", SIG over
 * "parley.v1 mqtt password" || TS (8 bytes, big-endian) || client id,
 * signed with sk (id's own key, or another to be refused). TS is the wall
 * clock in ms, raised above *last_ts (a device's TS must grow), which it
 * then becomes. Into out; its length, 0 when it does not fit. */
size_t mq_password_connect(const pc_identity *id, const uint8_t *sk, uint64_t *last_ts, uint8_t *out, size_t cap);

#endif
