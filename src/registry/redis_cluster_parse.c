/* redis_cluster_parse.c -- see redis_cluster_parse.h. */
#include "registry/redis_cluster_parse.h"

#include <string.h>

/* CRC16-CCITT (XMODEM): poly 0x1021, init 0, no reflection -- the variant
 * the Redis Cluster specification names (crc16("123456789") == 0x31C3). */
uint16_t rc_crc16(const char *buf, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t rc_key_slot(const char *key, size_t len) {
    /* the spec: hash only what is between the first '{' and the next '}'
     * after it, when that is not empty */
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return rc_crc16(open + 1, (size_t)(close - open - 1)) & (RC_SLOTS - 1);
    }
    return rc_crc16(key, len) & (RC_SLOTS - 1);
}

int rc_split_host_port(const char *s, size_t len, char *host, int *port) {
    size_t colon = len;
    for (size_t i = len; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = i - 1;
            break;
        }
    if (colon == len || colon == 0 || colon >= RC_HOST_MAX || len - colon - 1 == 0 || len - colon - 1 > 5)
        return -1;
    long p = 0;
    for (size_t i = colon + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        p = p * 10 + (s[i] - '0');
    }
    if (p <= 0 || p > 65535)
        return -1;
    memcpy(host, s, colon);
    host[colon] = '\0';
    *port = (int)p;
    return 0;
}

int rc_parse_slots(const redisReply *r, const char *asked_host, rc_slot_range *out, size_t max) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements > max)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        /* [start, end, [host, port, id, ...], replicas...] */
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            return -1;
        const redisReply *s = e->element[0], *t = e->element[1], *m = e->element[2];
        if (s->type != REDIS_REPLY_INTEGER || t->type != REDIS_REPLY_INTEGER || m->type != REDIS_REPLY_ARRAY ||
            m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER)
            return -1;
        if (s->integer < 0 || t->integer < s->integer || t->integer >= RC_SLOTS)
            return -1;
        if (m->element[1]->integer <= 0 || m->element[1]->integer > 65535)
            return -1;
        const char *host = m->element[0]->str;
        size_t hlen = m->element[0]->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
            host = asked_host;
            hlen = strlen(asked_host);
        }
        if (hlen >= RC_HOST_MAX || memchr(host, '\0', hlen))
            return -1;
        out[i].start = (uint16_t)s->integer;
        out[i].end = (uint16_t)t->integer;
        memcpy(out[i].host, host, hlen);
        out[i].host[hlen] = '\0';
        out[i].port = (int)m->element[1]->integer;
    }
    return (int)r->elements;
}

static int starts_with(const char *s, size_t len, const char *word) {
    size_t n = strlen(word);
    return len >= n && memcmp(s, word, n) == 0 && (len == n || s[n] == ' ');
}

enum rc_error_kind rc_parse_error(const char *str, size_t len, int *slot, char *host, int *port) {
    if (starts_with(str, len, "TRYAGAIN"))
        return RC_ERR_TRYAGAIN;
    if (starts_with(str, len, "CLUSTERDOWN"))
        return RC_ERR_CLUSTERDOWN;
    enum rc_error_kind kind;
    size_t i;
    if (starts_with(str, len, "MOVED")) {
        kind = RC_ERR_MOVED;
        i = 6;
    } else if (starts_with(str, len, "ASK")) {
        kind = RC_ERR_ASK;
        i = 4;
    } else {
        return RC_ERR_OTHER;
    }
    /* "<slot> <host>:<port>" */
    long s = 0;
    size_t digits = 0;
    while (i < len && str[i] >= '0' && str[i] <= '9' && digits < 6) {
        s = s * 10 + (str[i++] - '0');
        digits++;
    }
    if (digits == 0 || s >= RC_SLOTS || i >= len || str[i] != ' ')
        return RC_ERR_OTHER;
    i++;
    if (rc_split_host_port(str + i, len - i, host, port) != 0)
        return RC_ERR_OTHER;
    *slot = (int)s;
    return kind;
}
