/* store_cli.c -- `parley store export --data DIR > FILE` and
 * `parley store import --data DIR < FILE`.
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
    fprintf(out, "usage: parley store export --data DIR > FILE   write every record of the store in DIR\n"
                 "       parley store import --data DIR < FILE   create a store in DIR (absent or empty)\n"
                 "                                               holding the records of FILE\n"
                 "  the stream is backend-neutral (versioned, length-prefixed records); the store\n"
                 "  must not be in use by a running server\n");
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
    if (argc != 3 || strcmp(argv[1], "--data") != 0 || !*argv[2] ||
        (strcmp(argv[0], "export") != 0 && strcmp(argv[0], "import") != 0)) {
        usage(stderr);
        return 2;
    }
    return strcmp(argv[0], "export") == 0 ? do_export(argv[2]) : do_import(argv[2]);
}
