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
 *                                 finds the last seq, across buckets, and
 *                                 history's first page and an inbox scan
 *                                 reach the head's bucket (rows above the
 *                                 hint are stored: they are history)
 *   a retry of a row without its dedupe record  a server (--cassandra-fence
 *                                 on) restarted after another writer
 *                                 stored seq s and stopped before its
 *                                 logged batch (row and head, no dedupe
 *                                 record, the hint at s - 1): the retry
 *                                 of that send is answered as a
 *                                 duplicate with s, not stored again
 *                                 (the cold head load, which takes the
 *                                 rows in (hint, head] into the dedupe
 *                                 cache, comes before the send is judged
 *                                 new: writer.c handle_send), and the
 *                                 peer's inbox holds it once (the
 *                                 cold load publishes it to fan-out)
 *   conversation ids on two servers  two fenced servers on one keyspace
 *                                 with one conversation partition create
 *                                 groups in turn (each one's floor behind
 *                                 the other's last): every creation is
 *                                 answered OK with an id never given
 *                                 before (store_claim_conversation_id)
 *   a partition from before the fence  rows and hints written by an
 *                                 unfenced handle (no head): a fenced
 *                                 handle's head read sets the head from
 *                                 the hint (IF head = null), its next
 *                                 commit applies, a stale one conflicts
 *
 * Cassandra: PARLEY_TEST_CASSANDRA when set, else a node of this program's
 * own (cassandra_node.h, stopped by PID on every exit path). Each case in a
 * fresh keyspace, dropped after it. */
#include "../check.h"
#include "cassandra_node.h"
#include "fenced_store.h"
#include "harness.h"
#include "store/cql/cql.h"
#include "store/store.h"
#include "store/store_cassandra_schema.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static store *A, *B;

static void close_pair(void) { fenced_store_pair_close(&A, &B); }

/* two handles on a fresh keyspace */
static int open_pair(void) { return fenced_store_pair("fence", &A, &B); }

static int raw(const char *fmt, unsigned long long a, unsigned long long b) { return fenced_store_cql(fmt, a, b); }

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

typedef struct newest {
    unsigned long long first, n;
} newest;

static int newest_cb(void *ud, uint64_t seq, const uint8_t *msg, size_t len) {
    (void)msg;
    (void)len;
    newest *ns = ud;
    if (ns->n++ == 0) ns->first = seq;
    return 0;
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
    /* history's first page reaches the head's bucket, not the hint's:
     * the rows above the hint are stored, so they are history */
    newest ns = {0, 0};
    CHECK(store_scan_messages_back(B, conv, 0, 3, newest_cb, &ns) == 0 && ns.first == last0 + 3 && ns.n == 3,
          "history's first page starts at %llu (%llu rows), expected %llu", (unsigned long long)ns.first,
          (unsigned long long)ns.n, (unsigned long long)(last0 + 3));
    store_batch_free(a);
    /* the same for an inbox whose entries cross a bucket, hint in the
     * first: user_seq 65535 .. 65537 after a head set to 65534 by hand */
    const uint64_t last_ib = STORE_CQL_INBOX_BUCKET - 1, user2 = 15;
    CHECK(raw("UPDATE %s.inboxes SET head = %llu WHERE user_id = %llu AND bucket = 0", last_ib - 1, user2) == 0,
          "set the head of bucket 0");
    a = store_batch_new();
    for (uint64_t us = last_ib; us <= last_ib + 2; us++) store_put_inbox(a, user2, us, conv, us, 100, 1);
    store_put_inbox_head(a, user2, last_ib + 2);
    CHECK(store_commit(A, a, true) == 0, "A's inbox commit across the bucket");
    store_batch_free(a);
    CHECK(raw("UPDATE %s.inbox_heads SET user_seq = %llu WHERE user_id = %llu", last_ib, user2) == 0, "inbox hint");
    seen sn = {0, 0};
    winner_conv = conv;
    CHECK(store_scan_inbox(B, user2, last_ib - 1, 0, 100, count_entry, &sn) == 0 && sn.n == 3,
          "the inbox scan found %llu entries past the hint's bucket too, expected 3", (unsigned long long)sn.n);
    close_pair();
}

/* ------------------------------------------------- a server's retry */

#define NEED(x) CHECK((x), "%s", #x)

static void make_id(uint8_t id[16], int n) {
    for (int i = 0; i < 16; i++) id[i] = (uint8_t)(0x50 + i);
    id[0] = (uint8_t)n;
    id[1] = (uint8_t)(n >> 8);
}

/* one send of client id n on w: 0 with *seq and *dup, or -1 */
static int send_id(h_raw *w, uint64_t conv, int n, uint64_t *seq, int *dup) {
    static uint64_t rid = 1000;
    uint8_t id[16];
    make_id(id, n);
    Parley__V1__SendMessage m = PARLEY__V1__SEND_MESSAGE__INIT;
    m.conversation_id = conv;
    m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    m.body.data = (uint8_t *)"send";
    m.body.len = 4;
    m.client_msg_id.data = id;
    m.client_msg_id.len = sizeof id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = ++rid;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &m;
    if (h_raw_send_frame(w, &f) != 0) return -1;
    Parley__V1__Frame *r = NULL;
    int st = h_raw_await_response(w, f.request_id, 4096, &r);
    int ok = st == 0 && r && r->response && r->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT;
    if (ok) {
        *seq = r->response->sent->seq;
        *dup = r->response->sent->duplicate;
    } else if (r && r->response) {
        fprintf(stderr, "  send %d: status %d %s\n", n, (int)r->response->status,
                r->response->error ? r->response->error : "");
    }
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    return ok ? 0 : -1;
}

/* (conv, seq) from `from` with client id n, as a writer stopped after its
 * conditional batch leaves it: the row and the head, no dedupe record, the
 * hint one behind */
static int store_row_only(uint64_t conv, uint64_t seq, const pc_identity *from, int n) {
    uint8_t id[16];
    make_id(id, n);
    Parley__V1__Message m;
    parley__v1__message__init(&m);
    m.conversation_id = conv;
    m.seq = seq;
    m.sender_user_id = from->user_id;
    m.sender_device_id = from->device_id;
    m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    m.body.data = (uint8_t *)"stalled";
    m.body.len = 7;
    m.client_msg_id.data = id;
    m.client_msg_id.len = sizeof id;
    m.server_ts = (uint64_t)time(NULL) * 1000;
    uint8_t buf[256];
    size_t len = parley__v1__message__pack(&m, buf);
    store_batch *b = store_batch_new();
    store_put_message(b, conv, seq, buf, len);
    int rc = store_commit(A, b, true);
    store_batch_free(b);
    if (rc != 0) fprintf(stderr, "  commit of seq %llu: %d\n", (unsigned long long)seq, rc);
    return rc == 0 ? raw("UPDATE %s.conversations SET last_seq = %llu WHERE conv = %llu", seq - 1, conv) : -1;
}

static void a_retry_of_a_row_without_its_dedupe_record(void) {
    CHECK(open_pair() == 0, "open two handles");   /* the keyspace and its tables */
    h_server S;
    memset(&S, 0, sizeof S);
    const char *flags[] = {"--store", "cassandra", "--cassandra", fenced_store_hosts(),
                           "--keyspace", fenced_store_keyspace(), "--cassandra-fence", "on", NULL};
    CHECK(h_server_start(&S, flags) == 0, "serve --cassandra-fence on did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    uint64_t conv = 0, first = 0, got = 0;
    int dup = -1;
    h_raw w;
    bool open = false;
    if (!a || !b || pc_open_direct(a->c, b->id.user_id, &conv) != 0 || h_accept(b, conv) != 0) {
        CHECK(0, "users and their conversation");
        goto out;
    }
    NEED((open = h_raw_open(&S, &w) == 0) && h_raw_sign_in(&w, &a->id) == 0);
    CHECK(send_id(&w, conv, 7000, &first, &dup) == 0 && dup == 0, "the first send not stored");
    h_raw_close(&w);
    open = false;
    h_server_kill9(&S);
    CHECK(store_row_only(conv, first + 1, &a->id, 7001) == 0, "the stalled writer's row");
    CHECK(h_server_restart(&S) == 0, "restart failed");
    NEED((open = h_raw_open(&S, &w) == 0) && h_raw_sign_in(&w, &a->id) == 0);
    CHECK(send_id(&w, conv, 7001, &got, &dup) == 0, "the retry not answered");
    CHECK(dup == 1 && got == first + 1, "the retry of the stalled writer's message: seq %llu dup %d, want %llu dup 1",
          (unsigned long long)got, dup, (unsigned long long)(first + 1));
    CHECK(send_id(&w, conv, 7002, &got, &dup) == 0 && dup == 0 && got == first + 2,
          "a new id after it: seq %llu dup %d, want %llu", (unsigned long long)got, dup,
          (unsigned long long)(first + 2));
    /* the peer's inbox, from zero, once the last is there: the stalled
     * writer's message once (its fan-out log entry was in the logged batch
     * that never ran: the cold load publishes it) */
    for (int i = 0; i < 120 && !h_dev_has(b, conv, first + 2); i++) {
        if (i) h_sleep_ms(250);
        h_dev_clear(b);
        if (h_dev_reconnect(&S, b, 0) != 0 || h_dev_sync(b, 30000) != 0) continue;
    }
    CHECK(h_dev_has(b, conv, first + 2) == 1, "the peer never received seq %llu", (unsigned long long)(first + 2));
    CHECK(h_dev_has(b, conv, first + 1) == 1, "the peer received the stalled writer's seq %llu %d time(s), want 1",
          (unsigned long long)(first + 1), h_dev_has(b, conv, first + 1));
out:
    if (open) h_raw_close(&w);
    if (a) h_dev_free(a);
    if (b) h_dev_free(b);
    h_server_destroy(&S);
    close_pair();
}

/* ------------------------------------------------- conversation ids */

enum { GROUPS_EACH = 4 };

static void conversation_ids_on_two_servers(void) {
    CHECK(open_pair() == 0, "open two handles");
    /* one conversation partition: both servers' next id is the same one */
    CHECK(raw("INSERT INTO %s.counters (name, value) VALUES ('partitions', %llu)%.0llu", 1, 0) == 0, "P = 1");
    CHECK(raw("INSERT INTO %s.counters (name, value) VALUES ('user_partitions', %llu)%.0llu", 8, 0) == 0, "U = 8");
    h_server S1, S2;
    memset(&S1, 0, sizeof S1);
    memset(&S2, 0, sizeof S2);
    const char *flags[] = {"--store", "cassandra", "--cassandra", fenced_store_hosts(),
                           "--keyspace", fenced_store_keyspace(), "--cassandra-fence", "on", NULL};
    CHECK(h_server_start(&S1, flags) == 0, "server 1 did not start");
    CHECK(h_server_start(&S2, flags) == 0, "server 2 did not start");
    h_dev *u1 = h_user_new(&S1, NULL), *u2 = h_user_new(&S1, NULL);
    h_dev *u1_on_2 = u1 ? h_dev_for_identity(&S2, &u1->id, "u1-on-2", 0) : NULL;
    CHECK(u1 && u2 && u1_on_2, "users on the servers");
    uint64_t ids[2 * GROUPS_EACH] = {0};
    size_t n = 0;
    for (int i = 0; u1 && u2 && u1_on_2 && i < GROUPS_EACH; i++) {
        /* one after the other: each server's floor is behind the other's creation */
        for (int side = 0; side < 2; side++) {
            uint64_t conv = 0;
            int rc = pc_create_group(side ? u1_on_2->c : u1->c, "g", &u2->id.user_id, 1, &conv);
            CHECK(rc == 0 && conv != 0, "group %d on server %d: rc %d, conversation %llu", i, side + 1, rc,
                  (unsigned long long)conv);
            for (size_t k = 0; k < n; k++)
                CHECK(ids[k] != conv, "conversation id %llu given twice", (unsigned long long)conv);
            ids[n++] = conv;
        }
    }
    CHECK(n == 2 * GROUPS_EACH, "%zu groups made, want %d", n, 2 * GROUPS_EACH);
    if (u1) h_dev_free(u1);
    if (u2) h_dev_free(u2);
    if (u1_on_2) h_dev_free(u1_on_2);
    h_server_destroy(&S2);
    h_server_destroy(&S1);
    close_pair();
}

/* ------------------------------------------------- an upgraded keyspace */

static void a_partition_from_before_the_fence(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t conv = 13, user = 6;
    /* written by an unfenced handle: rows and hints, no head */
    store *old = fenced_store_open(false);
    CHECK(old, "unfenced open");
    store_batch *b = store_batch_new();
    char id[32];
    for (uint64_t s = 1; s <= 5; s++) {
        snprintf(id, sizeof id, "old-%llu", (unsigned long long)s);
        put_send(b, conv, s, 100, id, "old");
    }
    for (uint64_t us = 1; us <= 3; us++) store_put_inbox(b, user, us, conv, us, 100, 1);
    store_put_inbox_head(b, user, 3);
    CHECK(store_commit(old, b, true) == 0, "the unfenced commit");
    store_batch_free(b);
    store_close(old);
    /* fenced: the head reads take the hints, and the next writes apply */
    uint64_t hint = 0, head = 0;
    CHECK(store_last_seq_heads(B, conv, &hint, &head) == 0 && hint == 5 && head == 5,
          "conversation: hint %llu head %llu, want 5 and 5", (unsigned long long)hint, (unsigned long long)head);
    CHECK(store_inbox_heads(B, user, &hint, &head) == 0 && hint == 3 && head == 3,
          "inbox: hint %llu head %llu, want 3 and 3", (unsigned long long)hint, (unsigned long long)head);
    b = store_batch_new();
    put_send(b, conv, 6, 200, "new-6", "new");
    store_put_inbox(b, user, 4, conv, 6, 200, 1);
    store_put_inbox_head(b, user, 4);
    int rc = store_commit(B, b, true);
    CHECK(rc == 0, "the first fenced commit after the upgrade: %d, want 0", rc);
    store_batch_free(b);
    /* and a writer still believing the old head loses, as on any fenced partition */
    b = store_batch_new();
    put_send(b, conv, 6, 300, "late-6", "late");
    rc = store_commit(A, b, true);
    CHECK(rc == STORE_CONFLICT, "seq 6 again: %d, want STORE_CONFLICT", rc);
    store_batch_free(b);
    char body[16];
    body_of(A, conv, 6, body, sizeof body);
    CHECK(strcmp(body, "new") == 0, "seq 6 holds '%s'", body);
    close_pair();
}

/* the shared node (PARLEY_TEST_CASSANDRA), else one of this program's own */
static void start(void) {
    const char *shared = fenced_store_shared_hosts();
    CHECK(shared || cassandra_node_start("fence") == 0, "no Cassandra");
    const char *hosts = shared ? shared : cassandra_node_hosts();
    CHECK(fenced_store_connect(hosts) == 0, "no CQL connection to %s", hosts);
}

int main(void) {
    RUN(start);
    if (check_failures_total == 0) {
        RUN(one_seq_two_writers);
        RUN(one_user_seq_two_writers);
        RUN(a_bucket_boundary);
        RUN(a_head_read_after_a_stale_hint);
        RUN(a_retry_of_a_row_without_its_dedupe_record);
        RUN(conversation_ids_on_two_servers);
        RUN(a_partition_from_before_the_fence);
    }
    close_pair();
    fenced_store_disconnect();
    cassandra_node_stop();
    CHECK_EXIT();
}
