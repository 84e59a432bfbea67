/* test_store_memtable.c -- the memtable tuning of store_memtable.c reaches
 * RocksDB: a store parley opens records, in the OPTIONS file RocksDB
 * writes, one insert-hint prefix per family that appends (messages, inbox,
 * log, members, cursors), none on dedupe (its keys land anywhere), log
 * trims that start outside the log's hint prefix, and
 * memtable writes by one thread (hints are ignored otherwise). What the
 * records read back is the conformance suite's business (test_store). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "store/store.h"
#include "store/store_memtable.h"

enum { OPTIONS_MAX = 256 * 1024 };

static char dir[64];
static char options_text[OPTIONS_MAX];

/* the newest OPTIONS-<n> file of dir into options_text; 0 or -1 */
static int read_newest_options(void) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    unsigned long best = 0;
    char name[sizeof ((struct dirent *)0)->d_name] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long n;
        if (sscanf(e->d_name, "OPTIONS-%lu", &n) == 1 && n >= best) {
            best = n;
            memcpy(name, e->d_name, sizeof name);
        }
    }
    closedir(d);
    if (!name[0]) return -1;
    char path[sizeof dir + sizeof name + 1];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(options_text, 1, sizeof options_text - 1, f);
    fclose(f);
    options_text[n] = 0;
    return n > 0 && n < sizeof options_text - 1 ? 0 : -1;
}

/* the text of family cf's section, up to the next section: a pointer into
 * options_text, cut with a NUL (sections are read once each) */
static const char *family_section(const char *family) {
    char head[96];
    snprintf(head, sizeof head, "[CFOptions \"%s\"]", family);
    char *s = strstr(options_text, head);
    if (!s) return NULL;
    char *end = strstr(s + strlen(head), "\n[");
    if (end) *end = 0;
    return s;
}

static int opened;

static void open_and_close_a_store(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-memtable-XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    CHECK(s, "store_open: %s", err ? err : "?");
    free(err);
    store_close(s);
    CHECK(read_newest_options() == 0, "no readable OPTIONS file in %s", dir);
    opened = 1;
}

static void memtable_writes_by_one_thread(void) {
    CHECK(opened, "no store");
    CHECK(strstr(options_text, "allow_concurrent_memtable_write=false") != NULL,
          "the DB options do not say allow_concurrent_memtable_write=false");
}

static void appending_families_have_hint_prefixes(void) {
    CHECK(opened, "no store");
    static const struct { const char *family; int prefix; } want[] = {
        {"messages", 9}, {"inbox", 9}, {"log", 6}, {"members", 17}, {"cursors", 13},
    };
    /* the table above and the code agree */
    CHECK(store_memtable_hint_prefix(CF_MESSAGES) == 9 && store_memtable_hint_prefix(CF_INBOX) == 9 &&
          store_memtable_hint_prefix(CF_LOG) == 6 && store_memtable_hint_prefix(CF_MEMBERS) == 17 &&
          store_memtable_hint_prefix(CF_CURSORS) == 13, "store_memtable_hint_prefix changed");
    static char copy[OPTIONS_MAX];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        memcpy(copy, options_text, sizeof copy);
        const char *sec = family_section(want[i].family);
        char line[128];
        snprintf(line, sizeof line, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.%d",
                 want[i].prefix);
        int found = sec && strstr(sec, line) != NULL;
        memcpy(options_text, copy, sizeof copy);
        CHECK(sec, "no section for family %s", want[i].family);
        CHECK(found, "family %s: no %s", want[i].family, line);
    }
}

/* dedupe: its keys land anywhere */
static void dedupe_has_no_hint(void) {
    CHECK(opened, "no store");
    const char *sec = family_section("dedupe");
    CHECK(sec, "no section for family dedupe");
    CHECK(strstr(sec, "memtable_insert_with_hint_prefix_extractor=nullptr") != NULL,
          "family dedupe has an insert hint prefix");
}

struct kept { uint64_t n, first; };

static int count_kept(void *ud, uint64_t offset, uint64_t conv, uint64_t seq) {
    (void)conv; (void)seq;
    struct kept *k = ud;
    if (k->n++ == 0) k->first = offset;
    return 0;
}

/* The log's trim is a range deletion; its start key must be shorter than
 * the log's hint prefix, or RocksDB 7.8 would start the deletion's insert
 * from a point list's splice (store_memtable.c). Many trims between
 * appends, then the log reads back what the trims left. */
static void log_trims_start_outside_the_hint(void) {
    CHECK(store_memtable_hint_prefix(CF_LOG) == 6, "log hint prefix changed");
    char d[64];
    snprintf(d, sizeof d, "/tmp/parley-memtable-XXXXXX");
    CHECK(mkdtemp(d) != NULL, "mkdtemp");
    char *err = NULL;
    store *s = store_open(d, 0, 0, &err);
    CHECK(s, "store_open: %s", err ? err : "?");
    free(err);
    int bad = 0;
    for (uint64_t off = 1; off <= 2000 && !bad; off++) {
        store_batch *b = store_batch_new();
        for (uint32_t p = 0; p < 4; p++) store_put_log(b, p, off, 100 + p, off);
        if (off % 10 == 0)
            for (uint32_t p = 0; p < 4; p++) store_delete_log_through(b, p, off - 5);
        bad = store_commit(s, b, false) != 0;
        store_batch_free(b);
    }
    uint64_t last = 0;
    int rc = bad ? -1 : store_last_log_offset(s, 2, &last);
    struct kept kept = {0, 0};
    int rc2 = bad ? -1 : store_scan_log(s, 2, 0, count_kept, &kept);
    store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", d);
    CHECK(!bad, "a commit failed");
    CHECK(rc == 0 && last == 2000, "last log offset %llu (rc %d), not 2000", (unsigned long long)last, rc);
    /* the last trim (at 2000) deleted through 1995 */
    CHECK(rc2 == 0 && kept.n == 5 && kept.first == 1996, "log kept %llu entries from %llu (rc %d), not 5 from 1996",
          (unsigned long long)kept.n, (unsigned long long)kept.first, rc2);
}

int main(void) {
    RUN(open_and_close_a_store);
    RUN(memtable_writes_by_one_thread);
    RUN(appending_families_have_hint_prefixes);
    RUN(dedupe_has_no_hint);
    RUN(log_trims_start_outside_the_hint);
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    }
    CHECK_EXIT();
}
