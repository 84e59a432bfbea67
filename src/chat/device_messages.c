/* device_messages.c -- opaque envelopes for one device (e.g. a conversation
 * key, pairwise-encrypted by the sender). Each device has a queue numbered
 * by queue_seq; an envelope stays there until the device acknowledges it,
 * is pushed live when the device is online, and at StartSync otherwise. */
#include "chat/consent.h"
#include "chat/membership.h"
#include "chat/writer_internal.h"
#include "core/clock.h"
#include "core/metrics.h"

enum { MAX_ENVELOPE = 65536 };

/* What waits in one device's queue, in all and from one sending user. The
 * queue is read from the store (bounded by the caps themselves), so the
 * count survives restarts and acks need no bookkeeping. */
typedef struct queue_usage {
    uint64_t sender;
    uint32_t count, sender_count;
    size_t bytes, sender_bytes;
} queue_usage;

static int count_queued(void *ud, uint64_t queue_seq, const uint8_t *msg, size_t len) {
    (void)queue_seq;
    queue_usage *u = ud;
    u->count++;
    u->bytes += len;
    Parley__V1__DeviceMessage *dm = parley__v1__device_message__unpack(NULL, len, msg);
    if (dm && dm->sender_user_id == u->sender) {
        u->sender_count++;
        u->sender_bytes += len;
    }
    if (dm) parley__v1__device_message__free_unpacked(dm, NULL);
    return 0;
}

/* NULL when an envelope of len more bytes from sender fits in the queue of
 * (user, device), else why not. One sending user may fill at most
 * device_queue_per_sender envelopes and a quarter of the bytes (at least
 * one largest envelope), so a stranger cannot take the whole queue. */
static const char *queue_full(writer *w, uint64_t user, uint32_t device, uint64_t sender, size_t len) {
    const config *cfg = &w->srv->cfg;
    queue_usage u = {.sender = sender};
    store_scan_device_messages(w->srv->store, user, device, cfg->device_queue_max + 1, count_queued, &u);
    size_t sender_bytes_max = cfg->device_queue_bytes / 4;
    if (sender_bytes_max < MAX_ENVELOPE + 1024) sender_bytes_max = MAX_ENVELOPE + 1024;
    if (u.count + 1 > cfg->device_queue_max) return "the device's queue is full (envelopes)";
    if (u.bytes + len > cfg->device_queue_bytes) return "the device's queue is full (bytes)";
    if (u.sender_count + 1 > cfg->device_queue_per_sender) return "too many of your envelopes wait for this device";
    if (u.sender_bytes + len > sender_bytes_max) return "too many bytes of yours wait for this device";
    return NULL;
}

void handle_send_device_message(writer *w, chat_request *r) {
    const Parley__V1__SendDeviceMessage *q = r->frame->send_device_message;
    if (q->body.len < 1 || q->body.len > MAX_ENVELOPE) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "an envelope is 1-%d bytes", MAX_ENVELOPE);
        return;
    }
    Parley__Store__Device *d = NULL;
    if (store_get_device(w->srv->store, q->user_id, q->device_id, &d) != 1) {
        writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "no device %llu/%u", (unsigned long long)q->user_id,
                    q->device_id);
        return;
    }
    if (membership_shared(w->srv->store, r->user_id, q->user_id) != 1) {
        writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN, "device messages only to users you share a conversation with");
        parley__store__device__free_unpacked(d, NULL);
        return;
    }
    Parley__V1__DeviceMessage dm;
    parley__v1__device_message__init(&dm);
    dm.queue_seq = d->last_queue_seq + 1;
    dm.sender_user_id = r->user_id;
    dm.sender_device_id = r->device_id;
    dm.body = q->body;
    dm.server_ts = clock_wall_ms();
    Parley__V1__Frame push;
    parley__v1__frame__init(&push);
    push.body_case = PARLEY__V1__FRAME__BODY_DEVICE_MESSAGE;
    push.device_message = &dm;
    size_t n = parley__v1__device_message__get_packed_size(&dm);
    const char *full = queue_full(w, q->user_id, q->device_id, r->user_id, n);
    if (full) {
        METRIC_INC(device_queue_full_total);
        writer_fail(w, r, PARLEY__V1__STATUS__TOO_LARGE, "%s; it takes more once the device has read them", full);
        parley__store__device__free_unpacked(d, NULL);
        return;
    }
    /* after the queue checks: a bounded request counts only what is queued */
    if (consent_device_message(w, r->user_id, q->user_id) != PARLEY__V1__STATUS__OK) {
        writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN,
                    "device messages to a user who has not accepted you are limited to %d",
                    REQUEST_DEVICE_MESSAGES_MAX);
        parley__store__device__free_unpacked(d, NULL);
        return;
    }
    uint64_t queue_seq = ++d->last_queue_seq;
    store_put_device(w->batch, q->user_id, q->device_id, d);
    parley__store__device__free_unpacked(d, NULL);
    uint8_t *packed = malloc(n);
    if (!packed) abort();
    parley__v1__device_message__pack(&dm, packed);
    store_put_device_message(w->batch, q->user_id, q->device_id, queue_seq, packed, n);
    free(packed);

    Parley__V1__Response resp;
    parley__v1__response__init(&resp);
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_QUEUE_SEQ;
    resp.queue_seq = queue_seq;
    writer_answer(w, r, &resp);
    writer_flush(w);   /* stored before it is pushed */

    registry_entry entries[64];
    size_t online = registry_lookup(w->srv->registry, q->user_id, entries, 64);
    for (size_t i = 0; i < online && i < 64; i++)
        if (entries[i].device_id == q->device_id)
            reply_push_now(w->srv->outbox, entries[i].conn_id, &push);
}

void handle_ack_device_messages(writer *w, chat_request *r) {
    uint64_t up_to = r->frame->ack_device_messages->up_to;
    for (size_t i = 0; i < w->n_device_acks; i++) {
        device_ack *a = &w->device_acks[i];
        if (a->user == r->user_id && a->device == r->device_id) {
            if (up_to > a->up_to) a->up_to = up_to;
            METRIC_INC(device_acks_coalesced_total);
            return;
        }
    }
    /* bounded: writer_main flushes after at most BATCH_MAX requests */
    if (w->n_device_acks == BATCH_MAX) writer_flush(w);
    w->device_acks[w->n_device_acks++] = (device_ack){r->user_id, r->device_id, up_to};
}

void writer_put_device_acks(writer *w) {
    for (size_t i = 0; i < w->n_device_acks; i++) {
        device_ack *a = &w->device_acks[i];
        store_delete_device_messages_through(w->batch, a->user, a->device, a->up_to);
    }
    w->n_device_acks = 0;
}
