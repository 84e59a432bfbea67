/* test_writer_cache_cassandra.c -- the write path's dedupe on a real
 * Cassandra, where a batch's dedupe reads are made together
 * (chat/writer_prefetch.h): bursts of pipelined sends with new ids get one
 * seq each, consecutive, no id stored twice, and at least one burst had its
 * reads made together (parley_writer_dedupe_prefetched_total); after kill
 * -9 (caches gone) bursts of retries of every id are each answered as a
 * duplicate with its original seq, again with reads made together; a new id
 * then gets the next seq. One node for the program, stopped by PID on
 * every exit path (cassandra_node.h). */
#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "store/cql/cql.h"
#include "store/store_cassandra_schema.h"

#include <stdio.h>
#include <string.h>

#define NEED(x) CHECK((x), "%s", #x)

enum { BURST = 8, MAX_ROUNDS = 20, N_IDS = BURST * MAX_ROUNDS };

static h_server S;

static double metric(const char *name) {
    double v = -1;
    if (h_metric(&S, name, &v) != 0) return -1;
    return v;
}

static void make_id(uint8_t id[16], int n) {
    for (int i = 0; i < 16; i++) id[i] = (uint8_t)(0x50 + i);
    id[0] = (uint8_t)n;
    id[1] = (uint8_t)(n >> 8);
}

/* sends ids first..first+count-1 pipelined on w, then reads each answer:
 * 0 with seqs[] and dups[], or -1 */
static int burst(h_raw *w, uint64_t conv, int first, int count, uint64_t *seqs, int *dups) {
    static uint64_t rid = 1000;
    uint64_t rids[BURST];
    for (int i = 0; i < count; i++) {
        uint8_t id[16];
        make_id(id, first + i);
        Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
        m.conversation_id = conv;
        m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
        m.body.data = (uint8_t *)"burst";
        m.body.len = 5;
        m.client_msg_id.data = id;
        m.client_msg_id.len = sizeof id;
        Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
        f.request_id = rids[i] = ++rid;
        f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
        f.send_message = &m;
        if (h_raw_send_frame(w, &f) != 0) return -1;
    }
    for (int i = 0; i < count; i++) {
        Parley__V1__Frame *r = NULL;
        int st = h_raw_await_response(w, rids[i], 4096, &r);
        int ok = st == 0 && r && r->response && r->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT;
        if (ok) {
            seqs[i] = r->response->sent->seq;
            dups[i] = r->response->sent->duplicate;
        }
        if (r) parley__v1__frame__free_unpacked(r, NULL);
        if (!ok) return -1;
    }
    return 0;
}

static void start_cassandra(void) {
    CHECK(cassandra_node_start("test-writer-cache") == 0, "no Cassandra");
    cql_options o = {.hosts = cassandra_node_hosts()};
    cql_client *c = cql_connect(&o);
    CHECK(c, "cql_connect");
    char err[256] = "";
    int ready = cql_wait_ready(c, 60000) == 0;
    int made = ready && store_cql_schema_create(c, "wcache", 1, err, sizeof err) == 0;
    cql_close(c);
    CHECK(ready, "no CQL connection");
    CHECK(made, "schema: %s", err);
}

static uint64_t seqs[N_IDS];

static void retries_after_kill9_keep_their_seqs(void) {
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace", "wcache",
                           "--send-rate", "100000", NULL};
    CHECK(h_server_start(&S, flags) == 0, "serve --store cassandra did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);
    h_raw w;
    NEED(h_raw_open(&S, &w) == 0);
    NEED(h_raw_sign_in(&w, &a->id) == 0);
    /* bursts until one was handled as one batch (not up to the test: the
     * server pops what has arrived), at most MAX_ROUNDS */
    int n = 0;
    int dups[BURST];
    for (int round = 0; round < MAX_ROUNDS && (n == 0 || metric("parley_writer_dedupe_prefetched_total") <= 0);
         round++) {
        CHECK(burst(&w, conv, n, BURST, seqs + n, dups) == 0, "burst %d not answered", round);
        for (int i = 0; i < BURST; i++) CHECK(dups[i] == 0, "new id %d answered as a duplicate", n + i);
        n += BURST;
    }
    CHECK(metric("parley_writer_dedupe_prefetched_total") > 0, "no burst had its dedupe reads made together");
    for (int i = 1; i < n; i++)
        CHECK(seqs[i] == seqs[i - 1] + 1, "id %d got seq %llu after %llu", i, (unsigned long long)seqs[i],
              (unsigned long long)seqs[i - 1]);
    h_raw_close(&w);

    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart after kill -9 failed");
    NEED(h_raw_open(&S, &w) == 0);
    NEED(h_raw_sign_in(&w, &a->id) == 0);
    /* every id again, in bursts, until the reads were made together at
     * least once (the restarted server's counter starts at 0) */
    int rounds = 0;
    do {
        for (int first = 0; first < n; first += BURST) {
            uint64_t got[BURST];
            CHECK(burst(&w, conv, first, BURST, got, dups) == 0, "retry burst at %d not answered", first);
            for (int i = 0; i < BURST; i++)
                CHECK(dups[i] == 1 && got[i] == seqs[first + i], "retry of id %d after kill -9: seq %llu dup %d, "
                      "want %llu dup 1", first + i, (unsigned long long)got[i], dups[i],
                      (unsigned long long)seqs[first + i]);
        }
    } while (++rounds < MAX_ROUNDS && metric("parley_writer_dedupe_prefetched_total") <= 0);
    CHECK(metric("parley_writer_dedupe_prefetched_total") > 0, "no retry burst had its reads made together");
    uint64_t next[1];
    CHECK(burst(&w, conv, N_IDS + 1, 1, next, dups) == 0 && dups[0] == 0 && next[0] == seqs[n - 1] + 1,
          "a new id after the retries: seq %llu dup %d, want %llu", (unsigned long long)next[0], dups[0],
          (unsigned long long)(seqs[n - 1] + 1));
    h_raw_close(&w);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(start_cassandra);
    RUN(retries_after_kill9_keep_their_seqs);
    cassandra_node_stop();
    CHECK_EXIT();
}
