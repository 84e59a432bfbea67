/* vapid.c -- see vapid.h. The JWT is ES256 (RFC 7515/7518): the DER
 * signature OpenSSL makes is turned into the raw r || s (32 + 32 bytes)
 * that JWS asks for. */
#include "push/vapid.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

static const char KEY_FILE[] = "push-vapid-key.pem";

struct vapid_key {
    EVP_PKEY *key;
    uint8_t public_key[WEBPUSH_PUBLIC_KEY_BYTES];
    char public_b64[VAPID_KEY_B64_BYTES];
};

static void b64url(const uint8_t *in, size_t len, char *out, size_t cap) {
    sodium_bin2base64(out, cap, in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static EVP_PKEY *read_key(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return key;
}

/* A new key, written with O_EXCL at mode 0600: two starts never both
 * write one, and nobody else reads it. */
static EVP_PKEY *create_key(const char *path) {
    EVP_PKEY *key = EVP_EC_gen("prime256v1");
    if (!key) return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok = f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (f) ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f) fclose(f);
    else if (fd >= 0) close(fd);
    if (!ok) {
        log_error("push: cannot write the VAPID key %s: %s", path, strerror(errno));
        if (fd >= 0) unlink(path);
        EVP_PKEY_free(key);
        return NULL;
    }
    log_info("push: made a new VAPID key in %s", path);
    return key;
}

vapid_key *vapid_load_or_create(const char *dir) {
    char path[1200];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, KEY_FILE) >= sizeof path) return NULL;
    mkdir(dir, 0700);   /* a backend other than RocksDB leaves it to us; EEXIST is fine */
    struct stat st;
    EVP_PKEY *key = NULL;
    if (stat(path, &st) == 0) {
        if (st.st_mode & 077) log_warn("push: %s is readable by others (mode %o); it should be 0600", path,
                                       (unsigned)(st.st_mode & 0777));
        key = read_key(path);
        if (!key) log_error("push: cannot read the VAPID key %s", path);
    } else {
        key = create_key(path);
    }
    if (!key) return NULL;
    vapid_key *k = calloc(1, sizeof *k);
    if (!k || EVP_PKEY_get_bits(key) != 256 || webpush_p256_point(key, k->public_key)) {
        log_error("push: %s is not a P-256 key", path);
        EVP_PKEY_free(key);
        free(k);
        return NULL;
    }
    k->key = key;
    b64url(k->public_key, sizeof k->public_key, k->public_b64, sizeof k->public_b64);
    return k;
}

void vapid_free(vapid_key *k) {
    if (!k) return;
    EVP_PKEY_free(k->key);
    free(k);
}

const uint8_t *vapid_public_key(const vapid_key *k) { return k->public_key; }
const char *vapid_public_key_b64(const vapid_key *k) { return k->public_b64; }

/* ES256 over data: raw r || s */
static int sign_es256(EVP_PKEY *key, const char *data, size_t len, uint8_t sig[64]) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t der_len = sizeof der;
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(md, der, &der_len, (const uint8_t *)data, len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) return -1;
    const uint8_t *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!s) return -1;
    const BIGNUM *r = NULL, *ss = NULL;
    ECDSA_SIG_get0(s, &r, &ss);
    ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(ss, sig + 32, 32) == 32;
    ECDSA_SIG_free(s);
    return ok ? 0 : -1;
}

int vapid_authorization(const vapid_key *k, const char *audience, uint64_t exp, const char *subject, char *out,
                        size_t cap) {
    static const char HEADER[] = "{\"typ\":\"JWT\",\"alg\":\"ES256\"}";
    char claims[VAPID_AUDIENCE_MAX + 512];
    int n = snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%llu,\"sub\":\"%s\"}", audience,
                     (unsigned long long)exp, subject);
    if (n < 0 || (size_t)n >= sizeof claims) return -1;
    /* header.claims, each base64url */
    char signing[2 * sizeof claims];
    size_t h = sodium_base64_ENCODED_LEN(sizeof HEADER - 1, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t c = sodium_base64_ENCODED_LEN((size_t)n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (h + c + 1 > sizeof signing) return -1;
    b64url((const uint8_t *)HEADER, sizeof HEADER - 1, signing, h);
    size_t len = strlen(signing);
    signing[len++] = '.';
    b64url((const uint8_t *)claims, (size_t)n, signing + len, sizeof signing - len);
    len = strlen(signing);
    uint8_t sig[64];
    char sig_b64[100];
    if (sign_es256(k->key, signing, len, sig)) return -1;
    b64url(sig, sizeof sig, sig_b64, sizeof sig_b64);
    n = snprintf(out, cap, "vapid t=%s.%s, k=%s", signing, sig_b64, k->public_b64);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int vapid_audience_of(const char *endpoint, char *out, size_t cap) {
    static const char SCHEME[] = "https://";
    if (strncmp(endpoint, SCHEME, sizeof SCHEME - 1) != 0) return -1;
    const char *host = endpoint + sizeof SCHEME - 1;
    size_t n = strcspn(host, "/?#");
    if (n == 0 || memchr(host, '@', n)) return -1;   /* no userinfo in an audience */
    size_t total = sizeof SCHEME - 1 + n;
    if (total >= cap) return -1;
    memcpy(out, endpoint, total);
    out[total] = 0;
    return 0;
}
