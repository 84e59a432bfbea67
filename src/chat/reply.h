/* reply.h -- building the frames the server sends: responses (with a
 * status and an optional result) and pushes, packed into bytes and handed
 * to the write path's port (chat/outbox.h), at once or after the batch they
 * report commits (an `outbound`, held by the writer until then). */
#ifndef PARLEY_CHAT_REPLY_H
#define PARLEY_CHAT_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "chat/outbox.h"
#include "proto/parley.pb-c.h"

/* What an outbound asks the port to do (outbox.h says what each means). */
typedef enum outbound_kind {
    OUT_ANSWER,         /* data: an encoded response Frame; user_id != 0: a sign-in */
    OUT_PUSH,           /* data: an encoded push Frame */
    OUT_CLOSE_DEVICE,   /* (user_id, device_id): no connection, no data */
    OUT_DROP_PRESENCE,  /* user_id stops hearing about_user: no connection, no data */
} outbound_kind;

/* One packed frame (or order) held until it may go out. One owner: whoever
 * holds it, until outbound_send hands it over and frees it. */
typedef struct outbound {
    outbound_kind kind;
    uint64_t conn_id;
    uint64_t user_id;
    uint32_t device_id;
    uint64_t about_user;
    size_t len;
    uint8_t data[];
} outbound;

outbound *outbound_new(outbound_kind kind, uint64_t conn_id, size_t len);
void outbound_free(outbound *m);
/* Hands m to the port and frees it. */
void outbound_send(const outbox *o, outbound *m);

/* Packs frame into a new OUT_ANSWER/OUT_PUSH outbound for conn_id. */
outbound *reply_pack(outbound_kind kind, uint64_t conn_id, const Parley__V1__Frame *frame);
/* Packs frame and answers / pushes it to conn_id through the port now. */
void reply_answer_now(const outbox *o, uint64_t conn_id, const Parley__V1__Frame *frame);
void reply_push_now(const outbox *o, uint64_t conn_id, const Parley__V1__Frame *frame);

/* A response frame for request_id with status and error text; result fields
 * may be set on *resp by the caller before packing. */
void reply_init(Parley__V1__Frame *frame, Parley__V1__Response *resp, uint64_t request_id,
                Parley__V1__Status status, const char *error);

outbound *reply_error(uint64_t conn_id, uint64_t request_id, Parley__V1__Status status,
                      const char *error);
outbound *reply_ok(uint64_t conn_id, uint64_t request_id);

#endif
