/* e2e_persist.c -- a pc_e2e key store to bytes and back, so a device keeps
 * its keys, sessions and sender keys across restarts.
 *
 *   0x53 | version 1 | identity pk (32) sk (64) | signed pre-key id (u32)
 *   pk (32) sk (32) signature (64) | published (u8) | one-time pre-keys:
 *   count (u32, at most PC_E2E_HELD_ONE_TIME_KEYS) x { id (u32) pk (32) sk (32) used (u8) } | peers: count x
 *   { user (u64) device (u32) session (u32 length + bytes) has old (u8)
 *   [old session] } | sender keys: count x { conv (u64) user (u64) device
 *   (u32) key (u32 length + bytes) has prev (u8) [prev key] } | hand-outs:
 *   count x { conv (u64) user (u64) device (u32) key id (u32) }
 * Version 2 adds at the end: signed pre-key made at (u64 ms) | has
 * previous (u8) [previous signed pre-key id (u32) pk (32) sk (32) |
 * retired at (u64 ms)]. A version 1 store loads with "made at 0" (rotated
 * at the next pc_e2e_maintain).
 * Integers big-endian. Sessions and sender keys in their own versioned
 * formats (client/e2e). Every count and length is checked against its
 * bound before use; a store that does not parse to the end is refused. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "e2e/bytes.h"
#include "e2e_store.h"

enum { STORE_TYPE = 0x53, STORE_VERSION = 2, STORE_VERSION_1 = 1 };

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
    bool bad;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->bad) return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n && cap <= PC_E2E_MAX_STORE_BYTES) cap *= 2;
        uint8_t *p = cap - b->len >= n && cap <= PC_E2E_MAX_STORE_BYTES ? malloc(cap) : NULL;
        if (!p) {
            b->bad = true;
            return;
        }
        if (b->p) {
            memcpy(p, b->p, b->len);
            sodium_memzero(b->p, b->cap);   /* it held private keys */
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void put8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put32(buf *b, uint32_t v) {
    uint8_t x[4];
    e2e_put32(x, v);
    put(b, x, 4);
}
static void put64(buf *b, uint64_t v) {
    put32(b, (uint32_t)(v >> 32));
    put32(b, (uint32_t)v);
}
/* a length-prefixed state made by save (which mallocs it); NULL: save failed */
static void put_state(buf *b, uint8_t *state, size_t n, int st) {
    if (st != E2E_OK) {
        b->bad = true;
        return;
    }
    put32(b, (uint32_t)n);
    put(b, state, n);
    sodium_memzero(state, n);
    free(state);
}

int pc_e2e_save(const pc_e2e *e, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    buf b = {0};
    put8(&b, STORE_TYPE);
    put8(&b, STORE_VERSION);
    put(&b, e->id.pk, 32);
    put(&b, e->id.sk, 64);
    put32(&b, e->spk.id);
    put(&b, e->spk.pk, 32);
    put(&b, e->spk.sk, 32);
    put(&b, e->spk_sig, 64);
    put8(&b, e->published);
    put32(&b, (uint32_t)e->n_otk);
    for (size_t i = 0; i < e->n_otk; i++) {
        put32(&b, e->otk[i].id);
        put(&b, e->otk[i].pk, 32);
        put(&b, e->otk[i].sk, 32);
        put8(&b, e->otk_used[i]);
    }
    uint8_t *st = NULL;
    size_t n = 0;
    put32(&b, (uint32_t)e->n_peers);
    for (size_t i = 0; i < e->n_peers; i++) {
        const peer *p = &e->peers[i];
        put64(&b, p->user);
        put32(&b, p->device);
        put_state(&b, st, n, e2e_session_save(p->s, &st, &n));
        put8(&b, p->old != NULL);
        if (p->old) put_state(&b, st, n, e2e_session_save(p->old, &st, &n));
    }
    put32(&b, (uint32_t)e->n_keys);
    for (size_t i = 0; i < e->n_keys; i++) {
        const skey *k = &e->keys[i];
        put64(&b, k->conv);
        put64(&b, k->user);
        put32(&b, k->device);
        put_state(&b, st, n, e2e_sender_key_save(k->k, &st, &n));
        put8(&b, k->prev != NULL);
        if (k->prev) put_state(&b, st, n, e2e_sender_key_save(k->prev, &st, &n));
    }
    put32(&b, (uint32_t)e->n_given);
    for (size_t i = 0; i < e->n_given; i++) {
        put64(&b, e->given[i].conv);
        put64(&b, e->given[i].user);
        put32(&b, e->given[i].device);
        put32(&b, e->given[i].key_id);
    }
    put64(&b, e->spk_made_ms);
    put8(&b, e->has_prev_spk);
    if (e->has_prev_spk) {
        put32(&b, e->prev_spk.id);
        put(&b, e->prev_spk.pk, 32);
        put(&b, e->prev_spk.sk, 32);
        put64(&b, e->prev_spk_retired_ms);
    }
    if (b.bad) {
        if (b.p) sodium_memzero(b.p, b.cap);
        free(b.p);
        return E2E_ERR_NOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return E2E_OK;
}

static uint64_t rd_u64(e2e_reader *r) {
    uint64_t hi = rd_u32(r);
    return hi << 32 | rd_u32(r);
}

/* The next length-prefixed state as a sub-reader: its bytes, or NULL. */
static const uint8_t *rd_state(e2e_reader *r, size_t *n) {
    uint32_t len = rd_u32(r);
    if (r->bad || len > E2E_MAX_STATE_BYTES || len > r->left) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += len;
    r->left -= len;
    *n = len;
    return p;
}

static int load_into(pc_e2e *e, e2e_reader *r, int version) {
    rd_bytes(r, e->id.pk, 32);
    rd_bytes(r, e->id.sk, 64);
    e->spk.id = rd_u32(r);
    rd_bytes(r, e->spk.pk, 32);
    rd_bytes(r, e->spk.sk, 32);
    rd_bytes(r, e->spk_sig, 64);
    e->published = rd_u8(r) != 0;
    uint32_t n_otk = rd_u32(r);
    if (n_otk > PC_E2E_HELD_ONE_TIME_KEYS) return E2E_ERR_MALFORMED;
    e->n_otk = n_otk;
    for (size_t i = 0; i < n_otk; i++) {
        e->otk[i].id = rd_u32(r);
        rd_bytes(r, e->otk[i].pk, 32);
        rd_bytes(r, e->otk[i].sk, 32);
        e->otk_used[i] = rd_u8(r) != 0;
    }
    uint32_t n = rd_u32(r);
    if (r->bad || n > PC_E2E_MAX_SESSIONS) return E2E_ERR_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        if (pc_e2e_grow((void **)&e->peers, &e->cap_peers, e->n_peers, sizeof *e->peers, PC_E2E_MAX_SESSIONS) < 0)
            return E2E_ERR_NOMEM;
        peer *p = &e->peers[e->n_peers];
        memset(p, 0, sizeof *p);
        p->user = rd_u64(r);
        p->device = rd_u32(r);
        size_t len = 0;
        const uint8_t *st = rd_state(r, &len);
        if (!st || e2e_session_load(&p->s, st, len) != E2E_OK) return E2E_ERR_MALFORMED;
        e->n_peers++;   /* owned by e from here: freed with it on failure */
        if (rd_u8(r)) {
            st = rd_state(r, &len);
            if (!st || e2e_session_load(&p->old, st, len) != E2E_OK) return E2E_ERR_MALFORMED;
        }
    }
    n = rd_u32(r);
    if (r->bad || n > PC_E2E_MAX_SENDER_KEYS) return E2E_ERR_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        if (pc_e2e_grow((void **)&e->keys, &e->cap_keys, e->n_keys, sizeof *e->keys, PC_E2E_MAX_SENDER_KEYS) < 0)
            return E2E_ERR_NOMEM;
        skey *k = &e->keys[e->n_keys];
        memset(k, 0, sizeof *k);
        k->conv = rd_u64(r);
        k->user = rd_u64(r);
        k->device = rd_u32(r);
        size_t len = 0;
        const uint8_t *st = rd_state(r, &len);
        if (!st || e2e_sender_key_load(&k->k, st, len) != E2E_OK) return E2E_ERR_MALFORMED;
        e->n_keys++;
        if (rd_u8(r)) {
            st = rd_state(r, &len);
            if (!st || e2e_sender_key_load(&k->prev, st, len) != E2E_OK) return E2E_ERR_MALFORMED;
        }
    }
    n = rd_u32(r);
    if (r->bad || n > PC_E2E_MAX_GIVEN) return E2E_ERR_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        if (pc_e2e_grow((void **)&e->given, &e->cap_given, e->n_given, sizeof *e->given, PC_E2E_MAX_GIVEN) < 0)
            return E2E_ERR_NOMEM;
        given *g = &e->given[e->n_given++];
        g->conv = rd_u64(r);
        g->user = rd_u64(r);
        g->device = rd_u32(r);
        g->key_id = rd_u32(r);
    }
    if (version >= 2) {
        e->spk_made_ms = rd_u64(r);
        e->has_prev_spk = rd_u8(r) != 0;
        if (e->has_prev_spk) {
            e->prev_spk.id = rd_u32(r);
            rd_bytes(r, e->prev_spk.pk, 32);
            rd_bytes(r, e->prev_spk.sk, 32);
            e->prev_spk_retired_ms = rd_u64(r);
        }
    }
    return r->bad || r->left ? E2E_ERR_MALFORMED : E2E_OK;
}

int pc_e2e_load(pc_e2e **out, const uint8_t *data, size_t len) {
    *out = NULL;
    if (len < 2 || len > PC_E2E_MAX_STORE_BYTES || data[0] != STORE_TYPE) return E2E_ERR_MALFORMED;
    if (data[1] != STORE_VERSION && data[1] != STORE_VERSION_1) return E2E_ERR_VERSION;
    pc_e2e *e = calloc(1, sizeof *e);
    if (!e) return E2E_ERR_NOMEM;
    e2e_reader r = {data + 2, len - 2, false};
    int st = load_into(e, &r, data[1]);
    if (st != E2E_OK) {
        pc_e2e_free(e);
        return st;
    }
    *out = e;
    return E2E_OK;
}
