/* dispatch_input.h -- the input format of fuzz_dispatch, shared with the
 * seed generator (make_seeds.c) so seeds stay valid when either changes.
 *
 * An input is one connection of a signed-in device:
 *   byte 0       bits 0-1: which pre-registered user signs in (0..3);
 *                bit 7: stay signed out (the pre-sign-in paths)
 *   then frames  each a 2-byte little-endian length and that many bytes,
 *                handed to session_handle as one WebSocket message; a
 *                trailing partial record is ignored
 *
 * fuzz_dispatch builds a fresh store once, registers DISPATCH_USERS users
 * (user ids 1..4, device 1 each, in that order), then user 1 creates a group
 * of all four (conversation DISPATCH_GROUP) and opens the direct
 * conversation with user 2 (DISPATCH_DIRECT); ids are the store's counters
 * from zero, so they are the same on every run. Every connection's sign-in
 * challenge is DISPATCH_NONCE_BYTE repeated, and user i's Ed25519 key pair
 * comes from a seed of DISPATCH_KEY_SEED_BYTE + i repeated, so a seed can
 * carry a valid RegisterUser or SignIn signature. */
#ifndef PARLEY_TESTS_FUZZ_DISPATCH_INPUT_H
#define PARLEY_TESTS_FUZZ_DISPATCH_INPUT_H

enum {
    DISPATCH_USERS = 4,
    DISPATCH_USER_MASK = 0x03,
    DISPATCH_SIGNED_OUT = 0x80,
    DISPATCH_MAX_FRAMES = 64,     /* frames read from one input */
    DISPATCH_GROUP = 1,           /* conversation ids after the set-up */
    DISPATCH_DIRECT = 2,
    DISPATCH_NONCE_BYTE = 0x5a,
    DISPATCH_KEY_SEED_BYTE = 0x40,
};

/* "parley.v1 auth" || nonce || Host is what a device signs
 * (proto/parley.proto); fuzz_dispatch's connections have an empty Host */
#define DISPATCH_AUTH_CONTEXT "parley.v1 auth"

#endif
