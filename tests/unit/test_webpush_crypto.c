/* test_webpush_crypto.c -- push/webpush_crypto.c against the worked example
 * of RFC 8291 Appendix A, byte for byte, and its refusals. */
#include <sodium.h>
#include <string.h>

#include "../check.h"
#include "push/webpush_crypto.h"

/* RFC 8291 Appendix A, base64url as printed there */
static const char PLAINTEXT[] = "When I grow up, I want to be a watermelon";
static const char AS_PRIVATE[] = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
static const char AS_PUBLIC[] = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
static const char UA_PUBLIC[] = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
static const char AUTH_SECRET[] = "BTBZMqHH6r4Tts7J_aSIgg";
static const char SALT[] = "DGv6ra1nlYgDCS1FRnbzlw";
static const char BODY[] =
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

static size_t unb64(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    if (sodium_base642bin(out, cap, s, strlen(s), NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return 0;
    return n;
}

static void rfc8291_appendix_a_body_byte_for_byte(void) {
    uint8_t as_priv[32], as_pub[65], ua_pub[65], auth[16], salt[16], want[256], out[256];
    CHECK(unb64(AS_PRIVATE, as_priv, sizeof as_priv) == 32, "as_private");
    CHECK(unb64(AS_PUBLIC, as_pub, sizeof as_pub) == 65, "as_public");
    CHECK(unb64(UA_PUBLIC, ua_pub, sizeof ua_pub) == 65, "ua_public");
    CHECK(unb64(AUTH_SECRET, auth, sizeof auth) == 16, "auth");
    CHECK(unb64(SALT, salt, sizeof salt) == 16, "salt");
    size_t want_len = unb64(BODY, want, sizeof want);
    CHECK(want_len == 144, "body is 86 + 41 + 1 + 16 bytes: %zu", want_len);
    EVP_PKEY *as = webpush_p256_from_raw(as_priv, as_pub);
    CHECK(as, "sender key from the RFC's private and public halves");
    uint8_t point[65];
    CHECK(webpush_p256_point(as, point) == 0 && memcmp(point, as_pub, 65) == 0, "its point is as_public");
    size_t n = 0;
    int rc = webpush_encrypt(ua_pub, auth, (const uint8_t *)PLAINTEXT, strlen(PLAINTEXT), as, salt, out,
                             sizeof out, &n);
    EVP_PKEY_free(as);
    CHECK(rc == 0, "encrypts");
    CHECK(n == want_len, "length %zu, RFC %zu", n, want_len);
    CHECK(memcmp(out, want, WEBPUSH_HEADER_BYTES) == 0, "header (salt, rs 4096, idlen 65, as_public)");
    CHECK(memcmp(out + WEBPUSH_HEADER_BYTES, want + WEBPUSH_HEADER_BYTES, n - WEBPUSH_HEADER_BYTES) == 0,
          "ciphertext and tag as in the RFC");
}

static void fresh_key_and_salt_each_time(void) {
    uint8_t ua_pub[65], auth[16], a[256], b[256];
    unb64(UA_PUBLIC, ua_pub, sizeof ua_pub);
    unb64(AUTH_SECRET, auth, sizeof auth);
    size_t na = 0, nb = 0;
    CHECK(webpush_encrypt(ua_pub, auth, (const uint8_t *)"x", 1, NULL, NULL, a, sizeof a, &na) == 0, "a");
    CHECK(webpush_encrypt(ua_pub, auth, (const uint8_t *)"x", 1, NULL, NULL, b, sizeof b, &nb) == 0, "b");
    CHECK(na == nb && na == WEBPUSH_HEADER_BYTES + 1 + 17, "length %zu", na);
    CHECK(memcmp(a, b, 16) != 0, "salts differ");
    CHECK(memcmp(a + 21, b + 21, 65) != 0, "sender keys differ");
}

static void refuses_bad_keys_and_sizes(void) {
    uint8_t ua_pub[65], auth[16], out[4200];
    unb64(UA_PUBLIC, ua_pub, sizeof ua_pub);
    unb64(AUTH_SECRET, auth, sizeof auth);
    size_t n = 0;
    uint8_t bad[65];
    memcpy(bad, ua_pub, 65);
    bad[64] ^= 1;   /* off the curve */
    CHECK(webpush_encrypt(bad, auth, (const uint8_t *)"x", 1, NULL, NULL, out, sizeof out, &n) == -1, "off curve");
    bad[64] ^= 1;
    bad[0] = 0x02;  /* compressed form: not what a subscription carries */
    CHECK(webpush_encrypt(bad, auth, (const uint8_t *)"x", 1, NULL, NULL, out, sizeof out, &n) == -1, "not 0x04");
    static uint8_t big[WEBPUSH_MAX_PLAINTEXT + 1];
    CHECK(webpush_encrypt(ua_pub, auth, big, sizeof big, NULL, NULL, out, sizeof out, &n) == -1, "over a record");
    CHECK(webpush_encrypt(ua_pub, auth, (const uint8_t *)"x", 1, NULL, NULL, out, 100, &n) == -1, "small out");
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(rfc8291_appendix_a_body_byte_for_byte);
    RUN(fresh_key_and_salt_each_time);
    RUN(refuses_bad_keys_and_sizes);
    CHECK_EXIT();
}
