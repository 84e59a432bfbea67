/* sent_answer.h -- the SENT answer to a SendMessage, written by hand.
 *
 * Every stored message is answered Frame{request_id, response =
 * Response{status OK, sent = Sent{conversation_id, seq, server_ts,
 * duplicate}}}. Packed through protobuf-c that cost ~4,100 instructions
 * (get_packed_size and pack walk Frame's and Response's descriptors, ~60
 * fields, for 4 set ones), ~2.6 % of the server's instructions per
 * delivered message; written directly it is a few dozen. The bytes are
 * the ones protobuf-c writes (proto3: fields in number order, zeros left
 * out), which tests/unit/test_sent_answer.c checks against it; the field
 * numbers below must follow proto/parley.proto. */
#ifndef PARLEY_CHAT_SENT_ANSWER_H
#define PARLEY_CHAT_SENT_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the most bytes sent_answer_encode writes */
enum { SENT_ANSWER_MAX = 64 };

typedef struct sent_answer {
    uint64_t request_id;
    uint64_t conversation_id;
    uint64_t seq;
    uint64_t server_ts;
    bool duplicate;
} sent_answer;

/* Writes the encoded Frame into out (SENT_ANSWER_MAX bytes); returns its length. */
size_t sent_answer_encode(const sent_answer *a, uint8_t out[SENT_ANSWER_MAX]);

#endif
