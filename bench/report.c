/* report.c -- the figures of one run: a human table on stdout, the same
 * figures as JSON (--json), and the latency distribution drawn by gnuplot
 * (--plot). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum { MAX_ITEMS = 128 };

typedef struct item {
    char key[64];
    char label[96];
    char unit[16];
    char str[256];
    double num;
    bool is_str;
} item;

static struct {
    char scenario[32];
    item items[MAX_ITEMS];
    int n;
    char notes[8][256];
    int n_notes;
} R;

void report_begin(const char *scenario) {
    memset(&R, 0, sizeof R);
    snprintf(R.scenario, sizeof R.scenario, "%s", scenario);
}

static item *add(const char *key, const char *label) {
    if (R.n >= MAX_ITEMS) return NULL;
    item *it = &R.items[R.n++];
    snprintf(it->key, sizeof it->key, "%s", key);
    snprintf(it->label, sizeof it->label, "%s", label ? label : key);
    return it;
}

void report_num(const char *key, double value, const char *unit, const char *label) {
    item *it = add(key, label);
    if (!it) return;
    it->num = value;
    snprintf(it->unit, sizeof it->unit, "%s", unit ? unit : "");
}

void report_str(const char *key, const char *value, const char *label) {
    item *it = add(key, label);
    if (!it) return;
    it->is_str = true;
    snprintf(it->str, sizeof it->str, "%s", value);
}

void report_hist(const char *key, const hist *h, const char *label) {
    static const struct { const char *name; double q; } qs[] = {
        {"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p99_9", 0.999}, {"max", 1.0}};
    char k[64], lab[96];
    snprintf(k, sizeof k, "%s_samples", key);
    snprintf(lab, sizeof lab, "%s: samples", label);
    report_num(k, (double)h->count, "", lab);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        snprintf(k, sizeof k, "%s_%s_ms", key, qs[i].name);
        snprintf(lab, sizeof lab, "%s: %s", label, qs[i].name);
        report_num(k, ns_to_ms(hist_quantile(h, qs[i].q)), "ms", lab);
    }
}

void report_note(const char *fmt, ...) {
    if (R.n_notes >= 8) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(R.notes[R.n_notes++], sizeof R.notes[0], fmt, ap);
    va_end(ap);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

int report_end(const char *json_path) {
    printf("\n== parley-bench %s ==\n", R.scenario);
    for (int i = 0; i < R.n; i++) {
        item *it = &R.items[i];
        if (it->is_str) printf("  %-46s %s\n", it->label, it->str);
        else if (it->num == (double)(long long)it->num && it->num < 1e15)
            printf("  %-46s %lld %s\n", it->label, (long long)it->num, it->unit);
        else printf("  %-46s %.3f %s\n", it->label, it->num, it->unit);
    }
    for (int i = 0; i < R.n_notes; i++) printf("  note: %s\n", R.notes[i]);
    fflush(stdout);
    if (!json_path) return 0;
    FILE *f = fopen(json_path, "w");
    if (!f) {
        perror(json_path);
        return -1;
    }
    fprintf(f, "{\n  \"system\": \"parley\",\n  \"scenario\": ");
    json_str(f, R.scenario);
    for (int i = 0; i < R.n; i++) {
        fprintf(f, ",\n  ");
        json_str(f, R.items[i].key);
        fprintf(f, ": ");
        if (R.items[i].is_str) json_str(f, R.items[i].str);
        else fprintf(f, "%.6g", R.items[i].num);
    }
    fprintf(f, ",\n  \"notes\": [");
    for (int i = 0; i < R.n_notes; i++) {
        if (i) fprintf(f, ", ");
        json_str(f, R.notes[i]);
    }
    fprintf(f, "]\n}\n");
    fclose(f);
    return 0;
}

void report_plot(const char *png, const hist *a, const char *a_label, const hist *b,
                 const char *b_label) {
    if (!png) return;
    char da[] = "/tmp/parley-bench-plot-a-XXXXXX", db[] = "/tmp/parley-bench-plot-b-XXXXXX";
    int fa = mkstemp(da), fb = mkstemp(db);
    if (fa < 0 || fb < 0) return;
    FILE *f = fdopen(fa, "w");
    if (a) hist_write_distribution(a, f);
    fclose(f);
    f = fdopen(fb, "w");
    if (b) hist_write_distribution(b, f);
    fclose(f);
    FILE *g = popen("gnuplot 2>/dev/null", "w");
    if (!g) {
        fprintf(stderr, "parley-bench: gnuplot not found; no plot\n");
    } else {
        /* x: the "nines" (1/(1-q)) on a log axis, as HdrHistogram plots do */
        fprintf(g,
                "set terminal png size 900,540\nset output '%s'\n"
                "set title 'parley-bench %s: latency by percentile'\n"
                "set logscale x\nset logscale y\nset grid\nset xrange [1:100000]\n"
                "set xlabel 'percentile'\nset ylabel 'latency (ms)'\n"
                "set xtics ('50%%%%' 2, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, '99.99%%%%' 10000)\n"
                "set key left top\n"
                "plot '%s' using (1/(1-$1+1e-9)):($2/1e6) with steps title '%s'",
                png, R.scenario, da, a_label ? a_label : "a");
        if (b && b->count) fprintf(g, ", '%s' using (1/(1-$1+1e-9)):($2/1e6) with steps title '%s'", db,
                                   b_label ? b_label : "b");
        fprintf(g, "\n");
        if (pclose(g) != 0) fprintf(stderr, "parley-bench: gnuplot failed; no plot\n");
    }
    unlink(da);
    unlink(db);
}
