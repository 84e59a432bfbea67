/* main.c -- `parley serve`: build the server, run it, stop it cleanly.
 *
 * Start order: store, fan-out replay (what was acknowledged before a crash
 * but not fanned out), queue, registry, writer, fan-out thread, workers.
 * SIGTERM/SIGINT drains (workers_stop: listeners closed, connections closed
 * with 1012 over the drain window), then stops the rest in reverse and
 * exits 0; a second signal exits at once (nothing acknowledged is lost: it
 * is in the store). SIGHUP reloads the TLS certificate files. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat/writer.h"
#include "core/log.h"
#include "core/quota.h"
#include "fanout/fanout.h"
#include "gateway/ops_http.h"
#include "gateway/outbox_local.h"
#include "gateway/worker.h"
#include "net/tls.h"
#include "push/push_gateway.h"
#include "server.h"
#include "store/store_cli.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: parley serve [options]   run the server (parley serve --help for options)\n"
            "       parley init --data DIR   create an empty store in DIR, which must be absent\n"
            "                                or empty (serve does the same on such a DIR)\n"
            "       parley store export --data DIR > FILE\n"
            "       parley store import --data DIR < FILE\n"
            "                                copy a store's records out to a stream and into a\n"
            "                                new store (parley store --help)\n"
            "       parley --help\n");
}

static int make_data_dir(const char *dir) {
    if (mkdir(dir, 0700) == 0 || errno == EEXIST) return 0;
    fprintf(stderr, "parley: cannot create %s: %s\n", dir, strerror(errno));
    return -1;
}

/* A gateway holds one descriptor per connection: take the hard limit. */
static void raise_fd_limit(const config *cfg) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_connections + 64)
        log_info("open-file limit %llu is below --max-connections %u: past it new connections "
                 "are refused at accept", (unsigned long long)rl.rlim_cur, cfg->max_connections);
}

/* after the drain window, what the store may still take to finish */
enum { STORE_STOP_GRACE_MS = 2000 };

/* The second SIGTERM/SIGINT, while draining: leave now. Only
 * async-signal-safe calls here. Exit status 0: the operator asked for the
 * stop and got it, and nothing acknowledged is lost (it is in the store;
 * what fan-out had not finished is replayed at the next start). */
static void exit_now(int sig) {
    static const char msg[] = "parley: second signal during the drain: exiting now\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    (void)sig;
    _exit(0);
}

/* SIGHUP: the certificate files were replaced (renewal). New connections
 * get the new certificate; open ones keep theirs. A bad new pair is
 * refused and the old one stays. */
static void reload_tls(server *srv) {
    if (!srv->cfg.tls_cert[0]) {
        log_info("SIGHUP: no TLS configured, nothing to reload");
        return;
    }
    char err[512];
    if (tls_server_reload_all(err, sizeof err) == 0)
        log_info("SIGHUP: reloaded the TLS certificate %s", srv->cfg.tls_cert);
    else
        log_error("SIGHUP: TLS certificate not reloaded, the previous one stays: %s", err);
}

static int serve(int argc, char **argv) {
    server srv;
    memset(&srv, 0, sizeof srv);
    /* the write path answers and delivers through the workers */
    outbox port;
    outbox_local_init(&port, &srv);
    srv.outbox = &port;
    config_defaults(&srv.cfg);
    int rc = config_from_args(&srv.cfg, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    log_set_level((enum log_level)srv.cfg.log_level);
    store_kind kind = STORE_KIND_ROCKSDB;
    if (store_kind_parse(srv.cfg.store, &kind) != 0) {
        fprintf(stderr, "parley: unknown store backend '%s'\n", srv.cfg.store);
        return 2;
    }
    /* the data directory is RocksDB's: another backend's data is elsewhere */
    if (sodium_init() < 0 || (kind == STORE_KIND_ROCKSDB && make_data_dir(srv.cfg.data_dir))) return 1;
    raise_fd_limit(&srv.cfg);

    /* signals are taken by sigwait below, not by whichever thread runs */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);   /* reloads the TLS certificate */
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    char *err = NULL;
    store_options so = {
        .retention_ms = srv.cfg.retention_ms,
        /* a gateway node only reads: the chat node sweeps */
        .sweep_ms = (srv.cfg.cluster.roles & CLUSTER_ROLE_CHAT) ? srv.cfg.retention_sweep_ms : 0,
        .min_free_bytes = srv.cfg.min_free_disk,
        .recover_truncate_corrupt_wal = srv.cfg.recover_truncate_corrupt_wal != 0,
        .cassandra_hosts = srv.cfg.cassandra_hosts,
        .cassandra_keyspace = srv.cfg.cassandra_keyspace,
        /* several nodes: two writers of one seq or user_seq can exist
         * (a stalled owner, store_cassandra_fence.c) */
        .cassandra_fence = srv.cfg.cassandra_fence >= 0
                               ? srv.cfg.cassandra_fence == 1
                               : srv.cfg.cluster.kafka_brokers[0] || srv.cfg.cluster.redis_seeds[0],
    };
    srv.store = store_open_kind(kind, srv.cfg.data_dir, &so, &err);
    if (!srv.store) {
        fprintf(stderr, "parley: cannot open the %s store %s %s: %s\n", store_kind_name(kind),
                kind == STORE_KIND_CASSANDRA ? "keyspace" : "in",
                kind == STORE_KIND_CASSANDRA ? srv.cfg.cassandra_keyspace : srv.cfg.data_dir, err ? err : "?");
        free(err);
        return 1;
    }
    if ((srv.cfg.cluster.roles & CLUSTER_ROLE_FANOUT) && fanout_replay(&srv, NULL, 0, NULL)) {
        fprintf(stderr, "parley: fan-out replay failed; see the log above\n");
        store_close(srv.store);
        return 1;
    }
    srv.n_workers = srv.cfg.workers;
    /* before the fan-out, which hands it offline devices */
    if (srv.cfg.push.enabled && !(srv.push = push_gateway_start(&srv))) {
        fprintf(stderr, "parley: cannot start Web Push (see the log above; --push off runs without it)\n");
        store_close(srv.store);
        return 1;
    }
    int core = server_core_start(&srv);
    ops_listener *ops = NULL;
    if (srv.cfg.metrics_mode == METRICS_SEPARATE)
        ops = ops_listener_start(&srv, srv.cfg.metrics_host, srv.cfg.metrics_port);
    if (core || workers_start(&srv) ||
        (srv.cfg.metrics_mode == METRICS_SEPARATE && !ops)) {
        fprintf(stderr, "parley: cannot start (see the log above)\n");
        _exit(1);
    }
    log_info("parley listening on %s://%s:%d, data %s, %d workers, fsync %s",
             srv.cfg.tls_cert[0] ? "wss" : "ws", srv.cfg.listen_host, srv.cfg.listen_port,
             srv.cfg.data_dir, srv.n_workers, config_fsync_name(srv.cfg.fsync));

    int sig = 0;
    while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) reload_tls(&srv);
    log_info("%s: draining over %u ms (a second signal exits at once)",
             sig == SIGTERM ? "SIGTERM" : "SIGINT", srv.cfg.drain_window_ms);
    /* a second signal during the stop: exit now. The handler is in place
     * before the signals are unblocked, so none falls in between. This
     * thread is the only one with them unblocked: it gets them. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_now;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &signals, NULL);

    /* the store gets the drain and a little more to finish; then what it
     * has not (a frozen Cassandra) fails, unacknowledged, instead of
     * holding the stop for a network timeout per request */
    store_stop_within(srv.store, srv.cfg.drain_window_ms + STORE_STOP_GRACE_MS);
    workers_stop(&srv);       /* drain: no new connections; 1012 spread over the window */
    server_core_stop(&srv);   /* the writer finishes what was queued, then fan-out */
    push_gateway_stop(srv.push);   /* after the fan-out that hands it work */
    srv.push = NULL;
    workers_free(&srv);
    server_core_free(&srv);
    ops_listener_stop(ops);   /* it reads the store: stopped before it */
    store_close(srv.store);
    log_info("stopped");
    return 0;
}

/* `parley init --data DIR`: the explicit way to create a store. */
static int init(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: parley init --data DIR\n"
                   "  creates an empty store in DIR, which must be absent or empty; refuses\n"
                   "  anything else (parley never initialises over existing files)\n");
            return 0;
        } else {
            fprintf(stderr, "parley init: unexpected argument '%s' (usage: parley init --data DIR)\n",
                    argv[i]);
            return 2;
        }
    }
    if (!dir || !*dir) {
        fprintf(stderr, "parley init: --data DIR is required\n");
        return 2;
    }
    char *err = NULL;
    if (store_init(dir, &err) != 0) {
        fprintf(stderr, "parley init: %s\n", err ? err : "failed");
        free(err);
        return 1;
    }
    printf("parley init: created an empty store in %s\n", dir);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "init") == 0) return init(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "store") == 0) return store_cli_main(argc - 2, argv + 2);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
