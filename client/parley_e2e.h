/* parley_e2e.h -- end-to-end encrypted conversations over libparley.
 *
 * A pc_e2e is one device's key store: its identity key, signed pre-key and
 * one-time pre-keys, its pairwise sessions (X3DH + Double Ratchet, one per
 * peer device) and its sender keys (one per conversation it sends in, and
 * one per (conversation, sending device) it reads). client/e2e/ does the
 * cryptography; this file moves its bytes through the server:
 *   - pc_e2e_publish uploads the public keys (UploadKeys)
 *   - pc_e2e_send: on the first send in a conversation (and after a
 *     rotation) hands the sender key to every device of every member, the
 *     sender's own other devices included, as pairwise-encrypted device
 *     messages (sessions started from FetchKeys bundles); then encrypts the
 *     body once and sends it as an ordinary message
 *   - pc_e2e_handle_device_message: decrypts a device message (accepting a
 *     new session when it opens one) and installs the sender key it carries
 *   - pc_e2e_decrypt: a conversation message's plaintext
 *   - rotation: pc_e2e_send makes a new sender key by itself when the one
 *     it holds went to a device that is no longer a member's (a member left
 *     or was removed, a device was removed), and hands the new one to the
 *     current member devices only; pc_e2e_rotate forces it
 * Not thread-safe; use it from the thread that uses the pc_client. */
#ifndef PARLEY_CLIENT_E2E_H
#define PARLEY_CLIENT_E2E_H

#include <stddef.h>
#include <stdint.h>

#include "parley.h"

typedef struct pc_e2e pc_e2e;

enum {
    PC_E2E_ONE_TIME_KEYS = 100,     /* one-time pre-keys per upload */
    PC_E2E_HELD_ONE_TIME_KEYS = 400, /* one-time pre-keys held (private halves); refill evicts the oldest */
    PC_E2E_MAX_SESSIONS = 4096,     /* peer devices with a pairwise session */
    PC_E2E_MAX_SENDER_KEYS = 4096,  /* sender keys held (own and received) */
    PC_E2E_MAX_MEMBERS = 1024,      /* users passed to pc_e2e_send */
    PC_E2E_MAX_DEVICES = 64,        /* devices of one user taken from GetDevices */
    PC_E2E_MAX_STORE_BYTES = 1 << 30, /* a saved key store is never larger */
};

/* A new device key store: identity, signed pre-key 1, PC_E2E_ONE_TIME_KEYS one-time pre-keys. */
pc_e2e *pc_e2e_new(void);
void pc_e2e_free(pc_e2e *e);
/* The identity key (Ed25519 public key) this store publishes. */
const uint8_t *pc_e2e_identity_key(const pc_e2e *e);

/* Uploads identity, signed pre-key and the one-time pre-keys not yet
 * uploaded. c must be signed in. 0, or -1 (pc_error(c) says why). */
int pc_e2e_publish(pc_e2e *e, pc_client *c);

/* KeysLow: PC_E2E_ONE_TIME_KEYS new one-time pre-keys (ids after the
 * highest held) made and uploaded. Room is made by dropping used ones
 * first, then the oldest unused (a session opened with one of those later
 * fails: the peer starts again). Call it from pc_on_keys_low's callback
 * owner, outside the callback (it makes a request). 0, or -1 (pc_error). */
int pc_e2e_refill(pc_e2e *e, pc_client *c);

/* Signed pre-key rotation: when the signed pre-key is
 * PC_E2E_SPK_ROTATE_MS old (at now_ms, wall clock), a new one is made,
 * signed and uploaded; the previous one is kept PC_E2E_SPK_GRACE_MS more
 * for sessions begun with it, then erased. 1 rotated, 0 nothing to do, or
 * -1 (pc_error; the store is as it was, the next call tries again). */
#define PC_E2E_SPK_ROTATE_MS (7ull * 24 * 3600 * 1000)
#define PC_E2E_SPK_GRACE_MS (7ull * 24 * 3600 * 1000)
int pc_e2e_maintain(pc_e2e *e, pc_client *c, uint64_t now_ms);

/* Encrypts text for conversation conv, whose members are members[0..n)
 * (the caller's own user may be among them or not; its other devices get
 * the key either way), and sends it. 0 and *seq, or -1: pc_error(c) says why. */
int pc_e2e_send(pc_e2e *e, pc_client *c, uint64_t conv, const uint64_t *members, size_t n, const void *body,
                size_t len, uint64_t *seq);

/* A device message as delivered (pc_on_device_message). 0 if it was ours
 * and applied, else a negative e2e status (e2e_strerror). */
int pc_e2e_handle_device_message(pc_e2e *e, const Parley__V1__DeviceMessage *m);

/* The plaintext of a conversation message: 0 and a malloc'd *pt, or a
 * negative e2e status: E2E_ERR_WRONG_KEY when no sender key of its sending
 * device is held (not (yet) distributed to us, or rotated away), E2E_ERR_AUTH
 * when it was tampered with, E2E_ERR_REPLAY when it was read before. */
int pc_e2e_decrypt(pc_e2e *e, const Parley__V1__Message *m, uint8_t **pt, size_t *pt_len);

/* Device lists: pc_e2e_send asks GetDevices for each member at each send,
 * unless the store watches device lists: pc_e2e_watch_device_lists(e, c)
 * sets c's pc_on_device_list_changed to the store's (do not set another;
 * call pc_e2e_device_list_changed from yours instead), and from then on
 * each user's list is asked once and kept (in memory, not in pc_e2e_save's
 * bytes) until a DeviceListChanged for that user: a send to a group whose
 * lists are known costs no GetDevices. Call pc_e2e_device_list_changed too
 * when user joins or rejoins a conversation with us, and
 * pc_e2e_device_list_changed(e, 0) (forget every list) after a reconnect,
 * when changes may have been missed.
 * pc_e2e_device_list_fetches: the GetDevices this store made so far. */
void pc_e2e_watch_device_lists(pc_e2e *e, pc_client *c);
void pc_e2e_device_list_changed(pc_e2e *e, uint64_t user);
uint64_t pc_e2e_device_list_fetches(const pc_e2e *e);

/* Our sender key of conv is dropped: the next pc_e2e_send makes a new one. */
void pc_e2e_rotate(pc_e2e *e, uint64_t conv);

/* Trust: the devices of user this store has a session with (at most cap
 * ids into devices; returns how many there are), and the safety number of
 * one of them: both identity keys, the same digits on both sides, to
 * compare out of band. 0, or E2E_ERR_WRONG_KEY when there is no session. */
size_t pc_e2e_known_devices(const pc_e2e *e, uint64_t user, uint32_t *devices, size_t cap);
int pc_e2e_safety_number(const pc_e2e *e, uint64_t user, uint32_t device, char out[72]);
/* The identity key (Ed25519 public) of a device we have a session with:
 * 0, or E2E_ERR_WRONG_KEY when there is none. */
int pc_e2e_peer_identity(const pc_e2e *e, uint64_t user, uint32_t device, uint8_t out[32]);

/* The whole store (private keys included: keep it like a secret key) to
 * versioned bytes, malloc'd in *out; and back. 0 or a negative e2e status
 * (E2E_ERR_MALFORMED for bytes that are not a whole store of ours). */
int pc_e2e_save(const pc_e2e *e, uint8_t **out, size_t *out_len);
int pc_e2e_load(pc_e2e **out, const uint8_t *data, size_t len);

#endif
