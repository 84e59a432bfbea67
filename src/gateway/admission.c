/* admission.c -- see admission.h. */
#include "gateway/admission.h"

#include "core/clock.h"
#include "core/metrics.h"

bool admission_take(worker *w, conn *c, uint64_t request_id, quota_kind kind) {
    uint64_t wait_ms = 0;
    if (quota_take(w->srv->quota, kind, c->user_id, c->device_id, clock_mono_ms(), &wait_ms)) return true;
    conn_send_rate_limited(w, c, request_id,
                           kind == QUOTA_SEND ? "sending too fast; retry after retry_after_ms"
                                              : "too many writes; retry after retry_after_ms",
                           wait_ms);
    return false;
}

bool admission_take_quietly(worker *w, conn *c, quota_kind kind) {
    uint64_t wait_ms = 0;
    if (quota_take(w->srv->quota, kind, c->user_id, c->device_id, clock_mono_ms(), &wait_ms)) return true;
    METRIC_INC(rate_limited_total);
    return false;
}

bool admission_enter_writer(worker *w, conn *c) {
    if (quota_writer_enter(w->srv->quota, c->user_id, clock_mono_ms())) return true;
    METRIC_INC(writer_share_refused_total);
    return false;
}
