/* e2e_client.c -- a device's key store and the moves that carry end-to-end
 * encrypted conversations through the server (parley_e2e.h says what each
 * call does). The server sees: conversation ids, seqs, senders, sizes,
 * timestamps, device ids and public keys; never a body or a sender key.
 *
 * Device-message envelope (the plaintext inside a pairwise message):
 *   0x01 | conversation id (u64) | sender-key distribution message
 * Every table has a bound (PC_E2E_MAX_*) and one owner: this store. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "e2e/e2e.h"
#include "e2e_store.h"
#include "internal.h"
#include "parley_e2e.h"

enum {
    ENVELOPE_SENDER_KEY = 0x01,
    ENVELOPE_HEADER = 1 + 8,
    DISTRIBUTION_LEN = 1 + 4 + 4 + 32 + 32,
    SENDER_OVERHEAD = 1 + 4 + 4 + 16 + 64,   /* header, tag, signature */
    MAX_BODY = 65536,                        /* SendMessage.body limit */
};

/* Room for one more element in *arr (n used, *cap allocated), at most max. */
int pc_e2e_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t max) {
    if (n < *cap) return 0;
    if (n >= max) return -1;
    size_t next = *cap ? *cap * 2 : 16;
    if (next > max) next = max;
    void *p = realloc(*arr, next * elem);
    if (!p) return -1;
    *arr = p;
    *cap = next;
    return 0;
}

pc_e2e *pc_e2e_new(void) {
    if (sodium_init() < 0) return NULL;
    pc_e2e *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e2e_identity_generate(&e->id);
    e2e_prekey_generate(&e->spk, 1);
    e2e_prekey_sign(&e->id, &e->spk, e->spk_sig);
    e->spk_made_ms = pc_e2e_now_ms();
    for (uint32_t i = 0; i < PC_E2E_ONE_TIME_KEYS; i++) e2e_prekey_generate(&e->otk[i], 1000 + i);
    e->n_otk = PC_E2E_ONE_TIME_KEYS;
    return e;
}

void pc_e2e_free(pc_e2e *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_peers; i++) {
        e2e_session_free(e->peers[i].s);
        e2e_session_free(e->peers[i].old);
    }
    for (size_t i = 0; i < e->n_keys; i++) {
        e2e_sender_key_free(e->keys[i].k);
        e2e_sender_key_free(e->keys[i].prev);
    }
    free(e->peers);
    free(e->keys);
    free(e->given);
    free(e->lists);
    sodium_memzero(e, sizeof *e);
    free(e);
}

const uint8_t *pc_e2e_identity_key(const pc_e2e *e) { return e->id.pk; }

int pc_e2e_publish(pc_e2e *e, pc_client *c) {
    pc_prekey spk = {e->spk.id, e->spk.pk, 32, e->spk_sig, 64};
    pc_prekey otk[PC_E2E_ONE_TIME_KEYS];
    size_t n = 0;
    if (!e->published)
        for (size_t i = 0; i < PC_E2E_ONE_TIME_KEYS && i < e->n_otk; i++)
            otk[n++] = (pc_prekey){e->otk[i].id, e->otk[i].pk, 32, NULL, 0};
    if (pc_upload_keys(c, e->id.pk, 32, &spk, otk, n, NULL) != 0) return -1;
    e->published = true;
    return 0;
}

uint64_t pc_e2e_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pc_e2e_maintain(pc_e2e *e, pc_client *c, uint64_t now_ms) {
    if (e->has_prev_spk && now_ms - e->prev_spk_retired_ms >= PC_E2E_SPK_GRACE_MS) {
        sodium_memzero(&e->prev_spk, sizeof e->prev_spk);
        e->has_prev_spk = false;
    }
    if (e->spk_made_ms && now_ms - e->spk_made_ms < PC_E2E_SPK_ROTATE_MS && e->spk_made_ms <= now_ms) return 0;
    e2e_prekey old_spk = e->spk, old_prev = e->prev_spk;
    uint8_t old_sig[64];
    memcpy(old_sig, e->spk_sig, 64);
    bool old_has_prev = e->has_prev_spk;
    uint64_t old_made = e->spk_made_ms, old_retired = e->prev_spk_retired_ms;
    e->prev_spk = e->spk;
    e->has_prev_spk = true;
    e->prev_spk_retired_ms = now_ms;
    e2e_prekey_generate(&e->spk, e->prev_spk.id + 1);
    e2e_prekey_sign(&e->id, &e->spk, e->spk_sig);
    e->spk_made_ms = now_ms;
    pc_prekey spk = {e->spk.id, e->spk.pk, 32, e->spk_sig, 64};
    int r = pc_upload_keys(c, e->id.pk, 32, &spk, NULL, 0, NULL) == 0 ? 1 : -1;
    if (r < 0) {   /* as before: the next call tries again */
        e->spk = old_spk;
        e->prev_spk = old_prev;
        memcpy(e->spk_sig, old_sig, 64);
        e->has_prev_spk = old_has_prev;
        e->spk_made_ms = old_made;
        e->prev_spk_retired_ms = old_retired;
    }
    sodium_memzero(&old_spk, sizeof old_spk);
    sodium_memzero(&old_prev, sizeof old_prev);
    return r;
}

/* drops held slot i, keeping the order (oldest first) */
static void drop_otk(pc_e2e *e, size_t i) {
    sodium_memzero(&e->otk[i], sizeof e->otk[i]);
    memmove(&e->otk[i], &e->otk[i + 1], (e->n_otk - i - 1) * sizeof e->otk[0]);
    memmove(&e->otk_used[i], &e->otk_used[i + 1], (e->n_otk - i - 1) * sizeof e->otk_used[0]);
    e->n_otk--;
}

int pc_e2e_refill(pc_e2e *e, pc_client *c) {
    while (e->n_otk + PC_E2E_ONE_TIME_KEYS > PC_E2E_HELD_ONE_TIME_KEYS) {
        size_t victim = 0;   /* the oldest used one, else the oldest */
        for (size_t i = 0; i < e->n_otk; i++)
            if (e->otk_used[i]) {
                victim = i;
                break;
            }
        drop_otk(e, victim);
    }
    uint32_t next = 1000;
    for (size_t i = 0; i < e->n_otk; i++)
        if (e->otk[i].id >= next) next = e->otk[i].id + 1;
    pc_prekey spk = {e->spk.id, e->spk.pk, 32, e->spk_sig, 64};
    pc_prekey otk[PC_E2E_ONE_TIME_KEYS];
    for (size_t i = 0; i < PC_E2E_ONE_TIME_KEYS; i++) {
        e2e_prekey *k = &e->otk[e->n_otk];
        e2e_prekey_generate(k, next++);
        e->otk_used[e->n_otk++] = false;
        otk[i] = (pc_prekey){k->id, k->pk, 32, NULL, 0};
    }
    return pc_upload_keys(c, e->id.pk, 32, &spk, otk, PC_E2E_ONE_TIME_KEYS, NULL);
}

/* ---------------------------------------------------------------- tables */

static peer *find_peer(pc_e2e *e, uint64_t user, uint32_t device) {
    for (size_t i = 0; i < e->n_peers; i++)
        if (e->peers[i].user == user && e->peers[i].device == device) return &e->peers[i];
    return NULL;
}

static peer *add_peer(pc_e2e *e, uint64_t user, uint32_t device, e2e_session *s) {
    if (pc_e2e_grow((void **)&e->peers, &e->cap_peers, e->n_peers, sizeof *e->peers, PC_E2E_MAX_SESSIONS) < 0) return NULL;
    peer *p = &e->peers[e->n_peers++];
    *p = (peer){user, device, s, NULL};
    return p;
}

static skey *find_key(pc_e2e *e, uint64_t conv, uint64_t user, uint32_t device) {
    for (size_t i = 0; i < e->n_keys; i++)
        if (e->keys[i].conv == conv && e->keys[i].user == user && e->keys[i].device == device) return &e->keys[i];
    return NULL;
}

/* Takes k: installed (the key held for the same sender becomes the
 * previous one; the one before that goes), or freed. */
static int put_key(pc_e2e *e, uint64_t conv, uint64_t user, uint32_t device, e2e_sender_key *k) {
    skey *s = find_key(e, conv, user, device);
    if (s && e2e_sender_key_id(s->k) == e2e_sender_key_id(k)) {   /* the same key again: keep our state */
        e2e_sender_key_free(k);
        return 0;
    }
    if (s) {
        e2e_sender_key_free(s->prev);
        s->prev = s->k;
        s->k = k;
        return 0;
    }
    if (pc_e2e_grow((void **)&e->keys, &e->cap_keys, e->n_keys, sizeof *e->keys, PC_E2E_MAX_SENDER_KEYS) < 0) {
        e2e_sender_key_free(k);
        return E2E_ERR_NOMEM;
    }
    e->keys[e->n_keys++] = (skey){conv, user, device, k, NULL};
    return 0;
}

static bool was_given(const pc_e2e *e, uint64_t conv, uint64_t user, uint32_t device, uint32_t key_id) {
    for (size_t i = 0; i < e->n_given; i++) {
        const given *g = &e->given[i];
        if (g->conv == conv && g->user == user && g->device == device && g->key_id == key_id) return true;
    }
    return false;
}

/* ------------------------------------------------------------- sending */

static int bundle_from(const Parley__V1__DeviceBundle *b, e2e_bundle *out) {
    memset(out, 0, sizeof *out);
    const Parley__V1__PreKey *spk = b->signed_pre_key;
    if (b->identity_key.len != 32 || !spk || spk->public_key.len != 32 || spk->signature.len != 64) return -1;
    memcpy(out->identity, b->identity_key.data, 32);
    out->spk_id = spk->key_id;
    memcpy(out->spk, spk->public_key.data, 32);
    memcpy(out->spk_sig, spk->signature.data, 64);
    if (b->one_time_pre_key) {
        if (b->one_time_pre_key->public_key.len != 32) return -1;
        out->has_otk = true;
        out->otk_id = b->one_time_pre_key->key_id;
        memcpy(out->otk, b->one_time_pre_key->public_key.data, 32);
    }
    return 0;
}

/* Sessions with every device of user in devices[0..n) that has none yet,
 * from one FetchKeys (it claims a one-time pre-key per device of the user). */
static int ensure_sessions(pc_e2e *e, pc_client *c, uint64_t user, const uint32_t *devices, size_t n) {
    bool missing = false;
    for (size_t i = 0; i < n; i++) missing |= find_peer(e, user, devices[i]) == NULL;
    if (!missing) return 0;
    Parley__V1__KeyBundles *kb = NULL;
    if (pc_fetch_keys(c, user, &kb) != 0) return -1;
    int r = 0;
    for (size_t i = 0; i < kb->n_devices && r == 0; i++) {
        const Parley__V1__DeviceBundle *b = kb->devices[i];
        if (find_peer(e, user, b->device_id)) continue;
        if (user == c->id.user_id && b->device_id == c->id.device_id) continue;
        e2e_bundle bundle;
        e2e_session *s = NULL;
        int st = bundle_from(b, &bundle) == 0 ? e2e_session_initiate(&s, &e->id, &bundle) : E2E_ERR_BAD_BUNDLE;
        if (st != E2E_OK) {   /* a device whose keys do not verify is left out, and said so */
            r = pc_fail(c, PARLEY__V1__STATUS__BAD_REQUEST, "device %u of user %llu: %s", b->device_id,
                        (unsigned long long)user, e2e_strerror(st));
            break;
        }
        if (!add_peer(e, user, b->device_id, s)) {
            e2e_session_free(s);
            r = pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "more than %d sessions", PC_E2E_MAX_SESSIONS);
        }
    }
    parley__v1__key_bundles__free_unpacked(kb, NULL);
    return r;
}

/* Our sender key of conv, pairwise-encrypted, to one device. */
static int give_key(pc_e2e *e, pc_client *c, uint64_t conv, e2e_sender_key *k, peer *p) {
    uint8_t env[ENVELOPE_HEADER + DISTRIBUTION_LEN];
    uint8_t *dist = NULL, *ct = NULL;
    size_t dist_len = 0, ct_len = 0;
    if (e2e_sender_key_distribution(k, &dist, &dist_len) != E2E_OK || dist_len != DISTRIBUTION_LEN) {
        free(dist);
        return pc_fail(c, PARLEY__V1__STATUS__INTERNAL, "sender key distribution");
    }
    env[0] = ENVELOPE_SENDER_KEY;
    for (int i = 0; i < 8; i++) env[1 + i] = (uint8_t)(conv >> (56 - 8 * i));
    memcpy(env + ENVELOPE_HEADER, dist, dist_len);
    sodium_memzero(dist, dist_len);
    free(dist);
    int st = e2e_session_encrypt(p->s, env, sizeof env, &ct, &ct_len);
    sodium_memzero(env, sizeof env);
    if (st != E2E_OK) return pc_fail(c, PARLEY__V1__STATUS__INTERNAL, "pairwise encrypt: %s", e2e_strerror(st));
    int r = pc_send_device_message(c, p->user, p->device, ct, ct_len, NULL);
    free(ct);
    if (r != 0) return -1;
    if (pc_e2e_grow((void **)&e->given, &e->cap_given, e->n_given, sizeof *e->given, PC_E2E_MAX_GIVEN) < 0)
        return pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "more than %d sender-key hand-outs", PC_E2E_MAX_GIVEN);
    e->given[e->n_given++] = (given){conv, p->user, p->device, e2e_sender_key_id(k)};
    return 0;
}

typedef struct target {
    uint64_t user;
    uint32_t device;
} target;

static device_list *find_list(pc_e2e *e, uint64_t user) {
    for (size_t i = 0; i < e->n_lists; i++)
        if (e->lists[i].user == user) return &e->lists[i];
    return NULL;
}

void pc_e2e_device_list_changed(pc_e2e *e, uint64_t user) {
    if (user == 0) {
        e->n_lists = 0;
        return;
    }
    device_list *l = find_list(e, user);
    if (l) *l = e->lists[--e->n_lists];
}

static void on_device_list_changed(void *ud, uint64_t user, uint64_t change_counter) {
    (void)change_counter;
    pc_e2e_device_list_changed(ud, user);
}

void pc_e2e_watch_device_lists(pc_e2e *e, pc_client *c) {
    pc_on_device_list_changed(c, on_device_list_changed, e);
    e->watching = true;
}

uint64_t pc_e2e_device_list_fetches(const pc_e2e *e) { return e->list_fetches; }

/* user's devices: the cached list, or one GetDevices (kept when there is
 * room). Copied into *out (at most PC_E2E_MAX_DEVICES). 0, or -1. */
static int devices_of(pc_e2e *e, pc_client *c, uint64_t user, device_list *out) {
    const device_list *l = find_list(e, user);
    if (l) {
        *out = *l;
        return 0;
    }
    Parley__V1__DeviceList *dl = NULL;
    e->list_fetches++;
    if (pc_get_devices(c, user, &dl) != 0) return -1;
    out->user = user;
    out->n = 0;
    for (size_t k = 0; k < dl->n_device_ids && k < PC_E2E_MAX_DEVICES; k++) out->ids[out->n++] = dl->device_ids[k];
    parley__v1__device_list__free_unpacked(dl, NULL);
    if (e->watching &&
        pc_e2e_grow((void **)&e->lists, &e->cap_lists, e->n_lists, sizeof *e->lists, PC_E2E_MAX_DEVICE_LISTS) == 0)
        e->lists[e->n_lists++] = *out;
    return 0;
}

/* Every device (but this one) of every distinct user in users (device
 * lists cached, devices_of): a malloc'd array in *out, or -1 (pc_error
 * says why). */
static int collect_targets(pc_e2e *e, pc_client *c, const uint64_t *users, size_t n, target **out, size_t *n_out) {
    target *t = malloc((n ? n : 1) * PC_E2E_MAX_DEVICES * sizeof *t);
    if (!t) return pc_fail(c, PARLEY__V1__STATUS__INTERNAL, "out of memory");
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) dup = users[j] == users[i];
        if (dup) continue;
        device_list dl;
        if (devices_of(e, c, users[i], &dl) != 0) {
            free(t);
            return -1;
        }
        for (size_t k = 0; k < dl.n; k++) {
            uint32_t d = dl.ids[k];
            if (users[i] != c->id.user_id || d != c->id.device_id) t[nt++] = (target){users[i], d};
        }
    }
    *out = t;
    *n_out = nt;
    return 0;
}

/* true if our key of conv went to a device that is no longer among the
 * targets (its user left or was removed, or the device was removed): then
 * the key must change, or that device could read what follows. */
static bool key_reached_outsider(const pc_e2e *e, uint64_t conv, uint32_t key_id, const target *t, size_t nt) {
    for (size_t i = 0; i < e->n_given; i++) {
        const given *g = &e->given[i];
        if (g->conv != conv || g->key_id != key_id) continue;
        bool inside = false;
        for (size_t j = 0; j < nt && !inside; j++) inside = t[j].user == g->user && t[j].device == g->device;
        if (!inside) return true;
    }
    return false;
}

/* Our key of conv to every target device that does not have it yet. */
static int give_to_targets(pc_e2e *e, pc_client *c, uint64_t conv, e2e_sender_key *k, const target *t, size_t nt) {
    uint32_t devices[PC_E2E_MAX_DEVICES];
    for (size_t i = 0; i < nt;) {
        uint64_t user = t[i].user;
        size_t n = 0;
        for (; i < nt && t[i].user == user; i++)
            if (!was_given(e, conv, user, t[i].device, e2e_sender_key_id(k)) && n < PC_E2E_MAX_DEVICES)
                devices[n++] = t[i].device;
        if (n == 0) continue;
        if (ensure_sessions(e, c, user, devices, n) != 0) return -1;
        for (size_t j = 0; j < n; j++) {
            peer *p = find_peer(e, user, devices[j]);
            if (!p) continue;   /* a device that never published keys cannot read; it is skipped */
            if (give_key(e, c, conv, k, p) != 0) return -1;
        }
    }
    return 0;
}

int pc_e2e_send(pc_e2e *e, pc_client *c, uint64_t conv, const uint64_t *members, size_t n, const void *body,
                size_t len, uint64_t *seq) {
    if (len > MAX_BODY - SENDER_OVERHEAD)
        return pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "an encrypted body holds at most %d bytes",
                       MAX_BODY - SENDER_OVERHEAD);
    if (n > PC_E2E_MAX_MEMBERS) return pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "at most %d members", PC_E2E_MAX_MEMBERS);
    /* our own user first (our other devices), then the members */
    uint64_t users[PC_E2E_MAX_MEMBERS + 1];
    users[0] = c->id.user_id;
    memcpy(users + 1, members, n * sizeof *members);
    target *t = NULL;
    size_t nt = 0;
    if (collect_targets(e, c, users, n + 1, &t, &nt) != 0) return -1;
    skey *own = find_key(e, conv, c->id.user_id, c->id.device_id);
    if (own && key_reached_outsider(e, conv, e2e_sender_key_id(own->k), t, nt)) {
        pc_e2e_rotate(e, conv);
        own = NULL;
    }
    if (!own) {
        e2e_sender_key *k = NULL;
        if (e2e_sender_key_create(&k) != E2E_OK || put_key(e, conv, c->id.user_id, c->id.device_id, k) != 0) {
            free(t);
            return pc_fail(c, PARLEY__V1__STATUS__INTERNAL, "out of memory");
        }
        own = find_key(e, conv, c->id.user_id, c->id.device_id);
    }
    e2e_sender_key *k = own->k;
    int r = give_to_targets(e, c, conv, k, t, nt);
    free(t);
    if (r != 0) return -1;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    int st = e2e_sender_key_encrypt(k, body, len, &ct, &ct_len);
    if (st != E2E_OK) return pc_fail(c, PARLEY__V1__STATUS__INTERNAL, "encrypt: %s", e2e_strerror(st));
    pc_send_args a = {.conversation_id = conv, .type = PARLEY__V1__MESSAGE_TYPE__TEXT, .body = ct, .body_len = ct_len};
    r = pc_send(c, &a, seq, NULL, NULL);
    free(ct);
    return r;
}

void pc_e2e_rotate(pc_e2e *e, uint64_t conv) {
    /* our own key of conv is the one that can encrypt */
    for (size_t i = 0; i < e->n_keys;) {
        skey *s = &e->keys[i];
        if (s->conv == conv && e2e_sender_key_is_own(s->k)) {
            e2e_sender_key_free(s->k);
            e2e_sender_key_free(s->prev);
            e->keys[i] = e->keys[--e->n_keys];
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < e->n_given;) {   /* who had the old key no longer matters */
        if (e->given[i].conv == conv)
            e->given[i] = e->given[--e->n_given];
        else
            i++;
    }
}

/* ----------------------------------------------------------- receiving */

static int take_otk(pc_e2e *e, uint32_t id, e2e_prekey **out) {
    for (size_t i = 0; i < e->n_otk; i++)
        if (e->otk[i].id == id && !e->otk_used[i]) {
            *out = &e->otk[i];
            return (int)i;
        }
    return -1;
}

static int install_envelope(pc_e2e *e, const Parley__V1__DeviceMessage *m, const uint8_t *pt, size_t len) {
    if (len != ENVELOPE_HEADER + DISTRIBUTION_LEN || pt[0] != ENVELOPE_SENDER_KEY) return E2E_ERR_MALFORMED;
    uint64_t conv = 0;
    for (int i = 0; i < 8; i++) conv = conv << 8 | pt[1 + i];
    e2e_sender_key *k = NULL;
    int st = e2e_sender_key_from_distribution(&k, pt + ENVELOPE_HEADER, DISTRIBUTION_LEN);
    if (st != E2E_OK) return st;
    return put_key(e, conv, m->sender_user_id, m->sender_device_id, k);
}

int pc_e2e_handle_device_message(pc_e2e *e, const Parley__V1__DeviceMessage *m) {
    const uint8_t *body = m->body.data;
    size_t len = m->body.len;
    e2e_prekey_info info;
    int kind = e2e_message_prekey_info(body, len, &info);
    if (kind < 0) return kind;
    peer *p = find_peer(e, m->sender_user_id, m->sender_device_id);
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    int st;
    if (kind == 1 && !(p && e2e_session_from_prekey(p->s, &info)) && !(p && p->old && e2e_session_from_prekey(p->old, &info))) {
        /* a new session: the peer started one (first contact, or at the same
         * time as us). A device's identity key never changes (the server
         * refuses that upload, and a reset device is a new device), so
         * another identity for a device we know is someone else: refused. */
        if (p && sodium_memcmp(e2e_session_peer_identity(p->s), info.identity, 32) != 0)
            return E2E_ERR_IDENTITY_CHANGED;
        e2e_prekey *otk = NULL;
        int slot = -1;
        if (info.has_otk && (slot = take_otk(e, info.otk_id, &otk)) < 0) return E2E_ERR_REPLAY;
        /* the current signed pre-key, or the one before while in its grace */
        const e2e_prekey *spk = info.spk_id == e->spk.id                         ? &e->spk
                                : e->has_prev_spk && info.spk_id == e->prev_spk.id ? &e->prev_spk
                                                                                   : NULL;
        if (!spk) return E2E_ERR_WRONG_KEY;
        e2e_session *s = NULL;
        st = e2e_session_accept(&s, &e->id, spk, otk, body, len, &pt, &pt_len);
        if (st != E2E_OK) return st;
        if (slot >= 0) {   /* one use only */
            e->otk_used[slot] = true;
            sodium_memzero(e->otk[slot].sk, 32);
        }
        if (p) {
            e2e_session_free(p->old);
            p->old = p->s;
            p->s = s;
        } else if (!add_peer(e, m->sender_user_id, m->sender_device_id, s)) {
            e2e_session_free(s);
            free(pt);
            return E2E_ERR_NOMEM;
        }
    } else {
        if (!p) return E2E_ERR_WRONG_KEY;
        st = e2e_session_decrypt(p->s, body, len, &pt, &pt_len);
        if (st != E2E_OK && p->old) {
            int st_old = e2e_session_decrypt(p->old, body, len, &pt, &pt_len);
            if (st_old == E2E_OK) st = E2E_OK;
        }
        if (st != E2E_OK) return st;
    }
    st = install_envelope(e, m, pt, pt_len);
    sodium_memzero(pt, pt_len);
    free(pt);
    return st;
}

int pc_e2e_decrypt(pc_e2e *e, const Parley__V1__Message *m, uint8_t **pt, size_t *pt_len) {
    *pt = NULL;
    *pt_len = 0;
    skey *s = find_key(e, m->conversation_id, m->sender_user_id, m->sender_device_id);
    uint32_t key_id = 0;
    if (e2e_sender_message_key_id(m->body.data, m->body.len, &key_id) != E2E_OK) return E2E_ERR_MALFORMED;
    if (!s) return E2E_ERR_WRONG_KEY;
    if (s->prev && e2e_sender_key_id(s->prev) == key_id)
        return e2e_sender_key_decrypt(s->prev, m->body.data, m->body.len, pt, pt_len);
    return e2e_sender_key_decrypt(s->k, m->body.data, m->body.len, pt, pt_len);
}

/* ---------------------------------------------------------------- trust */

size_t pc_e2e_known_devices(const pc_e2e *e, uint64_t user, uint32_t *devices, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < e->n_peers; i++) {
        if (e->peers[i].user != user) continue;
        if (n < cap) devices[n] = e->peers[i].device;
        n++;
    }
    return n;
}

int pc_e2e_safety_number(const pc_e2e *e, uint64_t user, uint32_t device, char out[72]) {
    for (size_t i = 0; i < e->n_peers; i++) {
        const peer *p = &e->peers[i];
        if (p->user != user || p->device != device) continue;
        e2e_safety_number(e->id.pk, e2e_session_peer_identity(p->s), out);
        return 0;
    }
    out[0] = '\0';
    return E2E_ERR_WRONG_KEY;
}

int pc_e2e_peer_identity(const pc_e2e *e, uint64_t user, uint32_t device, uint8_t out[32]) {
    for (size_t i = 0; i < e->n_peers; i++) {
        const peer *p = &e->peers[i];
        if (p->user != user || p->device != device) continue;
        memcpy(out, e2e_session_peer_identity(p->s), 32);
        return 0;
    }
    return E2E_ERR_WRONG_KEY;
}
