/* peer_common.c -- the code the peer drivers share (see peer_common.h). */
#include "peer_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

uint64_t peer_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool peer_parse_args(peer_args *a, int argc, char **argv, const char *prog, int default_port, int min_body) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s direct|group|live|idle --port P [...]\n", prog);
        return false;
    }
    *a = (peer_args){.shape = argv[1], .port = default_port, .window = 8, .body = 32,
                     .pairs = 1000, .size = 250, .senders = -1, .n = 1000, .seconds = 8};
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--port")) a->port = atoi(v);
        else if (!strcmp(o, "--pairs")) a->pairs = atol(v);
        else if (!strcmp(o, "--size")) a->size = atol(v);
        else if (!strcmp(o, "--senders")) a->senders = strcmp(v, "all") ? atol(v) : -1;
        else if (!strcmp(o, "--window")) a->window = atoi(v);
        else if (!strcmp(o, "--rate")) a->rate = strcmp(v, "max") ? atof(v) : 0;
        else if (!strcmp(o, "--seconds")) a->seconds = atof(v);
        else if (!strcmp(o, "--n")) a->n = atol(v);
        else if (!strcmp(o, "--pid")) a->pid = atoi(v);
        else if (!strcmp(o, "--body")) a->body = atoi(v);
    }
    if (!strcmp(a->shape, "live")) {   /* the live event: group, every member sending, 1,000 msgs/s in all */
        a->shape = "group";
        a->senders = -1;
        if (a->rate <= 0) a->rate = 1000;
    }
    if (a->body < min_body) a->body = min_body;
    if (a->body > 4096) a->body = 4096;
    if (a->seconds <= 0 || a->seconds > 600) a->seconds = 8;
    return true;
}

void peer_clamp_counts(peer_args *a) {
    if (a->window < 1) a->window = 1;
    if (a->n < 1 || a->n > 1000000) a->n = 1000;
    if (a->pairs < 1 || a->pairs > 100000) a->pairs = 1000;
    if (a->size < 2 || a->size > 100000) a->size = 250;
}

void peer_raise_nofile(const char *tag, long conns) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (tag && (rlim_t)conns + 64 > rl.rlim_cur)
        fprintf(stderr, "%s: open-file limit %llu is below the %ld connections asked\n", tag,
                (unsigned long long)rl.rlim_cur, conns);
}

long peer_status_kb(int pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) v = strtol(line + strlen(key) + 1, NULL, 10);
    fclose(f);
    return v;
}

uint32_t peer_src_ip(uint32_t k) {
    return (127u << 24) | ((30 + (k >> 16) % 200) << 16) | (((k >> 8) & 255) << 8) | ((k & 255) | 1);
}

void peer_src_str(char *buf, size_t len, uint32_t k) {
    uint32_t ip = peer_src_ip(k);
    snprintf(buf, len, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

void peer_tally_init(peer_tally *t) {
    hist_init(&t->ack);
    hist_init(&t->deliv);
}

double peer_send_for(void *const *sendv, long nsend, const peer_args *a, uint32_t paced_cap,
                     const peer_sender *ops) {
    uint64_t t0 = peer_now_ns(), stop = t0 + (uint64_t)(a->seconds * 1e9), seq = 0;
    uint64_t interval = a->rate > 0 ? (uint64_t)(1e9 / a->rate) : 0;
    while (peer_now_ns() < stop) {
        uint64_t now = peer_now_ns();
        if (interval) {
            /* catch up on every send that fell due, each timed from when it
             * was due, so that a slow turn does not hide its own delay */
            while (t0 + seq * interval <= now) {
                void *c = sendv[seq % (uint64_t)nsend];
                uint64_t due = t0 + seq * interval;
                seq++;
                if (ops->room(c, paced_cap)) ops->send(c, due);
            }
        } else {
            for (long i = 0; i < nsend; i++)
                while (ops->room(sendv[i], (uint32_t)a->window)) ops->send(sendv[i], peer_now_ns());
        }
        ops->turn(now, interval ? 0 : 1);
    }
    return (double)(peer_now_ns() - t0) / 1e9;
}

void peer_drain(peer_tally *t, void (*poll_once)(int timeout_ms)) {
    uint64_t acked = t->acked, deliv = t->delivered;
    uint64_t drain = peer_now_ns() + 10000000000ull;
    while (peer_now_ns() < drain && (t->acked < t->sent || t->delivered < t->acked * t->receivers))
        poll_once(10);
    t->acked_total = t->acked;
    t->delivered_total = t->delivered;
    t->acked = acked;
    t->delivered = deliv;
}

void peer_print_rates(const peer_tally *t, double secs, bool driver_ok) {
    printf("\"acked_per_s\": %.1f, \"deliveries_per_s\": %.1f, "
           "\"send_ack_p50_ms\": %.3f, \"send_ack_p99_ms\": %.3f, "
           "\"send_delivery_p50_ms\": %.3f, \"send_delivery_p90_ms\": %.3f, \"send_delivery_p99_ms\": %.3f, "
           "\"send_delivery_p99_9_ms\": %.3f, \"send_delivery_max_ms\": %.3f",
           t->acked / secs, t->delivered / secs,
           hist_quantile(&t->ack, 0.5) / 1e6, hist_quantile(&t->ack, 0.99) / 1e6,
           hist_quantile(&t->deliv, 0.5) / 1e6, hist_quantile(&t->deliv, 0.9) / 1e6,
           hist_quantile(&t->deliv, 0.99) / 1e6, hist_quantile(&t->deliv, 0.999) / 1e6,
           hist_quantile(&t->deliv, 1.0) / 1e6);
    printf(", \"sent_total\": %llu, \"acked_total\": %llu, \"delivered_total\": %llu, "
           "\"receivers_per_msg\": %llu, \"deliveries_expected\": %llu, \"valid\": %s",
           (unsigned long long)t->sent, (unsigned long long)t->acked_total,
           (unsigned long long)t->delivered_total, (unsigned long long)t->receivers,
           (unsigned long long)(t->acked_total * t->receivers), peer_run_valid(t) && driver_ok ? "true" : "false");
}

bool peer_run_valid(const peer_tally *t) {
    return t->acked_total > 0 && t->receivers > 0 && t->delivered_total == t->acked_total * t->receivers;
}

void peer_print_held(const char *system, uint64_t held, double connect_s, long before_kb, long after_kb,
                     uint64_t errors) {
    printf("{\"system\": \"%s\", \"scenario\": \"connections\", \"held\": %llu, "
           "\"connect_rate\": %.1f, \"server_bytes_per_conn\": %.1f, \"errors\": %llu}\n",
           system, (unsigned long long)held, connect_s > 0 ? (double)held / connect_s : 0,
           held ? (double)(after_kb - before_kb) * 1024 / (double)held : 0, (unsigned long long)errors);
}
