/* test_mqtt_codec.c -- MQTT 3.1.1 / 5.0 packets written out byte by byte
 * from the OASIS specs, well-formed and malformed, through the codec. */
#include "../check.h"
#include "net/mqtt_codec.h"

#include <stdint.h>
#include <string.h>

/* Splits a whole packet into its fixed header and body; -1 if it does not parse. */
static int split(const uint8_t *p, size_t len, uint8_t *first, const uint8_t **body, size_t *blen) {
    uint32_t rem = 0;
    size_t hl = 0;
    if (mqtt_fixed_header(p, len, first, &rem, &hl) != MQTT_OK || hl + rem != len) return -1;
    *body = p + hl;
    *blen = rem;
    return 0;
}

static void remaining_length_spec_table(void) {
    /* MQTT 5.0 1.5.5 / 3.1.1 2.2.3, Table 1.1: the boundaries */
    static const struct { uint32_t v; uint8_t b[4]; size_t n; } T[] = {
        {0, {0x00}, 1}, {127, {0x7F}, 1}, {128, {0x80, 0x01}, 2}, {16383, {0xFF, 0x7F}, 2},
        {16384, {0x80, 0x80, 0x01}, 3}, {2097151, {0xFF, 0xFF, 0x7F}, 3},
        {2097152, {0x80, 0x80, 0x80, 0x01}, 4}, {268435455, {0xFF, 0xFF, 0xFF, 0x7F}, 4},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        uint8_t out[4];
        size_t n = mqtt_put_varint(out, T[i].v);
        CHECK(n == T[i].n && memcmp(out, T[i].b, n) == 0, "encode %u", T[i].v);
        CHECK(mqtt_varint_size(T[i].v) == n, "size %u", T[i].v);
        uint8_t pkt[5] = {0x30};
        memcpy(pkt + 1, T[i].b, n);
        uint8_t first = 0;
        uint32_t rem = 0;
        size_t hl = 0;
        CHECK(mqtt_fixed_header(pkt, 1 + n, &first, &rem, &hl) == MQTT_OK, "decode %u", T[i].v);
        CHECK(rem == T[i].v && hl == 1 + n && first == 0x30, "decoded %u as %u", T[i].v, rem);
        if (n > 1) {
            CHECK(mqtt_fixed_header(pkt, n, &first, &rem, &hl) == MQTT_NEED_MORE, "cut %u", T[i].v);
        }
    }
}

static void remaining_length_malformed(void) {
    uint8_t first = 0;
    uint32_t rem;
    size_t hl;
    const uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};   /* a fifth length byte */
    CHECK(mqtt_fixed_header(five, sizeof five, &first, &rem, &hl) == MQTT_RC_MALFORMED, "5-byte length taken");
    const uint8_t five_cut[] = {0x30, 0x80, 0x80, 0x80, 0x80};     /* 4 continuation bytes: already bad */
    CHECK(mqtt_fixed_header(five_cut, sizeof five_cut, &first, &rem, &hl) == MQTT_RC_MALFORMED, "4 continuations");
    const uint8_t overlong[] = {0x30, 0x80, 0x00};                 /* 0 in two bytes */
    CHECK(mqtt_fixed_header(overlong, sizeof overlong, &first, &rem, &hl) == MQTT_RC_MALFORMED, "non-minimal 0");
    const uint8_t overlong2[] = {0x30, 0xFF, 0x80, 0x00};          /* 127 in three bytes */
    CHECK(mqtt_fixed_header(overlong2, sizeof overlong2, &first, &rem, &hl) == MQTT_RC_MALFORMED, "non-minimal 127");
    const uint8_t one[] = {0x30};
    CHECK(mqtt_fixed_header(one, 1, &first, &rem, &hl) == MQTT_NEED_MORE, "1 byte");
}

/* 3.1.1 CONNECT: "MQTT" level 4, clean session, user name and password. */
static const uint8_t CONNECT_V4[] = {
    0x10, 0x1B,                                     /* CONNECT, remaining 27 */
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,           /* protocol name, level 4 */
    0xC2, 0x00, 0x3C,                               /* user+password+clean session, keep alive 60 */
    0x00, 0x04, '1', '2', '.', '1',                 /* client id "12.1" */
    0x00, 0x04, '1', '2', '.', '1',                 /* user name */
    0x00, 0x03, 'a', '.', 'b',                      /* password "a.b" */
};

static void connect_v4(void) {
    uint8_t first = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(split(CONNECT_V4, sizeof CONNECT_V4, &first, &body, &len) == 0, "framing");
    mqtt_connect c;
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_OK, "decode");
    CHECK(c.level == 4 && c.clean_start && c.keep_alive == 60 && !c.will, "header fields");
    CHECK(c.client_id.len == 4 && memcmp(c.client_id.p, "12.1", 4) == 0, "client id");
    CHECK(c.has_username && c.username.len == 4, "user name");
    CHECK(c.has_password && c.password.len == 3 && memcmp(c.password.p, "a.b", 3) == 0, "password");

    /* the encoder writes the same bytes */
    uint8_t out[64];
    mqtt_connect_args a = {.level = 4, .clean_start = true, .keep_alive = 60, .client_id = "12.1",
                           .username = "12.1", .password = (const uint8_t *)"a.b", .password_len = 3};
    size_t n = mqtt_encode_connect(out, sizeof out, &a);
    CHECK(n == sizeof CONNECT_V4 && memcmp(out, CONNECT_V4, n) == 0, "encoder differs (%zu bytes)", n);
    CHECK(mqtt_encode_connect(out, 10, &a) == 0, "overflow not reported");
}

static void connect_malformed(void) {
    uint8_t p[sizeof CONNECT_V4];
    uint8_t first = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    mqtt_connect c;
    memcpy(p, CONNECT_V4, sizeof p);
    p[9] |= 0x01;   /* reserved flag */
    CHECK(split(p, sizeof p, &first, &body, &len) == 0 && mqtt_decode_connect(first, body, len, &c) == MQTT_RC_MALFORMED,
          "reserved flag taken");
    memcpy(p, CONNECT_V4, sizeof p);
    p[8] = 3;   /* level 3 */
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_UNSUPPORTED_VERSION, "level 3 taken");
    memcpy(p, CONNECT_V4, sizeof p);
    p[4] = 'X';   /* protocol name */
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_UNSUPPORTED_VERSION, "name MXTT taken");
    memcpy(p, CONNECT_V4, sizeof p);
    p[9] = 0x42;   /* password without user name (3.1.1 3.1.2.9) */
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_MALFORMED, "password without user taken");
    memcpy(p, CONNECT_V4, sizeof p);
    p[0] = 0x11;   /* flags in the fixed header */
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_MALFORMED, "fixed-header flags taken");
    memcpy(p, CONNECT_V4, sizeof p);
    p[15] = 0xC0;   /* client id "\xC0..." : bad UTF-8 */
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_MALFORMED, "bad UTF-8 client id taken");
    memcpy(p, CONNECT_V4, sizeof p);
    p[15] = 0x00;   /* U+0000 in a string */
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_MALFORMED, "U+0000 taken");
    /* the password's length runs past the packet */
    memcpy(p, CONNECT_V4, sizeof p);
    p[sizeof p - 4] = 0x04;
    split(p, sizeof p, &first, &body, &len);
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_RC_MALFORMED, "overrunning length taken");
    /* every cut of the body is refused, never read past */
    split(CONNECT_V4, sizeof CONNECT_V4, &first, &body, &len);
    for (size_t cut = 0; cut < len; cut++)
        CHECK(mqtt_decode_connect(first, body, cut, &c) != MQTT_OK, "cut at %zu taken", cut);
}

/* 5.0 CONNECT with Authentication Method "parley-ed25519" and Session Expiry. */
static const uint8_t CONNECT_V5[] = {
    0x10, 0x27,
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x1E,   /* level 5, clean start 0, keep alive 30 */
    0x16,                                                      /* properties: 22 bytes */
    0x11, 0x00, 0x00, 0x0E, 0x10,                              /* session expiry 3600 */
    0x15, 0x00, 0x0E, 'p', 'a', 'r', 'l', 'e', 'y', '-', 'e', 'd', '2', '5', '5', '1', '9',
    0x00, 0x04, '1', '2', '.', '1',
};

static void connect_v5_properties(void) {
    uint8_t first = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    CHECK(split(CONNECT_V5, sizeof CONNECT_V5, &first, &body, &len) == 0, "framing");
    mqtt_connect c;
    CHECK(mqtt_decode_connect(first, body, len, &c) == MQTT_OK, "decode");
    CHECK(c.level == 5 && !c.clean_start && c.keep_alive == 30, "header");
    CHECK(c.props.session_expiry == 3600 && MQTT_HAS(&c.props, MQTT_PROP_SESSION_EXPIRY), "session expiry");
    CHECK(c.props.auth_method.len == 14 && memcmp(c.props.auth_method.p, "parley-ed25519", 14) == 0, "method");
    uint8_t out[64];
    mqtt_connect_args a = {.level = 5, .keep_alive = 30, .client_id = "12.1", .auth_method = "parley-ed25519",
                           .session_expiry = 3600};
    size_t n = mqtt_encode_connect(out, sizeof out, &a);
    CHECK(n == sizeof CONNECT_V5 && memcmp(out, CONNECT_V5, n) == 0, "encoder differs");
}

static void properties_checked(void) {
    mqtt_props pr;
    size_t used;
    /* Session Expiry twice: a protocol error (2.2.2.2) */
    const uint8_t dup[] = {0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2};
    CHECK(mqtt_props_decode(dup, sizeof dup, MQTT_CONNECT, &pr, &used) == MQTT_RC_PROTOCOL_ERROR, "duplicate taken");
    /* User Property twice: allowed */
    const uint8_t users[] = {0x0E, 0x26, 0, 1, 'a', 0, 1, 'b', 0x26, 0, 1, 'c', 0, 1, 'd'};
    CHECK(mqtt_props_decode(users, sizeof users, MQTT_CONNECT, &pr, &used) == MQTT_OK && pr.n_user_properties == 2 &&
          used == sizeof users, "user properties");
    /* Topic Alias in a CONNECT: not its packet */
    const uint8_t wrong[] = {0x03, 0x23, 0, 1};
    CHECK(mqtt_props_decode(wrong, sizeof wrong, MQTT_CONNECT, &pr, &used) == MQTT_RC_MALFORMED, "misplaced taken");
    /* unknown identifier 0x7F */
    const uint8_t unknown[] = {0x02, 0x7F, 0};
    CHECK(mqtt_props_decode(unknown, sizeof unknown, MQTT_CONNECT, &pr, &used) == MQTT_RC_MALFORMED, "unknown taken");
    /* Receive Maximum 0 */
    const uint8_t zero[] = {0x03, 0x21, 0, 0};
    CHECK(mqtt_props_decode(zero, sizeof zero, MQTT_CONNECT, &pr, &used) == MQTT_RC_PROTOCOL_ERROR, "0 taken");
    /* property length past the end */
    const uint8_t over[] = {0x05, 0x21, 0, 1};
    CHECK(mqtt_props_decode(over, sizeof over, MQTT_CONNECT, &pr, &used) == MQTT_RC_MALFORMED, "overrun taken");
    /* a value cut inside the property list */
    const uint8_t cut[] = {0x02, 0x21, 0};
    CHECK(mqtt_props_decode(cut, sizeof cut, MQTT_CONNECT, &pr, &used) == MQTT_RC_MALFORMED, "cut taken");
}

static void publish_both_levels(void) {
    /* 3.1.1 PUBLISH QoS 1 to "a/b", packet id 10, payload "hi" */
    const uint8_t v4[] = {0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'};
    uint8_t first = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    mqtt_publish p;
    CHECK(split(v4, sizeof v4, &first, &body, &len) == 0, "framing");
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_OK, "decode v4");
    CHECK(p.qos == 1 && p.packet_id == 10 && p.topic.len == 3 && p.payload.len == 2 &&
          memcmp(p.payload.p, "hi", 2) == 0, "v4 fields");
    uint8_t out[32];
    size_t h = mqtt_encode_publish_head(out, sizeof out, 4, "a/b", 3, 1, false, 10, 2);
    CHECK(h == sizeof v4 - 2 && memcmp(out, v4, h) == 0, "v4 head encoder");
    /* 5.0: the same with an empty property list */
    const uint8_t v5[] = {0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 0x00, 'h', 'i'};
    CHECK(split(v5, sizeof v5, &first, &body, &len) == 0 && mqtt_decode_publish(5, first, body, len, &p) == MQTT_OK,
          "decode v5");
    CHECK(p.payload.len == 2 && memcmp(p.payload.p, "hi", 2) == 0, "v5 payload");
    h = mqtt_encode_publish_head(out, sizeof out, 5, "a/b", 3, 1, false, 10, 2);
    CHECK(h == sizeof v5 - 2 && memcmp(out, v5, h) == 0, "v5 head encoder");
    CHECK(mqtt_encode_publish_head(out, 8, 5, "a/b", 3, 1, false, 10, 2) == 0, "overflow not reported");
}

static void publish_malformed(void) {
    uint8_t first = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    mqtt_publish p;
    const uint8_t qos3[] = {0x36, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A};
    split(qos3, sizeof qos3, &first, &body, &len);
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_RC_MALFORMED, "QoS 3 taken");
    const uint8_t qos2[] = {0x34, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A};
    split(qos2, sizeof qos2, &first, &body, &len);
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_OK && p.qos == 2, "QoS 2 decodes (refused above)");
    const uint8_t wild[] = {0x30, 0x05, 0x00, 0x03, 'a', '/', '#'};
    split(wild, sizeof wild, &first, &body, &len);
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_RC_TOPIC_NAME_INVALID, "wildcard topic taken");
    const uint8_t bad_utf8[] = {0x30, 0x05, 0x00, 0x03, 'a', 0xED, 0xA0};   /* a cut surrogate */
    split(bad_utf8, sizeof bad_utf8, &first, &body, &len);
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_RC_MALFORMED, "bad UTF-8 topic taken");
    const uint8_t pid0[] = {0x32, 0x07, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x00};
    split(pid0, sizeof pid0, &first, &body, &len);
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_RC_MALFORMED, "packet id 0 taken");
    const uint8_t dup0[] = {0x38, 0x05, 0x00, 0x03, 'a', '/', 'b'};
    split(dup0, sizeof dup0, &first, &body, &len);
    CHECK(mqtt_decode_publish(4, first, body, len, &p) == MQTT_RC_MALFORMED, "DUP on QoS 0 taken");
    const uint8_t empty_topic[] = {0x30, 0x03, 0x00, 0x00, 0x00};
    split(empty_topic, sizeof empty_topic, &first, &body, &len);
    CHECK(mqtt_decode_publish(5, first, body, len, &p) == MQTT_RC_PROTOCOL_ERROR, "empty topic taken");
}

static void subscribe_and_acks(void) {
    /* 3.1.1 SUBSCRIBE id 1: "p/12.1/ev" QoS 1, "#" QoS 0 */
    const uint8_t sub[] = {0x82, 0x12, 0x00, 0x01, 0x00, 0x09, 'p', '/', '1', '2', '.', '1', '/', 'e', 'v', 0x01,
                           0x00, 0x01, '#', 0x00};
    uint8_t first = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    mqtt_subscribe s;
    CHECK(split(sub, sizeof sub, &first, &body, &len) == 0, "framing");
    CHECK(mqtt_decode_subscribe(4, first, body, len, &s) == MQTT_OK && s.n_filters == 2 && s.packet_id == 1,
          "decode");
    size_t pos = 0;
    mqtt_bytes f;
    uint8_t o;
    CHECK(mqtt_next_filter(&s, &pos, &f, &o) && f.len == 9 && o == 1, "first filter");
    CHECK(mqtt_next_filter(&s, &pos, &f, &o) && f.len == 1 && f.p[0] == '#' && o == 0, "second filter");
    CHECK(!mqtt_next_filter(&s, &pos, &f, &o), "a third filter");
    uint8_t out[64];
    const char *filters[] = {"p/12.1/ev", "#"};
    const uint8_t opts[] = {1, 0};
    size_t n = mqtt_encode_subscribe(out, sizeof out, 4, false, 1, filters, opts, 2);
    CHECK(n == sizeof sub && memcmp(out, sub, n) == 0, "encoder differs");
    /* reserved bits in the options (3.1.1) and wrong fixed-header flags */
    uint8_t bad[sizeof sub];
    memcpy(bad, sub, sizeof bad);
    bad[15] = 0x05;
    split(bad, sizeof bad, &first, &body, &len);
    CHECK(mqtt_decode_subscribe(4, first, body, len, &s) == MQTT_RC_MALFORMED, "reserved option bits taken");
    memcpy(bad, sub, sizeof bad);
    bad[0] = 0x80;
    split(bad, sizeof bad, &first, &body, &len);
    CHECK(mqtt_decode_subscribe(4, first, body, len, &s) == MQTT_RC_MALFORMED, "flags 0000 taken");
    const uint8_t none[] = {0x82, 0x02, 0x00, 0x01};
    split(none, sizeof none, &first, &body, &len);
    CHECK(mqtt_decode_subscribe(4, first, body, len, &s) == MQTT_RC_MALFORMED, "no filters taken");

    /* SUBACK: 3.1.1 codes 0x01, 0x80; 5.0 with an empty property list */
    const uint8_t codes[] = {0x01, 0x80};
    const uint8_t suback4[] = {0x90, 0x04, 0x00, 0x01, 0x01, 0x80};
    n = mqtt_encode_suback(out, sizeof out, 4, MQTT_SUBACK, 1, codes, 2);
    CHECK(n == sizeof suback4 && memcmp(out, suback4, n) == 0, "SUBACK v4");
    const uint8_t suback5[] = {0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0x80};
    n = mqtt_encode_suback(out, sizeof out, 5, MQTT_SUBACK, 1, codes, 2);
    CHECK(n == sizeof suback5 && memcmp(out, suback5, n) == 0, "SUBACK v5");
    mqtt_suback sa;
    CHECK(mqtt_decode_suback(5, out[0], out + 2, n - 2, &sa) == MQTT_OK && sa.codes.len == 2 &&
          sa.codes.p[1] == 0x80, "SUBACK decode");

    /* PUBACK: 3.1.1 is exactly 2 bytes; 5.0 may add a reason code and properties */
    const uint8_t puback[] = {0x40, 0x02, 0x00, 0x0A};
    mqtt_ack a;
    CHECK(mqtt_decode_ack(4, puback[0], puback + 2, 2, &a) == MQTT_OK && a.packet_id == 10, "PUBACK v4");
    const uint8_t puback5[] = {0x40, 0x04, 0x00, 0x0A, 0x10, 0x00};
    CHECK(mqtt_decode_ack(5, puback5[0], puback5 + 2, 4, &a) == MQTT_OK && a.reason == 0x10, "PUBACK v5");
    CHECK(mqtt_decode_ack(4, puback5[0], puback5 + 2, 4, &a) == MQTT_RC_MALFORMED, "long PUBACK v4 taken");
    n = mqtt_encode_ack(out, sizeof out, 4, MQTT_PUBACK, 10, 0);
    CHECK(n == 4 && memcmp(out, puback, 4) == 0, "PUBACK encoder");
    n = mqtt_encode_ack(out, sizeof out, 5, MQTT_PUBACK, 10, MQTT_RC_NOT_AUTHORIZED);
    CHECK(n == 5 && out[1] == 3 && out[4] == 0x87, "PUBACK 0x87 encoder");
}

static void connack_disconnect_auth_ping(void) {
    uint8_t out[128];
    /* 3.1.1 CONNACK: 20 02 00 rc */
    size_t n = mqtt_encode_connack(out, sizeof out, 4, true, MQTT_V4_BAD_USER_PASS, NULL);
    const uint8_t ca4[] = {0x20, 0x02, 0x01, 0x04};
    CHECK(n == 4 && memcmp(out, ca4, 4) == 0, "CONNACK v4");
    mqtt_connack_info info = {.max_packet_size = 65536, .receive_maximum = 64, .send_limits = true};
    n = mqtt_encode_connack(out, sizeof out, 5, false, 0, &info);
    mqtt_connack ca;
    CHECK(n > 4 && mqtt_decode_connack(5, out[0], out + 2, n - 2, &ca) == MQTT_OK, "CONNACK v5 round trip");
    CHECK(ca.props.max_packet_size == 65536 && ca.props.receive_maximum == 64 && ca.props.max_qos == 1 &&
          MQTT_HAS(&ca.props, MQTT_PROP_RETAIN_AVAILABLE) && ca.props.retain_available == 0, "CONNACK v5 props");
    /* 5.0 DISCONNECT 0x95 with no properties: E0 02 95 00 */
    n = mqtt_encode_disconnect(out, sizeof out, MQTT_RC_PACKET_TOO_LARGE, NULL);
    const uint8_t dc[] = {0xE0, 0x02, 0x95, 0x00};
    CHECK(n == 4 && memcmp(out, dc, 4) == 0, "DISCONNECT");
    mqtt_reason_packet rp;
    CHECK(mqtt_decode_disconnect(5, dc[0], dc + 2, 2, &rp) == MQTT_OK && rp.reason == 0x95, "DISCONNECT decode");
    CHECK(mqtt_decode_disconnect(4, dc[0], dc + 2, 2, &rp) == MQTT_RC_MALFORMED, "v4 DISCONNECT with a body");
    /* AUTH 0x18 with method and 2 bytes of data */
    const uint8_t data[2] = {0xAB, 0xCD};
    n = mqtt_encode_auth(out, sizeof out, MQTT_RC_CONTINUE_AUTH, "m", data, 2);
    const uint8_t auth[] = {0xF0, 0x0B, 0x18, 0x09, 0x15, 0x00, 0x01, 'm', 0x16, 0x00, 0x02, 0xAB, 0xCD};
    CHECK(n == sizeof auth && memcmp(out, auth, n) == 0, "AUTH encoder");
    CHECK(mqtt_decode_auth(auth[0], auth + 2, n - 2, &rp) == MQTT_OK && rp.reason == 0x18 &&
          rp.props.auth_data.len == 2 && rp.props.auth_method.len == 1, "AUTH decode");
    /* Authentication Data twice in an AUTH */
    const uint8_t auth_dup[] = {0xF0, 0x0A, 0x18, 0x08, 0x16, 0x00, 0x01, 0xAB, 0x16, 0x00, 0x01, 0xCD};
    CHECK(mqtt_decode_auth(auth_dup[0], auth_dup + 2, 10, &rp) == MQTT_RC_PROTOCOL_ERROR, "duplicate auth data");
    const uint8_t ping[] = {0xC0, 0x00};
    CHECK(mqtt_decode_empty(ping[0], 0) == MQTT_OK, "PINGREQ");
    CHECK(mqtt_decode_empty(0xC1, 0) == MQTT_RC_MALFORMED, "PINGREQ flags");
    CHECK(mqtt_decode_empty(0xC0, 1) == MQTT_RC_MALFORMED, "PINGREQ body");
    CHECK(mqtt_encode_empty(out, sizeof out, MQTT_PINGRESP) == 2 && out[0] == 0xD0 && out[1] == 0, "PINGRESP");
}

int main(void) {
    RUN(remaining_length_spec_table);
    RUN(remaining_length_malformed);
    RUN(connect_v4);
    RUN(connect_malformed);
    RUN(connect_v5_properties);
    RUN(properties_checked);
    RUN(publish_both_levels);
    RUN(publish_malformed);
    RUN(subscribe_and_acks);
    RUN(connack_disconnect_auth_ping);
    CHECK_EXIT();
}
