/* redis_coverage.c -- see redis_coverage.h. */
#include "cluster/redis_coverage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum { MAX_RANGES = 1024, KEY_TRIES = 1000000 };

/* one master's question, until its answer */
typedef struct coverage_ask {
    char addr[RC_HOST_MAX + 8];
} coverage_ask;

static void answered(void *ud, redisReply *r, const char *error) {
    coverage_ask *a = ud;
    /* CONFIG GET answers [name, value]; an error (CONFIG renamed or
     * refused) or no answer says nothing about the setting */
    if (!error && r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        if (strcmp(r->element[1]->str, "yes") == 0)
            log_warn("Redis Cluster master %s: cluster-require-full-coverage yes: while any one master is down or "
                     "stopped, every master refuses every key (CLUSTERDOWN) and every user's sessions fail; set it "
                     "to no",
                     a->addr);
        else
            log_info("Redis Cluster master %s: cluster-require-full-coverage %s", a->addr, r->element[1]->str);
    }
    if (r)
        freeReplyObject(r);
    free(a);
}

/* a key of a slot in [start, end]: the command goes to that range's master */
static int key_in(int start, int end, char *key, size_t cap) {
    for (int i = 0; i < KEY_TRIES; i++) {
        int len = snprintf(key, cap, "{coverage:%d}", i);
        int slot = rc_key_slot(key, (size_t)len);
        if (slot >= start && slot <= end)
            return len;
    }
    return -1;
}

void redis_coverage_check(rc_client *rc) {
    rc_slot_range *map = calloc(MAX_RANGES, sizeof *map);
    if (!map)
        return;
    int n = rc_slot_map(rc, map, MAX_RANGES);
    if (n > MAX_RANGES)
        n = MAX_RANGES;
    for (int i = 0; i < n; i++) {
        int seen = 0; /* one question per master, whatever its number of ranges */
        for (int j = 0; j < i && !seen; j++)
            seen = map[j].port == map[i].port && strcmp(map[j].host, map[i].host) == 0;
        char key[48];
        int len = seen ? -1 : key_in(map[i].start, map[i].end, key, sizeof key);
        coverage_ask *a = len > 0 ? malloc(sizeof *a) : NULL;
        if (!a)
            continue;
        snprintf(a->addr, sizeof a->addr, "%s:%d", map[i].host, map[i].port);
        const char *argv[] = {"CONFIG", "GET", "cluster-require-full-coverage"};
        if (rc_command(rc, key, (size_t)len, 3, argv, NULL, answered, a) != 0)
            free(a);
    }
    free(map);
}
