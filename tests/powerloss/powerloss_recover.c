/* powerloss_recover.c -- see powerloss_recover.h; the journal format and the
 * model are described at the top of powerloss.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "powerloss_recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef POWERLOSS_LIBRARY
#error "POWERLOSS_LIBRARY (path of the preload library) is set by CMake"
#endif
#ifndef POWERLOSS_ASAN_RUNTIME
#define POWERLOSS_ASAN_RUNTIME ""
#endif

/* a test's journal is a few thousand lines; anything near this is a bug */
enum { JOURNAL_MAX = 64 << 20, NAME_CAP = NAME_MAX + 1 };

const char *powerloss_preload(void) {
    static char value[PATH_MAX * 2 + 2];
    if (POWERLOSS_ASAN_RUNTIME[0])
        snprintf(value, sizeof value, "%s:%s", POWERLOSS_ASAN_RUNTIME, POWERLOSS_LIBRARY);
    else
        snprintf(value, sizeof value, "%s", POWERLOSS_LIBRARY);
    return value;
}

void powerloss_env_set(const char *data_dir, const char *journal) {
    setenv("LD_PRELOAD", powerloss_preload(), 1);
    setenv("POWERLOSS_DIR", data_dir, 1);
    setenv("POWERLOSS_LOG", journal, 1);
}

void powerloss_env_clear(void) {
    unsetenv("LD_PRELOAD");
    unsetenv("POWERLOSS_DIR");
    unsetenv("POWERLOSS_LOG");
}

/* ------------------------------------------------------------ the model */

typedef struct entry {          /* a durable name */
    char name[NAME_CAP];
    unsigned long long ino;
} entry;

typedef struct file {           /* an inode and its durable size */
    unsigned long long ino;
    long long synced;
} file;

typedef struct model {
    entry *names;
    size_t n_names, cap_names;
    file *files;
    size_t n_files, cap_files;
} model;

static void fail(char *why, size_t cap, const char *fmt, ...) {
    if (!why || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

static int grow(void **p, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    void *np = realloc(*p, nc * size);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static entry *name_find(model *m, const char *name) {
    for (size_t i = 0; i < m->n_names; i++)
        if (strcmp(m->names[i].name, name) == 0) return &m->names[i];
    return NULL;
}

static int name_set(model *m, const char *name, unsigned long long ino) {
    entry *e = name_find(m, name);
    if (!e) {
        if (strlen(name) >= NAME_CAP || grow((void **)&m->names, &m->cap_names, m->n_names, sizeof *e))
            return -1;
        e = &m->names[m->n_names++];
        snprintf(e->name, sizeof e->name, "%s", name);
    }
    e->ino = ino;
    return 0;
}

static void name_del(model *m, const char *name) {
    entry *e = name_find(m, name);
    if (e) *e = m->names[--m->n_names];
}

static file *file_get(model *m, unsigned long long ino) {
    for (size_t i = 0; i < m->n_files; i++)
        if (m->files[i].ino == ino) return &m->files[i];
    if (grow((void **)&m->files, &m->cap_files, m->n_files, sizeof *m->files)) return NULL;
    m->files[m->n_files] = (file){ ino, 0 };
    return &m->files[m->n_files++];
}

/* Splits the journal into NUL-terminated lines in place; an unterminated
 * last line (a record cut by the kill) is dropped. */
static char **split_lines(char *buf, size_t len, size_t *n) {
    size_t count = 0;
    for (size_t i = 0; i < len; i++) count += buf[i] == '\n';
    char **lines = calloc(count + 1, sizeof *lines);
    if (!lines) return NULL;
    size_t k = 0;
    char *p = buf, *end = buf + len;
    while (p < end && k < count) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        *nl = 0;
        lines[k++] = p;
        p = nl + 1;
    }
    *n = k;
    return lines;
}

/* Applies the journal: names made durable by a directory sync, sizes made
 * durable by file syncs. */
static int replay(char **lines, size_t n, model *m, powerloss_report *rep, char *why, size_t cap) {
    /* a name operation is durable if some directory sync began after it and returned */
    size_t *began = calloc(n + 1, sizeof *began);
    if (!began) return -1;
    size_t cutoff = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned long long k;
        if (sscanf(lines[i], "B %llu", &k) == 1 && k <= n) began[k] = i;
        else if (sscanf(lines[i], "D %llu", &k) == 1 && k <= n) {
            if (began[k] > cutoff) cutoff = began[k];
            rep->dir_syncs++;
        }
    }
    free(began);
    size_t i;
    for (i = 0; i < n; i++) {
        const char *l = lines[i];
        unsigned long long ino;
        long long size;
        int off = 0;
        file *f;
        switch (l[0]) {
        case 'E':
            if (sscanf(l, "E %llu %lld %n", &ino, &size, &off) != 2 || !off) goto bad;
            if (!(f = file_get(m, ino)) || name_set(m, l + off, ino)) goto oom;
            f->synced = size;
            break;
        case 'N':
            if (sscanf(l, "N %llu %n", &ino, &off) != 1 || !off) goto bad;
            if (!file_get(m, ino)) goto oom;
            if (i < cutoff && name_set(m, l + off, ino)) goto oom;
            break;
        case 'R': {
            const char *names = l + 2, *slash = strchr(names, '/');
            if (l[1] != ' ' || !slash || (size_t)(slash - names) >= NAME_CAP) goto bad;
            char from[NAME_CAP];
            memcpy(from, names, (size_t)(slash - names));
            from[slash - names] = 0;
            if (i >= cutoff) break;
            entry *e = name_find(m, from);
            if (!e) break;      /* renaming a name that never became durable */
            ino = e->ino;
            name_del(m, from);
            if (name_set(m, slash + 1, ino)) goto oom;
            break;
        }
        case 'U':
            if (l[1] != ' ') goto bad;
            if (i < cutoff) name_del(m, l + 2);
            break;
        case 'S':
            if (sscanf(l, "S %llu %lld", &ino, &size) != 2) goto bad;
            if (!(f = file_get(m, ino))) goto oom;
            if (size > f->synced) f->synced = size;
            rep->syncs++;
            break;
        case 'T':
            if (sscanf(l, "T %llu %lld", &ino, &size) != 2) goto bad;
            if (!(f = file_get(m, ino))) goto oom;
            if (size < f->synced) f->synced = size;
            break;
        case 'B':
        case 'D':
            break;
        default:
            goto bad;
        }
    }
    return 0;
bad:
    fail(why, cap, "journal line %zu not understood: '%.80s'", i + 1, lines[i]);
    return -1;
oom:
    fail(why, cap, "out of memory replaying the journal");
    return -1;
}

/* ------------------------------------------------------- the rebuild */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Copies the first `len` bytes of src into a new file dst. */
static int copy_prefix(const char *src, const char *dst, long long len) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    long long done = 0;
    int rc = 0;
    while (done < len) {
        size_t want = len - done < (long long)sizeof buf ? (size_t)(len - done) : sizeof buf;
        ssize_t r = read(in, buf, want);
        if (r <= 0 || write(out, buf, (size_t)r) != r) {
            rc = -1;
            break;
        }
        done += r;
    }
    close(in);
    if (close(out) != 0) rc = -1;
    return rc;
}

static long long size_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static int rebuild(const char *data_dir, const char *keep, model *m, powerloss_report *rep, char *why,
                   size_t cap) {
    char fresh[PATH_MAX], lost[PATH_MAX], src[PATH_MAX], dst[PATH_MAX * 2];
    snprintf(fresh, sizeof fresh, "%s.powerloss-new", data_dir);
    snprintf(lost, sizeof lost, "%s.powerloss-lost", data_dir);
    rm_rf(fresh);
    if (mkdir(fresh, 0755) != 0) {
        fail(why, cap, "mkdir %s: %s", fresh, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < m->n_names; i++) {
        const entry *e = &m->names[i];
        file *f = file_get(m, e->ino);
        snprintf(src, sizeof src, "%s/%llu", keep, e->ino);
        snprintf(dst, sizeof dst, "%s/%s", fresh, e->name);
        long long have = size_of(src);
        long long keep_len = f && f->synced < have ? f->synced : have;
        if (copy_prefix(src, dst, keep_len) != 0) {
            fail(why, cap, "copy %s to %s: %s", src, dst, strerror(errno));
            rm_rf(fresh);
            return -1;
        }
        rep->files_kept++;
        rep->bytes_dropped += (uint64_t)(have - keep_len);
    }
    /* what is in the directory now and was not durable */
    DIR *d = opendir(data_dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
                continue;
            if (name_find(m, de->d_name)) continue;
            rep->files_dropped++;
            snprintf(dst, sizeof dst, "%s/%s", data_dir, de->d_name);
            rep->bytes_dropped += (uint64_t)size_of(dst);
        }
        closedir(d);
    }
    rm_rf(lost);
    if (rename(data_dir, lost) != 0 || rename(fresh, data_dir) != 0) {
        fail(why, cap, "swapping %s for the rebuilt directory: %s", data_dir, strerror(errno));
        return -1;
    }
    rm_rf(lost);
    return 0;
}

int powerloss_recover(const char *data_dir, const char *journal, powerloss_report *rep_out, char *why,
                      size_t why_cap) {
    powerloss_report rep = { 0 };
    model m = { 0 };
    char keep[PATH_MAX];
    snprintf(keep, sizeof keep, "%s.keep", journal);
    int rc = -1;
    char *buf = NULL;
    char **lines = NULL;
    FILE *f = fopen(journal, "rb");
    if (!f) {
        fail(why, why_cap, "open journal %s: %s", journal, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > JOURNAL_MAX) {
        fail(why, why_cap, "journal %s: unreadable or larger than %d bytes", journal, JOURNAL_MAX);
        fclose(f);
        return -1;
    }
    buf = malloc((size_t)st.st_size + 1);
    size_t len = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) {
        fail(why, why_cap, "out of memory");
        goto out;
    }
    size_t n = 0;
    lines = split_lines(buf, len, &n);
    if (!lines) {
        fail(why, why_cap, "out of memory");
        goto out;
    }
    if (replay(lines, n, &m, &rep, why, why_cap) != 0) goto out;
    if (rebuild(data_dir, keep, &m, &rep, why, why_cap) != 0) goto out;
    rm_rf(keep);
    unlink(journal);
    rc = 0;
out:
    free(lines);
    free(buf);
    free(m.names);
    free(m.files);
    if (rep_out) *rep_out = rep;
    return rc;
}
