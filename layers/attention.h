/* Attention kinds, chosen per layer by name from the recipe (model.attention). Each kind is one
 * table entry in attention.c; adding a kind (nsa, ...) adds a file and a row. */
#ifndef LN_ATTENTION_H
#define LN_ATTENTION_H

#include "autograd/ops.h"
#include "layers/linear.h"
#include "layers/params.h"
#include "recipes/config.h"

typedef struct ln_attention_kind {
    const char *name;
    /* Checks the kind's recipe keys (messages name them), or NULL when it has none. */
    int (*check)(const ln_model_config *cfg);
    /* Adds the kind's parameters at site (its prefix, "layers.3.attn") and returns its state (or
     * NULL + message). Projections are ln_linear's, of the kinds the recipe gives them. */
    void *(*create)(const ln_linear_site *site);
    /* x [B, T, d_model] -> [B, T, d_model], causal. */
    ln_tensor *(*forward)(void *state, ln_tensor *x);
    void (*destroy)(void *state);
} ln_attention_kind;

/* The kind named `name`, or NULL with a message listing the known kinds. */
const ln_attention_kind *ln_attention_kind_find(const char *name);

extern const ln_attention_kind ln_attention_softmax;
extern const ln_attention_kind ln_attention_gla;        /* attention_gla.c */
extern const ln_attention_kind ln_attention_simple_gla; /* attention_gla.c */
extern const ln_attention_kind ln_attention_linear;     /* attention_linear.c */
extern const ln_attention_kind ln_attention_none;       /* attention_none.c */

#endif
