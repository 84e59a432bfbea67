/* test_cassandra_server.c -- `parley serve --store cassandra` on a real
 * Apache Cassandra (one node for the program, stopped by PID on every exit
 * path): two users sign in, one sends 50 direct messages, the other
 * receives them all once, in order; the server is killed with SIGKILL and
 * started again on the same keyspace, and a device that was offline the
 * whole time syncs all 50, once each, in order.
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

enum { WAIT_MS = 60000, N_MSGS = 50 };

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;

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
    h_sent exp[N_MSGS + 1];
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
    h_dev_free(a);
    h_dev_free(b1);
    h_dev_free(b2);
    h_server_destroy(&S);
}

int main(void) {
    RUN(start_cassandra);
    if (check_failures_total == 0) RUN(fifty_messages_in_order_across_a_kill9);
    h_server_destroy(&S);
    cassandra_node_stop();
    CHECK_EXIT();
}
