/* LayerNorm over the last dim: y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps) with
 * the biased (population) variance, as PyTorch. Saves x, w and the per-row mean and rstd. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

/* saved: 0 = x, 1 = weight (by ln_layernorm), 2 = mean [rows], 3 = rstd [rows] (by the forward) */

static int layernorm_forward_cpu(ln_node *n) {
    ln_tensor *xt = n->in[0];
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double eps = n->farg[0];
    /* Per-row statistics are kept in f64 for f64 inputs (exact gradchecks), f32 otherwise. */
    ln_dtype stat = xt->dtype == LN_F64 ? LN_F64 : LN_F32;
    ln_tensor *mean_t = ln_arena_tensor(stat, LN_CPU, 1, (int64_t[]){rows});
    ln_tensor *rstd_t = ln_arena_tensor(stat, LN_CPU, 1, (int64_t[]){rows});
    double *x = ln_f64_read(xt), *w = ln_f64_read(n->in[1]), *b = ln_f64_read(n->in[2]);
    double *mean = ln_f64_zeros(rows), *rstd = ln_f64_zeros(rows);
    int status = LN_ERR;
    if (mean_t && rstd_t && x && w && b && mean && rstd) {
        for (int64_t r = 0; r < rows; r++) {
            double *xr = x + r * D, mu = 0, var = 0;
            for (int64_t i = 0; i < D; i++) mu += xr[i];
            mu /= (double)D;
            /* two passes: the one-pass E[x^2] - E[x]^2 cancels badly for large means */
            for (int64_t i = 0; i < D; i++) var += (xr[i] - mu) * (xr[i] - mu);
            double rs = 1.0 / sqrt(var / (double)D + eps);
            mean[r] = mu;
            rstd[r] = rs;
            for (int64_t i = 0; i < D; i++) xr[i] = (xr[i] - mu) * rs * w[i] + b[i];
        }
        status = ln_f64_write(n->out[0], x);
        if (status == LN_OK) status = ln_f64_write(mean_t, mean);
        if (status == LN_OK) status = ln_f64_write(rstd_t, rstd);
        if (status == LN_OK) {
            ln_node_save(n, mean_t);
            ln_node_save(n, rstd_t);
        }
    }
    free(x);
    free(w);
    free(b);
    free(mean);
    free(rstd);
    return status;
}

/* With xh = (x - mean) * rstd and g = dy * w:  db = sum_rows dy,  dw = sum_rows dy * xh,
 * dx = rstd * (g - mean(g) - xh * mean(g * xh)). */
static int layernorm_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0), *wt = ln_node_saved(n, 1);
    ln_tensor *mean_t = ln_node_saved(n, 2), *rstd_t = ln_node_saved(n, 3);
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double *x = ln_f64_read(xt), *w = ln_f64_read(wt), *mean = ln_f64_read(mean_t), *rstd = ln_f64_read(rstd_t);
    double *dy = ln_f64_read_grad(n->out[0]), *dw = ln_f64_zeros(D), *db = ln_f64_zeros(D);
    int status = LN_ERR;
    if (x && w && mean && rstd && dy && dw && db) {
        for (int64_t r = 0; r < rows; r++) {
            double *xr = x + r * D, *dyr = dy + r * D, mu = mean[r], rs = rstd[r], sum_g = 0, sum_gx = 0;
            for (int64_t i = 0; i < D; i++) {
                double xh = (xr[i] - mu) * rs, g = dyr[i] * w[i];
                db[i] += dyr[i];
                dw[i] += dyr[i] * xh;
                sum_g += g;
                sum_gx += g * xh;
            }
            double mean_g = sum_g / (double)D, mean_gx = sum_gx / (double)D;
            /* dy's row becomes dx's row in place */
            for (int64_t i = 0; i < D; i++) dyr[i] = rs * (dyr[i] * w[i] - mean_g - (xr[i] - mu) * rs * mean_gx);
        }
        status = ln_f64_accum_grad(n->in[0], dy);
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], dw);
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[2], db);
    }
    free(x);
    free(w);
    free(mean);
    free(rstd);
    free(dy);
    free(dw);
    free(db);
    return status;
}

#ifdef LINNET_CUDA
int ln_layernorm_forward_cuda(ln_node *n);
int ln_layernorm_backward_cuda(ln_node *n);
#endif

static const ln_op layernorm_op = {
    .name = "layernorm",
    .forward = {[LN_CPU] = layernorm_forward_cpu LN_ON_CUDA(ln_layernorm_forward_cuda)},
    .backward = {[LN_CPU] = layernorm_backward_cpu LN_ON_CUDA(ln_layernorm_backward_cuda)},
};


ln_tensor *ln_layernorm(ln_tensor *x, ln_tensor *weight, ln_tensor *bias, double eps) {
    if (!x || !weight || !bias) return NULL; /* an earlier op failed: its message stands */
    char xs[96], ws[96], bs[96];
    ln_shape_str(x, xs, sizeof xs);
    ln_shape_str(weight, ws, sizeof ws);
    ln_shape_str(bias, bs, sizeof bs);
    if (!ln_dtype_is_float(x->dtype) || !ln_dtype_is_float(weight->dtype) || !ln_dtype_is_float(bias->dtype)) {
        ln_fail("layernorm: %s (%s), %s (%s) and %s (%s) must all be floating point", ln_tensor_label(x, "x"),
                ln_dtype_name(x->dtype), ln_tensor_label(weight, "weight"), ln_dtype_name(weight->dtype),
                ln_tensor_label(bias, "bias"), ln_dtype_name(bias->dtype));
        return NULL;
    }
    int64_t D = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0;
    if (D < 1 || weight->ndim != 1 || weight->shape[0] != D || bias->ndim != 1 || bias->shape[0] != D) {
        ln_fail("layernorm: %s %s needs %s and %s of shape [D] matching its last dim, got %s and %s",
                ln_tensor_label(x, "x"), xs, ln_tensor_label(weight, "weight"), ln_tensor_label(bias, "bias"), ws, bs);
        return NULL;
    }
    if (!(eps >= 0) || !isfinite(eps)) {
        ln_fail("layernorm: eps %g must be finite and >= 0 (%s %s)", eps, ln_tensor_label(x, "x"), xs);
        return NULL;
    }
    ln_node *n = ln_node_begin(&layernorm_op, 3, (ln_tensor *[]){x, weight, bias});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    n->farg[0] = eps;
    ln_node_save(n, x);
    ln_node_save(n, weight);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
