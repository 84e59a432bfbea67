/* cql_proxy.h -- a CQL native-protocol proxy for tests, on 127.0.0.1,
 * between a server under test and a real Cassandra, that injects store
 * failures at a chosen request without touching the code under test:
 *
 *   fail batches   every LOGGED BATCH whose body carries a needle (a
 *                  name, an id's bytes) is answered with the CQL error
 *                  Invalid (0x2200) and never reaches Cassandra: a commit
 *                  that fails after what came before it succeeded;
 *   hold executes  while on, every EXECUTE of the statement prepared
 *                  from a watched query (one containing a given text)
 *                  whose values carry a needle (an id's bytes) is never
 *                  forwarded nor answered: a read that hangs until
 *                  the client's timeout or its stop cuts it short.
 *
 * Whole frames are moved in both directions on one thread per connection,
 * so an injected answer never lands inside one of Cassandra's frames.
 * Linked into the tests that use it (CMake). */
#ifndef PARLEY_TESTS_CQL_PROXY_H
#define PARLEY_TESTS_CQL_PROXY_H

#include <stddef.h>

/* listens on a free loopback port and forwards each connection to
 * 127.0.0.1:upstream_port: that port, or -1 */
int cql_proxy_start(int upstream_port);
/* closes the listener and every connection and joins their threads;
 * safe to call twice */
void cql_proxy_stop(void);
/* arms (needle, n > 0) or disarms (NULL) the batch failure */
void cql_proxy_fail_batches(const void *needle, size_t n);
/* the query whose prepared id is learnt from the PREPAREs that follow
 * (call it before the server under test starts and prepares it) */
void cql_proxy_watch_query(const char *query_part);
/* holds the executes of the watched query whose body (its bound values)
 * carries needle (n bytes, at most 64), or forwards them all again (NULL) */
void cql_proxy_hold_executes(const void *needle, size_t n);
/* batches failed and executes held so far */
int cql_proxy_batches_failed(void);
int cql_proxy_executes_held(void);

#endif
