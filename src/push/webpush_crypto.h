/* webpush_crypto.h -- RFC 8291 message encryption for Web Push: the
 * "aes128gcm" content coding (RFC 8188) with a key agreed by ECDH P-256
 * between a one-time key of ours and the subscription's p256dh key, mixed
 * with its auth secret by HKDF-SHA256. All cryptography is OpenSSL's. */
#ifndef PARLEY_PUSH_WEBPUSH_CRYPTO_H
#define PARLEY_PUSH_WEBPUSH_CRYPTO_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WEBPUSH_PUBLIC_KEY_BYTES = 65,   /* uncompressed P-256 point */
    WEBPUSH_AUTH_BYTES = 16,
    WEBPUSH_SALT_BYTES = 16,
    WEBPUSH_RECORD_SIZE = 4096,      /* rs: one record holds the whole payload */
    /* salt, rs, idlen, keyid */
    WEBPUSH_HEADER_BYTES = WEBPUSH_SALT_BYTES + 4 + 1 + WEBPUSH_PUBLIC_KEY_BYTES,
    /* what fits in one record: its tag (16) and the delimiter (1) come off */
    WEBPUSH_MAX_PLAINTEXT = WEBPUSH_RECORD_SIZE - 16 - 1,
};

/* Encrypts plain (len <= WEBPUSH_MAX_PLAINTEXT) for the subscriber (its
 * p256dh key ua_public and auth secret) into out: header, then one record.
 * sender: the key pair to agree with, NULL for a new one (always, except
 * in the RFC's test); salt: NULL for random bytes. The body is
 * WEBPUSH_HEADER_BYTES + len + 17 bytes; 0 with *out_len, or -1 (a bad
 * subscriber key, too long a payload, or too small an out). */
int webpush_encrypt(const uint8_t ua_public[WEBPUSH_PUBLIC_KEY_BYTES], const uint8_t auth[WEBPUSH_AUTH_BYTES],
                    const uint8_t *plain, size_t len, EVP_PKEY *sender, const uint8_t *salt, uint8_t *out,
                    size_t cap, size_t *out_len);

/* A P-256 key from its raw private scalar (32 bytes) and public point
 * (65 bytes); NULL on error. EVP_PKEY_free it. */
EVP_PKEY *webpush_p256_from_raw(const uint8_t priv[32], const uint8_t pub[WEBPUSH_PUBLIC_KEY_BYTES]);
/* A P-256 public key from its point; NULL when it is not one. */
EVP_PKEY *webpush_p256_public(const uint8_t pub[WEBPUSH_PUBLIC_KEY_BYTES]);
/* The public point of key into out (65 bytes). 0 or -1. */
int webpush_p256_point(EVP_PKEY *key, uint8_t out[WEBPUSH_PUBLIC_KEY_BYTES]);

#endif
