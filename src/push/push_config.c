/* push_config.c -- see push_config.h. */
#include "push/push_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void push_config_defaults(push_config *c) {
    memset(c, 0, sizeof *c);
    c->enabled = 1;
    c->coalesce_ms = 10000;
    c->device_per_hour = 60;
    c->rate = 1000;
    c->ttl_s = 3600;
    c->max_attempts = 5;
    c->in_flight = 256;
    strcpy(c->subject, "mailto:postmaster@localhost");
}

void push_config_usage(FILE *out) {
    fprintf(out,
        "  --push on|off             Web Push to devices with no live session (default on)\n"
        "  --push-coalesce-ms MS     at most one notification per device per this window;\n"
        "                            later messages in it are counted, not sent (default 10000)\n"
        "  --push-device-per-hour N  notifications per device per hour (default 60)\n"
        "  --push-rate N             notifications per second, all devices (default 1000)\n"
        "  --push-ttl S              TTL asked of the push service (default 3600)\n"
        "  --push-attempts N         tries for one notification on 429/5xx (default 5)\n"
        "  --push-in-flight N        push requests at once (default 256)\n"
        "  --push-subject URI        VAPID contact (default mailto:postmaster@localhost)\n"
        "  --push-ca FILE            trust only this CA for push services (for tests)\n");
}

static int number(const char *key, const char *v, unsigned long long min, unsigned long long max,
                  unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n < min || n > max) {
        fprintf(stderr, "parley: %s: expected a number from %llu to %llu, got '%s'\n", key, min, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

static int text(const char *key, const char *v, char *out, size_t cap) {
    size_t n = strlen(v);
    if (n == 0 || n >= cap) {
        fprintf(stderr, "parley: %s: expected 1 to %zu bytes\n", key, cap - 1);
        return -1;
    }
    memcpy(out, v, n + 1);
    return 0;
}

int push_config_set(push_config *c, const char *key, const char *v) {
    unsigned long long n = 0;
    if (strcmp(key, "push") == 0) {
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
            fprintf(stderr, "parley: push: expected on or off, got '%s'\n", v);
            return -1;
        }
        c->enabled = strcmp(v, "on") == 0;
    } else if (strcmp(key, "push-coalesce-ms") == 0) {
        if (number(key, v, 0, 24ull * 3600 * 1000, &n)) return -1;
        c->coalesce_ms = n;
    } else if (strcmp(key, "push-device-per-hour") == 0) {
        if (number(key, v, 1, 100000, &n)) return -1;
        c->device_per_hour = (uint32_t)n;
    } else if (strcmp(key, "push-rate") == 0) {
        if (number(key, v, 1, 1000000, &n)) return -1;
        c->rate = (uint32_t)n;
    } else if (strcmp(key, "push-ttl") == 0) {
        if (number(key, v, 0, 28 * 24 * 3600, &n)) return -1;
        c->ttl_s = (uint32_t)n;
    } else if (strcmp(key, "push-attempts") == 0) {
        if (number(key, v, 1, 20, &n)) return -1;
        c->max_attempts = (uint32_t)n;
    } else if (strcmp(key, "push-in-flight") == 0) {
        if (number(key, v, 1, 10000, &n)) return -1;
        c->in_flight = (uint32_t)n;
    } else if (strcmp(key, "push-subject") == 0) {
        if (strncmp(v, "mailto:", 7) != 0 && strncmp(v, "https://", 8) != 0) {
            fprintf(stderr, "parley: push-subject: expected a mailto: or https: URI\n");
            return -1;
        }
        return text(key, v, c->subject, sizeof c->subject);
    } else if (strcmp(key, "push-ca") == 0) {
        return text(key, v, c->ca_file, sizeof c->ca_file);
    } else {
        return 1;
    }
    return 0;
}
