/* mqtt_auth.c -- the MQTT sign-in schemes (mqtt_auth.h).
 *
 * Why the password scheme signs a time and not a server nonce: MQTT 3.1.1
 * has no round trip before CONNACK, so the device cannot sign anything the
 * server chose. A signature over the client's time, accepted once (strictly
 * increasing per device) and only near the server's clock, is good for one
 * connection: replaying it is refused, and a captured password is useless
 * after 60 s even where the last-TS table was lost (a restart). */
#include "gateway/mqtt_auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/u64map.h"

static const char AUTH_CONTEXT[] = "parley.v1 mqtt auth";          /* 19 bytes, no NUL */
static const char PASSWORD_CONTEXT[] = "parley.v1 mqtt password";  /* 23 bytes, no NUL */
enum { SIG_B64_LEN = 86, MAX_CLIENT_ID = 31 /* 20 + 1 + 10 digits */ };

bool mqtt_parse_client_id(const uint8_t *s, size_t len, uint64_t *user, uint32_t *device) {
    if (len == 0 || len > MAX_CLIENT_ID) return false;
    const uint8_t *dot = memchr(s, '.', len);
    if (!dot) return false;
    size_t ul = (size_t)(dot - s), dl = len - ul - 1;
    if (ul == 0 || dl == 0 || s[0] == '0' || dot[1] == '0') return false;   /* empty, zero or leading zero */
    uint64_t u = 0, d = 0;
    for (size_t i = 0; i < ul; i++) {
        if (s[i] < '0' || s[i] > '9' || u > (UINT64_MAX - 9) / 10) return false;
        u = u * 10 + (uint64_t)(s[i] - '0');
    }
    for (size_t i = 0; i < dl; i++) {
        if (dot[1 + i] < '0' || dot[1 + i] > '9') return false;
        d = d * 10 + (uint64_t)(dot[1 + i] - '0');
        if (d > UINT32_MAX) return false;
    }
    *user = u;
    *device = (uint32_t)d;
    return true;
}

_Static_assert(MQTT_AUTH_KEY_BYTES == crypto_sign_PUBLICKEYBYTES, "Ed25519 public key size");
_Static_assert(MQTT_AUTH_SIG_BYTES == crypto_sign_BYTES, "Ed25519 signature size");

mqtt_auth_result mqtt_auth_check_signature(const uint8_t pk[MQTT_AUTH_KEY_BYTES], const uint8_t nonce[MQTT_NONCE_BYTES],
                                           const uint8_t *sig, size_t sig_len) {
    if (sig_len != crypto_sign_BYTES) return MQTT_AUTH_BAD;
    uint8_t msg[sizeof AUTH_CONTEXT - 1 + MQTT_NONCE_BYTES];
    memcpy(msg, AUTH_CONTEXT, sizeof AUTH_CONTEXT - 1);
    memcpy(msg + sizeof AUTH_CONTEXT - 1, nonce, MQTT_NONCE_BYTES);
    return crypto_sign_verify_detached(sig, msg, sizeof msg, pk) == 0 ? MQTT_AUTH_OK : MQTT_AUTH_BAD;
}

/* What a password signs; returns its length. */
static size_t password_message(uint8_t *out, uint64_t ts, const uint8_t *client_id, size_t id_len) {
    memcpy(out, PASSWORD_CONTEXT, sizeof PASSWORD_CONTEXT - 1);
    size_t n = sizeof PASSWORD_CONTEXT - 1;
    for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)(ts >> (8 * i));
    memcpy(out + n, client_id, id_len);
    return n + id_len;
}

/* The last accepted TS per device, process-wide (a device may connect to
 * any worker). Keyed by a hash of (user, device): a collision can only make
 * a fresh password look old (refused, the device retries a moment later),
 * never make a replay pass. Bounded: when full, entries older than the
 * window go (a TS that old is refused by the window anyway). */
static struct {
    pthread_mutex_t lock;
    u64map last_ts;
} table = {PTHREAD_MUTEX_INITIALIZER, {0}};

static uint64_t device_key_hash(uint64_t user, uint32_t device) {
    uint64_t h = user * 0x9E3779B97F4A7C15ull ^ ((uint64_t)device + 0x632BE59BD9B4E019ull);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return h ? h : 1;   /* 0 is the map's empty key */
}

static void forget_old(uint64_t now_ms) {
    u64map *m = &table.last_ts;
    /* collect first: removing while scanning would move entries under the scan */
    for (size_t i = 0; i < m->cap;) {
        if (m->slots[i].key && m->slots[i].value + MQTT_PASSWORD_WINDOW_MS < now_ms) {
            u64map_remove(m, m->slots[i].key, NULL);
            continue;   /* backward shift may have moved another entry here */
        }
        i++;
    }
}

/* Takes ts as the device's last one if it is after the previous. */
static mqtt_auth_result take_ts(uint64_t user, uint32_t device, uint64_t ts, uint64_t now_ms) {
    uint64_t key = device_key_hash(user, device);
    mqtt_auth_result r = MQTT_AUTH_OK;
    pthread_mutex_lock(&table.lock);
    uint64_t *last = u64map_get(&table.last_ts, key);
    if (last && ts <= *last) {
        r = MQTT_AUTH_STALE;
    } else if (last) {
        *last = ts;
    } else {
        if (table.last_ts.count >= MQTT_LAST_TS_MAX) forget_old(now_ms);
        if (table.last_ts.count >= MQTT_LAST_TS_MAX || u64map_put(&table.last_ts, key, ts))
            r = MQTT_AUTH_UNAVAILABLE;
    }
    pthread_mutex_unlock(&table.lock);
    return r;
}

mqtt_auth_result mqtt_auth_parse_password(const uint8_t *password, size_t password_len, uint64_t *ts,
                                          uint8_t sig[MQTT_AUTH_SIG_BYTES]) {
    const uint8_t *dot = memchr(password, '.', password_len);
    if (!dot || dot == password || dot - password > 20) return MQTT_AUTH_BAD;
    uint64_t v = 0;
    for (const uint8_t *p = password; p < dot; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) return MQTT_AUTH_BAD;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    size_t b64_len = password_len - (size_t)(dot + 1 - password);
    if (b64_len != SIG_B64_LEN) return MQTT_AUTH_BAD;
    size_t sig_len = 0;
    if (sodium_base642bin(sig, MQTT_AUTH_SIG_BYTES, (const char *)dot + 1, b64_len, NULL, &sig_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || sig_len != MQTT_AUTH_SIG_BYTES)
        return MQTT_AUTH_BAD;
    *ts = v;
    return MQTT_AUTH_OK;
}

mqtt_auth_result mqtt_auth_check_password(const uint8_t pk[MQTT_AUTH_KEY_BYTES], uint64_t user, uint32_t device,
                                          const uint8_t *client_id, size_t client_id_len, uint64_t ts,
                                          const uint8_t sig[MQTT_AUTH_SIG_BYTES], uint64_t now_ms) {
    if (client_id_len > MAX_CLIENT_ID) return MQTT_AUTH_BAD;
    uint8_t msg[sizeof PASSWORD_CONTEXT - 1 + 8 + MAX_CLIENT_ID];
    size_t n = password_message(msg, ts, client_id, client_id_len);
    if (crypto_sign_verify_detached(sig, msg, n, pk) != 0) return MQTT_AUTH_BAD;
    /* only a genuine signature touches the last-TS table: a forger cannot
     * push a device's last TS into the future */
    if (ts + MQTT_PASSWORD_WINDOW_MS < now_ms || ts > now_ms + MQTT_PASSWORD_WINDOW_MS) return MQTT_AUTH_STALE;
    return take_ts(user, device, ts, now_ms);
}

size_t mqtt_auth_make_password(const char *client_id, uint64_t ts_ms, const uint8_t *sk, char *out, size_t cap) {
    size_t id_len = strlen(client_id);
    if (id_len > MAX_CLIENT_ID) return 0;
    uint8_t msg[sizeof PASSWORD_CONTEXT - 1 + 8 + MAX_CLIENT_ID];
    size_t n = password_message(msg, ts_ms, (const uint8_t *)client_id, id_len);
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, msg, n, sk);
    char b64[SIG_B64_LEN + 1];
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int w = snprintf(out, cap, "%llu.%s", (unsigned long long)ts_ms, b64);
    return w > 0 && (size_t)w < cap ? (size_t)w : 0;
}
