/* register_limit.c -- see register_limit.h.
 *
 * The buckets live in a fixed table (a bound on memory whatever the number
 * of addresses): an address probes a few slots from its hash; when none is
 * free the one idle longest is taken over. An address that loses its slot
 * starts again with a full bucket, so the limit is exact for the addresses
 * seen recently and never stricter than asked. One short lock: RegisterUser
 * is rare next to everything else. */
#include "gateway/register_limit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"

enum { SLOTS = 4096, PROBES = 8 };

typedef struct bucket {
    uint64_t addr;          /* IPv4 address, or the hash of an IPv6 /64; 0: free */
    double tokens;
    uint64_t refilled_ms;
} bucket;

static bucket table[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The address as a non-zero key; *loopback when it is 127.0.0.0/8 or ::1. */
static uint64_t peer_key(int fd, bool *loopback) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    *loopback = false;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return 1;
    if (ss.ss_family == AF_INET) {
        uint32_t a = ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr);
        *loopback = (a >> 24) == 127;
        return (1ull << 32) | a;
    }
    if (ss.ss_family == AF_INET6) {
        const uint8_t *b = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        static const uint8_t one[16] = {[15] = 1};
        *loopback = memcmp(b, one, 16) == 0;
        uint64_t k = 0;   /* a /64 is what one subscriber gets */
        for (int i = 0; i < 8; i++) k = k << 8 | b[i];
        return k | (1ull << 63);
    }
    return 1;
}

bool register_limit_take(worker *w, conn *c, uint64_t *retry_after_ms) {
    bool loopback;
    uint64_t key = peer_key(c->fd, &loopback);
    uint32_t per_minute = loopback ? w->srv->cfg.register_rate_loopback : w->srv->cfg.register_rate;
    if (per_minute == 0) return true;
    double per_ms = per_minute / 60000.0, cap = per_minute;
    uint64_t now = clock_mono_ms();
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    pthread_mutex_lock(&lock);
    bucket *b = NULL, *victim = NULL;
    size_t base = (size_t)(h >> 40) % SLOTS;
    for (size_t i = 0; i < PROBES && !b; i++) {
        bucket *s = &table[(base + i) % SLOTS];
        if (s->addr == key) b = s;
        else if (!victim || (victim->addr != 0 && (s->addr == 0 || s->refilled_ms < victim->refilled_ms)))
            victim = s;   /* a free slot, else the one idle longest */
    }
    if (!b) {
        b = victim;
        b->addr = key;
        b->tokens = cap;
        b->refilled_ms = now;
    }
    b->tokens += (double)(now - b->refilled_ms) * per_ms;
    if (b->tokens > cap) b->tokens = cap;
    b->refilled_ms = now;
    bool ok = b->tokens >= 1.0;
    if (ok) b->tokens -= 1.0;
    else *retry_after_ms = (uint64_t)((1.0 - b->tokens) / per_ms) + 1;
    pthread_mutex_unlock(&lock);
    return ok;
}
