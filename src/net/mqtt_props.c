/* mqtt_props.c -- MQTT 5 properties (OASIS MQTT 5.0, 2.2.2.2): which
 * property may appear in which packet, its data type, the values it may
 * take, and which may appear only once. */
#include <string.h>

#include "net/mqtt_internal.h"

typedef enum prop_kind { P_BYTE, P_U16, P_U32, P_VARINT, P_UTF8, P_BIN, P_PAIR } prop_kind;

#define PK(t) (1u << (t))
#define PWILL PK(MQTT_WILL_PROPS)
#define PACKS_ACKS (PK(MQTT_PUBACK) | PK(MQTT_PUBREC) | PK(MQTT_PUBREL) | PK(MQTT_PUBCOMP))

typedef struct prop_rule {
    uint8_t kind;       /* prop_kind; 0 with packets 0: unknown id */
    uint16_t packets;   /* bit per packet type (bit 0: a will) */
} prop_rule;

static const prop_rule RULES[64] = {
    [0x01] = {P_BYTE, PK(MQTT_PUBLISH) | PWILL},
    [0x02] = {P_U32, PK(MQTT_PUBLISH) | PWILL},
    [0x03] = {P_UTF8, PK(MQTT_PUBLISH) | PWILL},
    [0x08] = {P_UTF8, PK(MQTT_PUBLISH) | PWILL},
    [0x09] = {P_BIN, PK(MQTT_PUBLISH) | PWILL},
    [0x0B] = {P_VARINT, PK(MQTT_PUBLISH) | PK(MQTT_SUBSCRIBE)},
    [0x11] = {P_U32, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_DISCONNECT)},
    [0x12] = {P_UTF8, PK(MQTT_CONNACK)},
    [0x13] = {P_U16, PK(MQTT_CONNACK)},
    [0x15] = {P_UTF8, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_AUTH)},
    [0x16] = {P_BIN, PK(MQTT_CONNECT) | PK(MQTT_CONNACK) | PK(MQTT_AUTH)},
    [0x17] = {P_BYTE, PK(MQTT_CONNECT)},
    [0x18] = {P_U32, PWILL},
    [0x19] = {P_BYTE, PK(MQTT_CONNECT)},
    [0x1A] = {P_UTF8, PK(MQTT_CONNACK)},
    [0x1C] = {P_UTF8, PK(MQTT_CONNACK) | PK(MQTT_DISCONNECT)},
    [0x1F] = {P_UTF8, PK(MQTT_CONNACK) | PACKS_ACKS | PK(MQTT_SUBACK) | PK(MQTT_UNSUBACK) |
                          PK(MQTT_DISCONNECT) | PK(MQTT_AUTH)},
    [0x21] = {P_U16, PK(MQTT_CONNECT) | PK(MQTT_CONNACK)},
    [0x22] = {P_U16, PK(MQTT_CONNECT) | PK(MQTT_CONNACK)},
    [0x23] = {P_U16, PK(MQTT_PUBLISH)},
    [0x24] = {P_BYTE, PK(MQTT_CONNACK)},
    [0x25] = {P_BYTE, PK(MQTT_CONNACK)},
    [0x26] = {P_PAIR, 0xFFFF & ~(PK(MQTT_PINGREQ) | PK(MQTT_PINGRESP))},
    [0x27] = {P_U32, PK(MQTT_CONNECT) | PK(MQTT_CONNACK)},
    [0x28] = {P_BYTE, PK(MQTT_CONNACK)},
    [0x29] = {P_BYTE, PK(MQTT_CONNACK)},
    [0x2A] = {P_BYTE, PK(MQTT_CONNACK)},
};

/* A variable byte integer (1.5.5): at most 4 bytes, the shortest form. */
static int get_varint(const uint8_t *p, size_t len, uint32_t *v, size_t *used) {
    uint32_t value = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len) return MQTT_NEED_MORE;
        value |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i > 0 && p[i] == 0) return MQTT_RC_MALFORMED;   /* a trailing zero group: not minimal */
            *v = value;
            *used = i + 1;
            return MQTT_OK;
        }
    }
    return MQTT_RC_MALFORMED;
}

int mqtt_fixed_header(const uint8_t *p, size_t len, uint8_t *first, uint32_t *remaining, size_t *header_len) {
    if (len < 2) return MQTT_NEED_MORE;
    size_t used = 0;
    int r = get_varint(p + 1, len - 1, remaining, &used);
    if (r != MQTT_OK) return r;
    *first = p[0];
    *header_len = 1 + used;
    return MQTT_OK;
}

size_t mqtt_varint_size(uint32_t v) {
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

size_t mqtt_put_varint(uint8_t *p, uint32_t v) {
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v && n < 4);
    return n;
}

int mqtt_get_varint(const uint8_t *p, size_t len, uint32_t *v, size_t *used) {
    int r = get_varint(p, len, v, used);
    return r == MQTT_NEED_MORE ? MQTT_RC_MALFORMED : r;   /* inside a packet, short is malformed */
}

/* A two-byte length then that many bytes. */
static int get_bytes(const uint8_t *p, size_t len, mqtt_bytes *out, size_t *used, bool utf8) {
    if (len < 2) return MQTT_RC_MALFORMED;
    size_t n = (size_t)p[0] << 8 | p[1];
    if (n > len - 2) return MQTT_RC_MALFORMED;
    if (utf8 && !mqtt_utf8_valid(p + 2, n)) return MQTT_RC_MALFORMED;
    out->p = p + 2;
    out->len = (uint32_t)n;
    *used = 2 + n;
    return MQTT_OK;
}

int mqtt_get_bytes(const uint8_t *p, size_t len, mqtt_bytes *out, size_t *used, bool utf8) {
    return get_bytes(p, len, out, used, utf8);
}

static bool flag_value_ok(uint8_t id, uint32_t v) {
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
    case MQTT_PROP_MAX_QOS:
    case MQTT_PROP_RETAIN_AVAILABLE:
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
    case MQTT_PROP_SUB_ID_AVAILABLE:
    case MQTT_PROP_SHARED_SUB_AVAILABLE:
        return v <= 1;
    case MQTT_PROP_RECEIVE_MAXIMUM:
    case MQTT_PROP_MAX_PACKET_SIZE:
    case MQTT_PROP_TOPIC_ALIAS:
    case MQTT_PROP_SUBSCRIPTION_ID:
        return v != 0;   /* "It is a Protocol Error" to send 0 */
    default:
        return true;
    }
}

static void keep_value(mqtt_props *o, uint8_t id, uint32_t v, const mqtt_bytes *b) {
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT: o->payload_format = (uint8_t)v; break;
    case MQTT_PROP_MESSAGE_EXPIRY: o->message_expiry = v; break;
    case MQTT_PROP_CONTENT_TYPE: o->content_type = *b; break;
    case MQTT_PROP_RESPONSE_TOPIC: o->response_topic = *b; break;
    case MQTT_PROP_CORRELATION_DATA: o->correlation_data = *b; break;
    case MQTT_PROP_SUBSCRIPTION_ID: if (!o->subscription_id) o->subscription_id = v; break;
    case MQTT_PROP_SESSION_EXPIRY: o->session_expiry = v; break;
    case MQTT_PROP_ASSIGNED_CLIENT_ID: o->assigned_client_id = *b; break;
    case MQTT_PROP_SERVER_KEEP_ALIVE: o->server_keep_alive = (uint16_t)v; break;
    case MQTT_PROP_AUTH_METHOD: o->auth_method = *b; break;
    case MQTT_PROP_AUTH_DATA: o->auth_data = *b; break;
    case MQTT_PROP_REQUEST_PROBLEM_INFO: o->request_problem_info = (uint8_t)v; break;
    case MQTT_PROP_WILL_DELAY: o->will_delay = v; break;
    case MQTT_PROP_REQUEST_RESPONSE_INFO: o->request_response_info = (uint8_t)v; break;
    case MQTT_PROP_REASON_STRING: o->reason_string = *b; break;
    case MQTT_PROP_RECEIVE_MAXIMUM: o->receive_maximum = (uint16_t)v; break;
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM: o->topic_alias_maximum = (uint16_t)v; break;
    case MQTT_PROP_TOPIC_ALIAS: o->topic_alias = (uint16_t)v; break;
    case MQTT_PROP_MAX_QOS: o->max_qos = (uint8_t)v; break;
    case MQTT_PROP_RETAIN_AVAILABLE: o->retain_available = (uint8_t)v; break;
    case MQTT_PROP_USER_PROPERTY: o->n_user_properties++; break;
    case MQTT_PROP_MAX_PACKET_SIZE: o->max_packet_size = v; break;
    default: break;
    }
}

int mqtt_props_decode(const uint8_t *p, size_t len, int type, mqtt_props *out, size_t *used) {
    memset(out, 0, sizeof *out);
    uint32_t plen = 0;
    size_t hl = 0;
    int r = mqtt_get_varint(p, len, &plen, &hl);
    if (r != MQTT_OK) return r;
    if (plen > len - hl) return MQTT_RC_MALFORMED;
    const uint8_t *q = p + hl, *end = q + plen;
    while (q < end) {
        size_t left = (size_t)(end - q), n = 0;
        uint32_t id32 = 0;
        /* the identifier is a variable byte integer; every defined one fits in a byte */
        if ((r = mqtt_get_varint(q, left, &id32, &n)) != MQTT_OK) return r;
        if (id32 >= 64 || !(RULES[id32].packets & PK(type))) return MQTT_RC_MALFORMED;
        uint8_t id = (uint8_t)id32;
        q += n;
        left -= n;
        /* user properties may repeat; a server may send several subscription
         * identifiers in a PUBLISH; every other property at most once */
        bool repeatable = id == MQTT_PROP_USER_PROPERTY || (id == MQTT_PROP_SUBSCRIPTION_ID && type == MQTT_PUBLISH);
        if (!repeatable && MQTT_HAS(out, id)) return MQTT_RC_PROTOCOL_ERROR;
        out->seen |= 1ull << id;
        uint32_t v = 0;
        mqtt_bytes b = {0};
        switch ((prop_kind)RULES[id].kind) {
        case P_BYTE:
            if (left < 1) return MQTT_RC_MALFORMED;
            v = q[0];
            n = 1;
            break;
        case P_U16:
            if (left < 2) return MQTT_RC_MALFORMED;
            v = (uint32_t)q[0] << 8 | q[1];
            n = 2;
            break;
        case P_U32:
            if (left < 4) return MQTT_RC_MALFORMED;
            v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
            n = 4;
            break;
        case P_VARINT:
            if ((r = mqtt_get_varint(q, left, &v, &n)) != MQTT_OK) return r;
            break;
        case P_UTF8:
        case P_BIN:
            if ((r = get_bytes(q, left, &b, &n, RULES[id].kind == P_UTF8)) != MQTT_OK) return r;
            break;
        case P_PAIR: {
            size_t n2 = 0;
            mqtt_bytes value;
            if ((r = get_bytes(q, left, &b, &n, true)) != MQTT_OK) return r;
            if ((r = get_bytes(q + n, left - n, &value, &n2, true)) != MQTT_OK) return r;
            n += n2;
            break;
        }
        }
        if (!flag_value_ok(id, v)) return MQTT_RC_PROTOCOL_ERROR;
        keep_value(out, id, v, &b);
        q += n;
    }
    *used = hl + plen;
    return MQTT_OK;
}
