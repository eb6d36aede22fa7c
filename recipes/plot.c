/* `linnet plot`: the runs' metrics go to a data file, the four panels to a gnuplot script (both
 * mkstemp files), and gnuplot, started without a shell, draws them into a file beside the output
 * that is renamed over it once gnuplot has succeeded. */
#include "recipes/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/error.h"
#include "checkpoints/atomic_file.h"
#include "recipes/metrics.h"

extern char **environ;

typedef struct plot_run {
    const char *dir;
    char *name; /* the legend's: the directory's own name (the path as given when two share it) */
    ln_metrics metrics;
    int train_block, val_block; /* gnuplot `index` of each series in the data file (-1: none) */
} plot_run;

/* Okabe-Ito's colour-blind-safe colours (yellow, too faint on white, left out), then repeated. */
static const char *const colours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#999999"};
#define N_COLOURS (int)(sizeof colours / sizeof colours[0])

static char *dup_printf(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

static bool has_extension(const char *path, const char *ext) {
    const char *base = strrchr(path, '/'), *dot = strrchr(base ? base : path, '.');
    return dot && dot[1] && !strcasecmp(dot + 1, ext);
}

int ln_plot_check_out(const char *out) {
    if (has_extension(out, "png") || has_extension(out, "svg")) return LN_OK;
    const char *base = strrchr(out, '/'), *dot = strrchr(base ? base : out, '.');
    if (!dot || !dot[1]) return ln_fail("%s: no image extension (use .png or .svg)", out);
    return ln_fail("%s: unknown image extension '%s' (use .png or .svg)", out, dot);
}

/* The last component of dir, trailing slashes aside ("." and ".." resolved). */
static char *dir_name(const char *dir) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    char *name = strndup(dir + start, len - start);
    if (name && (!name[0] || !strcmp(name, ".") || !strcmp(name, ".."))) {
        char *real = realpath(dir, NULL);
        if (real) {
            free(name);
            name = dir_name(real[1] ? real : "/");
            free(real);
        }
    }
    return name;
}

static int read_run(plot_run *r) {
    struct stat st;
    if (stat(r->dir, &st)) return ln_fail("%s: cannot open run directory: %s", r->dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return ln_fail("%s: not a directory (give the run directory, which holds metrics.jsonl)", r->dir);
    char *path = dup_printf(r->dir, r->dir[0] && r->dir[strlen(r->dir) - 1] == '/' ? "metrics.jsonl" : "/metrics.jsonl");
    if (!path) return ln_fail("out of host memory");
    int status = ln_metrics_read(path, &r->metrics);
    if (status == LN_OK && r->metrics.n_train == 0)
        status = ln_fail("%s: no training steps to plot%s", path, r->metrics.n_val ? " (only validation losses)" : "");
    free(path);
    return status;
}

/* Legend names: each directory's own name, or the path as given where two runs share one. */
static int name_runs(plot_run *runs, int n) {
    for (int i = 0; i < n; i++)
        if (!(runs[i].name = dir_name(runs[i].dir))) return ln_fail("out of host memory");
    for (int i = 0; i < n; i++) {
        bool shared = false;
        for (int k = 0; k < n; k++) shared |= k != i && !strcmp(runs[i].name, runs[k].name);
        if (shared && strcmp(runs[i].name, runs[i].dir)) {
            free(runs[i].name);
            if (!(runs[i].name = strdup(runs[i].dir))) return ln_fail("out of host memory");
        }
    }
    return LN_OK;
}

static void write_number(FILE *f, double v) {
    if (v != v) fputs(" NaN", f);
    else fprintf(f, " %.9g", v);
}

/* One block per series (blocks are separated by two blank lines; gnuplot's `index` counts them). */
static int write_data(FILE *f, plot_run *runs, int n) {
    int block = 0;
    for (int i = 0; i < n; i++) {
        const ln_metrics *m = &runs[i].metrics;
        runs[i].train_block = block++;
        fprintf(f, "# %s: step loss lr grad_norm tokens_per_s\n", runs[i].name);
        for (int64_t p = 0; p < m->n_train; p++) {
            const ln_train_point *t = &m->train[p];
            fprintf(f, "%lld", (long long)t->step);
            write_number(f, t->loss);
            write_number(f, t->lr);
            write_number(f, t->grad_norm);
            write_number(f, t->tokens_per_s);
            fputc('\n', f);
        }
        fputs("\n\n", f);
        runs[i].val_block = m->n_val ? block++ : -1;
        if (!m->n_val) continue;
        fprintf(f, "# %s: step val_loss\n", runs[i].name);
        for (int64_t p = 0; p < m->n_val; p++) fprintf(f, "%lld %.9g\n", (long long)m->val[p].step, m->val[p].val_loss);
        fputs("\n\n", f);
    }
    return ferror(f) ? LN_ERR : LN_OK;
}

/* s as a gnuplot single-quoted string: nothing inside is expanded ('' is a quote); control
 * characters, which would end the command, become spaces. */
static void gp_string(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("''", f);
        else fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
    }
    fputc('\'', f);
}

/* Whether any run's training steps have a number in the field at byte offset `field`. */
static bool has_values(const plot_run *runs, int n, size_t field) {
    for (int i = 0; i < n; i++)
        for (int64_t p = 0; p < runs[i].metrics.n_train; p++) {
            double v;
            memcpy(&v, (const char *)&runs[i].metrics.train[p] + field, sizeof v);
            if (v == v) return true;
        }
    return false;
}

/* One panel: `using` of every run's training block (and, for the loss, the validation points);
 * where no run has the key (metrics of an older linnet), an empty panel saying so. */
static void plot_panel(FILE *f, const char *data, const plot_run *runs, int n, const char *key, size_t field,
                       const char *using, bool with_val) {
    if (!has_values(runs, n, field)) {
        fprintf(f, "set label 1 'no \"%s\" in metrics.jsonl' at graph 0.5, graph 0.5 center\n"
                   "plot [0:1] [0:1] NaN notitle\nunset label 1\n", key);
        return;
    }
    fputs("plot ", f);
    for (int i = 0; i < n; i++) {
        int lt = i % N_COLOURS + 1;
        if (i) fputs(", \\\n     ", f);
        gp_string(f, data);
        fprintf(f, " index %d using %s with %s lt %d title ", runs[i].train_block, using,
                runs[i].metrics.n_train > 1 ? "lines" : "points pt 7", lt);
        if (with_val) gp_string(f, runs[i].name);
        else fputs("''", f);
        if (with_val && runs[i].val_block >= 0) {
            fputs(", \\\n     ", f);
            gp_string(f, data);
            fprintf(f, " index %d using 1:2 with linespoints dt 2 pt 7 ps 0.7 lt %d title ", runs[i].val_block, lt);
            char *label = dup_printf(runs[i].name, " (val)");
            gp_string(f, label ? label : "val");
            free(label);
        }
    }
    fputc('\n', f);
}

/* A log loss axis fitted to the losses, with tics at 1, 1.5, 2, 3, 4, 5, 6 and 8 of each decade
 * (gnuplot's own has none inside a decade, where losses usually stay); over two decades, its own. */
static void log_axis(FILE *f, const plot_run *runs, int n) {
    fputs("set logscale y\n", f);
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < n; i++) {
        const ln_metrics *m = &runs[i].metrics;
        for (int64_t p = 0; p < m->n_train; p++) lo = fmin(lo, m->train[p].loss), hi = fmax(hi, m->train[p].loss);
        for (int64_t p = 0; p < m->n_val; p++) lo = fmin(lo, m->val[p].val_loss), hi = fmax(hi, m->val[p].val_loss);
    }
    if (!(lo > 0) || hi / lo > 100) return;
    static const double steps[] = {1, 1.5, 2, 3, 4, 5, 6, 8};
    double tics[3 * 8 + 8], bottom = lo / 1.04, top = hi * 1.04;
    int count = 0;
    for (int k = (int)floor(log10(bottom)); k <= (int)ceil(log10(top)); k++)
        for (int s = 0; s < 8; s++) {
            double v = steps[s] * pow(10, k);
            if (v >= bottom && v <= top && count < (int)(sizeof tics / sizeof tics[0])) tics[count++] = v;
        }
    if (count < 2) return; /* a range too narrow for these: gnuplot's */
    fprintf(f, "set yrange [%.9g:%.9g]\nset ytics (", bottom, top);
    for (int t = 0; t < count; t++) fprintf(f, "%s%.9g", t ? ", " : "", tics[t]);
    fputs(")\n", f);
}

static int write_script(FILE *f, const char *data, const char *image, plot_run *runs, int n, const ln_plot_options *o) {
    bool svg = has_extension(o->out, "svg");
    if (svg)
        fprintf(f, "set terminal svg size %d,%d font 'Sans,11' noenhanced background '#ffffff'\n", o->width, o->height);
    else
        fprintf(f,
                "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                "  set terminal pngcairo size %d,%d font 'Sans,10' noenhanced background '#ffffff'\n"
                "} else {\n"
                "  set terminal png size %d,%d noenhanced background '#ffffff'\n"
                "}\n",
                o->width, o->height, o->width, o->height);
    fputs("set output ", f);
    gp_string(f, image);
    fputs("\nset datafile missing 'NaN'\n", f);
    for (int c = 0; c < N_COLOURS; c++) fprintf(f, "set linetype %d lc rgb '%s' lw 1.5\n", c + 1, colours[c]);
    fputs("set border 3 lc rgb '#444444'\nset tics nomirror\nset grid lt 1 lc rgb '#e6e6e6' lw 1\n"
          "set xlabel 'step'\nset format y '%g'\nset key top right spacing 1.1 samplen 2.5\n",
          f);
    int64_t last = 0;
    for (int i = 0; i < n; i++) {
        const ln_metrics *m = &runs[i].metrics;
        if (m->train[m->n_train - 1].step > last) last = m->train[m->n_train - 1].step;
    }
    if (last <= 10) fputs("set xtics 1\n", f); /* a run of a few steps: whole steps, not 1.2, 1.4 */
    fputs("set multiplot layout 2,2", f);
    if (o->title && o->title[0]) {
        fputs(" title ", f);
        gp_string(f, o->title);
        fputs(" font ',13'", f);
    }
    fputc('\n', f);
    if (o->log_y) log_axis(f, runs, n);
    fputs("set title 'loss (lines: train, dashed + points: validation)'\nset ylabel 'loss (nats / token)'\n", f);
    plot_panel(f, data, runs, n, "loss", offsetof(ln_train_point, loss), "1:2", true);
    fputs("unset logscale y\nset autoscale y\nset ytics autofreq\nunset key\n", f);
    fputs("set title 'learning rate'\nset ylabel 'lr'\nset format y '%.1e'\nset yrange [0:*]\n", f);
    plot_panel(f, data, runs, n, "lr", offsetof(ln_train_point, lr), "1:3", false);
    fputs("set title 'throughput'\nset ylabel 'thousand tokens / s'\nset format y '%g'\n", f);
    plot_panel(f, data, runs, n, "tokens_per_s", offsetof(ln_train_point, tokens_per_s), "1:($5 / 1000)", false);
    fputs("set title 'gradient norm (before clipping)'\nset ylabel 'global L2 norm'\nset format y '%g'\n", f);
    plot_panel(f, data, runs, n, "grad_norm", offsetof(ln_train_point, grad_norm), "1:4", false);
    fputs("unset multiplot\nset output\n", f);
    return ferror(f) ? LN_ERR : LN_OK;
}

/* mkstemp under $TMPDIR (else /tmp) with its stream; *path is malloc'd. */
static FILE *temp_file(char **path) {
    const char *dir = getenv("TMPDIR");
    *path = dup_printf(dir && dir[0] ? dir : "/tmp", "/linnet-plot-XXXXXX");
    if (!*path) return NULL;
    int fd = mkstemp(*path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) {
            close(fd);
            unlink(*path);
        }
        free(*path);
        *path = NULL;
    }
    return f;
}

/* The last non-empty line of gnuplot's stderr (its error), trimmed, in place. */
static const char *last_line(char *text) {
    size_t len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = '\0';
    char *nl = strrchr(text, '\n');
    const char *line = nl ? nl + 1 : text;
    while (*line == ' ' || *line == '^') line++;
    return *line ? line : "(no message)";
}

/* gnuplot -d SCRIPT (no init file), no shell; its stderr is kept for the error message. */
static int run_gnuplot(const char *script) {
    int pipe_fd[2];
    if (pipe(pipe_fd)) return ln_fail("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipe_fd[1], 2);
    posix_spawn_file_actions_addclose(&actions, pipe_fd[0]);
    posix_spawn_file_actions_addclose(&actions, pipe_fd[1]);
    char *argv[] = {"gnuplot", "-d", (char *)script, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "gnuplot", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fd[1]);
    if (err) {
        close(pipe_fd[0]);
        if (err == ENOENT) return ln_fail("gnuplot not found on PATH: install it (apt-get install gnuplot-nox)");
        return ln_fail("cannot start gnuplot: %s", strerror(err));
    }
    char text[8192], sink[4096];
    size_t got = 0;
    for (;;) {
        bool room = got < sizeof text - 1;
        ssize_t r = read(pipe_fd[0], room ? text + got : sink, room ? sizeof text - 1 - got : sizeof sink);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (room) got += (size_t)r;
    }
    text[got] = '\0';
    close(pipe_fd[0]);
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0)
        if (errno != EINTR) return ln_fail("waiting for gnuplot: %s", strerror(errno));
    if (WIFSIGNALED(wstatus)) return ln_fail("gnuplot was killed by signal %d", WTERMSIG(wstatus));
    if (WEXITSTATUS(wstatus)) return ln_fail("gnuplot failed (exit %d): %s", WEXITSTATUS(wstatus), last_line(text));
    return LN_OK;
}

/* gnuplot draws into OUT.tmp, which replaces OUT only once it holds a picture (atomic_file.h). */
static int draw(plot_run *runs, int n, const ln_plot_options *opts) {
    char *data_path = NULL, *script_path = NULL;
    ln_atomic_file image = {0};
    bool drawn = false; /* gnuplot ran: image.tmp may exist */
    FILE *data = temp_file(&data_path), *script = data ? temp_file(&script_path) : NULL;
    int status = !script ? ln_fail("cannot create a temporary file: %s", strerror(errno)) : LN_OK;
    if (status == LN_OK && write_data(data, runs, n)) status = ln_fail("%s: cannot write: %s", data_path, strerror(errno));
    if (data && fclose(data) && status == LN_OK) status = ln_fail("%s: cannot write: %s", data_path, strerror(errno));
    if (status == LN_OK) status = ln_atomic_begin(&image, opts->out);
    if (status == LN_OK && write_script(script, data_path, image.tmp, runs, n, opts))
        status = ln_fail("%s: cannot write: %s", script_path, strerror(errno));
    if (script && fclose(script) && status == LN_OK) status = ln_fail("%s: cannot write: %s", script_path, strerror(errno));
    if (status == LN_OK) {
        drawn = true;
        status = run_gnuplot(script_path);
    }
    struct stat st;
    if (status == LN_OK && (stat(image.tmp, &st) || st.st_size == 0))
        status = ln_fail("gnuplot wrote no image to %s", image.tmp);
    if (status == LN_OK) status = ln_atomic_commit(&image);
    else if (image.tmp) ln_atomic_abort(&image, drawn);
    if (data_path) unlink(data_path);
    if (script_path) unlink(script_path);
    free(data_path);
    free(script_path);
    return status;
}

int ln_plot(const char *const *run_dirs, int n_runs, const ln_plot_options *opts) {
    if (n_runs < 1) return ln_fail("no run directory given");
    if (ln_plot_check_out(opts->out)) return LN_ERR;
    plot_run *runs = calloc((size_t)n_runs, sizeof *runs);
    if (!runs) return ln_fail("out of host memory");
    int status = LN_OK;
    for (int i = 0; i < n_runs && status == LN_OK; i++) {
        runs[i].dir = run_dirs[i];
        status = read_run(&runs[i]);
    }
    if (status == LN_OK) status = name_runs(runs, n_runs);
    if (status == LN_OK) status = draw(runs, n_runs, opts);
    for (int i = 0; i < n_runs; i++) {
        ln_metrics_free(&runs[i].metrics);
        free(runs[i].name);
    }
    free(runs);
    return status;
}
