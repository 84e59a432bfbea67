/* test_web_static.c -- parley serve --web-root DIR serves the browser
 * client's files at /: index.html with no-cache, hashed assets under
 * /assets/ as immutable, the right Content-Type for each; nothing outside
 * DIR, whatever the path says (.., encoded dots, symlinks, hidden files,
 * directories); /healthz, /metrics and the WebSocket upgrade unchanged;
 * --web-root off serves nothing at / and a missing DIR refuses the start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { RESP_MAX = 1 << 16 };

static char resp[RESP_MAX];
static char site[256];       /* the web root: site/root; a secret beside it in site/ */
static char root[300];

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) { perror(p); exit(1); }
    fputs(text, f);
    fclose(f);
}

static void make_site(void) {
    snprintf(site, sizeof site, "/tmp/parley-web-static-XXXXXX");
    if (!mkdtemp(site)) { perror("mkdtemp"); exit(1); }
    snprintf(root, sizeof root, "%s/root", site);
    char assets[340];
    snprintf(assets, sizeof assets, "%s/assets", root);
    if (mkdir(root, 0755) || mkdir(assets, 0755)) { perror("mkdir"); exit(1); }
    write_file(site, "secret.txt", "TOP-SECRET\n");
    write_file(root, "index.html", "<!doctype html><title>parley</title>\n");
    write_file(root, ".hidden", "TOP-SECRET\n");
    write_file(assets, "main-ABC123.js", "console.log('hi')\n");
    write_file(assets, "style-DEF456.css", "body{}\n");
    write_file(root, "sw.js", "self.addEventListener('push', () => {});\n");
    char target[300], link[340];
    snprintf(target, sizeof target, "%s/secret.txt", site);
    snprintf(link, sizeof link, "%s/link-out.txt", root);
    if (symlink(target, link)) { perror("symlink"); exit(1); }
}

static void remove_site(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", site);
    if (site[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", site);
}

/* One raw GET (the path sent exactly as given, never normalised); the
 * whole response, head and body, in resp. Returns the status or -1. */
static int raw_get(int port, const char *path) {
    int fd = h_tcp_connect(port, 5000);
    if (fd < 0) return -1;
    char req[600];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
    if (write(fd, req, (size_t)n) != n) { close(fd); return -1; }
    size_t got = 0;
    for (int reads = 0; got < sizeof resp - 1 && reads < 10000; reads++) {
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = 0;
    int status = -1;
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1) return -1;
    return status;
}

static int has_header(const char *line) {
    char *end = strstr(resp, "\r\n\r\n");
    char *at = strstr(resp, line);
    return at && end && at < end;
}

static h_server S;

static void index_html_is_served_no_cache(void) {
    CHECK(raw_get(S.port, "/") == 200, "GET /:\n%.400s", resp);
    CHECK(has_header("\r\nContent-Type: text/html; charset=utf-8\r\n"), "type:\n%.400s", resp);
    CHECK(has_header("\r\nCache-Control: no-cache\r\n"), "cache:\n%.400s", resp);
    CHECK(has_header("\r\nX-Content-Type-Options: nosniff\r\n"), "nosniff:\n%.400s", resp);
    CHECK(has_header("\r\nContent-Security-Policy: default-src 'self'"), "csp:\n%.400s", resp);
    CHECK(strstr(resp, "\r\n\r\n<!doctype html><title>parley</title>\n"), "body:\n%.400s", resp);
    CHECK(raw_get(S.port, "/index.html?v=1") == 200 && has_header("Cache-Control: no-cache"), "/index.html:\n%.400s", resp);
}

/* The service worker is found by its fixed URL, so it must be revalidated:
 * cached as immutable, a browser would keep running an old worker. */
static void the_service_worker_is_served_no_cache_as_javascript(void) {
    CHECK(raw_get(S.port, "/sw.js") == 200, "GET /sw.js:\n%.400s", resp);
    CHECK(has_header("\r\nContent-Type: text/javascript; charset=utf-8\r\n"), "type:\n%.400s", resp);
    CHECK(has_header("\r\nCache-Control: no-cache\r\n"), "cache:\n%.400s", resp);
    CHECK(strstr(resp, "\r\n\r\nself.addEventListener('push'"), "body:\n%.400s", resp);
}

static void hashed_assets_are_immutable_with_their_type(void) {
    CHECK(raw_get(S.port, "/assets/main-ABC123.js") == 200, "js:\n%.400s", resp);
    CHECK(has_header("\r\nContent-Type: text/javascript; charset=utf-8\r\n"), "js type:\n%.400s", resp);
    CHECK(has_header("\r\nCache-Control: public, max-age=31536000, immutable\r\n"), "js cache:\n%.400s", resp);
    CHECK(has_header("\r\nContent-Length: 18\r\n") && strstr(resp, "\r\n\r\nconsole.log('hi')\n"), "js body:\n%.400s", resp);
    CHECK(raw_get(S.port, "/assets/style-DEF456.css") == 200 && has_header("Content-Type: text/css; charset=utf-8\r\n") &&
              has_header("immutable"), "css:\n%.400s", resp);
    CHECK(raw_get(S.port, "/assets/nope-000.js") == 404, "a missing asset:\n%.400s", resp);
    double served = 0;
    CHECK(h_metric(&S, "parley_web_files_served_total", &served) == 0 && served >= 4, "parley_web_files_served_total %.0f", served);
}

static void nothing_outside_the_root_is_served(void) {
    static const char *const paths[] = {
        "/../secret.txt", "/assets/../../secret.txt", "/assets/../index.html", "/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt", "/..%5csecret.txt", "/link-out.txt", "/.hidden", "//secret.txt",
        "/assets/", "/assets", "/./index.html", "/index.html/", "/index.html%00.js",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        int st = raw_get(S.port, paths[i]);
        CHECK(st == 404 || st == 400, "%s answered %d:\n%.400s", paths[i], st, resp);
        CHECK(!strstr(resp, "TOP-SECRET"), "%s leaked the file outside the root", paths[i]);
    }
    double refused = 0;
    CHECK(h_metric(&S, "parley_web_files_refused_total", &refused) == 0 && refused >= (double)(sizeof paths / sizeof paths[0]),
          "parley_web_files_refused_total %.0f, %zu refused", refused, sizeof paths / sizeof paths[0]);
}

static void healthz_metrics_and_websocket_are_unchanged(void) {
    int st = 0;
    static char body[1 << 17];
    CHECK(h_http_get(S.port, "/healthz", &st, body, sizeof body) == 0 && st == 200 && strcmp(body, "ok\n") == 0,
          "healthz %d '%s'", st, body);
    CHECK(h_http_get(S.port, "/metrics", &st, body, sizeof body) == 0 && st == 200 && strstr(body, "parley_connections"),
          "metrics %d", st);
    h_dev *d = h_user_new(&S, NULL);
    CHECK(d, "a device signs in over the WebSocket with the web root served beside it");
    h_dev_free(d);
}

static void web_root_off_serves_nothing(void) {
    static h_server T;
    const char *flags[] = {"--web-root", "off", NULL};
    NEED(h_server_start(&T, flags) == 0);
    CHECK(raw_get(T.port, "/") == 426, "/ with --web-root off:\n%.400s", resp);
    CHECK(raw_get(T.port, "/index.html") == 404, "/index.html with --web-root off:\n%.400s", resp);
    h_server_destroy(&T);
}

static void a_missing_web_root_refuses_to_start(void) {
    const char *bin = getenv("PARLEY_BIN") ? getenv("PARLEY_BIN") : "build/parley";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' serve --listen 127.0.0.1:%d --data %s/data --web-root %s/absent >%s/refused.log 2>&1",
             bin, h_free_port(), site, site, site);
    int rc = system(cmd);
    CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) != 0, "exit status %d", rc);
    char log[400];
    snprintf(log, sizeof log, "%s/refused.log", site);
    FILE *f = fopen(log, "r");
    NEED(f);
    size_t n = fread(resp, 1, sizeof resp - 1, f);
    fclose(f);
    resp[n] = 0;
    CHECK(strstr(resp, "web-root"), "the refusal names the option: '%s'", resp);
}

int main(void) {
    make_site();
    const char *flags[] = {"--web-root", root, NULL};
    if (h_server_start(&S, flags) != 0) {
        remove_site();
        printf("FAIL start\nCASES 0 passed 1 failed\n");
        return 1;
    }
    RUN(index_html_is_served_no_cache);
    RUN(hashed_assets_are_immutable_with_their_type);
    RUN(the_service_worker_is_served_no_cache_as_javascript);
    RUN(nothing_outside_the_root_is_served);
    RUN(healthz_metrics_and_websocket_are_unchanged);
    h_server_destroy(&S);
    RUN(web_root_off_serves_nothing);
    RUN(a_missing_web_root_refuses_to_start);
    remove_site();
    CHECK_EXIT();
}
