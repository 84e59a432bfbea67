/* history_load.c -- parley-history-load: fills one conversation with many
 * messages straight through the store interface (no server running on the
 * store), then measures how long a history page takes to read at several
 * depths. For bench/RESULTS.md's "Cassandra backend" section: a
 * conversation of 1,000,000 messages is out of reach through the write
 * path on a shared 2-core machine within minutes, and what is measured
 * here is the store's page read (store_scan_messages_back), which is what
 * a History request costs the server beyond the socket.
 *
 *   parley-history-load WHERE --conv C --sender U --device D --messages N
 *                       [--body BYTES] [--batch K] [--page P] [--reads R]
 *   WHERE: --data DIR | --store cassandra --cassandra HOSTS --keyspace K
 *
 * The conversation and its sender must exist (make them with a server and
 * parley-cli, then stop the server). Messages last_seq+1 .. N are appended
 * in batches of K (default 500, bounded 1..5000); then R (default 21)
 * pages of P (default 50) are read before the newest message, in the
 * middle and at the oldest end, and the median and the largest of each are
 * printed with the load rate. Bodies are random bytes (parley stores
 * ciphertext). Benchmarks are not tests: nothing here asserts a figure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/parley.pb-c.h"
#include "store/store.h"

enum { BODY_MAX = 65536, BATCH_MAX = 5000, READS_MAX = 1001, PAGE_MAX = 1000 };

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int count_fn(void *ud, uint64_t seq, const uint8_t *msg, size_t len) {
    (void)seq;
    (void)msg;
    (void)len;
    (*(uint32_t *)ud)++;
    return 0;
}

static int dbl_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* R reads of one page before before_seq: median and largest, in ms */
static int measure(store *s, uint64_t conv, uint64_t before, uint32_t page, int reads, const char *label) {
    static double t[READS_MAX];
    uint32_t got = 0;
    for (int i = 0; i < reads; i++) {
        got = 0;
        double t0 = now_ms();
        if (store_scan_messages_back(s, conv, before, page, count_fn, &got) != 0) {
            fprintf(stderr, "parley-history-load: page read failed\n");
            return -1;
        }
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)reads, sizeof t[0], dbl_cmp);
    printf("page %-8s before seq %-9llu %u messages: median %.3f ms, max %.3f ms (%d reads)\n", label,
           (unsigned long long)before, got, t[reads / 2], t[reads - 1], reads);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: parley-history-load (--data DIR | --store cassandra --cassandra HOSTS --keyspace K)\n"
                    "         --conv C --sender U --device D --messages N [--body BYTES] [--batch K]\n"
                    "         [--page P] [--reads R]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *hosts = NULL, *keyspace = NULL;
    store_kind kind = STORE_KIND_ROCKSDB;
    unsigned long long conv = 0, sender = 0, device = 0, total = 0, body_len = 32, batch = 500, page = 50,
                       reads = 21;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc) return usage();
        const char *k = argv[i], *v = argv[i + 1];
        unsigned long long *num = !strcmp(k, "--conv")       ? &conv
                                  : !strcmp(k, "--sender")   ? &sender
                                  : !strcmp(k, "--device")   ? &device
                                  : !strcmp(k, "--messages") ? &total
                                  : !strcmp(k, "--body")     ? &body_len
                                  : !strcmp(k, "--batch")    ? &batch
                                  : !strcmp(k, "--page")     ? &page
                                  : !strcmp(k, "--reads")    ? &reads
                                                             : NULL;
        if (num) *num = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--data")) dir = v;
        else if (!strcmp(k, "--cassandra")) hosts = v;
        else if (!strcmp(k, "--keyspace")) keyspace = v;
        else if (!strcmp(k, "--store")) {
            if (store_kind_parse(v, &kind) != 0) return usage();
        } else return usage();
    }
    if (!conv || !sender || !total || body_len < 1 || body_len > BODY_MAX || batch < 1 || batch > BATCH_MAX ||
        page < 1 || page > PAGE_MAX || reads < 1 || reads > READS_MAX || device > UINT32_MAX ||
        (kind == STORE_KIND_ROCKSDB ? !dir : !hosts || !keyspace))
        return usage();

    store_options o = {0};
    o.cassandra_hosts = hosts;
    o.cassandra_keyspace = keyspace;
    char *err = NULL;
    store *s = store_open_kind(kind, dir, &o, &err);
    if (!s) {
        fprintf(stderr, "parley-history-load: %s\n", err ? err : "cannot open the store");
        free(err);
        return 1;
    }
    uint64_t last = 0;
    if (store_last_seq(s, conv, &last) != 0) {
        fprintf(stderr, "parley-history-load: last_seq failed\n");
        store_close(s);
        return 1;
    }
    uint8_t *body = malloc(body_len);
    uint8_t *enc = malloc(body_len + 256);
    store_batch *b = store_batch_new();
    if (!body || !enc || !b) return 1;
    /* bodies are ciphertext in parley (end-to-end encrypted): random bytes,
     * so a compressing store (Cassandra's LZ4) is not flattered */
    uint64_t rnd = 0x9E3779B97F4A7C15ull ^ (uint64_t)conv;
    uint64_t ts = (uint64_t)time(NULL) * 1000;
    double t0 = now_ms();
    int rc = 0;
    for (uint64_t seq = last + 1; seq <= total && rc == 0; seq++) {
        for (size_t k = 0; k < body_len; k++) {   /* xorshift64 */
            rnd ^= rnd << 13;
            rnd ^= rnd >> 7;
            rnd ^= rnd << 17;
            body[k] = (uint8_t)rnd;
        }
        Parley__V1__Message m = PARLEY__V1__MESSAGE__INIT;
        m.conversation_id = conv;
        m.seq = seq;
        m.sender_user_id = sender;
        m.sender_device_id = (uint32_t)device;
        m.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
        m.body.data = body;
        m.body.len = body_len;
        m.server_ts = ts;
        size_t n = parley__v1__message__pack(&m, enc);
        store_put_message(b, conv, seq, enc, n);
        if (store_batch_count(b) >= batch || seq == total) {
            rc = store_commit(s, b, seq == total);
            if (rc != 0) fprintf(stderr, "parley-history-load: commit failed at seq %llu\n", (unsigned long long)seq);
        }
        if (seq % 100000 == 0) {
            fprintf(stderr, "  %llu messages, %.0f/s\n", (unsigned long long)seq,
                    (double)(seq - last) / ((now_ms() - t0) / 1e3));
        }
    }
    double load_s = (now_ms() - t0) / 1e3;
    if (rc == 0 && total > last)
        printf("loaded seq %llu..%llu (%llu messages, body %llu bytes) in %.1f s: %.0f messages/s\n",
               (unsigned long long)last + 1, total, total - last, body_len, load_s,
               (double)(total - last) / load_s);
    if (rc == 0) rc = measure(s, conv, 0, (uint32_t)page, (int)reads, "newest");
    if (rc == 0) rc = measure(s, conv, total / 2, (uint32_t)page, (int)reads, "middle");
    if (rc == 0) rc = measure(s, conv, page + 1 < total ? page + 1 : total, (uint32_t)page, (int)reads, "oldest");
    store_batch_free(b);
    free(body);
    free(enc);
    store_close(s);
    return rc == 0 ? 0 : 1;
}
