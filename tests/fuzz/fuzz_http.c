/* fuzz_http.c -- libFuzzer target for the HTTP head parsers. Besides "no
 * crash", it checks that results are bounded, fields are NUL-terminated, and
 * that the answer does not depend on how much was buffered after the head. */
#include "net/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_OK(f) (memchr((f), '\0', sizeof(f)) != NULL)

static void check_request(const char *buf, size_t len) {
    http_request req;
    int n = http_parse_request(buf, len, &req);
    if (n < HTTP_TOO_LARGE || n > HTTP_MAX_HEAD_BYTES || (n > 0 && (size_t)n > len))
        abort();
    if (n <= 0)
        return;
    if (!FIELD_OK(req.method) || !FIELD_OK(req.path) || !FIELD_OK(req.host) ||
        !FIELD_OK(req.upgrade) || !FIELD_OK(req.connection) || !FIELD_OK(req.ws_key) ||
        !FIELD_OK(req.ws_version) || !FIELD_OK(req.ws_protocol) || !FIELD_OK(req.origin))
        abort();
    if (req.path[0] != '/' || req.version_minor < 0 || req.version_minor > 9 ||
        req.content_length < -1)
        abort();
    (void)http_has_token(req.connection, "upgrade");
    (void)http_has_token(req.ws_protocol, "parley.v1");
    /* the head alone parses to the same thing */
    http_request again;
    if (http_parse_request(buf, (size_t)n, &again) != n || memcmp(&req, &again, sizeof req))
        abort();
    /* one byte short of the head is simply incomplete */
    int shorter = http_parse_request(buf, (size_t)n - 1, &again);
    if (shorter != HTTP_NEED_MORE)
        abort();
}

static void check_response(const char *buf, size_t len) {
    http_response res;
    int n = http_parse_response(buf, len, &res);
    if (n < HTTP_TOO_LARGE || n > HTTP_MAX_HEAD_BYTES || (n > 0 && (size_t)n > len))
        abort();
    if (n <= 0)
        return;
    if (!FIELD_OK(res.upgrade) || !FIELD_OK(res.connection) || !FIELD_OK(res.ws_accept) ||
        !FIELD_OK(res.ws_protocol))
        abort();
    if (res.status < 100 || res.status > 599 || res.retry_after < -1 || res.retry_after > 86400)
        abort();
    http_response again;
    if (http_parse_response(buf, (size_t)n, &again) != n || memcmp(&res, &again, sizeof res))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, exactly size bytes long, so ASan sees any overread */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    check_request(buf, size);
    check_response(buf, size);
    /* also with a valid start, so the header parsing is reached more often */
    static const char req_prefix[] = "GET / HTTP/1.1\r\n";
    static const char res_prefix[] = "HTTP/1.1 101 Switching\r\n";
    size_t cap = sizeof res_prefix + size;
    char *wrapped = malloc(cap);
    if (wrapped) {
        memcpy(wrapped, req_prefix, sizeof req_prefix - 1);
        if (size)
            memcpy(wrapped + sizeof req_prefix - 1, data, size);
        check_request(wrapped, sizeof req_prefix - 1 + size);
        memcpy(wrapped, res_prefix, sizeof res_prefix - 1);
        if (size)
            memcpy(wrapped + sizeof res_prefix - 1, data, size);
        check_response(wrapped, sizeof res_prefix - 1 + size);
        free(wrapped);
    }
    free(buf);
    return 0;
}
