/* Pointwise activations: SiLU, GELU (tanh approximation) and SwiGLU = silu(gate) * up. */
#include <math.h>
#include <stdlib.h>

#include "../error.h"
#include "../ops.h"

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- SiLU: y = x * sigmoid(x); dy/dx = s + x s (1 - s) ---- */

static int silu_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    if (!x) return LN_ERR;
    for (int64_t i = 0; i < n->in[0]->numel; i++) x[i] *= sigmoid(x[i]);
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int silu_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0);
    double *x = ln_f64_read(xt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (x && dy) {
        for (int64_t i = 0; i < xt->numel; i++) {
            double s = sigmoid(x[i]);
            dy[i] *= s + x[i] * s * (1 - s);
        }
        status = ln_f64_accum_grad(n->in[0], dy);
    }
    free(x);
    free(dy);
    return status;
}

static const ln_op silu_op = {
    .name = "silu",
    .forward = {[LN_CPU] = silu_forward_cpu},
    .backward = {[LN_CPU] = silu_backward_cpu},
};

ln_tensor *ln_silu(ln_tensor *x) {
    ln_node *n = ln_node_begin(&silu_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = n ? ln_node_output(n, x->dtype, x->ndim, x->shape) : NULL;
    ln_node_save(n, x);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
