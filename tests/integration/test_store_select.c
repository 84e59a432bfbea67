/* test_store_select.c -- the store backend chosen by --store: rocksdb (the
 * default) serves; cassandra without --cassandra is refused at start with
 * an error that names the option and exit status 1, and no data directory
 * is made; an unknown name is a bad option (exit status 2). A server on
 * Cassandra is test_cassandra_server's. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { EXIT_WAIT_MS = 60000 };

static h_server S;

/* Runs `parley serve ARGS --data DATA` with its output in log and returns
 * its exit status, -1 if it did not exit by itself within EXIT_WAIT_MS (it
 * is then stopped by its PID). */
static int serve_status(const char *bin, const char *store_name, const char *data, const char *log) {
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", h_free_port());
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, bin, "serve", "--store", store_name, "--data", data, "--listen", listen,
              "--metrics-listen", "off", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    for (uint64_t until = h_now_ms() + EXIT_WAIT_MS; h_now_ms() < until; h_sleep_ms(50))
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    h_pid_stop_checked(pid, log, "a server that should not have started");
    return -1;
}

static int file_has(const char *path, const char *text) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, text) != NULL;
}

static void cassandra_without_hosts_is_refused(void) {
    /* the harness's server: --store rocksdb, explicitly, serves */
    const char *args[] = {"--store", "rocksdb", NULL};
    NEED(h_server_start(&S, args) == 0);
    h_dev *a = h_user_new(&S, NULL);
    NEED(a);
    h_dev_free(a);
    NEED(h_server_stop(&S) >= 0);
    char data[400], log[400];
    snprintf(data, sizeof data, "%s/cassandra-data", S.dir);
    snprintf(log, sizeof log, "%s/cassandra.log", S.dir);
    int rc = serve_status(S.bin, "cassandra", data, log);
    CHECK(rc == 1, "--store cassandra: exit status %d, want 1", rc);
    CHECK(file_has(log, "needs --cassandra HOST:PORT"), "--store cassandra did not name --cassandra (see %s)", log);
    struct stat sb;
    CHECK(stat(data, &sb) != 0, "--store cassandra made a RocksDB data directory");
    rc = serve_status(S.bin, "mysql", data, log);
    CHECK(rc == 2, "--store mysql: exit status %d, want 2", rc);
    CHECK(file_has(log, "expected rocksdb or cassandra"), "--store mysql: no clear error (see %s)", log);
    h_server_destroy(&S);
}

int main(void) {
    RUN(cassandra_without_hosts_is_refused);
    h_server_destroy(&S);
    CHECK_EXIT();
}
