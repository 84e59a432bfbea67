/* store.h -- everything parley keeps durably: users, devices, link tokens,
 * conversations, members, messages, the write path's dedupe index, the
 * fan-out log and its checkpoints, inboxes and device cursors.
 *
 * Reads are direct calls. Writes are collected in a store_batch and
 * committed atomically; with sync the commit returns only once the batch is
 * on stable storage (this is what "ack means durable" rests on). Within a
 * batch the last write of a key wins, as if the calls ran in order; the
 * commit writes each key once, in key order.
 *
 * The store is an interface: a table of operations and an opaque handle
 * (store_backend.h), so the same server code runs on any backend. The
 * functions below are thin wrappers that call through the table. The
 * embedded implementation is RocksDB (store_rocksdb.c, opened by
 * store_rocksdb_open, or store_open/store_open_ex here); a scale-out one
 * (Cassandra, over CQL) implements the same table. Key layouts are the
 * backends' own; code above this header never sees keys.
 *
 * A batch is backend-neutral: the put and delete functions take only the
 * batch (they do not know which store will commit it) and record each
 * write as an operation (store_batch_ops.h): a put of a record, a delete,
 * or a range delete, named by a tagged key whose first byte is the record
 * kind and whose fields are the record's identifiers, big-endian, exactly
 * as listed at the top of store_rocksdb.c. RocksDB turns the list into a
 * WriteBatch; a network backend decodes each operation (kind, identifiers,
 * value) into its own statement (a CQL INSERT or DELETE of that row).
 * Every operation sets a row to a value or removes it, so executing a
 * batch twice leaves what executing it once does.
 *
 * Records are the generated protobuf-c structs of proto/storage.proto;
 * messages are parley.v1.Message, stored encoded, exactly as delivered. */
#ifndef PARLEY_STORE_H
#define PARLEY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/parley.pb-c.h"
#include "proto/storage.pb-c.h"

typedef struct store store;
typedef struct store_batch store_batch;

/* A byte string the store allocated; release with store_bytes_free. */
typedef struct store_bytes {
    uint8_t *data;
    size_t len;
} store_bytes;
void store_bytes_free(store_bytes *b);

/* retention_ms: messages (and the inbox entries and dedupe records that
 * point to them) older than this are invisible at once and removed by
 * compaction, which a sweeper thread forces every sweep_ms. 0: keep all. */
store *store_open(const char *dir, uint64_t retention_ms, uint32_t sweep_ms, char **err); /* *err: free() it */
void store_close(store *s);

/* Opening refuses to destroy data:
 * - a store is created only in an absent or empty directory (store_init, or
 *   store_open_ex on such a directory), and marked as parley's; a directory
 *   holding anything else is opened without create, so a store with a file
 *   missing fails to open (and says why) instead of being initialised over;
 * - the write-ahead log must be intact but for a torn last record (what a
 *   crash leaves); corruption before its end fails the open, unless
 *   recover_truncate_corrupt_wal, which opens at the last consistent point
 *   and logs what was dropped. */
typedef struct store_options {
    uint64_t retention_ms;
    uint32_t sweep_ms;
    uint64_t min_free_bytes;            /* commits refused while the filesystem of
                                           the store has less free; 0: no check */
    bool recover_truncate_corrupt_wal;
    /* the Cassandra backend (store_cassandra.h); RocksDB ignores them */
    const char *cassandra_hosts;        /* "HOST:PORT[,HOST:PORT...]" */
    const char *cassandra_keyspace;     /* NULL or "": "parley" */
    int cassandra_timeout_ms;           /* per CQL request; 0: the client's 12000 */
    bool cassandra_fence;               /* conditional heads on seq and user_seq
                                           (store_cassandra_fence.c): for several writers */
} store_options;
store *store_open_ex(const char *dir, const store_options *o, char **err); /* *err: free() it */
/* Creates an empty store in dir, which must be absent or empty. 0, or -1
 * with *err (free() it). */
int store_init(const char *dir, char **err);

/* Health, for /healthz and the write path. */
typedef enum store_health {
    STORE_HEALTHY = 0,
    STORE_DISK_FULL,        /* free space under min_free_bytes: commits refused */
    STORE_FAILING,          /* the last commit failed */
} store_health;
store_health store_get_health(store *s);
const char *store_health_name(store_health h);
/* Renders the store's counters and gauges (Prometheus text) into out;
 * returns the length. */
size_t store_metrics_render(store *s, char *out, size_t cap);

store_batch *store_batch_new(void);
void store_batch_free(store_batch *b);
size_t store_batch_count(const store_batch *b);
/* Atomic. 0, or -1 with the error logged (store_get_health says whether
 * it was refused for space). On success the batch is emptied; on failure
 * it keeps its writes, so the caller may commit it again. */
int store_commit(store *s, store_batch *b, bool sync);

/* The asynchronous commit, for backends where a commit is a network round
 * trip that must not block the committing thread or serialise the write
 * path behind one round trip. Contract, for every backend:
 * - cb(ud, result) is called exactly once, with what store_commit would
 *   return (0, or -1), unless store_commit_async itself returns -1 (the
 *   commit was not started; cb is not called);
 * - the batch belongs to the store from the call until cb: the caller
 *   neither changes nor frees it meanwhile; at cb it is emptied on
 *   success and intact on failure, as with store_commit;
 * - a backend may complete inline: RocksDB calls cb in the caller's
 *   thread before store_commit_async returns. A network backend calls cb
 *   from its own I/O thread, so cb must only hand the result to its
 *   owner's queue (an mpsc push and a wake of the owner's loop) and the
 *   owner finishes the work there: completions are delivered to the
 *   owner's queue, never run on the owner's state from a foreign thread;
 * - many commits may be in flight at once; a backend that must keep two
 *   commits of one owner in order says so with the order of their cbs
 *   (cbs of one caller are called in the order of the calls);
 * - when the outcome is unknown (a timeout after the request was sent, a
 *   connection lost with the request in flight) the backend re-executes
 *   the same batch, idempotently (every write is a put or delete of a
 *   fixed row, see above), until it knows the outcome or gives up; giving
 *   up reports -1 and leaves the batch intact, and committing it again is
 *   safe: the same rows, never a second message. */
typedef void (*store_commit_cb)(void *ud, int result);
/* The result of a commit (store_commit, store_commit_async) on a fenced
 * store (store_options.cassandra_fence) whose messages or inbox entries
 * were not written because another writer had already given one of their
 * seqs or user_seqs: a conflict, not a failure of the store. The batch is
 * intact; rows of other partitions of it may have been written (each
 * partition is its own compare-and-set); nothing else of it was. The
 * caller reads the heads again (store_last_seq_heads, store_inbox_heads),
 * keeps what is already there and numbers the rest after the head. */
#define STORE_CONFLICT (-2)
int store_commit_async(store *s, store_batch *b, bool sync, store_commit_cb cb, void *ud);

/* The backends parley knows, by the name --store takes. */
typedef enum store_kind {
    STORE_KIND_ROCKSDB = 0,
    STORE_KIND_CASSANDRA,
} store_kind;
/* 0 and *kind for "rocksdb" or "cassandra", -1 for any other name */
int store_kind_parse(const char *name, store_kind *kind);
const char *store_kind_name(store_kind kind);
/* Opens the store of the configured kind: RocksDB in dir with o, or
 * Cassandra at o->cassandra_hosts in keyspace o->cassandra_keyspace (dir
 * unused; the keyspace and tables are created if absent). */
store *store_open_kind(store_kind kind, const char *dir, const store_options *o, char **err);

/* Every get returns 1 when found, 0 when not, -1 on a store error.
 * Records come back unpacked; free with the generated __free_unpacked. */

/* counters: monotonically allocated ids, "user" and "conversation" */
int store_get_counter(store *s, const char *name, uint64_t *value);
void store_put_counter(store_batch *b, const char *name, uint64_t value);

int store_get_user(store *s, uint64_t user_id, Parley__Store__User **out);
int store_get_user_id(store *s, const char *name, uint64_t *user_id);
void store_put_user(store_batch *b, uint64_t user_id, const Parley__Store__User *u);
void store_put_user_name(store_batch *b, const char *name, uint64_t user_id);

int store_get_device(store *s, uint64_t user_id, uint32_t device_id, Parley__Store__Device **out);
void store_put_device(store_batch *b, uint64_t user_id, uint32_t device_id,
                      const Parley__Store__Device *d);

int store_get_link_token(store *s, const char *token, Parley__Store__LinkToken **out);
void store_put_link_token(store_batch *b, const char *token, const Parley__Store__LinkToken *t);
void store_delete_link_token(store_batch *b, const char *token);
/* Link tokens starting with prefix ("" = all), in token order, from the
 * first one after `after` (NULL or "": from the first); fn returns non-zero
 * to stop. 0 or -1. */
typedef int (*store_link_token_fn)(void *ud, const char *token, const Parley__Store__LinkToken *t);
int store_scan_link_tokens(store *s, const char *prefix, const char *after, store_link_token_fn fn, void *ud);

int store_get_conversation(store *s, uint64_t conv, Parley__Store__Conversation **out);
void store_put_conversation(store_batch *b, uint64_t conv, const Parley__Store__Conversation *c);
/* the direct conversation of a pair, whatever the order of a and b */
int store_get_direct(store *s, uint64_t a, uint64_t b, uint64_t *conv);
void store_put_direct(store_batch *b, uint64_t a, uint64_t b_user, uint64_t conv);

int store_get_member(store *s, uint64_t conv, uint64_t user, Parley__Store__Member **out);
/* also records conv in the user's list of conversations */
void store_put_member(store_batch *b, uint64_t conv, uint64_t user, const Parley__Store__Member *m);
/* Stores after, the record read as before and then changed. When only
 * read_seq and delivered_seq changed (a send marks one's own message read,
 * an ack raises delivered) they go to a 16-byte record of their own beside
 * the member record, which is not rewritten; nothing at all when nothing
 * changed. Reads (get, scan) see the two together. */
void store_put_member_update(store_batch *b, uint64_t conv, uint64_t user, const Parley__Store__Member *before,
                             const Parley__Store__Member *after);
/* Calls fn for each member record (current and former) in user order; fn
 * returns non-zero to stop. Returns 0 or -1. */
typedef int (*store_member_fn)(void *ud, uint64_t user, const Parley__Store__Member *m);
int store_scan_members(store *s, uint64_t conv, store_member_fn fn, void *ud);
typedef int (*store_id_fn)(void *ud, uint64_t id);
int store_scan_user_conversations(store *s, uint64_t user, store_id_fn fn, void *ud);

/* messages: the encoded parley.v1.Message. Also records seq as the
 * conversation's last, which retention never removes (no seq is reused). */
void store_put_message(store_batch *b, uint64_t conv, uint64_t seq, const uint8_t *msg, size_t len);
int store_get_message(store *s, uint64_t conv, uint64_t seq, store_bytes *out);
int store_last_seq(store *s, uint64_t conv, uint64_t *seq);   /* 0 when empty */
/* On a fenced store the last seq recorded with the dedupe records (*hint,
 * written after the messages) and the last seq any writer has stored
 * (*head, >= *hint): the messages in (hint, head] may lack their dedupe
 * record and fan-out log entry (their writer stalled or died between the
 * two writes). Elsewhere both are store_last_seq. 0 or -1. */
int store_last_seq_heads(store *s, uint64_t conv, uint64_t *hint, uint64_t *head);
/* Messages with seq < before_seq (0: all), newest first, at most limit. */
typedef int (*store_message_fn)(void *ud, uint64_t seq, const uint8_t *msg, size_t len);
int store_scan_messages_back(store *s, uint64_t conv, uint64_t before_seq, uint32_t limit,
                             store_message_fn fn, void *ud);

/* write-path dedupe: (user, device, client_msg_id) -> (conv, seq) */
int store_get_client_msg(store *s, uint64_t user, uint32_t device, const uint8_t *id, size_t id_len,
                         uint64_t *conv, uint64_t *seq);
void store_put_client_msg(store_batch *b, uint64_t user, uint32_t device, const uint8_t *id,
                          size_t id_len, uint64_t conv, uint64_t seq, uint64_t ts);

/* fan-out log: what the write path published, per partition, by offset */
void store_put_log(store_batch *b, uint32_t partition, uint64_t offset, uint64_t conv, uint64_t seq);
typedef int (*store_log_fn)(void *ud, uint64_t offset, uint64_t conv, uint64_t seq);
int store_scan_log(store *s, uint32_t partition, uint64_t after, store_log_fn fn, void *ud);
int store_last_log_offset(store *s, uint32_t partition, uint64_t *offset);
void store_delete_log_through(store_batch *b, uint32_t partition, uint64_t offset);
int store_get_checkpoint(store *s, uint32_t partition, uint64_t *offset);
void store_put_checkpoint(store_batch *b, uint32_t partition, uint64_t offset);

/* inboxes: user_seq -> (conv, seq, sender, ts). The head (the last
 * user_seq given) is recorded apart, once per user per batch, because
 * retention may remove every entry and a user_seq must never be reused. */
void store_put_inbox(store_batch *b, uint64_t user, uint64_t user_seq, uint64_t conv, uint64_t seq,
                     uint64_t sender, uint64_t ts);
void store_put_inbox_head(store_batch *b, uint64_t user, uint64_t user_seq);
int store_inbox_head(store *s, uint64_t user, uint64_t *user_seq);   /* 0 when empty */
/* the same two for an inbox (see store_last_seq_heads) */
int store_inbox_heads(store *s, uint64_t user, uint64_t *hint, uint64_t *head);
typedef int (*store_inbox_fn)(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq,
                              uint64_t sender);
/* entries with user_seq > after (and <= through, 0 = no upper bound), at most limit */
int store_scan_inbox(store *s, uint64_t user, uint64_t after, uint64_t through, uint32_t limit,
                     store_inbox_fn fn, void *ud);

int store_get_cursor(store *s, uint64_t user, uint32_t device, uint64_t *user_seq);
void store_put_cursor(store_batch *b, uint64_t user, uint32_t device, uint64_t user_seq);
void store_delete_cursor(store_batch *b, uint64_t user, uint32_t device);

/* devices of a user, in id order */
typedef int (*store_device_fn)(void *ud, uint32_t device, const Parley__Store__Device *d);
int store_scan_devices(store *s, uint64_t user, store_device_fn fn, void *ud);
void store_delete_device(store_batch *b, uint64_t user, uint32_t device);

/* key directory */
int store_get_device_keys(store *s, uint64_t user, uint32_t device, Parley__Store__DeviceKeys **out);
void store_put_device_keys(store_batch *b, uint64_t user, uint32_t device, const Parley__Store__DeviceKeys *k);
void store_put_one_time_key(store_batch *b, uint64_t user, uint32_t device, uint32_t key_id,
                            const uint8_t *public_key, size_t len);
/* the one-time key with the lowest id (1, with *key_id and out), or 0 */
int store_first_one_time_key(store *s, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out);
void store_delete_one_time_key(store_batch *b, uint64_t user, uint32_t device, uint32_t key_id);
/* removes every key of a device, and its device message queue (removal
 * of the device) */
void store_delete_device_keys(store_batch *b, uint64_t user, uint32_t device);

/* device message queues: (user, device, queue_seq) -> encoded parley.v1.DeviceMessage */
void store_put_device_message(store_batch *b, uint64_t user, uint32_t device, uint64_t queue_seq,
                              const uint8_t *msg, size_t len);
typedef int (*store_device_message_fn)(void *ud, uint64_t queue_seq, const uint8_t *msg, size_t len);
int store_scan_device_messages(store *s, uint64_t user, uint32_t device, uint32_t limit,
                               store_device_message_fn fn, void *ud);
/* The same from the first queue_seq after `after` (paging). */
int store_scan_device_messages_after(store *s, uint64_t user, uint32_t device, uint64_t after,
                                     uint32_t limit, store_device_message_fn fn, void *ud);
void store_delete_device_messages_through(store_batch *b, uint64_t user, uint32_t device, uint64_t queue_seq);

/* consent: owner's view of other (none / accepted / blocked, and the
 * bounds on what other may do before owner accepts) */
int store_get_consent(store *s, uint64_t owner, uint64_t other, Parley__Store__Consent **out);
void store_put_consent(store_batch *b, uint64_t owner, uint64_t other, const Parley__Store__Consent *c);

/* Web Push subscriptions: one per device (user, device), replaced by a new
 * registration, deleted with the device or when the push service says it
 * is gone. get: 1 with *out (free_unpacked), 0 when none, -1 on error. */
int store_get_push_subscription(store *s, uint64_t user, uint32_t device, Parley__Store__PushSubscription **out);
void store_put_push_subscription(store_batch *b, uint64_t user, uint32_t device,
                                 const Parley__Store__PushSubscription *p);
void store_delete_push_subscription(store_batch *b, uint64_t user, uint32_t device);
/* Every subscription's (user, device), in key order (fn returns non-zero to
 * stop): 0, -1 on error, 1 when the backend cannot list them. */
typedef int (*store_push_subscription_fn)(void *ud, uint64_t user, uint32_t device);
int store_scan_push_subscriptions(store *s, store_push_subscription_fn fn, void *ud);

/* Claims: the three writes that must happen at most once however many
 * writers race -- a user name taken by one user, a link token used once, a
 * one-time pre-key handed out once. Each is a compare-and-set of its own,
 * executed at once and apart from any batch (a Cassandra lightweight
 * transaction cannot be part of a multi-partition batch); the caller then
 * puts the same writes in its batch as before (store_put_user_name,
 * store_delete_link_token, store_delete_one_time_key), which repeat what the
 * claim did. A claim whose batch then fails stays claimed: the token or key
 * is burnt, never handed out twice; a name is given back
 * (store_release_user_name) so that the client's retry can have it.
 * Each returns 1 when this caller won, 0 when another has it (or there is
 * nothing to claim), -1 on a store error (the outcome could not be
 * established: the caller must not go on as if it had won). */
/* name -> user_id unless the name is taken; 1 also when it already names
 * user_id (a claim repeated) */
int store_claim_user_name(store *s, const char *name, uint64_t user_id);
/* the token is used by this caller: 0 when unknown or already used */
int store_claim_link_token(store *s, const char *token);
/* hands out the device's lowest unclaimed one-time key (1 with *key_id and
 * out, store_bytes_free it), 0 when none is left */
int store_claim_one_time_key(store *s, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out);
/* Gives back a user name claimed for user_id whose batch then failed, so
 * the client's retry can have it: a compare-and-set too (it deletes the
 * name only while it still names user_id). 1 released, 0 it named another
 * or nothing, -1 on a store error (the name stays claimed: a claim of it
 * takes it over once it is old and names no user, store_cassandra_claim.c). */
int store_release_user_name(store *s, const char *name, uint64_t user_id);
/* A new conversation id for this caller alone: with several writers on one
 * keyspace (fenced chat nodes: a partition's old owner still creating, or
 * a hand-over) two may pick the same next id of a partition from their own
 * floors. 1 won, 0 another writer has it (take the next id, after reading
 * the partition's counter again), -1 a store error. Always 1 on a store
 * one writer owns (RocksDB) or an unfenced Cassandra store. */
int store_claim_conversation_id(store *s, uint64_t conv);
/* A range of fan-out log offsets of a partition for this caller alone
 * (chat/log_range.h): with several writers on one keyspace (a partition's
 * new owner and a stalled old one) two may pick the same next range from
 * what each read. 1 won, 0 another writer has it (try the next range), -1
 * a store error (the outcome could not be established). Always 1 on a
 * store one writer owns (RocksDB) or an unfenced Cassandra store. */
int store_claim_log_range(store *s, uint32_t partition, uint32_t range);
/* deletes name's row (store_release_user_name of a backend without compare-and-set) */
void store_delete_user_name(store_batch *b, const char *name);

/* The server is stopping: whatever the store has not finished ms from now
 * fails then (a commit: -1, not acknowledged; its outcome unknown, as on a
 * timeout), and every call after that fails at once, so a stop never
 * waits out a network timeout on a backend that does not answer (a frozen
 * Cassandra). A backend whose calls do not wait on a network (RocksDB)
 * does nothing. Any thread; before store_close. */
void store_stop_within(store *s, uint32_t ms);
/* true once that time has passed (every call fails at once from then on):
 * a loop that retries failed commits until they land stops retrying, and
 * leaves them to the replay at the next start */
bool store_stopped(store *s);

/* Every record, for export and import (store_export.h): each as its tagged
 * key (the record kind, then its identifiers, as a batch names it) and its
 * value, in an order of the backend's choosing; fn returns non-zero to
 * stop. A backend's own bookkeeping is not a record. 0 or -1. */
typedef int (*store_record_fn)(void *ud, const uint8_t *key, size_t klen, const uint8_t *v, size_t vlen);
int store_scan_all(store *s, store_record_fn fn, void *ud);
/* Writes one record as store_scan_all gave it. */
void store_put_record(store_batch *b, const uint8_t *key, size_t klen, const uint8_t *v, size_t vlen);

/* CreateGroup re-runs (--kafka, chat/group_origin.h): which group a
 * 'sends' record created, stored in the batch that creates the group, so
 * a copy of the record run again (its owner killed between the store
 * commit and the Kafka offset commit) answers that group instead of
 * making a second one. Named by the record's Kafka partition and offset,
 * and holding who asked (user, device, request id) besides, so a slot
 * reused by another record never matches. A ring per partition: the
 * record's slot is its offset modulo STORE_GROUP_ORIGIN_SLOTS, and a
 * later record of the same slot replaces it (re-runs concern only the
 * records past the committed offset, an owner batch of 256 at most); on
 * Cassandra a row also expires after STORE_GROUP_ORIGIN_TTL_S. */
enum { STORE_GROUP_ORIGIN_SLOTS = 65536, STORE_GROUP_ORIGIN_TTL_S = 3 * 86400 };
typedef struct store_group_origin {
    uint32_t partition;     /* the 'sends' partition */
    uint64_t offset;        /* the record's offset in it */
    uint64_t user, request_id;
    uint32_t device;
} store_group_origin;
void store_put_group_origin(store_batch *b, const store_group_origin *o, uint64_t conv);
/* 1 with *conv when o's slot holds exactly o (offset, user, device and
 * request id all equal), 0 when not, -1 on a store error */
int store_get_group_origin(store *s, const store_group_origin *o, uint64_t *conv);

#endif
