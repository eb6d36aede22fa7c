/* div_rows: each row of a [..., N] over its own divisor, y = a / (d + eps) with d [..., 1]
 * (normalized linear attention's o = num / (den + eps)). With r = 1 / (d + eps):
 *   da = r dy,   dd = -r^2 sum_j dy_j a_j
 * saved: 0 = a, 1 = d; farg[0] = eps. */
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

static int div_rows_forward_cpu(ln_node *n) {
    ln_tensor *at = n->in[0];
    int64_t N = at->shape[at->ndim - 1];
    double *a = ln_f64_read(at), *d = ln_f64_read(n->in[1]);
    int status = LN_ERR;
    if (a && d) {
        for (int64_t i = 0; i < at->numel; i++) a[i] /= d[i / N] + n->farg[0];
        status = ln_f64_write(n->out[0], a);
    }
    free(a);
    free(d);
    return status;
}

static int div_rows_backward_cpu(ln_node *n) {
    ln_tensor *at = ln_node_saved(n, 0), *dt = ln_node_saved(n, 1);
    int64_t N = at->shape[at->ndim - 1], rows = dt->numel;
    double *a = ln_f64_read(at), *d = ln_f64_read(dt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (a && d && dy) {
        for (int64_t r = 0; r < rows; r++) {
            double inv = 1.0 / (d[r] + n->farg[0]), s = 0;
            for (int64_t j = 0; j < N; j++) {
                s += dy[r * N + j] * a[r * N + j];
                dy[r * N + j] *= inv; /* dy becomes da */
            }
            d[r] = -inv * inv * s; /* d becomes dd */
        }
        status = ln_f64_accum_grad(n->in[0], dy);
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], d);
    }
    free(a);
    free(d);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_div_rows_forward_cuda(ln_node *n);
int ln_div_rows_backward_cuda(ln_node *n);
#endif

static const ln_op div_rows_op = {
    .name = "div_rows",
    .forward = {[LN_CPU] = div_rows_forward_cpu LN_ON_CUDA(ln_div_rows_forward_cuda)},
    .backward = {[LN_CPU] = div_rows_backward_cpu LN_ON_CUDA(ln_div_rows_backward_cuda)},
};

ln_tensor *ln_div_rows(ln_tensor *a, ln_tensor *d, double eps) {
    if (!a || !d) return NULL; /* an earlier op failed: its message stands */
    char sa[96], sd[96];
    ln_shape_str(a, sa, sizeof sa);
    ln_shape_str(d, sd, sizeof sd);
    bool fits = a->ndim >= 1 && d->ndim == a->ndim && d->shape[d->ndim - 1] == 1;
    for (int i = 0; fits && i < a->ndim - 1; i++) fits = d->shape[i] == a->shape[i];
    if (!ln_dtype_is_float(a->dtype) || d->dtype != a->dtype || !fits) {
        ln_fail("div_rows: %s %s %s and %s %s %s: need one float dtype and d [..., 1] matching a [..., N]",
                ln_tensor_label(a, "a"), sa, ln_dtype_name(a->dtype), ln_tensor_label(d, "d"), sd,
                ln_dtype_name(d->dtype));
        return NULL;
    }
    ln_node *n = ln_node_begin(&div_rows_op, 2, (ln_tensor *[]){a, d});
    ln_tensor *y = ln_node_output(n, a->dtype, a->ndim, a->shape);
    if (!y) return NULL;
    n->farg[0] = eps;
    ln_node_save(n, a);
    ln_node_save(n, d);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
