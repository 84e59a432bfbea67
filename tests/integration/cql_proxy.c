/* cql_proxy.c -- see cql_proxy.h. Frames (native protocol v4/v5 header):
 * version, flags, stream (2 bytes), opcode, body length (4 bytes). */
#include "cql_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    PROXY_CONNS = 64,
    HEADER = 9,
    FRAME_MAX = 64 << 20,
    OP_ERROR = 0x00,
    OP_PREPARE = 0x09,
    OP_EXECUTE = 0x0A,
    OP_RESULT = 0x08,
    OP_BATCH = 0x0D,
    RESULT_PREPARED = 4,
    NEEDLE_MAX = 64,
    ID_MAX = 64,
    STREAMS = 32768,
    POLL_MS = 200,
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t batch_needle[NEEDLE_MAX];
static size_t batch_needle_len;          /* 0: disarmed */
static char hold_query[256];             /* the watched query; "": none */
static uint8_t hold_needle[NEEDLE_MAX];  /* executes of it carrying this are held */
static size_t hold_needle_len;           /* 0: none held */
static uint8_t hold_id[ID_MAX];          /* the prepared id of a query containing hold_query */
static size_t hold_id_len;
static atomic_int batches_failed, executes_held, stopping;

static int listen_fd = -1, upstream;
static pthread_t acceptor, conns[PROXY_CONNS];
static int n_conns;

typedef struct frame_buf { uint8_t *data; size_t len, cap; } frame_buf;

typedef struct conn {
    int client, server;
    frame_buf up, down;
    uint8_t preparing[STREAMS / 8];   /* streams of PREPAREs of the held query */
} conn;

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static int buf_read(int fd, frame_buf *b) {
    if (b->cap - b->len < 65536) {
        size_t cap = b->cap ? b->cap * 2 : 131072;
        if (cap > (size_t)FRAME_MAX + HEADER) return -1;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) return -1;
        b->data = grown;
        b->cap = cap;
    }
    ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
    if (n <= 0) return -1;
    b->len += (size_t)n;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* the length of the whole frame at the start of b, 0 while incomplete */
static size_t whole_frame(const frame_buf *b) {
    if (b->len < HEADER) return 0;
    size_t body = be32(b->data + 5);
    return b->len >= HEADER + body ? HEADER + body : 0;
}

static int contains(const uint8_t *hay, size_t n, const void *needle, size_t k) {
    for (size_t i = 0; k && i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

/* answers the request frame req with CQL error Invalid (0x2200), which a
 * client does not retry: the batch failed and was not applied */
static int answer_invalid(int client, const uint8_t *req) {
    static const char msg[] = "refused by the test proxy";
    uint8_t f[HEADER + 6 + sizeof msg];
    size_t body = 4 + 2 + (sizeof msg - 1);
    memset(f, 0, sizeof f);
    f[0] = (uint8_t)(req[0] | 0x80);
    f[2] = req[2];
    f[3] = req[3];
    f[4] = OP_ERROR;
    f[8] = (uint8_t)body;
    f[11] = 0x22;
    f[14] = (uint8_t)(sizeof msg - 1);
    memcpy(f + 15, msg, sizeof msg - 1);
    return write_all(client, f, HEADER + body);
}

static void stream_mark(conn *c, uint16_t stream, int on) {
    uint16_t s = stream % STREAMS;
    if (on) c->preparing[s / 8] |= (uint8_t)(1u << (s % 8));
    else c->preparing[s / 8] &= (uint8_t)~(1u << (s % 8));
}

static int stream_marked(const conn *c, uint16_t stream) {
    uint16_t s = stream % STREAMS;
    return c->preparing[s / 8] >> (s % 8) & 1;
}

/* what to do with a client's frame f of n bytes: 0 forward, 1 answer
 * Invalid, 2 drop (held) */
static int judge_request(conn *c, const uint8_t *f, size_t n) {
    const uint8_t *body = f + HEADER;
    size_t len = n - HEADER;
    int verdict = 0;
    pthread_mutex_lock(&mu);
    if (f[4] == OP_BATCH && batch_needle_len && contains(body, len, batch_needle, batch_needle_len)) verdict = 1;
    if (f[4] == OP_PREPARE && hold_query[0] && len >= 4) {
        size_t qn = be32(body);
        stream_mark(c, be16(f + 2), qn <= len - 4 && contains(body + 4, qn, hold_query, strlen(hold_query)));
    }
    if (f[4] == OP_EXECUTE && hold_needle_len && hold_id_len && len >= 2 + hold_id_len &&
        be16(body) == hold_id_len && memcmp(body + 2, hold_id, hold_id_len) == 0 &&
        contains(body + 2 + hold_id_len, len - 2 - hold_id_len, hold_needle, hold_needle_len))
        verdict = 2;
    pthread_mutex_unlock(&mu);
    return verdict;
}

/* learns the id of a PREPARE of the held query from its answer */
static void note_response(conn *c, const uint8_t *f, size_t n) {
    uint16_t stream = be16(f + 2);
    if (!stream_marked(c, stream)) return;
    stream_mark(c, stream, 0);
    const uint8_t *body = f + HEADER;
    size_t len = n - HEADER;
    if (f[4] != OP_RESULT || len < 6 || be32(body) != RESULT_PREPARED) return;
    size_t idn = be16(body + 4);
    if (idn == 0 || idn > ID_MAX || 6 + idn > len) return;
    pthread_mutex_lock(&mu);
    memcpy(hold_id, body + 6, idn);
    hold_id_len = idn;
    pthread_mutex_unlock(&mu);
}

static int forward_frames(conn *c, int from_client) {
    frame_buf *b = from_client ? &c->up : &c->down;
    size_t n;
    while ((n = whole_frame(b)) > 0) {
        int verdict = from_client ? judge_request(c, b->data, n) : 0;
        if (!from_client) note_response(c, b->data, n);
        int rc = 0;
        if (verdict == 1) {
            atomic_fetch_add(&batches_failed, 1);
            rc = answer_invalid(c->client, b->data);
        } else if (verdict == 2) {
            atomic_fetch_add(&executes_held, 1);
        } else {
            rc = write_all(from_client ? c->server : c->client, b->data, n);
        }
        if (rc != 0) return -1;
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    return 0;
}

static int connect_upstream(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

static void *conn_main(void *arg) {
    conn *c = arg;
    c->server = connect_upstream();
    while (c->server >= 0 && !atomic_load(&stopping)) {
        struct pollfd p[2] = {{.fd = c->client, .events = POLLIN}, {.fd = c->server, .events = POLLIN}};
        int r = poll(p, 2, POLL_MS);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (p[0].revents && (buf_read(c->client, &c->up) != 0 || forward_frames(c, 1) != 0)) break;
        if (p[1].revents && (buf_read(c->server, &c->down) != 0 || forward_frames(c, 0) != 0)) break;
    }
    if (c->server >= 0) close(c->server);
    close(c->client);
    free(c->up.data);
    free(c->down.data);
    free(c);
    return NULL;
}

static void *accept_main(void *unused) {
    (void)unused;
    while (!atomic_load(&stopping)) {
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        if (poll(&p, 1, POLL_MS) <= 0) continue;
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) continue;
        conn *c = calloc(1, sizeof *c);
        if (!c || n_conns == PROXY_CONNS) {
            free(c);
            close(fd);
            continue;
        }
        c->client = fd;
        if (pthread_create(&conns[n_conns], NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        n_conns++;
    }
    return NULL;
}

int cql_proxy_start(int upstream_port) {
    upstream = upstream_port;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 64) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&acceptor, NULL, accept_main, NULL) != 0) {
        if (listen_fd >= 0) close(listen_fd);
        listen_fd = -1;
        return -1;
    }
    return ntohs(a.sin_port);
}

void cql_proxy_stop(void) {
    if (listen_fd < 0) return;
    atomic_store(&stopping, 1);   /* every thread sees it within POLL_MS */
    pthread_join(acceptor, NULL);
    for (int i = 0; i < n_conns; i++) pthread_join(conns[i], NULL);
    n_conns = 0;
    close(listen_fd);
    listen_fd = -1;
}

void cql_proxy_fail_batches(const void *needle, size_t n) {
    pthread_mutex_lock(&mu);
    batch_needle_len = needle && n <= NEEDLE_MAX ? n : 0;
    if (batch_needle_len) memcpy(batch_needle, needle, n);
    pthread_mutex_unlock(&mu);
}

void cql_proxy_watch_query(const char *query_part) {
    pthread_mutex_lock(&mu);
    snprintf(hold_query, sizeof hold_query, "%s", query_part ? query_part : "");
    pthread_mutex_unlock(&mu);
}

void cql_proxy_hold_executes(const void *needle, size_t n) {
    pthread_mutex_lock(&mu);
    hold_needle_len = needle && n <= NEEDLE_MAX ? n : 0;
    if (hold_needle_len) memcpy(hold_needle, needle, n);
    pthread_mutex_unlock(&mu);
}

int cql_proxy_batches_failed(void) { return atomic_load(&batches_failed); }
int cql_proxy_executes_held(void) { return atomic_load(&executes_held); }
