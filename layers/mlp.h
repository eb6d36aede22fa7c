/* The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)). */
#ifndef LN_MLP_H
#define LN_MLP_H

#include "autograd/ops.h"
#include "layers/params.h"

typedef struct ln_mlp {
    ln_tensor *w_gate, *w_up, *w_down; /* [hidden, d], [hidden, d], [d, hidden] */
} ln_mlp;

int ln_mlp_create(ln_mlp *mlp, ln_params *params, const char *prefix, int d_model, int hidden);
ln_tensor *ln_mlp_forward(const ln_mlp *mlp, ln_tensor *x);

#endif
