/* store_cassandra.h -- the scale-out backend: a store in an Apache
 * Cassandra keyspace over the CQL client (src/store/cql/), with the tables
 * of store_cassandra_schema.h. */
#ifndef PARLEY_STORE_CASSANDRA_H
#define PARLEY_STORE_CASSANDRA_H

#include "store/store_backend.h"

/* Connects to o->cassandra_hosts, creates the keyspace o->cassandra_keyspace
 * (default "parley") and its tables if absent (replication factor 1), and
 * opens the store there. NULL with *err (free() it) when no host answers
 * or the schema cannot be made. */
store *store_cassandra_open(const store_options *o, char **err);

#endif
