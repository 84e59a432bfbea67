/* plaintext_store.c -- the texts this device has decrypted or sent, so that
 * `history` and a later `sync` can show them: a sender-key message key is
 * used once and discarded (replays are refused), so a message read once
 * cannot be decrypted again, and the sender never could.
 *
 * File "plaintext" in the state directory, mode 0600 (it holds what the
 * encryption protects: keep it like the key store). Records appended:
 *   conv(u64 LE) seq(u64 LE) len(u32 LE) text[len]
 * at most PT_STORE_MAX bytes in all; past that nothing more is kept (and
 * the caller says so). Read whole, at most PT_STORE_MAX bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

static const char FILE_NAME[] = "plaintext";
enum { RECORD_HEADER = 8 + 8 + 4, PATH_CAP = 4096 };

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

int pt_store_put(const char *dir, uint64_t conv, uint64_t seq, const void *text, size_t len) {
    if (len > PT_TEXT_MAX) return -1;
    char path[PATH_CAP];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, FILE_NAME) >= sizeof path) return -1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    struct stat st;
    if (fchmod(fd, 0600) < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size + RECORD_HEADER + len > PT_STORE_MAX) {
        close(fd);
        return -1;
    }
    uint8_t head[RECORD_HEADER];
    put_le(head, conv, 8);
    put_le(head + 8, seq, 8);
    put_le(head + 16, len, 4);
    int ok = write(fd, head, sizeof head) == (ssize_t)sizeof head && write(fd, text, len) == (ssize_t)len;
    return close(fd) == 0 && ok ? 0 : -1;
}

int pt_store_load(const char *dir, pt_store *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    return state_read_blob(dir, FILE_NAME, PT_STORE_MAX, &out->data, &out->len, err, cap) < 0 ? -1 : 0;
}

int pt_store_find(const pt_store *s, uint64_t conv, uint64_t seq, const uint8_t **text, size_t *len) {
    int found = 0;
    for (size_t off = 0; s->data && off + RECORD_HEADER <= s->len;) {
        const uint8_t *r = s->data + off;
        size_t n = (size_t)get_le(r + 16, 4);
        if (n > s->len - off - RECORD_HEADER) break;   /* a torn last record */
        if (get_le(r, 8) == conv && get_le(r + 8, 8) == seq) {
            *text = r + RECORD_HEADER;
            *len = n;
            found = 1;   /* the last record of a message wins */
        }
        off += RECORD_HEADER + n;
    }
    return found;
}

void pt_store_free(pt_store *s) {
    if (s->data) sodium_memzero(s->data, s->len);
    free(s->data);
    memset(s, 0, sizeof *s);
}
