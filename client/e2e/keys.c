/* keys.c -- a device's long-term keys and X3DH.
 *
 * Identity: one Ed25519 key pair per device, converted to X25519 for the
 * X3DH agreements with libsodium's crypto_sign_ed25519_*_to_curve25519.
 * Why one key and not a separate X25519 one: the key the server verifies
 * the signed pre-key with (src/chat/keys.c), the key a safety number shows
 * and the key the agreement uses are then the same key, so there is no
 * second key whose binding to the first must be trusted; it is the choice
 * Signal makes too (XEdDSA signs with the X25519 key, we agree with the
 * Ed25519 key's birational image, which libsodium provides ready-made). */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "e2e_internal.h"

/* F: 32 0xFF bytes before the DH outputs, per the X3DH spec, so the KDF
 * input never starts like an X25519 output */
static const uint8_t X3DH_F[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const char X3DH_INFO[] = "parley.e2e x3dh v1";

void e2e_identity_generate(e2e_identity *id) {
    uint8_t seed[crypto_sign_SEEDBYTES];
    e2e_random(seed, sizeof seed);
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
    sodium_memzero(seed, sizeof seed);
}

void e2e_prekey_generate(e2e_prekey *k, uint32_t id) {
    k->id = id;
    e2e_dh_keypair(k->pk, k->sk);
}

void e2e_prekey_sign(const e2e_identity *id, const e2e_prekey *spk, uint8_t sig[64]) {
    crypto_sign_detached(sig, NULL, spk->pk, 32, id->sk);
}

/* SK = HKDF(F || DH1 || DH2 || DH3 [|| DH4]) */
static void x3dh_kdf(uint8_t sk[32], uint8_t dh[4][32], int n) {
    uint8_t ikm[32 * 5];
    memcpy(ikm, X3DH_F, 32);
    for (int i = 0; i < n; i++) memcpy(ikm + 32 * (i + 1), dh[i], 32);
    e2e_hkdf(sk, 32, NULL, 0, ikm, (size_t)32 * (size_t)(n + 1), X3DH_INFO);
    sodium_memzero(ikm, sizeof ikm);
}

int e2e_x3dh_initiate(const e2e_identity *me, const uint8_t ek_sk[32], const e2e_bundle *peer, uint8_t sk[32]) {
    if (crypto_sign_verify_detached(peer->spk_sig, peer->spk, 32, peer->identity) != 0) return E2E_ERR_BAD_BUNDLE;
    uint8_t ik_sk[32], peer_ik[32], dh[4][32];
    int r = E2E_ERR_BAD_BUNDLE;
    e2e_identity_x25519_sk(ik_sk, me->sk);
    if (e2e_identity_x25519_pk(peer_ik, peer->identity) != 0) goto out;
    if (e2e_dh(dh[0], ik_sk, peer->spk) != 0 ||          /* DH1 = DH(IK_A, SPK_B) */
        e2e_dh(dh[1], ek_sk, peer_ik) != 0 ||            /* DH2 = DH(EK_A, IK_B) */
        e2e_dh(dh[2], ek_sk, peer->spk) != 0 ||          /* DH3 = DH(EK_A, SPK_B) */
        (peer->has_otk && e2e_dh(dh[3], ek_sk, peer->otk) != 0))   /* DH4 = DH(EK_A, OPK_B) */
        goto out;
    x3dh_kdf(sk, dh, peer->has_otk ? 4 : 3);
    r = E2E_OK;
out:
    sodium_memzero(ik_sk, sizeof ik_sk);
    sodium_memzero(dh, sizeof dh);
    return r;
}

int e2e_x3dh_respond(const e2e_identity *me, const e2e_prekey *spk, const e2e_prekey *otk,
                     const uint8_t peer_identity[32], const uint8_t peer_ek[32], uint8_t sk[32]) {
    uint8_t ik_sk[32], peer_ik[32], dh[4][32];
    int r = E2E_ERR_BAD_BUNDLE;
    e2e_identity_x25519_sk(ik_sk, me->sk);
    if (e2e_identity_x25519_pk(peer_ik, peer_identity) != 0) goto out;
    if (e2e_dh(dh[0], spk->sk, peer_ik) != 0 || e2e_dh(dh[1], ik_sk, peer_ek) != 0 ||
        e2e_dh(dh[2], spk->sk, peer_ek) != 0 || (otk && e2e_dh(dh[3], otk->sk, peer_ek) != 0))
        goto out;
    x3dh_kdf(sk, dh, otk ? 4 : 3);
    r = E2E_OK;
out:
    sodium_memzero(ik_sk, sizeof ik_sk);
    sodium_memzero(dh, sizeof dh);
    return r;
}

/* Signal's numeric fingerprint in spirit: 30 digits per side from an
 * iterated hash of its identity key, the two halves in a fixed order so
 * both sides show the same 60 digits. */
static void fingerprint_half(const uint8_t ik[32], char out[31]) {
    uint8_t h[crypto_hash_sha512_BYTES];
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, (const uint8_t *)"parley.e2e fingerprint v1", 25);
    crypto_hash_sha512_update(&st, ik, 32);
    crypto_hash_sha512_final(&st, h);
    for (int i = 0; i < 1024; i++) {   /* makes a brute-forced look-alike key costlier */
        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, h, sizeof h);
        crypto_hash_sha512_update(&st, ik, 32);
        crypto_hash_sha512_final(&st, h);
    }
    for (int chunk = 0; chunk < 6; chunk++) {   /* 6 chunks of 5 bytes -> 5 digits each */
        uint64_t v = 0;
        for (int b = 0; b < 5; b++) v = v << 8 | h[chunk * 5 + b];
        snprintf(out + chunk * 5, 6, "%05llu", (unsigned long long)(v % 100000));
    }
}

void e2e_safety_number(const uint8_t a[32], const uint8_t b[32], char out[E2E_SAFETY_NUMBER_LEN]) {
    char ha[31], hb[31];
    fingerprint_half(a, ha);
    fingerprint_half(b, hb);
    const char *first = memcmp(a, b, 32) <= 0 ? ha : hb, *second = first == ha ? hb : ha;
    char digits[61];
    memcpy(digits, first, 30);
    memcpy(digits + 30, second, 30);
    size_t p = 0;
    for (int g = 0; g < 12; g++) {
        if (g) out[p++] = ' ';
        memcpy(out + p, digits + g * 5, 5);
        p += 5;
    }
    out[p] = '\0';
}
