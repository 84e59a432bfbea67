/* store_cassandra_write.c -- a commit of the Cassandra backend: each write
 * of the batch (store_batch_each: tagged key and value, in call order)
 * becomes one CQL statement on its row, and the statements go to Cassandra
 * as one LOGGED BATCH, each by its prepared id (prepared from its first
 * use on, as text until then; after UNPREPARED the client prepares it
 * again and re-sends the batch).
 *
 * Why a LOGGED BATCH and not the statements concurrently: store.h promises
 * an atomic commit, and parley leans on it. A group commit holds a
 * message, its conversation's last seq, the dedupe record of its
 * client_msg_id, inbox entries and heads, the fan-out log entry. Applied in
 * part (the server killed between two statements), a dedupe record could
 * stand without its message, so the client's retry would be answered
 * "already stored" for a message nobody can read; or a seq could be taken
 * with no last seq recorded. Cassandra writes a logged batch to its batch
 * log before applying it, so once the batch is accepted every statement is
 * applied eventually, even if the coordinator dies: all or nothing, in the
 * end. The price is one extra write (the batch log) per commit.
 *
 * Order within a batch: Cassandra gives every statement of a batch the same
 * timestamp, and at equal timestamps a delete wins, so "the last write of a
 * key wins" (store.h) would not hold for a put after a delete. So each
 * statement carries its own timestamp (USING TIMESTAMP), one microsecond
 * apart in call order, taken from a clock that never goes back within the
 * process. A re-execution after an unknown outcome re-sends the very same
 * statements with the very same timestamps: the same cells, never a second
 * message (idempotent, as store.h requires).
 *
 * Size: Cassandra refuses a batch over batch_size_fail_threshold (50 KiB
 * by default; scripts/cassandra.sh sets 4 MiB) and a mutation over half a
 * commit log segment. A commit whose statements exceed CHUNK_MAX_BYTES is
 * sent as several logged batches, one after the other, each atomic: a crash
 * between two of them leaves the earlier ones applied. The writer's group
 * commits are far under this (512 sends of at most 64 KiB is the worst
 * case, and typical messages are under 1 KiB).
 *
 * Many commits may be in flight at once (commit_async); their callbacks
 * come from the CQL client's I/O thread in the order their answers arrive,
 * not necessarily the order of the calls. What keeps two commits of one
 * owner in order is the data itself: timestamps are taken at the call, so
 * of two commits writing one key the later call wins, whichever Cassandra
 * applies first.
 *
 * Retention: messages, inbox entries and dedupe records are written with a
 * TTL of what is left of the retention at their time (ts + retention -
 * now); one already past it is written as a delete of its row.
 *
 * Fenced (store_options.cassandra_fence, store_cassandra_fence.c): the puts
 * of messages and inbox entries are taken out of the statements and sent
 * first, as conditional batches on their partitions; the LOGGED BATCH of
 * the rest goes only once all of them applied, and a lost condition ends
 * the commit with STORE_CONFLICT, the batch intact. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/store_batch_ops.h"
#include "store/store_cassandra_internal.h"

/* one LOGGED BATCH request at most this many encoded bytes */
#define CHUNK_MAX_BYTES (1u << 20)
/* an unknown outcome is retried this many times before the commit fails */
#define COMMIT_ATTEMPTS 3
/* Cassandra's largest TTL: 20 years */
#define TTL_MAX_S 630720000u

static uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ----------------------------------------------------------- key fields */

typedef struct field {
    char type;          /* 'L', 'I', 'T', 'D', 'b' */
    uint64_t u;
    const uint8_t *p;
    size_t n;
} field;

enum { FIELDS_MAX = 8 };

/* Splits a tagged key into its columns. Returns how many whole columns the
 * key holds (a range delete's bounds may hold fewer than all), or -1 when
 * the key does not end on a field boundary of its kind. */
static int parse_key(const cass_kind *k, const uint8_t *key, size_t klen, field *f) {
    size_t at = 1;
    int n = 0;
    int bucket_at = -1;
    for (const char *c = k->key_fmt; *c && n < FIELDS_MAX; c++) {
        if (at == klen) break;
        switch (*c) {
        case 'L':
            if (klen - at < 8) return -1;
            f[n++] = (field){'L', be64(key + at), NULL, 0};
            at += 8;
            if (bucket_at >= 0) {
                f[bucket_at].u = f[n - 1].u / k->bucket;
                bucket_at = -1;
            }
            break;
        case 'I':
            if (klen - at < 4) return -1;
            f[n++] = (field){'I', be32(key + at), NULL, 0};
            at += 4;
            break;
        case 'T':
            f[n++] = (field){'T', 0, key + at, klen - at};
            at = klen;
            break;
        case 'D': {
            size_t len = key[at];
            if (klen - at - 1 < len) return -1;
            f[n++] = (field){'D', 0, key + at + 1, len};
            at += 1 + len;
            break;
        }
        case 'b':
            bucket_at = n;
            f[n++] = (field){'b', 0, NULL, 0};
            break;
        case 'r':
            if (key[at] != 'r') return -1;
            at++;
            break;
        }
    }
    if (at != klen) return -1;
    if (bucket_at >= 0) n--;   /* a bucket without the field it is of */
    return n;
}

/* the columns of a kind: letters of key_fmt but 'r' */
static int key_columns(const cass_kind *k) {
    int n = 0;
    for (const char *c = k->key_fmt; *c; c++) n += *c != 'r';
    return n;
}

static void bind_fields(cql_values *v, const field *f, int n) {
    for (int i = 0; i < n; i++) {
        switch (f[i].type) {
        case 'L': case 'b': cql_values_bigint(v, (int64_t)f[i].u); break;
        case 'I': cql_values_int(v, (int32_t)f[i].u); break;
        case 'T': cql_values_text(v, (const char *)f[i].p, f[i].n); break;
        case 'D': cql_values_blob(v, f[i].p, f[i].n); break;
        }
    }
}

/* the value's columns; -1 when the value is not of the kind's shape */
static int bind_value(cql_values *v, const cass_kind *k, const uint8_t *val, size_t vlen) {
    if (strcmp(k->val_fmt, "B") == 0) {
        cql_values_blob(v, val, vlen);
        return 0;
    }
    size_t n = strlen(k->val_fmt);
    if (vlen != 8 * n) return -1;
    for (size_t i = 0; i < n; i++) cql_values_bigint(v, (int64_t)be64(val + 8 * i));
    return 0;
}

/* seconds of retention left for a record of time ts: 0 none (no TTL), -1
 * already past it */
static int64_t ttl_left(const cass *s, const cass_kind *k, const uint8_t *val, size_t vlen) {
    if (k->ttl_from == -3) return STORE_GROUP_ORIGIN_TTL_S;   /* a bounded lifetime, not the retention */
    if (!s->retention_ms || k->ttl_from == -1) return 0;
    uint64_t ts;
    if (k->ttl_from == -2) ts = cass_message_ts(val, vlen);
    else if ((size_t)k->ttl_from + 8 <= vlen) ts = be64(val + k->ttl_from);
    else return 0;
    if (!ts) return 0;   /* a record with no time never expires (as in RocksDB) */
    uint64_t now = cass_wall_ms(), end = ts + s->retention_ms;
    if (end <= now) return -1;
    uint64_t left = (end - now + 999) / 1000;
    return left > TTL_MAX_S ? TTL_MAX_S : (int64_t)left;
}

/* ------------------------------------------------------ batch → statements */

typedef struct build {
    cass *s;
    cql_batch **chunks;
    size_t n_chunks, cap_chunks;
    uint64_t ts;            /* the next statement's timestamp */
    int failed;
    cass_fence_rows fenced; /* messages and inbox entries, when fenced */
} build;

static cql_batch *current_chunk(build *bd) {
    if (bd->n_chunks && cql_batch_bytes(bd->chunks[bd->n_chunks - 1]) < CHUNK_MAX_BYTES)
        return bd->chunks[bd->n_chunks - 1];
    if (bd->n_chunks == bd->cap_chunks) {
        size_t cap = bd->cap_chunks ? bd->cap_chunks * 2 : 4;
        cql_batch **grown = realloc(bd->chunks, cap * sizeof *grown);
        if (!grown) abort();
        bd->chunks = grown;
        bd->cap_chunks = cap;
    }
    cql_batch *c = cql_batch_new();
    if (!c) abort();
    bd->chunks[bd->n_chunks++] = c;
    return c;
}

/* The prepared statement of a write text of t, once it is prepared: a
 * commit's statements go to Cassandra as ids, not as text it parses each
 * time. The first use sends the PREPARE without waiting for it (a commit
 * never blocks on it, even with the node frozen); until the id has come
 * the statement goes as text (NULL here). The client re-prepares it after
 * UNPREPARED. */
static const cql_prepared *prepared_write(cass *s, cass_texts *t, const char *text) {
    int which = text == t->put ? 0 : text == t->del ? 1 : text == t->del_prefix ? 2 : 3;
    cql_prepared *st = atomic_load(&t->prepared[which]);
    if (st && cql_prepared_ready(st)) return st;
    st = cql_prepare_async(s->cql, text);   /* the client's cache: racing threads get the same handle */
    if (st) atomic_store(&t->prepared[which], st);
    return st && cql_prepared_ready(st) ? st : NULL;
}

static int add_write(void *ud, enum store_write_kind kind, const uint8_t *key, size_t klen, const uint8_t *value,
                     size_t vlen) {
    build *bd = ud;
    const cass_kind *k = cass_kind_of(key, klen);
    field f[FIELDS_MAX], g[FIELDS_MAX];
    int nf = k ? parse_key(k, key, klen, f) : -1;
    int nk = k ? key_columns(k) : 0;
    cass_texts *t = k ? &bd->s->texts[k - cass_kinds] : NULL;
    int64_t ts = (int64_t)bd->ts++;
    cql_values v;
    cql_values_init(&v);
    const char *text = NULL;
    if (!k || nf < 0) {
        log_error("store: cassandra: a write of a key of no known kind (tag 0x%02x, %zu bytes)", klen ? key[0] : 0,
                  klen);
    } else if (kind == STORE_WRITE_PUT && nf == nk && k->bucket && cass_fence_takes(bd->s, k->tag)) {
        /* key fields: the conversation or user, its bucket, the seq */
        cass_fence_add(&bd->fenced, k->tag, f[0].u, f[2].u, value, vlen, ttl_left(bd->s, k, value, vlen));
        cql_values_free(&v);
        return 0;
    } else if (kind == STORE_WRITE_PUT && nf == nk) {
        int64_t ttl = ttl_left(bd->s, k, value, vlen);
        if (ttl < 0) {   /* past the retention already: invisible at once, as in RocksDB */
            text = t->del;
            cql_values_bigint(&v, ts);
            bind_fields(&v, f, nf);
        } else {
            text = t->put;
            bind_fields(&v, f, nf);
            if (bind_value(&v, k, value, vlen) != 0) {
                log_error("store: cassandra: a '%c' value of %zu bytes", k->tag, vlen);
                text = NULL;
            }
            cql_values_int(&v, (int32_t)ttl);
            cql_values_bigint(&v, ts);
        }
    } else if (kind == STORE_WRITE_DELETE && nf == nk) {
        text = t->del;
        cql_values_bigint(&v, ts);
        bind_fields(&v, f, nf);
    } else if (kind == STORE_WRITE_DELETE_RANGE && !k->bucket) {
        /* [from, to): the rows under a prefix (a device's one-time keys or
         * queue), or a range of the last clustering column (the fan-out
         * log through an offset, a device queue through a queue_seq) */
        const cass_kind *kt = cass_kind_of(value, vlen);
        int ng = kt == k ? parse_key(k, value, vlen, g) : -1;
        if (nf == nk - 1 && ng == nk - 1 && nk > 1) {
            text = t->del_prefix;
            cql_values_bigint(&v, ts);
            bind_fields(&v, f, nf);
        } else if (nf == nk && ng == nk && nk > 1) {
            text = t->del_range;
            cql_values_bigint(&v, ts);
            bind_fields(&v, f, nf);
            bind_fields(&v, &g[nk - 1], 1);
        }
    }
    if (!text) {
        if (k && nf >= 0) log_error("store: cassandra: a write the backend cannot express (tag '%c', kind %d)",
                                    k->tag, (int)kind);
        bd->failed = 1;
        cql_values_free(&v);
        return 1;
    }
    const cql_prepared *st = prepared_write(bd->s, t, text);
    if (st) cql_batch_add_prepared(current_chunk(bd), st, &v);
    else cql_batch_add(current_chunk(bd), text, &v);
    atomic_fetch_add(st ? &bd->s->statements_by_id_total : &bd->s->statements_as_text_total, 1);
    cql_values_free(&v);
    return 0;
}

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

/* n consecutive timestamps, after every one handed out before: max(last +
 * 1, wall clock), so they never go back within the process; at open, last
 * is the newest write time found in the store (store_cassandra.c), which
 * covers a clock stepped back across a restart as far as that write */
static uint64_t reserve_timestamps(cass *s, size_t n) {
    unsigned long long last = atomic_load(&s->last_ts_us);
    unsigned long long base;
    do {
        base = now_us();
        if (base <= last) base = last + 1;
    } while (!atomic_compare_exchange_weak(&s->last_ts_us, &last, base + n));
    return base;
}

/* ------------------------------------------------------------ the commit */

typedef struct job {
    cass *s;
    store_batch *b;
    store_commit_cb cb;
    void *ud;
    cql_batch **chunks;
    size_t n_chunks, next;
    int attempts;
} job;

static void job_free(job *j) {
    for (size_t i = 0; i < j->n_chunks; i++) cql_batch_free(j->chunks[i]);
    free(j->chunks);
    free(j);
}

static void job_finish(job *j, int rc) {
    cass *s = j->s;
    atomic_fetch_add(&s->commits_total, 1);
    if (rc == 0) {
        batch_ops_clear(j->b);
        atomic_store(&s->commit_failing, false);
    } else if (rc == STORE_CONFLICT) {
        /* the store answered: healthy; the batch stays for the caller */
        atomic_store(&s->commit_failing, false);
    } else {
        atomic_fetch_add(&s->commit_failures_total, 1);
        atomic_store(&s->commit_failing, true);
    }
    store_commit_cb cb = j->cb;
    void *ud = j->ud;
    job_free(j);
    cb(ud, rc);
}

static void chunk_done(cql_result *res, void *ud);

/* sends the job's next chunk (again, on a retry); -1 when it could not */
static int job_send(job *j) {
    cql_status st = cql_execute_batch(j->s->cql, j->chunks[j->next], CASS_CL, chunk_done, j);
    if (st != CQL_OK) {
        log_error("store: cassandra: commit not sent: %s", cql_status_name(st));
        return -1;
    }
    return 0;
}

/* on the client's I/O thread */
static void chunk_done(cql_result *res, void *ud) {
    job *j = ud;
    cql_status st = cql_result_status(res);
    if (st != CQL_OK) {
        /* unknown outcome (timeout, connection lost with the batch sent) or
         * not applied (unavailable, overloaded): the same statements with
         * the same timestamps again, a bounded number of times */
        bool again = cql_status_outcome_unknown(st) || st == CQL_ERR_UNAVAILABLE || st == CQL_ERR_OVERLOADED;
        log_warn("store: cassandra: commit batch %zu/%zu: %s %s%s", j->next + 1, j->n_chunks, cql_status_name(st),
                 cql_result_message(res), again && j->attempts + 1 < COMMIT_ATTEMPTS ? " (again)" : "");
        cql_result_free(res);
        if (again && ++j->attempts < COMMIT_ATTEMPTS) {
            atomic_fetch_add(&j->s->commit_retries_total, 1);
            if (job_send(j) == 0) return;
        }
        job_finish(j, -1);
        return;
    }
    cql_result_free(res);
    j->next++;
    j->attempts = 0;
    if (j->next == j->n_chunks) {
        job_finish(j, 0);
        return;
    }
    atomic_fetch_add(&j->s->batch_chunks_total, 1);
    if (job_send(j) != 0) job_finish(j, -1);
}

/* the conditional batches are over (store_cassandra_fence.c): the logged
 * batch of the rest, only if all of them applied */
static void fenced_done(void *ud, int rc) {
    job *j = ud;
    if (rc != 0) {
        job_finish(j, rc);
        return;
    }
    if (j->n_chunks == 0) {
        job_finish(j, 0);
        return;
    }
    atomic_fetch_add(&j->s->batch_chunks_total, 1);
    if (job_send(j) != 0) job_finish(j, -1);
}

int cass_commit_async(void *impl, store_batch *b, bool sync, store_commit_cb cb, void *ud) {
    (void)sync;   /* acknowledged by a quorum of replicas, each with its commit log */
    cass *s = impl;
    size_t n = store_batch_count(b);
    if (n == 0) {
        cb(ud, 0);
        return 0;
    }
    build bd = {.s = s, .ts = reserve_timestamps(s, n)};
    store_batch_each(b, add_write, &bd);
    if (bd.failed || (bd.n_chunks == 0 && bd.fenced.n == 0)) {
        for (size_t i = 0; i < bd.n_chunks; i++) cql_batch_free(bd.chunks[i]);
        free(bd.chunks);
        cass_fence_rows_free(&bd.fenced);
        atomic_fetch_add(&s->commit_failures_total, 1);
        return -1;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) abort();
    *j = (job){s, b, cb, ud, bd.chunks, bd.n_chunks, 0, 0};
    if (bd.fenced.n > 0) {   /* the conditional batches first; fenced_done sends the rest */
        cass_fence_run(s, &bd.fenced, fenced_done, j);
        cass_fence_rows_free(&bd.fenced);
        return 0;
    }
    atomic_fetch_add(&s->batch_chunks_total, 1);
    if (job_send(j) != 0) {
        j->cb = NULL;
        job_free(j);
        atomic_fetch_add(&s->commit_failures_total, 1);
        atomic_store(&s->commit_failing, true);
        return -1;
    }
    return 0;
}

/* the synchronous commit: the asynchronous one, waited for */
typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, rc;
} waiter;

static void wake(void *ud, int rc) {
    waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

int cass_commit(void *impl, store_batch *b, bool sync) {
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1};
    if (cass_commit_async(impl, b, sync, wake, &w) != 0) return -1;
    /* bounded: the client fails every request at its deadline, so the
     * callback comes; the wait is for it alone */
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cond);
    return w.rc;
}
