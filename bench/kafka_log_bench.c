/* kafka_log_bench.c -- records/s through the cluster's log
 * (src/queue/kafka/kafka_log.h) against a running broker (scripts/kafka.sh):
 *
 *   bench-kafka-log produce --brokers B --topic T --records N [--size BYTES] [--partitions P]
 *       idempotent, non-transactional produce (acks=all) of N keyed records
 *       to T, from the first produce to the last delivery report;
 *   bench-kafka-log ctp --brokers B --in T --out T2 --records N [--batch K] [--partitions P]
 *       transactional consume-transform-produce: reads T in group
 *       "bench-ctp" (read_committed), copies each record to T2 with its key,
 *       and commits output and input offsets together every K records (or
 *       when the input pauses), until N records are committed; from the
 *       first record read to the last commit.
 *
 * Topics are created with P partitions (default 4) if they do not exist.
 * Keys are 1..1000 round robin. Prints one line: mode records seconds rate. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/kafka/kafka_log.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t acked, failed;
static void on_delivery(void *opaque, int ok, int32_t partition, int64_t offset) {
    (void)opaque;
    (void)partition;
    (void)offset;
    if (ok) acked++;
    else failed++;
}

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 2; i + 1 < argc; i += 2)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

static int produce(const char *brokers, const char *topic, long records, long size) {
    char err[KAFKA_LOG_ERRLEN];
    kafka_producer_config pc = {.brokers = brokers, .on_delivery = on_delivery};
    kafka_producer *p = kafka_producer_new(&pc, 30000, err);
    if (!p) {
        fprintf(stderr, "producer: %s\n", err);
        return 1;
    }
    char *value = calloc(1, (size_t)size);
    if (!value) return 1;
    double t0 = now_s();
    for (long i = 0; i < records; i++) {
        kafka_result r;
        while ((r = kafka_produce(p, topic, (uint64_t)(i % 1000) + 1, value, (size_t)size)) == KAFKA_FULL)
            kafka_producer_poll(p, 10);
        if (r != KAFKA_OK) {
            fprintf(stderr, "produce: %s\n", kafka_result_name(r));
            return 1;
        }
        kafka_producer_poll(p, 0);
    }
    int flushed = kafka_producer_flush(p, 120000);
    kafka_producer_poll(p, 0);
    double secs = now_s() - t0;
    printf("produce records %" PRIu64 " failed %" PRIu64 " seconds %.2f rate %.0f/s (size %ld, idempotent, acks=all)\n",
           acked, failed, secs, (double)acked / secs, size);
    kafka_producer_free(p, 5000);
    free(value);
    return flushed == 0 && failed == 0 && acked == (uint64_t)records ? 0 : 1;
}

static int ctp(const char *brokers, const char *in, const char *out, long records, long batch) {
    char err[KAFKA_LOG_ERRLEN];
    kafka_producer_config pc = {.brokers = brokers, .transactional_id = "bench-ctp"};
    kafka_producer *p = kafka_producer_new(&pc, 30000, err);
    if (!p) {
        fprintf(stderr, "producer: %s\n", err);
        return 1;
    }
    const char *topics[] = {in};
    kafka_consumer_config cc = {.brokers = brokers, .group = "bench-ctp", .topics = topics, .ntopics = 1,
                                .session_timeout_ms = 10000};
    kafka_consumer *c = kafka_consumer_new(&cc, err);
    if (!c) {
        fprintf(stderr, "consumer: %s\n", err);
        return 1;
    }
    kafka_record recs[1000];
    long done = 0, in_txn = 0, commits = 0, aborts = 0;
    double t0 = 0, deadline = now_s() + 600;
    while (done < records && now_s() < deadline) {
        size_t want = (size_t)(batch - in_txn) < 1000 ? (size_t)(batch - in_txn) : 1000;
        int n = kafka_consumer_poll(c, recs, want, 100);
        if (n < 0) break;
        if (n > 0 && t0 == 0) t0 = now_s();
        if (n > 0 && !kafka_txn_open(p) && kafka_txn_begin(p, c) != KAFKA_OK) break;
        for (int i = 0; i < n; i++) {
            kafka_result r;
            while ((r = kafka_produce(p, out, recs[i].key, recs[i].value, recs[i].len)) == KAFKA_FULL)
                kafka_producer_poll(p, 10);
            if (r != KAFKA_OK) {
                fprintf(stderr, "produce: %s\n", kafka_result_name(r));
                return 1;
            }
        }
        kafka_records_release(recs, n > 0 ? (size_t)n : 0);
        in_txn += n;
        if (kafka_txn_open(p) && (in_txn >= batch || n == 0)) {
            kafka_result r = kafka_txn_commit(p, c, 30000);
            if (r == KAFKA_OK) {
                done += in_txn;
                commits++;
            } else if (r == KAFKA_ABORTED) {
                aborts++;
            } else {
                fprintf(stderr, "commit: %s\n", kafka_result_name(r));
                return 1;
            }
            in_txn = 0;
        }
    }
    double secs = now_s() - t0;
    printf("ctp records %ld seconds %.2f rate %.0f/s (commit every %ld records: %ld commits, %ld aborted)\n", done,
           secs, (double)done / secs, batch, commits, aborts);
    kafka_consumer_free(c);
    kafka_producer_free(p, 5000);
    return done >= records ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench-kafka-log produce|ctp --brokers B ...\n");
        return 2;
    }
    const char *brokers = arg(argc, argv, "--brokers", "127.0.0.1:9092");
    long records = atol(arg(argc, argv, "--records", "200000"));
    int partitions = atoi(arg(argc, argv, "--partitions", "4"));
    if (records < 1 || partitions < 1 || partitions > 10000) return 2;
    const char *topics[] = {arg(argc, argv, strcmp(argv[1], "ctp") == 0 ? "--out" : "--topic",
                                strcmp(argv[1], "ctp") == 0 ? "bench-out" : "bench-in")};
    char err[KAFKA_LOG_ERRLEN];
    if (kafka_create_topic(brokers, topics[0], partitions, 1, 30000, err) != 0) {
        fprintf(stderr, "topic: %s\n", err);
        return 1;
    }
    if (strcmp(argv[1], "produce") == 0) {
        long size = atol(arg(argc, argv, "--size", "200"));
        if (size < 1 || size > KAFKA_LOG_MAX_VALUE) return 2;
        return produce(brokers, arg(argc, argv, "--topic", "bench-in"), records, size);
    }
    if (strcmp(argv[1], "ctp") == 0) {
        long batch = atol(arg(argc, argv, "--batch", "1000"));
        if (batch < 1) return 2;
        return ctp(brokers, arg(argc, argv, "--in", "bench-in"), arg(argc, argv, "--out", "bench-out"), records,
                   batch);
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
