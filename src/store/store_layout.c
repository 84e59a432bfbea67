/* store_layout.c -- see store_layout.h. */
#include "store/store_layout.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

const char *const store_cf_names[CF_COUNT] = {
    [CF_DEFAULT] = "default", [CF_MESSAGES] = "messages", [CF_INBOX] = "inbox", [CF_DEDUPE] = "dedupe",
    [CF_LOG] = "log",         [CF_CURSORS] = "cursors",   [CF_MEMBERS] = "members",
};

enum store_cf store_cf_of_tag(uint8_t tag) {
    switch (tag) {
    case 'M': case 'S': return CF_MESSAGES;
    case 'X': case 'H': return CF_INBOX;
    case 'i': return CF_DEDUPE;
    case 'L': case 'f': return CF_LOG;
    case 'r': return CF_CURSORS;
    case 'm': case 'v': return CF_MEMBERS;
    default: return CF_DEFAULT;
    }
}

bool store_cf_expires(enum store_cf cf) { return cf == CF_MESSAGES || cf == CF_INBOX || cf == CF_DEDUPE; }

/* The dedupe key is 'i' user(8) device(4) len(1) client_msg_id. Its prefix
 * for the bloom filters is the key capped at DEDUPE_PREFIX bytes: the whole
 * key for ids up to 32 bytes (a UUID is 16), so a new id, which is what
 * nearly every send looks up, is answered "absent" by the memtable's bloom
 * and by each file's filter without reading a block. (A fixed prefix of
 * user and device would not do that: the device's earlier ids share it.) */
enum { DEDUPE_PREFIX = 1 + 8 + 4 + 1 + 32 };

static char *capped_transform(void *state, const char *key, size_t length, size_t *dst_length) {
    (void)state;
    *dst_length = length < DEDUPE_PREFIX ? length : DEDUPE_PREFIX;
    return (char *)key;
}

static unsigned char capped_in_domain(void *state, const char *key, size_t length) {
    (void)state; (void)key; (void)length;
    return 1;
}

static unsigned char capped_in_range(void *state, const char *key, size_t length) {
    (void)state; (void)key;
    return length <= DEDUPE_PREFIX;
}

static const char *capped_name(void *state) {
    (void)state;
    return "parley.dedupe.capped46";
}

static void capped_destroy(void *state) { (void)state; }

rocksdb_options_t *store_cf_options(rocksdb_options_t *base, enum store_cf cf,
                                    rocksdb_compactionfilter_t *retention) {
    rocksdb_options_t *o = rocksdb_options_create_copy(base);
    switch (cf) {
    case CF_MESSAGES:
    case CF_INBOX:
    case CF_LOG:
        /* append-only, read by range or by a key that exists: the last
         * level's filters would answer "maybe" to every lookup, so none are
         * kept there (most of the filter memory); levels sized from the
         * bottom keep space amplification near 1.1 as the family grows */
        rocksdb_options_set_optimize_filters_for_hits(o, 1);
        rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
        break;
    case CF_DEDUPE:
        rocksdb_options_set_prefix_extractor(o, rocksdb_slicetransform_create(NULL, capped_destroy,
            capped_transform, capped_in_domain, capped_in_range, capped_name));
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.1);
        break;
    case CF_CURSORS:
        /* small records overwritten on every ack: a small memtable flushes
         * often, and a flush keeps only each cursor's last value */
        rocksdb_options_set_write_buffer_size(o, 4 << 20);
        break;
    default:
        break;
    }
    if (retention && store_cf_expires(cf)) rocksdb_options_set_compaction_filter(o, retention);
    return o;
}

static const char layout_key[] = "#layout";

static void layout_value(uint8_t v[8]) {
    for (int i = 0; i < 8; i++) v[i] = (uint8_t)((uint64_t)STORE_LAYOUT_VERSION >> ((7 - i) * 8));
}

int store_layout_mark(rocksdb_t *db, rocksdb_column_family_handle_t *const cf[CF_COUNT],
                      rocksdb_writeoptions_t *sync, char **err) {
    uint8_t v[8];
    layout_value(v);
    rocksdb_put_cf(db, sync, cf[CF_DEFAULT], layout_key, sizeof layout_key - 1, (const char *)v, sizeof v, err);
    return *err ? -1 : 0;
}

/* records moved per commit: bounds the batch's memory */
enum { MOVE_CHUNK = 4096 };

static int commit_chunk(rocksdb_t *db, rocksdb_writeoptions_t *sync, rocksdb_writebatch_t *wb, char **err) {
    rocksdb_write(db, sync, wb, err);
    rocksdb_writebatch_clear(wb);
    return *err ? -1 : 0;
}

int store_layout_migrate(rocksdb_t *db, rocksdb_column_family_handle_t *const cf[CF_COUNT],
                         rocksdb_writeoptions_t *sync, uint64_t *moved, char **err) {
    *moved = 0;
    *err = NULL;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    size_t len = 0;
    char *have = rocksdb_get_cf(db, ro, cf[CF_DEFAULT], layout_key, sizeof layout_key - 1, &len, err);
    uint8_t want[8];
    layout_value(want);
    bool current = have && len == sizeof want && memcmp(have, want, sizeof want) == 0;
    rocksdb_free(have);
    if (*err || current) {
        rocksdb_readoptions_destroy(ro);
        return *err ? -1 : 0;
    }
    log_info("store: moving the records of a store made before column families into their families");
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cf[CF_DEFAULT]);
    size_t in_chunk = 0;
    int rc = 0;
    /* bounded by the records in the default family; the iterator reads the
     * snapshot taken at its creation, so the deletes do not disturb it */
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rc == 0; rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == 0) continue;
        enum store_cf to = store_cf_of_tag((uint8_t)k[0]);
        if (to == CF_DEFAULT) continue;
        const char *v = rocksdb_iter_value(it, &vlen);
        rocksdb_writebatch_put_cf(wb, cf[to], k, klen, v, vlen);
        rocksdb_writebatch_delete_cf(wb, cf[CF_DEFAULT], k, klen);
        (*moved)++;
        if (++in_chunk == MOVE_CHUNK) {
            rc = commit_chunk(db, sync, wb, err);
            in_chunk = 0;
        }
    }
    if (rc == 0) rocksdb_iter_get_error(it, err);
    rocksdb_iter_destroy(it);
    if (rc == 0 && !*err) {
        /* the last chunk and the layout version commit together */
        uint8_t v[8];
        layout_value(v);
        rocksdb_writebatch_put_cf(wb, cf[CF_DEFAULT], layout_key, sizeof layout_key - 1, (const char *)v, sizeof v);
        rc = commit_chunk(db, sync, wb, err);
    }
    rocksdb_writebatch_destroy(wb);
    rocksdb_readoptions_destroy(ro);
    if (rc != 0 || *err) return -1;
    /* the moved records left tombstones in the default family */
    if (*moved) rocksdb_compact_range_cf(db, cf[CF_DEFAULT], NULL, 0, NULL, 0);
    log_info("store: moved %llu records into column families", (unsigned long long)*moved);
    return 0;
}
