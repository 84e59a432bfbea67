/* cli_runner.c -- see cli_runner.h */
#include "cli_runner.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

int cli_drain_into(int fd, char *buf, size_t *len, size_t cap) {
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) return n < 0 && (errno == EINTR || errno == EAGAIN) ? 1 : 0;
    size_t room = cap - 1 - *len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(buf + *len, tmp, take);
    *len += take;
    buf[*len] = 0;
    return 1;
}

void cli_run_argv(cli_run *r, const char *const *argv, const char *stdin_text, int timeout_ms,
                  const char *label) {
    memset(r, 0, sizeof *r);
    r->status = -1;
    int o[2], e[2], in[2];
    if (pipe(o)) return;
    if (pipe(e)) {
        close(o[0]);
        close(o[1]);
        return;
    }
    if (pipe(in)) {
        close(o[0]), close(o[1]), close(e[0]), close(e[1]);
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(o[0]), close(o[1]), close(e[0]), close(e[1]), close(in[0]), close(in[1]);
        return;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(e[1], 2);
        close(in[1]);
        close(o[0]);
        close(e[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    close(e[1]);
    if (stdin_text) {
        size_t len = strlen(stdin_text);
        if (write(in[1], stdin_text, len) != (ssize_t)len) fprintf(stderr, "  short stdin write\n");
    }
    close(in[1]);
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    int open_o = 1, open_e = 1;
    while ((open_o || open_e) && h_now_ms() < deadline) {
        struct pollfd p[2] = {{.fd = open_o ? o[0] : -1, .events = POLLIN},
                              {.fd = open_e ? e[0] : -1, .events = POLLIN}};
        if (poll(p, 2, 200) <= 0) continue;
        if (p[0].revents && !cli_drain_into(o[0], r->out, &r->out_len, CLI_OUT_CAP)) open_o = 0;
        if (p[1].revents && !cli_drain_into(e[0], r->err, &r->err_len, CLI_OUT_CAP)) open_e = 0;
    }
    close(o[0]);
    close(e[0]);
    int st = 0;
    while (h_now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            if (r->err_len) fprintf(stderr, "  [%s stderr] %s", label, r->err);
            return;
        }
        h_sleep_ms(20);
    }
    fprintf(stderr, "  %s did not finish within %d ms; killed\n", label, timeout_ms);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

uint64_t cli_out_u64(const cli_run *r) {
    char *end;
    if (r->out_len == 0 || r->out[r->out_len - 1] != '\n') return 0;
    unsigned long long v = strtoull(r->out, &end, 10);
    return *end == '\n' && end[1] == 0 ? v : 0;
}
