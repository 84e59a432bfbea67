/* test_consent.c -- consent before contact. Opening a direct conversation
 * with someone makes it a message request for them until they accept: the
 * sender may send a bounded number of messages and learns nothing else
 * (no presence, no device list, few pre-keys, few device messages). Accept,
 * decline and block; groups an invitee did not accept are requests they can
 * leave, and a blocked inviter cannot add them again. User ids are not
 * counters. */
#include <stdint.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

enum { REQUEST_LIMIT = 20 };   /* REQUEST_MESSAGES_MAX in src/chat/consent.h */

/* the summary of conv in d's list (a copy of the flag), -1 when not listed */
static int listed_as_request(h_dev *d, uint64_t conv) {
    Parley__V1__ConversationList *l = NULL;
    if (pc_list_conversations(d->c, &l) != 0) return -2;
    int r = -1;
    for (size_t i = 0; i < l->n_conversations; i++)
        if (l->conversations[i]->conversation_id == conv) r = l->conversations[i]->request;
    parley__v1__conversation_list__free_unpacked(l, NULL);
    return r;
}

static void message_request_is_bounded_until_accepted(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    CHECK(listed_as_request(b, conv) == 1, "not a request for the recipient");
    CHECK(listed_as_request(a, conv) == 0, "a request for the sender");
    for (int i = 0; i < REQUEST_LIMIT; i++)
        CHECK(h_send(a, conv, "hello?") != 0, "request message %d refused", i);
    double refused0 = 0, refused1 = 0;
    CHECK(h_metric(&S, "parley_request_limit_refused_total", &refused0) == 0, "metric missing");
    uint64_t seq = 0;
    CHECK(pc_send_text(a->c, conv, "one too many", &seq) != 0, "message %d of a request taken (seq %llu)",
          REQUEST_LIMIT + 1, (unsigned long long)seq);
    CHECK(pc_status(a->c) == PARLEY__V1__STATUS__FORBIDDEN, "status %d", pc_status(a->c));
    CHECK(h_metric(&S, "parley_request_limit_refused_total", &refused1) == 0, "metric missing");
    CHECK(refused1 == refused0 + 1, "refusal not counted (%.0f -> %.0f)", refused0, refused1);
    /* the recipient accepts: the conversation is an ordinary one */
    CHECK(h_accept(b, conv) == 0, "accept");
    CHECK(listed_as_request(b, conv) == 0, "still a request after accepting");
    CHECK(h_send(a, conv, "thanks") != 0, "send after acceptance");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void replying_accepts(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    CHECK(h_send(b, conv, "hi, who is this?") != 0, "the recipient replies");
    CHECK(listed_as_request(b, conv) == 0, "a reply did not accept the request");
    for (int i = 0; i < REQUEST_LIMIT + 1; i++)
        CHECK(h_send(a, conv, "chatting") != 0, "message %d after the reply refused", i);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void request_reveals_nothing(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    /* b publishes keys: 5 one-time pre-keys */
    uint8_t ik[32], spk[32], sig[64], otk[5][32];
    h_test_keys(1, ik, spk, sig);
    pc_prekey signed_pre_key = {1, spk, 32, sig, 64};
    pc_prekey one_time[5];
    for (int i = 0; i < 5; i++) {
        memset(otk[i], 10 + i, 32);
        one_time[i] = (pc_prekey){(uint32_t)(100 + i), otk[i], 32, NULL, 0};
    }
    CHECK(pc_upload_keys(b->c, ik, 32, &signed_pre_key, one_time, 5, NULL) == 0, "upload: %s", pc_error(b->c));
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));

    uint64_t target = b->id.user_id;
    CHECK(pc_subscribe_presence(a->c, &target, 1) != 0, "presence of a user who did not accept");
    CHECK(pc_status(a->c) == PARLEY__V1__STATUS__FORBIDDEN, "presence status %d", pc_status(a->c));
    Parley__V1__DeviceList *dl = NULL;
    CHECK(pc_get_devices(a->c, target, &dl) != 0, "device list of a user who did not accept");
    CHECK(pc_status(a->c) == PARLEY__V1__STATUS__FORBIDDEN, "devices status %d", pc_status(a->c));
    /* enough key claims for a first encrypted message, not a drain */
    int claimed = 0;
    for (int i = 0; i < 5; i++) {
        Parley__V1__KeyBundles *kb = NULL;
        if (pc_fetch_keys(a->c, target, &kb) != 0) {
            CHECK(pc_status(a->c) == PARLEY__V1__STATUS__RATE_LIMITED, "claim %d: status %d", i, pc_status(a->c));
            CHECK(pc_retry_after_ms(a->c) > 0, "no retry_after_ms");
            continue;
        }
        claimed += kb->n_devices == 1 && kb->devices[0]->one_time_pre_key != NULL;
        parley__v1__key_bundles__free_unpacked(kb, NULL);
    }
    CHECK(claimed >= 1 && claimed <= 3, "%d one-time pre-keys claimed by a stranger, want 1..3", claimed);
    /* device messages: a few, not a flood */
    int sent = 0;
    for (int i = 0; i < 15; i++) sent += pc_send_device_message(a->c, target, 1, "x", 1, NULL) == 0;
    CHECK(sent >= 1 && sent <= 10, "%d device messages to a user who did not accept, want 1..10", sent);

    /* after b accepts, a sees b as a contact */
    CHECK(h_accept(b, conv) == 0, "accept");
    CHECK(pc_subscribe_presence(a->c, &target, 1) == 0, "presence after acceptance: %s", pc_error(a->c));
    CHECK(pc_get_devices(a->c, target, &dl) == 0, "devices after acceptance: %s", pc_error(a->c));
    parley__v1__device_list__free_unpacked(dl, NULL);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void block_stops_messages_and_adds(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL);
    CHECK(a && b && c, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    CHECK(h_send(a, conv, "hi") != 0, "first message");
    CHECK(pc_block_user(b->c, a->id.user_id, 0) == 0, "block: %s", pc_error(b->c));
    CHECK(pc_send_text(a->c, conv, "hello??", NULL) != 0, "a blocked user's message was taken");
    CHECK(pc_status(a->c) == PARLEY__V1__STATUS__FORBIDDEN, "send status %d", pc_status(a->c));
    CHECK(listed_as_request(b, conv) == -1, "a conversation with a blocked user is still listed");
    uint64_t users[2] = {b->id.user_id, c->id.user_id}, group = 0;
    CHECK(pc_create_group(a->c, "g", users, 2, &group) != 0, "a blocked user added b to a new group");
    CHECK(pc_create_group(a->c, "g", &users[1], 1, &group) == 0, "group without b: %s", pc_error(a->c));
    CHECK(pc_add_members(a->c, group, users, 1) != 0, "a blocked user added b to a group");
    CHECK(pc_status(a->c) == PARLEY__V1__STATUS__FORBIDDEN, "add status %d", pc_status(a->c));
    /* unblocking returns to a request */
    CHECK(pc_block_user(b->c, a->id.user_id, 1) == 0, "unblock: %s", pc_error(b->c));
    CHECK(listed_as_request(b, conv) == 1, "after unblocking: not listed as a request");
    CHECK(h_send(a, conv, "sorry") != 0, "message after unblock");
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    h_server_destroy(&S);
}

typedef struct metric_goal {
    const char *name;
    double above;
} metric_goal;

static int pred_metric_above(void *ud) {
    metric_goal *g = ud;
    double v = 0;
    return h_metric(&S, g->name, &v) == 0 && v > g->above;
}

static void block_ends_presence_subscription(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    CHECK(h_accept(b, conv) == 0, "accept");
    uint64_t target = b->id.user_id;
    CHECK(pc_subscribe_presence(a->c, &target, 1) == 0, "presence of a contact: %s", pc_error(a->c));
    metric_goal goal = {"parley_presence_subscriptions_dropped_total", 0};
    CHECK(h_metric(&S, goal.name, &goal.above) == 0, "metric missing");
    CHECK(pc_block_user(b->c, a->id.user_id, 0) == 0, "block: %s", pc_error(b->c));
    /* the server ends a's running subscription to b */
    h_dev *both[2] = {a, b};
    CHECK(h_pump(both, 2, pred_metric_above, &goal, 10000), "a's presence subscription to b outlived the block");
    CHECK(pc_subscribe_presence(a->c, &target, 1) != 0, "a subscribed again after the block");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void group_invite_is_a_request(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL), *c = h_user_new(&S, NULL);
    CHECK(a && b && c, "users");
    uint64_t users[2] = {b->id.user_id, c->id.user_id}, group = 0;
    CHECK(pc_create_group(a->c, "strangers", users, 2, &group) == 0, "group: %s", pc_error(a->c));
    CHECK(listed_as_request(b, group) == 1, "an invite from a stranger is not a request");
    CHECK(listed_as_request(a, group) == 0, "the creator sees a request");
    CHECK(h_send(a, group, "welcome") != 0, "groups of strangers still work");
    /* b declines (leaves) and blocks the inviter, who cannot add b back */
    CHECK(pc_decline_request(b->c, group) == 0, "decline: %s", pc_error(b->c));
    CHECK(listed_as_request(b, group) == -1, "a declined group is still listed");
    CHECK(pc_block_user(b->c, a->id.user_id, 0) == 0, "block: %s", pc_error(b->c));
    CHECK(pc_add_members(a->c, group, users, 1) != 0, "the blocked inviter added b again");
    /* c accepts: no longer a request */
    CHECK(h_accept(c, group) == 0, "accept");
    CHECK(listed_as_request(c, group) == 0, "still a request after accepting");
    h_dev_free(a);
    h_dev_free(b);
    h_dev_free(c);
    h_server_destroy(&S);
}

static void user_ids_are_not_counters(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    enum { N = 4 };
    h_dev *d[N];
    for (int i = 0; i < N; i++) {
        d[i] = h_user_new(&S, NULL);
        CHECK(d[i], "user %d", i);
    }
    int consecutive = 0, small = 0;
    for (int i = 0; i < N; i++) {
        small += d[i]->id.user_id < (1ull << 32);
        if (i > 0) consecutive += d[i]->id.user_id == d[i - 1]->id.user_id + 1;
    }
    /* random 63-bit ids: the chance of either by accident is about 2^-30 */
    CHECK(consecutive == 0, "%d user ids follow the previous one", consecutive);
    CHECK(small == 0, "%d of %d user ids below 2^32", small, N);
    for (int i = 0; i < N; i++) h_dev_free(d[i]);
    h_server_destroy(&S);
}

/* A request shows its sender nothing of the recipient's activity: no read
 * mark (GetReceipts, READ push, SyncDone) and no typing either way, until
 * the recipient accepts; then both show. */
static void count_typing(void *ud, const Parley__V1__TypingIndicator *t) {
    (void)t;
    (*(int *)ud)++;
}

/* member's read_seq as viewer's GetReceipts shows it; UINT64_MAX on error */
static uint64_t read_seq_shown(h_dev *viewer, uint64_t conv, uint64_t member) {
    uint64_t delivered, read;
    return h_member_marks(viewer, conv, member, &delivered, &read) == 0 ? read : UINT64_MAX;
}

static size_t read_receipts_from(const h_dev *d, uint64_t conv, uint64_t user) {
    size_t n = 0;
    for (size_t i = 0; i < d->n_rc; i++)
        n += d->rc[i].conversation_id == conv && d->rc[i].user_id == user &&
             d->rc[i].kind == PARLEY__V1__RECEIPT_KIND__READ;
    return n;
}

static int typed(void *ud) { return *(int *)ud > 0; }

static void request_hides_read_marks_and_typing(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    CHECK(a && b, "users");
    uint64_t conv = 0;
    CHECK(pc_open_direct(a->c, b->id.user_id, &conv) == 0, "direct: %s", pc_error(a->c));
    CHECK(h_dev_sync(a, 10000) == 0 && h_dev_sync(b, 10000) == 0, "sync");
    static int a_typing, b_typing;
    a_typing = b_typing = 0;
    pc_on_typing(a->c, count_typing, &a_typing);
    pc_on_typing(b->c, count_typing, &b_typing);
    uint64_t seq = h_send(a, conv, "hello?");
    CHECK(seq != 0, "request message");
    CHECK(pc_mark_read(b->c, conv, seq) == 0, "mark read: %s", pc_error(b->c));
    CHECK(pc_typing(b->c, conv, 1) == 0, "b typing: %s", pc_error(b->c));
    CHECK(pc_typing(a->c, conv, 1) == 0, "a typing: %s", pc_error(a->c));
    /* round trips on both connections after the pushes would have been
     * posted: what was coming has come */
    for (int k = 0; k < 2; k++) {
        CHECK(read_seq_shown(a, conv, b->id.user_id) == 0, "the sender sees the recipient's read mark");
        CHECK(read_seq_shown(b, conv, b->id.user_id) == seq, "the recipient's own read mark");
    }
    CHECK(read_receipts_from(a, conv, b->id.user_id) == 0, "a READ receipt of the recipient reached the sender");
    CHECK(a_typing == 0, "the recipient's typing reached the sender (%d)", a_typing);
    CHECK(b_typing == 0, "the sender's typing reached the recipient (%d)", b_typing);
    h_dev *fresh = h_dev_for_identity(&S, &a->id, "a-again", 0);   /* SyncDone's receipts */
    CHECK(fresh && h_dev_sync(fresh, 10000) == 0, "a's fresh sync");
    CHECK(read_receipts_from(fresh, conv, b->id.user_id) == 0, "SyncDone carried the recipient's read mark");
    h_dev_free(fresh);

    CHECK(h_accept(b, conv) == 0, "accept");
    CHECK(read_seq_shown(a, conv, b->id.user_id) == seq, "after accepting, the read mark shows");
    CHECK(pc_typing(b->c, conv, 1) == 0, "b typing: %s", pc_error(b->c));
    h_dev *both[2] = {a, b};
    CHECK(h_pump(both, 2, typed, &a_typing, 10000), "after accepting, the recipient's typing does not show");
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(message_request_is_bounded_until_accepted);
    RUN(replying_accepts);
    RUN(request_reveals_nothing);
    RUN(block_stops_messages_and_adds);
    RUN(block_ends_presence_subscription);
    RUN(group_invite_is_a_request);
    RUN(user_ids_are_not_counters);
    RUN(request_hides_read_marks_and_typing);
    CHECK_EXIT();
}
