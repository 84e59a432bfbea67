/* test_realtime.c -- presence, typing indicators and receipts, end to end
 * through libparley against the real server:
 *   - presence: online while a device is signed in, offline once it
 *     disconnects; subscribing to a stranger is FORBIDDEN; quick flaps are
 *     coalesced (fewer pushes than flaps) and the last word is the truth
 *   - typing: reaches the other member's online device, is never stored,
 *     is refused to non-members, and is rate limited (RATE_LIMITED with
 *     retry_after_ms)
 *   - receipts in a group: delivered and read seqs per member (GetReceipts),
 *     READ pushes to the other members and the reader's other device, the
 *     same state after a server restart, and receipts inside SyncDone for a
 *     device that catches up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

enum {
    WAIT_MS = 15000,            /* liveness bound for anything to arrive */
    MAX_SEEN = 256,
    FLAPS = 8,
};

static h_server S;

/* ------------------------------------------------------------ recorders */

typedef struct seen_presence {
    uint64_t user;
    int online;
    uint64_t last_seen;
} seen_presence;

typedef struct rt_rec {
    seen_presence pres[MAX_SEEN];
    size_t n_pres;
    Parley__V1__TypingIndicator typing[MAX_SEEN];   /* plain fields only: copied */
    size_t n_typing;
} rt_rec;

static void on_presence(void *ud, const Parley__V1__Presence *p) {
    rt_rec *r = ud;
    if (r->n_pres < MAX_SEEN) r->pres[r->n_pres++] = (seen_presence){p->user_id, p->online, p->last_seen_ts};
}

static void on_typing(void *ud, const Parley__V1__TypingIndicator *t) {
    rt_rec *r = ud;
    if (r->n_typing < MAX_SEEN) {
        r->typing[r->n_typing] = *t;
        r->typing[r->n_typing].base.descriptor = NULL;   /* a copy, not a message to free */
        r->n_typing++;
    }
}

static void hook(h_dev *d, rt_rec *r) {
    memset(r, 0, sizeof *r);
    pc_on_presence(d->c, on_presence, r);
    pc_on_typing(d->c, on_typing, r);
}

/* the latest presence of user in r, or NULL */
static const seen_presence *last_presence(const rt_rec *r, uint64_t user) {
    for (size_t i = r->n_pres; i-- > 0;)
        if (r->pres[i].user == user) return &r->pres[i];
    return NULL;
}

static size_t presence_count(const rt_rec *r, uint64_t user) {
    size_t n = 0;
    for (size_t i = 0; i < r->n_pres; i++) n += r->pres[i].user == user;
    return n;
}

typedef struct presence_goal {
    const rt_rec *r;
    uint64_t user;
    int online;
    size_t after;               /* only pushes after the first `after` ones count */
    uint64_t not_before_ms;     /* and not before this time (0: any) */
} presence_goal;

static int pred_presence(void *ud) {
    const presence_goal *g = ud;
    if (g->not_before_ms && h_now_ms() < g->not_before_ms) return 0;
    for (size_t i = g->r->n_pres; i-- > g->after;) {
        if (g->r->pres[i].user != g->user) continue;
        return g->r->pres[i].online == g->online;   /* the latest one decides */
    }
    return 0;
}

/* pred_presence, and the server has no presence change left to push
 * (parley_presence_pending is 0): this is the last word. */
static int pred_presence_settled(void *ud) {
    if (!pred_presence(ud)) return 0;
    double pending = -1;
    return h_metric(&S, "parley_presence_pending", &pending) == 0 && pending == 0;
}

/* ------------------------------------------------------------- presence */

static void presence_online_then_offline(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    CHECK(h_accept(bob, conv) == 0, "bob accepts alice");
    static rt_rec rec;
    hook(alice, &rec);
    uint64_t bob_id = bob->id.user_id;
    CHECK(pc_subscribe_presence(alice->c, &bob_id, 1) == 0, "subscribe: %s", pc_error(alice->c));
    h_dev *one[1] = {alice};
    presence_goal online = {&rec, bob_id, 1, 0, 0};
    CHECK(h_pump(one, 1, pred_presence, &online, WAIT_MS), "no 'online' presence for bob (got %zu)",
          rec.n_pres);
    CHECK(presence_count(&rec, bob_id) == 1, "initial state once, got %zu", presence_count(&rec, bob_id));

    h_dev_disconnect(bob);
    presence_goal offline = {&rec, bob_id, 0, 1, 0};
    CHECK(h_pump(one, 1, pred_presence, &offline, WAIT_MS), "no 'offline' presence after disconnect");
    const seen_presence *p = last_presence(&rec, bob_id);
    CHECK(p->last_seen > 0, "offline presence has no last_seen");

    /* a new subscription is told the current state at once: offline, same last seen */
    uint64_t last_seen = p->last_seen;
    size_t before = rec.n_pres;
    CHECK(pc_subscribe_presence(alice->c, &bob_id, 1) == 0, "resubscribe: %s", pc_error(alice->c));
    presence_goal again = {&rec, bob_id, 0, before, 0};
    CHECK(h_pump(one, 1, pred_presence, &again, WAIT_MS), "no state on resubscribe");
    CHECK(last_presence(&rec, bob_id)->last_seen == last_seen, "last_seen changed while offline");
    h_dev_free(alice);
    h_dev_free(bob);
}

static void presence_of_stranger_forbidden(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *carol = h_user_new(&S, NULL);
    CHECK(alice && carol, "users");
    uint64_t carol_id = carol->id.user_id;
    CHECK(pc_subscribe_presence(alice->c, &carol_id, 1) != 0, "subscribed to a stranger");
    CHECK(pc_status(alice->c) == PARLEY__V1__STATUS__FORBIDDEN, "status %d: %s", pc_status(alice->c),
          pc_error(alice->c));
    /* the connection is still usable, and an empty list is fine */
    CHECK(pc_subscribe_presence(alice->c, NULL, 0) == 0, "empty subscription: %s", pc_error(alice->c));
    h_dev_free(alice);
    h_dev_free(carol);
}

static void presence_flaps_are_coalesced(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *dave = h_user_new(&S, NULL);
    CHECK(alice && dave, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, dave->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    CHECK(h_accept(dave, conv) == 0, "dave accepts alice");
    static rt_rec rec;
    hook(alice, &rec);
    uint64_t dave_id = dave->id.user_id;
    CHECK(pc_subscribe_presence(alice->c, &dave_id, 1) == 0, "subscribe: %s", pc_error(alice->c));
    h_dev *one[1] = {alice};
    presence_goal online = {&rec, dave_id, 1, 0, 0};
    CHECK(h_pump(one, 1, pred_presence, &online, WAIT_MS), "no initial 'online' presence");
    size_t initial = rec.n_pres;

    /* disconnect, connect, ... disconnect: 2 * FLAPS + 1 changes */
    for (int i = 0; i < FLAPS; i++) {
        h_dev_disconnect(dave);
        h_pump(one, 1, NULL, NULL, 0);
        CHECK(h_dev_reconnect(&S, dave, 0) == 0, "dave reconnect %d", i);
        h_pump(one, 1, NULL, NULL, 0);
    }
    h_dev_disconnect(dave);
    /* the final word must be 'offline': once the server has nothing left
     * to push, the last push says so */
    presence_goal offline = {&rec, dave_id, 0, 0, 0};
    CHECK(h_pump(one, 1, pred_presence_settled, &offline, WAIT_MS),
          "last presence of dave is not 'offline' with nothing pending (%zu pushes)", rec.n_pres);
    size_t pushes = rec.n_pres - initial;
    CHECK(pushes < FLAPS, "%zu presence pushes for %d flaps: not coalesced", pushes, FLAPS);
    /* pushes alternate: two in a row with the same state say nothing */
    for (size_t i = initial; i < rec.n_pres; i++)
        CHECK(rec.pres[i].online != rec.pres[i - 1].online, "push %zu repeats the previous state", i);
    h_dev_free(alice);
    h_dev_free(dave);
}

/* --------------------------------------------------------------- typing */

static void typing_reaches_member_not_store(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    h_dev *carol = h_user_new(&S, NULL);
    CHECK(alice && bob && carol, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    CHECK(h_accept(bob, conv) == 0, "accept");   /* a request shows no typing either way */
    CHECK(h_send(alice, conv, "hello") != 0, "send");
    static rt_rec bob_rec;
    hook(bob, &bob_rec);
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "bob sync");
    h_dev *both[2] = {alice, bob};
    size_t want_events = 0;
    {
        size_t n = 0;
        h_event *hist = h_history_all(alice, conv, &n);
        CHECK(hist, "history");
        h_events_free(hist, n);
        want_events = n;
    }
    h_count_goal g = {both + 1, 1, conv, want_events, 0};
    CHECK(h_pump(both + 1, 1, h_pred_count, &g, WAIT_MS), "bob did not get the history live");
    size_t bob_events = bob->n_ev;

    CHECK(pc_typing(alice->c, conv, 1) == 0, "typing: %s", pc_error(alice->c));
    int got = 0;
    for (uint64_t until = h_now_ms() + WAIT_MS; !got && h_now_ms() < until;) {
        h_pump(both, 2, NULL, NULL, 20);
        got = bob_rec.n_typing > 0;
    }
    CHECK(got, "bob got no typing indicator");
    const Parley__V1__TypingIndicator *t = &bob_rec.typing[0];
    CHECK(t->conversation_id == conv && t->user_id == alice->id.user_id &&
          t->device_id == alice->id.device_id && t->typing,
          "indicator conv %llu user %llu device %u typing %d", (unsigned long long)t->conversation_id,
          (unsigned long long)t->user_id, t->device_id, t->typing);
    CHECK(pc_typing(alice->c, conv, 0) == 0, "typing off: %s", pc_error(alice->c));
    got = 0;
    for (uint64_t until = h_now_ms() + WAIT_MS; !got && h_now_ms() < until;) {
        h_pump(both, 2, NULL, NULL, 20);
        got = bob_rec.n_typing > 1;
    }
    CHECK(got && !bob_rec.typing[1].typing, "no 'stopped typing' indicator");

    /* nothing stored: no event, the same history, and a fresh sync of bob's
     * inbox holds exactly the history */
    CHECK(bob->n_ev == bob_events, "typing produced %zu events", bob->n_ev - bob_events);
    size_t n = 0;
    h_event *hist = h_history_all(alice, conv, &n);
    CHECK(hist, "history");
    h_events_free(hist, n);
    CHECK(n == want_events, "history has %zu messages, had %zu", n, want_events);
    h_dev *fresh = h_dev_for_identity(&S, &bob->id, "bob-fresh", 0);
    CHECK(fresh, "fresh device");
    CHECK(h_dev_sync(fresh, WAIT_MS) == 0, "fresh sync");
    CHECK(h_dev_count(fresh, conv) == want_events, "fresh sync: %zu events in conv, history %zu",
          h_dev_count(fresh, conv), want_events);

    /* only members: carol shares nothing with this conversation */
    CHECK(pc_typing(carol->c, conv, 1) != 0, "a stranger's typing was taken");
    CHECK(pc_status(carol->c) == PARLEY__V1__STATUS__FORBIDDEN, "stranger typing: status %d",
          pc_status(carol->c));
    h_dev_free(fresh);
    h_dev_free(alice);
    h_dev_free(bob);
    h_dev_free(carol);
}

static void typing_is_rate_limited(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    /* 5 a second with bursts of 10: 200 back to back cannot all pass unless
     * they take 38 s, which a loopback round trip does not */
    int limited_at = -1;
    for (int i = 0; i < 200 && limited_at < 0; i++) {
        if (pc_typing(alice->c, conv, 1) == 0) continue;
        CHECK(pc_status(alice->c) == PARLEY__V1__STATUS__RATE_LIMITED, "typing %d: status %d: %s", i,
              pc_status(alice->c), pc_error(alice->c));
        limited_at = i;
    }
    CHECK(limited_at >= 10, "limited after %d indicators (burst is 10)", limited_at);
    uint64_t wait = pc_retry_after_ms(alice->c);
    CHECK(wait > 0 && wait <= 1000, "retry_after_ms %llu", (unsigned long long)wait);
    CHECK(pc_fd(alice->c) >= 0, "the connection was dropped");
    /* after the wait it says, the next one is taken */
    h_sleep_ms((int)wait + 20);
    CHECK(pc_typing(alice->c, conv, 1) == 0, "after retry_after_ms: %s", pc_error(alice->c));
    /* a rate-limited typing indicator does not hold up messages */
    CHECK(h_send(alice, conv, "still here") != 0, "send after typing limit");
    h_dev_free(alice);
    h_dev_free(bob);
}

/* ------------------------------------------------------------- receipts */

static const h_receipt *find_receipt(const h_dev *d, uint64_t conv, uint64_t user, int kind, uint64_t seq) {
    for (size_t i = 0; i < d->n_rc; i++) {
        const h_receipt *r = &d->rc[i];
        if (r->conversation_id == conv && r->user_id == user && r->kind == kind && r->seq >= seq) return r;
    }
    return NULL;
}

typedef struct receipt_goal {
    h_dev *const *who;          /* each of these devices ... */
    size_t n;
    uint64_t conv, about;       /* ... has a receipt about this user ... */
    int kind;
    uint64_t seq;               /* ... with at least this seq */
} receipt_goal;

static int pred_receipts(void *ud) {
    const receipt_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (!find_receipt(g->who[i], g->conv, g->about, g->kind, g->seq)) return 0;
    return 1;
}

typedef struct member_state {
    uint64_t user, delivered, read;
} member_state;

/* GetReceipts into out (by member order); returns the count, or -1. */
static int get_receipts(h_dev *d, uint64_t conv, member_state *out, int cap) {
    Parley__V1__ReceiptList *l = NULL;
    if (pc_get_receipts(d->c, conv, &l) != 0) {
        fprintf(stderr, "  pc_get_receipts: %s (status %d)\n", pc_error(d->c), pc_status(d->c));
        return -1;
    }
    int n = 0;
    for (size_t i = 0; i < l->n_members && n < cap; i++)
        out[n++] = (member_state){l->members[i]->user_id, l->members[i]->delivered_seq,
                                  l->members[i]->read_seq};
    parley__v1__receipt_list__free_unpacked(l, NULL);
    return n;
}

static const member_state *member(const member_state *m, int n, uint64_t user) {
    for (int i = 0; i < n; i++)
        if (m[i].user == user) return &m[i];
    return NULL;
}

/* GetReceipts from d shows user at (delivered, read). Called after the
 * pushes reporting those values arrived: a push leaves only once what it
 * reports is committed, so the read must already see it. 0 or -1. */
static int member_state_is(h_dev *d, uint64_t conv, uint64_t user, uint64_t delivered, uint64_t read) {
    member_state m[16];
    int n = get_receipts(d, conv, m, 16);
    if (n < 0) return -1;
    const member_state *s = member(m, n, user);
    if (s && s->delivered == delivered && s->read == read) return 0;
    fprintf(stderr, "  user %llu: delivered %llu read %llu; want %llu %llu\n", (unsigned long long)user,
            s ? (unsigned long long)s->delivered : 0ull, s ? (unsigned long long)s->read : 0ull,
            (unsigned long long)delivered, (unsigned long long)read);
    return -1;
}

static h_server RS;   /* its own server: this case restarts it */

static void receipts_in_group(void) {
    CHECK(h_server_start(&RS, NULL) == 0, "server start");
    h_dev *alice = h_user_new(&RS, NULL);
    h_dev *bob = h_user_new(&RS, NULL);
    h_dev *carol = h_user_new(&RS, NULL);
    CHECK(alice && bob && carol, "users");
    h_dev *bob2 = h_device_link(&RS, bob);
    CHECK(bob2, "bob's second device");
    uint64_t members[2] = {bob->id.user_id, carol->id.user_id};
    uint64_t conv;
    CHECK(pc_create_group(alice->c, "receipts", members, 2, &conv) == 0, "group: %s", pc_error(alice->c));
    /* read marks of members who did not accept the group are not shown */
    CHECK(h_accept(bob, conv) == 0 && h_accept(carol, conv) == 0, "accept the group");
    h_dev *all[4] = {alice, bob, carol, bob2};
    for (int i = 0; i < 4; i++) CHECK(h_dev_sync(all[i], WAIT_MS) == 0, "sync %s", all[i]->name);

    uint64_t s1 = h_send(alice, conv, "one"), s2 = h_send(alice, conv, "two"), s3 = h_send(alice, conv, "three");
    CHECK(s1 && s2 && s3 && s1 < s2 && s2 < s3, "sends %llu %llu %llu", (unsigned long long)s1,
          (unsigned long long)s2, (unsigned long long)s3);

    /* bob and carol receive and ack; alice hears DELIVERED from both */
    h_dev *a_only[1] = {alice};
    receipt_goal del_bob = {a_only, 1, conv, bob->id.user_id, PARLEY__V1__RECEIPT_KIND__DELIVERED, s3};
    receipt_goal del_carol = {a_only, 1, conv, carol->id.user_id, PARLEY__V1__RECEIPT_KIND__DELIVERED, s3};
    CHECK(h_pump(all, 4, pred_receipts, &del_bob, WAIT_MS), "alice: no DELIVERED %llu from bob",
          (unsigned long long)s3);
    CHECK(h_pump(all, 4, pred_receipts, &del_carol, WAIT_MS), "alice: no DELIVERED %llu from carol",
          (unsigned long long)s3);

    /* bob reads up to s2: alice, carol and bob's other device hear it */
    CHECK(pc_mark_read(bob->c, conv, s2) == 0, "mark_read: %s", pc_error(bob->c));
    h_dev *others[3] = {alice, carol, bob2};
    receipt_goal read_bob = {others, 3, conv, bob->id.user_id, PARLEY__V1__RECEIPT_KIND__READ, s2};
    CHECK(h_pump(all, 4, pred_receipts, &read_bob, WAIT_MS), "READ %llu of bob did not reach every other device",
          (unsigned long long)s2);
    for (int i = 0; i < 3; i++) {
        const h_receipt *r = find_receipt(others[i], conv, bob->id.user_id, PARLEY__V1__RECEIPT_KIND__READ, s2);
        CHECK(r->seq == s2, "%s: READ seq %llu, want %llu", others[i]->name, (unsigned long long)r->seq,
              (unsigned long long)s2);
    }

    /* GetReceipts: senders have read and received their own messages, and
     * joining reads the membership message one joined with (s1 - 1) */
    CHECK(member_state_is(carol, conv, bob->id.user_id, s3, s2) == 0, "bob's receipts");
    CHECK(member_state_is(carol, conv, carol->id.user_id, s3, s1 - 1) == 0, "carol's receipts");
    CHECK(member_state_is(carol, conv, alice->id.user_id, s3, s3) == 0, "alice's receipts");
    member_state before[16];
    int n_before = get_receipts(bob, conv, before, 16);
    CHECK(n_before == 3, "%d members in GetReceipts, want 3", n_before);

    /* a non-member may not ask */
    h_dev *eve = h_user_new(&RS, NULL);
    CHECK(eve, "eve");
    Parley__V1__ReceiptList *l = NULL;
    CHECK(pc_get_receipts(eve->c, conv, &l) != 0 && pc_status(eve->c) == PARLEY__V1__STATUS__FORBIDDEN,
          "stranger GetReceipts: status %d", pc_status(eve->c));
    h_dev_free(eve);

    /* the same after a restart */
    uint64_t alice_cursor = pc_cursor(alice->c), bob_cursor = pc_cursor(bob->c);
    for (int i = 0; i < 4; i++) h_dev_disconnect(all[i]);
    CHECK(h_server_restart(&RS) == 0, "restart");
    CHECK(h_dev_reconnect(&RS, carol, 0) == 0, "carol reconnects");
    member_state after[16];
    int n_after = get_receipts(carol, conv, after, 16);
    CHECK(n_after == n_before, "%d members after restart, %d before", n_after, n_before);
    for (int i = 0; i < n_before; i++) {
        const member_state *m = member(after, n_after, before[i].user);
        CHECK(m && m->delivered == before[i].delivered && m->read == before[i].read,
              "user %llu: delivered/read %llu/%llu before the restart, %llu/%llu after",
              (unsigned long long)before[i].user, (unsigned long long)before[i].delivered,
              (unsigned long long)before[i].read, m ? (unsigned long long)m->delivered : 0ull,
              m ? (unsigned long long)m->read : 0ull);
    }

    /* while alice is away, bob replies (which marks it read up to his
     * message) and his device receives and acks it (delivered); alice
     * catches up and SyncDone tells her where bob is */
    CHECK(h_dev_reconnect(&RS, bob, bob_cursor) == 0, "bob reconnects");
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "bob sync");
    CHECK(h_dev_sync(carol, WAIT_MS) == 0, "carol sync");
    uint64_t s4 = h_send(bob, conv, "four");
    CHECK(s4 > s3, "bob's send: %llu", (unsigned long long)s4);
    /* fan-out writes every member's inbox in one commit before delivering:
     * once carol has s4 live, it is in alice's inbox for her catch-up */
    h_dev *c_only[1] = {carol};
    for (uint64_t until = h_now_ms() + WAIT_MS; !h_dev_has(carol, conv, s4) && h_now_ms() < until;)
        h_pump(c_only, 1, NULL, NULL, 20);
    CHECK(h_dev_has(carol, conv, s4) == 1, "carol did not get seq %llu", (unsigned long long)s4);
    /* sending is not receiving: bob has s4 delivered once his device acks it */
    h_dev *b_only[1] = {bob};
    for (uint64_t until = h_now_ms() + WAIT_MS; !h_dev_has(bob, conv, s4) && h_now_ms() < until;)
        h_pump(b_only, 1, NULL, NULL, 20);
    CHECK(h_dev_has(bob, conv, s4) == 1, "bob's device did not get his own seq %llu", (unsigned long long)s4);
    CHECK(pc_flush_acks(bob->c) == 0, "bob's ack: %s", pc_error(bob->c));
    int bob_delivered = 0;
    for (uint64_t until = h_now_ms() + WAIT_MS; !bob_delivered && h_now_ms() < until;) {
        member_state now[16];
        int n_now = get_receipts(carol, conv, now, 16);
        const member_state *b = member(now, n_now, bob->id.user_id);
        bob_delivered = b && b->delivered == s4;
        if (!bob_delivered) h_pump(c_only, 1, NULL, NULL, 20);
    }
    CHECK(bob_delivered, "bob's delivered seq never reached %llu", (unsigned long long)s4);
    CHECK(h_dev_reconnect(&RS, alice, alice_cursor) == 0, "alice reconnects");
    h_dev_clear(alice);
    CHECK(h_dev_sync(alice, WAIT_MS) == 0, "alice sync");
    CHECK(h_dev_has(alice, conv, s4) == 1, "alice did not catch up on seq %llu", (unsigned long long)s4);
    const h_receipt *r = find_receipt(alice, conv, bob->id.user_id, PARLEY__V1__RECEIPT_KIND__READ, s4);
    CHECK(r && r->seq == s4, "SyncDone: no READ %llu of bob (%zu receipts)", (unsigned long long)s4, alice->n_rc);
    r = find_receipt(alice, conv, bob->id.user_id, PARLEY__V1__RECEIPT_KIND__DELIVERED, s4);
    CHECK(r && r->seq == s4, "SyncDone: no DELIVERED %llu of bob", (unsigned long long)s4);
    r = find_receipt(alice, conv, carol->id.user_id, PARLEY__V1__RECEIPT_KIND__DELIVERED, s3);
    CHECK(r, "SyncDone: no DELIVERED of carol");
    CHECK(!find_receipt(alice, conv, alice->id.user_id, PARLEY__V1__RECEIPT_KIND__READ, 0),
          "SyncDone told alice about herself");

    for (int i = 0; i < 4; i++) h_dev_free(all[i]);
    h_server_destroy(&RS);
}

int main(void) {
    if (h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(presence_online_then_offline);
    RUN(presence_of_stranger_forbidden);
    RUN(presence_flaps_are_coalesced);
    RUN(typing_reaches_member_not_store);
    RUN(typing_is_rate_limited);
    RUN(receipts_in_group);
    if (!h_server_alive(&S)) {
        h_server_log_tail(&S, 40);
        printf("FAIL server_survived\n");
        check_failures_total++;
    }
    h_server_destroy(&S);
    h_server_destroy(&RS);
    CHECK_EXIT();
}
