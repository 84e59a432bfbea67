/* cli_runner.h -- run a client program (parley-cli) to completion from a
 * test: its exit status and everything it wrote, bounded in size and time.
 * Shared by the tests that drive parley-cli (test_cli, test_e2e_cli). */
#ifndef PARLEY_TEST_CLI_RUNNER_H
#define PARLEY_TEST_CLI_RUNNER_H

#include <stddef.h>
#include <stdint.h>

enum { CLI_OUT_CAP = 1 << 16 };

typedef struct cli_run {
    int status;               /* exit status; -1: killed at the deadline, or could not start */
    char out[CLI_OUT_CAP];    /* stdout, NUL-terminated, cut at CLI_OUT_CAP - 1 bytes */
    size_t out_len;
    char err[CLI_OUT_CAP];    /* stderr, the same */
    size_t err_len;
} cli_run;

/* Appends what fd has to buf (at most cap - 1 bytes in all, NUL-terminated).
 * 0 on EOF or error, 1 if it read (or was interrupted). */
int cli_drain_into(int fd, char *buf, size_t *len, size_t cap);

/* Runs argv (argv[0] a path, NULL-terminated) with stdin_text on its stdin
 * (NULL: empty), collects stdout and stderr, and kills it by its pid if it
 * has not finished within timeout_ms. The child dies with the test
 * (PR_SET_PDEATHSIG). Prints the child's stderr, if any, under label. */
void cli_run_argv(cli_run *r, const char *const *argv, const char *stdin_text, int timeout_ms,
                  const char *label);

/* The number the program printed as its only output line, or 0. */
uint64_t cli_out_u64(const cli_run *r);

#endif
