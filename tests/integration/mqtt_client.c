/* mqtt_client.c -- see mqtt_client.h. */
#include "mqtt_client.h"

#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "net/mqtt_codec.h"

int mq_open(mq *m, int port, int timeout_ms) {
    m->len = 0;
    m->fd = h_tcp_connect(port, timeout_ms);
    return m->fd < 0 ? -1 : 0;
}

void mq_close(mq *m) {
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
    m->len = 0;
}

int mqtt_take_packet(uint8_t *buf, size_t *len, uint8_t *first, uint8_t *out, size_t cap, size_t *out_len) {
    uint32_t rem = 0;
    size_t hl = 0;
    int r = mqtt_fixed_header(buf, *len, first, &rem, &hl);
    if (r == MQTT_NEED_MORE || (r == MQTT_OK && hl + rem > *len)) return 0;
    if (r != MQTT_OK || rem > cap) return -1;
    memcpy(out, buf + hl, rem);
    *out_len = rem;
    memmove(buf, buf + hl + rem, *len - hl - rem);
    *len -= hl + rem;
    return 1;
}

int mq_next(mq *m, uint8_t *first, uint8_t *out, size_t cap, size_t *len, int timeout_ms) {
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int r = mqtt_take_packet(m->buf, &m->len, first, out, cap, len);
        if (r != 0) return r;
        uint64_t now = h_now_ms();
        if (now >= deadline) return 0;
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return 0;
        if (m->len == MQ_BUF) return -1;
        ssize_t n = recv(m->fd, m->buf + m->len, MQ_BUF - m->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        m->len += (size_t)n;
    }
}

int mq_write(mq *m, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(m->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

size_t mq_password_connect(const pc_identity *id, const uint8_t *sk, uint64_t *last_ts, uint8_t *out, size_t cap) {
    char cid[48], pw[160], b64[100];
    snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)id->user_id, id->device_id);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t ts = (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
    if (ts <= *last_ts) ts = *last_ts + 1;
    *last_ts = ts;
    uint8_t msg[23 + 8 + 48], sig[64];
    memcpy(msg, "parley.v1 mqtt password", 23);
    for (int i = 0; i < 8; i++) msg[23 + i] = (uint8_t)(ts >> (56 - 8 * i));
    size_t idl = strlen(cid);
    memcpy(msg + 31, cid, idl);
    crypto_sign_detached(sig, NULL, msg, 31 + idl, sk);
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(pw, sizeof pw, "%llu.%s", (unsigned long long)ts, b64);
    mqtt_connect_args a = {.level = 4, .clean_start = false, .keep_alive = 60, .client_id = cid,
                           .username = cid, .password = (const uint8_t *)pw, .password_len = strlen(pw)};
    return mqtt_encode_connect(out, cap, &a);
}
