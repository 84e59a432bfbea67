/* powerloss.c -- a test-only LD_PRELOAD library that makes fsync testable.
 *
 * Killing a process (kill -9) leaves the page cache intact, so a crash test
 * passes whether or not the server ever calls fsync. A power loss does not:
 * whatever was written but not synced is gone. This library lets a test
 * simulate that, the way crash-consistency tools such as ALICE and LazyFS
 * do, for one flat data directory (RocksDB's).
 *
 * Technique. Writes go to the real files as usual (reads see them, nothing
 * is buffered here). What the library records is what the disk would have
 * kept: it journals, to POWERLOSS_LOG, every durability-relevant operation
 * on files directly inside POWERLOSS_DIR:
 *
 *   E ino size name   file present when the library started: durable as is
 *   N ino name        name created (open O_CREAT of a new file, link)
 *   R from/to         rename within the directory
 *   U name            unlink
 *   S ino size        fsync/fdatasync of the file returned: the first `size`
 *                     bytes are durable (size read before the call, so a
 *                     write racing the sync is not counted)
 *   T ino size        ftruncate / O_TRUNC: durable size can be no larger
 *   B k / D k         fsync of the directory k began / returned: every
 *                     N, R, U journaled before "B k" is durable
 *
 * and keeps every file it saw alive under a hard link POWERLOSS_LOG.keep/ino
 * (made through /proc/self/fd, so a rename cannot race it), so the content of
 * a file that was later renamed over or unlinked can still be restored, and
 * inode numbers are never reused within a run.
 *
 * "Pulling the plug" is: kill -9 the server, then powerloss_recover()
 * (powerloss_recover.c) rebuilds the directory as the disk would have kept
 * it: the durable names only, each file cut to its synced size.
 *
 * The model, and where it is simpler than a real disk:
 *   - strict POSIX for names: a new name, rename or unlink survives only a
 *     later fsync of the directory (RocksDB does fsync its directory after
 *     creating a WAL, MANIFEST, CURRENT or OPTIONS file, so it passes);
 *   - files are treated as append-only: the durable part of a file is a
 *     prefix (RocksDB's WAL, SST, MANIFEST are written that way; an
 *     overwrite inside the synced prefix would be kept, not torn);
 *   - no torn or reordered writes inside the unsynced tail: it is dropped
 *     whole (the harshest outcome for a file that was not synced at all,
 *     which is the case the tests rely on);
 *   - no background writeback: a real kernel writes dirty pages out by
 *     itself within about 30 s; the model assumes it never got to them (the
 *     worst case, which makes `--fsync off` lose everything since the last
 *     sync rather than only the last seconds);
 *   - sync_file_range is not a durability barrier (it flushes neither the
 *     file size nor the device cache), sync()/syncfs() are not tracked,
 *     dup()ed descriptors and mmap writes are not tracked (RocksDB uses
 *     none of them with the server's options);
 *   - only files directly inside POWERLOSS_DIR; sub-directories ignored.
 * RocksDB (librocksdb.so.7.8) imports open, close, fsync, fdatasync,
 * ftruncate, rename, unlink, link, fopen (its info LOG only) and
 * sync_file_range from libc; those, and the *at/64 variants, are wrapped.
 *
 * Environment: POWERLOSS_DIR (the data directory; unset: the library does
 * nothing) and POWERLOSS_LOG (the journal path; its directory must be on the
 * same file system as POWERLOSS_DIR for the hard links).
 *
 * Built by CMake as a MODULE for the tests only; never linked into the
 * server. Thread-safe: RocksDB writes from several threads; one mutex orders
 * the descriptor table and the journal. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* descriptors above this are not tracked; opening one under the directory
 * aborts, so a test can never pass on a silently untracked file */
enum { MAX_FDS = 1 << 16 };

enum fd_kind { FD_NONE = 0, FD_FILE, FD_DIR };

typedef struct fd_slot {
    uint64_t ino;
    unsigned char kind;
} fd_slot;

static struct {
    int enabled;
    char dir[PATH_MAX];         /* realpath of POWERLOSS_DIR */
    dev_t dir_dev;
    ino_t dir_ino;
    char keep[PATH_MAX];        /* POWERLOSS_LOG.keep */
    int journal;                /* fd, O_APPEND */
    uint64_t dir_syncs;         /* k of B k / D k */
    fd_slot fds[MAX_FDS];
    pthread_mutex_t lock;
} pl = { .journal = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t pl_once = PTHREAD_ONCE_INIT;

/* the real functions */
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_link)(const char *, const char *);

static void *next_symbol(const char *name) {
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        fprintf(stderr, "powerloss: no next %s: %s\n", name, dlerror());
        abort();
    }
    return p;
}

static void resolve(void) {
    real_open = next_symbol("open");
    real_openat = next_symbol("openat");
    real_close = next_symbol("close");
    real_fsync = next_symbol("fsync");
    real_fdatasync = next_symbol("fdatasync");
    real_ftruncate = next_symbol("ftruncate");
    real_rename = next_symbol("rename");
    real_renameat = next_symbol("renameat");
    real_unlink = next_symbol("unlink");
    real_unlinkat = next_symbol("unlinkat");
    real_link = next_symbol("link");
}

static void die(const char *what) {
    fprintf(stderr, "powerloss: %s: %s\n", what, strerror(errno));
    abort();
}

/* One journal record per write(2) on an O_APPEND descriptor: records from
 * several threads never interleave, and a kill -9 cannot cut one in half
 * (recovery ignores an unterminated last line anyway). Called with the lock. */
static void journal(const char *fmt, ...) {
    char line[PATH_MAX * 2 + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        errno = ENAMETOOLONG;
        die("journal record too long");
    }
    if (write(pl.journal, line, (size_t)n) != n) die("journal write");
}

/* Keeps the inode behind fd alive as keep/ino (idempotent). */
static void keep_fd(int fd, uint64_t ino) {
    char src[64], dst[PATH_MAX + 32];
    snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
    snprintf(dst, sizeof dst, "%s/%llu", pl.keep, (unsigned long long)ino);
    if (linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) != 0 && errno != EEXIST)
        die("link into the keep directory");
}

static void init(void) {
    resolve();
    const char *dir = getenv("POWERLOSS_DIR");
    const char *log = getenv("POWERLOSS_LOG");
    if (!dir || !*dir) return;
    if (!log || !*log) {
        fprintf(stderr, "powerloss: POWERLOSS_DIR without POWERLOSS_LOG\n");
        abort();
    }
    if (!realpath(dir, pl.dir)) die("realpath POWERLOSS_DIR");
    struct stat st;
    if (stat(pl.dir, &st) != 0) die("stat POWERLOSS_DIR");
    pl.dir_dev = st.st_dev;
    pl.dir_ino = st.st_ino;
    if (strlen(log) + 6 > sizeof pl.keep) {
        errno = ENAMETOOLONG;
        die("POWERLOSS_LOG");
    }
    snprintf(pl.keep, sizeof pl.keep, "%s.keep", log);
    if (mkdir(pl.keep, 0700) != 0 && errno != EEXIST) die("mkdir keep directory");
    pl.journal = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (pl.journal < 0) die("open POWERLOSS_LOG");

    /* what is there already is durable: the power loss window starts now */
    DIR *d = opendir(pl.dir);
    if (!d) die("opendir POWERLOSS_DIR");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = real_openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            keep_fd(fd, (uint64_t)st.st_ino);
            journal("E %llu %lld %s\n", (unsigned long long)st.st_ino, (long long)st.st_size, e->d_name);
        }
        real_close(fd);
    }
    closedir(d);
    pl.enabled = 1;
}

static void ensure_init(void) { pthread_once(&pl_once, init); }

/* at load, before the program runs: what is in the directory then is the
 * durable starting point (every wrapper also calls ensure_init, for calls
 * made by other libraries' constructors before this one ran) */
__attribute__((constructor)) static void init_at_load(void) { ensure_init(); }

/* If path (relative to dirfd) names an entry directly inside the directory,
 * copies its base name into name and returns 1. */
static int entry_in_dir(int dirfd, const char *path, char *name, size_t cap) {
    if (!path || !*path) return 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) return 0;
    if (strlen(base) >= cap) return 0;
    struct stat st;
    int rc;
    if (!slash) {
        rc = dirfd == AT_FDCWD ? stat(".", &st) : fstat(dirfd, &st);
    } else {
        char parent[PATH_MAX];
        size_t plen = (size_t)(slash - path);
        if (plen == 0) plen = 1;    /* "/name" */
        if (plen >= sizeof parent) return 0;
        memcpy(parent, path, plen);
        parent[plen] = 0;
        rc = fstatat(dirfd, parent, &st, 0);
    }
    if (rc != 0 || st.st_dev != pl.dir_dev || st.st_ino != pl.dir_ino) return 0;
    memcpy(name, base, strlen(base) + 1);
    return 1;
}

/* After a successful open of fd: track it if it is the directory or a
 * regular file inside it. existed: the name was there before the call. */
static void track_open(int fd, int dirfd, const char *path, int flags, int existed) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        if (st.st_dev != pl.dir_dev || st.st_ino != pl.dir_ino) return;
        if (fd >= MAX_FDS) {
            fprintf(stderr, "powerloss: descriptor %d above %d for the data directory\n", fd, MAX_FDS);
            abort();
        }
        pthread_mutex_lock(&pl.lock);
        pl.fds[fd] = (fd_slot){ (uint64_t)st.st_ino, FD_DIR };
        pthread_mutex_unlock(&pl.lock);
        return;
    }
    char name[NAME_MAX + 1];
    if (!S_ISREG(st.st_mode) || !entry_in_dir(dirfd, path, name, sizeof name)) return;
    if (fd >= MAX_FDS) {
        fprintf(stderr, "powerloss: descriptor %d above %d under the data directory\n", fd, MAX_FDS);
        abort();
    }
    pthread_mutex_lock(&pl.lock);
    pl.fds[fd] = (fd_slot){ (uint64_t)st.st_ino, FD_FILE };
    keep_fd(fd, (uint64_t)st.st_ino);
    if (!existed) journal("N %llu %s\n", (unsigned long long)st.st_ino, name);
    else if (flags & O_TRUNC) journal("T %llu 0\n", (unsigned long long)st.st_ino);
    pthread_mutex_unlock(&pl.lock);
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode) {
    ensure_init();
    int existed = 1;
    if (pl.enabled && (flags & O_CREAT)) {
        struct stat st;
        existed = fstatat(dirfd, path, &st, 0) == 0;
    }
    int fd = real_openat(dirfd, path, flags, mode);
    if (pl.enabled && fd >= 0) {
        /* a descriptor closed behind our back (fclose, closedir) must not
         * keep its old meaning when the number comes back */
        if (fd < MAX_FDS) {
            pthread_mutex_lock(&pl.lock);
            pl.fds[fd].kind = FD_NONE;
            pthread_mutex_unlock(&pl.lock);
        }
        track_open(fd, dirfd, path, flags, existed);
    }
    return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode) {
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode) {
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
    ensure_init();
    if (pl.enabled && fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&pl.lock);
        pl.fds[fd].kind = FD_NONE;
        int rc = real_close(fd);
        pthread_mutex_unlock(&pl.lock);
        return rc;
    }
    return real_close(fd);
}

static fd_slot slot_of(int fd) {
    fd_slot s = { 0, FD_NONE };
    if (fd < 0 || fd >= MAX_FDS) return s;
    pthread_mutex_lock(&pl.lock);
    s = pl.fds[fd];
    pthread_mutex_unlock(&pl.lock);
    return s;
}

/* fsync and fdatasync alike: both make the file's data and size durable */
static int sync_common(int fd, int (*real)(int)) {
    if (!pl.enabled) return real(fd);
    fd_slot s = slot_of(fd);
    if (s.kind == FD_DIR) {
        pthread_mutex_lock(&pl.lock);
        uint64_t k = ++pl.dir_syncs;
        journal("B %llu\n", (unsigned long long)k);
        pthread_mutex_unlock(&pl.lock);
        int rc = real(fd);
        if (rc == 0) {
            pthread_mutex_lock(&pl.lock);
            journal("D %llu\n", (unsigned long long)k);
            pthread_mutex_unlock(&pl.lock);
        }
        return rc;
    }
    if (s.kind != FD_FILE) return real(fd);
    struct stat st;
    off_t size = fstat(fd, &st) == 0 ? st.st_size : 0;   /* before: racing writes do not count */
    int rc = real(fd);
    if (rc == 0) {
        pthread_mutex_lock(&pl.lock);
        journal("S %llu %lld\n", (unsigned long long)s.ino, (long long)size);
        pthread_mutex_unlock(&pl.lock);
    }
    return rc;
}

int fsync(int fd) {
    ensure_init();
    return sync_common(fd, real_fsync);
}

int fdatasync(int fd) {
    ensure_init();
    return sync_common(fd, real_fdatasync);
}

static int truncate_common(int fd, off_t len) {
    ensure_init();
    fd_slot s = pl.enabled ? slot_of(fd) : (fd_slot){ 0, FD_NONE };
    int rc = real_ftruncate(fd, len);
    if (rc == 0 && s.kind == FD_FILE) {
        pthread_mutex_lock(&pl.lock);
        journal("T %llu %lld\n", (unsigned long long)s.ino, (long long)len);
        pthread_mutex_unlock(&pl.lock);
    }
    return rc;
}

int ftruncate(int fd, off_t len) { return truncate_common(fd, len); }
int ftruncate64(int fd, off64_t len) { return truncate_common(fd, (off_t)len); }

static int rename_common(int olddir, const char *from, int newdir, const char *to) {
    ensure_init();
    char a[NAME_MAX + 1], b[NAME_MAX + 1];
    if (!pl.enabled || !entry_in_dir(olddir, from, a, sizeof a) || !entry_in_dir(newdir, to, b, sizeof b))
        return real_renameat(olddir, from, newdir, to);
    /* the lock orders the rename and its record against other namespace records */
    pthread_mutex_lock(&pl.lock);
    int rc = real_renameat(olddir, from, newdir, to);
    if (rc == 0) journal("R %s/%s\n", a, b);
    pthread_mutex_unlock(&pl.lock);
    return rc;
}

int rename(const char *from, const char *to) { return rename_common(AT_FDCWD, from, AT_FDCWD, to); }

int renameat(int olddir, const char *from, int newdir, const char *to) {
    return rename_common(olddir, from, newdir, to);
}

static int unlink_common(int dirfd, const char *path, int flags) {
    ensure_init();
    char a[NAME_MAX + 1];
    if (!pl.enabled || (flags & AT_REMOVEDIR) || !entry_in_dir(dirfd, path, a, sizeof a))
        return real_unlinkat(dirfd, path, flags);
    pthread_mutex_lock(&pl.lock);
    int rc = real_unlinkat(dirfd, path, flags);
    if (rc == 0) journal("U %s\n", a);
    pthread_mutex_unlock(&pl.lock);
    return rc;
}

int unlink(const char *path) { return unlink_common(AT_FDCWD, path, 0); }
int unlinkat(int dirfd, const char *path, int flags) { return unlink_common(dirfd, path, flags); }

int link(const char *from, const char *to) {
    ensure_init();
    char b[NAME_MAX + 1];
    if (!pl.enabled || !entry_in_dir(AT_FDCWD, to, b, sizeof b)) return real_link(from, to);
    pthread_mutex_lock(&pl.lock);
    int rc = real_link(from, to);
    if (rc == 0) {
        int fd = real_open(to, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            keep_fd(fd, (uint64_t)st.st_ino);
            journal("N %llu %s\n", (unsigned long long)st.st_ino, b);
        }
        if (fd >= 0) real_close(fd);
    }
    pthread_mutex_unlock(&pl.lock);
    return rc;
}
