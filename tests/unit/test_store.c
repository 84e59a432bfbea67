/* test_store.c -- the RocksDB store: ranges stay inside their prefix,
 * scans honour their bounds, batches are atomic and survive reopening; a
 * directory with other files is never created over, a store missing CURRENT
 * does not open (and gets no new one), commits are refused under the
 * free-space watermark; fan-out's retry pause backs off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "fanout/fanout.h"
#include "store/store.h"

static char dir[64];

static store *open_fresh(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-store-XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    free(err);
    return s;
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

typedef struct seen {
    uint64_t a[64], b[64], c[64];
    size_t n;
} seen;

static int inbox_cb(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    seen *s = ud;
    s->a[s->n] = user_seq;
    s->b[s->n] = conv * 1000 + seq;
    s->c[s->n] = sender;
    s->n++;
    return 0;
}

static void inbox_ranges(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    /* users 1, 2 and 256 (whose big-endian id shares leading bytes with 1) */
    for (uint64_t i = 1; i <= 10; i++) store_put_inbox(b, 1, i, 7, i, 42, 1);
    store_put_inbox_head(b, 1, 10);
    store_put_inbox(b, 2, 1, 8, 1, 43, 1);
    store_put_inbox(b, 256, 1, 9, 1, 44, 1);
    CHECK(store_commit(s, b, true) == 0, "commit");
    uint64_t head = 0;
    CHECK(store_inbox_head(s, 1, &head) == 0 && head == 10, "head of user 1: %lu", head);
    CHECK(store_inbox_head(s, 3, &head) == 0 && head == 0, "empty inbox head %lu", head);
    seen got = {0};
    CHECK(store_scan_inbox(s, 1, 3, 0, 4, inbox_cb, &got) == 0, "scan");
    CHECK(got.n == 4 && got.a[0] == 4 && got.a[3] == 7, "after 3, limit 4: n=%zu first=%lu", got.n, got.a[0]);
    CHECK(got.b[0] == 7004 && got.c[0] == 42, "entry content");
    memset(&got, 0, sizeof got);
    store_scan_inbox(s, 1, 5, 8, 100, inbox_cb, &got);
    CHECK(got.n == 3 && got.a[0] == 6 && got.a[2] == 8, "through 8: n=%zu", got.n);
    memset(&got, 0, sizeof got);
    store_scan_inbox(s, 1, 10, 0, 100, inbox_cb, &got);
    CHECK(got.n == 0, "nothing after the head, got %zu", got.n);
    store_batch_free(b);
    store_close(s);
    remove_dir();
}

typedef struct msgs {
    uint64_t seq[16];
    size_t n;
} msgs;

static int msg_cb(void *ud, uint64_t seq, const uint8_t *m, size_t len) {
    msgs *x = ud;
    (void)m;
    (void)len;
    x->seq[x->n++] = seq;
    return 0;
}

static void messages_backwards_and_reopen(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    for (uint64_t seq = 1; seq <= 9; seq++) store_put_message(b, 5, seq, (const uint8_t *)"m", 1);
    store_put_message(b, 6, 1, (const uint8_t *)"x", 1);
    CHECK(store_commit(s, b, true) == 0, "commit");
    uint64_t last = 0;
    CHECK(store_last_seq(s, 5, &last) == 0 && last == 9, "last seq %lu", last);
    CHECK(store_last_seq(s, 4, &last) == 0 && last == 0, "empty conversation %lu", last);
    msgs got = {0};
    store_scan_messages_back(s, 5, 0, 3, msg_cb, &got);
    CHECK(got.n == 3 && got.seq[0] == 9 && got.seq[2] == 7, "newest three");
    memset(&got, 0, sizeof got);
    store_scan_messages_back(s, 5, 3, 10, msg_cb, &got);
    CHECK(got.n == 2 && got.seq[0] == 2 && got.seq[1] == 1, "before 3: n=%zu", got.n);
    memset(&got, 0, sizeof got);
    store_scan_messages_back(s, 5, 1, 10, msg_cb, &got);
    CHECK(got.n == 0, "before 1 is nothing");
    store_batch_free(b);
    store_close(s);
    /* what was committed is there after reopening */
    char *err = NULL;
    s = store_open(dir, 0, 0, &err);
    CHECK(s, "reopen: %s", err ? err : "");
    CHECK(store_last_seq(s, 5, &last) == 0 && last == 9, "last seq after reopen %lu", last);
    store_bytes v;
    CHECK(store_get_message(s, 6, 1, &v) == 1 && v.len == 1 && v.data[0] == 'x', "message after reopen");
    store_bytes_free(&v);
    store_close(s);
    remove_dir();
}

static int log_cb(void *ud, uint64_t offset, uint64_t conv, uint64_t seq) {
    msgs *x = ud;
    (void)conv;
    (void)seq;
    x->seq[x->n++] = offset;
    return 0;
}

static void log_checkpoint_and_trim(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    for (uint64_t off = 1; off <= 6; off++) store_put_log(b, 0, off, 1, off);
    store_put_checkpoint(b, 0, 2);
    CHECK(store_commit(s, b, true) == 0, "commit");
    uint64_t cp = 0, last = 0;
    CHECK(store_get_checkpoint(s, 0, &cp) == 1 && cp == 2, "checkpoint");
    msgs got = {0};
    store_scan_log(s, 0, cp, log_cb, &got);
    CHECK(got.n == 4 && got.seq[0] == 3, "log after the checkpoint: n=%zu", got.n);
    store_delete_log_through(b, 0, 4);
    CHECK(store_commit(s, b, true) == 0, "commit trim");
    memset(&got, 0, sizeof got);
    store_scan_log(s, 0, 0, log_cb, &got);
    CHECK(got.n == 2 && got.seq[0] == 5, "after trim: n=%zu", got.n);
    CHECK(store_last_log_offset(s, 0, &last) == 0 && last == 6, "last offset %lu", last);
    store_batch_free(b);
    store_close(s);
    remove_dir();
}

static void records_and_dedupe(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    Parley__Store__Member m;
    parley__store__member__init(&m);
    m.joined_seq = 1;
    m.read_seq = 3;
    store_put_member(b, 10, 20, &m);
    store_put_client_msg(b, 20, 1, (const uint8_t *)"abc", 3, 10, 4, 1);
    store_put_counter(b, "user", 77);
    CHECK(store_commit(s, b, true) == 0, "commit");
    Parley__Store__Member *got = NULL;
    CHECK(store_get_member(s, 10, 20, &got) == 1 && got->joined_seq == 1 && got->read_seq == 3, "member");
    parley__store__member__free_unpacked(got, NULL);
    CHECK(store_get_member(s, 10, 21, &got) == 0, "absent member");
    uint64_t conv = 0, seq = 0, n = 0;
    CHECK(store_get_client_msg(s, 20, 1, (const uint8_t *)"abc", 3, &conv, &seq) == 1 && conv == 10 && seq == 4,
          "client msg id");
    CHECK(store_get_client_msg(s, 20, 2, (const uint8_t *)"abc", 3, &conv, &seq) == 0,
          "same id from another device is another message");
    CHECK(store_get_client_msg(s, 20, 1, (const uint8_t *)"ab", 2, &conv, &seq) == 0, "prefix of an id");
    CHECK(store_get_counter(s, "user", &n) == 1 && n == 77, "counter");
    store_batch_free(b);
    store_close(s);
    remove_dir();
}

/* ------------------------------------------------ refusing to destroy data */

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
}

static int present(const char *path) { return access(path, F_OK) == 0; }

/* a directory with foreign files is never created over; a store with
 * CURRENT gone does not open, and the open does not write one */
static void open_never_creates_over_existing_files(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-store-XXXXXX");
    CHECK(mkdtemp(dir), "mkdtemp");
    char path[128], current[128], saved[128];
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    touch(path);
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    CHECK(!s, "opened a directory holding only notes.txt");
    CHECK(err && strstr(err, "holds no parley store"), "error: %s", err ? err : "(none)");
    free(err);
    err = NULL;
    snprintf(current, sizeof current, "%s/CURRENT", dir);
    CHECK(!present(current), "a CURRENT was written next to foreign files");
    CHECK(store_init(dir, &err) != 0, "init over a non-empty directory");
    free(err);
    err = NULL;
    remove(path);

    CHECK(store_init(dir, &err) == 0, "init on the emptied directory: %s", err ? err : "");
    s = store_open(dir, 0, 0, &err);
    CHECK(s, "open after init: %s", err ? err : "");
    store_batch *b = store_batch_new();
    store_put_counter(b, "user", 5);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);
    store_close(s);

    snprintf(saved, sizeof saved, "%s/CURRENT.saved", dir);
    CHECK(rename(current, saved) == 0, "rename CURRENT");
    s = store_open(dir, 0, 0, &err);
    CHECK(!s, "opened a store whose CURRENT is missing");
    CHECK(err && strstr(err, "does not open"), "error: %s", err ? err : "(none)");
    free(err);
    err = NULL;
    CHECK(!present(current), "opening wrote a new CURRENT");
    CHECK(rename(saved, current) == 0, "restore CURRENT");
    s = store_open(dir, 0, 0, &err);
    CHECK(s, "reopen with CURRENT back: %s", err ? err : "");
    uint64_t n = 0;
    CHECK(store_get_counter(s, "user", &n) == 1 && n == 5, "the counter survived: %lu", n);
    store_close(s);
    remove_dir();
}

/* a store made before parley marked its stores (CURRENT, no marker) opens
 * as it is and gets the marker */
static void a_store_from_before_markers_opens(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    store_put_counter(b, "conversation", 3);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);
    store_close(s);
    char marker[128];
    snprintf(marker, sizeof marker, "%s/PARLEY_STORE", dir);
    CHECK(remove(marker) == 0, "remove the marker");
    char *err = NULL;
    s = store_open(dir, 0, 0, &err);
    CHECK(s, "an unmarked store did not open: %s", err ? err : "");
    uint64_t n = 0;
    CHECK(store_get_counter(s, "conversation", &n) == 1 && n == 3, "its data: %lu", n);
    store_close(s);
    CHECK(present(marker), "the store was not marked");
    remove_dir();
}

/* under the watermark a commit is refused, health says why, nothing is
 * written; reads still work */
static void commit_refused_under_the_free_space_watermark(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-store-XXXXXX");
    CHECK(mkdtemp(dir), "mkdtemp");
    char *err = NULL;
    store_options o = {.min_free_bytes = UINT64_MAX};   /* no disk has that much free */
    store *s = store_open_ex(dir, &o, &err);
    CHECK(s, "open: %s", err ? err : "");
    CHECK(store_get_health(s) == STORE_DISK_FULL, "health %s", store_health_name(store_get_health(s)));
    store_batch *b = store_batch_new();
    store_put_counter(b, "user", 9);
    CHECK(store_commit(s, b, true) != 0, "a commit went through under the watermark");
    uint64_t n = 0;
    CHECK(store_get_counter(s, "user", &n) == 0, "the refused write is there");
    char text[4096];
    size_t len = store_metrics_render(s, text, sizeof text);
    text[len < sizeof text ? len : sizeof text - 1] = 0;
    CHECK(strstr(text, "parley_store_writes_refused_total 1\n") && strstr(text, "parley_store_disk_full 1\n"),
          "metrics:\n%s", text);
    store_batch_free(b);
    store_close(s);
    remove_dir();
}

/* a removed device's cursor goes; consent records are per ordered pair */
static void cursor_delete_and_consent(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    store_put_cursor(b, 5, 1, 40);
    store_put_cursor(b, 5, 2, 41);
    Parley__Store__Consent c = PARLEY__STORE__CONSENT__INIT;
    c.state = 2;
    c.key_claims = 3;
    store_put_consent(b, 5, 6, &c);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);
    b = store_batch_new();
    store_delete_cursor(b, 5, 2);
    CHECK(store_commit(s, b, true) == 0, "commit delete");
    store_batch_free(b);
    uint64_t seq = 0;
    CHECK(store_get_cursor(s, 5, 2, &seq) == 0, "deleted cursor still there (%lu)", seq);
    CHECK(store_get_cursor(s, 5, 1, &seq) == 1 && seq == 40, "the other device's cursor: %lu", seq);
    Parley__Store__Consent *got = NULL;
    CHECK(store_get_consent(s, 5, 6, &got) == 1 && got->state == 2 && got->key_claims == 3, "consent 5->6");
    parley__store__consent__free_unpacked(got, NULL);
    got = NULL;
    CHECK(store_get_consent(s, 6, 5, &got) == 0, "consent 6->5 exists without being written");
    store_close(s);
    remove_dir();
}

/* fan-out's pause after a failed commit grows and is capped */
static void fanout_retry_backs_off(void) {
    CHECK(fanout_retry_delay_ms(1) == 100, "first %u", fanout_retry_delay_ms(1));
    CHECK(fanout_retry_delay_ms(2) == 200, "second %u", fanout_retry_delay_ms(2));
    CHECK(fanout_retry_delay_ms(4) == 800, "fourth %u", fanout_retry_delay_ms(4));
    for (uint32_t a = 1; a < 40; a++)
        CHECK(fanout_retry_delay_ms(a + 1) >= fanout_retry_delay_ms(a), "not monotonic at %u", a);
    CHECK(fanout_retry_delay_ms(7) == 5000 && fanout_retry_delay_ms(1000000) == 5000, "cap %u %u",
          fanout_retry_delay_ms(7), fanout_retry_delay_ms(1000000));
}

int main(void) {
    RUN(inbox_ranges);
    RUN(messages_backwards_and_reopen);
    RUN(log_checkpoint_and_trim);
    RUN(records_and_dedupe);
    RUN(open_never_creates_over_existing_files);
    RUN(a_store_from_before_markers_opens);
    RUN(commit_refused_under_the_free_space_watermark);
    RUN(fanout_retry_backs_off);
    RUN(cursor_delete_and_consent);
    CHECK_EXIT();
}
