/* store_export.c -- the export stream of store_export.h. */
#include "store/store_export.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char magic[] = "PARLEYSTORE\n";
enum { MAGIC_LEN = sizeof magic - 1 };

/* an import commits every this many records or bytes: the batch stays
 * bounded whatever the size of the stream */
enum { IMPORT_BATCH_RECORDS = 1000, IMPORT_BATCH_BYTES = 4 * 1024 * 1024 };

/* The record kinds a batch can name (the first byte of a tagged key, see
 * the list at the top of store_rocksdb.c); an import refuses any other. */
static const char record_kinds[] = "knudtcpmvMSiLfXHrKoqAw";

static char *errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errorf(const char *fmt, ...) {
    char *text = malloc(512);
    if (!text) abort(); /* an error we cannot report is a failure we cannot explain */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, 512, fmt, ap);
    va_end(ap);
    return text;
}

static void be32(uint8_t *p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static void be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

typedef struct exporting {
    FILE *out;
    uint64_t n;
    int failed;
} exporting;

static int export_one(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    exporting *x = ud;
    if (klen > STORE_EXPORT_KEY_MAX || vlen > STORE_EXPORT_VALUE_MAX) {
        x->failed = 2;
        return 1;
    }
    uint8_t head[9];
    head[0] = 'R';
    be32(head + 1, (uint32_t)klen);
    be32(head + 5, (uint32_t)vlen);
    if (fwrite(head, 1, sizeof head, x->out) != sizeof head || fwrite(k, 1, klen, x->out) != klen ||
        (vlen && fwrite(v, 1, vlen, x->out) != vlen)) {
        x->failed = 1;
        return 1;
    }
    x->n++;
    return 0;
}

int store_export(store *s, FILE *out, uint64_t *records, char **err) {
    *err = NULL;
    uint8_t head[MAGIC_LEN + 4];
    memcpy(head, magic, MAGIC_LEN);
    be32(head + MAGIC_LEN, STORE_EXPORT_VERSION);
    if (fwrite(head, 1, sizeof head, out) != sizeof head) {
        *err = errorf("cannot write the export stream");
        return -1;
    }
    exporting x = {.out = out};
    if (store_scan_all(s, export_one, &x) != 0) {
        *err = errorf("reading the store failed after %llu records (see the log)", (unsigned long long)x.n);
        return -1;
    }
    if (x.failed) {
        *err = x.failed == 2 ? errorf("record %llu is larger than an export allows", (unsigned long long)x.n)
                             : errorf("cannot write the export stream after %llu records", (unsigned long long)x.n);
        return -1;
    }
    uint8_t end[9];
    end[0] = 'E';
    be64(end + 1, x.n);
    if (fwrite(end, 1, sizeof end, out) != sizeof end || fflush(out) != 0) {
        *err = errorf("cannot write the end of the export stream");
        return -1;
    }
    *records = x.n;
    return 0;
}

static int any_record(void *ud, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
    (void)k;
    (void)klen;
    (void)v;
    (void)vlen;
    *(int *)ud = 1;
    return 1;
}

/* reads the records after the header into s; the batch b is committed as
 * it fills */
static int import_records(store *s, store_batch *b, FILE *in, uint64_t *records, char **err) {
    uint8_t *k = malloc(STORE_EXPORT_KEY_MAX);
    uint8_t *v = NULL;
    size_t vcap = 0, pending_bytes = 0;
    uint64_t n = 0;
    int rc = -1;
    if (!k) abort();
    for (;;) {
        uint8_t tag;
        if (fread(&tag, 1, 1, in) != 1) {
            *err = errorf("the stream ends after %llu records without its end mark: cut short",
                          (unsigned long long)n);
            break;
        }
        if (tag == 'E') {
            uint8_t c[8];
            if (fread(c, 1, sizeof c, in) != sizeof c) {
                *err = errorf("the end mark is cut short");
                break;
            }
            if (get64(c) != n) {
                *err = errorf("the stream says %llu records, it held %llu", (unsigned long long)get64(c),
                              (unsigned long long)n);
                break;
            }
            if (store_commit(s, b, true) != 0) {
                *err = errorf("the last commit failed (see the log)");
                break;
            }
            *records = n;
            rc = 0;
            break;
        }
        uint8_t lens[8];
        if (tag != 'R' || fread(lens, 1, sizeof lens, in) != sizeof lens) {
            *err = errorf("record %llu: not a record", (unsigned long long)n);
            break;
        }
        uint32_t klen = get32(lens), vlen = get32(lens + 4);
        if (klen == 0 || klen > STORE_EXPORT_KEY_MAX || vlen > STORE_EXPORT_VALUE_MAX) {
            *err = errorf("record %llu: key of %u or value of %u bytes is out of bounds", (unsigned long long)n,
                          klen, vlen);
            break;
        }
        if (vlen > vcap) {
            uint8_t *nv = realloc(v, vlen);
            if (!nv) abort();
            v = nv;
            vcap = vlen;
        }
        if (fread(k, 1, klen, in) != klen || (vlen && fread(v, 1, vlen, in) != vlen)) {
            *err = errorf("record %llu is cut short", (unsigned long long)n);
            break;
        }
        if (!memchr(record_kinds, k[0], sizeof record_kinds - 1)) {
            *err = errorf("record %llu is of an unknown kind (0x%02x)", (unsigned long long)n, k[0]);
            break;
        }
        store_put_record(b, k, klen, v, vlen);
        n++;
        pending_bytes += klen + vlen;
        if (store_batch_count(b) >= IMPORT_BATCH_RECORDS || pending_bytes >= IMPORT_BATCH_BYTES) {
            if (store_commit(s, b, false) != 0) {
                *err = errorf("a commit failed after %llu records (see the log)", (unsigned long long)n);
                break;
            }
            pending_bytes = 0;
        }
    }
    free(k);
    free(v);
    return rc;
}

int store_import(store *s, FILE *in, uint64_t *records, char **err) {
    *err = NULL;
    int found = 0;
    if (store_scan_all(s, any_record, &found) != 0) {
        *err = errorf("cannot read the target store (see the log)");
        return -1;
    }
    if (found) {
        *err = errorf("the target store already holds records: import only into a new store");
        return -1;
    }
    uint8_t head[MAGIC_LEN + 4];
    if (fread(head, 1, sizeof head, in) != sizeof head || memcmp(head, magic, MAGIC_LEN) != 0) {
        *err = errorf("not a parley store export (no PARLEYSTORE header)");
        return -1;
    }
    uint32_t version = get32(head + MAGIC_LEN);
    if (version != STORE_EXPORT_VERSION) {
        *err = errorf("export version %u; this parley reads version %d", version, STORE_EXPORT_VERSION);
        return -1;
    }
    store_batch *b = store_batch_new();
    int rc = import_records(s, b, in, records, err);
    store_batch_free(b);
    return rc;
}
