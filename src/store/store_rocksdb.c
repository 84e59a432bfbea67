/* store_rocksdb.c -- the embedded store on RocksDB.
 *
 * The first byte of a key says what it is, and integers are big-endian so
 * that a conversation's messages or a user's inbox are one ordered range.
 * The kind also picks the column family the record lives in (see
 * store_layout.h: messages, inbox, dedupe, log, cursors, members, default):
 *
 *   'k' name                   -> counter (8)
 *   'n' user name              -> user id (8)
 *   'u' user(8)                -> parley.store.User
 *   'd' user(8) device(4)      -> parley.store.Device
 *   't' token                  -> parley.store.LinkToken
 *   'c' conv(8)                -> parley.store.Conversation
 *   'p' low user(8) high(8)    -> conv (8)       the direct conversation of a pair
 *   'm' conv(8) user(8)        -> parley.store.Member
 *   'm' conv(8) user(8) 'r'    -> read_seq(8) delivered_seq(8)  read marks: when
 *                                 present they replace the record's two fields
 *   'v' user(8) conv(8)        -> ""             the user's conversations
 *   'M' conv(8) seq(8)         -> parley.v1.Message
 *   'S' conv(8)                -> last seq (8)   never expires: seqs are not reused
 *   'i' user(8) device(4) len(1) client_msg_id -> conv(8) seq(8) ts(8)
 *   'L' partition(4) offset(8) -> conv(8) seq(8) fan-out log
 *   'f' partition(4)           -> offset (8)     fan-out checkpoint
 *   'X' user(8) user_seq(8)    -> conv(8) seq(8) sender(8) ts(8)  inbox
 *   'H' user(8)                -> last user_seq (8)  never expires: user_seqs are not reused
 *   'r' user(8) device(4)      -> user_seq (8)   device cursor
 *   'K' user(8) device(4)      -> parley.store.DeviceKeys
 *   'o' user(8) device(4) key_id(4) -> public key   one-time pre-keys
 *   'q' user(8) device(4) queue_seq(8) -> parley.v1.DeviceMessage
 *   'A' owner(8) other(8)      -> parley.store.Consent  owner's view of other
 *   'w' user(8) device(4)      -> parley.store.PushSubscription  Web Push
 *   'g' partition(4) slot(4)   -> offset(8) user(8) device(8) request id(8) conv(8)
 *                                 the group a 'sends' record created (store_group_origin.h):
 *                                 a ring of STORE_GROUP_ORIGIN_SLOTS per partition
 *   '#layout'                  -> layout version (8), see store_layout.h
 *
 * Retention: 'M', 'X' and 'i' records carry their message's time. Reads
 * treat the ones older than the retention as absent at once; a compaction
 * filter drops them from disk, and a sweeper thread forces a compaction
 * every sweep interval so that happens even on an idle store.
 */
#include "store/store_rocksdb.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/pb_equal.h"
#include "store/store_batch_ops.h"
#include "store/store_dir.h"
#include "store/store_group_origin.h"
#include "store/store_layout.h"
#include "store/store_memtable.h"
#include "store/store_thread.h"

/* column families found in a store that parley did not make: opened
 * (RocksDB requires it), never used */
enum { EXTRA_FAMILIES_MAX = 32 };

typedef struct rdb rdb;
struct rdb {
    rocksdb_t *db;
    rocksdb_options_t *options;      /* the DB's options, and the default family's */
    rocksdb_options_t *cf_options[CF_COUNT];
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_column_family_handle_t *extra_cf[EXTRA_FAMILIES_MAX];
    int n_extra_cf;
    rocksdb_readoptions_t *read;
    rocksdb_writeoptions_t *write_sync;
    rocksdb_writeoptions_t *write_nosync;
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table;
    rocksdb_compactionfilter_t *filter;
    uint64_t retention_ms;           /* 0: keep everything */
    uint32_t sweep_ms;
    pthread_t sweeper;
    bool sweeping;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_stop;
    bool stopping;
    /* disk space and health: the monitor thread samples the filesystem, the
     * committing threads read the result */
    char dir[1024];
    uint64_t min_free_bytes;          /* 0: no watermark */
    bool recover_truncate_corrupt_wal;
    pthread_t monitor;
    bool monitoring;
    atomic_ullong free_bytes;
    atomic_bool disk_full;
    atomic_bool commit_failing;
    atomic_ulong writes_refused_total;   /* commits refused under the watermark */
    atomic_ulong commit_failures_total;  /* commits RocksDB failed */
    atomic_ulong superseded_total;       /* writes left out: a later one in the batch replaced them */
    atomic_ullong layout_moved_total;    /* records moved into their families at open */
};

/* ------------------------------------------------------------------ keys */

enum { KEY_MAX = 64 };

typedef struct key {
    uint8_t b[KEY_MAX + 256];
    size_t len;
} key;

static void key_begin(key *k, char tag) { k->b[0] = (uint8_t)tag; k->len = 1; }
static void key_u64(key *k, uint64_t v) {
    for (int i = 7; i >= 0; i--) k->b[k->len++] = (uint8_t)(v >> (i * 8));
}
static void key_u32(key *k, uint32_t v) {
    for (int i = 3; i >= 0; i--) k->b[k->len++] = (uint8_t)(v >> (i * 8));
}
static void key_bytes(key *k, const void *p, size_t n) {
    memcpy(k->b + k->len, p, n);
    k->len += n;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) *p++ = (uint8_t)(v >> (i * 8));
}

/* the smallest key greater than every key starting with prefix k */
static void key_prefix_end(const key *k, key *end) {
    *end = *k;
    while (end->len > 0 && end->b[end->len - 1] == 0xff) end->len--;
    if (end->len > 0) end->b[end->len - 1]++;
}

/* ------------------------------------------------------------ retention */

/* server_ts (field 10, varint) of an encoded parley.v1.Message; 0 if absent */
static uint64_t message_ts(const uint8_t *p, size_t len) {
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t tag = 0, v = 0;
        int shift = 0;
        while (p < end && shift < 64) { tag |= (uint64_t)(*p & 0x7f) << shift; shift += 7; if (!(*p++ & 0x80)) break; }
        uint32_t wire = tag & 7, field = (uint32_t)(tag >> 3);
        if (wire == 0) {
            shift = 0;
            while (p < end && shift < 64) { v |= (uint64_t)(*p & 0x7f) << shift; shift += 7; if (!(*p++ & 0x80)) break; }
            if (field == 10) return v;
        } else if (wire == 2) {
            shift = 0;
            while (p < end && shift < 64) { v |= (uint64_t)(*p & 0x7f) << shift; shift += 7; if (!(*p++ & 0x80)) break; }
            if (v > (uint64_t)(end - p)) return 0;
            p += v;
        } else if (wire == 1) {
            p += 8;
        } else if (wire == 5) {
            p += 4;
        } else {
            return 0;
        }
    }
    return 0;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool expired_at(uint64_t retention_ms, uint64_t ts, uint64_t now) {
    return retention_ms && ts && ts + retention_ms < now;
}

static bool expired(const rdb *s, uint64_t ts) { return expired_at(s->retention_ms, ts, wall_ms()); }

static uint64_t get_u64(const uint8_t *p);

/* the time a record carries, by its kind; 0 for records that never expire */
static uint64_t record_ts(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    if (klen == 0) return 0;
    switch (k[0]) {
    case 'M': return klen == 17 ? message_ts(v, vlen) : 0;
    case 'X': return vlen == 32 ? get_u64(v + 24) : 0;
    case 'i': return vlen == 24 ? get_u64(v + 16) : 0;
    default: return 0;
    }
}

static unsigned char retention_filter(void *state, int level, const char *key, size_t key_length,
                                      const char *existing_value, size_t value_length, char **new_value,
                                      size_t *new_value_length, unsigned char *value_changed) {
    (void)level; (void)new_value; (void)new_value_length;
    *value_changed = 0;
    const rdb *s = state;
    uint64_t ts = record_ts((const uint8_t *)key, key_length, (const uint8_t *)existing_value, value_length);
    if (!expired(s, ts)) return 0;
    METRIC_INC(retention_removed_total);
    return 1;
}

static const char *retention_filter_name(void *state) {
    (void)state;
    return "parley.retention";
}

static void retention_filter_destroy(void *state) { (void)state; }

/* forces a compaction every sweep interval, so expired records leave the disk */
static void *sweeper_main(void *arg) {
    rdb *s = arg;
    pthread_mutex_lock(&s->sweep_lock);
    while (!s->stopping) {
        struct timespec until = clock_realtime_deadline(s->sweep_ms);
        pthread_cond_timedwait(&s->sweep_stop, &s->sweep_lock, &until);
        if (s->stopping) break;
        pthread_mutex_unlock(&s->sweep_lock);
        /* a compaction writes new files before it deletes old ones */
        for (int cf = 0; cf < CF_COUNT && !atomic_load(&s->disk_full); cf++)
            if (store_cf_expires(cf)) rocksdb_compact_range_cf(s->db, s->cf[cf], NULL, 0, NULL, 0);
        pthread_mutex_lock(&s->sweep_lock);
    }
    pthread_mutex_unlock(&s->sweep_lock);
    return NULL;
}

/* ------------------------------------------------------------ disk space */

enum { MONITOR_INTERVAL_MS = 200 };

/* Samples the free space of the store's filesystem; crossing the watermark
 * is logged once each way. */
static void sample_disk(rdb *s) {
    struct statvfs v;
    if (statvfs(s->dir, &v) != 0) return;
    uint64_t free_bytes = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
    atomic_store(&s->free_bytes, free_bytes);
    bool full = s->min_free_bytes && free_bytes < s->min_free_bytes;
    bool was = atomic_exchange(&s->disk_full, full);
    if (full && !was)
        log_error("store: %llu bytes free in %s, under --min-free-disk %llu: writes are refused "
                  "until space returns", (unsigned long long)free_bytes, s->dir,
                  (unsigned long long)s->min_free_bytes);
    else if (!full && was)
        log_info("store: %llu bytes free in %s again: writes resume", (unsigned long long)free_bytes,
                 s->dir);
}

static void *monitor_main(void *arg) {
    rdb *s = arg;
    pthread_mutex_lock(&s->sweep_lock);
    while (!s->stopping) {
        struct timespec until = clock_realtime_deadline(MONITOR_INTERVAL_MS);
        pthread_cond_timedwait(&s->sweep_stop, &s->sweep_lock, &until);
        if (s->stopping) break;
        pthread_mutex_unlock(&s->sweep_lock);
        sample_disk(s);
        pthread_mutex_lock(&s->sweep_lock);
    }
    pthread_mutex_unlock(&s->sweep_lock);
    return NULL;
}

static store_health rdb_get_health(void *impl) {
    rdb *s = impl;
    if (atomic_load(&s->disk_full)) return STORE_DISK_FULL;
    if (atomic_load(&s->commit_failing)) return STORE_FAILING;
    return STORE_HEALTHY;
}

const char *store_health_name(store_health h) {
    return h == STORE_DISK_FULL ? "disk full" : h == STORE_FAILING ? "store failing" : "ok";
}

static size_t rdb_metrics_render(void *impl, char *out, size_t cap) {
    rdb *s = impl;
    uint64_t bg = 0;
    if (rocksdb_property_int(s->db, "rocksdb.background-errors", &bg) != 0) bg = 0;
    int n = snprintf(out, cap,
        "# HELP parley_store_disk_free_bytes Free bytes on the store's filesystem (for unprivileged use).\n"
        "# TYPE parley_store_disk_free_bytes gauge\nparley_store_disk_free_bytes %llu\n"
        "# HELP parley_store_min_free_bytes The --min-free-disk watermark (0: none).\n"
        "# TYPE parley_store_min_free_bytes gauge\nparley_store_min_free_bytes %llu\n"
        "# HELP parley_store_disk_full 1 while free space is under the watermark and writes are refused.\n"
        "# TYPE parley_store_disk_full gauge\nparley_store_disk_full %d\n"
        "# HELP parley_store_writes_refused_total Commits refused (INSUFFICIENT_STORAGE) under the watermark.\n"
        "# TYPE parley_store_writes_refused_total counter\nparley_store_writes_refused_total %lu\n"
        "# HELP parley_store_commit_failures_total Commits the store failed.\n"
        "# TYPE parley_store_commit_failures_total counter\nparley_store_commit_failures_total %lu\n"
        "# HELP parley_store_failing 1 while the last commit failed.\n"
        "# TYPE parley_store_failing gauge\nparley_store_failing %d\n"
        "# HELP parley_store_background_errors RocksDB background errors (flush, compaction) since start.\n"
        "# TYPE parley_store_background_errors counter\nparley_store_background_errors %llu\n"
        "# HELP parley_store_writes_superseded_total Writes left out of a commit because a later write of the same key in the same batch replaced them (a device's acks in one group commit: one cursor write).\n"
        "# TYPE parley_store_writes_superseded_total counter\nparley_store_writes_superseded_total %lu\n"
        "# HELP parley_store_layout_records_moved_total Records of a store made before column families moved into their families at open.\n"
        "# TYPE parley_store_layout_records_moved_total counter\nparley_store_layout_records_moved_total %llu\n",
        (unsigned long long)atomic_load(&s->free_bytes), (unsigned long long)s->min_free_bytes,
        atomic_load(&s->disk_full) ? 1 : 0, atomic_load(&s->writes_refused_total),
        atomic_load(&s->commit_failures_total), atomic_load(&s->commit_failing) ? 1 : 0,
        (unsigned long long)bg, atomic_load(&s->superseded_total),
        (unsigned long long)atomic_load(&s->layout_moved_total));
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}

/* --------------------------------------------------------------- open */

/* The write-ahead log files in dir and their sizes, for the log when a
 * corrupt one is truncated. */
static void log_wal_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    for (int i = 0; i < 1024 && (e = readdir(d)) != NULL; i++) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".log") != 0) continue;
        char path[2048];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0)
            log_error("store: write-ahead log %s: %lld bytes", path, (long long)st.st_size);
    }
    closedir(d);
}

static char *errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errorf(const char *fmt, ...) {
    char *text = malloc(2048);
    if (!text) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, 2048, fmt, ap);
    va_end(ap);
    return text;
}

/* RocksDB's WAL modes (c.h takes the enum's value): 0 tolerates a torn last
 * record, the only damage a crash leaves, and fails on anything before the
 * end; 2 (RocksDB's default) stops at the first damage and silently drops
 * the rest of the log. */
enum { WAL_TOLERATE_TAIL = 0, WAL_POINT_IN_TIME = 2 };

/* After a strict open failed on corruption: would a point-in-time open
 * work, i.e. is the damage in the write-ahead log's records? Read-only, so
 * nothing on disk changes. 1 with the sequence number it would keep. */

/* The column families to open: parley's, and any other the store lists
 * (RocksDB opens a store only with all of them). */
typedef struct family_set {
    const char *names[CF_COUNT + EXTRA_FAMILIES_MAX];
    const rocksdb_options_t *options[CF_COUNT + EXTRA_FAMILIES_MAX];
    rocksdb_column_family_handle_t *handles[CF_COUNT + EXTRA_FAMILIES_MAX];
    int n;
    char **listed;
    size_t n_listed;
} family_set;

static int family_index(const char *name) {
    for (int i = 0; i < CF_COUNT; i++)
        if (strcmp(store_cf_names[i], name) == 0) return i;
    return -1;
}

/* only_listed: just the families the store has (a read-only open cannot
 * create the missing ones). -1 with *err when there are too many others. */
static int families_collect(rdb *s, const char *dir, bool create, bool only_listed, family_set *fs,
                            char **err) {
    fs->n = 0;
    fs->listed = NULL;
    fs->n_listed = 0;
    if (!create) {
        char *lerr = NULL;
        fs->listed = rocksdb_list_column_families(s->options, dir, &fs->n_listed, &lerr);
        /* unreadable: the open that follows fails and says why */
        if (lerr) {
            free(lerr);
            if (fs->listed) rocksdb_list_column_families_destroy(fs->listed, fs->n_listed);
            fs->listed = NULL;
            fs->n_listed = 0;
        }
    }
    for (int i = 0; i < CF_COUNT; i++) {
        bool there = create || !only_listed;
        for (size_t j = 0; j < fs->n_listed && !there; j++) there = strcmp(fs->listed[j], store_cf_names[i]) == 0;
        if (!there) continue;
        fs->names[fs->n] = store_cf_names[i];
        fs->options[fs->n++] = s->cf_options[i];
    }
    for (size_t j = 0; j < fs->n_listed; j++) {
        if (family_index(fs->listed[j]) >= 0) continue;
        if (fs->n == CF_COUNT + EXTRA_FAMILIES_MAX) {
            *err = errorf("the store in %s has more than %d column families parley does not know",
                          dir, EXTRA_FAMILIES_MAX);
            return -1;
        }
        fs->names[fs->n] = fs->listed[j];
        fs->options[fs->n++] = s->options;
    }
    return 0;
}

static void families_release(family_set *fs) {
    if (fs->listed) rocksdb_list_column_families_destroy(fs->listed, fs->n_listed);
    fs->listed = NULL;
}

/* A read-write open with every family; the handles go to s. */
static rocksdb_t *open_families(rdb *s, const char *dir, bool create, char **err) {
    family_set fs;
    if (families_collect(s, dir, create, false, &fs, err) != 0) {
        families_release(&fs);
        return NULL;
    }
    rocksdb_t *db = rocksdb_open_column_families(s->options, dir, fs.n, fs.names, fs.options, fs.handles, err);
    if (db) {
        s->n_extra_cf = 0;
        for (int i = 0; i < fs.n; i++) {
            int k = family_index(fs.names[i]);
            if (k >= 0) s->cf[k] = fs.handles[i];
            else s->extra_cf[s->n_extra_cf++] = fs.handles[i];
        }
    }
    families_release(&fs);
    return db;
}

static int probe_point_in_time(rdb *s, const char *dir, uint64_t *kept_seq) {
    family_set fs;
    char *err = NULL;
    if (families_collect(s, dir, false, true, &fs, &err) != 0 || fs.n_listed == 0) {
        free(err);
        families_release(&fs);
        return 0;
    }
    rocksdb_options_set_wal_recovery_mode(s->options, WAL_POINT_IN_TIME);
    rocksdb_t *db = rocksdb_open_for_read_only_column_families(s->options, dir, fs.n, fs.names, fs.options,
                                                                fs.handles, 0, &err);
    rocksdb_options_set_wal_recovery_mode(s->options, WAL_TOLERATE_TAIL);
    free(err);
    families_release(&fs);
    if (!db) return 0;
    *kept_seq = rocksdb_get_latest_sequence_number(db);
    for (int i = 0; i < fs.n; i++) rocksdb_column_family_handle_destroy(fs.handles[i]);
    rocksdb_close(db);
    return 1;
}

static rocksdb_t *open_db(rdb *s, const char *dir, bool create, char **err) {
    rocksdb_options_set_create_if_missing(s->options, create);
    rocksdb_options_set_error_if_exists(s->options, create);
    rocksdb_options_set_wal_recovery_mode(s->options, WAL_TOLERATE_TAIL);
    rocksdb_t *db = open_families(s, dir, create, err);
    if (db || create || !*err || !strstr(*err, "Corruption")) return db;
    uint64_t kept_seq = 0;
    if (!probe_point_in_time(s, dir, &kept_seq)) return NULL;   /* not the log: no flag helps */
    if (!s->recover_truncate_corrupt_wal) {
        char *why = errorf("%s\nThe store's write-ahead log is damaged before its end: opening it "
                           "would drop the writes after the damage, which may include acknowledged "
                           "messages. Refusing to start. Restore the data directory from a backup, "
                           "or pass --recover-truncate-corrupt-wal to start at the last consistent "
                           "point (sequence number %llu) and lose the writes after it. RocksDB's "
                           "LOG file in %s names the damaged log and offset.",
                           *err, (unsigned long long)kept_seq, dir);
        if (why) {
            free(*err);
            *err = why;
        }
        return NULL;
    }
    log_error("store: %s", *err);
    log_wal_files(dir);
    log_error("store: --recover-truncate-corrupt-wal: opening at the last consistent point; every "
              "write after the damage, to the end of the logs listed, is dropped (RocksDB's LOG "
              "file in %s names the damaged log and offset)", dir);
    free(*err);
    *err = NULL;
    rocksdb_options_set_wal_recovery_mode(s->options, WAL_POINT_IN_TIME);
    db = open_families(s, dir, false, err);
    if (db)
        log_error("store: recovered to sequence number %llu; writes after it are lost",
                  (unsigned long long)rocksdb_get_latest_sequence_number(db));
    return db;
}

static void rdb_close(void *impl);

static rdb *rdb_open(const char *dir, const store_options *o, char **err) {
    *err = NULL;
    char why[1200];
    enum store_dir_state state = store_dir_inspect(dir, why, sizeof why);
    if (state == STORE_DIR_ERROR) {
        *err = errorf("%s", why);
        return NULL;
    }
    if (state == STORE_DIR_FOREIGN) {
        *err = errorf("%s is not empty and holds no parley store (no %s marker, no CURRENT file): "
                      "refusing to create a store over files parley did not make. Use an empty "
                      "directory (parley init --data DIR), or restore the store's files.",
                      dir, STORE_DIR_MARKER);
        return NULL;
    }
    if (strlen(dir) >= sizeof ((rdb *)0)->dir) {
        *err = errorf("data directory name too long");
        return NULL;
    }
    bool create = state == STORE_DIR_ABSENT || state == STORE_DIR_EMPTY;
    rdb *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->retention_ms = o->retention_ms;
    s->sweep_ms = o->sweep_ms;
    s->min_free_bytes = o->min_free_bytes;
    s->recover_truncate_corrupt_wal = o->recover_truncate_corrupt_wal;
    strcpy(s->dir, dir);
    pthread_mutex_init(&s->sweep_lock, NULL);
    pthread_cond_init(&s->sweep_stop, NULL);
    s->options = rocksdb_options_create();
    rocksdb_options_set_paranoid_checks(s->options, 1);
    rocksdb_options_increase_parallelism(s->options, 2);
    rocksdb_options_optimize_level_style_compaction(s->options, 64 << 20);
    s->table = rocksdb_block_based_options_create();
    s->cache = rocksdb_cache_create_lru(128 << 20);
    rocksdb_block_based_options_set_block_cache(s->table, s->cache);
    /* point lookups that miss (a new client_msg_id, a new user name) cost a
     * bloom probe per file instead of a block read */
    rocksdb_block_based_options_set_filter_policy(s->table, rocksdb_filterpolicy_create_bloom(10));
    rocksdb_options_set_block_based_table_factory(s->options, s->table);
    /* the families' memtables share one budget, and a quiet family (cursors)
     * is flushed rather than keep every log file alive */
    rocksdb_options_set_db_write_buffer_size(s->options, 256 << 20);
    rocksdb_options_set_max_total_wal_size(s->options, 512 << 20);
    /* a store made before the families gets them at its first open */
    rocksdb_options_set_create_missing_column_families(s->options, 1);
    if (s->retention_ms)
        s->filter = rocksdb_compactionfilter_create(s, retention_filter_destroy, retention_filter,
                                                    retention_filter_name);
    store_memtable_tune_db(s->options);
    for (int i = 0; i < CF_COUNT; i++) {
        s->cf_options[i] = i == CF_DEFAULT ? s->options : store_cf_options(s->options, i, s->filter);
        if (i != CF_DEFAULT && store_memtable_tune_cf(&s->cf_options[i], i, err) < 0) {
            rdb_close(s);
            return NULL;
        }
    }
    s->read = rocksdb_readoptions_create();
    s->write_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->write_sync, 1);
    s->write_nosync = rocksdb_writeoptions_create();
    s->db = open_db(s, dir, create, err);
    if (!s->db) {
        if (!create && *err) {
            char *why2 = errorf("the store in %s does not open: %s\nparley never initialises over "
                                "an existing store: restore the missing or damaged files, or move "
                                "the directory away and start on an empty one.", dir, *err);
            if (why2) {
                free(*err);
                *err = why2;
            }
        }
        rdb_close(s);
        return NULL;
    }
    uint64_t moved = 0;
    int laid_out = create ? store_layout_mark(s->db, s->cf, s->write_sync, err)
                          : store_layout_migrate(s->db, s->cf, s->write_sync, &moved, err);
    if (laid_out != 0) {
        char *why2 = errorf("the store in %s: cannot record or move to its column-family layout: %s",
                            dir, *err ? *err : "");
        free(*err);
        *err = why2;
        rdb_close(s);
        return NULL;
    }
    atomic_store(&s->layout_moved_total, moved);
    /* marked once RocksDB has made (or opened) the store: a crash between
     * the two leaves an unmarked store with CURRENT, which opens */
    if (state != STORE_DIR_MARKED && store_dir_mark(dir, why, sizeof why) != 0) {
        *err = errorf("%s", why);
        rdb_close(s);
        return NULL;
    }
    if (state == STORE_DIR_UNMARKED_DB) log_info("store: marked the existing store in %s as parley's", dir);
    if (create) log_info("store: created a new store in %s", dir);
    sample_disk(s);
    s->monitoring = pthread_create(&s->monitor, NULL, monitor_main, s) == 0;
    if (s->retention_ms && s->sweep_ms) s->sweeping = pthread_create(&s->sweeper, NULL, sweeper_main, s) == 0;
    return s;
}

int store_init(const char *dir, char **err) {
    *err = NULL;
    char why[1200];
    enum store_dir_state state = store_dir_inspect(dir, why, sizeof why);
    if (state == STORE_DIR_ERROR) {
        *err = errorf("%s", why);
        return -1;
    }
    if (state != STORE_DIR_ABSENT && state != STORE_DIR_EMPTY) {
        *err = errorf("%s is not empty: a store is created only in an empty directory", dir);
        return -1;
    }
    if (state == STORE_DIR_ABSENT && mkdir(dir, 0700) != 0) {
        *err = errorf("cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    store_options o = {0};
    rdb *s = rdb_open(dir, &o, err);
    if (!s) return -1;
    rdb_close(s);
    return 0;
}

static void rdb_close(void *impl) {
    rdb *s = impl;
    if (!s) return;
    pthread_mutex_lock(&s->sweep_lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->sweep_stop);
    pthread_mutex_unlock(&s->sweep_lock);
    if (s->sweeping) pthread_join(s->sweeper, NULL);
    if (s->monitoring) pthread_join(s->monitor, NULL);
    for (int i = 0; i < CF_COUNT; i++)
        if (s->cf[i]) rocksdb_column_family_handle_destroy(s->cf[i]);
    for (int i = 0; i < s->n_extra_cf; i++) rocksdb_column_family_handle_destroy(s->extra_cf[i]);
    if (s->db) rocksdb_close(s->db);
    for (int i = 0; i < CF_COUNT; i++)
        if (s->cf_options[i] && s->cf_options[i] != s->options) rocksdb_options_destroy(s->cf_options[i]);
    if (s->filter) rocksdb_compactionfilter_destroy(s->filter);
    if (s->read) rocksdb_readoptions_destroy(s->read);
    if (s->write_sync) rocksdb_writeoptions_destroy(s->write_sync);
    if (s->write_nosync) rocksdb_writeoptions_destroy(s->write_nosync);
    if (s->options) rocksdb_options_destroy(s->options);
    if (s->table) rocksdb_block_based_options_destroy(s->table);
    if (s->cache) rocksdb_cache_destroy(s->cache);
    pthread_mutex_destroy(&s->sweep_lock);
    pthread_cond_destroy(&s->sweep_stop);
    free(s);
}

/* -------------------------------------------------------------- batches */

static rocksdb_column_family_handle_t *family_of_tag(void *ud, uint8_t tag) {
    rdb *s = ud;
    return s->cf[store_cf_of_tag(tag)];
}

static int rdb_commit(void *impl, store_batch *b, bool sync) {
    rdb *s = impl;
    /* Under the watermark nothing is written: RocksDB out of space fails
     * (and the Debian build asserts), so the reserve is kept for it. The
     * batch is kept too: the caller decides what to answer. */
    if (atomic_load(&s->disk_full)) {
        atomic_fetch_add(&s->writes_refused_total, 1);
        return -1;
    }
    char *err = NULL;
    uint64_t t0 = clock_mono_ns();
    /* the thread's own batch, kept between commits (store_thread.h) */
    rocksdb_writebatch_t *wb = store_thread_batch();
    if (!wb) abort(); /* a batch we cannot build is a write we cannot acknowledge */
    atomic_fetch_add(&s->superseded_total, batch_ops_build(b, wb, family_of_tag, s));
    rocksdb_write(s->db, sync ? s->write_sync : s->write_nosync, wb, &err);
    store_thread_batch_done(wb);
    METRIC_ADD(store_commit_ns_total, clock_mono_ns() - t0);
    METRIC_INC(store_commits_total);
    if (err) {
        log_error("store: commit failed: %s", err);
        free(err);
        atomic_fetch_add(&s->commit_failures_total, 1);
        atomic_store(&s->commit_failing, true);
        return -1;
    }
    atomic_store(&s->commit_failing, false);
    batch_ops_clear(b);
    return 0;
}

static void batch_put(store_batch *b, const key *k, const void *v, size_t vlen) {
    batch_ops_put(b, k->b, k->len, v, vlen);
}

static void batch_delete(store_batch *b, const key *k) { batch_ops_delete(b, k->b, k->len); }

static void batch_delete_range(store_batch *b, const key *from, const key *to) {
    batch_ops_delete_range(b, from->b, from->len, to->b, to->len);
}

static void batch_put_packed(store_batch *b, const key *k, const ProtobufCMessage *m) {
    uint8_t small[512];
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = n <= sizeof small ? small : malloc(n);
    if (!p) abort(); /* a batch we cannot build is a write we cannot acknowledge */
    protobuf_c_message_pack(m, p);
    batch_put(b, k, p, n);
    if (p != small) free(p);
}

static void batch_put_u64(store_batch *b, const key *k, uint64_t v) {
    uint8_t val[8];
    put_u64(val, v);
    batch_put(b, k, val, 8);
}

static void batch_put_pair(store_batch *b, const key *k, uint64_t x, uint64_t y) {
    uint8_t val[16];
    put_u64(val, x);
    put_u64(val + 8, y);
    batch_put(b, k, val, 16);
}

/* ----------------------------------------------------------------- reads */

/* 1 found (value in *out), 0 absent, -1 error */
static int get_raw(rdb *s, const key *k, store_bytes *out) {
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(s->db, s->read, s->cf[store_cf_of_tag(k->b[0])], (const char *)k->b, k->len,
                             &len, &err);
    if (err) {
        log_error("store: get failed: %s", err);
        free(err);
        return -1;
    }
    if (!v) return 0;
    out->data = (uint8_t *)v;
    out->len = len;
    return 1;
}

static int get_u64_value(rdb *s, const key *k, uint64_t *out) {
    store_bytes v;
    int r = get_raw(s, k, &v);
    if (r != 1) return r;
    int ok = v.len == 8;
    if (ok) *out = get_u64(v.data);
    store_bytes_free(&v);
    return ok ? 1 : -1;
}

static int get_unpacked(rdb *s, const key *k, const ProtobufCMessageDescriptor *d, void **out) {
    store_bytes v;
    int r = get_raw(s, k, &v);
    if (r != 1) return r;
    *out = protobuf_c_message_unpack(d, NULL, v.len, v.data);
    store_bytes_free(&v);
    if (!*out) {
        log_error("store: undecodable %s record", d->name);
        return -1;
    }
    return 1;
}

/* Iterates keys with prefix p, from start (a key >= p) upward, or from the
 * last key <= start downward. fn gets key and value; non-zero stops. */
typedef int (*scan_fn)(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen);

static int scan(rdb *s, const key *p, const key *start, bool backward, scan_fn fn, void *ud) {
    key end;
    key_prefix_end(p, &end);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)end.b, end.len);
    rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)p->b, p->len);
    rocksdb_readoptions_set_total_order_seek(ro, 1);   /* the dedupe family's prefixes are for lookups */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[store_cf_of_tag(p->b[0])]);
    if (backward) rocksdb_iter_seek_for_prev(it, (const char *)start->b, start->len);
    else rocksdb_iter_seek(it, (const char *)start->b, start->len);
    int rc = 0;
    while (rocksdb_iter_valid(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (fn(ud, k, klen, v, vlen)) break;
        if (backward) rocksdb_iter_prev(it);
        else rocksdb_iter_next(it);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err) {
        log_error("store: scan failed: %s", err);
        free(err);
        rc = -1;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* the last key of prefix p, decoded by fn; 0 when the range is empty */
static int last_in_prefix(rdb *s, const key *p, scan_fn fn, void *ud) {
    key start;
    key_prefix_end(p, &start);
    return scan(s, p, &start, true, fn, ud);
}

/* -------------------------------------------------------------- counters */

static void counter_key(key *k, const char *name) {
    key_begin(k, 'k');
    key_bytes(k, name, strlen(name));
}

static int rdb_get_counter(void *impl, const char *name, uint64_t *value) {
    rdb *s = impl;
    key k;
    counter_key(&k, name);
    *value = 0;
    return get_u64_value(s, &k, value);
}

void store_put_counter(store_batch *b, const char *name, uint64_t value) {
    key k;
    counter_key(&k, name);
    batch_put_u64(b, &k, value);
}

/* ----------------------------------------------------------------- users */

static void user_key(key *k, uint64_t user) { key_begin(k, 'u'); key_u64(k, user); }
static void user_name_key(key *k, const char *name) {
    key_begin(k, 'n');
    size_t n = strlen(name);
    if (n > 255) n = 255;
    key_bytes(k, name, n);
}

static int rdb_get_user(void *impl, uint64_t user_id, Parley__Store__User **out) {
    rdb *s = impl;
    key k;
    user_key(&k, user_id);
    return get_unpacked(s, &k, &parley__store__user__descriptor, (void **)out);
}

static int rdb_get_user_id(void *impl, const char *name, uint64_t *user_id) {
    rdb *s = impl;
    key k;
    user_name_key(&k, name);
    return get_u64_value(s, &k, user_id);
}

void store_put_user(store_batch *b, uint64_t user_id, const Parley__Store__User *u) {
    key k;
    user_key(&k, user_id);
    batch_put_packed(b, &k, &u->base);
}

void store_put_user_name(store_batch *b, const char *name, uint64_t user_id) {
    key k;
    user_name_key(&k, name);
    batch_put_u64(b, &k, user_id);
}

void store_delete_user_name(store_batch *b, const char *name) {
    key k;
    user_name_key(&k, name);
    batch_delete(b, &k);
}

static void device_key(key *k, uint64_t user, uint32_t device) {
    key_begin(k, 'd');
    key_u64(k, user);
    key_u32(k, device);
}

static int rdb_get_device(void *impl, uint64_t user_id, uint32_t device_id, Parley__Store__Device **out) {
    rdb *s = impl;
    key k;
    device_key(&k, user_id, device_id);
    return get_unpacked(s, &k, &parley__store__device__descriptor, (void **)out);
}

void store_put_device(store_batch *b, uint64_t user_id, uint32_t device_id,
                      const Parley__Store__Device *d) {
    key k;
    device_key(&k, user_id, device_id);
    batch_put_packed(b, &k, &d->base);
}

static void token_key(key *k, const char *token) {
    key_begin(k, 't');
    size_t n = strlen(token);
    if (n > 255) n = 255;
    key_bytes(k, token, n);
}

static int rdb_get_link_token(void *impl, const char *token, Parley__Store__LinkToken **out) {
    rdb *s = impl;
    key k;
    token_key(&k, token);
    return get_unpacked(s, &k, &parley__store__link_token__descriptor, (void **)out);
}

void store_put_link_token(store_batch *b, const char *token, const Parley__Store__LinkToken *t) {
    key k;
    token_key(&k, token);
    batch_put_packed(b, &k, &t->base);
}

void store_delete_link_token(store_batch *b, const char *token) {
    key k;
    token_key(&k, token);
    batch_delete(b, &k);
}

struct token_scan { store_link_token_fn fn; void *ud; };

static int token_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct token_scan *ts = ud;
    char token[256];
    size_t n = klen - 1 < sizeof token - 1 ? klen - 1 : sizeof token - 1;
    memcpy(token, k + 1, n);
    token[n] = 0;
    Parley__Store__LinkToken *t = parley__store__link_token__unpack(NULL, vlen, v);
    if (!t) return 0;   /* undecodable: skipped, like a missing one */
    int stop = ts->fn(ts->ud, token, t);
    parley__store__link_token__free_unpacked(t, NULL);
    return stop;
}

static int rdb_scan_link_tokens(void *impl, const char *prefix, const char *after, store_link_token_fn fn, void *ud) {
    rdb *s = impl;
    key p, start;
    token_key(&p, prefix);
    start = p;
    if (after && *after && strncmp(after, prefix, strlen(prefix)) == 0) {
        token_key(&start, after);
        start.b[start.len++] = 0;   /* the first key past `after` */
    }
    struct token_scan ts = {fn, ud};
    return scan(s, &p, &start, false, token_scan_cb, &ts);
}

/* --------------------------------------------------------- conversations */

static void conv_key(key *k, uint64_t conv) { key_begin(k, 'c'); key_u64(k, conv); }

static int rdb_get_conversation(void *impl, uint64_t conv, Parley__Store__Conversation **out) {
    rdb *s = impl;
    key k;
    conv_key(&k, conv);
    return get_unpacked(s, &k, &parley__store__conversation__descriptor, (void **)out);
}

void store_put_conversation(store_batch *b, uint64_t conv, const Parley__Store__Conversation *c) {
    key k;
    conv_key(&k, conv);
    batch_put_packed(b, &k, &c->base);
}

static void direct_key(key *k, uint64_t a, uint64_t b) {
    key_begin(k, 'p');
    key_u64(k, a < b ? a : b);
    key_u64(k, a < b ? b : a);
}

static int rdb_get_direct(void *impl, uint64_t a, uint64_t b, uint64_t *conv) {
    rdb *s = impl;
    key k;
    direct_key(&k, a, b);
    return get_u64_value(s, &k, conv);
}

void store_put_direct(store_batch *b, uint64_t a, uint64_t b_user, uint64_t conv) {
    key k;
    direct_key(&k, a, b_user);
    batch_put_u64(b, &k, conv);
}

static void member_key(key *k, uint64_t conv, uint64_t user) {
    key_begin(k, 'm');
    key_u64(k, conv);
    key_u64(k, user);
}

/* right after the member's record in key order, so a scan meets the two
 * together */
static void read_marks_key(key *k, uint64_t conv, uint64_t user) {
    member_key(k, conv, user);
    k->b[k->len++] = 'r';
}

static void apply_read_marks(Parley__Store__Member *m, const uint8_t *v, size_t vlen) {
    if (vlen != 16) return;
    m->read_seq = get_u64(v);
    m->delivered_seq = get_u64(v + 8);
}

/* The record and its read marks are adjacent keys: one seek finds both
 * (two gets would each search every memtable and level). */
struct member_get { Parley__Store__Member *m; int failed; };

static int member_get_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct member_get *g = ud;
    if (klen == 17) {
        g->m = parley__store__member__unpack(NULL, vlen, v);
        if (!g->m) g->failed = 1;
        return g->m == NULL;
    }
    if (klen == 18 && k[17] == 'r' && g->m) apply_read_marks(g->m, v, vlen);
    return 1;
}

static int rdb_get_member(void *impl, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    rdb *s = impl;
    key p;
    member_key(&p, conv, user);
    struct member_get g = {NULL, 0};
    if (scan(s, &p, &p, false, member_get_cb, &g) < 0 || g.failed) {
        if (g.failed) log_error("store: undecodable %s record", parley__store__member__descriptor.name);
        if (g.m) parley__store__member__free_unpacked(g.m, NULL);
        return -1;
    }
    if (!g.m) return 0;
    *out = g.m;
    return 1;
}

void store_put_member(store_batch *b, uint64_t conv, uint64_t user, const Parley__Store__Member *m) {
    key k;
    member_key(&k, conv, user);
    batch_put_packed(b, &k, &m->base);
    /* the record now holds the read marks itself */
    read_marks_key(&k, conv, user);
    batch_delete(b, &k);
    key_begin(&k, 'v');
    key_u64(&k, user);
    key_u64(&k, conv);
    batch_put(b, &k, "", 0);
}

/* equal but for read_seq and delivered_seq: compared field by field as the
 * descriptor lists them (pb_equal.h), or encoded when that cannot decide,
 * so a field added to Member later counts without this being changed */
static bool member_same_but_marks(const Parley__Store__Member *before, const Parley__Store__Member *after) {
    Parley__Store__Member same = *after;
    same.read_seq = before->read_seq;
    same.delivered_seq = before->delivered_seq;
    int in_place = pb_scalars_equal(&same.base, &before->base);
    if (in_place >= 0) return in_place == 1;
    uint8_t x[256], y[256];
    size_t nx = protobuf_c_message_get_packed_size(&same.base);
    size_t ny = protobuf_c_message_get_packed_size(&before->base);
    if (nx != ny || nx > sizeof x) return false;
    protobuf_c_message_pack(&same.base, x);
    protobuf_c_message_pack(&before->base, y);
    return memcmp(x, y, nx) == 0;
}

void store_put_member_update(store_batch *b, uint64_t conv, uint64_t user, const Parley__Store__Member *before,
                             const Parley__Store__Member *after) {
    if (!member_same_but_marks(before, after)) {
        store_put_member(b, conv, user, after);
        return;
    }
    if (after->read_seq == before->read_seq && after->delivered_seq == before->delivered_seq) return;
    key k;
    read_marks_key(&k, conv, user);
    batch_put_pair(b, &k, after->read_seq, after->delivered_seq);
}

/* A member's record is held until the scan has passed its read marks. */
struct member_scan {
    store_member_fn fn;
    void *ud;
    int failed;
    bool stopped;
    Parley__Store__Member *held;
    uint64_t held_user;
};

static bool member_release(struct member_scan *ms) {
    if (!ms->held) return false;
    if (!ms->stopped) ms->stopped = ms->fn(ms->ud, ms->held_user, ms->held) != 0;
    parley__store__member__free_unpacked(ms->held, NULL);
    ms->held = NULL;
    return ms->stopped;
}

static int member_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct member_scan *ms = ud;
    if (klen == 18 && k[17] == 'r') {
        if (ms->held && ms->held_user == get_u64(k + 9)) apply_read_marks(ms->held, v, vlen);
        return 0;
    }
    if (klen != 17) return 0;
    if (member_release(ms)) return 1;
    Parley__Store__Member *m = parley__store__member__unpack(NULL, vlen, v);
    if (!m) { ms->failed = 1; return 1; }
    ms->held = m;
    ms->held_user = get_u64(k + 9);
    return 0;
}

static int rdb_scan_members(void *impl, uint64_t conv, store_member_fn fn, void *ud) {
    rdb *s = impl;
    key p;
    key_begin(&p, 'm');
    key_u64(&p, conv);
    struct member_scan ms = {fn, ud, 0, false, NULL, 0};
    int rc = scan(s, &p, &p, false, member_scan_cb, &ms);
    if (rc || ms.failed) ms.stopped = true;   /* an incomplete scan calls fn no more */
    member_release(&ms);
    return rc || ms.failed ? -1 : 0;
}

struct id_scan { store_id_fn fn; void *ud; size_t offset; };

static int id_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    (void)v; (void)vlen;
    struct id_scan *is = ud;
    if (klen != is->offset + 8) return 0;
    return is->fn(is->ud, get_u64(k + is->offset));
}

static int rdb_scan_user_conversations(void *impl, uint64_t user, store_id_fn fn, void *ud) {
    rdb *s = impl;
    key p;
    key_begin(&p, 'v');
    key_u64(&p, user);
    struct id_scan is = {fn, ud, 9};
    return scan(s, &p, &p, false, id_scan_cb, &is);
}

/* -------------------------------------------------------------- messages */

static void message_key(key *k, uint64_t conv, uint64_t seq) {
    key_begin(k, 'M');
    key_u64(k, conv);
    key_u64(k, seq);
}

static void last_seq_key(key *k, uint64_t conv) { key_begin(k, 'S'); key_u64(k, conv); }

void store_put_message(store_batch *b, uint64_t conv, uint64_t seq, const uint8_t *msg, size_t len) {
    key k;
    message_key(&k, conv, seq);
    batch_put(b, &k, msg, len);
    last_seq_key(&k, conv);
    batch_put_u64(b, &k, seq);
}

static int rdb_get_message(void *impl, uint64_t conv, uint64_t seq, store_bytes *out) {
    rdb *s = impl;
    key k;
    message_key(&k, conv, seq);
    int found = get_raw(s, &k, out);
    if (found == 1 && expired(s, message_ts(out->data, out->len))) {
        store_bytes_free(out);
        return 0;
    }
    return found;
}

/* decodes the trailing u64 of the first key seen into *(uint64_t *)ud */
static int last_u64_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    (void)v; (void)vlen;
    if (klen >= 8) *(uint64_t *)ud = get_u64(k + klen - 8);
    return 1;
}

static int rdb_last_seq(void *impl, uint64_t conv, uint64_t *seq) {
    rdb *s = impl;
    key k;
    last_seq_key(&k, conv);
    *seq = 0;
    return get_u64_value(s, &k, seq) < 0 ? -1 : 0;
}

struct message_scan { rdb *s; store_message_fn fn; void *ud; uint32_t left; };

static int message_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct message_scan *ms = ud;
    if (klen != 17) return 0;
    if (ms->left == 0) return 1;
    if (expired(ms->s, message_ts(v, vlen))) return 1;   /* older ones are expired too */
    ms->left--;
    return ms->fn(ms->ud, get_u64(k + 9), v, vlen);
}

static int rdb_scan_messages_back(void *impl, uint64_t conv, uint64_t before_seq, uint32_t limit,
                             store_message_fn fn, void *ud) {
    rdb *s = impl;
    key p, start;
    key_begin(&p, 'M');
    key_u64(&p, conv);
    if (before_seq == 0) {
        key_prefix_end(&p, &start);
    } else {
        message_key(&start, conv, before_seq - 1);
    }
    struct message_scan ms = {s, fn, ud, limit};
    return scan(s, &p, &start, true, message_scan_cb, &ms);
}

/* ---------------------------------------------------------------- dedupe */

static void client_msg_key(key *k, uint64_t user, uint32_t device, const uint8_t *id, size_t len) {
    key_begin(k, 'i');
    key_u64(k, user);
    key_u32(k, device);
    if (len > 255) len = 255;
    k->b[k->len++] = (uint8_t)len;
    key_bytes(k, id, len);
}

static int rdb_get_client_msg(void *impl, uint64_t user, uint32_t device, const uint8_t *id, size_t id_len,
                         uint64_t *conv, uint64_t *seq) {
    rdb *s = impl;
    key k;
    client_msg_key(&k, user, device, id, id_len);
    store_bytes v;
    int r = get_raw(s, &k, &v);
    if (r != 1) return r;
    int ok = v.len == 24;
    if (ok) {
        *conv = get_u64(v.data);
        *seq = get_u64(v.data + 8);
        if (expired(s, get_u64(v.data + 16))) r = 0;
    }
    store_bytes_free(&v);
    return ok ? r : -1;
}

void store_put_client_msg(store_batch *b, uint64_t user, uint32_t device, const uint8_t *id,
                          size_t id_len, uint64_t conv, uint64_t seq, uint64_t ts) {
    key k;
    client_msg_key(&k, user, device, id, id_len);
    uint8_t val[24];
    put_u64(val, conv);
    put_u64(val + 8, seq);
    put_u64(val + 16, ts);
    batch_put(b, &k, val, sizeof val);
}

/* ------------------------------------------------------------ fan-out log */

static void log_key(key *k, uint32_t partition, uint64_t offset) {
    key_begin(k, 'L');
    key_u32(k, partition);
    key_u64(k, offset);
}

void store_put_log(store_batch *b, uint32_t partition, uint64_t offset, uint64_t conv, uint64_t seq) {
    key k;
    log_key(&k, partition, offset);
    batch_put_pair(b, &k, conv, seq);
}

struct log_scan { store_log_fn fn; void *ud; };

static int log_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct log_scan *ls = ud;
    if (klen != 13 || vlen != 16) return 0;
    return ls->fn(ls->ud, get_u64(k + 5), get_u64(v), get_u64(v + 8));
}

static int rdb_scan_log(void *impl, uint32_t partition, uint64_t after, store_log_fn fn, void *ud) {
    rdb *s = impl;
    key p, start;
    key_begin(&p, 'L');
    key_u32(&p, partition);
    log_key(&start, partition, after + 1);
    struct log_scan ls = {fn, ud};
    return scan(s, &p, &start, false, log_scan_cb, &ls);
}

static int rdb_last_log_offset(void *impl, uint32_t partition, uint64_t *offset) {
    rdb *s = impl;
    key p;
    key_begin(&p, 'L');
    key_u32(&p, partition);
    *offset = 0;
    return last_in_prefix(s, &p, last_u64_cb, offset);
}

void store_delete_log_through(store_batch *b, uint32_t partition, uint64_t offset) {
    key from, to;
    log_key(&from, partition, 0);
    log_key(&to, partition, offset + 1);
    batch_delete_range(b, &from, &to);
}

static void checkpoint_key(key *k, uint32_t partition) { key_begin(k, 'f'); key_u32(k, partition); }

static int rdb_get_checkpoint(void *impl, uint32_t partition, uint64_t *offset) {
    rdb *s = impl;
    key k;
    checkpoint_key(&k, partition);
    *offset = 0;
    return get_u64_value(s, &k, offset);
}

void store_put_checkpoint(store_batch *b, uint32_t partition, uint64_t offset) {
    key k;
    checkpoint_key(&k, partition);
    batch_put_u64(b, &k, offset);
}

/* ---------------------------------------------------------------- inboxes */

static void inbox_head_key(key *k, uint64_t user) { key_begin(k, 'H'); key_u64(k, user); }

void store_put_inbox(store_batch *b, uint64_t user, uint64_t user_seq, uint64_t conv, uint64_t seq,
                     uint64_t sender, uint64_t ts) {
    key k;
    key_begin(&k, 'X');
    key_u64(&k, user);
    key_u64(&k, user_seq);
    uint8_t val[32];
    put_u64(val, conv);
    put_u64(val + 8, seq);
    put_u64(val + 16, sender);
    put_u64(val + 24, ts);
    batch_put(b, &k, val, sizeof val);
}

void store_put_inbox_head(store_batch *b, uint64_t user, uint64_t user_seq) {
    key k;
    inbox_head_key(&k, user);
    batch_put_u64(b, &k, user_seq);
}

static int rdb_inbox_head(void *impl, uint64_t user, uint64_t *user_seq) {
    rdb *s = impl;
    key k;
    inbox_head_key(&k, user);
    *user_seq = 0;
    return get_u64_value(s, &k, user_seq) < 0 ? -1 : 0;
}

struct inbox_scan { rdb *s; store_inbox_fn fn; void *ud; uint64_t through; uint32_t left; };

static int inbox_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct inbox_scan *is = ud;
    if (klen != 17 || vlen != 32) return 0;
    uint64_t user_seq = get_u64(k + 9);
    if (is->left == 0 || (is->through && user_seq > is->through)) return 1;
    if (expired(is->s, get_u64(v + 24))) return 0;
    is->left--;
    return is->fn(is->ud, user_seq, get_u64(v), get_u64(v + 8), get_u64(v + 16));
}

static int rdb_scan_inbox(void *impl, uint64_t user, uint64_t after, uint64_t through, uint32_t limit,
                     store_inbox_fn fn, void *ud) {
    rdb *s = impl;
    key p, start;
    key_begin(&p, 'X');
    key_u64(&p, user);
    start = p;
    key_u64(&start, after + 1);
    struct inbox_scan is = {s, fn, ud, through, limit};
    return scan(s, &p, &start, false, inbox_scan_cb, &is);
}

/* ---------------------------------------------------------------- cursors */

static void cursor_key(key *k, uint64_t user, uint32_t device) {
    key_begin(k, 'r');
    key_u64(k, user);
    key_u32(k, device);
}

static int rdb_get_cursor(void *impl, uint64_t user, uint32_t device, uint64_t *user_seq) {
    rdb *s = impl;
    key k;
    cursor_key(&k, user, device);
    *user_seq = 0;
    return get_u64_value(s, &k, user_seq);
}

void store_put_cursor(store_batch *b, uint64_t user, uint32_t device, uint64_t user_seq) {
    key k;
    cursor_key(&k, user, device);
    batch_put_u64(b, &k, user_seq);
}

void store_delete_cursor(store_batch *b, uint64_t user, uint32_t device) {
    key k;
    cursor_key(&k, user, device);
    batch_delete(b, &k);
}

/* ---------------------------------------------------------------- devices */

struct device_scan { store_device_fn fn; void *ud; int failed; };

static int device_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct device_scan *ds = ud;
    if (klen != 13) return 0;
    Parley__Store__Device *d = parley__store__device__unpack(NULL, vlen, v);
    if (!d) { ds->failed = 1; return 1; }
    uint32_t device = (uint32_t)k[9] << 24 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 8 | k[12];
    int stop = ds->fn(ds->ud, device, d);
    parley__store__device__free_unpacked(d, NULL);
    return stop;
}

static int rdb_scan_devices(void *impl, uint64_t user, store_device_fn fn, void *ud) {
    rdb *s = impl;
    key p;
    key_begin(&p, 'd');
    key_u64(&p, user);
    struct device_scan ds = {fn, ud, 0};
    int rc = scan(s, &p, &p, false, device_scan_cb, &ds);
    return rc || ds.failed ? -1 : 0;
}

void store_delete_device(store_batch *b, uint64_t user, uint32_t device) {
    key k;
    device_key(&k, user, device);
    batch_delete(b, &k);
}

/* ------------------------------------------------------------ key directory */

static void device_keys_key(key *k, char tag, uint64_t user, uint32_t device) {
    key_begin(k, tag);
    key_u64(k, user);
    key_u32(k, device);
}

static int rdb_get_device_keys(void *impl, uint64_t user, uint32_t device, Parley__Store__DeviceKeys **out) {
    rdb *s = impl;
    key k;
    device_keys_key(&k, 'K', user, device);
    return get_unpacked(s, &k, &parley__store__device_keys__descriptor, (void **)out);
}

void store_put_device_keys(store_batch *b, uint64_t user, uint32_t device, const Parley__Store__DeviceKeys *dk) {
    key k;
    device_keys_key(&k, 'K', user, device);
    batch_put_packed(b, &k, &dk->base);
}

void store_put_one_time_key(store_batch *b, uint64_t user, uint32_t device, uint32_t key_id,
                            const uint8_t *public_key, size_t len) {
    key k;
    device_keys_key(&k, 'o', user, device);
    key_u32(&k, key_id);
    batch_put(b, &k, public_key, len);
}

struct first_key { uint32_t key_id; store_bytes *out; int found; };

static int first_key_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct first_key *fk = ud;
    if (klen != 17) return 0;
    fk->key_id = (uint32_t)k[13] << 24 | (uint32_t)k[14] << 16 | (uint32_t)k[15] << 8 | k[16];
    fk->out->data = malloc(vlen ? vlen : 1);
    if (!fk->out->data) return 1;
    memcpy(fk->out->data, v, vlen);
    fk->out->len = vlen;
    fk->found = 1;
    return 1;
}

static int rdb_first_one_time_key(void *impl, uint64_t user, uint32_t device, uint32_t *key_id, store_bytes *out) {
    rdb *s = impl;
    key p;
    device_keys_key(&p, 'o', user, device);
    struct first_key fk = {0, out, 0};
    out->data = NULL;
    out->len = 0;
    if (scan(s, &p, &p, false, first_key_cb, &fk) < 0) return -1;
    *key_id = fk.key_id;
    return fk.found;
}

void store_delete_one_time_key(store_batch *b, uint64_t user, uint32_t device, uint32_t key_id) {
    key k;
    device_keys_key(&k, 'o', user, device);
    key_u32(&k, key_id);
    batch_delete(b, &k);
}

/* ------------------------------------------------------ push subscriptions */

static int rdb_get_push_subscription(void *impl, uint64_t user, uint32_t device,
                                     Parley__Store__PushSubscription **out) {
    rdb *s = impl;
    key k;
    device_keys_key(&k, 'w', user, device);
    return get_unpacked(s, &k, &parley__store__push_subscription__descriptor, (void **)out);
}

/* ------------------------------------------------------- group origins */

static int rdb_get_group_origin(void *impl, uint32_t partition, uint32_t slot, uint64_t out[5]) {
    rdb *s = impl;
    key k;
    group_origin_key(k.b, partition, slot);
    k.len = GROUP_ORIGIN_KEY_LEN;
    store_bytes v;
    int r = get_raw(s, &k, &v);
    if (r != 1) return r;
    int ok = v.len == GROUP_ORIGIN_VALUE_LEN;
    for (int i = 0; ok && i < GROUP_ORIGIN_FIELDS; i++) out[i] = get_u64(v.data + 8 * i);
    store_bytes_free(&v);
    return ok ? 1 : -1;
}

struct push_subscription_scan {
    store_push_subscription_fn fn;
    void *ud;
};

static int push_subscription_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    (void)v;
    (void)vlen;
    struct push_subscription_scan *ps = ud;
    if (klen != 13) return 0;
    uint32_t device = (uint32_t)k[9] << 24 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 8 | k[12];
    return ps->fn(ps->ud, get_u64(k + 1), device);
}

static int rdb_scan_push_subscriptions(void *impl, store_push_subscription_fn fn, void *ud) {
    rdb *s = impl;
    key p;
    key_begin(&p, 'w');
    struct push_subscription_scan ps = {fn, ud};
    return scan(s, &p, &p, false, push_subscription_scan_cb, &ps);
}

void store_put_push_subscription(store_batch *b, uint64_t user, uint32_t device,
                                 const Parley__Store__PushSubscription *p) {
    key k;
    device_keys_key(&k, 'w', user, device);
    batch_put_packed(b, &k, &p->base);
}

void store_delete_push_subscription(store_batch *b, uint64_t user, uint32_t device) {
    key k;
    device_keys_key(&k, 'w', user, device);
    batch_delete(b, &k);
}

static void delete_prefix(store_batch *b, const key *p) {
    key end;
    key_prefix_end(p, &end);
    batch_delete_range(b, p, &end);
}

void store_delete_device_keys(store_batch *b, uint64_t user, uint32_t device) {
    key k;
    device_keys_key(&k, 'K', user, device);
    batch_delete(b, &k);
    device_keys_key(&k, 'o', user, device);
    delete_prefix(b, &k);
    device_keys_key(&k, 'q', user, device);
    delete_prefix(b, &k);
}

/* -------------------------------------------------------- device messages */

void store_put_device_message(store_batch *b, uint64_t user, uint32_t device, uint64_t queue_seq,
                              const uint8_t *msg, size_t len) {
    key k;
    device_keys_key(&k, 'q', user, device);
    key_u64(&k, queue_seq);
    batch_put(b, &k, msg, len);
}

struct dm_scan { store_device_message_fn fn; void *ud; uint32_t left; };

static int dm_scan_cb(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    struct dm_scan *ds = ud;
    if (klen != 21) return 0;
    if (ds->left == 0) return 1;
    ds->left--;
    return ds->fn(ds->ud, get_u64(k + 13), v, vlen);
}

static int rdb_scan_device_messages(void *impl, uint64_t user, uint32_t device, uint32_t limit,
                               store_device_message_fn fn, void *ud) {
    rdb *s = impl;
    key p;
    device_keys_key(&p, 'q', user, device);
    struct dm_scan ds = {fn, ud, limit};
    return scan(s, &p, &p, false, dm_scan_cb, &ds);
}

static int rdb_scan_device_messages_after(void *impl, uint64_t user, uint32_t device, uint64_t after,
                                     uint32_t limit, store_device_message_fn fn, void *ud) {
    rdb *s = impl;
    if (after == UINT64_MAX) return 0;
    key p, start;
    device_keys_key(&p, 'q', user, device);
    start = p;
    key_u64(&start, after + 1);
    struct dm_scan ds = {fn, ud, limit};
    return scan(s, &p, &start, false, dm_scan_cb, &ds);
}

void store_delete_device_messages_through(store_batch *b, uint64_t user, uint32_t device, uint64_t queue_seq) {
    key from, to;
    device_keys_key(&from, 'q', user, device);
    to = from;
    key_u64(&from, 0);
    key_u64(&to, queue_seq + 1);
    batch_delete_range(b, &from, &to);
}

/* ---------------------------------------------------------------- consent */

static void consent_key(key *k, uint64_t owner, uint64_t other) {
    key_begin(k, 'A');
    key_u64(k, owner);
    key_u64(k, other);
}

static int rdb_get_consent(void *impl, uint64_t owner, uint64_t other, Parley__Store__Consent **out) {
    rdb *s = impl;
    key k;
    consent_key(&k, owner, other);
    return get_unpacked(s, &k, &parley__store__consent__descriptor, (void **)out);
}

void store_put_consent(store_batch *b, uint64_t owner, uint64_t other, const Parley__Store__Consent *c) {
    key k;
    consent_key(&k, owner, other);
    batch_put_packed(b, &k, (const ProtobufCMessage *)c);
}

/* ------------------------------------------------------------ every record */

/* Every record of every family, family by family in key order, as the
 * tagged key and value a batch writes; RocksDB's own bookkeeping (the
 * layout marker, keys starting with '#') is not a record. */
static int rdb_scan_all(void *impl, store_record_fn fn, void *ud) {
    rdb *s = impl;
    int rc = 0, stopped = 0;
    for (int f = 0; f < CF_COUNT && !stopped && rc == 0; f++) {
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_total_order_seek(ro, 1);
        rocksdb_readoptions_set_fill_cache(ro, 0);   /* an export reads everything once */
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[f]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t klen, vlen;
            const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
            const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
            if (klen == 0 || k[0] == '#') continue;
            if (fn(ud, k, klen, v, vlen)) {
                stopped = 1;
                break;
            }
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        if (err) {
            log_error("store: scan of every record failed: %s", err);
            free(err);
            rc = -1;
        }
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
    }
    return rc;
}

void store_put_record(store_batch *b, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    batch_ops_put(b, k, klen, v, vlen);
}

/* ------------------------------------------------------------ interface */

/* RocksDB answers from local disk, so the asynchronous commit is the
 * synchronous one, completed inline in the caller's thread: the caller's
 * callback runs before store_commit_async returns. */
static int rdb_commit_async(void *impl, store_batch *b, bool sync, store_commit_cb cb, void *ud) {
    cb(ud, rdb_commit(impl, b, sync));
    return 0;
}

static const store_ops rocksdb_ops = {
    .name = "rocksdb",
    .close = rdb_close,
    .get_health = rdb_get_health,
    .metrics_render = rdb_metrics_render,
    .commit = rdb_commit,
    .get_counter = rdb_get_counter,
    .get_user = rdb_get_user,
    .get_user_id = rdb_get_user_id,
    .get_device = rdb_get_device,
    .get_link_token = rdb_get_link_token,
    .scan_link_tokens = rdb_scan_link_tokens,
    .get_conversation = rdb_get_conversation,
    .get_direct = rdb_get_direct,
    .get_member = rdb_get_member,
    .scan_members = rdb_scan_members,
    .scan_user_conversations = rdb_scan_user_conversations,
    .get_message = rdb_get_message,
    .last_seq = rdb_last_seq,
    .scan_messages_back = rdb_scan_messages_back,
    .get_client_msg = rdb_get_client_msg,
    .scan_log = rdb_scan_log,
    .last_log_offset = rdb_last_log_offset,
    .get_checkpoint = rdb_get_checkpoint,
    .inbox_head = rdb_inbox_head,
    .scan_inbox = rdb_scan_inbox,
    .get_cursor = rdb_get_cursor,
    .scan_devices = rdb_scan_devices,
    .get_device_keys = rdb_get_device_keys,
    .first_one_time_key = rdb_first_one_time_key,
    .scan_device_messages = rdb_scan_device_messages,
    .scan_device_messages_after = rdb_scan_device_messages_after,
    .get_consent = rdb_get_consent,
    .commit_async = rdb_commit_async,
    .scan_all = rdb_scan_all,
    .get_push_subscription = rdb_get_push_subscription,
    .scan_push_subscriptions = rdb_scan_push_subscriptions,
    .get_group_origin = rdb_get_group_origin,
};

store *store_rocksdb_open(const char *dir, const store_options *o, char **err) {
    store *s = calloc(1, sizeof *s);
    if (!s) {
        *err = errorf("out of memory");
        return NULL;
    }
    s->impl = rdb_open(dir, o, err);
    if (!s->impl) {
        free(s);
        return NULL;
    }
    s->ops = &rocksdb_ops;
    return s;
}
