/* test_server_list.c -- libparley given several servers (client/servers.c):
 * the first connect's pick is random (the draw decides it), a dead server
 * in the list is passed over for the live one, a list of dead servers is
 * tried once each and then refused, a lost connection goes to another
 * server each attempt with the backoff growing and a bounded number of
 * attempts, and a client whose server comes back finds it and signs in
 * again. The live server is the real one (harness); "dead" servers are free
 * loopback ports nothing listens on. The random source is injected
 * (pc_set_jitter_source), so every pick is the test's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"
#include "internal.h"

enum { BASE_MS = 100, CAP_MS = 800, MAX_DRAWS = 256 };

/* A scripted source: answers from a list (then 0), and records every bound
 * asked for and the port the client was on at that moment. A bound above
 * PC_MAX_SERVERS is a backoff window (BASE_MS + 1 or more); at or below it,
 * a pick among servers. */
typedef struct source {
    pc_client *c;
    const uint32_t *answers;
    int n_answers;
    int n;
    uint32_t bounds[MAX_DRAWS];
    int ports[MAX_DRAWS];
} source;

static uint32_t scripted(void *ud, uint32_t bound) {
    source *s = ud;
    uint32_t r = s->n < s->n_answers ? s->answers[s->n] : 0;
    if (s->n < MAX_DRAWS) {
        s->bounds[s->n] = bound;
        s->ports[s->n] = s->c ? atoi(s->c->port) : 0;
        s->n++;
    }
    return r;
}

static h_server srv;

static pc_client *client_for(const char *list, source *s, const uint32_t *answers, int n_answers,
                             int max_reconnects) {
    memset(s, 0, sizeof *s);
    s->answers = answers;
    s->n_answers = n_answers;
    pc_options o = {0};
    o.server_url = list;
    o.connect_timeout_ms = 5000;
    o.request_timeout_ms = 10000;
    o.reconnect_base_ms = BASE_MS;
    o.reconnect_cap_ms = CAP_MS;
    o.max_reconnects = max_reconnects;
    pc_client *c = pc_new(&o);
    if (!c) return NULL;
    s->c = c;
    pc_set_jitter_source(c, scripted, s);
    return c;
}

/* the ports of the attempts, in order: the port at each backoff draw is
 * the attempt that just failed (and the client's port now is the last) */
static int attempts(const source *s, int *ports, int cap) {
    int n = 0;
    for (int i = 0; i < s->n && n < cap; i++)
        if (s->bounds[i] > PC_MAX_SERVERS) ports[n++] = s->ports[i];
    return n;
}

/* The draw at the first connect picks the server: 1 of 3 is the live one,
 * in the middle, and no attempt goes elsewhere first. */
static void first_pick_is_the_draw(void) {
    int d1 = h_free_port(), d2 = h_free_port();
    char list[256];
    snprintf(list, sizeof list, "ws://127.0.0.1:%d,%s,ws://127.0.0.1:%d", d1, srv.url, d2);
    static const uint32_t answers[] = {1};
    source s;
    pc_client *c = client_for(list, &s, answers, 1, 3);
    CHECK(c, "pc_new");
    int rc = pc_connect(c);
    int port = atoi(c->port), draws = s.n;
    uint32_t bound = s.bounds[0];
    pc_free(c);
    CHECK(rc == 0, "pc_connect: %d", rc);
    CHECK(draws == 1 && bound == 3, "%d draws, the first over %u: want one pick among 3", draws, bound);
    CHECK(port == srv.port, "connected to port %d, want the live %d", port, srv.port);
}

/* A list with a dead server drawn first: the client moves to the live one
 * after one backoff and works there (registers a user). */
static void dead_server_is_passed_over(void) {
    int dead = h_free_port();
    char list[256];
    snprintf(list, sizeof list, "ws://127.0.0.1:%d,%s", dead, srv.url);
    static const uint32_t answers[] = {0};   /* the pick: the dead one */
    source s;
    pc_client *c = client_for(list, &s, answers, 1, 3);
    CHECK(c, "pc_new");
    int rc = pc_connect(c);
    pc_identity id;
    pc_identity_generate(&id);
    int reg = rc == 0 ? pc_register_user(c, "listed", &id) : -1;
    int port = atoi(c->port);
    int tried[8];
    int n = attempts(&s, tried, 8);
    char err[256];
    snprintf(err, sizeof err, "%s", pc_error(c));
    pc_free(c);
    CHECK(rc == 0, "pc_connect: %s", err);
    CHECK(port == srv.port, "connected to port %d, want the live %d", port, srv.port);
    CHECK(n == 1 && tried[0] == dead, "%d failed attempts (first on %d), want one on the dead %d", n,
          n ? tried[0] : 0, dead);
    CHECK(reg == 0 && id.user_id != 0, "register on the live server: %s", err);
}

/* Every server dead at the first connect: each is tried exactly once, with
 * a growing backoff between, and pc_connect fails. */
static void all_dead_first_connect_tries_each_once(void) {
    int d[3] = {h_free_port(), h_free_port(), h_free_port()};
    char list[256];
    snprintf(list, sizeof list, "ws://127.0.0.1:%d,ws://127.0.0.1:%d,ws://127.0.0.1:%d", d[0], d[1], d[2]);
    /* pick the first; no sleep; then the last of the two others; then 0:
     * the one left (a pick among all but the current would take the
     * first again) */
    static const uint32_t answers[] = {0, 0, 1};
    source s;
    pc_client *c = client_for(list, &s, answers, 3, 20);
    CHECK(c, "pc_new");
    int rc = pc_connect(c);
    int tried[8];
    int n = attempts(&s, tried, 7);
    tried[n++] = atoi(c->port);   /* the last attempt's */
    uint32_t windows[8];
    int w = 0;
    for (int i = 0; i < s.n && w < 8; i++)
        if (s.bounds[i] > PC_MAX_SERVERS) windows[w++] = s.bounds[i] - 1;
    pc_free(c);
    CHECK(rc == -1, "pc_connect with every server dead: %d", rc);
    CHECK(n == 3, "%d attempts, want 3 (one per server)", n);
    for (int i = 0; i < 3; i++) {
        int seen = 0;
        for (int k = 0; k < n; k++) seen += tried[k] == d[i];
        CHECK(seen == 1, "server %d (port %d) tried %d times, want once", i, d[i], seen);
    }
    CHECK(w == 2 && windows[0] == BASE_MS && windows[1] == 2 * BASE_MS,
          "%d backoff windows (%u, %u), want %d then %d", w, w > 0 ? windows[0] : 0,
          w > 1 ? windows[1] : 0, BASE_MS, 2 * BASE_MS);
}

/* Connected to the live server of three, which then dies (kill -9) with
 * the other two dead: pc_poll's reconnects never try one server twice in a
 * row, the first two go to the other two servers, the backoff
 * windows double up to the cap, and it gives up after max_reconnects. The
 * server is started again for the next case. */
static void lost_connection_moves_on_and_gives_up(void) {
    int d1 = h_free_port(), d2 = h_free_port();
    char list[256];
    snprintf(list, sizeof list, "%s,ws://127.0.0.1:%d,ws://127.0.0.1:%d", srv.url, d1, d2);
    static const uint32_t answers[] = {0};   /* the pick: the live one */
    enum { MAX = 6 };
    source s;
    pc_client *c = client_for(list, &s, answers, 1, MAX);
    CHECK(c, "pc_new");
    CHECK(pc_connect(c) == 0 && atoi(c->port) == srv.port, "pc_connect to the live server: %s", pc_error(c));
    int first_draws = s.n;
    h_server_kill9(&srv);
    int r = 0;
    uint64_t deadline = h_now_ms() + 60000;
    while (r >= 0 && h_now_ms() < deadline) r = pc_poll(c, 200);
    int tried[16];
    int n = attempts(&s, tried, 15);
    if (n < 15) tried[n++] = atoi(c->port);
    uint32_t windows[16];
    int w = 0;
    for (int i = first_draws; i < s.n && w < 16; i++)
        if (s.bounds[i] > PC_MAX_SERVERS) windows[w++] = s.bounds[i] - 1;
    pc_free(c);
    int restarted = h_server_restart(&srv);
    CHECK(restarted == 0, "server restart");
    CHECK(r < 0, "pc_poll did not give up in 60 s");
    /* attempts: the lost connection (first backoff, on the live port), then MAX */
    CHECK(n == MAX + 1 && tried[0] == srv.port, "%d attempts recorded (first on %d), want the loss on %d + %d",
          n, n ? tried[0] : 0, srv.port, MAX);
    for (int i = 1; i < n; i++)
        CHECK(tried[i] != tried[i - 1], "attempt %d went to %d again", i, tried[i]);
    /* the first count - 1 attempts after the loss cover every other server */
    CHECK((tried[1] == d1 && tried[2] == d2) || (tried[1] == d2 && tried[2] == d1),
          "first two attempts after the loss: %d, %d: want %d and %d", tried[1], tried[2], d1, d2);
    CHECK(w == MAX, "%d backoff windows, want %d", w, MAX);
    for (int i = 0; i < w; i++) {
        uint32_t want = BASE_MS << i;
        if (want > CAP_MS) want = CAP_MS;
        CHECK(windows[i] == want, "window %d: %u ms, want %u", i, windows[i], want);
    }
}

/* A signed-in device whose server dies and comes back on its port, with a
 * dead server beside it in the list: it reconnects to the live one, signs
 * in again (a request answers), and its stats count one reconnect. */
static void comes_back_to_the_live_one(void) {
    int dead = h_free_port();
    char list[256];
    snprintf(list, sizeof list, "%s,ws://127.0.0.1:%d", srv.url, dead);
    static const uint32_t answers[] = {0};
    source s;
    pc_client *c = client_for(list, &s, answers, 1, 30);
    CHECK(c, "pc_new");
    pc_identity id;
    pc_identity_generate(&id);
    CHECK(pc_connect(c) == 0 && pc_register_user(c, "returning", &id) == 0, "register: %s", pc_error(c));
    h_server_kill9(&srv);
    int restarted = h_server_restart(&srv);
    pc_stats st = {0};
    uint64_t deadline = h_now_ms() + 60000;
    int r = 0;
    while (restarted == 0 && r >= 0 && st.reconnects == 0 && h_now_ms() < deadline) {
        r = pc_poll(c, 200);
        pc_get_stats(c, &st);
    }
    uint64_t uid = 0;
    int looked = st.reconnects ? pc_lookup_user(c, "returning", &uid) : -1;
    int port = atoi(c->port);
    char err[256];
    snprintf(err, sizeof err, "%s", pc_error(c));
    pc_free(c);
    CHECK(restarted == 0, "server restart");
    CHECK(st.reconnects == 1, "reconnects %llu (poll %d: %s)", (unsigned long long)st.reconnects, r, err);
    CHECK(port == srv.port, "reconnected to port %d, want the live %d", port, srv.port);
    CHECK(looked == 0 && uid == id.user_id, "a request after the reconnect: %s", err);
}

/* A list with an empty entry, a bad URL or too many servers is refused at
 * pc_connect with the reason. */
static void bad_lists_are_refused(void) {
    const char *bad[] = {"ws://127.0.0.1:1,,ws://127.0.0.1:2", "ws://127.0.0.1:1,http://x:2",
                         "ws://127.0.0.1:1,ws://127.0.0.1:99999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pc_options o = {0};
        o.server_url = bad[i];
        pc_client *c = pc_new(&o);
        CHECK(c, "pc_new");
        int rc = pc_connect(c);
        pc_free(c);
        CHECK(rc == -1, "list %s accepted", bad[i]);
    }
    char many[2048] = "";
    for (int i = 0; i < PC_MAX_SERVERS + 1; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sws://127.0.0.1:%d", i ? "," : "", 1000 + i);
    pc_options o = {0};
    o.server_url = many;
    pc_client *c = pc_new(&o);
    CHECK(c, "pc_new");
    int rc = pc_connect(c);
    char err[256];
    snprintf(err, sizeof err, "%s", pc_error(c));
    pc_free(c);
    CHECK(rc == -1 && strstr(err, "at most"), "%d servers: rc %d, %s", PC_MAX_SERVERS + 1, rc, err);
}

int main(void) {
    if (h_server_start(&srv, NULL) != 0) {
        printf("FAIL start: server did not start\n");
        CHECK_EXIT();
    }
    RUN(first_pick_is_the_draw);
    RUN(dead_server_is_passed_over);
    RUN(all_dead_first_connect_tries_each_once);
    RUN(lost_connection_moves_on_and_gives_up);
    RUN(comes_back_to_the_live_one);
    RUN(bad_lists_are_refused);
    h_server_destroy(&srv);
    CHECK_EXIT();
}
