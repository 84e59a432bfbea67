/* test_store_cassandra.c -- the store conformance suite
 * (tests/store_conformance.h, the same cases test_store runs on RocksDB)
 * against the Cassandra backend on a real Apache Cassandra: one node for
 * the program (cassandra_node, stopped by PID on every exit path), each
 * case in a fresh keyspace, dropped after it.
 *
 * Cassandra's own: the asynchronous commit's failure path -- with the node
 * frozen (SIGSTOP) a commit reports -1 once, leaves its batch intact and
 * health FAILING; once the node runs again the same batch commits and
 * health is back.
 *
 * Not in the neutral set (RocksDB-only, in test_store): its directory
 * markers, WAL recovery, the free-space watermark, column families and
 * their migration, and the export stream compared byte for byte (Cassandra
 * lists records in its own token order). */
#include "../check.h"
#include "../store_conformance.h"
#include "cassandra_node.h"
#include "store/cql/cql.h"
#include "store/store_cassandra_schema.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cql_client *admin;   /* drops the keyspaces */
static int keyspace_n;
static char keyspace[32];

static store *open_keyspace(int timeout_ms) {
    char *err = NULL;
    store_options o = {.retention_ms = conformance_retention_ms, .cassandra_hosts = cassandra_node_hosts(),
                       .cassandra_keyspace = keyspace, .cassandra_timeout_ms = timeout_ms};
    store *s = store_open_kind(STORE_KIND_CASSANDRA, NULL, &o, &err);
    if (!s) fprintf(stderr, "  open keyspace %s: %s\n", keyspace, err ? err : "?");
    free(err);
    return s;
}

static store *cass_open_fresh(void) {
    snprintf(keyspace, sizeof keyspace, "conformance_%d", ++keyspace_n);
    return open_keyspace(0);
}

static store *cass_reopen(void) { return open_keyspace(0); }

static void cass_discard(void) {
    char q[96];
    snprintf(q, sizeof q, "DROP KEYSPACE IF EXISTS %s", keyspace);
    cql_result *r = cql_query_sync(admin, q, CQL_ONE);
    if (cql_result_status(r) != CQL_OK) fprintf(stderr, "  %s: %s\n", q, cql_result_message(r));
    cql_result_free(r);
}

static const backend cassandra_backend = {"cassandra", cass_open_fresh, cass_reopen, cass_discard, cass_reopen};

static void start_cassandra(void) {
    CHECK(cassandra_node_start("test-store-cass") == 0, "no Cassandra");
    cql_options o = {.hosts = cassandra_node_hosts()};
    admin = cql_connect(&o);
    CHECK(admin && cql_wait_ready(admin, 60000) == 0, "no CQL connection");
}

/* ------------------------------------------- the async commit's failure */

typedef struct failed_commit {
    atomic_int calls;
    atomic_int result;
    atomic_size_t count_at_callback;
    store_batch *b;
} failed_commit;

static void failed_done(void *ud, int result) {
    failed_commit *f = ud;
    atomic_store(&f->count_at_callback, store_batch_count(f->b));
    atomic_store(&f->result, result);
    atomic_fetch_add(&f->calls, 1);
}

static void thaw(void) { kill(cassandra_node_pid(), SIGCONT); }

static void a_commit_to_a_frozen_node_fails_with_its_batch_intact(void) {
    snprintf(keyspace, sizeof keyspace, "conformance_%d", ++keyspace_n);
    /* a short request timeout: the commit gives up after its retries */
    store *s = open_keyspace(2000);
    CHECK(s, "open");
    CHECK(store_get_health(s) == STORE_HEALTHY, "health at open: %s", store_health_name(store_get_health(s)));
    store_batch *b = store_batch_new();
    store_put_cursor(b, 9, 1, 33);
    store_put_message(b, 4, 1, (const uint8_t *)"m", 1);
    size_t writes = store_batch_count(b);
    CHECK(cassandra_node_freeze(30000) == 0, "freeze");
    failed_commit f = {.b = b};
    atomic_store(&f.result, 2);
    int started = store_commit_async(s, b, true, failed_done, &f);
    /* three tries of 2 s each; waited for by the one callback, bounded */
    for (int i = 0; i < 6000 && started == 0 && atomic_load(&f.calls) == 0; i++) usleep(10000);
    store_health during = store_get_health(s);
    thaw();
    CHECK(started == 0, "not started");
    CHECK(atomic_load(&f.calls) == 1, "callback called %d times", atomic_load(&f.calls));
    CHECK(atomic_load(&f.result) == -1, "result %d with the node frozen", atomic_load(&f.result));
    CHECK(atomic_load(&f.count_at_callback) == writes && store_batch_count(b) == writes,
          "the failed batch holds %zu writes at the callback, %zu after, of %zu",
          atomic_load(&f.count_at_callback), store_batch_count(b), writes);
    CHECK(during == STORE_FAILING, "health while failing: %s", store_health_name(during));
    /* the node runs again: the same batch commits (bounded tries while it
     * catches up), and health is back */
    int rc = -1;
    for (int i = 0; i < 20 && rc != 0; i++) rc = store_commit(s, b, true);
    CHECK(rc == 0, "the same batch again, after thaw");
    CHECK(store_get_health(s) == STORE_HEALTHY, "health after a success: %s",
          store_health_name(store_get_health(s)));
    uint64_t x = 0;
    CHECK(store_get_cursor(s, 9, 1, &x) == 1 && x == 33, "cursor %lu", x);
    CHECK(store_last_seq(s, 4, &x) == 0 && x == 1, "last seq %lu", x);
    char text[8192];
    size_t len = store_metrics_render(s, text, sizeof text);
    text[len < sizeof text ? len : sizeof text - 1] = 0;
    CHECK(strstr(text, "parley_store_commit_failures_total 1\n") && strstr(text, "parley_store_failing 0\n") &&
          strstr(text, "parley_store_cql_commit_retries_total 2\n"), "metrics:\n%s", text);
    store_batch_free(b);
    store_close(s);
    cass_discard();
}

/* ------------------------------------------- a claim of unknown outcome */

/* A claim sent to a frozen node times out: its outcome is unknown (the
 * node may apply it when it wakes), so the claim answers -1, never "won"
 * or "lost" by assumption; once the node is back, the same claimer's claim
 * is answered won (its own row, or a new one), another's lost, and the name
 * names the first claimer.
 * Seen failing: with claim() in store_cassandra_claim.c taking an unknown
 * outcome as won ("return 1" where it reads the owner at LOCAL_SERIAL),
 * the claim to the frozen node answered 1. */
static void a_claim_of_unknown_outcome_is_never_assumed(void) {
    snprintf(keyspace, sizeof keyspace, "conformance_%d", ++keyspace_n);
    store *s = open_keyspace(2000);   /* each try gives up after 2 s */
    CHECK(s, "open");
    CHECK(cassandra_node_freeze(30000) == 0, "freeze");
    int frozen = store_claim_user_name(s, "frozen_name", 501);
    thaw();
    CHECK(frozen == -1, "a claim to a frozen node answered %d, want -1 (unknown)", frozen);
    int again = -1;
    for (int i = 0; i < 20 && again == -1; i++) {   /* bounded, while the node catches up */
        if (i) usleep(500000);
        again = store_claim_user_name(s, "frozen_name", 501);
    }
    CHECK(again == 1, "the same claimer's claim after the thaw answered %d, want 1", again);
    CHECK(store_claim_user_name(s, "frozen_name", 502) == 0, "another claimer took the name");
    uint64_t owner = 0;
    CHECK(store_get_user_id(s, "frozen_name", &owner) == 1 && owner == 501, "the name names %llu, want 501",
          (unsigned long long)owner);
    char text[8192];
    size_t len = store_metrics_render(s, text, sizeof text);
    text[len < sizeof text ? len : sizeof text - 1] = 0;
    CHECK(!strstr(text, "parley_store_cql_claims_unknown_total 0\n"), "no claim was counted unknown");
    store_close(s);
    cass_discard();
}

/* ------------------------------------- prepared ids in a commit's batch */

static unsigned long metric(store *s, const char *name) {
    char text[8192], key[128];
    size_t len = store_metrics_render(s, text, sizeof text);
    text[len < sizeof text ? len : sizeof text - 1] = 0;
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(text, key);
    return at ? strtoul(at + strlen(key), NULL, 10) : 0;
}

/* Cassandra forgets the prepared ids a running store sends its commits by
 * (its keyspace dropped, which evicts them, and made again): the next
 * commit's LOGGED BATCH is answered UNPREPARED, the client prepares the
 * statement it names again and re-sends the batch, and the commit lands.
 * Seen failing: with the batch's UNPREPARED left to the caller
 * (unprepared_statement in cql_client.c answering NULL for a batch), the
 * commit after the drop fails ("rc -1"). */
static void commits_land_after_cassandra_forgets_prepared_ids(void) {
    snprintf(keyspace, sizeof keyspace, "conformance_%d", ++keyspace_n);
    store *s = open_keyspace(0);
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    /* the first commits go as text while their statements' ids come; then by id */
    for (int i = 0; i < 100 && metric(s, "parley_store_cql_statements_prepared_total") == 0; i++) {
        if (i) usleep(100000);
        store_put_cursor(b, 9, 1, 1);
        store_put_message(b, 4, 1, (const uint8_t *)"a", 1);
        CHECK(store_commit(s, b, true) == 0, "a commit before the ids are forgotten");
    }
    CHECK(metric(s, "parley_store_cql_statements_prepared_total") > 0, "no commit went by prepared id");
    unsigned long before = metric(s, "parley_store_cql_reprepares_total");
    unsigned long by_id = metric(s, "parley_store_cql_statements_prepared_total");
    cass_discard();   /* DROP KEYSPACE: Cassandra evicts its prepared statements */
    char why[256];
    CHECK(store_cql_schema_create(admin, keyspace, 1, why, sizeof why) == 0, "schema again: %s", why);
    store_put_cursor(b, 9, 1, 2);
    store_put_message(b, 4, 2, (const uint8_t *)"b", 1);
    int rc = store_commit(s, b, true);
    CHECK(rc == 0, "the commit after the ids were forgotten: rc %d", rc);
    unsigned long after = metric(s, "parley_store_cql_reprepares_total");
    CHECK(after > before, "no statement was prepared again (%lu, before %lu): the ids were not forgotten?", after,
          before);
    CHECK(metric(s, "parley_store_cql_statements_prepared_total") > by_id, "the commit did not go by id");
    uint64_t x = 0;
    CHECK(store_get_cursor(s, 9, 1, &x) == 1 && x == 2, "cursor %lu, want 2", (unsigned long)x);
    CHECK(store_last_seq(s, 4, &x) == 0 && x == 2, "last seq %lu, want 2", (unsigned long)x);
    store_batch_free(b);
    store_close(s);
    cass_discard();
}

/* ------------------------------------------------ group origins expire */

/* A group origin row (CreateGroup re-runs) lives STORE_GROUP_ORIGIN_TTL_S
 * at most, whatever the retention (0 here: everything else is kept).
 * Seen failing with ttl_left (store_cassandra_write.c) ignoring -3: "no TTL
 * read back" (the row had none). */
static void group_origins_have_a_ttl(void) {
    snprintf(keyspace, sizeof keyspace, "conformance_%d", ++keyspace_n);
    store *s = open_keyspace(0);
    CHECK(s, "open");
    store_group_origin o = {.partition = 7, .offset = 5, .user = 3, .request_id = 2, .device = 1};
    store_batch *b = store_batch_new();
    store_put_group_origin(b, &o, 41);
    int rc = store_commit(s, b, true);
    store_batch_free(b);
    store_close(s);
    CHECK(rc == 0, "commit");
    char q[160];
    snprintf(q, sizeof q, "SELECT TTL(conv) FROM %s.group_origins WHERE part = 7 AND slot = 5", keyspace);
    cql_result *r = cql_query_sync(admin, q, CQL_LOCAL_QUORUM);
    int32_t ttl = 0;
    int got = r && cql_result_status(r) == CQL_OK && cql_result_rows(r) == 1 && cql_get_int(r, 0, 0, &ttl) == 0;
    cql_result_free(r);
    cass_discard();
    CHECK(got, "no TTL read back");
    CHECK(ttl > STORE_GROUP_ORIGIN_TTL_S - 3600 && ttl <= STORE_GROUP_ORIGIN_TTL_S, "TTL %d, want about %d", ttl,
          STORE_GROUP_ORIGIN_TTL_S);
}

int main(void) {
    RUN(start_cassandra);
    if (check_failures_total == 0) {
        be = &cassandra_backend;
        for (size_t j = 0; j < sizeof conformance / sizeof conformance[0]; j++) {
            char name[128];
            snprintf(name, sizeof name, "%s[%s]", conformance[j].name, be->name);
            check_run(name, conformance[j].fn);
        }
        be = NULL;
        RUN(a_commit_to_a_frozen_node_fails_with_its_batch_intact);
        RUN(commits_land_after_cassandra_forgets_prepared_ids);
        RUN(a_claim_of_unknown_outcome_is_never_assumed);
        RUN(group_origins_have_a_ttl);
    }
    if (admin) cql_close(admin);
    cassandra_node_stop();
    CHECK_EXIT();
}
