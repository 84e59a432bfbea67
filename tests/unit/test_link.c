/* test_link.c -- the node link (src/cluster/link.c) between two links in
 * this process on loopback: frames arrive whole, once, in the order sent,
 * after the sender's HELLO; a peer that is not there is refused (not
 * queued) and reconnected to, with backoff, once it listens; a frame past
 * the queue bound is refused; a malformed stream or a frame before HELLO
 * closes the connection it came on. The handshake (link_auth.h): links
 * with different secrets refuse each other, both ways; a frame after a
 * HELLO but before its PROOF is refused; a PROOF recorded on one
 * connection and replayed on another, or the acceptor's own PROOF
 * reflected back, is refused. Each handshake case fails when the check it
 * guards is removed from link.c or link_auth.c (the acceptor's or the
 * connector's verify, proof only after HELLO, a fresh acceptor nonce, the
 * direction label). Waits are on observable state with generous bounds;
 * nothing is timed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../check.h"
#include <errno.h>
#include <sodium.h>

#include "cluster/link.h"
#include "cluster/link_auth.h"

enum { WAIT_MS = 20000, FRAMES = 20000 };

typedef struct inbox {
    pthread_mutex_t mu;
    uint64_t frames, hellos, next_seq, out_of_order;
    bool slow;
    char peer[LINK_NAME_MAX + 1];
} inbox;

static void on_frame(void *ud, const char *peer, const link_frame *f) {
    inbox *in = ud;
    pthread_mutex_lock(&in->mu);
    in->frames++;
    if (f->type == LINK_HELLO) {
        in->hellos++;
        snprintf(in->peer, sizeof in->peer, "%s", peer);
    } else if (f->type == LINK_DELIVER) {
        if (f->user_seq != in->next_seq || f->body_len < 8 || memcmp(f->body, &f->user_seq, 8) != 0)
            in->out_of_order++;
        in->next_seq = f->user_seq + 1;
    }
    bool pause = in->slow && in->frames % 50 == 0;
    pthread_mutex_unlock(&in->mu);
    /* a slow reader: the sender's socket fills, so frames queue behind a
     * half-written batch (the path that appends to it) */
    if (pause) usleep(2000);
}

static uint64_t frames_of(inbox *in) {
    pthread_mutex_lock(&in->mu);
    uint64_t n = in->frames;
    pthread_mutex_unlock(&in->mu);
    return n;
}

static bool wait_frames(inbox *in, uint64_t n) {
    for (int i = 0; i < WAIT_MS / 5 && frames_of(in) < n; i++) usleep(5000);
    return frames_of(in) >= n;
}

static bool wait_up(node_link *l, const char *addr) {
    for (int i = 0; i < WAIT_MS / 5 && !link_peer_up(l, addr); i++) usleep(5000);
    return link_peer_up(l, addr);
}

static uint8_t KEY[LINK_AUTH_BYTES], OTHER_KEY[LINK_AUTH_BYTES];

static node_link *start_keyed(const char *name, bool listen, int port, inbox *in, size_t queue_bytes,
                              const uint8_t *key) {
    char err[256];
    link_options o = {.name = name, .roles = 7, .listen_host = listen ? "127.0.0.1" : NULL,
                      .listen_port = port, .on_frame = in ? on_frame : NULL, .ud = in,
                      .queue_bytes = queue_bytes, .key = key};
    node_link *l = link_start(&o, err, sizeof err);
    if (!l) fprintf(stderr, "  link_start: %s\n", err);
    return l;
}

static node_link *start(const char *name, bool listen, int port, inbox *in, size_t queue_bytes) {
    return start_keyed(name, listen, port, in, queue_bytes, KEY);
}

/* the body is the seq, then padding up to 1 KiB (so a batch fills the socket) */
static link_frame deliver(uint64_t *seq, size_t body_len) {
    static _Thread_local uint8_t body[1024];
    memcpy(body, seq, 8);
    link_frame f = {.type = LINK_DELIVER, .conn_id = 1, .user_id = 2, .user_seq = *seq,
                    .body = body, .body_len = body_len < 8 ? 8 : body_len};
    return f;
}

static void frames_arrive_once_in_order_after_hello(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER, .slow = true};
    node_link *a = start("node-a", true, 0, &in, 0);
    node_link *b = start("node-b", false, 0, NULL, 0);
    CHECK(a && b, "links did not start");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", link_listen_port(a));
    CHECK(link_connect(b, addr) == 0, "connect");
    CHECK(wait_up(b, addr), "no connection to %s within %d ms", addr, WAIT_MS);
    uint64_t sent = 0;
    /* a full queue refuses: the sender backs off and tries the same seq again */
    for (int tries = 0; sent < FRAMES && tries < 1000000; tries++) {
        link_frame f = deliver(&sent, 1024);
        if (link_send(b, addr, &f) == 0) sent++;
        else usleep(100);
    }
    CHECK(sent == FRAMES, "only %llu of %d frames queued", (unsigned long long)sent, FRAMES);
    bool all = wait_frames(&in, FRAMES + 1);
    link_stats st = link_get_stats(a);
    link_stop(b);
    link_stop(a);
    CHECK(all, "received %llu of %d frames", (unsigned long long)in.frames, FRAMES + 1);
    CHECK(in.hellos == 1 && strcmp(in.peer, "node-b") == 0, "HELLO: %llu, peer '%s'",
          (unsigned long long)in.hellos, in.peer);
    CHECK(in.out_of_order == 0 && in.next_seq == FRAMES, "%llu out of order, next %llu",
          (unsigned long long)in.out_of_order, (unsigned long long)in.next_seq);
    CHECK(st.malformed == 0, "malformed %llu", (unsigned long long)st.malformed);
}

static void absent_peer_is_refused_then_reconnected(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
    node_link *a = start("node-a", true, 0, &in, 0);
    CHECK(a, "start");
    int port = link_listen_port(a);
    link_stop(a);   /* the port is free again, nobody listens */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    node_link *b = start("node-b", false, 0, NULL, 0);
    CHECK(b, "start b");
    uint64_t seq = 0;
    link_frame f = deliver(&seq, 8);
    CHECK(link_send(b, addr, &f) == -1, "a frame to an absent peer was queued");
    /* it keeps trying: a few refused connects, then the peer appears */
    link_stats st = link_get_stats(b);
    for (int i = 0; i < WAIT_MS / 5 && st.disconnects < 2; i++, st = link_get_stats(b)) usleep(5000);
    CHECK(st.disconnects >= 2 && !link_peer_up(b, addr), "no retries seen (%llu)",
          (unsigned long long)st.disconnects);
    a = start("node-a", true, port, &in, 0);
    CHECK(a, "restart on port %d", port);
    bool up = wait_up(b, addr);
    int sent = up ? link_send(b, addr, &f) : -1;
    bool got = sent == 0 && wait_frames(&in, 2);
    link_stop(b);
    link_stop(a);
    CHECK(up, "did not reconnect within %d ms", WAIT_MS);
    CHECK(got, "the frame after the reconnect did not arrive (%llu frames)", (unsigned long long)in.frames);
}

static void frame_past_queue_bound_is_refused(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
    node_link *a = start("node-a", true, 0, &in, 0);
    node_link *b = start("node-b", false, 0, NULL, 4096);
    CHECK(a && b, "start");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", link_listen_port(a));
    link_connect(b, addr);
    bool up = wait_up(b, addr);
    static uint8_t body[5000];
    link_frame big = {.type = LINK_PUSH, .conn_id = 1, .body = body, .body_len = sizeof body};
    link_frame small = {.type = LINK_PUSH, .conn_id = 1, .body = body, .body_len = 100};
    int big_rc = up ? link_send(b, addr, &big) : 0;
    int small_rc = up ? link_send(b, addr, &small) : -1;
    link_stats st = link_get_stats(b);
    link_stop(b);
    link_stop(a);
    CHECK(up, "no connection");
    CHECK(big_rc == -1, "a frame larger than the 4096-byte queue was queued");
    CHECK(small_rc == 0, "a small frame was refused");
    CHECK(st.frames_refused == 1, "refused %llu", (unsigned long long)st.frames_refused);
}

static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* true when the link closed fd (EOF or reset, after whatever it sent
 * first: its HELLO, its PROOF), false on a timeout */
static bool closed_by_peer(int fd) {
    uint8_t b[256];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) return false;
    }
    return false;
}

/* One whole frame from a raw connection into buf (f points into it). */
static bool read_frame(int fd, uint8_t *buf, size_t cap, link_frame *f) {
    if (recv(fd, buf, LINK_LENGTH_BYTES, MSG_WAITALL) != LINK_LENGTH_BYTES) return false;
    size_t payload = 0;
    if (link_frame_split(buf, LINK_LENGTH_BYTES + cap, &payload) != 1 || payload > cap - LINK_LENGTH_BYTES)
        return false;
    if (recv(fd, buf + LINK_LENGTH_BYTES, payload, MSG_WAITALL) != (ssize_t)payload) return false;
    return link_frame_decode(buf + LINK_LENGTH_BYTES, payload, f) == 0;
}

static bool send_frame(int fd, const link_frame *f) {
    uint8_t out[256];
    size_t n = link_frame_encode(f, out, sizeof out);
    return n && send(fd, out, n, MSG_NOSIGNAL) == (ssize_t)n;
}

static link_frame hello_with(const char *name, const uint8_t nonce[LINK_AUTH_BYTES]) {
    link_frame h = {.type = LINK_HELLO, .version = LINK_VERSION, .roles = 1, .body = (const uint8_t *)name,
                    .body_len = strlen(name)};
    memcpy(h.auth, nonce, LINK_AUTH_BYTES);
    return h;
}

static link_stats wait_auth_failed(node_link *l, uint64_t n) {
    link_stats st = link_get_stats(l);
    for (int i = 0; i < WAIT_MS / 5 && st.auth_failed < n; i++, st = link_get_stats(l)) usleep(5000);
    return st;
}

static void malformed_stream_closes_its_connection(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
    node_link *a = start("node-a", true, 0, &in, 0);
    CHECK(a, "start");
    int port = link_listen_port(a);
    /* a length past LINK_PAYLOAD_MAX */
    int fd1 = raw_connect(port);
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    bool c1 = fd1 >= 0 && send(fd1, huge, sizeof huge, 0) == 4 && closed_by_peer(fd1);
    /* a well-formed frame, but before any HELLO */
    int fd2 = raw_connect(port);
    uint8_t frame[64];
    link_frame cd = {.type = LINK_CLOSE_DEVICE, .user_id = 1, .device_id = 1};
    size_t n = link_frame_encode(&cd, frame, sizeof frame);
    bool c2 = fd2 >= 0 && send(fd2, frame, n, 0) == (ssize_t)n && closed_by_peer(fd2);
    link_stats st = link_get_stats(a);
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
    link_stop(a);
    CHECK(c1, "an oversized length did not close the connection");
    CHECK(c2, "a frame before HELLO did not close the connection");
    CHECK(st.malformed == 2 && in.frames == 0, "malformed %llu, frames %llu", (unsigned long long)st.malformed,
          (unsigned long long)in.frames);
}

static void wrong_secret_is_refused_both_ways(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
    node_link *a = start_keyed("node-a", true, 0, &in, 0, KEY);
    node_link *b = start_keyed("node-b", false, 0, NULL, 0, OTHER_KEY);
    CHECK(a && b, "start");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", link_listen_port(a));
    link_connect(b, addr);
    /* each side checks the other's PROOF: the acceptor refuses b's, b
     * refuses the acceptor's (and keeps retrying, refused each time) */
    link_stats sa = wait_auth_failed(a, 1);
    link_stats sb = wait_auth_failed(b, 1);
    bool up = link_peer_up(b, addr);
    uint64_t seq = 0;
    link_frame f = deliver(&seq, 8);
    int rc = link_send(b, addr, &f);
    link_stop(b);
    link_stop(a);
    CHECK(sa.auth_failed >= 1, "the acceptor took a PROOF made with another secret");
    CHECK(sb.auth_failed >= 1, "the connector took a PROOF made with another secret");
    CHECK(!up && rc == -1, "the connector counts the peer as up (%d) or queued a frame (%d)", up, rc);
    CHECK(in.frames == 0, "%llu frames reached on_frame", (unsigned long long)in.frames);
}

static void frame_before_proof_is_refused(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
    node_link *a = start("node-a", true, 0, &in, 0);
    CHECK(a, "start");
    int fd = raw_connect(link_listen_port(a));
    uint8_t buf[256], nonce[LINK_AUTH_BYTES];
    link_frame their;
    randombytes_buf(nonce, sizeof nonce);
    link_frame hello = hello_with("node-x", nonce);
    /* a HELLO, then a REQUEST as if its sender were proven */
    static const uint8_t body[] = {1, 2, 3};
    link_frame req = {.type = LINK_REQUEST, .conn_id = 1, .user_id = 42, .device_id = 1, .request_id = 1,
                      .body = body, .body_len = sizeof body};
    bool got_hello = fd >= 0 && read_frame(fd, buf, sizeof buf, &their) && their.type == LINK_HELLO;
    bool closed = got_hello && send_frame(fd, &hello) && send_frame(fd, &req) && closed_by_peer(fd);
    link_stats st = link_get_stats(a);
    if (fd >= 0) close(fd);
    link_stop(a);
    CHECK(got_hello, "the acceptor did not send its HELLO first");
    CHECK(closed, "a REQUEST before the PROOF did not close the connection");
    CHECK(in.frames == 0, "%llu frames reached on_frame", (unsigned long long)in.frames);
    CHECK(st.malformed == 1, "malformed %llu", (unsigned long long)st.malformed);
}

/* One raw connection as node-x with nonce nc: reads the acceptor's HELLO,
 * sends ours and proof (NULL: the proof for this connection, made with
 * KEY). Fills acceptor_nonce and, when it comes, the acceptor's PROOF. */
static int raw_handshake(int port, const uint8_t nc[LINK_AUTH_BYTES], const uint8_t *proof,
                         uint8_t acceptor_nonce[LINK_AUTH_BYTES], uint8_t acceptor_proof[LINK_AUTH_BYTES]) {
    int fd = raw_connect(port);
    uint8_t buf[256];
    link_frame f;
    if (fd < 0 || !read_frame(fd, buf, sizeof buf, &f) || f.type != LINK_HELLO) {
        if (fd >= 0) close(fd);
        return -1;
    }
    memcpy(acceptor_nonce, f.auth, LINK_AUTH_BYTES);
    link_frame hello = hello_with("node-x", nc);
    link_frame p = {.type = LINK_PROOF};
    if (proof) memcpy(p.auth, proof, LINK_AUTH_BYTES);
    else link_auth_proof(KEY, LINK_AUTH_CONNECTOR, nc, acceptor_nonce, "node-x", "node-a", p.auth);
    /* the acceptor's PROOF answers our HELLO, before it reads ours */
    if (!send_frame(fd, &hello) || !read_frame(fd, buf, sizeof buf, &f) || f.type != LINK_PROOF ||
        !send_frame(fd, &p)) {
        close(fd);
        return -1;
    }
    memcpy(acceptor_proof, f.auth, LINK_AUTH_BYTES);
    return fd;
}

static void replayed_or_reflected_proof_is_refused(void) {
    inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
    node_link *a = start("node-a", true, 0, &in, 0);
    CHECK(a, "start");
    int port = link_listen_port(a);
    uint8_t nc[LINK_AUTH_BYTES], na1[LINK_AUTH_BYTES], na2[LINK_AUTH_BYTES], na3[LINK_AUTH_BYTES];
    uint8_t pa1[LINK_AUTH_BYTES], pa2[LINK_AUTH_BYTES], pa3[LINK_AUTH_BYTES], pc1[LINK_AUTH_BYTES];
    randombytes_buf(nc, sizeof nc);
    /* 1: an honest connection; its PROOF is recorded, a frame follows */
    int fd1 = raw_handshake(port, nc, NULL, na1, pa1);
    link_auth_proof(KEY, LINK_AUTH_CONNECTOR, nc, na1, "node-x", "node-a", pc1);
    link_frame cd = {.type = LINK_CLOSE_DEVICE, .user_id = 1, .device_id = 1};
    bool honest = fd1 >= 0 && send_frame(fd1, &cd) && wait_frames(&in, 2);
    /* 2: the same HELLO and the recorded PROOF on a new connection */
    int fd2 = raw_handshake(port, nc, pc1, na2, pa2);
    bool replay_closed = fd2 >= 0 && closed_by_peer(fd2);
    link_stats st2 = wait_auth_failed(a, 1);
    /* 3: the acceptor's PROOF of connection 2 offered as ours on a new one */
    int fd3 = raw_handshake(port, nc, pa2, na3, pa3);
    bool c3 = fd3 >= 0 && closed_by_peer(fd3);
    int fd4 = -1;
    uint8_t na4[LINK_AUTH_BYTES], pa4[LINK_AUTH_BYTES];
    {
        /* 4: reflected: read its HELLO and PROOF, answer with that very PROOF */
        fd4 = raw_connect(port);
        uint8_t buf[256];
        link_frame f;
        bool ok = fd4 >= 0 && read_frame(fd4, buf, sizeof buf, &f) && f.type == LINK_HELLO;
        if (ok) memcpy(na4, f.auth, LINK_AUTH_BYTES);
        link_frame hello = hello_with("node-x", nc);
        ok = ok && send_frame(fd4, &hello) && read_frame(fd4, buf, sizeof buf, &f) && f.type == LINK_PROOF;
        if (ok) memcpy(pa4, f.auth, LINK_AUTH_BYTES);
        link_frame back = {.type = LINK_PROOF};
        memcpy(back.auth, pa4, LINK_AUTH_BYTES);
        c3 = c3 && ok && send_frame(fd4, &back) && closed_by_peer(fd4);
    }
    link_stats st4 = wait_auth_failed(a, 3);
    uint64_t frames = frames_of(&in);
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
    if (fd3 >= 0) close(fd3);
    if (fd4 >= 0) close(fd4);
    link_stop(a);
    CHECK(honest, "the honest connection's frame did not arrive (%llu frames)", (unsigned long long)frames);
    CHECK(memcmp(na1, na2, sizeof na1) != 0, "the acceptor sent the same nonce twice");
    CHECK(replay_closed && st2.auth_failed == 1, "a replayed PROOF was taken (closed %d, auth_failed %llu)",
          replay_closed, (unsigned long long)st2.auth_failed);
    CHECK(c3 && st4.auth_failed == 3, "a reflected PROOF was taken (closed %d, auth_failed %llu)", c3,
          (unsigned long long)st4.auth_failed);
    CHECK(frames == 2, "frames %llu: only the honest HELLO and its frame", (unsigned long long)frames);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    randombytes_buf(KEY, sizeof KEY);
    randombytes_buf(OTHER_KEY, sizeof OTHER_KEY);
    RUN(frames_arrive_once_in_order_after_hello);
    RUN(absent_peer_is_refused_then_reconnected);
    RUN(frame_past_queue_bound_is_refused);
    RUN(malformed_stream_closes_its_connection);
    RUN(wrong_secret_is_refused_both_ways);
    RUN(frame_before_proof_is_refused);
    RUN(replayed_or_reflected_proof_is_refused);
    CHECK_EXIT();
}
