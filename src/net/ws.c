/* ws.c -- the stateless half of WebSocket (RFC 6455): handshake keys, frame
 * headers, masking and close payloads. The frame reader is in ws_reader.c. */
#include "net/ws.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* RFC 6455 1.3: the fixed GUID appended to the client's key. */
static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum { WS_KEY_B64_LEN = 24, WS_KEY_RAW_LEN = 16 };

static bool is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int ws_accept_key(const char *client_key, char out[29]) {
    out[0] = '\0';
    /* 16 bytes encode to exactly 22 characters and "==". Checked by hand
     * because EVP_DecodeBlock skips surrounding blanks and reports 18 bytes
     * for any 24-character input, padding included. */
    if (strnlen(client_key, WS_KEY_B64_LEN + 1) != WS_KEY_B64_LEN)
        return -1;
    for (int i = 0; i < WS_KEY_B64_LEN - 2; i++)
        if (!is_base64_char(client_key[i]))
            return -1;
    if (client_key[22] != '=' || client_key[23] != '=')
        return -1;
    unsigned char raw[18];
    if (EVP_DecodeBlock(raw, (const unsigned char *)client_key, WS_KEY_B64_LEN) != 18)
        return -1;

    /* The hash covers the key as sent (its base64 text), not the decoded bytes. */
    unsigned char joined[WS_KEY_B64_LEN + sizeof WS_GUID - 1];
    memcpy(joined, client_key, WS_KEY_B64_LEN);
    memcpy(joined + WS_KEY_B64_LEN, WS_GUID, sizeof WS_GUID - 1);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(joined, sizeof joined, digest, &digest_len, EVP_sha1(), NULL) != 1 ||
        digest_len != 20)
        return -1;
    /* 20 bytes -> 28 characters, and EVP_EncodeBlock writes the NUL */
    EVP_EncodeBlock((unsigned char *)out, digest, 20);
    return 0;
}

/* getrandom() as a fallback if OpenSSL's generator cannot be seeded. */
static bool random_from_kernel(uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

void ws_make_client_key(char out[25]) {
    uint8_t raw[WS_KEY_RAW_LEN];
    if (RAND_bytes(raw, sizeof raw) != 1 && !random_from_kernel(raw, sizeof raw))
        abort(); /* no randomness at all: nothing sensible to continue with, and
                    the signature (fixed by ws.h) has no way to report it */
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw); /* 24 chars + NUL */
}

size_t ws_write_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                       const uint8_t mask[4]) {
    size_t n;
    uint8_t mask_bit = mask ? 0x80 : 0x00;
    out[0] = (uint8_t)((fin ? 0x80 : 0x00) | (opcode & 0x0F));
    /* Lengths use the shortest encoding (RFC 6455 5.2). Callers bound their
     * payloads far below 2^63, so the 64-bit form never has its top bit set. */
    if (len < 126) {
        out[1] = (uint8_t)(mask_bit | len);
        n = 2;
    } else if (len <= 0xFFFF) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mask_bit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset) {
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(offset + i) & 3];
}

size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason) {
    /* 1005, 1006 and 1015 stand for "no code"/"no close frame"/"TLS failure"
     * and must never be sent (RFC 6455 7.4.1); the honest way to say "no
     * status" on the wire is an empty close payload. */
    if (code == WS_CLOSE_NO_STATUS || code == WS_CLOSE_ABNORMAL || code == 1015)
        return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (!reason)
        return 2;
    size_t n = strnlen(reason, 124);
    if (n > 123) {
        /* Cut at a code point boundary: a reason split mid-character would
         * be invalid UTF-8 and make the peer answer our close with 1007. */
        n = 123;
        while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
            n--;
    }
    if (!ws_utf8_valid((const uint8_t *)reason, n))
        n = 0; /* same reason: better no text than a text the peer rejects */
    memcpy(out + 2, reason, n);
    return 2 + n;
}
