/* link_frame.h -- the frames of the node link (link.h): what crosses
 * between two parley nodes. Internal, not protobuf: fixed big-endian fields
 * and one opaque body, so a frame is checked in one pass with no
 * allocation.
 *
 * On the wire a connection is a stream of frames, each a 4-byte big-endian
 * payload length and the payload; a batch is many frames in one write.
 * A payload is a type byte, that type's fixed fields in the order of
 * struct link_frame (only the fields the type has, see link_frame.c), then
 * the body to the end of the payload.
 *
 *   HELLO          first frame each side sends on a connection: version,
 *                  roles, auth = a fresh random nonce, body = the sender's
 *                  node name (1 to 63 token bytes)
 *   PROOF          second frame each side sends: auth = its HMAC over
 *                  both nonces and names (link_auth.h); nothing else is
 *                  accepted before the peer's PROOF verifies
 *   REQUEST        gateway -> chat: a device's request (chat_request
 *                  CHAT_FRAME): conn_id (the gateway's), user_id,
 *                  device_id, request_id, body = the encoded Frame
 *   ACK            gateway -> chat: a device's cursor over (ack_from, ack_to]
 *   ANSWER         chat -> gateway (outbox answer): conn_id, user_id and
 *                  device_id (signed in as; 0 when not a sign-in), body =
 *                  the response frame
 *   PUSH           chat -> gateway (outbox push): conn_id, body = frame
 *   DELIVER        fan-out -> gateway (outbox deliver): conn_id, user_id,
 *                  user_seq, body = the encoded Message
 *   CLOSE_DEVICE   user_id, device_id
 *   DROP_PRESENCE  user_id, about_user
 *
 * A length of 0 or past LINK_PAYLOAD_MAX, an unknown type, a short fixed
 * part, a body where the type has none (or none where it needs one) is
 * malformed: the reader closes that connection (the peer reconnects). */
#ifndef PARLEY_CLUSTER_LINK_FRAME_H
#define PARLEY_CLUSTER_LINK_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum link_frame_type {
    LINK_HELLO = 1,
    LINK_REQUEST = 2,
    LINK_ACK = 3,
    LINK_ANSWER = 4,
    LINK_PUSH = 5,
    LINK_DELIVER = 6,
    LINK_CLOSE_DEVICE = 7,
    LINK_DROP_PRESENCE = 8,
    LINK_PROOF = 9,
};

enum {
    LINK_VERSION = 2,                /* 2: HELLO carries a nonce, PROOF follows */
    LINK_LENGTH_BYTES = 4,
    LINK_NAME_MAX = 63,              /* node name bytes in HELLO */
    LINK_BODY_MAX = 8u << 20,        /* one body: a frame or a message, past any --max-message */
    LINK_AUTH_FIELD = 32,            /* HELLO's nonce, PROOF's HMAC (link_auth.h LINK_AUTH_BYTES) */
    LINK_FIXED_MAX = 1 + 2 + 8 * 7 + 4 + LINK_AUTH_FIELD,  /* type and every fixed field */
    LINK_PAYLOAD_MAX = LINK_FIXED_MAX + LINK_BODY_MAX,
};

typedef struct link_frame {
    uint8_t type;
    uint8_t version;      /* HELLO */
    uint8_t roles;        /* HELLO: cluster_config.h CLUSTER_ROLE_* bits */
    uint64_t conn_id;     /* REQUEST, ACK, ANSWER, PUSH, DELIVER */
    uint64_t user_id;     /* REQUEST, ACK, ANSWER, DELIVER, CLOSE_DEVICE, DROP_PRESENCE */
    uint32_t device_id;   /* REQUEST, ACK, ANSWER, CLOSE_DEVICE */
    uint64_t request_id;  /* REQUEST */
    uint64_t user_seq;    /* DELIVER */
    uint64_t ack_from;    /* ACK */
    uint64_t ack_to;      /* ACK */
    uint64_t about_user;  /* DROP_PRESENCE */
    uint8_t auth[LINK_AUTH_FIELD];  /* HELLO: nonce; PROOF: HMAC */
    const uint8_t *body;  /* not owned: the caller's bytes, or the decoded payload's */
    size_t body_len;
} link_frame;

/* Bytes f takes on the wire, its length prefix included; 0 when f is not
 * a valid frame (unknown type, body missing, present where it has none,
 * or over its bound). */
size_t link_frame_size(const link_frame *f);
/* Writes f (length prefix included) into out; its size, or 0 when f is not
 * valid or cap is smaller than that. */
size_t link_frame_encode(const link_frame *f, uint8_t *out, size_t cap);

/* Looks at the front of a received stream: 1 when a whole frame is there
 * (its payload is in[LINK_LENGTH_BYTES .. LINK_LENGTH_BYTES + *payload_len)),
 * 0 when more bytes are needed, -1 when the length is 0 or past
 * LINK_PAYLOAD_MAX (the connection is to be closed). */
int link_frame_split(const uint8_t *in, size_t len, size_t *payload_len);
/* Parses one payload; f->body points into it. 0, or -1 when malformed. */
int link_frame_decode(const uint8_t *payload, size_t len, link_frame *f);

#endif
