/* primitives.c -- the building blocks of X3DH, the Double Ratchet and
 * Sender Keys, each a composition of libsodium primitives: X25519
 * (crypto_scalarmult), HMAC-SHA256 (crypto_auth_hmacsha256) and from it
 * HKDF, and the ChaCha20-Poly1305 IETF AEAD.
 *
 * Why ChaCha20-Poly1305 and not the spec's AES-256-CBC + HMAC: libsodium
 * has no AES-CBC, its AES-256-GCM runs only on CPUs with AES-NI, and an
 * AEAD does the spec's encrypt-then-MAC in one audited primitive. The key
 * and nonce both come from HKDF of the one-use message key, as the spec
 * derives its key and IV. */
#include <string.h>

#include <sodium.h>

#include "e2e_internal.h"

const char E2E_INFO_MESSAGE[] = "parley.e2e message v1";
const char E2E_INFO_SENDER[] = "parley.e2e sender message v1";

#ifdef PARLEY_E2E_TEST_RNG
static void (*test_rng)(void *, size_t);
void e2e_test_set_rng(void (*fn)(void *buf, size_t len)) { test_rng = fn; }
#endif

void e2e_random(void *buf, size_t len) {
#ifdef PARLEY_E2E_TEST_RNG
    if (test_rng) {
        test_rng(buf, len);
        return;
    }
#endif
    randombytes_buf(buf, len);
}

void e2e_dh_keypair(uint8_t pk[32], uint8_t sk[32]) {
    e2e_random(sk, 32);
    crypto_scalarmult_base(pk, sk);
}

int e2e_dh(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32]) {
    return crypto_scalarmult(out, sk, pk) == 0 ? 0 : -1;
}

int e2e_identity_x25519_pk(uint8_t out[32], const uint8_t ed_pk[32]) {
    return crypto_sign_ed25519_pk_to_curve25519(out, ed_pk) == 0 ? 0 : -1;
}

void e2e_identity_x25519_sk(uint8_t out[32], const uint8_t ed_sk[64]) {
    crypto_sign_ed25519_sk_to_curve25519(out, ed_sk);
}

void e2e_hmac(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *msg, size_t len) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, msg, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

void e2e_hkdf(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
              size_t ikm_len, const char *info) {
    static const uint8_t zeros[E2E_HASH];
    if (!salt || salt_len == 0) {
        salt = zeros;
        salt_len = sizeof zeros;
    }
    uint8_t prk[E2E_HASH], t[E2E_HASH];
    e2e_hmac(prk, salt, salt_len, ikm, ikm_len);   /* extract */
    size_t info_len = strlen(info), done = 0;
    for (uint8_t i = 1; done < out_len && i != 0; i++) {   /* expand: T(i) = HMAC(prk, T(i-1) || info || i) */
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, prk, sizeof prk);
        if (i > 1) crypto_auth_hmacsha256_update(&st, t, sizeof t);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *)info, info_len);
        crypto_auth_hmacsha256_update(&st, &i, 1);
        crypto_auth_hmacsha256_final(&st, t);
        size_t n = out_len - done < sizeof t ? out_len - done : sizeof t;
        memcpy(out + done, t, n);
        done += n;
    }
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(t, sizeof t);
}

void e2e_kdf_rk(uint8_t rk_out[32], uint8_t ck_out[32], const uint8_t rk[32], const uint8_t dh_out[32]) {
    uint8_t okm[64];
    e2e_hkdf(okm, sizeof okm, rk, 32, dh_out, 32, "parley.e2e ratchet v1");
    memcpy(rk_out, okm, 32);
    memcpy(ck_out, okm + 32, 32);
    sodium_memzero(okm, sizeof okm);
}

void e2e_kdf_ck(uint8_t ck[32], uint8_t mk[32]) {
    static const uint8_t one = 0x01, two = 0x02;
    uint8_t next[32];
    e2e_hmac(mk, ck, 32, &one, 1);
    e2e_hmac(next, ck, 32, &two, 1);
    memcpy(ck, next, 32);
    sodium_memzero(next, sizeof next);
}

static void aead_keys(uint8_t key[E2E_AEAD_KEY], uint8_t nonce[E2E_AEAD_NONCE], const uint8_t mk[32],
                      const char *info) {
    uint8_t okm[E2E_AEAD_KEY + E2E_AEAD_NONCE];
    e2e_hkdf(okm, sizeof okm, NULL, 0, mk, 32, info);
    memcpy(key, okm, E2E_AEAD_KEY);
    memcpy(nonce, okm + E2E_AEAD_KEY, E2E_AEAD_NONCE);
    sodium_memzero(okm, sizeof okm);
}

void e2e_seal(uint8_t *out, const uint8_t *pt, size_t len, const uint8_t *ad, size_t ad_len, const uint8_t mk[32],
              const char *info) {
    uint8_t key[E2E_AEAD_KEY], nonce[E2E_AEAD_NONCE];
    aead_keys(key, nonce, mk, info);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, len, ad, ad_len, NULL, nonce, key);
    sodium_memzero(key, sizeof key);
}

int e2e_open(uint8_t *out, const uint8_t *ct, size_t len, const uint8_t *ad, size_t ad_len, const uint8_t mk[32],
             const char *info) {
    if (len < E2E_AEAD_TAG) return E2E_ERR_MALFORMED;
    uint8_t key[E2E_AEAD_KEY], nonce[E2E_AEAD_NONCE];
    aead_keys(key, nonce, mk, info);
    int r = crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, len, ad, ad_len, nonce, key);
    sodium_memzero(key, sizeof key);
    return r == 0 ? E2E_OK : E2E_ERR_AUTH;
}

const char *e2e_strerror(int status) {
    switch (status) {
    case E2E_OK: return "ok";
    case E2E_ERR_MALFORMED: return "malformed: not an encrypted message or state of this version";
    case E2E_ERR_AUTH: return "does not authenticate: tampered with, or not encrypted for this device";
    case E2E_ERR_REPLAY: return "its key was already used or discarded: a replay or a message too old";
    case E2E_ERR_TOO_FAR: return "too many messages skipped";
    case E2E_ERR_BAD_BUNDLE: return "the peer's signed pre-key signature does not verify, or a key is unusable";
    case E2E_ERR_NOMEM: return "out of memory";
    case E2E_ERR_VERSION: return "saved state of an unknown version";
    case E2E_ERR_TOO_LARGE: return "message too large";
    case E2E_ERR_WRONG_KEY: return "sender key not held (not distributed to this device, or rotated)";
    case E2E_ERR_IDENTITY_CHANGED:
        return "refused: this peer device now presents another identity key than before (a device's key never "
               "changes: someone may be impersonating it)";
    }
    return "unknown error";
}
