/* main.c -- `parley serve`: build the server, run it, stop it cleanly.
 *
 * Start order: store, fan-out replay (what was acknowledged before a crash
 * but not fanned out), queue, registry, writer, fan-out thread, workers.
 * SIGTERM/SIGINT stops in reverse; a second signal exits at once (nothing
 * acknowledged is lost: it is in the store). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat/writer.h"
#include "core/log.h"
#include "fanout/fanout.h"
#include "gateway/worker.h"
#include "server.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: parley serve [options]   run the server (parley serve --help for options)\n"
            "       parley --help\n");
}

static int make_data_dir(const char *dir) {
    if (mkdir(dir, 0700) == 0 || errno == EEXIST) return 0;
    fprintf(stderr, "parley: cannot create %s: %s\n", dir, strerror(errno));
    return -1;
}

static int serve(int argc, char **argv) {
    server srv;
    memset(&srv, 0, sizeof srv);
    config_defaults(&srv.cfg);
    int rc = config_from_args(&srv.cfg, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    log_set_level((enum log_level)srv.cfg.log_level);
    if (sodium_init() < 0 || make_data_dir(srv.cfg.data_dir)) return 1;

    /* signals are taken by sigwait below, not by whichever thread runs */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    char *err = NULL;
    srv.store = store_open(srv.cfg.data_dir, &err);
    if (!srv.store) {
        fprintf(stderr, "parley: cannot open store in %s: %s\n", srv.cfg.data_dir, err ? err : "?");
        free(err);
        return 1;
    }
    if (fanout_replay(&srv)) {
        fprintf(stderr, "parley: fan-out replay failed; see the log above\n");
        store_close(srv.store);
        return 1;
    }
    srv.queue = queue_local_new(65536);
    srv.registry = registry_local_new();
    srv.n_workers = srv.cfg.workers;
    srv.writer = writer_start(&srv);
    srv.fanout = srv.writer ? fanout_start(&srv) : NULL;
    if (!srv.queue || !srv.registry || !srv.writer || !srv.fanout || workers_start(&srv)) {
        fprintf(stderr, "parley: cannot start (see the log above)\n");
        _exit(1);
    }
    log_info("parley listening on %s:%d, data %s, %d workers, fsync %s", srv.cfg.listen_host,
             srv.cfg.listen_port, srv.cfg.data_dir, srv.n_workers, config_fsync_name(srv.cfg.fsync));

    int sig = 0;
    sigwait(&signals, &sig);
    log_info("%s: stopping (a second signal exits at once)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* a second signal during the stop: exit now */
    pthread_sigmask(SIG_UNBLOCK, &signals, NULL);
    signal(SIGTERM, _exit);
    signal(SIGINT, _exit);

    workers_stop(&srv);       /* no new requests; connections closed with 1012 */
    writer_stop(srv.writer);  /* finishes what was queued */
    fanout_stop(srv.fanout);  /* fans out what the writer published */
    workers_free(&srv);
    registry_free(srv.registry);
    queue_free(srv.queue);
    store_close(srv.store);
    log_info("stopped");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
