/* store_cassandra_schema.c -- the Cassandra store's tables (see the header
 * for the bucket rules).
 *
 * Consistency, per statement of the backend: the table at the top of
 * store_cassandra.c. Lightweight transactions (the only compare-and-set)
 * claim a user name (its user_names row), a link token and a one-time key
 * (a row of claims): store_cassandra_claim.c.
 *
 * Every write is an INSERT or DELETE of a fixed primary key, so replaying
 * a batch after an unknown outcome leaves the same rows (idempotent).
 * Messages, inboxes and dedupe rows are written with a TTL of the
 * retention; the message and inbox tables use time-window compaction so
 * whole expired SSTables are dropped instead of compacted. */
#include "store/store_cassandra_schema.h"

#include <stdio.h>
#include <string.h>

const char *const store_cql_schema[] = {
    /* id counters ("user", "conversation"): plain bigints written by the one
     * owner that allocates, not CQL counters (which are not idempotent) */
    "CREATE TABLE IF NOT EXISTS %s.counters (name text PRIMARY KEY, value bigint)",
    "CREATE TABLE IF NOT EXISTS %s.users (user_id bigint PRIMARY KEY, record blob)",
    /* unique names: one row per name (the LWT-able claim) */
    "CREATE TABLE IF NOT EXISTS %s.user_names (name text PRIMARY KEY, user_id bigint)",
    /* devices of a user in id order: one partition per user */
    "CREATE TABLE IF NOT EXISTS %s.devices (user_id bigint, device_id int, record blob, "
    "PRIMARY KEY (user_id, device_id))",
    /* link tokens: looked up by token; the prefix scan of store.h walks
     * token(link_token) order, so a backend pages over the whole table (tokens
     * are few and short-lived) */
    "CREATE TABLE IF NOT EXISTS %s.link_tokens (link_token text PRIMARY KEY, record blob)",
    "CREATE TABLE IF NOT EXISTS %s.conversations (conv bigint PRIMARY KEY, record blob, last_seq bigint)",
    /* the direct conversation of a pair, stored under (min, max) */
    "CREATE TABLE IF NOT EXISTS %s.directs (user_lo bigint, user_hi bigint, conv bigint, "
    "PRIMARY KEY ((user_lo, user_hi)))",
    /* members in user order; read/delivered marks are columns of the member
     * row, so an ack rewrites 16 bytes and never the record */
    "CREATE TABLE IF NOT EXISTS %s.members (conv bigint, user_id bigint, record blob, "
    "read_seq bigint, delivered_seq bigint, PRIMARY KEY (conv, user_id))",
    "CREATE TABLE IF NOT EXISTS %s.user_conversations (user_id bigint, conv bigint, "
    "PRIMARY KEY (user_id, conv))",
    /* history pages: newest first within a (conv, bucket) partition */
    "CREATE TABLE IF NOT EXISTS %s.messages (conv bigint, bucket bigint, seq bigint, body blob, "
    "PRIMARY KEY ((conv, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC) "
    "AND compaction = {'class': 'TimeWindowCompactionStrategy', "
    "'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}",
    /* write-path dedupe, with the retention as TTL */
    "CREATE TABLE IF NOT EXISTS %s.client_msgs (user_id bigint, device_id int, client_msg_id blob, "
    "conv bigint, seq bigint, ts bigint, PRIMARY KEY ((user_id, device_id, client_msg_id)))",
    /* fan-out log by partition and offset, and its checkpoints */
    "CREATE TABLE IF NOT EXISTS %s.fanout_log (part int, log_offset bigint, conv bigint, seq bigint, "
    "PRIMARY KEY (part, log_offset))",
    "CREATE TABLE IF NOT EXISTS %s.checkpoints (part int PRIMARY KEY, log_offset bigint)",
    /* inboxes in user_seq order within a (user, bucket) partition */
    "CREATE TABLE IF NOT EXISTS %s.inboxes (user_id bigint, bucket bigint, user_seq bigint, "
    "conv bigint, seq bigint, sender bigint, ts bigint, PRIMARY KEY ((user_id, bucket), user_seq)) "
    "WITH compaction = {'class': 'TimeWindowCompactionStrategy', "
    "'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}",
    "CREATE TABLE IF NOT EXISTS %s.inbox_heads (user_id bigint PRIMARY KEY, user_seq bigint)",
    "CREATE TABLE IF NOT EXISTS %s.cursors (user_id bigint, device_id int, user_seq bigint, "
    "PRIMARY KEY (user_id, device_id))",
    /* key directory: the device's keys, and its one-time keys lowest id first */
    "CREATE TABLE IF NOT EXISTS %s.device_keys (user_id bigint, device_id int, record blob, "
    "PRIMARY KEY ((user_id, device_id)))",
    "CREATE TABLE IF NOT EXISTS %s.one_time_keys (user_id bigint, device_id int, key_id int, "
    "public_key blob, PRIMARY KEY ((user_id, device_id), key_id))",
    "CREATE TABLE IF NOT EXISTS %s.device_messages (user_id bigint, device_id int, queue_seq bigint, "
    "body blob, PRIMARY KEY ((user_id, device_id), queue_seq))",
    "CREATE TABLE IF NOT EXISTS %s.consent (owner bigint, other bigint, record blob, "
    "PRIMARY KEY (owner, other))",
    /* claims of link tokens and one-time keys (store_cassandra_claim.c):
     * written only by lightweight transactions, never exported */
    "CREATE TABLE IF NOT EXISTS %s.claims (claim blob PRIMARY KEY, claimer bigint)",
    /* a device's Web Push subscription (src/push/) */
    "CREATE TABLE IF NOT EXISTS %s.push_subscriptions (user_id bigint, device_id int, record blob, "
    "PRIMARY KEY ((user_id, device_id)))",
    /* the group a 'sends' record created (--kafka CreateGroup re-runs,
     * store.h): a ring of slots per partition, each row with a TTL of
     * STORE_GROUP_ORIGIN_TTL_S; added after the first release, created on an
     * existing keyspace by the next open (IF NOT EXISTS) */
    "CREATE TABLE IF NOT EXISTS %s.group_origins (part int, slot int, log_offset bigint, user_id bigint, "
    "device_id bigint, request_id bigint, conv bigint, PRIMARY KEY ((part, slot)))",
    NULL,
};

static int keyspace_valid(const char *ks) {
    size_t n = strnlen(ks, STORE_CQL_KEYSPACE_MAX + 1);
    if (n == 0 || n > STORE_CQL_KEYSPACE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = ks[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return 0;
    }
    return 1;
}

/* one DDL statement; schema changes go to every replica, so ALL is not
 * needed: Cassandra propagates schema itself, LOCAL_QUORUM is asked for
 * the statement's own acknowledgement */
static int run(cql_client *c, const char *q, char *err, size_t errcap) {
    cql_result *r = cql_query_sync(c, q, CQL_LOCAL_QUORUM);
    if (!r) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    cql_status st = cql_result_status(r);
    if (st != CQL_OK)
        snprintf(err, errcap, "%.80s...: %s %s", q, cql_status_name(st), cql_result_message(r));
    cql_result_free(r);
    return st == CQL_OK ? 0 : -1;
}

int store_cql_schema_create(cql_client *c, const char *keyspace, int rf, char *err, size_t errcap) {
    if (!keyspace_valid(keyspace)) {
        snprintf(err, errcap, "keyspace: letters, digits and _ only, 1 to %d", STORE_CQL_KEYSPACE_MAX);
        return -1;
    }
    if (rf < 1 || rf > 9) {
        snprintf(err, errcap, "replication factor %d: expected 1 to 9", rf);
        return -1;
    }
    char q[1024];
    snprintf(q, sizeof q,
             "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = "
             "{'class': 'SimpleStrategy', 'replication_factor': %d}",
             keyspace, rf);
    if (run(c, q, err, errcap) != 0)
        return -1;
    for (size_t i = 0; store_cql_schema[i]; i++) {
        int n = snprintf(q, sizeof q, store_cql_schema[i], keyspace);
        if (n < 0 || (size_t)n >= sizeof q) {
            snprintf(err, errcap, "schema statement %zu too long", i);
            return -1;
        }
        if (run(c, q, err, errcap) != 0)
            return -1;
    }
    return 0;
}
