/* register_limit.h -- RegisterUser per source address: a token bucket per
 * address (--register-rate per minute, bursts of the same; loopback has its
 * own --register-rate-loopback), shared by the workers. */
#ifndef PARLEY_GATEWAY_REGISTER_LIMIT_H
#define PARLEY_GATEWAY_REGISTER_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/conn.h"

/* true when c's address may register a user now; false with *retry_after_ms */
bool register_limit_take(worker *w, conn *c, uint64_t *retry_after_ms);

#endif
