/* group_origin.c -- see group_origin.h. */
#include "chat/group_origin.h"

#include "core/log.h"
#include "core/metrics.h"
#include "store/store.h"

static store_group_origin origin_of(const chat_request *r) {
    store_group_origin o = {.partition = r->log_partition, .offset = r->log_offset, .user = r->user_id,
                            .request_id = r->request_id, .device = r->device_id};
    return o;
}

int group_origin_find(writer *w, const chat_request *r, uint64_t *conv) {
    if (!r->from_log) return 0;
    store_group_origin o = origin_of(r);
    int found = store_get_group_origin(w->srv->store, &o, conv);
    if (found == 1) {
        METRIC_INC(kafka_group_reruns_total);
        log_info("%s: CreateGroup of 'sends' %u/%llu ran before: answered its group %llu again", w->name,
                 (unsigned)o.partition, (unsigned long long)o.offset, (unsigned long long)*conv);
    }
    return found;
}

void group_origin_put(writer *w, const chat_request *r, uint64_t conv) {
    if (!r->from_log) return;
    store_group_origin o = origin_of(r);
    store_put_group_origin(w->batch, &o, conv);
}
