/* address_limit.h -- sockets not yet signed in, counted per source address
 * for the whole process (every worker accepts from every address), so one
 * address cannot hold a gateway's handshake capacity. */
#ifndef PARLEY_GATEWAY_ADDRESS_LIMIT_H
#define PARLEY_GATEWAY_ADDRESS_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Counts one more pending socket of addr unless it already has cap; true
 * when counted (cap 0: no limit, always counted). */
bool address_limit_take(uint32_t addr, uint32_t cap);
/* Undoes one address_limit_take. */
void address_limit_release(uint32_t addr);

#endif
