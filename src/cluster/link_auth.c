/* link_auth.c -- see link_auth.h. libsodium's HMAC-SHA256 and randombytes. */
#include "cluster/link_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const LABELS[] = {
    [LINK_AUTH_CONNECTOR] = "parley node link v2: connector",
    [LINK_AUTH_ACCEPTOR] = "parley node link v2: acceptor",
};

void link_auth_key(const uint8_t *secret, size_t len, uint8_t key[LINK_AUTH_BYTES]) {
    crypto_hash_sha256(key, secret, len);
}

void link_auth_nonce(uint8_t nonce[LINK_AUTH_BYTES]) { randombytes_buf(nonce, LINK_AUTH_BYTES); }

static void put_name(crypto_auth_hmacsha256_state *st, const char *name) {
    /* length-prefixed, so ("ab", "c") and ("a", "bc") differ */
    size_t n = strlen(name);
    uint8_t len = (uint8_t)(n > 255 ? 255 : n);
    crypto_auth_hmacsha256_update(st, &len, 1);
    crypto_auth_hmacsha256_update(st, (const uint8_t *)name, len);
}

void link_auth_proof(const uint8_t key[LINK_AUTH_BYTES], enum link_auth_side side,
                     const uint8_t nonce_connector[LINK_AUTH_BYTES], const uint8_t nonce_acceptor[LINK_AUTH_BYTES],
                     const char *name_connector, const char *name_acceptor, uint8_t out[LINK_AUTH_BYTES]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, LINK_AUTH_BYTES);
    const char *label = LABELS[side];
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
    crypto_auth_hmacsha256_update(&st, nonce_connector, LINK_AUTH_BYTES);
    crypto_auth_hmacsha256_update(&st, nonce_acceptor, LINK_AUTH_BYTES);
    put_name(&st, name_connector);
    put_name(&st, name_acceptor);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

bool link_auth_verify(const uint8_t key[LINK_AUTH_BYTES], enum link_auth_side side,
                      const uint8_t nonce_connector[LINK_AUTH_BYTES], const uint8_t nonce_acceptor[LINK_AUTH_BYTES],
                      const char *name_connector, const char *name_acceptor, const uint8_t proof[LINK_AUTH_BYTES]) {
    uint8_t want[LINK_AUTH_BYTES];
    link_auth_proof(key, side, nonce_connector, nonce_acceptor, name_connector, name_acceptor, want);
    return sodium_memcmp(want, proof, LINK_AUTH_BYTES) == 0;
}

int link_auth_load(const char *path, uint8_t key[LINK_AUTH_BYTES], char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cluster-secret %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        snprintf(err, errlen, "cluster-secret %s: must be a regular file of mode 0600 or 0400 (mode %o)", path,
                 (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    static uint8_t secret[LINK_SECRET_MAX + 1];   /* startup only, one thread; wiped below */
    size_t len = 0;
    for (int reads = 0; reads < 64 && len < sizeof secret; reads++) {
        ssize_t n = read(fd, secret + len, sizeof secret - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    int rc = 0;
    if (len < LINK_SECRET_MIN || len > LINK_SECRET_MAX) {
        snprintf(err, errlen, "cluster-secret %s: %zu bytes; expected %d to %d random bytes", path, len,
                 LINK_SECRET_MIN, LINK_SECRET_MAX);
        rc = -1;
    } else {
        link_auth_key(secret, len, key);
    }
    sodium_memzero(secret, sizeof secret);
    return rc;
}
