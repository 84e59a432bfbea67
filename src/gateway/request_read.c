/* request_read.c -- see request_read.h.
 *
 * A WM_REQUEST_READ's data: the request_read_ask, then the encoded Frame
 * (a Response answering ask.request_id). */
#include "gateway/request_read.h"

#include <stdlib.h>
#include <string.h>

#include "chat/consent.h"
#include "chat/membership.h"
#include "core/metrics.h"
#include "core/test_hold.h"
#include "gateway/store_reads.h"
#include "store/store.h"

enum {
    MAX_LIST = 1000,        /* conversations in one ListConversations answer */
    HISTORY_DEFAULT = 50,
    HISTORY_MAX = 200,
};

static test_hold hold = {.env_name = "PARLEY_TEST_HOLD_REQUEST_READS",
                         .what = "History and ListConversations reads"};

/* The answer to q: resp in a Frame, packed after the ask. */
static worker_msg *answer(uint64_t conn_id, const request_read_ask *q, Parley__V1__Response *resp) {
    Parley__V1__Frame f;
    parley__v1__frame__init(&f);
    f.request_id = q->request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = resp;
    if (resp->status != PARLEY__V1__STATUS__OK) METRIC_INC(request_errors_total);   /* as conn_respond */
    size_t n = parley__v1__frame__get_packed_size(&f);
    worker_msg *m = worker_msg_new(WM_REQUEST_READ, conn_id, sizeof *q + n);
    memcpy(m->data, q, sizeof *q);
    parley__v1__frame__pack(&f, m->data + sizeof *q);
    return m;
}

static worker_msg *answer_error(uint64_t conn_id, const request_read_ask *q, Parley__V1__Status status,
                                const char *why) {
    Parley__V1__Response r;
    parley__v1__response__init(&r);
    r.status = status;
    r.error = (char *)why;
    return answer(conn_id, q, &r);
}

/* ------------------------------------------------------------ conversation list */

typedef struct id_list {
    uint64_t *ids;
    size_t n, cap;
} id_list;

static int collect_id(void *ud, uint64_t id) {
    id_list *l = ud;
    if (l->n == l->cap) {
        if (l->cap >= MAX_LIST * 2) return 1;
        l->cap = l->cap ? l->cap * 2 : 16;
        uint64_t *grown = realloc(l->ids, l->cap * sizeof *grown);
        if (!grown) return 1;
        l->ids = grown;
    }
    l->ids[l->n++] = id;
    return 0;
}

typedef struct member_lists {
    id_list members, admins;
} member_lists;

static int collect_active_member(void *ud, uint64_t user, const Parley__Store__Member *m) {
    member_lists *l = ud;
    if (m->joined_seq == 0 || m->left_seq != 0) return 0;
    if (m->admin && collect_id(&l->admins, user)) return 1;
    return collect_id(&l->members, user);
}

/* My view of the other side of a conversation: the other member of a direct
 * one, or whoever added me to a group; -1 when there is none (a group I
 * created). Not accepted: the conversation is a message request for me. */
static int view_of_other(store *st, uint64_t me, const Parley__Store__Member *m, uint64_t direct_other) {
    uint64_t other = m->direct_peer ? m->direct_peer : direct_other ? direct_other : m->added_by;
    if (!other || other == me) return -1;
    return consent_state(st, me, other);
}

static void free_summary(Parley__V1__ConversationSummary *s) {
    free(s->name);
    free(s->member_user_ids);
    free(s->admin_user_ids);
    free(s);
}

/* The summary of conversation conv for user, or NULL when it is not listed
 * (not a current member, a declined request, a direct conversation with
 * someone the user blocked, or a read failed). */
static Parley__V1__ConversationSummary *summary_of(store *st, uint64_t user, uint64_t conv) {
    Parley__Store__Member *me = NULL;
    if (membership_current(st, conv, user, &me) != 1) return NULL;
    if (me->hidden) {   /* a declined request */
        parley__store__member__free_unpacked(me, NULL);
        return NULL;
    }
    Parley__Store__Conversation *rec = NULL;
    if (store_get_conversation(st, conv, &rec) != 1) {
        parley__store__member__free_unpacked(me, NULL);
        return NULL;
    }
    Parley__V1__ConversationSummary *s = malloc(sizeof *s);
    if (!s) abort();
    parley__v1__conversation_summary__init(s);
    s->conversation_id = conv;
    s->kind = (Parley__V1__ConversationKind)rec->kind;
    s->name = strdup(rec->name);
    store_last_seq(st, conv, &s->last_seq);
    s->read_seq = me->read_seq;
    s->unread = s->last_seq > me->read_seq ? s->last_seq - me->read_seq : 0;
    member_lists ml = {{0}, {0}};
    store_scan_members(st, conv, collect_active_member, &ml);
    s->member_user_ids = ml.members.ids;
    s->n_member_user_ids = ml.members.n;
    s->admin_user_ids = ml.admins.ids;
    s->n_admin_user_ids = ml.admins.n;
    uint64_t direct_other = 0;   /* direct conversations from before direct_peer was kept */
    if (rec->kind == PARLEY__V1__CONVERSATION_KIND__DIRECT && !me->direct_peer)
        for (size_t k = 0; k < ml.members.n; k++)
            if (ml.members.ids[k] != user) direct_other = ml.members.ids[k];
    int view = view_of_other(st, user, me, direct_other);
    s->request = view >= 0 && view != CONSENT_ACCEPTED;
    /* a direct conversation with someone I blocked is not listed */
    if (rec->kind == PARLEY__V1__CONVERSATION_KIND__DIRECT && view == CONSENT_BLOCKED) {
        free_summary(s);
        s = NULL;
    }
    parley__store__conversation__free_unpacked(rec, NULL);
    parley__store__member__free_unpacked(me, NULL);
    return s;
}

static worker_msg *read_list(store *st, uint64_t conn_id, const request_read_ask *q) {
    id_list convs = {0};
    store_scan_user_conversations(st, q->user_id, collect_id, &convs);
    Parley__V1__ConversationSummary **items = calloc(convs.n ? convs.n : 1, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < convs.n && n < MAX_LIST && items; i++) {
        Parley__V1__ConversationSummary *s = summary_of(st, q->user_id, convs.ids[i]);
        if (s) items[n++] = s;
    }
    free(convs.ids);

    Parley__V1__Response r;
    Parley__V1__ConversationList list;
    parley__v1__response__init(&r);
    parley__v1__conversation_list__init(&list);
    list.conversations = items;
    list.n_conversations = n;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_CONVERSATIONS;
    r.conversations = &list;
    worker_msg *m = answer(conn_id, q, &r);
    for (size_t i = 0; i < n; i++) free_summary(items[i]);
    free(items);
    return m;
}

/* ------------------------------------------------------------ history */

typedef struct history_scan {
    Parley__V1__Message *m[HISTORY_MAX + 1];
    size_t n;
    uint64_t from_seq;      /* the member's joined_seq: nothing older is theirs to read */
    size_t bytes, max_bytes;    /* encoded messages taken; the page's byte cap */
    bool byte_capped;           /* stopped by max_bytes: older messages remain */
} history_scan;

/* A page holds whole messages up to the byte cap (at least one, so a
 * conversation of messages near the cap still reads page by page): the
 * answer is bounded before it is built, and fits a client's frame limit. */
static int collect_message(void *ud, uint64_t seq, const uint8_t *msg, size_t len) {
    history_scan *h = ud;
    if (seq < h->from_seq) return 1;
    if (h->n > 0 && h->bytes + len > h->max_bytes) {
        h->byte_capped = true;
        return 1;
    }
    Parley__V1__Message *m = parley__v1__message__unpack(NULL, len, msg);
    if (m) {
        h->m[h->n++] = m;
        h->bytes += len;
    }
    return 0;
}

static worker_msg *read_history(store *st, uint64_t conn_id, const request_read_ask *q) {
    Parley__Store__Member *me = NULL;
    int member = membership_current(st, q->conversation_id, q->user_id, &me);
    uint64_t joined = me ? me->joined_seq : 0;
    if (me) parley__store__member__free_unpacked(me, NULL);
    if (member != 1)
        return answer_error(conn_id, q, member < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__FORBIDDEN,
                            "not a member of this conversation");
    uint32_t limit = q->limit == 0 ? HISTORY_DEFAULT : q->limit > HISTORY_MAX ? HISTORY_MAX : q->limit;
    history_scan *h = calloc(1, sizeof *h);
    if (!h) abort();
    h->from_seq = joined;
    h->max_bytes = (size_t)q->max_bytes;
    /* one more than asked tells whether older messages exist */
    store_scan_messages_back(st, q->conversation_id, q->before_seq, limit + 1, collect_message, h);
    bool more = h->n > limit || h->byte_capped;
    size_t n = h->n > limit ? limit : h->n;
    if (h->byte_capped) METRIC_INC(history_pages_byte_capped_total);
    /* newest first from the scan; the page is oldest first */
    Parley__V1__Message *page[HISTORY_MAX];
    for (size_t i = 0; i < n; i++) page[i] = h->m[n - 1 - i];

    Parley__V1__Response r;
    Parley__V1__HistoryPage hp;
    parley__v1__response__init(&r);
    parley__v1__history_page__init(&hp);
    hp.messages = page;
    hp.n_messages = n;
    hp.has_more = more;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_HISTORY;
    r.history = &hp;
    worker_msg *m = answer(conn_id, q, &r);
    for (size_t i = 0; i < h->n; i++) parley__v1__message__free_unpacked(h->m[i], NULL);
    free(h);
    return m;
}

/* ------------------------------------------------------------ user lookup */

static worker_msg *read_lookup_user(store *st, uint64_t conn_id, const request_read_ask *q) {
    char name[REQUEST_READ_NAME_MAX + 1];
    memcpy(name, q->name, q->name_len);
    name[q->name_len] = 0;
    uint64_t id = 0;
    int found = store_get_user_id(st, name, &id);
    if (found != 1)
        return answer_error(conn_id, q, found < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__NOT_FOUND,
                            found < 0 ? "store read failed" : "no such user");
    Parley__V1__Response r;
    Parley__V1__UserInfo u;
    parley__v1__response__init(&r);
    parley__v1__user_info__init(&u);
    u.user_id = id;
    u.name = name;
    r.result_case = PARLEY__V1__RESPONSE__RESULT_USER;
    r.user = &u;
    return answer(conn_id, q, &r);
}

/* ------------------------------------------------------------ the read */

worker_msg *request_read_answer(store *st, uint64_t conn_id, const request_read_ask *q) {
    test_hold_wait(&hold);
    if (q->kind == REQUEST_READ_HISTORY) return read_history(st, conn_id, q);
    if (q->kind == REQUEST_READ_LIST) return read_list(st, conn_id, q);
    if (q->kind == REQUEST_READ_LOOKUP_USER && q->name_len <= REQUEST_READ_NAME_MAX)
        return read_lookup_user(st, conn_id, q);
    return answer_error(conn_id, q, PARLEY__V1__STATUS__BAD_REQUEST, "unknown request");
}

int request_read_submit(store_reads *p, uint64_t conn_id, const request_read_ask *q) {
    store_read_job job;
    memset(&job, 0, sizeof job);
    job.kind = STORE_READ_REQUEST;
    job.conn_id = conn_id;
    job.request_id = q->request_id;
    job.user_id = q->user_id;
    job.request = *q;
    return store_reads_submit(p, &job);
}

bool request_read_of(const worker_msg *m, request_read_ask *q, const uint8_t **frame, size_t *len) {
    if (m->kind != WM_REQUEST_READ || m->len < sizeof *q) return false;
    memcpy(q, m->data, sizeof *q);
    *frame = m->data + sizeof *q;
    *len = m->len - sizeof *q;
    return true;
}
