/* pb_equal.h -- are two protobuf-c messages of one type equal, without
 * packing them?
 *
 * Comparing packed encodings works for any message but costs two
 * get_packed_size and two pack calls; on the write path that ran for every
 * delivered-seq raise and every member record a send touched
 * (store_put_member_update). For a message whose fields are numbers,
 * bools, enums, sub-messages of such fields, and repeated fields of either
 * (no strings, bytes, oneofs or unknown fields anywhere) the fields can be
 * compared in place, guided by the descriptor, so a field added later
 * still counts. Member has such a field since it keeps the spans of
 * earlier memberships (repeated MemberSpan earlier); before sub-messages
 * were compared here, that one field sent every comparison back to
 * packing. */
#ifndef PARLEY_CORE_PB_EQUAL_H
#define PARLEY_CORE_PB_EQUAL_H

#include <protobuf-c/protobuf-c.h>

/* 1 equal, 0 not equal, -1 not decidable this way (the type, or a type it
 * holds, has a field that is neither a plain scalar nor a sub-message;
 * sub-messages nested deeper than a few levels; unknown fields; or the two
 * are of different types): the caller compares their encodings instead.
 * Whether the type can be compared does not depend on the values, so the
 * answer for two messages of one type is -1 always or never (unknown
 * fields aside). "Not equal" may also mean equal encodings with different
 * unset values (a proto2 optional field whose has_ flag is off in both);
 * callers treat "not equal" as "write it". */
int pb_fields_equal(const ProtobufCMessage *a, const ProtobufCMessage *b);

#endif
