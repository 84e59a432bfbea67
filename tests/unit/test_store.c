/* test_store.c -- the store's conformance suite on RocksDB, and RocksDB's
 * own cases.
 *
 * Conformance (tests/store_conformance.h, run once per backend of the
 * `backends` table, each case named case[backend]); Cassandra runs the same
 * cases in tests/integration/test_store_cassandra.c. --store cassandra
 * without --cassandra is refused with a clear error.
 *
 * RocksDB's own: a directory with other files is never created over, a
 * store missing CURRENT does not open (and gets no new one), commits are
 * refused under the free-space watermark; fan-out's retry pause backs off.
 * Records live in their column families; a store made before the families
 * (or with the move cut short) is moved into them at open; a batch writes
 * each key once; read marks leave the member record alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "../check.h"
#include "fanout/fanout.h"
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_export.h"
#include "../store_conformance.h"

static char dir[64];

static store *open_fresh(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-store-XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    char *err = NULL;
    store *s = store_open(dir, conformance_retention_ms, 0, &err);
    free(err);
    return s;
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

static store *reopen_dir(void) {
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    if (!s) fprintf(stderr, "  reopen %s: %s\n", dir, err ? err : "?");
    free(err);
    return s;
}


/* The backends the conformance cases (store_conformance.h) run against:
 * each gives a fresh empty store, the same store again after store_close
 * (what was committed must be there), and the removal of what it made.
 * Cassandra's row is in tests/integration/test_store_cassandra.c (it needs
 * a running node). */
static const backend backends[] = {
    {"rocksdb", open_fresh, reopen_dir, remove_dir, NULL},
};



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

/* ------------------------------------------------ column families, layout */

static uint64_t metric(store *s, const char *name) {
    char text[8192];
    size_t len = store_metrics_render(s, text, sizeof text);
    text[len < sizeof text ? len : sizeof text - 1] = 0;
    char want[128];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *at = strstr(text, want);
    return at ? strtoull(at + strlen(want), NULL, 10) : UINT64_MAX;
}

/* RocksDB opened directly, with the families the store has (or asks for) */
enum { RAW_FAMILIES = 16 };
typedef struct raw {
    rocksdb_t *db;
    rocksdb_options_t *o;
    char *names[RAW_FAMILIES];
    rocksdb_column_family_handle_t *cf[RAW_FAMILIES];
    int n;
} raw;

static rocksdb_column_family_handle_t *raw_cf(raw *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0) return r->cf[i];
    return NULL;
}

/* want: families to create when missing (NULL-terminated), or NULL */
static int raw_open(raw *r, bool create, const char *const *want) {
    memset(r, 0, sizeof *r);
    r->o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->o, create);
    rocksdb_options_set_create_missing_column_families(r->o, 1);
    size_t n = 0;
    char *err = NULL;
    char **listed = create ? NULL : rocksdb_list_column_families(r->o, dir, &n, &err);
    free(err);
    err = NULL;
    r->names[r->n++] = strdup("default");
    for (size_t i = 0; i < n; i++)
        if (strcmp(listed[i], "default") != 0 && r->n < RAW_FAMILIES) r->names[r->n++] = strdup(listed[i]);
    if (listed) rocksdb_list_column_families_destroy(listed, n);
    for (int i = 0; want && want[i]; i++)
        if (!raw_cf(r, want[i]) && r->n < RAW_FAMILIES) r->names[r->n++] = strdup(want[i]);
    const rocksdb_options_t *opts[RAW_FAMILIES];
    for (int i = 0; i < r->n; i++) opts[i] = r->o;
    r->db = rocksdb_open_column_families(r->o, dir, r->n, (const char *const *)r->names, opts, r->cf, &err);
    if (err) fprintf(stderr, "  raw open: %s\n", err);
    free(err);
    return r->db ? 0 : -1;
}

static void raw_close(raw *r) {
    for (int i = 0; i < r->n; i++) {
        if (r->db) rocksdb_column_family_handle_destroy(r->cf[i]);
        free(r->names[i]);
    }
    if (r->db) rocksdb_close(r->db);
    rocksdb_options_destroy(r->o);
}

static void raw_put(raw *r, const char *family, const void *k, size_t klen, const void *v, size_t vlen) {
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_put_cf(r->db, w, raw_cf(r, family), k, klen, v, vlen, &err);
    free(err);
    rocksdb_writeoptions_destroy(w);
}

static bool raw_has(raw *r, const char *family, const void *k, size_t klen) {
    rocksdb_column_family_handle_t *h = raw_cf(r, family);
    if (!h) return false;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(r->db, ro, h, k, klen, &len, &err);
    free(err);
    rocksdb_readoptions_destroy(ro);
    bool found = v != NULL;
    rocksdb_free(v);
    return found;
}

/* keys of the default family whose first byte is tag */
static size_t raw_count_tag(raw *r, const char *family, char tag) {
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, raw_cf(r, family));
    size_t n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && n < 100000; rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen && k[0] == tag) n++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return n;
}

static void be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) *p++ = (uint8_t)(v >> (i * 8));
}

/* the keys of the layout before column families (store_rocksdb.c's table) */
typedef struct oldkey { uint8_t b[64]; size_t len; } oldkey;
static oldkey k_conv_seq(char tag, uint64_t a, uint64_t b) {
    oldkey k = {{(uint8_t)tag}, 17};
    be64(k.b + 1, a);
    be64(k.b + 9, b);
    return k;
}

/* every kind a send, a fan-out and an ack write, in the old single keyspace */
static void write_old_layout(raw *r, const char *family_of_moved_messages) {
    uint8_t v8[8], v16[16], v24[24], v32[32];
    oldkey k = k_conv_seq('M', 7, 1);
    raw_put(r, family_of_moved_messages, k.b, k.len, "hello", 5);
    k = k_conv_seq('M', 7, 2);
    raw_put(r, "default", k.b, k.len, "again", 5);
    k = k_conv_seq('S', 7, 0); k.len = 9;
    be64(v8, 2);
    raw_put(r, "default", k.b, k.len, v8, 8);
    k = k_conv_seq('X', 3, 1);
    be64(v32, 7); be64(v32 + 8, 1); be64(v32 + 16, 4); be64(v32 + 24, 0);
    raw_put(r, "default", k.b, k.len, v32, 32);
    k = k_conv_seq('H', 3, 0); k.len = 9;
    be64(v8, 1);
    raw_put(r, "default", k.b, k.len, v8, 8);
    k = k_conv_seq('i', 4, 0); k.len = 13;   /* user 4, device 1, id "abc" */
    k.b[12] = 1; k.b[13] = 3; memcpy(k.b + 14, "abc", 3); k.len = 17;
    be64(v24, 7); be64(v24 + 8, 1); be64(v24 + 16, 0);
    raw_put(r, "default", k.b, k.len, v24, 24);
    k = k_conv_seq('L', 0, 0); k.b[1] = k.b[2] = k.b[3] = k.b[4] = 0; be64(k.b + 5, 1); k.len = 13;
    be64(v16, 7); be64(v16 + 8, 1);
    raw_put(r, "default", k.b, k.len, v16, 16);
    k = k_conv_seq('r', 3, 0); k.b[9] = 0; k.b[10] = 0; k.b[11] = 0; k.b[12] = 2; k.len = 13;
    be64(v8, 1);
    raw_put(r, "default", k.b, k.len, v8, 8);
    Parley__Store__Member m = PARLEY__STORE__MEMBER__INIT;
    m.joined_seq = 1;
    m.read_seq = 2;
    uint8_t packed[64];
    size_t n = parley__store__member__pack(&m, packed);
    k = k_conv_seq('m', 7, 4);
    raw_put(r, "default", k.b, k.len, packed, n);
    k = k_conv_seq('v', 4, 7);
    raw_put(r, "default", k.b, k.len, "", 0);
    be64(v8, 9);
    raw_put(r, "default", "kuser", 5, v8, 8);
}

/* what write_old_layout wrote, read through the store */
static void check_old_records(store *s) {
    store_bytes v;
    CHECK(store_get_message(s, 7, 1, &v) == 1 && v.len == 5 && memcmp(v.data, "hello", 5) == 0, "message 1");
    store_bytes_free(&v);
    CHECK(store_get_message(s, 7, 2, &v) == 1 && v.len == 5, "message 2");
    store_bytes_free(&v);
    uint64_t x = 0, y = 0;
    CHECK(store_last_seq(s, 7, &x) == 0 && x == 2, "last seq %lu", x);
    CHECK(store_inbox_head(s, 3, &x) == 0 && x == 1, "inbox head %lu", x);
    seen got = {0};
    CHECK(store_scan_inbox(s, 3, 0, 0, 10, inbox_cb, &got) == 0 && got.n == 1 && got.b[0] == 7001, "inbox %zu", got.n);
    CHECK(store_get_client_msg(s, 4, 1, (const uint8_t *)"abc", 3, &x, &y) == 1 && x == 7 && y == 1, "dedupe");
    msgs log = {0};
    CHECK(store_scan_log(s, 0, 0, log_cb, &log) == 0 && log.n == 1 && log.seq[0] == 1, "log %zu", log.n);
    CHECK(store_get_cursor(s, 3, 2, &x) == 1 && x == 1, "cursor %lu", x);
    Parley__Store__Member *m = NULL;
    CHECK(store_get_member(s, 7, 4, &m) == 1 && m->read_seq == 2, "member");
    parley__store__member__free_unpacked(m, NULL);
    CHECK(store_get_counter(s, "user", &x) == 1 && x == 9, "counter %lu", x);
}

static const char *const moved_tags = "MSXHiLrmv";

/* a store made before column families (one keyspace, marked) opens with
 * every record readable, moved into its family and out of the default one;
 * the next open moves nothing */
/* Writes the old layout into a new store directory (records in
 * `where`, families `families` made beforehand), opens it as a store and
 * checks that `moved` records were moved and every old record reads back. */
static store *open_over_old_layout(const char *const *families, const char *where, unsigned long moved) {
    snprintf(dir, sizeof dir, "/tmp/parley-store-XXXXXX");
    raw r;
    if (!mkdtemp(dir) || raw_open(&r, true, families) != 0) {
        fprintf(stderr, "  cannot make the old store in %s\n", dir);
        check_case_failed = 1;
        return NULL;
    }
    write_old_layout(&r, where);
    raw_close(&r);
    char marker[128];
    snprintf(marker, sizeof marker, "%s/PARLEY_STORE", dir);
    touch(marker);
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    if (!s) {
        fprintf(stderr, "  the old store did not open: %s\n", err ? err : "");
        check_case_failed = 1;
        return NULL;
    }
    unsigned long got = metric(s, "parley_store_layout_records_moved_total");
    if (got != moved) {
        fprintf(stderr, "  moved %lu records, not %lu\n", got, moved);
        check_case_failed = 1;
    }
    check_old_records(s);
    return s;
}

static void a_store_from_before_families_is_moved_into_them(void) {
    store *s = open_over_old_layout(NULL, "default", 10);
    if (!s) return;
    if (check_case_failed) {
        store_close(s);
        return;
    }
    raw r;
    char *err = NULL;
    store_close(s);
    CHECK(raw_open(&r, false, NULL) == 0, "raw reopen");
    CHECK(r.n == 7, "families after the move: %d", r.n);
    for (const char *t = moved_tags; *t; t++)
        CHECK(raw_count_tag(&r, "default", *t) == 0, "records of kind %c left in default", *t);
    oldkey k = k_conv_seq('M', 7, 1);
    CHECK(raw_has(&r, "messages", k.b, k.len), "message 1 is not in the messages family");
    k = k_conv_seq('m', 7, 4);
    CHECK(raw_has(&r, "members", k.b, k.len), "the member is not in the members family");
    raw_close(&r);
    s = store_open(dir, 0, 0, &err);
    CHECK(s, "second open: %s", err ? err : "");
    CHECK(metric(s, "parley_store_layout_records_moved_total") == 0, "moved again");
    check_old_records(s);
    store_close(s);
    remove_dir();
}

/* a move cut short (the families exist, some records are in them, the rest
 * still in default, no layout version) finishes at the next open */
static void an_interrupted_move_finishes(void) {
    static const char *const families[] = {"messages", "inbox", "dedupe", "log", "cursors", "members", NULL};
    /* message 1 already moved, the rest not */
    store *s = open_over_old_layout(families, "messages", 9);
    if (!s) return;
    if (check_case_failed) {
        store_close(s);
        return;
    }
    raw r;
    store_close(s);
    CHECK(raw_open(&r, false, NULL) == 0, "raw reopen");
    for (const char *t = moved_tags; *t; t++)
        CHECK(raw_count_tag(&r, "default", *t) == 0, "records of kind %c left in default", *t);
    raw_close(&r);
    remove_dir();
}

/* a new store's records go to their families, not the default one */
static void records_live_in_their_families(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    store_put_message(b, 7, 1, (const uint8_t *)"m", 1);
    store_put_inbox(b, 3, 1, 7, 1, 4, 0);
    store_put_client_msg(b, 4, 1, (const uint8_t *)"abc", 3, 7, 1, 0);
    store_put_log(b, 0, 1, 7, 1);
    store_put_cursor(b, 3, 2, 1);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);
    store_close(s);
    raw r;
    CHECK(raw_open(&r, false, NULL) == 0, "raw open");
    CHECK(r.n == 7, "families: %d", r.n);
    struct { const char *family; char tag; } want[] = {
        {"messages", 'M'}, {"messages", 'S'}, {"inbox", 'X'}, {"dedupe", 'i'}, {"log", 'L'}, {"cursors", 'r'}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(raw_count_tag(&r, want[i].family, want[i].tag) == 1, "%c not in %s", want[i].tag, want[i].family);
        CHECK(raw_count_tag(&r, "default", want[i].tag) == 0, "%c in default", want[i].tag);
    }
    raw_close(&r);
    remove_dir();
}


/* RocksDB writes each key once: the superseded writes are left out */
static void superseded_writes_are_left_out(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    later_writes_win_on(s, b);
    uint64_t superseded = metric(s, "parley_store_writes_superseded_total");
    store_batch_free(b);
    store_close(s);
    remove_dir();
    CHECK(superseded == 5, "superseded %lu", superseded);
}

/* Batches are sorted per run by key before they reach RocksDB: a small one
 * by insertion sort, a large one by qsort (store_batch_ops.c). Either way
 * the last write of each key wins, whatever order the keys came in. */
static void last_write_wins_in_small_and_large_batches(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    store_batch *b = store_batch_new();
    const uint64_t sizes[] = {6, 100};   /* 12 writes, then 300 */
    uint64_t superseded_want = 0;
    for (size_t n = 0; n < sizeof sizes / sizeof sizes[0]; n++) {
        uint64_t devices = sizes[n], user = 10 + n;
        /* rounds of cursor moves, devices in descending order in each */
        uint64_t rounds = n == 0 ? 2 : 3;
        for (uint64_t round = 1; round <= rounds; round++)
            for (uint64_t d = devices; d >= 1; d--) store_put_cursor(b, user, d, round * 1000 + d);
        CHECK(store_commit(s, b, true) == 0, "commit of %lu writes", devices * rounds);
        superseded_want += devices * (rounds - 1);
        for (uint64_t d = 1; d <= devices; d++) {
            uint64_t x = 0;
            CHECK(store_get_cursor(s, user, d, &x) == 1 && x == rounds * 1000 + d,
                  "user %lu device %lu: cursor %lu, not the last write", user, d, x);
        }
    }
    uint64_t superseded = metric(s, "parley_store_writes_superseded_total");
    store_batch_free(b);
    store_close(s);
    remove_dir();
    CHECK(superseded == superseded_want, "superseded %lu, want %lu", superseded, superseded_want);
}

/* RocksDB keeps the marks in a record of their own beside the member's */
static void read_marks_leave_the_member_record_alone(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    read_marks_on(s);
    store_close(s);
    if (check_case_failed) {
        remove_dir();
        return;
    }
    raw r;
    CHECK(raw_open(&r, false, NULL) == 0, "raw open");
    oldkey k = k_conv_seq('m', 7, 4);
    k.b[k.len++] = 'r';
    CHECK(!raw_has(&r, "members", k.b, k.len), "the rewritten record left its read marks behind");
    raw_close(&r);
    remove_dir();
}


/* --store cassandra is a known name; without --cassandra it is refused
 * with an error that names the option */
static void cassandra_without_hosts_is_refused_clearly(void) {
    store_kind kind = STORE_KIND_ROCKSDB;
    CHECK(store_kind_parse("cassandra", &kind) == 0 && kind == STORE_KIND_CASSANDRA, "cassandra is a name");
    CHECK(store_kind_parse("mysql", &kind) != 0, "an unknown name is refused");
    char *err = NULL;
    store_options o = {0};
    store *s = store_open_kind(STORE_KIND_CASSANDRA, "/nonexistent-parley", &o, &err);
    CHECK(!s, "a cassandra store opened");
    CHECK(err && strstr(err, "--cassandra HOST:PORT"), "error: %s", err ? err : "(none)");
    free(err);
}

/* ------------------------------------------------------- export and import */

typedef struct dump {
    char text[16384];
    size_t len;
    size_t n;
} dump;

/* every record, rendered as hex key=value lines, in scan order */
static int dump_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    dump *d = ud;
    for (size_t i = 0; i < klen && d->len + 3 < sizeof d->text; i++)
        d->len += (size_t)snprintf(d->text + d->len, sizeof d->text - d->len, "%02x", k[i]);
    if (d->len + 2 < sizeof d->text) d->text[d->len++] = '=';
    for (size_t i = 0; i < vlen && d->len + 3 < sizeof d->text; i++)
        d->len += (size_t)snprintf(d->text + d->len, sizeof d->text - d->len, "%02x", v[i]);
    if (d->len + 2 < sizeof d->text) d->text[d->len++] = '\n';
    d->text[d->len] = 0;
    d->n++;
    return 0;
}

static void fill_every_kind(store_batch *b) {
    Parley__Store__User u = PARLEY__STORE__USER__INIT;
    u.name = "ann";
    store_put_user(b, 11, &u);
    store_put_user_name(b, "ann", 11);
    Parley__Store__Device d = PARLEY__STORE__DEVICE__INIT;
    store_put_device(b, 11, 1, &d);
    Parley__Store__LinkToken t = PARLEY__STORE__LINK_TOKEN__INIT;
    t.user_id = 11;
    store_put_link_token(b, "tok", &t);
    Parley__Store__Conversation cv = PARLEY__STORE__CONVERSATION__INIT;
    store_put_conversation(b, 30, &cv);
    store_put_direct(b, 11, 12, 30);
    Parley__Store__Member m = PARLEY__STORE__MEMBER__INIT;
    m.joined_seq = 1;
    store_put_member(b, 30, 11, &m);
    Parley__Store__Member after = m;
    after.read_seq = 2;
    store_put_member_update(b, 30, 11, &m, &after);
    store_put_message(b, 30, 1, (const uint8_t *)"m1", 2);
    store_put_message(b, 30, 2, (const uint8_t *)"m2", 2);
    store_put_client_msg(b, 11, 1, (const uint8_t *)"id", 2, 30, 2, 1);
    store_put_log(b, 0, 1, 30, 2);
    store_put_checkpoint(b, 0, 1);
    store_put_inbox(b, 12, 1, 30, 2, 11, 1);
    store_put_inbox_head(b, 12, 1);
    store_put_cursor(b, 12, 1, 1);
    Parley__Store__DeviceKeys dk = PARLEY__STORE__DEVICE_KEYS__INIT;
    store_put_device_keys(b, 11, 1, &dk);
    store_put_one_time_key(b, 11, 1, 4, (const uint8_t *)"otk", 3);
    store_put_device_message(b, 12, 1, 1, (const uint8_t *)"dm", 2);
    Parley__Store__Consent cs = PARLEY__STORE__CONSENT__INIT;
    cs.state = 2;
    store_put_consent(b, 12, 11, &cs);
    store_put_counter(b, "user", 12);
}

/* every record kind goes out to a stream and into a new store unchanged;
 * a stream cut short, or an import over records, is refused */
static void export_import_round_trip(void) {
    store *s = open_fresh();
    CHECK(s, "open");
    char first[64];
    snprintf(first, sizeof first, "%s", dir);
    store_batch *b = store_batch_new();
    fill_every_kind(b);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);
    static dump before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    CHECK(store_scan_all(s, dump_cb, &before) == 0 && before.n >= 22, "records before: %zu", before.n);
    FILE *f = tmpfile();
    CHECK(f, "tmpfile");
    uint64_t out_n = 0, in_n = 0;
    char *err = NULL;
    CHECK(store_export(s, f, &out_n, &err) == 0 && out_n == before.n, "export %lu: %s", out_n, err ? err : "");
    long size = ftell(f);
    CHECK(store_import(s, (rewind(f), f), &in_n, &err) != 0 && err && strstr(err, "already holds"),
          "import over records: %s", err ? err : "accepted");
    free(err);
    err = NULL;
    store_close(s);
    store *t = open_fresh();   /* a second directory */
    CHECK(t, "open the target");
    rewind(f);
    int rc = store_import(t, f, &in_n, &err);
    CHECK(rc == 0 && in_n == out_n, "import %lu of %lu: %s", in_n, out_n, err ? err : "");
    CHECK(store_scan_all(t, dump_cb, &after) == 0, "scan the target");
    CHECK(after.n == before.n && strcmp(after.text, before.text) == 0, "the records differ: %zu vs %zu",
          after.n, before.n);
    store_bytes v;
    CHECK(store_get_message(t, 30, 2, &v) == 1 && v.len == 2 && memcmp(v.data, "m2", 2) == 0, "message");
    store_bytes_free(&v);
    store_close(t);
    remove_dir();
    /* the same stream cut short, by one byte of its end mark */
    t = open_fresh();
    CHECK(t, "open the third");
    static char stream[16384];
    rewind(f);
    CHECK(size > 0 && (size_t)size <= sizeof stream && fread(stream, 1, (size_t)size, f) == (size_t)size,
          "read the stream back");
    fclose(f);
    f = fmemopen(stream, (size_t)size - 1, "r");
    CHECK(f, "fmemopen");
    CHECK(store_import(t, f, &in_n, &err) != 0 && err && strstr(err, "cut short"), "a cut stream: %s",
          err ? err : "accepted");
    free(err);
    fclose(f);
    store_close(t);
    remove_dir();
    snprintf(dir, sizeof dir, "%s", first);
    remove_dir();
}

/* ------------------------------------------------- a batch for any backend */

typedef struct writes {
    enum store_write_kind kind[8];
    uint8_t tag[8], end_tag[8];
    size_t vlen[8];
    size_t n;
} writes;

static int write_cb(void *ud, enum store_write_kind kind, const uint8_t *key, size_t klen, const uint8_t *value,
                    size_t vlen) {
    writes *w = ud;
    if (w->n == 8 || klen == 0) return 1;
    w->kind[w->n] = kind;
    w->tag[w->n] = key[0];
    w->end_tag[w->n] = vlen ? value[0] : 0;
    w->vlen[w->n++] = vlen;
    return 0;
}

/* a batch hands its writes to a backend in call order, each with its kind,
 * tagged key and value (a range delete: its end key), nothing left out */
static void a_batch_lists_its_writes_in_call_order(void) {
    store_batch *b = store_batch_new();
    CHECK(b, "new");
    store_put_cursor(b, 3, 1, 9);
    store_put_cursor(b, 3, 1, 10);
    store_delete_cursor(b, 3, 1);
    store_delete_log_through(b, 0, 4);
    store_put_message(b, 5, 1, (const uint8_t *)"m", 1);
    writes w = {0};
    store_batch_each(b, write_cb, &w);
    store_batch_free(b);
    /* a message is two writes: the message and its conversation's last seq */
    CHECK(w.n == 6, "%zu writes listed, 6 made", w.n);
    CHECK(w.kind[0] == STORE_WRITE_PUT && w.tag[0] == 'r' && w.vlen[0] == 8, "first: a cursor put");
    CHECK(w.kind[1] == STORE_WRITE_PUT && w.tag[1] == 'r', "second: the later cursor put, kept for the backend");
    CHECK(w.kind[2] == STORE_WRITE_DELETE && w.tag[2] == 'r' && w.vlen[2] == 0, "third: the delete");
    CHECK(w.kind[3] == STORE_WRITE_DELETE_RANGE && w.tag[3] == 'L' && w.end_tag[3] == 'L',
          "fourth: the log range delete with its end key");
    CHECK(w.kind[4] == STORE_WRITE_PUT && w.tag[4] == 'M', "fifth: the message");
    CHECK(w.kind[5] == STORE_WRITE_PUT && w.tag[5] == 'S', "sixth: the last seq");
}


int main(void) {
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        be = &backends[i];
        for (size_t j = 0; j < sizeof conformance / sizeof conformance[0]; j++) {
            char name[128];
            snprintf(name, sizeof name, "%s[%s]", conformance[j].name, be->name);
            check_run(name, conformance[j].fn);
        }
    }
    be = NULL;
    RUN(cassandra_without_hosts_is_refused_clearly);
    RUN(a_batch_lists_its_writes_in_call_order);
    /* RocksDB's own: its directory, markers, free-space watermark, column
     * families and their layout migration, write coalescing */
    RUN(open_never_creates_over_existing_files);
    RUN(a_store_from_before_markers_opens);
    RUN(commit_refused_under_the_free_space_watermark);
    RUN(fanout_retry_backs_off);
    RUN(records_live_in_their_families);
    RUN(a_store_from_before_families_is_moved_into_them);
    RUN(an_interrupted_move_finishes);
    RUN(superseded_writes_are_left_out);
    RUN(last_write_wins_in_small_and_large_batches);
    RUN(read_marks_leave_the_member_record_alone);
    RUN(export_import_round_trip);
    CHECK_EXIT();
}
