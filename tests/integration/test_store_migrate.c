/* test_store_migrate.c -- `parley store export` and `parley store import`
 * move a server's data to a new store: messages sent to one server are
 * exported from its data directory, imported into a fresh one, and a
 * server started on the imported store answers history and sync with the
 * same messages (seq, sender, text) and goes on with the next seq. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 20000, N_MESSAGES = 40 };

static h_server S;

/* runs `parley store VERB --data DIR` with stdin or stdout on file,
 * bounded by timeout(1); returns its exit status */
static int store_cli(const char *verb, const char *dir, const char *file, int output) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 300 '%s' store %s --data '%s' %s '%s' 2>>'%s'", S.bin, verb, dir,
             output ? ">" : "<", file, S.log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void history_and_sync_from_an_imported_store(void) {
    const char *args[] = {"--send-rate", "100000", NULL};
    NEED(h_server_start(&S, args) == 0);
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    static h_sent exp[N_MESSAGES + 1];
    size_t n = 0;
    /* b first: a stranger's direct conversation is accepted by answering it */
    NEED(h_send_rec(b, conv, "hi a", exp, &n) == 0);
    for (int i = 1; i < N_MESSAGES; i++) {
        char text[32];
        snprintf(text, sizeof text, "message %d", i);
        NEED(h_send_rec(a, conv, text, exp, &n) == 0);
    }
    NEED(h_server_stop(&S) >= 0);

    /* export, import into a fresh directory, and put it where the server
     * looks for its data */
    char file[400], imported[400], old[400];
    snprintf(file, sizeof file, "%s/export.bin", S.dir);
    snprintf(imported, sizeof imported, "%s/imported", S.dir);
    snprintf(old, sizeof old, "%s/exported-from", S.dir);
    CHECK(store_cli("export", S.data, file, 1) == 0, "export failed (see %s)", S.log);
    CHECK(store_cli("import", imported, file, 0) == 0, "import failed (see %s)", S.log);
    CHECK(store_cli("import", imported, file, 0) != 0, "a second import over the first was accepted");
    NEED(rename(S.data, old) == 0);
    NEED(rename(imported, S.data) == 0);
    NEED(h_server_restart(&S) == 0);

    /* history: the same messages, oldest first */
    size_t got = 0;
    h_event *hist = NULL;
    for (uint64_t until = h_now_ms() + WAIT_MS; !hist && h_now_ms() < until; h_sleep_ms(200))
        hist = h_history_all(a, conv, &got);
    NEED(hist);
    size_t texts = 0;
    for (size_t i = 0; i < got; i++) {
        if (hist[i].type != PARLEY__V1__MESSAGE_TYPE__TEXT) continue;
        CHECK(texts < n && hist[i].seq == exp[texts].seq && hist[i].sender_user_id == exp[texts].sender &&
                  h_event_body_is(&hist[i], exp[texts].text),
              "history message %zu is not message %zu as sent", i, texts);
        texts++;
    }
    h_events_free(hist, got);
    CHECK(texts == n, "history has %zu of the %zu messages", texts, n);

    /* sync: b's inbox from its start */
    h_dev_clear(b);
    NEED(h_dev_reconnect(&S, b, 0) == 0);
    NEED(h_dev_sync(b, WAIT_MS) == 0);
    char why[256];
    CHECK(h_expect_exact(b, conv, exp, n, why, sizeof why) == 0, "b's sync: %s", why);

    /* the conversation goes on after the last imported seq */
    uint64_t s = h_send(a, conv, "after the move");
    CHECK(s == exp[n - 1].seq + 1, "first seq on the imported store %llu, want %llu", (unsigned long long)s,
          (unsigned long long)(exp[n - 1].seq + 1));
    h_dev_free(a);
    h_dev_free(b);
    h_server_destroy(&S);
}

int main(void) {
    RUN(history_and_sync_from_an_imported_store);
    h_server_destroy(&S);
    CHECK_EXIT();
}
