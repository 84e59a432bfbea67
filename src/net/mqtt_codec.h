/* mqtt_codec.h -- MQTT 3.1.1 (protocol level 4) and 5.0 (level 5) packets.
 *
 * Pure functions over byte buffers. Decoding never allocates: strings and
 * binary fields point into the caller's buffer, which must outlive the
 * decoded struct. Every length is checked against what is left before it is
 * used; UTF-8 strings are validated (RFC 3629, and no U+0000 as both specs
 * require); the remaining length is at most 4 bytes and must be minimal
 * (the specs allow only the shortest form in practice: a longer encoding of
 * the same value is refused, so one packet has one encoding). MQTT 5
 * properties are checked against the packet they are in, and a property the
 * spec allows once must appear once.
 *
 * Decoders return MQTT_OK, or a reason code >= 0x80 (MQTT_RC_MALFORMED or
 * MQTT_RC_PROTOCOL_ERROR mostly) saying why the packet is refused; the
 * caller decides between a DISCONNECT with that code (level 5) and a plain
 * close (level 4). */
#ifndef PARLEY_NET_MQTT_CODEC_H
#define PARLEY_NET_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mqtt_packet_type {
    MQTT_CONNECT = 1, MQTT_CONNACK = 2, MQTT_PUBLISH = 3, MQTT_PUBACK = 4, MQTT_PUBREC = 5,
    MQTT_PUBREL = 6, MQTT_PUBCOMP = 7, MQTT_SUBSCRIBE = 8, MQTT_SUBACK = 9, MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11, MQTT_PINGREQ = 12, MQTT_PINGRESP = 13, MQTT_DISCONNECT = 14, MQTT_AUTH = 15,
};

/* MQTT 5 reason codes (the ones parley uses). */
enum mqtt_reason {
    MQTT_OK = 0x00,
    MQTT_RC_SUCCESS = 0x00,
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_CONTINUE_AUTH = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPL_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_INVALID = 0x85,
    MQTT_RC_BAD_USER_PASS = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
};

/* MQTT 3.1.1 CONNACK return codes. */
enum mqtt_v4_connack {
    MQTT_V4_ACCEPTED = 0, MQTT_V4_BAD_VERSION = 1, MQTT_V4_ID_REJECTED = 2,
    MQTT_V4_UNAVAILABLE = 3, MQTT_V4_BAD_USER_PASS = 4, MQTT_V4_NOT_AUTHORIZED = 5,
};

enum {
    MQTT_MAX_FIXED_HEADER = 5,           /* type byte + 4-byte remaining length */
    MQTT_MAX_REMAINING = 268435455,      /* 0xFF 0xFF 0xFF 0x7F */
    MQTT_NEED_MORE = -1,                 /* mqtt_fixed_header: not all there yet */
};

typedef struct mqtt_bytes {
    const uint8_t *p;   /* into the decoded buffer; NULL when absent */
    uint32_t len;
} mqtt_bytes;

/* MQTT 5 properties of one packet. `seen` has bit (id & 63) set for each
 * property that was present (ids are all < 64). */
typedef struct mqtt_props {
    uint64_t seen;
    uint32_t session_expiry;        /* 0x11 */
    uint32_t max_packet_size;       /* 0x27 */
    uint32_t message_expiry;        /* 0x02 */
    uint32_t will_delay;            /* 0x18 */
    uint32_t subscription_id;       /* 0x0B (the first) */
    uint16_t receive_maximum;       /* 0x21 */
    uint16_t topic_alias_maximum;   /* 0x22 */
    uint16_t topic_alias;           /* 0x23 */
    uint16_t server_keep_alive;     /* 0x13 */
    uint8_t payload_format;         /* 0x01 */
    uint8_t request_problem_info;   /* 0x17 */
    uint8_t request_response_info;  /* 0x19 */
    uint8_t max_qos;                /* 0x24 */
    uint8_t retain_available;       /* 0x25 */
    uint32_t n_user_properties;     /* 0x26, any number */
    mqtt_bytes auth_method;         /* 0x15 */
    mqtt_bytes auth_data;           /* 0x16 */
    mqtt_bytes content_type;        /* 0x03 */
    mqtt_bytes response_topic;      /* 0x08 */
    mqtt_bytes correlation_data;    /* 0x09 */
    mqtt_bytes reason_string;       /* 0x1F */
    mqtt_bytes assigned_client_id;  /* 0x12 */
} mqtt_props;

#define MQTT_HAS(props, id) (((props)->seen >> ((id) & 63)) & 1)

enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01, MQTT_PROP_MESSAGE_EXPIRY = 0x02, MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08, MQTT_PROP_CORRELATION_DATA = 0x09, MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11, MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12, MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15, MQTT_PROP_AUTH_DATA = 0x16, MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18, MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19, MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C, MQTT_PROP_REASON_STRING = 0x1F, MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22, MQTT_PROP_TOPIC_ALIAS = 0x23, MQTT_PROP_MAX_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25, MQTT_PROP_USER_PROPERTY = 0x26, MQTT_PROP_MAX_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28, MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* The will of a CONNECT is a packet-local pseudo type for property checks. */
enum { MQTT_WILL_PROPS = 0 };

/* ---------------------------------------------------------------- framing */

/* The fixed header at p[0..len). MQTT_OK with the first byte, the remaining
 * length and the header's size; MQTT_NEED_MORE when the remaining length is
 * not all there yet; MQTT_RC_MALFORMED for a 5th length byte or a
 * non-minimal encoding (e.g. 0x80 0x00). */
int mqtt_fixed_header(const uint8_t *p, size_t len, uint8_t *first, uint32_t *remaining, size_t *header_len);
/* Writes v (<= MQTT_MAX_REMAINING) as a variable byte integer; returns its size (1..4). */
size_t mqtt_put_varint(uint8_t *p, uint32_t v);
size_t mqtt_varint_size(uint32_t v);

/* A UTF-8 string as MQTT allows it: valid UTF-8 and no U+0000. */
bool mqtt_utf8_valid(const uint8_t *s, size_t len);

/* Decodes MQTT 5 properties (property length, then properties) for packet
 * `type` (MQTT_WILL_PROPS for a will). *used: bytes taken. */
int mqtt_props_decode(const uint8_t *p, size_t len, int type, mqtt_props *out, size_t *used);

/* ---------------------------------------------------------------- decode
 * body/len: the packet after its fixed header (len = remaining length);
 * first: the fixed header's first byte (type and flags). */

typedef struct mqtt_connect {
    uint8_t level;              /* 4 or 5 */
    bool clean_start;
    bool will;
    uint8_t will_qos;
    bool will_retain;
    bool has_username, has_password;
    uint16_t keep_alive;        /* seconds; 0: none */
    mqtt_props props;           /* level 5 */
    mqtt_bytes client_id;
    mqtt_props will_props;      /* level 5, with a will */
    mqtt_bytes will_topic, will_payload;
    mqtt_bytes username, password;
} mqtt_connect;

/* MQTT_RC_UNSUPPORTED_VERSION for a protocol name or level other than
 * "MQTT" 4 or 5 (the caller answers with the right CONNACK). */
int mqtt_decode_connect(uint8_t first, const uint8_t *body, size_t len, mqtt_connect *out);

typedef struct mqtt_publish {
    uint8_t qos;
    bool dup, retain;
    uint16_t packet_id;         /* qos > 0 */
    mqtt_bytes topic;
    mqtt_props props;           /* level 5 */
    mqtt_bytes payload;
} mqtt_publish;

/* QoS 3 is malformed; QoS 2 decodes (the caller refuses it with 0x9B).
 * The topic must be valid UTF-8 without wildcards ('+', '#'); at level 5
 * an empty topic needs a Topic Alias. */
int mqtt_decode_publish(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_publish *out);

/* PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, and at level 5 an optional
 * reason code and properties. */
typedef struct mqtt_ack {
    uint16_t packet_id;
    uint8_t reason;
    mqtt_props props;
} mqtt_ack;
int mqtt_decode_ack(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_ack *out);

/* SUBSCRIBE and UNSUBSCRIBE: the header, then the topic filters one at a
 * time with mqtt_next_filter (the decode checks them all first, so the
 * iteration cannot fail). */
typedef struct mqtt_subscribe {
    uint16_t packet_id;
    mqtt_props props;
    const uint8_t *filters;     /* the payload */
    size_t filters_len;
    uint32_t n_filters;
    bool unsubscribe;           /* no options byte after each filter */
} mqtt_subscribe;
int mqtt_decode_subscribe(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_subscribe *out);
int mqtt_decode_unsubscribe(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_subscribe *out);
/* *pos starts at 0. Returns false after the last filter. options: the
 * subscription options byte (0 for UNSUBSCRIBE). */
bool mqtt_next_filter(const mqtt_subscribe *s, size_t *pos, mqtt_bytes *filter, uint8_t *options);

/* DISCONNECT and AUTH: an optional reason code and properties (level 5;
 * AUTH exists only at level 5). */
typedef struct mqtt_reason_packet {
    uint8_t reason;
    mqtt_props props;
} mqtt_reason_packet;
int mqtt_decode_disconnect(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_reason_packet *out);
int mqtt_decode_auth(uint8_t first, const uint8_t *body, size_t len, mqtt_reason_packet *out);

/* PINGREQ/PINGRESP and other packets with no body: flags 0, length 0. */
int mqtt_decode_empty(uint8_t first, size_t len);

/* CONNACK (for clients and tests). */
typedef struct mqtt_connack {
    bool session_present;
    uint8_t reason;             /* level 4: the return code */
    mqtt_props props;
} mqtt_connack;
int mqtt_decode_connack(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_connack *out);
/* SUBACK/UNSUBACK (for clients and tests): codes point into body. */
typedef struct mqtt_suback {
    uint16_t packet_id;
    mqtt_props props;
    mqtt_bytes codes;
} mqtt_suback;
int mqtt_decode_suback(uint8_t level, uint8_t first, const uint8_t *body, size_t len, mqtt_suback *out);

/* ---------------------------------------------------------------- encode
 * Each writes a whole packet into dst[0..cap) and returns its size, or 0
 * when cap is too small. */

/* What a server says in a level-5 CONNACK. */
typedef struct mqtt_connack_info {
    uint32_t max_packet_size;       /* 0: not sent */
    uint16_t receive_maximum;       /* 0: not sent */
    uint16_t server_keep_alive;     /* 0: not sent */
    bool send_limits;               /* Maximum QoS 1, Retain Available 0, no shared subscriptions,
                                       no subscription identifiers, no topic aliases */
    const char *auth_method;        /* NULL: not sent */
    const char *reason_string;      /* NULL: not sent */
} mqtt_connack_info;
size_t mqtt_encode_connack(uint8_t *dst, size_t cap, uint8_t level, bool session_present, uint8_t reason,
                           const mqtt_connack_info *info);

/* PUBLISH: the fixed header, topic and packet id (and an empty property
 * list at level 5) for a payload of payload_len bytes the caller copies
 * right after. Returns the header size, 0 when it does not fit in cap. */
size_t mqtt_encode_publish_head(uint8_t *dst, size_t cap, uint8_t level, const char *topic, size_t topic_len,
                                uint8_t qos, bool retain, uint16_t packet_id, size_t payload_len);
enum { MQTT_PUBLISH_HEAD_MAX = 1 + 4 + 2 + 2 + 1 };   /* + the topic */

/* PUBACK (and PUBREC/PUBREL/PUBCOMP by type): level 5 with a reason code
 * other than success carries it. */
size_t mqtt_encode_ack(uint8_t *dst, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id, uint8_t reason);
/* SUBACK or UNSUBACK (level 4 UNSUBACK has no codes). */
size_t mqtt_encode_suback(uint8_t *dst, size_t cap, uint8_t level, uint8_t type, uint16_t packet_id,
                          const uint8_t *codes, size_t n);
size_t mqtt_encode_empty(uint8_t *dst, size_t cap, uint8_t type);   /* PINGREQ, PINGRESP, level-4 DISCONNECT */
/* Level 5 DISCONNECT with a reason code (and a reason string if not NULL). */
size_t mqtt_encode_disconnect(uint8_t *dst, size_t cap, uint8_t reason, const char *reason_string);
/* AUTH with a reason code, method and data. */
size_t mqtt_encode_auth(uint8_t *dst, size_t cap, uint8_t reason, const char *method, const uint8_t *data,
                        size_t data_len);

/* Client side (tests, tools). */
typedef struct mqtt_connect_args {
    uint8_t level;
    bool clean_start;
    uint16_t keep_alive;
    const char *client_id;
    const char *username;           /* NULL: none */
    const uint8_t *password;        /* NULL: none */
    size_t password_len;
    const char *auth_method;        /* level 5; NULL: none */
    uint32_t session_expiry;        /* level 5; 0: not sent */
    uint32_t max_packet_size;       /* level 5; 0: not sent */
} mqtt_connect_args;
size_t mqtt_encode_connect(uint8_t *dst, size_t cap, const mqtt_connect_args *a);
/* SUBSCRIBE (options = requested QoS) or UNSUBSCRIBE of n filters. */
size_t mqtt_encode_subscribe(uint8_t *dst, size_t cap, uint8_t level, bool unsubscribe, uint16_t packet_id,
                             const char *const *filters, const uint8_t *options, size_t n);

#endif
