/* parley_mqtt.h -- what an MQTT client of parley needs from the device's
 * identity (the mapping: README "MQTT"): its client id and the two ways to
 * prove it holds the device key.
 *
 *   client id  "USER.DEVICE" (decimal), also the password scheme's user name
 *   password   "TS.SIG": TS = wall time in ms since the epoch (decimal), SIG =
 *              unpadded base64url of the Ed25519 signature over
 *              "parley.v1 mqtt password" || TS (8 bytes big-endian) || client id.
 *              The server takes it within 60 s of its clock and only with a TS
 *              above the last one it took for the device, so it is used once.
 *   AUTH       MQTT 5 enhanced authentication, method "parley-ed25519": the
 *              signature over "parley.v1 mqtt auth" || the server's 32-byte nonce. */
#ifndef PARLEY_MQTT_H
#define PARLEY_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "parley.h"

#define PC_MQTT_PASSWORD_CONTEXT "parley.v1 mqtt password"   /* 23 bytes, no NUL */
#define PC_MQTT_AUTH_CONTEXT "parley.v1 mqtt auth"           /* 19 bytes, no NUL */
#define PC_MQTT_AUTH_METHOD "parley-ed25519"

enum {
    PC_MQTT_CLIENT_ID_MAX = 32,     /* "18446744073709551615.4294967295" and a NUL */
    PC_MQTT_PASSWORD_MAX = 112,     /* 20 digits, '.', 86 base64url characters, a NUL */
    PC_MQTT_NONCE_BYTES = 32,
    PC_MQTT_SIGNATURE_BYTES = 64,
};

/* "USER.DEVICE" into out: its length, or -1 when cap is too small. */
int pc_mqtt_client_id(const pc_identity *id, char *out, size_t cap);

/* "TS.SIG" for ts_ms into out: its length, or -1 when cap is too small. */
int pc_mqtt_password(const pc_identity *id, uint64_t ts_ms, char *out, size_t cap);

/* The current wall time in ms since the epoch, as the password wants it. */
uint64_t pc_mqtt_now_ms(void);

/* The Authentication Data of the client's AUTH answer: the signature over
 * PC_MQTT_AUTH_CONTEXT || nonce. */
void pc_mqtt_auth_sign(const pc_identity *id, const uint8_t nonce[PC_MQTT_NONCE_BYTES],
                       uint8_t sig[PC_MQTT_SIGNATURE_BYTES]);

#endif
