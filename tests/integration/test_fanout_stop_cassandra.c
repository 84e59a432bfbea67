/* test_fanout_stop_cassandra.c -- a stop while fan-out waits on the store
 * for a user's inbox head (issue 15's leftover): fan-out's next_user_seq
 * called abort() when that read failed, which it does when the server
 * stops and the store cuts what is in flight short, so the server died of
 * SIGABRT instead of exiting 0.
 *
 * `parley serve --store cassandra` on a real node through a CQL proxy
 * (tests/integration/cql_proxy.h) that learns the id of the inbox-head
 * read and, once told, holds every execute of it for Bob's id (never
 * forwarded, never answered). After a restart (so fan-out has no inbox
 * head cached) Alice sends Bob a message: it is acknowledged (stored), and
 * fan-out's read of Bob's inbox head hangs in the proxy. Then SIGTERM:
 *   - the server exits 0 (no abort);
 *   - with the proxy forwarding again and the server restarted, Bob, who
 *     was offline throughout, syncs the message, once (the replay at the
 *     start numbered it).
 *
 * Seen failing: with next_user_seq's abort() on a failed read put back,
 * stop_while_fanout_reads_an_inbox_head_exits_0 FAILs (the server died of
 * signal 6 at the stop).
 *
 * One Cassandra for the program (tests/integration/cassandra_node.h),
 * stopped by PID at exit; the server is stopped by PID on every path.
 * Every wait is on observable state with a generous bound. */
#include "../check.h"
#include "cassandra_node.h"
#include "cql_proxy.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

enum { WAIT_MS = 120000 };   /* a bound, not an expectation */

#define NEED(x) CHECK((x), "%s", #x)

static const char *TEXT = "sent-while-fanout-waits";

static h_server S;
static h_dev *alice, *bob;
static uint64_t conv, sent_seq;

static void start_everything(void) {
    NEED(cassandra_node_start("fanout-stop") == 0);
    int port = cql_proxy_start((int)cassandra_node_port());
    NEED(port > 0);
    cql_proxy_watch_query("FROM fanstop.inbox_heads WHERE user_id");   /* store_cassandra_read.c's R_INBOX_HEAD */
    char hosts[64];
    snprintf(hosts, sizeof hosts, "127.0.0.1:%d", port);
    const char *flags[] = {"--store", "cassandra", "--cassandra", hosts, "--keyspace", "fanstop", NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(h_direct_pair(&S, &alice, &bob, &conv) == 0);
    h_dev_disconnect(bob);   /* offline from here on: his inbox is all he gets */
    /* a restart empties fan-out's cache of inbox heads */
    int st = h_server_stop(&S);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the first stop's exit status is %d", st);
    NEED(h_server_restart(&S) == 0);
    NEED(h_dev_reconnect(&S, alice, 0) == 0);
    NEED(h_dev_sync(alice, WAIT_MS) == 0);   /* her own head read before the hold */
}

static void stop_while_fanout_reads_an_inbox_head_exits_0(void) {
    NEED(alice && bob && conv);
    uint8_t bob_id[8];   /* a bigint value: big-endian */
    for (int i = 0; i < 8; i++) bob_id[i] = (uint8_t)(bob->id.user_id >> (56 - 8 * i));
    cql_proxy_hold_executes(bob_id, sizeof bob_id);
    sent_seq = h_send(alice, conv, TEXT);
    CHECK(sent_seq > 0, "the send was not acknowledged");
    for (uint64_t until = h_now_ms() + WAIT_MS; h_now_ms() < until && cql_proxy_executes_held() == 0;)
        h_sleep_ms(50);
    CHECK(cql_proxy_executes_held() > 0, "fan-out read no inbox head of Bob's after the send");
    int st = h_server_stop(&S);
    cql_proxy_hold_executes(NULL, 0);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) h_server_log_tail(&S, 40);
    CHECK(st != -1, "the server did not exit within the harness's wait after SIGTERM");
    CHECK(!WIFSIGNALED(st), "the server died of signal %d at the stop", WTERMSIG(st));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's exit status is %d, want 0", st);
}

static void the_message_reaches_bob_once_after_a_restart(void) {
    NEED(sent_seq > 0);
    cql_proxy_hold_executes(NULL, 0);
    NEED(h_server_restart(&S) == 0);
    NEED(h_dev_reconnect(&S, bob, 0) == 0);
    NEED(h_dev_sync(bob, WAIT_MS) == 0);
    h_dev *one[1] = {bob};
    h_count_goal g = {one, 1, conv, 1, 1};
    h_pump(one, 1, h_pred_count, &g, WAIT_MS);
    const h_event *ev[16];
    size_t n = h_dev_conv_events(bob, conv, 1, ev, 16);
    int copies = 0;
    for (size_t i = 0; i < n; i++) copies += ev[i]->seq == sent_seq && h_event_body_is(ev[i], TEXT);
    if (copies != 1) h_server_log_tail(&S, 40);
    CHECK(copies == 1, "Bob has the message %d times (of %zu events), want 1", copies, n);
}

int main(void) {
    /* the program runs its own node behind the proxy, whatever PARLEY_TEST_STORE says */
    unsetenv("PARLEY_TEST_STORE");
    RUN(start_everything);
    if (check_failures_total == 0) RUN(stop_while_fanout_reads_an_inbox_head_exits_0);
    if (check_failures_total == 0) RUN(the_message_reaches_bob_once_after_a_restart);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cql_proxy_stop();
    cassandra_node_stop();
    CHECK_EXIT();
}
