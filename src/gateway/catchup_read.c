/* catchup_read.c -- see catchup_read.h.
 *
 * A page's data: the head, then n_receipts wire_receipt, then n_entries of
 * (wire_entry, len message bytes). Read back with memcpy: nothing after the
 * head is aligned. */
#include "gateway/catchup_read.h"

#include <stdlib.h>
#include <string.h>

#include "chat/consent.h"
#include "core/test_hold.h"
#include "store/store.h"

enum {
    RECEIPT_CONVS = 64,         /* conversations whose receipts one SyncDone carries */
    RECEIPT_SCAN = 4096,        /* inbox entries looked at to find them */
};

typedef struct wire_entry {
    uint64_t user_seq;
    uint32_t len;
    uint32_t gone;
} wire_entry;

typedef struct wire_receipt {
    uint64_t conv, user, seq;
    uint32_t kind;
} wire_receipt;

/* ------------------------------------------------------------ test hook */

static test_hold hold = {.env_name = "PARLEY_TEST_HOLD_CATCHUP_READS",
                         .what = "catch-up page and MQTT cursor reads"};

/* ------------------------------------------------------------ receipts */

/* For the first SyncDone: for each conversation that had events in the
 * catch-up, where every other member has received and read to. */
typedef struct receipts_read {
    store *store;
    uint64_t self;
    uint64_t convs[RECEIPT_CONVS];
    size_t n_convs;
    uint64_t conv;              /* the conversation whose members are being read */
    wire_receipt items[CATCHUP_RECEIPTS_MAX];
    size_t n;
} receipts_read;

static int note_conv(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)user_seq; (void)seq; (void)sender;
    receipts_read *rr = ud;
    for (size_t i = 0; i < rr->n_convs; i++)
        if (rr->convs[i] == conv) return 0;
    rr->convs[rr->n_convs++] = conv;
    return rr->n_convs == RECEIPT_CONVS;
}

static void add_receipt(receipts_read *rr, uint64_t user, Parley__V1__ReceiptKind kind, uint64_t seq) {
    if (rr->n == CATCHUP_RECEIPTS_MAX || seq == 0) return;
    rr->items[rr->n++] = (wire_receipt){.conv = rr->conv, .user = user, .seq = seq, .kind = (uint32_t)kind};
}

static int note_member(void *ud, uint64_t user, const Parley__Store__Member *m) {
    receipts_read *rr = ud;
    if (user == rr->self || m->left_seq != 0) return 0;
    add_receipt(rr, user, PARLEY__V1__RECEIPT_KIND__DELIVERED, m->delivered_seq);
    /* a member who has not accepted the conversation shows no read mark */
    if (!consent_is_request(rr->store, user, m)) add_receipt(rr, user, PARLEY__V1__RECEIPT_KIND__READ, m->read_seq);
    return rr->n == CATCHUP_RECEIPTS_MAX;
}

/* Best effort, as the receipts are a courtesy: a read that fails leaves
 * out what it would have found. */
static void read_receipts(store *st, const catchup_ask *q, receipts_read *rr) {
    rr->store = st;
    rr->self = q->user_id;
    rr->n_convs = rr->n = 0;
    store_scan_inbox(st, q->user_id, q->sync_from, q->after, RECEIPT_SCAN, note_conv, rr);
    for (size_t i = 0; i < rr->n_convs && rr->n < CATCHUP_RECEIPTS_MAX; i++) {
        rr->conv = rr->convs[i];
        store_scan_members(st, rr->conv, note_member, rr);
    }
}

/* ------------------------------------------------------------ the page */

typedef struct page_read {
    size_t n;
    struct { uint64_t user_seq, conv, seq; } e[CATCHUP_PAGE];
    store_bytes msg[CATCHUP_PAGE];
    bool gone[CATCHUP_PAGE];
} page_read;

static int page_add(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)sender;
    page_read *pr = ud;
    pr->e[pr->n].user_seq = user_seq;
    pr->e[pr->n].conv = conv;
    pr->e[pr->n].seq = seq;
    pr->n++;
    return 0;
}

worker_msg *catchup_read_page(store *st, uint64_t conn_id, const catchup_ask *q) {
    test_hold_wait(&hold);
    page_read *pr = calloc(1, sizeof *pr);
    if (!pr) abort();
    catchup_page_head h;
    memset(&h, 0, sizeof h);
    h.ask = *q;
    uint32_t limit = q->limit == 0 || q->limit > CATCHUP_PAGE ? CATCHUP_PAGE : q->limit;
    size_t n_ok = 0, bytes = 0;
    if (store_scan_inbox(st, q->user_id, q->after, 0, limit, page_add, pr) < 0) {
        h.failed = true;
    } else {
        /* the messages, in order, until one cannot be read now (not gone:
         * from that entry on, later) or the page holds enough bytes */
        for (; n_ok < pr->n && bytes < CATCHUP_PAGE_BYTES; n_ok++) {
            int found = store_get_message(st, pr->e[n_ok].conv, pr->e[n_ok].seq, &pr->msg[n_ok]);
            if (found < 0) {
                h.failed = true;
                break;
            }
            pr->gone[n_ok] = found == 0;   /* retention removed it: its entry is skipped */
            if (found == 1) bytes += pr->msg[n_ok].len;
        }
    }
    receipts_read *rr = NULL;
    if (pr->n == 0 && !h.failed && q->receipts) {
        rr = malloc(sizeof *rr);
        if (!rr) abort();
        read_receipts(st, q, rr);
        h.n_receipts = (uint32_t)rr->n;
    }
    h.n_entries = (uint32_t)n_ok;
    size_t len = sizeof h + h.n_receipts * sizeof(wire_receipt) + n_ok * sizeof(wire_entry) + bytes;
    worker_msg *m = worker_msg_new(WM_INBOX_PAGE, conn_id, len);
    uint8_t *p = m->data;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    if (rr) {
        memcpy(p, rr->items, h.n_receipts * sizeof(wire_receipt));
        p += h.n_receipts * sizeof(wire_receipt);
        free(rr);
    }
    for (size_t i = 0; i < n_ok; i++) {
        wire_entry e = {.user_seq = pr->e[i].user_seq, .len = pr->gone[i] ? 0 : (uint32_t)pr->msg[i].len,
                        .gone = pr->gone[i]};
        memcpy(p, &e, sizeof e);
        p += sizeof e;
        if (e.len) memcpy(p, pr->msg[i].data, e.len);
        p += e.len;
        if (!pr->gone[i]) store_bytes_free(&pr->msg[i]);
    }
    free(pr);
    return m;
}

int catchup_read_cursor(store *st, uint64_t user, uint32_t device, uint64_t *cursor) {
    test_hold_wait(&hold);
    *cursor = 0;
    return store_get_cursor(st, user, device, cursor) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ reading it back */

bool catchup_page_head_of(const worker_msg *m, catchup_page_head *h) {
    if (m->kind != WM_INBOX_PAGE || m->len < sizeof *h) return false;
    memcpy(h, m->data, sizeof *h);
    return m->len - sizeof *h >= (size_t)h->n_receipts * sizeof(wire_receipt) + (size_t)h->n_entries * sizeof(wire_entry);
}

void catchup_entries_start(const worker_msg *m, catchup_entries *it) {
    catchup_page_head h;
    it->p = it->end = NULL;
    if (!catchup_page_head_of(m, &h)) return;
    it->p = m->data + sizeof h + (size_t)h.n_receipts * sizeof(wire_receipt);
    it->end = m->data + m->len;
}

int catchup_entries_next(catchup_entries *it, uint64_t *user_seq, const uint8_t **msg, size_t *len, bool *gone) {
    wire_entry e;
    if ((size_t)(it->end - it->p) < sizeof e) return 0;
    memcpy(&e, it->p, sizeof e);
    if ((size_t)(it->end - it->p) - sizeof e < e.len) return 0;
    *user_seq = e.user_seq;
    *msg = it->p + sizeof e;
    *len = e.len;
    *gone = e.gone != 0;
    it->p += sizeof e + e.len;
    return 1;
}

size_t catchup_page_receipts(const worker_msg *m, Parley__V1__Receipt *items, size_t cap) {
    catchup_page_head h;
    if (!catchup_page_head_of(m, &h)) return 0;
    size_t n = h.n_receipts < cap ? h.n_receipts : cap;
    const uint8_t *p = m->data + sizeof h;
    for (size_t i = 0; i < n; i++, p += sizeof(wire_receipt)) {
        wire_receipt r;
        memcpy(&r, p, sizeof r);
        parley__v1__receipt__init(&items[i]);
        items[i].conversation_id = r.conv;
        items[i].user_id = r.user;
        items[i].kind = (Parley__V1__ReceiptKind)r.kind;
        items[i].seq = r.seq;
    }
    return n;
}
