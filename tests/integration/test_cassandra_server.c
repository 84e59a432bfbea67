/* test_cassandra_server.c -- `parley serve --store cassandra` on a real
 * Apache Cassandra (one node for the program, stopped by PID on every exit
 * path): two users sign in, one sends 50 direct messages, the other
 * receives them all once, in order; the server is killed with SIGKILL and
 * started again on the same keyspace, and a device that was offline the
 * whole time syncs all 50, once each, in order.
 *
 * Then the same data moves with `parley store export|import`: out of the
 * Cassandra keyspace into a new RocksDB directory, where a RocksDB server
 * gives a fresh device all 50 in order; and out of that RocksDB store
 * into a new keyspace, where a Cassandra server does the same.
 *
 * The keyspace is created before the server starts (the same
 * store_cql_schema_create the server runs at open, which then finds every
 * table there): creating twenty tables can take longer on a loaded machine
 * than the harness waits for /healthz, and test_store_cassandra covers the
 * store creating them itself. */
#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "store/cql/cql.h"
#include "store/store_cassandra_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

enum { WAIT_MS = 60000, N_MSGS = 50 };

#define NEED(x) CHECK((x), "%s", #x)

static h_server S, R, T;   /* on keyspace smoke, on RocksDB, on keyspace back */

/* what the first case sent and to whom, for the migration case */
static h_sent exp[N_MSGS + 1];
static size_t n_exp;
static uint64_t conv_id;
static pc_identity receiver;

static void start_cassandra(void) {
    CHECK(cassandra_node_start("test-cass-server") == 0, "no Cassandra");
    cql_options o = {.hosts = cassandra_node_hosts()};
    cql_client *c = cql_connect(&o);
    CHECK(c, "cql_connect");
    char err[256] = "";
    int ready = cql_wait_ready(c, 60000) == 0;
    int made = ready && store_cql_schema_create(c, "smoke", 1, err, sizeof err) == 0;
    cql_close(c);
    CHECK(ready, "no CQL connection");
    CHECK(made, "schema: %s", err);
}

static void fifty_messages_in_order_across_a_kill9(void) {
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace", "smoke",
                           "--send-rate", "100000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "serve --store cassandra did not start");
    h_dev *a = h_user_new(&S, NULL), *b1 = h_user_new(&S, NULL);
    NEED(a && b1);
    h_dev *b2 = h_device_link(&S, b1);   /* stays offline until after the kill */
    NEED(b2);
    h_dev_disconnect(b2);
    NEED(h_dev_sync(b1, WAIT_MS) == 0);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b1->id.user_id, &conv) == 0);
    NEED(h_accept(b1, conv) == 0);
    size_t n = 0;
    char text[64];
    for (int i = 0; i < N_MSGS; i++) {
        snprintf(text, sizeof text, "cassandra %d", i);
        CHECK(h_send_rec(a, conv, text, exp, &n) == 0, "send %d failed", i);
    }
    h_dev *one[1] = {b1};
    h_count_goal g = {one, 1, conv, n, 1};
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    char why[4096];
    CHECK(h_expect_exact(b1, conv, exp, n, why, sizeof why) == 0, "online receiver: %s", why);

    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart on the same keyspace failed");
    CHECK(h_dev_reconnect(&S, b2, 0) == 0, "b2 sign-in after restart failed");
    NEED(h_dev_sync(b2, WAIT_MS) == 0);
    h_dev *two[1] = {b2};
    h_count_goal g2 = {two, 1, conv, n, 1};
    h_pump(two, 1, h_pred_count, &g2, WAIT_MS);
    CHECK(h_expect_exact(b2, conv, exp, n, why, sizeof why) == 0, "fresh device after kill -9: %s", why);
    pc_stats st;
    pc_get_stats(b2->c, &st);
    CHECK(st.duplicates_dropped == 0, "the server sent %llu duplicate events to a fresh device",
          (unsigned long long)st.duplicates_dropped);
    n_exp = n;
    conv_id = conv;
    receiver = b1->id;
    h_dev_free(a);
    h_dev_free(b1);
    h_dev_free(b2);
    CHECK(h_server_stop(&S) == 0, "the server on Cassandra did not exit 0");
}

/* `parley store VERB` with the store flags `where`, stdin or stdout on
 * file, bounded by timeout(1); its exit status */
static int store_cli(const char *verb, const char *where, const char *file, int output) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "timeout 300 '%s' store %s %s %s '%s' 2>>'%s'", S.bin, verb, where,
             output ? ">" : "<", file, S.log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* a fresh device of the receiver on srv syncs the 50, once each, in order */
static int fresh_device_has_all(h_server *srv, char *why, size_t cap) {
    h_dev *d = h_dev_for_identity(srv, &receiver, "fresh", 0);
    if (!d || h_dev_sync(d, WAIT_MS) != 0) {
        snprintf(why, cap, "no sync");
        if (d) h_dev_free(d);
        return -1;
    }
    h_dev *one[1] = {d};
    h_count_goal g = {one, 1, conv_id, n_exp, 1};
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    int rc = h_expect_exact(d, conv_id, exp, n_exp, why, cap);
    h_dev_free(d);
    return rc;
}

static void export_to_rocksdb_and_back_into_cassandra(void) {
    CHECK(n_exp == N_MSGS, "the first case did not finish");
    char hosts[600], file[400], where[1200], why[4096];
    snprintf(hosts, sizeof hosts, "--store cassandra --cassandra %s", cassandra_node_hosts());
    /* Cassandra -> RocksDB: the export goes into the data directory of a
     * RocksDB server started once (so the harness made it) and stopped */
    CHECK(h_server_start(&R, (const char *const[]){"--send-rate", "100000", NULL}) == 0, "rocksdb server");
    CHECK(h_server_stop(&R) == 0, "stop the rocksdb server");
    snprintf(file, sizeof file, "%s/from-cassandra.bin", S.dir);
    snprintf(where, sizeof where, "%s --keyspace smoke", hosts);
    CHECK(store_cli("export", where, file, 1) == 0, "export from keyspace smoke (see %s)", S.log);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", R.data);
    CHECK(system(cmd) == 0, "clear %s", R.data);
    snprintf(where, sizeof where, "--data '%s'", R.data);
    CHECK(store_cli("import", where, file, 0) == 0, "import into RocksDB (see %s)", S.log);
    CHECK(h_server_restart(&R) == 0, "rocksdb server on the imported store");
    CHECK(fresh_device_has_all(&R, why, sizeof why) == 0, "on RocksDB after import: %s", why);
    CHECK(h_server_stop(&R) == 0, "stop the rocksdb server");

    /* RocksDB -> a new keyspace, and a Cassandra server on it */
    snprintf(file, sizeof file, "%s/from-rocksdb.bin", S.dir);
    CHECK(store_cli("export", where, file, 1) == 0, "export from RocksDB (see %s)", S.log);
    snprintf(where, sizeof where, "%s --keyspace back", hosts);
    CHECK(store_cli("import", where, file, 0) == 0, "import into keyspace back (see %s)", S.log);
    CHECK(store_cli("import", where, file, 0) != 0, "a second import into keyspace back was accepted");
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace", "back",
                           "--send-rate", "100000", NULL};
    CHECK(h_server_start(&T, flags) == 0, "serve on keyspace back");
    CHECK(fresh_device_has_all(&T, why, sizeof why) == 0, "on Cassandra after the round trip: %s", why);
}

int main(void) {
    RUN(start_cassandra);
    if (check_failures_total == 0) RUN(fifty_messages_in_order_across_a_kill9);
    if (check_failures_total == 0) RUN(export_to_rocksdb_and_back_into_cassandra);
    h_server_destroy(&T);
    h_server_destroy(&R);
    h_server_destroy(&S);
    cassandra_node_stop();
    CHECK_EXIT();
}
