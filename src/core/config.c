#include "core/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

void config_defaults(config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    strcpy(c->data_dir, "./var");
    strcpy(c->store, "rocksdb");
    strcpy(c->cassandra_keyspace, "parley");
    c->cassandra_fence = -1;
    c->workers = 0;
    c->writers = 2;
    c->fanouts = 2;
    c->fanout_pending_max = 262144;
    c->fsync = FSYNC_BATCH;
    c->log_level = LOG_INFO;
    c->max_group_members = 1024;
    c->conn_output_cap = 1u << 20;
    c->sync_window = 1024;
    c->max_message_bytes = 1u << 20;
    c->handshake_timeout_ms = 10000;
    c->send_rate = 50;
    c->user_send_rate = 0;           /* 0: twice send_rate (quota_new_for_config) */
    c->write_rate = 20;
    c->user_write_rate = 0;          /* 0: twice write_rate (quota_new_for_config) */
    c->user_writer_share = 64;
    c->link_tokens_per_user = 5;
    c->link_token_ttl_ms = 10 * 60 * 1000;
    c->device_queue_max = 256;
    c->device_queue_bytes = 1u << 20;
    c->device_queue_per_sender = 64;
    c->retention_ms = 30ull * 24 * 3600 * 1000;
    c->retention_sweep_ms = 3600 * 1000;
    c->max_connections = 1000000;
    c->accept_rate = 10000;
    c->accept_burst = 20000;
    c->idle_timeout_ms = 60000;      /* two client ping intervals (30 s) */
    c->conn_output_max = 0;          /* derived in config_from_args */
    c->drain_window_ms = 5000;
    c->min_free_disk = 256ull << 20;
    c->register_rate = 20;
    c->register_rate_loopback = 0;
    c->unauth_max_message = 4096;
    c->signin_timeout_ms = 10000;
    c->max_pending_per_address = 1024;
    c->max_in_flight = 64;
    c->max_in_flight_bytes = 4u << 20;
    c->writer_queue_bytes = 256u << 20;
    c->history_page_bytes = 1000000;   /* a page frame stays under a client's 1 MiB limit */
    c->output_stall_ms = 5000;
    push_config_defaults(&c->push);
    cluster_config_defaults(&c->cluster);
}

const char *config_fsync_name(enum fsync_policy p) {
    return p == FSYNC_ALWAYS ? "always" : p == FSYNC_BATCH ? "batch" : "off";
}

void config_usage(FILE *out) {
    fprintf(out,
        "usage: parley serve [options]\n"
        "  --listen HOST:PORT        where to accept connections (default 127.0.0.1:8080)\n"
        "  --data DIR                data directory (default ./var); a store is created in it\n"
        "                            only if it is absent or empty, never over other files\n"
        "  --workers N               event-loop threads (default: one per core)\n"
        "  --writers N               write-path threads, each the single owner of a share of\n"
        "                            the conversation partitions (default 2; 1-64); one more\n"
        "                            thread owns accounts, devices, keys and consent\n"
        "  --fanouts N               fan-out threads, each the single owner of a share of the\n"
        "                            user partitions (inbox appends; default 2; at most the\n"
        "                            store's user partitions, 8 for a new store)\n"
        "  --fanout-pending-max N    deliveries (receivers x messages) the writers may hand\n"
        "                            fan-out ahead of its routing; a send past it waits\n"
        "                            (default 262144; 0: no bound)\n"        "  --fsync always|batch|off  durability of acknowledged messages (default batch:\n"
        "                            one fsync per group of concurrent writes)\n"
        "  --max-group-members N     (default 1024)\n"
        "  --conn-output-cap BYTES   output queued per connection before live pushes\n"
        "                            stop and the device catches up by sync (default 1048576)\n"
        "  --sync-window N           events in flight to a device before it must ack (default 1024)\n"
        "  --max-message BYTES       largest WebSocket message accepted (default 1048576)\n"
        "  --handshake-timeout MS    time allowed for the HTTP upgrade (default 10000)\n"
        "  --max-connections N       WebSocket connections per process; past it the\n"
        "                            upgrade is answered 503 + Retry-After (default 1000000)\n"
        "  --accept-rate N/s         new connections per second, token bucket; past it\n"
        "                            upgrades get 503 + Retry-After (default 10000/s; 0 = off)\n"
        "  --accept-burst N          connections the bucket holds (default 20000)\n"
        "  --idle-timeout MS         close a WebSocket that sent nothing (not even a ping)\n"
        "                            for this long (default 60000, twice the client's 30 s\n"
        "                            ping interval; 0 = never)\n"
        "  --conn-output-max BYTES   output queued for a connection that keeps sending\n"
        "                            requests without reading: past it the connection is\n"
        "                            closed with 1008 (default 4 x conn-output-cap +\n"
        "                            max-message)\n"
        "  --drain-window MS         on SIGTERM: stop accepting, then close connections\n"
        "                            with 1012 spread over this long, and exit; a second\n"
        "                            SIGTERM or SIGINT exits at once (default 5000)\n"
        "  --tls-cert FILE           PEM certificate (chain): the listener speaks only TLS\n"
        "                            (wss://); needs --tls-key. TLS 1.2+, ECDHE + AEAD only;\n"
        "                            SIGHUP reloads both files for new connections\n"
        "  --tls-key FILE            PEM private key for --tls-cert\n"
        "  --send-rate N             messages per second per device, bursts of 2N (default 50);\n"
        "                            past it a send is answered RATE_LIMITED with retry_after_ms\n"
        "  --user-send-rate N        messages per second per user over all its devices, bursts\n"
        "                            of 2N (default 2 x send-rate)\n"
        "  --write-rate N            other writes (link tokens, keys, groups, direct opens,\n"
        "                            device messages and their acks, read marks, removals)\n"
        "                            per second per device, bursts of 2N (default 20); past it\n"
        "                            RATE_LIMITED with retry_after_ms\n"
        "  --user-write-rate N       the same per user (default 2 x write-rate)\n"
        "  --user-writer-share N     requests of one user waiting for the write path at once;\n"
        "                            past it RATE_LIMITED, so one user cannot fill the queue\n"
        "                            that everyone's writes wait in (default 64)\n"
        "  --link-tokens-per-user N  outstanding link tokens per user; a new one replaces the\n"
        "                            oldest (default 5)\n"
        "  --link-token-ttl DURATION lifetime of a link token; expired ones are deleted\n"
        "                            (default 10m)\n"
        "  --device-queue-max N      device messages waiting for one device (default 256)\n"
        "  --device-queue-bytes B    their total bytes (default 1048576); one sending user\n"
        "                            may fill a quarter of it (at least 64 KiB)\n"
        "  --device-queue-per-sender N  of them from one sending user (default 64); past\n"
        "                            any of the three a send is answered TOO_LARGE\n"
        "  --register-rate N         new users per minute per source address, bursts of N\n"
        "                            (default 20; 0 = off); past it RATE_LIMITED\n"
        "  --register-rate-loopback N  the same for 127.0.0.0/8 (default 0 = off)\n"
        "  --store BACKEND           where records are kept: rocksdb (default, embedded, in\n"
        "                            --data) or cassandra (needs --cassandra; --data unused)\n"
        "  --cassandra HOST:PORT[,HOST:PORT...]\n"
        "                            the Cassandra nodes of --store cassandra (CQL port)\n"
        "  --keyspace NAME           its keyspace, created with its tables if absent\n"
        "                            (replication factor 1; default parley)\n"
        "  --cassandra-fence on|off|auto  conditional heads on seq and user_seq, for several\n"
        "                            writers (default auto: on with --kafka or --redis)\n"
        "  --retention DURATION      keep messages this long, e.g. 30d, 12h, 90s (default 30d)\n"
        "  --retention-sweep MS      how often expired messages are removed (default 3600000)\n"
        "  --allowed-origin ORIGIN   refuse browser upgrades from other origins (default: any)\n"
        "  --web-root DIR            serve the browser client's files from DIR at / (default: the\n"
        "                            build's web/dist when `make web` built it; off = none)\n"
        "  --min-free-disk SIZE      free space (e.g. 512MiB, 2GiB, bytes) on the data directory's\n"
        "                            filesystem under which writes are refused with\n"
        "                            INSUFFICIENT_STORAGE until space returns (default 256MiB; 0 = off)\n"
        "  --recover-truncate-corrupt-wal\n"
        "                            (no value; command line only) start even though the store's\n"
        "                            write-ahead log is damaged before its end: the writes after\n"
        "                            the damage are DROPPED and logged. Without it parley refuses\n"
        "                            to start on such a log\n"
        "  --mqtt-listen HOST:PORT   also accept MQTT 3.1.1 and 5.0 devices there (TLS with\n"
        "                            --tls-cert); see README \"MQTT\" (default: off)\n"
        "  --metrics-listen HOST:PORT|off  serve /metrics (and /healthz) on a separate plain-HTTP\n"
        "                            listener, not on the public port; off: no /metrics at all\n"
        "                            (default: /metrics on the public port)\n"
        "  --unauth-max-message BYTES  largest WebSocket message before sign-in; past it\n"
        "                            the connection is closed with 1009 (default 4096)\n"
        "  --signin-timeout MS       time from the upgrade to a successful sign-in; past it\n"
        "                            the connection is closed with 1008 (default 10000)\n"
        "  --max-pending-per-address N  sockets from one address not yet signed in; past\n"
        "                            it new ones are closed at accept (default 1024; 0 = off)\n"
        "  --max-in-flight N         requests of one connection waiting for the write path;\n"
        "                            past it the connection's input is not read (default 64)\n"
        "  --max-in-flight-bytes BYTES  the same for their decoded bytes (default 4194304)\n"
        "  --writer-queue-bytes BYTES  decoded requests waiting for the write path, all\n"
        "                            connections; past it requests get UNAVAILABLE\n"
        "                            (default 268435456)\n"
        "  --history-page-bytes BYTES  messages in one History page; past it the page ends\n"
        "                            early with has_more (default 1000000)\n"
        "  --output-stall-timeout MS a connection whose input is paused for its output\n"
        "                            and that takes none of it for this long is closed\n"
        "                            with 1008 (default 5000)\n"
        "  --log-level LEVEL         debug|info|warn|error (default info)\n"
        "  --config FILE             key = value lines, keys as the flags above without --\n"
        "  --help                    this text\n");
    push_config_usage(out);
    cluster_config_usage(out);
}

static int parse_u64(const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n < min || n > max) {
        fprintf(stderr, "parley: %s: expected a number from %llu to %llu, got '%s'\n", key,
                (unsigned long long)min, (unsigned long long)max, v);
        return -1;
    }
    *out = n;
    return 0;
}

/* "30d", "12h", "15m", "90s", "500ms" or plain milliseconds */
static int parse_duration_ms(const char *key, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    uint64_t unit = 0;
    if (strcmp(end, "ms") == 0 || *end == 0) unit = 1;
    else if (strcmp(end, "s") == 0) unit = 1000;
    else if (strcmp(end, "m") == 0) unit = 60 * 1000;
    else if (strcmp(end, "h") == 0) unit = 3600 * 1000;
    else if (strcmp(end, "d") == 0) unit = 24ull * 3600 * 1000;
    if (errno || end == v || v[0] == '-' || unit == 0 || n == 0 || n > UINT64_MAX / unit / 2) {
        fprintf(stderr, "parley: %s: expected a duration such as 30d, 12h, 90s or 500ms, got '%s'\n", key, v);
        return -1;
    }
    *out = n * unit;
    return 0;
}

/* "512MiB", "2GiB", "64KiB", "1MB" (decimal units too) or plain bytes */
static int parse_size(const char *key, const char *v, uint64_t *out) {
    static const struct { const char *suffix; uint64_t unit; } units[] = {
        {"", 1}, {"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
        {"TiB", 1ull << 40}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000}, {"TB", 1000000000000ull},
    };
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    uint64_t unit = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0) unit = units[i].unit;
    if (errno || end == v || v[0] == '-' || unit == 0 || n > UINT64_MAX / unit) {
        fprintf(stderr, "parley: %s: expected a size such as 512MiB, 2GiB or bytes, got '%s'\n", key, v);
        return -1;
    }
    *out = n * unit;
    return 0;
}

/* Applies one setting; key without dashes. */
static int config_set(config *c, const char *key, const char *v) {
    uint64_t n;
    if (strcmp(key, "listen") == 0) {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof c->listen_host) {
            fprintf(stderr, "parley: listen: expected HOST:PORT, got '%s'\n", v);
            return -1;
        }
        if (parse_u64(key, colon + 1, 0, 65535, &n)) return -1;
        memcpy(c->listen_host, v, (size_t)(colon - v));
        c->listen_host[colon - v] = 0;
        c->listen_port = (int)n;
    } else if (strcmp(key, "data") == 0) {
        if (strlen(v) >= sizeof c->data_dir || !*v) {
            fprintf(stderr, "parley: data: bad directory '%s'\n", v);
            return -1;
        }
        strcpy(c->data_dir, v);
    } else if (strcmp(key, "store") == 0) {
        /* the names store_kind_parse knows; whether the binary has the
         * backend is for the store to say when it opens */
        if (strcmp(v, "rocksdb") != 0 && strcmp(v, "cassandra") != 0) {
            fprintf(stderr, "parley: store: expected rocksdb or cassandra, got '%s'\n", v);
            return -1;
        }
        strcpy(c->store, v);
    } else if (strcmp(key, "cassandra") == 0) {
        if (!*v || strlen(v) >= sizeof c->cassandra_hosts) {
            fprintf(stderr, "parley: cassandra: expected HOST:PORT[,HOST:PORT...] under %zu bytes\n",
                    sizeof c->cassandra_hosts);
            return -1;
        }
        strcpy(c->cassandra_hosts, v);
    } else if (strcmp(key, "keyspace") == 0) {
        size_t len = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        if (!*v || v[len] || len > 48) {
            fprintf(stderr, "parley: keyspace: letters, digits and _ only, 1 to 48, got '%s'\n", v);
            return -1;
        }
        strcpy(c->cassandra_keyspace, v);
    } else if (strcmp(key, "cassandra-fence") == 0) {
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0 && strcmp(v, "auto") != 0) {
            fprintf(stderr, "parley: cassandra-fence: expected on, off or auto, got '%s'\n", v);
            return -1;
        }
        c->cassandra_fence = strcmp(v, "on") == 0 ? 1 : strcmp(v, "off") == 0 ? 0 : -1;
    } else if (strcmp(key, "writers") == 0) {
        if (parse_u64(key, v, 1, 64, &n)) return -1;
        c->writers = (uint32_t)n;
    } else if (strcmp(key, "fanouts") == 0) {
        if (parse_u64(key, v, 1, 64, &n)) return -1;
        c->fanouts = (uint32_t)n;
    } else if (strcmp(key, "fanout-pending-max") == 0) {
        if (parse_u64(key, v, 0, 1ull << 32, &n)) return -1;
        c->fanout_pending_max = n;
    } else if (strcmp(key, "workers") == 0) {
        if (parse_u64(key, v, 0, 256, &n)) return -1;
        c->workers = (int)n;
    } else if (strcmp(key, "fsync") == 0) {
        if (strcmp(v, "always") == 0) c->fsync = FSYNC_ALWAYS;
        else if (strcmp(v, "batch") == 0) c->fsync = FSYNC_BATCH;
        else if (strcmp(v, "off") == 0) c->fsync = FSYNC_OFF;
        else {
            fprintf(stderr, "parley: fsync: expected always, batch or off, got '%s'\n", v);
            return -1;
        }
    } else if (strcmp(key, "log-level") == 0) {
        int l = log_level_parse(v);
        if (l < 0) {
            fprintf(stderr, "parley: log-level: expected debug, info, warn or error\n");
            return -1;
        }
        c->log_level = l;
    } else if (strcmp(key, "max-group-members") == 0) {
        if (parse_u64(key, v, 2, 65536, &n)) return -1;
        c->max_group_members = (uint32_t)n;
    } else if (strcmp(key, "conn-output-cap") == 0) {
        if (parse_u64(key, v, 4096, 1u << 30, &n)) return -1;
        c->conn_output_cap = n;
    } else if (strcmp(key, "sync-window") == 0) {
        if (parse_u64(key, v, 1, 1u << 20, &n)) return -1;
        c->sync_window = (uint32_t)n;
    } else if (strcmp(key, "max-message") == 0) {
        if (parse_u64(key, v, 1024, 64u << 20, &n)) return -1;
        c->max_message_bytes = n;
    } else if (strcmp(key, "handshake-timeout") == 0) {
        if (parse_u64(key, v, 10, 3600000, &n)) return -1;
        c->handshake_timeout_ms = (uint32_t)n;
    } else if (strcmp(key, "max-connections") == 0) {
        if (parse_u64(key, v, 1, 100000000, &n)) return -1;
        c->max_connections = (uint32_t)n;
    } else if (strcmp(key, "accept-rate") == 0) {
        /* "N/s" or just "N" */
        char num[32];
        size_t len = strlen(v);
        if (len >= 2 && strcmp(v + len - 2, "/s") == 0) len -= 2;
        if (len == 0 || len >= sizeof num) {
            fprintf(stderr, "parley: accept-rate: expected N/s, got '%s'\n", v);
            return -1;
        }
        memcpy(num, v, len);
        num[len] = 0;
        if (parse_u64(key, num, 0, 10000000, &n)) return -1;
        c->accept_rate = (uint32_t)n;
    } else if (strcmp(key, "accept-burst") == 0) {
        if (parse_u64(key, v, 1, 10000000, &n)) return -1;
        c->accept_burst = (uint32_t)n;
    } else if (strcmp(key, "idle-timeout") == 0) {
        n = 0;   /* "0": never */
        if (strcmp(v, "0") != 0 && parse_u64(key, v, 100, 86400000, &n)) return -1;
        c->idle_timeout_ms = (uint32_t)n;
    } else if (strcmp(key, "conn-output-max") == 0) {
        if (parse_u64(key, v, 8192, 4ull << 30, &n)) return -1;
        c->conn_output_max = n;
    } else if (strcmp(key, "drain-window") == 0) {
        if (parse_u64(key, v, 0, 3600000, &n)) return -1;
        c->drain_window_ms = (uint32_t)n;
    } else if (strcmp(key, "tls-cert") == 0 || strcmp(key, "tls-key") == 0) {
        char *dst = key[4] == 'c' ? c->tls_cert : c->tls_key;
        if (strlen(v) >= sizeof c->tls_cert || !*v) {
            fprintf(stderr, "parley: %s: bad file name '%s'\n", key, v);
            return -1;
        }
        strcpy(dst, v);
    } else if (strcmp(key, "send-rate") == 0) {
        if (parse_u64(key, v, 1, 1000000, &n)) return -1;
        c->send_rate = (uint32_t)n;
    } else if (strcmp(key, "user-send-rate") == 0) {
        if (parse_u64(key, v, 1, 1000000, &n)) return -1;
        c->user_send_rate = (uint32_t)n;
    } else if (strcmp(key, "write-rate") == 0) {
        if (parse_u64(key, v, 1, 1000000, &n)) return -1;
        c->write_rate = (uint32_t)n;
    } else if (strcmp(key, "user-write-rate") == 0) {
        if (parse_u64(key, v, 1, 1000000, &n)) return -1;
        c->user_write_rate = (uint32_t)n;
    } else if (strcmp(key, "user-writer-share") == 0) {
        if (parse_u64(key, v, 1, 65536, &n)) return -1;
        c->user_writer_share = (uint32_t)n;
    } else if (strcmp(key, "link-tokens-per-user") == 0) {
        if (parse_u64(key, v, 1, 1000, &n)) return -1;
        c->link_tokens_per_user = (uint32_t)n;
    } else if (strcmp(key, "link-token-ttl") == 0) {
        if (parse_duration_ms(key, v, &c->link_token_ttl_ms)) return -1;
    } else if (strcmp(key, "device-queue-max") == 0) {
        if (parse_u64(key, v, 1, 100000, &n)) return -1;
        c->device_queue_max = (uint32_t)n;
    } else if (strcmp(key, "device-queue-bytes") == 0) {
        /* at least two of the largest envelope (64 KiB) */
        if (parse_u64(key, v, 1u << 17, 1u << 30, &n)) return -1;
        c->device_queue_bytes = n;
    } else if (strcmp(key, "device-queue-per-sender") == 0) {
        if (parse_u64(key, v, 1, 100000, &n)) return -1;
        c->device_queue_per_sender = (uint32_t)n;
    } else if (strcmp(key, "register-rate") == 0) {
        if (parse_u64(key, v, 0, 1000000, &n)) return -1;
        c->register_rate = (uint32_t)n;
    } else if (strcmp(key, "register-rate-loopback") == 0) {
        if (parse_u64(key, v, 0, 1000000, &n)) return -1;
        c->register_rate_loopback = (uint32_t)n;
    } else if (strcmp(key, "retention") == 0) {
        if (parse_duration_ms(key, v, &c->retention_ms)) return -1;
    } else if (strcmp(key, "retention-sweep") == 0) {
        if (parse_u64(key, v, 100, 86400000, &n)) return -1;
        c->retention_sweep_ms = (uint32_t)n;
    } else if (strcmp(key, "min-free-disk") == 0) {
        if (parse_size(key, v, &c->min_free_disk)) return -1;
    } else if (strcmp(key, "mqtt-listen") == 0) {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof c->mqtt_host) {
            fprintf(stderr, "parley: mqtt-listen: expected HOST:PORT, got '%s'\n", v);
            return -1;
        }
        if (parse_u64(key, colon + 1, 1, 65535, &n)) return -1;
        memcpy(c->mqtt_host, v, (size_t)(colon - v));
        c->mqtt_host[colon - v] = 0;
        c->mqtt_port = (int)n;
    } else if (strcmp(key, "metrics-listen") == 0) {
        if (strcmp(v, "off") == 0) {
            c->metrics_mode = METRICS_OFF;
            return 0;
        }
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof c->metrics_host) {
            fprintf(stderr, "parley: metrics-listen: expected HOST:PORT or off, got '%s'\n", v);
            return -1;
        }
        if (parse_u64(key, colon + 1, 0, 65535, &n)) return -1;
        memcpy(c->metrics_host, v, (size_t)(colon - v));
        c->metrics_host[colon - v] = 0;
        c->metrics_port = (int)n;
        c->metrics_mode = METRICS_SEPARATE;
    } else if (strcmp(key, "allowed-origin") == 0) {
        if (strlen(v) >= sizeof c->allowed_origin) {
            fprintf(stderr, "parley: allowed-origin: too long\n");
            return -1;
        }
        strcpy(c->allowed_origin, v);
    } else if (strcmp(key, "web-root") == 0) {
        struct stat st;
        if (strlen(v) >= sizeof c->web_root || (strcmp(v, "off") != 0 && (stat(v, &st) != 0 || !S_ISDIR(st.st_mode)))) {
            fprintf(stderr, "parley: web-root: '%s' is not a directory (or off)\n", v);
            return -1;
        }
        strcpy(c->web_root, v);
    } else if (strcmp(key, "unauth-max-message") == 0) {
        if (parse_u64(key, v, 512, 1u << 20, &n)) return -1;
        c->unauth_max_message = n;
    } else if (strcmp(key, "signin-timeout") == 0) {
        if (parse_u64(key, v, 100, 3600000, &n)) return -1;
        c->signin_timeout_ms = (uint32_t)n;
    } else if (strcmp(key, "max-pending-per-address") == 0) {
        if (parse_u64(key, v, 0, 10000000, &n)) return -1;
        c->max_pending_per_address = (uint32_t)n;
    } else if (strcmp(key, "max-in-flight") == 0) {
        if (parse_u64(key, v, 1, 65536, &n)) return -1;
        c->max_in_flight = (uint32_t)n;
    } else if (strcmp(key, "max-in-flight-bytes") == 0) {
        if (parse_u64(key, v, 65536, 16ull << 30, &n)) return -1;
        c->max_in_flight_bytes = n;
    } else if (strcmp(key, "writer-queue-bytes") == 0) {
        if (parse_u64(key, v, 1u << 20, 64ull << 30, &n)) return -1;
        c->writer_queue_bytes = n;
    } else if (strcmp(key, "output-stall-timeout") == 0) {
        if (parse_u64(key, v, 100, 86400000, &n)) return -1;
        c->output_stall_ms = (uint32_t)n;
    } else if (strcmp(key, "history-page-bytes") == 0) {
        if (parse_u64(key, v, 4096, 64u << 20, &n)) return -1;
        c->history_page_bytes = n;
    } else if (strncmp(key, "push", 4) == 0) {   /* push/push_config.c */
        int rc = push_config_set(&c->push, key, v);
        if (rc > 0) fprintf(stderr, "parley: unknown setting '%s' (see parley serve --help)\n", key);
        if (rc) return -1;
    } else {
        int rc = cluster_config_set(&c->cluster, key, v);   /* cluster/cluster_config.c */
        if (rc > 0) fprintf(stderr, "parley: unknown setting '%s' (see parley serve --help)\n", key);
        if (rc) return -1;
    }
    return 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = 0;
    return s;
}

static int config_from_file(config *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "parley: config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(stderr, "parley: config %s:%d: expected key = value\n", path, lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        rc = config_set(c, trim(s), trim(eq + 1));
    }
    fclose(f);
    return rc;
}

int config_from_args(config *c, int argc, char **argv) {
    /* the config file first, so flags override it wherever they stand */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "parley: --config needs a file\n");
                return -1;
            }
            if (config_from_file(c, argv[i + 1])) return -1;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "parley: unexpected argument '%s' (see parley serve --help)\n", a);
            return -1;
        }
        /* a flag without a value, and only here: dropping data is decided
         * for one start, not kept in a config file */
        if (strcmp(a, "--recover-truncate-corrupt-wal") == 0) {
            c->recover_truncate_corrupt_wal = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "parley: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--config") == 0) continue;
        if (config_set(c, a + 2, v)) return -1;
    }
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n > 0 ? (int)n : 1;
    }
    if (cluster_config_finish(&c->cluster) || cluster_config_check_store(&c->cluster, c->store)) return -1;
    if (!c->tls_cert[0] != !c->tls_key[0]) {
        fprintf(stderr, "parley: --tls-cert and --tls-key go together\n");
        return -1;
    }
    /* a connection may legitimately hold the soft cap of pushes plus one
     * reply of each kind in flight; four times that plus the largest
     * message is well past anything a reading client reaches */
    if (c->conn_output_max == 0) c->conn_output_max = 4 * c->conn_output_cap + c->max_message_bytes;
    if (c->conn_output_max < c->conn_output_cap + c->max_message_bytes) {
        fprintf(stderr, "parley: conn-output-max must be at least conn-output-cap + max-message\n");
        return -1;
    }
    return 0;
}
