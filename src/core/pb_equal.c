/* pb_equal.c -- see pb_equal.h. */
#include "core/pb_equal.h"

#include <stdbool.h>
#include <string.h>

/* Sub-messages deeper than this are left to the encoded comparison: a
 * bound on the recursion for a type that (indirectly) holds itself. */
enum { DEPTH_MAX = 4 };

/* the in-memory size of a scalar field; 0 for any other kind */
static size_t scalar_size(ProtobufCType type) {
    switch (type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return 0;
    }
}

static bool is_message(const ProtobufCFieldDescriptor *f) { return f->type == PROTOBUF_C_TYPE_MESSAGE; }

/* Can messages of type d be compared in place: every field, and every
 * field of the types it holds, a scalar or a sub-message, none in a oneof? */
static bool type_comparable(const ProtobufCMessageDescriptor *d, int depth) {
    if (depth > DEPTH_MAX) return false;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) return false;
        if (is_message(f) ? !type_comparable(f->descriptor, depth + 1) : scalar_size(f->type) == 0) return false;
    }
    return true;
}

static const void *at(const ProtobufCMessage *m, unsigned offset) { return (const char *)m + offset; }

static bool same_bytes(const ProtobufCMessage *a, const ProtobufCMessage *b, unsigned offset, size_t size) {
    return memcmp(at(a, offset), at(b, offset), size) == 0;
}

static int message_equal(const ProtobufCMessage *a, const ProtobufCMessage *b);

/* two sub-message fields (NULL: not set) */
static int sub_equal(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    if (a == b) return 1;
    if (!a || !b) return 0;
    return message_equal(a, b);
}

/* one repeated field of a and b */
static int repeated_equal(const ProtobufCMessage *a, const ProtobufCMessage *b, const ProtobufCFieldDescriptor *f) {
    size_t n = *(const size_t *)at(a, f->quantifier_offset);
    if (n != *(const size_t *)at(b, f->quantifier_offset)) return 0;
    const void *xa = *(const void *const *)at(a, f->offset), *xb = *(const void *const *)at(b, f->offset);
    if (n == 0 || xa == xb) return 1;   /* the same array (a shallow copy of the record) */
    if (!is_message(f)) return memcmp(xa, xb, n * scalar_size(f->type)) == 0;
    const ProtobufCMessage *const *ma = xa, *const *mb = xb;
    int equal = 1;
    for (size_t i = 0; i < n && equal == 1; i++) equal = sub_equal(ma[i], mb[i]);
    return equal;
}

/* a and b of one comparable type (type_comparable); the first difference
 * answers (a message that differs in a field it knows is not equal,
 * whatever its unknown fields say) */
static int message_equal(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    if (a->n_unknown_fields || b->n_unknown_fields) return -1;
    const ProtobufCMessageDescriptor *d = a->descriptor;
    int equal = 1;
    for (unsigned i = 0; i < d->n_fields && equal == 1; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            equal = repeated_equal(a, b, f);
        } else if (is_message(f)) {
            equal = sub_equal(*(const ProtobufCMessage *const *)at(a, f->offset),
                              *(const ProtobufCMessage *const *)at(b, f->offset));
        } else {
            equal = same_bytes(a, b, f->offset, scalar_size(f->type)) &&
                    (f->label != PROTOBUF_C_LABEL_OPTIONAL ||
                     same_bytes(a, b, f->quantifier_offset, sizeof(protobuf_c_boolean)));
        }
    }
    return equal;
}

int pb_fields_equal(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    const ProtobufCMessageDescriptor *d = a->descriptor;
    if (!d || d != b->descriptor || !type_comparable(d, 0)) return -1;
    return message_equal(a, b);
}
