/* mqtt_internal.h -- helpers shared by mqtt_codec.c and mqtt_props.c. */
#ifndef PARLEY_NET_MQTT_INTERNAL_H
#define PARLEY_NET_MQTT_INTERNAL_H

#include "net/mqtt_codec.h"

/* A variable byte integer inside a packet (short input is malformed). */
int mqtt_get_varint(const uint8_t *p, size_t len, uint32_t *v, size_t *used);
/* A two-byte length then that many bytes; utf8: validated as a string. */
int mqtt_get_bytes(const uint8_t *p, size_t len, mqtt_bytes *out, size_t *used, bool utf8);

#endif
