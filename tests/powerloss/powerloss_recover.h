/* powerloss_recover.h -- the test side of powerloss.c (the LD_PRELOAD
 * library that journals what the disk would keep): what to preload, and
 * "pull the plug" = after kill -9, rebuild the data directory as a power loss
 * would have left it. */
#ifndef PARLEY_TESTS_POWERLOSS_RECOVER_H
#define PARLEY_TESTS_POWERLOSS_RECOVER_H

#include <stddef.h>
#include <stdint.h>

/* The LD_PRELOAD value for a child that should run under the library: the
 * gcc ASan runtime first when this build is sanitized (ASan insists on being
 * first in the initial library list), then the library. */
const char *powerloss_preload(void);

/* Sets LD_PRELOAD, POWERLOSS_DIR and POWERLOSS_LOG in this process's
 * environment, for the next child it starts; powerloss_env_clear() removes
 * them again (this process itself is not affected: it is already loaded). */
void powerloss_env_set(const char *data_dir, const char *journal);
void powerloss_env_clear(void);

typedef struct powerloss_report {
    size_t files_kept;          /* durable names rebuilt */
    size_t files_dropped;       /* names in the directory that were not durable */
    uint64_t bytes_dropped;     /* unsynced tails cut off kept files, plus dropped files */
    size_t syncs;               /* file syncs in the journal (fsync/fdatasync returned) */
    size_t dir_syncs;           /* directory syncs that returned */
} powerloss_report;

/* Rebuilds data_dir from the journal written by the library (the process
 * that wrote it must be dead): only durable names, each file cut to its
 * synced size. Then removes the journal and its keep directory. Returns 0,
 * or -1 with a reason in why (data_dir is then left as it was). */
int powerloss_recover(const char *data_dir, const char *journal, powerloss_report *rep, char *why,
                      size_t why_cap);

#endif
