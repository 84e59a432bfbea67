/* device_message_read.c -- see device_message_read.h.
 *
 * A page's data: the head, then n of (wire_dm, len message bytes). Read
 * back with memcpy: nothing after the head is aligned. */
#include "gateway/device_message_read.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/test_hold.h"
#include "gateway/store_reads.h"
#include "store/store.h"

typedef struct wire_dm {
    uint64_t queue_seq;
    uint32_t len;
} wire_dm;

static test_hold hold = {.env_name = "PARLEY_TEST_HOLD_DEVICE_MESSAGE_READS",
                         .what = "device-message page reads (StartSync)"};

typedef struct page_read {
    buf out;                    /* the entries, as they go after the head */
    uint32_t n;
    size_t bytes;               /* message bytes taken */
} page_read;

static int page_add(void *ud, uint64_t queue_seq, const uint8_t *msg, size_t len) {
    page_read *pr = ud;
    wire_dm e = {.queue_seq = queue_seq, .len = (uint32_t)len};
    if (buf_append(&pr->out, &e, sizeof e) || buf_append(&pr->out, msg, len)) abort();
    pr->n++;
    pr->bytes += len;
    return pr->bytes >= DM_PAGE_BYTES;   /* the rest in the next page */
}

worker_msg *dm_read_page(store *st, uint64_t conn_id, const dm_ask *q) {
    test_hold_wait(&hold);
    page_read pr;
    memset(&pr, 0, sizeof pr);
    dm_page_head h;
    memset(&h, 0, sizeof h);
    h.ask = *q;
    h.failed = store_scan_device_messages_after(st, q->user_id, q->device_id, q->after, DM_PAGE, page_add, &pr) < 0;
    h.n = pr.n;
    worker_msg *m = worker_msg_new(WM_DEVICE_MESSAGES, conn_id, sizeof h + buf_len(&pr.out));
    memcpy(m->data, &h, sizeof h);
    if (buf_len(&pr.out)) memcpy(m->data + sizeof h, buf_head(&pr.out), buf_len(&pr.out));
    buf_free(&pr.out);
    return m;
}

int dm_read_submit(store_reads *p, uint64_t conn_id, const dm_ask *q) {
    store_read_job job;
    memset(&job, 0, sizeof job);
    job.kind = STORE_READ_DEVICE_MESSAGES;
    job.conn_id = conn_id;
    job.user_id = q->user_id;
    job.device_id = q->device_id;
    job.dm = *q;
    return store_reads_submit(p, &job);
}

bool dm_page_head_of(const worker_msg *m, dm_page_head *h) {
    if (m->kind != WM_DEVICE_MESSAGES || m->len < sizeof *h) return false;
    memcpy(h, m->data, sizeof *h);
    return m->len - sizeof *h >= (size_t)h->n * sizeof(wire_dm);
}

void dm_entries_start(const worker_msg *m, dm_entries *it) {
    dm_page_head h;
    it->p = it->end = NULL;
    if (!dm_page_head_of(m, &h)) return;
    it->p = m->data + sizeof h;
    it->end = m->data + m->len;
}

int dm_entries_next(dm_entries *it, uint64_t *queue_seq, const uint8_t **msg, size_t *len) {
    wire_dm e;
    if ((size_t)(it->end - it->p) < sizeof e) return 0;
    memcpy(&e, it->p, sizeof e);
    if ((size_t)(it->end - it->p) - sizeof e < e.len) return 0;
    *queue_seq = e.queue_seq;
    *msg = it->p + sizeof e;
    *len = e.len;
    it->p += sizeof e + e.len;
    return 1;
}
