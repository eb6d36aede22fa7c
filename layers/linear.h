/* The linear module: every projection of the model (attention q/k/v/o, the gates, MLP
 * gate/up/down, the untied LM head) is an ln_linear, y = x W^T (+ b), W [out, in].
 *
 * Its kind is chosen by name from the recipe, per layer (model.linear, one kind or a list) and per
 * projection (model.linear_overrides). Each kind is one table row in linear.c: `dense` is a plain
 * weight; quantized, sparse and low-rank kinds plug in as rows beside it. A kind keeps the dense
 * parameter names ("layers.0.attn.wq"), so checkpoints and imported weights line up. */
#ifndef LN_LINEAR_H
#define LN_LINEAR_H

#include "autograd/ops.h"
#include "layers/params.h"
#include "recipes/config.h"

/* What a projection is: its parameter names below the layer's prefix, its shape and its init. */
typedef struct ln_linear_spec {
    const char *projection; /* its name in model.linear_overrides: "attn.q", "mlp.down", "lm_head" */
    const char *weight;     /* parameter name: "wq" -> prefix.wq */
    const char *bias;       /* parameter name of the bias [out], or NULL for none */
    int64_t out, in;
    ln_init_rule init;      /* of the weight; a bias starts at zero */
} ln_linear_spec;

typedef struct ln_linear ln_linear;

typedef struct ln_linear_kind {
    const char *name;
    /* Adds the kind's parameters under prefix (l->kind, l->spec set), and its state in l->state. */
    int (*create)(ln_linear *l, ln_params *params, const char *prefix);
    /* x [..., in] -> [..., out] */
    ln_tensor *(*forward)(const ln_linear *l, ln_tensor *x);
    void (*destroy)(ln_linear *l); /* NULL when the kind keeps no state */
} ln_linear_kind;

struct ln_linear {
    const ln_linear_kind *kind;
    ln_linear_spec spec;    /* names point at static strings */
    ln_tensor *weight;      /* [out, in] */
    ln_tensor *bias;        /* [out], or NULL */
    void *state;            /* the kind's own */
};

/* Every projection of a model, in the order they were made (for passes over all of them: tests,
 * conversion and export of the kinds). The pointers are the layers'; the list owns only itself. */
typedef struct ln_linears {
    int n, cap;
    ln_linear **items;
} ln_linears;

/* Where a layer's projections are made: the parameters they join, the prefix of their names
 * ("layers.3.attn"), the recipe, the layer's index (-1 outside the blocks: the LM head) and the
 * model's list of projections. */
typedef struct ln_linear_site {
    ln_params *params;
    const char *prefix;
    const ln_model_config *cfg;
    int layer;
    ln_linears *all;
} ln_linear_site;

/* The kind named `name`, or NULL with a message listing the known kinds. */
const ln_linear_kind *ln_linear_kind_find(const char *name);
/* The kind name a projection takes at a layer: the most specific model.linear_overrides entry
 * naming it ("attn.q" before "attn"), else model.linear's entry for the layer (the LM head, outside
 * the layers, takes model.linear when it is one kind and dense when it is a list). */
const char *ln_linear_kind_name(const ln_model_config *cfg, int layer, const char *projection);
/* Checks model.linear and model.linear_overrides: list length, kinds, projection names. */
int ln_linear_check(const ln_model_config *cfg);

/* Makes the projection `spec` at `site` with the kind the recipe gives it, and lists it in site->all. */
int ln_linear_create(ln_linear *l, const ln_linear_site *site, const ln_linear_spec *spec);
/* x [..., in] -> [..., out] (NULL in, NULL out) */
ln_tensor *ln_linear_forward(const ln_linear *l, ln_tensor *x);
/* Frees the kind's state (the parameters belong to the ln_params they joined). */
void ln_linear_free(ln_linear *l);
void ln_linears_free(ln_linears *all);

extern const ln_linear_kind ln_linear_dense; /* linear_dense.c */

#endif
