/* test_store_migrate_cassandra.c -- a store moves from RocksDB to Cassandra
 * and back with `parley store export|import` (issue 12, "Migration"):
 *
 *   1. a server on RocksDB gets users, a direct conversation and a group
 *      with messages, and stops;
 *   2. its store is exported and imported into a fresh Cassandra keyspace;
 *      exported again from Cassandra, it holds exactly the same records;
 *   3. a server on that keyspace answers history and a device's sync from
 *      scratch with every message as sent, and goes on with the next seq;
 *   4. the keyspace, with what that server wrote, is exported and imported
 *      into a new RocksDB store, whose export holds exactly the same records,
 *      and a server on it answers history with every message, old and new.
 *
 * Records are compared as sets (key and value bytes): each backend writes
 * its export in its own scan order. Cassandra: PARLEY_TEST_CASSANDRA when
 * set, else a node of this program's own (cassandra_node.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 60000, N_DIRECT = 30, N_GROUP = 10, N_MAX = N_DIRECT + N_GROUP + 8 };

static h_server S;
static char hosts[128];

/* `parley store VERB WHERE` with stdin or stdout on file, bounded by
 * timeout(1), its stderr in the server's log; its exit status */
static int store_cli(const char *verb, const char *where, const char *file, int output) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 600 '%s' store %s %s %s '%s' 2>>'%s'", S.bin, verb, where,
             output ? ">" : "<", file, S.log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ------------------------------------------- the export stream as a set */

typedef struct record {
    uint8_t *key, *value;
    uint32_t klen, vlen;
} record;

typedef struct record_set {
    record *r;
    size_t n;
    uint8_t *file;      /* the whole stream; records point into it */
} record_set;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int record_cmp(const void *a, const void *b) {
    const record *x = a, *y = b;
    uint32_t kl = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, kl);
    if (c || x->klen != y->klen) return c ? c : (x->klen < y->klen ? -1 : 1);
    uint32_t vl = x->vlen < y->vlen ? x->vlen : y->vlen;
    c = memcmp(x->value, y->value, vl);
    if (c || x->vlen != y->vlen) return c ? c : (x->vlen < y->vlen ? -1 : 1);
    return 0;
}

/* Reads a stream (store_export.h's format) into a sorted set. 0 or -1. */
static int read_records(const char *path, record_set *set) {
    memset(set, 0, sizeof *set);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 16 || size > 256L * 1024 * 1024) {
        fclose(f);
        return -1;
    }
    set->file = malloc((size_t)size);
    int ok = set->file && fread(set->file, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok || memcmp(set->file, "PARLEYSTORE\n", 12) != 0) return -1;
    size_t off = 16, cap = 0;
    while (off < (size_t)size && set->file[off] == 'R') {
        if (off + 9 > (size_t)size) return -1;
        uint32_t kl = be32(set->file + off + 1), vl = be32(set->file + off + 5);
        if (off + 9 + (size_t)kl + vl > (size_t)size) return -1;
        if (set->n == cap) {
            cap = cap ? cap * 2 : 256;
            record *nr = realloc(set->r, cap * sizeof *nr);
            if (!nr) return -1;
            set->r = nr;
        }
        set->r[set->n++] = (record){set->file + off + 9, set->file + off + 9 + kl, kl, vl};
        off += 9 + (size_t)kl + vl;
    }
    if (off + 9 != (size_t)size || set->file[off] != 'E') return -1;
    qsort(set->r, set->n, sizeof *set->r, record_cmp);
    return 0;
}

static void records_free(record_set *set) {
    free(set->r);
    free(set->file);
    memset(set, 0, sizeof *set);
}

/* 0 when a and b hold the same records, else -1 with the first difference */
static int same_records(const record_set *a, const record_set *b, char *why, size_t cap) {
    size_t i = 0;
    for (; i < a->n && i < b->n; i++)
        if (record_cmp(&a->r[i], &b->r[i]) != 0) {
            snprintf(why, cap, "record %zu of %zu differs: kind '%c' (key %u bytes) vs kind '%c' (key %u bytes)",
                     i, a->n, a->r[i].klen ? a->r[i].key[0] : '?', a->r[i].klen,
                     b->r[i].klen ? b->r[i].key[0] : '?', b->r[i].klen);
            return -1;
        }
    if (a->n != b->n) {
        snprintf(why, cap, "%zu records vs %zu", a->n, b->n);
        return -1;
    }
    return 0;
}

static int same_exports(const char *x, const char *y, char *why, size_t cap) {
    record_set a = {0}, b = {0};
    int rc = -1;
    if (read_records(x, &a) != 0) snprintf(why, cap, "cannot read %s as an export", x);
    else if (read_records(y, &b) != 0) snprintf(why, cap, "cannot read %s as an export", y);
    else rc = same_records(&a, &b, why, cap);
    records_free(&a);
    records_free(&b);
    return rc;
}

/* ------------------------------------------------------------- the case */

/* history of conv through d is exactly exp[0..n) (text messages) */
static int history_exact(h_dev *d, uint64_t conv, const h_sent *exp, size_t n, char *why, size_t cap) {
    size_t got = 0;
    h_event *hist = h_history_all(d, conv, &got);
    if (!hist) {
        snprintf(why, cap, "history failed");
        return -1;
    }
    size_t texts = 0;
    int rc = 0;
    for (size_t i = 0; i < got && rc == 0; i++) {
        if (hist[i].type != PARLEY__V1__MESSAGE_TYPE__TEXT) continue;
        if (texts >= n || hist[i].seq != exp[texts].seq || hist[i].sender_user_id != exp[texts].sender ||
            !h_event_body_is(&hist[i], exp[texts].text)) {
            snprintf(why, cap, "history message %zu (seq %llu) is not message %zu as sent", i,
                     (unsigned long long)hist[i].seq, texts);
            rc = -1;
        }
        texts++;
    }
    h_events_free(hist, got);
    if (rc == 0 && texts != n) {
        snprintf(why, cap, "history has %zu of the %zu messages", texts, n);
        rc = -1;
    }
    return rc;
}

static void rocksdb_to_cassandra_and_back(void) {
    /* 1. the source: a server on RocksDB */
    const char *rocks_args[] = {"--send-rate", "100000", NULL};
    NEED(h_server_start(&S, rocks_args) == 0);
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL);
    NEED(a && b && c);
    uint64_t direct = 0, group = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &direct) == 0);
    uint64_t members[] = {b->id.user_id, c->id.user_id};
    NEED(pc_create_group(a->c, "movers", members, 2, &group) == 0);
    NEED(h_accept(b, group) == 0 && h_accept(c, group) == 0);
    static h_sent exp_d[N_MAX], exp_g[N_MAX];
    size_t nd = 0, ng = 0;
    NEED(h_send_rec(b, direct, "hi a", exp_d, &nd) == 0);   /* answering accepts it */
    for (int i = 1; i < N_DIRECT; i++) {
        char text[32];
        snprintf(text, sizeof text, "direct %d", i);
        NEED(h_send_rec(i % 3 ? a : b, direct, text, exp_d, &nd) == 0);
    }
    for (int i = 0; i < N_GROUP; i++) {
        char text[32];
        snprintf(text, sizeof text, "group %d", i);
        h_dev *from = i % 3 == 0 ? a : i % 3 == 1 ? b : c;
        NEED(h_send_rec(from, group, text, exp_g, &ng) == 0);
    }
    h_dev_disconnect(a);
    h_dev_disconnect(b);
    h_dev_disconnect(c);
    NEED(h_server_stop(&S) >= 0);

    /* 2. RocksDB -> Cassandra: the same records */
    char where[512], from_rocks[400], from_cass[400], from_cass2[400], from_rocks2[400], rocks2[400];
    snprintf(from_rocks, sizeof from_rocks, "%s/from-rocksdb.bin", S.dir);
    snprintf(from_cass, sizeof from_cass, "%s/from-cassandra.bin", S.dir);
    snprintf(from_cass2, sizeof from_cass2, "%s/from-cassandra-served.bin", S.dir);
    snprintf(from_rocks2, sizeof from_rocks2, "%s/from-rocksdb-again.bin", S.dir);
    snprintf(rocks2, sizeof rocks2, "%s/rocksdb-again", S.dir);
    char keyspace[48];
    snprintf(keyspace, sizeof keyspace, "migrate_%d", (int)getpid());
    char cass_where[300];
    snprintf(cass_where, sizeof cass_where, "--store cassandra --cassandra '%s' --keyspace %s", hosts, keyspace);
    snprintf(where, sizeof where, "--data '%s'", S.data);
    CHECK(store_cli("export", where, from_rocks, 1) == 0, "export from RocksDB failed (see %s)", S.log);
    CHECK(store_cli("import", cass_where, from_rocks, 0) == 0, "import into Cassandra failed (see %s)", S.log);
    CHECK(store_cli("import", cass_where, from_rocks, 0) != 0, "a second import into the keyspace was accepted");
    CHECK(store_cli("export", cass_where, from_cass, 1) == 0, "export from Cassandra failed (see %s)", S.log);
    char why[256];
    CHECK(same_exports(from_rocks, from_cass, why, sizeof why) == 0, "RocksDB -> Cassandra: %s", why);

    /* 3. served from Cassandra: history, a sync from scratch, the next seq */
    const char *cass_args[] = {"--send-rate", "100000", "--store", "cassandra", "--cassandra", hosts,
                               "--keyspace", keyspace, NULL};
    /* the same h_server (its dir keeps the exports and the log), now on
     * the keyspace */
    for (int i = 0; i < S.n_extra; i++) free(S.extra[i]);
    S.n_extra = 0;
    for (int i = 0; cass_args[i]; i++) S.extra[S.n_extra++] = strdup(cass_args[i]);
    NEED(h_server_restart(&S) == 0);
    NEED(h_dev_reconnect(&S, a, 0) == 0 && h_dev_reconnect(&S, b, 0) == 0);
    CHECK(history_exact(a, direct, exp_d, nd, why, sizeof why) == 0, "direct on Cassandra: %s", why);
    CHECK(history_exact(a, group, exp_g, ng, why, sizeof why) == 0, "group on Cassandra: %s", why);
    h_dev_clear(b);
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    CHECK(h_expect_exact(b, direct, exp_d, nd, why, sizeof why) == 0, "b's sync, direct: %s", why);
    CHECK(h_expect_exact(b, group, exp_g, ng, why, sizeof why) == 0, "b's sync, group: %s", why);
    uint64_t last = exp_d[nd - 1].seq;
    NEED(h_send_rec(a, direct, "on cassandra", exp_d, &nd) == 0);
    CHECK(exp_d[nd - 1].seq == last + 1, "first seq on Cassandra %llu, want %llu",
          (unsigned long long)exp_d[nd - 1].seq, (unsigned long long)(last + 1));
    h_dev_disconnect(a);
    h_dev_disconnect(b);
    NEED(h_server_stop(&S) >= 0);

    /* 4. Cassandra -> a new RocksDB store: the same records */
    CHECK(store_cli("export", cass_where, from_cass2, 1) == 0, "second export from Cassandra failed (see %s)", S.log);
    snprintf(where, sizeof where, "--data '%s'", rocks2);
    CHECK(store_cli("import", where, from_cass2, 0) == 0, "import into RocksDB failed (see %s)", S.log);
    CHECK(store_cli("export", where, from_rocks2, 1) == 0, "export of the new RocksDB store failed (see %s)", S.log);
    CHECK(same_exports(from_cass2, from_rocks2, why, sizeof why) == 0, "Cassandra -> RocksDB: %s", why);
    CHECK(same_exports(from_rocks, from_cass2, why, sizeof why) != 0,
          "the served keyspace's export equals the first one: the new message is missing");

    /* and a server on the new RocksDB store has every message, old and new */
    for (int i = 0; i < S.n_extra; i++) free(S.extra[i]);
    S.n_extra = 0;
    S.extra[S.n_extra++] = strdup("--send-rate");
    S.extra[S.n_extra++] = strdup("100000");
    char moved[400];
    snprintf(moved, sizeof moved, "%s/data-before", S.dir);
    NEED(rename(S.data, moved) == 0);
    NEED(rename(rocks2, S.data) == 0);
    NEED(h_server_restart(&S) == 0);
    NEED(h_dev_reconnect(&S, a, 0) == 0);
    CHECK(history_exact(a, direct, exp_d, nd, why, sizeof why) == 0, "direct back on RocksDB: %s", why);
    CHECK(history_exact(a, group, exp_g, ng, why, sizeof why) == 0, "group back on RocksDB: %s", why);
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    h_server_destroy(&S);
    /* a shared node (PARLEY_TEST_CASSANDRA) keeps no keyspace of ours */
    const char *env = getenv("PARLEY_TEST_CASSANDRA");
    if (env && *env) CHECK(h_cassandra_drop_keyspace(hosts, keyspace) == 0, "drop keyspace %s", keyspace);
}

int main(void) {
    /* the source store is RocksDB whatever the pass; Cassandra is named
     * explicitly where it is used */
    unsetenv("PARLEY_TEST_STORE");
    const char *env = getenv("PARLEY_TEST_CASSANDRA");
    if (env && *env) {
        snprintf(hosts, sizeof hosts, "%s", env);
    } else if (cassandra_node_start("migrate") == 0) {
        snprintf(hosts, sizeof hosts, "%s", cassandra_node_hosts());
    } else {
        printf("FAIL cassandra_starts\n");
        CHECK_EXIT();
    }
    RUN(rocksdb_to_cassandra_and_back);
    h_server_destroy(&S);
    CHECK_EXIT();
}
