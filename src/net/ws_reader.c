/* ws_reader.c -- turns received bytes into whole WebSocket messages and
 * control frames (RFC 6455 5.2-5.5), detecting every protocol violation the
 * peer can commit and naming the close code it must get. */
#include "net/ws.h"

#include <stdlib.h>
#include <string.h>

enum { FRAG_MIN_CAP = 256 };

typedef struct frame_head {
    bool fin;
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t payload_len;
    size_t head_len; /* bytes before the payload */
} frame_head;

void ws_reader_init(ws_reader *r, bool expect_masked, size_t max_message) {
    memset(r, 0, sizeof *r);
    r->expect_masked = expect_masked;
    r->max_message = max_message > WS_MAX_MESSAGE_LIMIT ? WS_MAX_MESSAGE_LIMIT : (uint32_t)max_message;
}

void ws_reader_free(ws_reader *r) {
    free(r->frag);
    r->frag = NULL;
    r->frag_opcode = 0;
}

/* RFC 6455 7.4: codes a peer may put in a close frame. 1012-1014 were
 * registered with IANA after the RFC (service restart, try again later, bad
 * gateway) and parley's own gateways send 1012 and 1013, so they are valid
 * here. 1004 is reserved; 1005, 1006 and 1015 must never be sent. */
static bool close_code_valid(uint16_t code) {
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}

static bool is_control(uint8_t opcode) { return (opcode & 0x08) != 0; }

/* Parses the header at buf. Returns 1 with *h filled, 0 if more bytes are
 * needed, -1 with *code set on a violation. Everything decidable from the
 * header is checked here, before any payload is waited for: in particular a
 * declared length over max_message fails at once, so nobody buffers it. */
static int parse_head(const ws_reader *r, const uint8_t *buf, size_t len,
                      frame_head *h, uint16_t *code) {
    *code = WS_CLOSE_PROTOCOL;
    if (len < 2)
        return 0;
    uint8_t b0 = buf[0], b1 = buf[1];
    if (b0 & 0x70)
        return -1; /* RSV1-3: no extension is ever negotiated */
    h->fin = (b0 & 0x80) != 0;
    h->opcode = b0 & 0x0F;
    switch (h->opcode) {
    case WS_OP_CONT: case WS_OP_TEXT: case WS_OP_BINARY:
    case WS_OP_CLOSE: case WS_OP_PING: case WS_OP_PONG:
        break;
    default:
        return -1;
    }
    h->masked = (b1 & 0x80) != 0;
    if (h->masked != r->expect_masked)
        return -1; /* 5.1: clients always mask, servers never */
    uint8_t len7 = b1 & 0x7F;
    if (is_control(h->opcode)) {
        if (!h->fin || len7 > 125)
            return -1; /* 5.5: control frames are whole and small */
    } else if (h->opcode == WS_OP_CONT) {
        if (r->frag_opcode == 0)
            return -1; /* continuation of nothing */
    } else if (r->frag_opcode != 0) {
        return -1; /* a new message while a fragmented one is open */
    }

    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (len < 2 + ext)
        return 0;
    if (ext == 0) {
        h->payload_len = len7;
    } else {
        h->payload_len = 0;
        for (size_t i = 0; i < ext; i++)
            h->payload_len = (h->payload_len << 8) | buf[2 + i];
        if (ext == 8 && (h->payload_len >> 63))
            return -1; /* 5.2: the most significant bit must be 0 */
    }

    /* frag_len <= max_message always holds, so this cannot underflow. Control
     * frames count too: callers size their buffer as max_message +
     * WS_MAX_HEADER, so a 125-byte ping under a smaller limit could never be
     * completed and would stall the connection. */
    size_t already = h->opcode == WS_OP_CONT ? ws_reader_frag_len(r) : 0;
    if (h->payload_len > (uint64_t)(r->max_message - already)) {
        *code = WS_CLOSE_TOO_BIG;
        return -1;
    }

    h->head_len = 2 + ext + (h->masked ? 4 : 0);
    if (len < h->head_len)
        return 0;
    if (h->masked)
        memcpy(h->mask, buf + 2 + ext, 4);
    return 1;
}

/* Appends to the fragment buffer, growing it geometrically but never past
 * max_message (the caller has checked frag_len + n <= max_message). */
static bool frag_append(ws_reader *r, const uint8_t *p, size_t n) {
    if (n == 0)
        return true; /* empty fragments allocate nothing */
    size_t len = ws_reader_frag_len(r), need = len + n;
    if (need > ws_reader_frag_cap(r)) {
        size_t cap = r->frag ? r->frag->cap : FRAG_MIN_CAP;
        while (cap < need)
            cap = cap > r->max_message / 2 ? r->max_message : cap * 2;
        if (cap > r->max_message)
            cap = r->max_message;
        ws_frag *grown = realloc(r->frag, sizeof *grown + cap);
        if (!grown)
            return false;
        if (!r->frag)
            grown->len = 0;
        grown->cap = (uint32_t)cap;
        r->frag = grown;
    }
    memcpy(r->frag->data + len, p, n);
    r->frag->len = (uint32_t)need;
    return true;
}

static int fail(ws_message *out, size_t *consumed, uint16_t code) {
    out->kind = (ws_kind)0;
    out->data = NULL;
    out->len = 0;
    out->close_code = code;
    *consumed = 0;
    return WS_ERROR;
}

static int ready(ws_message *out, ws_kind kind, uint8_t *data, size_t len) {
    out->kind = kind;
    out->data = data;
    out->len = len;
    out->close_code = 0;
    return WS_READY;
}

/* A whole control frame. For a close, out->data/len is the reason text
 * (after the 2-byte code), and out->close_code the code (1005 if none). */
static int control_frame(const frame_head *h, uint8_t *payload, size_t len,
                         size_t *consumed, ws_message *out) {
    switch (h->opcode) {
    case WS_OP_PING:
        return ready(out, WS_MSG_PING, payload, len);
    case WS_OP_PONG:
        return ready(out, WS_MSG_PONG, payload, len);
    default: /* WS_OP_CLOSE */
        break;
    }
    if (len == 0) {
        ready(out, WS_MSG_CLOSE, payload, 0);
        out->close_code = WS_CLOSE_NO_STATUS;
        return WS_READY;
    }
    if (len == 1)
        return fail(out, consumed, WS_CLOSE_PROTOCOL);
    uint16_t code = (uint16_t)((payload[0] << 8) | payload[1]);
    if (!close_code_valid(code))
        return fail(out, consumed, WS_CLOSE_PROTOCOL);
    if (!ws_utf8_valid(payload + 2, len - 2))
        return fail(out, consumed, WS_CLOSE_INVALID_DATA);
    ready(out, WS_MSG_CLOSE, payload + 2, len - 2);
    out->close_code = code;
    return WS_READY;
}

static int data_message(uint8_t opcode, uint8_t *data, size_t len,
                        size_t *consumed, ws_message *out) {
    if (opcode == WS_OP_TEXT) {
        if (!ws_utf8_valid(data, len))
            return fail(out, consumed, WS_CLOSE_INVALID_DATA);
        return ready(out, WS_MSG_TEXT, data, len);
    }
    return ready(out, WS_MSG_BINARY, data, len);
}

/* Non-final fragments are absorbed into r->frag and parsing goes on with the
 * next frame in the same call, so WS_NEED_MORE always means "no further whole
 * frame is buffered": a caller that waits for more bytes on WS_NEED_MORE
 * cannot stall with a complete message sitting in its buffer. */
int ws_reader_feed(ws_reader *r, uint8_t *buf, size_t len, size_t *consumed,
                   ws_message *out) {
    *consumed = 0;
    /* A finished fragmented message stays valid until this call; drop its
     * buffer now so an idle connection holds no reassembly memory. */
    if (r->frag_opcode == 0 && r->frag)
        ws_reader_free(r);

    size_t pos = 0;
    for (;;) {
        frame_head h;
        uint16_t code;
        int rc = parse_head(r, buf + pos, len - pos, &h, &code);
        if (rc < 0)
            return fail(out, consumed, code);
        /* parse_head bounded payload_len by max_message (data) or 125
         * (control), so it fits a size_t once compared with what we have */
        if (rc == 0 || h.payload_len > len - pos - h.head_len) {
            *consumed = pos;
            return WS_NEED_MORE;
        }
        size_t plen = (size_t)h.payload_len;
        uint8_t *payload = buf + pos + h.head_len;
        /* only now, with the whole frame present, is the buffer modified:
         * a WS_NEED_MORE above leaves the caller's bytes as they were */
        if (h.masked)
            ws_mask(payload, plen, h.mask, 0);
        pos += h.head_len + plen;

        if (is_control(h.opcode)) {
            *consumed = pos;
            return control_frame(&h, payload, plen, consumed, out);
        }
        if (h.fin && h.opcode != WS_OP_CONT) {
            *consumed = pos;
            return data_message(h.opcode, payload, plen, consumed, out);
        }
        if (h.opcode != WS_OP_CONT)
            r->frag_opcode = h.opcode;
        if (!frag_append(r, payload, plen))
            return fail(out, consumed, WS_CLOSE_INTERNAL);
        if (h.fin) {
            uint8_t opcode = r->frag_opcode;
            r->frag_opcode = 0; /* buffer kept until the next feed */
            *consumed = pos;
            /* all fragments empty: nothing was allocated, point anywhere valid */
            uint8_t *data = r->frag ? r->frag->data : payload;
            return data_message(opcode, data, ws_reader_frag_len(r), consumed, out);
        }
    }
}
