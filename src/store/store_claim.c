/* store_claim.c -- the claims of store.h (a name taken once, a link token
 * used once, a one-time pre-key handed out once).
 *
 * A backend with compare-and-set (Cassandra: lightweight transactions,
 * store_cassandra_claim.c) implements them in its ops table. A backend
 * that one process owns alone (RocksDB: its directory is locked by the
 * process that opened it) gets them here: a get, then a commit of the
 * claiming write, under one lock for the whole process, so two threads (or
 * two writers) racing for the same row see one winner. The commit is not
 * synced: the batch that follows the claim is, and syncing the log syncs
 * everything written before it; a crash before that batch loses the claim
 * and the batch together, with nothing answered. */
#include <pthread.h>
#include <stdlib.h>

#include "store/store_backend.h"

static pthread_mutex_t claim_lock = PTHREAD_MUTEX_INITIALIZER;

/* commits the one write in b; 0 or -1 */
static int commit_claim(store *s, store_batch *b) {
    int rc = store_commit(s, b, false);
    store_batch_free(b);
    return rc;
}

static int locked_claim_user_name(store *s, const char *name, uint64_t user_id) {
    uint64_t owner = 0;
    int found = store_get_user_id(s, name, &owner);
    if (found != 0) return found < 0 ? -1 : owner == user_id;
    store_batch *b = store_batch_new();
    if (!b) return -1;
    store_put_user_name(b, name, user_id);
    return commit_claim(s, b) == 0 ? 1 : -1;
}

static int locked_claim_link_token(store *s, const char *token) {
    Parley__Store__LinkToken *t = NULL;
    int found = store_get_link_token(s, token, &t);
    if (t) parley__store__link_token__free_unpacked(t, NULL);
    if (found != 1) return found;
    store_batch *b = store_batch_new();
    if (!b) return -1;
    store_delete_link_token(b, token);
    return commit_claim(s, b) == 0 ? 1 : -1;
}

static int locked_claim_one_time_key(store *s, uint64_t user, uint32_t device, uint32_t *key_id,
                                     store_bytes *out) {
    int found = store_first_one_time_key(s, user, device, key_id, out);
    if (found != 1) return found;
    store_batch *b = store_batch_new();
    if (b) store_delete_one_time_key(b, user, device, *key_id);
    if (!b || commit_claim(s, b) != 0) {
        store_bytes_free(out);
        return -1;
    }
    return 1;
}

int store_claim_user_name(store *s, const char *name, uint64_t user_id) {
    if (s->ops->claim_user_name) return s->ops->claim_user_name(s->impl, name, user_id);
    pthread_mutex_lock(&claim_lock);
    int rc = locked_claim_user_name(s, name, user_id);
    pthread_mutex_unlock(&claim_lock);
    return rc;
}

int store_claim_conversation_id(store *s, uint64_t conv) {
    /* one writer: its floor (the partition's counter) already makes ids unique */
    return s->ops->claim_conversation_id ? s->ops->claim_conversation_id(s->impl, conv) : 1;
}

int store_claim_log_range(store *s, uint32_t partition, uint32_t range) {
    /* one writer: the range it read as the highest is nobody else's */
    return s->ops->claim_log_range ? s->ops->claim_log_range(s->impl, partition, range) : 1;
}

int store_claim_link_token(store *s, const char *token) {
    if (s->ops->claim_link_token) return s->ops->claim_link_token(s->impl, token);
    pthread_mutex_lock(&claim_lock);
    int rc = locked_claim_link_token(s, token);
    pthread_mutex_unlock(&claim_lock);
    return rc;
}

int store_claim_one_time_key(store *s, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out) {
    out->data = NULL;
    out->len = 0;
    if (s->ops->claim_one_time_key) return s->ops->claim_one_time_key(s->impl, user, device, key_id, out);
    pthread_mutex_lock(&claim_lock);
    int rc = locked_claim_one_time_key(s, user, device, key_id, out);
    pthread_mutex_unlock(&claim_lock);
    return rc;
}

static int locked_release_user_name(store *s, const char *name, uint64_t user_id) {
    uint64_t owner = 0;
    int found = store_get_user_id(s, name, &owner);
    if (found <= 0 || owner != user_id) return found < 0 ? -1 : 0;
    store_batch *b = store_batch_new();
    if (!b) return -1;
    store_delete_user_name(b, name);
    return commit_claim(s, b) == 0 ? 1 : -1;
}

int store_release_user_name(store *s, const char *name, uint64_t user_id) {
    if (s->ops->release_user_name) return s->ops->release_user_name(s->impl, name, user_id);
    pthread_mutex_lock(&claim_lock);
    int rc = locked_release_user_name(s, name, user_id);
    pthread_mutex_unlock(&claim_lock);
    return rc;
}
