/* store_cassandra_read.c -- the reads of the Cassandra backend: prepared
 * statements (made at open, re-prepared by the client after UNPREPARED),
 * run synchronously at LOCAL_QUORUM, paged where a scan may be long.
 *
 * Retention: rows past it are gone by their TTL (store_cassandra_write.c);
 * reads also skip records whose time is past it, so a record is invisible
 * from the same moment as in RocksDB, not up to a second later. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/store_cassandra_internal.h"
#include "store/store_cassandra_schema.h"

const char *const cass_read_texts[R_COUNT] = {
    [R_COUNTER] = "SELECT value FROM %s.counters WHERE name = ?",
    [R_USER] = "SELECT record FROM %s.users WHERE user_id = ?",
    [R_USER_ID] = "SELECT user_id FROM %s.user_names WHERE name = ?",
    [R_DEVICE] = "SELECT record FROM %s.devices WHERE user_id = ? AND device_id = ?",
    [R_DEVICES] = "SELECT device_id, record FROM %s.devices WHERE user_id = ?",
    [R_TOKEN] = "SELECT record FROM %s.link_tokens WHERE link_token = ?",
    [R_TOKENS] = "SELECT link_token, record FROM %s.link_tokens",
    [R_CONV] = "SELECT record FROM %s.conversations WHERE conv = ?",
    [R_LAST_SEQ] = "SELECT last_seq FROM %s.conversations WHERE conv = ?",
    [R_DIRECT] = "SELECT conv FROM %s.directs WHERE user_lo = ? AND user_hi = ?",
    [R_MEMBER] = "SELECT record, read_seq, delivered_seq FROM %s.members WHERE conv = ? AND user_id = ?",
    [R_MEMBERS] = "SELECT user_id, record, read_seq, delivered_seq FROM %s.members WHERE conv = ?",
    [R_USER_CONVS] = "SELECT conv FROM %s.user_conversations WHERE user_id = ?",
    [R_MESSAGE] = "SELECT body FROM %s.messages WHERE conv = ? AND bucket = ? AND seq = ?",
    [R_MESSAGES_BACK] = "SELECT seq, body FROM %s.messages WHERE conv = ? AND bucket = ? AND seq <= ?",
    [R_CLIENT_MSG] = "SELECT conv, seq, ts FROM %s.client_msgs WHERE user_id = ? AND device_id = ? AND "
                     "client_msg_id = ?",
    [R_LOG] = "SELECT log_offset, conv, seq FROM %s.fanout_log WHERE part = ? AND log_offset > ?",
    [R_LAST_LOG] = "SELECT log_offset FROM %s.fanout_log WHERE part = ? ORDER BY log_offset DESC LIMIT 1",
    [R_CHECKPOINT] = "SELECT log_offset FROM %s.checkpoints WHERE part = ?",
    [R_INBOX_HEAD] = "SELECT user_seq FROM %s.inbox_heads WHERE user_id = ?",
    [R_INBOX] = "SELECT user_seq, conv, seq, sender, ts FROM %s.inboxes WHERE user_id = ? AND bucket = ? AND "
                "user_seq > ?",
    [R_CURSOR] = "SELECT user_seq FROM %s.cursors WHERE user_id = ? AND device_id = ?",
    [R_DEVICE_KEYS] = "SELECT record FROM %s.device_keys WHERE user_id = ? AND device_id = ?",
    [R_FIRST_OTK] = "SELECT key_id, public_key FROM %s.one_time_keys WHERE user_id = ? AND device_id = ? LIMIT 1",
    [R_DEVICE_MESSAGES] = "SELECT queue_seq, body FROM %s.device_messages WHERE user_id = ? AND device_id = ? AND "
                          "queue_seq > ?",
    [R_CONSENT] = "SELECT record FROM %s.consent WHERE owner = ? AND other = ?",
    [R_PUSH_SUBSCRIPTION] = "SELECT record FROM %s.push_subscriptions WHERE user_id = ? AND device_id = ?",
    [R_GROUP_ORIGIN] = "SELECT log_offset, user_id, device_id, request_id, conv FROM %s.group_origins WHERE "
                       "part = ? AND slot = ?",
};

/* rows per page of a scan */
/* a scan stops (and fails) after this many pages: a bound on the loop,
 * not a limit a store meets (8 billion rows of PAGE_ROWS) */
#define PAGES_MAX (1 << 24)
/* link tokens held for sorting, at most */
#define TOKENS_MAX 100000

typedef cass_row_fn row_fn;

int cass_rows(cass *s, const cql_prepared *stmt, const cql_values *v, int32_t page_rows, cass_row_fn fn,
              void *ud) {
    return cass_rows_at(s, stmt, v, CASS_CL, page_rows, fn, ud);
}

/* The consistency of each prepared read (the table at the top of
 * store_cassandra.c): LOCAL_QUORUM but for the two reads whose miss
 * costs nothing that is not put right at once or by the next one. */
static cql_consistency read_cl(enum cass_read q) {
    switch (q) {
    case R_TOKENS:              /* the expiry sweep and the per-user cap: a token missed now is seen next time */
    case R_PUSH_SUBSCRIPTION:   /* a push is a hint; the client syncs when it connects */
        return CQL_LOCAL_ONE;
    default:
        return CASS_CL;
    }
}

int cass_rows_at(cass *s, const cql_prepared *stmt, const cql_values *v, cql_consistency cl, int32_t page_rows,
                 cass_row_fn fn, void *ud) {
    uint8_t *ps = NULL;
    size_t ps_len = 0;
    int rc = 0;
    for (int page = 0; page < PAGES_MAX; page++) {
        cql_result *res = cql_execute_sync(s->cql, stmt, v, cl, page_rows, ps, ps_len);
        free(ps);
        ps = NULL;
        if (!res || cql_result_status(res) != CQL_OK) {
            atomic_fetch_add(&s->read_failures_total, 1);
            atomic_store(&s->read_failing, true);
            log_error("store: cassandra: read failed: %s %s", res ? cql_status_name(cql_result_status(res)) : "",
                      res ? cql_result_message(res) : "out of memory");
            cql_result_free(res);
            return -1;
        }
        atomic_store(&s->read_failing, false);
        size_t n = cql_result_rows(res);
        int stop = 0;
        for (size_t i = 0; i < n && !stop; i++) stop = fn(ud, res, i);
        const uint8_t *next = NULL;
        if (!stop && page_rows > 0 && cql_result_paging_state(res, &next, &ps_len) && ps_len > 0) {
            ps = malloc(ps_len);
            if (!ps) abort();
            memcpy(ps, next, ps_len);
        }
        cql_result_free(res);
        if (!ps) return rc;
    }
    free(ps);
    log_error("store: cassandra: a scan of more than %d pages stopped", PAGES_MAX);
    return -1;
}

static int rows(cass *s, enum cass_read q, const cql_values *v, int32_t page_rows, row_fn fn, void *ud) {
    return cass_rows_at(s, s->reads[q], v, read_cl(q), page_rows, fn, ud);
}

/* ------------------------------------------------------- single values */

typedef struct one {
    int found;
    int64_t x;
    uint8_t *p;   /* a copy of a blob */
    size_t n;
    int bad;
} one;

static int one_bigint_cb(void *ud, const cql_result *r, size_t row) {
    one *o = ud;
    if (cql_get_bigint(r, row, 0, &o->x) == 0) o->found = 1;
    return 1;
}

static int one_blob_cb(void *ud, const cql_result *r, size_t row) {
    one *o = ud;
    const uint8_t *p;
    size_t n;
    if (cql_get_bytes(r, row, 0, &p, &n) != 0) return 1;   /* null: not this record */
    o->p = malloc(n ? n : 1);
    if (!o->p) abort();
    if (n) memcpy(o->p, p, n);
    o->n = n;
    o->found = 1;
    return 1;
}

/* 1 with *x, 0 absent, -1 error */
static int get_bigint(cass *s, enum cass_read q, const cql_values *v, uint64_t *x) {
    one o = {0};
    if (rows(s, q, v, 0, one_bigint_cb, &o) != 0) return -1;
    if (o.found) *x = (uint64_t)o.x;
    return o.found;
}

static int get_blob(cass *s, enum cass_read q, const cql_values *v, store_bytes *out) {
    one o = {0};
    if (rows(s, q, v, 0, one_blob_cb, &o) != 0) return -1;
    if (!o.found) return 0;
    out->data = o.p;
    out->len = o.n;
    return 1;
}

static int get_unpacked(cass *s, enum cass_read q, const cql_values *v, const ProtobufCMessageDescriptor *d,
                        void **out) {
    store_bytes b = {0};
    int r = get_blob(s, q, v, &b);
    if (r != 1) return r;
    *out = protobuf_c_message_unpack(d, NULL, b.len, b.data);
    store_bytes_free(&b);
    if (!*out) {
        log_error("store: undecodable %s record", d->name);
        return -1;
    }
    return 1;
}

/* values of one or two ids */
static void ids(cql_values *v, int64_t a) { cql_values_init(v); cql_values_bigint(v, a); }
static void id_dev(cql_values *v, uint64_t user, uint32_t device) {
    ids(v, (int64_t)user);
    cql_values_int(v, (int32_t)device);
}

#define WITH_VALUES(v, expr)                                                                                       \
    do {                                                                                                           \
        int rc_ = (expr);                                                                                          \
        cql_values_free(&(v));                                                                                     \
        return rc_;                                                                                                \
    } while (0)

/* ------------------------------------------------------------ the reads */

int cass_get_counter(void *impl, const char *name, uint64_t *value) {
    cql_values v;
    cql_values_init(&v);
    cql_values_text(&v, name, strlen(name));
    *value = 0;
    WITH_VALUES(v, get_bigint(impl, R_COUNTER, &v, value));
}

int cass_get_user(void *impl, uint64_t user_id, Parley__Store__User **out) {
    cql_values v;
    ids(&v, (int64_t)user_id);
    WITH_VALUES(v, get_unpacked(impl, R_USER, &v, &parley__store__user__descriptor, (void **)out));
}

int cass_get_user_id(void *impl, const char *name, uint64_t *user_id) {
    cql_values v;
    cql_values_init(&v);
    size_t n = strlen(name);
    cql_values_text(&v, name, n > 255 ? 255 : n);   /* names are keyed by their first 255 bytes, as in RocksDB */
    WITH_VALUES(v, get_bigint(impl, R_USER_ID, &v, user_id));
}

int cass_get_device(void *impl, uint64_t user_id, uint32_t device_id, Parley__Store__Device **out) {
    cql_values v;
    id_dev(&v, user_id, device_id);
    WITH_VALUES(v, get_unpacked(impl, R_DEVICE, &v, &parley__store__device__descriptor, (void **)out));
}

int cass_get_link_token(void *impl, const char *token, Parley__Store__LinkToken **out) {
    cql_values v;
    cql_values_init(&v);
    size_t n = strlen(token);
    cql_values_text(&v, token, n > 255 ? 255 : n);
    WITH_VALUES(v, get_unpacked(impl, R_TOKEN, &v, &parley__store__link_token__descriptor, (void **)out));
}

/* link tokens: the table is keyed by token (a hash order), so a scan reads
 * them all, keeps those in range and sorts them; tokens are few and short
 * lived (bounded by TOKENS_MAX all the same) */
typedef struct token_row {
    char token[256];
    uint8_t *rec;
    size_t n;
} token_row;

typedef struct token_scan {
    const char *prefix, *after;
    token_row *rows;
    size_t n, cap;
    int over;
} token_scan;

static int token_row_cb(void *ud, const cql_result *r, size_t row) {
    token_scan *ts = ud;
    const uint8_t *tp, *rp;
    size_t tn, rn;
    if (cql_get_bytes(r, row, 0, &tp, &tn) != 0 || cql_get_bytes(r, row, 1, &rp, &rn) != 0) return 0;
    if (tn > 255) return 0;
    char token[256];
    if (tn) memcpy(token, tp, tn);
    token[tn] = 0;
    size_t pl = strlen(ts->prefix);
    if (strncmp(token, ts->prefix, pl) != 0) return 0;
    if (ts->after && *ts->after && strncmp(ts->after, ts->prefix, pl) == 0 && strcmp(token, ts->after) <= 0) return 0;
    if (ts->n == TOKENS_MAX) {
        ts->over = 1;
        return 1;
    }
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 16;
        token_row *grown = realloc(ts->rows, cap * sizeof *grown);
        if (!grown) abort();
        ts->rows = grown;
        ts->cap = cap;
    }
    token_row *t = &ts->rows[ts->n++];
    memcpy(t->token, token, tn + 1);
    t->rec = malloc(rn ? rn : 1);
    if (!t->rec) abort();
    if (rn) memcpy(t->rec, rp, rn);
    t->n = rn;
    return 0;
}

static int token_cmp(const void *a, const void *b) {
    return strcmp(((const token_row *)a)->token, ((const token_row *)b)->token);
}

int cass_scan_link_tokens(void *impl, const char *prefix, const char *after, store_link_token_fn fn, void *ud) {
    token_scan ts = {.prefix = prefix, .after = after};
    int rc = rows(impl, R_TOKENS, NULL, PAGE_ROWS, token_row_cb, &ts);
    if (ts.over) {
        log_error("store: cassandra: more than %d link tokens to scan", TOKENS_MAX);
        rc = -1;
    }
    if (rc == 0 && ts.n > 1) qsort(ts.rows, ts.n, sizeof *ts.rows, token_cmp);
    int stopped = rc != 0;
    for (size_t i = 0; i < ts.n; i++) {
        if (!stopped) {
            Parley__Store__LinkToken *t = parley__store__link_token__unpack(NULL, ts.rows[i].n, ts.rows[i].rec);
            if (t) {   /* undecodable: skipped, like a missing one (as in RocksDB) */
                stopped = fn(ud, ts.rows[i].token, t) != 0;
                parley__store__link_token__free_unpacked(t, NULL);
            }
        }
        free(ts.rows[i].rec);
    }
    free(ts.rows);
    return rc;
}

int cass_get_conversation(void *impl, uint64_t conv, Parley__Store__Conversation **out) {
    cql_values v;
    ids(&v, (int64_t)conv);
    WITH_VALUES(v, get_unpacked(impl, R_CONV, &v, &parley__store__conversation__descriptor, (void **)out));
}

int cass_get_direct(void *impl, uint64_t a, uint64_t b, uint64_t *conv) {
    cql_values v;
    ids(&v, (int64_t)(a < b ? a : b));
    cql_values_bigint(&v, (int64_t)(a < b ? b : a));
    WITH_VALUES(v, get_bigint(impl, R_DIRECT, &v, conv));
}

/* a member row: the record, with the read marks columns over its own */
static Parley__Store__Member *member_of_row(const cql_result *r, size_t row, size_t col, int *bad) {
    const uint8_t *p;
    size_t n;
    if (cql_get_bytes(r, row, col, &p, &n) != 0) return NULL;   /* marks without a record: no member */
    Parley__Store__Member *m = parley__store__member__unpack(NULL, n, p);
    if (!m) {
        *bad = 1;
        return NULL;
    }
    int64_t rs, ds;
    if (cql_get_bigint(r, row, col + 1, &rs) == 0 && cql_get_bigint(r, row, col + 2, &ds) == 0) {
        m->read_seq = (uint64_t)rs;
        m->delivered_seq = (uint64_t)ds;
    }
    return m;
}

typedef struct member_get {
    Parley__Store__Member *m;
    int bad;
} member_get;

static int member_get_cb(void *ud, const cql_result *r, size_t row) {
    member_get *g = ud;
    g->m = member_of_row(r, row, 0, &g->bad);
    return 1;
}

int cass_get_member(void *impl, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    cql_values v;
    ids(&v, (int64_t)conv);
    cql_values_bigint(&v, (int64_t)user);
    member_get g = {0};
    int rc = rows(impl, R_MEMBER, &v, 0, member_get_cb, &g);
    cql_values_free(&v);
    if (rc != 0 || g.bad) {
        if (g.bad) log_error("store: undecodable %s record", parley__store__member__descriptor.name);
        if (g.m) parley__store__member__free_unpacked(g.m, NULL);
        return -1;
    }
    if (!g.m) return 0;
    *out = g.m;
    return 1;
}

typedef struct member_scan {
    store_member_fn fn;
    void *ud;
    int bad;
} member_scan;

static int member_scan_cb(void *ud, const cql_result *r, size_t row) {
    member_scan *ms = ud;
    int64_t user;
    if (cql_get_bigint(r, row, 0, &user) != 0) return 0;
    Parley__Store__Member *m = member_of_row(r, row, 1, &ms->bad);
    if (ms->bad) return 1;
    if (!m) return 0;
    int stop = ms->fn(ms->ud, (uint64_t)user, m);
    parley__store__member__free_unpacked(m, NULL);
    return stop;
}

int cass_scan_members(void *impl, uint64_t conv, store_member_fn fn, void *ud) {
    cql_values v;
    ids(&v, (int64_t)conv);
    member_scan ms = {fn, ud, 0};
    int rc = rows(impl, R_MEMBERS, &v, PAGE_ROWS, member_scan_cb, &ms);
    cql_values_free(&v);
    return rc || ms.bad ? -1 : 0;
}

typedef struct id_scan {
    store_id_fn fn;
    void *ud;
} id_scan;

static int id_scan_cb(void *ud, const cql_result *r, size_t row) {
    id_scan *is = ud;
    int64_t id;
    if (cql_get_bigint(r, row, 0, &id) != 0) return 0;
    return is->fn(is->ud, (uint64_t)id);
}

int cass_scan_user_conversations(void *impl, uint64_t user, store_id_fn fn, void *ud) {
    cql_values v;
    ids(&v, (int64_t)user);
    id_scan is = {fn, ud};
    WITH_VALUES(v, rows(impl, R_USER_CONVS, &v, PAGE_ROWS, id_scan_cb, &is));
}

/* -------------------------------------------------------------- messages */

int cass_get_message(void *impl, uint64_t conv, uint64_t seq, store_bytes *out) {
    cass *s = impl;
    cql_values v;
    ids(&v, (int64_t)conv);
    cql_values_bigint(&v, (int64_t)(seq / STORE_CQL_MESSAGE_BUCKET));
    cql_values_bigint(&v, (int64_t)seq);
    int found = get_blob(s, R_MESSAGE, &v, out);
    cql_values_free(&v);
    if (found == 1 && cass_expired(s, cass_message_ts(out->data, out->len))) {
        store_bytes_free(out);
        return 0;
    }
    return found;
}

int cass_last_seq(void *impl, uint64_t conv, uint64_t *seq) {
    cql_values v;
    ids(&v, (int64_t)conv);
    *seq = 0;
    int rc = get_bigint(impl, R_LAST_SEQ, &v, seq);
    cql_values_free(&v);
    return rc < 0 ? -1 : 0;
}

typedef struct message_scan {
    cass *s;
    store_message_fn fn;
    void *ud;
    uint32_t left;
    size_t seen;      /* rows in this bucket */
    int stop;         /* the caller's fn stopped, the limit was met, or expired rows began */
} message_scan;

static int message_scan_cb(void *ud, const cql_result *r, size_t row) {
    message_scan *ms = ud;
    int64_t seq;
    const uint8_t *p;
    size_t n;
    if (cql_get_bigint(r, row, 0, &seq) != 0 || cql_get_bytes(r, row, 1, &p, &n) != 0) return 0;
    ms->seen++;
    if (ms->left == 0 || cass_expired(ms->s, cass_message_ts(p, n))) {   /* older ones are expired too */
        ms->stop = 1;
        return 1;
    }
    ms->left--;
    if (ms->fn(ms->ud, (uint64_t)seq, p, n)) ms->stop = 1;
    if (ms->left == 0) ms->stop = 1;
    return ms->stop;
}

/* Newest first, bucket after bucket downward from the one of before_seq
 * (or of the head: on a fenced store the rows in (hint, head] are stored,
 * though their dedupe records may not be, so they are history, and the
 * head may be buckets past the hint: store_cassandra_fence.c). Seqs are
 * dense, so a bucket with no row means retention took everything below:
 * the walk stops there. */
int cass_scan_messages_back(void *impl, uint64_t conv, uint64_t before_seq, uint32_t limit, store_message_fn fn,
                            void *ud) {
    cass *s = impl;
    uint64_t top;
    if (before_seq == 0) {
        if (cass_last_seq_fenced(s, conv, &top) != 0) return -1;
        if (top == 0) return 0;
    } else {
        if (before_seq == 1) return 0;
        top = before_seq - 1;
    }
    if (limit == 0) return 0;
    message_scan ms = {s, fn, ud, limit, 0, 0};
    for (int64_t bucket = (int64_t)(top / STORE_CQL_MESSAGE_BUCKET); bucket >= 0 && !ms.stop; bucket--) {
        cql_values v;
        ids(&v, (int64_t)conv);
        cql_values_bigint(&v, bucket);
        cql_values_bigint(&v, (int64_t)top);
        ms.seen = 0;
        int32_t page = limit < PAGE_ROWS ? (int32_t)limit : PAGE_ROWS;
        int rc = rows(s, R_MESSAGES_BACK, &v, page, message_scan_cb, &ms);
        cql_values_free(&v);
        if (rc != 0) return -1;
        if (ms.seen == 0) break;
    }
    return 0;
}

int cass_get_client_msg(void *impl, uint64_t user, uint32_t device, const uint8_t *id, size_t id_len,
                        uint64_t *conv, uint64_t *seq) {
    cass *s = impl;
    cql_values v;
    id_dev(&v, user, device);
    cql_values_blob(&v, id, id_len > 255 ? 255 : id_len);
    cql_result *res = cql_execute_sync(s->cql, s->reads[R_CLIENT_MSG], &v, CASS_CL, 0, NULL, 0);
    cql_values_free(&v);
    if (!res || cql_result_status(res) != CQL_OK) {
        atomic_fetch_add(&s->read_failures_total, 1);
        atomic_store(&s->read_failing, true);
        log_error("store: cassandra: dedupe read failed: %s", res ? cql_result_message(res) : "out of memory");
        cql_result_free(res);
        return -1;
    }
    atomic_store(&s->read_failing, false);
    int64_t c, q, ts;
    int found = cql_result_rows(res) > 0 && cql_get_bigint(res, 0, 0, &c) == 0 &&
                cql_get_bigint(res, 0, 1, &q) == 0 && cql_get_bigint(res, 0, 2, &ts) == 0;
    cql_result_free(res);
    if (!found) return 0;
    *conv = (uint64_t)c;
    *seq = (uint64_t)q;
    return cass_expired(s, (uint64_t)ts) ? 0 : 1;
}

/* ----------------------------------------------------------- fan-out log */

typedef struct log_scan {
    store_log_fn fn;
    void *ud;
} log_scan;

static int log_scan_cb(void *ud, const cql_result *r, size_t row) {
    log_scan *ls = ud;
    int64_t off, conv, seq;
    if (cql_get_bigint(r, row, 0, &off) || cql_get_bigint(r, row, 1, &conv) || cql_get_bigint(r, row, 2, &seq))
        return 0;
    return ls->fn(ls->ud, (uint64_t)off, (uint64_t)conv, (uint64_t)seq);
}

int cass_scan_log(void *impl, uint32_t partition, uint64_t after, store_log_fn fn, void *ud) {
    cql_values v;
    cql_values_init(&v);
    cql_values_int(&v, (int32_t)partition);
    cql_values_bigint(&v, (int64_t)after);
    log_scan ls = {fn, ud};
    WITH_VALUES(v, rows(impl, R_LOG, &v, PAGE_ROWS, log_scan_cb, &ls));
}

int cass_last_log_offset(void *impl, uint32_t partition, uint64_t *offset) {
    cql_values v;
    cql_values_init(&v);
    cql_values_int(&v, (int32_t)partition);
    *offset = 0;
    int rc = get_bigint(impl, R_LAST_LOG, &v, offset);
    cql_values_free(&v);
    return rc < 0 ? -1 : 0;
}

int cass_get_checkpoint(void *impl, uint32_t partition, uint64_t *offset) {
    cql_values v;
    cql_values_init(&v);
    cql_values_int(&v, (int32_t)partition);
    *offset = 0;
    WITH_VALUES(v, get_bigint(impl, R_CHECKPOINT, &v, offset));
}

/* --------------------------------------------------------------- inboxes */

int cass_inbox_head(void *impl, uint64_t user, uint64_t *user_seq) {
    cql_values v;
    ids(&v, (int64_t)user);
    *user_seq = 0;
    int rc = get_bigint(impl, R_INBOX_HEAD, &v, user_seq);
    cql_values_free(&v);
    return rc < 0 ? -1 : 0;
}

typedef struct inbox_scan {
    cass *s;
    store_inbox_fn fn;
    void *ud;
    uint64_t through;
    uint32_t left;
    int stop;
} inbox_scan;

static int inbox_scan_cb(void *ud, const cql_result *r, size_t row) {
    inbox_scan *is = ud;
    int64_t us, conv, seq, sender, ts;
    if (cql_get_bigint(r, row, 0, &us) || cql_get_bigint(r, row, 1, &conv) || cql_get_bigint(r, row, 2, &seq) ||
        cql_get_bigint(r, row, 3, &sender) || cql_get_bigint(r, row, 4, &ts))
        return 0;
    if (is->left == 0 || (is->through && (uint64_t)us > is->through)) {
        is->stop = 1;
        return 1;
    }
    if (cass_expired(is->s, (uint64_t)ts)) return 0;
    is->left--;
    if (is->fn(is->ud, (uint64_t)us, (uint64_t)conv, (uint64_t)seq, (uint64_t)sender)) is->stop = 1;
    return is->stop;
}

/* Bucket after bucket upward from the one after `after`, up to the bucket
 * of the head (no user_seq above it was ever given; on a fenced store the
 * head, not the hint, which may be buckets behind: the entries in
 * (hint, head] are stored, so they are the inbox) or of `through`. */
int cass_scan_inbox(void *impl, uint64_t user, uint64_t after, uint64_t through, uint32_t limit,
                    store_inbox_fn fn, void *ud) {
    cass *s = impl;
    uint64_t head = 0;
    if (cass_inbox_head_fenced(s, user, &head) != 0) return -1;
    /* entries written without a head (a store filled by hand, or an import
     * cut short) are still found in the bucket of `after` */
    uint64_t top = through && through < head ? through : head;
    if (top < after + 1) top = after + 1;
    inbox_scan is = {s, fn, ud, through, limit, 0};
    for (uint64_t b = (after + 1) / STORE_CQL_INBOX_BUCKET; b <= top / STORE_CQL_INBOX_BUCKET && !is.stop; b++) {
        cql_values v;
        ids(&v, (int64_t)user);
        cql_values_bigint(&v, (int64_t)b);
        cql_values_bigint(&v, (int64_t)after);
        int rc = rows(s, R_INBOX, &v, PAGE_ROWS, inbox_scan_cb, &is);
        cql_values_free(&v);
        if (rc != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------ cursors, devices */

int cass_get_cursor(void *impl, uint64_t user, uint32_t device, uint64_t *user_seq) {
    cql_values v;
    id_dev(&v, user, device);
    *user_seq = 0;
    WITH_VALUES(v, get_bigint(impl, R_CURSOR, &v, user_seq));
}

typedef struct device_scan {
    store_device_fn fn;
    void *ud;
    int bad;
} device_scan;

static int device_scan_cb(void *ud, const cql_result *r, size_t row) {
    device_scan *ds = ud;
    int32_t dev;
    const uint8_t *p;
    size_t n;
    if (cql_get_int(r, row, 0, &dev) != 0 || cql_get_bytes(r, row, 1, &p, &n) != 0) return 0;
    Parley__Store__Device *d = parley__store__device__unpack(NULL, n, p);
    if (!d) {
        ds->bad = 1;
        return 1;
    }
    int stop = ds->fn(ds->ud, (uint32_t)dev, d);
    parley__store__device__free_unpacked(d, NULL);
    return stop;
}

int cass_scan_devices(void *impl, uint64_t user, store_device_fn fn, void *ud) {
    cql_values v;
    ids(&v, (int64_t)user);
    device_scan ds = {fn, ud, 0};
    int rc = rows(impl, R_DEVICES, &v, PAGE_ROWS, device_scan_cb, &ds);
    cql_values_free(&v);
    return rc || ds.bad ? -1 : 0;
}

/* --------------------------------------------------------- key directory */

int cass_get_device_keys(void *impl, uint64_t user, uint32_t device, Parley__Store__DeviceKeys **out) {
    cql_values v;
    id_dev(&v, user, device);
    WITH_VALUES(v, get_unpacked(impl, R_DEVICE_KEYS, &v, &parley__store__device_keys__descriptor, (void **)out));
}

typedef struct first_key {
    uint32_t key_id;
    store_bytes *out;
    int found;
} first_key;

static int first_key_cb(void *ud, const cql_result *r, size_t row) {
    first_key *fk = ud;
    int32_t id;
    const uint8_t *p;
    size_t n;
    if (cql_get_int(r, row, 0, &id) != 0 || cql_get_bytes(r, row, 1, &p, &n) != 0) return 0;
    fk->out->data = malloc(n ? n : 1);
    if (!fk->out->data) abort();
    if (n) memcpy(fk->out->data, p, n);
    fk->out->len = n;
    fk->key_id = (uint32_t)id;
    fk->found = 1;
    return 1;
}

int cass_first_one_time_key(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out) {
    cql_values v;
    id_dev(&v, user, device);
    out->data = NULL;
    out->len = 0;
    first_key fk = {0, out, 0};
    int rc = rows(impl, R_FIRST_OTK, &v, 0, first_key_cb, &fk);
    cql_values_free(&v);
    if (rc != 0) return -1;
    *key_id = fk.key_id;
    return fk.found;
}

typedef struct dm_scan {
    store_device_message_fn fn;
    void *ud;
    uint32_t left;
} dm_scan;

static int dm_scan_cb(void *ud, const cql_result *r, size_t row) {
    dm_scan *ds = ud;
    int64_t q;
    const uint8_t *p;
    size_t n;
    if (ds->left == 0) return 1;
    if (cql_get_bigint(r, row, 0, &q) != 0 || cql_get_bytes(r, row, 1, &p, &n) != 0) return 0;
    ds->left--;
    return ds->fn(ds->ud, (uint64_t)q, p, n) || ds->left == 0;
}

static int device_messages(cass *s, uint64_t user, uint32_t device, int64_t after, uint32_t limit,
                           store_device_message_fn fn, void *ud) {
    if (limit == 0) return 0;
    cql_values v;
    id_dev(&v, user, device);
    cql_values_bigint(&v, after);
    dm_scan ds = {fn, ud, limit};
    int32_t page = limit < PAGE_ROWS ? (int32_t)limit : PAGE_ROWS;
    WITH_VALUES(v, rows(s, R_DEVICE_MESSAGES, &v, page, dm_scan_cb, &ds));
}

int cass_scan_device_messages(void *impl, uint64_t user, uint32_t device, uint32_t limit,
                              store_device_message_fn fn, void *ud) {
    return device_messages(impl, user, device, -1, limit, fn, ud);   /* queue_seqs are >= 0 */
}

int cass_scan_device_messages_after(void *impl, uint64_t user, uint32_t device, uint64_t after, uint32_t limit,
                                    store_device_message_fn fn, void *ud) {
    if (after >= (uint64_t)INT64_MAX) return 0;
    return device_messages(impl, user, device, (int64_t)after, limit, fn, ud);
}

int cass_get_consent(void *impl, uint64_t owner, uint64_t other, Parley__Store__Consent **out) {
    cql_values v;
    ids(&v, (int64_t)owner);
    cql_values_bigint(&v, (int64_t)other);
    WITH_VALUES(v, get_unpacked(impl, R_CONSENT, &v, &parley__store__consent__descriptor, (void **)out));
}

int cass_get_push_subscription(void *impl, uint64_t user, uint32_t device, Parley__Store__PushSubscription **out) {
    cql_values v;
    id_dev(&v, user, device);
    WITH_VALUES(v, get_unpacked(impl, R_PUSH_SUBSCRIPTION, &v, &parley__store__push_subscription__descriptor,
                                (void **)out));
}

/* ------------------------------------------------------- group origins */

int cass_get_group_origin(void *impl, uint32_t partition, uint32_t slot, uint64_t out[5]) {
    cass *s = impl;
    cql_values v;
    cql_values_init(&v);
    cql_values_int(&v, (int32_t)partition);
    cql_values_int(&v, (int32_t)slot);
    cql_result *res = cql_execute_sync(s->cql, s->reads[R_GROUP_ORIGIN], &v, CASS_CL, 0, NULL, 0);
    cql_values_free(&v);
    if (!res || cql_result_status(res) != CQL_OK) {
        atomic_fetch_add(&s->read_failures_total, 1);
        atomic_store(&s->read_failing, true);
        log_error("store: cassandra: group origin read failed: %s", res ? cql_result_message(res) : "out of memory");
        cql_result_free(res);
        return -1;
    }
    atomic_store(&s->read_failing, false);
    int found = cql_result_rows(res) > 0;
    for (size_t i = 0; found && i < 5; i++) {
        int64_t x;
        found = cql_get_bigint(res, 0, i, &x) == 0;
        out[i] = (uint64_t)x;
    }
    cql_result_free(res);
    return found;
}
