#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "recipes/plot.h"

static const char help[] =
    "usage: linnet plot RUN_DIR... --out FILE.png|FILE.svg [--title TEXT] [--log-y] [--size WxH]\n"
    "\n"
    "Draws the training curves of one or more runs (RUN_DIR/metrics.jsonl, as linnet train writes it)\n"
    "overlaid, one colour per run, the legend naming each by its directory. Four panels against step:\n"
    "train loss (lines) and validation loss (dashed, with points), learning rate, tokens/s, and the\n"
    "gradient norm before clipping.\n"
    "  --out FILE     .png or .svg (the format follows the extension); written whole or not at all\n"
    "  --title TEXT   a title above the four panels\n"
    "  --log-y        a logarithmic loss axis\n"
    "  --size WxH     the picture's size in pixels (default 1200x900)\n"
    "A run still training can be plotted: a last line it has not finished writing is skipped. Where a\n"
    "resumed run repeats steps, the later lines win. Needs gnuplot (apt-get install gnuplot-nox).\n";

static bool parse_size(const char *s, int *w, int *h) {
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) return false;
    const char *rest = end + 1;
    long b = strtol(rest, &end, 10);
    if (end == rest || *end || a < 100 || b < 100 || a > 10000 || b > 10000) return false;
    *w = (int)a;
    *h = (int)b;
    return true;
}

int cmd_plot(int argc, char **argv) {
    ln_plot_options opts = {.width = 1200, .height = 900};
    const char **runs = calloc((size_t)argc, sizeof *runs), *value;
    if (!runs) return cli_error("plot", "out of host memory");
    int n_runs = 0, status = 0;
    for (int i = 1; i < argc && !status; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            free(runs);
            return 0;
        } else if (argv[i][0] != '-') {
            runs[n_runs++] = argv[i];
        } else if (cli_flag(argc, argv, &i, "--out", &opts.out, &status, "plot")) {
        } else if (cli_flag(argc, argv, &i, "--title", &opts.title, &status, "plot")) {
        } else if (cli_flag(argc, argv, &i, "--size", &value, &status, "plot")) {
            if (!status && !parse_size(value, &opts.width, &opts.height))
                status = cli_error("plot", "--size needs WIDTHxHEIGHT in pixels, each 100 to 10000 (e.g. 1200x900)");
        } else if (!strcmp(argv[i], "--log-y")) {
            opts.log_y = true;
        } else {
            status = cli_unknown_option("plot", argv[i]);
        }
    }
    if (!status && !n_runs) status = cli_error("plot", "no run directory given (see linnet plot --help)");
    if (!status && !opts.out) status = cli_error("plot", "no --out FILE.png|FILE.svg given");
    if (!status && ln_plot(runs, n_runs, &opts)) status = cli_error("plot", NULL);
    free(runs);
    return status;
}
