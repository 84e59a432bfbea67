/* cql.h -- an asynchronous client for Apache Cassandra's CQL native
 * protocol v4 (Debian has no C or C++ CQL driver).
 *
 * One client owns one I/O thread (an epoll loop) and one connection per
 * host; requests from any thread are queued to that thread, which frames
 * each one (header and body in one write, TCP_NODELAY) on a free stream id
 * of the next ready connection, round-robin over the hosts. Up to
 * max_streams requests are in flight per connection; more wait in a queue
 * of at most max_queued (beyond that cql_execute answers CQL_ERR_BUSY).
 *
 * Completions are invoked ON THE CLIENT'S I/O THREAD: a callback must be
 * quick and must not block (hand the result to its owner's queue); it may
 * call cql_execute again but never cql_execute_sync or cql_close. The
 * callback owns the result and frees it with cql_result_free.
 *
 * Prepared statements are cached by query text in the client; a server that
 * answers UNPREPARED (its cache lost the id: a restart, a schema change,
 * another host) gets the statement re-prepared and the request re-sent on
 * the same connection without the caller seeing it. A lost connection fails
 * its in-flight requests (CQL_ERR_CONNECTION) and is re-opened in the
 * background with a backoff; queued requests wait for it until their
 * deadline. */
#ifndef PARLEY_CQL_H
#define PARLEY_CQL_H

#include <stddef.h>
#include <stdint.h>

typedef enum cql_status {
    CQL_OK = 0,
    /* server errors, by code (native_protocol_v4.spec section 9) */
    CQL_ERR_SERVER,         /* 0x0000 */
    CQL_ERR_PROTOCOL,       /* 0x000A, or a response this client cannot parse */
    CQL_ERR_AUTH,           /* 0x0100 bad credentials / 0x2100 unauthorized */
    CQL_ERR_UNAVAILABLE,    /* 0x1000 not enough replicas alive: not applied */
    CQL_ERR_OVERLOADED,     /* 0x1001 (and 0x1002 bootstrapping): not applied */
    CQL_ERR_TRUNCATE,       /* 0x1003 */
    CQL_ERR_WRITE_TIMEOUT,  /* 0x1100 outcome unknown: retry idempotently */
    CQL_ERR_READ_TIMEOUT,   /* 0x1200 */
    CQL_ERR_READ_FAILURE,   /* 0x1300 */
    CQL_ERR_FUNCTION,       /* 0x1400 */
    CQL_ERR_WRITE_FAILURE,  /* 0x1500 outcome unknown */
    CQL_ERR_SYNTAX,         /* 0x2000 */
    CQL_ERR_INVALID,        /* 0x2200 */
    CQL_ERR_CONFIG,         /* 0x2300 */
    CQL_ERR_ALREADY_EXISTS, /* 0x2400 */
    CQL_ERR_UNPREPARED,     /* 0x2500 handled inside; seen only if re-prepare fails */
    /* client-side */
    CQL_ERR_TIMEOUT,        /* no answer within the deadline: outcome unknown */
    CQL_ERR_CONNECTION,     /* connection lost with the request sent: outcome unknown */
    CQL_ERR_BUSY,           /* queue full; not sent */
    CQL_ERR_CLOSED,         /* client closing; not sent */
    CQL_ERR_NOMEM,
    CQL_ERR_ARG,            /* bad argument (value too long, etc.) */
} cql_status;

const char *cql_status_name(cql_status st);
/* Whether a write that ended with st may or may not have been applied. */
int cql_status_outcome_unknown(cql_status st);

typedef enum cql_consistency {
    CQL_ANY = 0, CQL_ONE = 1, CQL_TWO = 2, CQL_THREE = 3, CQL_QUORUM = 4,
    CQL_ALL = 5, CQL_LOCAL_QUORUM = 6, CQL_EACH_QUORUM = 7, CQL_SERIAL = 8,
    CQL_LOCAL_SERIAL = 9, CQL_LOCAL_ONE = 10,
} cql_consistency;

/* Column types this client decodes (option ids of the spec). */
enum {
    CQL_TYPE_CUSTOM = 0x00, CQL_TYPE_ASCII = 0x01, CQL_TYPE_BIGINT = 0x02,
    CQL_TYPE_BLOB = 0x03, CQL_TYPE_BOOLEAN = 0x04, CQL_TYPE_INT = 0x09,
    CQL_TYPE_TIMESTAMP = 0x0B, CQL_TYPE_VARCHAR = 0x0D, CQL_TYPE_LIST = 0x20,
    CQL_TYPE_SET = 0x22,
};

/* Bound values, encoded as they are added ([short] count, then [bytes]). */
#define CQL_MAX_VALUES 256
#define CQL_MAX_VALUE_LEN (8u << 20)
typedef struct cql_values {
    uint8_t *data;
    size_t len, cap;
    uint16_t count;
    int error; /* sticky: out of memory, too many or too long */
} cql_values;

void cql_values_init(cql_values *v);
void cql_values_free(cql_values *v);
void cql_values_null(cql_values *v);
void cql_values_bigint(cql_values *v, int64_t x);
void cql_values_int(cql_values *v, int32_t x);
void cql_values_bool(cql_values *v, int b);
void cql_values_timestamp(cql_values *v, int64_t ms_since_epoch);
void cql_values_blob(cql_values *v, const void *p, size_t n);
void cql_values_text(cql_values *v, const char *s, size_t n);
void cql_values_list_bigint(cql_values *v, const int64_t *xs, size_t n);

/* A response: status, server message, and for rows the decoded cells. */
typedef struct cql_result cql_result;
void cql_result_free(cql_result *r);
cql_status cql_result_status(const cql_result *r);
const char *cql_result_message(const cql_result *r); /* "" if none */
int cql_result_error_code(const cql_result *r);      /* server's code, -1 if none */
size_t cql_result_rows(const cql_result *r);
size_t cql_result_columns(const cql_result *r);
/* column index by name, -1 if absent */
int cql_result_column(const cql_result *r, const char *name);
int cql_result_column_type(const cql_result *r, size_t col);
/* paging state for the next page (borrowed), or 0 if this was the last */
int cql_result_paging_state(const cql_result *r, const uint8_t **p, size_t *len);
/* LWT: the "[applied]" column of row 0; -1 if the result has none */
int cql_result_applied(const cql_result *r);

/* Cell getters: 0 on success, -1 if null, out of range or of another type. */
int cql_get_bigint(const cql_result *r, size_t row, size_t col, int64_t *out);
int cql_get_int(const cql_result *r, size_t row, size_t col, int32_t *out);
int cql_get_bool(const cql_result *r, size_t row, size_t col, int *out);
int cql_get_timestamp(const cql_result *r, size_t row, size_t col, int64_t *out);
/* text/varchar/ascii and blob: borrowed pointer into the result */
int cql_get_bytes(const cql_result *r, size_t row, size_t col, const uint8_t **p, size_t *len);
/* list<bigint> / set<bigint>: element count, then elements */
int cql_get_list_len(const cql_result *r, size_t row, size_t col, size_t *n);
int cql_get_list_bigint(const cql_result *r, size_t row, size_t col, size_t i, int64_t *out);

typedef struct cql_client cql_client;
typedef struct cql_prepared cql_prepared;
typedef void (*cql_callback)(cql_result *res, void *ud);

typedef struct cql_options {
    const char *hosts;        /* "HOST:PORT[,HOST:PORT...]", numeric IPv4/IPv6 or names */
    const char *keyspace;     /* USE'd on every connection if set; NULL for none */
    int request_timeout_ms;   /* per request, 0: 12000 */
    int connect_timeout_ms;   /* per attempt, 0: 5000 */
    int max_streams;          /* per connection, 0: 1024 (at most 32768) */
    int max_queued;           /* waiting for a stream or a connection, 0: 65536 */
} cql_options;

/* Starts the I/O thread and the connections. Returns NULL on a bad host list
 * or out of resources; it does not wait for a connection (see cql_wait_ready). */
cql_client *cql_connect(const cql_options *opts);
/* Waits until at least one connection is ready; 0, or -1 after timeout_ms. */
int cql_wait_ready(cql_client *c, int timeout_ms);
/* Fails what waits (CQL_ERR_CLOSED, not sent) and what is in flight
 * (CQL_ERR_CONNECTION, outcome unknown), stops the thread, frees all,
 * including the prepared statements. */
void cql_close(cql_client *c);

/* A statement prepared through this client: the handle stays valid until
 * cql_close (the client caches and owns it); the server-side id behind it
 * is refreshed on UNPREPARED. Synchronous; NULL with *err set on failure. */
cql_prepared *cql_prepare(cql_client *c, const char *query, cql_result **err);

/* The same without waiting: the handle at once (NULL: cache full, out of
 * memory, query too long), its PREPARE sent if it has no id yet (at most
 * one in flight per statement); cql_prepared_ready says when the id has
 * come. For a caller that must not block on a round trip (a commit). */
cql_prepared *cql_prepare_async(cql_client *c, const char *query);
int cql_prepared_ready(const cql_prepared *st);

/* Asynchronous: the callback runs once, on the I/O thread, with the result.
 * query: a plain QUERY when stmt is NULL. values may be NULL; they are copied.
 * page_size <= 0: no paging. paging_state from a previous page's result or
 * NULL. Returns CQL_OK or an error (then the callback is not called). */
cql_status cql_execute(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                       cql_consistency cl, int32_t page_size,
                       const uint8_t *paging_state, size_t paging_len,
                       cql_callback cb, void *ud);
/* A lightweight transaction (a statement with IF ...): cl is the
 * consistency of its commit (CQL_LOCAL_QUORUM), serial that of its Paxos
 * round (CQL_SERIAL or CQL_LOCAL_SERIAL). The result's "[applied]" column
 * (cql_result_applied) says whether the condition held. A timeout
 * (CQL_ERR_WRITE_TIMEOUT, CQL_ERR_TIMEOUT, CQL_ERR_CONNECTION) leaves the
 * outcome unknown: the caller resolves it by reading the row at serial. */
cql_status cql_execute_lwt(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                           cql_consistency cl, cql_consistency serial, cql_callback cb, void *ud);
cql_status cql_query(cql_client *c, const char *query, const cql_values *values,
                     cql_consistency cl, cql_callback cb, void *ud);

/* A LOGGED BATCH: statements (query text and bound values), encoded as
 * they are added, executed as one request. Cassandra writes a logged batch
 * to its batch log first, so its statements are applied all or (after a
 * coordinator failure, once the batch log replays) eventually all: never
 * a part for good. A statement goes as text (kind 0, cql_batch_add: the
 * server parses it each time) or as a prepared id (kind 1,
 * cql_batch_add_prepared); a server that answers UNPREPARED to a batch
 * gets the statement it names prepared again on that connection and the
 * whole batch re-sent (nothing of a batch is applied when one of its ids
 * is unknown). At most CQL_MAX_BATCH statements. */
#define CQL_MAX_BATCH 65535
typedef struct cql_batch cql_batch;
cql_batch *cql_batch_new(void);
void cql_batch_free(cql_batch *b);
/* Appends one statement; values may be NULL. A statement that cannot be
 * added (out of memory, too many, a values error) marks the batch failed:
 * executing it then answers CQL_ERR_ARG or CQL_ERR_NOMEM. */
void cql_batch_add(cql_batch *b, const char *query, const cql_values *values);
/* Appends one prepared statement (of cql_prepare on the client that will
 * execute the batch); values may be NULL. */
void cql_batch_add_prepared(cql_batch *b, const cql_prepared *stmt, const cql_values *values);
size_t cql_batch_count(const cql_batch *b);
size_t cql_batch_bytes(const cql_batch *b);   /* encoded size so far */
/* Asynchronous, like cql_execute; the batch is copied, so the caller may
 * free or reuse it at once. */
cql_status cql_execute_batch(cql_client *c, const cql_batch *b, cql_consistency cl, cql_callback cb,
                             void *ud);

/* Synchronous wrappers for tests and tools: return the result (never NULL
 * except out of memory); the caller frees it. Not from a callback. */
cql_result *cql_execute_sync(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                             cql_consistency cl, int32_t page_size,
                             const uint8_t *paging_state, size_t paging_len);
cql_result *cql_execute_lwt_sync(cql_client *c, const cql_prepared *stmt, const cql_values *values,
                                 cql_consistency cl, cql_consistency serial);
cql_result *cql_query_sync(cql_client *c, const char *query, cql_consistency cl);

/* Shutdown: every request still unanswered ms from now fails then (as at
 * its deadline: CQL_ERR_TIMEOUT, outcome unknown), and every request made
 * from then on fails at once (CQL_ERR_CLOSED, not sent), so a process that
 * is stopping never waits out request_timeout_ms on a node that does not
 * answer. Callable from any thread, more than once (the earliest wins). */
void cql_cancel_after(cql_client *c, int ms);
/* 1 once that moment has passed, else 0 */
int cql_cancelled(cql_client *c);

/* Counters, for tests and /metrics. */
typedef struct cql_stats {
    uint64_t requests, timeouts, reprepares, reconnects, connection_failures;
    int ready_connections;
    int peak_in_flight; /* most requests in flight on one connection so far */
} cql_stats;
void cql_get_stats(cql_client *c, cql_stats *out);

#endif
