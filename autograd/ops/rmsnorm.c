/* RMSNorm over the last dim: y = x * r * w, r = 1 / sqrt(mean(x^2) + eps) per row.
 * Saves x, w and the per-row r (so backward need not recompute the reduction). */
#include <math.h>
#include <stdlib.h>

#include "../error.h"
#include "../ops.h"

/* saved: 0 = x, 1 = weight (by ln_rmsnorm), 2 = rrms [rows] (by the forward, once computed) */

static int rmsnorm_forward_cpu(ln_node *n) {
    ln_tensor *xt = n->in[0];
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double eps = n->farg[0];
    /* Per-row statistics are kept in f64 for f64 inputs (exact gradchecks), f32 otherwise. */
    ln_tensor *rrms_t = ln_arena_tensor(xt->dtype == LN_F64 ? LN_F64 : LN_F32, LN_CPU, 1, (int64_t[]){rows});
    double *x = ln_f64_read(xt), *w = ln_f64_read(n->in[1]), *rrms = ln_f64_zeros(rows);
    int status = LN_ERR;
    if (rrms_t && x && w && rrms) {
        for (int64_t r = 0; r < rows; r++) {
            double *xr = x + r * D, ss = 0;
            for (int64_t i = 0; i < D; i++) ss += xr[i] * xr[i];
            rrms[r] = 1.0 / sqrt(ss / (double)D + eps);
            for (int64_t i = 0; i < D; i++) xr[i] = xr[i] * rrms[r] * w[i];
        }
        status = ln_f64_write(n->out[0], x);
        if (status == LN_OK) status = ln_f64_write(rrms_t, rrms);
        if (status == LN_OK) ln_node_save(n, rrms_t);
    }
    free(x);
    free(w);
    free(rrms);
    return status;
}

/* With xh = x * r and g = dy * w:  dw = sum_rows dy * xh,  dx = r * (g - xh * mean(g * xh)). */
static int rmsnorm_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0), *wt = ln_node_saved(n, 1), *rt = ln_node_saved(n, 2);
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double *x = ln_f64_read(xt), *w = ln_f64_read(wt), *rrms = ln_f64_read(rt);
    double *dy = ln_f64_read_grad(n->out[0]), *dw = ln_f64_zeros(D);
    int status = LN_ERR;
    if (x && w && rrms && dy && dw) {
        for (int64_t r = 0; r < rows; r++) {
            double *xr = x + r * D, *dyr = dy + r * D, rr = rrms[r], dot = 0;
            for (int64_t i = 0; i < D; i++) {
                double xh = xr[i] * rr;
                dw[i] += dyr[i] * xh;
                dot += dyr[i] * w[i] * xh;
            }
            dot /= (double)D;
            /* dy's row becomes dx's row in place */
            for (int64_t i = 0; i < D; i++) dyr[i] = rr * (dyr[i] * w[i] - xr[i] * rr * dot);
        }
        status = ln_f64_accum_grad(n->in[0], dy);
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], dw);
    }
    free(x);
    free(w);
    free(rrms);
    free(dy);
    free(dw);
    return status;
}

#ifdef LINNET_CUDA
int ln_rmsnorm_forward_cuda(ln_node *n);
int ln_rmsnorm_backward_cuda(ln_node *n);
#endif

static const ln_op rmsnorm_op = {
    .name = "rmsnorm",
    .forward = {[LN_CPU] = rmsnorm_forward_cpu LN_ON_CUDA(ln_rmsnorm_forward_cuda)},
    .backward = {[LN_CPU] = rmsnorm_backward_cpu LN_ON_CUDA(ln_rmsnorm_backward_cuda)},
};


ln_tensor *ln_rmsnorm(ln_tensor *x, ln_tensor *weight, double eps) {
    if (!x || !weight) return NULL; /* an earlier op failed: its message stands */
    char xs[96], ws[96];
    ln_shape_str(x, xs, sizeof xs);
    ln_shape_str(weight, ws, sizeof ws);
    if (!ln_dtype_is_float(x->dtype) || !ln_dtype_is_float(weight->dtype)) {
        ln_fail("rmsnorm: %s is %s and %s is %s; both must be floating point", ln_tensor_label(x, "x"),
                ln_dtype_name(x->dtype), ln_tensor_label(weight, "weight"), ln_dtype_name(weight->dtype));
        return NULL;
    }
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1 || weight->ndim != 1 || weight->shape[0] != x->shape[x->ndim - 1]) {
        ln_fail("rmsnorm: %s %s needs %s of shape [D] matching its last dim, got %s", ln_tensor_label(x, "x"), xs,
                ln_tensor_label(weight, "weight"), ws);
        return NULL;
    }
    if (!(eps >= 0) || !isfinite(eps)) {
        ln_fail("rmsnorm: eps %g must be finite and >= 0 (%s %s)", eps, ln_tensor_label(x, "x"), xs);
        return NULL;
    }
    ln_node *n = ln_node_begin(&rmsnorm_op, 2, (ln_tensor *[]){x, weight});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    n->farg[0] = eps;
    ln_node_save(n, x);
    ln_node_save(n, weight);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
