/* test_e2e_devices.c -- two users with three devices each, end to end
 * encrypted through the real server with libparley's key store:
 *   - in their direct conversation each of the six devices sends a message;
 *     every other device decrypts every one of them, in order, the sender's
 *     own other devices included (nothing fails, nothing else comes out)
 *   - afterwards no plaintext sent is anywhere under the server's directory
 *     (data and log), while a control message sent in the clear is. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../check.h"
#include "e2e/e2e.h"
#include "harness.h"
#include "parley_e2e.h"

enum { WAIT_MS = 20000, MAX_TEXTS = 8, TEXT_MAX = 96, MAX_DONE = 64, SCAN_FILE_MAX = 256 << 20, DEVICES = 6 };

static h_server S;

/* One device and what it has decrypted of conversation conv. */
typedef struct reader {
    h_dev *d;
    pc_e2e *e;
    uint64_t conv;
    char texts[MAX_TEXTS][TEXT_MAX];
    size_t n_texts;
    uint64_t done[MAX_DONE];         /* seqs decrypted or failed for good */
    size_t n_done;
    int dm_failures;                 /* device messages that did not apply */
    int failures;                    /* conversation messages that will never decrypt */
} reader;

static void on_device_message(void *ud, const Parley__V1__DeviceMessage *m) {
    reader *r = ud;
    int st = pc_e2e_handle_device_message(r->e, m);
    if (st != 0) {
        fprintf(stderr, "  %s: device message from %llu/%u: %s\n", r->d->name, (unsigned long long)m->sender_user_id,
                m->sender_device_id, e2e_strerror(st));
        r->dm_failures++;
    }
}

static Parley__V1__Message as_message(const h_event *ev) {
    Parley__V1__Message m = PARLEY__V1__MESSAGE__INIT;
    m.conversation_id = ev->conversation_id;
    m.seq = ev->seq;
    m.sender_user_id = ev->sender_user_id;
    m.sender_device_id = ev->sender_device_id;
    m.body.data = ev->body;
    m.body.len = ev->body_len;
    return m;
}

static int is_done(const reader *r, uint64_t seq) {
    for (size_t i = 0; i < r->n_done; i++)
        if (r->done[i] == seq) return 1;
    return 0;
}

/* Tries every recorded text message of conv not decrypted yet. A message
 * whose sender key has not arrived yet (WRONG_KEY) waits for the device
 * message; any other failure is final. */
static void read_new(reader *r) {
    for (size_t i = 0; i < r->d->n_ev; i++) {
        const h_event *ev = &r->d->ev[i];
        if (ev->conversation_id != r->conv || ev->type != PARLEY__V1__MESSAGE_TYPE__TEXT || is_done(r, ev->seq))
            continue;
        if (ev->sender_user_id == r->d->id.user_id && ev->sender_device_id == r->d->id.device_id) continue;
        Parley__V1__Message m = as_message(ev);
        uint8_t *pt = NULL;
        size_t n = 0;
        int st = pc_e2e_decrypt(r->e, &m, &pt, &n);
        if (st == E2E_ERR_WRONG_KEY) continue;
        if (r->n_done < MAX_DONE) r->done[r->n_done++] = ev->seq;
        if (st == 0 && r->n_texts < MAX_TEXTS) {
            snprintf(r->texts[r->n_texts++], TEXT_MAX, "%.*s", (int)(n < TEXT_MAX - 1 ? n : TEXT_MAX - 1),
                     (const char *)pt);
        } else if (st != 0) {
            fprintf(stderr, "  %s: seq %llu: %s\n", r->d->name, (unsigned long long)ev->seq, e2e_strerror(st));
            r->failures++;
        }
        free(pt);
    }
}

static int has_text(const reader *r, const char *text) {
    for (size_t i = 0; i < r->n_texts; i++)
        if (strcmp(r->texts[i], text) == 0) return 1;
    return 0;
}

typedef struct goal {
    reader **readers;
    size_t n;
    const char *text;                /* each reader has decrypted this one */
} goal;

static int pred_decrypted(void *ud) {
    goal *g = ud;
    int all = 1;
    for (size_t i = 0; i < g->n; i++) {
        read_new(g->readers[i]);
        all &= has_text(g->readers[i], g->text);
    }
    return all;
}

/* ------------------------------------------------------- plaintext scan */

static const char *scan_needle;
static int scan_hits, scan_report;

static int scan_file(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)ftw;
    if (type != FTW_F || st->st_size <= 0 || st->st_size > SCAN_FILE_MAX) return 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    char *buf = malloc((size_t)st->st_size);
    ssize_t got = buf ? read(fd, buf, (size_t)st->st_size) : -1;
    close(fd);
    if (got > 0 && memmem(buf, (size_t)got, scan_needle, strlen(scan_needle))) {
        if (scan_report) fprintf(stderr, "  '%s' found in %s\n", scan_needle, path);
        scan_hits++;
    }
    free(buf);
    return 0;
}

/* How many files under the server's directory (data and log) hold text. */
static int files_holding(const char *text, int report) {
    scan_needle = text;
    scan_report = report;
    scan_hits = 0;
    nftw(S.dir, scan_file, 16, FTW_PHYS);
    return scan_hits;
}

/* ------------------------------------------------------------------ case */

static reader *reader_new(h_dev *d, uint64_t conv) {
    reader *r = h_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->d = d;
    r->conv = conv;
    r->e = pc_e2e_new();
    if (!r->e || pc_e2e_publish(r->e, d->c) != 0) {
        fprintf(stderr, "  %s: publish keys: %s\n", d->name, pc_error(d->c));
        return NULL;
    }
    pc_on_device_message(d->c, on_device_message, r);
    return r;
}

/* in order: the texts a reader decrypted are those sent to it, in the order sent */
static int in_order(const reader *r, char texts[][64], int sender) {
    size_t k = 0;
    for (int i = 0; i < DEVICES; i++) {
        if (i == sender) continue;
        if (k >= r->n_texts || strcmp(r->texts[k], texts[i]) != 0) return 0;
        k++;
    }
    return k == r->n_texts;
}

static void three_devices_each(void) {
    h_dev *d[DEVICES] = {0};
    CHECK((d[0] = h_user_new(&S, NULL)) && (d[3] = h_user_new(&S, NULL)), "alice and bob");
    for (int i = 1; i < 3; i++) CHECK((d[i] = h_device_link(&S, d[0])) && (d[3 + i] = h_device_link(&S, d[3])), "devices");
    uint64_t conv = 0;
    CHECK(pc_open_direct(d[0]->c, d[3]->id.user_id, &conv) == 0 && pc_accept_request(d[3]->c, conv) == 0,
          "direct: %s / %s", pc_error(d[0]->c), pc_error(d[3]->c));
    reader *r[DEVICES] = {0};
    for (int i = 0; i < DEVICES; i++) CHECK((r[i] = reader_new(d[i], conv)) != NULL, "key store %d", i);
    for (int i = 0; i < DEVICES; i++) CHECK(h_dev_sync(d[i], WAIT_MS) == 0, "sync %s", d[i]->name);

    uint64_t members[2] = {d[0]->id.user_id, d[3]->id.user_id};
    char texts[DEVICES][64];
    uint32_t tag = randombytes_random();
    for (int i = 0; i < DEVICES; i++) {
        snprintf(texts[i], sizeof texts[i], "device-%d-secret-%08x", i, tag);
        uint64_t seq = 0;
        CHECK(pc_e2e_send(r[i]->e, d[i]->c, conv, members, 2, texts[i], strlen(texts[i]), &seq) == 0,
              "%s sends: %s", d[i]->name, pc_error(d[i]->c));
        reader *others[DEVICES - 1];
        size_t n = 0;
        for (int j = 0; j < DEVICES; j++)
            if (j != i) others[n++] = r[j];
        goal g = {others, n, texts[i]};
        CHECK(h_pump(d, DEVICES, pred_decrypted, &g, WAIT_MS), "message of device %d not decrypted by all five others",
              i);
    }
    for (int i = 0; i < DEVICES; i++) {
        CHECK(r[i]->n_texts == DEVICES - 1 && in_order(r[i], texts, i), "device %d decrypted %zu texts, or out of order",
              i, r[i]->n_texts);
        CHECK(r[i]->failures == 0 && r[i]->dm_failures == 0, "device %d: failures", i);
    }

    char control[64];
    snprintf(control, sizeof control, "devices-control-clear-%08x", tag);
    CHECK(h_send(d[0], conv, control) != 0, "control message");
    int control_hits = 0;
    for (int i = 0; i < 50 && (control_hits = files_holding(control, 0)) == 0; i++) h_pump(d, DEVICES, NULL, NULL, 100);
    CHECK(control_hits > 0, "the clear control message is nowhere under %s: the scan proves nothing", S.dir);
    for (int i = 0; i < DEVICES; i++) CHECK(files_holding(texts[i], 1) == 0, "plaintext %d is on the server", i);

    for (int i = 0; i < DEVICES; i++) {
        pc_e2e_free(r[i]->e);
        h_free(r[i]);
        h_dev_free(d[i]);
    }
}

int main(void) {
    if (sodium_init() < 0 || h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(three_devices_each);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
