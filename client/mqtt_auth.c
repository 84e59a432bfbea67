/* mqtt_auth.c -- the MQTT client id, password and AUTH signature of a
 * device (parley_mqtt.h): the device key signs, nothing is stored. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "parley_mqtt.h"

enum {
    PASSWORD_CONTEXT_LEN = sizeof PC_MQTT_PASSWORD_CONTEXT - 1,
    AUTH_CONTEXT_LEN = sizeof PC_MQTT_AUTH_CONTEXT - 1,
};

int pc_mqtt_client_id(const pc_identity *id, char *out, size_t cap) {
    int n = snprintf(out, cap, "%" PRIu64 ".%" PRIu32, id->user_id, id->device_id);
    return n > 0 && (size_t)n < cap ? n : -1;
}

int pc_mqtt_password(const pc_identity *id, uint64_t ts_ms, char *out, size_t cap) {
    char client_id[PC_MQTT_CLIENT_ID_MAX];
    int id_len = pc_mqtt_client_id(id, client_id, sizeof client_id);
    if (id_len < 0) return -1;
    uint8_t msg[PASSWORD_CONTEXT_LEN + 8 + PC_MQTT_CLIENT_ID_MAX];
    memcpy(msg, PC_MQTT_PASSWORD_CONTEXT, PASSWORD_CONTEXT_LEN);
    for (int i = 0; i < 8; i++) msg[PASSWORD_CONTEXT_LEN + i] = (uint8_t)(ts_ms >> (56 - 8 * i));
    memcpy(msg + PASSWORD_CONTEXT_LEN + 8, client_id, (size_t)id_len);
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, msg, PASSWORD_CONTEXT_LEN + 8 + (size_t)id_len, id->secret_key);

    int ts_len = snprintf(out, cap, "%" PRIu64 ".", ts_ms);
    if (ts_len <= 0 || (size_t)ts_len >= cap) return -1;
    size_t b64_cap = sodium_base64_ENCODED_LEN(sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (cap - (size_t)ts_len < b64_cap) return -1;
    sodium_bin2base64(out + ts_len, b64_cap, sig, sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return ts_len + (int)strlen(out + ts_len);
}

uint64_t pc_mqtt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void pc_mqtt_auth_sign(const pc_identity *id, const uint8_t nonce[PC_MQTT_NONCE_BYTES],
                       uint8_t sig[PC_MQTT_SIGNATURE_BYTES]) {
    uint8_t msg[AUTH_CONTEXT_LEN + PC_MQTT_NONCE_BYTES];
    memcpy(msg, PC_MQTT_AUTH_CONTEXT, AUTH_CONTEXT_LEN);
    memcpy(msg + AUTH_CONTEXT_LEN, nonce, PC_MQTT_NONCE_BYTES);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, id->secret_key);
}
