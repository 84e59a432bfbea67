/* test_cql.c -- the CQL client against a real Apache Cassandra, started once
 * for the program by scripts/cassandra.sh in a temporary directory and
 * stopped by its PID on every exit path. If Java, Maven or the jars are not
 * available the start fails and so does the test: it never skips.
 * Figures (start time, round-trip latency, async insert throughput) are
 * printed as NOTE lines, never asserted. */
#include "../check.h"
#include "cassandra_node.h"
#include "store/cql/cql.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char hosts[64];
static cql_client *cl; /* a client bound to the test keyspace */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* a statement that must succeed; returns its result (caller frees) */
static cql_result *must(cql_client *c, const char *q) {
    cql_result *r = cql_query_sync(c, q, CQL_ONE);
    if (cql_result_status(r) != CQL_OK)
        fprintf(stderr, "  %s: %s %s\n", q, cql_status_name(cql_result_status(r)), cql_result_message(r));
    return r;
}

static int ok_query(cql_client *c, const char *q) {
    cql_result *r = must(c, q);
    int ok = cql_result_status(r) == CQL_OK;
    cql_result_free(r);
    return ok;
}

static void keyspace_and_tables(void) {
    cql_options o = {.hosts = hosts};
    cql_client *c = cql_connect(&o);
    CHECK(c, "connect");
    int ready = cql_wait_ready(c, 30000) == 0;
    if (ready)
        ready = ok_query(c, "CREATE KEYSPACE parley_test WITH replication = "
                            "{'class': 'SimpleStrategy', 'replication_factor': 1}");
    cql_result *again = ready ? cql_query_sync(c, "CREATE KEYSPACE parley_test WITH replication = "
                                                   "{'class': 'SimpleStrategy', 'replication_factor': 1}", CQL_ONE)
                              : NULL;
    cql_status st = again ? cql_result_status(again) : CQL_OK;
    cql_result_free(again);
    cql_close(c);
    CHECK(ready, "no connection or keyspace not created");
    CHECK(st == CQL_ERR_ALREADY_EXISTS, "second CREATE KEYSPACE gave %s", cql_status_name(st));

    cql_options ok = {.hosts = hosts, .keyspace = "parley_test"};
    cl = cql_connect(&ok);
    CHECK(cl && cql_wait_ready(cl, 30000) == 0, "client with keyspace not ready");
    CHECK(ok_query(cl, "CREATE TABLE kv (k bigint PRIMARY KEY, name text, data blob, flag boolean, "
                       "at timestamp, n int, seqs list<bigint>)"), "create kv");
    CHECK(ok_query(cl, "CREATE TABLE pages (p bigint, seq bigint, body text, PRIMARY KEY (p, seq)) "
                       "WITH CLUSTERING ORDER BY (seq DESC)"), "create pages");
    CHECK(ok_query(cl, "CREATE TABLE names (name text PRIMARY KEY, owner bigint)"), "create names");
    CHECK(ok_query(cl, "CREATE TABLE churn (k bigint PRIMARY KEY, v text)"), "create churn");
    cql_result *bad = cql_query_sync(cl, "SELEKT nothing", CQL_ONE);
    st = cql_result_status(bad);
    cql_result_free(bad);
    CHECK(st == CQL_ERR_SYNTAX, "bad CQL gave %s", cql_status_name(st));
    bad = cql_query_sync(cl, "SELECT * FROM no_such_table", CQL_ONE);
    st = cql_result_status(bad);
    cql_result_free(bad);
    CHECK(st == CQL_ERR_INVALID, "unknown table gave %s", cql_status_name(st));
}

static void prepared_insert_and_select_every_type(void) {
    CHECK(cl, "no client");
    cql_result *err = NULL;
    cql_prepared *ins = cql_prepare(cl, "INSERT INTO kv (k, name, data, flag, at, n, seqs) VALUES (?, ?, ?, ?, ?, ?, ?)", &err);
    CHECK(ins, "prepare insert: %s", err ? cql_result_message(err) : "?");
    cql_prepared *sel = cql_prepare(cl, "SELECT k, name, data, flag, at, n, seqs FROM kv WHERE k = ?", &err);
    CHECK(sel, "prepare select: %s", err ? cql_result_message(err) : "?");
    static const uint8_t blob[] = {0, 1, 2, 0xff, 0};
    int64_t seqs[] = {3, -4, INT64_MAX};
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 77);
    cql_values_text(&v, "h\xc3\xa9llo", 6);
    cql_values_blob(&v, blob, sizeof blob);
    cql_values_bool(&v, 1);
    cql_values_timestamp(&v, 1700000000123LL);
    cql_values_int(&v, -9);
    cql_values_list_bigint(&v, seqs, 3);
    cql_result *r = cql_execute_sync(cl, ins, &v, CQL_ONE, 0, NULL, 0);
    cql_values_free(&v);
    cql_status st = cql_result_status(r);
    cql_result_free(r);
    CHECK(st == CQL_OK, "insert: %s", cql_status_name(st));

    cql_values_init(&v);
    cql_values_bigint(&v, 77);
    r = cql_execute_sync(cl, sel, &v, CQL_ONE, 0, NULL, 0);
    cql_values_free(&v);
    CHECK(cql_result_status(r) == CQL_OK && cql_result_rows(r) == 1, "select: %s rows %zu",
          cql_status_name(cql_result_status(r)), cql_result_rows(r));
    int64_t k = 0, at = 0, x = 0;
    int32_t n = 0;
    int flag = 0;
    const uint8_t *p, *d;
    size_t plen, dlen, nseq = 0;
    int good = cql_get_bigint(r, 0, 0, &k) == 0 && k == 77 &&
               cql_get_bytes(r, 0, 1, &p, &plen) == 0 && plen == 6 && memcmp(p, "h\xc3\xa9llo", 6) == 0 &&
               cql_get_bytes(r, 0, 2, &d, &dlen) == 0 && dlen == sizeof blob && memcmp(d, blob, dlen) == 0 &&
               cql_get_bool(r, 0, 3, &flag) == 0 && flag == 1 &&
               cql_get_timestamp(r, 0, 4, &at) == 0 && at == 1700000000123LL &&
               cql_get_int(r, 0, 5, &n) == 0 && n == -9 &&
               cql_get_list_len(r, 0, 6, &nseq) == 0 && nseq == 3 &&
               cql_get_list_bigint(r, 0, 6, 2, &x) == 0 && x == INT64_MAX;
    cql_result_free(r);
    CHECK(good, "values read back differ");

    /* a row that is not there: zero rows, not an error */
    cql_values_init(&v);
    cql_values_bigint(&v, 78);
    r = cql_execute_sync(cl, sel, &v, CQL_ONE, 0, NULL, 0);
    cql_values_free(&v);
    size_t rows = cql_result_rows(r);
    st = cql_result_status(r);
    cql_result_free(r);
    CHECK(st == CQL_OK && rows == 0, "missing row: %s, %zu rows", cql_status_name(st), rows);

    /* round-trip latency of a prepared select (figure only) */
    uint64_t t0 = now_ms();
    int reps = 300;
    for (int i = 0; i < reps; i++) {
        cql_values_init(&v);
        cql_values_bigint(&v, 77);
        r = cql_execute_sync(cl, sel, &v, CQL_ONE, 0, NULL, 0);
        cql_values_free(&v);
        st = cql_result_status(r);
        cql_result_free(r);
        CHECK(st == CQL_OK, "select %d: %s", i, cql_status_name(st));
    }
    check_note("cql: prepared select round trip %.3f ms (mean of %d, sync, one connection)",
               (double)(now_ms() - t0) / reps, reps);
}

typedef struct counter {
    _Atomic int done, failed;
    _Atomic int last_status;
} counter;

static void count_cb(cql_result *res, void *ud) {
    counter *c = ud;
    if (cql_result_status(res) != CQL_OK) {
        atomic_store(&c->last_status, (int)cql_result_status(res));
        atomic_fetch_add(&c->failed, 1);
    }
    cql_result_free(res);
    atomic_fetch_add(&c->done, 1);
}

static int wait_done(counter *c, int n, int timeout_ms) {
    uint64_t until = now_ms() + (uint64_t)timeout_ms;
    while (atomic_load(&c->done) < n && now_ms() < until)
        sleep_ms(5);
    return atomic_load(&c->done) == n;
}

static void paging_over_1000_rows(void) {
    CHECK(cl, "no client");
    cql_prepared *ins = cql_prepare(cl, "INSERT INTO pages (p, seq, body) VALUES (?, ?, ?)", NULL);
    cql_prepared *sel = cql_prepare(cl, "SELECT seq, body FROM pages WHERE p = ?", NULL);
    CHECK(ins && sel, "prepare");
    counter c = {0};
    for (int i = 1; i <= 1000; i++) {
        cql_values v;
        cql_values_init(&v);
        cql_values_bigint(&v, 5);
        cql_values_bigint(&v, i);
        char body[32];
        int n = snprintf(body, sizeof body, "m%d", i);
        cql_values_text(&v, body, (size_t)n);
        cql_status st = cql_execute(cl, ins, &v, CQL_ONE, 0, NULL, 0, count_cb, &c);
        cql_values_free(&v);
        CHECK(st == CQL_OK, "submit %d: %s", i, cql_status_name(st));
    }
    CHECK(wait_done(&c, 1000, 120000), "inserts done %d of 1000", atomic_load(&c.done));
    CHECK(atomic_load(&c.failed) == 0, "%d inserts failed (%s)", atomic_load(&c.failed),
          cql_status_name((cql_status)atomic_load(&c.last_status)));

    uint8_t state[1024];
    size_t state_len = 0;
    int64_t expect = 1000;
    int pages = 0;
    for (; pages < 100; pages++) {
        cql_values v;
        cql_values_init(&v);
        cql_values_bigint(&v, 5);
        cql_result *r = cql_execute_sync(cl, sel, &v, CQL_ONE, 37, state_len ? state : NULL, state_len);
        cql_values_free(&v);
        CHECK(cql_result_status(r) == CQL_OK, "page %d: %s", pages, cql_status_name(cql_result_status(r)));
        size_t rows = cql_result_rows(r);
        int in_order = rows <= 37;
        for (size_t i = 0; i < rows && in_order; i++) {
            int64_t seq;
            const uint8_t *b;
            size_t blen;
            char want[32];
            int wn = snprintf(want, sizeof want, "m%lld", (long long)expect);
            in_order = cql_get_bigint(r, i, 0, &seq) == 0 && seq == expect &&
                       cql_get_bytes(r, i, 1, &b, &blen) == 0 && blen == (size_t)wn && memcmp(b, want, blen) == 0;
            expect--;
        }
        const uint8_t *ps;
        size_t plen;
        int more = cql_result_paging_state(r, &ps, &plen);
        if (more && plen <= sizeof state) {
            memcpy(state, ps, plen);
            state_len = plen;
        }
        cql_result_free(r);
        CHECK(in_order, "page %d: rows out of order or more than the page size", pages);
        CHECK(!more || plen <= sizeof state, "paging state of %zu bytes", plen);
        if (!more) {
            pages++;
            break;
        }
    }
    CHECK(expect == 0, "read down to seq %lld, not all 1000", (long long)expect + 1);
    CHECK(pages >= 1000 / 37, "only %d pages at page size 37", pages);
}

static void reprepare_after_schema_change(void) {
    CHECK(cl, "no client");
    cql_prepared *sel = cql_prepare(cl, "SELECT v FROM churn WHERE k = ?", NULL);
    CHECK(sel, "prepare");
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 1);
    cql_result *r = cql_execute_sync(cl, sel, &v, CQL_ONE, 0, NULL, 0);
    cql_status st = cql_result_status(r);
    cql_result_free(r);
    CHECK(st == CQL_OK, "first execute: %s", cql_status_name(st));
    cql_stats before;
    cql_get_stats(cl, &before);
    /* dropping the table drops its prepared statements on the server */
    CHECK(ok_query(cl, "DROP TABLE churn"), "drop");
    CHECK(ok_query(cl, "CREATE TABLE churn (k bigint PRIMARY KEY, v text)"), "recreate");
    CHECK(ok_query(cl, "INSERT INTO churn (k, v) VALUES (1, 'after')"), "insert");
    r = cql_execute_sync(cl, sel, &v, CQL_ONE, 0, NULL, 0);
    cql_values_free(&v);
    const uint8_t *p = NULL;
    size_t n = 0;
    st = cql_result_status(r);
    int got = st == CQL_OK && cql_result_rows(r) == 1 && cql_get_bytes(r, 0, 0, &p, &n) == 0 &&
              n == 5 && memcmp(p, "after", 5) == 0;
    cql_result_free(r);
    cql_stats after;
    cql_get_stats(cl, &after);
    CHECK(got, "execute after the schema change: %s", cql_status_name(st));
    CHECK(after.reprepares > before.reprepares, "no re-prepare happened (%llu)",
          (unsigned long long)after.reprepares);
}

static void lwt_insert_if_not_exists(void) {
    CHECK(cl, "no client");
    cql_prepared *claim = cql_prepare(cl, "INSERT INTO names (name, owner) VALUES (?, ?) IF NOT EXISTS", NULL);
    CHECK(claim, "prepare");
    int applied[2];
    int64_t owner_seen = 0;
    for (int i = 0; i < 2; i++) {
        cql_values v;
        cql_values_init(&v);
        cql_values_text(&v, "alice", 5);
        cql_values_bigint(&v, 100 + i);
        cql_result *r = cql_execute_sync(cl, claim, &v, CQL_QUORUM, 0, NULL, 0);
        cql_values_free(&v);
        CHECK(cql_result_status(r) == CQL_OK, "claim %d: %s %s", i, cql_status_name(cql_result_status(r)),
              cql_result_message(r));
        applied[i] = cql_result_applied(r);
        if (i == 1) {
            int col = cql_result_column(r, "owner");
            if (col < 0 || cql_get_bigint(r, 0, (size_t)col, &owner_seen) != 0)
                owner_seen = -1;
        }
        cql_result_free(r);
    }
    CHECK(applied[0] == 1, "first claim applied=%d", applied[0]);
    CHECK(applied[1] == 0, "second claim applied=%d", applied[1]);
    CHECK(owner_seen == 100, "losing claim sees owner %lld", (long long)owner_seen);
}

static void many_async_requests_on_one_connection(void) {
    cql_options o = {.hosts = hosts, .keyspace = "parley_test", .max_streams = 512};
    cql_client *c = cql_connect(&o);
    CHECK(c && cql_wait_ready(c, 30000) == 0, "connect");
    cql_prepared *ins = cql_prepare(c, "INSERT INTO pages (p, seq, body) VALUES (?, ?, ?)", NULL);
    CHECK(ins, "prepare");
    enum { N = 5000 };
    counter k = {0};
    uint64_t t0 = now_ms();
    int submitted = 0;
    for (int i = 0; i < N; i++) {
        cql_values v;
        cql_values_init(&v);
        cql_values_bigint(&v, 9);
        cql_values_bigint(&v, i);
        cql_values_text(&v, "x", 1);
        cql_status st = cql_execute(c, ins, &v, CQL_ONE, 0, NULL, 0, count_cb, &k);
        cql_values_free(&v);
        if (st != CQL_OK)
            break;
        submitted++;
    }
    int all = wait_done(&k, submitted, 180000);
    uint64_t ms = now_ms() - t0;
    cql_stats s;
    cql_get_stats(c, &s);
    cql_result *cnt = cql_query_sync(c, "SELECT count(*) FROM pages WHERE p = 9", CQL_ONE);
    int64_t rows = -1;
    if (cql_result_status(cnt) != CQL_OK || cql_get_bigint(cnt, 0, 0, &rows) != 0)
        rows = -1;
    cql_result_free(cnt);
    if (all)
        cql_close(c);
    CHECK(submitted == N, "only %d submitted", submitted);
    CHECK(all, "%d of %d answered", atomic_load(&k.done), N);
    CHECK(atomic_load(&k.failed) == 0, "%d failed (%s)", atomic_load(&k.failed),
          cql_status_name((cql_status)atomic_load(&k.last_status)));
    CHECK(rows == N, "count(*) %lld", (long long)rows);
    CHECK(s.peak_in_flight > 1 && s.peak_in_flight <= 512, "peak in flight %d", s.peak_in_flight);
    check_note("cql: %d async prepared inserts on one connection in %llu ms (%.0f/s, peak %d in flight)",
               N, (unsigned long long)ms, ms ? N * 1000.0 / (double)ms : 0.0, s.peak_in_flight);
}

static void stopped_server_times_out_then_recovers(void) {
    cql_options o = {.hosts = hosts, .keyspace = "parley_test", .request_timeout_ms = 1500};
    cql_client *c = cql_connect(&o);
    CHECK(c && cql_wait_ready(c, 30000) == 0, "connect");
    cql_prepared *sel = cql_prepare(c, "SELECT k FROM kv WHERE k = ?", NULL);
    CHECK(sel, "prepare");
    CHECK(cassandra_node_freeze(10000) == 0, "SIGSTOP: not every thread stopped");
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 77);
    cql_result *r = cql_execute_sync(c, sel, &v, CQL_ONE, 0, NULL, 0);
    cql_status during = cql_result_status(r);
    cql_result_free(r);
    kill(cassandra_node_pid(), SIGCONT);
    cql_status after = CQL_ERR_TIMEOUT;
    uint64_t until = now_ms() + 60000;
    int tries = 0;
    while (after != CQL_OK && now_ms() < until && tries < 1000) {
        r = cql_execute_sync(c, sel, &v, CQL_ONE, 0, NULL, 0);
        after = cql_result_status(r);
        cql_result_free(r);
        tries++;
    }
    cql_values_free(&v);
    cql_stats s;
    cql_get_stats(c, &s);
    cql_close(c);
    CHECK(during == CQL_ERR_TIMEOUT, "while stopped: %s", cql_status_name(during));
    CHECK(cql_status_outcome_unknown(during), "a timeout must count as outcome unknown");
    CHECK(after == CQL_OK, "after SIGCONT: %s", cql_status_name(after));
    CHECK(s.timeouts >= 1, "timeouts counted %llu", (unsigned long long)s.timeouts);
}

/* whether pid is gone or a zombie (PID 1 reaps late here) */
static int process_gone(pid_t pid) {
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

static void killed_server_restarts_and_client_reconnects(void) {
    cql_options o = {.hosts = hosts, .request_timeout_ms = 2000};
    cql_client *c = cql_connect(&o);
    CHECK(c && cql_wait_ready(c, 30000) == 0, "connect");
    cql_prepared *sel = cql_prepare(c, "SELECT k FROM parley_test.kv WHERE k = ?", NULL);
    CHECK(sel, "prepare");
    cql_stats before;
    cql_get_stats(c, &before);
    CHECK(kill(cassandra_node_pid(), SIGKILL) == 0, "SIGKILL");
    for (int i = 0; i < 600 && !process_gone(cassandra_node_pid()); i++)
        sleep_ms(50);
    int gone = process_gone(cassandra_node_pid());
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 77);
    cql_result *r = cql_execute_sync(c, sel, &v, CQL_ONE, 0, NULL, 0);
    cql_status down = cql_result_status(r);
    cql_result_free(r);
    int restarted = gone && cassandra_node_restart() == 0;
    cql_status after = CQL_ERR_CONNECTION;
    uint64_t until = now_ms() + 120000;
    for (int tries = 0; restarted && after != CQL_OK && now_ms() < until && tries < 1000; tries++) {
        r = cql_execute_sync(c, sel, &v, CQL_ONE, 0, NULL, 0);
        after = cql_result_status(r);
        cql_result_free(r);
        if (after != CQL_OK)
            sleep_ms(100);
    }
    cql_values_free(&v);
    cql_stats s;
    cql_get_stats(c, &s);
    cql_close(c);
    CHECK(gone, "Cassandra still alive after SIGKILL");
    CHECK(down == CQL_ERR_CONNECTION || down == CQL_ERR_TIMEOUT, "while down: %s", cql_status_name(down));
    CHECK(restarted, "restart on port %ld failed", cassandra_node_port());
    CHECK(after == CQL_OK, "after restart: %s", cql_status_name(after));
    CHECK(s.connection_failures > before.connection_failures && s.reconnects > before.reconnects,
          "no reconnect counted (failures %llu, connects %llu)",
          (unsigned long long)s.connection_failures, (unsigned long long)s.reconnects);
}

static void start_cassandra(void) {
    uint64_t t0 = now_ms();
    CHECK(cassandra_node_start("test-cql") == 0, "no Cassandra");
    check_note("cql: Cassandra start (jars cached or fetched) %llu ms", (unsigned long long)(now_ms() - t0));
    snprintf(hosts, sizeof hosts, "%s", cassandra_node_hosts());
}

int main(void) {
    RUN(start_cassandra);
    if (check_failures_total == 0) {
        RUN(keyspace_and_tables);
        RUN(prepared_insert_and_select_every_type);
        RUN(paging_over_1000_rows);
        RUN(reprepare_after_schema_change);
        RUN(lwt_insert_if_not_exists);
        RUN(many_async_requests_on_one_connection);
        RUN(stopped_server_times_out_then_recovers);
        RUN(killed_server_restarts_and_client_reconnects);
    }
    cql_close(cl);
    cl = NULL;
    cassandra_node_stop();
    CHECK_EXIT();
}
