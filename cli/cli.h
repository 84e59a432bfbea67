/* cli.h -- parley-cli's parts, shared between its files.
 *
 * main.c         arguments, the subcommands
 * state.c        the --state directory: identity and sync position, written atomically
 * json.c         JSON lines for events and conversations
 * interactive.c  the terminal chat (no subcommand)
 * realtime_cmds.c presence, receipts, typing, devices, remove-device
 * e2e_cli.c      end-to-end encryption (the default): key store, send, sync, verify
 * plaintext_store.c what this device decrypted or sent, for history */
#ifndef PARLEY_CLI_H
#define PARLEY_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "parley.h"

#define CLI_NAME "parley-cli"
#define CLI_DEFAULT_SERVER "ws://127.0.0.1:8080"

enum { CLI_URL_MAX = 512, CLI_NAME_MAX = 64 };

/* ---------------------------------------------------------------- state */

typedef struct cli_identity {
    pc_identity id;
    char server[CLI_URL_MAX];   /* the server the device registered with */
    char name[CLI_NAME_MAX];    /* the user's name, "" when unknown (linked device) */
} cli_identity;

typedef struct cli_seen {
    uint64_t conv, seq;
} cli_seen;

typedef struct cli_sync_state {
    uint64_t cursor;
    cli_seen *seen;             /* owned */
    size_t n_seen, cap_seen;
} cli_sync_state;

/* Creates dir (mode 0700) if it does not exist. 0, or -1 with errno. */
int state_ensure_dir(const char *dir);
/* Takes an exclusive lock on dir/lock for this process's life, so two
 * parley-cli never interleave their sync state. 0, or -1 (message in err). */
int state_lock(const char *dir, char *err, size_t cap);
/* 1 loaded, 0 no identity yet, -1 unreadable or corrupt (message in err). */
int state_load_identity(const char *dir, cli_identity *out, char *err, size_t cap);
int state_save_identity(const char *dir, const cli_identity *id, char *err, size_t cap);
/* A missing file is an empty state (cursor 0). 0 or -1. */
int state_load_sync(const char *dir, cli_sync_state *out, char *err, size_t cap);
/* Saves pc_cursor(c) and every seen seq of c. 0 or -1. */
int state_save_sync(const char *dir, const pc_client *c, char *err, size_t cap);
/* A binary state file, written whole (0600, temp file + fsync + rename) and
 * read whole (at most max bytes): 1 read, 0 missing, -1 error. */
int state_write_blob(const char *dir, const char *file, const uint8_t *data, size_t len, char *err, size_t cap);
int state_read_blob(const char *dir, const char *file, size_t max, uint8_t **out, size_t *len, char *err,
                    size_t cap);
void state_sync_free(cli_sync_state *s);

/* ------------------------------------- plaintext store (plaintext_store.c) */

enum { PT_STORE_MAX = 64 << 20, PT_TEXT_MAX = 65536 };

typedef struct pt_store {   /* the file read whole; owns data */
    uint8_t *data;
    size_t len;
} pt_store;

/* Appends what this device decrypted or sent of (conv, seq) to the state
 * file "plaintext" (0600). 0, or -1 (no room under PT_STORE_MAX, or an I/O error). */
int pt_store_put(const char *dir, uint64_t conv, uint64_t seq, const void *text, size_t len);
/* A missing file is an empty store. 0, or -1 (message in err). */
int pt_store_load(const char *dir, pt_store *out, char *err, size_t cap);
/* 1 and the text (inside s), or 0 when this device has none for (conv, seq). */
int pt_store_find(const pt_store *s, uint64_t conv, uint64_t seq, const uint8_t **text, size_t *len);
void pt_store_free(pt_store *s);

/* ----------------------------------------------------------------- json */

/* One JSON line (with '\n') for an event; user_seq 0: omitted (history). */
void json_print_message(FILE *out, uint64_t user_seq, const Parley__V1__Message *m);
/* The same line for a message that could not be decrypted: no text or body,
 * "undecryptable": why. */
void json_print_undecryptable(FILE *out, uint64_t user_seq, const Parley__V1__Message *m, const char *why);
void json_print_conversation(FILE *out, const Parley__V1__ConversationSummary *s);
/* One JSON line for a typing indicator: {"conv","type":"typing","user","device","typing"}. */
void json_print_typing(FILE *out, const Parley__V1__TypingIndicator *t);
/* A JSON string literal for s[0..len): escapes quotes, backslashes and
 * control characters; invalid UTF-8 bytes become U+FFFD. */
void json_print_string(FILE *out, const char *s, size_t len);
const char *json_type_name(int type);
const char *json_action_name(int action);
const char *json_kind_name(int kind);

/* ---------------------------------------------------------- interactive */

typedef struct cli_ctx {
    const char *state_dir;
    char server[CLI_URL_MAX];
    const char *tls_ca;         /* --tls-ca FILE for wss://, NULL: system store */
    cli_identity ident;
    pc_client *c;
} cli_ctx;

/* A connected client signed in as ctx->ident, or NULL after printing the
 * error for cmd. */
pc_client *cli_connect(cli_ctx *ctx, const char *cmd, bool sign_in);
/* Prints "parley-cli: cmd: <error> (<status>)" for c's last failure. */
void cli_report(const char *cmd, const pc_client *c);
/* Resolves a user name to an id; prints the error for cmd. 0 or -1. */
int cli_resolve_user(pc_client *c, const char *cmd, const char *name, uint64_t *id);
/* Strict unsigned decimal. 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);

int cli_interactive(cli_ctx *ctx);

/* ------------------------------------------------------ real time (realtime_cmds.c) */

/* Each returns the exit status, after printing the error if any. */
/* One JSON line per distinct user {user, name, online, last_seen}; then, for
 * watch_s seconds (0: none), one per change. */
int cli_cmd_presence(cli_ctx *ctx, const char *const *names, int n_names, uint64_t watch_s);
/* One JSON line per member {user, delivered_seq, read_seq}. */
int cli_cmd_receipts(cli_ctx *ctx, uint64_t conv);
int cli_cmd_typing(cli_ctx *ctx, uint64_t conv, bool typing);
/* One JSON line {user, change_counter, devices}; user_name NULL: one's own. */
int cli_cmd_devices(cli_ctx *ctx, const char *user_name);

/* ------------------------------------------- end-to-end encryption (e2e_cli.c) */

/* send (the default; not --plaintext): encrypts text for conv's members
 * (from ListConversations) with the device's key store (state file "e2e",
 * made and published at register or first use), sends it, keeps the text
 * in the plaintext store; prints the seq. Returns the exit status. */
int cli_e2e_send(cli_ctx *ctx, uint64_t conv, const char *text, size_t len);
/* sync: begin (NULL after printing why) hooks device messages into the key
 * store; event prints a message decrypted (or from the plaintext store), or
 * keeps it while its sender key may still be on its way; retry prints those
 * that now decrypt; end prints the rest as undecryptable (with the reason),
 * refills one-time pre-keys if KeysLow came, warns of unverified keys of
 * verified users, saves the store and frees s: 0 or 1. keys_only (sync
 * --plaintext): bodies printed as they are, and an existing key store
 * still takes the sender keys (none is made). */
typedef struct cli_e2e_sync cli_e2e_sync;
cli_e2e_sync *cli_e2e_sync_begin(cli_ctx *ctx, pc_client *c, bool keys_only);
void cli_e2e_sync_event(cli_e2e_sync *s, uint64_t user_seq, const Parley__V1__Message *m);
void cli_e2e_sync_retry(cli_e2e_sync *s);
int cli_e2e_sync_end(cli_e2e_sync *s);
/* verify USER: one JSON line per device of USER this device has a session
 * with: {user, device, safety_number, verified} (the same digits on both
 * sides; compare them out of band); mark: the keys shown are marked
 * verified first. Returns the exit status. */
int cli_e2e_verify(cli_ctx *ctx, const char *user_name, bool mark);
/* One JSON line {"warning":"identity_changed",user,device,reason} on out for
 * each device of a user marked verified (verify --mark) whose identity key
 * is not among the marked ones (a new or reset device, or someone else). */
struct pc_e2e;
void cli_e2e_warn_identities(cli_ctx *ctx, const struct pc_e2e *e, FILE *out);
/* The text of m from the plaintext store, printed as a JSON line: 1, or 0
 * when this device has none (not printed). */
int cli_e2e_print_kept(const pt_store *kept, uint64_t user_seq, const Parley__V1__Message *m);
/* history: the kept text, or the message as undecryptable with the reason */
void cli_e2e_print_history(const pt_store *kept, const Parley__V1__Message *m);
/* interactive chat on a sync begun with keys_only false: m's text, kept or
 * decrypted (and then kept): 1 and a malloc'd *text, or 0 and *why. */
int cli_e2e_reveal(cli_e2e_sync *s, const Parley__V1__Message *m, uint8_t **text, size_t *len, const char **why);
/* sends text encrypted to conv's members and keeps it: 0 and *seq, or -1 (printed why, or pc_error) */
int cli_e2e_send_in(cli_e2e_sync *s, uint64_t conv, const char *text, size_t len, uint64_t *seq);
/* register, register-device: the key store made, published and saved. 0 or -1 (said why). */
int cli_e2e_prepare(cli_ctx *ctx, pc_client *c, const char *cmd);
int cli_cmd_remove_device(cli_ctx *ctx, uint32_t device_id);
/* consent_cmds.c: accept/decline CONV, block/unblock USER, rename CONV NAME */
int cli_cmd_consent(cli_ctx *ctx, const char *cmd, const char *arg, const char *name);

#endif
