/* store_cassandra.c -- the Cassandra store backend: opening (connect,
 * create the schema if absent, prepare the reads), health, metrics, and
 * the map from the tagged keys of store.h (listed at the top of
 * store_rocksdb.c) to the rows of store_cassandra_schema.c.
 *
 * Writes: store_cassandra_write.c (one LOGGED BATCH per commit); reads:
 * store_cassandra_read.c; claims: store_cassandra_claim.c.
 *
 * Consistency, per statement (replication is per data centre; LOCAL_ keeps
 * a request inside the coordinator's):
 *
 *   statement                                  consistency    why
 *   ----------------------------------------   ------------   ------------------------------
 *   commit: the LOGGED BATCH of a group        LOCAL_QUORUM   an ack means durable on a
 *     commit (every put and delete)                           majority of the local replicas
 *   claim: user name, link token, one-time     LOCAL_SERIAL   the one compare-and-set (LWT):
 *     key (INSERT ... IF NOT EXISTS)           + LOCAL_QUORUM Paxos round, then its commit
 *   claim of unknown outcome: read the owner   LOCAL_SERIAL   finishes a half-done round and
 *                                                             says won or lost, never assumed
 *   reads the write path decides on: counters, LOCAL_QUORUM   read quorum + write quorum >
 *     users, names, devices, conversations,                   replicas, so the read sees
 *     last seq, members and marks, dedupe,                    every acknowledged write (a
 *     fan-out log and checkpoints, inbox heads,               stale one would reuse a seq or
 *     cursors, device keys and one-time keys,                 store a message twice)
 *     device messages, consent
 *   history pages, inbox pages (sync)          LOCAL_QUORUM   read-your-writes: a client that
 *                                                             was acked must find its message
 *   link token scans (expiry sweep, the        LOCAL_ONE      a token missed now is seen by
 *     per-user cap)                                           the next sweep or the next make
 *   Web Push subscription                      LOCAL_ONE      a push is a hint; a missed one
 *                                                             is made up by the next sync
 *   export (scan_all)                          LOCAL_QUORUM   a copy must be complete
 *   schema (CREATE ... IF NOT EXISTS)          LOCAL_QUORUM   its own acknowledgement only
 *
 * Nothing else is a compare-and-set: every other write puts or deletes a
 * fixed row, so re-executing a batch after an unknown outcome is safe. */
#include "store/store_cassandra.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/store_cassandra_internal.h"
#include "store/store_cassandra_schema.h"

/* Each tagged key's row. 'c' and 'S' share the conversation's row (record
 * and last_seq), 'm' and its read marks the member's (record, and
 * read_seq/delivered_seq as columns: an ack rewrites 16 bytes). */
const cass_kind cass_kinds[] = {
    {'k', false, "counters", "name", "T", "value", "L", false, -1, 0},
    {'n', false, "user_names", "name", "T", "user_id", "L", false, -1, 0},
    {'u', false, "users", "user_id", "L", "record", "B", false, -1, 0},
    {'d', false, "devices", "user_id,device_id", "LI", "record", "B", false, -1, 0},
    {'t', false, "link_tokens", "link_token", "T", "record", "B", false, -1, 0},
    {'c', false, "conversations", "conv", "L", "record", "B", true, -1, 0},
    {'S', false, "conversations", "conv", "L", "last_seq", "L", true, -1, 0},
    {'p', false, "directs", "user_lo,user_hi", "LL", "conv", "L", false, -1, 0},
    {'m', false, "members", "conv,user_id", "LL", "record", "B", true, -1, 0},
    {'m', true, "members", "conv,user_id", "LLr", "read_seq,delivered_seq", "LL", true, -1, 0},
    {'v', false, "user_conversations", "user_id,conv", "LL", "", "", false, -1, 0},
    {'M', false, "messages", "conv,bucket,seq", "LbL", "body", "B", false, -2, STORE_CQL_MESSAGE_BUCKET},
    {'i', false, "client_msgs", "user_id,device_id,client_msg_id", "LID", "conv,seq,ts", "LLL", false, 16, 0},
    {'L', false, "fanout_log", "part,log_offset", "IL", "conv,seq", "LL", false, -1, 0},
    {'f', false, "checkpoints", "part", "I", "log_offset", "L", false, -1, 0},
    {'X', false, "inboxes", "user_id,bucket,user_seq", "LbL", "conv,seq,sender,ts", "LLLL", false, 24,
     STORE_CQL_INBOX_BUCKET},
    {'H', false, "inbox_heads", "user_id", "L", "user_seq", "L", false, -1, 0},
    {'r', false, "cursors", "user_id,device_id", "LI", "user_seq", "L", false, -1, 0},
    {'K', false, "device_keys", "user_id,device_id", "LI", "record", "B", false, -1, 0},
    {'o', false, "one_time_keys", "user_id,device_id,key_id", "LII", "public_key", "B", false, -1, 0},
    {'q', false, "device_messages", "user_id,device_id,queue_seq", "LIL", "body", "B", false, -1, 0},
    {'A', false, "consent", "owner,other", "LL", "record", "B", false, -1, 0},
    {'w', false, "push_subscriptions", "user_id,device_id", "LI", "record", "B", false, -1, 0},
    {'g', false, "group_origins", "part,slot", "II", "log_offset,user_id,device_id,request_id,conv", "LLLLL",
     false, -3, 0},
};
const size_t cass_n_kinds = sizeof cass_kinds / sizeof cass_kinds[0];

const cass_kind *cass_kind_of(const uint8_t *key, size_t klen) {
    if (klen == 0) return NULL;
    for (size_t i = 0; i < cass_n_kinds; i++) {
        const cass_kind *k = &cass_kinds[i];
        if (k->tag != key[0]) continue;
        /* the member record is 17 bytes, its read marks 18 ending in 'r' */
        if (k->tag == 'm' && k->marks != (klen == 18)) continue;
        return k;
    }
    return NULL;
}

/* ------------------------------------------------------------- texts */

char *cass_textf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) abort(); /* out of memory at open: nothing to run without the texts */
    return p;
}

/* "a = ? AND b = ?" over the first n names of a comma list */
static void where_eq(char *out, size_t cap, const char *cols, size_t n) {
    size_t len = 0;
    out[0] = 0;
    const char *p = cols;
    for (size_t i = 0; i < n && *p; i++) {
        const char *e = strchr(p, ',');
        size_t w = e ? (size_t)(e - p) : strlen(p);
        len += (size_t)snprintf(out + len, cap - len, "%s%.*s = ?", i ? " AND " : "", (int)w, p);
        p = e ? e + 1 : p + w;
    }
}

/* the name of the n-th column of a comma list */
static void nth_col(char *out, size_t cap, const char *cols, size_t n) {
    const char *p = cols;
    for (size_t i = 0; i < n && p; i++) {
        p = strchr(p, ',');
        if (p) p++;
    }
    const char *e = p ? strchr(p, ',') : NULL;
    snprintf(out, cap, "%.*s", p ? (int)(e ? (size_t)(e - p) : strlen(p)) : 0, p ? p : "");
}

static size_t count_cols(const char *cols) {
    if (!*cols) return 0;
    size_t n = 1;
    for (const char *p = cols; *p; p++) n += *p == ',';
    return n;
}

static void texts_make(cass *s) {
    s->texts = calloc(cass_n_kinds, sizeof *s->texts);
    if (!s->texts) abort();
    const char *ks = s->keyspace;
    for (size_t i = 0; i < cass_n_kinds; i++) {
        const cass_kind *k = &cass_kinds[i];
        cass_texts *t = &s->texts[i];
        size_t nk = count_cols(k->key_cols), nv = count_cols(k->val_cols);
        char marks[512] = "";
        size_t len = 0;
        for (size_t j = 0; j < nk + nv; j++) len += (size_t)snprintf(marks + len, sizeof marks - len, j ? ",?" : "?");
        char all[512], prefix[512], last[64];
        where_eq(all, sizeof all, k->key_cols, nk);
        where_eq(prefix, sizeof prefix, k->key_cols, nk - 1);
        nth_col(last, sizeof last, k->key_cols, nk - 1);
        t->put = cass_textf("INSERT INTO %s.%s (%s%s%s) VALUES (%s) USING TTL ? AND TIMESTAMP ?", ks, k->table,
                       k->key_cols, nv ? "," : "", k->val_cols, marks);
        t->del = cass_textf("DELETE %s FROM %s.%s USING TIMESTAMP ? WHERE %s", k->shares_row ? k->val_cols : "", ks,
                       k->table, all);
        t->del_prefix = cass_textf("DELETE FROM %s.%s USING TIMESTAMP ? WHERE %s", ks, k->table, prefix);
        t->del_range = cass_textf("DELETE FROM %s.%s USING TIMESTAMP ? WHERE %s%s%s >= ? AND %s < ?", ks, k->table,
                             prefix, nk > 1 ? " AND " : "", last, last);
        t->select_all = cass_textf("SELECT %s%s%s FROM %s.%s", k->key_cols, nv ? "," : "", k->val_cols, ks, k->table);
    }
}

static void texts_free(cass *s) {
    if (!s->texts) return;
    for (size_t i = 0; i < cass_n_kinds; i++) {
        free(s->texts[i].put);
        free(s->texts[i].del);
        free(s->texts[i].del_prefix);
        free(s->texts[i].del_range);
        free(s->texts[i].select_all);
    }
    free(s->texts);
}

/* ------------------------------------------------------------- retention */

uint64_t cass_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool cass_expired(const cass *s, uint64_t ts) {
    return s->retention_ms && ts && ts + s->retention_ms < cass_wall_ms();
}

/* one varint at *p (bounded by end); 0 when cut short */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t byte = *(*p)++;
        *v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return 1;
    }
    return 0;
}

uint64_t cass_message_ts(const uint8_t *p, size_t len) {
    const uint8_t *end = p + len;
    uint64_t tag, v;
    while (p < end && varint(&p, end, &tag)) {
        switch (tag & 7) {
        case 0:
            if (!varint(&p, end, &v)) return 0;
            if (tag >> 3 == 10) return v;
            break;
        case 1: if (end - p < 8) return 0; p += 8; break;
        case 2:
            if (!varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
            p += v;
            break;
        case 5: if (end - p < 4) return 0; p += 4; break;
        default: return 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------- health, metrics */

static store_health cass_get_health(void *impl) {
    cass *s = impl;
    cql_stats st;
    cql_get_stats(s->cql, &st);
    /* failing while commits fail, while reads fail (a stopped node keeps
     * its connections up and times every request out, so a write path
     * refused at its first read never gets to fail a commit), or while no
     * host is reachable */
    if (atomic_load(&s->commit_failing) || atomic_load(&s->read_failing) || st.ready_connections == 0)
        return STORE_FAILING;
    return STORE_HEALTHY;
}

static size_t cass_metrics_render(void *impl, char *out, size_t cap) {
    cass *s = impl;
    cql_stats st;
    cql_get_stats(s->cql, &st);
    int n = snprintf(out, cap,
        "# HELP parley_store_cql_requests_total CQL requests sent to Cassandra.\n"
        "# TYPE parley_store_cql_requests_total counter\nparley_store_cql_requests_total %llu\n"
        "# HELP parley_store_cql_timeouts_total CQL requests with no answer within the request timeout.\n"
        "# TYPE parley_store_cql_timeouts_total counter\nparley_store_cql_timeouts_total %llu\n"
        "# HELP parley_store_cql_reprepares_total Statements prepared again after UNPREPARED.\n"
        "# TYPE parley_store_cql_reprepares_total counter\nparley_store_cql_reprepares_total %llu\n"
        "# HELP parley_store_cql_reconnects_total Connection attempts to Cassandra hosts.\n"
        "# TYPE parley_store_cql_reconnects_total counter\nparley_store_cql_reconnects_total %llu\n"
        "# HELP parley_store_cql_connection_failures_total Connections to Cassandra lost or refused.\n"
        "# TYPE parley_store_cql_connection_failures_total counter\nparley_store_cql_connection_failures_total %llu\n"
        "# HELP parley_store_cql_ready_connections Connections ready for requests now.\n"
        "# TYPE parley_store_cql_ready_connections gauge\nparley_store_cql_ready_connections %d\n"
        "# HELP parley_store_cql_peak_in_flight Most requests in flight on one connection so far.\n"
        "# TYPE parley_store_cql_peak_in_flight gauge\nparley_store_cql_peak_in_flight %d\n"
        "# HELP parley_store_cql_batches_total LOGGED BATCH requests of commits (first tries).\n"
        "# TYPE parley_store_cql_batches_total counter\nparley_store_cql_batches_total %lu\n"
        "# HELP parley_store_cql_commit_retries_total Batches executed again after an unknown outcome.\n"
        "# TYPE parley_store_cql_commit_retries_total counter\nparley_store_cql_commit_retries_total %lu\n"
        "# HELP parley_store_cql_read_failures_total Reads Cassandra failed.\n"
        "# TYPE parley_store_cql_read_failures_total counter\nparley_store_cql_read_failures_total %lu\n"
        "# HELP parley_store_cql_statements_prepared_total Commit statements sent by prepared id.\n"
        "# TYPE parley_store_cql_statements_prepared_total counter\nparley_store_cql_statements_prepared_total %lu\n"
        "# HELP parley_store_cql_statements_text_total Commit statements sent as text (their id not yet known).\n"
        "# TYPE parley_store_cql_statements_text_total counter\nparley_store_cql_statements_text_total %lu\n"
        "# HELP parley_store_cql_claims_total Lightweight transactions sent (name, link token, one-time key claims).\n"
        "# TYPE parley_store_cql_claims_total counter\nparley_store_cql_claims_total %lu\n"
        "# HELP parley_store_cql_claims_lost_total Claims another writer had won.\n"
        "# TYPE parley_store_cql_claims_lost_total counter\nparley_store_cql_claims_lost_total %lu\n"
        "# HELP parley_store_cql_claims_unknown_total Claims of unknown outcome, resolved by a read at LOCAL_SERIAL.\n"
        "# TYPE parley_store_cql_claims_unknown_total counter\nparley_store_cql_claims_unknown_total %lu\n"
        "# HELP parley_store_cql_names_released_total User names given back after their registration failed.\n"
        "# TYPE parley_store_cql_names_released_total counter\nparley_store_cql_names_released_total %lu\n"
        "# HELP parley_store_cql_names_taken_over_total Orphaned user names (claimed, no user) claimed anew.\n"
        "# TYPE parley_store_cql_names_taken_over_total counter\nparley_store_cql_names_taken_over_total %lu\n"
        "# HELP parley_store_cql_fence_batches_total Conditional batches sent (messages and inbox entries, --kafka/--node).\n"
        "# TYPE parley_store_cql_fence_batches_total counter\nparley_store_cql_fence_batches_total %lu\n"
        "# HELP parley_store_cql_fence_conflicts_total Conditional batches another writer had won (seq or user_seq taken).\n"
        "# TYPE parley_store_cql_fence_conflicts_total counter\nparley_store_cql_fence_conflicts_total %lu\n"
        "# HELP parley_store_cql_fence_heads_adopted_total Partitions written before the fence given their head from the hint.\n"
        "# TYPE parley_store_cql_fence_heads_adopted_total counter\nparley_store_cql_fence_heads_adopted_total %lu\n"
        "# HELP parley_store_commits_total Commits finished (either way).\n"
        "# TYPE parley_store_commits_total counter\nparley_store_commits_total %lu\n"
        "# HELP parley_store_commit_failures_total Commits the store failed.\n"
        "# TYPE parley_store_commit_failures_total counter\nparley_store_commit_failures_total %lu\n"
        "# HELP parley_store_failing 1 while the last commit or read failed or no Cassandra host is reachable.\n"
        "# TYPE parley_store_failing gauge\nparley_store_failing %d\n",
        (unsigned long long)st.requests, (unsigned long long)st.timeouts, (unsigned long long)st.reprepares,
        (unsigned long long)st.reconnects, (unsigned long long)st.connection_failures, st.ready_connections,
        st.peak_in_flight, atomic_load(&s->batch_chunks_total), atomic_load(&s->commit_retries_total),
        atomic_load(&s->read_failures_total), atomic_load(&s->statements_by_id_total),
        atomic_load(&s->statements_as_text_total), atomic_load(&s->claims_total), atomic_load(&s->claims_lost_total),
        atomic_load(&s->claims_unknown_total), atomic_load(&s->names_released_total),
        atomic_load(&s->names_taken_over_total), atomic_load(&s->fence_batches_total),
        atomic_load(&s->fence_conflicts_total), atomic_load(&s->fence_heads_adopted_total),
        atomic_load(&s->commits_total),
        atomic_load(&s->commit_failures_total), cass_get_health(s) == STORE_FAILING ? 1 : 0);
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}

/* ------------------------------------------------------------ open, close */

static void cass_close(void *impl) {
    cass *s = impl;
    if (!s) return;
    if (s->cql) cql_close(s->cql);   /* frees the prepared statements too */
    texts_free(s);
    cass_fence_free(s);
    free(s);
}

/* The newest write time of two small tables that every running server
 * writes (the id counters at each new user and conversation, the fan-out
 * checkpoints as fan-out moves on): the floor of this process's write
 * timestamps, so a wall clock that stepped back across a restart does not
 * let new writes lose to the old ones by timestamp. 0 when unknown. */
static uint64_t newest_write_us(cass *s) {
    static const char *const texts[] = {
        "SELECT WRITETIME(value) FROM %s.counters LIMIT 10000",
        "SELECT WRITETIME(log_offset) FROM %s.checkpoints LIMIT 10000",
    };
    uint64_t newest = 0;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char q[256];
        snprintf(q, sizeof q, texts[i], s->keyspace);
        cql_result *r = cql_query_sync(s->cql, q, CASS_CL);
        if (r && cql_result_status(r) == CQL_OK) {
            for (size_t row = 0; row < cql_result_rows(r); row++) {
                int64_t us;
                if (cql_get_bigint(r, row, 0, &us) == 0 && us > 0 && (uint64_t)us > newest) newest = (uint64_t)us;
            }
        } else {
            log_warn("store: cassandra: newest write time unknown (%s): timestamps start at the wall clock",
                     r ? cql_result_message(r) : "out of memory");
        }
        cql_result_free(r);
    }
    return newest;
}

/* a stop: nothing waits on a node that does not answer past ms from now */
static void cass_stop_within(void *impl, uint32_t ms) {
    cass *s = impl;
    cql_cancel_after(s->cql, ms > INT32_MAX ? INT32_MAX : (int)ms);
}

static bool cass_stopped(void *impl) {
    cass *s = impl;
    return cql_cancelled(s->cql);
}

static char *errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) abort(); /* an error we cannot report is a failure we cannot explain */
    return p;
}

static const store_ops cassandra_ops = {
    .name = "cassandra",
    .close = cass_close,
    .get_health = cass_get_health,
    .metrics_render = cass_metrics_render,
    .commit = cass_commit,
    .get_counter = cass_get_counter,
    .get_user = cass_get_user,
    .get_user_id = cass_get_user_id,
    .get_device = cass_get_device,
    .get_link_token = cass_get_link_token,
    .scan_link_tokens = cass_scan_link_tokens,
    .get_conversation = cass_get_conversation,
    .get_direct = cass_get_direct,
    .get_member = cass_get_member,
    .scan_members = cass_scan_members,
    .scan_user_conversations = cass_scan_user_conversations,
    .get_message = cass_get_message,
    .last_seq = cass_last_seq_fenced,
    .scan_messages_back = cass_scan_messages_back,
    .get_client_msg = cass_get_client_msg,
    .scan_log = cass_scan_log,
    .last_log_offset = cass_last_log_offset,
    .get_checkpoint = cass_get_checkpoint,
    .inbox_head = cass_inbox_head_fenced,
    .scan_inbox = cass_scan_inbox,
    .get_cursor = cass_get_cursor,
    .scan_devices = cass_scan_devices,
    .get_device_keys = cass_get_device_keys,
    .first_one_time_key = cass_first_one_time_key,
    .scan_device_messages = cass_scan_device_messages,
    .scan_device_messages_after = cass_scan_device_messages_after,
    .get_consent = cass_get_consent,
    .commit_async = cass_commit_async,
    .scan_all = cass_scan_all,
    .get_push_subscription = cass_get_push_subscription,
    .claim_user_name = cass_claim_user_name,
    .claim_link_token = cass_claim_link_token,
    .claim_conversation_id = cass_claim_conversation_id,
    .claim_log_range = cass_claim_log_range,
    .claim_one_time_key = cass_claim_one_time_key,
    .release_user_name = cass_release_user_name,
    .stop_within = cass_stop_within,
    .stopped = cass_stopped,
    .last_seq_heads = cass_last_seq_heads,
    .inbox_heads = cass_inbox_heads,
    .get_group_origin = cass_get_group_origin,
};

store *store_cassandra_open(const store_options *o, char **err) {
    *err = NULL;
    if (!o->cassandra_hosts || !*o->cassandra_hosts) {
        *err = errorf("--store cassandra needs --cassandra HOST:PORT[,HOST:PORT...]");
        return NULL;
    }
    const char *ks = o->cassandra_keyspace && *o->cassandra_keyspace ? o->cassandra_keyspace : "parley";
    cass *s = calloc(1, sizeof *s);
    store *st = calloc(1, sizeof *st);
    if (!s || !st) abort();
    snprintf(s->keyspace, sizeof s->keyspace, "%s", ks);
    s->retention_ms = o->retention_ms;
    cql_options co = {.hosts = o->cassandra_hosts, .request_timeout_ms = o->cassandra_timeout_ms};
    s->cql = cql_connect(&co);
    if (!s->cql) {
        *err = errorf("--cassandra %s: not a list of HOST:PORT", o->cassandra_hosts);
        goto fail;
    }
    int wait_ms = o->cassandra_timeout_ms > 0 ? o->cassandra_timeout_ms : 15000;
    if (cql_wait_ready(s->cql, wait_ms) != 0) {
        *err = errorf("--cassandra %s: no host answered within %d ms", o->cassandra_hosts, wait_ms);
        goto fail;
    }
    char why[512];
    if (store_cql_schema_create(s->cql, s->keyspace, 1, why, sizeof why) != 0) {
        *err = errorf("cassandra keyspace %s: %s", s->keyspace, why);
        goto fail;
    }
    texts_make(s);
    for (int i = 0; i < R_COUNT; i++) {
        char q[512];
        snprintf(q, sizeof q, cass_read_texts[i], s->keyspace);
        cql_result *res = NULL;
        s->reads[i] = cql_prepare(s->cql, q, &res);
        if (!s->reads[i]) {
            *err = errorf("cassandra: prepare %s: %s", q, res ? cql_result_message(res) : "out of memory");
            cql_result_free(res);
            goto fail;
        }
    }
    char *claim_err = NULL;
    if (cass_claims_prepare(s, &claim_err) != 0) {
        *err = errorf("cassandra: %s", claim_err);
        free(claim_err);
        goto fail;
    }
    char *fence_err = NULL;
    if (o->cassandra_fence && cass_fence_open(s, &fence_err) != 0) {
        *err = errorf("cassandra: fence: %s", fence_err);
        free(fence_err);
        goto fail;
    }
    uint64_t newest = newest_write_us(s);
    uint64_t wall_us = cass_wall_ms() * 1000;
    if (newest > wall_us)
        log_warn("store: cassandra: the newest write is %llu ms ahead of this clock: timestamps continue from it",
                 (unsigned long long)((newest - wall_us) / 1000));
    atomic_store(&s->last_ts_us, newest);
    st->ops = &cassandra_ops;
    st->impl = s;
    log_info("store: cassandra at %s, keyspace %s", o->cassandra_hosts, s->keyspace);
    return st;
fail:
    cass_close(s);
    free(st);
    return NULL;
}
