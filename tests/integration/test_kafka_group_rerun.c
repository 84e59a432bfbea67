/* test_kafka_group_rerun.c -- a CreateGroup run again after its chat
 * node's kill -9 makes no second group (--kafka: chat/group_origin.h,
 * cluster/chat_owner.h), on a real Kafka broker, Redis Cluster and
 * Cassandra node, all nodes on one keyspace.
 *
 *   - owner_killed_before_its_offset_commit: chat node A (the only chat
 *     node, so it owns all 64 'sends' partitions) runs with the test hook
 *     PARLEY_TEST_HOLD_OFFSET_COMMIT=create_group: once a batch holding a
 *     CreateGroup is stored and answered it does not commit its input
 *     offsets. A device on the gateway node G (a raw connection, so every
 *     answer to its request id is seen) creates a group and is answered;
 *     chat node B starts, A is killed (kill -9) -- between its store commit
 *     and its Kafka commit -- and B, given A's partitions, reads the record
 *     again and runs it again. Then: the device gets a second answer to the
 *     same request id carrying the same conversation id; B counts one
 *     re-run (parley_kafka_group_reruns_total); the creator and the member
 *     each list exactly one group of that name, with that id.
 * Every wait is on observable state with a generous bound; nothing is timed.
 *
 * Seen failing on a scratch edit: group_origin_find (src/chat/group_origin.c)
 * always answering "not found" -> "the answer of the run again carries
 * conversation N, the first one M". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "kafka_node.h"
#include "node_pair.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 240000,
    PARTITIONS = 64,        /* a new store's conversation partitions (chat/partition.h) */
};
#define GROUP_NAME "rerun-group"
#define HOOK "PARLEY_TEST_HOLD_OFFSET_COMMIT"

static h_server chat_a, chat_b, gw;

static int start_node(h_server *s, const char *name, int gateway) {
    /* a raw connection waits silently for the second answer: no idle close */
    static const char *const gw_extra[] = {"--idle-timeout", "0", NULL};
    node_opts o = {.keyspace = "grouprerun", .kafka = kafka_node_brokers(), .extra = gateway ? gw_extra : NULL};
    return node_start(s, name, gateway, &o);
}

/* s owns all the partitions (/metrics) within WAIT_MS */
static int owns_all(const h_server *s) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        if (node_metric_or_zero(s, "parley_kafka_owner_partitions") == PARTITIONS) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

/* the groups named name in a conversation list: how many, and the id of the last */
static size_t groups_named(const Parley__V1__ConversationList *l, const char *name, uint64_t *id) {
    size_t n = 0;
    for (size_t i = 0; l && i < l->n_conversations; i++) {
        const Parley__V1__ConversationSummary *c = l->conversations[i];
        if (c->kind == PARLEY__V1__CONVERSATION_KIND__GROUP && strcmp(c->name, name) == 0) {
            n++;
            *id = c->conversation_id;
        }
    }
    return n;
}

static uint64_t answered_conv(const Parley__V1__Frame *f) {
    const Parley__V1__Response *r = f ? f->response : NULL;
    return r && r->result_case == PARLEY__V1__RESPONSE__RESULT_CONVERSATION && r->conversation
               ? r->conversation->conversation_id
               : 0;
}

static void owner_killed_before_its_offset_commit(void) {
    CHECK(redis_cluster_start("group-rerun") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-group-rerun") == 0, "no Cassandra");
    CHECK(kafka_node_start("group-rerun", NULL) == 0, "no Kafka broker");
    /* only A's process has the hook */
    NEED(setenv(HOOK, "create_group", 1) == 0);
    int a_started = start_node(&chat_a, "chat-a", 0) == 0;
    unsetenv(HOOK);
    CHECK(a_started, "chat node A did not start");
    CHECK(start_node(&gw, "gw-1", 1) == 0, "the gateway node did not start");
    CHECK(node_chat_linked(&gw, WAIT_MS), "the gateway node never linked to a chat node");
    CHECK(owns_all(&chat_a), "chat node A does not own the %d partitions (%g)", PARTITIONS,
          node_metric_or_zero(&chat_a, "parley_kafka_owner_partitions"));

    h_dev *creator = h_user_new(&gw, "rerun-creator");
    h_dev *member = h_user_new(&gw, "rerun-member");
    NEED(creator && member);
    h_dev_disconnect(creator);   /* its device signs in on the raw connection below */
    h_raw_opts ro = {.io_ms = 10000};
    h_raw w;
    memset(&w, 0, sizeof w);
    NEED(h_raw_open_port(gw.port, &ro, &w) == 0);
    NEED(h_raw_sign_in(&w, &creator->id) == 0);

    uint64_t members[] = {member->id.user_id};
    Parley__V1__CreateGroup cg = PARLEY__V1__CREATE_GROUP__INIT;
    cg.name = GROUP_NAME;
    cg.member_user_ids = members;
    cg.n_member_user_ids = 1;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    f.create_group = &cg;
    Parley__V1__Frame *resp = NULL;
    int st = h_raw_request(&w, &f, &resp, NULL);
    uint64_t first = answered_conv(resp);
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    CHECK(st == PARLEY__V1__STATUS__OK && first, "CreateGroup answered status %d, conversation %llu", st,
          (unsigned long long)first);

    /* B joins while A holds the batch (A takes no more records, so the
     * group cannot hand B anything before A is gone); then A dies between
     * its store commit and its Kafka commit */
    CHECK(start_node(&chat_b, "chat-b", 0) == 0, "chat node B did not start");
    h_server_kill9(&chat_a);
    CHECK(owns_all(&chat_b), "chat node B was not given A's partitions (%g)",
          node_metric_or_zero(&chat_b, "parley_kafka_owner_partitions"));

    /* B's run of the same record answers the same request id again */
    uint64_t again = 0;
    st = -1;
    uint64_t until = h_now_ms() + WAIT_MS;
    while (st < 0 && !w.eof && h_now_ms() < until) {
        st = h_raw_await_response(&w, f.request_id, 256, &resp);
        if (st >= 0) {
            again = answered_conv(resp);
            parley__v1__frame__free_unpacked(resp, NULL);
        }
    }
    CHECK(st == PARLEY__V1__STATUS__OK, "no second answer to the CreateGroup (status %d, connection %s)", st,
          w.eof ? "closed" : "open");
    CHECK(again == first, "the answer of the run again carries conversation %llu, the first one %llu",
          (unsigned long long)again, (unsigned long long)first);
    double reruns = node_metric_or_zero(&chat_b, "parley_kafka_group_reruns_total");
    CHECK(reruns == 1, "chat node B counted %g CreateGroup re-runs, want 1", reruns);

    /* one group of that name, for the creator and for the member */
    Parley__V1__ListConversations lc = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    Parley__V1__Frame lf = PARLEY__V1__FRAME__INIT;
    lf.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    lf.list_conversations = &lc;
    st = h_raw_request(&w, &lf, &resp, NULL);
    uint64_t id = 0;
    size_t n = st == PARLEY__V1__STATUS__OK && resp ? groups_named(resp->response->conversations, GROUP_NAME, &id)
                                                    : 0;
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    CHECK(n == 1 && id == first, "the creator has %zu groups named %s (the last %llu), want 1: %llu", n, GROUP_NAME,
          (unsigned long long)id, (unsigned long long)first);
    Parley__V1__ConversationList *l = NULL;
    NEED(pc_list_conversations(member->c, &l) == 0);
    n = groups_named(l, GROUP_NAME, &id);
    parley__v1__conversation_list__free_unpacked(l, NULL);
    CHECK(n == 1 && id == first, "the member has %zu groups named %s (the last %llu), want 1: %llu", n, GROUP_NAME,
          (unsigned long long)id, (unsigned long long)first);
    h_raw_close(&w);
    h_dev_free(creator);
    h_dev_free(member);
}

int main(void) {
    RUN(owner_killed_before_its_offset_commit);
    h_server_destroy(&gw);
    h_server_destroy(&chat_b);
    h_server_destroy(&chat_a);   /* killed: only its directory goes */
    kafka_node_stop();
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
