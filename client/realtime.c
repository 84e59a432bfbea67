/* realtime.c -- the real-time half of parley.h: presence, typing, receipts,
 * the key directory, device lists and device messages. Requests are built
 * and run like those of api.c; the pushes they bring are handled here, called
 * from the dispatcher in sync.c. */
#include <string.h>

#include "internal.h"

enum {
    MAX_PRESENCE_USERS = 1024,     /* SubscribePresence limit in parley.proto */
    MAX_ONE_TIME_UPLOAD = 200,     /* UploadKeys limit */
    MAX_ENVELOPE = 65536,          /* SendDeviceMessage.body limit */
    TYPING_ATTEMPTS = 2,           /* the current connection, then one fresh one */
};

/* ------------------------------------------------------------ presence */

int pc_subscribe_presence(pc_client *c, const uint64_t *users, size_t n) {
    if (n > MAX_PRESENCE_USERS)
        return pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "at most %d users", MAX_PRESENCE_USERS);
    Parley__V1__SubscribePresence sp = PARLEY__V1__SUBSCRIBE_PRESENCE__INIT;
    sp.user_ids = (uint64_t *)users;
    sp.n_user_ids = n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SUBSCRIBE_PRESENCE;
    f.subscribe_presence = &sp;
    /* retry-safe: the list replaces the previous one */
    return pc_run_no_result(c, &f, true);
}

void pc_on_presence(pc_client *c, pc_presence_fn fn, void *ud) {
    c->on_presence = fn;
    c->on_presence_ud = ud;
}

/* -------------------------------------------------------------- typing */

int pc_typing(pc_client *c, uint64_t conversation_id, int typing) {
    if (c->in_callback) return pc_fail(c, -1, "blocking libparley call from inside a callback");
    Parley__V1__Typing t = PARLEY__V1__TYPING__INIT;
    t.conversation_id = conversation_id;
    t.typing = typing != 0;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_TYPING;
    f.typing = &t;
    /* Not pc_request_run: it waits out RATE_LIMITED, and an indicator that
     * waited is stale; the caller decides whether a later one is worth it. */
    int budget = c->max_reconnects;
    for (int attempt = 0; attempt < TYPING_ATTEMPTS; attempt++) {
        if (c->fd < 0) {
            if (!c->want_connected) return pc_fail(c, -1, "not connected");
            if (pc_reconnect(c, &budget) < 0) return -1;
        }
        pc_request req = {.frame = &f, .retry_safe = true};
        Parley__V1__Frame *resp;
        if (pc_request_once(c, &req, &resp) == 0) {
            parley__v1__frame__free_unpacked(resp, NULL);
            return 0;
        }
        if (c->fd >= 0) return -1;   /* the server said no (RATE_LIMITED among others) */
        /* lost: an indicator may be sent twice, so once more on a new connection */
    }
    return -1;
}

void pc_on_typing(pc_client *c, pc_typing_fn fn, void *ud) {
    c->on_typing = fn;
    c->on_typing_ud = ud;
}

uint64_t pc_retry_after_ms(const pc_client *c) { return c->retry_after_ms; }

/* ------------------------------------------------------------ receipts */

int pc_get_receipts(pc_client *c, uint64_t conversation_id, Parley__V1__ReceiptList **out) {
    *out = NULL;
    Parley__V1__GetReceipts gr = PARLEY__V1__GET_RECEIPTS__INIT;
    gr.conversation_id = conversation_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_GET_RECEIPTS;
    f.get_receipts = &gr;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_RECEIPTS, &resp) < 0) return -1;
    /* detach the list so freeing the frame spares it */
    *out = resp->response->receipts;
    resp->response->receipts = NULL;
    resp->response->result_case = PARLEY__V1__RESPONSE__RESULT__NOT_SET;
    parley__v1__frame__free_unpacked(resp, NULL);
    if (!*out) return pc_fail(c, -1, "protocol error: no receipt list in the answer");
    return 0;
}

/* ------------------------------------------------------- key directory */

static void fill_prekey(Parley__V1__PreKey *k, const pc_prekey *p) {
    k->key_id = p->key_id;
    k->public_key.data = (uint8_t *)p->public_key;
    k->public_key.len = p->public_key ? p->public_key_len : 0;
    k->signature.data = (uint8_t *)p->signature;
    k->signature.len = p->signature ? p->signature_len : 0;
}

int pc_upload_keys(pc_client *c, const uint8_t *identity_key, size_t identity_key_len,
                   const pc_prekey *signed_pre_key, const pc_prekey *one_time, size_t n_one_time,
                   uint32_t *remaining) {
    if (n_one_time > MAX_ONE_TIME_UPLOAD)
        return pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "at most %d one-time pre-keys per upload",
                       MAX_ONE_TIME_UPLOAD);
    Parley__V1__PreKey spk = PARLEY__V1__PRE_KEY__INIT;
    Parley__V1__PreKey otk[MAX_ONE_TIME_UPLOAD];
    Parley__V1__PreKey *otk_ptrs[MAX_ONE_TIME_UPLOAD];
    Parley__V1__UploadKeys uk = PARLEY__V1__UPLOAD_KEYS__INIT;
    uk.identity_key.data = (uint8_t *)identity_key;
    uk.identity_key.len = identity_key ? identity_key_len : 0;
    if (signed_pre_key) {
        fill_prekey(&spk, signed_pre_key);
        uk.signed_pre_key = &spk;
    }
    for (size_t i = 0; i < n_one_time; i++) {
        parley__v1__pre_key__init(&otk[i]);
        fill_prekey(&otk[i], &one_time[i]);
        otk[i].signature.len = 0;   /* one-time pre-keys are not signed */
        otk_ptrs[i] = &otk[i];
    }
    uk.one_time_pre_keys = otk_ptrs;
    uk.n_one_time_pre_keys = n_one_time;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_UPLOAD_KEYS;
    f.upload_keys = &uk;
    Parley__V1__Frame *resp;
    /* a repeat of a batch that took effect would count its one-time keys
     * twice on the server; keys alone (identity, signed pre-key) repeat fine */
    if (pc_run(c, &f, n_one_time == 0, PARLEY__V1__RESPONSE__RESULT_KEY_COUNT, &resp) < 0) return -1;
    const Parley__V1__KeyCount *kc = resp->response->key_count;
    if (remaining) *remaining = kc ? kc->one_time_pre_keys : 0;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}

int pc_fetch_keys(pc_client *c, uint64_t user_id, Parley__V1__KeyBundles **out) {
    *out = NULL;
    Parley__V1__FetchKeys fk = PARLEY__V1__FETCH_KEYS__INIT;
    fk.user_id = user_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_FETCH_KEYS;
    f.fetch_keys = &fk;
    Parley__V1__Frame *resp;
    /* retry-safe: a repeat claims another one-time key, and the one whose
     * answer was lost is simply never used, which X3DH tolerates */
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_KEY_BUNDLES, &resp) < 0) return -1;
    *out = resp->response->key_bundles;
    resp->response->key_bundles = NULL;
    resp->response->result_case = PARLEY__V1__RESPONSE__RESULT__NOT_SET;
    parley__v1__frame__free_unpacked(resp, NULL);
    if (!*out) return pc_fail(c, -1, "protocol error: no key bundles in the answer");
    return 0;
}

void pc_on_keys_low(pc_client *c, pc_keys_low_fn fn, void *ud) {
    c->on_keys_low = fn;
    c->on_keys_low_ud = ud;
}

/* ------------------------------------------------------------- devices */

int pc_get_devices(pc_client *c, uint64_t user_id, Parley__V1__DeviceList **out) {
    *out = NULL;
    if (user_id == 0) {
        if (!c->have_identity) return pc_fail(c, -1, "not signed in");
        user_id = c->id.user_id;
    }
    Parley__V1__GetDevices gd = PARLEY__V1__GET_DEVICES__INIT;
    gd.user_id = user_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_GET_DEVICES;
    f.get_devices = &gd;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_DEVICES, &resp) < 0) return -1;
    *out = resp->response->devices;
    resp->response->devices = NULL;
    resp->response->result_case = PARLEY__V1__RESPONSE__RESULT__NOT_SET;
    parley__v1__frame__free_unpacked(resp, NULL);
    if (!*out) return pc_fail(c, -1, "protocol error: no device list in the answer");
    return 0;
}

int pc_remove_device(pc_client *c, uint32_t device_id) {
    Parley__V1__RemoveDevice rd = PARLEY__V1__REMOVE_DEVICE__INIT;
    rd.device_id = device_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_REMOVE_DEVICE;
    f.remove_device = &rd;
    /* not retry-safe: a repeat after the first took effect answers
     * NOT_FOUND, which would report a success as a failure */
    return pc_run_no_result(c, &f, false);
}

void pc_on_device_list_changed(pc_client *c, pc_device_list_fn fn, void *ud) {
    c->on_device_list = fn;
    c->on_device_list_ud = ud;
}

/* ----------------------------------------------------- device messages */

int pc_send_device_message(pc_client *c, uint64_t user_id, uint32_t device_id, const void *body,
                           size_t len, uint64_t *queue_seq) {
    if (len == 0 || len > MAX_ENVELOPE)
        return pc_fail(c, len ? PARLEY__V1__STATUS__TOO_LARGE : PARLEY__V1__STATUS__BAD_REQUEST,
                       "an envelope is 1..%d bytes", MAX_ENVELOPE);
    Parley__V1__SendDeviceMessage dm = PARLEY__V1__SEND_DEVICE_MESSAGE__INIT;
    dm.user_id = user_id;
    dm.device_id = device_id;
    dm.body.data = (uint8_t *)body;
    dm.body.len = len;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE;
    f.send_device_message = &dm;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, false, PARLEY__V1__RESPONSE__RESULT_QUEUE_SEQ, &resp) < 0) return -1;
    if (queue_seq) *queue_seq = resp->response->queue_seq;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}

void pc_on_device_message(pc_client *c, pc_device_message_fn fn, void *ud) {
    c->on_device_message = fn;
    c->on_device_message_ud = ud;
}

void pc_set_device_messages_seen(pc_client *c, uint64_t seen) {
    c->device_messages_seen = seen;
}

uint64_t pc_device_messages_seen(const pc_client *c) { return c->device_messages_seen; }

int pc_flush_device_acks(pc_client *c) {
    if (!c->device_ack_due) return 0;
    if (c->fd < 0) return pc_fail(c, -1, "not connected");
    Parley__V1__AckDeviceMessages ack = PARLEY__V1__ACK_DEVICE_MESSAGES__INIT;
    ack.up_to = c->device_messages_seen;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES;
    f.ack_device_messages = &ack;
    if (pc_conn_send_frame(c, &f) < 0) return -1;
    c->device_ack_due = false;
    return 0;
}

static void handle_device_message(pc_client *c, const Parley__V1__DeviceMessage *m) {
    if (m->queue_seq > c->device_messages_seen) {
        /* recorded before the callback, like events: a re-entrant pc_poll
         * must not hand the same one out again */
        c->device_messages_seen = m->queue_seq;
        if (c->on_device_message) {
            c->in_callback = true;
            c->on_device_message(c->on_device_message_ud, m);
            c->in_callback = false;
        }
    }
    /* acked after the callback (by pc_flush_acks); a repeat of one already
     * handed out means the server never got that ack, so it is due again */
    c->device_ack_due = true;
}

/* ---------------------------------------------------------- dispatcher */

int pc_realtime_dispatch(pc_client *c, const Parley__V1__Frame *f) {
    switch (f->body_case) {
    case PARLEY__V1__FRAME__BODY_PRESENCE:
        if (f->presence && c->on_presence) {
            c->in_callback = true;
            c->on_presence(c->on_presence_ud, f->presence);
            c->in_callback = false;
        }
        return 1;
    case PARLEY__V1__FRAME__BODY_TYPING_INDICATOR:
        if (f->typing_indicator && c->on_typing) {
            c->in_callback = true;
            c->on_typing(c->on_typing_ud, f->typing_indicator);
            c->in_callback = false;
        }
        return 1;
    case PARLEY__V1__FRAME__BODY_KEYS_LOW:
        if (f->keys_low && c->on_keys_low) {
            c->in_callback = true;
            c->on_keys_low(c->on_keys_low_ud, f->keys_low->one_time_pre_keys);
            c->in_callback = false;
        }
        return 1;
    case PARLEY__V1__FRAME__BODY_DEVICE_LIST_CHANGED:
        if (f->device_list_changed && c->on_device_list) {
            c->in_callback = true;
            c->on_device_list(c->on_device_list_ud, f->device_list_changed->user_id,
                              f->device_list_changed->change_counter);
            c->in_callback = false;
        }
        return 1;
    case PARLEY__V1__FRAME__BODY_DEVICE_MESSAGE:
        if (f->device_message) handle_device_message(c, f->device_message);
        return 1;
    default:
        return 0;
    }
}
