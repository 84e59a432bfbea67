/* cql_result_internal.h -- the layout of a parsed response, shared by the
 * parser (cql_response.c) and the accessors (cql_result.c). */
#ifndef PARLEY_CQL_RESULT_INTERNAL_H
#define PARLEY_CQL_RESULT_INTERNAL_H

#include "store/cql/cql.h"

#include <stddef.h>
#include <stdint.h>

#define CQL_MAX_COLUMNS 1024
#define CQL_NAME_MAX 64

typedef struct cql_column {
    char name[CQL_NAME_MAX]; /* truncated if longer */
    uint16_t type;
    uint16_t elem; /* element type of list/set */
} cql_column;

struct cql_result {
    cql_status status;
    int error_code; /* -1 when not a server error */
    char message[256];
    int kind; /* CQL_RESULT_* or 0 */
    uint8_t *body; /* copy of the response body; offsets below point into it */
    size_t body_len;
    size_t id_off, id_len; /* prepared id (PREPARED) or unknown id (UNPREPARED) */
    int has_id;
    size_t ncols, nrows;
    cql_column *cols;
    int32_t *cell_off, *cell_len; /* nrows * ncols; len -1: null */
    int has_paging;
    size_t paging_off, paging_len;
};

#endif
