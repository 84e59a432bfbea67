/* test_cassandra_fence.c -- the conditional heads of the Cassandra store
 * (src/store/store_cassandra_fence.c): two store handles on one keyspace,
 * both fenced, stand for two writers (two chat nodes, or a stalled owner
 * and its successor).
 *
 *   one seq, two writers          both commit seq s of one conversation:
 *                                 exactly one applies, the other gets
 *                                 STORE_CONFLICT, and its reload finds the
 *                                 winner's row (and nothing of its own commit)
 *   one user_seq, two writers     the same for an inbox entry
 *   a bucket boundary             rows across two buckets commit as two
 *                                 conditional batches; the first seq of a
 *                                 bucket is won once; a commit whose first
 *                                 bucket loses writes nothing of the second
 *   a head read after a stale hint  the hint (conversations.last_seq,
 *                                 inbox_heads) set back, as a stalled
 *                                 writer leaves it: the head read still
 *                                 finds the last seq, across buckets
 *
 * Cassandra: PARLEY_TEST_CASSANDRA when set, else a node of this program's
 * own (cassandra_node.h, stopped by PID on every exit path). Each case in a
 * fresh keyspace, dropped after it. */
#include "../check.h"
#include "cassandra_node.h"
#include "store/cql/cql.h"
#include "store/store.h"
#include "store/store_cassandra_schema.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char hosts[128];
static cql_client *admin;
static char keyspace[32];
static int keyspace_n;
static store *A, *B;

static store *open_fenced(void) {
    char *err = NULL;
    store_options o = {.cassandra_hosts = hosts, .cassandra_keyspace = keyspace, .cassandra_fence = true};
    store *s = store_open_kind(STORE_KIND_CASSANDRA, NULL, &o, &err);
    if (!s) fprintf(stderr, "  open keyspace %s: %s\n", keyspace, err ? err : "?");
    free(err);
    return s;
}

static void close_pair(void) {
    if (A) store_close(A);
    if (B) store_close(B);
    A = B = NULL;
    if (!keyspace[0]) return;
    char q[96];
    snprintf(q, sizeof q, "DROP KEYSPACE IF EXISTS %s", keyspace);
    cql_result *r = cql_query_sync(admin, q, CQL_ONE);
    if (cql_result_status(r) != CQL_OK) fprintf(stderr, "  %s: %s\n", q, cql_result_message(r));
    cql_result_free(r);
}

/* two handles on a fresh keyspace */
static int open_pair(void) {
    close_pair();   /* a case that failed half way left its pair */
    snprintf(keyspace, sizeof keyspace, "fence_%d_%d", (int)getpid(), ++keyspace_n);
    A = open_fenced();
    B = A ? open_fenced() : NULL;
    return A && B ? 0 : -1;
}

static int raw(const char *fmt, unsigned long long a, unsigned long long b) {
    char q[256];
    snprintf(q, sizeof q, fmt, keyspace, a, b);
    cql_result *r = cql_query_sync(admin, q, CQL_LOCAL_QUORUM);
    int ok = cql_result_status(r) == CQL_OK;
    if (!ok) fprintf(stderr, "  %s: %s\n", q, cql_result_message(r));
    cql_result_free(r);
    return ok ? 0 : -1;
}

/* a message as the writer puts it: the row, the last seq, the dedupe record */
static void put_send(store_batch *b, uint64_t conv, uint64_t seq, uint64_t user, const char *client_id,
                     const char *body) {
    Parley__V1__Message m;
    parley__v1__message__init(&m);
    m.conversation_id = conv;
    m.seq = seq;
    m.sender_user_id = user;
    m.sender_device_id = 1;
    m.body.data = (uint8_t *)body;
    m.body.len = strlen(body);
    m.client_msg_id.data = (uint8_t *)client_id;
    m.client_msg_id.len = strlen(client_id);
    uint8_t buf[256];
    size_t n = parley__v1__message__pack(&m, buf);
    store_put_message(b, conv, seq, buf, n);
    store_put_client_msg(b, user, 1, (const uint8_t *)client_id, strlen(client_id), conv, seq, 0);
}

/* the body of (conv, seq), "" when absent */
static void body_of(store *s, uint64_t conv, uint64_t seq, char *out, size_t cap) {
    out[0] = 0;
    store_bytes raw_msg = {0};
    if (store_get_message(s, conv, seq, &raw_msg) != 1) return;
    Parley__V1__Message *m = parley__v1__message__unpack(NULL, raw_msg.len, raw_msg.data);
    if (m) snprintf(out, cap, "%.*s", (int)m->body.len, (const char *)m->body.data);
    if (m) parley__v1__message__free_unpacked(m, NULL);
    store_bytes_free(&raw_msg);
}

/* ------------------------------------------------- concurrent commits */

typedef struct racer {
    store *s;
    store_batch *b;
    int rc;
} racer;

static void *race(void *arg) {
    racer *r = arg;
    r->rc = store_commit(r->s, r->b, true);
    return NULL;
}

/* both batches committed at once, from two threads */
static void commit_both(store_batch *a, store_batch *b, int *rc_a, int *rc_b) {
    racer ra = {A, a, -9}, rb = {B, b, -9};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race, &ra);
    pthread_create(&tb, NULL, race, &rb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    *rc_a = ra.rc;
    *rc_b = rb.rc;
}

static void one_seq_two_writers(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t conv = 7;
    /* seq 1: A first, then B with the same belief (nothing there) */
    store_batch *a = store_batch_new(), *b = store_batch_new();
    put_send(a, conv, 1, 100, "a-1", "from A");
    put_send(b, conv, 1, 200, "b-1", "from B");
    int rc = store_commit(A, a, true);
    CHECK(rc == 0, "A's seq 1: %d", rc);
    rc = store_commit(B, b, true);
    CHECK(rc == STORE_CONFLICT, "B's seq 1 after A's: %d, expected STORE_CONFLICT", rc);
    CHECK(store_batch_count(b) > 0, "the losing batch is kept");
    CHECK(store_get_health(B) == STORE_HEALTHY, "a conflict is not a failing store");
    /* B's reload: the head is 1, the row is A's, nothing of B's commit was written */
    uint64_t hint = 0, head = 0, conv_found = 0, seq_found = 0;
    CHECK(store_last_seq_heads(B, conv, &hint, &head) == 0 && head == 1, "B reads head %llu", (unsigned long long)head);
    char body[64];
    body_of(B, conv, 1, body, sizeof body);
    CHECK(strcmp(body, "from A") == 0, "seq 1 holds '%s'", body);
    CHECK(store_get_client_msg(B, 200, 1, (const uint8_t *)"b-1", 3, &conv_found, &seq_found) == 0,
          "the loser's dedupe record was not written");
    /* seq 2, both at once: exactly one applies */
    store_batch_free(b);
    b = store_batch_new();
    put_send(a, conv, 2, 100, "a-2", "A two");
    put_send(b, conv, 2, 200, "b-2", "B two");
    int rc_a = -9, rc_b = -9;
    commit_both(a, b, &rc_a, &rc_b);
    CHECK((rc_a == 0 && rc_b == STORE_CONFLICT) || (rc_a == STORE_CONFLICT && rc_b == 0),
          "seq 2 at once: A %d, B %d; expected one 0 and one STORE_CONFLICT", rc_a, rc_b);
    body_of(A, conv, 2, body, sizeof body);
    CHECK(strcmp(body, rc_a == 0 ? "A two" : "B two") == 0, "seq 2 holds the winner's row: '%s'", body);
    CHECK(store_last_seq(A, conv, &head) == 0 && head == 2, "last seq %llu", (unsigned long long)head);
    store_batch_free(a);
    store_batch_free(b);
    close_pair();
}

typedef struct seen {
    unsigned long long n, others;
} seen;
static uint64_t winner_conv;

static int count_entry(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)user_seq;
    (void)seq;
    (void)sender;
    seen *s = ud;
    s->n++;
    if (conv != winner_conv) s->others++;
    return 0;
}

static void one_user_seq_two_writers(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t user = 42;
    store_batch *a = store_batch_new(), *b = store_batch_new();
    for (uint64_t us = 1; us <= 3; us++) {   /* both append three entries from user_seq 1 */
        store_put_inbox(a, user, us, 10, us, 100, 1);
        store_put_inbox(b, user, us, 20, us, 200, 1);
    }
    store_put_inbox_head(a, user, 3);
    store_put_inbox_head(b, user, 3);
    int rc_a = -9, rc_b = -9;
    commit_both(a, b, &rc_a, &rc_b);
    CHECK((rc_a == 0 && rc_b == STORE_CONFLICT) || (rc_a == STORE_CONFLICT && rc_b == 0),
          "user_seq 1..3 at once: A %d, B %d", rc_a, rc_b);
    winner_conv = rc_a == 0 ? 10 : 20;
    seen sn = {0, 0};
    int rc = store_scan_inbox(rc_a == 0 ? B : A, user, 0, 0, 100, count_entry, &sn);
    CHECK(rc == 0 && sn.n == 3 && sn.others == 0, "the inbox holds %llu entries, %llu not the winner's; expected 3, 0",
          (unsigned long long)sn.n, (unsigned long long)sn.others);
    /* the loser reloads and appends after the head: applied */
    uint64_t hint = 0, head = 0;
    store *loser = rc_a == 0 ? B : A;
    store_batch *l = rc_a == 0 ? b : a;
    CHECK(store_inbox_heads(loser, user, &hint, &head) == 0 && head == 3, "the loser reads head %llu",
          (unsigned long long)head);
    store_batch_free(l);
    l = store_batch_new();
    for (uint64_t us = 4; us <= 6; us++) store_put_inbox(l, user, us, 30, us, 300, 1);
    store_put_inbox_head(l, user, 6);
    rc = store_commit(loser, l, true);
    CHECK(rc == 0, "renumbered after the head: %d", rc);
    CHECK(store_inbox_head(A, user, &head) == 0 && head == 6, "inbox head %llu", (unsigned long long)head);
    store_batch_free(l);
    store_batch_free(rc_a == 0 ? a : b);
    close_pair();
}

static void a_bucket_boundary(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t conv = 9, last0 = STORE_CQL_MESSAGE_BUCKET - 1;   /* the last seq of bucket 0 */
    /* A: 1 .. last0 + 6, two conditional batches */
    store_batch *a = store_batch_new();
    char id[32];
    for (uint64_t s = 1; s <= last0 + 6; s++) {
        snprintf(id, sizeof id, "a-%llu", (unsigned long long)s);
        put_send(a, conv, s, 100, id, "A");
    }
    int rc = store_commit(A, a, true);
    CHECK(rc == 0, "A across the boundary: %d", rc);
    uint64_t head = 0;
    CHECK(store_last_seq(B, conv, &head) == 0 && head == last0 + 6, "head %llu", (unsigned long long)head);
    /* B wins nothing at the first seq of bucket 1 (expects no head there) */
    store_batch *b = store_batch_new();
    put_send(b, conv, last0 + 1, 200, "b-x", "B");
    rc = store_commit(B, b, true);
    CHECK(rc == STORE_CONFLICT, "B at the first seq of bucket 1: %d", rc);
    /* B, believing the head is last0 - 2, writes last0 - 1 .. last0 + 2:
     * bucket 0 loses, so nothing of bucket 1 is written either */
    store_batch_free(b);
    b = store_batch_new();
    for (uint64_t s = last0 - 1; s <= last0 + 2; s++) put_send(b, conv, s, 200, "b-y", "B");
    rc = store_commit(B, b, true);
    CHECK(rc == STORE_CONFLICT, "B across the boundary on a stale belief: %d", rc);
    char body[16];
    for (uint64_t s = last0 - 1; s <= last0 + 2; s++) {
        body_of(A, conv, s, body, sizeof body);
        CHECK(strcmp(body, "A") == 0, "seq %llu holds '%s'", (unsigned long long)s, body);
    }
    /* B with the right belief: applied */
    store_batch_free(b);
    b = store_batch_new();
    put_send(b, conv, last0 + 7, 200, "b-z", "B");
    rc = store_commit(B, b, true);
    CHECK(rc == 0, "B after the head: %d", rc);
    store_batch_free(a);
    store_batch_free(b);
    close_pair();
}

static void a_head_read_after_a_stale_hint(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t conv = 11, user = 5, last0 = STORE_CQL_MESSAGE_BUCKET - 1;
    store_batch *a = store_batch_new();
    char id[32];
    for (uint64_t s = 1; s <= last0 + 3; s++) {
        snprintf(id, sizeof id, "a-%llu", (unsigned long long)s);
        put_send(a, conv, s, 100, id, "A");
    }
    for (uint64_t us = 1; us <= 4; us++) store_put_inbox(a, user, us, conv, us, 100, 1);
    store_put_inbox_head(a, user, 4);
    CHECK(store_commit(A, a, true) == 0, "A's commit");
    /* the hints set back, as a writer stalled between its conditional
     * batches and its logged batch leaves them */
    CHECK(raw("UPDATE %s.conversations SET last_seq = %llu WHERE conv = %llu", last0 - 10, conv) == 0, "set hint");
    CHECK(raw("UPDATE %s.inbox_heads SET user_seq = %llu WHERE user_id = %llu", 1, user) == 0, "set inbox hint");
    uint64_t hint = 0, head = 0;
    CHECK(store_last_seq_heads(B, conv, &hint, &head) == 0, "read heads");
    CHECK(hint == last0 - 10 && head == last0 + 3, "conversation: hint %llu head %llu, expected %llu and %llu",
          (unsigned long long)hint, (unsigned long long)head, (unsigned long long)(last0 - 10),
          (unsigned long long)(last0 + 3));
    CHECK(store_last_seq(B, conv, &head) == 0 && head == last0 + 3, "store_last_seq %llu", (unsigned long long)head);
    CHECK(store_inbox_heads(B, user, &hint, &head) == 0 && hint == 1 && head == 4, "inbox: hint %llu head %llu",
          (unsigned long long)hint, (unsigned long long)head);
    CHECK(store_inbox_head(B, user, &head) == 0 && head == 4, "store_inbox_head %llu", (unsigned long long)head);
    store_batch_free(a);
    close_pair();
}

static void start(void) {
    const char *env = getenv("PARLEY_TEST_CASSANDRA");
    if (env && *env) {
        snprintf(hosts, sizeof hosts, "%s", env);
    } else {
        CHECK(cassandra_node_start("fence") == 0, "no Cassandra");
        snprintf(hosts, sizeof hosts, "%s", cassandra_node_hosts());
    }
    cql_options o = {.hosts = hosts};
    admin = cql_connect(&o);
    CHECK(admin && cql_wait_ready(admin, 60000) == 0, "no CQL connection to %s", hosts);
}

int main(void) {
    RUN(start);
    if (check_failures_total == 0) {
        RUN(one_seq_two_writers);
        RUN(one_user_seq_two_writers);
        RUN(a_bucket_boundary);
        RUN(a_head_read_after_a_stale_hint);
    }
    close_pair();
    if (admin) cql_close(admin);
    cassandra_node_stop();
    CHECK_EXIT();
}
