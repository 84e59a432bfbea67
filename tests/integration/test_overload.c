/* test_overload.c -- the gateway under overload and hostile clients:
 * past --max-connections upgrades get 503 + Retry-After while the
 * connections it has keep sending and receiving; the accept-rate bucket
 * sheds a burst; a slow-loris and an idle WebSocket are closed; a client
 * firing garbage is cut off without disturbing others; a client that sends
 * requests and never reads is closed (1008) with the server's memory
 * bounded. Deadlines are liveness bounds, never timing assertions. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"
#include "net/http.h"
#include "net/ws.h"

#define NEED(x) CHECK((x), "%s", #x)


enum { WAIT_MS = 20000, LIVENESS_MS = 15000, RSS_BOUND_KB = 96 * 1024 };

static h_server S;

/* ------------------------------------------------------------ raw wire */

static const char UPGRADE[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: parley.v1\r\n\r\n";

/* Connects and asks for the upgrade. Returns the HTTP status (101, 503, ...)
 * or -1; *fd_out gets the socket (caller closes) when status is 101;
 * *retry_after the Retry-After seconds (-1 when absent). */
static int raw_upgrade_fd(int fd, int *fd_out, int *retry_after);
static int raw_upgrade(int port, int *fd_out, int *retry_after) {
    *fd_out = -1;
    if (retry_after) *retry_after = -1;
    int fd = h_tcp_connect(port, 5000);
    if (fd < 0) return -1;
    return raw_upgrade_fd(fd, fd_out, retry_after);
}

/* raw_upgrade on a socket already connected (closed unless 101). */
static int raw_upgrade_fd(int fd, int *fd_out, int *retry_after) {
    *fd_out = -1;
    if (retry_after) *retry_after = -1;
    if (send(fd, UPGRADE, sizeof UPGRADE - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof UPGRADE - 1)) {
        close(fd);
        return -1;
    }
    char buf[4096];
    size_t len = 0;
    http_response res;
    uint64_t deadline = h_now_ms() + 5000;
    while (h_now_ms() < deadline && len < sizeof buf) {
        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        len += (size_t)n;
        int r = http_parse_response(buf, len, &res);
        if (r < 0) break;
        if (r == 0) continue;
        if (retry_after) *retry_after = res.retry_after;
        if (res.status == 101) *fd_out = fd;
        else close(fd);
        return res.status;
    }
    close(fd);
    return -1;
}

/* Waits until the peer closed fd (EOF, reset, or a close frame among what
 * it sends; bytes before it are read and dropped). 1 closed, 0 not within
 * ms. *close_code: the close frame's code, or 0 when none was seen. */
static int wait_closed(int fd, int ms, int *close_code) {
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    uint8_t buf[8192];
    size_t len = 0;
    ws_reader rd;
    ws_reader_init(&rd, false, 1 << 20);
    if (close_code) *close_code = 0;
    int closed = 0;
    while (!closed && h_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            closed = 1;
            break;
        }
        if (n < 0) continue;
        len += (size_t)n;
        for (;;) {   /* frames, if it is a WebSocket; anything else is skipped */
            size_t used = 0;
            ws_message m;
            int r = ws_reader_feed(&rd, buf, len, &used, &m);
            if (r == WS_READY && m.kind == WS_MSG_CLOSE && close_code) *close_code = m.close_code;
            if (r == WS_ERROR) used = len;
            memmove(buf, buf + used, len - used);
            len -= used;
            if (r != WS_READY) break;
        }
        if (len == sizeof buf) len = 0;
    }
    ws_reader_free(&rd);
    return closed;
}

/* ---------------------------------------------- connection limit: 503 */

static void max_connections_sheds_and_keeps_serving(void) {
    const char *flags[] = {"--max-connections", "3", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* not a message request: no bound on a's sends */

    /* the third place, held by a raw connection; then the limit holds */
    int held = -1;
    CHECK(raw_upgrade(S.port, &held, NULL) == 101, "third connection refused");
    int n503 = 0, with_retry_after = 0;
    for (int i = 0; i < 5; i++) {
        int fd, ra;
        int st = raw_upgrade(S.port, &fd, &ra);
        if (fd >= 0) close(fd);
        if (st == 503) n503++;
        if (st == 503 && ra > 0) with_retry_after++;
    }
    CHECK(n503 == 5 && with_retry_after == 5, "over the limit: %d of 5 got 503 (%d with Retry-After)",
          n503, with_retry_after);

    /* libparley sees the overload as UNAVAILABLE (no retries asked for) */
    pc_options o;
    h_client_options(&S, &o);
    o.max_reconnects = 0;
    pc_client *x = pc_new(&o);
    NEED(x);
    int rc = pc_connect(x);
    int st = pc_status(x);
    pc_free(x);
    CHECK(rc < 0 && st == PARLEY__V1__STATUS__UNAVAILABLE, "excess libparley client: rc %d status %d",
          rc, st);

    /* the connections it has are served as before */
    for (int i = 0; i < 10; i++) {
        char text[32];
        snprintf(text, sizeof text, "under load %d", i);
        CHECK(h_send(a, conv, text) != 0, "send %d while over the limit", i);
    }
    h_dev *both[] = {a, b};
    h_count_goal g = {both + 1, 1, conv, 10, 1};
    CHECK(h_pump(both, 2, h_pred_count, &g, WAIT_MS), "b got %zu of 10 while over the limit",
          h_dev_count(b, conv));

    double rejected = 0;
    NEED(h_metric(&S, "parley_upgrades_rejected_total", &rejected) == 0);
    CHECK(rejected >= 6, "parley_upgrades_rejected_total %.0f", rejected);

    /* a place frees up: a new connection gets in (eventually: the close is
     * seen by the server a moment later) */
    close(held);
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        int fd;
        if (raw_upgrade(S.port, &fd, NULL) == 101) ok = 1;
        if (fd >= 0) close(fd);
        if (!ok) h_sleep_ms(100);
    }
    CHECK(ok, "no upgrade accepted after a place was freed");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

/* ------------------------------------------------- accept-rate bucket */

/* The bucket holds BURST tokens and gains RATE a second; every accepted
 * socket takes one. So a burst of 40 gets between BURST minus what was
 * accepted before it (the harness's /healthz and /metrics) and BURST plus
 * what refilled while it ran; every other one gets 503 with Retry-After,
 * and the shed ones are exactly what parley_accept_rate_limited_total grew
 * by. The burst's duration only widens the upper bound. */
enum { BURST = 5, RATE = 5, N_BURST = 40 };
static void accept_rate_sheds_a_burst(void) {
    const char *flags[] = {"--accept-rate", "5/s", "--accept-burst", "5", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    double accepted0 = 0, limited0 = 0;
    NEED(h_metric(&S, "parley_connections_accepted_total", &accepted0) == 0);
    NEED(h_metric(&S, "parley_accept_rate_limited_total", &limited0) == 0);
    int n101 = 0, n503 = 0, other = 0, fds[N_BURST];
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < N_BURST; i++) {
        int ra;
        int st = raw_upgrade(S.port, &fds[i], &ra);
        if (st == 101) n101++;
        else if (st == 503 && ra > 0) n503++;
        else other++;
    }
    uint64_t took_ms = h_now_ms() - t0;
    for (int i = 0; i < N_BURST; i++)
        if (fds[i] >= 0) close(fds[i]);
    fprintf(stderr, "  burst of %d in %llu ms: %d upgraded, %d got 503 + Retry-After\n", N_BURST,
            (unsigned long long)took_ms, n101, n503);
    CHECK(other == 0, "burst: %d answers neither 101 nor 503 with Retry-After", other);
    /* accepted0 counts the first /metrics read itself; the second one is one more */
    int low = BURST - (int)accepted0 - 1, high = BURST + (int)(RATE * took_ms / 1000) + 1;
    if (low < 1) low = 1;
    CHECK(n101 >= low && n101 <= high, "burst: %d upgraded, want %d..%d (%.0f accepted before)",
          n101, low, high, accepted0);
    CHECK(n503 == N_BURST - n101, "burst: %d shed with 503, want %d", n503, N_BURST - n101);
    /* a /metrics read is a connection too and may itself be shed: count those */
    double limited = 0;
    int shed_reads = 0;
    for (int i = 0; i < 100 && h_metric(&S, "parley_accept_rate_limited_total", &limited) != 0; i++) {
        shed_reads++;
        h_sleep_ms(100);
    }
    /* the read that got the value counts too if it was itself over the rate
     * (a shed plain-HTTP request is still answered) */
    double grew = limited - limited0 - shed_reads;
    CHECK(grew == n503 || grew == n503 + 1,
          "parley_accept_rate_limited_total grew by %.0f, want %d shed upgrades (+1: this read, "
          "+%d: refused reads)", limited - limited0, n503, shed_reads);
    /* the bucket refills: upgrades get through again */
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        int fd;
        if (raw_upgrade(S.port, &fd, NULL) == 101) ok = 1;
        if (fd >= 0) close(fd);
        if (!ok) h_sleep_ms(100);
    }
    CHECK(ok, "no upgrade accepted after the burst");
    h_server_destroy(&S);
}

/* ------------------------------------------- slow-loris, idle, pings */

static void slow_loris_and_idle_closed(void) {
    const char *flags[] = {"--handshake-timeout", "1000", "--idle-timeout", "1500", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");

    /* slow-loris: the head one byte every 100 ms (it would take ~16 s) */
    int loris = h_tcp_connect(S.port, 5000);
    NEED(loris >= 0);
    int closed = 0;
    uint64_t until = h_now_ms() + LIVENESS_MS;
    for (size_t i = 0; i < sizeof UPGRADE - 1 && !closed && h_now_ms() < until; i++) {
        if (send(loris, UPGRADE + i, 1, MSG_NOSIGNAL) != 1) closed = 1;
        char c;
        ssize_t n = recv(loris, &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = 1;
        h_sleep_ms(100);
    }
    close(loris);
    CHECK(closed, "slow-loris connection still open");
    double timeouts = 0;
    NEED(h_metric(&S, "parley_handshake_timeouts_total", &timeouts) == 0);
    CHECK(timeouts >= 1, "parley_handshake_timeouts_total %.0f", timeouts);

    /* an upgraded connection that says nothing (not even a ping) */
    int idle = -1;
    NEED(raw_upgrade(S.port, &idle, NULL) == 101);
    int code = 0;
    closed = wait_closed(idle, LIVENESS_MS, &code);
    close(idle);
    CHECK(closed, "idle WebSocket still open");
    CHECK(code == 0 || code == WS_CLOSE_GOING_AWAY, "idle close code %d", code);
    double idles = 0;
    NEED(h_metric(&S, "parley_idle_timeouts_total", &idles) == 0);
    CHECK(idles >= 1, "parley_idle_timeouts_total %.0f", idles);

    /* a quiet libparley client pinging more often than the timeout stays
     * on the same connection */
    pc_options o;
    h_client_options(&S, &o);
    o.ping_interval_ms = 300;
    pc_client *c = pc_new(&o);
    NEED(c);
    int rc = pc_connect(c);
    pc_identity id;
    pc_identity_generate(&id);
    if (rc == 0) rc = pc_register_user(c, "pinger", &id);
    if (rc == 0) rc = pc_start_sync(c);
    CHECK(rc == 0, "pinging client: %s", pc_error(c));
    uint64_t end = h_now_ms() + 4000;   /* over twice the idle timeout */
    while (h_now_ms() < end && rc >= 0) rc = pc_poll(c, 100);
    pc_stats st;
    pc_get_stats(c, &st);
    pc_free(c);
    CHECK(rc >= 0 && st.reconnects == 0, "pinging client lost its connection (%llu reconnects)",
          (unsigned long long)st.reconnects);
    h_server_destroy(&S);
}

/* ------------------------------------------------ garbage at full speed */

typedef struct firehose {
    int fd;
    int upgrade_first;
    atomic_int cut;         /* the server closed it */
    atomic_int stop;
} firehose;

static void *firehose_main(void *arg) {
    firehose *f = arg;
    uint8_t junk[16384];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(0xF0 | (i * 7));
    uint64_t until = h_now_ms() + LIVENESS_MS;
    while (!atomic_load(&f->stop) && h_now_ms() < until) {
        ssize_t n = send(f->fd, junk, sizeof junk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            atomic_store(&f->cut, 1);
            break;
        }
        char sink[4096];
        ssize_t r = recv(f->fd, sink, sizeof sink, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            atomic_store(&f->cut, 1);
            break;
        }
        if (n < 0) h_sleep_ms(1);
    }
    return NULL;
}

static void garbage_is_cut_off_others_unaffected(void) {
    CHECK(h_server_start(&S, NULL) == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* not a message request: no bound on a's sends */

    firehose fh[2];
    memset(fh, 0, sizeof fh);
    fh[0].fd = h_tcp_connect(S.port, 5000);           /* garbage instead of HTTP */
    NEED(fh[0].fd >= 0);
    NEED(raw_upgrade(S.port, &fh[1].fd, NULL) == 101); /* garbage WebSocket frames */
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, firehose_main, &fh[i]);

    for (int i = 0; i < 30; i++) {
        char text[32];
        snprintf(text, sizeof text, "meanwhile %d", i);
        CHECK(h_send(a, conv, text) != 0, "send %d next to the firehoses", i);
    }
    h_dev *both[] = {a, b};
    h_count_goal g = {both + 1, 1, conv, 30, 1};
    int delivered = h_pump(both, 2, h_pred_count, &g, WAIT_MS);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    int cut0 = atomic_load(&fh[0].cut), cut1 = atomic_load(&fh[1].cut);
    close(fh[0].fd);
    close(fh[1].fd);
    CHECK(delivered, "b got %zu of 30 next to the firehoses", h_dev_count(b, conv));
    CHECK(cut0 && cut1, "firehose not cut off (http %d, websocket %d)", cut0, cut1);
    double perr = 0;
    NEED(h_metric(&S, "parley_protocol_errors_total", &perr) == 0);
    CHECK(perr >= 1, "parley_protocol_errors_total %.0f", perr);
    CHECK(h_server_alive(&S), "server died");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

/* ----------------------------------- asks without reading: output cap */

/* LookupUser without signing in: answered at once with an error, so every
 * few bytes sent queue a response the client never reads. */
static size_t build_requests(uint8_t *out, size_t cap) {
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    Parley__V1__LookupUser q = PARLEY__V1__LOOKUP_USER__INIT;
    q.name = "nobody-at-all";
    f.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    f.lookup_user = &q;
    size_t len = 0;
    uint8_t payload[128];
    uint8_t mask[4] = {1, 2, 3, 4};
    for (uint64_t id = 1;; id++) {
        f.request_id = id;
        size_t n = parley__v1__frame__pack(&f, payload);
        if (len + WS_MAX_HEADER + n > cap) break;
        size_t h = ws_write_header(out + len, WS_OP_BINARY, true, n, mask);
        memcpy(out + len + h, payload, n);
        ws_mask(out + len + h, n, mask, 0);
        len += h + n;
    }
    return len;
}

/* A loopback connection with a small send buffer: little of what we send is
 * still queued once we stop, so the server, which reads and drops input
 * while it closes, has none left unread (that would reset the connection
 * and lose the close frame) when it lets go. The receive side keeps the
 * defaults: the kernel holds megabytes of the server's output (its send
 * buffer grows to tcp_wmem's max whatever we do), and a small receive
 * window would make reading them back crawl past the server's close linger. */
static int small_sndbuf_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int small = 4096, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void non_reader_closed_memory_bounded(void) {
    const char *flags[] = {"--conn-output-cap", "65536", "--max-message", "65536", NULL};
    CHECK(h_server_start(&S, flags) == 0, "start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);   /* not a message request: no bound on a's sends */

    int fd = -1;
    int sock = small_sndbuf_connect(S.port);
    NEED(sock >= 0 && raw_upgrade_fd(sock, &fd, NULL) == 101);
    static uint8_t reqs[65536];
    size_t reqs_len = build_requests(reqs, sizeof reqs);
    long rss0 = h_rss_kb(&S), rss_max = rss0;
    double overflows = 0;
    int cut = 0;
    uint64_t until = h_now_ms() + 3 * LIVENESS_MS, next_check = 0;
    /* until the server says it closed us for the output, or the socket breaks */
    while (!cut && overflows < 1 && h_now_ms() < until) {
        size_t off = 0;
        /* stop mid-batch too once the server has closed us: the less sent
         * after its close, the less it may find unread when it lets go */
        while (off < reqs_len && overflows < 1) {
            ssize_t n = send(fd, reqs + off, reqs_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                poll(&p, 1, 50);
                if (h_now_ms() >= until) break;
                if (h_now_ms() >= next_check) {
                    next_check = h_now_ms() + 200;
                    long v = h_rss_kb(&S);
                    if (v > rss_max) rss_max = v;
                    if (h_metric(&S, "parley_output_overflow_closes_total", &overflows) != 0) overflows = 0;
                }
                continue;
            }
            cut = 1;   /* reset or broken pipe: the server closed us */
            break;
        }
        if (h_now_ms() >= next_check) {
            next_check = h_now_ms() + 200;
            long v = h_rss_kb(&S);
            if (v > rss_max) rss_max = v;
            if (h_metric(&S, "parley_output_overflow_closes_total", &overflows) != 0) overflows = 0;
        }
    }
    /* now read: the answers it kept (what the kernel buffers hold, then
     * the rest of the frame it was writing), then its close frame, 1008 */
    int code = 0;
    int closed = wait_closed(fd, 3 * LIVENESS_MS, &code);
    close(fd);
    NEED(h_metric(&S, "parley_output_overflow_closes_total", &overflows) == 0);
    CHECK(overflows == 1, "parley_output_overflow_closes_total %.0f, want 1", overflows);
    CHECK(closed && code == 1008, "a client that never reads: %s, close code %d, want 1008",
          closed ? "closed" : "still open", code);
    fprintf(stderr, "  RSS before %ld KiB, max %ld KiB (+%ld KiB)\n", rss0, rss_max, rss_max - rss0);
    if (!RSS_MEANINGFUL) check_note("sanitizer build: RSS bound not checked");
    CHECK(!RSS_MEANINGFUL || rss_max - rss0 <= RSS_BOUND_KB, "server RSS grew by %ld KiB",
          rss_max - rss0);
    /* everyone else is fine */
    NEED(h_send(a, conv, "after the non-reader") != 0);
    h_dev *both[] = {a, b};
    h_count_goal g = {both + 1, 1, conv, 1, 1};
    CHECK(h_pump(both, 2, h_pred_count, &g, WAIT_MS), "b did not get the message");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(max_connections_sheds_and_keeps_serving);
    RUN(accept_rate_sheds_a_burst);
    RUN(slow_loris_and_idle_closed);
    RUN(garbage_is_cut_off_others_unaffected);
    RUN(non_reader_closed_memory_bounded);
    h_server_destroy(&S);
    CHECK_EXIT();
}
