/* e2e_reader.h -- a test device that decrypts what it receives, for the
 * end-to-end encryption tests through the real server (test_e2e_devices,
 * test_e2e_group, test_e2e_keys, test_e2e_strangers): a harness device
 * with libparley's key store (client/parley_e2e.h), the texts of one
 * conversation it has decrypted, and a scan of the server's files for a
 * plaintext. */
#ifndef PARLEY_TESTS_E2E_READER_H
#define PARLEY_TESTS_E2E_READER_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "parley_e2e.h"

enum { READER_TEXTS = 32, READER_TEXT_MAX = 96, READER_DONE = 64 };

/* One device and what it has decrypted of conversation conv. */
typedef struct reader {
    h_dev *d;
    pc_e2e *e;
    uint64_t conv;
    char texts[READER_TEXTS][READER_TEXT_MAX];
    size_t n_texts;
    uint64_t done[READER_DONE];      /* seqs decrypted or failed for good */
    size_t n_done;
    int dm_failures;                 /* device messages that did not apply */
    int failures;                    /* conversation messages that will never decrypt */
} reader;

/* A reader for d (allocated with h_calloc) whose key store is made and
 * published, and which takes d's device messages; NULL on failure. */
reader *reader_new(h_dev *d, uint64_t conv);
/* Tries every recorded text message of conv not decrypted yet. A message
 * whose sender key has not arrived yet (WRONG_KEY) waits for the device
 * message; any other failure is final. */
void read_new(reader *r);
int has_text(const reader *r, const char *text);
/* The recorded event as the message pc_e2e_decrypt takes (borrows its body). */
Parley__V1__Message as_message(const h_event *ev);

/* For h_pump: every reader has decrypted text. */
typedef struct goal {
    reader **readers;
    size_t n;
    const char *text;
} goal;
int pred_decrypted(void *ud);

/* How many files under dir (a server's data and log) hold text; report:
 * name each on stderr. */
int files_holding(const char *dir, const char *text, int report);

#endif
