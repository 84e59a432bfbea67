/* outbox.h -- the write path's one way out to devices: answer the
 * connection that asked, push a frame to a connection, deliver inbox events
 * to connections, and the two orders about every connection of a device or
 * user (close a removed device; drop a presence subscription).
 *
 * The write path (chat/) and fan-out (fanout/) build packed frames and hand
 * them here; they never know who carries them. Today the gateway's workers
 * implement it (gateway/outbox_local.c); a link to another node can
 * implement the same calls, so a conversation's owner can live on any node
 * and dependencies run one way: gateway -> chat -> store/queue. Like the
 * store, queue and registry, it is a struct of function pointers plus an
 * opaque handle, set on the server at start (server.h, srv->outbox).
 *
 * Every call is made from a write-path or fan-out thread, never from a
 * gateway loop (it may wait while a loop's inbox is full). Bytes are copied:
 * the caller keeps its buffer. What is sent to a connection that is gone is
 * dropped. */
#ifndef PARLEY_CHAT_OUTBOX_H
#define PARLEY_CHAT_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "core/blob.h"

/* One inbox event for one connection of its user: the shared encoded
 * Message (the port takes its own reference) at the user's user_seq. */
typedef struct outbox_delivery {
    uint64_t conn_id;
    uint64_t user_id;
    uint64_t user_seq;
    blob *message;
} outbox_delivery;

typedef struct outbox_ops {
    /* The response frame to the request conn_id sent. signed_in_user != 0:
     * it answers a registration, and the connection is now signed in as
     * (signed_in_user, signed_in_device). */
    void (*answer)(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len,
                   uint64_t signed_in_user, uint32_t signed_in_device);
    /* A server push frame (receipt, presence, device message, ...). */
    void (*push)(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len);
    /* Inbox events, each to its connection, in the order given per
     * connection. */
    void (*deliver)(void *impl, const outbox_delivery *d, size_t n);
    /* Every connection signed in as (user, device) is closed (1008): the
     * device was removed. */
    void (*close_device)(void *impl, uint64_t user, uint32_t device);
    /* The connections of user stop receiving about_user's presence
     * (about_user blocked user). */
    void (*drop_presence)(void *impl, uint64_t user, uint64_t about_user);
} outbox_ops;

typedef struct outbox {
    const outbox_ops *ops;
    void *impl;
} outbox;

static inline void outbox_answer(const outbox *o, uint64_t conn_id, const uint8_t *frame, size_t len,
                                 uint64_t signed_in_user, uint32_t signed_in_device) {
    o->ops->answer(o->impl, conn_id, frame, len, signed_in_user, signed_in_device);
}
static inline void outbox_push(const outbox *o, uint64_t conn_id, const uint8_t *frame, size_t len) {
    o->ops->push(o->impl, conn_id, frame, len);
}
static inline void outbox_deliver(const outbox *o, const outbox_delivery *d, size_t n) {
    if (n) o->ops->deliver(o->impl, d, n);
}
static inline void outbox_close_device(const outbox *o, uint64_t user, uint32_t device) {
    o->ops->close_device(o->impl, user, device);
}
static inline void outbox_drop_presence(const outbox *o, uint64_t user, uint64_t about_user) {
    o->ops->drop_presence(o->impl, user, about_user);
}

#endif
