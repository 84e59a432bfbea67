/* send_record.c -- see send_record.h. */
#include "cluster/send_record.h"

#include <string.h>

#include "cluster/link_frame.h"
#include "core/bigendian.h"

size_t send_record_head(const send_record *r, uint8_t out[SEND_RECORD_HEAD_MAX]) {
    size_t n = strnlen(r->origin, sizeof r->origin);
    if (n == 0 || n > SEND_RECORD_NAME_MAX) return 0;
    uint8_t *p = out;
    *p++ = SEND_RECORD_VERSION;
    *p++ = (uint8_t)n;
    memcpy(p, r->origin, n);
    p += n;
    p = put_be(p, r->conn_id, 8);
    p = put_be(p, r->request_id, 8);
    p = put_be(p, r->user_id, 8);
    p = put_be(p, r->device_id, 4);
    return (size_t)(p - out);
}

int send_record_parse(const void *value, size_t len, send_record *r) {
    const uint8_t *v = value;
    if (len < 2 || v[0] != SEND_RECORD_VERSION) return -1;
    size_t n = v[1];
    size_t head = 2 + n + 8 * 3 + 4;
    if (n == 0 || n > SEND_RECORD_NAME_MAX || len <= head || len - head > LINK_BODY_MAX) return -1;
    memcpy(r->origin, v + 2, n);
    r->origin[n] = 0;
    if (strlen(r->origin) != n) return -1;   /* no NUL inside a name */
    const uint8_t *p = v + 2 + n;
    r->conn_id = get_be(p, 8);
    r->request_id = get_be(p + 8, 8);
    r->user_id = get_be(p + 16, 8);
    r->device_id = (uint32_t)get_be(p + 24, 4);
    r->frame = v + head;
    r->frame_len = len - head;
    return 0;
}
