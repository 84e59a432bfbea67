/* identities.c -- bench users kept in a file across runs (identities.h). */
#include "identities.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* one record: user id (8, host order: the file never leaves this machine),
 * device id (4), 4 bytes of padding, secret key (64) */
enum { REC_BYTES = 80, MAX_RECORDS = 10000000 };

int identities_load(const char *path, uint64_t offset, fleet *f) {
    if (offset > MAX_RECORDS || f->n > MAX_RECORDS - offset) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) || (uint64_t)st.st_size < (offset + f->n) * REC_BYTES) {
        close(fd);
        return -1;
    }
    size_t bytes = (size_t)f->n * REC_BYTES;
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    ssize_t got = pread(fd, buf, bytes, (off_t)(offset * REC_BYTES));
    close(fd);
    int rc = got == (ssize_t)bytes ? 0 : -1;
    for (uint32_t i = 0; rc == 0 && i < f->n; i++) {
        const uint8_t *r = buf + (size_t)i * REC_BYTES;
        uint64_t user;
        uint32_t device;
        memcpy(&user, r, 8);
        memcpy(&device, r + 8, 4);
        if (user == 0 || device == 0) rc = -1;
    }
    for (uint32_t i = 0; rc == 0 && i < f->n; i++) {
        const uint8_t *r = buf + (size_t)i * REC_BYTES;
        bconn *c = f->all[i];
        memcpy(&c->user_id, r, 8);
        memcpy(&c->device_id, r + 8, 4);
        memcpy(c->sk, r + 16, 64);
    }
    free(buf);
    return rc;
}

int identities_save(const char *path, uint64_t offset, const fleet *f) {
    if (offset > MAX_RECORDS || f->n > MAX_RECORDS - offset) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "parley-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t bytes = (size_t)f->n * REC_BYTES;
    uint8_t *buf = calloc(bytes ? bytes : 1, 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    for (uint32_t i = 0; i < f->n; i++) {
        const bconn *c = f->all[i];
        if (c->user_id == 0) continue;   /* not registered: a zero record */
        uint8_t *r = buf + (size_t)i * REC_BYTES;
        memcpy(r, &c->user_id, 8);
        memcpy(r + 8, &c->device_id, 4);
        memcpy(r + 16, c->sk, 64);
    }
    ssize_t put = pwrite(fd, buf, bytes, (off_t)(offset * REC_BYTES));
    free(buf);
    int rc = put == (ssize_t)bytes && fsync(fd) == 0 ? 0 : -1;
    close(fd);
    return rc;
}
