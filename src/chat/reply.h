/* reply.h -- building the frames the server sends: responses (with a
 * status and an optional result) and pushes. */
#ifndef PARLEY_CHAT_REPLY_H
#define PARLEY_CHAT_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/worker_msg.h"
#include "proto/parley.pb-c.h"

/* Packs frame into a new WM_REPLY/WM_PUSH worker message for conn_id. */
worker_msg *reply_pack(worker_msg_kind kind, uint64_t conn_id, const Parley__V1__Frame *frame);

/* A response frame for request_id with status and error text; result fields
 * may be set on *resp by the caller before packing. */
void reply_init(Parley__V1__Frame *frame, Parley__V1__Response *resp, uint64_t request_id,
                Parley__V1__Status status, const char *error);

worker_msg *reply_error(uint64_t conn_id, uint64_t request_id, Parley__V1__Status status,
                        const char *error);
worker_msg *reply_ok(uint64_t conn_id, uint64_t request_id);

#endif
