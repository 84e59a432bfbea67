/* test_mqtt_password.c -- the MQTT credentials of a device (client/mqtt_auth.c,
 * parley_mqtt.h) against the agreed mapping, checked with libsodium here:
 * the client id is "USER.DEVICE"; the password is "TS.SIG" with TS decimal ms
 * and SIG the unpadded base64url Ed25519 signature over
 * "parley.v1 mqtt password" (23 bytes) || TS as 8 bytes big-endian || client
 * id; the AUTH answer signs "parley.v1 mqtt auth" (19 bytes) || nonce. The
 * signed bytes are laid out here by hand, not with the code under test. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "../check.h"
#include "parley_mqtt.h"

static pc_identity test_identity(uint64_t user, uint32_t device) {
    pc_identity id = {.user_id = user, .device_id = device};
    uint8_t seed[crypto_sign_SEEDBYTES];
    for (size_t i = 0; i < sizeof seed; i++) seed[i] = (uint8_t)(i * 7 + 1);
    crypto_sign_seed_keypair(id.public_key, id.secret_key, seed);
    return id;
}

/* Splits "TS.SIG": TS into *ts, SIG decoded into sig. 0, or -1 when the
 * text is not exactly decimal digits, one '.', 86 base64url characters. */
static int split_password(const char *pw, uint64_t *ts, uint8_t sig[64]) {
    const char *dot = strchr(pw, '.');
    if (!dot || dot == pw || dot - pw > 20) return -1;
    uint64_t v = 0;
    for (const char *p = pw; p < dot; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    const char *b64 = dot + 1;
    if (strlen(b64) != 86) return -1;   /* 64 bytes, unpadded: ceil(64 * 4 / 3) */
    for (const char *p = b64; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_'))
            return -1;
    size_t n = 0;
    if (sodium_base642bin(sig, 64, b64, 86, NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != 64)
        return -1;
    *ts = v;
    return 0;
}

/* "parley.v1 mqtt password" || be64(ts) || client_id, built by hand */
static size_t password_message(uint8_t *out, uint64_t ts, const char *client_id) {
    static const uint8_t context[23] = {'p', 'a', 'r', 'l', 'e', 'y', '.', 'v', '1', ' ', 'm', 'q',
                                        't', 't', ' ', 'p', 'a', 's', 's', 'w', 'o', 'r', 'd'};
    memcpy(out, context, sizeof context);
    uint8_t be[8] = {(uint8_t)(ts >> 56), (uint8_t)(ts >> 48), (uint8_t)(ts >> 40), (uint8_t)(ts >> 32),
                     (uint8_t)(ts >> 24), (uint8_t)(ts >> 16), (uint8_t)(ts >> 8),  (uint8_t)ts};
    memcpy(out + 23, be, 8);
    memcpy(out + 31, client_id, strlen(client_id));
    return 31 + strlen(client_id);
}

static void client_id_is_user_dot_device(void) {
    pc_identity id = test_identity(12, 1);
    char buf[PC_MQTT_CLIENT_ID_MAX];
    CHECK(pc_mqtt_client_id(&id, buf, sizeof buf) == 4, "length of %s", buf);
    CHECK(strcmp(buf, "12.1") == 0, "got %s", buf);
    id = test_identity(UINT64_MAX, UINT32_MAX);
    CHECK(pc_mqtt_client_id(&id, buf, sizeof buf) == 31, "largest ids: %s", buf);
    CHECK(strcmp(buf, "18446744073709551615.4294967295") == 0, "got %s", buf);
    char small[8];
    CHECK(pc_mqtt_client_id(&id, small, sizeof small) == -1, "a too small buffer is refused");
}

static void password_is_ts_dot_signature(void) {
    pc_identity id = test_identity(12, 1);
    const uint64_t ts = 1700000000123ull;
    char pw[PC_MQTT_PASSWORD_MAX];
    int n = pc_mqtt_password(&id, ts, pw, sizeof pw);
    CHECK(n == (int)strlen(pw), "returned %d for \"%s\"", n, pw);
    CHECK(strncmp(pw, "1700000000123.", 14) == 0, "TS first, then a dot: %s", pw);
    uint64_t got_ts;
    uint8_t sig[64];
    CHECK(split_password(pw, &got_ts, sig) == 0, "not TS.SIG (86 unpadded base64url): %s", pw);
    CHECK(got_ts == ts, "TS %" PRIu64, got_ts);
    uint8_t msg[64];
    size_t len = password_message(msg, ts, "12.1");
    CHECK(crypto_sign_verify_detached(sig, msg, len, id.public_key) == 0,
          "the signature does not verify over context || be64(TS) || \"12.1\"");
}

static void password_signature_binds_time_and_client(void) {
    pc_identity id = test_identity(12, 1);
    char pw[PC_MQTT_PASSWORD_MAX];
    CHECK(pc_mqtt_password(&id, 1700000000123ull, pw, sizeof pw) > 0, "formatted");
    uint64_t ts;
    uint8_t sig[64], msg[64];
    CHECK(split_password(pw, &ts, sig) == 0, "split");
    size_t len = password_message(msg, ts + 1, "12.1");
    CHECK(crypto_sign_verify_detached(sig, msg, len, id.public_key) != 0, "verifies for another TS");
    len = password_message(msg, ts, "12.2");
    CHECK(crypto_sign_verify_detached(sig, msg, len, id.public_key) != 0, "verifies for another device");
    /* two times, two passwords: nothing reusable across connections */
    char pw2[PC_MQTT_PASSWORD_MAX];
    CHECK(pc_mqtt_password(&id, 1700000000124ull, pw2, sizeof pw2) > 0, "formatted");
    CHECK(strcmp(pw, pw2) != 0, "same password for two times");
}

static void password_largest_fits_and_small_buffer_refused(void) {
    pc_identity id = test_identity(UINT64_MAX, UINT32_MAX);
    char pw[PC_MQTT_PASSWORD_MAX];
    int n = pc_mqtt_password(&id, UINT64_MAX, pw, sizeof pw);
    CHECK(n == 20 + 1 + 86, "largest password is %d bytes", n);
    uint64_t ts;
    uint8_t sig[64], msg[64];
    CHECK(split_password(pw, &ts, sig) == 0 && ts == UINT64_MAX, "split %s", pw);
    size_t len = password_message(msg, ts, "18446744073709551615.4294967295");
    CHECK(crypto_sign_verify_detached(sig, msg, len, id.public_key) == 0, "largest does not verify");
    char small[100];
    CHECK(pc_mqtt_password(&id, UINT64_MAX, small, sizeof small) == -1, "a too small buffer is refused");
}

static void auth_signs_context_and_nonce(void) {
    pc_identity id = test_identity(12, 1);
    uint8_t nonce[32], sig[64];
    randombytes_buf(nonce, sizeof nonce);
    pc_mqtt_auth_sign(&id, nonce, sig);
    uint8_t msg[19 + 32];
    memcpy(msg, "parley.v1 mqtt auth", 19);
    memcpy(msg + 19, nonce, 32);
    CHECK(crypto_sign_verify_detached(sig, msg, sizeof msg, id.public_key) == 0,
          "AUTH signature does not verify over \"parley.v1 mqtt auth\" || nonce");
    CHECK(strcmp(PC_MQTT_AUTH_METHOD, "parley-ed25519") == 0, "method %s", PC_MQTT_AUTH_METHOD);
    nonce[0] ^= 1;
    memcpy(msg + 19, nonce, 32);
    CHECK(crypto_sign_verify_detached(sig, msg, sizeof msg, id.public_key) != 0, "verifies for another nonce");
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(client_id_is_user_dot_device);
    RUN(password_is_ts_dot_signature);
    RUN(password_signature_binds_time_and_client);
    RUN(password_largest_fits_and_small_buffer_refused);
    RUN(auth_signs_context_and_nonce);
    CHECK_EXIT();
}
