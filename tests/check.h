/* check.h -- the whole test framework: a test program runs cases, each case
 * prints "PASS name" or "FAIL name: why" and the program exits 1 if any
 * failed. tests/run.sh counts those lines across all programs. */
#ifndef PARLEY_TESTS_CHECK_H
#define PARLEY_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures_total;
static int check_case_failed;

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
    if (check_case_failed) {
        check_failures_total++;
        printf("FAIL %s\n", name);
    } else {
        printf("PASS %s\n", name);
    }
    fflush(stdout);
}

#define RUN(fn) check_run(#fn, fn)
#define CHECK_EXIT() return check_failures_total ? 1 : 0

#endif
