#include "chat/push.h"
#include "cluster/node_forward.h"

#include "chat/reply.h"
#include "core/metrics.h"

enum { MAX_DEVICES_PER_USER = 64 };

void push_to_user(server *srv, uint64_t user, const Parley__V1__Frame *frame, uint64_t skip_conn) {
    registry_entry entries[MAX_DEVICES_PER_USER];
    size_t n = node_sessions_lookup(srv, user, entries, MAX_DEVICES_PER_USER);   /* this node's and others' */
    if (n > MAX_DEVICES_PER_USER) n = MAX_DEVICES_PER_USER;
    outbound *packed = NULL;   /* packed once for all the user's connections */
    for (size_t i = 0; i < n; i++) {
        if (entries[i].conn_id == skip_conn) continue;
        if (!packed) packed = reply_pack(OUT_PUSH, 0, frame);
        outbox_push(srv->outbox, entries[i].conn_id, packed->data, packed->len);
    }
    outbound_free(packed);
}

void push_frame_receipt(Parley__V1__Frame *f, Parley__V1__Receipt *r, uint64_t conv, uint64_t about_user,
                        Parley__V1__ReceiptKind kind, uint64_t seq) {
    parley__v1__frame__init(f);
    parley__v1__receipt__init(r);
    r->conversation_id = conv;
    r->user_id = about_user;
    r->kind = kind;
    r->seq = seq;
    f->body_case = PARLEY__V1__FRAME__BODY_RECEIPT;
    f->receipt = r;
}

void push_frame_presence(Parley__V1__Frame *f, Parley__V1__Presence *p, uint64_t user, int online,
                         uint64_t last_seen_ms) {
    parley__v1__frame__init(f);
    parley__v1__presence__init(p);
    p->user_id = user;
    p->online = online;
    p->last_seen_ts = last_seen_ms;
    f->body_case = PARLEY__V1__FRAME__BODY_PRESENCE;
    f->presence = p;
}

void push_receipt(server *srv, uint64_t to_user, uint64_t conv, uint64_t about_user,
                  Parley__V1__ReceiptKind kind, uint64_t seq, uint64_t skip_conn) {
    Parley__V1__Frame f;
    Parley__V1__Receipt r;
    push_frame_receipt(&f, &r, conv, about_user, kind, seq);
    METRIC_INC(receipts_total);
    push_to_user(srv, to_user, &f, skip_conn);
}
