/* test_cassandra_schema.c -- the Cassandra store's schema
 * (src/store/store_cassandra_schema.c) against a real Apache Cassandra,
 * started once for the program by scripts/cassandra.sh in a temporary
 * directory and stopped by its PID on every exit path (as test_cql does).
 * If Java, Maven or the jars are not available the start fails and so does
 * the test: it never skips. */
#include "../check.h"
#include "cassandra_node.h"
#include "store/cql/cql.h"
#include "store/store_cassandra_schema.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static cql_client *cl;

static void start_cassandra(void) {
    CHECK(cassandra_node_start("test-cschema") == 0, "no Cassandra");
    cql_options o = {.hosts = cassandra_node_hosts()};
    cl = cql_connect(&o);
    CHECK(cl && cql_wait_ready(cl, 60000) == 0, "no CQL connection");
}

/* the worst case the bucket rule allows stays under Cassandra's 100 MB */
static void message_bucket_of_max_bodies_under_100_mb(void) {
    uint64_t worst = (uint64_t)STORE_CQL_MESSAGE_BUCKET * 64 * 1024;
    CHECK(worst < 100u * 1000 * 1000, "a full bucket of 64 KiB bodies is %llu bytes",
          (unsigned long long)worst);
}

static void schema_created_and_created_again(void) {
    char err[256] = "";
    CHECK(store_cql_schema_create(cl, "parley_schema", 1, err, sizeof err) == 0, "create: %s", err);
    CHECK(store_cql_schema_create(cl, "parley_schema", 1, err, sizeof err) == 0, "again: %s", err);
    CHECK(store_cql_schema_create(cl, "bad-name; DROP", 1, err, sizeof err) == -1, "bad keyspace accepted");
    cql_result *r = cql_query_sync(cl, "SELECT table_name FROM system_schema.tables "
                                       "WHERE keyspace_name = 'parley_schema'", CQL_ONE);
    size_t want = 0;
    while (store_cql_schema[want])
        want++;
    size_t got = cql_result_status(r) == CQL_OK ? cql_result_rows(r) : 0;
    cql_result_free(r);
    CHECK(got == want, "%zu tables, want %zu", got, want);
}

static int ok(const char *q, cql_values *v) {
    cql_prepared *p = cql_prepare(cl, q, NULL);
    if (!p)
        return 0;
    cql_result *r = cql_execute_sync(cl, p, v, CQL_ONE, 0, NULL, 0);
    int good = cql_result_status(r) == CQL_OK;
    if (!good)
        fprintf(stderr, "  %s: %s\n", q, cql_result_message(r));
    cql_result_free(r);
    return good;
}

/* a history page (seq < before, newest first, limit) is one slice of the
 * (conv, bucket) partition, in clustering order, with no ORDER BY */
static void history_page_is_newest_first(void) {
    for (int64_t seq = 1; seq <= 6; seq++) {
        cql_values v;
        cql_values_init(&v);
        cql_values_bigint(&v, 42);
        cql_values_bigint(&v, seq / STORE_CQL_MESSAGE_BUCKET);
        cql_values_bigint(&v, seq);
        cql_values_blob(&v, "m", 1);
        int good = ok("INSERT INTO parley_schema.messages (conv, bucket, seq, body) VALUES (?, ?, ?, ?)", &v);
        cql_values_free(&v);
        CHECK(good, "insert seq %lld", (long long)seq);
    }
    cql_prepared *p = cql_prepare(cl, "SELECT seq FROM parley_schema.messages WHERE conv = ? AND bucket = ? "
                                      "AND seq < ? LIMIT 3", NULL);
    CHECK(p, "prepare page");
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 42);
    cql_values_bigint(&v, 0);
    cql_values_bigint(&v, 5);
    cql_result *r = cql_execute_sync(cl, p, &v, CQL_LOCAL_QUORUM, 0, NULL, 0);
    cql_values_free(&v);
    int64_t seqs[3] = {0, 0, 0};
    size_t rows = cql_result_status(r) == CQL_OK ? cql_result_rows(r) : 0;
    for (size_t i = 0; i < rows && i < 3; i++)
        cql_get_bigint(r, i, 0, &seqs[i]);
    cql_result_free(r);
    CHECK(rows == 3 && seqs[0] == 4 && seqs[1] == 3 && seqs[2] == 2, "page: %zu rows %lld %lld %lld", rows,
          (long long)seqs[0], (long long)seqs[1], (long long)seqs[2]);
}

/* an ack writes only the marks of a member row; the record stays */
static void member_marks_are_columns_of_the_member_row(void) {
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 7);
    cql_values_bigint(&v, 8);
    cql_values_blob(&v, "rec", 3);
    int good = ok("INSERT INTO parley_schema.members (conv, user_id, record) VALUES (?, ?, ?)", &v);
    cql_values_free(&v);
    CHECK(good, "member");
    cql_values_init(&v);
    cql_values_bigint(&v, 5);
    cql_values_bigint(&v, 9);
    cql_values_bigint(&v, 7);
    cql_values_bigint(&v, 8);
    good = ok("UPDATE parley_schema.members SET read_seq = ?, delivered_seq = ? WHERE conv = ? AND user_id = ?", &v);
    cql_values_free(&v);
    CHECK(good, "marks");
    cql_result *r = cql_query_sync(cl, "SELECT record, read_seq, delivered_seq FROM parley_schema.members "
                                       "WHERE conv = 7 AND user_id = 8", CQL_LOCAL_QUORUM);
    const uint8_t *rec = NULL;
    size_t len = 0;
    int64_t rd = 0, dl = 0;
    int got = cql_result_status(r) == CQL_OK && cql_result_rows(r) == 1 && cql_get_bytes(r, 0, 0, &rec, &len) == 0 &&
              len == 3 && memcmp(rec, "rec", 3) == 0 && cql_get_bigint(r, 0, 1, &rd) == 0 &&
              cql_get_bigint(r, 0, 2, &dl) == 0;
    cql_result_free(r);
    CHECK(got && rd == 5 && dl == 9, "member row: record kept %d, read %lld delivered %lld", got, (long long)rd,
          (long long)dl);
}

int main(void) {
    RUN(message_bucket_of_max_bodies_under_100_mb);
    RUN(start_cassandra);
    if (check_failures_total == 0) {
        RUN(schema_created_and_created_again);
        RUN(history_page_is_newest_first);
        RUN(member_marks_are_columns_of_the_member_row);
    }
    cql_close(cl);
    cl = NULL;
    cassandra_node_stop();
    CHECK_EXIT();
}
