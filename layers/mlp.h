/* The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)). */
#ifndef LN_MLP_H
#define LN_MLP_H

#include "autograd/ops.h"
#include "layers/linear.h"

typedef struct ln_mlp {
    ln_linear gate, up, down; /* w_gate, w_up [hidden, d], w_down [d, hidden] */
} ln_mlp;

/* The block's projections at site (prefix "layers.3.mlp"). */
int ln_mlp_create(ln_mlp *mlp, const ln_linear_site *site, int d_model, int hidden);
ln_tensor *ln_mlp_forward(const ln_mlp *mlp, ln_tensor *x);
void ln_mlp_free(ln_mlp *mlp);

#endif
