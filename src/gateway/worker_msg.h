/* worker_msg.h -- what other threads hand to the worker that owns a
 * connection: a reply to a request, a live event to deliver, or a push
 * (receipt). The worker owns the message once posted. The write path and
 * fan-out never see this type: they call their port (chat/outbox.h), which
 * gateway/outbox_local.c turns into worker_msgs. */
#ifndef PARLEY_GATEWAY_WORKER_MSG_H
#define PARLEY_GATEWAY_WORKER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "core/blob.h"
#include "proto/parley.pb-c.h"

struct server;

typedef enum worker_msg_kind {
    WM_REPLY,     /* data: an encoded Frame; if user_id != 0, the connection is
                     now signed in as (user_id, device_id) */
    WM_DELIVER,   /* an inbox event: user_seq + shared encoded Message */
    WM_PUSH,      /* data: an encoded Frame (receipt) */
    WM_CLOSE_DEVICE, /* to every worker (conn_id names only the worker): close the
                        connections signed in as (user_id, device_id), which was removed */
    WM_DROP_PRESENCE, /* to every worker: connections of user_id stop receiving the
                         presence of about_user, who blocked user_id */
    WM_MQTT_TAKEOVER, /* close conn_id if it is still the MQTT connection of (user_id, device_id):
                         a newer one took its client id (mqtt_takeover.c) */
    WM_RESYNC,    /* many nodes: the connection's session entry is now live in Redis;
                     catch up from the store on what a lookup before it missed
                     (cluster/session_registry.h) */
    WM_DEVICE_READ, /* data: a store_read_result, a sign-in's device read (gateway/store_reads.h) */
    WM_INBOX_PAGE,  /* data: a page of the connection's catch-up, read off the worker
                       (gateway/catchup_read.h) */
    WM_CURSOR_READ, /* data: a store_cursor_read, the cursor an MQTT session resumes from,
                       read off the worker (gateway/store_reads.h) */
    WM_MQTT_CONNECT_READ, /* data: an mqtt_connect_read, what an MQTT CONNECT read off the
                             worker (gateway/mqtt_connect_read.h) */
    WM_REQUEST_READ, /* data: a request_read_ask and the encoded Frame answering it, a History,
                        ListConversations or LookupUser read off the worker (gateway/request_read.h) */
    WM_DEVICE_MESSAGES, /* data: a page of the device messages a StartSync pushes, read off
                           the worker (gateway/device_message_read.h) */
} worker_msg_kind;

typedef struct worker_msg {
    worker_msg_kind kind;
    uint64_t conn_id;
    uint64_t user_id;
    uint32_t device_id;
    uint64_t user_seq;
    blob *message;
    uint64_t about_user;    /* WM_DROP_PRESENCE */
    size_t len;
    uint8_t data[];
} worker_msg;

/* conn ids name the worker in their top bits, so anyone can route to them */
static inline uint32_t conn_id_worker(uint64_t conn_id) { return (uint32_t)(conn_id >> 56); }

worker_msg *worker_msg_new(worker_msg_kind kind, uint64_t conn_id, size_t len);
void worker_msg_free(worker_msg *m);
/* A new message of kind for conn_id holding a copy of data[0..len) /
 * frame packed (worker_msg.c). */
worker_msg *worker_msg_copy(worker_msg_kind kind, uint64_t conn_id, const uint8_t *data, size_t len);
worker_msg *worker_msg_pack(worker_msg_kind kind, uint64_t conn_id, const Parley__V1__Frame *frame);
/* Hands m to the worker owning m->conn_id (blocking while its queue is
 * full; never called from a worker thread). */
void worker_post(struct server *srv, worker_msg *m);
/* Hands msgs[0..n), all for connections of worker `worker`, over in one go
 * (post.c). Messages the worker can no longer take are freed. */
void worker_post_many(struct server *srv, uint32_t worker, worker_msg **msgs, size_t n);

#endif
