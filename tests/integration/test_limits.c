/* test_limits.c -- the server's own limits and its answers to requests that
 * decode but make no sense, sent over a raw connection (h_raw_*), because
 * libparley refuses most of them before the server would see them.
 *
 * Each over-limit case also sends the largest allowed value, so the test
 * pins the limit itself and not merely "something big fails", and checks
 * that a refused request changed nothing (no message stored, no key kept). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { MAX_GROUP = 5, WAIT_MS = 20000 };

static h_server S;

/* A user made with libparley and a raw connection signed in as it. */
typedef struct raw_user {
    h_dev *d;
    h_raw w;
} raw_user;

static int raw_user_new(raw_user *u) {
    u->d = h_user_new(&S, NULL);
    if (!u->d) return -1;
    return h_raw_open(&S, &u->w) == 0 && h_raw_sign_in(&u->w, &u->d->id) == 0 ? 0 : -1;
}

static void raw_user_free(raw_user *u) {
    h_raw_close(&u->w);
    if (u->d) h_dev_free(u->d);
    u->d = NULL;
}

enum { RAW_OPENS, PEER_OPENS };

/* A libparley user *b, then a raw user a, and a direct conversation
 * between them opened by a (RAW_OPENS) or by b (PEER_OPENS). 0 or -1. */
static int raw_pair(raw_user *a, h_dev **b, int opener, uint64_t *conv) {
    *b = h_user_new(&S, NULL);
    if (raw_user_new(a) != 0 || !*b) return -1;
    if (opener == RAW_OPENS) return pc_open_direct(a->d->c, (*b)->id.user_id, conv) == 0 ? 0 : -1;
    return pc_open_direct((*b)->c, a->d->id.user_id, conv) == 0 ? 0 : -1;
}

static int send_body(h_raw *w, uint64_t conv, size_t len, uint64_t *seq) {
    uint8_t *body = malloc(len ? len : 1);
    if (!body) return -1;
    memset(body, 'x', len);
    uint8_t cmid[16];
    randombytes_buf(cmid, sizeof cmid);
    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = conv;
    sm.client_msg_id.data = cmid;
    sm.client_msg_id.len = sizeof cmid;
    sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm.body.data = body;
    sm.body.len = len;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    Parley__V1__Frame *r = NULL;
    int st = h_raw_request(w, &f, &r, NULL);
    if (seq) *seq = st == 0 && r->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT
                        ? r->response->sent->seq : 0;
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    free(body);
    return st;
}

/* The conversation's newest seq through history (0 when empty). */
static uint64_t last_seq(h_dev *d, uint64_t conv) {
    Parley__V1__HistoryPage *p = NULL;
    if (pc_history(d->c, conv, 0, 1, &p) != 0) return UINT64_MAX;
    uint64_t s = p->n_messages ? p->messages[p->n_messages - 1]->seq : 0;
    parley__v1__history_page__free_unpacked(p, NULL);
    return s;
}

/* ------------------------------------------------------------- limits */

static void message_body_over_64k(void) {
    raw_user a = {0};
    h_dev *b = NULL;
    uint64_t conv = 0;
    NEED(raw_pair(&a, &b, RAW_OPENS, &conv) == 0);
    uint64_t before = last_seq(a.d, conv);
    uint64_t seq = 0;
    int over = send_body(&a.w, conv, 65537, &seq);
    uint64_t after_over = last_seq(a.d, conv);
    int at = send_body(&a.w, conv, 65536, &seq);
    raw_user_free(&a);
    h_dev_free(b);
    CHECK(over == PARLEY__V1__STATUS__TOO_LARGE, "65537-byte body: status %d, want TOO_LARGE", over);
    CHECK(after_over == before, "refused body stored anyway: last seq %llu -> %llu",
          (unsigned long long)before, (unsigned long long)after_over);
    CHECK(at == 0 && seq == before + 1, "65536-byte body: status %d seq %llu", at,
          (unsigned long long)seq);
}

static int send_envelope(h_raw *w, uint64_t user, uint32_t device, size_t len) {
    uint8_t *body = calloc(1, len ? len : 1);
    if (!body) return -1;
    Parley__V1__SendDeviceMessage dm = PARLEY__V1__SEND_DEVICE_MESSAGE__INIT;
    dm.user_id = user;
    dm.device_id = device;
    dm.body.data = body;
    dm.body.len = len;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE;
    f.send_device_message = &dm;
    int st = h_raw_request(w, &f, NULL, NULL);
    free(body);
    return st;
}

static int n_envelopes;
static void count_envelope(void *ud, const Parley__V1__DeviceMessage *m) {
    (void)ud;
    (void)m;
    n_envelopes++;
}
static int pred_envelopes(void *ud) { return n_envelopes >= *(int *)ud; }

static void device_envelope_size(void) {
    raw_user a = {0};
    h_dev *b = NULL;
    uint64_t conv = 0;
    NEED(raw_pair(&a, &b, RAW_OPENS, &conv) == 0);
    int over = send_envelope(&a.w, b->id.user_id, b->id.device_id, 65537);
    int empty = send_envelope(&a.w, b->id.user_id, b->id.device_id, 0);
    int at = send_envelope(&a.w, b->id.user_id, b->id.device_id, 65536);
    raw_user_free(&a);
    /* exactly one envelope (the 65536-byte one) waits for b */
    n_envelopes = 0;
    pc_on_device_message(b->c, count_envelope, NULL);
    int got = pc_start_sync(b->c) == 0;
    int one = 1;
    h_pump(&b, 1, pred_envelopes, &one, WAIT_MS);
    h_pump(&b, 1, NULL, NULL, 300);   /* a second one would be right behind it */
    h_dev_free(b);
    CHECK(over == PARLEY__V1__STATUS__TOO_LARGE || over == PARLEY__V1__STATUS__BAD_REQUEST,
          "65537-byte envelope: status %d", over);
    CHECK(empty == PARLEY__V1__STATUS__BAD_REQUEST, "empty envelope: status %d", empty);
    CHECK(at == 0, "65536-byte envelope: status %d", at);
    CHECK(got && n_envelopes == 1, "b got %d envelopes, want 1 (the refused ones queued?)",
          n_envelopes);
}

static int upload_one_time(h_raw *w, const uint8_t ik[32], uint32_t first_id, size_t n,
                           uint32_t *left) {
    Parley__V1__PreKey *keys = calloc(n ? n : 1, sizeof *keys);
    Parley__V1__PreKey **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    uint8_t(*pub)[32] = calloc(n ? n : 1, 32);
    if (!keys || !ptrs || !pub) {
        free(keys);
        free(ptrs);
        free(pub);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        parley__v1__pre_key__init(&keys[i]);
        keys[i].key_id = first_id + (uint32_t)i;
        randombytes_buf(pub[i], 32);
        keys[i].public_key.data = pub[i];
        keys[i].public_key.len = 32;
        ptrs[i] = &keys[i];
    }
    Parley__V1__UploadKeys uk = PARLEY__V1__UPLOAD_KEYS__INIT;
    uk.identity_key.data = (uint8_t *)ik;
    uk.identity_key.len = 32;
    uk.one_time_pre_keys = ptrs;
    uk.n_one_time_pre_keys = n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_UPLOAD_KEYS;
    f.upload_keys = &uk;
    Parley__V1__Frame *r = NULL;
    int st = h_raw_request(w, &f, &r, NULL);
    if (st == 0 && left && r->response->result_case == PARLEY__V1__RESPONSE__RESULT_KEY_COUNT)
        *left = r->response->key_count->one_time_pre_keys;
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    free(keys);
    free(ptrs);
    free(pub);
    return st;
}

static void prekey_upload_and_storage_caps(void) {
    raw_user a = {0};
    NEED(raw_user_new(&a) == 0);
    uint8_t ik[32];
    randombytes_buf(ik, sizeof ik);
    uint32_t left = 0;
    int over_request = upload_one_time(&a.w, ik, 1, 201, NULL);
    int st = upload_one_time(&a.w, ik, 1, 0, &left);
    int zero_after_refusal = st == 0 && left == 0;
    int fills = 0;
    for (int i = 0; i < 5; i++)
        if (upload_one_time(&a.w, ik, 1000 + (uint32_t)i * 200, 200, &left) == 0) fills++;
    uint32_t full = left;
    int over_store = upload_one_time(&a.w, ik, 5000, 1, NULL);
    st = upload_one_time(&a.w, ik, 1, 0, &left);
    raw_user_free(&a);
    CHECK(over_request == PARLEY__V1__STATUS__TOO_LARGE, "201 keys in one upload: status %d",
          over_request);
    CHECK(zero_after_refusal, "after the refused upload the device holds %u keys", left);
    CHECK(fills == 5 && full == 1000, "five uploads of 200: %d accepted, %u kept", fills, full);
    CHECK(over_store == PARLEY__V1__STATUS__TOO_LARGE, "key 1001: status %d, want TOO_LARGE",
          over_store);
    CHECK(st == 0 && left == 1000, "after the refused 1001st key: %u kept (status %d)", left, st);
}

static int create_group_raw(h_raw *w, uint64_t *ids, size_t n, uint64_t *conv) {
    Parley__V1__CreateGroup cg = PARLEY__V1__CREATE_GROUP__INIT;
    cg.name = "limits";
    cg.member_user_ids = ids;
    cg.n_member_user_ids = n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    f.create_group = &cg;
    Parley__V1__Frame *r = NULL;
    int st = h_raw_request(w, &f, &r, NULL);
    if (conv) *conv = st == 0 ? r->response->conversation->conversation_id : 0;
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    return st;
}

static int add_members_raw(h_raw *w, uint64_t conv, uint64_t *ids, size_t n) {
    Parley__V1__AddMembers am = PARLEY__V1__ADD_MEMBERS__INIT;
    am.conversation_id = conv;
    am.user_ids = ids;
    am.n_user_ids = n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ADD_MEMBERS;
    f.add_members = &am;
    return h_raw_request(w, &f, NULL, NULL);
}

static void group_size_cap(void) {
    /* the server runs with --max-group-members 5: the creator and 4 others */
    raw_user a = {0};
    NEED(raw_user_new(&a) == 0);
    h_dev *o[MAX_GROUP + 1];
    uint64_t ids[MAX_GROUP + 1];
    for (int i = 0; i < MAX_GROUP + 1; i++) {
        o[i] = h_user_new(&S, NULL);
        NEED(o[i]);
        ids[i] = o[i]->id.user_id;
    }
    uint64_t conv = 0;
    int over = create_group_raw(&a.w, ids, MAX_GROUP, &conv);   /* 6 with the creator */
    uint64_t over_conv = conv;
    int at = create_group_raw(&a.w, ids, MAX_GROUP - 1, &conv);  /* 5 */
    int add = add_members_raw(&a.w, conv, &ids[MAX_GROUP - 1], 1);
    /* the same member twice in one request counts once */
    uint64_t dup[2] = {ids[0], ids[0]};
    uint64_t small = 0;
    int dups = create_group_raw(&a.w, dup, 2, &small);
    /* what the refused add would have made: still 5 members */
    Parley__V1__ConversationList *l = NULL;
    size_t members = 0;
    if (pc_list_conversations(a.d->c, &l) == 0) {
        for (size_t i = 0; i < l->n_conversations; i++)
            if (l->conversations[i]->conversation_id == conv)
                members = l->conversations[i]->n_member_user_ids;
        parley__v1__conversation_list__free_unpacked(l, NULL);
    }
    raw_user_free(&a);
    for (int i = 0; i < MAX_GROUP + 1; i++) h_dev_free(o[i]);
    CHECK(over == PARLEY__V1__STATUS__TOO_LARGE && over_conv == 0,
          "group of 6 with max 5: status %d", over);
    CHECK(at == 0 && conv != 0, "group of 5 with max 5: status %d", at);
    CHECK(add == PARLEY__V1__STATUS__TOO_LARGE, "adding a 6th member: status %d", add);
    CHECK(members == MAX_GROUP, "group has %zu members, want %d", members, MAX_GROUP);
    CHECK(dups == 0 && small != 0, "a member listed twice: status %d", dups);
}

static void presence_list_cap(void) {
    raw_user a = {0};
    NEED(raw_user_new(&a) == 0);
    uint64_t *ids = calloc(1025, sizeof *ids);
    NEED(ids);
    for (size_t i = 0; i < 1025; i++) ids[i] = a.d->id.user_id;   /* oneself: always allowed */
    Parley__V1__SubscribePresence sp = PARLEY__V1__SUBSCRIBE_PRESENCE__INIT;
    sp.user_ids = ids;
    sp.n_user_ids = 1025;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SUBSCRIBE_PRESENCE;
    f.subscribe_presence = &sp;
    int over = h_raw_request(&a.w, &f, NULL, NULL);
    sp.n_user_ids = 1024;
    int at = h_raw_request(&a.w, &f, NULL, NULL);
    free(ids);
    raw_user_free(&a);
    CHECK(over == PARLEY__V1__STATUS__TOO_LARGE, "1025 presence users: status %d", over);
    CHECK(at == 0, "1024 presence users: status %d", at);
}

/* Sends head (no upgrade) and returns the HTTP status, and whether the
 * server then closed. */
static int raw_http(const char *head, size_t len, int *closed) {
    int fd = h_tcp_connect(S.port, 5000);
    if (fd < 0) return -1;
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, head + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) break;   /* the server may answer and close before reading it all */
        sent += (size_t)n;
    }
    char buf[4096];
    size_t got = 0;
    *closed = 0;
    uint64_t deadline = h_now_ms() + 5000;
    while (h_now_ms() < deadline && got + 1 < sizeof buf) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            *closed = 1;
            break;
        }
        if (n < 0 && errno != EINTR) break;
        if (n > 0) got += (size_t)n;
    }
    buf[got] = 0;
    close(fd);
    int st = -1;
    if (sscanf(buf, "HTTP/1.1 %d", &st) != 1) st = -1;
    return st;
}

static void http_head_too_large_431(void) {
    /* 8192 bytes of head is the limit (incl. the final CRLFCRLF) */
    size_t cap = 20000;
    char *req = h_calloc(1, cap);
    NEED(req);
    int n = snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    size_t len = (size_t)n;
    while (len < 9000) req[len++] = 'a';
    memcpy(req + len, "\r\n\r\n", 4);
    len += 4;
    int closed = 0;
    int st = raw_http(req, len, &closed);
    CHECK(st == 431, "9 KB request head: status %d, want 431", st);
    CHECK(closed, "connection left open after the 431");
    /* just under: 8192 bytes in all is still served */
    n = snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    len = (size_t)n;
    while (len < 8192 - 4) req[len++] = 'a';
    memcpy(req + len, "\r\n\r\n", 4);
    len += 4;
    st = raw_http(req, len, &closed);
    h_free(req);
    CHECK(st == 200, "8192-byte request head: status %d, want 200", st);
    double v = 0;
    CHECK(h_metric(&S, "parley_http_requests_total", &v) == 0 && v > 0,
          "parley_http_requests_total not counted");
}

/* ---------------------------------------------------------- nonsense */

static void wrong_ids(void) {
    raw_user a = {0};
    h_dev *b = NULL;
    uint64_t conv = 0;
    NEED(raw_pair(&a, &b, RAW_OPENS, &conv) == 0);
    int st;
    /* a conversation that does not exist, and conversation 0 */
    st = send_body(&a.w, conv + 1000000, 3, NULL);
    CHECK(st == PARLEY__V1__STATUS__FORBIDDEN, "send to no conversation: status %d", st);
    st = send_body(&a.w, 0, 3, NULL);
    CHECK(st == PARLEY__V1__STATUS__FORBIDDEN, "send to conversation 0: status %d", st);
    /* OpenDirect: nobody, user 0, oneself */
    Parley__V1__OpenDirect od = PARLEY__V1__OPEN_DIRECT__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_OPEN_DIRECT;
    f.open_direct = &od;
    od.peer_user_id = b->id.user_id + 1000000;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__NOT_FOUND, "direct with no user: status %d", st);
    od.peer_user_id = 0;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__NOT_FOUND, "direct with user 0: status %d", st);
    od.peer_user_id = a.d->id.user_id;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__BAD_REQUEST, "direct with oneself: status %d", st);
    /* a group with a user who does not exist */
    uint64_t ghost = b->id.user_id + 1000000, g = 0;
    st = create_group_raw(&a.w, &ghost, 1, &g);
    CHECK(st == PARLEY__V1__STATUS__NOT_FOUND && g == 0, "group with no user: status %d", st);
    /* receipts, history, mark-read of a conversation one is not in */
    Parley__V1__GetReceipts gr = PARLEY__V1__GET_RECEIPTS__INIT;
    gr.conversation_id = conv + 1000000;
    f.body_case = PARLEY__V1__FRAME__BODY_GET_RECEIPTS;
    f.get_receipts = &gr;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__FORBIDDEN, "receipts of no conversation: status %d", st);
    Parley__V1__MarkRead mr = PARLEY__V1__MARK_READ__INIT;
    mr.conversation_id = conv + 1000000;
    mr.seq = 1;
    f.body_case = PARLEY__V1__FRAME__BODY_MARK_READ;
    f.mark_read = &mr;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__FORBIDDEN, "mark-read of no conversation: status %d", st);
    /* keys of nobody; removing a device that does not exist, or oneself */
    Parley__V1__FetchKeys fk = PARLEY__V1__FETCH_KEYS__INIT;
    fk.user_id = ghost;
    f.body_case = PARLEY__V1__FRAME__BODY_FETCH_KEYS;
    f.fetch_keys = &fk;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__NOT_FOUND, "keys of no user: status %d", st);
    Parley__V1__RemoveDevice rd = PARLEY__V1__REMOVE_DEVICE__INIT;
    rd.device_id = 999;
    f.body_case = PARLEY__V1__FRAME__BODY_REMOVE_DEVICE;
    f.remove_device = &rd;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__NOT_FOUND, "remove device 999: status %d", st);
    rd.device_id = a.d->id.device_id;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    CHECK(st == PARLEY__V1__STATUS__BAD_REQUEST, "remove one's own device: status %d", st);
    /* an envelope for a device of b that does not exist */
    st = send_envelope(&a.w, b->id.user_id, b->id.device_id + 7, 4);
    CHECK(st == PARLEY__V1__STATUS__NOT_FOUND, "envelope to no device: status %d", st);
    /* the connection is still fine */
    uint64_t seq = 0;
    st = send_body(&a.w, conv, 3, &seq);
    raw_user_free(&a);
    h_dev_free(b);
    CHECK(st == 0 && seq > 0, "a good send after the bad ones: status %d", st);
}

static int reaction_raw(h_raw *w, uint64_t conv, uint64_t ref) {
    uint8_t cmid[16];
    randombytes_buf(cmid, sizeof cmid);
    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = conv;
    sm.client_msg_id.data = cmid;
    sm.client_msg_id.len = sizeof cmid;
    sm.type = PARLEY__V1__MESSAGE_TYPE__REACTION;
    sm.body.data = (uint8_t *)"+1";
    sm.body.len = 2;
    sm.ref_seq = ref;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    return h_raw_request(w, &f, NULL, NULL);
}

static uint64_t read_seq_of(h_dev *viewer, uint64_t conv, uint64_t user) {
    uint64_t delivered, read;
    return h_member_marks(viewer, conv, user, &delivered, &read) == 0 ? read : UINT64_MAX;
}

static void seq_zero_and_backwards(void) {
    raw_user a = {0};
    h_dev *b = NULL;
    uint64_t conv = 0;
    NEED(raw_pair(&a, &b, PEER_OPENS, &conv) == 0);
    uint64_t s[4];
    for (int i = 0; i < 4; i++) NEED((s[i] = h_send(b, conv, "m")) != 0);
    uint64_t last = s[3];
    /* reactions to seq 0 and to a seq that does not exist yet */
    int r0 = reaction_raw(&a.w, conv, 0);
    int rfut = reaction_raw(&a.w, conv, last + 5);
    int rok = reaction_raw(&a.w, conv, s[0]);
    CHECK(r0 == PARLEY__V1__STATUS__BAD_REQUEST, "reaction to seq 0: status %d", r0);
    CHECK(rfut == PARLEY__V1__STATUS__BAD_REQUEST, "reaction to a future seq: status %d", rfut);
    CHECK(rok == 0, "reaction to seq %llu: status %d", (unsigned long long)s[0], rok);
    last++;   /* the reaction */

    Parley__V1__MarkRead mr = PARLEY__V1__MARK_READ__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_MARK_READ;
    f.mark_read = &mr;
    mr.conversation_id = conv;
    /* a's own reaction marked it read up to there (replying reads) */
    uint64_t r_start = read_seq_of(b, conv, a.d->id.user_id);
    CHECK(r_start == last, "a's read seq after reacting: %llu, want %llu",
          (unsigned long long)r_start, (unsigned long long)last);
    /* seq 0: accepted, changes nothing */
    mr.seq = 0;
    int st = h_raw_request(&a.w, &f, NULL, NULL);
    uint64_t r0s = read_seq_of(b, conv, a.d->id.user_id);
    CHECK(st == 0 && r0s == last, "mark-read 0: status %d, read seq %llu", st,
          (unsigned long long)r0s);
    /* backwards: read seq never goes down */
    mr.seq = s[1];
    st = h_raw_request(&a.w, &f, NULL, NULL);
    uint64_t rback = read_seq_of(b, conv, a.d->id.user_id);
    CHECK(st == 0 && rback == last, "mark-read backwards to %llu: status %d, read seq %llu",
          (unsigned long long)s[1], st, (unsigned long long)rback);
    /* past the end: clamped to the last seq */
    mr.seq = last + 1000;
    st = h_raw_request(&a.w, &f, NULL, NULL);
    uint64_t rpast = read_seq_of(b, conv, a.d->id.user_id);
    CHECK(st == 0 && rpast == last, "mark-read past the end: status %d, read seq %llu, want %llu",
          st, (unsigned long long)rpast, (unsigned long long)last);

    /* history: before_seq 1 is empty, limit 0 is the default, a huge limit is capped */
    Parley__V1__History h = PARLEY__V1__HISTORY__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &h;
    h.conversation_id = conv;
    h.before_seq = 1;
    Parley__V1__Frame *resp = NULL;
    st = h_raw_request(&a.w, &f, &resp, NULL);
    int empty_ok = st == 0 && resp->response->history && resp->response->history->n_messages == 0 &&
                   !resp->response->history->has_more;
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    CHECK(empty_ok, "history before seq 1: status %d, not an empty last page", st);
    h.before_seq = 0;
    h.limit = 4000000000u;
    st = h_raw_request(&a.w, &f, &resp, NULL);
    size_t got = st == 0 && resp->response->history ? resp->response->history->n_messages : 0;
    uint64_t newest = got ? resp->response->history->messages[got - 1]->seq : 0;
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    CHECK(st == 0 && got == last && newest == last,
          "history with limit 4e9: status %d, %zu messages (newest %llu), want all %llu", st, got,
          (unsigned long long)newest, (unsigned long long)last);
    /* before_seq far past the end: the newest page */
    h.before_seq = last + 1000000;
    h.limit = 2;
    st = h_raw_request(&a.w, &f, &resp, NULL);
    got = st == 0 && resp->response->history ? resp->response->history->n_messages : 0;
    newest = got ? resp->response->history->messages[got - 1]->seq : 0;
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    CHECK(got == 2 && newest == last, "history before a future seq: %zu messages, newest %llu",
          got, (unsigned long long)newest);
    raw_user_free(&a);
    h_dev_free(b);
}

/* An Ack past what the server sent is clamped: the device keeps getting
 * events (an unclamped cursor past the sent position would leave the sync
 * window looking full, or skip events). */
static void ack_past_sent_is_clamped(void) {
    raw_user a = {0};
    h_dev *b = NULL;
    uint64_t conv = 0;
    NEED(raw_pair(&a, &b, PEER_OPENS, &conv) == 0);
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    NEED(h_raw_request(&a.w, &f, NULL, NULL) == 0);
    /* ack far ahead (no response to an Ack), then a request to be sure it was read */
    Parley__V1__Ack ack = PARLEY__V1__ACK__INIT;
    ack.user_seq = 1000000;
    Parley__V1__Frame af = PARLEY__V1__FRAME__INIT;
    af.body_case = PARLEY__V1__FRAME__BODY_ACK;
    af.ack = &ack;
    size_t len = parley__v1__frame__get_packed_size(&af);
    uint8_t buf[64];
    NEED(len <= sizeof buf);
    parley__v1__frame__pack(&af, buf);
    NEED(h_raw_send_binary(&a.w, buf, len) == 0);
    Parley__V1__ListConversations lc = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    NEED(h_raw_request(&a.w, &f, NULL, NULL) == 0);
    /* b sends; a's raw connection must be pushed the event */
    uint64_t seq = h_send(b, conv, "after the wild ack");
    NEED(seq);
    int seen = 0;
    for (int i = 0; i < 256 && !seen; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(&a.w, NULL);
        if (!r) break;
        seen = r->body_case == PARLEY__V1__FRAME__BODY_EVENT && r->event->message &&
               r->event->message->conversation_id == conv && r->event->message->seq == seq;
        parley__v1__frame__free_unpacked(r, NULL);
    }
    raw_user_free(&a);
    h_dev_free(b);
    CHECK(seen, "after an Ack of user_seq 1000000, a's connection was never pushed seq %llu",
          (unsigned long long)seq);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    const char *args[] = {"--max-group-members", "5", "--send-rate", "100000", NULL};
    if (h_server_start(&S, args) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(message_body_over_64k);
    RUN(device_envelope_size);
    RUN(prekey_upload_and_storage_caps);
    RUN(group_size_cap);
    RUN(presence_list_cap);
    RUN(http_head_too_large_431);
    RUN(wrong_ids);
    RUN(seq_zero_and_backwards);
    RUN(ack_past_sent_is_clamped);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
