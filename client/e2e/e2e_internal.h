/* e2e_internal.h -- what the e2e files share: randomness, the KDFs, the
 * AEAD and big-endian byte helpers. Not part of libparley's API. */
#ifndef PARLEY_E2E_INTERNAL_H
#define PARLEY_E2E_INTERNAL_H

#include "e2e.h"

enum {
    E2E_VERSION = 1,
    /* first byte of every message and state: what it is */
    E2E_TYPE_PREKEY_MESSAGE = 0x01,
    E2E_TYPE_MESSAGE = 0x02,
    E2E_TYPE_SENDER_MESSAGE = 0x03,
    E2E_TYPE_DISTRIBUTION = 0x04,
    E2E_TYPE_SESSION_STATE = 0x51,
    E2E_TYPE_SENDER_STATE = 0x52,
    E2E_AEAD_TAG = 16,
    E2E_AEAD_KEY = 32,
    E2E_AEAD_NONCE = 12,
    E2E_HASH = 32,
};

/* Random bytes: libsodium's, or the test hook's under PARLEY_E2E_TEST_RNG. */
void e2e_random(void *buf, size_t len);
/* A fresh X25519 key pair (sk random, pk = sk * base). */
void e2e_dh_keypair(uint8_t pk[32], uint8_t sk[32]);
/* X25519; -1 for a low-order public key (an all-zero result). */
int e2e_dh(uint8_t out[32], const uint8_t sk[32], const uint8_t pk[32]);
/* The X25519 forms of an Ed25519 identity; -1 if pk is not a valid point. */
int e2e_identity_x25519_pk(uint8_t out[32], const uint8_t ed_pk[32]);
void e2e_identity_x25519_sk(uint8_t out[32], const uint8_t ed_sk[64]);

/* HKDF-SHA256 (RFC 5869) built on libsodium's HMAC-SHA256: Debian 12's
 * libsodium 1.0.18 has no crypto_kdf_hkdf_sha256 (1.0.19 has). out_len <= 255*32. */
void e2e_hkdf(uint8_t *out, size_t out_len, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
              size_t ikm_len, const char *info);
void e2e_hmac(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *msg, size_t len);
/* Double Ratchet KDF_RK: (rk, dh_out) -> (rk', ck) */
void e2e_kdf_rk(uint8_t rk_out[32], uint8_t ck_out[32], const uint8_t rk[32], const uint8_t dh_out[32]);
/* KDF_CK: mk = HMAC(ck, 0x01), ck' = HMAC(ck, 0x02); ck advanced in place */
void e2e_kdf_ck(uint8_t ck[32], uint8_t mk[32]);
/* ChaCha20-Poly1305 (IETF) with key and nonce from HKDF(mk): each message
 * key is used once, so a derived nonce never repeats under one key. info
 * separates pairwise from sender-key messages. out has len + 16 bytes. */
void e2e_seal(uint8_t *out, const uint8_t *pt, size_t len, const uint8_t *ad, size_t ad_len, const uint8_t mk[32],
              const char *info);
int e2e_open(uint8_t *out, const uint8_t *ct, size_t len, const uint8_t *ad, size_t ad_len, const uint8_t mk[32],
             const char *info);

extern const char E2E_INFO_MESSAGE[];
extern const char E2E_INFO_SENDER[];

static inline void e2e_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint32_t e2e_get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
