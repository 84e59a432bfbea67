/* mqtt_conn.h -- a device connected over MQTT 3.1.1 or 5.0 (README "MQTT").
 *
 * The worker loop (worker.c) accepts MQTT sockets on --mqtt-listen and
 * hands their bytes here; requests published to p/USER.DEVICE/req go to the
 * same dispatch as WebSocket frames (session_handle), and what the session
 * and delivery code write to the connection becomes PUBLISHes to
 * p/USER.DEVICE/res (responses) and p/USER.DEVICE/ev (events at QoS 1,
 * everything else at QoS 0). A PUBACK of an event is the device's Ack of its
 * user_seq.
 *
 * A connection's MQTT state (struct mqtt_link) is kept in its worker's
 * mqtt_links map, not in struct conn, so a WebSocket connection pays nothing
 * for MQTT (c->mqtt is one bit). Over TCP the state is CONN_HTTP until
 * CONNACK (the handshake timeout applies), then CONN_WS like a signed-in
 * WebSocket; over WebSocket (c->framed) it is CONN_WS from the upgrade (the
 * sign-in timeout applies) and every packet is one binary message.
 *
 * The sign-in's store reads (the device key, the cursor behind Session
 * Present: gateway/mqtt_connect_read.h) are a job for the reader pool on
 * Cassandra; while it is out the connection handles no packet
 * (conn.read_wait), so what the device sent after CONNECT waits for
 * CONNACK. */
#ifndef PARLEY_GATEWAY_MQTT_CONN_H
#define PARLEY_GATEWAY_MQTT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/conn.h"

/* A socket accepted on the MQTT listener; false: out of memory (free c). */
bool mqtt_conn_accepted(worker *w, conn *c);
void mqtt_conn_free(worker *w, conn *c);

/* Handles the whole packets at the front of data[0..len); returns the bytes
 * used (the rest is a partial packet, or waits while *blocked: the input
 * must pause until the output drains; NULL blocked: never stops for that). */
size_t mqtt_conn_input(worker *w, conn *c, const uint8_t *data, size_t len, bool *blocked);
/* MQTT over WebSocket (subprotocol "mqtt"): one binary message's bytes; a
 * packet may span messages. */
void mqtt_conn_ws_message(worker *w, conn *c, const uint8_t *data, size_t len);

/* A protobuf Frame (its bytes, or unpacked) to the device: a Response to
 * T/res, anything else to T/ev, at QoS 0; dropped when the device has not
 * subscribed to that topic. */
void mqtt_conn_send_bytes(worker *w, conn *c, const uint8_t *data, size_t len);
void mqtt_conn_send_frame(worker *w, conn *c, const Parley__V1__Frame *f);

/* The head of an event PUBLISH (QoS 1, packet id from user_seq) for a
 * payload of payload_len bytes, written at dst (room: MQTT_EVENT_HEAD_MAX).
 * Returns its size, or 0 when the device does not take it: not subscribed
 * to T/ev (the event counts as sent, not acknowledged, and comes again in
 * the device's next session), or larger than the device's Maximum Packet
 * Size (discarded as if sent, as MQTT 5 says). */
enum { MQTT_EVENT_HEAD_MAX = 64 + WS_MAX_HEADER };
size_t mqtt_conn_event_head(worker *w, conn *c, uint8_t *dst, uint64_t user_seq, size_t payload_len);

/* Events in flight to the device: --sync-window, at most the device's
 * Receive Maximum and 65535 (packet ids are user_seq mod 65535). */
uint32_t mqtt_conn_window(const worker *w, const conn *c);

/* Silence after which the connection is closed: 1.5 x keep-alive, or
 * --idle-timeout when the keep-alive is 0 or longer (0: never). */
uint32_t mqtt_conn_idle_ms(const worker *w, const conn *c);

/* The server ends the connection (code: the WebSocket close code the rest
 * of the gateway speaks): MQTT 5 gets a DISCONNECT with the matching reason
 * code, 3.1.1 just the close. */
void mqtt_conn_disconnect(worker *w, conn *c, uint16_t ws_code);

/* Another MQTT connection of (user, device) got its CONNACK: c, if it is
 * still that device's signed-in MQTT connection, is closed (MQTT 5:
 * DISCONNECT 0x8E Session taken over). From the worker inbox (worker.c,
 * WM_MQTT_TAKEOVER) or mqtt_takeover.c on the same worker. */
void mqtt_conn_taken_over(worker *w, conn *c, uint64_t user, uint32_t device);
/* The stored cursor a persistent session resumes from, read off the worker
 * on Cassandra (WM_CURSOR_READ, gateway/store_reads.h): its catch-up starts. */
void mqtt_conn_cursor_read(worker *w, conn *c, const worker_msg *m);
/* What a CONNECT (or its AUTH answer) read off the worker on Cassandra
 * (WM_MQTT_CONNECT_READ, gateway/mqtt_connect_read.h): the sign-in is
 * checked and answered (CONNACK), and the packets that waited are handled.
 * Dropped when c is not waiting for it. */
void mqtt_conn_connect_read(worker *w, conn *c, const worker_msg *m);
/* A read the input waited for came back (a request's: session.c): the
 * packets that came over WebSocket with the request and waited are handled
 * now, since no new message would push them through. Over TCP the input
 * resumes when the answer is written (worker.c conn_flush). */
void mqtt_conn_input_held(worker *w, conn *c);

#endif
