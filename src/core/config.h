/* config.h -- the server's settings: defaults, then an optional
 * `key = value` file (--config FILE), then command-line flags, which win.
 * Keys in the file are the flag names without the leading dashes. */
#ifndef PARLEY_CORE_CONFIG_H
#define PARLEY_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cluster/cluster_config.h"
#include "push/push_config.h"

enum fsync_policy { FSYNC_ALWAYS, FSYNC_BATCH, FSYNC_OFF };

typedef struct config {
    char listen_host[256];
    int listen_port;
    char data_dir[1024];
    char store[16];                 /* the store backend: "rocksdb" (default) or "cassandra" */
    char cassandra_hosts[512];      /* --store cassandra: "HOST:PORT[,HOST:PORT...]" */
    char cassandra_keyspace[64];    /* its keyspace (default "parley") */
    int cassandra_fence;            /* --cassandra-fence: 1 on, 0 off, -1 auto (on with --kafka or --redis) */
    int workers;                    /* loop threads; 0 = one per core */
    uint32_t writers;               /* conversation writer threads (chat/partition.h) */
    uint32_t fanouts;               /* fan-out threads (user partitions' owners) */
    uint64_t fanout_pending_max;    /* deliveries published and not yet routed, at most (0: no bound) */
    enum fsync_policy fsync;
    int log_level;
    uint32_t max_group_members;
    size_t conn_output_cap;         /* bytes queued to a socket before live pushes stop */
    uint32_t sync_window;           /* events in flight to a device before it must ack */
    size_t max_message_bytes;       /* whole WebSocket message */
    uint32_t handshake_timeout_ms;  /* time to complete the HTTP upgrade */
    uint32_t max_connections;       /* WebSocket connections per process */
    uint32_t accept_rate;           /* new connections per second (token bucket); 0 = off */
    uint32_t accept_burst;          /* bucket size */
    uint32_t idle_timeout_ms;       /* close a WebSocket silent this long; 0 = never */
    size_t conn_output_max;         /* queued output that closes a connection (1008) */
    uint32_t drain_window_ms;       /* SIGTERM: closes spread over this long */
    char tls_cert[1024];            /* PEM certificate (chain); "" = plain ws:// */
    char tls_key[1024];             /* PEM private key */
    char allowed_origin[256];       /* "" = any Origin is accepted */
    uint32_t send_rate;             /* messages per second per device (burst: twice that) */
    /* quotas (core/quota.h); a rate's bucket holds twice the rate */
    uint32_t user_send_rate;        /* messages per second per user; 0 = 2 x send_rate */
    uint32_t write_rate;            /* other writes per second per device */
    uint32_t user_write_rate;       /* other writes per second per user; 0 = 2 x write_rate */
    uint32_t user_writer_share;     /* requests of one user in the writer queue at once */
    uint32_t link_tokens_per_user;  /* outstanding; a new one replaces the oldest */
    uint64_t link_token_ttl_ms;
    uint32_t device_queue_max;      /* device messages waiting for one device */
    size_t device_queue_bytes;      /* their bytes; one sending user may fill a quarter */
    uint32_t device_queue_per_sender; /* of them from one sending user */
    uint64_t retention_ms;          /* messages older than this are removed */
    uint32_t retention_sweep_ms;    /* how often the store is swept for them */
    uint64_t min_free_disk;         /* bytes free under which writes are refused; 0 = no check */
    int recover_truncate_corrupt_wal; /* open past a corrupt WAL, dropping what follows the damage */
    int metrics_mode;               /* METRICS_PUBLIC, METRICS_SEPARATE or METRICS_OFF */
    char metrics_host[256];         /* METRICS_SEPARATE: --metrics-listen */
    int metrics_port;
    uint32_t register_rate;         /* RegisterUser per minute per source address; 0 = off */
    uint32_t register_rate_loopback;/* the same for 127.0.0.0/8 (tests, benchmarks); 0 = off */
    /* memory and request limits (abuse) */
    size_t unauth_max_message;      /* whole WebSocket message before sign-in */
    uint32_t signin_timeout_ms;     /* upgrade -> signed in, or closed (1008) */
    uint32_t max_pending_per_address; /* sockets of one address not yet signed in; 0 = off */
    uint32_t max_in_flight;         /* requests of one connection waiting for the writer */
    size_t max_in_flight_bytes;     /* and their decoded bytes */
    size_t writer_queue_bytes;      /* decoded requests waiting for the writer, all connections */
    size_t history_page_bytes;      /* messages in one History page, encoded */
    uint32_t output_stall_ms;       /* input paused and no output taken this long: 1008 */
    char web_root[1024];            /* browser client files; "" = the build's web/dist if built, "off" = none */
    push_config push;               /* --push-*: Web Push to offline devices */
    char mqtt_host[256];            /* --mqtt-listen; "" = no MQTT listener */
    int mqtt_port;
    cluster_config cluster;         /* --node, --roles, --internal-listen, --redis */
} config;

enum { METRICS_PUBLIC = 0, METRICS_SEPARATE = 1, METRICS_OFF = 2 };

void config_defaults(config *c);
/* Applies argv (after the "serve" word). Returns 0, 1 when --help was
 * printed, or -1 after printing a one-line error. */
int config_from_args(config *c, int argc, char **argv);
const char *config_fsync_name(enum fsync_policy p);
void config_usage(FILE *out);

#endif
