/* mqtt_takeover.h -- one MQTT connection per client id (MQTT 3.1.1
 * 3.1.4-2, MQTT 5 3.1.4-3): when a device signs in over MQTT while an older
 * MQTT connection with its client id is open, on any worker, the older one
 * is closed (MQTT 5: DISCONNECT 0x8E Session taken over; 3.1.1: the close).
 * WebSocket connections of the device are not affected.
 *
 * A process-wide table (one mutex, taken once per CONNACK and once per
 * close of a signed-in MQTT connection) holds, per device, the id of its
 * newest signed-in MQTT connection: at most one entry per such connection.
 * An older connection on another worker is told through that worker's
 * inbox with a non-blocking post (mpsc_try_push): a worker loop never waits
 * on another's full inbox. When the post cannot be made, the new CONNECT is
 * refused as "server busy" (the device retries), so two MQTT connections of
 * one device are never both signed in through this path. */
#ifndef PARLEY_GATEWAY_MQTT_TAKEOVER_H
#define PARLEY_GATEWAY_MQTT_TAKEOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/conn.h"

/* c is about to get its CONNACK as (user, device): it becomes the device's
 * MQTT connection, and the older one, if any, is closed (same worker) or
 * told to close (another worker). False: the older one's worker could not
 * be told (its inbox is full) and nothing changed: refuse c as busy. */
bool mqtt_takeover_claim(worker *w, conn *c, uint64_t user, uint32_t device);

/* A signed-in MQTT connection ends: the table forgets it (unless a newer
 * connection of the device has taken its place already). */
void mqtt_takeover_release(const worker *w, const conn *c, uint64_t user, uint32_t device);

#endif
