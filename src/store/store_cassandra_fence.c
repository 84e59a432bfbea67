/* store_cassandra_fence.c -- conditional heads: with several writers on one
 * keyspace (two chat nodes, or a stalled owner resumed after its
 * partitions moved) no seq and no user_seq is ever given to two messages.
 *
 * DESIGN. Messages live in partitions (conv, bucket = seq / 1024), inbox
 * entries in (user, bucket = user_seq / 65536) (store_cassandra_schema.h).
 * Each such partition carries a static column `head bigint`: the last seq
 * (user_seq) written into it. A commit's rows for one partition, seqs
 * s..t (consecutive), go in ONE conditional batch on that partition: the
 * row INSERTs plus
 *     UPDATE ... SET head = t WHERE <partition> IF head = s-1
 * or `IF head = null` when s is the first seq of its bucket. The
 * expectation follows from the rows alone: whoever writes s must have
 * believed the head was s-1, and Paxos lets only one writer win s.
 * (A conditional batch must stay in one partition; that is why the head is
 * in the rows' own partition. Rows spanning two buckets: one conditional
 * batch per bucket, the later sent only once the earlier applied.) The
 * conditional batches of different partitions go out together; everything
 * else of the commit (dedupe records, the conversation's last_seq and the
 * inbox heads as hints, fan-out log, checkpoints, cursors) goes in the
 * LOGGED BATCH (store_cassandra_write.c) only after every conditional batch
 * applied. A lost condition ([applied] = false) ends the commit with
 * STORE_CONFLICT (store.h): the caller reloads and renumbers. An unknown
 * outcome (a timeout) is sent again; if the first had applied, the second
 * loses its condition and the caller's reload finds its own rows there.
 *
 * Heads: the authoritative head of a conversation or inbox is the static
 * head of its newest bucket. The hint (conversations.last_seq,
 * inbox_heads) is written in the logged batch, so it may be behind; a head
 * read starts at the hint's bucket and walks forward while a bucket is
 * full (bounded). Rows in (hint, head] are those whose writer stopped
 * between its conditional batch and its logged batch: store.h
 * store_last_seq_heads tells the caller both, so it can take them in.
 *
 * Only with store_options.cassandra_fence (a node started with --kafka or
 * --node: several writers can exist only then); a single node commits
 * exactly as before, one LOGGED BATCH. RocksDB never has this: one process.
 *
 * Upgrade: opening adds the head columns (ALTER TABLE ... ADD, "already
 * exists" tolerated). A partition written before has rows and a hint but
 * no head: its next write would expect a head it does not have and
 * conflict for ever, so a head read that finds the hint's bucket without
 * a head (the next seq going into it) sets it from the hint, IF head =
 * null, and reads it again (adopt_head). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/store_cassandra_internal.h"
#include "store/store_cassandra_schema.h"

/* a conditional batch of unknown outcome is sent again at most this often in all */
#define FENCE_ATTEMPTS 3
/* buckets a head read walks past the hint's, at most (a hint is at most
 * one commit behind: this bound is never near) */
#define HEAD_WALK_MAX 64

static const struct {
    char tag;
    const char *table, *key_col, *seq_col, *val_cols;
    uint32_t bucket;
} tables[2] = {
    {'M', "messages", "conv", "seq", "body", STORE_CQL_MESSAGE_BUCKET},
    {'X', "inboxes", "user_id", "user_seq", "conv,seq,sender,ts", STORE_CQL_INBOX_BUCKET},
};

/* an ALTER that may have run before (another node, an earlier open) */
static int add_head(cass *s, const char *table, char **why) {
    char q[256];
    snprintf(q, sizeof q, "ALTER TABLE %s.%s ADD head bigint static", s->keyspace, table);
    cql_result *r = cql_query_sync(s->cql, q, CASS_CL);
    if (!r) abort();
    cql_status st = cql_result_status(r);
    const char *msg = cql_result_message(r);
    int ok = st == CQL_OK || strstr(msg, "already exist") || strstr(msg, "conflicts with an existing column");
    if (!ok) *why = cass_textf("%s: %s %s", q, cql_status_name(st), msg);
    cql_result_free(r);
    return ok ? 0 : -1;
}

int cass_fence_open(cass *s, char **why) {
    s->fence = true;
    for (int i = 0; i < 2; i++) {
        if (add_head(s, tables[i].table, why) != 0) return -1;
        size_t nv = 1;
        for (const char *p = tables[i].val_cols; *p; p++) nv += *p == ',';
        char marks[64] = "?,?,?";
        for (size_t j = 0; j < nv; j++) strcat(marks, ",?");
        s->fence_put[i] = cass_textf("INSERT INTO %s.%s (%s,bucket,%s,%s) VALUES (%s) USING TTL ?", s->keyspace,
                                tables[i].table, tables[i].key_col, tables[i].seq_col, tables[i].val_cols, marks);
        s->fence_head[i] = cass_textf("UPDATE %s.%s SET head = ? WHERE %s = ? AND bucket = ? IF head = ?", s->keyspace,
                                 tables[i].table, tables[i].key_col);
        s->fence_head_null[i] = cass_textf("UPDATE %s.%s SET head = ? WHERE %s = ? AND bucket = ? IF head = null",
                                      s->keyspace, tables[i].table, tables[i].key_col);
        char q[256];
        snprintf(q, sizeof q, "SELECT head FROM %s.%s WHERE %s = ? AND bucket = ? LIMIT 1", s->keyspace,
                 tables[i].table, tables[i].key_col);
        cql_result *res = NULL;
        s->fence_read[i] = cql_prepare(s->cql, q, &res);
        if (!s->fence_read[i]) {
            *why = cass_textf("prepare %s: %s", q, res ? cql_result_message(res) : "out of memory");
            cql_result_free(res);
            return -1;
        }
        cql_result_free(res);
        snprintf(q, sizeof q, "UPDATE %s.%s SET head = ? WHERE %s = ? AND bucket = ? IF head = null", s->keyspace,
                 tables[i].table, tables[i].key_col);
        s->fence_adopt[i] = cql_prepare(s->cql, q, &res);
        if (!s->fence_adopt[i]) {
            *why = cass_textf("prepare %s: %s", q, res ? cql_result_message(res) : "out of memory");
            cql_result_free(res);
            return -1;
        }
        cql_result_free(res);
    }
    return 0;
}

void cass_fence_free(cass *s) {
    for (int i = 0; i < 2; i++) {
        free(s->fence_put[i]);
        free(s->fence_head[i]);
        free(s->fence_head_null[i]);
    }
}

/* ------------------------------------------------------------ the rows */

static int table_of(char tag) { return tag == 'M' ? 0 : tag == 'X' ? 1 : -1; }

bool cass_fence_takes(const cass *s, char tag) { return s->fence && table_of(tag) >= 0; }

void cass_fence_add(cass_fence_rows *fr, char tag, uint64_t key, uint64_t seq, const uint8_t *val, size_t vlen,
                    int64_t ttl) {
    if (fr->n == fr->cap) {
        size_t cap = fr->cap ? fr->cap * 2 : 16;
        cass_fence_row *grown = realloc(fr->r, cap * sizeof *grown);
        if (!grown) abort();
        fr->r = grown;
        fr->cap = cap;
    }
    /* past the retention already: written to expire at once (a delete cannot
     * go in a conditional batch with the head, and the head must move) */
    fr->r[fr->n] = (cass_fence_row){table_of(tag), key, seq, val, vlen, ttl < 0 ? 1 : (int32_t)ttl, fr->n};
    fr->n++;
}

void cass_fence_rows_free(cass_fence_rows *fr) {
    free(fr->r);
    *fr = (cass_fence_rows){0};
}

static int row_order(const void *x, const void *y) {
    const cass_fence_row *a = x, *b = y;
    if (a->table != b->table) return a->table - b->table;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* one conditional batch on one partition */
typedef struct fence_group {
    struct fence_run *run;
    int table;
    uint64_t key, bucket, first, last;
    cql_batch *batch;
    int attempts;
} fence_group;

typedef struct fence_run {
    cass *s;
    fence_group *g;
    size_t n;
    atomic_size_t keys_left;
    atomic_int conflict, failed;
    void (*done)(void *ud, int rc);
    void *ud;
} fence_run;

static void add_row(cass *s, cql_batch *b, const cass_fence_row *r, uint64_t bucket) {
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, (int64_t)r->key);
    cql_values_bigint(&v, (int64_t)bucket);
    cql_values_bigint(&v, (int64_t)r->seq);
    if (r->table == 0) {
        cql_values_blob(&v, r->val, r->vlen);
    } else {
        for (size_t i = 0; i < 4; i++) cql_values_bigint(&v, i * 8 + 8 <= r->vlen ? (int64_t)be64(r->val + 8 * i) : 0);
    }
    cql_values_int(&v, r->ttl);
    cql_batch_add(b, s->fence_put[r->table], &v);
    cql_values_free(&v);
}

static void add_head_update(cass *s, fence_group *g) {
    uint32_t bsize = tables[g->table].bucket;
    /* the first seq of its bucket (or the first of all) expects no head */
    bool fresh = g->first == 1 || (g->first - 1) / bsize != g->first / bsize;
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, (int64_t)g->last);
    cql_values_bigint(&v, (int64_t)g->key);
    cql_values_bigint(&v, (int64_t)g->bucket);
    if (!fresh) cql_values_bigint(&v, (int64_t)(g->first - 1));
    cql_batch_add(g->batch, fresh ? s->fence_head_null[g->table] : s->fence_head[g->table], &v);
    cql_values_free(&v);
}

/* The rows as conditional batches: sorted by (table, key, seq), the later
 * of two writes of one row kept, split where the bucket changes or a seq
 * is skipped. */
static fence_group *build_groups(cass *s, cass_fence_rows *fr, size_t *n_groups) {
    qsort(fr->r, fr->n, sizeof *fr->r, row_order);
    fence_group *g = calloc(fr->n, sizeof *g);
    if (!g) abort();
    size_t n = 0;
    for (size_t i = 0; i < fr->n; i++) {
        const cass_fence_row *r = &fr->r[i];
        if (i + 1 < fr->n && fr->r[i + 1].table == r->table && fr->r[i + 1].key == r->key &&
            fr->r[i + 1].seq == r->seq)
            continue;   /* a later write of the same row follows */
        uint64_t bucket = r->seq / tables[r->table].bucket;
        fence_group *last = n ? &g[n - 1] : NULL;
        if (!last || last->table != r->table || last->key != r->key || last->bucket != bucket ||
            last->last + 1 != r->seq) {
            last = &g[n++];
            *last = (fence_group){NULL, r->table, r->key, bucket, r->seq, r->seq, cql_batch_new(), 0};
            if (!last->batch) abort();
        }
        last->last = r->seq;
        add_row(s, last->batch, r, bucket);
    }
    for (size_t i = 0; i < n; i++) add_head_update(s, &g[i]);
    *n_groups = n;
    return g;
}

static void run_free(fence_run *run) {
    for (size_t i = 0; i < run->n; i++) cql_batch_free(run->g[i].batch);
    free(run->g);
    free(run);
}

static void key_done(fence_run *run) {
    if (atomic_fetch_sub(&run->keys_left, 1) != 1) return;
    int rc = atomic_load(&run->failed) ? -1 : atomic_load(&run->conflict) ? STORE_CONFLICT : 0;
    void (*done)(void *, int) = run->done;
    void *ud = run->ud;
    run_free(run);
    done(ud, rc);
}

static void group_done(cql_result *res, void *ud);

static int group_send(fence_group *g) {
    atomic_fetch_add(&g->run->s->fence_batches_total, 1);
    cql_status st = cql_execute_batch(g->run->s->cql, g->batch, CASS_CL, group_done, g);
    if (st != CQL_OK) log_error("store: cassandra: conditional batch not sent: %s", cql_status_name(st));
    return st == CQL_OK ? 0 : -1;
}

/* on the client's I/O thread */
static void group_done(cql_result *res, void *ud) {
    fence_group *g = ud;
    fence_run *run = g->run;
    cql_status st = cql_result_status(res);
    int applied = st == CQL_OK ? cql_result_applied(res) : -1;
    if (st != CQL_OK) {
        bool again = cql_status_outcome_unknown(st) || st == CQL_ERR_UNAVAILABLE || st == CQL_ERR_OVERLOADED;
        log_warn("store: cassandra: conditional batch (%s %llu bucket %llu): %s %s%s", tables[g->table].table,
                 (unsigned long long)g->key, (unsigned long long)g->bucket, cql_status_name(st),
                 cql_result_message(res), again && g->attempts + 1 < FENCE_ATTEMPTS ? " (again)" : "");
        cql_result_free(res);
        if (again && ++g->attempts < FENCE_ATTEMPTS) {
            atomic_fetch_add(&run->s->commit_retries_total, 1);
            if (group_send(g) == 0) return;
        }
        atomic_store(&run->failed, 1);
        key_done(run);
        return;
    }
    cql_result_free(res);
    if (applied != 1) {
        if (applied == 0) {
            atomic_fetch_add(&run->s->fence_conflicts_total, 1);
            atomic_store(&run->conflict, 1);
        } else {
            log_error("store: cassandra: a conditional batch answered without [applied]");
            atomic_store(&run->failed, 1);
        }
        key_done(run);   /* its later buckets are not sent: they would build on this one */
        return;
    }
    fence_group *next = g + 1;
    if (next < run->g + run->n && next->table == g->table && next->key == g->key) {
        if (group_send(next) == 0) return;
        atomic_store(&run->failed, 1);
    }
    key_done(run);
}

int cass_fence_run(cass *s, cass_fence_rows *fr, void (*done)(void *ud, int rc), void *ud) {
    fence_run *run = calloc(1, sizeof *run);
    if (!run) abort();
    run->s = s;
    run->done = done;
    run->ud = ud;
    run->g = build_groups(s, fr, &run->n);
    size_t keys = 0;
    for (size_t i = 0; i < run->n; i++) {
        run->g[i].run = run;
        if (i == 0 || run->g[i - 1].table != run->g[i].table || run->g[i - 1].key != run->g[i].key) keys++;
    }
    /* one more than the keys: no completion frees the run while this loop runs */
    atomic_store(&run->keys_left, keys + 1);
    for (size_t i = 0; i < run->n; i++) {
        if (i > 0 && run->g[i - 1].table == run->g[i].table && run->g[i - 1].key == run->g[i].key) continue;
        if (group_send(&run->g[i]) != 0) {
            atomic_store(&run->failed, 1);
            key_done(run);
        }
    }
    key_done(run);
    return 0;
}

/* ------------------------------------------------------------ the heads */

static int head_cb(void *ud, const cql_result *r, size_t row) {
    int64_t *h = ud;
    if (cql_get_bigint(r, row, 0, h) != 0) *h = -1;   /* null: no head */
    return 1;
}

/* A partition written before the fence: rows up to the hint in bucket b,
 * no head. Its next write (hint + 1, same bucket) expects head = hint and
 * would conflict for ever, so the head is set from the hint, IF head =
 * null (only a pre-fence writer leaves rows without a head: a fenced
 * writer sets it in the rows' own batch; two readers adopting at once set
 * the same value). 0 or -1; the caller reads the head again. */
static int adopt_head(cass *s, int i, uint64_t key, uint64_t b, uint64_t hint) {
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, (int64_t)hint);
    cql_values_bigint(&v, (int64_t)key);
    cql_values_bigint(&v, (int64_t)b);
    cql_result *r = v.error ? NULL : cql_execute_lwt_sync(s->cql, s->fence_adopt[i], &v, CASS_CL, CQL_LOCAL_SERIAL);
    cql_values_free(&v);
    cql_status st = r ? cql_result_status(r) : CQL_ERR_NOMEM;
    if (st == CQL_OK) {
        atomic_fetch_add(&s->fence_heads_adopted_total, 1);
        log_info("store: cassandra: %s %llu bucket %llu had no head (written before the fence): set to %llu",
                 tables[i].table, (unsigned long long)key, (unsigned long long)b, (unsigned long long)hint);
    } else {
        log_warn("store: cassandra: setting the head of %s %llu bucket %llu: %s %s", tables[i].table,
                 (unsigned long long)key, (unsigned long long)b, cql_status_name(st), r ? cql_result_message(r) : "");
    }
    cql_result_free(r);
    return st == CQL_OK ? 0 : -1;
}

/* the head of table i's partitions of key, from the hint on */
static int fenced_head(cass *s, int i, uint64_t key, uint64_t hint, uint64_t *head) {
    uint64_t cur = hint, b = hint / tables[i].bucket;
    bool adopted = false;
    for (int walk = 0; walk < HEAD_WALK_MAX; walk++) {
        cql_values v;
        cql_values_init(&v);
        cql_values_bigint(&v, (int64_t)key);
        cql_values_bigint(&v, (int64_t)b);
        int64_t h = -1;
        int rc = cass_rows(s, s->fence_read[i], &v, 0, head_cb, &h);
        cql_values_free(&v);
        if (rc != 0) return -1;
        /* the hint's own bucket has no head, though rows up to the hint are
         * there and the next seq goes into it: written before the fence */
        if (h < 0 && !adopted && hint > 0 && b == hint / tables[i].bucket && (hint + 1) / tables[i].bucket == b) {
            if (adopt_head(s, i, key, b, hint) != 0) return -1;
            adopted = true;
            walk--;   /* read this bucket again: the head is set now (by this reader or another) */
            continue;
        }
        if (h > 0 && (uint64_t)h > cur) cur = (uint64_t)h;
        uint64_t nb = (cur + 1) / tables[i].bucket;   /* where the next seq goes */
        if (nb == b) break;
        b = nb;
    }
    *head = cur;
    return 0;
}

int cass_last_seq_heads(void *impl, uint64_t conv, uint64_t *hint, uint64_t *head) {
    cass *s = impl;
    if (cass_last_seq(impl, conv, hint) != 0) return -1;
    *head = *hint;
    return s->fence ? fenced_head(s, 0, conv, *hint, head) : 0;
}

int cass_inbox_heads(void *impl, uint64_t user, uint64_t *hint, uint64_t *head) {
    cass *s = impl;
    if (cass_inbox_head(impl, user, hint) != 0) return -1;
    *head = *hint;
    return s->fence ? fenced_head(s, 1, user, *hint, head) : 0;
}

int cass_last_seq_fenced(void *impl, uint64_t conv, uint64_t *seq) {
    uint64_t hint;
    return cass_last_seq_heads(impl, conv, &hint, seq);
}

int cass_inbox_head_fenced(void *impl, uint64_t user, uint64_t *user_seq) {
    uint64_t hint;
    return cass_inbox_heads(impl, user, &hint, user_seq);
}
