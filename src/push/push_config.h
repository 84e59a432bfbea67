/* push_config.h -- the options of the push gateway (--push-*), kept apart
 * so config.c only hands them over. */
#ifndef PARLEY_PUSH_CONFIG_H
#define PARLEY_PUSH_CONFIG_H

#include <stdint.h>
#include <stdio.h>

typedef struct push_config {
    int enabled;                    /* --push on|off */
    uint64_t coalesce_ms;           /* at most one notification per device per this */
    uint32_t device_per_hour;       /* and at most this many per device per hour */
    uint32_t rate;                  /* notifications per second, all devices (token bucket) */
    uint32_t ttl_s;                 /* TTL header: how long the push service keeps one */
    uint32_t max_attempts;          /* 429/5xx/transport errors: tries in all */
    uint32_t in_flight;             /* HTTP requests at once */
    char ca_file[1024];             /* trust only this CA for push services (tests) */
    char subject[256];              /* VAPID "sub": a contact for the push service */
} push_config;

void push_config_defaults(push_config *c);
/* key without "--"; 1 when the key is not a push option, 0 when applied,
 * -1 after printing an error */
int push_config_set(push_config *c, const char *key, const char *value);
void push_config_usage(FILE *out);

#endif
