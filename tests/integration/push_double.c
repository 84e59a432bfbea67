/* push_double.c -- see push_double.h. */
#include "push_double.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

size_t push_unb64(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    if (sodium_base642bin(out, cap, s, strlen(s), NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return 0;
    return n;
}

/* DIR/subs.txt: "ID ENDPOINT P256DH AUTH" per subscription */
static int read_subs(push_double *d) {
    char path[256];
    snprintf(path, sizeof path, "%s/subs.txt", d->dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    for (int i = 1; i <= d->n_subs; i++) {
        push_sub *s = &d->subs[i];
        char p[128], a[64];
        if (fscanf(f, "%15s %255s %127s %63s", s->id, s->endpoint, p, a) != 4 ||
            push_unb64(p, s->p256dh, sizeof s->p256dh) != sizeof s->p256dh ||
            push_unb64(a, s->auth, sizeof s->auth) != sizeof s->auth) {
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

int push_double_start(push_double *d, const char *dir, int n_subs, int wait_ms) {
    memset(d, 0, sizeof *d);
    if (n_subs < 1 || n_subs > PUSH_DOUBLE_SUBS_MAX) return -1;
    d->n_subs = n_subs;
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    if (h_make_cert(d->dir, d->cert, d->key, sizeof d->cert) != 0) return -1;
    char port[16], n[16], script[512], logp[256];
    snprintf(port, sizeof port, "%d", h_free_port());
    snprintf(n, sizeof n, "%d", n_subs);
    snprintf(script, sizeof script, "%s/tests/push/push_double.py", PARLEY_SOURCE_DIR);
    snprintf(logp, sizeof logp, "%s/double.log", d->dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);   /* gone with the test, however it ends */
        if (!freopen(logp, "w", stdout) || !freopen(logp, "a", stderr)) _exit(127);
        execlp("python3", "python3", script, "--dir", d->dir, "--port", port, "--cert", d->cert, "--key", d->key,
               "--subs", n, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    char ready[256];
    snprintf(ready, sizeof ready, "%s/ready", d->dir);
    uint64_t end = h_now_ms() + (uint64_t)wait_ms;
    struct stat st;
    while (stat(ready, &st) != 0) {
        int status;
        int exited = waitpid(d->pid, &status, WNOHANG) == d->pid;
        if (exited || h_now_ms() > end) {
            fprintf(stderr, "  the push double did not start (python3 with cryptography?); see %s\n", logp);
            if (!exited) {   /* not ready in time: stopped quietly, the caller says what it means */
                kill(d->pid, SIGKILL);
                waitpid(d->pid, NULL, 0);
            }
            d->pid = 0;
            return -1;
        }
        h_sleep_ms(50);
    }
    return read_subs(d);
}

int push_double_set_vapid_key(const push_double *d, const char *vapid) {
    char path[256];
    snprintf(path, sizeof path, "%s/vapid-key", d->dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(vapid, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

void push_double_stop(push_double *d) {
    if (d->pid <= 0) return;
    char logp[256];
    snprintf(logp, sizeof logp, "%s/double.log", d->dir);
    h_pid_stop_checked(d->pid, logp, "push double");
    d->pid = 0;
}
