/* identity.c -- a device's Ed25519 keys and the three ways a connection
 * proves it holds them: RegisterUser, RegisterDevice, SignIn. Each signs
 * "parley.v1 auth" || the connection's 32-byte challenge nonce || the Host
 * header value of its upgrade request. */
#include <string.h>

#include <sodium.h>

#include "internal.h"

static const char AUTH_CONTEXT[PC_AUTH_CONTEXT_LEN] = {'p', 'a', 'r', 'l', 'e', 'y', '.',
                                                       'v', '1', ' ', 'a', 'u', 't', 'h'};

/* Not from the user: the server shows it only as the device's label. */
static const char DEVICE_NAME[] = "libparley";

void pc_identity_generate(pc_identity *id) {
    if (sodium_init() < 0) {
        memset(id, 0, sizeof *id);
        return;
    }
    memset(id, 0, sizeof *id);
    crypto_sign_keypair(id->public_key, id->secret_key);
}

void pc_sign_challenge(const uint8_t nonce[PC_NONCE_BYTES], const char *host, const uint8_t sk[64],
                       uint8_t sig[64]) {
    size_t host_len = strnlen(host, PC_HOST_MAX + 16);
    uint8_t msg[PC_AUTH_CONTEXT_LEN + PC_NONCE_BYTES + PC_HOST_MAX + 16];
    memcpy(msg, AUTH_CONTEXT, PC_AUTH_CONTEXT_LEN);
    memcpy(msg + PC_AUTH_CONTEXT_LEN, nonce, PC_NONCE_BYTES);
    memcpy(msg + PC_AUTH_CONTEXT_LEN + PC_NONCE_BYTES, host, host_len);
    crypto_sign_detached(sig, NULL, msg, PC_AUTH_CONTEXT_LEN + PC_NONCE_BYTES + host_len, sk);
}

/* The Registered result of a successful auth response into id; the client
 * keeps a copy to sign in again after a reconnect. */
static int take_registered(pc_client *c, Parley__V1__Frame *resp, pc_identity *id) {
    const Parley__V1__Response *rs = resp->response;
    if (rs->result_case != PARLEY__V1__RESPONSE__RESULT_REGISTERED || !rs->registered) {
        parley__v1__frame__free_unpacked(resp, NULL);
        return pc_fail(c, -1, "protocol error: no Registered in the answer");
    }
    id->user_id = rs->registered->user_id;
    id->device_id = rs->registered->device_id;
    parley__v1__frame__free_unpacked(resp, NULL);
    c->id = *id;
    c->have_identity = true;
    return 0;
}

int pc_register_user(pc_client *c, const char *name, pc_identity *id) {
    Parley__V1__RegisterUser ru = PARLEY__V1__REGISTER_USER__INIT;
    ru.name = (char *)name;
    ru.device_public_key.data = id->public_key;
    ru.device_public_key.len = sizeof id->public_key;
    ru.device_name = (char *)DEVICE_NAME;   /* protobuf-c fields are not const */
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
    f.register_user = &ru;
    /* not retry-safe: a second attempt after the first took effect would
     * fail with "name taken" and hide the new user */
    pc_request req = {.frame = &f, .retry_safe = false, .sig = &ru.signature,
                      .sign_key = id->secret_key};
    Parley__V1__Frame *resp;
    if (pc_request_run(c, &req, &resp) < 0) return -1;
    return take_registered(c, resp, id);
}

int pc_register_device(pc_client *c, const char *token, pc_identity *id) {
    Parley__V1__RegisterDevice rd = PARLEY__V1__REGISTER_DEVICE__INIT;
    rd.token = (char *)token;
    rd.device_public_key.data = id->public_key;
    rd.device_public_key.len = sizeof id->public_key;
    rd.device_name = (char *)DEVICE_NAME;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_DEVICE;
    f.register_device = &rd;
    /* the token is single-use: a retry after it was spent cannot succeed */
    pc_request req = {.frame = &f, .retry_safe = false, .sig = &rd.signature,
                      .sign_key = id->secret_key};
    Parley__V1__Frame *resp;
    if (pc_request_run(c, &req, &resp) < 0) return -1;
    return take_registered(c, resp, id);
}

static void fill_sign_in(Parley__V1__SignIn *si, Parley__V1__Frame *f, const pc_identity *id) {
    si->user_id = id->user_id;
    si->device_id = id->device_id;
    f->body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f->sign_in = si;
}

int pc_sign_in(pc_client *c, const pc_identity *id) {
    pc_identity copy = *id;
    Parley__V1__SignIn si = PARLEY__V1__SIGN_IN__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    fill_sign_in(&si, &f, &copy);
    pc_request req = {.frame = &f, .retry_safe = true, .sig = &si.signature,
                      .sign_key = copy.secret_key};
    Parley__V1__Frame *resp;
    int r = pc_request_run(c, &req, &resp);
    if (r == 0 && resp->response->result_case != PARLEY__V1__RESPONSE__RESULT_REGISTERED) {
        /* the ids are ours already; an answer without them is still a yes */
        parley__v1__frame__free_unpacked(resp, NULL);
        c->id = copy;
        c->have_identity = true;
    } else if (r == 0) {
        r = take_registered(c, resp, &copy);
    }
    sodium_memzero(&copy, sizeof copy);
    return r;
}

int pc_sign_in_once(pc_client *c) {
    Parley__V1__SignIn si = PARLEY__V1__SIGN_IN__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    fill_sign_in(&si, &f, &c->id);
    pc_request req = {.frame = &f, .retry_safe = true, .sig = &si.signature,
                      .sign_key = c->id.secret_key};
    Parley__V1__Frame *resp;
    if (pc_request_once(c, &req, &resp) < 0) return -1;
    parley__v1__frame__free_unpacked(resp, NULL);
    return 0;
}
