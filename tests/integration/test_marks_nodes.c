/* test_marks_nodes.c -- a read mark or delivered mark never goes backwards
 * across nodes (--kafka): two chat nodes A and B (every role) on a real
 * Kafka broker, a real Redis Cluster and a real Cassandra node, one
 * keyspace.
 *
 * Bob's device is on B; the conversation (a group alice on A made) is in a
 * 'sends' partition A owns, so A is the only node that may write bob's
 * member record there. Bob's device (a raw connection on B, so each Ack's
 * range is exact) acks the first message, marks the conversation read up
 * to its last message K (MarkRead goes to A through Kafka), bob's second
 * device (on A) syncs and acks everything (delivered K), and then the
 * device on B acks an older entry (the second message, < K). Before the
 * change B's writer raised that delivered mark itself, writing the marks
 * it remembered from its own first raise: read 0 and delivered 2. Now the
 * raise goes to A as a 'sends' record and A applies it only upward.
 *
 *   - conversation_owned_by_a: groups until one's create and accept were
 *     taken by A's owner (parley_kafka_owner_records_total grew on A, not
 *     on B; at most GROUP_TRIES groups);
 *   - older_ack_on_b_keeps_marks: after the older ack, once every delivered
 *     record the nodes logged has been applied (parley_kafka_delivered_
 *     records_logged_total on both = ..._applied_total on both, B's logged
 *     having grown) or the marks changed, GetReceipts (alice's view) says
 *     bob's read mark is K and his delivered mark K (the highest acked),
 *     and bob's own ListConversations says read K;
 *   - replayed_record_changes_nothing: a delivered record older than the
 *     marks, produced twice to the conversation's partition (a replay),
 *     is applied by A (parley_kafka_delivered_records_applied_total +2)
 *     and leaves read K, delivered K;
 *   - nodes_exit_cleanly: both nodes exit 0 on SIGTERM.
 * Every wait is on observable state with a generous bound; nothing is timed.
 *
 * What it guards (each seen failing on a scratch edit):
 *   handle_ack (writer.c) raising on the local writers as before
 *   (writer_logs_delivered ignored) -> older_ack_on_b_keeps_marks "read 1,
 *   delivered 3 (want 6 and 6)" (B wrote the marks it remembered from its
 *   first raise: read 1, the group's first seq, and the older ack's 3);
 *   raise_delivered (writer.c) applying a raise that is not higher (>= made
 *   ==, both places) -> older_ack_on_b_keeps_marks "read 6, delivered 3"
 *   and replayed_record_changes_nothing "read 6, delivered 2 (want 6 and
 *   6)". */
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "chat/partition.h"
#include "cluster/delivered_record.h"
#include "harness.h"
#include "kafka_node.h"
#include "node_pair.h"
#include "queue/kafka/kafka_log.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 180000,
    PARTITIONS = 64,           /* a new store's conversation partitions (chat/partition.h) */
    GROUP_TRIES = 24,          /* groups made until one is A's: 2^-24 that none is */
    MESSAGES = 5,
    RESPONSE_MAX_FRAMES = 10000,
};

static h_server chat_a, chat_b;
static int started;

static const char RECORDS[] = "parley_kafka_owner_records_total";
static const char LOGGED[] = "parley_kafka_delivered_records_logged_total";
static const char APPLIED[] = "parley_kafka_delivered_records_applied_total";

static double metric(const h_server *s, const char *name) { return node_metric_or_zero(s, name); }

static int start_node(h_server *s, const char *name) {
    node_opts o = {.keyspace = "marks_nodes", .kafka = kafka_node_brokers()};
    return node_start(s, name, 0, &o);
}

/* with both chat nodes up, each owns some of the partitions, all owned */
static int owners_settled(void) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        double a = metric(&chat_a, "parley_kafka_owner_partitions");
        double b = metric(&chat_b, "parley_kafka_owner_partitions");
        if (a + b == PARTITIONS && a > 0 && b > 0) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

static void start_nodes(void) {
    CHECK(redis_cluster_start("marks-nodes") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-marks-nodes") == 0, "no Cassandra");
    CHECK(kafka_node_start("marks-nodes", NULL) == 0, "no Kafka broker");
    CHECK(start_node(&chat_a, "chat-a") == 0, "chat node A did not start");
    CHECK(start_node(&chat_b, "chat-b") == 0, "chat node B did not start");
    CHECK(owners_settled(), "the chat nodes do not share the %d partitions (A %g, B %g)", PARTITIONS,
          metric(&chat_a, "parley_kafka_owner_partitions"), metric(&chat_b, "parley_kafka_owner_partitions"));
    started = 1;
}

static h_dev *alice, *bob_b, *bob_a;   /* alice on A; bob's first device on B, his second on A */
static uint64_t conv;

/* A group of alice and bob whose records A's owner took: the create and
 * bob's accept are each a record of the group's partition, and the accept
 * is answered only after its owner took the create, so that owner's
 * counter has grown by then; B's not growing says it is not B. (A's
 * growing alone could be some other record, hence both.) */
static void conversation_owned_by_a(void) {
    NEED(started);
    alice = h_user_new(&chat_a, "alice");
    bob_b = h_user_new(&chat_b, "bob");
    CHECK(alice && bob_b, "sign-ups of alice (A) and bob (B)");
    bob_a = h_device_link(&chat_a, bob_b);
    CHECK(bob_a, "bob's second device (A)");
    uint64_t bob = bob_b->id.user_id;
    for (int i = 0; i < GROUP_TRIES && !conv; i++) {
        double a0 = metric(&chat_a, RECORDS), b0 = metric(&chat_b, RECORDS);
        char name[32];
        snprintf(name, sizeof name, "marks-%d", i);
        uint64_t g = 0;
        CHECK(pc_create_group(alice->c, name, &bob, 1, &g) == 0, "create group: %s", pc_error(alice->c));
        CHECK(h_accept(bob_b, g) == 0, "bob accepts group %d", i);
        double a1 = metric(&chat_a, RECORDS), b1 = metric(&chat_b, RECORDS);
        fprintf(stderr, "  group %d (conv %llu): records taken A +%g, B +%g\n", i, (unsigned long long)g, a1 - a0,
                b1 - b0);
        if (a1 > a0 && b1 == b0) conv = g;
    }
    CHECK(conv, "none of %d groups was taken by A alone", GROUP_TRIES);
}

static uint64_t sent[MESSAGES + 1];   /* seqs of alice's messages 1..MESSAGES */
static uint64_t user_seq_of[MESSAGES + 1];

/* bob's raw connection on B: signed in as his first device, synced from
 * 0 until the last message's event; the user_seq of each message's event */
static int raw_bob_synced(h_raw *w) {
    const h_raw_opts o = {.io_ms = 30000};
    if (h_raw_open_port(chat_b.port, &o, w) || h_raw_sign_in(w, &bob_b->id)) return -1;
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    if (h_raw_send_frame(w, &f)) return -1;
    for (int i = 0; i < RESPONSE_MAX_FRAMES && !user_seq_of[MESSAGES]; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) break;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT && r->event->message &&
            r->event->message->conversation_id == conv)
            for (int k = 1; k <= MESSAGES; k++)
                if (r->event->message->seq == sent[k]) user_seq_of[k] = r->event->user_seq;
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return user_seq_of[MESSAGES] ? 0 : -1;
}

typedef struct marks_goal {
    uint64_t delivered, read;   /* wait until at least these */
} marks_goal;

static int marks_reach(const marks_goal *g, uint64_t *delivered, uint64_t *read) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        if (h_member_marks(alice, conv, bob_b->id.user_id, delivered, read) == 0 && *delivered >= g->delivered &&
            *read >= g->read)
            return 1;
        h_sleep_ms(200);
    }
    return 0;
}

/* every delivered record either node logged since has been applied by
 * an owner, B's older ack among them -- or the marks moved off want */
static int older_ack_settled(double b_logged_before, uint64_t want, uint64_t *delivered, uint64_t *read) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        if (h_member_marks(alice, conv, bob_b->id.user_id, delivered, read) == 0 &&
            (*delivered != want || *read != want))
            return 1;
        double b_logged = metric(&chat_b, LOGGED);
        double logged = metric(&chat_a, LOGGED) + b_logged;   /* read before the applied ones */
        double applied = metric(&chat_a, APPLIED) + metric(&chat_b, APPLIED);
        if (b_logged > b_logged_before && applied >= logged)
            return h_member_marks(alice, conv, bob_b->id.user_id, delivered, read) == 0;
        h_sleep_ms(200);
    }
    return 0;
}

static void older_ack_on_b_keeps_marks(void) {
    NEED(conv);
    for (int k = 1; k <= MESSAGES; k++) {
        char text[32];
        snprintf(text, sizeof text, "m%d", k);
        sent[k] = h_send(alice, conv, text);
        CHECK(sent[k], "alice's message %d", k);
    }
    uint64_t last = sent[MESSAGES];
    /* bob's devices leave libparley's acks out of it from here */
    h_dev_disconnect(bob_b);
    h_dev_disconnect(bob_a);
    h_raw *w = h_calloc(1, sizeof *w);
    NEED(w);
    if (raw_bob_synced(w)) h_raw_close(w);
    CHECK(user_seq_of[MESSAGES], "bob's sync on B never brought seq %llu", (unsigned long long)last);
    uint64_t delivered = 0, read = 0;
    /* 1. B acks the first message */
    int acked = h_raw_ack_barrier(w, user_seq_of[1], 100, RESPONSE_MAX_FRAMES);
    if (acked) h_raw_close(w);
    CHECK(acked == 0, "bob's Ack on B of user_seq %llu", (unsigned long long)user_seq_of[1]);
    int got = marks_reach(&(marks_goal){sent[1], 0}, &delivered, &read);
    if (!got) h_raw_close(w);
    CHECK(got, "bob's delivered mark never reached %llu (%llu)", (unsigned long long)sent[1],
          (unsigned long long)delivered);
    /* 2. B marks the conversation read up to the last message (the owner, A, stores it) */
    Parley__V1__MarkRead mr = PARLEY__V1__MARK_READ__INIT;
    mr.conversation_id = conv;
    mr.seq = last;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_MARK_READ;
    f.mark_read = &mr;
    int st = h_raw_request(w, &f, NULL, NULL);
    if (st != PARLEY__V1__STATUS__OK) h_raw_close(w);
    CHECK(st == PARLEY__V1__STATUS__OK, "bob's MarkRead on B: status %d", st);
    got = marks_reach(&(marks_goal){0, last}, &delivered, &read);
    if (!got) h_raw_close(w);
    CHECK(got, "bob's read mark never reached %llu (%llu)", (unsigned long long)last, (unsigned long long)read);
    /* 3. bob's device on A syncs: libparley acks everything, delivered up to the last */
    int synced = h_dev_reconnect(&chat_a, bob_a, 0) == 0 && h_dev_sync(bob_a, WAIT_MS) == 0;
    if (!synced) h_raw_close(w);
    CHECK(synced, "bob's device on A did not sync");
    got = marks_reach(&(marks_goal){last, last}, &delivered, &read);
    h_dev_disconnect(bob_a);
    if (!got) h_raw_close(w);
    CHECK(got, "bob's delivered mark never reached %llu (%llu)", (unsigned long long)last,
          (unsigned long long)delivered);
    /* 4. B acks an older entry: the second message */
    double b_logged_before = metric(&chat_b, LOGGED);
    acked = h_raw_ack_barrier(w, user_seq_of[2], 101, RESPONSE_MAX_FRAMES);
    h_raw_close(w);
    h_free(w);
    CHECK(acked == 0, "bob's Ack on B of user_seq %llu", (unsigned long long)user_seq_of[2]);
    int settled = older_ack_settled(b_logged_before, last, &delivered, &read);
    fprintf(stderr, "  after the older ack: read %llu, delivered %llu (want %llu and %llu)\n",
            (unsigned long long)read, (unsigned long long)delivered, (unsigned long long)last,
            (unsigned long long)last);
    CHECK(settled, "the older ack's raise was never applied (B logged %g, applied A %g B %g) and the marks stayed",
          metric(&chat_b, LOGGED), metric(&chat_a, APPLIED), metric(&chat_b, APPLIED));
    CHECK(read == last && delivered == last, "bob's marks after the older ack: read %llu, delivered %llu (want %llu and %llu)",
          (unsigned long long)read, (unsigned long long)delivered, (unsigned long long)last,
          (unsigned long long)last);
    /* bob's own view on a fresh sign-in (B) */
    CHECK(h_dev_reconnect(&chat_b, bob_b, 0) == 0, "bob's sign-in on B");
    Parley__V1__ConversationList *list = NULL;
    CHECK(pc_list_conversations(bob_b->c, &list) == 0 && list, "bob's ListConversations: %s", pc_error(bob_b->c));
    uint64_t listed = 0;
    int found = 0;
    for (size_t i = 0; i < list->n_conversations; i++)
        if (list->conversations[i]->conversation_id == conv) {
            found = 1;
            listed = list->conversations[i]->read_seq;
        }
    parley__v1__conversation_list__free_unpacked(list, NULL);
    CHECK(found && listed == last, "bob's ListConversations: read %llu (want %llu)%s", (unsigned long long)listed,
          (unsigned long long)last, found ? "" : ", conversation missing");
}

/* A delivered record read again (Kafka re-delivers a batch after a crash
 * or a rewind) and one older than the marks: produced straight to the
 * conversation's 'sends' partition, the older one twice. A's owner
 * applies both (its applied counter grows by 2) and changes nothing:
 * delivered stays the highest acked, read stays K. */
static void replayed_record_changes_nothing(void) {
    NEED(conv && sent[MESSAGES]);
    uint64_t last = sent[MESSAGES];
    delivered_raise older = {.conv = conv, .seq = sent[1], .n_senders = 1, .senders = {alice->id.user_id}};
    uint8_t *value = h_calloc(1, DELIVERED_RECORD_MAX);
    NEED(value);
    size_t len = delivered_record_encode(bob_b->id.user_id, &older, 1, value);
    NEED(len);
    char err[KAFKA_LOG_ERRLEN] = "";
    kafka_producer *kp = kafka_producer_new(&(kafka_producer_config){.brokers = kafka_node_brokers()}, 20000, err);
    CHECK(kp, "a producer: %s", err);
    uint32_t p = conv_partition(conv, PARTITIONS);
    double applied_before = metric(&chat_a, APPLIED);
    int queued = kafka_produce_tagged(kp, "sends", (int32_t)p, p, value, len, 0) == KAFKA_OK &&
                 kafka_produce_tagged(kp, "sends", (int32_t)p, p, value, len, 0) == KAFKA_OK &&
                 kafka_producer_flush(kp, 30000) == 0;
    kafka_producer_free(kp, 5000);
    CHECK(queued, "the two records were not produced to partition %u", p);
    int applied = 0;
    for (int i = 0; i < WAIT_MS / 200 && !applied; i++) {
        applied = metric(&chat_a, APPLIED) >= applied_before + 2;
        if (!applied) h_sleep_ms(200);
    }
    CHECK(applied, "A applied %g of the 2 records", metric(&chat_a, APPLIED) - applied_before);
    uint64_t delivered = 0, read = 0;
    CHECK(h_member_marks(alice, conv, bob_b->id.user_id, &delivered, &read) == 0, "GetReceipts");
    CHECK(read == last && delivered == last, "after the replayed older record: read %llu, delivered %llu (want %llu and %llu)",
          (unsigned long long)read, (unsigned long long)delivered, (unsigned long long)last,
          (unsigned long long)last);
}

/* both nodes stop on SIGTERM and exit 0 (an ASan build's report would not) */
static void nodes_exit_cleanly(void) {
    NEED(started);
    h_dev_free(alice);
    h_dev_free(bob_b);
    h_dev_free(bob_a);
    alice = bob_b = bob_a = NULL;
    int b_status = h_server_stop(&chat_b), a_status = h_server_stop(&chat_a);
    if (b_status) h_server_log_tail(&chat_b, 40);
    if (a_status) h_server_log_tail(&chat_a, 40);
    CHECK(a_status == 0 && b_status == 0, "exit status: A %d, B %d", a_status, b_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    RUN(start_nodes);
    RUN(conversation_owned_by_a);
    RUN(older_ack_on_b_keeps_marks);
    RUN(replayed_record_changes_nothing);
    RUN(nodes_exit_cleanly);
    h_dev_free(alice);
    h_dev_free(bob_b);
    h_dev_free(bob_a);
    h_server_destroy(&chat_b);
    h_server_destroy(&chat_a);
    kafka_node_stop();
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
