/* test_link.c -- the node link (src/cluster/link.c) between two links in
 * this process on loopback: frames arrive whole, once, in the order sent,
 * after the sender's HELLO; a peer that is not there is refused (not
 * queued) and reconnected to, with backoff, once it listens; a frame past
 * the queue bound is refused; a malformed stream or a frame before HELLO
 * closes the connection it came on. Waits are on observable state with
 * generous bounds; nothing is timed. */
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
#include "cluster/link.h"

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

static node_link *start(const char *name, bool listen, int port, inbox *in, size_t queue_bytes) {
    char err[256];
    link_options o = {.name = name, .roles = 7, .listen_host = listen ? "127.0.0.1" : NULL,
                      .listen_port = port, .on_frame = in ? on_frame : NULL, .ud = in,
                      .queue_bytes = queue_bytes};
    node_link *l = link_start(&o, err, sizeof err);
    if (!l) fprintf(stderr, "  link_start: %s\n", err);
    return l;
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

/* true when the link closed fd (EOF), false on a timeout */
static bool closed_by_peer(int fd) {
    uint8_t b;
    return recv(fd, &b, 1, 0) == 0;
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

int main(void) {
    RUN(frames_arrive_once_in_order_after_hello);
    RUN(absent_peer_is_refused_then_reconnected);
    RUN(frame_past_queue_bound_is_refused);
    RUN(malformed_stream_closes_its_connection);
    CHECK_EXIT();
}
