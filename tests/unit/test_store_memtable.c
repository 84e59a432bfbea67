/* test_store_memtable.c -- the memtable tuning of store_memtable.c reaches
 * RocksDB: a store parley opens records, in the OPTIONS file RocksDB
 * writes, one insert-hint prefix per family that appends (messages, inbox,
 * members, cursors), none on dedupe (its keys land anywhere) or the log
 * (trimmed by range deletions), and
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
        {"messages", 9}, {"inbox", 9}, {"members", 17}, {"cursors", 13},
    };
    /* the table above and the code agree */
    CHECK(store_memtable_hint_prefix(CF_MESSAGES) == 9 && store_memtable_hint_prefix(CF_INBOX) == 9 &&
          store_memtable_hint_prefix(CF_MEMBERS) == 17 &&
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

/* dedupe: its keys land anywhere; log: it takes range deletions, which
 * RocksDB 7.8 would start from a point list's hint */
static void dedupe_and_log_have_no_hint(void) {
    CHECK(opened, "no store");
    static char copy[OPTIONS_MAX];
    static const char *const none[] = {"dedupe", "log"};
    for (size_t i = 0; i < 2; i++) {
        memcpy(copy, options_text, sizeof copy);
        const char *sec = family_section(none[i]);
        int clean = sec && strstr(sec, "memtable_insert_with_hint_prefix_extractor=nullptr") != NULL;
        memcpy(options_text, copy, sizeof copy);
        CHECK(sec, "no section for family %s", none[i]);
        CHECK(clean, "family %s has an insert hint prefix", none[i]);
    }
}

int main(void) {
    RUN(open_and_close_a_store);
    RUN(memtable_writes_by_one_thread);
    RUN(appending_families_have_hint_prefixes);
    RUN(dedupe_and_log_have_no_hint);
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    }
    CHECK_EXIT();
}
