/* static_files.h -- the browser client's files (web/dist, --web-root) for
 * GET requests to paths other than the upgrade, /healthz and /metrics.
 * Only names made of [A-Za-z0-9._-] segments, none starting with a dot,
 * are looked up, and the file found must resolve inside the root (no
 * "..", no symlink out of it, no directory, nothing over
 * STATIC_FILE_MAX). No ETag: index.html is small and sent "no-cache";
 * the hashed assets under /assets/ never change under their name and are
 * sent "immutable". */
#ifndef PARLEY_GATEWAY_STATIC_FILES_H
#define PARLEY_GATEWAY_STATIC_FILES_H

#include <stddef.h>

enum {
    STATIC_PATH_MAX = 256,             /* longest request path looked up */
    STATIC_FILE_MAX = 8 * 1024 * 1024, /* largest file served */
};

typedef struct static_file {
    const char *content_type;
    const char *cache_control;
    char *body;                        /* malloc'd; the caller frees it */
    size_t len;
} static_file;

/* Looks path (the request path without its query) up under root. Returns
 * 200 with *out filled, or 404 (no such file, or a path not allowed), or
 * 500 (a file that exists but cannot be read, or over STATIC_FILE_MAX). */
int static_files_lookup(const char *root, const char *path, static_file *out);

/* The default web root: the build's web/dist when it holds an index.html
 * (PARLEY_WEB_DIST, set by CMake), else "" (nothing served at /). */
const char *static_files_default_root(void);

#endif
