/* hold_file.c -- see hold_file.h. */
#include "hold_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int hold_file_init(hold_file *h, const char *env_name) {
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "/tmp/parley-hold-XXXXXX");
    if (!mkdtemp(h->dir)) {
        h->dir[0] = 0;
        return -1;
    }
    snprintf(h->path, sizeof h->path, "%s/hold", h->dir);
    return setenv(env_name, h->path, 1);
}

int hold_file_make(hold_file *h) {
    FILE *f = fopen(h->path, "w");
    if (!f) return -1;
    fclose(f);
    h->held = 1;
    return 0;
}

void hold_file_release(hold_file *h) {
    if (h->held) unlink(h->path);
    h->held = 0;
}

void hold_file_destroy(hold_file *h) {
    hold_file_release(h);
    if (h->dir[0]) rmdir(h->dir);
    h->dir[0] = 0;
}
