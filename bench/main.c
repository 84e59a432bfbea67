/* main.c -- parley-bench: options, the server under test, the scenario.
 *
 *   parley-bench SCENARIO [options]
 *
 * Benchmarks are not tests: this prints figures (and writes them as JSON)
 * and exits 0 whenever it could measure, whatever the figures are (except
 * 3: an --e2e run in which a delivery did not decrypt measured nothing). Every
 * load loop is bounded in count and time; all traffic is on 127.0.0.0/8. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sodium.h>

#include "bench.h"
#include "bench_e2e.h"

bench_opts g_opt;

static void usage(FILE *out) {
    fprintf(out,
        "usage: parley-bench SCENARIO [options]\n"
        "scenarios:\n"
        "  connections --n N [--hold S]       idle authenticated connections: connect rate, memory per connection\n"
        "  direct --pairs P --rate R|max --seconds S   1:1 conversations: acked sends/s, deliveries/s, latency\n"
        "  group --size 250 --groups G --senders all|K --seconds S   fan-out: deliveries/s, latency, receipts/s\n"
        "  live [--rate R] --seconds S        live event: group of --size (250), every member sending, R msgs/s\n"
        "                                     in all (default 1000: ~250,000 deliveries/s): delivery p50/p99/p99.9\n"
        "  reconnect --n N [--restart drain|kill]   server restarted under N clients: time until back, shed\n"
        "  sync --backlog M                   an offline device returns to M messages: catch-up rate\n"
        "options:\n"
        "  --server ws://HOST:PORT   server under test (default: start build/parley on a free port);\n"
        "                            or several, URL1,URL2,... (at most 16): each connection picks\n"
        "                            one at random and another after each loss; /metrics and the\n"
        "                            like are read from the first\n"
        "  --register-server URL     new users are registered there (one ws://HOST:PORT), and\n"
        "                            their connections made to --server after (connections: so the\n"
        "                            servers measured never did the registering)\n"
        "  --spread random|even      several --server URLs: each connection at random (default), or\n"
        "                            connection i of each bench process on URL i mod their count\n"
        "  --hook CMD                connections: run CMD (sh -c) with PARLEY_BENCH_PHASE=base once\n"
        "                            the users are registered and before any connection opens, and\n"
        "                            =held while every connection is held (a server elsewhere is\n"
        "                            measured by it); its exit status is not looked at\n"
        "  --identities FILE         connections: take the users from FILE when it has all of them\n"
        "                            (a run that registered them there), else register them and\n"
        "                            write them there (0600; secret keys of bench users: keep it\n"
        "                            out of git). Needs --server\n"
        "  --register-only           connections: register (or find in --identities) the users, then end\n"
        "  --parley PATH             server binary to start (default: parley next to parley-bench)\n"
        "  --fsync always|batch|off  fsync policy of the started server (or the one --server runs with)\n"
        "  --server-workers N        worker threads of the started server (or of --server's)\n"
        "  --threads T               bench loops, one thread each (default 1)\n"
        "  --procs K                 connections: bench processes (default: as RLIMIT_NOFILE needs)\n"
        "  --window W                sends in flight per sender in max mode (default 8)\n"
        "  --messages N              direct/group in max mode: send exactly N messages in all, end once\n"
        "                            they are acked and delivered (--seconds bounds it); a fixed\n"
        "                            workload for scripts/callgrind.sh\n"
        "  --body BYTES              message body size (default 32, min 16)\n"
        "  --e2e                     direct/group/live: every send encrypted with the sender's Sender Key\n"
        "                            (client/e2e), every delivery decrypted and verified before its\n"
        "                            latency is read; a delivery that does not decrypt makes the run\n"
        "                            invalid (exit status 3). Keys are handed over in-process at setup\n"
        "                            (key distribution is not in these figures)\n"
        "  --ack-every N             events per cumulative Ack (default 64; a sender's rides on its next send)\n"
        "  --heartbeat S             seconds between pings per connection (default 10)\n"
        "  --json FILE               write the figures as JSON\n"
        "  --plot FILE.png           draw the latency distribution (gnuplot)\n"
        "  --quiet                   no progress line\n");
}

/* One "ws://HOST:PORT" into hosts[i], ports[i]. */
static int parse_one_server(const char *url, size_t len, int i) {
    if (len < 5 || strncmp(url, "ws://", 5) != 0) return -1;
    const char *h = url + 5, *end = url + len, *colon = NULL;
    for (const char *p = h; p < end; p++)
        if (*p == ':') colon = p;
    if (!colon || (size_t)(colon - h) >= sizeof g_opt.hosts[i]) return -1;
    memcpy(g_opt.hosts[i], h, (size_t)(colon - h));
    g_opt.hosts[i][colon - h] = 0;
    if (strcmp(g_opt.hosts[i], "localhost") == 0) strcpy(g_opt.hosts[i], "127.0.0.1");
    char digits[8];
    size_t dl = (size_t)(end - colon - 1);
    if (dl == 0 || dl >= sizeof digits || strspn(colon + 1, "0123456789") < dl) return -1;
    memcpy(digits, colon + 1, dl);
    digits[dl] = 0;
    g_opt.ports[i] = atoi(digits);
    if (strncmp(g_opt.hosts[i], "127.", 4) != 0) {
        fprintf(stderr, "parley-bench: the bench only drives servers on 127.0.0.0/8\n");
        return -1;
    }
    return g_opt.ports[i] > 0 && g_opt.ports[i] < 65536 ? 0 : -1;
}

/* --server URL or URL1,URL2,... (at most BENCH_MAX_SERVERS); the first is
 * also g_opt.host/port. */
static int parse_server(const char *list) {
    if (strlen(list) >= sizeof g_opt.server_url) return -1;
    g_opt.n_servers = 0;
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        if (g_opt.n_servers == BENCH_MAX_SERVERS || parse_one_server(p, len, g_opt.n_servers)) return -1;
        g_opt.n_servers++;
        p += len;
        if (*p == 0) break;
    }
    strcpy(g_opt.host, g_opt.hosts[0]);
    g_opt.port = g_opt.ports[0];
    return 0;
}

/* The bench and the server it starts get the hard limit of open files. */
static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static char *default_parley_bin(void) {
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    if (n <= 0) return "build/parley";
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "parley");
    return path;
}

static server_proc *g_server;
static void on_signal(int sig) {
    if (g_server && g_server->pid > 0) kill(g_server->pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    g_opt.scenario = argv[1];
    g_opt.threads = 1;
    g_opt.n = 1000;
    g_opt.pairs = 1000;
    g_opt.group_size = 250;
    g_opt.groups = 1;
    g_opt.senders = -1;
    g_opt.backlog = 100000;
    g_opt.window = 8;
    g_opt.seconds = 10;
    g_opt.hold = 10;
    g_opt.heartbeat = 10;
    g_opt.body_bytes = 32;
    g_opt.ack_every = 64;
    g_opt.fsync = "batch";
    g_opt.restart_mode = "drain";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) { g_opt.quiet = 1; continue; }
        if (strcmp(a, "--e2e") == 0) { g_opt.e2e = true; continue; }
        if (strcmp(a, "--register-only") == 0) { g_opt.register_only = true; continue; }
        if (strcmp(a, "--help") == 0) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "parley-bench: %s needs a value\n", a); return 2; }
        i++;
        if (strcmp(a, "--server") == 0) {
            snprintf(g_opt.server_url, sizeof g_opt.server_url, "%s", v);
            if (parse_server(v)) { fprintf(stderr, "parley-bench: bad --server %s\n", v); return 2; }
        } else if (strcmp(a, "--register-server") == 0) {
            size_t len = strlen(v);
            if (strchr(v, ',') || parse_one_server(v, len, BENCH_REGISTER_SERVER)) {
                fprintf(stderr, "parley-bench: bad --register-server %s (one ws://127.x.x.x:PORT)\n", v);
                return 2;
            }
            g_opt.register_server = true;
        } else if (strcmp(a, "--spread") == 0) {
            if (strcmp(v, "even") != 0 && strcmp(v, "random") != 0) {
                fprintf(stderr, "parley-bench: --spread random|even\n");
                return 2;
            }
            g_opt.spread_even = strcmp(v, "even") == 0;
        } else if (strcmp(a, "--hook") == 0) g_opt.hook = v;
        else if (strcmp(a, "--identities") == 0) g_opt.identities = v;
        else if (strcmp(a, "--parley") == 0) g_opt.parley_bin = v;
        else if (strcmp(a, "--fsync") == 0) g_opt.fsync = v;
        else if (strcmp(a, "--server-workers") == 0) g_opt.server_workers = atoi(v);
        else if (strcmp(a, "--threads") == 0) g_opt.threads = atoi(v);
        else if (strcmp(a, "--messages") == 0) g_opt.messages = atol(v);
        else if (strcmp(a, "--procs") == 0) g_opt.procs = atoi(v);
        else if (strcmp(a, "--n") == 0) g_opt.n = atol(v);
        else if (strcmp(a, "--pairs") == 0) g_opt.pairs = atol(v);
        else if (strcmp(a, "--size") == 0) g_opt.group_size = atol(v);
        else if (strcmp(a, "--groups") == 0) g_opt.groups = atol(v);
        else if (strcmp(a, "--senders") == 0) g_opt.senders = strcmp(v, "all") == 0 ? -1 : atol(v);
        else if (strcmp(a, "--backlog") == 0) g_opt.backlog = atol(v);
        else if (strcmp(a, "--rate") == 0) g_opt.rate = strcmp(v, "max") == 0 ? 0 : atof(v);
        else if (strcmp(a, "--window") == 0) g_opt.window = atoi(v);
        else if (strcmp(a, "--seconds") == 0) g_opt.seconds = atof(v);
        else if (strcmp(a, "--hold") == 0) g_opt.hold = atof(v);
        else if (strcmp(a, "--heartbeat") == 0) g_opt.heartbeat = atof(v);
        else if (strcmp(a, "--body") == 0) g_opt.body_bytes = atoi(v);
        else if (strcmp(a, "--ack-every") == 0) g_opt.ack_every = atoi(v);
        else if (strcmp(a, "--restart") == 0) g_opt.restart_mode = v;
        else if (strcmp(a, "--json") == 0) g_opt.json_path = v;
        /* not in --help: tests/integration/test_bench_e2e.c checks with it that a
         * corrupted ciphertext is counted and invalidates the run */
        else if (strcmp(a, "--e2e-tamper-every") == 0) g_opt.e2e_tamper_every = atol(v);
        else if (strcmp(a, "--plot") == 0) g_opt.plot_path = v;
        else { fprintf(stderr, "parley-bench: unknown option %s\n", a); return 2; }
    }
    if ((g_opt.register_server || g_opt.identities) && !g_opt.server_url[0]) {
        fprintf(stderr, "parley-bench: --register-server and --identities need --server\n");
        return 2;
    }
    /* every load is bounded: clamp what could make a run unbounded */
    if (g_opt.seconds <= 0 || g_opt.seconds > 3600) g_opt.seconds = 10;
    if (g_opt.hold < 0 || g_opt.hold > 3600) g_opt.hold = 10;
    if (g_opt.window < 1) g_opt.window = 1;
    if (g_opt.window > 1024) g_opt.window = 1024;
    if (g_opt.messages < 0 || g_opt.messages > 100000000) g_opt.messages = 0;
    if (g_opt.ack_every < 1) g_opt.ack_every = 1;
    if (g_opt.threads < 1 || g_opt.threads > 64) g_opt.threads = 1;
    if (g_opt.messages > 0 && g_opt.messages < g_opt.threads) g_opt.messages = g_opt.threads;   /* a share for every loop */
    if (g_opt.n < 1 || g_opt.n > 10000000) g_opt.n = 1000;
    if (g_opt.pairs < 1 || g_opt.pairs > 1000000) g_opt.pairs = 1000;
    if (g_opt.group_size < 2 || g_opt.group_size > 65536) g_opt.group_size = 250;
    if (g_opt.groups < 1 || g_opt.groups > 10000) g_opt.groups = 1;
    if (g_opt.backlog < 1 || g_opt.backlog > 100000000) g_opt.backlog = 100000;
    if (!g_opt.parley_bin) g_opt.parley_bin = default_parley_bin();
    if (g_opt.e2e_tamper_every < 0) g_opt.e2e_tamper_every = 0;
    if (g_opt.e2e && strcmp(g_opt.scenario, "direct") != 0 && strcmp(g_opt.scenario, "group") != 0 &&
        strcmp(g_opt.scenario, "live") != 0) {
        fprintf(stderr, "parley-bench: --e2e applies to direct, group and live only\n");
        return 2;
    }

    if (sodium_init() < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    server_proc srv;
    memset(&srv, 0, sizeof srv);
    snprintf(srv.fsync, sizeof srv.fsync, "%s", g_opt.fsync);
    srv.workers = g_opt.server_workers;
    if (!g_opt.server_url[0]) {
        g_server = &srv;
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        if (server_start(&srv, NULL)) {
            server_stop(&srv, SIGKILL);
            server_cleanup(&srv);
            return 1;
        }
        strcpy(g_opt.host, "127.0.0.1");
        g_opt.port = srv.port;
        g_opt.n_servers = 1;
        strcpy(g_opt.hosts[0], g_opt.host);
        g_opt.ports[0] = srv.port;
        fprintf(stderr, "parley-bench: started %s on 127.0.0.1:%d (fsync %s, %d workers, data %s)\n",
                g_opt.parley_bin, srv.port, srv.fsync, srv.workers, srv.data_dir);
    } else if (srv.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);   /* the server's default, unless told */
        srv.workers = n > 0 ? (int)n : 1;
    }

    int rc;
    const char *s = g_opt.scenario;
    if (strcmp(s, "connections") == 0) rc = scenario_connections(&srv);
    else if (strcmp(s, "direct") == 0) rc = scenario_direct(&srv);
    else if (strcmp(s, "group") == 0) rc = scenario_group(&srv);
    else if (strcmp(s, "live") == 0) {   /* group at a fixed load: every member sends, R in all */
        g_opt.senders = -1;
        if (g_opt.rate <= 0) g_opt.rate = 1000;
        rc = scenario_group(&srv);
    }
    else if (strcmp(s, "reconnect") == 0) rc = scenario_reconnect(&srv);
    else if (strcmp(s, "sync") == 0) rc = scenario_sync(&srv);
    else {
        fprintf(stderr, "parley-bench: unknown scenario %s\n", s);
        usage(stderr);
        rc = 2;
    }
    if (rc == 0) report_end(g_opt.json_path);
    if (rc == 0 && g_e2e_run_invalid) {
        /* the figures above are written down (JSON "valid": false) but are not figures */
        fprintf(stderr, "parley-bench: INVALID RUN: deliveries that did not decrypt (decrypt_errors)\n");
        rc = 3;
    }
    if (srv.pid > 0) {
        server_stop(&srv, SIGTERM);
        server_cleanup(&srv);
    }
    return rc;
}
