/* store.c -- the store interface: opening a backend by kind, and the thin
 * wrappers of store.h that call through its table of operations. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/store_backend.h"
#include "store/store_cassandra.h"
#include "store/store_rocksdb.h"

static char *error_copy(const char *msg) {
    char *e = strdup(msg);
    if (!e) abort(); /* an error we cannot report is a failure we cannot explain */
    return e;
}

int store_kind_parse(const char *name, store_kind *kind) {
    if (strcmp(name, "rocksdb") == 0) {
        *kind = STORE_KIND_ROCKSDB;
        return 0;
    }
    if (strcmp(name, "cassandra") == 0) {
        *kind = STORE_KIND_CASSANDRA;
        return 0;
    }
    return -1;
}

const char *store_kind_name(store_kind kind) { return kind == STORE_KIND_CASSANDRA ? "cassandra" : "rocksdb"; }

store *store_open_kind(store_kind kind, const char *dir, const store_options *o, char **err) {
    *err = NULL;
    if (kind == STORE_KIND_ROCKSDB) return store_rocksdb_open(dir, o, err);
    if (kind == STORE_KIND_CASSANDRA) return store_cassandra_open(o, err);
    *err = error_copy("unknown store kind");
    return NULL;
}

store *store_open_ex(const char *dir, const store_options *o, char **err) {
    return store_rocksdb_open(dir, o, err);
}

store *store_open(const char *dir, uint64_t retention_ms, uint32_t sweep_ms, char **err) {
    store_options o = {.retention_ms = retention_ms, .sweep_ms = sweep_ms};
    return store_rocksdb_open(dir, &o, err);
}

void store_close(store *s) {
    if (!s) return;
    s->ops->close(s->impl);
    free(s);
}

/* every backend allocates returned bytes with malloc */
void store_bytes_free(store_bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

int store_commit_async(store *s, store_batch *b, bool sync, store_commit_cb cb, void *ud) {
    return s->ops->commit_async(s->impl, b, sync, cb, ud);
}

store_health store_get_health(store *s) { return s->ops->get_health(s->impl); }

size_t store_metrics_render(store *s, char *out, size_t cap) {
    return s->ops->metrics_render(s->impl, out, cap);
}

int store_commit(store *s, store_batch *b, bool sync) { return s->ops->commit(s->impl, b, sync); }

int store_get_counter(store *s, const char *name, uint64_t *value) {
    return s->ops->get_counter(s->impl, name, value);
}

int store_get_user(store *s, uint64_t user_id, Parley__Store__User **out) {
    return s->ops->get_user(s->impl, user_id, out);
}

int store_get_user_id(store *s, const char *name, uint64_t *user_id) {
    return s->ops->get_user_id(s->impl, name, user_id);
}

int store_get_device(store *s, uint64_t user_id, uint32_t device_id, Parley__Store__Device **out) {
    return s->ops->get_device(s->impl, user_id, device_id, out);
}

int store_get_link_token(store *s, const char *token, Parley__Store__LinkToken **out) {
    return s->ops->get_link_token(s->impl, token, out);
}

int store_scan_link_tokens(store *s, const char *prefix, const char *after, store_link_token_fn fn, void *ud) {
    return s->ops->scan_link_tokens(s->impl, prefix, after, fn, ud);
}

int store_get_conversation(store *s, uint64_t conv, Parley__Store__Conversation **out) {
    return s->ops->get_conversation(s->impl, conv, out);
}

int store_get_direct(store *s, uint64_t a, uint64_t b, uint64_t *conv) {
    return s->ops->get_direct(s->impl, a, b, conv);
}

int store_get_member(store *s, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    return s->ops->get_member(s->impl, conv, user, out);
}

int store_scan_members(store *s, uint64_t conv, store_member_fn fn, void *ud) {
    return s->ops->scan_members(s->impl, conv, fn, ud);
}

int store_scan_user_conversations(store *s, uint64_t user, store_id_fn fn, void *ud) {
    return s->ops->scan_user_conversations(s->impl, user, fn, ud);
}

int store_get_message(store *s, uint64_t conv, uint64_t seq, store_bytes *out) {
    return s->ops->get_message(s->impl, conv, seq, out);
}

int store_last_seq(store *s, uint64_t conv, uint64_t *seq) { return s->ops->last_seq(s->impl, conv, seq); }

int store_last_seq_heads(store *s, uint64_t conv, uint64_t *hint, uint64_t *head) {
    if (s->ops->last_seq_heads) return s->ops->last_seq_heads(s->impl, conv, hint, head);
    int rc = s->ops->last_seq(s->impl, conv, head);
    *hint = *head;
    return rc;
}

int store_scan_messages_back(store *s, uint64_t conv, uint64_t before_seq, uint32_t limit,
                             store_message_fn fn, void *ud) {
    return s->ops->scan_messages_back(s->impl, conv, before_seq, limit, fn, ud);
}

int store_get_client_msg(store *s, uint64_t user, uint32_t device, const uint8_t *id, size_t id_len,
                         uint64_t *conv, uint64_t *seq) {
    return s->ops->get_client_msg(s->impl, user, device, id, id_len, conv, seq);
}

int store_scan_log(store *s, uint32_t partition, uint64_t after, store_log_fn fn, void *ud) {
    return s->ops->scan_log(s->impl, partition, after, fn, ud);
}

int store_last_log_offset(store *s, uint32_t partition, uint64_t *offset) {
    return s->ops->last_log_offset(s->impl, partition, offset);
}

int store_get_checkpoint(store *s, uint32_t partition, uint64_t *offset) {
    return s->ops->get_checkpoint(s->impl, partition, offset);
}

int store_inbox_head(store *s, uint64_t user, uint64_t *user_seq) {
    return s->ops->inbox_head(s->impl, user, user_seq);
}

int store_inbox_heads(store *s, uint64_t user, uint64_t *hint, uint64_t *head) {
    if (s->ops->inbox_heads) return s->ops->inbox_heads(s->impl, user, hint, head);
    int rc = s->ops->inbox_head(s->impl, user, head);
    *hint = *head;
    return rc;
}

int store_scan_inbox(store *s, uint64_t user, uint64_t after, uint64_t through, uint32_t limit,
                     store_inbox_fn fn, void *ud) {
    return s->ops->scan_inbox(s->impl, user, after, through, limit, fn, ud);
}

int store_get_cursor(store *s, uint64_t user, uint32_t device, uint64_t *user_seq) {
    return s->ops->get_cursor(s->impl, user, device, user_seq);
}

int store_scan_devices(store *s, uint64_t user, store_device_fn fn, void *ud) {
    return s->ops->scan_devices(s->impl, user, fn, ud);
}

int store_get_push_subscription(store *s, uint64_t user, uint32_t device, Parley__Store__PushSubscription **out) {
    *out = NULL;
    if (!s->ops->get_push_subscription) return 0;
    return s->ops->get_push_subscription(s->impl, user, device, out);
}

int store_scan_push_subscriptions(store *s, store_push_subscription_fn fn, void *ud) {
    if (!s->ops->scan_push_subscriptions) return 1;
    return s->ops->scan_push_subscriptions(s->impl, fn, ud);
}

int store_get_device_keys(store *s, uint64_t user, uint32_t device, Parley__Store__DeviceKeys **out) {
    return s->ops->get_device_keys(s->impl, user, device, out);
}

int store_first_one_time_key(store *s, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out) {
    return s->ops->first_one_time_key(s->impl, user, device, key_id, out);
}

int store_scan_device_messages(store *s, uint64_t user, uint32_t device, uint32_t limit,
                               store_device_message_fn fn, void *ud) {
    return s->ops->scan_device_messages(s->impl, user, device, limit, fn, ud);
}

int store_scan_device_messages_after(store *s, uint64_t user, uint32_t device, uint64_t after, uint32_t limit,
                                     store_device_message_fn fn, void *ud) {
    return s->ops->scan_device_messages_after(s->impl, user, device, after, limit, fn, ud);
}

int store_get_consent(store *s, uint64_t owner, uint64_t other, Parley__Store__Consent **out) {
    return s->ops->get_consent(s->impl, owner, other, out);
}

int store_scan_all(store *s, store_record_fn fn, void *ud) { return s->ops->scan_all(s->impl, fn, ud); }

void store_stop_within(store *s, uint32_t ms) {
    if (s->ops->stop_within) s->ops->stop_within(s->impl, ms);
}

bool store_stopped(store *s) { return s->ops->stopped ? s->ops->stopped(s->impl) : false; }
