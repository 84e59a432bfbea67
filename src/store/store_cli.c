/* store_cli.c -- `parley store export --data DIR > FILE` and
 * `parley store import --data DIR < FILE`, or the same with
 * `--store cassandra --cassandra HOST:PORT[,...] [--keyspace NAME]` in
 * place of --data, so a RocksDB export imports into Cassandra and back.
 *
 * Export opens an existing store only (never creates one where a mistyped
 * directory was given); RocksDB's lock makes it fail while a server runs
 * on the directory. Import creates a new store in an absent or empty
 * directory only, so an import never mixes with records already there; a
 * Cassandra keyspace is created if absent, and one that holds records is
 * refused by store_import. */
#include "store/store_cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_dir.h"
#include "store/store_export.h"

static void usage(FILE *out) {
    fprintf(out, "usage: parley store export --data DIR > FILE   write every record of the store in DIR\n"
                 "       parley store import --data DIR < FILE   create a store in DIR (absent or empty)\n"
                 "                                               holding the records of FILE\n"
                 "  or, for a Cassandra store, in place of --data DIR:\n"
                 "       --store cassandra --cassandra HOST:PORT[,...] [--keyspace NAME]\n"
                 "                                               (keyspace default parley; an import\n"
                 "                                               creates it, and refuses one with records)\n"
                 "  the stream is backend-neutral (versioned, length-prefixed records); the store\n"
                 "  must not be in use by a running server\n");
}

/* the store an export or import names on its command line */
typedef struct target {
    const char *data;
    store_kind kind;
    store_options o;
} target;

static const char *target_name(const target *t) {
    return t->kind == STORE_KIND_CASSANDRA ? t->o.cassandra_keyspace : t->data;
}

/* export or import (store_export.h) on the keyspace t names */
static int copy_cassandra(const target *t, bool import) {
    const char *verb = import ? "import" : "export";
    char *err = NULL;
    store *s = store_open_kind(STORE_KIND_CASSANDRA, NULL, &t->o, &err);
    if (!s) {
        fprintf(stderr, "parley store %s: cannot open keyspace %s: %s\n", verb, target_name(t), err ? err : "?");
        free(err);
        return 1;
    }
    uint64_t n = 0;
    int rc = import ? store_import(s, stdin, &n, &err) : store_export(s, stdout, &n, &err);
    store_close(s);
    if (rc != 0) {
        fprintf(stderr, "parley store %s: %s\n", verb, err ? err : "failed");
        free(err);
        return 1;
    }
    fprintf(stderr, "parley store %s: %llu records %s keyspace %s\n", verb, (unsigned long long)n,
            import ? "into" : "from", target_name(t));
    return 0;
}

/* 0 with *t, or -1 (usage) */
static int parse_target(int argc, char **argv, target *t) {
    memset(t, 0, sizeof *t);
    t->o.cassandra_keyspace = "parley";
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc || !*argv[i + 1]) return -1;
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--data") == 0) t->data = v;
        else if (strcmp(k, "--store") == 0) {
            if (store_kind_parse(v, &t->kind) != 0) return -1;
        } else if (strcmp(k, "--cassandra") == 0) t->o.cassandra_hosts = v;
        else if (strcmp(k, "--keyspace") == 0) t->o.cassandra_keyspace = v;
        else return -1;
    }
    if (t->kind == STORE_KIND_ROCKSDB) return t->data && !t->o.cassandra_hosts ? 0 : -1;
    return t->o.cassandra_hosts && !t->data ? 0 : -1;
}

static int do_export(const char *dir) {
    char why[1200];
    enum store_dir_state state = store_dir_inspect(dir, why, sizeof why);
    if (state != STORE_DIR_MARKED && state != STORE_DIR_UNMARKED_DB) {
        fprintf(stderr, "parley store export: %s holds no parley store%s%s\n", dir,
                state == STORE_DIR_ERROR ? ": " : "", state == STORE_DIR_ERROR ? why : "");
        return 1;
    }
    char *err = NULL;
    store_options o = {0};
    store *s = store_open_kind(STORE_KIND_ROCKSDB, dir, &o, &err);
    if (!s) {
        fprintf(stderr, "parley store export: cannot open %s: %s\n", dir, err ? err : "?");
        free(err);
        return 1;
    }
    uint64_t n = 0;
    int rc = store_export(s, stdout, &n, &err);
    store_close(s);
    if (rc != 0) {
        fprintf(stderr, "parley store export: %s\n", err ? err : "failed");
        free(err);
        return 1;
    }
    fprintf(stderr, "parley store export: %llu records from %s\n", (unsigned long long)n, dir);
    return 0;
}

static int do_import(const char *dir) {
    char *err = NULL;
    if (store_init(dir, &err) != 0) {
        fprintf(stderr, "parley store import: %s\n", err ? err : "cannot create the store");
        free(err);
        return 1;
    }
    store_options o = {0};
    store *s = store_open_kind(STORE_KIND_ROCKSDB, dir, &o, &err);
    if (!s) {
        fprintf(stderr, "parley store import: cannot open %s: %s\n", dir, err ? err : "?");
        free(err);
        return 1;
    }
    uint64_t n = 0;
    int rc = store_import(s, stdin, &n, &err);
    store_close(s);
    if (rc != 0) {
        fprintf(stderr, "parley store import: %s\nthe store in %s is incomplete: remove it before "
                        "importing again\n", err ? err : "failed", dir);
        free(err);
        return 1;
    }
    fprintf(stderr, "parley store import: %llu records into %s\n", (unsigned long long)n, dir);
    return 0;
}

int store_cli_main(int argc, char **argv) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    target t;
    if (argc < 1 || (strcmp(argv[0], "export") != 0 && strcmp(argv[0], "import") != 0) ||
        parse_target(argc, argv, &t) != 0) {
        usage(stderr);
        return 2;
    }
    bool out = strcmp(argv[0], "export") == 0;
    if (t.kind == STORE_KIND_CASSANDRA) return out ? copy_cassandra(&t, false) : copy_cassandra(&t, true);
    return out ? do_export(t.data) : do_import(t.data);
}
