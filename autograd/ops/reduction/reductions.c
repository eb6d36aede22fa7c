/* The reduction family (autograd/ops/reduction/): reductions.c (sum, mean, sum_last: this file)
 * and softmax.c over the last dim, each with its kernels in the .cu of the same name.
 *
 * Reductions: sum and mean of all elements (-> a 0-dim tensor) and the sum over the last dim.
 * Sums run in double whatever the storage; none of them needs saved values for backward. */
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"


static int check_float(const char *op, const ln_tensor *x) {
    if (ln_dtype_is_float(x->dtype)) return LN_OK;
    char sx[96];
    return ln_fail("%s: %s %s is %s, not a float dtype", op, ln_tensor_label(x, "x"), ln_shape_str(x, sx, sizeof sx),
                   ln_dtype_name(x->dtype));
}

/* ---- sum / mean of everything: farg[0] is the factor (1 for sum, 1/numel for mean) ---- */

static int total_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    if (!x) return LN_ERR;
    double s = 0;
    for (int64_t i = 0; i < n->in[0]->numel; i++) s += x[i];
    s *= n->farg[0];
    int status = ln_f64_write(n->out[0], &s);
    free(x);
    return status;
}

static int total_backward_cpu(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    if (!y->grad) return LN_OK;
    double g = ln_get(y->grad, 0) * n->farg[0];
    double *dx = malloc((size_t)(x->numel > 0 ? x->numel : 1) * sizeof *dx);
    if (!dx) return ln_fail("%s: out of host memory for the gradient of %s", n->op->name, ln_tensor_label(x, "x"));
    for (int64_t i = 0; i < x->numel; i++) dx[i] = g;
    int status = ln_f64_accum_grad(x, dx);
    free(dx);
    return status;
}

#ifdef LINNET_CUDA
int ln_total_forward_cuda(ln_node *n);
int ln_total_backward_cuda(ln_node *n);
int ln_sum_last_forward_cuda(ln_node *n);
int ln_sum_last_backward_cuda(ln_node *n);
#endif

static const ln_op sum_op = {
    .name = "sum",
    .forward = {[LN_CPU] = total_forward_cpu LN_ON_CUDA(ln_total_forward_cuda)},
    .backward = {[LN_CPU] = total_backward_cpu LN_ON_CUDA(ln_total_backward_cuda)},
};

static const ln_op mean_op = {
    .name = "mean",
    .forward = {[LN_CPU] = total_forward_cpu LN_ON_CUDA(ln_total_forward_cuda)},
    .backward = {[LN_CPU] = total_backward_cpu LN_ON_CUDA(ln_total_backward_cuda)},
};

static ln_tensor *total(const ln_op *op, ln_tensor *x, bool mean) {
    if (!x || check_float(op->name, x)) return NULL;
    if (mean && x->numel == 0) {
        char sx[96];
        ln_fail("mean: %s %s has no elements", ln_tensor_label(x, "x"), ln_shape_str(x, sx, sizeof sx));
        return NULL;
    }
    ln_node *n = ln_node_begin(op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_output(n, x->dtype, 0, x->shape); /* 0-dim; non-NULL for memcpy */
    if (!y) return NULL;
    n->farg[0] = mean ? 1.0 / (double)x->numel : 1.0;
    return ln_node_run(n) == LN_OK ? y : NULL;
}

ln_tensor *ln_sum(ln_tensor *x) { return total(&sum_op, x, false); }
ln_tensor *ln_mean(ln_tensor *x) { return total(&mean_op, x, true); }

/* ---- sum over the last dim: [..., N] -> [...] ---- */

static int sum_last_forward_cpu(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    int64_t cols = x->shape[x->ndim - 1], rows = y->numel;
    double *xv = ln_f64_read(x), *yv = ln_f64_zeros(rows);
    int status = LN_ERR;
    if (xv && yv) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) yv[r] += xv[r * cols + j];
        status = ln_f64_write(y, yv);
    }
    free(xv);
    free(yv);
    return status;
}

static int sum_last_backward_cpu(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    int64_t cols = x->shape[x->ndim - 1], rows = y->numel;
    double *dy = ln_f64_read_grad(y), *dx = ln_f64_zeros(x->numel);
    int status = LN_ERR;
    if (dy && dx) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) dx[r * cols + j] = dy[r];
        status = ln_f64_accum_grad(x, dx);
    }
    free(dy);
    free(dx);
    return status;
}

static const ln_op sum_last_op = {
    .name = "sum_last",
    .forward = {[LN_CPU] = sum_last_forward_cpu LN_ON_CUDA(ln_sum_last_forward_cuda)},
    .backward = {[LN_CPU] = sum_last_backward_cpu LN_ON_CUDA(ln_sum_last_backward_cuda)},
};

ln_tensor *ln_sum_last(ln_tensor *x) {
    if (!x || check_float("sum_last", x)) return NULL;
    if (x->ndim < 1) {
        ln_fail("sum_last: %s is 0-dim []: no last dim to sum", ln_tensor_label(x, "x"));
        return NULL;
    }
    ln_node *n = ln_node_begin(&sum_last_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim - 1, x->shape);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
