/* store_cassandra_internal.h -- what the three files of the Cassandra
 * backend share: the handle, the record kinds (a tagged key of store.h and
 * the table row it names), and the CQL texts made for them at open.
 *
 *   store_cassandra.c        open, close, health, metrics, the ops table
 *   store_cassandra_write.c  commit: a batch's writes as one LOGGED BATCH
 *   store_cassandra_read.c   gets, scans and scan_all
 *   store_cassandra_fence.c  conditional heads on seq and user_seq (several writers) */
#ifndef PARLEY_STORE_CASSANDRA_INTERNAL_H
#define PARLEY_STORE_CASSANDRA_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/cql/cql.h"
#include "store/store_backend.h"

/* How one record kind maps to a row. key_fmt has one character per field
 * of the tagged key after its tag byte, in order:
 *   'L' 8-byte big-endian id -> bigint column   'I' 4-byte -> int column
 *   'T' the rest of the key  -> text column     'D' length byte + bytes -> blob
 *   'b' no bytes: the bucket column, the next field's value / bucket
 *   'r' the literal byte 'r' (the member read-marks record), no column
 * val_fmt: "B" the whole value as one blob column, or one 'L' per 8-byte
 * big-endian value column, or "" (no value). */
typedef struct cass_kind {
    char tag;
    bool marks;              /* 'm' with a trailing 'r' */
    const char *table;
    const char *key_cols;    /* comma-separated, one per key_fmt letter but 'r' */
    const char *key_fmt;
    const char *val_cols;    /* comma-separated, "" for none */
    const char *val_fmt;
    bool shares_row;         /* another kind keeps columns in the same row:
                                a delete removes this kind's columns only */
    int ttl_from;            /* -1 no TTL; -2 the message's server_ts; -3 a fixed
                                STORE_GROUP_ORIGIN_TTL_S, whatever the retention;
                                else the byte offset of an 8-byte ts in the value */
    uint32_t bucket;         /* for 'b' */
} cass_kind;

extern const cass_kind cass_kinds[];
extern const size_t cass_n_kinds;

/* the kind of a tagged key; NULL for a key of no kind */
const cass_kind *cass_kind_of(const uint8_t *key, size_t klen);

/* the CQL texts of one kind, with the keyspace in them */
typedef struct cass_texts {
    char *put;          /* INSERT ... USING TTL ? AND TIMESTAMP ? */
    char *del;          /* DELETE [val cols] FROM ... USING TIMESTAMP ? WHERE every key col */
    char *del_prefix;   /* DELETE FROM ... USING TIMESTAMP ? WHERE every key col but the last */
    char *del_range;    /* ... WHERE every key col but the last AND last >= ? AND last < ? */
    char *select_all;   /* SELECT key cols, val cols FROM ... (scan_all) */
    /* the four writes above prepared, in that order, at their first use
     * (store_cassandra_write.c); NULL until then */
    cql_prepared *_Atomic prepared[4];
} cass_texts;

/* the prepared reads (store_cassandra_read.c) */
enum cass_read {
    R_COUNTER, R_USER, R_USER_ID, R_DEVICE, R_DEVICES, R_TOKEN, R_TOKENS, R_CONV, R_LAST_SEQ, R_DIRECT,
    R_MEMBER, R_MEMBERS, R_USER_CONVS, R_MESSAGE, R_MESSAGES_BACK, R_CLIENT_MSG, R_LOG, R_LAST_LOG,
    R_CHECKPOINT, R_INBOX_HEAD, R_INBOX, R_CURSOR, R_DEVICE_KEYS, R_FIRST_OTK, R_DEVICE_MESSAGES, R_CONSENT,
    R_PUSH_SUBSCRIPTION, R_GROUP_ORIGIN,
    R_COUNT
};
extern const char *const cass_read_texts[R_COUNT];   /* "%s": the keyspace */

/* the prepared statements of the claims (store_cassandra_claim.c) */
enum cass_claim {
    CL_NAME, CL_NAME_READ, CL_CLAIM, CL_CLAIM_READ, CL_OTKS, CL_NAME_RELEASE, CL_NAME_AGE, CL_NAME_TAKE_OVER,
    CL_COUNT
};
extern const char *const cass_claim_texts[CL_COUNT];   /* "%s": the keyspace */

typedef struct cass {
    cql_client *cql;
    char keyspace[64];
    uint64_t retention_ms;           /* 0: keep everything */
    cass_texts *texts;               /* one per cass_kinds entry */
    cql_prepared *reads[R_COUNT];
    cql_prepared *claims[CL_COUNT];
    atomic_bool commit_failing;
    atomic_bool read_failing;        /* the last read failed (a frozen node times reads
                                        out while its connections stay up) */
    atomic_ullong last_ts_us;        /* the last write timestamp handed out */
    atomic_ulong commits_total;
    atomic_ulong commit_failures_total;
    atomic_ulong commit_retries_total;   /* re-executions after an unknown outcome */
    atomic_ulong batch_chunks_total;     /* LOGGED BATCH requests sent (first tries) */
    atomic_ulong read_failures_total;
    atomic_ulong statements_by_id_total;   /* commit statements sent as prepared ids */
    atomic_ulong statements_as_text_total; /* ... as text (before their id came) */
    atomic_ulong claims_total;           /* lightweight transactions sent */
    atomic_ulong claims_lost_total;      /* claims another had won */
    atomic_ulong claims_unknown_total;   /* claims resolved by a read at LOCAL_SERIAL */
    atomic_ulong names_released_total;   /* names given back after their batch failed */
    atomic_ulong names_taken_over_total; /* orphaned names (no user) claimed anew */
    /* the fence (store_cassandra_fence.c); [0] messages, [1] inboxes */
    bool fence;
    char *fence_put[2], *fence_head[2], *fence_head_null[2];
    cql_prepared *fence_read[2];
    cql_prepared *fence_adopt[2];      /* a pre-fence partition's head set from its hint, IF head = null */
    atomic_ulong fence_batches_total;    /* conditional batches sent */
    atomic_ulong fence_conflicts_total;  /* conditional batches another writer had won */
    atomic_ulong fence_heads_adopted_total; /* pre-fence partitions given their head (store_cassandra_fence.c) */
} cass;

/* the consistency of every write and of every read but those read_cl
 * names (the table at the top of store_cassandra.c) */
#define CASS_CL CQL_LOCAL_QUORUM

int cass_commit(void *impl, store_batch *b, bool sync);
int cass_commit_async(void *impl, store_batch *b, bool sync, store_commit_cb cb, void *ud);

/* server_ts (field 10) of an encoded parley.v1.Message; 0 if absent */
uint64_t cass_message_ts(const uint8_t *p, size_t len);
uint64_t cass_wall_ms(void);
/* a malloc'd printf: the backend's CQL texts and error strings at open
 * (aborts when out of memory: nothing runs without them) */
char *cass_textf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* a record of time ts is past the retention */
bool cass_expired(const cass *s, uint64_t ts);

/* rows per page of a scan */
#define PAGE_ROWS 500
/* calls fn for each row; non-zero stops */
typedef int (*cass_row_fn)(void *ud, const cql_result *r, size_t row);
/* Runs a prepared read, page after page (page_rows 0: one page, unpaged),
 * and calls fn per row. 0, or -1 on a store error (logged). */
int cass_rows(cass *s, const cql_prepared *stmt, const cql_values *v, int32_t page_rows, cass_row_fn fn,
              void *ud);
/* the same at consistency cl (cass_rows: LOCAL_QUORUM) */
int cass_rows_at(cass *s, const cql_prepared *stmt, const cql_values *v, cql_consistency cl, int32_t page_rows,
                 cass_row_fn fn, void *ud);

/* reads */
int cass_get_counter(void *impl, const char *name, uint64_t *value);
int cass_get_user(void *impl, uint64_t user_id, Parley__Store__User **out);
int cass_get_user_id(void *impl, const char *name, uint64_t *user_id);
int cass_get_device(void *impl, uint64_t user_id, uint32_t device_id, Parley__Store__Device **out);
int cass_get_link_token(void *impl, const char *token, Parley__Store__LinkToken **out);
int cass_scan_link_tokens(void *impl, const char *prefix, const char *after, store_link_token_fn fn, void *ud);
int cass_get_conversation(void *impl, uint64_t conv, Parley__Store__Conversation **out);
int cass_get_direct(void *impl, uint64_t a, uint64_t b, uint64_t *conv);
int cass_get_member(void *impl, uint64_t conv, uint64_t user, Parley__Store__Member **out);
int cass_scan_members(void *impl, uint64_t conv, store_member_fn fn, void *ud);
int cass_scan_user_conversations(void *impl, uint64_t user, store_id_fn fn, void *ud);
int cass_get_message(void *impl, uint64_t conv, uint64_t seq, store_bytes *out);
int cass_last_seq(void *impl, uint64_t conv, uint64_t *seq);
int cass_scan_messages_back(void *impl, uint64_t conv, uint64_t before_seq, uint32_t limit, store_message_fn fn,
                            void *ud);
int cass_get_client_msg(void *impl, uint64_t user, uint32_t device, const uint8_t *id, size_t id_len,
                        uint64_t *conv, uint64_t *seq);
int cass_scan_log(void *impl, uint32_t partition, uint64_t after, store_log_fn fn, void *ud);
int cass_last_log_offset(void *impl, uint32_t partition, uint64_t *offset);
int cass_get_checkpoint(void *impl, uint32_t partition, uint64_t *offset);
int cass_inbox_head(void *impl, uint64_t user, uint64_t *user_seq);
int cass_scan_inbox(void *impl, uint64_t user, uint64_t after, uint64_t through, uint32_t limit,
                    store_inbox_fn fn, void *ud);
int cass_get_cursor(void *impl, uint64_t user, uint32_t device, uint64_t *user_seq);
int cass_scan_devices(void *impl, uint64_t user, store_device_fn fn, void *ud);
int cass_get_device_keys(void *impl, uint64_t user, uint32_t device, Parley__Store__DeviceKeys **out);
int cass_first_one_time_key(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out);
int cass_scan_device_messages(void *impl, uint64_t user, uint32_t device, uint32_t limit,
                              store_device_message_fn fn, void *ud);
int cass_scan_device_messages_after(void *impl, uint64_t user, uint32_t device, uint64_t after, uint32_t limit,
                                    store_device_message_fn fn, void *ud);
int cass_get_consent(void *impl, uint64_t owner, uint64_t other, Parley__Store__Consent **out);
int cass_get_push_subscription(void *impl, uint64_t user, uint32_t device, Parley__Store__PushSubscription **out);
int cass_scan_all(void *impl, store_record_fn fn, void *ud);
int cass_get_group_origin(void *impl, uint32_t partition, uint32_t slot, uint64_t out[5]);

/* the fence (store_cassandra_fence.c) */
int cass_fence_open(cass *s, char **why);   /* 0, or -1 with *why (free() it) */
void cass_fence_free(cass *s);
typedef struct cass_fence_row {
    int table;              /* 0 messages, 1 inboxes */
    uint64_t key, seq;
    const uint8_t *val;     /* borrowed from the batch */
    size_t vlen;
    int32_t ttl;
    size_t order;           /* call order: the later write of one row wins */
} cass_fence_row;
typedef struct cass_fence_rows {
    cass_fence_row *r;
    size_t n, cap;
} cass_fence_rows;
/* a put of this kind goes in a conditional batch */
bool cass_fence_takes(const cass *s, char tag);
void cass_fence_add(cass_fence_rows *fr, char tag, uint64_t key, uint64_t seq, const uint8_t *val, size_t vlen,
                    int64_t ttl);
void cass_fence_rows_free(cass_fence_rows *fr);
/* Sends the rows as conditional batches; done(ud, 0 | STORE_CONFLICT | -1)
 * once all are over, on the client's I/O thread (or inline). fr is used up
 * (sorted) but stays the caller's. 0. */
int cass_fence_run(cass *s, cass_fence_rows *fr, void (*done)(void *ud, int rc), void *ud);
int cass_last_seq_heads(void *impl, uint64_t conv, uint64_t *hint, uint64_t *head);
int cass_inbox_heads(void *impl, uint64_t user, uint64_t *hint, uint64_t *head);
/* last_seq and inbox_head of the ops table: the head when fenced, else the hint */
int cass_last_seq_fenced(void *impl, uint64_t conv, uint64_t *seq);
int cass_inbox_head_fenced(void *impl, uint64_t user, uint64_t *user_seq);

/* claims (store.h), as lightweight transactions */
int cass_claims_prepare(cass *s, char **why);   /* 0, or -1 with *why (free() it) */
int cass_claim_user_name(void *impl, const char *name, uint64_t user_id);
int cass_release_user_name(void *impl, const char *name, uint64_t user_id);
int cass_claim_link_token(void *impl, const char *token);
int cass_claim_conversation_id(void *impl, uint64_t conv);
int cass_claim_log_range(void *impl, uint32_t partition, uint32_t range);
int cass_claim_one_time_key(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out);

#endif
