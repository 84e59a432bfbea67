/* mqtt_codec.c -- MQTT 3.1.1 / 5.0 packets: decode and encode (see
 * mqtt_codec.h). Section numbers are the OASIS MQTT 5.0 standard's unless
 * marked 3.1.1. */
#include <string.h>

#include "net/mqtt_internal.h"
#include "net/ws.h"

bool mqtt_utf8_valid(const uint8_t *s, size_t len) {
    /* 1.5.4: well-formed UTF-8, and no U+0000 */
    return memchr(s, 0, len) == NULL && ws_utf8_valid(s, len);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Properties at level 5; none (zeroed) at level 4. */
static int props_if_v5(uint8_t level, const uint8_t *p, size_t len, int type, mqtt_props *out, size_t *used) {
    if (level != 5) {
        memset(out, 0, sizeof *out);
        *used = 0;
        return MQTT_OK;
    }
    return mqtt_props_decode(p, len, type, out, used);
}

/* ---------------------------------------------------------------- CONNECT (3.1) */

int mqtt_decode_connect(uint8_t first, const uint8_t *body, size_t len, mqtt_connect *out) {
    memset(out, 0, sizeof *out);
    if (first != MQTT_CONNECT << 4) return MQTT_RC_MALFORMED;
    mqtt_bytes name;
    size_t n = 0, pos = 0;
    int r = mqtt_get_bytes(body, len, &name, &n, true);
    if (r != MQTT_OK) return r;
    pos = n;
    if (len - pos < 4) return MQTT_RC_MALFORMED;
    out->level = body[pos];
    if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0 || (out->level != 4 && out->level != 5))
        return MQTT_RC_UNSUPPORTED_VERSION;
    uint8_t flags = body[pos + 1];
    out->keep_alive = get16(body + pos + 2);
    pos += 4;
    if (flags & 0x01) return MQTT_RC_MALFORMED;   /* reserved */
    out->clean_start = flags & 0x02;
    out->will = flags & 0x04;
    out->will_qos = (flags >> 3) & 3;
    out->will_retain = flags & 0x20;
    out->has_password = flags & 0x40;
    out->has_username = flags & 0x80;
    if (out->will_qos == 3) return MQTT_RC_MALFORMED;
    if (!out->will && (out->will_qos || out->will_retain)) return MQTT_RC_MALFORMED;
    /* 3.1.1 3.1.2.9: a password needs a user name */
    if (out->level == 4 && out->has_password && !out->has_username) return MQTT_RC_MALFORMED;
    if ((r = props_if_v5(out->level, body + pos, len - pos, MQTT_CONNECT, &out->props, &n)) != MQTT_OK) return r;
    pos += n;
    if ((r = mqtt_get_bytes(body + pos, len - pos, &out->client_id, &n, true)) != MQTT_OK) return r;
    pos += n;
    if (out->will) {
        if ((r = props_if_v5(out->level, body + pos, len - pos, MQTT_WILL_PROPS, &out->will_props, &n)) != MQTT_OK)
            return r;
        pos += n;
        if ((r = mqtt_get_bytes(body + pos, len - pos, &out->will_topic, &n, true)) != MQTT_OK) return r;
        pos += n;
        if ((r = mqtt_get_bytes(body + pos, len - pos, &out->will_payload, &n, false)) != MQTT_OK) return r;
        pos += n;
    }
    if (out->has_username) {
        if ((r = mqtt_get_bytes(body + pos, len - pos, &out->username, &n, true)) != MQTT_OK) return r;
        pos += n;
    }
    if (out->has_password) {
        if ((r = mqtt_get_bytes(body + pos, len - pos, &out->password, &n, false)) != MQTT_OK) return r;
        pos += n;
    }
    return pos == len ? MQTT_OK : MQTT_RC_MALFORMED;
}

/* ---------------------------------------------------------------- PUBLISH (3.3) */

int mqtt_decode_publish(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_publish *out) {
    memset(out, 0, sizeof *out);
    out->retain = first & 0x01;
    out->qos = (first >> 1) & 3;
    out->dup = first & 0x08;
    if (out->qos == 3) return MQTT_RC_MALFORMED;
    if (out->qos == 0 && out->dup) return level == 5 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED;
    size_t n = 0, pos = 0;
    int r = mqtt_get_bytes(body, len, &out->topic, &n, true);
    if (r != MQTT_OK) return r;
    pos = n;
    for (uint32_t i = 0; i < out->topic.len; i++)
        if (out->topic.p[i] == '+' || out->topic.p[i] == '#') return MQTT_RC_TOPIC_NAME_INVALID;
    if (out->qos > 0) {
        if (len - pos < 2) return MQTT_RC_MALFORMED;
        out->packet_id = get16(body + pos);
        pos += 2;
        if (out->packet_id == 0) return level == 5 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED;
    }
    if ((r = props_if_v5(level, body + pos, len - pos, MQTT_PUBLISH, &out->props, &n)) != MQTT_OK) return r;
    pos += n;
    if (out->topic.len == 0 && !(level == 5 && MQTT_HAS(&out->props, MQTT_PROP_TOPIC_ALIAS)))
        return level == 5 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED;
    out->payload.p = body + pos;
    out->payload.len = (uint32_t)(len - pos);
    return MQTT_OK;
}

/* ---------------------------------------------------------------- PUBACK & co (3.4-3.7) */

int mqtt_decode_ack(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_ack *out) {
    memset(out, 0, sizeof *out);
    uint8_t type = first >> 4;
    uint8_t want_flags = type == MQTT_PUBREL ? 0x02 : 0x00;
    if (type < MQTT_PUBACK || type > MQTT_PUBCOMP || (first & 0x0F) != want_flags) return MQTT_RC_MALFORMED;
    if (len < 2) return MQTT_RC_MALFORMED;
    out->packet_id = get16(body);
    if (out->packet_id == 0) return MQTT_RC_MALFORMED;
    if (level != 5) return len == 2 ? MQTT_OK : MQTT_RC_MALFORMED;
    if (len == 2) return MQTT_OK;
    out->reason = body[2];
    if (len == 3) return MQTT_OK;
    size_t n = 0;
    int r = mqtt_props_decode(body + 3, len - 3, type, &out->props, &n);
    if (r != MQTT_OK) return r;
    return 3 + n == len ? MQTT_OK : MQTT_RC_MALFORMED;
}

/* ---------------------------------------------------------------- SUBSCRIBE (3.8), UNSUBSCRIBE (3.10) */

static int decode_filters(uint8_t level, uint8_t first, uint8_t type, const uint8_t *body, size_t len,
                          mqtt_subscribe *out) {
    memset(out, 0, sizeof *out);
    out->unsubscribe = type == MQTT_UNSUBSCRIBE;
    if (first != (uint8_t)(type << 4 | 0x02)) return MQTT_RC_MALFORMED;
    if (len < 2) return MQTT_RC_MALFORMED;
    out->packet_id = get16(body);
    if (out->packet_id == 0) return MQTT_RC_MALFORMED;
    size_t n = 0, pos = 2;
    int r = props_if_v5(level, body + pos, len - pos, type, &out->props, &n);
    if (r != MQTT_OK) return r;
    pos += n;
    out->filters = body + pos;
    out->filters_len = len - pos;
    /* every filter checked now, so mqtt_next_filter cannot fail */
    while (pos < len) {
        mqtt_bytes f;
        if ((r = mqtt_get_bytes(body + pos, len - pos, &f, &n, true)) != MQTT_OK) return r;
        if (f.len == 0) return MQTT_RC_MALFORMED;   /* 4.7.3: at least one character */
        pos += n;
        if (!out->unsubscribe) {
            if (pos >= len) return MQTT_RC_MALFORMED;
            uint8_t o = body[pos++];
            /* 3.1.1: bits 2-7 reserved; 5.0: bits 6-7 reserved, Retain Handling 3 */
            if ((o & 3) == 3) return MQTT_RC_MALFORMED;
            if (level != 5 && (o & 0xFC)) return MQTT_RC_MALFORMED;
            if (level == 5 && ((o & 0xC0) || ((o >> 4) & 3) == 3)) return MQTT_RC_MALFORMED;
        }
        out->n_filters++;
    }
    /* 3.8.3 / 3.10.3: no filters is a protocol violation */
    if (out->n_filters == 0) return level == 5 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED;
    return MQTT_OK;
}

int mqtt_decode_subscribe(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_subscribe *out) {
    return decode_filters(level, first, MQTT_SUBSCRIBE, body, len, out);
}

int mqtt_decode_unsubscribe(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_subscribe *out) {
    return decode_filters(level, first, MQTT_UNSUBSCRIBE, body, len, out);
}

bool mqtt_next_filter(const mqtt_subscribe *s, size_t *pos, mqtt_bytes *filter, uint8_t *options) {
    if (*pos >= s->filters_len) return false;
    size_t n = 0;
    if (mqtt_get_bytes(s->filters + *pos, s->filters_len - *pos, filter, &n, false) != MQTT_OK) return false;
    *pos += n;
    *options = 0;
    if (!s->unsubscribe) {
        if (*pos >= s->filters_len) return false;
        *options = s->filters[(*pos)++];
    }
    return true;
}

/* ---------------------------------------------------------------- DISCONNECT (3.14), AUTH (3.15) */

static int decode_reason_packet(uint8_t type, const uint8_t *body, size_t len, mqtt_reason_packet *out) {
    if (len == 0) return MQTT_OK;   /* success, no properties */
    out->reason = body[0];
    if (len == 1) return MQTT_OK;
    size_t n = 0;
    int r = mqtt_props_decode(body + 1, len - 1, type, &out->props, &n);
    if (r != MQTT_OK) return r;
    return 1 + n == len ? MQTT_OK : MQTT_RC_MALFORMED;
}

int mqtt_decode_disconnect(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_reason_packet *out) {
    memset(out, 0, sizeof *out);
    if (first != MQTT_DISCONNECT << 4) return MQTT_RC_MALFORMED;
    if (level != 5) return len == 0 ? MQTT_OK : MQTT_RC_MALFORMED;
    return decode_reason_packet(MQTT_DISCONNECT, body, len, out);
}

int mqtt_decode_auth(uint8_t first, const uint8_t *body, size_t len, mqtt_reason_packet *out) {
    memset(out, 0, sizeof *out);
    if (first != MQTT_AUTH << 4) return MQTT_RC_MALFORMED;
    return decode_reason_packet(MQTT_AUTH, body, len, out);
}

int mqtt_decode_empty(uint8_t first, size_t len) {
    return (first & 0x0F) == 0 && len == 0 ? MQTT_OK : MQTT_RC_MALFORMED;
}

int mqtt_decode_connack(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_connack *out) {
    memset(out, 0, sizeof *out);
    if (first != MQTT_CONNACK << 4 || len < 2 || (body[0] & 0xFE)) return MQTT_RC_MALFORMED;
    out->session_present = body[0] & 1;
    out->reason = body[1];
    if (level != 5) return len == 2 ? MQTT_OK : MQTT_RC_MALFORMED;
    size_t n = 0;
    int r = mqtt_props_decode(body + 2, len - 2, MQTT_CONNACK, &out->props, &n);
    if (r != MQTT_OK) return r;
    return 2 + n == len ? MQTT_OK : MQTT_RC_MALFORMED;
}

int mqtt_decode_suback(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_suback *out) {
    memset(out, 0, sizeof *out);
    uint8_t type = first >> 4;
    if ((type != MQTT_SUBACK && type != MQTT_UNSUBACK) || (first & 0x0F) || len < 2) return MQTT_RC_MALFORMED;
    out->packet_id = get16(body);
    size_t n = 0;
    int r = props_if_v5(level, body + 2, len - 2, type, &out->props, &n);
    if (r != MQTT_OK) return r;
    out->codes.p = body + 2 + n;
    out->codes.len = (uint32_t)(len - 2 - n);
    return MQTT_OK;
}

/* ---------------------------------------------------------------- encode */

/* A bounded writer: once something does not fit, it stays failed. */
typedef struct wr {
    uint8_t *p;
    size_t cap, len;
    bool over;
} wr;

static void w_bytes(wr *w, const void *d, size_t n) {
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    if (n) memcpy(w->p + w->len, d, n);
    w->len += n;
}
static void w_u8(wr *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u16(wr *w, uint16_t v) {
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 2);
}
static void w_u32(wr *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 4);
}
static void w_varint(wr *w, uint32_t v) {
    uint8_t b[4];
    w_bytes(w, b, mqtt_put_varint(b, v));
}
static void w_str(wr *w, const void *s, size_t n) {
    if (n > 0xFFFF) {
        w->over = true;
        return;
    }
    w_u16(w, (uint16_t)n);
    w_bytes(w, s, n);
}

/* Moves the body written at dst[5..5+body) right after a fixed header of
 * first and that length; returns the packet size or 0. */
static size_t finish(wr *w, uint8_t first) {
    if (w->over || w->len < MQTT_MAX_FIXED_HEADER) return 0;
    size_t body = w->len - MQTT_MAX_FIXED_HEADER;
    if (body > MQTT_MAX_REMAINING) return 0;
    uint8_t h[MQTT_MAX_FIXED_HEADER];
    h[0] = first;
    size_t hl = 1 + mqtt_put_varint(h + 1, (uint32_t)body);
    memmove(w->p + hl, w->p + MQTT_MAX_FIXED_HEADER, body);
    memcpy(w->p, h, hl);
    return hl + body;
}

static wr start(uint8_t *dst, size_t cap) {
    wr w = {dst, cap, 0, false};
    uint8_t room[MQTT_MAX_FIXED_HEADER] = {0};
    w_bytes(&w, room, sizeof room);   /* the fixed header goes here once the length is known */
    return w;
}

/* A property list written into a scratch buffer, then copied with its length. */
static void w_props(wr *w, const uint8_t *props, size_t n) {
    w_varint(w, (uint32_t)n);
    w_bytes(w, props, n);
}

size_t mqtt_encode_connack(uint8_t *dst, size_t cap, uint8_t level, bool session_present, uint8_t reason,
                           const mqtt_connack_info *info) {
    wr w = start(dst, cap);
    w_u8(&w, session_present ? 1 : 0);
    w_u8(&w, reason);
    if (level == 5) {
        uint8_t pbuf[512];
        wr p = {pbuf, sizeof pbuf, 0, false};
        if (info && info->max_packet_size) { w_u8(&p, MQTT_PROP_MAX_PACKET_SIZE); w_u32(&p, info->max_packet_size); }
        if (info && info->receive_maximum) { w_u8(&p, MQTT_PROP_RECEIVE_MAXIMUM); w_u16(&p, info->receive_maximum); }
        if (info && info->server_keep_alive) { w_u8(&p, MQTT_PROP_SERVER_KEEP_ALIVE); w_u16(&p, info->server_keep_alive); }
        if (info && info->send_limits) {
            w_u8(&p, MQTT_PROP_MAX_QOS); w_u8(&p, 1);
            w_u8(&p, MQTT_PROP_RETAIN_AVAILABLE); w_u8(&p, 0);
            w_u8(&p, MQTT_PROP_SHARED_SUB_AVAILABLE); w_u8(&p, 0);
            w_u8(&p, MQTT_PROP_SUB_ID_AVAILABLE); w_u8(&p, 0);
        }
        if (info && info->auth_method) {
            w_u8(&p, MQTT_PROP_AUTH_METHOD);
            w_str(&p, info->auth_method, strlen(info->auth_method));
        }
        if (info && info->reason_string) {
            w_u8(&p, MQTT_PROP_REASON_STRING);
            w_str(&p, info->reason_string, strnlen(info->reason_string, 256));
        }
        if (p.over) return 0;
        w_props(&w, pbuf, p.len);
    }
    return finish(&w, MQTT_CONNACK << 4);
}

size_t mqtt_encode_publish_head(uint8_t *dst, size_t cap, uint8_t level, const char *topic, size_t topic_len,
                                uint8_t qos, bool retain, uint16_t packet_id, size_t payload_len) {
    if (topic_len > 0xFFFF || qos > 2) return 0;
    size_t var = 2 + topic_len + (qos ? 2 : 0) + (level == 5 ? 1 : 0);
    if (payload_len > MQTT_MAX_REMAINING - var) return 0;
    uint32_t remaining = (uint32_t)(var + payload_len);
    size_t need = 1 + mqtt_varint_size(remaining) + var;
    if (need > cap) return 0;
    uint8_t *p = dst;
    *p++ = (uint8_t)(MQTT_PUBLISH << 4 | qos << 1 | (retain ? 1 : 0));
    p += mqtt_put_varint(p, remaining);
    *p++ = (uint8_t)(topic_len >> 8);
    *p++ = (uint8_t)topic_len;
    memcpy(p, topic, topic_len);
    p += topic_len;
    if (qos) {
        *p++ = (uint8_t)(packet_id >> 8);
        *p++ = (uint8_t)packet_id;
    }
    if (level == 5) *p++ = 0;   /* no properties */
    return (size_t)(p - dst);
}

size_t mqtt_encode_ack(uint8_t *dst, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id, uint8_t reason) {
    wr w = start(dst, cap);
    w_u16(&w, packet_id);
    if (level == 5 && reason != MQTT_RC_SUCCESS) w_u8(&w, reason);   /* 3.4.2.1: may be omitted on success */
    return finish(&w, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 0x02 : 0)));
}

size_t mqtt_encode_suback(uint8_t *dst, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id,
                          const uint8_t *codes, size_t n) {
    wr w = start(dst, cap);
    w_u16(&w, packet_id);
    if (level == 5) w_u8(&w, 0);   /* no properties */
    if (level == 5 || type == MQTT_SUBACK) w_bytes(&w, codes, n);
    return finish(&w, (uint8_t)(type << 4));
}

size_t mqtt_encode_empty(uint8_t *dst, size_t cap, uint8_t type) {
    if (cap < 2) return 0;
    dst[0] = (uint8_t)(type << 4);
    dst[1] = 0;
    return 2;
}

size_t mqtt_encode_disconnect(uint8_t *dst, size_t cap, uint8_t reason, const char *reason_string) {
    wr w = start(dst, cap);
    w_u8(&w, reason);
    if (reason_string) {
        uint8_t pbuf[300];
        wr p = {pbuf, sizeof pbuf, 0, false};
        w_u8(&p, MQTT_PROP_REASON_STRING);
        w_str(&p, reason_string, strnlen(reason_string, 256));
        w_props(&w, pbuf, p.len);
    } else {
        w_u8(&w, 0);
    }
    return finish(&w, MQTT_DISCONNECT << 4);
}

size_t mqtt_encode_auth(uint8_t *dst, size_t cap, uint8_t reason, const char *method, const uint8_t *data,
                        size_t data_len) {
    wr w = start(dst, cap);
    w_u8(&w, reason);
    uint8_t pbuf[512];
    wr p = {pbuf, sizeof pbuf, 0, false};
    if (method) {
        w_u8(&p, MQTT_PROP_AUTH_METHOD);
        w_str(&p, method, strlen(method));
    }
    if (data) {
        w_u8(&p, MQTT_PROP_AUTH_DATA);
        w_str(&p, data, data_len);
    }
    if (p.over) return 0;
    w_props(&w, pbuf, p.len);
    return finish(&w, MQTT_AUTH << 4);
}

size_t mqtt_encode_connect(uint8_t *dst, size_t cap, const mqtt_connect_args *a) {
    wr w = start(dst, cap);
    w_str(&w, "MQTT", 4);
    w_u8(&w, a->level);
    uint8_t flags = (a->clean_start ? 0x02 : 0) | (a->password ? 0x40 : 0) | (a->username ? 0x80 : 0);
    w_u8(&w, flags);
    w_u16(&w, a->keep_alive);
    if (a->level == 5) {
        uint8_t pbuf[300];
        wr p = {pbuf, sizeof pbuf, 0, false};
        if (a->session_expiry) { w_u8(&p, MQTT_PROP_SESSION_EXPIRY); w_u32(&p, a->session_expiry); }
        if (a->max_packet_size) { w_u8(&p, MQTT_PROP_MAX_PACKET_SIZE); w_u32(&p, a->max_packet_size); }
        if (a->auth_method) { w_u8(&p, MQTT_PROP_AUTH_METHOD); w_str(&p, a->auth_method, strlen(a->auth_method)); }
        if (p.over) return 0;
        w_props(&w, pbuf, p.len);
    }
    w_str(&w, a->client_id, strlen(a->client_id));
    if (a->username) w_str(&w, a->username, strlen(a->username));
    if (a->password) w_str(&w, a->password, a->password_len);
    return finish(&w, MQTT_CONNECT << 4);
}

size_t mqtt_encode_subscribe(uint8_t *dst, size_t cap, uint8_t level, bool unsubscribe, uint16_t packet_id,
                             const char *const *filters, const uint8_t *options, size_t n) {
    wr w = start(dst, cap);
    w_u16(&w, packet_id);
    if (level == 5) w_u8(&w, 0);
    for (size_t i = 0; i < n; i++) {
        w_str(&w, filters[i], strlen(filters[i]));
        if (!unsubscribe) w_u8(&w, options ? options[i] : 0);
    }
    return finish(&w, (uint8_t)((unsubscribe ? MQTT_UNSUBSCRIBE : MQTT_SUBSCRIBE) << 4 | 0x02));
}
