/* device_messages.c -- opaque envelopes for one device (e.g. a conversation
 * key, pairwise-encrypted by the sender). Each device has a queue numbered
 * by queue_seq; an envelope stays there until the device acknowledges it,
 * is pushed live when the device is online, and at StartSync otherwise. */
#include "chat/consent.h"
#include "chat/membership.h"
#include "chat/writer_internal.h"
#include "core/clock.h"

enum { MAX_ENVELOPE = 65536 };

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

    Parley__V1__DeviceMessage dm;
    parley__v1__device_message__init(&dm);
    dm.queue_seq = queue_seq;
    dm.sender_user_id = r->user_id;
    dm.sender_device_id = r->device_id;
    dm.body = q->body;
    dm.server_ts = clock_wall_ms();
    Parley__V1__Frame push;
    parley__v1__frame__init(&push);
    push.body_case = PARLEY__V1__FRAME__BODY_DEVICE_MESSAGE;
    push.device_message = &dm;
    size_t n = parley__v1__device_message__get_packed_size(&dm);
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
            worker_post(w->srv, reply_pack(WM_PUSH, entries[i].conn_id, &push));
}

void handle_ack_device_messages(writer *w, chat_request *r) {
    store_delete_device_messages_through(w->batch, r->user_id, r->device_id,
                                         r->frame->ack_device_messages->up_to);
}
