/* parley.h -- libparley, the C client library.
 *
 * One pc_client is one device's connection to a parley server. Calls are
 * blocking with timeouts and meant for one thread per client; many clients
 * can share a thread by calling pc_poll(c, 0) on each.
 *
 * Reliability: when the connection drops, requests and pc_poll reconnect
 * transparently (exponential backoff with full jitter, honouring Retry-After
 * and close code 1013), sign in again, restart sync from the last acked
 * user_seq, and resend an unacknowledged pc_send with the same client_msg_id,
 * so a retry never creates a second message.
 *
 * Exactly once: events are handed to the event callback at most once per
 * (conversation, seq) and in seq order per conversation; the library acks
 * them (cumulative, by user_seq) after the callback returns.
 *
 * The protocol types are the generated protobuf-c ones from proto/parley.proto. */
#ifndef PARLEY_CLIENT_H
#define PARLEY_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/parley.pb-c.h"

typedef struct pc_client pc_client;

typedef struct pc_options {
    const char *server_url;     /* "ws://host:port" or "wss://host:port" (TLS)
                                   (default ws://127.0.0.1:8080); or several,
                                   "URL1,URL2,..." (at most 16, 4096 bytes): the
                                   first connect picks one at random, and each
                                   attempt after a failure or a lost connection
                                   goes to another, picked at random among the
                                   others, after the usual backoff */
    int connect_timeout_ms;     /* TCP connect + upgrade + challenge; default 5000 */
    int request_timeout_ms;     /* per request attempt; default 10000 */
    int reconnect_base_ms;      /* backoff base; default 100 */
    int reconnect_cap_ms;       /* backoff cap; default 5000 */
    int max_reconnects;         /* attempts before giving up; default 20; 0 = never reconnect */
    int ping_interval_ms;       /* pc_poll sends a WebSocket ping when nothing was sent
                                   for this long, so the server's idle timeout (default
                                   60 s) keeps a quiet client; default (0) 30000; < 0: off */
    const char *tls_ca_file;    /* wss://: PEM file of the CAs (or the self-signed
                                   certificate) to trust; NULL: the system's store. The
                                   certificate must name the URL's host (DNS or IP). */
} pc_options;

/* A device's identity: its Ed25519 keys and, once registered, its ids. */
typedef struct pc_identity {
    uint64_t user_id;
    uint32_t device_id;
    uint8_t public_key[32];
    uint8_t secret_key[64];
} pc_identity;

/* Fills keys with a new key pair and zeroes the ids. */
void pc_identity_generate(pc_identity *id);

/* NULL opt: defaults. Does not connect. */
pc_client *pc_new(const pc_options *opt);
void pc_free(pc_client *c);

/* Connects (TCP, upgrade to parley.v1, waits for the challenge). 0 or -1. */
int pc_connect(pc_client *c);
void pc_close(pc_client *c);    /* sends a close frame (1000) and closes the socket */
/* The socket, -1 when not connected (also while pc_poll waits out a
 * reconnect backoff). Readable means pc_poll has work; over TLS, pc_poll may
 * also find data already decrypted, so poll() with a finite timeout. */
int pc_fd(const pc_client *c);

/* Every call below returns 0 on success and -1 on failure; then
 * pc_error() is a one-line description and pc_status() the protocol status
 * (PARLEY__V1__STATUS__*) or -1 for a transport failure. */
const char *pc_error(const pc_client *c);
int pc_status(const pc_client *c);

/* Identity. register_* fill id->user_id/device_id; the connection is signed
 * in as that device afterwards, and reconnects sign in again with id (the
 * client keeps a copy). */
int pc_register_user(pc_client *c, const char *name, pc_identity *id);
int pc_register_device(pc_client *c, const char *token, pc_identity *id);
int pc_sign_in(pc_client *c, const pc_identity *id);
int pc_create_link_token(pc_client *c, char *token, size_t token_cap, uint64_t *expires_ts);
int pc_lookup_user(pc_client *c, const char *name, uint64_t *user_id);

/* Conversations. */
int pc_open_direct(pc_client *c, uint64_t peer_user_id, uint64_t *conversation_id);
int pc_create_group(pc_client *c, const char *name, const uint64_t *members, size_t n,
                    uint64_t *conversation_id);
int pc_add_members(pc_client *c, uint64_t conversation_id, const uint64_t *users, size_t n);
int pc_remove_member(pc_client *c, uint64_t conversation_id, uint64_t user_id);
/* Group admins (the creator first) add, remove others and rename; anyone leaves. */
int pc_rename_group(pc_client *c, uint64_t conversation_id, const char *name);
/* Message requests (see "consent" in parley.proto): accept the other member
 * of a direct conversation or the inviter of a group; decline (a group is
 * left, a direct conversation hidden); block or unblock a user. */
int pc_accept_request(pc_client *c, uint64_t conversation_id);
int pc_decline_request(pc_client *c, uint64_t conversation_id);
int pc_block_user(pc_client *c, uint64_t user_id, int unblock);
/* *out is owned by the caller: free with parley__v1__conversation_list__free_unpacked(*out, NULL). */
int pc_list_conversations(pc_client *c, Parley__V1__ConversationList **out);

/* Sends one message and returns after the server's durable ack. type is
 * PARLEY__V1__MESSAGE_TYPE__TEXT, __MEDIA or __REACTION. client_msg_id NULL:
 * the library makes a random 16-byte one. Retries on the same id across
 * reconnects. seq/ts/duplicate may be NULL. */
typedef struct pc_send_args {
    uint64_t conversation_id;
    int type;
    const void *body;
    size_t body_len;
    const char *mime_type;      /* MEDIA */
    uint64_t size;              /* MEDIA */
    uint64_t ref_seq;           /* REACTION */
    const uint8_t *client_msg_id;
    size_t client_msg_id_len;
} pc_send_args;
int pc_send(pc_client *c, const pc_send_args *a, uint64_t *seq, uint64_t *ts, int *duplicate);
int pc_send_text(pc_client *c, uint64_t conversation_id, const char *text, uint64_t *seq);

/* *out owned by the caller: parley__v1__history_page__free_unpacked(*out, NULL). */
int pc_history(pc_client *c, uint64_t conversation_id, uint64_t before_seq, uint32_t limit,
               Parley__V1__HistoryPage **out);
int pc_mark_read(pc_client *c, uint64_t conversation_id, uint64_t seq);

/* Sync and live events. Callbacks run inside pc_poll (or inside any blocking
 * call that is waiting for its response). The message is valid only during
 * the callback. */
typedef void (*pc_event_fn)(void *ud, uint64_t user_seq, const Parley__V1__Message *m);
typedef void (*pc_receipt_fn)(void *ud, const Parley__V1__Receipt *r);
void pc_on_event(pc_client *c, pc_event_fn fn, void *ud);
void pc_on_receipt(pc_client *c, pc_receipt_fn fn, void *ud);

/* Dedupe state, e.g. loaded from disk: events with user_seq <= cursor, or with
 * seq <= the conversation's last seen seq, are dropped. */
void pc_set_cursor(pc_client *c, uint64_t acked_user_seq);
void pc_set_seen(pc_client *c, uint64_t conversation_id, uint64_t seq);
uint64_t pc_cursor(const pc_client *c);      /* highest user_seq acknowledged */
/* Calls fn for every conversation with its last seen seq (to persist it). */
void pc_foreach_seen(const pc_client *c, void (*fn)(void *ud, uint64_t conv, uint64_t seq), void *ud);

/* Asks for every event after pc_cursor(), then live events. Returns once the
 * server accepted; events arrive through pc_poll. */
int pc_start_sync(pc_client *c);
/* 1 once SyncDone arrived after the latest (re)start of sync. */
int pc_sync_done(const pc_client *c);

/* Reads and dispatches whatever arrives within timeout_ms (0: only what is
 * already there; -1: until something arrives), sends pending acks and, when
 * the client sent nothing for ping_interval_ms, a ping. Reconnects if the
 * connection was lost, without sleeping past timeout_ms: the next attempt
 * is scheduled after the backoff and made by a later pc_poll once it is due
 * (so many clients can share a thread with pc_poll(c, 0)). Returns the
 * number of frames handled (>= 0; 0 also while waiting to reconnect), or -1
 * when the connection is lost and max_reconnects attempts in a row failed. */
int pc_poll(pc_client *c, int timeout_ms);
/* Sends the pending cumulative Ack now (pc_poll also does it). */
int pc_flush_acks(pc_client *c);

/* Counters for tests and the bench. */
typedef struct pc_stats {
    uint64_t reconnects;        /* successful reconnects after a loss */
    uint64_t events;            /* handed to the callback */
    uint64_t duplicates_dropped;/* events dropped by dedupe */
    uint64_t retries;           /* requests re-sent after a reconnect */
    uint64_t accepted;          /* sends answered ACCEPTED first (durable, stored later; SENT followed) */
} pc_stats;
void pc_get_stats(const pc_client *c, pc_stats *out);

/* ------------------------------------------------------------ real time
 *
 * Presence, typing, receipts, the key directory, the device list and device
 * messages (parley.proto, "real time" onwards). Pushes reach the callbacks
 * below from inside pc_poll (or any blocking call waiting for its answer);
 * what they point to is valid only during the callback. A callback must not
 * make blocking libparley calls. */

/* Presence of users who share a conversation with this user (FORBIDDEN
 * otherwise; at most 1024). The list replaces the previous one (n 0: none).
 * The current state of each arrives at once through the presence callback,
 * then changes (the server coalesces them to one per user every few
 * seconds). A subscription belongs to the connection: after a reconnect
 * (pc_get_stats().reconnects grew) subscribe again. */
typedef void (*pc_presence_fn)(void *ud, const Parley__V1__Presence *p);
int pc_subscribe_presence(pc_client *c, const uint64_t *users, size_t n);
void pc_on_presence(pc_client *c, pc_presence_fn fn, void *ud);

/* Typing indicators: ephemeral, to the other members' online devices, never
 * stored. Not retried: past the server's rate limit (5 a second, bursts of
 * 10) this fails at once with PARLEY__V1__STATUS__RATE_LIMITED, and
 * pc_retry_after_ms() says when the next one would be taken; over a lost
 * connection it reconnects once it is due and sends it then. */
typedef void (*pc_typing_fn)(void *ud, const Parley__V1__TypingIndicator *t);
int pc_typing(pc_client *c, uint64_t conversation_id, int typing);
void pc_on_typing(pc_client *c, pc_typing_fn fn, void *ud);
/* From the last RATE_LIMITED or UNAVAILABLE answer: ms to wait (0: none said). */
uint64_t pc_retry_after_ms(const pc_client *c);

/* Every current member's delivered and read seq. Receipts also arrive as
 * pushes and, for conversations with events in a catch-up, inside SyncDone:
 * both go to the pc_on_receipt callback.
 * *out owned by the caller: parley__v1__receipt_list__free_unpacked(*out, NULL). */
int pc_get_receipts(pc_client *c, uint64_t conversation_id, Parley__V1__ReceiptList **out);

/* Key directory. identity_key must be given in the first upload of a device
 * (resending the same one is fine; NULL/0 afterwards keeps it);
 * signed_pre_key NULL keeps the current one; up to 200 one-time pre-keys per
 * call, 1000 kept. *remaining (may be NULL): this device's one-time pre-keys
 * left on the server. */
typedef struct pc_prekey {
    uint32_t key_id;
    const uint8_t *public_key;
    size_t public_key_len;
    const uint8_t *signature;   /* signed pre-key only */
    size_t signature_len;
} pc_prekey;
int pc_upload_keys(pc_client *c, const uint8_t *identity_key, size_t identity_key_len,
                   const pc_prekey *signed_pre_key, const pc_prekey *one_time, size_t n_one_time,
                   uint32_t *remaining);
/* One bundle per device of user (devices without keys are left out), each
 * with a one-time pre-key handed out to this caller only (absent when the
 * device has none left). Only users sharing a conversation, or oneself.
 * *out owned by the caller: parley__v1__key_bundles__free_unpacked(*out, NULL). */
int pc_fetch_keys(pc_client *c, uint64_t user_id, Parley__V1__KeyBundles **out);
/* Pushed when this device has fewer than 10 one-time pre-keys left. */
typedef void (*pc_keys_low_fn)(void *ud, uint32_t one_time_pre_keys_left);
void pc_on_keys_low(pc_client *c, pc_keys_low_fn fn, void *ud);

/* Device lists. user_id 0: one's own.
 * *out owned by the caller: parley__v1__device_list__free_unpacked(*out, NULL). */
int pc_get_devices(pc_client *c, uint64_t user_id, Parley__V1__DeviceList **out);
/* Removes one of this user's other devices (not the one asking). */
int pc_remove_device(pc_client *c, uint32_t device_id);
/* Pushed when a contact's (or one's own) device list changed. */
typedef void (*pc_device_list_fn)(void *ud, uint64_t user_id, uint64_t change_counter);
void pc_on_device_list_changed(pc_client *c, pc_device_list_fn fn, void *ud);

/* Device messages: an opaque envelope (1..65536 bytes) for one device of a
 * user sharing a conversation. Not retried after it may have been sent
 * (a second attempt would queue a second envelope). *queue_seq may be NULL.
 * PARLEY__V1__STATUS__TOO_LARGE also when that device's queue, or this
 * user's part of it, is full (the server's caps): it takes more once the
 * device has read what waits. */
int pc_send_device_message(pc_client *c, uint64_t user_id, uint32_t device_id, const void *body,
                           size_t len, uint64_t *queue_seq);
/* Device messages for this device, live or (re)sent after each StartSync:
 * handed to the callback at most once each (by queue_seq, increasing), then
 * acknowledged, which deletes them on the server. */
typedef void (*pc_device_message_fn)(void *ud, const Parley__V1__DeviceMessage *m);
void pc_on_device_message(pc_client *c, pc_device_message_fn fn, void *ud);
/* Dedupe state, e.g. saved across runs: device messages with queue_seq <=
 * seen are dropped (and acked). */
void pc_set_device_messages_seen(pc_client *c, uint64_t seen);
uint64_t pc_device_messages_seen(const pc_client *c);

#endif
