/* consent.c -- message requests (accept, decline, block) and group
 * administration beyond membership (rename). All are idempotent on the
 * server, so they are retried across reconnects. */
#include "internal.h"

int pc_accept_request(pc_client *c, uint64_t conversation_id) {
    Parley__V1__AcceptRequest q = PARLEY__V1__ACCEPT_REQUEST__INIT;
    q.conversation_id = conversation_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ACCEPT_REQUEST;
    f.accept_request = &q;
    return pc_run_no_result(c, &f, true);
}

int pc_decline_request(pc_client *c, uint64_t conversation_id) {
    Parley__V1__DeclineRequest q = PARLEY__V1__DECLINE_REQUEST__INIT;
    q.conversation_id = conversation_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_DECLINE_REQUEST;
    f.decline_request = &q;
    /* not retried: a group left by the first attempt makes a second fail */
    return pc_run_no_result(c, &f, false);
}

int pc_block_user(pc_client *c, uint64_t user_id, int unblock) {
    Parley__V1__BlockUser q = PARLEY__V1__BLOCK_USER__INIT;
    q.user_id = user_id;
    q.unblock = unblock != 0;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_BLOCK_USER;
    f.block_user = &q;
    return pc_run_no_result(c, &f, true);
}

int pc_rename_group(pc_client *c, uint64_t conversation_id, const char *name) {
    Parley__V1__RenameGroup q = PARLEY__V1__RENAME_GROUP__INIT;
    q.conversation_id = conversation_id;
    q.name = (char *)name;   /* protobuf-c fields are not const */
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_RENAME_GROUP;
    f.rename_group = &q;
    /* not retried: a second attempt would write a second RENAMED message */
    return pc_run_no_result(c, &f, false);
}
