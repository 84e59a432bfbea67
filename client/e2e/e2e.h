/* e2e.h -- end-to-end encryption for libparley: the cryptography only, no
 * network. Signal's published designs, on libsodium's primitives:
 *   - identity: one Ed25519 key pair per device; for key agreement it is
 *     converted to X25519 with libsodium (crypto_sign_ed25519_*_to_curve25519)
 *   - X3DH: a session from a peer device's published bundle (identity key,
 *     signed pre-key, one one-time pre-key when the server has one left)
 *   - Double Ratchet: per pair of devices; out-of-order delivery within
 *     E2E_MAX_SKIP, skipped keys kept up to E2E_MAX_SKIPPED_KEPT
 *   - Sender Keys: a conversation's message is encrypted once per sending
 *     device; the chain key and signing key reach the members pairwise
 * Every state serialises to versioned bytes (the CLI persists them).
 * The byte formats and derivations are described in session.c and
 * sender_keys.c, and pinned by the JSON test vectors under tests/vectors.
 * Nothing here is thread-safe: each state has one owner. */
#ifndef PARLEY_E2E_H
#define PARLEY_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    E2E_KEY_BYTES = 32,
    E2E_SIG_BYTES = 64,
    E2E_MAX_PLAINTEXT = 65536,       /* bytes of one message before encryption */
    E2E_MAX_SKIP = 1000,             /* message keys one message may make us skip in a chain */
    E2E_MAX_SKIPPED_KEPT = 1000,     /* skipped keys kept per session / sender key; oldest dropped */
    E2E_MAX_STATE_BYTES = 1 << 20,   /* a serialised state is never larger */
};

typedef enum e2e_status {
    E2E_OK = 0,
    E2E_ERR_MALFORMED = -1,   /* not a message / state of ours, or truncated */
    E2E_ERR_AUTH = -2,        /* does not authenticate: tampered, or not for this key */
    E2E_ERR_REPLAY = -3,      /* its key was used already, or discarded */
    E2E_ERR_TOO_FAR = -4,     /* would skip more than E2E_MAX_SKIP keys */
    E2E_ERR_BAD_BUNDLE = -5,  /* a signed pre-key whose signature fails, or an unusable key */
    E2E_ERR_NOMEM = -6,
    E2E_ERR_VERSION = -7,     /* a serialised state of a version we do not know */
    E2E_ERR_TOO_LARGE = -8,   /* more than E2E_MAX_PLAINTEXT */
    E2E_ERR_WRONG_KEY = -9,   /* a sender-key message of a chain we do not hold */
    E2E_ERR_IDENTITY_CHANGED = -10, /* a known peer device now shows another identity key */
} e2e_status;

const char *e2e_strerror(int status);

/* ---------------------------------------------------------------- keys */

typedef struct e2e_identity {
    uint8_t pk[32];           /* Ed25519: what UploadKeys publishes */
    uint8_t sk[64];           /* libsodium's seed || pk form */
} e2e_identity;

typedef struct e2e_prekey {   /* X25519: signed or one-time pre-key */
    uint32_t id;
    uint8_t pk[32];
    uint8_t sk[32];
} e2e_prekey;

/* What FetchKeys hands out for one device. */
typedef struct e2e_bundle {
    uint8_t identity[32];
    uint32_t spk_id;
    uint8_t spk[32];
    uint8_t spk_sig[64];
    bool has_otk;
    uint32_t otk_id;
    uint8_t otk[32];
} e2e_bundle;

void e2e_identity_generate(e2e_identity *id);
void e2e_prekey_generate(e2e_prekey *k, uint32_t id);
/* The identity's signature of a signed pre-key's public key. */
void e2e_prekey_sign(const e2e_identity *id, const e2e_prekey *spk, uint8_t sig[64]);

/* Safety number of two identity keys: the same for both sides (order does
 * not matter), 60 decimal digits in 12 groups of 5 separated by spaces. */
enum { E2E_SAFETY_NUMBER_LEN = 72 };
void e2e_safety_number(const uint8_t a[32], const uint8_t b[32], char out[E2E_SAFETY_NUMBER_LEN]);

/* ---------------------------------------------------------------- X3DH */

/* Initiator: the shared secret with a peer device from its bundle, using
 * the ephemeral private key ek_sk. E2E_ERR_BAD_BUNDLE if the signed
 * pre-key's signature does not verify or a key is unusable. */
int e2e_x3dh_initiate(const e2e_identity *me, const uint8_t ek_sk[32], const e2e_bundle *peer, uint8_t sk[32]);
/* Responder: the same secret from the initiator's identity and ephemeral
 * keys and our own pre-keys (otk NULL when the initiator used none). */
int e2e_x3dh_respond(const e2e_identity *me, const e2e_prekey *spk, const e2e_prekey *otk,
                     const uint8_t peer_identity[32], const uint8_t peer_ek[32], uint8_t sk[32]);

/* ------------------------------------------------------ pairwise sessions */

typedef struct e2e_session e2e_session;

/* What the first messages of a session carry so the peer can run X3DH. */
typedef struct e2e_prekey_info {
    uint8_t identity[32];     /* the initiator's identity key */
    uint8_t ek[32];
    uint32_t spk_id;
    bool has_otk;
    uint32_t otk_id;
} e2e_prekey_info;

/* A new session with a peer device from its bundle (X3DH then a first DH
 * ratchet step). Its messages carry the X3DH header until the peer answers. */
int e2e_session_initiate(e2e_session **out, const e2e_identity *me, const e2e_bundle *peer);
/* 1 if msg opens a session (and *info says with which keys), 0 if it is an
 * ordinary message, E2E_ERR_MALFORMED otherwise. */
int e2e_message_prekey_info(const uint8_t *msg, size_t len, e2e_prekey_info *info);
/* Responder: a session from the first message msg, and its plaintext. */
int e2e_session_accept(e2e_session **out, const e2e_identity *me, const e2e_prekey *spk, const e2e_prekey *otk,
                       const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len);
/* true if s was made from this first message's X3DH (a second first
 * message before our answer arrived: decrypt it with s, do not accept again) */
bool e2e_session_from_prekey(const e2e_session *s, const e2e_prekey_info *info);
/* *out is malloc'd; the caller frees it. */
int e2e_session_encrypt(e2e_session *s, const uint8_t *pt, size_t len, uint8_t **out, size_t *out_len);
/* On any error the session is unchanged. */
int e2e_session_decrypt(e2e_session *s, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len);
const uint8_t *e2e_session_peer_identity(const e2e_session *s);
size_t e2e_session_skipped_count(const e2e_session *s);
int e2e_session_save(const e2e_session *s, uint8_t **out, size_t *out_len);
int e2e_session_load(e2e_session **out, const uint8_t *buf, size_t len);
void e2e_session_free(e2e_session *s);

/* ------------------------------------------------------------ sender keys */

typedef struct e2e_sender_key e2e_sender_key;

/* Our own new sender key for one conversation (random chain and signing key). */
int e2e_sender_key_create(e2e_sender_key **out);
/* The distribution message: key id, current iteration, chain key, signing
 * public key. Send it pairwise-encrypted to every member device. */
int e2e_sender_key_distribution(const e2e_sender_key *k, uint8_t **out, size_t *out_len);
/* A peer's sender key from its distribution message (decrypt only). */
int e2e_sender_key_from_distribution(e2e_sender_key **out, const uint8_t *msg, size_t len);
uint32_t e2e_sender_key_id(const e2e_sender_key *k);
uint32_t e2e_sender_key_iteration(const e2e_sender_key *k);
/* true for a key we created (it encrypts), false for one received */
bool e2e_sender_key_is_own(const e2e_sender_key *k);
int e2e_sender_key_encrypt(e2e_sender_key *k, const uint8_t *pt, size_t len, uint8_t **out, size_t *out_len);
/* On any error the state is unchanged. */
int e2e_sender_key_decrypt(e2e_sender_key *k, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len);
/* The key id a sender-key message names, or E2E_ERR_MALFORMED. */
int e2e_sender_message_key_id(const uint8_t *msg, size_t len, uint32_t *key_id);
int e2e_sender_key_save(const e2e_sender_key *k, uint8_t **out, size_t *out_len);
int e2e_sender_key_load(e2e_sender_key **out, const uint8_t *buf, size_t len);
void e2e_sender_key_free(e2e_sender_key *k);

#ifdef PARLEY_E2E_TEST_RNG
/* Tests only (compiled in only with PARLEY_E2E_TEST_RNG, never in libparley):
 * every random byte comes from fn instead of libsodium; NULL restores it. */
void e2e_test_set_rng(void (*fn)(void *buf, size_t len));
#endif

#endif
