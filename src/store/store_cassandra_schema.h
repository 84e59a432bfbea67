/* store_cassandra_schema.h -- the CQL schema of the Cassandra store backend
 * (issue 12): one keyspace, typed tables that follow the access patterns of
 * store.h. The backend that reads and writes them is store_cassandra*.c
 * (--store cassandra). */
#ifndef PARLEY_STORE_CASSANDRA_SCHEMA_H
#define PARLEY_STORE_CASSANDRA_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "store/cql/cql.h"

/* Bucket rules: a message partition is (conv, seq / STORE_CQL_MESSAGE_BUCKET),
 * an inbox partition (user, user_seq / STORE_CQL_INBOX_BUCKET). Cassandra
 * wants partitions well under 100 MB. A message body is at most 64 KiB, so
 * a full message bucket of 1024 is at most 1024 * 64 KiB = 64 MiB even for
 * a conversation of nothing but maximum-size bodies (4096 would be 256 MiB,
 * 65536 would be 4 GiB); with typical sub-KiB bodies it is about 1 MiB, and
 * a history page of 50 touches one partition, two at a bucket edge. An
 * inbox row is about 50 bytes (4 bigints and overhead), so 65536 of them
 * are about 3 MiB. */
#define STORE_CQL_MESSAGE_BUCKET 1024u
#define STORE_CQL_INBOX_BUCKET 65536u

/* Longest keyspace name Cassandra accepts. */
#define STORE_CQL_KEYSPACE_MAX 48

/* The statements that create the schema, in order, NULL-terminated; "%s"
 * in each is the keyspace. */
extern const char *const store_cql_schema[];

/* Creates the keyspace (SimpleStrategy, replication_factor rf) and every
 * table, IF NOT EXISTS, so it is safe to run again. keyspace: letters,
 * digits and '_', at most STORE_CQL_KEYSPACE_MAX. 0, or -1 with a message
 * in err. */
int store_cql_schema_create(cql_client *c, const char *keyspace, int rf, char *err, size_t errcap);

#endif
