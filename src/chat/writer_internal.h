/* writer_internal.h -- what the write path's files share: the writer's
 * state and the helpers its request handlers use. Only src/chat includes it.
 *
 * A handler runs on the writer thread. It validates, puts its changes into
 * w->batch, and answers with writer_answer (sent after the commit) or
 * writer_fail (sent at once: a refusal changes nothing). Member records it
 * changes go through writer_member_for_update, so that several requests in
 * one batch that touch the same record (a send marks it read, an ack marks
 * it delivered) all land. */
#ifndef PARLEY_CHAT_WRITER_INTERNAL_H
#define PARLEY_CHAT_WRITER_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "chat/accounts_names.h"
#include "chat/marks_cache.h"
#include "chat/reply.h"
#include "chat/writer_cache.h"
#include "chat/writer_prefetch.h"
#include "chat/writer.h"
#include "core/mpsc.h"
#include "core/u64map.h"

enum {
    QUEUE_CAP = 65536,
    BATCH_MAX = 512,
    RECEIPT_COALESCE_MS = 250,   /* DELIVERED receipts wait at most this long */
    NOTES_MAX = 65536,           /* ... or until this many raises are due */
    MAX_NAME = 32,
    MAX_DEVICE_NAME = 64,
    MAX_GROUP_NAME = 128,
    MAX_BODY = 65536,
    MAX_CLIENT_MSG_ID = 64,
    CONV_CACHE_MAX = 1 << 20,
    ACK_SCAN_MAX = 4096,
    /* steady-rate batching (fsync=batch on a local store): a busy writer (its
     * last pop took requests) that finds fewer than GATHER_WANT queued waits
     * up to GATHER_US for more
     * before it handles and commits them, so a steady trickle pays the
     * per-commit costs (WriteBatch, fsync, wake-up, hand-off to fan-out)
     * once per few requests. A queue of GATHER_WANT or more is taken at once. */
    GATHER_WANT = 32,
    GATHER_US = 500,
};

/* a message committed in the open batch, answered and published after */
typedef struct pending_send {
    uint64_t conn_id, request_id;
    uint64_t user_id;
    uint32_t device_id;
    uint64_t conv, seq, ts;
    bool duplicate;
    bool silent;             /* a membership message: published, not answered */
    bool not_membership;     /* silent, yet not a membership message: taken in at a cold load (writer_fence.c) */
    blob *message;           /* NULL for a duplicate */
    uint64_t offset;
    const uint8_t *client_msg_id; /* points into the request frame (kept alive) */
    size_t client_msg_id_len;
} pending_send;

/* A member's delivered seq went up: the senders of what they received get
 * a DELIVERED receipt, coalesced (one per member, conversation and sender
 * per RECEIPT_COALESCE_MS), once the raise is committed. */
enum { NOTE_SENDERS = 8 };
typedef struct delivered_note {
    uint64_t conv, user, seq;
    uint64_t senders[NOTE_SENDERS];
    uint32_t n_senders;
} delivered_note;

typedef struct note_list {
    delivered_note *items;
    size_t n, cap;
} note_list;

/* AckDeviceMessages in the open batch, folded per device: one range
 * delete each at the flush (device_messages.c) */
typedef struct device_ack {
    uint64_t user;
    uint32_t device;
    uint64_t up_to;
} device_ack;

/* A consent change made by a conversation writer: applied by the accounts
 * owner, the only thread that writes consent records. if_none: only when
 * owner has no view of other yet (an accept implied by an action). */
typedef struct consent_change {
    uint64_t owner, other;
    uint32_t state;
    bool if_none;
} consent_change;

typedef struct consent_changes {
    consent_change *items;
    size_t n, cap;
} consent_changes;

/* The payload of a request between the write path's threads. */
typedef struct chat_forward {
    consent_changes changes;     /* CHAT_CONSENT */
    outbound **then_post;      /* CHAT_CONSENT: answers posted after the changes commit */
    size_t n_then_post, cap_then_post;
    delivered_note *notes;       /* CHAT_DELIVERED: a loop turn's raises for one owner */
    size_t n_notes, cap_notes;
    uint64_t about_user;         /* CHAT_DEVICE_REMOVED */
    bool answer;                 /* CHAT_DELIVERED from the 'sends' topic: answered OK once stored */
} chat_forward;

typedef struct writer_group writer_group;

typedef struct pending_member {
    uint64_t conv, user;
    Parley__Store__Member *record;   /* owned until the batch commits */
    Parley__Store__Member before;    /* the record as read: what changed decides what is written */
} pending_member;

struct writer {
    server *srv;
    writer_group *group;             /* every owner (writer_route.c) */
    bool accounts;                   /* the accounts owner: users, devices, keys, link tokens,
                                        device messages, every consent record */
    uint32_t index;                  /* a conversation writer: its number (owns partitions
                                        p with p mod N == index) */
    char name[16];                   /* thread name, seen in top -H */
    mpsc requests;
    pthread_t thread;
    store_batch *batch;
    /* the open batch */
    pending_send sends[BATCH_MAX];
    size_t n_sends;
    chat_request *held[BATCH_MAX];   /* requests whose frames pending_send points into */
    size_t n_held;
    outbound *replies[BATCH_MAX];    /* answers that wait for the commit */
    size_t n_replies;
    /* ids and seqs, owned here */
    uint64_t last_user_id;
    uint64_t *last_conv_id;          /* per partition owned: the last conversation id given */
    uint64_t *last_offset;           /* per partition owned: its fan-out log's last offset given
                                      * (range << 32 | n, chat/log_range.h) */
    bool renew_log_ranges;           /* a range is far used up: take a new one between turns */
    bool log_ranges_stale;           /* a load failed: take every partition's range again */
    uint64_t last_link_expiry;       /* expires_ts of the newest link token made */
    u64map conv_last_seq;            /* conversation -> last seq assigned */
    uint64_t forget_seen;            /* the group's forget_epoch last reloaded for */
    pending_member *members;         /* member records changed in the open batch */
    size_t n_members, cap_members;
    /* the last writer_member_for_update found nothing because the store's
     * read failed (a network store away), not because there is no member */
    bool member_read_failed;
    marks_cache marks;               /* read marks as stored or in the open batch (marks_cache.h) */
    note_list notes_open;            /* delivered raises in the open batch */
    note_list notes_due;             /* committed, waiting for the next receipt flush */
    uint64_t notes_flushed_ms;
    outbound **pushes;               /* pushes about the open batch: sent after its commit */
    size_t n_pushes, cap_pushes;
    device_ack device_acks[BATCH_MAX];  /* at most one request each between flushes */
    size_t n_device_acks;
    uint64_t link_sweep_ms;          /* last sweep of expired link tokens */
    char link_sweep_after[64];       /* where the next sweep resumes ("": the start) */
    u64map removed_device_users;     /* users who removed a device since start: their
                                        requests check that the device still exists */
    struct consent_slot *consent_cache; /* consent.c: states read or written here (accounts) */
    consent_changes consent_out;     /* a conversation writer's changes in the open batch */
    writer_cache *cache;             /* member and dedupe records of the conversations it owns */
    writer_prefetch *prefetch;       /* the dedupe reads of the popped batch, made together */
    uint64_t consent_epoch_seen;     /* unused by the accounts owner */
    bool consent_dirty;              /* the accounts owner: the open batch changes a consent state */
    chat_request **delivered_out;    /* per conversation writer: raises waiting for the end
                                        of the loop turn (writer_route.c) */
    _Atomic long depth;              /* requests waiting (writer_note_depth) */
    struct writer_pipeline *pipe;    /* commits in flight (writer_commit.c); NULL: each
                                        commit waited for (RocksDB, the accounts owner) */
    accounts_names claimed_names;    /* the accounts owner: names claimed for the open batch */
};

struct writer_group {
    server *srv;
    uint32_t partitions;             /* P, as recorded in the store */
    uint32_t user_partitions;        /* U: fan-out's checkpoints are per (P, U) */
    uint32_t n;                      /* conversation writers */
    writer **convs;
    writer *accounts;
    /* bumped by the accounts owner after each commit that changed a consent
     * state, before its answers go out: conversation writers hold the
     * states they read only while it stays the same (consent.c) */
    _Atomic uint64_t consent_epoch;
    /* bumped by writer_forget_cached: a conversation writer that has not
     * seen it yet reloads its cached state first */
    _Atomic uint64_t forget_epoch;
    /* requests queued at any owner or in its current loop turn (until the
     * turn's flush, which hands on what they raised): writer_stop waits for
     * 0 before closing any queue, so no hand-off meets a closed owner */
    _Atomic long in_flight;
};


/* Commits the open batch, then answers and publishes (writer.c). Returns
 * once it is committed, after every commit in flight (writer_commit.c). */
void writer_flush(writer *w);

/* What a commit answers, publishes and frees once it is over: the open
 * batch's (writer_flush) or an in-flight commit's (writer_commit.c). */
typedef struct commit_parts {
    pending_send *sends;
    size_t n_sends;
    chat_request **held;             /* requests whose frames sends point into */
    size_t n_held;
    outbound **replies;
    size_t n_replies;
    outbound **pushes;
    size_t n_pushes;
    note_list *notes;                /* delivered raises it commits */
    bool consent;                    /* the open batch's consent changes go with it (writer_flush) */
} commit_parts;
/* rc 0: answers, publishes, posts pushes and notes; else answers each send
 * and reply INTERNAL (or INSUFFICIENT_STORAGE) and forgets the in-memory
 * state that assumed the commit (no commit may be in flight then).
 * Consumes c's lists, not their arrays (writer.c). */
void writer_commit_finish(writer *w, const commit_parts *c, int rc);

/* writer_commit.c: a conversation writer's commits on a network store,
 * up to COMMITS_IN_FLIGHT at once, one per conversation. */
enum { COMMITS_IN_FLIGHT = 8 };
/* w->pipe for a conversation writer on a network store (else NULL); 0 or -1 */
int writer_pipeline_init(writer *w);
void writer_pipeline_free(struct writer_pipeline *p);
/* conv is written by the open batch (its sends are found by the submit) */
void writer_commit_touch(writer *w, uint64_t conv);
/* the open batch was committed by writer_flush: what it wrote is forgotten */
void writer_commit_open_done(writer *w);
/* Sends the open batch (flush_prepare done) without waiting for it, once
 * none of its conversations has a commit in flight and a slot is free:
 * 1, the open batch handed over and empty again; 0, it has no writes and
 * its answers may go now; -1, a commit in flight failed meanwhile, so the
 * open batch (built on what that one assumed) must fail too. */
int writer_commit_submit(writer *w);
/* Finishes the commits that completed, in the order they were sent.
 * true when one of them failed. */
bool writer_commit_reap(writer *w);
/* Waits for and finishes every commit in flight; true when one failed. */
bool writer_commit_drain(writer *w);
/* Sends whose conversation has a commit in flight (or sends of it held
 * back already) are held back and handled, in arrival order, once it is
 * over, so the open batch need not wait. At most PARKED_MAX; the loop pops
 * new requests only while writer_commit_room. */
enum { PARKED_MAX = 4 * BATCH_MAX, RAISES_HELD_MAX = 65536 };
bool writer_commit_park(writer *w, chat_request *r);
/* the held-back sends that may go now, in order, at most max, into out */
size_t writer_commit_unpark(writer *w, chat_request **out, size_t max);
bool writer_commit_room(const writer *w);
/* waits for the oldest commit in flight and finishes it (no room to pop) */
void writer_commit_wait(writer *w);
size_t writer_commit_parked(const writer *w);
/* commits in flight, or requests or raises held back */
bool writer_commit_busy(const writer *w);
/* A delivered raise in a conversation with a commit in flight: held back
 * (true) and replayed through raise once it is over. */
bool writer_commit_defer_raise(writer *w, const delivered_note *note);
void writer_commit_replay_raises(writer *w, void (*raise)(writer *, const delivered_note *));
void writer_reply_later(writer *w, outbound *m);
/* Pushes that report a change of the open batch (receipts, device lists,
 * keys) go out after its commit, like answers, so a device told of a change
 * finds it when it asks, and nobody hears of one that failed to commit.
 * Ephemeral: dropped when out of memory. writer_push_later sends frame to
 * every syncing connection of user except skip_conn. */
void writer_post_later(writer *w, outbound *m);
void writer_push_later(writer *w, uint64_t user, const Parley__V1__Frame *frame, uint64_t skip_conn);
void writer_answer(writer *w, const chat_request *r, Parley__V1__Response *resp);
void writer_answer_ok(writer *w, const chat_request *r);
void writer_fail(writer *w, const chat_request *r, Parley__V1__Status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 1 active member (record in *out if asked: caller frees), 0 not, -1 error */
int writer_active_member(writer *w, uint64_t conv, uint64_t user, Parley__Store__Member **out);
int writer_user_exists(writer *w, uint64_t user);
/* 1 with *seq, 0 when the conversation has no messages, -1 on error */
int conv_last_seq(writer *w, uint64_t conv, uint64_t *seq);
/* the next offset of partition's fan-out log (chat/log_range.h) */
uint64_t writer_next_log_offset(writer *w, uint32_t partition);
/* writer_fence.c: the store's last seq of conv (its head on a fenced
 * store), the messages past the hint taken into the dedupe. 0 or -1 */
int writer_fence_last_seq(writer *w, uint64_t conv, uint64_t *seq);
/* The member record of (conv, user) as this batch will write it, loaded on
 * first use; NULL when there is none. The writer owns it; changes are
 * written at the next flush. */
Parley__Store__Member *writer_member_for_update(writer *w, uint64_t conv, uint64_t user);

/* writer_route.c: the owner of a conversation, and forwards between owners */
writer *writer_owner_of_conv(const writer_group *g, uint64_t conv);
bool writer_owns_conv(const writer *w, uint64_t conv);
/* the partition a CreateGroup request creates its conversation in */
uint32_t writer_group_partition(const chat_request *r, uint32_t partitions);
/* the requests waiting for w: sums every owner's into the writer_queue_depth gauge */
void writer_note_depth(writer *w, size_t depth);
/* a member's delivered seq went up in a conversation another writer owns:
 * kept until writer_send_delivered, which hands each owner its raises in
 * one request (one wake-up per owner per loop turn, not one per ack) */
enum { FORWARD_NOTES_MAX = 4096 };
void writer_forward_delivered(writer *w, const delivered_note *note);
void writer_send_delivered(writer *w);
/* delivered_log.c, --kafka: an Ack's raises go to the owners of their
 * conversations' partitions through the 'sends' topic, one record per
 * partition, never written here (writer_logs_delivered: this mode) */
bool writer_logs_delivered(const writer *w);
void writer_log_delivered(writer *w, uint64_t user, const delivered_note *notes, size_t n);
/* after a commit: hands the batch's consent changes and the answers that
 * must wait for them to the accounts owner; false when there were none */
bool writer_forward_consent(writer *w, outbound **posts, size_t n_posts);
/* the accounts owner tells every conversation writer (writer_refuse_removed_device) */
void writer_tell_device_removed(writer *w, uint64_t user);
/* the end of a loop turn that took n requests, after its flush (writer.c) */
void writer_turn_done(writer *w, size_t n);
void chat_forward_free(chat_forward *f);
/* CHAT_CONSENT on the accounts owner (consent.c) */
void handle_consent_forward(writer *w, chat_request *r);
/* the writer loop's entry (writer.c) */
writer *writer_new_owner(server *srv, writer_group *g, bool accounts, uint32_t index);
int writer_run(writer *w);
void writer_free_owner(writer *w);

/* handlers in other files */
void handle_upload_keys(writer *w, chat_request *r);
void handle_fetch_keys(writer *w, chat_request *r);
void handle_remove_device(writer *w, chat_request *r);
void handle_send_device_message(writer *w, chat_request *r);
void handle_ack_device_messages(writer *w, chat_request *r);
/* writes the open batch's folded device acks into it (writer_flush) */
void writer_put_device_acks(writer *w);
/* consent.c: request handlers and the checks of the other handlers */
void handle_accept_request(writer *w, chat_request *r);
void handle_block_user(writer *w, chat_request *r);
/* owner's view of other as the writer knows it (cached; consent.c) */
int writer_consent_state(writer *w, uint64_t owner, uint64_t other);
void writer_consent_cache_clear(writer *w);
/* the accounts owner after a commit: its consent changes are stored */
void writer_consent_committed(writer *w);
/* writer_cache.c: (conv, user)'s member record (a copy the caller frees),
 * from the cache when w owns conv, else from the store: 1, 0 none, -1 error */
int writer_read_member(writer *w, uint64_t conv, uint64_t user, Parley__Store__Member **out);
/* a member record put into w's batch: into the batch and the cache */
void writer_put_member(writer *w, uint64_t conv, uint64_t user, const Parley__Store__Member *m);
/* a send's dedupe record: the recent-ids cache, else the store (as store_get_client_msg) */
int writer_read_client_msg(writer *w, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                           uint64_t *conv, uint64_t *seq);
/* the actor of a group add or a direct opening accepts the users added */
void consent_accept_added(writer *w, uint64_t actor, const uint64_t *users, size_t n);
/* the other member of a direct conversation (0: not a direct one) */
uint64_t consent_direct_peer(writer *w, uint64_t conv, uint64_t me, const Parley__Store__Member *m);
/* A new message from me to peer in their direct conversation (m: my member
 * record, changed in the batch): OK, or a refusal with *why. */
Parley__V1__Status consent_direct_send(writer *w, uint64_t me, uint64_t peer, Parley__Store__Member *m,
                                       const char **why);
/* A pre-key claim / device message by caller for target: OK (counted when
 * bounded), or a refusal (RATE_LIMITED with *retry_after_ms, FORBIDDEN). */
Parley__V1__Status consent_key_claim(writer *w, uint64_t caller, uint64_t target, uint64_t *retry_after_ms);
Parley__V1__Status consent_device_message(writer *w, uint64_t caller, uint64_t target);
/* true when r comes from a device removed since start (answered, counted) */
bool writer_refuse_removed_device(writer *w, const chat_request *r);
/* bumps the user's device list counter and tells their contacts */
void writer_device_list_changed(writer *w, uint64_t user, Parley__Store__User *u);

#endif
