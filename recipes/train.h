/* The loops that run recipes: training (with evaluation and checkpoints), evaluation, sampling. */
#ifndef LN_TRAIN_H
#define LN_TRAIN_H

#include <stdbool.h>
#include <stdio.h>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "distributed/comm.h"
#include "layers/transformer.h"
#include "recipes/config.h"

typedef struct ln_train_options {
    const char *out_dir; /* checkpoints, metrics.jsonl and recipe.yaml go here */
    const char *resume;  /* NULL (fresh), "auto" (newest in out_dir, else fresh) or a checkpoint path */
    int64_t stop_at;     /* stop after this step (0: train.steps); the schedule still spans train.steps */
    bool sample_at_end;  /* print a sample from sample.prompt when done */
} ln_train_options;

int ln_train(const ln_config *cfg, const ln_train_options *opts, ln_comm *comm);

/* Mean loss over `batches` batches of batch_size sequences from the start of the loader's
 * (unshuffled) stream, each rank taking its slice of every batch. */
int ln_evaluate(ln_transformer *model, ln_loader *loader, int batches, int batch_size, int seq_len, ln_comm *comm,
                double *mean_loss);

/* Continues prompt by n_tokens tokens, writing the text (prompt first) to out as it goes.
 * temperature 0 is greedy; top_k 0 samples from the whole vocabulary. */
int ln_sample(ln_transformer *model, const ln_tokenizer *tok, const char *prompt, int n_tokens, double temperature,
              int top_k, uint64_t seed, int context, FILE *out);


#endif
