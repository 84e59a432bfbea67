/* state.c -- the --state directory: who this device is (identity, 0600,
 * holds the secret key) and where its sync stands (cursor + last seen seq
 * per conversation), so `sync` never prints an event twice across runs.
 *
 * Files are small "key value" text lines, written to a temp file, fsynced
 * and renamed over the old one: a crash leaves the old or the new state,
 * never half of one. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

enum {
    LINE_MAX_BYTES = 1024,      /* longer lines mean the file is not ours */
    SEEN_MAX = 1 << 20,         /* conversations remembered; bounds a corrupt file */
    PATH_BYTES = 4096,
};

static const char IDENTITY_FILE[] = "identity";
static const char SYNC_FILE[] = "sync";
static const char LOCK_FILE[] = "lock";

static int errf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static int path_of(char *out, const char *dir, const char *file) {
    int n = snprintf(out, PATH_BYTES, "%s/%s", dir, file);
    return n > 0 && n < PATH_BYTES ? 0 : -1;
}

int state_ensure_dir(const char *dir) {
    if (mkdir(dir, 0700) == 0) return 0;
    if (errno != EEXIST) return -1;
    struct stat st;
    if (stat(dir, &st) < 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int state_lock(const char *dir, char *err, size_t cap) {
    char path[PATH_BYTES];
    if (path_of(path, dir, LOCK_FILE) < 0) return errf(err, cap, "state path too long");
    /* deliberately never closed: the lock lives as long as the process */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return errf(err, cap, "%s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return errf(err, cap, "%s is in use by another %s", dir, CLI_NAME);
        return errf(err, cap, "lock %s: %s", path, strerror(e));
    }
    return 0;
}

/* Writes content to dir/file atomically with mode 0600. */
static int write_atomic(const char *dir, const char *file, const char *content, size_t len,
                        char *err, size_t cap) {
    char path[PATH_BYTES], tmp[PATH_BYTES];
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp.%ld", file, (long)getpid());
    if (path_of(path, dir, file) < 0 || path_of(tmp, dir, tmpname) < 0)
        return errf(err, cap, "state path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errf(err, cap, "%s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, content + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return errf(err, cap, "write %s: %s", tmp, strerror(e));
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return errf(err, cap, "sync %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return errf(err, cap, "rename to %s: %s", path, strerror(e));
    }
    /* make the rename itself durable */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Reads a small text file whole into a NUL-terminated malloc'd buffer.
 * 1 read, 0 missing, -1 error. */
static int read_small(const char *dir, const char *file, size_t max, char **out, char *err,
                      size_t cap) {
    char path[PATH_BYTES];
    if (path_of(path, dir, file) < 0) return errf(err, cap, "state path too long");
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT) return 0;
        return errf(err, cap, "%s: %s", path, strerror(errno));
    }
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return errf(err, cap, "out of memory");
    }
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > max) {
        free(buf);
        return errf(err, cap, "%s: %s", path, bad ? "read error" : "too large");
    }
    buf[n] = '\0';
    *out = buf;
    return 1;
}

/* Next "key value" line of *p: key and value NUL-terminated in place.
 * 1 a line, 0 end, -1 a line too long. Blank and '#' lines are skipped. */
static int next_line(char **p, char **key, char **value) {
    for (;;) {
        char *s = *p;
        if (*s == '\0') return 0;
        char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (len > LINE_MAX_BYTES) return -1;
        *p = nl ? nl + 1 : s + len;
        s[len] = '\0';
        if (len == 0 || s[0] == '#') continue;
        char *sp = strchr(s, ' ');
        *key = s;
        *value = sp ? sp + 1 : s + len;
        if (sp) *sp = '\0';
        return 1;
    }
}

static int hex_field(const char *hex, uint8_t *out, size_t n) {
    size_t got = 0;
    if (strlen(hex) != n * 2) return -1;
    if (sodium_hex2bin(out, n, hex, n * 2, NULL, &got, NULL) != 0 || got != n) return -1;
    return 0;
}

int state_load_identity(const char *dir, cli_identity *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    int r = read_small(dir, IDENTITY_FILE, 8192, &buf, err, cap);
    if (r <= 0) return r;
    bool have_pk = false, have_sk = false, have_user = false, have_dev = false;
    char *p = buf, *key, *val;
    int ln;
    while ((ln = next_line(&p, &key, &val)) == 1) {
        uint64_t v;
        if (strcmp(key, "user_id") == 0 && cli_parse_u64(val, &v) == 0) {
            out->id.user_id = v;
            have_user = true;
        } else if (strcmp(key, "device_id") == 0 && cli_parse_u64(val, &v) == 0 && v <= UINT32_MAX) {
            out->id.device_id = (uint32_t)v;
            have_dev = true;
        } else if (strcmp(key, "public_key") == 0) {
            have_pk = hex_field(val, out->id.public_key, sizeof out->id.public_key) == 0;
        } else if (strcmp(key, "secret_key") == 0) {
            have_sk = hex_field(val, out->id.secret_key, sizeof out->id.secret_key) == 0;
        } else if (strcmp(key, "server") == 0) {
            snprintf(out->server, sizeof out->server, "%s", val);
        } else if (strcmp(key, "name") == 0) {
            snprintf(out->name, sizeof out->name, "%s", val);
        }
        /* unknown keys: written by a newer parley-cli; ignore */
    }
    sodium_memzero(buf, strlen(buf));
    free(buf);
    if (ln < 0 || !have_pk || !have_sk || !have_user || !have_dev) {
        sodium_memzero(out, sizeof *out);
        return errf(err, cap, "%s/%s is corrupt", dir, IDENTITY_FILE);
    }
    return 1;
}

int state_save_identity(const char *dir, const cli_identity *id, char *err, size_t cap) {
    char pk[sizeof id->id.public_key * 2 + 1], sk[sizeof id->id.secret_key * 2 + 1];
    sodium_bin2hex(pk, sizeof pk, id->id.public_key, sizeof id->id.public_key);
    sodium_bin2hex(sk, sizeof sk, id->id.secret_key, sizeof id->id.secret_key);
    char buf[2048];
    int n = snprintf(buf, sizeof buf,
                     "# %s device identity: the secret key signs in as this device; keep private\n"
                     "version 1\n"
                     "server %s\n"
                     "name %s\n"
                     "user_id %" PRIu64 "\n"
                     "device_id %" PRIu32 "\n"
                     "public_key %s\n"
                     "secret_key %s\n",
                     CLI_NAME, id->server, id->name, id->id.user_id, id->id.device_id, pk, sk);
    sodium_memzero(sk, sizeof sk);
    int r = n > 0 && (size_t)n < sizeof buf
                ? write_atomic(dir, IDENTITY_FILE, buf, (size_t)n, err, cap)
                : errf(err, cap, "identity too long");
    sodium_memzero(buf, sizeof buf);
    return r;
}

static int seen_push(cli_sync_state *s, uint64_t conv, uint64_t seq) {
    if (s->n_seen == s->cap_seen) {
        if (s->cap_seen >= SEEN_MAX) return -1;
        size_t cap = s->cap_seen ? s->cap_seen * 2 : 64;
        cli_seen *n = realloc(s->seen, cap * sizeof *n);
        if (!n) return -1;
        s->seen = n;
        s->cap_seen = cap;
    }
    s->seen[s->n_seen++] = (cli_seen){conv, seq};
    return 0;
}

int state_load_sync(const char *dir, cli_sync_state *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    char *buf = NULL;
    /* 64 MiB: ~1M conversations of "seen N N" lines */
    int r = read_small(dir, SYNC_FILE, 64u << 20, &buf, err, cap);
    if (r <= 0) return r;
    char *p = buf, *key, *val;
    int ln = 0;
    int bad = 0;
    while (!bad && (ln = next_line(&p, &key, &val)) == 1) {
        if (strcmp(key, "cursor") == 0) {
            bad = cli_parse_u64(val, &out->cursor) < 0;
        } else if (strcmp(key, "seen") == 0) {
            char *sp = strchr(val, ' ');
            uint64_t conv, seq;
            if (!sp) {
                bad = 1;
                break;
            }
            *sp = '\0';
            bad = cli_parse_u64(val, &conv) < 0 || cli_parse_u64(sp + 1, &seq) < 0
                  || seen_push(out, conv, seq) < 0;
        }
    }
    free(buf);
    if (bad || ln < 0) {
        state_sync_free(out);
        return errf(err, cap, "%s/%s is corrupt", dir, SYNC_FILE);
    }
    return 0;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbuf_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, tmp, (size_t)n + 1);
    b->len += (size_t)n;
}

static void add_seen_line(void *ud, uint64_t conv, uint64_t seq) {
    sbuf_printf(ud, "seen %" PRIu64 " %" PRIu64 "\n", conv, seq);
}

int state_save_sync(const char *dir, const pc_client *c, char *err, size_t cap) {
    sbuf b = {0};
    sbuf_printf(&b, "# %s sync position: last acked user_seq, last seen seq per conversation\n"
                    "version 1\ncursor %" PRIu64 "\n", CLI_NAME, pc_cursor(c));
    pc_foreach_seen(c, add_seen_line, &b);
    int r = b.oom ? errf(err, cap, "out of memory")
                  : write_atomic(dir, SYNC_FILE, b.p, b.len, err, cap);
    free(b.p);
    return r;
}

void state_sync_free(cli_sync_state *s) {
    free(s->seen);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------- binary files */

int state_write_blob(const char *dir, const char *file, const uint8_t *data, size_t len, char *err, size_t cap) {
    return write_atomic(dir, file, (const char *)data, len, err, cap);
}

int state_read_blob(const char *dir, const char *file, size_t max, uint8_t **out, size_t *len, char *err,
                    size_t cap) {
    *out = NULL;
    *len = 0;
    char path[PATH_BYTES];
    if (path_of(path, dir, file) < 0) return errf(err, cap, "state path too long");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : errf(err, cap, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size > max) {
        close(fd);
        return errf(err, cap, "%s: unreadable or over %zu bytes", path, max);
    }
    size_t n = (size_t)st.st_size, off = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return errf(err, cap, "out of memory");
    }
    while (off < n) {
        ssize_t r = read(fd, buf + off, n - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        off += (size_t)r;
    }
    close(fd);
    if (off != n) {
        free(buf);
        return errf(err, cap, "%s: short read", path);
    }
    *out = buf;
    *len = n;
    return 1;
}
