/* Reading a run's metrics.jsonl back (the lines recipes/train.c writes): the training steps and
 * the evaluation steps, for `linnet plot`. */
#ifndef LN_METRICS_H
#define LN_METRICS_H

#include <stdint.h>

/* One training step; a key the line lacked is NAN. */
typedef struct ln_train_point {
    int64_t step;
    double loss, lr, grad_norm, tokens_per_s;
} ln_train_point;

typedef struct ln_val_point {
    int64_t step;
    double val_loss;
} ln_val_point;

typedef struct ln_metrics {
    ln_train_point *train; /* the lines with "loss", in step order */
    ln_val_point *val;     /* the lines with "val_loss" (step 0 is the untrained model's) */
    int64_t n_train, n_val;
    int64_t cap_train, cap_val;
} ln_metrics;

/* Reads path into m (zeroed first; ln_metrics_free it on success and on failure). Every complete
 * line must be a JSON object with an integer "step" and numbers for the keys it has; a last line
 * without its newline that does not parse (a run still writing it) is skipped. When a step is not
 * after the one before (a run resumed from an earlier checkpoint appends from there), the later
 * lines win. Errors name path and the line number. */
int ln_metrics_read(const char *path, ln_metrics *m);
void ln_metrics_free(ln_metrics *m);

#endif
