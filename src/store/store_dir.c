/* store_dir.c -- see store_dir.h. */
#include "store/store_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool exists_in(const char *dir, const char *name) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return false;
    struct stat st;
    return stat(path, &st) == 0;
}

enum store_dir_state store_dir_inspect(const char *dir, char *why, size_t why_cap) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) return STORE_DIR_ABSENT;
        snprintf(why, why_cap, "%s: %s", dir, strerror(errno));
        return STORE_DIR_ERROR;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, why_cap, "%s is not a directory", dir);
        return STORE_DIR_ERROR;
    }
    if (exists_in(dir, STORE_DIR_MARKER)) return STORE_DIR_MARKED;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(why, why_cap, "%s: %s", dir, strerror(errno));
        return STORE_DIR_ERROR;
    }
    bool empty = true;
    struct dirent *e;
    /* bounded by the directory's size; we stop at the first real entry */
    while (empty && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (strcmp(e->d_name, "lost+found") == 0) continue;   /* a fresh filesystem's own */
        empty = false;
    }
    closedir(d);
    if (empty) return STORE_DIR_EMPTY;
    return exists_in(dir, "CURRENT") ? STORE_DIR_UNMARKED_DB : STORE_DIR_FOREIGN;
}

int store_dir_mark(const char *dir, char *why, size_t why_cap) {
    static const char content[] = "parley store 1\n";
    char tmp[4096], path[4096];
    if (snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, STORE_DIR_MARKER) >= (int)sizeof tmp ||
        snprintf(path, sizeof path, "%s/%s", dir, STORE_DIR_MARKER) >= (int)sizeof path) {
        snprintf(why, why_cap, "data directory name too long");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) goto fail;
    if (write(fd, content, sizeof content - 1) != (ssize_t)(sizeof content - 1) || fsync(fd) != 0) {
        close(fd);
        goto fail;
    }
    close(fd);
    if (rename(tmp, path) != 0) goto fail;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) goto fail;
    int rc = fsync(dfd);
    close(dfd);
    if (rc != 0) goto fail;
    return 0;
fail:
    snprintf(why, why_cap, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
}
