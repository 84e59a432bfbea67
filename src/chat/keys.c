/* keys.c -- the key directory (server side of end-to-end encryption) and
 * the device list. The server keeps public keys and opaque bytes only.
 *
 * One-time pre-keys are claimed on the writer thread, one request at a
 * time, and every claim commits before the next request is read: that is
 * what makes each key go to exactly one claimer, however many ask at once. */
#include <string.h>

#include <sodium.h>

#include "chat/consent.h"
#include "chat/membership.h"
#include "chat/push_batch.h"
#include "chat/writer_internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "push/push_gateway.h"

enum {
    KEY_BYTES = 32,              /* X25519 / Ed25519 public keys, nothing else */
    SIGNATURE_BYTES = 64,        /* Ed25519 */
    MAX_UPLOAD = 200,            /* one-time pre-keys per request */
    MAX_STORED = 1000,           /* one-time pre-keys per device */
    LOW_WATER = 10,              /* KeysLow below this */
    MAX_BUNDLES = 64,            /* devices in one FetchKeys answer */
    MAX_CONTACTS_TOLD = 4096,
};

static bool key_ok(const ProtobufCBinaryData *k) { return k->len == KEY_BYTES; }

/* A signed pre-key is only worth publishing if the device's identity key
 * signed it: otherwise whoever hands it out (a bug here, a copied disk) could
 * substitute its own key and read the first messages of every new session.
 * Clients check the signature too; refusing it here keeps a bad key from
 * ever being handed out. */
static bool signed_pre_key_ok(const ProtobufCBinaryData *identity, const Parley__V1__PreKey *spk) {
    return identity->len == KEY_BYTES && spk->signature.len == SIGNATURE_BYTES &&
           crypto_sign_verify_detached(spk->signature.data, spk->public_key.data, spk->public_key.len,
                                       identity->data) == 0;
}

/* "<what> <index>: <why>", e.g. "signed pre-key 7: the signature ..." */
static void keys_refuse(writer *w, chat_request *r, const char *what, unsigned long index, const char *why) {
    METRIC_INC(keys_refused_total);
    writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "%s %lu: %s", what, index, why);
}

static const char LENGTH_WRONG[] = "a public key is exactly 32 bytes";

void handle_upload_keys(writer *w, chat_request *r) {
    const Parley__V1__UploadKeys *q = r->frame->upload_keys;
    if (q->n_one_time_pre_keys > MAX_UPLOAD) {
        writer_fail(w, r, PARLEY__V1__STATUS__TOO_LARGE, "at most %d one-time pre-keys per upload", MAX_UPLOAD);
        return;
    }
    for (size_t i = 0; i < q->n_one_time_pre_keys; i++) {
        if (!key_ok(&q->one_time_pre_keys[i]->public_key)) {
            keys_refuse(w, r, "one-time pre-key", (unsigned long)i, LENGTH_WRONG);
            return;
        }
    }
    Parley__Store__DeviceKeys *dk = NULL;
    int found = store_get_device_keys(w->srv->store, r->user_id, r->device_id, &dk);
    if (found < 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "store read failed");
        return;
    }
    /* the new record borrows from the old one and the request; it owns nothing */
    Parley__Store__DeviceKeys k;
    parley__store__device_keys__init(&k);
    if (dk) k = *dk;
    if (q->identity_key.len) {
        if (!key_ok(&q->identity_key)) {
            keys_refuse(w, r, "identity key of device", r->device_id, LENGTH_WRONG);
            goto out;
        }
        if (k.identity_key.len && (k.identity_key.len != q->identity_key.len ||
                                   memcmp(k.identity_key.data, q->identity_key.data, q->identity_key.len))) {
            writer_fail(w, r, PARLEY__V1__STATUS__CONFLICT,
                        "a device's identity key cannot change; link a new device instead");
            goto out;
        }
        k.identity_key = q->identity_key;
    }
    if (!k.identity_key.len) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "upload the identity key first");
        goto out;
    }
    if (q->signed_pre_key) {
        const Parley__V1__PreKey *spk = q->signed_pre_key;
        if (!key_ok(&spk->public_key)) {
            keys_refuse(w, r, "signed pre-key", spk->key_id, LENGTH_WRONG);
            goto out;
        }
        if (!signed_pre_key_ok(&k.identity_key, spk)) {
            keys_refuse(w, r, "signed pre-key", spk->key_id,
                        "the signature is not a valid Ed25519 signature of the key by this device's identity key");
            goto out;
        }
        k.signed_pre_key_id = spk->key_id;
        k.signed_pre_key = spk->public_key;
        k.signed_pre_key_signature = spk->signature;
    }
    if (k.one_time_count + q->n_one_time_pre_keys > MAX_STORED) {
        writer_fail(w, r, PARLEY__V1__STATUS__TOO_LARGE, "a device keeps at most %d one-time pre-keys", MAX_STORED);
        goto out;
    }
    for (size_t i = 0; i < q->n_one_time_pre_keys; i++) {
        const Parley__V1__PreKey *otk = q->one_time_pre_keys[i];
        store_put_one_time_key(w->batch, r->user_id, r->device_id, otk->key_id, otk->public_key.data,
                               otk->public_key.len);
    }
    k.one_time_count += (uint32_t)q->n_one_time_pre_keys;
    store_put_device_keys(w->batch, r->user_id, r->device_id, &k);

    Parley__V1__Response resp;
    Parley__V1__KeyCount count;
    parley__v1__response__init(&resp);
    parley__v1__key_count__init(&count);
    count.one_time_pre_keys = k.one_time_count;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_KEY_COUNT;
    resp.key_count = &count;
    writer_answer(w, r, &resp);
out:
    if (dk) parley__store__device_keys__free_unpacked(dk, NULL);
}

/* ---------------------------------------------------------------- fetch */

typedef struct bundle_scan {
    writer *w;
    uint64_t user;
    Parley__V1__DeviceBundle *bundles[MAX_BUNDLES];
    Parley__V1__PreKey *keys[MAX_BUNDLES * 2];
    Parley__Store__DeviceKeys *records[MAX_BUNDLES];
    store_bytes claimed[MAX_BUNDLES];
    size_t n, n_keys;
} bundle_scan;

static void push_keys_low(writer *w, uint64_t user, uint32_t device, uint32_t left) {
    Parley__V1__Frame f;
    Parley__V1__KeysLow low;
    parley__v1__frame__init(&f);
    parley__v1__keys_low__init(&low);
    low.one_time_pre_keys = left;
    f.body_case = PARLEY__V1__FRAME__BODY_KEYS_LOW;
    f.keys_low = &low;
    registry_entry entries[64];
    size_t n = registry_lookup(w->srv->registry, user, entries, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (entries[i].device_id == device) writer_post_later(w, reply_pack(OUT_PUSH, entries[i].conn_id, &f));
}

static int add_bundle(void *ud, uint32_t device, const Parley__Store__Device *d) {
    (void)d;
    bundle_scan *bs = ud;
    if (bs->n == MAX_BUNDLES) return 1;
    Parley__Store__DeviceKeys *k = NULL;
    if (store_get_device_keys(bs->w->srv->store, bs->user, device, &k) != 1) return 0; /* no keys yet */
    size_t i = bs->n++;
    bs->records[i] = k;
    Parley__V1__DeviceBundle *b = calloc(1, sizeof *b);
    Parley__V1__PreKey *spk = calloc(1, sizeof *spk);
    if (!b || !spk) abort();
    parley__v1__device_bundle__init(b);
    parley__v1__pre_key__init(spk);
    b->device_id = device;
    b->identity_key = k->identity_key;
    spk->key_id = k->signed_pre_key_id;
    spk->public_key = k->signed_pre_key;
    spk->signature = k->signed_pre_key_signature;
    b->signed_pre_key = spk;
    bs->keys[bs->n_keys++] = spk;

    uint32_t key_id = 0;
    /* handed out once however many fetch at once: a compare-and-set */
    int has = store_claim_one_time_key(bs->w->srv->store, bs->user, device, &key_id, &bs->claimed[i]);
    if (has == 1) {
        Parley__V1__PreKey *otk = calloc(1, sizeof *otk);
        if (!otk) abort();
        parley__v1__pre_key__init(otk);
        otk->key_id = key_id;
        otk->public_key.data = bs->claimed[i].data;
        otk->public_key.len = bs->claimed[i].len;
        b->one_time_pre_key = otk;
        bs->keys[bs->n_keys++] = otk;
        store_delete_one_time_key(bs->w->batch, bs->user, device, key_id);
        k->one_time_count = k->one_time_count ? k->one_time_count - 1 : 0;
    } else {
        k->one_time_count = 0;   /* self-correcting if uploads reused key ids */
    }
    store_put_device_keys(bs->w->batch, bs->user, device, k);
    if (k->one_time_count < LOW_WATER) push_keys_low(bs->w, bs->user, device, k->one_time_count);
    bs->bundles[i] = b;
    return 0;
}

void handle_fetch_keys(writer *w, chat_request *r) {
    uint64_t target = r->frame->fetch_keys->user_id;
    if (writer_user_exists(w, target) != 1) {
        writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "no user %llu", (unsigned long long)target);
        return;
    }
    if (membership_shared(w->srv->store, r->user_id, target) != 1) {
        writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN, "keys only of users you share a conversation with");
        return;
    }
    uint64_t retry_after_ms = 0;
    Parley__V1__Status consent = consent_key_claim(w, r->user_id, target, &retry_after_ms);
    if (consent != PARLEY__V1__STATUS__OK) {
        Parley__V1__Frame f;
        Parley__V1__Response resp;
        reply_init(&f, &resp, r->request_id, consent,
                   consent == PARLEY__V1__STATUS__RATE_LIMITED
                       ? "pre-key claims of a user who has not accepted you are limited"
                       : "this user does not accept you");
        resp.retry_after_ms = retry_after_ms;
        reply_answer_now(w->srv->outbox, r->conn_id, &f);
        return;
    }
    bundle_scan *bs = calloc(1, sizeof *bs);
    if (!bs) abort();
    bs->w = w;
    bs->user = target;
    store_scan_devices(w->srv->store, target, add_bundle, bs);

    Parley__V1__Response resp;
    Parley__V1__KeyBundles kb;
    parley__v1__response__init(&resp);
    parley__v1__key_bundles__init(&kb);
    kb.user_id = target;
    kb.devices = bs->bundles;
    kb.n_devices = bs->n;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_KEY_BUNDLES;
    resp.key_bundles = &kb;
    writer_answer(w, r, &resp);   /* packed now: the records can go */
    for (size_t i = 0; i < bs->n; i++) {
        free(bs->bundles[i]);
        parley__store__device_keys__free_unpacked(bs->records[i], NULL);
        free(bs->claimed[i].data);
    }
    for (size_t i = 0; i < bs->n_keys; i++) free(bs->keys[i]);
    free(bs);
}

/* ---------------------------------------------------------- device list */

typedef struct contacts {
    writer *w;
    u64map told;
    Parley__V1__Frame *frame;
    uint64_t changed;        /* whose device list changed */
    push_batch batch;        /* --redis: told after the scans, looked up in one round */
} contacts;

static void tell(contacts *c, uint64_t user) {
    if (!push_batch_add(&c->batch, user)) writer_push_later(c->w, user, c->frame, 0);
}

static int tell_member(void *ud, uint64_t user, const Parley__Store__Member *m) {
    contacts *c = ud;
    if (m->left_seq != 0 || u64map_get(&c->told, user)) return 0;
    u64map_put(&c->told, user, 1);
    /* only those allowed to read the list (consent_devices_visible) */
    if (!consent_devices_visible(c->w->srv->store, user, c->changed)) return 0;
    tell(c, user);
    return c->told.count >= MAX_CONTACTS_TOLD;
}

static int tell_conversation(void *ud, uint64_t conv) {
    contacts *c = ud;
    store_scan_members(c->w->srv->store, conv, tell_member, c);
    return c->told.count >= MAX_CONTACTS_TOLD;
}

void writer_device_list_changed(writer *w, uint64_t user, Parley__Store__User *u) {
    u->device_list_counter++;
    store_put_user(w->batch, user, u);
    Parley__V1__Frame f;
    Parley__V1__DeviceListChanged changed;
    parley__v1__frame__init(&f);
    parley__v1__device_list_changed__init(&changed);
    changed.user_id = user;
    changed.change_counter = u->device_list_counter;
    f.body_case = PARLEY__V1__FRAME__BODY_DEVICE_LIST_CHANGED;
    f.device_list_changed = &changed;
    /* the user's own devices, and everyone they share a conversation with */
    contacts c = {w, {0}, &f, user, {0}};
    push_batch_init(&c.batch, w->srv);
    u64map_put(&c.told, user, 1);
    tell(&c, user);
    store_scan_user_conversations(w->srv->store, user, tell_conversation, &c);
    u64map_free(&c.told);
    push_batch_lookup(&c.batch);
    for (size_t i = 0; i < c.batch.n; i++) writer_push_later(w, c.batch.users[i], &f, 0);
    push_batch_end(&c.batch);
}

void handle_remove_device(writer *w, chat_request *r) {
    uint32_t device = r->frame->remove_device->device_id;
    if (device == r->device_id) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "a device cannot remove itself; remove it from another");
        return;
    }
    Parley__Store__Device *d = NULL;
    Parley__Store__User *u = NULL;
    if (store_get_device(w->srv->store, r->user_id, device, &d) != 1 ||
        store_get_user(w->srv->store, r->user_id, &u) != 1) {
        writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "no device %u", device);
        if (d) parley__store__device__free_unpacked(d, NULL);
        return;
    }
    parley__store__device__free_unpacked(d, NULL);
    store_delete_device(w->batch, r->user_id, device);
    store_delete_device_keys(w->batch, r->user_id, device);   /* and its device messages */
    store_delete_cursor(w->batch, r->user_id, device);
    store_delete_push_subscription(w->batch, r->user_id, device);
    push_gateway_unsubscribed(w->srv->push, r->user_id, device);
    writer_device_list_changed(w, r->user_id, u);
    parley__store__user__free_unpacked(u, NULL);
    /* Its sessions end at once: requests already queued here are refused
     * (writer_refuse_removed_device), its connections are closed after the
     * commit, a sign-in finds no device, and the link tokens it issued name
     * a device that no longer exists (handle_register_device). */
    u64map_put(&w->removed_device_users, r->user_id, 1);
    writer_tell_device_removed(w, r->user_id);   /* and the conversation writers (writer_route.c) */
    outbound *close = outbound_new(OUT_CLOSE_DEVICE, 0, 0);
    close->user_id = r->user_id;
    close->device_id = device;
    writer_post_later(w, close);
    writer_answer_ok(w, r);
}

bool writer_refuse_removed_device(writer *w, const chat_request *r) {
    if (r->user_id == 0 || !u64map_get(&w->removed_device_users, r->user_id)) return false;
    Parley__Store__Device *d = NULL;
    int found = store_get_device(w->srv->store, r->user_id, r->device_id, &d);
    if (d) parley__store__device__free_unpacked(d, NULL);
    if (found != 0) return false;
    METRIC_INC(removed_device_refused_total);
    if (r->op == CHAT_FRAME && r->request_id)
        writer_fail(w, r, PARLEY__V1__STATUS__UNAUTHENTICATED, "this device was removed");
    return true;
}
