/* config.h -- the server's settings: defaults, then an optional
 * `key = value` file (--config FILE), then command-line flags, which win.
 * Keys in the file are the flag names without the leading dashes. */
#ifndef PARLEY_CORE_CONFIG_H
#define PARLEY_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum fsync_policy { FSYNC_ALWAYS, FSYNC_BATCH, FSYNC_OFF };

typedef struct config {
    char listen_host[256];
    int listen_port;
    char data_dir[1024];
    int workers;                    /* loop threads; 0 = one per core */
    enum fsync_policy fsync;
    int log_level;
    uint32_t max_group_members;
    size_t conn_output_cap;         /* bytes queued to a socket before live pushes stop */
    uint32_t sync_window;           /* events in flight to a device before it must ack */
    size_t max_message_bytes;       /* whole WebSocket message */
    uint32_t handshake_timeout_ms;  /* time to complete the HTTP upgrade */
    uint32_t max_connections;       /* per process */
    char allowed_origin[256];       /* "" = any Origin is accepted */
} config;

void config_defaults(config *c);
/* Applies argv (after the "serve" word). Returns 0, 1 when --help was
 * printed, or -1 after printing a one-line error. */
int config_from_args(config *c, int argc, char **argv);
const char *config_fsync_name(enum fsync_policy p);
void config_usage(FILE *out);

#endif
