/* http.h -- the small part of HTTP/1.1 parley speaks: one request head
 * (the WebSocket upgrade, /healthz, /metrics, static files) and, for the
 * client, one response head. Parsers are pure functions over a byte buffer:
 * no allocation, no I/O, every length bounded. */
#ifndef PARLEY_NET_HTTP_H
#define PARLEY_NET_HTTP_H

#include <stddef.h>

enum {
    HTTP_MAX_HEAD_BYTES = 8192, /* request or response head incl. final CRLFCRLF */
    HTTP_MAX_HEADERS = 64,
};

enum {
    HTTP_NEED_MORE = 0,
    HTTP_BAD = -1,       /* malformed: answer 400 and close */
    HTTP_TOO_LARGE = -2, /* head over HTTP_MAX_HEAD_BYTES: answer 431 and close */
};

/* Header values are NUL-terminated copies, trimmed of surrounding blanks;
 * an absent header is "". A value too long for its field makes the request
 * HTTP_BAD. Repeated Connection / Sec-WebSocket-Protocol headers are joined
 * with ", " as RFC 9110 allows. */
typedef struct http_request {
    char method[16];
    char path[1024];          /* request target, as sent (origin-form) */
    int version_minor;        /* HTTP/1.x */
    char host[256];
    char upgrade[64];
    char connection[256];
    char ws_key[64];          /* Sec-WebSocket-Key */
    char ws_version[16];      /* Sec-WebSocket-Version */
    char ws_protocol[256];    /* Sec-WebSocket-Protocol */
    char origin[256];
    long content_length;      /* -1 when absent */
} http_request;

/* Parses a request head from buf[0..len). Returns the number of bytes the
 * head occupies (through CRLFCRLF) when complete, HTTP_NEED_MORE, HTTP_BAD or
 * HTTP_TOO_LARGE. */
int http_parse_request(const char *buf, size_t len, http_request *req);

/* Does the comma-separated header value contain token (case-insensitive)?
 * e.g. http_has_token("keep-alive, Upgrade", "upgrade") == 1 */
int http_has_token(const char *value, const char *token);

typedef struct http_response {
    int status;               /* e.g. 101, 503 */
    char upgrade[64];
    char connection[256];
    char ws_accept[64];       /* Sec-WebSocket-Accept */
    char ws_protocol[64];     /* Sec-WebSocket-Protocol */
    int retry_after;          /* seconds, -1 when absent */
} http_response;

/* Same return convention as http_parse_request. */
int http_parse_response(const char *buf, size_t len, http_response *res);

#endif
