/* cluster_config.c -- see cluster_config.h. */
#include "cluster/cluster_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/link_auth.h"

static const struct {
    const char *name;
    unsigned bit;
} ROLE_NAMES[] = {
    {"gateway", CLUSTER_ROLE_GATEWAY},
    {"chat", CLUSTER_ROLE_CHAT},
    {"fanout", CLUSTER_ROLE_FANOUT},
};
enum { N_ROLES = sizeof ROLE_NAMES / sizeof ROLE_NAMES[0] };

void cluster_config_defaults(cluster_config *c) {
    memset(c, 0, sizeof *c);
    c->roles = CLUSTER_ROLES_ALL;
    c->node_ttl_ms = 30000;
    c->session_ttl_ms = 45000;
}

void cluster_config_usage(FILE *out) {
    fprintf(out,
        "  --node NAME               this node's name in the node directory and the session\n"
        "                            registry: letters, digits, . _ - (1 to 63; default\n"
        "                            HOSTNAME-PID)\n"
        "  --roles LIST              what this node runs, a comma list of gateway, chat,\n"
        "                            fanout: all three (the default) or gateway alone. A\n"
        "                            gateway node holds device sockets only: it needs --redis,\n"
        "                            --internal-listen and --store cassandra (the chat node's\n"
        "                            keyspace, read directly), runs no writers, fan-out or\n"
        "                            retention sweep, and forwards every write to a chat node\n"
        "                            from the node directory (UNAVAILABLE, retry, while it\n"
        "                            has none).\n"
        "                            With --store rocksdb only all three are allowed\n"
        "  --internal-listen HOST:PORT\n"
        "                            where other nodes reach this one (the node link; default:\n"
        "                            none). Published in the node directory with --redis.\n"
        "                            Off loopback (127.0.0.0/8) it needs --cluster-secret\n"
        "  --cluster-secret FILE     the node link's shared secret: 32 to 4096 random bytes,\n"
        "                            mode 0600 or 0400, the same file on every node (e.g.\n"
        "                            head -c 32 /dev/urandom > FILE; chmod 600 FILE). Nodes\n"
        "                            prove they hold it to each other (HMAC-SHA256 challenge-\n"
        "                            response) before any frame is taken (default: none,\n"
        "                            allowed only with a loopback --internal-listen)\n"
        "  --redis HOST:PORT[,...]   Redis Cluster seeds (IP literals): the node registers\n"
        "                            itself in the node directory with its internal address\n"
        "                            and roles, refreshed by a heartbeat (default: no Redis)\n"
        "  --kafka HOST:PORT[,...]   Kafka brokers: every node's sessions hand each\n"
        "                            conversation's request (sends, read marks, membership,\n"
        "                            opening one) to the 'sends' topic by its partition\n"
        "                            (made with the store's conversation partition count;\n"
        "                            a different existing count refuses to start); the chat\n"
        "                            nodes share its partitions in the consumer group\n"
        "                            'parley-chat' and store each in order, once. Needs\n"
        "                            --redis and --internal-listen (answers go back over the\n"
        "                            node link). While the store fails a send is answered\n"
        "                            ACCEPTED (durable in Kafka) and SENT once stored\n"
        "                            (default: no Kafka)\n"
        "  --node-ttl-ms MS          lifetime of this node's directory entry; refreshed every\n"
        "                            third of it (default 30000)\n"
        "  --session-ttl-ms MS       with --redis, each device session (user, device) -> (node,\n"
        "                            connection, since) is written to the Redis session\n"
        "                            registry at StartSync and deleted at close; this is its\n"
        "                            lifetime, refreshed every third of it (default 45000)\n");
}

static int name_ok(const char *v) {
    size_t n = strnlen(v, CLUSTER_NODE_MAX);
    if (n == 0 || n >= CLUSTER_NODE_MAX) return 0;
    return strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

int cluster_roles_parse(const char *text, unsigned *roles) {
    unsigned got = 0;
    const char *p = text;
    for (int words = 0; words <= N_ROLES; words++) {   /* one word more than roles: a repeat */
        size_t len = strcspn(p, ",");
        unsigned bit = 0;
        for (int i = 0; i < N_ROLES; i++)
            if (strlen(ROLE_NAMES[i].name) == len && strncmp(p, ROLE_NAMES[i].name, len) == 0)
                bit = ROLE_NAMES[i].bit;
        if (!bit || (got & bit)) return -1;
        got |= bit;
        if (p[len] == 0) {
            *roles = got;
            return 0;
        }
        p += len + 1;
    }
    return -1;
}

void cluster_roles_text(unsigned roles, char out[CLUSTER_ROLES_TEXT]) {
    out[0] = 0;
    for (int i = 0; i < N_ROLES; i++) {
        if (!(roles & ROLE_NAMES[i].bit)) continue;
        if (out[0]) strcat(out, ",");
        strcat(out, ROLE_NAMES[i].name);   /* all three and two commas fit CLUSTER_ROLES_TEXT */
    }
}

int cluster_config_set(cluster_config *c, const char *key, const char *v) {
    if (strcmp(key, "node") == 0) {
        if (!name_ok(v)) {
            fprintf(stderr, "parley: node: letters, digits, '.', '_' and '-' only, 1 to %d, got '%s'\n",
                    CLUSTER_NODE_MAX - 1, v);
            return -1;
        }
        strcpy(c->node, v);
    } else if (strcmp(key, "roles") == 0) {
        if (cluster_roles_parse(v, &c->roles)) {
            fprintf(stderr, "parley: roles: expected a comma list of gateway, chat, fanout, got '%s'\n", v);
            return -1;
        }
    } else if (strcmp(key, "internal-listen") == 0) {
        const char *colon = strrchr(v, ':');
        char *end;
        errno = 0;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == v || (size_t)(colon - v) >= sizeof c->internal_host || errno ||
            end == colon + 1 || *end || port < 1 || port > 65535) {
            fprintf(stderr, "parley: internal-listen: expected HOST:PORT (port 1 to 65535), got '%s'\n", v);
            return -1;
        }
        memcpy(c->internal_host, v, (size_t)(colon - v));
        c->internal_host[colon - v] = 0;
        c->internal_port = (int)port;
    } else if (strcmp(key, "cluster-secret") == 0) {
        if (!*v || strlen(v) >= sizeof c->secret_path) {
            fprintf(stderr, "parley: cluster-secret: expected a file path under %zu bytes\n", sizeof c->secret_path);
            return -1;
        }
        strcpy(c->secret_path, v);
    } else if (strcmp(key, "redis") == 0) {
        if (!*v || strlen(v) >= sizeof c->redis_seeds || strchr(v, ' ')) {
            fprintf(stderr, "parley: redis: expected HOST:PORT[,HOST:PORT...] under %zu bytes\n",
                    sizeof c->redis_seeds);
            return -1;
        }
        strcpy(c->redis_seeds, v);
    } else if (strcmp(key, "kafka") == 0) {
        if (!*v || strlen(v) >= sizeof c->kafka_brokers || strchr(v, ' ')) {
            fprintf(stderr, "parley: kafka: expected HOST:PORT[,HOST:PORT...] under %zu bytes\n",
                    sizeof c->kafka_brokers);
            return -1;
        }
        strcpy(c->kafka_brokers, v);
    } else if (strcmp(key, "node-ttl-ms") == 0 || strcmp(key, "session-ttl-ms") == 0) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-' || n < 3000 || n > 600000) {
            fprintf(stderr, "parley: %s: expected a number from 3000 to 600000, got '%s'\n", key, v);
            return -1;
        }
        if (key[0] == 'n') c->node_ttl_ms = (uint32_t)n;
        else c->session_ttl_ms = (uint32_t)n;
    } else {
        return 1;
    }
    return 0;
}

int cluster_config_finish(cluster_config *c) {
    if (c->roles != CLUSTER_ROLES_ALL && c->roles != CLUSTER_ROLE_GATEWAY) {
        /* chat without fan-out (or the reverse) would split the write
         * path's commit from its delivery: not built */
        fprintf(stderr, "parley: roles: gateway,chat,fanout (the default) or gateway alone\n");
        return -1;
    }
    if (c->roles == CLUSTER_ROLE_GATEWAY && (!c->redis_seeds[0] || !c->internal_port)) {
        /* it finds a chat node in the directory and hears back on its link */
        fprintf(stderr, "parley: roles: a gateway node needs --redis and --internal-listen\n");
        return -1;
    }
    if (c->kafka_brokers[0] && (!c->redis_seeds[0] || !c->internal_port)) {
        /* an answer goes back to the sender's node over the link */
        fprintf(stderr, "parley: kafka: needs --redis and --internal-listen\n");
        return -1;
    }
    if (c->secret_path[0]) {
        char err[384];
        if (link_auth_load(c->secret_path, c->link_key, err, sizeof err)) {
            fprintf(stderr, "parley: %s\n", err);
            return -1;
        }
        c->has_link_key = true;
    } else if (c->internal_port) {
        /* without a secret anyone who reaches the listener could speak for
         * any user: only this machine may */
        struct in_addr a;
        if (inet_pton(AF_INET, c->internal_host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
            fprintf(stderr, "parley: internal-listen %s is not loopback: it needs --cluster-secret FILE\n",
                    c->internal_host);
            return -1;
        }
    }
    if (!c->node[0]) {
        char host[CLUSTER_NODE_MAX];
        if (gethostname(host, sizeof host) != 0) strcpy(host, "parley");
        host[sizeof host - 1] = 0;
        /* the directory's names are tokens: keep what name_ok allows */
        size_t n = 0;
        for (size_t i = 0; host[i] && n < 40; i++)
            if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", host[i]))
                host[n++] = host[i];
        host[n] = 0;
        snprintf(c->node, sizeof c->node, "%.40s-%ld", n ? host : "parley", (long)getpid());
    }
    return 0;
}

int cluster_config_check_store(const cluster_config *c, const char *store) {
    if (c->roles == CLUSTER_ROLES_ALL || strcmp(store, "cassandra") == 0) return 0;
    /* a gateway node reads the chat node's store: RocksDB is one process's */
    fprintf(stderr, "parley: roles: a node without every role needs --store cassandra (the chat node's keyspace)\n");
    return -1;
}
