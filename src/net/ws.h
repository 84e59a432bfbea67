/* ws.h -- WebSocket framing (RFC 6455), shared by server and client.
 *
 * The reader turns bytes into whole messages: it unmasks, reassembles
 * fragments, answers nothing itself, and reports a protocol violation with
 * the close code the peer must get (1002 protocol error, 1007 invalid UTF-8
 * in a text message, 1009 message too big). An unfragmented frame is handed
 * back in place (no copy); only fragmented messages are copied, into a buffer
 * the reader owns and frees. */
#ifndef PARLEY_NET_WS_H
#define PARLEY_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA,
};

enum {
    WS_CLOSE_NORMAL = 1000, WS_CLOSE_GOING_AWAY = 1001, WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003, WS_CLOSE_NO_STATUS = 1005, WS_CLOSE_ABNORMAL = 1006,
    WS_CLOSE_INVALID_DATA = 1007, WS_CLOSE_POLICY = 1008, WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011, WS_CLOSE_RESTART = 1012, WS_CLOSE_TRY_AGAIN = 1013,
};

enum { WS_MAX_HEADER = 14 }; /* 2 + 8 (64-bit length) + 4 (mask) */

/* base64(SHA-1(key || "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), NUL-terminated
 * into out (29 bytes incl. NUL). Returns 0, or -1 if key is not a base64
 * encoding of 16 bytes (RFC 6455 4.2.1). */
int ws_accept_key(const char *client_key, char out[29]);

/* 16 random bytes, base64: a client's Sec-WebSocket-Key. out: 25 bytes. */
void ws_make_client_key(char out[25]);

/* Writes a frame header for a payload of len bytes into out (WS_MAX_HEADER
 * bytes of room) and returns its length. mask == NULL: unmasked (server to
 * client); otherwise the 4 mask bytes are written and the caller must mask
 * the payload with ws_mask(). */
size_t ws_write_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                       const uint8_t mask[4]);

/* XORs data in place with mask; offset is the position of data[0] within
 * the frame payload (so a payload can be masked in pieces). */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* The payload of a close frame: 2-byte big-endian code + reason (truncated to
 * fit 123 bytes). out: 125 bytes. Returns the payload length. */
size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason);

/* Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF). */
bool ws_utf8_valid(const uint8_t *s, size_t len);

typedef enum ws_kind {
    WS_MSG_TEXT = 1, WS_MSG_BINARY, WS_MSG_PING, WS_MSG_PONG, WS_MSG_CLOSE,
} ws_kind;

typedef struct ws_message {
    ws_kind kind;
    uint8_t *data;       /* payload, unmasked; valid until the next feed */
    size_t len;
    uint16_t close_code; /* WS_MSG_CLOSE: the peer's code (1005 if none);
                            on error: the code to close with */
} ws_message;

/* A fragmented message being reassembled: its lengths live with its bytes,
 * so a reader with none holds one NULL pointer. */
typedef struct ws_frag {
    uint32_t len, cap;
    uint8_t data[];
} ws_frag;

/* 16 bytes: a server holds one per connection, idle or not (lengths are
 * 32-bit: a message is bounded by max_message, itself at most
 * WS_MAX_MESSAGE_LIMIT). */
typedef struct ws_reader {
    ws_frag *frag;         /* NULL: no fragment buffer */
    uint32_t max_message;  /* whole-message limit -> 1009 */
    bool expect_masked;    /* server: true (clients must mask); client: false */
    uint8_t frag_opcode;   /* 0 when no fragmented message is open */
} ws_reader;

/* The fragment buffer's room and length (0 when there is none). */
static inline uint32_t ws_reader_frag_cap(const ws_reader *r) { return r->frag ? r->frag->cap : 0; }
static inline uint32_t ws_reader_frag_len(const ws_reader *r) { return r->frag ? r->frag->len : 0; }

enum { WS_MAX_MESSAGE_LIMIT = 0x7fffffff };   /* larger max_message values are clamped to it */

void ws_reader_init(ws_reader *r, bool expect_masked, size_t max_message);
void ws_reader_free(ws_reader *r);   /* releases the fragment buffer */

enum { WS_NEED_MORE = 0, WS_READY = 1, WS_ERROR = -1 };

/* Consumes frames from buf[0..len) up to and including the first one that
 * completes a message or is a control frame (non-final fragments are
 * absorbed on the way), so WS_NEED_MORE means no complete frame is left.
 * buf may be modified: payloads are unmasked in place. *consumed is set to
 * the bytes used (possibly 0).
 * Returns WS_READY with *out filled when a whole message or a control frame is
 * available, WS_NEED_MORE when the caller must feed more bytes (after
 * dropping *consumed bytes), or WS_ERROR with out->close_code set. Checks:
 * reserved bits, unknown opcodes, masking as expected, control frames
 * unfragmented and <= 125 bytes, continuation without a start, new data frame
 * inside a fragmented message, 64-bit lengths with the top bit set, minimal
 * length encodings are NOT required, close payload of 1 byte or an invalid
 * close code, UTF-8 of text messages and close reasons, max_message. */
int ws_reader_feed(ws_reader *r, uint8_t *buf, size_t len, size_t *consumed,
                   ws_message *out);

#endif
