/* pb_equal.c -- see pb_equal.h. */
#include "core/pb_equal.h"

#include <stdbool.h>
#include <string.h>

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

static bool same_bytes(const ProtobufCMessage *a, const ProtobufCMessage *b, unsigned offset, size_t size) {
    return memcmp((const char *)a + offset, (const char *)b + offset, size) == 0;
}

/* a repeated sub-message field: the same count, and each pair equal as
 * pb_scalars_equal says (a sub-message that is not plain scalars: -1) */
static int repeated_equal(const ProtobufCMessage *a, const ProtobufCMessage *b, const ProtobufCFieldDescriptor *f) {
    size_t na, nb;
    memcpy(&na, (const char *)a + f->quantifier_offset, sizeof na);
    memcpy(&nb, (const char *)b + f->quantifier_offset, sizeof nb);
    if (na != nb) return 0;
    ProtobufCMessage *const *xa, *const *xb;
    memcpy(&xa, (const char *)a + f->offset, sizeof xa);
    memcpy(&xb, (const char *)b + f->offset, sizeof xb);
    int equal = 1;
    for (size_t i = 0; i < na; i++) {
        int r = pb_scalars_equal(xa[i], xb[i]);
        if (r < 0) return -1;
        if (r == 0) equal = 0;
    }
    return equal;
}

int pb_scalars_equal(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    const ProtobufCMessageDescriptor *d = a->descriptor;
    if (!d || d != b->descriptor || a->n_unknown_fields || b->n_unknown_fields) return -1;
    int equal = 1;
    /* every field is checked before answering: one that cannot be compared
     * in place makes the answer -1 even after a difference was found */
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int r = repeated_equal(a, b, f);
            if (r < 0) return -1;
            if (r == 0) equal = 0;
            continue;
        }
        size_t size = scalar_size(f->type);
        if (size == 0 || f->label == PROTOBUF_C_LABEL_REPEATED || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) return -1;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
            !same_bytes(a, b, f->quantifier_offset, sizeof(protobuf_c_boolean)))
            equal = 0;
        if (!same_bytes(a, b, f->offset, size)) equal = 0;
    }
    return equal;
}
