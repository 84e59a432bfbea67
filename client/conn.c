/* conn.c -- libparley's transport: TCP connect with a timeout, TLS for
 * wss:// (OpenSSL, the server's certificate verified against the URL host),
 * the HTTP upgrade to parley.v1, WebSocket framing both ways, keepalive
 * pings, and the read loop that hands each Frame either to the waiting
 * request or to the push dispatcher.
 *
 * The socket is non-blocking throughout; every wait is a poll() bounded by a
 * deadline, so no call can hang on a silent server. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"
#include "net/tls.h"

enum { READ_BUF_INITIAL = 64 * 1024, CLOSE_WAIT_MS = 1000 };

int64_t pc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pc_ms_left(int64_t deadline) {
    if (deadline < 0) return -1;
    int64_t left = deadline - pc_now_ms();
    if (left < 0) return 0;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

void pc_conn_drop(pc_client *c) {
    tls_free(c->ssl, false);
    c->ssl = NULL;
    c->tls_want_write = false;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->rlen = 0;
    c->have_nonce = false;
    ws_reader_free(&c->reader);
    ws_reader_init(&c->reader, false, PC_MAX_SERVER_MESSAGE);
}

/* Waits for events on the socket. 1 ready, 0 timeout (or EINTR), -1 error. */
static int wait_fd(pc_client *c, short events, int timeout_ms) {
    struct pollfd p = {.fd = c->fd, .events = events};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    return r;
}

/* One write of buf: > 0 bytes written, 0 would block (*wait_for: the poll
 * events to wait for), -1 failed (dropped, pc_fail set). */
static ssize_t write_some(pc_client *c, const uint8_t *buf, size_t len, short *wait_for) {
    *wait_for = POLLOUT;
    if (c->ssl) {
        size_t n = 0;
        switch (tls_write(c->ssl, buf, len, &n)) {
        case TLS_OK:
            return (ssize_t)n;
        case TLS_WANT_WRITE:
            return 0;
        case TLS_WANT_READ:
            *wait_for = POLLIN;
            return 0;
        default:
            pc_conn_drop(c);
            return pc_fail(c, -1, "connection lost while sending (TLS)");
        }
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) return n;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        int e = errno;
        pc_conn_drop(c);
        return pc_fail(c, -1, "connection lost while sending: %s", strerror(e));
    }
}

/* Writes all of buf before deadline, or drops the connection. */
static int write_all(pc_client *c, const uint8_t *buf, size_t len, int64_t deadline) {
    while (len > 0) {
        short wait_for;
        ssize_t n = write_some(c, buf, len, &wait_for);
        if (n < 0) return -1;
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            c->last_tx_ms = pc_now_ms();
            continue;
        }
        int left = pc_ms_left(deadline);
        if (left == 0) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "send timed out");
        }
        if (wait_fd(c, wait_for, left) < 0) {
            int e = errno;
            pc_conn_drop(c);
            return pc_fail(c, -1, "poll: %s", strerror(e));
        }
    }
    return 0;
}

/* One masked WebSocket frame carrying payload (copied: masking is in place). */
static int send_ws(pc_client *c, uint8_t opcode, const uint8_t *payload, size_t len) {
    uint8_t small[WS_MAX_HEADER + 125];
    uint8_t *buf = len <= 125 ? small : malloc(WS_MAX_HEADER + len);
    if (!buf) return pc_fail(c, -1, "out of memory");
    uint8_t mask[4];
    randombytes_buf(mask, sizeof mask);
    size_t h = ws_write_header(buf, opcode, true, len, mask);
    if (len) memcpy(buf + h, payload, len);
    ws_mask(buf + h, len, mask, 0);
    int r = write_all(c, buf, h + len, pc_now_ms() + c->request_timeout_ms);
    if (buf != small) free(buf);
    return r;
}

int pc_conn_send_frame(pc_client *c, const Parley__V1__Frame *f) {
    if (c->fd < 0) return pc_fail(c, -1, "not connected");
    size_t len = parley__v1__frame__get_packed_size(f);
    uint8_t *buf = malloc(WS_MAX_HEADER + len);
    if (!buf) return pc_fail(c, -1, "out of memory");
    uint8_t mask[4];
    randombytes_buf(mask, sizeof mask);
    size_t h = ws_write_header(buf, WS_OP_BINARY, true, len, mask);
    parley__v1__frame__pack(f, buf + h);
    ws_mask(buf + h, len, mask, 0);
    int r = write_all(c, buf, h + len, pc_now_ms() + c->request_timeout_ms);
    free(buf);
    return r;
}

/* Reads what the socket has (waiting up to timeout_ms) into rbuf. Returns
 * bytes read (> 0), 0 on timeout, -1 on loss (dropped, pc_fail set). */
static int read_some(pc_client *c, int timeout_ms) {
    if (c->rlen == c->rcap) {
        if (c->rcap >= PC_READ_BUF_MAX) {
            /* the reader should have refused the frame already: a frame this
             * large cannot be a legal server message */
            pc_conn_close(c, WS_CLOSE_TOO_BIG);
            return pc_fail(c, -1, "server frame over %d bytes", PC_MAX_SERVER_MESSAGE);
        }
        size_t cap = c->rcap ? c->rcap * 2 : READ_BUF_INITIAL;
        if (cap > PC_READ_BUF_MAX) cap = PC_READ_BUF_MAX;
        uint8_t *nb = realloc(c->rbuf, cap);
        if (!nb) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "out of memory");
        }
        c->rbuf = nb;
        c->rcap = cap;
    }
    /* TLS may already hold decrypted bytes: no waiting for the socket then */
    if (!c->ssl || !tls_pending(c->ssl)) {
        int w = wait_fd(c, c->tls_want_write ? POLLOUT : POLLIN, timeout_ms);
        if (w < 0) {
            int e = errno;
            pc_conn_drop(c);
            return pc_fail(c, -1, "poll: %s", strerror(e));
        }
        if (w == 0) return 0;
    }
    if (c->ssl) {
        size_t n = 0;
        c->tls_want_write = false;
        switch (tls_read(c->ssl, c->rbuf + c->rlen, c->rcap - c->rlen, &n)) {
        case TLS_OK:
            c->rlen += n;
            return (int)n;
        case TLS_WANT_READ:
            return 0;
        case TLS_WANT_WRITE:
            c->tls_want_write = true;
            return 0;
        case TLS_CLOSED:
            pc_conn_drop(c);
            return pc_fail(c, -1, "connection closed by server");
        default:
            pc_conn_drop(c);
            return pc_fail(c, -1, "connection lost (TLS error)");
        }
    }
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n > 0) {
        c->rlen += (size_t)n;
        return (int)n;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    int e = errno;
    pc_conn_drop(c);
    if (n == 0) return pc_fail(c, -1, "connection closed by server");
    return pc_fail(c, -1, "connection lost: %s", strerror(e));
}

/* Handles one whole binary message: a Frame. Returns 0, or -1 when the
 * connection was lost meanwhile (a push handler may have failed to ack). */
static int handle_frame(pc_client *c, const uint8_t *data, size_t len, uint64_t want,
                        Parley__V1__Frame **resp) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, len, data);
    if (!f) {
        pc_conn_close(c, WS_CLOSE_INVALID_DATA);
        return pc_fail(c, -1, "server sent a frame that is not a parley.v1 Frame");
    }
    if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE) {
        if (want != 0 && f->request_id == want && resp && !*resp) {
            *resp = f;
            return 0;
        }
        /* a late answer to an attempt that timed out: nobody waits for it */
        parley__v1__frame__free_unpacked(f, NULL);
        return 0;
    }
    pc_dispatch_push(c, f);
    parley__v1__frame__free_unpacked(f, NULL);
    return c->fd >= 0 ? 0 : -1;
}

/* Feeds every whole message in rbuf through the reader and handles it,
 * counting Frames in *frames. Returns 0, or -1 when the connection is lost. */
static int process_buffer(pc_client *c, uint64_t want, Parley__V1__Frame **resp, int *frames) {
    size_t off = 0;
    while (off < c->rlen) {
        size_t used = 0;
        ws_message m;
        int r = ws_reader_feed(&c->reader, c->rbuf + off, c->rlen - off, &used, &m);
        off += used;
        if (r == WS_ERROR) {
            uint16_t code = m.close_code;
            pc_conn_close(c, code);
            return pc_fail(c, -1, "server broke the WebSocket protocol (close %u)", code);
        }
        if (r == WS_NEED_MORE) {
            if (used == 0) break;
            continue;   /* a fragment was taken in; keep feeding */
        }
        switch (m.kind) {
        case WS_MSG_BINARY:
            (*frames)++;
            if (handle_frame(c, m.data, m.len, want, resp) < 0) return -1;
            break;
        case WS_MSG_PING:
            if (send_ws(c, WS_OP_PONG, m.data, m.len) < 0) return -1;
            break;
        case WS_MSG_CLOSE: {
            uint16_t code = m.close_code;
            c->last_close_code = code;
            /* echo the code, as RFC 6455 5.5.1 asks, then the connection is over */
            pc_conn_close(c, code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code);
            return pc_fail(c, -1, "server closed the connection (%u)", code);
        }
        case WS_MSG_TEXT:   /* parley.v1 is binary only; nothing to do with text */
        case WS_MSG_PONG:
            break;
        }
        if (c->fd < 0) return -1;
    }
    if (c->fd < 0) return -1;
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return 0;
}

int pc_conn_pump(pc_client *c, uint64_t want, int64_t deadline, bool stop_after_any,
                 Parley__V1__Frame **resp, int *handled) {
    if (c->fd < 0) return pc_fail(c, -1, "not connected");
    int total = 0;
    for (;;) {
        int n = process_buffer(c, want, resp, &total);
        /* an answer that arrived is an answer, even if the connection died
         * right after it (the loss shows on the next call) */
        if (resp && *resp) {
            if (handled) *handled += total;
            return 1;
        }
        if (n < 0) {
            if (handled) *handled += total;
            return -1;
        }
        if (stop_after_any && total > 0) {
            if (handled) *handled += total;
            return 1;
        }
        int r = read_some(c, pc_ms_left(deadline));
        if (r < 0 || (r == 0 && pc_ms_left(deadline) == 0)) {
            if (handled) *handled += total;
            return r < 0 ? -1 : 0;
        }
    }
}

void pc_conn_close(pc_client *c, uint16_t code) {
    if (c->fd < 0) return;
    uint8_t payload[125];
    size_t n = ws_close_payload(payload, code, "");
    if (send_ws(c, WS_OP_CLOSE, payload, n) < 0) return;   /* already dropped */
    /* Wait (briefly) for the server to finish: closing with unread data
     * makes the kernel send RST, which can discard what the server has not
     * read yet, such as our last Ack. */
    int64_t deadline = pc_now_ms() + (c->request_timeout_ms < CLOSE_WAIT_MS
                                      ? c->request_timeout_ms : CLOSE_WAIT_MS);
    if (c->ssl) {
        /* TLS cannot half-close: read (and drop) until the server closes */
        while (c->fd >= 0 && pc_ms_left(deadline) > 0) {
            c->rlen = 0;
            if (read_some(c, pc_ms_left(deadline)) < 0) break;
        }
        pc_conn_drop(c);
        return;
    }
    shutdown(c->fd, SHUT_WR);
    uint8_t sink[4096];
    for (;;) {
        int left = pc_ms_left(deadline);
        if (left == 0 || wait_fd(c, POLLIN, left) <= 0) break;
        ssize_t r = recv(c->fd, sink, sizeof sink, 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) break;
    }
    pc_conn_drop(c);
}

/* ------------------------------------------------------------ connecting */

static int connect_one(pc_client *c, const struct addrinfo *ai, int64_t deadline) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) return pc_fail(c, -1, "socket: %s", strerror(errno));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return pc_fail(c, -1, "connect to %s:%s: %s", c->host, c->port, strerror(e));
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do {
        r = poll(&p, 1, pc_ms_left(deadline));
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        close(fd);
        return pc_fail(c, -1, "connect to %s:%s: timed out", c->host, c->port);
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) err = errno;
    if (err) {
        close(fd);
        return pc_fail(c, -1, "connect to %s:%s: %s", c->host, c->port, strerror(err));
    }
    /* requests are small and latency-bound: do not let Nagle hold them */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    return 0;
}

static int tcp_connect(pc_client *c, int64_t deadline) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(c->host, c->port, &hints, &res);
    if (g != 0) return pc_fail(c, -1, "resolve %s: %s", c->host, gai_strerror(g));
    int r = -1;
    for (struct addrinfo *ai = res; ai && r < 0; ai = ai->ai_next) {
        if (pc_ms_left(deadline) == 0) {
            pc_fail(c, -1, "connect to %s:%s: timed out", c->host, c->port);
            break;
        }
        r = connect_one(c, ai, deadline);
    }
    freeaddrinfo(res);
    return r;
}

/* Sends the upgrade request and reads the response head; leaves any bytes
 * after the head (the Challenge may come in the same segment) in rbuf. */
static int upgrade(pc_client *c, int64_t deadline) {
    char key[25], want_accept[29];
    ws_make_client_key(key);
    if (ws_accept_key(key, want_accept) < 0) return pc_fail(c, -1, "bad WebSocket key");

    char *host_hdr = c->host_header;   /* kept: sign-in signs it */
    bool v6 = strchr(c->host, ':') != NULL;
    snprintf(host_hdr, sizeof c->host_header, "%s%s%s:%s", v6 ? "[" : "", c->host, v6 ? "]" : "",
             c->port);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: parley.v1\r\n"
                     "\r\n",
                     c->path, host_hdr, key);
    if (n < 0 || (size_t)n >= sizeof req) return pc_fail(c, -1, "upgrade request too long");
    if (write_all(c, (const uint8_t *)req, (size_t)n, deadline) < 0) return -1;

    http_response res;
    int head;
    for (;;) {
        head = http_parse_response((const char *)c->rbuf, c->rlen, &res);
        if (head > 0) break;
        if (head == HTTP_BAD || head == HTTP_TOO_LARGE) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "bad HTTP response to the upgrade");
        }
        int r = read_some(c, pc_ms_left(deadline));
        if (r < 0) return -1;
        if (r == 0 && pc_ms_left(deadline) == 0) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "upgrade timed out");
        }
    }
    if (res.status == 503) {
        c->retry_after_s = res.retry_after;
        pc_conn_drop(c);
        return pc_fail(c, PARLEY__V1__STATUS__UNAVAILABLE, "server overloaded (503%s)",
                       res.retry_after >= 0 ? ", retry later" : "");
    }
    if (res.status != 101) {
        pc_conn_drop(c);
        return pc_fail(c, -1, "server refused the upgrade (HTTP %d)", res.status);
    }
    if (!http_has_token(res.upgrade, "websocket") || !http_has_token(res.connection, "upgrade")
        || strcmp(res.ws_accept, want_accept) != 0) {
        pc_conn_drop(c);
        return pc_fail(c, -1, "server answered the upgrade without a valid WebSocket handshake");
    }
    if (strcmp(res.ws_protocol, "parley.v1") != 0) {
        pc_conn_drop(c);
        return pc_fail(c, -1, "server does not speak parley.v1 (subprotocol \"%s\")",
                       res.ws_protocol);
    }
    memmove(c->rbuf, c->rbuf + head, c->rlen - (size_t)head);
    c->rlen -= (size_t)head;
    return 0;
}

/* The TLS handshake on the connected socket, verifying the server. */
static int tls_handshake(pc_client *c, int64_t deadline) {
    char err[256];
    if (!c->tls_ctx) {
        c->tls_ctx = tls_client_ctx_new(c->tls_ca_file, err, sizeof err);
        if (!c->tls_ctx) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "%s", err);
        }
    }
    c->ssl = tls_client_new(c->tls_ctx, c->fd, c->host);
    if (!c->ssl) {
        pc_conn_drop(c);
        return pc_fail(c, -1, "TLS: out of memory");
    }
    for (;;) {
        tls_result r = tls_connect_step(c->ssl, err, sizeof err);
        if (r == TLS_OK) return 0;
        if (r == TLS_ERROR) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "%s:%s: %s", c->host, c->port, err);
        }
        int left = pc_ms_left(deadline);
        int w = left == 0 ? 0 : wait_fd(c, r == TLS_WANT_WRITE ? POLLOUT : POLLIN, left);
        if (w < 0 || left == 0) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "TLS handshake with %s:%s timed out", c->host, c->port);
        }
    }
}

int pc_conn_open(pc_client *c) {
    if (c->fd >= 0) pc_conn_drop(c);
    c->retry_after_s = -1;
    c->last_close_code = 0;
    int64_t deadline = pc_now_ms() + c->connect_timeout_ms;
    if (tcp_connect(c, deadline) < 0) return -1;
    if (c->use_tls && tls_handshake(c, deadline) < 0) return -1;
    if (upgrade(c, deadline) < 0) return -1;
    /* the server speaks first: a Challenge we sign to authenticate */
    while (!c->have_nonce) {
        int r = pc_conn_pump(c, 0, deadline, true, NULL, NULL);
        if (r < 0) return -1;
        if (r == 0) {
            pc_conn_drop(c);
            return pc_fail(c, -1, "no challenge from the server within %d ms",
                           c->connect_timeout_ms);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ keepalive */

int64_t pc_conn_ping_due(const pc_client *c) {
    if (c->fd < 0 || c->ping_interval_ms <= 0) return -1;
    return c->last_tx_ms + c->ping_interval_ms;
}

int pc_conn_keepalive(pc_client *c) {
    int64_t due = pc_conn_ping_due(c);
    if (due < 0 || pc_now_ms() < due) return 0;
    return send_ws(c, WS_OP_PING, NULL, 0);
}
