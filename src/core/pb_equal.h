/* pb_equal.h -- are two protobuf-c messages of one type equal, without
 * packing them?
 *
 * Comparing packed encodings works for any message but costs two
 * get_packed_size and two pack calls; on the write path that ran for every
 * delivered-seq raise (store_put_member_update). For a message of plain
 * scalar fields (numbers, bools, enums; no strings, bytes, single
 * sub-messages, repeated scalars, oneofs or unknown fields), and repeated
 * sub-messages that are such messages themselves (a member's earlier
 * spans), the fields can be compared in place, guided by the descriptor,
 * so a field added later still counts. */
#ifndef PARLEY_CORE_PB_EQUAL_H
#define PARLEY_CORE_PB_EQUAL_H

#include <protobuf-c/protobuf-c.h>

/* 1 equal, 0 not equal, -1 not decidable this way (a field that is not a
 * plain scalar, unknown fields, or the two are of different types): the
 * caller compares their encodings instead. "Not equal" may also mean equal
 * encodings with different unset values (a proto2 optional field whose
 * has_ flag is off in both); callers treat "not equal" as "write it". */
int pb_scalars_equal(const ProtobufCMessage *a, const ProtobufCMessage *b);

#endif
