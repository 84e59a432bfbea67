/* admission.h -- what a signed-in device's write passes before the writer
 * sees it: a token from its device's and its user's bucket of the kind
 * (core/quota.h), shared by every connection of the device on every worker.
 * The writer-queue share is taken in session.c's submit. */
#ifndef PARLEY_GATEWAY_ADMISSION_H
#define PARLEY_GATEWAY_ADMISSION_H

#include <stdbool.h>

#include "core/quota.h"
#include "gateway/conn.h"

/* true: go ahead. false: c was answered RATE_LIMITED with retry_after_ms. */
bool admission_take(worker *w, conn *c, uint64_t request_id, quota_kind kind);
/* The same for requests that get no answer (AckDeviceMessages): false
 * means drop it, counted in /metrics. */
bool admission_take_quietly(worker *w, conn *c, quota_kind kind);

/* A user's requests waiting in the writer queue: true when there is room
 * (and one is counted), false past its share (RATE_LIMITED is the caller's
 * to send, with ADMISSION_SHARE_RETRY_MS). */
enum { ADMISSION_SHARE_RETRY_MS = 100 };
bool admission_enter_writer(worker *w, conn *c);

#endif
