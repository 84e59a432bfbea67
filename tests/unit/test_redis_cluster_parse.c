/* test_redis_cluster_parse.c -- the pure parts of the Redis Cluster client:
 * CRC16 against the Redis Cluster specification's check value, key slots
 * (hash tags included) against values a real Redis 7.0 gave with CLUSTER
 * KEYSLOT, the CLUSTER SLOTS reply and the redirect errors. */
#include "../check.h"
#include "registry/redis_cluster_parse.h"

#include <string.h>

static uint16_t slot(const char *k) { return rc_key_slot(k, strlen(k)); }

static void crc16_matches_the_spec(void) {
    CHECK(rc_crc16("123456789", 9) == 0x31C3, "crc16 = 0x%04x", rc_crc16("123456789", 9));
    CHECK(rc_crc16("", 0) == 0, "empty");
}

/* expected values: `redis-cli -p PORT cluster keyslot KEY` on redis 7.0.15 */
static void key_slots_match_redis(void) {
    CHECK(slot("123456789") == 12739, "%u", slot("123456789"));
    CHECK(slot("foo") == 12182, "%u", slot("foo"));
    CHECK(slot("bar") == 5061, "%u", slot("bar"));
    CHECK(slot("hello") == 866, "%u", slot("hello"));
    CHECK(slot("somekey") == 11058, "%u", slot("somekey"));
    CHECK(slot("") == 0, "%u", slot(""));
    CHECK(slot("{u:42}s") == 8980, "%u", slot("{u:42}s"));
}

static void hash_tags_follow_the_spec(void) {
    CHECK(slot("{user1000}.following") == 3443, "%u", slot("{user1000}.following"));
    CHECK(slot("{user1000}.followers") == 3443, "same tag, same slot");
    CHECK(slot("foo{}{bar}") == 8363, "empty first tag: whole key (%u)", slot("foo{}{bar}"));
    CHECK(slot("foo{{bar}}zap") == 4015, "tag is '{bar' (%u)", slot("foo{{bar}}zap"));
    CHECK(slot("foo{bar}{zap}") == 5061, "first tag only (%u)", slot("foo{bar}{zap}"));
    CHECK(slot("foo{bar") == rc_crc16("foo{bar", 7) % 16384, "unclosed: whole key");
}

static redisReply *parse(const char *resp) {
    redisReader *r = redisReaderCreate();
    void *reply = NULL;
    redisReaderFeed(r, resp, strlen(resp));
    if (redisReaderGetReply(r, &reply) != REDIS_OK)
        reply = NULL;
    redisReaderFree(r);
    return reply;
}

static void cluster_slots_reply(void) {
    /* two masters, the second with a replica and an empty host */
    redisReply *r = parse("*2\r\n"
                          "*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
                          "*4\r\n:5461\r\n:16383\r\n*3\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.9\r\n:7009\r\n$2\r\nid\r\n");
    CHECK(r, "parsed");
    rc_slot_range out[4];
    int n = rc_parse_slots(r, "10.0.0.1", out, 4);
    CHECK(n == 2, "n=%d", n);
    CHECK(out[0].start == 0 && out[0].end == 5460 && out[0].port == 7001 && strcmp(out[0].host, "127.0.0.1") == 0, "range 0");
    CHECK(out[1].start == 5461 && out[1].end == 16383 && out[1].port == 7002 && strcmp(out[1].host, "10.0.0.1") == 0,
          "range 1 (%s)", out[1].host);
    CHECK(rc_parse_slots(r, "x", out, 1) == -1, "more ranges than room");
    freeReplyObject(r);
    r = parse("*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\na\r\n:1\r\n");
    CHECK(rc_parse_slots(r, "x", out, 4) == -1, "end before start");
    freeReplyObject(r);
    r = parse("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n");
    CHECK(rc_parse_slots(r, "x", out, 4) == -1, "slot out of range");
    freeReplyObject(r);
    r = parse("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:70000\r\n");
    CHECK(rc_parse_slots(r, "x", out, 4) == -1, "port out of range");
    freeReplyObject(r);
    r = parse("$2\r\nno\r\n");
    CHECK(rc_parse_slots(r, "x", out, 4) == -1, "not an array");
    freeReplyObject(r);
}

static void redirect_errors(void) {
    char host[RC_HOST_MAX];
    int s = -1, port = -1;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_MOVED, "moved");
    CHECK(s == 3999 && port == 6381 && strcmp(host, "127.0.0.1") == 0, "moved target");
    m = "ASK 12 ::1:7000";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_ASK, "ask");
    CHECK(s == 12 && port == 7000 && strcmp(host, "::1") == 0, "ask target %s", host);
    m = "TRYAGAIN Multiple keys request during rehashing of slot";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_TRYAGAIN, "tryagain");
    m = "CLUSTERDOWN The cluster is down";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_CLUSTERDOWN, "clusterdown");
    m = "MOVED 16384 127.0.0.1:1";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_OTHER, "slot out of range");
    m = "MOVED 1 127.0.0.1";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_OTHER, "no port");
    m = "ASKING is fine";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_OTHER, "word boundary");
    m = "ERR unknown command";
    CHECK(rc_parse_error(m, strlen(m), &s, host, &port) == RC_ERR_OTHER, "other");
    char longhost[200];
    memset(longhost, 'a', sizeof longhost);
    memcpy(longhost, "MOVED 1 ", 8);
    memcpy(longhost + sizeof longhost - 5, ":123", 4);
    CHECK(rc_parse_error(longhost, sizeof longhost - 1, &s, host, &port) == RC_ERR_OTHER, "host too long");
}

int main(void) {
    RUN(crc16_matches_the_spec);
    RUN(key_slots_match_redis);
    RUN(hash_tags_follow_the_spec);
    RUN(cluster_slots_reply);
    RUN(redirect_errors);
    CHECK_EXIT();
}
