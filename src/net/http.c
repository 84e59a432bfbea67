/* http.c -- parsers for one HTTP/1.1 request head (server side) and one
 * response head (client side), RFC 9110/9112. Strict on purpose: anything an
 * intermediary could read differently from us (bare LF, bare CR, obs-fold,
 * blanks before the colon, repeated singleton headers) is rejected rather
 * than guessed at. */
#include "net/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static bool is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

/* Case-insensitive, ASCII only (strncasecmp would consult the locale). */
static bool ascii_ieq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

static bool name_is(const char *name, size_t len, const char *want) {
    return strlen(want) == len && ascii_ieq(name, want, len);
}

/* Finds the end of the head (just past CRLFCRLF) within the first
 * HTTP_MAX_HEAD_BYTES. Bare LF, bare CR and NUL are rejected as soon as they
 * are seen, so garbage fails fast instead of filling the buffer. */
static int find_head_end(const char *buf, size_t len) {
    size_t scan = len < HTTP_MAX_HEAD_BYTES ? len : HTTP_MAX_HEAD_BYTES;
    for (size_t i = 0; i < scan; i++) {
        char c = buf[i];
        if (c == '\0')
            return HTTP_BAD;
        if (i > 0 && buf[i - 1] == '\r' && c != '\n')
            return HTTP_BAD;
        if (c == '\n') {
            if (i == 0 || buf[i - 1] != '\r')
                return HTTP_BAD;
            if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
                return (int)(i + 1);
        }
    }
    return len >= HTTP_MAX_HEAD_BYTES ? HTTP_TOO_LARGE : HTTP_NEED_MORE;
}

/* A header we keep: where its NUL-terminated copy goes. */
typedef struct field {
    const char *name;
    size_t offset, size;
    bool list; /* repeats are joined with ", "; otherwise a repeat is HTTP_BAD */
} field;

#define FIELD(type, member, hname, is_list) \
    { hname, offsetof(type, member), sizeof(((type *)0)->member), is_list }

enum { REQUEST_FIELD_HOST = 0 }; /* index in request_fields, for the Host check */

static const field request_fields[] = {
    FIELD(http_request, host, "host", false),
    FIELD(http_request, upgrade, "upgrade", true),
    FIELD(http_request, connection, "connection", true),
    FIELD(http_request, ws_key, "sec-websocket-key", false),
    FIELD(http_request, ws_version, "sec-websocket-version", false),
    FIELD(http_request, ws_protocol, "sec-websocket-protocol", true),
    FIELD(http_request, origin, "origin", false),
};

static const field response_fields[] = {
    FIELD(http_response, upgrade, "upgrade", true),
    FIELD(http_response, connection, "connection", true),
    FIELD(http_response, ws_accept, "sec-websocket-accept", false),
    FIELD(http_response, ws_protocol, "sec-websocket-protocol", false),
};

/* Parsing state shared by the header loop and the per-message hooks. */
typedef struct head_ctx {
    void *obj;                 /* http_request or http_response */
    const field *fields;
    size_t nfields;
    uint32_t seen;             /* bit i: fields[i] appeared */
    bool seen_content_length, seen_retry_after;
    /* handles headers that are not plain strings; returns 1 if it took the
     * header, 0 if not, HTTP_BAD to reject */
    int (*special)(struct head_ctx *, const char *, size_t, const char *, size_t);
} head_ctx;

static int store_field(head_ctx *ctx, size_t idx, const char *v, size_t vlen) {
    const field *f = &ctx->fields[idx];
    char *dst = (char *)ctx->obj + f->offset;
    bool seen = (ctx->seen >> idx) & 1u;
    if (seen && !f->list)
        return HTTP_BAD;
    size_t cur = seen ? strlen(dst) : 0;
    size_t add = (seen ? 2 : 0) + vlen;
    if (add >= f->size - cur) /* keep room for the NUL */
        return HTTP_BAD;
    if (seen) {
        memcpy(dst + cur, ", ", 2);
        cur += 2;
    }
    memcpy(dst + cur, v, vlen);
    dst[cur + vlen] = '\0';
    ctx->seen |= 1u << idx;
    return 0;
}

/* Parses "1*DIGIT" into *out, saturating at max. */
static bool parse_digits(const char *v, size_t len, long max, long *out) {
    if (len == 0)
        return false;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        int d = v[i] - '0';
        n = n > (max - d) / 10 ? max : n * 10 + d;
    }
    *out = n;
    return true;
}

/* One header line [p, end) (CRLF excluded). */
static int parse_header_line(head_ctx *ctx, const char *p, const char *end) {
    if (is_blank(*p))
        return HTTP_BAD; /* obs-fold (RFC 9112 5.2): a server may reject it; we do */
    const char *colon = p;
    while (colon < end && *colon != ':') {
        if (!is_tchar((unsigned char)*colon))
            return HTTP_BAD; /* includes blanks before the colon (RFC 9112 5.1) */
        colon++;
    }
    if (colon == end || colon == p)
        return HTTP_BAD;
    const char *v = colon + 1, *vend = end;
    while (v < vend && is_blank(*v))
        v++;
    while (vend > v && is_blank(vend[-1]))
        vend--;
    for (const char *q = v; q < vend; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return HTTP_BAD;
    }
    size_t nlen = (size_t)(colon - p), vlen = (size_t)(vend - v);
    for (size_t i = 0; i < ctx->nfields; i++)
        if (name_is(p, nlen, ctx->fields[i].name))
            return store_field(ctx, i, v, vlen);
    int rc = ctx->special(ctx, p, nlen, v, vlen);
    return rc < 0 ? rc : 0;
}

/* Header lines from p up to the empty line that ends the head. */
static int parse_headers(head_ctx *ctx, const char *p, const char *head_end) {
    int count = 0;
    for (;;) {
        const char *eol = p;
        while (eol[0] != '\r') /* the head is CRLF-checked and ends in CRLFCRLF */
            eol++;
        if (eol == p)
            return p + 2 == head_end ? 0 : HTTP_BAD; /* the empty line */
        if (++count > HTTP_MAX_HEADERS)
            return HTTP_TOO_LARGE; /* 431 fits "too many" as well as "too long" */
        int rc = parse_header_line(ctx, p, eol);
        if (rc < 0)
            return rc;
        p = eol + 2;
    }
}

/* "HTTP/1.x" at p; returns x, or -1. */
static int parse_version(const char *p, const char *end) {
    if (end - p < 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
        return -1;
    return p[7] - '0';
}

/* No parley request has a body anywhere near this; a larger length is
 * refused rather than saturated (and the bound fits a 32-bit long). */
#define CONTENT_LENGTH_MAX (1L << 30)

static int request_special(head_ctx *ctx, const char *name, size_t nlen,
                           const char *v, size_t vlen) {
    http_request *req = ctx->obj;
    if (name_is(name, nlen, "content-length")) {
        /* a repeat, even with the same value, is a smuggling tell: reject */
        if (ctx->seen_content_length ||
            !parse_digits(v, vlen, CONTENT_LENGTH_MAX, &req->content_length) ||
            req->content_length >= CONTENT_LENGTH_MAX)
            return HTTP_BAD;
        ctx->seen_content_length = true;
        return 1;
    }
    if (name_is(name, nlen, "transfer-encoding"))
        return HTTP_BAD; /* we take no request bodies, and never chunked ones:
                            a body we did not frame would be read as a request */
    return 0;
}

int http_parse_request(const char *buf, size_t len, http_request *req) {
    int head_len = find_head_end(buf, len);
    if (head_len <= 0)
        return head_len;
    const char *head_end = buf + head_len;
    memset(req, 0, sizeof *req);
    req->content_length = -1;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    const char *eol = memchr(buf, '\r', (size_t)head_len);
    const char *p = buf, *sp = p;
    while (sp < eol && is_tchar((unsigned char)*sp))
        sp++;
    if (sp == p || sp == eol || *sp != ' ' || (size_t)(sp - p) >= sizeof req->method)
        return HTTP_BAD;
    memcpy(req->method, p, (size_t)(sp - p));
    p = sp + 1;
    sp = p;
    while (sp < eol && (unsigned char)*sp > 0x20 && (unsigned char)*sp < 0x7F)
        sp++;
    if (sp == eol || *sp != ' ' || *p != '/' || (size_t)(sp - p) >= sizeof req->path)
        return HTTP_BAD; /* origin-form only: we proxy nothing */
    memcpy(req->path, p, (size_t)(sp - p));
    p = sp + 1;
    req->version_minor = parse_version(p, eol);
    if (req->version_minor < 0 || eol - p != 8)
        return HTTP_BAD;

    head_ctx ctx = { .obj = req, .fields = request_fields,
                     .nfields = sizeof request_fields / sizeof request_fields[0],
                     .special = request_special };
    int rc = parse_headers(&ctx, eol + 2, head_end);
    if (rc < 0)
        return rc;
    if (req->version_minor >= 1 && !(ctx.seen & (1u << REQUEST_FIELD_HOST)))
        return HTTP_BAD; /* RFC 9112 3.2: HTTP/1.1 without Host gets 400 */
    return head_len;
}

/* Retry-After: delay-seconds, or an HTTP-date. Only seconds are understood;
 * a date (never sent by parley) is left as "absent" and the client falls back
 * to its own backoff rather than guessing a clock. Capped at one day. */
static int response_special(head_ctx *ctx, const char *name, size_t nlen,
                            const char *v, size_t vlen) {
    http_response *res = ctx->obj;
    if (name_is(name, nlen, "retry-after")) {
        if (ctx->seen_retry_after)
            return HTTP_BAD;
        ctx->seen_retry_after = true;
        long secs;
        if (parse_digits(v, vlen, 86400, &secs))
            res->retry_after = (int)secs;
        return 1;
    }
    return 0;
}

int http_parse_response(const char *buf, size_t len, http_response *res) {
    int head_len = find_head_end(buf, len);
    if (head_len <= 0)
        return head_len;
    const char *head_end = buf + head_len;
    memset(res, 0, sizeof *res);
    res->retry_after = -1;

    /* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF; a
     * missing final SP is tolerated, as RFC 9112 4 suggests. */
    const char *eol = memchr(buf, '\r', (size_t)head_len);
    const char *p = buf;
    if (parse_version(p, eol) < 0 || eol - p < 12 || p[8] != ' ')
        return HTTP_BAD;
    p += 9;
    for (int i = 0; i < 3; i++)
        if (p[i] < '0' || p[i] > '9')
            return HTTP_BAD;
    res->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (res->status < 100 || res->status > 599)
        return HTTP_BAD;
    p += 3;
    if (p < eol && *p != ' ')
        return HTTP_BAD;
    for (; p < eol; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return HTTP_BAD;
    }

    head_ctx ctx = { .obj = res, .fields = response_fields,
                     .nfields = sizeof response_fields / sizeof response_fields[0],
                     .special = response_special };
    int rc = parse_headers(&ctx, eol + 2, head_end);
    return rc < 0 ? rc : head_len;
}

int http_has_token(const char *value, const char *token) {
    size_t tlen = strlen(token);
    if (tlen == 0)
        return 0;
    const char *p = value;
    while (*p) {
        while (*p == ',' || is_blank(*p))
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_blank(end[-1]))
            end--;
        if ((size_t)(end - start) == tlen && ascii_ieq(start, token, tlen))
            return 1;
    }
    return 0;
}
