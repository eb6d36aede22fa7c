/* The shape family (autograd/ops/shape/): reshape.c (this file), concat_last.c and their .cu.
 *
 * reshape: a view with another shape; backward passes the gradient through unchanged. */
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

static int reshape_forward(ln_node *n) {
    (void)n; /* the output aliases the input: nothing to compute */
    return LN_OK;
}

static int reshape_backward_cpu(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    if (!x->requires_grad || !y->grad) return LN_OK;
    double *dy = ln_f64_read(y->grad);
    int status = ln_f64_accum_grad(x, dy);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_reshape_backward_cuda(ln_node *n);
#endif

static const ln_op reshape_op = {
    .name = "reshape",
    .forward = {[LN_CPU] = reshape_forward, [LN_CUDA] = reshape_forward},
    .backward = {[LN_CPU] = reshape_backward_cpu LN_ON_CUDA(ln_reshape_backward_cuda)},
};

ln_tensor *ln_reshape(ln_tensor *x, int ndim, const int64_t *shape) {
    ln_node *n = ln_node_begin(&reshape_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_view_output(n, 0, ndim, shape);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
