/* store_cassandra_claim.c -- the claims of store.h as lightweight
 * transactions (Paxos), the only compare-and-set of the Cassandra backend:
 *
 *   a user name      INSERT INTO user_names ... IF NOT EXISTS (the row itself)
 *   a link token     INSERT INTO claims ('t' token) ... IF NOT EXISTS
 *   a one-time key   INSERT INTO claims ('o' user device key_id public_key) ... IF NOT EXISTS
 *   a conversation id  INSERT INTO claims ('c' conv) ... IF NOT EXISTS (fenced stores only)
 *   a fan-out log range  INSERT INTO claims ('r' partition range) ... IF NOT EXISTS (fenced stores only)
 *
 * Each is one statement of its own, sent before the commit's LOGGED BATCH
 * (an LWT cannot be part of a batch over several partitions), at
 * LOCAL_SERIAL for its Paxos round and LOCAL_QUORUM for its commit, like
 * every other write. The batch then deletes the token or key row (and puts
 * the name row again, the same value) as it did before there were claims.
 *
 * Why a claims table for tokens and keys, not DELETE ... IF EXISTS on the
 * row: a claim whose outcome is unknown (a timeout after the request went
 * out) must be resolved by reading, never by assuming, and a row that is
 * gone does not say who removed it. A claim row names its claimer (a
 * random 64-bit number per attempt, or the user id for a name), so a read
 * at LOCAL_SERIAL (which also finishes a Paxos round left half done) tells
 * won from lost. Claim rows live CLAIM_TTL_S: past that the token has
 * expired long ago and the key row has been deleted; a key claimed with
 * the same id and the same public key is the same one-time key, so it is
 * never handed out again within that time either.
 *
 * A name whose registration batch then failed is given back with
 * DELETE ... IF user_id = <mine> (cass_release_user_name), so the client's
 * retry can have it. If that fails too (the store away), the name is left
 * naming a user id with no user row: an orphan. A claim that finds one
 * older than NAME_ORPHAN_AGE_S takes it over with UPDATE ... IF user_id =
 * <the orphan's> (take_over_orphan); younger, its registration may still
 * be committing (or be replayed from Cassandra's batchlog), so it is
 * another's.
 *
 * Nothing else in the backend is a compare-and-set: every other write is a
 * put or delete of a fixed row (store_cassandra_write.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/store_cassandra_internal.h"

/* how long a claim row is kept: 30 days */
#define CLAIM_TTL_S (30 * 24 * 3600)
/* a claim whose outcome is unknown is resolved and, if it did not happen,
 * tried again at most this many times in all */
#define CLAIM_ATTEMPTS 3
/* one-time keys read per page while looking for an unclaimed one, and the
 * most looked at (keys.c stores at most 1000 per device) */
#define OTK_PAGE 16
#define OTK_MAX_LOOKED 4096
/* a name claim naming no user is an orphan, taken over, once it is this
 * old: far past any registration's batch (the CQL request timeouts are
 * seconds) and its batchlog replay */
#define NAME_ORPHAN_AGE_S 60
/* a claim key: tag, ids, and a public key of at most this many bytes */
#define CLAIM_KEY_MAX 1024

const char *const cass_claim_texts[CL_COUNT] = {
    [CL_NAME] = "INSERT INTO %s.user_names (name, user_id) VALUES (?, ?) IF NOT EXISTS",
    [CL_NAME_READ] = "SELECT user_id FROM %s.user_names WHERE name = ?",
    [CL_CLAIM] = "INSERT INTO %s.claims (claim, claimer) VALUES (?, ?) IF NOT EXISTS USING TTL 2592000",
    [CL_CLAIM_READ] = "SELECT claimer FROM %s.claims WHERE claim = ?",
    [CL_OTKS] = ("SELECT key_id, public_key FROM %s.one_time_keys WHERE user_id = ? AND device_id = ? AND "
                 "key_id >= ? LIMIT 16"),
    [CL_NAME_RELEASE] = "DELETE FROM %s.user_names WHERE name = ? IF user_id = ?",
    [CL_NAME_AGE] = "SELECT user_id, WRITETIME(user_id) FROM %s.user_names WHERE name = ?",
    [CL_NAME_TAKE_OVER] = "UPDATE %s.user_names SET user_id = ? WHERE name = ? IF user_id = ?",
};
_Static_assert(CLAIM_TTL_S == 2592000 && OTK_PAGE == 16, "the texts above spell these out");

static int64_t new_claimer(void) {
    uint64_t x = 0;
    while (x == 0 || x > INT64_MAX)
        if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = 0;
    return (int64_t)x;
}

/* the bigint in column 0 of row 0: 1 with *v, 0 no row or null */
static int first_bigint(const cql_result *r, int64_t *v) {
    if (cql_result_rows(r) == 0) return 0;
    int col = cql_result_column(r, "claimer");
    if (col < 0) col = cql_result_column(r, "user_id");
    return col >= 0 && cql_get_bigint(r, 0, (size_t)col, v) == 0;
}

/* Reads the owner of a claim row at LOCAL_SERIAL: 1 mine, 0 another's,
 * 2 no owner (the claim did not happen), -1 the read failed. */
static int owner_serial(cass *s, enum cass_claim read, const cql_values *key, int64_t mine) {
    cql_result *r = cql_execute_sync(s->cql, s->claims[read], key, CQL_LOCAL_SERIAL, 0, NULL, 0);
    int rc = -1;
    int64_t owner;
    if (r && cql_result_status(r) == CQL_OK) rc = first_bigint(r, &owner) ? owner == mine : 2;
    else log_warn("store: cassandra: claim: serial read: %s %s", r ? cql_status_name(cql_result_status(r)) : "",
                  r ? cql_result_message(r) : "out of memory");
    cql_result_free(r);
    return rc;
}

/* One claim: INSERT ... IF NOT EXISTS of (key, mine) by insert, its owner
 * read back by read. 1 won (or already mine), 0 another's, -1 unknown. */
static int claim(cass *s, enum cass_claim insert, enum cass_claim read, const cql_values *key,
                 const cql_values *row, int64_t mine) {
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        atomic_fetch_add(&s->claims_total, 1);
        cql_result *r = cql_execute_lwt_sync(s->cql, s->claims[insert], row, CQL_LOCAL_QUORUM, CQL_LOCAL_SERIAL);
        cql_status st = r ? cql_result_status(r) : CQL_ERR_NOMEM;
        if (st == CQL_OK) {
            int applied = cql_result_applied(r);
            int64_t owner = 0;
            int rc = applied == 1 ? 1 : applied == 0 && first_bigint(r, &owner) ? owner == mine : -1;
            cql_result_free(r);
            if (rc == 0) atomic_fetch_add(&s->claims_lost_total, 1);
            return rc;
        }
        log_warn("store: cassandra: claim: %s %s", cql_status_name(st), r ? cql_result_message(r) : "");
        cql_result_free(r);
        if (!cql_status_outcome_unknown(st) && st != CQL_ERR_UNAVAILABLE && st != CQL_ERR_OVERLOADED) return -1;
        /* unknown (or not started): who owns the row now says what happened */
        atomic_fetch_add(&s->claims_unknown_total, 1);
        int rc = owner_serial(s, read, key, mine);
        if (rc == 0) atomic_fetch_add(&s->claims_lost_total, 1);
        if (rc == 0 || rc == 1) return rc;
        /* no owner: the claim did not happen (or the read failed): again */
    }
    return -1;
}

/* One conditional write on a name row (release or take-over): 1 applied,
 * 0 the condition did not hold, -1 failed; *unknown when its outcome is
 * not known (a timeout after it went out). */
static int name_lwt(cass *s, enum cass_claim stmt, const cql_values *v, bool *unknown) {
    *unknown = false;
    atomic_fetch_add(&s->claims_total, 1);
    cql_result *r = cql_execute_lwt_sync(s->cql, s->claims[stmt], v, CQL_LOCAL_QUORUM, CQL_LOCAL_SERIAL);
    cql_status st = r ? cql_result_status(r) : CQL_ERR_NOMEM;
    int rc = -1;
    if (st == CQL_OK) {
        int applied = cql_result_applied(r);
        rc = applied == 1 ? 1 : applied == 0 ? 0 : -1;
    } else {
        log_warn("store: cassandra: name claim: %s %s", cql_status_name(st), r ? cql_result_message(r) : "");
        *unknown = cql_status_outcome_unknown(st);
        if (*unknown) atomic_fetch_add(&s->claims_unknown_total, 1);
    }
    cql_result_free(r);
    return rc;
}

/* The id a name row names and when it was written (µs), read at
 * LOCAL_SERIAL: 1, 0 no row, -1 the read failed. */
static int name_owner_age(cass *s, const cql_values *key, int64_t *owner, int64_t *written_us) {
    cql_result *r = cql_execute_sync(s->cql, s->claims[CL_NAME_AGE], key, CQL_LOCAL_SERIAL, 0, NULL, 0);
    int rc = -1;
    if (r && cql_result_status(r) == CQL_OK)
        rc = cql_result_rows(r) == 0 ? 0
             : cql_get_bigint(r, 0, 0, owner) == 0 && cql_get_bigint(r, 0, 1, written_us) == 0 ? 1 : -1;
    cql_result_free(r);
    return rc;
}

/* The name is another's: takes it over if that is an orphan (the id it
 * names has no user row) at least NAME_ORPHAN_AGE_S old. 1 taken (or
 * mine), 0 not an orphan (or too young, or another took it first), -1 not
 * known. */
static int take_over_orphan(cass *s, const char *name, const cql_values *key, int64_t mine) {
    int64_t owner = 0, written_us = 0;
    int found = name_owner_age(s, key, &owner, &written_us);
    if (found <= 0) return found;   /* gone since (released): the client may try again */
    if (owner == mine) return 1;
    if ((int64_t)clock_wall_ms() * 1000 - written_us < (int64_t)NAME_ORPHAN_AGE_S * 1000000) return 0;
    Parley__Store__User *u = NULL;
    int has_user = cass_get_user(s, (uint64_t)owner, &u);
    if (u) parley__store__user__free_unpacked(u, NULL);
    if (has_user != 0) return has_user < 0 ? -1 : 0;
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, mine);
    cql_values_text(&v, name, strlen(name));
    cql_values_bigint(&v, owner);
    bool unknown = false;
    int rc = v.error ? -1 : name_lwt(s, CL_NAME_TAKE_OVER, &v, &unknown);
    cql_values_free(&v);
    if (unknown) {
        rc = owner_serial(s, CL_NAME_READ, key, mine);
        if (rc == 2) rc = 0;   /* no owner: not taken (released meanwhile) */
    }
    if (rc == 1) {
        atomic_fetch_add(&s->names_taken_over_total, 1);
        log_info("store: cassandra: user name '%s' taken over from %lld, which has no user", name,
                 (long long)owner);
    }
    return rc;
}

int cass_claim_user_name(void *impl, const char *name, uint64_t user_id) {
    cass *s = impl;
    cql_values key, row;
    cql_values_init(&key);
    cql_values_init(&row);
    cql_values_text(&key, name, strlen(name));
    cql_values_text(&row, name, strlen(name));
    cql_values_bigint(&row, (int64_t)user_id);
    int rc = key.error || row.error ? -1 : claim(s, CL_NAME, CL_NAME_READ, &key, &row, (int64_t)user_id);
    if (rc == 0) rc = take_over_orphan(s, name, &key, (int64_t)user_id);
    cql_values_free(&key);
    cql_values_free(&row);
    return rc;
}

int cass_release_user_name(void *impl, const char *name, uint64_t user_id) {
    cass *s = impl;
    cql_values key, v;
    cql_values_init(&key);
    cql_values_init(&v);
    cql_values_text(&key, name, strlen(name));
    cql_values_text(&v, name, strlen(name));
    cql_values_bigint(&v, (int64_t)user_id);
    bool unknown = false;
    int rc = key.error || v.error ? -1 : name_lwt(s, CL_NAME_RELEASE, &v, &unknown);
    if (unknown) {   /* who owns the row now says what happened */
        int owner = owner_serial(s, CL_NAME_READ, &key, (int64_t)user_id);
        rc = owner == 2 ? 1 : owner == 0 ? 0 : -1;
    }
    cql_values_free(&key);
    cql_values_free(&v);
    if (rc == 1) atomic_fetch_add(&s->names_released_total, 1);
    return rc;
}

/* claims the row of a claim key (tag and bytes) for a new claimer */
static int claim_key(cass *s, const uint8_t *k, size_t n) {
    int64_t mine = new_claimer();
    cql_values key, row;
    cql_values_init(&key);
    cql_values_init(&row);
    cql_values_blob(&key, k, n);
    cql_values_blob(&row, k, n);
    cql_values_bigint(&row, mine);
    int rc = key.error || row.error ? -1 : claim(s, CL_CLAIM, CL_CLAIM_READ, &key, &row, mine);
    cql_values_free(&key);
    cql_values_free(&row);
    return rc;
}

int cass_claim_link_token(void *impl, const char *token) {
    cass *s = impl;
    size_t n = strnlen(token, CLAIM_KEY_MAX);
    if (n >= CLAIM_KEY_MAX) return 0;   /* no such token can have been made */
    Parley__Store__LinkToken *t = NULL;
    int found = cass_get_link_token(s, token, &t);
    if (t) parley__store__link_token__free_unpacked(t, NULL);
    if (found != 1) return found;
    uint8_t k[CLAIM_KEY_MAX + 1];
    k[0] = 't';
    memcpy(k + 1, token, n);
    return claim_key(s, k, n + 1);
}

static void put_be(uint8_t *p, uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* A conversation id: INSERT INTO claims ('c' conv) IF NOT EXISTS. Only on
 * a fenced store (several writers); unfenced, one writer's floor is
 * enough. The claim row outlives any writer's stale floor by far (30
 * days), and past it the conversation's seq 1 is fenced by its head. */
int cass_claim_conversation_id(void *impl, uint64_t conv) {
    cass *s = impl;
    if (!s->fence) return 1;
    uint8_t k[9];
    k[0] = 'c';
    put_be(k + 1, conv, 8);
    return claim_key(s, k, sizeof k);
}

/* A range of a partition's fan-out log offsets (chat/log_range.h): INSERT
 * INTO claims ('r' partition range) IF NOT EXISTS. Only on a fenced store,
 * like a conversation id. A range is taken above every range the log and
 * the checkpoints show, so a claim row that expired (30 days) names a
 * range nobody will take again unless nothing was written in it. */
int cass_claim_log_range(void *impl, uint32_t partition, uint32_t range) {
    cass *s = impl;
    if (!s->fence) return 1;
    uint8_t k[9];
    k[0] = 'r';
    put_be(k + 1, partition, 4);
    put_be(k + 5, range, 4);
    return claim_key(s, k, sizeof k);
}

typedef struct otk_scan {
    cass *s;
    uint64_t user;
    uint32_t device;
    int32_t next_id;      /* the first key id of the next page */
    bool at_end;          /* the last row had the highest id there is */
    size_t rows, looked;
    int rc;               /* 1 won, -1 failed, 0 none yet */
    uint32_t key_id;
    store_bytes *out;
} otk_scan;

static int otk_row(void *ud, const cql_result *r, size_t row) {
    otk_scan *o = ud;
    int32_t id;
    const uint8_t *pk;
    size_t n;
    o->rows++;
    o->looked++;
    if (cql_get_int(r, row, 0, &id) != 0 || cql_get_bytes(r, row, 1, &pk, &n) != 0) return 0;
    if (id == INT32_MAX) o->at_end = true;
    else o->next_id = id + 1;
    if (n > CLAIM_KEY_MAX - 17) return 0;   /* keys.c refuses such keys at upload */
    uint8_t k[CLAIM_KEY_MAX];
    k[0] = 'o';
    put_be(k + 1, o->user, 8);
    put_be(k + 9, o->device, 4);
    put_be(k + 13, (uint32_t)id, 4);
    memcpy(k + 17, pk, n);
    int rc = claim_key(o->s, k, 17 + n);
    if (rc == 0) return 0;   /* another has it: the next key */
    o->rc = rc;
    if (rc == 1) {
        o->key_id = (uint32_t)id;
        o->out->data = malloc(n ? n : 1);
        if (!o->out->data) abort();
        if (n) memcpy(o->out->data, pk, n);
        o->out->len = n;
    }
    return 1;
}

int cass_claim_one_time_key(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out) {
    cass *s = impl;
    otk_scan o = {.s = s, .user = user, .device = device, .next_id = INT32_MIN, .out = out};
    while (o.looked < OTK_MAX_LOOKED) {
        cql_values v;
        cql_values_init(&v);
        cql_values_bigint(&v, (int64_t)user);
        cql_values_int(&v, (int32_t)device);
        cql_values_int(&v, o.next_id);
        o.rows = 0;
        int rc = cass_rows(s, s->claims[CL_OTKS], &v, 0, otk_row, &o);
        cql_values_free(&v);
        if (rc != 0) return -1;
        if (o.rc != 0) break;
        if (o.rows < OTK_PAGE || o.at_end) return 0;   /* none left unclaimed */
    }
    if (o.rc == 1) *key_id = o.key_id;
    return o.rc;
}

int cass_claims_prepare(cass *s, char **why) {
    for (int i = 0; i < CL_COUNT; i++) {
        char q[512];
        snprintf(q, sizeof q, cass_claim_texts[i], s->keyspace);
        cql_result *res = NULL;
        s->claims[i] = cql_prepare(s->cql, q, &res);
        if (!s->claims[i]) {
            if (asprintf(why, "prepare %s: %s", q, res ? cql_result_message(res) : "out of memory") < 0) abort();
            cql_result_free(res);
            return -1;
        }
    }
    return 0;
}
