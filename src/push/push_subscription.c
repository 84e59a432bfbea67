/* push_subscription.c -- see push_subscription.h. */
#include "push/push_subscription.h"

#include <string.h>

#include "core/clock.h"
#include "push/push_gateway.h"
#include "push/webpush_crypto.h"
#include "push/webpush_provider.h"

void handle_push_register(writer *w, chat_request *r) {
    const Parley__V1__PushRegister *q = r->frame->push_register;
    size_t len = q->endpoint ? strnlen(q->endpoint, WEBPUSH_ENDPOINT_MAX + 1) : 0;
    if (!webpush_endpoint_valid(q->endpoint, len)) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "endpoint: an https URL of at most %d bytes",
                    WEBPUSH_ENDPOINT_MAX);
        return;
    }
    EVP_PKEY *point = q->p256dh.len == WEBPUSH_PUBLIC_KEY_BYTES ? webpush_p256_public(q->p256dh.data) : NULL;
    if (!point) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "p256dh: a P-256 public key, 65 bytes uncompressed");
        return;
    }
    EVP_PKEY_free(point);
    if (q->auth.len != WEBPUSH_AUTH_BYTES) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "auth: exactly %d bytes", WEBPUSH_AUTH_BYTES);
        return;
    }
    Parley__Store__PushSubscription sub;
    parley__store__push_subscription__init(&sub);
    sub.endpoint = q->endpoint;
    sub.p256dh = q->p256dh;
    sub.auth = q->auth;
    sub.created_ts = clock_wall_ms();
    store_put_push_subscription(w->batch, r->user_id, r->device_id, &sub);   /* replaces the last one */
    push_gateway_subscribed(w->srv->push, r->user_id, r->device_id);   /* before the commit: hints are not missed */
    writer_answer_ok(w, r);
}

void handle_push_unregister(writer *w, chat_request *r) {
    store_delete_push_subscription(w->batch, r->user_id, r->device_id);
    push_gateway_unsubscribed(w->srv->push, r->user_id, r->device_id);
    writer_answer_ok(w, r);
}
