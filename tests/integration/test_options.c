/* test_options.c -- server options and signals a user relies on:
 * --config FILE (and flags overriding it wherever they stand; a bad file
 * refuses to start), --allowed-origin, --conn-output-max, SIGINT draining
 * like SIGTERM, a second signal during a TLS drain, and slow-loris over TLS
 * (a silent TCP connection, and a TLS session whose HTTP head trickles). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <sodium.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 20000, LIVENESS_MS = 20000 };

static char tmpdir[64];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static h_dev *user(const h_server *s) { return h_user_new(s, NULL); }

/* Group of the creator plus n others: the status. */
static int group_of(h_dev *creator, h_dev **others, size_t n) {
    uint64_t ids[8], conv = 0;
    for (size_t i = 0; i < n; i++) ids[i] = others[i]->id.user_id;
    if (pc_create_group(creator->c, "g", ids, n, &conv) == 0) return 0;
    return pc_status(creator->c);
}

/* Largest group the server allows, found by trying 2..6 members. */
static int max_group(const h_server *s) {
    h_dev *d[6] = {0};
    int max = -1;
    for (int i = 0; i < 6; i++)
        if (!(d[i] = user(s))) goto out;
    for (int n = 1; n <= 5; n++) {
        int st = group_of(d[0], d + 1, (size_t)n);
        if (st == 0) max = n + 1;
        else if (st != PARLEY__V1__STATUS__TOO_LARGE) {
            fprintf(stderr, "  group of %d: status %d\n", n + 1, st);
            max = -1;
            break;
        } else break;
    }
out:
    for (int i = 0; i < 6; i++)
        if (d[i]) h_dev_free(d[i]);
    return max;
}

/* Runs `parley serve ARGS` to its exit (bounded); the exit status, and its
 * stderr into err. */
static int serve_exit_status(const char *const *args, char *err, size_t cap) {
    const char *bin = getenv("PARLEY_BIN");
    if (!bin || !*bin) bin = "./build/parley";
    const char *argv[16];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "serve";
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int p[2];
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 2);
        dup2(p[1], 1);
        close(p[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    uint64_t deadline = h_now_ms() + 10000;
    int st = -1, status = 0;
    for (;;) {
        char tmp[4096];
        ssize_t r = read(p[0], tmp, sizeof tmp);
        if (r <= 0) break;
        size_t take = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
        memcpy(err + len, tmp, take);
        len += take;
    }
    err[len] = 0;
    close(p[0]);
    while (h_now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            st = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            return st;
        }
        h_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* ------------------------------------------------------------ --config */

static void config_file_and_flags(void) {
    char cfg[128], bad[128], unknown[128];
    snprintf(cfg, sizeof cfg, "%s/parley.conf", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.conf", tmpdir);
    snprintf(unknown, sizeof unknown, "%s/unknown.conf", tmpdir);
    write_file(cfg, "# parley settings\n\n  max-group-members = 3  \nsend-rate=1000\n");
    write_file(bad, "fsync = batch\nthis line has no equals sign\n");
    write_file(unknown, "max-group-memberz = 3\n");

    h_server s;
    const char *a1[] = {"--config", cfg, NULL};
    NEED(h_server_start(&s, a1) == 0);
    int m1 = max_group(&s);
    h_server_destroy(&s);
    CHECK(m1 == 3, "--config with max-group-members = 3: largest group %d", m1);

    /* a flag wins over the file, before or after --config */
    const char *a2[] = {"--max-group-members", "4", "--config", cfg, NULL};
    NEED(h_server_start(&s, a2) == 0);
    int m2 = max_group(&s);
    h_server_destroy(&s);
    CHECK(m2 == 4, "--max-group-members 4 before --config: largest group %d", m2);
    const char *a3[] = {"--config", cfg, "--max-group-members", "5", NULL};
    NEED(h_server_start(&s, a3) == 0);
    int m3 = max_group(&s);
    h_server_destroy(&s);
    CHECK(m3 == 5, "--max-group-members 5 after --config: largest group %d", m3);

    /* a bad file: no server, exit 2, the line named */
    char err[32768];   /* serve --help is over 12 KB */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", h_free_port());
    const char *b1[] = {"--listen", listen, "--data", tmpdir, "--config", bad, NULL};
    int st = serve_exit_status(b1, err, sizeof err);
    char want[160];
    snprintf(want, sizeof want, "%s:2", bad);
    CHECK(st == 2 && strstr(err, want), "config line without '=': exit %d, stderr '%s'", st, err);
    const char *b2[] = {"--listen", listen, "--data", tmpdir, "--config", unknown, NULL};
    st = serve_exit_status(b2, err, sizeof err);
    CHECK(st == 2 && strstr(err, "max-group-memberz"), "unknown key: exit %d, stderr '%s'", st,
          err);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such.conf", tmpdir);
    const char *b3[] = {"--listen", listen, "--data", tmpdir, "--config", missing, NULL};
    st = serve_exit_status(b3, err, sizeof err);
    CHECK(st == 2 && strstr(err, "no-such.conf"), "missing file: exit %d, stderr '%s'", st, err);
    /* --help names --config */
    const char *h[] = {"--help", NULL};
    st = serve_exit_status(h, err, sizeof err);
    CHECK(st == 0 && strstr(err, "--config FILE") && strstr(err, "--allowed-origin") &&
              strstr(err, "--conn-output-max"),
          "serve --help: exit %d", st);
}

/* ---------------------------------------------------- --allowed-origin */

/* An upgrade with the given Origin (NULL: none); the HTTP status. */
static int upgrade_with_origin(int port, const char *origin) {
    int fd = h_tcp_connect(port, 5000);
    if (fd < 0) return -1;
    char req[768];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: parley.v1\r\n"
                     "%s%s%s\r\n",
                     origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
    int st = -1;
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        char buf[512];
        ssize_t got = recv(fd, buf, sizeof buf - 1, 0);
        if (got > 0) {
            buf[got] = 0;
            if (sscanf(buf, "HTTP/1.1 %d", &st) != 1) st = -1;
        }
    }
    close(fd);
    return st;
}

static void allowed_origin(void) {
    h_server s;
    const char *a[] = {"--allowed-origin", "https://chat.example.org", NULL};
    NEED(h_server_start(&s, a) == 0);
    int evil = upgrade_with_origin(s.port, "https://evil.example.net");
    int prefix = upgrade_with_origin(s.port, "https://chat.example.org.evil.net");
    int good = upgrade_with_origin(s.port, "https://chat.example.org");
    int none = upgrade_with_origin(s.port, NULL);
    /* libparley sends no Origin: it still connects */
    h_dev *d = user(&s);
    int client_ok = d != NULL;
    if (d) h_dev_free(d);
    h_server_destroy(&s);
    CHECK(evil == 403, "upgrade from another origin: %d, want 403", evil);
    CHECK(prefix == 403, "upgrade from an origin extending the allowed one: %d, want 403", prefix);
    CHECK(good == 101, "upgrade from the allowed origin: %d, want 101", good);
    CHECK(none == 101, "upgrade without Origin (not a browser): %d, want 101", none);
    CHECK(client_ok, "libparley could not connect");
    /* without the option every origin is fine */
    NEED(h_server_start(&s, NULL) == 0);
    evil = upgrade_with_origin(s.port, "https://evil.example.net");
    h_server_destroy(&s);
    CHECK(evil == 101, "without --allowed-origin: %d, want 101", evil);
}

/* --------------------------------------------------- --conn-output-max */

enum { BIG_BODY = 3000, BIG_MESSAGES = 200, HISTORY_REQUESTS = 30 };

/* A server with one conversation of 200 messages of 3000 bytes: each
 * History of 200 answers ~600 KB. Then a raw client sends 30 of those
 * (~18 MB of answers) and either reads at once (read_at_once) or only once
 * the server has cut it off (bounded wait). Returns how many full answers
 * it read, the close code (0: none) and the overflow counter. */
static int history_flood(const char *output_max, int read_at_once, int *close_code,
                         double *overflows) {
    h_server s;
    const char *a[] = {"--conn-output-cap", "4096", "--max-message", "4096", "--conn-output-max",
                       output_max, "--send-rate", "100000", "--fsync", "off", NULL};
    if (h_server_start(&s, a) != 0) return -1;
    int responses = -1;
    h_dev *u = user(&s), *v = user(&s);
    uint64_t conv = 0;
    char *body = calloc(1, BIG_BODY + 1);
    if (!u || !v || !body || pc_open_direct(u->c, v->id.user_id, &conv) != 0) goto out;
    /* v answers first, accepting u (where message requests are limited) */
    if (!h_send(v, conv, "hi")) goto out;
    memset(body, 'b', BIG_BODY);
    for (int i = 0; i < BIG_MESSAGES; i++)
        if (!h_send(u, conv, body)) goto out;
    h_raw w;
    if (h_raw_open(&s, &w) != 0) goto out;
    if (h_raw_sign_in(&w, &u->id) != 0) {
        h_raw_close(&w);
        goto out;
    }
    /* no SO_RCVBUF games: shrinking it on a connected socket makes the
     * sender retransmit with backoff, and 18 MB of answers is well past
     * what the two kernels buffer anyway */
    Parley__V1__History h = PARLEY__V1__HISTORY__INIT;
    h.conversation_id = conv;
    h.limit = 200;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &h;
    uint8_t buf[64];
    for (int i = 0; i < HISTORY_REQUESTS; i++) {
        f.request_id = 100 + (uint64_t)i;
        size_t len = parley__v1__frame__pack(&f, buf);
        if (h_raw_send_binary(&w, buf, len) != 0) break;   /* closed already */
    }
    /* not reading: the answers pile up until the server gives up on us */
    double cut = 0;
    for (uint64_t until = h_now_ms() + WAIT_MS; !read_at_once && h_now_ms() < until && cut == 0;
         h_sleep_ms(50))
        h_metric(&s, "parley_output_overflow_closes_total", &cut);
    responses = 0;
    *close_code = 0;
    for (int i = 0; i < 4 * HISTORY_REQUESTS; i++) {
        int code = 0;
        Parley__V1__Frame *r = h_raw_next_frame(&w, &code);
        if (!r) {
            *close_code = code;
            break;
        }
        if (r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id >= 100 &&
            r->response->status == 0 && r->response->history &&
            r->response->history->n_messages > 0)
            responses++;
        parley__v1__frame__free_unpacked(r, NULL);
        if (responses == HISTORY_REQUESTS) break;
    }
    h_raw_close(&w);
    if (h_metric(&s, "parley_output_overflow_closes_total", overflows) != 0) *overflows = -1;
out:
    free(body);
    if (u) h_dev_free(u);
    if (v) h_dev_free(v);
    h_server_destroy(&s);
    return responses;
}

static void conn_output_max(void) {
    int code = 0;
    double over = 0;
    /* 64 KiB, a client that does not read: the first ~600 KB answer
     * already overflows it */
    int small = history_flood("65536", 0, &code, &over);
    CHECK(small >= 0, "set-up failed");
    /* closed: a 1008 close frame, or a reset when the requests it never
     * read were still in its socket */
    CHECK(small < HISTORY_REQUESTS && (code == 1008 || code == 1006) && over >= 1,
          "--conn-output-max 65536: %d of %d answers read, close %d, overflow closes %.0f",
          small, HISTORY_REQUESTS, code, over);
    /* 1 GiB, a client that reads: every answer arrives, though each one
     * is queued whole, past what the default here (4 x 4096 + 4096 = 20 KB)
     * would have allowed */
    int big = history_flood("1073741824", 1, &code, &over);
    CHECK(big == HISTORY_REQUESTS && over == 0,
          "--conn-output-max 1 GiB: %d of %d answers read, close %d, overflow closes %.0f", big,
          HISTORY_REQUESTS, code, over);
}

/* --------------------------------------------------------------- SIGINT */

static int log_has(const h_server *s, const char *needle) {
    FILE *f = fopen(s->log, "r");
    if (!f) return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void sigint_drains(void) {
    h_server s;
    const char *a[] = {"--drain-window", "500", NULL};
    NEED(h_server_start(&s, a) == 0);
    h_dev *x = user(&s), *y = user(&s);
    NEED(x && y);
    uint64_t conv = 0, seq = 0;
    NEED(pc_open_direct(x->c, y->id.user_id, &conv) == 0);
    NEED((seq = h_send(x, conv, "acked before SIGINT")) != 0);
    h_raw w;
    NEED(h_raw_open(&s, &w) == 0);
    NEED(h_raw_sign_in(&w, &y->id) == 0);
    h_dev_disconnect(x);
    h_dev_disconnect(y);
    CHECK(kill(s.pid, SIGINT) == 0, "kill");
    int code = 0;
    Parley__V1__Frame *f = NULL;
    for (int i = 0; i < 16; i++) {
        f = h_raw_next_frame(&w, &code);
        if (!f) break;
        parley__v1__frame__free_unpacked(f, NULL);
    }
    h_raw_close(&w);
    CHECK(code == 1012, "connection closed with %d on SIGINT, want 1012", code);
    /* it exits by itself, 0 */
    int exited = 0;
    for (int i = 0; i < LIVENESS_MS / 50 && !exited; i++) {
        int st;
        if (waitpid(s.pid, &st, WNOHANG) == s.pid) {
            exited = 1;
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status after SIGINT: %d", st);
            s.pid = 0;
        } else {
            h_sleep_ms(50);
        }
    }
    CHECK(exited, "still running %d ms after SIGINT with a 500 ms drain", LIVENESS_MS);
    CHECK(log_has(&s, "SIGINT: draining"), "the log does not say SIGINT started a drain");
    NEED(h_server_restart(&s) == 0);
    NEED(h_dev_reconnect(&s, y, 0) == 0);
    NEED(h_dev_sync(y, WAIT_MS) == 0);
    CHECK(h_dev_has(y, conv, seq) == 1, "message acked before SIGINT missing after restart");
    h_dev_free(x);
    h_dev_free(y);
    h_server_destroy(&s);
}

/* ------------------------------------------------------------ over TLS */

static char cert[160], key[160];

typedef struct tls_user {
    pc_client *c;
    pc_identity id;
} tls_user;

static int tls_user_new(const h_server *s, tls_user *u) {
    pc_options o;
    h_client_options(s, &o);
    o.tls_ca_file = cert;
    o.max_reconnects = 0;
    u->c = pc_new(&o);
    if (!u->c) return -1;
    pc_identity_generate(&u->id);
    static unsigned k;
    char name[32];
    snprintf(name, sizeof name, "tls%u_%u", (unsigned)getpid() % 100000u, ++k);
    if (pc_connect(u->c) != 0 || pc_register_user(u->c, name, &u->id) != 0) {
        fprintf(stderr, "  TLS client: %s\n", pc_error(u->c));
        return -1;
    }
    return 0;
}

static int tls_metric(const h_server *s, const char *name, double *v) {
    static char body[1 << 16];
    int st = 0;
    if (h_tls_get(s->port, cert, "/metrics", &st, body, sizeof body) != 0 || st != 200) return -1;
    size_t nl = strlen(name);
    for (char *l = body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, nl) == 0 && l[nl] == ' ') {
            *v = strtod(l + nl + 1, NULL);
            return 0;
        }
    return -1;
}

static void second_signal_during_tls_drain(void) {
    const char *a[] = {"--tls-cert", cert, "--tls-key", key, "--drain-window", "60000",
                       "--workers", "1", NULL};
    h_server s;
    NEED(h_server_start_tls(&s, a) == 0);
    enum { N = 20 };
    tls_user rcv = {0}, u[N];
    memset(u, 0, sizeof u);
    NEED(tls_user_new(&s, &rcv) == 0);
    uint64_t convs[N], seqs[N];
    for (int i = 0; i < N; i++) {
        NEED(tls_user_new(&s, &u[i]) == 0);
        NEED(pc_open_direct(u[i].c, rcv.id.user_id, &convs[i]) == 0);
        NEED(pc_send_text(u[i].c, convs[i], "acked before the drain", &seqs[i]) == 0);
    }
    pc_free(rcv.c);
    rcv.c = NULL;
    CHECK(kill(s.pid, SIGTERM) == 0, "kill");
    /* the drain is under way once the listener is closed */
    int refused = 0;
    for (int i = 0; i < LIVENESS_MS / 50 && !refused; i++) {
        int fd = h_tcp_connect(s.port, 1000);
        if (fd < 0) refused = 1;
        else {
            close(fd);
            h_sleep_ms(50);
        }
    }
    CHECK(refused, "still accepting after SIGTERM");
    CHECK(h_server_alive(&s), "exited before its 60 s drain window");
    /* the second signal is a SIGINT this time: it ends the drain at once */
    CHECK(kill(s.pid, SIGINT) == 0, "kill");
    int exited = 0, status = 0;
    for (int i = 0; i < LIVENESS_MS / 50 && !exited; i++) {
        if (waitpid(s.pid, &status, WNOHANG) == s.pid) {
            exited = 1;
            s.pid = 0;
        } else {
            h_sleep_ms(50);
        }
    }
    for (int i = 0; i < N; i++) pc_free(u[i].c);
    CHECK(exited, "a SIGINT during the TLS drain did not end it within %d ms", LIVENESS_MS);
    fprintf(stderr, "  exit status after the second signal: %d\n",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    /* nothing acknowledged is lost */
    NEED(h_server_restart_tls(&s) == 0);
    pc_options o;
    h_client_options(&s, &o);
    o.tls_ca_file = cert;
    pc_client *c = pc_new(&o);
    NEED(c && pc_connect(c) == 0 && pc_sign_in(c, &rcv.id) == 0);
    int missing = 0;
    for (int i = 0; i < N; i++) {
        Parley__V1__HistoryPage *p = NULL;
        int found = 0;
        if (pc_history(c, convs[i], 0, 10, &p) == 0) {
            for (size_t j = 0; j < p->n_messages; j++) found |= p->messages[j]->seq == seqs[i];
            parley__v1__history_page__free_unpacked(p, NULL);
        }
        missing += !found;
    }
    pc_free(c);
    h_server_destroy(&s);
    CHECK(missing == 0, "%d acknowledged messages missing after the restart", missing);
}

static void slow_loris_over_tls(void) {
    const char *a[] = {"--tls-cert", cert, "--tls-key", key, "--handshake-timeout", "1000", NULL};
    h_server s;
    NEED(h_server_start_tls(&s, a) == 0);
    double before = 0;
    NEED(tls_metric(&s, "parley_handshake_timeouts_total", &before) == 0);

    /* 1: TCP only, not even a ClientHello */
    int fd = h_tcp_connect(s.port, 1000);
    NEED(fd >= 0);
    int closed = 0;
    uint64_t until = h_now_ms() + LIVENESS_MS;
    while (!closed && h_now_ms() < until) {
        char c;
        ssize_t n = recv(fd, &c, 1, 0);   /* 1 s receive timeout per try */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            closed = 1;
    }
    close(fd);
    CHECK(closed, "a silent TCP connection to the TLS port is still open");

    /* 2: the TLS handshake done, then the HTTP head one byte every 100 ms */
    fd = h_tcp_connect(s.port, 5000);
    NEED(fd >= 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    NEED(ctx);
    SSL_CTX_load_verify_locations(ctx, cert, NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL *ssl = SSL_new(ctx);
    int hs = ssl && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1;
    static const char head[] =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: parley.v1\r\n\r\n";
    closed = 0;
    until = h_now_ms() + LIVENESS_MS;
    for (size_t i = 0; hs && i < sizeof head - 1 && !closed && h_now_ms() < until; i++) {
        if (SSL_write(ssl, head + i, 1) != 1) closed = 1;
        char c;
        struct timeval tv = {0, 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int r = SSL_read(ssl, &c, 1);
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN ||
                (e == SSL_ERROR_SYSCALL && errno != EAGAIN && errno != EWOULDBLOCK) ||
                e == SSL_ERROR_SSL)
                closed = 1;
        }
    }
    if (ssl) SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    CHECK(hs, "TLS handshake failed");
    CHECK(closed, "a TLS connection trickling its HTTP head is still open");
    double after = 0;
    NEED(tls_metric(&s, "parley_handshake_timeouts_total", &after) == 0);
    CHECK(after - before >= 2, "parley_handshake_timeouts_total went %.0f -> %.0f, want +2",
          before, after);
    /* and the server still serves */
    tls_user u = {0};
    CHECK(tls_user_new(&s, &u) == 0, "a real client after the slow ones");
    pc_free(u.c);
    h_server_destroy(&s);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/parley-opt-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(config_file_and_flags);
    RUN(allowed_origin);
    RUN(conn_output_max);
    RUN(sigint_drains);
    if (h_make_cert(tmpdir, cert, key, sizeof cert) == 0) {
        RUN(second_signal_during_tls_drain);
        RUN(slow_loris_over_tls);
    } else {
        printf("FAIL make_cert\n");
        check_failures_total++;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", tmpdir);
    CHECK_EXIT();
}
