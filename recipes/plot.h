/* `linnet plot`: the training curves of one or more runs (their metrics.jsonl) drawn by gnuplot. */
#ifndef LN_PLOT_H
#define LN_PLOT_H

#include <stdbool.h>

typedef struct ln_plot_options {
    const char *out;   /* FILE.png or FILE.svg (the format follows the extension) */
    const char *title; /* above the four panels; NULL for none */
    bool log_y;        /* a logarithmic loss axis */
    int width, height; /* pixels */
} ln_plot_options;

/* Fails naming out unless it ends in .png or .svg (any case). */
int ln_plot_check_out(const char *out);

/* Draws, in a 2x2 multiplot, train and validation loss, learning rate, tokens/s and gradient norm
 * against step, one colour per run, the legend naming each run by its directory's name. Reads
 * RUN_DIR/metrics.jsonl (ln_metrics_read); a run without a training step is an error. gnuplot
 * (found on PATH) writes opts->out through a temporary file beside it, renamed into place only
 * when complete. */
int ln_plot(const char *const *run_dirs, int n_runs, const ln_plot_options *opts);

#endif
