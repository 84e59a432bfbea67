/* push.h -- ephemeral pushes (receipts) to the online devices of a user. */
#ifndef PARLEY_CHAT_PUSH_H
#define PARLEY_CHAT_PUSH_H

#include <stdint.h>

#include "proto/parley.pb-c.h"
#include "server.h"

/* Fill a push frame in storage the caller provides (on its stack). */
void push_frame_receipt(Parley__V1__Frame *f, Parley__V1__Receipt *r, uint64_t conv, uint64_t about_user,
                        Parley__V1__ReceiptKind kind, uint64_t seq);
void push_frame_presence(Parley__V1__Frame *f, Parley__V1__Presence *p, uint64_t user, int online,
                         uint64_t last_seen_ms);

/* Sends frame to every registered connection of user except skip_conn. */
void push_to_user(server *srv, uint64_t user, const Parley__V1__Frame *frame, uint64_t skip_conn);
/* A Receipt push frame to user's devices. */
void push_receipt(server *srv, uint64_t to_user, uint64_t conv, uint64_t about_user,
                  Parley__V1__ReceiptKind kind, uint64_t seq, uint64_t skip_conn);

#endif
