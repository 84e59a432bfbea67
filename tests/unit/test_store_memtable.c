/* test_store_memtable.c -- the memtable tuning of store_memtable.c reaches
 * RocksDB: a store parley opens records, in the OPTIONS file RocksDB
 * writes, one insert-hint prefix per family that appends (messages, inbox,
 * members, cursors, the log) or inserts near its last key of a prefix
 * (dedupe), and memtable writes by one thread (hints are ignored
 * otherwise). Then the hinted dedupe and log families read back what was
 * written in an order that jumps between prefixes, with log trims (range
 * deletions) between appends, from the memtable and again after a reopen.
 * The rest of what records read back is the conformance suite's business
 * (test_store). */
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
        {"messages", 9}, {"inbox", 9}, {"members", 17}, {"cursors", 13}, {"dedupe", 13}, {"log", 5},
    };
    /* the table above and the code agree */
    CHECK(store_memtable_hint_prefix(CF_MESSAGES) == 9 && store_memtable_hint_prefix(CF_INBOX) == 9 &&
          store_memtable_hint_prefix(CF_MEMBERS) == 17 && store_memtable_hint_prefix(CF_CURSORS) == 13 &&
          store_memtable_hint_prefix(CF_DEDUPE) == 13 && store_memtable_hint_prefix(CF_LOG) == 5,
          "store_memtable_hint_prefix changed");
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

enum { DEVICES = 40, IDS = 50, PARTITIONS = 8, OFFSETS = 300 };

/* a device's client_msg_id number n: 8 bytes little-endian, as
 * parley-bench sends them (not in key order within the device) */
static void id_of(uint64_t n, uint8_t id[8]) {
    for (int i = 0; i < 8; i++) id[i] = (uint8_t)(n >> (i * 8));
}

/* every (device, id) written reads back its (conv, seq); an id never
 * written reads as absent. 0 when all do. */
static int dedupe_reads_back(store *s) {
    for (uint32_t d = 0; d < DEVICES; d++)
        for (uint64_t n = 0; n < IDS; n++) {
            uint8_t id[8];
            id_of(n * 7919 + 1, id);
            uint64_t conv = 0, seq = 0;
            if (store_get_client_msg(s, 1000 + d % 5, d, id, sizeof id, &conv, &seq) != 1) return -1;
            if (conv != 77 + d || seq != n + 1) return -1;
            id_of(n * 7919 + 2, id);
            if (store_get_client_msg(s, 1000 + d % 5, d, id, sizeof id, &conv, &seq) != 0) return -1;
        }
    return 0;
}

struct kept { uint64_t n, first, last; int ordered; };

static int count_kept(void *ud, uint64_t offset, uint64_t conv, uint64_t seq) {
    struct kept *k = ud;
    if (k->n && offset != k->last + 1) k->ordered = 0;
    if (conv != offset % 3 + 1 || seq != offset) k->ordered = 0;
    if (k->n++ == 0) k->first = offset;
    k->last = offset;
    return 0;
}

/* each partition p was trimmed through offset trim_of(p): it scans as the
 * offsets after that, in order, with their values. 0 when all do. */
static uint64_t trim_of(uint32_t p) { return 10 + p * 13; }

static int log_reads_back(store *s) {
    for (uint32_t p = 0; p < PARTITIONS; p++) {
        struct kept k = {.ordered = 1};
        if (store_scan_log(s, p, 0, count_kept, &k) < 0) return -1;
        if (!k.ordered || k.first != trim_of(p) + 1 || k.last != OFFSETS || k.n != OFFSETS - trim_of(p))
            return -1;
        uint64_t last = 0, ckpt = 0;
        if (store_last_log_offset(s, p, &last) < 0 || last != OFFSETS) return -1;
        if (store_get_checkpoint(s, p, &ckpt) < 0 || ckpt != trim_of(p)) return -1;
    }
    return 0;
}

/* Writes that jump between prefixes in every commit (devices of several
 * users, partitions), so each insert's hint is another prefix's neighbour,
 * and log trims between the appends; read from the memtable, then after a
 * reopen (from the WAL or the flushed files). */
static void hinted_families_read_back(void) {
    char d[64];
    snprintf(d, sizeof d, "/tmp/parley-memtable-XXXXXX");
    CHECK(mkdtemp(d) != NULL, "mkdtemp");
    char *err = NULL;
    store *s = store_open(d, 0, 0, &err);
    CHECK(s, "store_open: %s", err ? err : "?");
    int failed = 0;
    store_batch *b = store_batch_new();
    for (uint64_t n = 0; n < IDS && !failed; n++) {
        for (uint32_t dv = 0; dv < DEVICES; dv++) {
            uint8_t id[8];
            id_of(n * 7919 + 1, id);
            store_put_client_msg(b, 1000 + dv % 5, dv, id, sizeof id, 77 + dv, n + 1, 1);
        }
        failed = store_commit(s, b, false) != 0;
    }
    for (uint64_t o = 1; o <= OFFSETS && !failed; o++) {
        for (uint32_t p = 0; p < PARTITIONS; p++) {
            store_put_log(b, p, o, o % 3 + 1, o);
            if (o == trim_of(p) + 5) {   /* a trim among the appends */
                store_delete_log_through(b, p, trim_of(p));
                store_put_checkpoint(b, p, trim_of(p));
            }
        }
        failed = store_commit(s, b, false) != 0;
    }
    store_batch_free(b);
    int memtable_dedupe = failed ? -1 : dedupe_reads_back(s);
    int memtable_log = failed ? -1 : log_reads_back(s);
    store_close(s);
    s = store_open(d, 0, 0, &err);
    int reopened = s != NULL;
    int reopened_dedupe = s ? dedupe_reads_back(s) : -1;
    int reopened_log = s ? log_reads_back(s) : -1;
    if (s) store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", d);
    CHECK(!failed, "a commit failed");
    CHECK(memtable_dedupe == 0, "dedupe records do not read back from the memtable");
    CHECK(memtable_log == 0, "the log does not read back from the memtable");
    CHECK(reopened, "reopen: %s", err ? err : "?");
    CHECK(reopened_dedupe == 0, "dedupe records do not read back after a reopen");
    CHECK(reopened_log == 0, "the log does not read back after a reopen");
}

int main(void) {
    RUN(open_and_close_a_store);
    RUN(memtable_writes_by_one_thread);
    RUN(appending_families_have_hint_prefixes);
    RUN(hinted_families_read_back);
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    }
    CHECK_EXIT();
}
