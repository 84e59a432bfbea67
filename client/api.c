/* api.c -- the typed requests of parley.h: build the Frame, run it, take the
 * expected result out of the Response. */
#include <string.h>

#include <sodium.h>

#include "internal.h"

enum {
    MAX_BODY = 65536,          /* SendMessage.body limit in parley.proto */
    MAX_CLIENT_MSG_ID = 64,
    MAX_HISTORY_LIMIT = 200,
    CLIENT_MSG_ID_BYTES = 16,
};

static int take_conversation_id(pc_client *c, Parley__V1__Frame *resp, uint64_t *out) {
    const Parley__V1__ConversationId *ci = resp->response->conversation;
    if (!ci) {
        parley__v1__frame__free_unpacked(resp, NULL);
        return pc_fail(c, -1, "protocol error: no conversation id in the answer");
    }
    if (out) *out = ci->conversation_id;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}

int pc_create_link_token(pc_client *c, char *token, size_t token_cap, uint64_t *expires_ts) {
    Parley__V1__CreateLinkToken lt = PARLEY__V1__CREATE_LINK_TOKEN__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN;
    f.create_link_token = &lt;
    Parley__V1__Frame *resp;
    /* retry-safe: a lost token simply expires unused */
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_LINK_TOKEN, &resp) < 0) return -1;
    const Parley__V1__LinkToken *t = resp->response->link_token;
    size_t n = t && t->token ? strlen(t->token) : 0;
    if (n == 0 || n >= token_cap) {
        parley__v1__frame__free_unpacked(resp, NULL);
        return pc_fail(c, -1, n ? "link token longer than the buffer" : "empty link token");
    }
    memcpy(token, t->token, n + 1);
    if (expires_ts) *expires_ts = t->expires_ts;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}

int pc_lookup_user(pc_client *c, const char *name, uint64_t *user_id) {
    Parley__V1__LookupUser lu = PARLEY__V1__LOOKUP_USER__INIT;
    lu.name = (char *)name;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    f.lookup_user = &lu;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_USER, &resp) < 0) return -1;
    if (user_id) *user_id = resp->response->user ? resp->response->user->user_id : 0;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}

int pc_open_direct(pc_client *c, uint64_t peer_user_id, uint64_t *conversation_id) {
    Parley__V1__OpenDirect od = PARLEY__V1__OPEN_DIRECT__INIT;
    od.peer_user_id = peer_user_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_OPEN_DIRECT;
    f.open_direct = &od;
    Parley__V1__Frame *resp;
    /* retry-safe: the server returns the same conversation for the pair */
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_CONVERSATION, &resp) < 0) return -1;
    return take_conversation_id(c, resp, conversation_id);
}

int pc_create_group(pc_client *c, const char *name, const uint64_t *members, size_t n,
                    uint64_t *conversation_id) {
    Parley__V1__CreateGroup cg = PARLEY__V1__CREATE_GROUP__INIT;
    cg.name = (char *)name;
    cg.member_user_ids = (uint64_t *)members;
    cg.n_member_user_ids = n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    f.create_group = &cg;
    Parley__V1__Frame *resp;
    /* not retry-safe: a second attempt would make a second group */
    if (pc_run(c, &f, false, PARLEY__V1__RESPONSE__RESULT_CONVERSATION, &resp) < 0) return -1;
    return take_conversation_id(c, resp, conversation_id);
}

int pc_add_members(pc_client *c, uint64_t conversation_id, const uint64_t *users, size_t n) {
    Parley__V1__AddMembers am = PARLEY__V1__ADD_MEMBERS__INIT;
    am.conversation_id = conversation_id;
    am.user_ids = (uint64_t *)users;
    am.n_user_ids = n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ADD_MEMBERS;
    f.add_members = &am;
    /* not retry-safe: a repeat may be refused as "already a member" after
     * the first one took effect, which would report a success as a failure */
    return pc_run_no_result(c, &f, false);
}

int pc_remove_member(pc_client *c, uint64_t conversation_id, uint64_t user_id) {
    Parley__V1__RemoveMember rm = PARLEY__V1__REMOVE_MEMBER__INIT;
    rm.conversation_id = conversation_id;
    rm.user_id = user_id;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_REMOVE_MEMBER;
    f.remove_member = &rm;
    return pc_run_no_result(c, &f, false);
}

int pc_list_conversations(pc_client *c, Parley__V1__ConversationList **out) {
    *out = NULL;
    Parley__V1__ListConversations lc = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_CONVERSATIONS, &resp) < 0) return -1;
    /* hand the list to the caller: detach it so freeing the frame spares it */
    *out = resp->response->conversations;
    resp->response->conversations = NULL;
    resp->response->result_case = PARLEY__V1__RESPONSE__RESULT__NOT_SET;
    parley__v1__frame__free_unpacked(resp, NULL);
    if (!*out) return pc_fail(c, -1, "protocol error: no conversation list in the answer");
    return 0;
}

int pc_send(pc_client *c, const pc_send_args *a, uint64_t *seq, uint64_t *ts, int *duplicate) {
    if (a->body_len > MAX_BODY)
        return pc_fail(c, PARLEY__V1__STATUS__TOO_LARGE, "message body over %d bytes", MAX_BODY);
    if (a->client_msg_id && (a->client_msg_id_len == 0 || a->client_msg_id_len > MAX_CLIENT_MSG_ID))
        return pc_fail(c, PARLEY__V1__STATUS__BAD_REQUEST, "client_msg_id must be 1..%d bytes",
                       MAX_CLIENT_MSG_ID);
    uint8_t own_id[CLIENT_MSG_ID_BYTES];
    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = a->conversation_id;
    if (a->client_msg_id) {
        sm.client_msg_id.data = (uint8_t *)a->client_msg_id;
        sm.client_msg_id.len = a->client_msg_id_len;
    } else {
        /* made once, so every retry of this send carries the same id */
        randombytes_buf(own_id, sizeof own_id);
        sm.client_msg_id.data = own_id;
        sm.client_msg_id.len = sizeof own_id;
    }
    sm.type = (Parley__V1__MessageType)a->type;
    sm.body.data = (uint8_t *)a->body;
    sm.body.len = a->body_len;
    sm.mime_type = (char *)(a->mime_type ? a->mime_type : "");
    sm.size = a->size;
    sm.ref_seq = a->ref_seq;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_SENT, &resp) < 0) return -1;
    const Parley__V1__Sent *s = resp->response->sent;
    if (seq) *seq = s ? s->seq : 0;
    if (ts) *ts = s ? s->server_ts : 0;
    if (duplicate) *duplicate = s ? s->duplicate : 0;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}

int pc_send_text(pc_client *c, uint64_t conversation_id, const char *text, uint64_t *seq) {
    pc_send_args a = {
        .conversation_id = conversation_id,
        .type = PARLEY__V1__MESSAGE_TYPE__TEXT,
        .body = text,
        .body_len = strlen(text),
    };
    return pc_send(c, &a, seq, NULL, NULL);
}

int pc_history(pc_client *c, uint64_t conversation_id, uint64_t before_seq, uint32_t limit,
               Parley__V1__HistoryPage **out) {
    *out = NULL;
    if (limit > MAX_HISTORY_LIMIT) limit = MAX_HISTORY_LIMIT;
    Parley__V1__History h = PARLEY__V1__HISTORY__INIT;
    h.conversation_id = conversation_id;
    h.before_seq = before_seq;
    h.limit = limit;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &h;
    Parley__V1__Frame *resp;
    if (pc_run(c, &f, true, PARLEY__V1__RESPONSE__RESULT_HISTORY, &resp) < 0) return -1;
    *out = resp->response->history;
    resp->response->history = NULL;
    resp->response->result_case = PARLEY__V1__RESPONSE__RESULT__NOT_SET;
    parley__v1__frame__free_unpacked(resp, NULL);
    if (!*out) return pc_fail(c, -1, "protocol error: no history page in the answer");
    return 0;
}

int pc_mark_read(pc_client *c, uint64_t conversation_id, uint64_t seq) {
    Parley__V1__MarkRead mr = PARLEY__V1__MARK_READ__INIT;
    mr.conversation_id = conversation_id;
    mr.seq = seq;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_MARK_READ;
    f.mark_read = &mr;
    return pc_run_no_result(c, &f, true);
}
