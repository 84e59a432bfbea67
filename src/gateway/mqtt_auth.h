/* mqtt_auth.h -- how an MQTT device proves it holds its device key.
 *
 * Two schemes (README "MQTT"), both checked against the device's Ed25519
 * public key in the store, the key WebSocket SignIn checks. The key is read
 * by the caller (gateway/mqtt_connect_read.h: off the worker on Cassandra);
 * these checks read nothing:
 *   - MQTT 5 enhanced authentication, method "parley-ed25519": the device
 *     signs "parley.v1 mqtt auth" || a 32-byte nonce the server sent in AUTH.
 *   - the password scheme: Password = "TS.SIG", SIG the unpadded base64url
 *     signature over "parley.v1 mqtt password" || TS (8 bytes, big-endian)
 *     || the client id. TS must be within +-60 s of the server's clock and
 *     greater than the last TS accepted for that device (kept in memory), so
 *     a password is good once: a captured one cannot be replayed. */
#ifndef PARLEY_GATEWAY_MQTT_AUTH_H
#define PARLEY_GATEWAY_MQTT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MQTT_AUTH_METHOD "parley-ed25519"
enum {
    MQTT_NONCE_BYTES = 32,
    MQTT_PASSWORD_WINDOW_MS = 60000,
    MQTT_LAST_TS_MAX = 1 << 20,     /* devices whose last password TS is remembered */
    MQTT_AUTH_KEY_BYTES = 32,       /* crypto_sign_PUBLICKEYBYTES */
    MQTT_AUTH_SIG_BYTES = 64,       /* crypto_sign_BYTES */
};

/* "USER.DEVICE" in canonical decimal (no sign, no leading zero, both > 0). */
bool mqtt_parse_client_id(const uint8_t *s, size_t len, uint64_t *user, uint32_t *device);

typedef enum mqtt_auth_result {
    MQTT_AUTH_OK,
    MQTT_AUTH_BAD,          /* unknown device, bad form or signature: 0x86 / 4 */
    MQTT_AUTH_STALE,        /* TS outside the window, or not after the last one: 0x87 / 5 */
    MQTT_AUTH_UNAVAILABLE,  /* store read failed, or the TS table is full: 0x88 / 3 */
} mqtt_auth_result;

/* The Ed25519 signature by the device's key pk over "parley.v1 mqtt auth" || nonce. */
mqtt_auth_result mqtt_auth_check_signature(const uint8_t pk[MQTT_AUTH_KEY_BYTES], const uint8_t nonce[MQTT_NONCE_BYTES],
                                           const uint8_t *sig, size_t sig_len);

/* The password scheme in two steps, so the device's key can be read in
 * between. mqtt_auth_parse_password: "TS.SIG" into ts and sig, before any
 * read (MQTT_AUTH_BAD: not of that form). mqtt_auth_check_password: SIG by
 * pk over TS and the client id, TS within the window of now_ms (the
 * server's wall clock) and after the device's last one, which it becomes. */
mqtt_auth_result mqtt_auth_parse_password(const uint8_t *password, size_t password_len, uint64_t *ts,
                                          uint8_t sig[MQTT_AUTH_SIG_BYTES]);
mqtt_auth_result mqtt_auth_check_password(const uint8_t pk[MQTT_AUTH_KEY_BYTES], uint64_t user, uint32_t device,
                                          const uint8_t *client_id, size_t client_id_len, uint64_t ts,
                                          const uint8_t sig[MQTT_AUTH_SIG_BYTES], uint64_t now_ms);

/* For clients and tests: the password for (client id, ts) signed with sk
 * (64-byte libsodium secret key); out gets a NUL-terminated string.
 * Returns its length, 0 when cap is too small. */
size_t mqtt_auth_make_password(const char *client_id, uint64_t ts_ms, const uint8_t *sk, char *out, size_t cap);

#endif
