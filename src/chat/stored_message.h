/* stored_message.h -- the stored Message of a send, written by hand.
 *
 * Every message sent is stored (and fanned out) as a packed Message
 * (proto/parley.proto): conversation_id, seq, sender, type, body,
 * mime_type, size, ref_seq, server_ts, client_msg_id. Packed through
 * protobuf-c that cost ~1,800 instructions per message
 * (get_packed_size and pack walk Message's 12 fields through its
 * descriptor, twice); written directly it is a few hundred, most of
 * them copying the body. The bytes are protobuf-c's (proto3: fields in
 * number order, zeros and empty strings left out), which
 * tests/unit/test_stored_message.c checks against it; the field numbers
 * below must follow proto/parley.proto. A membership Message (the server's
 * own, rare) is still packed by protobuf-c. */
#ifndef PARLEY_CHAT_STORED_MESSAGE_H
#define PARLEY_CHAT_STORED_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct stored_message {
    uint64_t conversation_id;
    uint64_t seq;
    uint64_t sender_user_id;
    uint32_t sender_device_id;
    int32_t type;                 /* Parley__V1__MessageType */
    const uint8_t *body;
    size_t body_len;
    const char *mime_type;        /* NUL-terminated; NULL or "" for none */
    uint64_t size;
    uint64_t ref_seq;
    uint64_t server_ts;
    const uint8_t *client_msg_id;
    size_t client_msg_id_len;
} stored_message;

/* The bytes stored_message_encode writes for m. */
size_t stored_message_size(const stored_message *m);
/* Writes the packed Message into out (stored_message_size(m) bytes); returns its length. */
size_t stored_message_encode(const stored_message *m, uint8_t *out);

#endif
