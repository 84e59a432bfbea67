/* e2e_reader.c -- see e2e_reader.h. */
#include "e2e_reader.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e/e2e.h"

enum { SCAN_FILE_MAX = 256 << 20 };

static void on_device_message(void *ud, const Parley__V1__DeviceMessage *m) {
    reader *r = ud;
    int st = pc_e2e_handle_device_message(r->e, m);
    if (st != 0) {
        fprintf(stderr, "  %s: device message from %llu/%u: %s\n", r->d->name, (unsigned long long)m->sender_user_id,
                m->sender_device_id, e2e_strerror(st));
        r->dm_failures++;
    }
}

Parley__V1__Message as_message(const h_event *ev) {
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

void read_new(reader *r) {
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
        if (r->n_done < READER_DONE) r->done[r->n_done++] = ev->seq;
        if (st == 0 && r->n_texts < READER_TEXTS) {
            snprintf(r->texts[r->n_texts++], READER_TEXT_MAX, "%.*s", (int)(n < READER_TEXT_MAX - 1 ? n : READER_TEXT_MAX - 1),
                     (const char *)pt);
        } else if (st != 0) {
            fprintf(stderr, "  %s: seq %llu: %s\n", r->d->name, (unsigned long long)ev->seq, e2e_strerror(st));
            r->failures++;
        }
        free(pt);
    }
}

int has_text(const reader *r, const char *text) {
    for (size_t i = 0; i < r->n_texts; i++)
        if (strcmp(r->texts[i], text) == 0) return 1;
    return 0;
}

int pred_decrypted(void *ud) {
    goal *g = ud;
    int all = 1;
    for (size_t i = 0; i < g->n; i++) {
        read_new(g->readers[i]);
        all &= has_text(g->readers[i], g->text);
    }
    return all;
}

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

int files_holding(const char *dir, const char *text, int report) {
    scan_needle = text;
    scan_report = report;
    scan_hits = 0;
    nftw(dir, scan_file, 16, FTW_PHYS);
    return scan_hits;
}

reader *reader_new(h_dev *d, uint64_t conv) {
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
