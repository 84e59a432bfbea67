/* test_retention_restart.c -- retention across a restart: messages stored
 * by one run expire while the server is down or after it is back, vanish
 * from history and sync, are removed from disk by the restarted server's
 * sweeper (the data directory shrinks, parley_retention_removed_total
 * counts them), and the conversation goes on with new seqs, never reusing
 * the expired ones. (test_retention covers expiry within one run.) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 20000,
    EXPIRE_WAIT_MS = 60000,     /* liveness bound: retention is 3 s */
    N_MESSAGES = 300,
    BODY = 30000,               /* 300 x 30 KB: ~9 MB of messages */
};

static h_server S;

/* Bytes of every regular file under path (bounded depth). */
static long long dir_bytes(const char *path, int depth) {
    DIR *d = opendir(path);
    if (!d) return 0;
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0) continue;
        if (S_ISREG(sb.st_mode)) total += (long long)sb.st_size;
        else if (S_ISDIR(sb.st_mode) && depth < 4) total += dir_bytes(p, depth + 1);
    }
    closedir(d);
    return total;
}

static size_t history_count(h_dev *d, uint64_t conv, uint64_t *newest) {
    Parley__V1__HistoryPage *p = NULL;
    if (pc_history(d->c, conv, 0, 200, &p) != 0) return (size_t)-1;
    size_t n = p->n_messages;
    if (newest) *newest = n ? p->messages[n - 1]->seq : 0;
    parley__v1__history_page__free_unpacked(p, NULL);
    return n;
}

static void expired_across_a_restart_and_removed_from_disk(void) {
    /* the first run sweeps once an hour, i.e. never here: what it stored is
     * still on disk when it stops; the second run sweeps every 500 ms */
    const char *args[] = {"--retention", "3s", "--retention-sweep", "3600000", "--send-rate",
                          "100000", NULL};
    NEED(h_server_start(&S, args) == 0);
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    /* b writes first: where a direct conversation from a stranger is a
     * message request with a few messages allowed, answering accepts it */
    NEED(h_send(b, conv, "hi a") != 0);
    char *body = h_calloc(1, BODY + 1);
    NEED(body);
    uint64_t last = 0;
    for (int i = 0; i < N_MESSAGES; i++) {
        /* a different body each time, so compression does not hide the size */
        for (int j = 0; j < BODY; j++) body[j] = (char)('a' + (j * 7 + i * 13 + (j >> 5)) % 26);
        uint64_t s = h_send(a, conv, body);
        CHECK(s != 0, "send %d failed", i);
        last = s;
    }
    h_free(body);
    /* stop, and look at the data as the first run left it */
    NEED(h_server_stop(&S) >= 0);
    long long stored = dir_bytes(S.data, 0);
    fprintf(stderr, "  data directory after the first run: %lld bytes\n", stored);
    CHECK(stored > (long long)N_MESSAGES * BODY / 2, "only %lld bytes on disk for ~9 MB sent",
          stored);

    for (int i = 0; i + 1 < S.n_extra; i++) {
        if (strcmp(S.extra[i], "--retention-sweep") != 0) continue;
        free(S.extra[i + 1]);
        S.extra[i + 1] = strdup("500");
    }
    NEED(h_server_restart(&S) == 0);
    /* the messages expire (3 s after they were sent, whether the server was
     * up or not): gone from history ... */
    int gone = 0;
    for (uint64_t until = h_now_ms() + EXPIRE_WAIT_MS; !gone && h_now_ms() < until; h_sleep_ms(200))
        gone = history_count(a, conv, NULL) == 0;
    CHECK(gone, "messages of the first run still in history %d s after the restart",
          EXPIRE_WAIT_MS / 1000);
    /* ... and from b's sync: nothing but what never expires */
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    size_t texts = h_dev_count_type(b, conv, PARLEY__V1__MESSAGE_TYPE__TEXT);
    CHECK(texts == 0, "b's first sync after the restart got %zu expired messages", texts);
    /* ... and from disk, by the restarted server's sweeper */
    double removed = 0;
    long long now = stored;
    for (uint64_t until = h_now_ms() + EXPIRE_WAIT_MS; h_now_ms() < until; h_sleep_ms(200)) {
        h_metric(&S, "parley_retention_removed_total", &removed);
        now = dir_bytes(S.data, 0);
        if (removed >= N_MESSAGES && now < stored / 4) break;
    }
    fprintf(stderr, "  data directory after the sweep: %lld bytes (%.0f records removed)\n", now,
            removed);
    CHECK(removed >= N_MESSAGES, "parley_retention_removed_total %.0f after the restart, want >= %d",
          removed, N_MESSAGES);
    CHECK(now < stored / 4, "data directory %lld bytes, was %lld: not shrunk to a quarter", now,
          stored);
    /* the conversation goes on; seqs are not reused */
    uint64_t s = h_send(a, conv, "after the restart");
    CHECK(s == last + 1, "first seq after the restart %llu, want %llu", (unsigned long long)s,
          (unsigned long long)(last + 1));
    h_count_goal g = {&b, 1, conv, 1, 1};
    CHECK(h_pump(&b, 1, h_pred_count, &g, WAIT_MS), "b did not get the new message");
    CHECK(h_dev_has(b, conv, s) == 1, "b's record lacks seq %llu", (unsigned long long)s);
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(expired_across_a_restart_and_removed_from_disk);
    h_server_destroy(&S);
    CHECK_EXIT();
}
