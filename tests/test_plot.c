/* `linnet plot` through the binary, on synthetic metrics.jsonl runs: PNG and SVG come out with the
 * size asked for, a legend naming each run and one path per series; missing and malformed input,
 * an unknown extension, no runs and a missing gnuplot each get a one-line error and leave no
 * picture. Without gnuplot on PATH the drawing tests are skipped: the suite exits 77 (ctest's
 * SKIP_RETURN_CODE) after the tests that need no gnuplot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "recipes/metrics.h"
#include "testing.h"

static char root[512]; /* the runs and pictures */

/* root/DIR/FILE holding `text` (DIR made when missing). */
static void write_file(const char *dir, const char *file, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A run directory root/NAME whose metrics.jsonl is `text`. */
static void write_run(const char *name, const char *text) { write_file(name, "metrics.jsonl", text); }

/* A run of `steps` steps as linnet train writes it: the untrained val loss, then one line a step,
 * val_loss every `every` steps; `tail` is appended as is. */
static void write_synthetic_run(const char *name, int steps, int every, double lr, const char *tail) {
    size_t cap = 256 * (size_t)(steps + 2) + strlen(tail);
    char *text = malloc(cap), *p = text;
    p += sprintf(p, "{\"step\":0,\"val_loss\":5.6}\n");
    for (int s = 1; s <= steps; s++) {
        double loss = 2.0 + 3.5 / (1.0 + 0.2 * s) + 0.05 * ((s * 7) % 5) / 5.0;
        p += sprintf(p, "{\"step\":%d,\"loss\":%.17g,\"lr\":%.17g,\"grad_norm\":%.17g,\"tokens_per_s\":%.1f", s, loss,
                     lr * (s < 10 ? s / 10.0 : 1.0), 3.0 / (1.0 + 0.1 * s), 5000.0 + 100.0 * (s % 3));
        if (s % every == 0) p += sprintf(p, ",\"val_loss\":%.17g", loss + 0.1);
        p += sprintf(p, "}\n");
    }
    strcpy(p, tail);
    write_run(name, text);
    free(text);
}

/* `linnet plot ARGS` in root (env: a prefix such as PATH=...); stderr to root/NAME.err. */
static int plot(const char *name, const char *env, const char *args) {
    char cmd[4096], err[1024];
    snprintf(err, sizeof err, "%s/%s.err", root, name);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s plot %s >/dev/null 2>%s", root, env ? env : "", test_linnet_bin(), args, err);
    return test_system(cmd, NULL);
}

static char *read_in_root(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, name);
    return test_read_file(path);
}

/* The command must fail: exit 1, exactly one line on stderr, naming `expect`. */
static void expect_error(const char *name, const char *env, const char *args, const char *expect) {
    int rc = plot(name, env, args);
    char errname[600];
    snprintf(errname, sizeof errname, "%s.err", name);
    char *err = read_in_root(errname);
    assert_non_null(err);
    if (rc != 1) fail_msg("%s: exit %d (want 1): %s", name, rc, err);
    int lines = 0;
    for (char *p = err; *p; p++) lines += *p == '\n';
    if (lines != 1) fail_msg("%s: %d lines on stderr (want 1): %s", name, lines, err);
    if (!strstr(err, expect)) fail_msg("%s: error does not name '%s': %s", name, expect, err);
    free(err);
}

/* The command must succeed (else the test fails with its stderr). */
static void expect_success(const char *name, const char *args) {
    int rc = plot(name, NULL, args);
    char errname[600];
    snprintf(errname, sizeof errname, "%s.err", name);
    char *err = read_in_root(errname);
    if (rc != 0) fail_msg("%s: plot exited %d: %s", name, rc, err ? err : "");
    free(err);
}

/* No file of root starts with `prefix` (no picture, no FILE.tmp left over). */
static void assert_no_file(const char *prefix) {
    DIR *d = opendir(root);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) fail_msg("%s/%s was left behind", root, e->d_name);
    closedir(d);
}

static int setup(void **state) {
    const char *tmp = test_tmpdir();
    if (!tmp) return -1;
    snprintf(root, sizeof root, "%s", tmp);
    return 0;
}

static int teardown(void **state) {
    if (getenv("LINNET_KEEP_TMP")) return 0;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return test_system(cmd, NULL) == 0 ? 0 : -1;
}

/* ---- the reader ---- */

static void reader_skips_partial_last_line_and_lets_resumed_steps_win(void **state) {
    /* steps 1-4, val at 0 and 4; resumed from step 2 (steps 3-5 again, val at 4); a cut last line */
    write_run("resumed", "{\"step\":0,\"val_loss\":5.5}\n"
                         "{\"step\":1,\"loss\":5,\"lr\":0.1,\"grad_norm\":1,\"tokens_per_s\":10}\n"
                         "\n"
                         "{\"step\":2,\"loss\":4,\"lr\":0.1,\"grad_norm\":1,\"tokens_per_s\":10}\n"
                         "{\"step\":3,\"loss\":3,\"lr\":0.1,\"grad_norm\":1,\"tokens_per_s\":10}\n"
                         "{\"step\":4,\"loss\":2,\"lr\":0.1,\"grad_norm\":1,\"tokens_per_s\":10,\"val_loss\":2.5}\n"
                         "{\"step\":3,\"loss\":3.5,\"lr\":0.2}\n"
                         "{\"step\":4,\"loss\":2.5,\"lr\":0.2,\"grad_norm\":1,\"tokens_per_s\":10,\"val_loss\":2.7}\n"
                         "{\"step\":5,\"loss\":2.25,\"lr\":0.2,\"grad_norm\":1,\"tokens_per_s\":10}\n"
                         "{\"step\":6,\"loss\":2.1,\"lr");
    char path[1024];
    snprintf(path, sizeof path, "%s/resumed/metrics.jsonl", root);
    ln_metrics m;
    assert_ok(ln_metrics_read(path, &m));
    assert_int_equal(m.n_train, 5);
    const double want[5] = {5, 4, 3.5, 2.5, 2.25};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(m.train[i].step, i + 1);
        assert_true(m.train[i].loss == want[i]);
    }
    assert_true(m.train[2].grad_norm != m.train[2].grad_norm); /* a key the line lacked is NaN */
    assert_int_equal(m.n_val, 2);
    assert_int_equal(m.val[0].step, 0);
    assert_int_equal(m.val[1].step, 4);
    assert_true(m.val[1].val_loss == 2.7);
    ln_metrics_free(&m);

    /* a cut line that is not the last is an error naming its line */
    write_run("cut-inside", "{\"step\":1,\"loss\":5}\n{\"step\":2,\"lo\n{\"step\":3,\"loss\":4}\n");
    snprintf(path, sizeof path, "%s/cut-inside/metrics.jsonl", root);
    assert_int_equal(ln_metrics_read(path, &m), LN_ERR);
    ln_metrics_free(&m);
    if (!strstr(ln_error_message(), "metrics.jsonl:2:")) fail_msg("%s", ln_error_message());
}

/* ---- errors (no gnuplot needed: each is found before it would start) ---- */

static void bad_input_fails_with_one_line(void **state) {
    write_synthetic_run("good", 10, 5, 1e-3, "");
    write_run("malformed", "{\"step\":0,\"val_loss\":5.6}\n{\"step\":1,\"loss\":5}\n{\"step\":2,\"loss\":4,]\n"
                           "{\"step\":3,\"loss\":3}\n");
    write_run("no-step", "{\"loss\":5}\n");
    write_run("string-loss", "{\"step\":1,\"loss\":\"5\"}\n");
    write_run("val-only", "{\"step\":0,\"val_loss\":5.6}\n");
    write_run("empty", "");
    char path[1024];
    snprintf(path, sizeof path, "%s/no-metrics", root);
    mkdir(path, 0755);

    expect_error("missing-dir", NULL, "good nowhere --out x.png", "nowhere");
    expect_error("no-metrics", NULL, "good no-metrics --out x.png", "no-metrics/metrics.jsonl");
    expect_error("malformed", NULL, "good malformed --out x.png", "malformed/metrics.jsonl:3:");
    expect_error("no-step", NULL, "no-step --out x.png", "no-step/metrics.jsonl:1:");
    expect_error("string-loss", NULL, "string-loss --out x.png", "\"loss\"");
    expect_error("val-only", NULL, "val-only --out x.png", "val-only/metrics.jsonl: no training steps");
    expect_error("empty", NULL, "empty --out x.png", "empty/metrics.jsonl: no training steps");
    expect_error("not-a-dir", NULL, "good/metrics.jsonl --out x.png", "not a directory");
    expect_error("extension", NULL, "good --out x.jpg", "'.jpg'");
    expect_error("no-extension", NULL, "good --out picture", "picture");
    expect_error("no-runs", NULL, "--out x.png", "no run directory");
    expect_error("no-out", NULL, "good", "--out");
    expect_error("bad-size", NULL, "good --out x.png --size 12", "--size");
    expect_error("unknown-option", NULL, "good --out x.png --colour red", "--colour");
    assert_no_file("x.");
}

/* root/DIR/gnuplot: a shell script standing in for gnuplot */
static void fake_gnuplot(const char *dir, const char *script) {
    write_file(dir, "gnuplot", script);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/gnuplot", root, dir);
    assert_int_equal(chmod(path, 0755), 0);
}

static void failing_gnuplot_leaves_the_old_picture(void **state) {
    write_synthetic_run("good", 10, 5, 1e-3, "");
    char path[1024];
    snprintf(path, sizeof path, "%s/old.png", root);
    FILE *f = fopen(path, "w");
    fputs("the old picture", f);
    fclose(f);
    expect_error("no-gnuplot", "PATH=/nonexistent", "good --out old.png", "gnuplot-nox");
    /* a gnuplot that fails after writing half a picture, and one that writes nothing */
    fake_gnuplot("failing", "#!/bin/sh\nout=$(sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$2\")\n"
                            "printf half > \"$out\"\ncp \"$out\" \"${0%/gnuplot}/wrote\"\necho 'line 7: it broke' >&2\nexit 1\n");
    fake_gnuplot("silent", "#!/bin/sh\nexit 0\n");
    char env[1200];
    snprintf(env, sizeof env, "PATH=%s/failing:$PATH", root);
    expect_error("failing-gnuplot", env, "good --out old.png", "gnuplot failed (exit 1): line 7: it broke");
    snprintf(env, sizeof env, "PATH=%s/silent:$PATH", root);
    expect_error("silent-gnuplot", env, "good --out old.png", "gnuplot wrote no image");
    char *half = read_in_root("failing/wrote"); /* it did write into the temporary file */
    assert_non_null(half);
    assert_string_equal(half, "half");
    free(half);
    char *old = read_in_root("old.png");
    assert_string_equal(old, "the old picture");
    free(old);
    assert_no_file("old.png.");
}

static void help_names_the_panels_and_the_partial_line(void **state) {
    char cmd[2048], log[1024];
    snprintf(log, sizeof log, "%s/help.log", root);
    snprintf(cmd, sizeof cmd, "%s plot --help", test_linnet_bin());
    assert_int_equal(test_system(cmd, log), 0);
    char *text = test_read_file(log);
    assert_non_null(strstr(text, "--out FILE.png|FILE.svg"));
    assert_non_null(strstr(text, "gradient norm"));
    assert_non_null(strstr(text, "not finished writing is skipped"));
    free(text);
    snprintf(cmd, sizeof cmd, "%s --help", test_linnet_bin());
    assert_int_equal(test_system(cmd, log), 0);
    text = test_read_file(log);
    assert_non_null(strstr(text, "  plot "));
    free(text);
}

/* ---- drawing (needs gnuplot) ---- */

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void png_has_the_size_asked_for(void **state) {
    write_synthetic_run("lr-3e-3", 40, 10, 3e-3, "");
    /* still training: its last line is half written */
    write_synthetic_run("run two's", 25, 10, 1e-3, "{\"step\":26,\"loss\":2.1,\"lr\":0.00");
    expect_success("png", "lr-3e-3 \"run two's\"/ --out 'curves with space.png' --size 800x600 --title 'a \"title\"' --log-y");
    char path[1024];
    snprintf(path, sizeof path, "%s/curves with space.png", root);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char head[24];
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    assert_memory_equal(head, "\x89PNG\r\n\x1a\n", 8);
    assert_memory_equal(head + 12, "IHDR", 4);
    assert_int_equal(be32(head + 16), 800);
    assert_int_equal(be32(head + 20), 600);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 10000); /* a picture, not a blank page */
    assert_no_file("curves with space.png.");
}

/* The series groups gnuplot's SVG terminal writes (<g id="gnuplot_plot_1a"> ...), in order. */
typedef struct series {
    char id[32];
    int paths;
    char stroke[32]; /* the path's colour */
    int points;      /* coordinates in its path (the legend's sample included where there is one) */
} series;

static int svg_series(const char *svg, series *out, int max) {
    int n = 0;
    for (const char *p = strstr(svg, "<g id=\"gnuplot_plot_"); p && n < max; n++) {
        const char *next = strstr(p + 1, "<g id=\"gnuplot_plot_");
        series *s = &out[n];
        memset(s, 0, sizeof *s);
        sscanf(p, "<g id=\"%31[^\"]\"", s->id);
        const char *end = strstr(p, "</g>\n\t</g>"); /* its last element's closing tag, then its own */
        for (const char *q = strstr(p, "<path"); q && (!end || q < end); q = strstr(q + 1, "<path")) {
            s->paths++;
            sscanf(q, "<path stroke='%31[^']'", s->stroke);
            const char *d = strstr(q, " d='");
            for (const char *c = d ? d + 4 : ""; *c && *c != '\''; c++) s->points += *c == 'M' || *c == 'L';
        }
        p = next;
    }
    return n;
}

static void svg_has_a_legend_and_one_path_per_series(void **state) {
    write_synthetic_run("baseline", 40, 10, 3e-3, "");
    write_synthetic_run("low lr", 25, 10, 1e-3, "{\"step\":26,\"loss\":2.1,\"lr\":0.00");
    expect_success("svg", "baseline 'low lr' --out curves.svg --size 1000x700");
    char *svg = read_in_root("curves.svg");
    assert_non_null(svg);
    assert_non_null(strstr(svg, "width=\"1000\" height=\"700\""));
    /* the legend: each run, and its validation series */
    assert_non_null(strstr(svg, "<text>baseline</text>"));
    assert_non_null(strstr(svg, "<text>low lr</text>"));
    assert_non_null(strstr(svg, "<text>baseline (val)</text>"));
    assert_non_null(strstr(svg, "<text>low lr (val)</text>"));
    /* loss panel: train + val of each run; then lr, tokens/s and grad norm: one series a run */
    series s[16];
    int n = svg_series(svg, s, 16);
    static const char *ids[] = {"gnuplot_plot_1a", "gnuplot_plot_2a", "gnuplot_plot_3a", "gnuplot_plot_4a",
                                "gnuplot_plot_1b", "gnuplot_plot_2b", "gnuplot_plot_1c", "gnuplot_plot_2c",
                                "gnuplot_plot_1d", "gnuplot_plot_2d"};
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
        assert_string_equal(s[i].id, ids[i]);
        if (s[i].paths != 1) fail_msg("%s: %d paths (want 1)", s[i].id, s[i].paths);
    }
    /* one colour per run, the same in every panel; the two runs' differ */
    for (int i = 0; i < 2; i++) {
        const char *c = s[2 * i].stroke;
        assert_string_equal(s[2 * i + 1].stroke, c);
        for (int panel = 1; panel < 4; panel++) assert_string_equal(s[4 + 2 * (panel - 1) + i].stroke, c);
    }
    assert_string_not_equal(s[0].stroke, s[2].stroke);
    /* the panels without a legend: one coordinate a step (the half-written step 26 skipped) */
    assert_int_equal(s[4].points, 40);
    assert_int_equal(s[5].points, 25);
    /* val points: steps 0, 10, 20, 30, 40 and 0, 10, 20, plus the legend's sample line */
    assert_int_equal(s[1].points, 5 + 2);
    assert_int_equal(s[3].points, 3 + 2);
    free(svg);

    /* the same name twice: the legend shows the paths as given */
    char path[1024];
    snprintf(path, sizeof path, "%s/other", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "cp -r %s/baseline %s/other/", root, root);
    assert_int_equal(test_system(path, NULL), 0);
    expect_success("svg-same-name", "baseline other/baseline --out same.svg");
    svg = read_in_root("same.svg");
    assert_non_null(strstr(svg, "<text>baseline</text>"));
    assert_non_null(strstr(svg, "<text>other/baseline</text>"));
    free(svg);

    /* metrics without a key (an older linnet's): that panel says so, the others are drawn */
    write_run("loss-only", "{\"step\":1,\"loss\":5,\"lr\":0.1}\n{\"step\":2,\"loss\":4,\"lr\":0.1}\n");
    expect_success("svg-loss-only", "loss-only --out loss-only.svg");
    svg = read_in_root("loss-only.svg");
    assert_non_null(strstr(svg, "<text>no \"tokens_per_s\" in metrics.jsonl"));
    assert_non_null(strstr(svg, "<text>no \"grad_norm\" in metrics.jsonl"));
    assert_null(strstr(svg, "no \"lr\""));
    free(svg);
}

int main(void) {
    const struct CMUnitTest without_gnuplot[] = {
        cmocka_unit_test(reader_skips_partial_last_line_and_lets_resumed_steps_win),
        cmocka_unit_test(bad_input_fails_with_one_line),
        cmocka_unit_test(failing_gnuplot_leaves_the_old_picture),
        cmocka_unit_test(help_names_the_panels_and_the_partial_line),
    };
    const struct CMUnitTest with_gnuplot[] = {
        cmocka_unit_test(png_has_the_size_asked_for),
        cmocka_unit_test(svg_has_a_legend_and_one_path_per_series),
    };
    int failed = cmocka_run_group_tests(without_gnuplot, setup, teardown);
    if (test_system("command -v gnuplot >/dev/null", NULL) != 0)
        return failed ? 1
                      : test_skip_suite("gnuplot is not on PATH, so nothing was drawn (bash scripts/install-deps.sh "
                                        "installs gnuplot-nox)");
    return cmocka_run_group_tests(with_gnuplot, setup, teardown) || failed;
}
