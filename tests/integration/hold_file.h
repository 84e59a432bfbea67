/* hold_file.h -- the test side of the server's hold hooks
 * (src/core/test_hold.h): a file whose existence makes a chosen server
 * thread wait.
 *
 * hold_file_init() makes a private temp dir and sets the hook's
 * environment variable to a path in it, so the server started after it
 * inherits the hook; hold_file_make() and hold_file_release() create and
 * remove the file; hold_file_destroy() releases and removes the dir. */
#ifndef PARLEY_TEST_HOLD_FILE_H
#define PARLEY_TEST_HOLD_FILE_H

typedef struct hold_file {
    char dir[64];
    char path[80];
    int held;
} hold_file;

/* 0, or -1 (the dir or the environment could not be set) */
int hold_file_init(hold_file *h, const char *env_name);
int hold_file_make(hold_file *h);
void hold_file_release(hold_file *h);
void hold_file_destroy(hold_file *h);

#endif
