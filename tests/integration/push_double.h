/* push_double.h -- the Web Push service double (tests/push/push_double.py)
 * as the push tests run it: python3 over https on a free loopback port with
 * a certificate made at start (the server trusts it with --push-ca); it
 * checks each request's VAPID JWT against the key in DIR/vapid-key,
 * decrypts the payload with the subscriber's private key (RFC 8291), logs
 * each request to DIR/log.jsonl and answers what DIR/mode-ID says. */
#ifndef PARLEY_TEST_PUSH_DOUBLE_H
#define PARLEY_TEST_PUSH_DOUBLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { PUSH_DOUBLE_SUBS_MAX = 16 };

/* one subscription of the double (s1, s2, ...): what a device registers */
typedef struct push_sub {
    char id[16], endpoint[256];
    uint8_t p256dh[65], auth[16];
} push_sub;

typedef struct push_double {
    char dir[192];                          /* its files (above) */
    char cert[256], key[256];               /* the certificate: --push-ca cert */
    pid_t pid;
    int n_subs;
    push_sub subs[PUSH_DOUBLE_SUBS_MAX + 1];   /* s1..sN at [1..N] */
} push_double;

/* Starts the double in dir (an existing directory) with n_subs
 * subscriptions (1..PUSH_DOUBLE_SUBS_MAX) and waits at most wait_ms until
 * it is ready. It dies with the test (PR_SET_PDEATHSIG). 0, or -1 (a line on
 * stderr; d->pid 0 if it is not running). */
int push_double_start(push_double *d, const char *dir, int n_subs, int wait_ms);
/* Tells it the server's VAPID public key (base64url, as served). 0 or -1. */
int push_double_set_vapid_key(const push_double *d, const char *vapid);
/* Stops it by PID (a FAIL line if it did not exit cleanly). Its directory
 * stays. Fine to call when it is not running. */
void push_double_stop(push_double *d);
/* base64url without padding into out (cap bytes): the length, 0 on error */
size_t push_unb64(const char *s, uint8_t *out, size_t cap);

#endif
