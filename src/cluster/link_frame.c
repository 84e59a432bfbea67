/* link_frame.c -- see link_frame.h. One table says which fixed fields each
 * type has; encode and decode walk the same table, so they cannot disagree. */
#include "cluster/link_frame.h"

#include <string.h>

enum field {
    F_VERSION = 1u << 0,
    F_ROLES = 1u << 1,
    F_CONN = 1u << 2,
    F_USER = 1u << 3,
    F_DEVICE = 1u << 4,
    F_REQUEST = 1u << 5,
    F_USER_SEQ = 1u << 6,
    F_ACK_FROM = 1u << 7,
    F_ACK_TO = 1u << 8,
    F_ABOUT = 1u << 9,
    F_AUTH = 1u << 10,
};

enum body_rule { BODY_NONE, BODY_REQUIRED, BODY_NAME };

typedef struct layout {
    unsigned fields;
    enum body_rule body;
} layout;

static const layout LAYOUTS[] = {
    [LINK_HELLO] = {F_VERSION | F_ROLES | F_AUTH, BODY_NAME},
    [LINK_REQUEST] = {F_CONN | F_USER | F_DEVICE | F_REQUEST, BODY_REQUIRED},
    [LINK_ACK] = {F_CONN | F_USER | F_DEVICE | F_ACK_FROM | F_ACK_TO, BODY_NONE},
    [LINK_ANSWER] = {F_CONN | F_USER | F_DEVICE, BODY_REQUIRED},
    [LINK_PUSH] = {F_CONN, BODY_REQUIRED},
    [LINK_DELIVER] = {F_CONN | F_USER | F_USER_SEQ, BODY_REQUIRED},
    [LINK_CLOSE_DEVICE] = {F_USER | F_DEVICE, BODY_NONE},
    [LINK_DROP_PRESENCE] = {F_USER | F_ABOUT, BODY_NONE},
    [LINK_PROOF] = {F_AUTH, BODY_NONE},
};

static const layout *layout_of(uint8_t type) {
    if (type < LINK_HELLO || type > LINK_PROOF) return NULL;
    return &LAYOUTS[type];
}

static size_t fixed_bytes(unsigned fields) {
    size_t n = 1;   /* the type */
    if (fields & F_VERSION) n += 1;
    if (fields & F_ROLES) n += 1;
    if (fields & F_DEVICE) n += 4;
    if (fields & F_AUTH) n += LINK_AUTH_FIELD;
    unsigned wide = fields & (F_CONN | F_USER | F_REQUEST | F_USER_SEQ | F_ACK_FROM | F_ACK_TO | F_ABOUT);
    n += 8 * (size_t)__builtin_popcount(wide);
    return n;
}

/* node names are tokens: what registry_redis and the directory accept */
static int name_ok(const uint8_t *p, size_t n) {
    if (n == 0 || n > LINK_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] >= 127) return 0;
    return 1;
}

static int body_ok(enum body_rule rule, const uint8_t *body, size_t len) {
    switch (rule) {
    case BODY_NONE: return len == 0;
    case BODY_REQUIRED: return len > 0 && len <= LINK_BODY_MAX && body;
    case BODY_NAME: return body && name_ok(body, len);
    }
    return 0;
}

size_t link_frame_size(const link_frame *f) {
    const layout *l = layout_of(f->type);
    if (!l || !body_ok(l->body, f->body, f->body_len)) return 0;
    return LINK_LENGTH_BYTES + fixed_bytes(l->fields) + f->body_len;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) *p++ = (uint8_t)(v >> (8 * i));
    return p;
}
static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    for (int i = 3; i >= 0; i--) *p++ = (uint8_t)(v >> (8 * i));
    return p;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t link_frame_encode(const link_frame *f, uint8_t *out, size_t cap) {
    size_t size = link_frame_size(f);
    if (size == 0 || size > cap) return 0;
    unsigned fl = LAYOUTS[f->type].fields;
    uint8_t *p = put_u32(out, (uint32_t)(size - LINK_LENGTH_BYTES));
    *p++ = f->type;
    if (fl & F_VERSION) *p++ = f->version;
    if (fl & F_ROLES) *p++ = f->roles;
    if (fl & F_CONN) p = put_u64(p, f->conn_id);
    if (fl & F_USER) p = put_u64(p, f->user_id);
    if (fl & F_DEVICE) p = put_u32(p, f->device_id);
    if (fl & F_REQUEST) p = put_u64(p, f->request_id);
    if (fl & F_USER_SEQ) p = put_u64(p, f->user_seq);
    if (fl & F_ACK_FROM) p = put_u64(p, f->ack_from);
    if (fl & F_ACK_TO) p = put_u64(p, f->ack_to);
    if (fl & F_ABOUT) p = put_u64(p, f->about_user);
    if (fl & F_AUTH) memcpy(p, f->auth, LINK_AUTH_FIELD), p += LINK_AUTH_FIELD;
    if (f->body_len) memcpy(p, f->body, f->body_len);
    return size;
}

int link_frame_split(const uint8_t *in, size_t len, size_t *payload_len) {
    if (len < LINK_LENGTH_BYTES) return 0;
    uint32_t n = get_u32(in);
    if (n == 0 || n > LINK_PAYLOAD_MAX) return -1;
    if (len - LINK_LENGTH_BYTES < n) return 0;
    *payload_len = n;
    return 1;
}

int link_frame_decode(const uint8_t *payload, size_t len, link_frame *f) {
    memset(f, 0, sizeof *f);
    if (len == 0 || len > LINK_PAYLOAD_MAX) return -1;
    const layout *l = layout_of(payload[0]);
    if (!l) return -1;
    size_t fixed = fixed_bytes(l->fields);
    if (len < fixed) return -1;
    unsigned fl = l->fields;
    const uint8_t *p = payload;
    f->type = *p++;
    if (fl & F_VERSION) f->version = *p++;
    if (fl & F_ROLES) f->roles = *p++;
    if (fl & F_CONN) f->conn_id = get_u64(p), p += 8;
    if (fl & F_USER) f->user_id = get_u64(p), p += 8;
    if (fl & F_DEVICE) f->device_id = get_u32(p), p += 4;
    if (fl & F_REQUEST) f->request_id = get_u64(p), p += 8;
    if (fl & F_USER_SEQ) f->user_seq = get_u64(p), p += 8;
    if (fl & F_ACK_FROM) f->ack_from = get_u64(p), p += 8;
    if (fl & F_ACK_TO) f->ack_to = get_u64(p), p += 8;
    if (fl & F_ABOUT) f->about_user = get_u64(p), p += 8;
    if (fl & F_AUTH) memcpy(f->auth, p, LINK_AUTH_FIELD), p += LINK_AUTH_FIELD;
    f->body = len > fixed ? p : NULL;
    f->body_len = len - fixed;
    if (!body_ok(l->body, f->body, f->body_len)) {
        memset(f, 0, sizeof *f);
        return -1;
    }
    if (f->type == LINK_HELLO && f->version != LINK_VERSION) return -1;
    return 0;
}
