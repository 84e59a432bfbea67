/* test_powerloss_model.c -- the power-loss simulation alone (tests/powerloss/):
 * a child process (this program again, with the LD_PRELOAD library) writes
 * and syncs files in a directory and kills itself with SIGKILL; the parent
 * "pulls the plug" (powerloss_recover) and checks that exactly what was made
 * durable remains:
 *   - a file's synced prefix stays, what was written after the fsync goes;
 *   - a new name that no directory fsync covered is gone, even if the file
 *     itself was fsynced; a rename over an existing file without a directory
 *     fsync leaves the old file; an unlink without one is undone;
 *   - with a directory fsync, the rename and the unlink stay. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "powerloss_recover.h"

static char root[64], data[128], journal[128];

/* ------------------------------------------------------------ the child */

static void must(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "  child: %s: %s\n", what, strerror(errno));
        _exit(2);
    }
}

static int create(const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", getenv("POWERLOSS_DIR"), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    must(fd >= 0, p);
    return fd;
}

static void put(int fd, const char *s) { must(write(fd, s, strlen(s)) == (ssize_t)strlen(s), "write"); }

static void sync_dir(void) {
    int d = open(getenv("POWERLOSS_DIR"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    must(d >= 0 && fsync(d) == 0 && close(d) == 0, "fsync of the directory");
}

static void rename_in(const char *from, const char *to) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s", getenv("POWERLOSS_DIR"), from);
    snprintf(b, sizeof b, "%s/%s", getenv("POWERLOSS_DIR"), to);
    must(rename(a, b) == 0, "rename");
}

static void unlink_in(const char *name) {
    char a[256];
    snprintf(a, sizeof a, "%s/%s", getenv("POWERLOSS_DIR"), name);
    must(unlink(a) == 0, "unlink");
}

/* The scripts the children run; each ends with SIGKILL (the power cut). */
static void child(const char *script) {
    if (strcmp(script, "prefix") == 0) {
        int fd = create("wal");
        put(fd, "synced;");
        must(fdatasync(fd) == 0, "fdatasync");
        sync_dir();
        put(fd, "lost;");
        int fd2 = create("never-synced");   /* name made durable below, data never */
        put(fd2, "gone");
        sync_dir();
        /* no close: the process dies with them open */
    } else if (strcmp(script, "names-volatile") == 0) {
        int fd = create("tmp");
        put(fd, "new");
        must(fsync(fd) == 0 && close(fd) == 0, "fsync tmp");
        rename_in("tmp", "current");        /* over the durable "current" */
        unlink_in("victim");
        int fd3 = create("orphan");         /* fsynced, its name never */
        put(fd3, "x");
        must(fsync(fd3) == 0, "fsync orphan");
    } else if (strcmp(script, "names-durable") == 0) {
        int fd = create("tmp");
        put(fd, "new");
        must(fsync(fd) == 0 && close(fd) == 0, "fsync tmp");
        rename_in("tmp", "current");
        unlink_in("victim");
        sync_dir();
    } else {
        _exit(3);
    }
    raise(SIGKILL);
    _exit(4);
}

/* ----------------------------------------------------------- the parent */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static int fresh_dir(void) {
    snprintf(root, sizeof root, "/tmp/parley-powerloss-XXXXXX");
    if (!mkdtemp(root)) return -1;
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(journal, sizeof journal, "%s/journal", root);
    return mkdir(data, 0755);
}

static void remove_root(void) {
    if (root[0]) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    root[0] = 0;
}

/* A file present before the child starts (so durable), with content s. */
static int seed(const char *name, const char *s) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", data, name);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(s, f);
    return fclose(f);
}

/* Runs the child script under the library; 0 if it died by SIGKILL. */
static int run_child(const char *script) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        powerloss_env_set(data, journal);
        execl("/proc/self/exe", "test_powerloss_model", "--child", script, (char *)NULL);
        _exit(5);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return -1;
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        fprintf(stderr, "  child %s ended with status 0x%x, not SIGKILL\n", script, st);
        return -1;
    }
    return 0;
}

/* Content of data/name into buf; -1 if there is no such file. */
static int content(const char *name, char *buf, size_t cap) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", data, name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return 0;
}

static int plug(powerloss_report *rep) {
    char why[256];
    if (powerloss_recover(data, journal, rep, why, sizeof why) != 0) {
        fprintf(stderr, "  recover: %s\n", why);
        return -1;
    }
    return 0;
}

static void synced_prefix_survives(void) {
    CHECK(fresh_dir() == 0, "temp dir");
    CHECK(run_child("prefix") == 0, "child");
    /* before the plug: the page cache has everything (this is what kill -9 leaves) */
    char buf[256];
    CHECK(content("wal", buf, sizeof buf) == 0 && strcmp(buf, "synced;lost;") == 0, "before: '%s'", buf);
    powerloss_report rep;
    CHECK(plug(&rep) == 0, "recover");
    CHECK(content("wal", buf, sizeof buf) == 0, "the synced file is gone");
    CHECK(strcmp(buf, "synced;") == 0, "after the plug the file holds '%s', want 'synced;'", buf);
    CHECK(content("never-synced", buf, sizeof buf) == 0 && buf[0] == 0,
          "a durable name whose data was never synced holds '%s', want it empty", buf);
    CHECK(rep.bytes_dropped == strlen("lost;") + strlen("gone"), "bytes dropped %llu",
          (unsigned long long)rep.bytes_dropped);
    remove_root();
}

static void names_need_a_directory_fsync(void) {
    CHECK(fresh_dir() == 0, "temp dir");
    CHECK(seed("current", "old") == 0 && seed("victim", "v") == 0, "seed");
    CHECK(run_child("names-volatile") == 0, "child");
    char buf[256];
    CHECK(content("current", buf, sizeof buf) == 0 && strcmp(buf, "new") == 0, "before: '%s'", buf);
    CHECK(plug(NULL) == 0, "recover");
    CHECK(content("current", buf, sizeof buf) == 0 && strcmp(buf, "old") == 0,
          "a rename no directory fsync covered survived: 'current' holds '%s'", buf);
    CHECK(content("victim", buf, sizeof buf) == 0 && strcmp(buf, "v") == 0,
          "an unlink no directory fsync covered survived");
    CHECK(content("orphan", buf, sizeof buf) != 0, "a new name no directory fsync covered survived");
    CHECK(content("tmp", buf, sizeof buf) != 0, "'tmp' was never durable but is there");
    remove_root();

    CHECK(fresh_dir() == 0, "temp dir");
    CHECK(seed("current", "old") == 0 && seed("victim", "v") == 0, "seed");
    CHECK(run_child("names-durable") == 0, "child");
    CHECK(plug(NULL) == 0, "recover");
    CHECK(content("current", buf, sizeof buf) == 0 && strcmp(buf, "new") == 0,
          "a rename covered by a directory fsync was lost: 'current' holds '%s'", buf);
    CHECK(content("victim", buf, sizeof buf) != 0, "an unlink covered by a directory fsync was undone");
    remove_root();
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--child") == 0) child(argv[2]);
    RUN(synced_prefix_survives);
    remove_root();
    RUN(names_need_a_directory_fsync);
    remove_root();
    CHECK_EXIT();
}
