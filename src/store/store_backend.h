/* store_backend.h -- what a store backend implements: the table of
 * operations behind store.h and the handle that carries it.
 *
 * Each operation takes the backend's own handle (impl) first and otherwise
 * means exactly what the store.h function of the same name says; the
 * wrappers in store.c call through the table. Batches are not in the table:
 * they are backend-neutral lists of operations (store.h, store_batch_ops.h)
 * that the backend's commit and commit_async translate. Only backends and
 * store.c include this header. */
#ifndef PARLEY_STORE_BACKEND_H
#define PARLEY_STORE_BACKEND_H

#include "store/store.h"

typedef struct store_ops {
    const char *name;   /* the --store name: "rocksdb" */
    void (*close)(void *impl);
    store_health (*get_health)(void *impl);
    size_t (*metrics_render)(void *impl, char *out, size_t cap);
    int (*commit)(void *impl, store_batch *b, bool sync);
    int (*get_counter)(void *impl, const char *name, uint64_t *value);
    int (*get_user)(void *impl, uint64_t user_id, Parley__Store__User **out);
    int (*get_user_id)(void *impl, const char *name, uint64_t *user_id);
    int (*get_device)(void *impl, uint64_t user_id, uint32_t device_id, Parley__Store__Device **out);
    int (*get_link_token)(void *impl, const char *token, Parley__Store__LinkToken **out);
    int (*scan_link_tokens)(void *impl, const char *prefix, const char *after, store_link_token_fn fn,
                            void *ud);
    int (*get_conversation)(void *impl, uint64_t conv, Parley__Store__Conversation **out);
    int (*get_direct)(void *impl, uint64_t a, uint64_t b, uint64_t *conv);
    int (*get_member)(void *impl, uint64_t conv, uint64_t user, Parley__Store__Member **out);
    int (*scan_members)(void *impl, uint64_t conv, store_member_fn fn, void *ud);
    int (*scan_user_conversations)(void *impl, uint64_t user, store_id_fn fn, void *ud);
    int (*get_message)(void *impl, uint64_t conv, uint64_t seq, store_bytes *out);
    int (*last_seq)(void *impl, uint64_t conv, uint64_t *seq);
    int (*scan_messages_back)(void *impl, uint64_t conv, uint64_t before_seq, uint32_t limit,
                              store_message_fn fn, void *ud);
    int (*get_client_msg)(void *impl, uint64_t user, uint32_t device, const uint8_t *id, size_t id_len,
                          uint64_t *conv, uint64_t *seq);
    int (*scan_log)(void *impl, uint32_t partition, uint64_t after, store_log_fn fn, void *ud);
    int (*last_log_offset)(void *impl, uint32_t partition, uint64_t *offset);
    int (*get_checkpoint)(void *impl, uint32_t partition, uint64_t *offset);
    int (*inbox_head)(void *impl, uint64_t user, uint64_t *user_seq);
    int (*scan_inbox)(void *impl, uint64_t user, uint64_t after, uint64_t through, uint32_t limit,
                      store_inbox_fn fn, void *ud);
    int (*get_cursor)(void *impl, uint64_t user, uint32_t device, uint64_t *user_seq);
    int (*scan_devices)(void *impl, uint64_t user, store_device_fn fn, void *ud);
    int (*get_device_keys)(void *impl, uint64_t user, uint32_t device, Parley__Store__DeviceKeys **out);
    int (*first_one_time_key)(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out);
    int (*scan_device_messages)(void *impl, uint64_t user, uint32_t device, uint32_t limit,
                                store_device_message_fn fn, void *ud);
    int (*scan_device_messages_after)(void *impl, uint64_t user, uint32_t device, uint64_t after,
                                      uint32_t limit, store_device_message_fn fn, void *ud);
    int (*get_consent)(void *impl, uint64_t owner, uint64_t other, Parley__Store__Consent **out);
    int (*commit_async)(void *impl, store_batch *b, bool sync, store_commit_cb cb, void *ud);
    int (*scan_all)(void *impl, store_record_fn fn, void *ud);
    /* NULL in a backend without Web Push subscriptions: none are found */
    int (*get_push_subscription)(void *impl, uint64_t user, uint32_t device,
                                 Parley__Store__PushSubscription **out);
    /* compare-and-set claims (store.h); NULL in a backend with one writer
     * per store, whose claims are a get and a commit under a process-wide
     * lock (store_claim.c) */
    int (*claim_user_name)(void *impl, const char *name, uint64_t user_id);
    int (*claim_link_token)(void *impl, const char *token);
    int (*claim_one_time_key)(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out);
    int (*release_user_name)(void *impl, const char *name, uint64_t user_id);
    /* store_claim_conversation_id; NULL: one writer per store, every id is its own */
    int (*claim_conversation_id)(void *impl, uint64_t conv);
    /* store_claim_log_range; NULL: one writer per store, every range is its own */
    int (*claim_log_range)(void *impl, uint32_t partition, uint32_t range);
    /* store_stop_within; NULL: nothing to cut short */
    void (*stop_within)(void *impl, uint32_t ms);
    bool (*stopped)(void *impl);
    /* NULL in a backend that cannot list them: the caller assumes anyone may have one */
    int (*scan_push_subscriptions)(void *impl, store_push_subscription_fn fn, void *ud);
    /* NULL in a backend with one writer: hint and head are last_seq, inbox_head */
    int (*last_seq_heads)(void *impl, uint64_t conv, uint64_t *hint, uint64_t *head);
    int (*inbox_heads)(void *impl, uint64_t user, uint64_t *hint, uint64_t *head);
    /* the group origin record in (partition, slot) as stored: offset, user,
     * device, request id, conv (store_group_origin.h); 1, 0 none, -1 */
    int (*get_group_origin)(void *impl, uint32_t partition, uint32_t slot, uint64_t out[5]);
} store_ops;

/* A batch's writes as a backend translates them (a network backend into
 * one statement each), in the order the put and delete calls made them;
 * the later of two writes of one key wins, and a range delete removes
 * [key, value) at its place in that order, between the writes before and
 * after it. Keys are tagged (store.h); fn returns non-zero to stop. */
enum store_write_kind { STORE_WRITE_PUT, STORE_WRITE_DELETE, STORE_WRITE_DELETE_RANGE };
typedef int (*store_write_fn)(void *ud, enum store_write_kind kind, const uint8_t *key, size_t klen,
                              const uint8_t *value, size_t vlen);
void store_batch_each(const store_batch *b, store_write_fn fn, void *ud);

struct store {
    const store_ops *ops;
    void *impl;
};

#endif
