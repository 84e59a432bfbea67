/* webpush_crypto.c -- see webpush_crypto.h; RFC 8291 section 3.4 step by
 * step. */
#include "push/webpush_crypto.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <string.h>

static const char GROUP[] = "prime256v1";

EVP_PKEY *webpush_p256_public(const uint8_t pub[WEBPUSH_PUBLIC_KEY_BYTES]) {
    if (pub[0] != 0x04) return NULL;   /* uncompressed points only, as RFC 8291 says */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)GROUP, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, WEBPUSH_PUBLIC_KEY_BYTES),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    if (!key) return NULL;
    /* fromdata does not check that the point is on the curve: this does */
    EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int ok = check && EVP_PKEY_public_check(check) == 1;
    EVP_PKEY_CTX_free(check);
    if (!ok) {
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

EVP_PKEY *webpush_p256_from_raw(const uint8_t priv[32], const uint8_t pub[WEBPUSH_PUBLIC_KEY_BYTES]) {
    BIGNUM *d = BN_bin2bn(priv, 32, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (d && bld && ctx && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, GROUP, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, WEBPUSH_PUBLIC_KEY_BYTES) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) && (params = OSSL_PARAM_BLD_to_param(bld)) &&
        EVP_PKEY_fromdata_init(ctx) > 0)
        if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) <= 0) key = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

int webpush_p256_point(EVP_PKEY *key, uint8_t out[WEBPUSH_PUBLIC_KEY_BYTES]) {
    size_t n = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, WEBPUSH_PUBLIC_KEY_BYTES,
                                        &n) != 1)
        return -1;
    return n == WEBPUSH_PUBLIC_KEY_BYTES && out[0] == 0x04 ? 0 : -1;
}

/* HKDF-SHA256 (RFC 5869), extract and expand; out_len <= 32 */
static int hkdf(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                size_t info_len, uint8_t *out, size_t out_len) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
        OSSL_PARAM_construct_end(),
    };
    int rc = ctx && EVP_KDF_derive(ctx, out, out_len, params) == 1 ? 0 : -1;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

static int ecdh(EVP_PKEY *ours, EVP_PKEY *theirs, uint8_t secret[32]) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(ours, NULL);
    size_t n = 32;
    int rc = ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, theirs) > 0 &&
             EVP_PKEY_derive(ctx, secret, &n) > 0 && n == 32 ? 0 : -1;
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

static int aes128gcm_seal(const uint8_t key[16], const uint8_t nonce[12], const uint8_t *in, size_t len,
                          uint8_t *out) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;
    int rc = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, nonce) == 1 &&
             EVP_EncryptUpdate(ctx, out, &n, in, (int)len) == 1 && EVP_EncryptFinal_ex(ctx, out + n, &m) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + n + m) == 1 ? 0 : -1;
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int webpush_encrypt(const uint8_t ua_public[WEBPUSH_PUBLIC_KEY_BYTES], const uint8_t auth[WEBPUSH_AUTH_BYTES],
                    const uint8_t *plain, size_t len, EVP_PKEY *sender, const uint8_t *salt, uint8_t *out,
                    size_t cap, size_t *out_len) {
    size_t total = WEBPUSH_HEADER_BYTES + len + 1 + 16;
    if (len > WEBPUSH_MAX_PLAINTEXT || cap < total) return -1;
    EVP_PKEY *ua = webpush_p256_public(ua_public);
    EVP_PKEY *as = sender ? sender : EVP_EC_gen(GROUP);
    uint8_t as_public[WEBPUSH_PUBLIC_KEY_BYTES], secret[32], prk_ikm[32], cek[16], nonce[12];
    uint8_t key_info[14 + 2 * WEBPUSH_PUBLIC_KEY_BYTES];
    uint8_t record[WEBPUSH_MAX_PLAINTEXT + 1];
    int rc = -1;
    if (!ua || !as || webpush_p256_point(as, as_public) || ecdh(as, ua, secret)) goto done;
    /* IKM = HKDF(auth, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32) */
    memcpy(key_info, "WebPush: info", 14);   /* with its 0x00 */
    memcpy(key_info + 14, ua_public, WEBPUSH_PUBLIC_KEY_BYTES);
    memcpy(key_info + 14 + WEBPUSH_PUBLIC_KEY_BYTES, as_public, WEBPUSH_PUBLIC_KEY_BYTES);
    if (hkdf(auth, WEBPUSH_AUTH_BYTES, secret, sizeof secret, key_info, sizeof key_info, prk_ikm, 32)) goto done;
    /* the header: salt, rs, idlen, keyid = as_public */
    if (salt) memcpy(out, salt, WEBPUSH_SALT_BYTES);
    else if (RAND_bytes(out, WEBPUSH_SALT_BYTES) != 1) goto done;
    static const char CEK_INFO[] = "Content-Encoding: aes128gcm";   /* sizeof: with its 0x00 */
    static const char NONCE_INFO[] = "Content-Encoding: nonce";
    if (hkdf(out, WEBPUSH_SALT_BYTES, prk_ikm, 32, (const uint8_t *)CEK_INFO, sizeof CEK_INFO, cek, sizeof cek) ||
        hkdf(out, WEBPUSH_SALT_BYTES, prk_ikm, 32, (const uint8_t *)NONCE_INFO, sizeof NONCE_INFO, nonce,
             sizeof nonce))
        goto done;
    uint8_t *h = out + WEBPUSH_SALT_BYTES;
    h[0] = (uint8_t)(WEBPUSH_RECORD_SIZE >> 24);
    h[1] = (uint8_t)(WEBPUSH_RECORD_SIZE >> 16);
    h[2] = (uint8_t)(WEBPUSH_RECORD_SIZE >> 8);
    h[3] = (uint8_t)WEBPUSH_RECORD_SIZE;
    h[4] = WEBPUSH_PUBLIC_KEY_BYTES;
    memcpy(h + 5, as_public, WEBPUSH_PUBLIC_KEY_BYTES);
    /* one record, the last: the plaintext, then the delimiter 0x02 */
    if (len) memcpy(record, plain, len);
    record[len] = 0x02;
    if (aes128gcm_seal(cek, nonce, record, len + 1, out + WEBPUSH_HEADER_BYTES)) goto done;
    *out_len = total;
    rc = 0;
done:
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(prk_ikm, sizeof prk_ikm);
    OPENSSL_cleanse(cek, sizeof cek);
    if (as != sender) EVP_PKEY_free(as);
    EVP_PKEY_free(ua);
    return rc;
}
