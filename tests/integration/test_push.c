/* test_push.c -- Web Push to devices with no live session, against a push
 * service double (tests/push/push_double.py) on 127.0.0.1 over https with
 * a certificate made at test time; the server trusts it with --push-ca.
 * The double checks every request's VAPID JWT against the server's public
 * key and decrypts its payload with the subscriber's private key (RFC
 * 8291), logging each to log.jsonl, and answers what a mode file says.
 *
 * One server and one double serve every case; each case has its own users
 * and its own subscription of the double (s1, s2, ...), and compares
 * counters before and after. The coalescing window is long (10 min) so
 * that "one push for a burst" does not depend on speed. */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"
#include "push_double.h"

enum { WAIT_MS = 60000, SUBS = 8, BURST = 250 };

static h_server srv;
static char ddir[128];
static push_double dbl;   /* subscriptions dbl.subs[1..SUBS] */
static char vapid_b64[256];

/* ------------------------------------------------------------- helpers */

static double metric(const char *name) {
    double v = -1;
    if (h_metric(&srv, name, &v) != 0) return -1;
    return v;
}

/* waits (bounded) until metric >= goal */
static int wait_metric(const char *name, double goal) {
    uint64_t end = h_now_ms() + WAIT_MS;
    while (h_now_ms() < end) {
        if (metric(name) >= goal) return 0;
        h_sleep_ms(50);
    }
    fprintf(stderr, "  %s stayed at %g, below %g\n", name, metric(name), goal);
    return -1;
}

/* waits until the server has exactly n connections */
static int wait_connections(double n) {
    uint64_t end = h_now_ms() + WAIT_MS;
    while (h_now_ms() < end) {
        if (metric("parley_connections") == n) return 0;
        h_sleep_ms(50);
    }
    fprintf(stderr, "  parley_connections %g, expected %g\n", metric("parley_connections"), n);
    return -1;
}

/* What the double logged for subscription id: how many requests, how many
 * valid, how many answered status; the last valid payload. */
typedef struct seen {
    int requests, valid, invalid, with_status;
    char payload[256], error[256];
} seen;

static seen double_log(const char *id, int status) {
    seen s = {0};
    char path[256], line[16384], want[64];
    snprintf(path, sizeof path, "%s/log.jsonl", ddir);
    snprintf(want, sizeof want, "\"sub\": \"%s\"", id);
    FILE *f = fopen(path, "r");
    if (!f) return s;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, want)) continue;
        s.requests++;
        if (strstr(line, "\"valid\": true")) s.valid++;
        else {
            s.invalid++;
            char *e = strstr(line, "\"error\": ");
            if (e) snprintf(s.error, sizeof s.error, "%.200s", e);
        }
        char st[32];
        snprintf(st, sizeof st, "\"status\": %d,", status);
        if (strstr(line, st)) s.with_status++;
        char *p = strstr(line, "\"payload\": \"");
        if (p && strstr(line, "\"valid\": true")) {
            p += 12;
            size_t k = 0;
            while (p[k] && !(p[k] == '"' && p[k - 1] != '\\') && k + 1 < sizeof s.payload) k++;
            memcpy(s.payload, p, k);
            s.payload[k] = 0;
        }
    }
    fclose(f);
    return s;
}

static int log_contains(const char *needle) {
    char path[256], line[16384];
    snprintf(path, sizeof path, "%s/log.jsonl", ddir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int set_mode(const char *id, const char *mode) {
    char path[256];
    snprintf(path, sizeof path, "%s/mode-%s", ddir, id);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(mode, f);
    return fclose(f);
}

/* PushRegister for the device d (a second, raw connection signed in as
 * it, closed again). Returns the status. */
static int push_register_raw(h_dev *d, const char *endpoint, const uint8_t *p256dh, size_t p_len,
                             const uint8_t *auth, size_t a_len) {
    h_raw w;
    memset(&w, 0, sizeof w);
    if (h_raw_open(&srv, &w) != 0) return -1;
    if (d && h_raw_sign_in(&w, &d->id) != 0) {
        h_raw_close(&w);
        return -1;
    }
    Parley__V1__PushRegister pr = PARLEY__V1__PUSH_REGISTER__INIT;
    pr.endpoint = (char *)endpoint;
    pr.p256dh.data = (uint8_t *)p256dh;
    pr.p256dh.len = p_len;
    pr.auth.data = (uint8_t *)auth;
    pr.auth.len = a_len;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH_REGISTER;
    f.push_register = &pr;
    int st = h_raw_request(&w, &f, NULL, NULL);
    h_raw_close(&w);
    return st;
}

/* PushUnregister for the device d, like push_register_raw. */
static int push_unregister_raw(h_dev *d) {
    h_raw w;
    memset(&w, 0, sizeof w);
    if (h_raw_open(&srv, &w) != 0) return -1;
    if (h_raw_sign_in(&w, &d->id) != 0) {
        h_raw_close(&w);
        return -1;
    }
    Parley__V1__PushUnregister pu = PARLEY__V1__PUSH_UNREGISTER__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH_UNREGISTER;
    f.push_unregister = &pu;
    int st = h_raw_request(&w, &f, NULL, NULL);
    h_raw_close(&w);
    return st;
}

static int subscribe(h_dev *d, int i) {
    return push_register_raw(d, dbl.subs[i].endpoint, dbl.subs[i].p256dh, 65, dbl.subs[i].auth, 16);
}

/* two users in an accepted direct conversation */
static int pair(const char *a_name, const char *b_name, h_dev **a, h_dev **b, uint64_t *conv) {
    *a = h_user_new(&srv, a_name);
    *b = h_user_new(&srv, b_name);
    if (!*a || !*b) return -1;
    if (pc_open_direct((*a)->c, (*b)->id.user_id, conv) != 0) return -1;
    return h_accept(*b, *conv);
}

/* ------------------------------------------------------------- set-up */

static int start_double(void) {
    snprintf(ddir, sizeof ddir, "/tmp/parley-push-XXXXXX");
    if (!mkdtemp(ddir)) return -1;
    return push_double_start(&dbl, ddir, SUBS, WAIT_MS);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void stop_double(void) {
    push_double_stop(&dbl);
    if (ddir[0] && !getenv("PARLEY_KEEP_DATA")) nftw(ddir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* -------------------------------------------------------------- cases */

/* The key is made at first start, kept 0600, and served the same over
 * HTTP, PushGetKey and the SignIn answer; the double is told it. */
static void vapid_key_served_and_kept_private(void) {
    int st = 0;
    char body[256];
    CHECK(h_http_get(srv.port, "/push/vapid-public-key", &st, body, sizeof body) == 0 && st == 200, "GET %d", st);
    body[strcspn(body, "\r\n")] = 0;
    uint8_t k[80];
    CHECK(push_unb64(body, k, sizeof k) == 65 && k[0] == 0x04, "65-byte uncompressed point, base64url: '%s'", body);
    snprintf(vapid_b64, sizeof vapid_b64, "%s", body);
    char path[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/push-vapid-key.pem", srv.data);
    CHECK(stat(path, &sb) == 0, "key file %s", path);
    CHECK((sb.st_mode & 0777) == 0600, "mode %o", (unsigned)(sb.st_mode & 0777));

    h_dev *d = h_user_new(&srv, NULL);
    CHECK(d, "user");
    h_raw w;
    memset(&w, 0, sizeof w);
    CHECK(h_raw_open(&srv, &w) == 0, "raw");
    /* sign in by hand to see the Registered answer */
    uint8_t msg[14 + 32 + 64], sig[64];
    size_t hl = strlen(w.host);
    memcpy(msg, "parley.v1 auth", 14);
    memcpy(msg + 14, w.nonce, 32);
    memcpy(msg + 46, w.host, hl);
    crypto_sign_detached(sig, NULL, msg, 46 + hl, d->id.secret_key);
    Parley__V1__SignIn si = PARLEY__V1__SIGN_IN__INIT;
    si.user_id = d->id.user_id;
    si.device_id = d->id.device_id;
    si.signature.data = sig;
    si.signature.len = 64;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f.sign_in = &si;
    Parley__V1__Frame *resp = NULL;
    st = h_raw_request(&w, &f, &resp, NULL);
    int same_signin = resp && resp->response && resp->response->registered &&
                      resp->response->registered->push_vapid_public_key.len == 65 &&
                      memcmp(resp->response->registered->push_vapid_public_key.data, k, 65) == 0;
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    Parley__V1__PushGetKey gk = PARLEY__V1__PUSH_GET_KEY__INIT;
    Parley__V1__Frame g = PARLEY__V1__FRAME__INIT;
    g.body_case = PARLEY__V1__FRAME__BODY_PUSH_GET_KEY;
    g.push_get_key = &gk;
    resp = NULL;
    int st2 = h_raw_request(&w, &g, &resp, NULL);
    int same_get = resp && resp->response && resp->response->push_key &&
                   resp->response->push_key->vapid_public_key.len == 65 &&
                   memcmp(resp->response->push_key->vapid_public_key.data, k, 65) == 0;
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    h_raw_close(&w);
    h_dev_free(d);
    CHECK(st == 0 && same_signin, "SignIn answer carries the same key (status %d)", st);
    CHECK(st2 == 0 && same_get, "PushGetKey answers the same key (status %d)", st2);

    CHECK(push_double_set_vapid_key(&dbl, vapid_b64) == 0, "tell the double");
}

/* Endpoint https only and at most 1024 bytes, keys of exactly 65 (on the
 * curve) and 16 bytes, signed in only. */
static void register_checks_its_input(void) {
    h_dev *d = h_user_new(&srv, NULL);
    CHECK(d, "user");
    const push_sub *s = &dbl.subs[SUBS];
    char longest[1100];
    snprintf(longest, sizeof longest, "https://127.0.0.1/");
    memset(longest + 18, 'a', 1024 - 18);
    longest[1024] = 0;
    int over_ok = push_register_raw(d, longest, s->p256dh, 65, s->auth, 16);
    longest[1024] = 'a';
    longest[1025] = 0;
    int over = push_register_raw(d, longest, s->p256dh, 65, s->auth, 16);
    int http = push_register_raw(d, "http://127.0.0.1/push/x", s->p256dh, 65, s->auth, 16);
    int short_key = push_register_raw(d, s->endpoint, s->p256dh, 64, s->auth, 16);
    uint8_t off[65];
    memcpy(off, s->p256dh, 65);
    off[64] ^= 1;
    int off_curve = push_register_raw(d, s->endpoint, off, 65, s->auth, 16);
    int short_auth = push_register_raw(d, s->endpoint, s->p256dh, 65, s->auth, 15);
    int anon = push_register_raw(NULL, s->endpoint, s->p256dh, 65, s->auth, 16);
    int ok = push_register_raw(d, s->endpoint, s->p256dh, 65, s->auth, 16);
    h_dev_free(d);
    CHECK(over_ok == 0, "1024-byte endpoint taken: %d", over_ok);
    CHECK(over == PARLEY__V1__STATUS__BAD_REQUEST, "1025 bytes: %d", over);
    CHECK(http == PARLEY__V1__STATUS__BAD_REQUEST, "http: %d", http);
    CHECK(short_key == PARLEY__V1__STATUS__BAD_REQUEST, "64-byte p256dh: %d", short_key);
    CHECK(off_curve == PARLEY__V1__STATUS__BAD_REQUEST, "p256dh off the curve: %d", off_curve);
    CHECK(short_auth == PARLEY__V1__STATUS__BAD_REQUEST, "15-byte auth: %d", short_auth);
    CHECK(anon == PARLEY__V1__STATUS__UNAUTHENTICATED, "before sign-in: %d", anon);
    CHECK(ok == 0, "valid: %d", ok);
}

static const char SECRET[] = "body-that-must-never-leave-the-server";

/* An offline device gets exactly one push for a burst; the payload names
 * the conversation and a count, nothing of the messages; a sync then gets
 * every message. */
static void offline_device_gets_one_push_per_burst(void) {
    h_dev *alice = NULL, *bob = NULL;
    uint64_t conv = 0;
    CHECK(pair("alice", "bob", &alice, &bob, &conv) == 0, "pair");
    CHECK(subscribe(bob, 1) == 0, "bob subscribes");
    h_dev_disconnect(bob);
    CHECK(wait_connections(1) == 0, "only alice connected");
    double sent0 = metric("parley_push_sent_total"), coal0 = metric("parley_push_coalesced_total");
    double hints0 = metric("parley_push_hints_total");
    for (int i = 0; i < BURST; i++) CHECK(h_send(alice, conv, SECRET) > 0, "send %d", i);
    CHECK(wait_metric("parley_push_hints_total", hints0 + BURST) == 0, "every message seen by push");
    CHECK(wait_metric("parley_push_sent_total", sent0 + 1) == 0, "one sent");
    seen s = double_log(dbl.subs[1].id, 201);
    CHECK(s.requests == 1 && s.valid == 1, "exactly one request, valid: %d requests, %d valid (%s)", s.requests,
          s.valid, s.error);
    CHECK(metric("parley_push_coalesced_total") - coal0 == BURST - 1, "the rest coalesced: %g",
          metric("parley_push_coalesced_total") - coal0);
    char want[128];
    snprintf(want, sizeof want, "{\\\"conversation_id\\\":\\\"%llu\\\",\\\"count\\\":1}", (unsigned long long)conv);
    CHECK(strcmp(s.payload, want) == 0, "payload '%s', expected '%s'", s.payload, want);
    CHECK(!log_contains(SECRET), "no message body in anything the push service got");
    CHECK(h_dev_reconnect(&srv, bob, 0) == 0, "bob back");
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "sync");
    CHECK(h_dev_count(bob, conv) >= BURST, "all %d messages by sync: %zu", BURST, h_dev_count(bob, conv));
    h_dev_free(alice);
    h_dev_free(bob);
    CHECK(wait_connections(0) == 0, "closed");
}

/* An online device gets none; once it goes offline, the next message
 * wakes it. */
static void online_device_gets_none_until_it_goes_offline(void) {
    h_dev *carol = NULL, *dave = NULL;
    uint64_t conv = 0;
    CHECK(pair("carol", "dave", &carol, &dave, &conv) == 0, "pair");
    CHECK(subscribe(carol, 2) == 0, "carol subscribes");
    /* live: a session that has started sync gets deliveries (registry) */
    CHECK(h_dev_sync(carol, WAIT_MS) == 0, "carol syncs");
    CHECK(wait_connections(2) == 0, "both connected");
    double hints0 = metric("parley_push_hints_total");
    for (int i = 0; i < 20; i++) CHECK(h_send(dave, conv, "live") > 0, "send");
    CHECK(wait_metric("parley_push_hints_total", hints0 + 20) == 0, "push looked at all 20");
    h_dev *one[1] = {carol};
    h_count_goal goal = {one, 1, conv, 20, 1};
    CHECK(h_pump(one, 1, h_pred_count, &goal, WAIT_MS), "carol got the 20 live");
    seen s = double_log(dbl.subs[2].id, 201);
    CHECK(s.requests == 0, "online: no push (%d)", s.requests);
    h_dev_disconnect(carol);
    CHECK(wait_connections(1) == 0, "carol gone");
    double sent0 = metric("parley_push_sent_total");
    CHECK(h_send(dave, conv, "now offline") > 0, "send");
    CHECK(wait_metric("parley_push_sent_total", sent0 + 1) == 0, "sent");
    s = double_log(dbl.subs[2].id, 201);
    CHECK(s.requests == 1 && s.valid == 1, "offline: one push (%d requests, %d valid)", s.requests, s.valid);
    h_dev_free(carol);
    h_dev_free(dave);
    CHECK(wait_connections(0) == 0, "closed");
}

/* 410: the subscription is removed; a later message sends nothing to it
 * (it does not even reach the push thread: the user has no subscription
 * left), and a new registration is woken again. */
static void gone_removes_the_subscription(void) {
    h_dev *erin = NULL, *frank = NULL;
    uint64_t conv = 0;
    CHECK(pair("erin", "frank", &erin, &frank, &conv) == 0, "pair");
    CHECK(subscribe(erin, 3) == 0, "erin subscribes");
    CHECK(set_mode(dbl.subs[3].id, "410 0 1") == 0, "mode");
    h_dev_disconnect(erin);
    CHECK(wait_connections(1) == 0, "erin gone");
    double gone0 = metric("parley_push_gone_total"), hints0 = metric("parley_push_hints_total");
    double unsub0 = metric("parley_push_hints_unsubscribed_total");
    CHECK(h_send(frank, conv, "one") > 0, "send");
    CHECK(wait_metric("parley_push_gone_total", gone0 + 1) == 0, "410 seen");
    CHECK(h_send(frank, conv, "two") > 0, "send");
    CHECK(wait_metric("parley_push_hints_unsubscribed_total", unsub0 + 1) == 0, "the second dropped at the fan-out");
    CHECK(metric("parley_push_hints_total") - hints0 == 1, "push looked at the first only: %g",
          metric("parley_push_hints_total") - hints0);
    seen s = double_log(dbl.subs[3].id, 410);
    CHECK(s.requests == 1 && s.with_status == 1, "one request, answered 410: %d", s.requests);
    /* registered again (the double answers 201 now): woken again */
    double sent0 = metric("parley_push_sent_total");
    CHECK(subscribe(erin, 3) == 0, "erin subscribes again");
    CHECK(wait_connections(1) == 0, "erin gone again");
    CHECK(h_send(frank, conv, "three") > 0, "send");
    CHECK(wait_metric("parley_push_sent_total", sent0 + 1) == 0, "sent to the new subscription");
    s = double_log(dbl.subs[3].id, 201);
    CHECK(s.requests == 2 && s.with_status == 1, "then one 201: %d requests", s.requests);
    h_dev_free(erin);
    h_dev_free(frank);
    CHECK(wait_connections(0) == 0, "closed");
}

/* A 429 storm (with Retry-After) is retried until it gets through, and
 * nothing is lost: the messages are in the inbox, a sync gets them all. */
static void storm_of_429_backs_off_and_loses_nothing(void) {
    h_dev *gina = NULL, *hank = NULL;
    uint64_t conv = 0;
    CHECK(pair("gina", "hank", &gina, &hank, &conv) == 0, "pair");
    CHECK(subscribe(gina, 4) == 0, "gina subscribes");
    CHECK(set_mode(dbl.subs[4].id, "429 1 3") == 0, "mode");
    h_dev_disconnect(gina);
    CHECK(wait_connections(1) == 0, "gina gone");
    double sent0 = metric("parley_push_sent_total"), retried0 = metric("parley_push_retried_total");
    for (int i = 0; i < 30; i++) CHECK(h_send(hank, conv, "storm") > 0, "send");
    CHECK(wait_metric("parley_push_sent_total", sent0 + 1) == 0, "got through");
    seen s429 = double_log(dbl.subs[4].id, 429), s201 = double_log(dbl.subs[4].id, 201);
    CHECK(s429.with_status == 3 && s201.with_status == 1 && s429.valid == 4, "three 429, then 201: %d %d %d",
          s429.with_status, s201.with_status, s429.valid);
    CHECK(metric("parley_push_retried_total") - retried0 == 3, "three retries");
    CHECK(h_dev_reconnect(&srv, gina, 0) == 0, "gina back");
    CHECK(h_dev_sync(gina, WAIT_MS) == 0, "sync");
    CHECK(h_dev_count(gina, conv) >= 30, "all 30 by sync: %zu", h_dev_count(gina, conv));
    h_dev_free(gina);
    h_dev_free(hank);
    CHECK(wait_connections(0) == 0, "closed");
}

/* 5xx answers (no Retry-After) are retried with our own backoff. */
static void server_errors_are_retried(void) {
    h_dev *ivan = NULL, *judy = NULL;
    uint64_t conv = 0;
    CHECK(pair("ivan", "judy", &ivan, &judy, &conv) == 0, "pair");
    CHECK(subscribe(ivan, 5) == 0, "ivan subscribes");
    CHECK(set_mode(dbl.subs[5].id, "503 0 2") == 0, "mode");
    h_dev_disconnect(ivan);
    CHECK(wait_connections(1) == 0, "ivan gone");
    double sent0 = metric("parley_push_sent_total"), retried0 = metric("parley_push_retried_total");
    CHECK(h_send(judy, conv, "hello") > 0, "send");
    CHECK(wait_metric("parley_push_sent_total", sent0 + 1) == 0, "got through");
    seen s503 = double_log(dbl.subs[5].id, 503), s201 = double_log(dbl.subs[5].id, 201);
    CHECK(s503.with_status == 2 && s201.with_status == 1 && s503.valid == 3, "two 503, then 201: %d %d %d",
          s503.with_status, s201.with_status, s503.valid);
    CHECK(metric("parley_push_retried_total") - retried0 == 2, "two retries");
    h_dev_free(ivan);
    h_dev_free(judy);
    CHECK(wait_connections(0) == 0, "closed");
}

/* A user with no subscription costs the push thread nothing: the fan-out
 * drops every hint for them (counted), before and after a PushRegister
 * that PushUnregister took back; nothing is sent. */
static void no_subscription_no_push_work(void) {
    h_dev *kate = NULL, *leo = NULL;
    uint64_t conv = 0;
    CHECK(pair("kate", "leo", &kate, &leo, &conv) == 0, "pair");
    h_dev_disconnect(leo);
    CHECK(wait_connections(1) == 0, "leo gone");
    double hints0 = metric("parley_push_hints_total"), handled0 = metric("parley_push_hints_handled_total");
    double unsub0 = metric("parley_push_hints_unsubscribed_total");
    for (int i = 0; i < 10; i++) CHECK(h_send(kate, conv, "to nobody's phone") > 0, "send %d", i);
    CHECK(wait_metric("parley_push_hints_unsubscribed_total", unsub0 + 10) == 0, "all 10 dropped at the fan-out");
    CHECK(metric("parley_push_hints_unsubscribed_total") - unsub0 == 10, "exactly 10: %g",
          metric("parley_push_hints_unsubscribed_total") - unsub0);
    CHECK(metric("parley_push_hints_total") == hints0 && metric("parley_push_hints_handled_total") == handled0,
          "the push thread saw none: %g %g", metric("parley_push_hints_total") - hints0,
          metric("parley_push_hints_handled_total") - handled0);
    CHECK(subscribe(leo, 6) == 0, "leo subscribes");
    CHECK(push_unregister_raw(leo) == 0, "and unsubscribes");
    CHECK(wait_connections(1) == 0, "leo gone again");
    for (int i = 0; i < 5; i++) CHECK(h_send(kate, conv, "still nobody") > 0, "send %d", i);
    CHECK(wait_metric("parley_push_hints_unsubscribed_total", unsub0 + 15) == 0, "5 more dropped");
    CHECK(metric("parley_push_hints_total") == hints0, "the push thread saw none: %g",
          metric("parley_push_hints_total") - hints0);
    CHECK(double_log(dbl.subs[6].id, 201).requests == 0, "nothing sent");
    h_dev_free(kate);
    h_dev_free(leo);
    CHECK(wait_connections(0) == 0, "closed");
}

/* The set of subscribed users is loaded from the store at start: after a
 * restart an offline subscriber is still woken. */
static void subscriptions_are_known_after_a_restart(void) {
    h_dev *mia = NULL, *ned = NULL;
    uint64_t conv = 0;
    CHECK(pair("mia", "ned", &mia, &ned, &conv) == 0, "pair");
    CHECK(subscribe(ned, 7) == 0, "ned subscribes");
    h_dev_disconnect(ned);
    h_dev_disconnect(mia);
    CHECK(wait_connections(0) == 0, "both gone");
    CHECK(h_server_restart(&srv) == 0, "restart");
    CHECK(h_dev_reconnect(&srv, mia, 0) == 0, "mia back");
    double sent0 = metric("parley_push_sent_total");
    CHECK(metric("parley_push_subscribers") >= 1, "subscriptions loaded: %g", metric("parley_push_subscribers"));
    CHECK(h_send(mia, conv, "after the restart") > 0, "send");
    CHECK(wait_metric("parley_push_sent_total", sent0 + 1) == 0, "sent");
    seen s = double_log(dbl.subs[7].id, 201);
    CHECK(s.requests == 1 && s.valid == 1, "one push (%d requests, %d valid)", s.requests, s.valid);
    h_dev_free(mia);
    h_dev_free(ned);
    CHECK(wait_connections(0) == 0, "closed");
}

int main(void) {
    if (sodium_init() < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    if (start_double() != 0) {
        printf("FAIL push_double: cannot start\n");
        stop_double();
        return 1;
    }
    const char *args[] = {"--push-ca", dbl.cert, "--push-coalesce-ms", "600000", "--send-rate", "100000",
                          "--user-send-rate", "100000", NULL};
    if (h_server_start(&srv, args) != 0) {
        printf("FAIL server: cannot start\n");
        stop_double();
        return 1;
    }
    RUN(vapid_key_served_and_kept_private);
    RUN(register_checks_its_input);
    RUN(offline_device_gets_one_push_per_burst);
    RUN(online_device_gets_none_until_it_goes_offline);
    RUN(gone_removes_the_subscription);
    RUN(storm_of_429_backs_off_and_loses_nothing);
    RUN(server_errors_are_retried);
    RUN(no_subscription_no_push_work);
    RUN(subscriptions_are_known_after_a_restart);   /* last: restarts the server */
    h_server_destroy(&srv);
    stop_double();
    CHECK_EXIT();
}
