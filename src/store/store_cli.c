/* store_cli.c -- `parley store export WHERE > FILE` and
 * `parley store import WHERE < FILE`, WHERE being --data DIR (RocksDB) or
 * --store cassandra --cassandra HOSTS --keyspace NAME.
 *
 * Export opens an existing store only (never creates one where a mistyped
 * directory was given); RocksDB's lock makes it fail while a server runs
 * on the directory. Import creates a new store in an absent or empty
 * directory only, so an import never mixes with records already there. */
#include "store/store_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_dir.h"
#include "store/store_export.h"

static void usage(FILE *out) {
    fprintf(out, "usage: parley store export WHERE > FILE   write every record of the store WHERE\n"
                 "       parley store import WHERE < FILE   fill a new store WHERE with the records of FILE\n"
                 "  WHERE is --data DIR (RocksDB, the default: export opens an existing store only,\n"
                 "  import creates one in an absent or empty DIR) or --store cassandra --cassandra\n"
                 "  HOST:PORT[,...] --keyspace NAME (import refuses a keyspace that holds records)\n"
                 "  the stream is backend-neutral (versioned, length-prefixed records); the store\n"
                 "  must not be in use by a running server\n");
}

/* where a store is: --data DIR, or --store cassandra --cassandra HOSTS --keyspace NAME */
typedef struct store_where {
    store_kind kind;
    const char *dir;
    const char *hosts;
    const char *keyspace;
} store_where;

/* 0, or -1 (a usage error) */
static int parse_where(int argc, char **argv, store_where *w) {
    memset(w, 0, sizeof *w);
    w->kind = STORE_KIND_ROCKSDB;
    for (int i = 0; i < argc; i += 2) {
        if (i + 1 >= argc || !*argv[i + 1]) return -1;
        if (strcmp(argv[i], "--data") == 0) w->dir = argv[i + 1];
        else if (strcmp(argv[i], "--cassandra") == 0) w->hosts = argv[i + 1];
        else if (strcmp(argv[i], "--keyspace") == 0) w->keyspace = argv[i + 1];
        else if (strcmp(argv[i], "--store") == 0) {
            if (store_kind_parse(argv[i + 1], &w->kind) != 0) return -1;
        } else return -1;
    }
    if (w->kind == STORE_KIND_ROCKSDB) return w->dir && !w->hosts && !w->keyspace ? 0 : -1;
    /* a keyspace is named explicitly: a default one would mix two stores */
    return w->hosts && w->keyspace && !w->dir ? 0 : -1;
}

static const char *where_name(const store_where *w) {
    return w->kind == STORE_KIND_ROCKSDB ? w->dir : w->keyspace;
}

static store *open_where(const store_where *w, const char *verb) {
    char *err = NULL;
    store_options o = {0};
    o.cassandra_hosts = w->hosts;
    o.cassandra_keyspace = w->keyspace;
    store *s = store_open_kind(w->kind, w->dir, &o, &err);
    if (!s) {
        fprintf(stderr, "parley store %s: cannot open %s: %s\n", verb, where_name(w), err ? err : "?");
        free(err);
    }
    return s;
}

static int do_export(const store_where *w) {
    if (w->kind == STORE_KIND_ROCKSDB) {
        char why[1200];
        enum store_dir_state state = store_dir_inspect(w->dir, why, sizeof why);
        if (state != STORE_DIR_MARKED && state != STORE_DIR_UNMARKED_DB) {
            fprintf(stderr, "parley store export: %s holds no parley store%s%s\n", w->dir,
                    state == STORE_DIR_ERROR ? ": " : "", state == STORE_DIR_ERROR ? why : "");
            return 1;
        }
    }
    char *err = NULL;
    store *s = open_where(w, "export");
    if (!s) return 1;
    uint64_t n = 0;
    int rc = store_export(s, stdout, &n, &err);
    store_close(s);
    if (rc != 0) {
        fprintf(stderr, "parley store export: %s\n", err ? err : "failed");
        free(err);
        return 1;
    }
    fprintf(stderr, "parley store export: %llu records from %s\n", (unsigned long long)n, where_name(w));
    return 0;
}

static int do_import(const store_where *w) {
    char *err = NULL;
    /* RocksDB: a new store in an absent or empty directory; Cassandra: the
     * keyspace is made if absent, and store_import refuses one with records */
    if (w->kind == STORE_KIND_ROCKSDB && store_init(w->dir, &err) != 0) {
        fprintf(stderr, "parley store import: %s\n", err ? err : "cannot create the store");
        free(err);
        return 1;
    }
    store *s = open_where(w, "import");
    if (!s) return 1;
    uint64_t n = 0;
    int rc = store_import(s, stdin, &n, &err);
    store_close(s);
    if (rc != 0) {
        fprintf(stderr, "parley store import: %s\nthe store %s is incomplete: remove it before "
                        "importing again\n", err ? err : "failed", where_name(w));
        free(err);
        return 1;
    }
    fprintf(stderr, "parley store import: %llu records into %s\n", (unsigned long long)n, where_name(w));
    return 0;
}

int store_cli_main(int argc, char **argv) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    store_where w;
    if (argc < 3 || (strcmp(argv[0], "export") != 0 && strcmp(argv[0], "import") != 0) ||
        parse_where(argc - 1, argv + 1, &w) != 0) {
        usage(stderr);
        return 2;
    }
    return strcmp(argv[0], "export") == 0 ? do_export(&w) : do_import(&w);
}
