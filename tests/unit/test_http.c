/* test_http.c -- the HTTP head parsers: what they accept, what they refuse,
 * and that a partial head is never mistaken for a whole or a bad one. */
#include "../check.h"
#include "net/http.h"

#include <string.h>

#define UPGRADE_REQ \
    "GET /ws HTTP/1.1\r\n" \
    "Host: chat.example:8080\r\n" \
    "Upgrade: websocket\r\n" \
    "Connection: keep-alive, Upgrade\r\n" \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
    "Sec-WebSocket-Version: 13\r\n" \
    "Sec-WebSocket-Protocol: parley.v1\r\n" \
    "Origin: https://chat.example\r\n" \
    "\r\n"

static int parse_req(const char *s, http_request *req) {
    return http_parse_request(s, strlen(s), req);
}

static int parse_res(const char *s, http_response *res) {
    return http_parse_response(s, strlen(s), res);
}

static void request_upgrade_complete(void) {
    http_request req;
    int n = parse_req(UPGRADE_REQ, &req);
    CHECK(n == (int)strlen(UPGRADE_REQ), "n=%d", n);
    CHECK(strcmp(req.method, "GET") == 0, "method=%s", req.method);
    CHECK(strcmp(req.path, "/ws") == 0, "path=%s", req.path);
    CHECK(req.version_minor == 1, "minor=%d", req.version_minor);
    CHECK(strcmp(req.host, "chat.example:8080") == 0, "host=%s", req.host);
    CHECK(strcmp(req.upgrade, "websocket") == 0, "upgrade=%s", req.upgrade);
    CHECK(strcmp(req.connection, "keep-alive, Upgrade") == 0, "conn=%s", req.connection);
    CHECK(strcmp(req.ws_key, "dGhlIHNhbXBsZSBub25jZQ==") == 0, "key=%s", req.ws_key);
    CHECK(strcmp(req.ws_version, "13") == 0, "ver=%s", req.ws_version);
    CHECK(strcmp(req.ws_protocol, "parley.v1") == 0, "proto=%s", req.ws_protocol);
    CHECK(strcmp(req.origin, "https://chat.example") == 0, "origin=%s", req.origin);
    CHECK(req.content_length == -1, "cl=%ld", req.content_length);
}

static void request_with_trailing_bytes_reports_head_length(void) {
    const char *s = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
    http_request req;
    int n = parse_req(s, &req);
    CHECK(n == (int)(strstr(s, "GET /next") - s), "n=%d", n);
    CHECK(strcmp(req.path, "/healthz") == 0, "path=%s", req.path);
    CHECK(req.upgrade[0] == '\0' && req.origin[0] == '\0', "absent headers not empty");
}

static void request_every_prefix_needs_more(void) {
    size_t len = strlen(UPGRADE_REQ);
    http_request req;
    for (size_t i = 0; i < len; i++) {
        int n = http_parse_request(UPGRADE_REQ, i, &req);
        CHECK(n == HTTP_NEED_MORE, "prefix %zu -> %d", i, n);
    }
}

static void request_http10_without_host(void) {
    http_request req;
    CHECK(parse_req("GET / HTTP/1.0\r\n\r\n", &req) > 0, "1.0 needs no Host");
    CHECK(req.version_minor == 0, "minor=%d", req.version_minor);
    CHECK(parse_req("GET / HTTP/1.1\r\n\r\n", &req) == HTTP_BAD, "1.1 needs Host");
}

static void request_lowercase_and_blank_trimming(void) {
    http_request req;
    const char *s = "GET /ws HTTP/1.1\r\nhost:h\r\nUPGRADE: \t websocket \t\r\n"
                    "sec-websocket-key:   abc  \r\n\r\n";
    CHECK(parse_req(s, &req) > 0, "parse");
    CHECK(strcmp(req.host, "h") == 0, "host=%s", req.host);
    CHECK(strcmp(req.upgrade, "websocket") == 0, "upgrade='%s'", req.upgrade);
    CHECK(strcmp(req.ws_key, "abc") == 0, "key='%s'", req.ws_key);
}

static void request_duplicates(void) {
    http_request req;
    const char *joined = "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Protocol: a\r\n"
                         "sec-websocket-protocol: parley.v1\r\n\r\n";
    CHECK(parse_req(joined, &req) > 0, "joined");
    CHECK(strcmp(req.connection, "keep-alive, Upgrade") == 0, "conn=%s", req.connection);
    CHECK(strcmp(req.ws_protocol, "a, parley.v1") == 0, "proto=%s", req.ws_protocol);
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &req) == HTTP_BAD,
          "two Hosts");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: x\r\n"
                    "Sec-WebSocket-Key: y\r\n\r\n", &req) == HTTP_BAD, "two keys");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                    "Content-Length: 1\r\n\r\n", &req) == HTTP_BAD, "two lengths");
}

static void request_content_length(void) {
    http_request req;
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", &req) > 0,
          "parse");
    CHECK(req.content_length == 42, "cl=%ld", req.content_length);
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", &req) ==
          HTTP_BAD, "negative");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", &req) ==
          HTTP_BAD, "list");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", &req) ==
          HTTP_BAD, "empty");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999"
                    "\r\n\r\n", &req) == HTTP_BAD, "huge");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                    &req) == HTTP_BAD, "chunked");
}

static void request_obs_fold_rejected(void) {
    http_request req;
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,\r\n"
                    " Upgrade\r\n\r\n", &req) == HTTP_BAD, "space fold");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\tz\r\n\r\n", &req) == HTTP_BAD,
          "tab fold");
}

static void request_missing_crlf(void) {
    http_request req;
    CHECK(parse_req("GET / HTTP/1.1\nHost: a\n\n", &req) == HTTP_BAD, "bare LF");
    CHECK(parse_req("GET / HTTP/1.1\r\nHost: a\n\r\n", &req) == HTTP_BAD, "LF in header");
    CHECK(parse_req("GET / HTTP/1.1\rHost: a\r\n\r\n", &req) == HTTP_BAD, "bare CR");
    /* a bare LF fails at once, before the head is complete */
    CHECK(parse_req("GET / HTTP/1.1\n", &req) == HTTP_BAD, "early bare LF");
}

static void request_malformed(void) {
    static const char *bad[] = {
        "\r\n\r\n",
        "GET\r\n\r\n",
        "GET /\r\nHost: a\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.x\r\nHost: a\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "VERYLONGMETHODNAME / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",          /* blank before colon */
        "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",      /* control char */
        "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    http_request req;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = parse_req(bad[i], &req);
        CHECK(n == HTTP_BAD, "case %zu -> %d", i, n);
    }
    const char nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    CHECK(http_parse_request(nul, sizeof nul - 1, &req) == HTTP_BAD, "NUL");
}

static void request_value_too_long_for_field(void) {
    char s[2048];
    char host[300];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    http_request req;
    CHECK(parse_req(s, &req) == HTTP_BAD, "long host");
    /* exactly 255 fits */
    host[255] = '\0';
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    CHECK(parse_req(s, &req) > 0 && strlen(req.host) == 255, "255-byte host");
    /* unknown headers may be long: we do not keep them */
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: a\r\nX-Long: %s%s%s\r\n\r\n",
             host, host, host);
    CHECK(parse_req(s, &req) > 0, "long unknown header");
}

static void request_path_limit(void) {
    char s[2048];
    char path[1100];
    path[0] = '/';
    memset(path + 1, 'p', sizeof path - 2);
    path[1023] = '\0';                 /* 1023 chars: fits with its NUL */
    snprintf(s, sizeof s, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    http_request req;
    CHECK(parse_req(s, &req) > 0, "1023-byte path");
    path[1023] = 'p';
    path[1024] = '\0';
    snprintf(s, sizeof s, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    CHECK(parse_req(s, &req) == HTTP_BAD, "1024-byte path");
}

static void request_oversized(void) {
    static char s[HTTP_MAX_HEAD_BYTES + 100];
    size_t n = (size_t)snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(s + n, 'x', sizeof s - n);
    http_request req;
    CHECK(http_parse_request(s, HTTP_MAX_HEAD_BYTES - 1, &req) == HTTP_NEED_MORE, "under");
    CHECK(http_parse_request(s, HTTP_MAX_HEAD_BYTES, &req) == HTTP_TOO_LARGE, "at limit");
    CHECK(http_parse_request(s, sizeof s, &req) == HTTP_TOO_LARGE, "over");
    /* a head of exactly HTTP_MAX_HEAD_BYTES, CRLFCRLF included, is fine */
    memcpy(s + HTTP_MAX_HEAD_BYTES - 4, "\r\n\r\n", 4);
    CHECK(http_parse_request(s, sizeof s, &req) == HTTP_MAX_HEAD_BYTES, "exact");
}

static void request_too_many_headers(void) {
    static char s[HTTP_MAX_HEAD_BYTES];
    size_t n = (size_t)snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(s + n, sizeof s - n, "X-%d: y\r\n", i);
    snprintf(s + n, sizeof s - n, "\r\n");
    http_request req;
    CHECK(parse_req(s, &req) > 0, "exactly the limit");
    snprintf(s + n, sizeof s - n, "X-last: y\r\n\r\n");
    CHECK(parse_req(s, &req) == HTTP_TOO_LARGE, "one over");
}

static void has_token(void) {
    CHECK(http_has_token("keep-alive, Upgrade", "upgrade") == 1, "basic");
    CHECK(http_has_token("Upgrade", "upgrade") == 1, "single");
    CHECK(http_has_token(" upgrade ,keep-alive", "UPGRADE") == 1, "blanks");
    CHECK(http_has_token("a,,\t upgrade\t", "upgrade") == 1, "empty elements");
    CHECK(http_has_token("upgrades, keep-alive", "upgrade") == 0, "prefix only");
    CHECK(http_has_token("x-upgrade", "upgrade") == 0, "suffix only");
    CHECK(http_has_token("", "upgrade") == 0, "empty value");
    CHECK(http_has_token("upgrade", "") == 0, "empty token");
    CHECK(http_has_token("parley.v0, parley.v1", "parley.v1") == 1, "protocol list");
}

static void response_switching(void) {
    const char *s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    "Sec-WebSocket-Protocol: parley.v1\r\n\r\n";
    http_response res;
    int n = parse_res(s, &res);
    CHECK(n == (int)strlen(s), "n=%d", n);
    CHECK(res.status == 101, "status=%d", res.status);
    CHECK(strcmp(res.upgrade, "websocket") == 0, "upgrade=%s", res.upgrade);
    CHECK(strcmp(res.connection, "Upgrade") == 0, "conn=%s", res.connection);
    CHECK(strcmp(res.ws_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "accept=%s", res.ws_accept);
    CHECK(strcmp(res.ws_protocol, "parley.v1") == 0, "proto=%s", res.ws_protocol);
    CHECK(res.retry_after == -1, "retry=%d", res.retry_after);
    for (size_t i = 0; i < strlen(s); i++)
        CHECK(http_parse_response(s, i, &res) == HTTP_NEED_MORE, "prefix %zu", i);
}

static void response_retry_after(void) {
    http_response res;
    CHECK(parse_res("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n"
                    "Content-Length: 0\r\n\r\n", &res) > 0, "parse");
    CHECK(res.status == 503 && res.retry_after == 7, "%d %d", res.status, res.retry_after);
    CHECK(parse_res("HTTP/1.1 503 x\r\nretry-after:  120 \r\n\r\n", &res) > 0 &&
          res.retry_after == 120, "lowercase, blanks: %d", res.retry_after);
    CHECK(parse_res("HTTP/1.1 503 x\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
                    &res) > 0 && res.retry_after == -1, "date ignored: %d", res.retry_after);
    CHECK(parse_res("HTTP/1.1 503 x\r\nRetry-After: 99999999999999999999\r\n\r\n",
                    &res) > 0 && res.retry_after == 86400, "capped: %d", res.retry_after);
    CHECK(parse_res("HTTP/1.1 503 x\r\nRetry-After: 1\r\nRetry-After: 2\r\n\r\n", &res) ==
          HTTP_BAD, "twice");
    CHECK(parse_res("HTTP/1.1 503\r\nRetry-After: 0\r\n\r\n", &res) > 0 &&
          res.retry_after == 0, "no reason phrase, zero");
}

static void response_malformed(void) {
    static const char *bad[] = {
        "HTTP/1.1 10 x\r\n\r\n",
        "HTTP/1.1 1011 x\r\n\r\n",
        "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1 abc x\r\n\r\n",
        "HTTP/2 101 x\r\n\r\n",
        "HTTP/1.1  101 x\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 101 x\r\nUpgrade: a\r\n b\r\n\r\n",
        "HTTP/1.1 101 x\r\nSec-WebSocket-Accept: a\r\nSec-WebSocket-Accept: b\r\n\r\n",
        "HTTP/1.1 101 x\nUpgrade: websocket\n\n",
    };
    http_response res;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = parse_res(bad[i], &res);
        CHECK(n == HTTP_BAD, "case %zu -> %d", i, n);
    }
    static char big[HTTP_MAX_HEAD_BYTES + 1];
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    CHECK(http_parse_response(big, sizeof big, &res) == HTTP_TOO_LARGE, "too large");
}

int main(void) {
    RUN(request_upgrade_complete);
    RUN(request_with_trailing_bytes_reports_head_length);
    RUN(request_every_prefix_needs_more);
    RUN(request_http10_without_host);
    RUN(request_lowercase_and_blank_trimming);
    RUN(request_duplicates);
    RUN(request_content_length);
    RUN(request_obs_fold_rejected);
    RUN(request_missing_crlf);
    RUN(request_malformed);
    RUN(request_value_too_long_for_field);
    RUN(request_path_limit);
    RUN(request_oversized);
    RUN(request_too_many_headers);
    RUN(has_token);
    RUN(response_switching);
    RUN(response_retry_after);
    RUN(response_malformed);
    CHECK_EXIT();
}
