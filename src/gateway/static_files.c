#include "gateway/static_files.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PARLEY_WEB_DIST
#define PARLEY_WEB_DIST ""
#endif

static const char CACHE_IMMUTABLE[] = "public, max-age=31536000, immutable";
static const char CACHE_REVALIDATE[] = "no-cache";

/* Segments of [A-Za-z0-9._-], none empty and none starting with '.':
 * this alone rules out "..", hidden files, percent-encoding and
 * backslashes; realpath below rules out symlinks leading out. */
static bool path_allowed(const char *rel) {
    bool segment_start = true;
    for (const char *p = rel; *p; p++) {
        char ch = *p;
        if (ch == '/') {
            if (segment_start) return false;    /* "//" or a trailing "/" */
            segment_start = true;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '-' || ch == '_' || ch == '.';
        if (!ok || (segment_start && ch == '.')) return false;
        segment_start = false;
    }
    return !segment_start;
}

static const char *content_type_of(const char *name) {
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},     {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},       {".json", "application/json"},
        {".map", "application/json"},              {".svg", "image/svg+xml"},
        {".png", "image/png"},                     {".ico", "image/x-icon"},
        {".webmanifest", "application/manifest+json"}, {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* Reads a regular file of at most STATIC_FILE_MAX bytes. 0, -1 (absent or
 * not a regular file: 404), -2 (unreadable or too big: 500). */
static int read_file(const char *file, char **body, size_t *len) {
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    if (st.st_size > STATIC_FILE_MAX) {
        close(fd);
        return -2;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size ? size : 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n <= 0) break;     /* error, or the file shrank under us */
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != size) {
        free(buf);
        return -2;
    }
    *body = buf;
    *len = size;
    return 0;
}

int static_files_lookup(const char *root, const char *path, static_file *out) {
    memset(out, 0, sizeof *out);
    if (!root[0] || path[0] != '/' || strlen(path) > STATIC_PATH_MAX) return 404;
    const char *rel = strcmp(path, "/") == 0 ? "index.html" : path + 1;
    if (!path_allowed(rel)) return 404;
    char joined[PATH_MAX];
    if ((size_t)snprintf(joined, sizeof joined, "%s/%s", root, rel) >= sizeof joined) return 404;
    char real_root[PATH_MAX], real_file[PATH_MAX];
    if (!realpath(root, real_root) || !realpath(joined, real_file)) return 404;
    size_t rl = strlen(real_root);
    if (strncmp(real_file, real_root, rl) != 0 || real_file[rl] != '/') return 404;
    int r = read_file(real_file, &out->body, &out->len);
    if (r == -1) return 404;
    if (r == -2) return 500;
    out->content_type = content_type_of(rel);
    out->cache_control = strncmp(rel, "assets/", 7) == 0 ? CACHE_IMMUTABLE : CACHE_REVALIDATE;
    return 200;
}

const char *static_files_default_root(void) {
    static const char dist[] = PARLEY_WEB_DIST;
    if (!dist[0]) return "";
    char index[PATH_MAX];
    if ((size_t)snprintf(index, sizeof index, "%s/index.html", dist) >= sizeof index) return "";
    return access(index, R_OK) == 0 ? dist : "";
}
