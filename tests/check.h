/* check.h -- the whole test framework: a test program runs cases, each case
 * prints "PASS name" or "FAIL name: why" and the program exits 1 if any
 * failed. CHECK_EXIT prints a closing "CASES n passed m failed" line, so
 * tests/run.sh can tell a program that ran every case from one that ran
 * none or stopped half way; check_note prints "NOTE ..." lines (a bound
 * that was not checked in this build, say), which run.sh always shows.
 * tests/run.sh counts those lines across all programs. */
#ifndef PARLEY_TESTS_CHECK_H
#define PARLEY_TESTS_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures_total;
static int check_passes_total;
static int check_case_failed;

/* A support file linked into the program (tests/integration/harness.c) may
 * define this: after each case it returns how many failures it saw on its
 * own during the case (a server that did not exit 0 when the case stopped
 * it) and forgets them. Weak, so programs without the harness link. */
int check_case_extra_failures(void) __attribute__((weak));

/* CHECK(cond, fmt, ...): on failure, report and fail the current case
 * (and return from the case function, which must return void). */
#define CHECK(cond, ...) do { \
    if (!(cond)) { \
        fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr); \
        check_case_failed = 1; \
        return; \
    } \
} while (0)

static inline void check_run(const char *name, void (*fn)(void)) {
    check_case_failed = 0;
    fn();
    if (check_case_extra_failures && check_case_extra_failures() > 0) check_case_failed = 1;
    if (check_case_failed) {
        check_failures_total++;
        printf("FAIL %s\n", name);
    } else {
        check_passes_total++;
        printf("PASS %s\n", name);
    }
    fflush(stdout);
}

/* An informational line for the log of the whole run: "NOTE <text>". */
__attribute__((format(printf, 1, 2), unused))
static void check_note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("NOTE ", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* The closing line; a program that ran no case fails. */
static inline int check_exit(void) {
    printf("CASES %d passed %d failed\n", check_passes_total, check_failures_total);
    fflush(stdout);
    if (check_passes_total + check_failures_total == 0) {
        fprintf(stderr, "  no case ran\n");
        return 1;
    }
    return check_failures_total ? 1 : 0;
}

#define RUN(fn) check_run(#fn, fn)
#define CHECK_EXIT() return check_exit()

#endif
