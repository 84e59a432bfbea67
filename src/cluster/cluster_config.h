/* cluster_config.h -- the options that make a process one node of many
 * (DESIGN.md §6): its name, its roles, the address other nodes reach it on
 * and the Redis Cluster that holds the node directory. Kept apart so
 * config.c only hands them over. */
#ifndef PARLEY_CLUSTER_CONFIG_H
#define PARLEY_CLUSTER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum cluster_role {
    CLUSTER_ROLE_GATEWAY = 1u << 0,   /* holds device sockets */
    CLUSTER_ROLE_CHAT = 1u << 1,      /* the write path: writers, the store */
    CLUSTER_ROLE_FANOUT = 1u << 2,    /* fan-out and delivery routing */
};
#define CLUSTER_ROLES_ALL (CLUSTER_ROLE_GATEWAY | CLUSTER_ROLE_CHAT | CLUSTER_ROLE_FANOUT)

enum {
    CLUSTER_NODE_MAX = 64,     /* node name with its NUL (registry_redis.h RR_NODE_MAX) */
    CLUSTER_ROLES_TEXT = 24,   /* "gateway,chat,fanout" with its NUL */
};

typedef struct cluster_config {
    char node[CLUSTER_NODE_MAX];   /* --node; "" until cluster_config_finish: hostname-pid */
    unsigned roles;                /* --roles, CLUSTER_ROLE_* bits (default all) */
    char internal_host[64];        /* --internal-listen HOST:PORT; port 0: no listener */
    int internal_port;
    char redis_seeds[512];         /* --redis HOST:PORT[,...]; "": no Redis */
    char kafka_brokers[512];       /* --kafka HOST:PORT[,...]; "": sends go over the link */
    uint32_t node_ttl_ms;          /* --node-ttl-ms: directory entry lifetime (heartbeat at a third) */
    uint32_t session_ttl_ms;       /* --session-ttl-ms: a session entry's lifetime in Redis (the same) */
    char secret_path[256];         /* --cluster-secret FILE; "": none (loopback only) */
    bool has_link_key;             /* set by cluster_config_finish from secret_path */
    uint8_t link_key[32];          /* link_auth.h LINK_AUTH_BYTES: the node link's HMAC key */
} cluster_config;

void cluster_config_defaults(cluster_config *c);
/* key without "--"; 1 when the key is not a cluster option, 0 when
 * applied, -1 after printing an error */
int cluster_config_set(cluster_config *c, const char *key, const char *value);
/* After every option: fills the default node name, reads the
 * --cluster-secret file. 0, or -1 after printing an error (an option needs
 * another, the secret is unreadable, short or readable by others, or
 * --internal-listen is off loopback without a secret). */
int cluster_config_finish(cluster_config *c);
void cluster_config_usage(FILE *out);
/* After config: a node without every role reads the shared store, so
 * only --store cassandra is allowed there. 0, or -1 after printing why. */
int cluster_config_check_store(const cluster_config *c, const char *store);
/* "gateway,chat,fanout" for roles (the node directory's spelling). */
void cluster_roles_text(unsigned roles, char out[CLUSTER_ROLES_TEXT]);
/* Parses that spelling; 0, or -1 (empty, unknown or repeated word). */
int cluster_roles_parse(const char *text, unsigned *roles);

#endif
