/* make_seeds.c -- writes the seed corpora of the fuzz targets into
 * DIR/<target>/ (tests/fuzz/seeds is the committed copy):
 *   fuzz_http      HTTP upgrade requests and other heads, and responses
 *   fuzz_ws        WebSocket frames of every kind (the target's byte 0 is
 *                  the message limit / 4), masked as a client sends them
 *   fuzz_frame     one packed Frame of every request type, server frames,
 *                  and a SendMessage's bytes alone
 *   fuzz_dispatch  one Frame of every request type in fuzz_dispatch's input
 *                  format (dispatch_input.h), and a few short sessions
 * Everything is deterministic (fixed keys, masks, ids), so regenerating
 * after a proto change shows only what changed:
 *   cmake --build build --target fuzz-seeds
 * or build/tests/fuzz/make_seeds tests/fuzz/seeds */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dispatch_input.h"
#include "net/ws.h"
#include "proto/parley.pb-c.h"

static const char *out_dir;
static int written;

static void fail(const char *what, const char *path) {
    fprintf(stderr, "make_seeds: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void write_seed(const char *target, const char *name, const void *data, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) fail("mkdir", path);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail("open", path);
    if (len && fwrite(data, 1, len, f) != len) fail("write", path);
    if (fclose(f) != 0) fail("close", path);
    written++;
}

/* A growing byte string. */
typedef struct bytes {
    uint8_t data[1 << 16];
    size_t len;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->len + n > sizeof b->data) {
        fprintf(stderr, "make_seeds: seed too large\n");
        exit(1);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* ------------------------------------------------------------------ HTTP */

static void http_seeds(void) {
    static const struct {
        const char *name, *text;
    } heads[] = {
        {"upgrade",
         "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: parley.v1\r\nOrigin: http://127.0.0.1:8080\r\n\r\n"},
        {"upgrade_lowercase_tokens",
         "GET /?v=1 HTTP/1.1\r\nhost: localhost\r\nupgrade: WebSocket\r\n"
         "connection: keep-alive, upgrade\r\nsec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
         "sec-websocket-version: 13\r\nsec-websocket-protocol: chat, parley.v1\r\n\r\n"},
        {"upgrade_folded_whitespace",
         "GET / HTTP/1.1\r\nHost:127.0.0.1\r\nUpgrade:  websocket \r\nConnection:Upgrade\r\n"
         "Sec-WebSocket-Key:\tdGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"},
        {"healthz", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"},
        {"metrics_http10", "GET /metrics?x=1 HTTP/1.0\r\n\r\n"},
        {"post_with_body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
        {"bare_lf", "GET / HTTP/1.1\nHost: a\nUpgrade: websocket\n\n"},
        {"response_101",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: parley.v1\r\n\r\n"},
        {"response_503",
         "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
         "Content-Length: 21\r\n\r\ntoo many connections\n"},
        {"response_426_chunked",
         "HTTP/1.1 426 Upgrade Required\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
        write_seed("fuzz_http", heads[i].name, heads[i].text, strlen(heads[i].text));
}

/* ------------------------------------------------------------- WebSocket */

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* One frame; masked (client to server) unless mask is NULL. long_len:
 * use the 64-bit length form even for a short payload (non-minimal). */
static void ws_frame(bytes *b, uint8_t opcode, bool fin, const void *payload, size_t len,
                     const uint8_t *mask) {
    uint8_t head[WS_MAX_HEADER];
    size_t h = ws_write_header(head, opcode, fin, len, mask);
    put(b, head, h);
    size_t at = b->len;
    put(b, payload, len);
    if (mask) ws_mask(b->data + at, len, mask, 0);
}

/* fuzz_ws's first byte: the message limit in units of 4 bytes */
static void ws_seed(const char *name, uint8_t limit_by_4, const bytes *frames) {
    bytes b = {.len = 0};
    put(&b, &limit_by_4, 1);
    put(&b, frames->data, frames->len);
    write_seed("fuzz_ws", name, b.data, b.len);
}

static void ws_seeds(void) {
    static bytes all, b;
    uint8_t close_payload[125];
    uint8_t big[300];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
    all.len = 0;

#define ONE(name, ...) do { b.len = 0; __VA_ARGS__; ws_seed(name, 0xff, &b); } while (0)
    ONE("text", ws_frame(&b, WS_OP_TEXT, true, "hello", 5, MASK));
    ONE("text_utf8", ws_frame(&b, WS_OP_TEXT, true, "h\xc3\xa9llo \xe2\x82\xac", 11, MASK));
    ONE("binary", ws_frame(&b, WS_OP_BINARY, true, "\x08\x01\xa2\x01\x00", 5, MASK));
    ONE("binary_len126", ws_frame(&b, WS_OP_BINARY, true, big, 200, MASK));
    ONE("ping", ws_frame(&b, WS_OP_PING, true, "ping", 4, MASK));
    ONE("pong", ws_frame(&b, WS_OP_PONG, true, "", 0, MASK));
    size_t n = ws_close_payload(close_payload, 1000, "bye");
    ONE("close_1000", ws_frame(&b, WS_OP_CLOSE, true, close_payload, n, MASK));
    ONE("close_empty", ws_frame(&b, WS_OP_CLOSE, true, "", 0, MASK));
    ONE("fragmented_text_with_ping", ws_frame(&b, WS_OP_TEXT, false, "hel", 3, MASK);
        ws_frame(&b, WS_OP_PING, true, "p", 1, MASK);
        ws_frame(&b, WS_OP_CONT, false, "l", 1, MASK);
        ws_frame(&b, WS_OP_CONT, true, "o", 1, MASK));
    ONE("fragmented_binary", ws_frame(&b, WS_OP_BINARY, false, big, 100, MASK);
        ws_frame(&b, WS_OP_CONT, true, big + 100, 100, MASK));
    ONE("unmasked_from_server", ws_frame(&b, WS_OP_BINARY, true, "abc", 3, NULL);
        n = ws_close_payload(close_payload, 1012, "server restarting");
        ws_frame(&b, WS_OP_CLOSE, true, close_payload, n, NULL));
    ONE("too_big_for_limit", ws_frame(&b, WS_OP_BINARY, true, big, sizeof big, MASK));
#undef ONE
    /* the same with a small limit, so the limit paths are near */
    b.len = 0;
    ws_frame(&b, WS_OP_BINARY, true, big, 64, MASK);
    ws_seed("binary_at_small_limit", 16, &b);
    /* every kind in one stream */
    ws_frame(&all, WS_OP_TEXT, true, "t", 1, MASK);
    ws_frame(&all, WS_OP_BINARY, true, big, 130, MASK);
    ws_frame(&all, WS_OP_PING, true, "", 0, MASK);
    ws_frame(&all, WS_OP_PONG, true, "x", 1, MASK);
    ws_frame(&all, WS_OP_BINARY, false, "ab", 2, MASK);
    ws_frame(&all, WS_OP_CONT, true, "cd", 2, MASK);
    n = ws_close_payload(close_payload, 1001, "going away");
    ws_frame(&all, WS_OP_CLOSE, true, close_payload, n, MASK);
    ws_seed("every_kind", 0xff, &all);
}

/* ---------------------------------------------------------------- frames */

/* user i's key pair, as fuzz_dispatch derives it */
static void user_keys(int i, uint8_t pk[crypto_sign_PUBLICKEYBYTES],
                      uint8_t sk[crypto_sign_SECRETKEYBYTES]) {
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, DISPATCH_KEY_SEED_BYTE + i, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
}

/* a signature over fuzz_dispatch's fixed challenge */
static void sign_challenge(uint8_t sig[crypto_sign_BYTES], const uint8_t *sk) {
    uint8_t msg[sizeof DISPATCH_AUTH_CONTEXT - 1 + 32];
    memcpy(msg, DISPATCH_AUTH_CONTEXT, sizeof DISPATCH_AUTH_CONTEXT - 1);
    memset(msg + sizeof DISPATCH_AUTH_CONTEXT - 1, DISPATCH_NONCE_BYTE, 32);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, sk);
}

static uint8_t new_pk[crypto_sign_PUBLICKEYBYTES], new_sk[crypto_sign_SECRETKEYBYTES];
static uint8_t new_sig[crypto_sign_BYTES], user1_sig[crypto_sign_BYTES];
static uint8_t user1_pk[crypto_sign_PUBLICKEYBYTES], user1_sk[crypto_sign_SECRETKEYBYTES];
static uint8_t x25519_key[32], prekey_sig[64];
static uint64_t members_234[] = {2, 3, 4}, member_4[] = {4}, presence_ids[] = {1, 2, 3, 4};

#define BIN(p, n) ((ProtobufCBinaryData){.len = (n), .data = (uint8_t *)(p)})

/* Every request type, once, with arguments that make sense on
 * fuzz_dispatch's set-up (users 1..4, group 1, direct 2). */
typedef struct request_seed {
    const char *name;
    void (*fill)(Parley__V1__Frame *f);
} request_seed;

static void fill_register_user(Parley__V1__Frame *f) {
    static Parley__V1__RegisterUser m = PARLEY__V1__REGISTER_USER__INIT;
    m.name = "seeduser";
    m.device_public_key = BIN(new_pk, sizeof new_pk);
    m.device_name = "seed phone";
    m.signature = BIN(new_sig, sizeof new_sig);
    f->body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
    f->register_user = &m;
}
static void fill_sign_in(Parley__V1__Frame *f) {
    static Parley__V1__SignIn m = PARLEY__V1__SIGN_IN__INIT;
    m.user_id = 1;
    m.device_id = 1;
    m.signature = BIN(user1_sig, sizeof user1_sig);
    f->body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f->sign_in = &m;
}
static void fill_register_device(Parley__V1__Frame *f) {
    static Parley__V1__RegisterDevice m = PARLEY__V1__REGISTER_DEVICE__INIT;
    m.token = "0123456789abcdef0123456789abcdef";
    m.device_public_key = BIN(new_pk, sizeof new_pk);
    m.device_name = "seed tablet";
    m.signature = BIN(new_sig, sizeof new_sig);
    f->body_case = PARLEY__V1__FRAME__BODY_REGISTER_DEVICE;
    f->register_device = &m;
}
static void fill_create_link_token(Parley__V1__Frame *f) {
    static Parley__V1__CreateLinkToken m = PARLEY__V1__CREATE_LINK_TOKEN__INIT;
    f->body_case = PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN;
    f->create_link_token = &m;
}
static void fill_lookup_user(Parley__V1__Frame *f) {
    static Parley__V1__LookupUser m = PARLEY__V1__LOOKUP_USER__INIT;
    m.name = "fuzz2";
    f->body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    f->lookup_user = &m;
}
static void fill_open_direct(Parley__V1__Frame *f) {
    static Parley__V1__OpenDirect m = PARLEY__V1__OPEN_DIRECT__INIT;
    m.peer_user_id = 3;
    f->body_case = PARLEY__V1__FRAME__BODY_OPEN_DIRECT;
    f->open_direct = &m;
}
static void fill_create_group(Parley__V1__Frame *f) {
    static Parley__V1__CreateGroup m = PARLEY__V1__CREATE_GROUP__INIT;
    m.name = "seed group";
    m.n_member_user_ids = 3;
    m.member_user_ids = members_234;
    f->body_case = PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    f->create_group = &m;
}
static void fill_add_members(Parley__V1__Frame *f) {
    static Parley__V1__AddMembers m = PARLEY__V1__ADD_MEMBERS__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.n_user_ids = 1;
    m.user_ids = member_4;
    f->body_case = PARLEY__V1__FRAME__BODY_ADD_MEMBERS;
    f->add_members = &m;
}
static void fill_remove_member(Parley__V1__Frame *f) {
    static Parley__V1__RemoveMember m = PARLEY__V1__REMOVE_MEMBER__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.user_id = 4;
    f->body_case = PARLEY__V1__FRAME__BODY_REMOVE_MEMBER;
    f->remove_member = &m;
}
static void fill_list_conversations(Parley__V1__Frame *f) {
    static Parley__V1__ListConversations m = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    f->body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f->list_conversations = &m;
}
static void fill_send_message(Parley__V1__Frame *f) {
    static Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.client_msg_id = BIN("seed-msg-1", 10);
    m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    m.body = BIN("hello group", 11);
    f->body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f->send_message = &m;
}
static void fill_send_media(Parley__V1__Frame *f) {
    static Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
    m.conversation_id = DISPATCH_DIRECT;
    m.client_msg_id = BIN("seed-media-1", 12);
    m.type = PARLEY__V1__MESSAGE_TYPE__MEDIA;
    m.body = BIN("\x89PNG", 4);
    m.mime_type = "image/png";
    m.size = 4;
    f->body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f->send_message = &m;
}
static void fill_send_reaction(Parley__V1__Frame *f) {
    static Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.client_msg_id = BIN("seed-reaction-1", 15);
    m.type = PARLEY__V1__MESSAGE_TYPE__REACTION;
    m.body = BIN("+1", 2);
    m.ref_seq = 1;
    f->body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f->send_message = &m;
}
static void fill_history(Parley__V1__Frame *f) {
    static Parley__V1__History m = PARLEY__V1__HISTORY__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.before_seq = 0;
    m.limit = 50;
    f->body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f->history = &m;
}
static void fill_start_sync(Parley__V1__Frame *f) {
    static Parley__V1__StartSync m = PARLEY__V1__START_SYNC__INIT;
    m.after_user_seq = 0;
    f->body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f->start_sync = &m;
}
static void fill_ack(Parley__V1__Frame *f) {
    static Parley__V1__Ack m = PARLEY__V1__ACK__INIT;
    m.user_seq = 1;
    f->body_case = PARLEY__V1__FRAME__BODY_ACK;
    f->ack = &m;
}
static void fill_mark_read(Parley__V1__Frame *f) {
    static Parley__V1__MarkRead m = PARLEY__V1__MARK_READ__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.seq = 1;
    f->body_case = PARLEY__V1__FRAME__BODY_MARK_READ;
    f->mark_read = &m;
}
static void fill_subscribe_presence(Parley__V1__Frame *f) {
    static Parley__V1__SubscribePresence m = PARLEY__V1__SUBSCRIBE_PRESENCE__INIT;
    m.n_user_ids = 4;
    m.user_ids = presence_ids;
    f->body_case = PARLEY__V1__FRAME__BODY_SUBSCRIBE_PRESENCE;
    f->subscribe_presence = &m;
}
static void fill_typing(Parley__V1__Frame *f) {
    static Parley__V1__Typing m = PARLEY__V1__TYPING__INIT;
    m.conversation_id = DISPATCH_GROUP;
    m.typing = 1;
    f->body_case = PARLEY__V1__FRAME__BODY_TYPING;
    f->typing = &m;
}
static void fill_get_receipts(Parley__V1__Frame *f) {
    static Parley__V1__GetReceipts m = PARLEY__V1__GET_RECEIPTS__INIT;
    m.conversation_id = DISPATCH_GROUP;
    f->body_case = PARLEY__V1__FRAME__BODY_GET_RECEIPTS;
    f->get_receipts = &m;
}
static void fill_upload_keys(Parley__V1__Frame *f) {
    static Parley__V1__PreKey spk = PARLEY__V1__PRE_KEY__INIT, otk1 = PARLEY__V1__PRE_KEY__INIT,
                              otk2 = PARLEY__V1__PRE_KEY__INIT;
    static Parley__V1__PreKey *otks[2];
    static Parley__V1__UploadKeys m = PARLEY__V1__UPLOAD_KEYS__INIT;
    spk.key_id = 1;
    spk.public_key = BIN(x25519_key, sizeof x25519_key);
    spk.signature = BIN(prekey_sig, sizeof prekey_sig);
    otk1.key_id = 100;
    otk1.public_key = BIN(x25519_key, sizeof x25519_key);
    otk2.key_id = 101;
    otk2.public_key = BIN(x25519_key, sizeof x25519_key);
    otks[0] = &otk1;
    otks[1] = &otk2;
    m.identity_key = BIN(user1_pk, sizeof user1_pk);
    m.signed_pre_key = &spk;
    m.n_one_time_pre_keys = 2;
    m.one_time_pre_keys = otks;
    f->body_case = PARLEY__V1__FRAME__BODY_UPLOAD_KEYS;
    f->upload_keys = &m;
}
static void fill_fetch_keys(Parley__V1__Frame *f) {
    static Parley__V1__FetchKeys m = PARLEY__V1__FETCH_KEYS__INIT;
    m.user_id = 1;
    f->body_case = PARLEY__V1__FRAME__BODY_FETCH_KEYS;
    f->fetch_keys = &m;
}
static void fill_get_devices(Parley__V1__Frame *f) {
    static Parley__V1__GetDevices m = PARLEY__V1__GET_DEVICES__INIT;
    m.user_id = 2;
    f->body_case = PARLEY__V1__FRAME__BODY_GET_DEVICES;
    f->get_devices = &m;
}
static void fill_remove_device(Parley__V1__Frame *f) {
    static Parley__V1__RemoveDevice m = PARLEY__V1__REMOVE_DEVICE__INIT;
    m.device_id = 2;
    f->body_case = PARLEY__V1__FRAME__BODY_REMOVE_DEVICE;
    f->remove_device = &m;
}
static void fill_send_device_message(Parley__V1__Frame *f) {
    static Parley__V1__SendDeviceMessage m = PARLEY__V1__SEND_DEVICE_MESSAGE__INIT;
    m.user_id = 2;
    m.device_id = 1;
    m.body = BIN("sealed envelope", 15);
    f->body_case = PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE;
    f->send_device_message = &m;
}
static void fill_ack_device_messages(Parley__V1__Frame *f) {
    static Parley__V1__AckDeviceMessages m = PARLEY__V1__ACK_DEVICE_MESSAGES__INIT;
    m.up_to = 1;
    f->body_case = PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES;
    f->ack_device_messages = &m;
}

static const request_seed requests[] = {
    {"register_user", fill_register_user},
    {"sign_in", fill_sign_in},
    {"register_device", fill_register_device},
    {"create_link_token", fill_create_link_token},
    {"lookup_user", fill_lookup_user},
    {"open_direct", fill_open_direct},
    {"create_group", fill_create_group},
    {"add_members", fill_add_members},
    {"remove_member", fill_remove_member},
    {"list_conversations", fill_list_conversations},
    {"send_message", fill_send_message},
    {"send_message_media", fill_send_media},
    {"send_message_reaction", fill_send_reaction},
    {"history", fill_history},
    {"start_sync", fill_start_sync},
    {"ack", fill_ack},
    {"mark_read", fill_mark_read},
    {"subscribe_presence", fill_subscribe_presence},
    {"typing", fill_typing},
    {"get_receipts", fill_get_receipts},
    {"upload_keys", fill_upload_keys},
    {"fetch_keys", fill_fetch_keys},
    {"get_devices", fill_get_devices},
    {"remove_device", fill_remove_device},
    {"send_device_message", fill_send_device_message},
    {"ack_device_messages", fill_ack_device_messages},
};
enum { N_REQUESTS = sizeof requests / sizeof requests[0] };

static const request_seed *request_named(const char *name) {
    for (size_t i = 0; i < N_REQUESTS; i++)
        if (strcmp(requests[i].name, name) == 0) return &requests[i];
    fprintf(stderr, "make_seeds: no request %s\n", name);
    exit(1);
}

static size_t pack_request(const request_seed *r, uint64_t request_id, uint8_t *out, size_t cap) {
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = request_id;
    r->fill(&f);
    size_t n = parley__v1__frame__get_packed_size(&f);
    if (n > cap) {
        fprintf(stderr, "make_seeds: frame too large\n");
        exit(1);
    }
    return parley__v1__frame__pack(&f, out);
}

/* fuzz_dispatch: the user byte, then length-prefixed frames */
static void dispatch_append(bytes *b, const request_seed *r, uint64_t request_id) {
    uint8_t frame[4096];
    size_t n = pack_request(r, request_id, frame, sizeof frame);
    uint8_t len[2] = {(uint8_t)(n & 0xff), (uint8_t)(n >> 8)};
    put(b, len, 2);
    put(b, frame, n);
}

static void dispatch_session(const char *name, uint8_t user_byte, const char *const *steps) {
    static bytes b;
    b.len = 0;
    put(&b, &user_byte, 1);
    for (int i = 0; steps[i]; i++) dispatch_append(&b, request_named(steps[i]), (uint64_t)i + 1);
    char file[128];
    snprintf(file, sizeof file, "%s", name);
    write_seed("fuzz_dispatch", file, b.data, b.len);
}

/* fuzz_frame also reads each input as the bytes of a SendMessage (the
 * SendMessage read in place): one with every field set */
static void send_message_fields_seed(void) {
    uint8_t out[256];
    Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
    m.conversation_id = DISPATCH_DIRECT;
    m.client_msg_id = BIN("seed-fields-1", 13);
    m.type = PARLEY__V1__MESSAGE_TYPE__MEDIA;
    m.body = BIN("\x89PNG", 4);
    m.mime_type = "image/png";
    m.size = 4;
    m.ref_seq = 300;
    write_seed("fuzz_frame", "send_message_fields", out, parley__v1__send_message__pack(&m, out));
}

static void server_frame_seeds(void) {
    uint8_t out[1024];
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    Parley__V1__Response resp = PARLEY__V1__RESPONSE__INIT;
    Parley__V1__Registered reg = PARLEY__V1__REGISTERED__INIT;
    reg.user_id = 7;
    reg.device_id = 1;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_REGISTERED;
    resp.registered = &reg;
    f.request_id = 1;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = &resp;
    write_seed("fuzz_frame", "server_response_registered", out, parley__v1__frame__pack(&f, out));

    Parley__V1__Challenge ch = PARLEY__V1__CHALLENGE__INIT;
    uint8_t nonce[32];
    memset(nonce, DISPATCH_NONCE_BYTE, sizeof nonce);
    ch.nonce = BIN(nonce, sizeof nonce);
    ch.server_ts = 1700000000000ull;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_CHALLENGE;
    f.challenge = &ch;
    write_seed("fuzz_frame", "server_challenge", out, parley__v1__frame__pack(&f, out));

    Parley__V1__Message m = PARLEY__V1__MESSAGE__INIT;
    Parley__V1__Event ev = PARLEY__V1__EVENT__INIT;
    m.conversation_id = 1;
    m.seq = 3;
    m.sender_user_id = 2;
    m.sender_device_id = 1;
    m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    m.body = BIN("hi", 2);
    m.client_msg_id = BIN("c1", 2);
    ev.user_seq = 9;
    ev.message = &m;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_EVENT;
    f.event = &ev;
    write_seed("fuzz_frame", "server_event", out, parley__v1__frame__pack(&f, out));
}

static void frame_seeds(void) {
    user_keys(0, user1_pk, user1_sk);
    sign_challenge(user1_sig, user1_sk);
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 0x77, sizeof seed);         /* a device none of the users has */
    crypto_sign_seed_keypair(new_pk, new_sk, seed);
    sign_challenge(new_sig, new_sk);
    for (size_t i = 0; i < sizeof x25519_key; i++) x25519_key[i] = (uint8_t)(0x90 + i);
    crypto_sign_detached(prekey_sig, NULL, x25519_key, sizeof x25519_key, user1_sk);

    for (size_t i = 0; i < N_REQUESTS; i++) {
        uint8_t out[4096];
        size_t n = pack_request(&requests[i], i + 1, out, sizeof out);
        write_seed("fuzz_frame", requests[i].name, out, n);
        /* signed in as user 1 (index 0), except the sign-in requests,
         * which only make sense signed out */
        const char *name = requests[i].name;
        bool signed_out = strcmp(name, "register_user") == 0 || strcmp(name, "sign_in") == 0 ||
                          strcmp(name, "register_device") == 0;
        const char *steps[] = {name, NULL};
        dispatch_session(name, signed_out ? DISPATCH_SIGNED_OUT : 0, steps);
    }
    server_frame_seeds();
    send_message_fields_seed();

    /* short sessions: what a device does in order */
    static const char *const talk[] = {"start_sync", "send_message", "typing", "history",
                                       "mark_read", "get_receipts", "ack", NULL};
    dispatch_session("session_talk_user1", 0, talk);
    static const char *const keys[] = {"upload_keys", "fetch_keys", "send_device_message",
                                       "ack_device_messages", "get_devices", NULL};
    dispatch_session("session_keys_user1", 0, keys);
    static const char *const group[] = {"create_group", "add_members", "remove_member",
                                        "list_conversations", "open_direct", NULL};
    dispatch_session("session_group_user1", 0, group);
    static const char *const sign_in_then[] = {"sign_in", "lookup_user", "send_message_media",
                                               "subscribe_presence", NULL};
    dispatch_session("session_signed_out_sign_in", DISPATCH_SIGNED_OUT, sign_in_then);
    static const char *const other_user[] = {"start_sync", "send_message_reaction",
                                             "create_link_token", "ack", NULL};
    dispatch_session("session_user2", 1, other_user);
    static const char *const unauthenticated[] = {"send_message", "history", "typing", NULL};
    dispatch_session("session_unauthenticated", DISPATCH_SIGNED_OUT, unauthenticated);
}

int main(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: make_seeds DIR   (writes DIR/fuzz_*/ seed files)\n");
        return argc == 2 ? 0 : 2;
    }
    if (sodium_init() < 0) return 1;
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) fail("mkdir", out_dir);
    http_seeds();
    ws_seeds();
    frame_seeds();
    printf("make_seeds: %d seed files in %s\n", written, out_dir);
    return 0;
}
