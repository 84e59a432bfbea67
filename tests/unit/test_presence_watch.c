/* test_presence_watch.c -- the local presence table's hand-over to the
 * presence bus (registry.h presence_watch, cluster/presence_bus.c): the
 * watch hears of a user's first subscriber and of its last leaving (and of
 * nothing in between), registry_presence_subscribers lists who watches a
 * user, and while a watch is set this node's own connects are not flushed
 * locally (the bus tells every subscriber). */
#include <stdio.h>

#include "../check.h"
#include "registry/registry.h"

enum { MAX_EVENTS = 64 };

typedef struct heard {
    uint64_t user[MAX_EVENTS];
    bool watched[MAX_EVENTS];
    size_t n;
} heard;

static void on_watch(void *ud, uint64_t user, bool watched) {
    heard *h = ud;
    if (h->n == MAX_EVENTS) return;
    h->user[h->n] = user;
    h->watched[h->n] = watched;
    h->n++;
}

static size_t count(const heard *h, uint64_t user, bool watched) {
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) k += h->user[i] == user && h->watched[i] == watched;
    return k;
}

static void first_and_last_subscriber_only(void) {
    registry *r = registry_local_new();
    CHECK(r, "new");
    heard h = {0};
    presence_watch w = {.changed = on_watch, .ud = &h};
    registry_set_presence_watch(r, &w);
    uint64_t users[] = {7, 8};
    CHECK(registry_presence_subscribe(r, 100, users, 2) == 0, "conn 100 watches 7 and 8");
    CHECK(registry_presence_subscribe(r, 101, users, 1) == 0, "conn 101 watches 7");
    CHECK(count(&h, 7, true) == 1 && count(&h, 8, true) == 1, "first subscriber of 7 and 8 heard once each (%zu)",
          h.n);
    uint64_t subs[4];
    CHECK(registry_presence_subscribers(r, 7, subs, 4) == 2, "7 has two subscribers");
    CHECK(registry_presence_subscribers(r, 9, subs, 4) == 0, "nobody watches 9");
    registry_presence_unsubscribe(r, 100);
    CHECK(count(&h, 8, false) == 1, "8's last subscriber left: heard");
    CHECK(count(&h, 7, false) == 0, "7 still has conn 101: not heard");
    CHECK(registry_presence_unsubscribe_user(r, 101, 7), "conn 101 drops 7");
    CHECK(count(&h, 7, false) == 1, "7's last subscriber left: heard");
    CHECK(h.n == 4, "nothing else heard: %zu events", h.n);
    registry_set_presence_watch(r, NULL);
    CHECK(registry_presence_subscribe(r, 102, users, 1) == 0, "after the watch is cleared");
    CHECK(h.n == 4, "a cleared watch hears nothing: %zu events", h.n);
    registry_free(r);
}

static void emitted(void *ud, uint64_t conn_id, uint64_t user, int online, uint64_t last_seen_ms) {
    (void)conn_id;
    (void)user;
    (void)online;
    (void)last_seen_ms;
    (*(int *)ud)++;
}

static void watched_changes_are_not_flushed_locally(void) {
    registry *r = registry_local_new();
    CHECK(r, "new");
    heard h = {0};
    presence_watch w = {.changed = on_watch, .ud = &h};
    uint64_t user = 7;
    /* without a watch a connect reaches the local subscriber at the flush */
    CHECK(registry_presence_subscribe(r, 100, &user, 1) == 0, "subscribe");
    registry_presence_connected(r, user);
    int n = 0;
    registry_presence_flush(r, 1000000, 0, emitted, &n);
    CHECK(n == 1, "without a watch: %d emissions, want 1", n);
    /* with one the bus tells (every node's subscribers, this one's too) */
    registry_set_presence_watch(r, &w);
    registry_presence_disconnected(r, user, 2000000);
    n = 0;
    registry_presence_flush(r, 3000000, 0, emitted, &n);
    CHECK(n == 0, "with a watch: %d emissions, want 0", n);
    registry_set_presence_watch(r, NULL);
    registry_free(r);
}

int main(void) {
    RUN(first_and_last_subscriber_only);
    RUN(watched_changes_are_not_flushed_locally);
    CHECK_EXIT();
}
