/* test_kafka_log.c -- the cluster's log (src/queue/kafka/kafka_log.h)
 * against a real Apache Kafka broker, started once for the program by
 * scripts/kafka.sh in a temporary directory and stopped by its PID on every
 * exit path. If Java, Maven or the jars are not available the start fails
 * and so does the test: it never skips.
 *
 * The consume-transform-produce cases run the processor as a child process
 * (this program again, "processor" as argv[1]) so that it can be killed
 * with SIGKILL or stalled with SIGSTOP as a whole, librdkafka's threads
 * included. A processor copies every record of an input topic to an output
 * topic with the same key, one transaction per batch, and reports what it
 * does on stdout, one line each ("assigned N", "lost N", "revoked N",
 * "commit ok TOTAL", "commit RESULT", "holding", "fenced"). With --hold K,
 * after its K-th commit it produces one more batch, says "holding" and
 * waits for one byte on stdin before committing it: the test stalls or
 * kills it exactly there, with a transaction open and its output written.
 *
 * Records carry "KEY:SEQ" (SEQ 0.. per key) so a reader can check each
 * key's records arrive exactly once and in order. Every wait is bounded;
 * nothing asserts a duration. */
#include "../check.h"
#include "kafka_node.h"
#include "queue/kafka/kafka_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    SESSION_MS = 6000,           /* the consumer group's session timeout */
    ZOMBIE_TXN_TIMEOUT_MS = 10000, /* the stalled processor's transaction timeout */
    WAIT_MS = 120000,            /* the bound on any one wait */
    MAX_CHILDREN = 8,
    MAX_READ = 20000,            /* records a reader keeps */
};

static const char *brokers;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ processor (child) */

static volatile sig_atomic_t stop_requested;
static void on_term(int sig) {
    (void)sig;
    stop_requested = 1;
}

typedef struct processor {
    kafka_producer *out;
    kafka_consumer *in;
    int timeout_ms;
} processor;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* the owner's side of a rebalance: a partition that goes takes the open
 * transaction with it (aborted, never committed), and its state (none
 * here beyond the transaction) */
static void on_rebalance(void *owner, kafka_rebalance what, const kafka_partition *parts, size_t n) {
    (void)parts;
    processor *pr = owner;
    say("%s %zu", what == KAFKA_ASSIGNED ? "assigned" : what == KAFKA_LOST ? "lost" : "revoked", n);
    if (what == KAFKA_ASSIGNED || !kafka_txn_open(pr->out)) return;
    kafka_result r = kafka_txn_abort(pr->out, NULL, pr->timeout_ms);
    say("abort %s", kafka_result_name(r));
    if (r == KAFKA_FENCED) {
        say("fenced");
        exit(3);
    }
}

/* processor BROKERS GROUP IN OUT TXN_ID BATCH HOLD TXN_TIMEOUT_MS */
static int processor_main(int argc, char **argv) {
    if (argc != 10) return 2;
    signal(SIGTERM, on_term);
    const char *in_topic = argv[4], *out_topic = argv[5];
    int batch = atoi(argv[7]), hold = atoi(argv[8]);
    if (batch < 1 || batch > 1000) return 2;
    char err[KAFKA_LOG_ERRLEN];
    processor pr = {.timeout_ms = 30000};
    const char *brokers_arg = argv[2], *group = argv[3];
    kafka_producer_config pc = {.brokers = brokers_arg, .transactional_id = argv[6],
                                .transaction_timeout_ms = atoi(argv[9])};
    pr.out = kafka_producer_new(&pc, 30000, err);
    if (!pr.out) {
        say("error producer: %s", err);
        return 1;
    }
    const char *topics[] = {in_topic};
    kafka_consumer_config cc = {.brokers = brokers_arg, .group = group, .topics = topics, .ntopics = 1,
                                .session_timeout_ms = SESSION_MS, .max_poll_interval_ms = 2 * SESSION_MS,
                                .on_rebalance = on_rebalance, .owner = &pr};
    pr.in = kafka_consumer_new(&cc, err);
    if (!pr.in) {
        say("error consumer: %s", err);
        kafka_producer_free(pr.out, 1000);
        return 1;
    }
    say("started");
    kafka_record recs[1000];
    uint64_t total = 0, commits = 0;
    int rc = 0;
    bool held = false;
    for (uint64_t round = 0; !stop_requested && round < 1000000; round++) {
        int n = kafka_consumer_poll(pr.in, recs, (size_t)batch, 100);
        if (n < 0) {
            say("error poll");
            rc = 1;
            break;
        }
        if (n == 0) continue;
        kafka_result r = kafka_txn_begin(pr.out, pr.in);
        for (int i = 0; r == KAFKA_OK && i < n; i++) {
            /* the transform: a copy, same key, so per-key order carries over */
            for (int tries = 0; tries < 1000; tries++) {
                r = kafka_produce(pr.out, out_topic, recs[i].key, recs[i].value, recs[i].len);
                if (r != KAFKA_FULL) break;
                kafka_producer_poll(pr.out, 10);
            }
        }
        kafka_records_release(recs, (size_t)n);
        if (r == KAFKA_OK && hold > 0 && commits == (uint64_t)hold && !held) {
            held = true;
            kafka_producer_flush(pr.out, 30000);   /* the output is on the broker, uncommitted */
            say("holding");
            char b;
            if (read(0, &b, 1) != 1) { /* the test closed stdin: go on all the same */ }
        }
        if (r == KAFKA_OK) r = kafka_txn_commit(pr.out, pr.in, pr.timeout_ms);
        if (r == KAFKA_OK) {
            total += (uint64_t)n;
            commits++;
            say("commit ok %" PRIu64, total);
            continue;
        }
        say("commit %s", kafka_result_name(r));
        if (r == KAFKA_FENCED) {
            say("fenced");
            rc = 3;
            break;
        }
        if (r != KAFKA_ABORTED) {
            /* not rewound: abort and rewind before going on */
            kafka_result a = kafka_txn_abort(pr.out, pr.in, pr.timeout_ms);
            if (a == KAFKA_FENCED) {
                say("fenced");
                rc = 3;
                break;
            }
        }
    }
    kafka_consumer_free(pr.in);
    kafka_producer_free(pr.out, 5000);
    say("exit %d", rc);
    return rc;
}

/* ------------------------------------------------------------------ children (parent side) */

typedef struct child {
    pid_t pid;
    int out_fd, in_fd;       /* its stdout (read), its stdin (write) */
    char log[65536];         /* every line it said, bounded */
    size_t len;
    int status;
    bool exited, eof;        /* eof: its stdout closed (it exited) */
} child;

static child children[MAX_CHILDREN];
static size_t nchildren;

static void kill_children(void) {
    for (size_t i = 0; i < nchildren; i++) {
        child *c = &children[i];
        if (c->pid > 0 && !c->exited) {
            kill(c->pid, SIGCONT);
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->exited = true;
        }
    }
}

static child *spawn_processor(const char *group, const char *in, const char *out, const char *txn_id, int batch,
                              int hold, int txn_timeout_ms) {
    if (nchildren == MAX_CHILDREN) return NULL;
    int o[2], i[2];
    if (pipe(o) != 0) return NULL;
    if (pipe(i) != 0) {
        close(o[0]);
        close(o[1]);
        return NULL;
    }
    char sb[16], sh[16], st[16];
    snprintf(sb, sizeof sb, "%d", batch);
    snprintf(sh, sizeof sh, "%d", hold);
    snprintf(st, sizeof st, "%d", txn_timeout_ms);
    pid_t pid = fork();
    if (pid < 0) return NULL;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the test */
        dup2(o[1], 1);
        dup2(i[0], 0);
        close(o[0]);
        close(o[1]);
        close(i[0]);
        close(i[1]);
        execl("/proc/self/exe", "test_kafka_log", "processor", brokers, group, in, out, txn_id, sb, sh, st,
              (char *)NULL);
        _exit(127);
    }
    close(o[1]);
    close(i[0]);
    child *c = &children[nchildren++];
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->out_fd = o[0];
    c->in_fd = i[1];
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    return c;
}

/* reads what c said so far (waiting up to wait_ms for something) */
static void child_read(child *c, int wait_ms) {
    struct pollfd p = {.fd = c->out_fd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) <= 0) return;
    for (int i = 0; i < 64; i++) {
        if (c->len + 1 >= sizeof c->log) return;
        ssize_t n = read(c->out_fd, c->log + c->len, sizeof c->log - 1 - c->len);
        if (n == 0) c->eof = true;
        if (n <= 0) return;
        c->len += (size_t)n;
        c->log[c->len] = '\0';
    }
}

/* the first whole line at or after offset from that starts with prefix;
 * its offset, or -1 */
static long find_line(const child *c, size_t from, const char *prefix) {
    size_t plen = strlen(prefix);
    size_t at = from;
    while (at < c->len) {
        const char *nl = memchr(c->log + at, '\n', c->len - at);
        if (!nl) return -1;   /* a line still being written */
        if ((size_t)(nl - (c->log + at)) >= plen && memcmp(c->log + at, prefix, plen) == 0) return (long)at;
        at = (size_t)(nl - c->log) + 1;
    }
    return -1;
}

/* waits (bounded) until c says a line starting with prefix at or after from */
static long wait_line(child *c, size_t from, const char *prefix, int timeout_ms) {
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        long at = find_line(c, from, prefix);
        if (at >= 0) return at;
        if (now_ms() >= end || c->eof) return -1;   /* it said all it will say */
        child_read(c, 100);
    }
}

/* SIGTERM, then waits for its exit (SIGKILL after timeout_ms); its status */
static int child_stop(child *c, int timeout_ms) {
    if (c->exited) return c->status;
    kill(c->pid, SIGCONT);
    kill(c->pid, SIGTERM);
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (c->eof) sleep_ms(50);   /* poll no longer waits on a closed pipe */
        child_read(c, 50);
        pid_t w = waitpid(c->pid, &c->status, WNOHANG);
        if (w == c->pid) break;
        if (now_ms() >= end) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
            break;
        }
    }
    child_read(c, 0);
    c->exited = true;
    return c->status;
}

/* waits until c is stopped by a signal (SIGSTOP delivered) */
static int child_wait_stopped(child *c, int timeout_ms) {
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (now_ms() < end) {
        int st;
        pid_t w = waitpid(c->pid, &st, WUNTRACED | WNOHANG);
        if (w == c->pid && WIFSTOPPED(st)) return 0;
        if (w == c->pid) {
            c->exited = true;
            c->status = st;
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

/* ------------------------------------------------------------------ topics, input, reading back */

static int topic(const char *name, int partitions) {
    char err[KAFKA_LOG_ERRLEN];
    if (kafka_create_topic(brokers, name, partitions, 1, 30000, err) != 0) {
        fprintf(stderr, "  create %s: %s\n", name, err);
        return -1;
    }
    return 0;
}

static uint64_t delivered_ok, delivered_failed;
static void count_delivery(void *opaque, int ok, int32_t partition, int64_t offset) {
    (void)opaque;
    (void)partition;
    (void)offset;
    if (ok) delivered_ok++;
    else delivered_failed++;
}

/* keys 1..nkeys, per_key records each, "KEY:SEQ", interleaved across keys;
 * idempotent, not transactional. 0 when every record was acknowledged. */
static int produce_input(const char *name, int nkeys, int per_key) {
    char err[KAFKA_LOG_ERRLEN];
    kafka_producer_config pc = {.brokers = brokers, .on_delivery = count_delivery};
    kafka_producer *p = kafka_producer_new(&pc, 30000, err);
    if (!p) {
        fprintf(stderr, "  producer: %s\n", err);
        return -1;
    }
    delivered_ok = delivered_failed = 0;
    int rc = 0;
    for (int s = 0; s < per_key && rc == 0; s++) {
        for (int k = 1; k <= nkeys && rc == 0; k++) {
            char v[48];
            int len = snprintf(v, sizeof v, "%d:%d", k, s);
            kafka_result r = KAFKA_FULL;
            for (int tries = 0; tries < 1000 && r == KAFKA_FULL; tries++) {
                r = kafka_produce(p, name, (uint64_t)k, v, (size_t)len);
                if (r == KAFKA_FULL) kafka_producer_poll(p, 10);
            }
            if (r != KAFKA_OK) rc = -1;
        }
    }
    if (kafka_producer_flush(p, 60000) != 0) rc = -1;
    kafka_producer_poll(p, 0);
    kafka_producer_free(p, 5000);
    uint64_t want = (uint64_t)nkeys * (uint64_t)per_key;
    if (rc == 0 && (delivered_ok != want || delivered_failed)) {
        fprintf(stderr, "  input: %" PRIu64 " acknowledged, %" PRIu64 " failed, %" PRIu64 " sent\n", delivered_ok,
                delivered_failed, want);
        rc = -1;
    }
    return rc;
}

typedef struct seen {
    uint64_t key;
    int seq;
    int32_t partition;
    char value[48];
} seen;

static seen got[MAX_READ];
static size_t ngot;

/* reads every committed record of name (read_committed, from the
 * beginning) until at least want have arrived and every partition is at
 * its end, or WAIT_MS passes. The count read. */
static size_t read_topic(const char *name, size_t want) {
    char err[KAFKA_LOG_ERRLEN];
    const char *topics[] = {name};
    kafka_consumer_config cc = {.brokers = brokers, .topics = topics, .ntopics = 1};
    kafka_consumer *c = kafka_consumer_new(&cc, err);
    ngot = 0;
    if (!c) {
        fprintf(stderr, "  reader: %s\n", err);
        return 0;
    }
    uint64_t end = now_ms() + WAIT_MS;
    kafka_record recs[500];
    while (now_ms() < end) {
        int n = kafka_consumer_poll(c, recs, 500, 200);
        for (int i = 0; i < n; i++) {
            if (ngot < MAX_READ) {
                seen *s = &got[ngot];
                s->key = recs[i].key;
                s->partition = recs[i].partition;
                size_t len = recs[i].len < sizeof s->value - 1 ? recs[i].len : sizeof s->value - 1;
                memcpy(s->value, recs[i].value, len);
                s->value[len] = '\0';
                unsigned long long k;
                if (sscanf(s->value, "%llu:%d", &k, &s->seq) != 2 || k != s->key) s->seq = -1;
            }
            ngot++;
        }
        kafka_records_release(recs, n > 0 ? (size_t)n : 0);
        if (ngot >= want && kafka_consumer_eof_count(c) == kafka_consumer_assigned_count(c)) break;
    }
    kafka_consumer_free(c);
    return ngot;
}

/* got[] holds keys 1..nkeys with seq 0..per_key-1 each exactly once, in
 * order per key, each key in one partition. 0, or -1 with the first
 * difference on stderr. partitions_used: how many partitions held keys. */
static int check_exactly_once(int nkeys, int per_key, int *partitions_used) {
    if (ngot > MAX_READ || ngot != (size_t)nkeys * (size_t)per_key) {
        fprintf(stderr, "  read %zu records, want %d\n", ngot, nkeys * per_key);
        return -1;
    }
    int *next = calloc((size_t)nkeys + 1, sizeof *next);
    int32_t *part = calloc((size_t)nkeys + 1, sizeof *part);
    uint64_t used = 0;
    int rc = 0;
    for (size_t i = 0; i < ngot && rc == 0; i++) {
        seen *s = &got[i];
        if (s->key < 1 || s->key > (uint64_t)nkeys || s->seq < 0) {
            fprintf(stderr, "  record %zu: key %" PRIu64 " value '%s'\n", i, s->key, s->value);
            rc = -1;
        } else if (s->seq != next[s->key]) {
            fprintf(stderr, "  key %" PRIu64 ": seq %d where %d was due (%s)\n", s->key, s->seq, next[s->key],
                    s->seq < next[s->key] ? "a duplicate" : "one missing or out of order");
            rc = -1;
        } else if (s->seq > 0 && part[s->key] != s->partition) {
            fprintf(stderr, "  key %" PRIu64 " in partitions %d and %d\n", s->key, part[s->key], s->partition);
            rc = -1;
        } else {
            next[s->key]++;
            part[s->key] = s->partition;
            if (s->partition < 64) used |= 1ull << s->partition;
        }
    }
    free(next);
    free(part);
    if (partitions_used) *partitions_used = __builtin_popcountll(used);
    return rc;
}

/* ------------------------------------------------------------------ cases */

/* (a) many keys over many partitions from an idempotent producer: each key
 * stays in one partition and its records come back once each, in order */
static void per_key_order(void) {
    enum { KEYS = 200, PER_KEY = 50, PARTS = 8 };
    CHECK(topic("order", PARTS) == 0, "create topic");
    CHECK(kafka_topic_partitions(brokers, "order", 10000, (char[KAFKA_LOG_ERRLEN]){0}) == PARTS, "partition count");
    char err[KAFKA_LOG_ERRLEN];
    CHECK(kafka_create_topic(brokers, "order", PARTS + 1, 1, 30000, err) != 0,
          "the same topic with another partition count is refused");
    CHECK(produce_input("order", KEYS, PER_KEY) == 0, "every record acknowledged");
    read_topic("order", KEYS * PER_KEY);
    int used = 0;
    CHECK(check_exactly_once(KEYS, PER_KEY, &used) == 0, "each key once, in order, in one partition");
    CHECK(used == PARTS, "keys spread over %d of %d partitions", used, PARTS);
}

/* (b) a second producer with the same transactional.id fences the first:
 * the first's commit fails fenced, and its output is never visible to a
 * read_committed reader, while the second's is */
static void zombie_fencing(void) {
    CHECK(topic("fence", 2) == 0, "create topic");
    char err[KAFKA_LOG_ERRLEN], txn_id[64];
    const int32_t parts[] = {0, 1};
    CHECK(kafka_log_txn_id(txn_id, sizeof txn_id, "owner-x", "fence", parts, 2) == 0, "txn id");
    CHECK(strcmp(txn_id, "owner-x/fence:0,1") == 0, "txn id '%s'", txn_id);
    CHECK(kafka_log_txn_id(txn_id, 12, "owner-x", "fence", parts, 2) != 0, "a txn id too long for its buffer");
    kafka_producer_config pc = {.brokers = brokers, .transactional_id = txn_id};
    kafka_producer *old = kafka_producer_new(&pc, 30000, err);
    CHECK(old, "first producer: %s", err);
    CHECK(kafka_txn_begin(old, NULL) == KAFKA_OK, "begin");
    CHECK(kafka_produce(old, "fence", 7, "7:zombie", 8) == KAFKA_OK, "produce");
    CHECK(kafka_producer_flush(old, 30000) == 0, "the zombie's record is on the broker, uncommitted");

    kafka_producer *owner = kafka_producer_new(&pc, 30000, err);
    CHECK(owner, "second producer: %s", err);
    CHECK(kafka_txn_begin(owner, NULL) == KAFKA_OK, "begin");
    CHECK(kafka_produce(owner, "fence", 7, "7:0", 3) == KAFKA_OK, "produce");
    kafka_result r = kafka_txn_commit(owner, NULL, 30000);
    CHECK(r == KAFKA_OK, "the new owner commits: %s", kafka_result_name(r));

    r = kafka_txn_commit(old, NULL, 30000);
    CHECK(r == KAFKA_FENCED, "the old owner's commit: %s, want fenced", kafka_result_name(r));
    r = kafka_produce(old, "fence", 7, "7:again", 7);
    CHECK(r == KAFKA_FENCED, "and it cannot produce: %s", kafka_result_name(r));
    kafka_producer_free(old, 1000);
    kafka_producer_free(owner, 5000);

    read_topic("fence", 1);
    CHECK(ngot == 1, "%zu records visible, want 1", ngot);
    CHECK(strcmp(got[0].value, "7:0") == 0, "the visible record is '%s'", got[0].value);
}

/* (c) consume-transform-produce exactly once: a processor killed with
 * SIGKILL with a transaction open, restarted with the same transactional.id,
 * leaves each record in the output exactly once, in order per key */
static void copy_exactly_once_across_kill(void) {
    enum { KEYS = 40, PER_KEY = 50, PARTS = 4, BATCH = 50, HOLD = 10 };
    CHECK(topic("c-in", PARTS) == 0 && topic("c-out", PARTS) == 0, "create topics");
    CHECK(produce_input("c-in", KEYS, PER_KEY) == 0, "input acknowledged");

    child *p = spawn_processor("g-c", "c-in", "c-out", "copier-c", BATCH, HOLD, 60000);
    CHECK(p, "spawn");
    long held = wait_line(p, 0, "holding", WAIT_MS);
    CHECK(held >= 0, "the processor reached its %d-th commit and holds an open transaction:\n%s", HOLD, p->log);
    CHECK(find_line(p, 0, "commit ok") >= 0, "it committed before");
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &p->status, 0);
    p->exited = true;
    CHECK(WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGKILL, "killed");

    child *again = spawn_processor("g-c", "c-in", "c-out", "copier-c", BATCH, 0, 60000);
    CHECK(again, "respawn");
    read_topic("c-out", KEYS * PER_KEY);
    int st = child_stop(again, 30000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the restarted processor stops cleanly (status %d):\n%s", st,
          again->log);
    read_topic("c-out", KEYS * PER_KEY);   /* again, with nothing running: all there is */
    CHECK(check_exactly_once(KEYS, PER_KEY, NULL) == 0, "each record once, in order per key");
}

/* (d) a stalled owner: processor 1 is SIGSTOPped with a transaction open
 * for longer than the session timeout; processor 2 (same group) takes its
 * partitions and finishes; processor 1, continued, cannot commit, and the
 * output holds each record exactly once */
static void stalled_owner_is_fenced(void) {
    enum { KEYS = 40, PER_KEY = 50, PARTS = 4, BATCH = 50, HOLD = 5 };
    CHECK(topic("d-in", PARTS) == 0 && topic("d-out", PARTS) == 0, "create topics");
    CHECK(produce_input("d-in", KEYS, PER_KEY) == 0, "input acknowledged");

    child *p1 = spawn_processor("g-d", "d-in", "d-out", "copier-d1", BATCH, HOLD, ZOMBIE_TXN_TIMEOUT_MS);
    CHECK(p1, "spawn 1");
    long held = wait_line(p1, 0, "holding", WAIT_MS);
    CHECK(held >= 0, "processor 1 holds an open transaction:\n%s", p1->log);
    CHECK(find_line(p1, 0, "assigned 4") >= 0, "processor 1 owned every partition:\n%s", p1->log);
    kill(p1->pid, SIGSTOP);
    CHECK(child_wait_stopped(p1, WAIT_MS) == 0, "processor 1 stopped");

    child *p2 = spawn_processor("g-d", "d-in", "d-out", "copier-d2", BATCH, 0, 60000);
    CHECK(p2, "spawn 2");
    CHECK(wait_line(p2, 0, "assigned 4", WAIT_MS) >= 0, "processor 2 took every partition:\n%s", p2->log);
    /* all of it visible to read_committed: processor 2 finished, and processor
     * 1's open transaction no longer holds the last stable offset back (the
     * coordinator aborted it) */
    read_topic("d-out", KEYS * PER_KEY);
    CHECK(check_exactly_once(KEYS, PER_KEY, NULL) == 0, "while processor 1 is stopped: each record once, in order");

    size_t mark = p1->len;
    kill(p1->pid, SIGCONT);
    CHECK(write(p1->in_fd, "g", 1) == 1, "let processor 1 commit");
    long at = wait_line(p1, mark, "commit ", WAIT_MS);
    CHECK(at >= 0, "processor 1 tried its commit:\n%s", p1->log);
    CHECK(strncmp(p1->log + at, "commit ok", 9) != 0, "the stalled owner committed:\n%s", p1->log + mark);
    CHECK(strncmp(p1->log + at, "commit fenced", 13) == 0 || strncmp(p1->log + at, "commit aborted", 14) == 0,
          "fenced or aborted:\n%s", p1->log + mark);

    int st1 = child_stop(p1, 30000);
    int st2 = child_stop(p2, 30000);
    CHECK(find_line(p1, (size_t)at, "commit ok") < 0, "processor 1 never committed after it was continued:\n%s",
          p1->log + at);
    CHECK(WIFEXITED(st2) && WEXITSTATUS(st2) == 0, "processor 2 stops cleanly (%d)", st2);
    CHECK(WIFEXITED(st1) && (WEXITSTATUS(st1) == 3 || WEXITSTATUS(st1) == 0), "processor 1 exit (%d)", st1);
    read_topic("d-out", KEYS * PER_KEY);
    CHECK(check_exactly_once(KEYS, PER_KEY, NULL) == 0, "at the end: each record once, in order per key");
}

/* the owner of a consumer in the in-process cases: what its callback saw */
typedef struct watcher {
    int assigned, revoked, lost;
    size_t held;              /* partitions held now */
} watcher;

static void watch(void *owner, kafka_rebalance what, const kafka_partition *parts, size_t n) {
    (void)parts;
    watcher *w = owner;
    if (what == KAFKA_ASSIGNED) {
        w->assigned++;
        w->held += n;
    } else {
        if (what == KAFKA_LOST) w->lost++;
        else w->revoked++;
        w->held = 0;   /* eager: everything goes */
    }
}

/* (e) an owner whose partitions were revoked while its transaction was
 * open cannot commit that transaction, even though it has rejoined the
 * group and the broker would take its new generation: the library aborts
 * it, rewinds, and nothing of it is visible */
static void revoked_during_transaction_aborts(void) {
    enum { KEYS = 10, PER_KEY = 10, PARTS = 2 };
    CHECK(topic("e-in", PARTS) == 0 && topic("e-out", PARTS) == 0, "create topics");
    CHECK(produce_input("e-in", KEYS, PER_KEY) == 0, "input acknowledged");
    char err[KAFKA_LOG_ERRLEN];
    const char *topics[] = {"e-in"};
    watcher w1 = {0}, w2 = {0};
    kafka_consumer_config cc = {.brokers = brokers, .group = "g-e", .topics = topics, .ntopics = 1,
                                .session_timeout_ms = SESSION_MS, .on_rebalance = watch, .owner = &w1};
    kafka_consumer *c1 = kafka_consumer_new(&cc, err);
    CHECK(c1, "consumer 1: %s", err);
    kafka_producer_config pc = {.brokers = brokers, .transactional_id = "guard-e"};
    kafka_producer *p = kafka_producer_new(&pc, 30000, err);
    CHECK(p, "producer: %s", err);
    kafka_record recs[100];
    int n = 0;
    for (uint64_t end = now_ms() + WAIT_MS; n == 0 && now_ms() < end;) n = kafka_consumer_poll(c1, recs, 100, 200);
    CHECK(n > 0 && w1.held == PARTS, "consumer 1 owns both partitions and read %d records", n);
    CHECK(kafka_txn_begin(p, c1) == KAFKA_OK, "begin");
    for (int i = 0; i < n; i++)
        CHECK(kafka_produce(p, "e-out", recs[i].key, recs[i].value, recs[i].len) == KAFKA_OK, "produce");
    kafka_records_release(recs, (size_t)n);

    /* a second member joins: consumer 1 is revoked, then both get a share */
    cc.owner = &w2;
    kafka_consumer *c2 = kafka_consumer_new(&cc, err);
    CHECK(c2, "consumer 2: %s", err);
    for (uint64_t end = now_ms() + WAIT_MS; now_ms() < end && !(w1.revoked && w1.held && w2.held);) {
        int a = kafka_consumer_poll(c1, recs, 100, 100);
        kafka_records_release(recs, a > 0 ? (size_t)a : 0);
        int b = kafka_consumer_poll(c2, recs, 100, 100);
        kafka_records_release(recs, b > 0 ? (size_t)b : 0);
    }
    CHECK(w1.revoked >= 1 && w1.held >= 1 && w2.held >= 1, "rebalanced: 1 revoked %d, holds %zu; 2 holds %zu",
          w1.revoked, w1.held, w2.held);
    kafka_result r = kafka_txn_commit(p, c1, 30000);
    CHECK(r == KAFKA_ABORTED, "commit after a revocation: %s, want aborted", kafka_result_name(r));
    CHECK(!kafka_txn_open(p), "nothing left open");
    kafka_producer_free(p, 5000);
    kafka_consumer_free(c2);
    kafka_consumer_free(c1);
    read_topic("e-out", 0);
    CHECK(ngot == 0, "%zu records of the aborted transaction visible", ngot);
}

/* (f) the broker frozen (SIGSTOP) while records are produced, then thawed:
 * every record is acknowledged once and read back once, in order per key */
static void produce_through_frozen_broker(void) {
    enum { KEYS = 20, PER_KEY = 20, PARTS = 3 };
    CHECK(topic("f-log", PARTS) == 0, "create topic");
    char err[KAFKA_LOG_ERRLEN];
    /* room for exactly the records of this case: one more is refused */
    kafka_producer_config pc = {.brokers = brokers, .on_delivery = count_delivery, .max_queued = KEYS * PER_KEY};
    kafka_producer *p = kafka_producer_new(&pc, 30000, err);
    CHECK(p, "producer: %s", err);
    delivered_ok = delivered_failed = 0;
    CHECK(kafka_node_freeze(30000) == 0, "broker frozen");
    int queued = 0;
    for (int s = 0; s < PER_KEY; s++) {
        for (int k = 1; k <= KEYS; k++) {
            char v[48];
            int len = snprintf(v, sizeof v, "%d:%d", k, s);
            if (kafka_produce(p, "f-log", (uint64_t)k, v, (size_t)len) == KAFKA_OK) queued++;
        }
    }
    kafka_result over = kafka_produce(p, "f-log", 1, "1:extra", 7);
    kafka_producer_poll(p, 500);
    uint64_t during = delivered_ok;
    CHECK(kafka_node_thaw() == 0, "broker continued");
    int flushed = kafka_producer_flush(p, WAIT_MS);
    kafka_producer_poll(p, 0);
    kafka_producer_free(p, 5000);
    CHECK(queued == KEYS * PER_KEY, "queued %d", queued);
    CHECK(over == KAFKA_FULL, "one record beyond max_queued: %s, want full", kafka_result_name(over));
    CHECK(during == 0, "%" PRIu64 " acknowledged by a frozen broker", during);
    CHECK(flushed == 0 && delivered_ok == KEYS * PER_KEY && delivered_failed == 0,
          "after the thaw: %" PRIu64 " acknowledged, %" PRIu64 " failed", delivered_ok, delivered_failed);
    read_topic("f-log", KEYS * PER_KEY);
    CHECK(check_exactly_once(KEYS, PER_KEY, NULL) == 0, "each record once, in order per key");
}

/* waits (bounded) until fd is readable: 0, or -1 */
static int wait_readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) ? 0 : -1;
}

/* the owner's loop sleeps on the handles' eventfds, not inside librdkafka:
 * a delivery report makes the producer's readable, a record the
 * consumer's, and a poll with timeout 0 then serves them */
static void eventfds_wake_the_owner(void) {
    CHECK(topic("h-log", 1) == 0, "create topic");
    char err[KAFKA_LOG_ERRLEN];
    kafka_producer_config pc = {.brokers = brokers, .on_delivery = count_delivery};
    kafka_producer *p = kafka_producer_new(&pc, 30000, err);
    CHECK(p, "producer: %s", err);
    delivered_ok = delivered_failed = 0;
    CHECK(kafka_produce(p, "h-log", 5, "5:0", 3) == KAFKA_OK, "produce");
    for (uint64_t end = now_ms() + WAIT_MS; delivered_ok + delivered_failed == 0 && now_ms() < end;) {
        if (wait_readable(kafka_producer_fd(p), 1000) == 0) kafka_producer_poll(p, 0);
    }
    uint64_t via_fd = delivered_ok;   /* before the free, which serves reports itself */
    kafka_producer_free(p, 5000);
    CHECK(via_fd == 1, "the delivery report came through the producer's eventfd");

    const char *topics[] = {"h-log"};
    kafka_consumer_config cc = {.brokers = brokers, .topics = topics, .ntopics = 1};
    kafka_consumer *c = kafka_consumer_new(&cc, err);
    CHECK(c, "reader: %s", err);
    kafka_record rec;
    int n = 0;
    for (uint64_t end = now_ms() + WAIT_MS; n == 0 && now_ms() < end;) {
        if (wait_readable(kafka_consumer_fd(c), 1000) == 0) n = kafka_consumer_poll(c, &rec, 1, 0);
    }
    bool same = n == 1 && rec.key == 5 && rec.len == 3 && memcmp(rec.value, "5:0", 3) == 0;
    if (n > 0) kafka_records_release(&rec, 1);
    kafka_consumer_free(c);
    CHECK(same, "the record came through the consumer's eventfd (%d)", n);
}

/* (g) the log survives a broker restart (SIGTERM, start on the same
 * directory and port): what was acknowledged before is read back, and a
 * producer writes again after it */
static void log_survives_broker_restart(void) {
    enum { KEYS = 20, PER_KEY = 10, PARTS = 3 };
    CHECK(topic("g-log", PARTS) == 0, "create topic");
    CHECK(produce_input("g-log", KEYS, PER_KEY) == 0, "acknowledged before the restart");
    pid_t before = kafka_node_pid();
    CHECK(kafka_node_restart() == 0, "restarted");
    CHECK(kafka_node_pid() != before, "a new broker process");
    CHECK(strcmp(kafka_node_brokers(), brokers) == 0, "on the same address");
    read_topic("g-log", KEYS * PER_KEY);
    CHECK(check_exactly_once(KEYS, PER_KEY, NULL) == 0, "everything acknowledged is there, once, in order");
    CHECK(topic("g-log2", 1) == 0 && produce_input("g-log2", 1, 5) == 0, "and a producer writes after it");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "processor") == 0) return processor_main(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* the coordinator looks for timed-out transactions every second, so a
     * stalled owner's transaction is aborted soon after its timeout */
    const char *props[] = {"transaction.abort.timed.out.transaction.cleanup.interval.ms=1000", NULL};
    uint64_t t0 = now_ms();
    if (kafka_node_start("kafka-log", props) != 0) {
        printf("FAIL broker_start\n");
        return 1;
    }
    static char brokers_at_start[64];   /* kept apart: a restart rewrites the helper's */
    snprintf(brokers_at_start, sizeof brokers_at_start, "%s", kafka_node_brokers());
    brokers = brokers_at_start;
    check_note("kafka broker ready in %" PRIu64 " ms (pid %d, %s)", now_ms() - t0, (int)kafka_node_pid(), brokers);
    atexit(kill_children);
    RUN(per_key_order);
    RUN(zombie_fencing);
    RUN(copy_exactly_once_across_kill);
    RUN(stalled_owner_is_fenced);
    RUN(revoked_during_transaction_aborts);
    RUN(produce_through_frozen_broker);
    RUN(eventfds_wake_the_owner);
    RUN(log_survives_broker_restart);
    kill_children();
    kafka_node_stop();
    CHECK_EXIT();
}
