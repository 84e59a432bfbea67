/* test_writer_cache.c -- the write path's caches never answer with what is
 * no longer stored (chat/writer_cache.h, consent.c): a member removed is
 * refused at once though its record was cached; a member added back may
 * send again; a block made by the accounts owner refuses the very next send
 * of the blocked user in a direct conversation whose states a conversation
 * writer had cached, and an unblock lets it through again; a retried
 * client_msg_id is answered with its original seq from the cache, and after
 * kill -9 (the cache gone) from the store; a new id gets the next seq.
 * Each case first checks that the cache was used, so what it guards is the
 * cache and not only the store. */
#include <stdint.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;

static double metric(const char *name) {
    double v = -1;
    if (h_metric(&S, name, &v) != 0) return -1;
    return v;
}

static void removed_member_is_refused(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0, members[1] = {b->id.user_id};
    NEED(pc_create_group(a->c, "cached", members, 1, &conv) == 0);
    NEED(h_accept(b, conv) == 0);
    double hits0 = metric("parley_writer_member_cache_hits_total");
    for (int i = 0; i < 3; i++) CHECK(h_send(b, conv, "member") != 0, "send %d by a member refused", i);
    double hits1 = metric("parley_writer_member_cache_hits_total");
    CHECK(hits0 >= 0 && hits1 > hits0, "member records not served from the cache (%.0f -> %.0f)", hits0, hits1);

    CHECK(pc_remove_member(a->c, conv, b->id.user_id) == 0, "remove: %s", pc_error(a->c));
    uint64_t seq = 0;
    CHECK(pc_send_text(b->c, conv, "after removal", &seq) != 0, "a removed member's send stored (seq %llu)",
          (unsigned long long)seq);
    CHECK(pc_status(b->c) == PARLEY__V1__STATUS__FORBIDDEN, "status %d, want FORBIDDEN", pc_status(b->c));

    uint64_t back[1] = {b->id.user_id};
    CHECK(pc_add_members(a->c, conv, back, 1) == 0, "add back: %s", pc_error(a->c));
    CHECK(h_send(b, conv, "back again") != 0, "a member added back is refused: %s", pc_error(b->c));
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static void block_refuses_the_next_send(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);
    NEED(h_send(a, conv, "warm") != 0);
    double hits0 = metric("parley_writer_consent_cache_hits_total");
    for (int i = 0; i < 3; i++) CHECK(h_send(a, conv, "hello") != 0, "send %d refused", i);
    double hits1 = metric("parley_writer_consent_cache_hits_total");
    CHECK(hits0 >= 0 && hits1 > hits0, "consent states not served from the cache (%.0f -> %.0f)", hits0, hits1);

    CHECK(pc_block_user(b->c, a->id.user_id, 0) == 0, "block: %s", pc_error(b->c));
    uint64_t seq = 0;
    CHECK(pc_send_text(a->c, conv, "after the block", &seq) != 0, "a blocked user's send stored (seq %llu)",
          (unsigned long long)seq);
    CHECK(pc_status(a->c) == PARLEY__V1__STATUS__FORBIDDEN, "status %d, want FORBIDDEN", pc_status(a->c));

    CHECK(pc_block_user(b->c, a->id.user_id, 1) == 0, "unblock: %s", pc_error(b->c));
    CHECK(h_send(a, conv, "after the unblock") != 0, "refused after the unblock: %s", pc_error(a->c));
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

static int send_id(h_dev *d, uint64_t conv, const uint8_t *id, size_t len, uint64_t *seq, int *dup) {
    pc_send_args q = {.conversation_id = conv, .type = PARLEY__V1__MESSAGE_TYPE__TEXT, .body = "once",
                      .body_len = 4, .client_msg_id = id, .client_msg_id_len = len};
    *seq = 0;
    *dup = -1;
    return pc_send(d->c, &q, seq, NULL, dup);
}

static void retry_keeps_its_seq_across_kill9(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    NEED(h_accept(b, conv) == 0);
    uint8_t id[16];
    for (int i = 0; i < 16; i++) id[i] = (uint8_t)(0x30 + i);
    uint64_t s1 = 0, s = 0;
    int dup = -1;
    CHECK(send_id(a, conv, id, sizeof id, &s1, &dup) == 0 && s1 && dup == 0, "first send: seq %llu dup %d (%s)",
          (unsigned long long)s1, dup, pc_error(a->c));
    double hits0 = metric("parley_writer_dedupe_cache_hits_total");
    double reads0 = metric("parley_writer_dedupe_reads_total");
    CHECK(send_id(a, conv, id, sizeof id, &s, &dup) == 0 && s == s1 && dup == 1,
          "retry: seq %llu (want %llu) dup %d", (unsigned long long)s, (unsigned long long)s1, dup);
    double hits1 = metric("parley_writer_dedupe_cache_hits_total");
    double reads1 = metric("parley_writer_dedupe_reads_total");
    CHECK(hits1 == hits0 + 1 && reads1 == reads0, "the retry was not answered from the cache "
          "(hits %.0f -> %.0f, reads %.0f -> %.0f)", hits0, hits1, reads0, reads1);

    h_server_kill9(&S);
    CHECK(h_server_restart(&S) == 0, "restart after kill -9 failed");
    CHECK(send_id(a, conv, id, sizeof id, &s, &dup) == 0 && s == s1 && dup == 1,
          "retry after kill -9: seq %llu (want %llu) dup %d (%s)", (unsigned long long)s,
          (unsigned long long)s1, dup, pc_error(a->c));
    uint8_t id2[16];
    memcpy(id2, id, sizeof id2);
    id2[0] ^= 0xFF;
    uint64_t s2 = 0;
    CHECK(send_id(a, conv, id2, sizeof id2, &s2, &dup) == 0 && s2 == s1 + 1 && dup == 0,
          "a new id after restart: seq %llu (want %llu) dup %d", (unsigned long long)s2,
          (unsigned long long)(s1 + 1), dup);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(removed_member_is_refused);
    RUN(block_refuses_the_next_send);
    RUN(retry_keeps_its_seq_across_kill9);
    CHECK_EXIT();
}
