/* test_cluster_config.c -- the node options (src/cluster/cluster_config.c)
 * through the server's own parser (config_from_args): --node names are
 * tokens of 1 to 63 and default to HOSTNAME-PID; --roles parses a comma
 * list without repeats or unknown words, prints back in one spelling, and
 * the server accepts all three roles, or gateway alone with --redis,
 * --internal-listen and --store cassandra (never on RocksDB);
 * --internal-listen needs HOST:PORT with a port of 1 to 65535; the TTLs
 * stay within 3000..600000 ms; --internal-listen off loopback needs
 * --cluster-secret, whose file must hold 32 to 4096 bytes and be readable
 * by its owner only, and gives the link key (the same file, the same key;
 * another file, another key). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "core/config.h"

/* config_from_args on a NULL-terminated list; 0 or -1 */
static int parse(config *c, const char *const *args) {
    config_defaults(c);
    int n = 0;
    while (args[n]) n++;
    char *argv[32];
    for (int i = 0; i < n; i++) argv[i] = (char *)args[i];
    /* errors are printed on stderr: expected here */
    return config_from_args(c, n, argv);
}

static void defaults_are_one_full_node(void) {
    config c;
    CHECK(parse(&c, (const char *[]){NULL}) == 0, "no options refused");
    CHECK(c.cluster.roles == CLUSTER_ROLES_ALL, "roles %u", c.cluster.roles);
    CHECK(c.cluster.internal_port == 0 && c.cluster.redis_seeds[0] == 0, "listener or Redis by default");
    CHECK(c.cluster.node_ttl_ms == 30000 && c.cluster.session_ttl_ms == 45000, "ttls %u %u",
          c.cluster.node_ttl_ms, c.cluster.session_ttl_ms);
    char suffix[32];
    snprintf(suffix, sizeof suffix, "-%ld", (long)getpid());
    size_t n = strlen(c.cluster.node), s = strlen(suffix);
    CHECK(n > s && strcmp(c.cluster.node + n - s, suffix) == 0, "default name '%s' does not end in %s",
          c.cluster.node, suffix);
}

static void node_names_are_tokens(void) {
    config c;
    CHECK(parse(&c, (const char *[]){"--node", "gw-1.eu_west", NULL}) == 0 && strcmp(c.cluster.node, "gw-1.eu_west") == 0,
          "a good name refused");
    CHECK(parse(&c, (const char *[]){"--node", "a b", NULL}) == -1, "a space accepted");
    CHECK(parse(&c, (const char *[]){"--node", "", NULL}) == -1, "an empty name accepted");
    char long_name[80];
    memset(long_name, 'n', 63);
    long_name[63] = 0;
    CHECK(parse(&c, (const char *[]){"--node", long_name, NULL}) == 0, "63 bytes refused");
    long_name[63] = 'n';
    long_name[64] = 0;
    CHECK(parse(&c, (const char *[]){"--node", long_name, NULL}) == -1, "64 bytes accepted");
}

static void roles_parse_and_which_sets_serve(void) {
    unsigned r = 0;
    char text[CLUSTER_ROLES_TEXT];
    CHECK(cluster_roles_parse("fanout,gateway,chat", &r) == 0 && r == CLUSTER_ROLES_ALL, "all three, any order");
    cluster_roles_text(r, text);
    CHECK(strcmp(text, "gateway,chat,fanout") == 0, "spelled '%s'", text);
    CHECK(cluster_roles_parse("gateway", &r) == 0 && r == CLUSTER_ROLE_GATEWAY, "gateway alone");
    CHECK(cluster_roles_parse("chat,fanout", &r) == 0 && r == (CLUSTER_ROLE_CHAT | CLUSTER_ROLE_FANOUT), "chat,fanout");
    const char *bad[] = {"", "gateway,", ",chat", "chat,chat", "gateway,chat,fanout,chat", "push", "Gateway", NULL};
    for (int i = 0; bad[i]; i++) CHECK(cluster_roles_parse(bad[i], &r) == -1, "'%s' accepted", bad[i]);
    config c;
    CHECK(parse(&c, (const char *[]){"--roles", "chat,fanout,gateway", NULL}) == 0, "all three refused");
    CHECK(parse(&c, (const char *[]){"--roles", "gateway", NULL}) == -1, "a gateway-only node accepted");
    CHECK(parse(&c, (const char *[]){"--roles", "chat,fanout", NULL}) == -1, "a node without gateway accepted");
    const char *gw[] = {"--roles", "gateway", "--redis", "127.0.0.1:7000", "--internal-listen", "127.0.0.1:9000",
                        "--store", "cassandra", NULL};
    CHECK(parse(&c, gw) == 0 && c.cluster.roles == CLUSTER_ROLE_GATEWAY, "a gateway node on Cassandra refused");
    gw[6] = NULL;   /* the default store: RocksDB, one process's */
    CHECK(parse(&c, gw) == -1, "a gateway node on RocksDB accepted");
    gw[2] = "--store";
    gw[3] = "cassandra";
    CHECK(parse(&c, gw) == -1, "a gateway node without --redis accepted");
    CHECK(parse(&c, (const char *[]){"--store", "cassandra", "--roles", "chat,fanout,gateway", NULL}) == 0,
          "a full node on Cassandra refused");
}

static void internal_listen_and_ttls_are_bounded(void) {
    config c;
    CHECK(parse(&c, (const char *[]){"--internal-listen", "127.0.0.1:7100", NULL}) == 0 &&
              strcmp(c.cluster.internal_host, "127.0.0.1") == 0 && c.cluster.internal_port == 7100,
          "a good address refused");
    const char *bad[] = {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":7100", "127.0.0.1:71x", NULL};
    for (int i = 0; bad[i]; i++)
        CHECK(parse(&c, (const char *[]){"--internal-listen", bad[i], NULL}) == -1, "'%s' accepted", bad[i]);
    CHECK(parse(&c, (const char *[]){"--node-ttl-ms", "2999", NULL}) == -1, "node ttl 2999 accepted");
    CHECK(parse(&c, (const char *[]){"--session-ttl-ms", "600001", NULL}) == -1, "session ttl 600001 accepted");
    CHECK(parse(&c, (const char *[]){"--session-ttl-ms", "3000", "--node-ttl-ms", "600000", NULL}) == 0 &&
              c.cluster.session_ttl_ms == 3000 && c.cluster.node_ttl_ms == 600000,
          "bounds themselves refused");
    CHECK(parse(&c, (const char *[]){"--redis", "127.0.0.1:7000,127.0.0.1:7001", NULL}) == 0 &&
              strcmp(c.cluster.redis_seeds, "127.0.0.1:7000,127.0.0.1:7001") == 0,
          "seeds refused");
}

/* a secret file of len random-ish bytes at mode; its path in path */
static void write_secret(char *path, size_t cap, const char *tag, size_t len, mode_t mode) {
    snprintf(path, cap, "/tmp/parley-secret-%ld-%s", (long)getpid(), tag);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    uint8_t b[64];
    for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(i * 7 + tag[0]);
    if (fd >= 0) {
        ssize_t w = write(fd, b, len);
        (void)w;
        fchmod(fd, mode);
        close(fd);
    }
}

static void cluster_secret_is_checked_and_needed_off_loopback(void) {
    config c;
    char good[128], good2[128], open_mode[128], shorty[128];
    write_secret(good, sizeof good, "a", 32, 0600);
    write_secret(good2, sizeof good2, "b", 64, 0400);
    write_secret(open_mode, sizeof open_mode, "c", 32, 0644);
    write_secret(shorty, sizeof shorty, "d", 31, 0600);
    CHECK(parse(&c, (const char *[]){"--internal-listen", "10.1.2.3:7100", NULL}) == -1,
          "a non-loopback --internal-listen without --cluster-secret accepted");
    CHECK(parse(&c, (const char *[]){"--internal-listen", "127.0.0.2:7100", NULL}) == 0 && !c.cluster.has_link_key,
          "a loopback --internal-listen without a secret refused");
    CHECK(parse(&c, (const char *[]){"--internal-listen", "10.1.2.3:7100", "--cluster-secret", good, NULL}) == 0 &&
              c.cluster.has_link_key,
          "a 0600 secret of 32 bytes refused");
    uint8_t key1[sizeof c.cluster.link_key];
    memcpy(key1, c.cluster.link_key, sizeof key1);
    CHECK(parse(&c, (const char *[]){"--cluster-secret", good, NULL}) == 0 &&
              memcmp(key1, c.cluster.link_key, sizeof key1) == 0,
          "the same file gave another key");
    CHECK(parse(&c, (const char *[]){"--cluster-secret", good2, NULL}) == 0 &&
              memcmp(key1, c.cluster.link_key, sizeof key1) != 0,
          "another file (0400, 64 bytes) refused or gave the same key");
    CHECK(parse(&c, (const char *[]){"--cluster-secret", open_mode, NULL}) == -1, "a 0644 secret accepted");
    CHECK(parse(&c, (const char *[]){"--cluster-secret", shorty, NULL}) == -1, "a 31-byte secret accepted");
    CHECK(parse(&c, (const char *[]){"--cluster-secret", "/nonexistent/parley-secret", NULL}) == -1,
          "a missing secret file accepted");
    unlink(good);
    unlink(good2);
    unlink(open_mode);
    unlink(shorty);
}

int main(void) {
    RUN(defaults_are_one_full_node);
    RUN(node_names_are_tokens);
    RUN(roles_parse_and_which_sets_serve);
    RUN(internal_listen_and_ttls_are_bounded);
    RUN(cluster_secret_is_checked_and_needed_off_loopback);
    CHECK_EXIT();
}
