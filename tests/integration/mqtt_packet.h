/* mqtt_packet.h -- the whole-packet step of the tests' MQTT clients
 * (mqtt_client.c's and test_mqtt.c's, which also speaks MQTT over
 * WebSocket): bytes read so far in, the first whole packet out. In
 * mqtt_client.c. */
#ifndef PARLEY_TEST_MQTT_PACKET_H
#define PARLEY_TEST_MQTT_PACKET_H

#include <stddef.h>
#include <stdint.h>

/* Takes the first whole packet out of buf (*len bytes read so far): 1
 * (first byte, body copied into out, *out_len; the rest moved to the
 * front), 0 not whole yet, -1 malformed or larger than cap. */
int mqtt_take_packet(uint8_t *buf, size_t *len, uint8_t *first, uint8_t *out, size_t cap, size_t *out_len);

#endif
