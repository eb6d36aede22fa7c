/* A model's parameters: named, caller-owned f32 tensors with their init rule and whether weight
 * decay applies. Names are the checkpoint's dataset names ("layers.0.attn.wq"). */
#ifndef LN_PARAMS_H
#define LN_PARAMS_H

#include <stdbool.h>

#include "autograd/rng.h"
#include "autograd/tensor.h"

typedef enum {
    LN_INIT_NORMAL,   /* N(0, std) */
    LN_INIT_RESIDUAL, /* N(0, std / sqrt(2 * n_layers)): projections into the residual stream */
    LN_INIT_ONES,     /* norm gains */
    LN_INIT_ZEROS,    /* biases */
    LN_INIT_FAN_IN,   /* uniform in +-1/sqrt(last dim): PyTorch's default for convolutions, which keeps
                         a short convolution's output near its input's scale */
    LN_INIT_IDENTITY, /* the identity matrix (square 2-D): learnable maps that start as a no-op */
} ln_init_rule;

typedef struct ln_param {
    char name[96];
    ln_tensor *tensor;
    ln_init_rule init;
    bool decay;    /* AdamW weight decay applies */
    bool embedding; /* decayed only when optim.decay_embeddings */
    bool frozen;    /* no gradient, no optimizer state, no all-reduce (train.freeze; teachers, bases) */
} ln_param;

typedef struct ln_params {
    int n, cap;
    ln_param *items;
    bool borrowed; /* a list of another's parameters (ln_params_trainable): freeing frees the list only */
} ln_params;

/* Adds a zero f32 CPU parameter (requires_grad) named prefix + "." + name; NULL + message on failure. */
ln_tensor *ln_params_add(ln_params *p, const char *prefix, const char *name, int ndim, const int64_t *shape,
                         ln_init_rule init, bool decay);
/* Fills every parameter by its rule, in order, from one seeded stream: the same seed gives the
 * same model. */
void ln_params_init(ln_params *p, uint64_t seed, double std, int n_layers);
ln_param *ln_params_find(ln_params *p, const char *name);
int64_t ln_params_count(const ln_params *p); /* total elements */
void ln_params_zero_grad(ln_params *p);
/* Freezes every parameter whose name matches the fnmatch(3) pattern ("layers.*.mlp.*"): it stops
 * requiring a gradient. Returns how many it matched (0 is the caller's to report). */
int ln_params_freeze(ln_params *p, const char *pattern);
/* The parameters of p that are not frozen, in p's order, as a borrowed list (ln_params_free
 * frees only the list): what the optimizer, the clip and the all-reduce see. */
int ln_params_trainable(const ln_params *p, ln_params *out);
/* Moves every parameter to `device`. */
int ln_params_to(ln_params *p, ln_device device);
void ln_params_free(ln_params *p);

#endif
