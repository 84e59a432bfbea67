/* test_hold.h -- a test hook: a thread waits at a chosen point while a file
 * exists.
 *
 * Tests need some states that a live server passes through too fast to be
 * seen: a read still in flight, fan-out behind the writer. A hold names an
 * environment variable; when the server was started with it set to a path,
 * test_hold_wait() waits while a file exists at that path (at most
 * TEST_HOLD_MAX_MS, so a test that dies holding cannot wedge the server
 * for ever). Without the variable it costs one atomic load.
 *
 *   static test_hold hold = {.env_name = "PARLEY_TEST_HOLD_X", .what = "x reads"};
 *   test_hold_wait(&hold);
 */
#ifndef PARLEY_TEST_HOLD_H
#define PARLEY_TEST_HOLD_H

#include <stdatomic.h>

enum { TEST_HOLD_MAX_MS = 60000 };

typedef struct test_hold {
    const char *env_name;   /* the environment variable naming the file */
    const char *what;       /* what waits, for the warning at the first use */
    _Atomic int state;      /* 0 not looked up yet, 1 off, 2 on (path set) */
    const char *path;
} test_hold;

/* Waits while the hold's file exists; returns at once when the hook is off. */
void test_hold_wait(test_hold *h);

#endif
