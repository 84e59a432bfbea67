#include "core/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

void config_defaults(config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    strcpy(c->data_dir, "./var");
    c->workers = 0;
    c->fsync = FSYNC_BATCH;
    c->log_level = LOG_INFO;
    c->max_group_members = 1024;
    c->conn_output_cap = 1u << 20;
    c->sync_window = 1024;
    c->max_message_bytes = 1u << 20;
    c->handshake_timeout_ms = 10000;
    c->max_connections = 1000000;
}

const char *config_fsync_name(enum fsync_policy p) {
    return p == FSYNC_ALWAYS ? "always" : p == FSYNC_BATCH ? "batch" : "off";
}

void config_usage(FILE *out) {
    fprintf(out,
        "usage: parley serve [options]\n"
        "  --listen HOST:PORT        where to accept connections (default 127.0.0.1:8080)\n"
        "  --data DIR                data directory, created if missing (default ./var)\n"
        "  --workers N               event-loop threads (default: one per core)\n"
        "  --fsync always|batch|off  durability of acknowledged messages (default batch:\n"
        "                            one fsync per group of concurrent writes)\n"
        "  --max-group-members N     (default 1024)\n"
        "  --conn-output-cap BYTES   output queued per connection before live pushes\n"
        "                            stop and the device catches up by sync (default 1048576)\n"
        "  --sync-window N           events in flight to a device before it must ack (default 1024)\n"
        "  --max-message BYTES       largest WebSocket message accepted (default 1048576)\n"
        "  --handshake-timeout MS    time allowed for the HTTP upgrade (default 10000)\n"
        "  --max-connections N       per process (default 1000000)\n"
        "  --allowed-origin ORIGIN   refuse browser upgrades from other origins (default: any)\n"
        "  --log-level LEVEL         debug|info|warn|error (default info)\n"
        "  --config FILE             key = value lines, keys as the flags above without --\n"
        "  --help                    this text\n");
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
    } else if (strcmp(key, "allowed-origin") == 0) {
        if (strlen(v) >= sizeof c->allowed_origin) {
            fprintf(stderr, "parley: allowed-origin: too long\n");
            return -1;
        }
        strcpy(c->allowed_origin, v);
    } else {
        fprintf(stderr, "parley: unknown setting '%s' (see parley serve --help)\n", key);
        return -1;
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
    return 0;
}
