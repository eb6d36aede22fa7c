/* The pre-norm residual step in one node: sum = x + delta, y = rmsnorm(sum) * weight.
 *
 * Exactly ln_add(x, delta) followed by ln_rmsnorm(sum, weight, eps), with both results kept: the
 * sum is stored in x's dtype and the norm reads it as stored; the per-row r = 1 / sqrt(mean(sum^2)
 * + eps) is saved as rmsnorm saves it (f64 for f64 inputs, f32 otherwise). In backward the sum's
 * total gradient, d(sum) from its own readers plus the norm's part from dy, is rounded to the
 * sum's dtype (as the unfused sum's gradient would be stored) and goes to both x and delta; the
 * weight's gradient is rmsnorm's. Fusing saves the GPU a pass over the rows each way. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

/* saved: 0 = weight (by ln_add_rmsnorm), 1 = sum, 2 = rrms [rows] (both by the forward, once computed) */

/* v as a tensor of dtype d would store it (ln_set then ln_get). */
static double as_stored(ln_dtype d, double v) {
    if (d == LN_F32) return (float)v;
    if (d == LN_BF16) return ln_bf16_to_f32(ln_f32_to_bf16((float)v));
    return v;
}

static int add_rmsnorm_forward_cpu(ln_node *n) {
    ln_tensor *xt = n->in[0], *st = n->out[1];
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double eps = n->farg[0];
    ln_tensor *rrms_t = ln_arena_tensor(xt->dtype == LN_F64 ? LN_F64 : LN_F32, LN_CPU, 1, (int64_t[]){rows});
    double *s = ln_f64_read(xt), *d = ln_f64_read(n->in[1]), *w = ln_f64_read(n->in[2]), *rrms = ln_f64_zeros(rows);
    int status = LN_ERR;
    if (rrms_t && s && d && w && rrms) {
        for (int64_t i = 0; i < xt->numel; i++) s[i] = as_stored(st->dtype, s[i] + d[i]);
        status = ln_f64_write(st, s);
        /* from here rmsnorm's forward on the stored sum, the normalised values into d */
        for (int64_t r = 0; r < rows && status == LN_OK; r++) {
            double *sr = s + r * D, *yr = d + r * D, ss = 0;
            for (int64_t i = 0; i < D; i++) ss += sr[i] * sr[i];
            rrms[r] = 1.0 / sqrt(ss / (double)D + eps);
            for (int64_t i = 0; i < D; i++) yr[i] = sr[i] * rrms[r] * w[i];
        }
        if (status == LN_OK) status = ln_f64_write(n->out[0], d);
        if (status == LN_OK) status = ln_f64_write(rrms_t, rrms);
        if (status == LN_OK) {
            ln_node_save(n, st);
            ln_node_save(n, rrms_t);
        }
    }
    free(s);
    free(d);
    free(w);
    free(rrms);
    return status;
}

/* g = d(sum) + [when y has a gradient] rmsnorm's dx: with sh = sum * r and gy = dy * w,
 * r (gy - sh mean(gy sh)); dw = sum over rows of dy * sh. Then dx = ddelta = g. */
static int add_rmsnorm_backward_cpu(ln_node *n) {
    ln_tensor *yt = n->out[0], *st = ln_node_saved(n, 1);
    int64_t D = st->shape[st->ndim - 1], rows = st->numel / D;
    double *g = ln_f64_read_grad(n->out[1]);
    int status = g ? LN_OK : LN_ERR;
    if (status == LN_OK && yt->grad) { /* as the unfused graph: no norm backward when y has no gradient */
        double *s = ln_f64_read(st), *w = ln_f64_read(ln_node_saved(n, 0)), *rrms = ln_f64_read(ln_node_saved(n, 2));
        double *dy = ln_f64_read(yt->grad), *dw = ln_f64_zeros(D);
        status = s && w && rrms && dy && dw ? LN_OK : LN_ERR;
        for (int64_t r = 0; r < rows && status == LN_OK; r++) {
            double *sr = s + r * D, *dyr = dy + r * D, *gr = g + r * D, rr = rrms[r], dot = 0;
            for (int64_t i = 0; i < D; i++) {
                double sh = sr[i] * rr;
                dw[i] += dyr[i] * sh;
                dot += dyr[i] * w[i] * sh;
            }
            dot /= (double)D;
            for (int64_t i = 0; i < D; i++) gr[i] = as_stored(st->dtype, gr[i] + rr * (dyr[i] * w[i] - sr[i] * rr * dot));
        }
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[2], dw);
        free(s);
        free(w);
        free(rrms);
        free(dy);
        free(dw);
    }
    /* x + x takes g twice, as ln_add does */
    if (status == LN_OK) status = ln_f64_accum_grad(n->in[0], g);
    if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], g);
    free(g);
    return status;
}

#ifdef LINNET_CUDA
int ln_add_rmsnorm_forward_cuda(ln_node *n);
int ln_add_rmsnorm_backward_cuda(ln_node *n);
#endif

static const ln_op add_rmsnorm_op = {
    .name = "add_rmsnorm",
    .forward = {[LN_CPU] = add_rmsnorm_forward_cpu LN_ON_CUDA(ln_add_rmsnorm_forward_cuda)},
    .backward = {[LN_CPU] = add_rmsnorm_backward_cpu LN_ON_CUDA(ln_add_rmsnorm_backward_cuda)},
};

ln_tensor *ln_add_rmsnorm(ln_tensor *x, ln_tensor *delta, ln_tensor *weight, double eps, ln_tensor **sum_out) {
    if (!sum_out) {
        ln_fail("add_rmsnorm: sum_out must not be NULL (the sum x + delta is a result too)");
        return NULL;
    }
    *sum_out = NULL;
    if (!x || !delta || !weight) return NULL; /* an earlier op failed: its message stands */
    char xs[96], ds[96], ws[96];
    ln_shape_str(x, xs, sizeof xs);
    ln_shape_str(delta, ds, sizeof ds);
    ln_shape_str(weight, ws, sizeof ws);
    if (!ln_dtype_is_float(x->dtype) || !ln_dtype_is_float(weight->dtype)) {
        ln_fail("add_rmsnorm: %s is %s and %s is %s; both must be floating point", ln_tensor_label(x, "x"),
                ln_dtype_name(x->dtype), ln_tensor_label(weight, "weight"), ln_dtype_name(weight->dtype));
        return NULL;
    }
    if (delta->dtype != x->dtype || !ln_same_shape(delta, x)) {
        ln_fail("add_rmsnorm: %s %s %s must have the shape and dtype of %s %s %s", ln_tensor_label(delta, "delta"),
                ds, ln_dtype_name(delta->dtype), ln_tensor_label(x, "x"), xs, ln_dtype_name(x->dtype));
        return NULL;
    }
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1 || weight->ndim != 1 || weight->shape[0] != x->shape[x->ndim - 1]) {
        ln_fail("add_rmsnorm: %s %s needs %s of shape [D] matching its last dim, got %s", ln_tensor_label(x, "x"), xs,
                ln_tensor_label(weight, "weight"), ws);
        return NULL;
    }
    if (!(eps >= 0) || !isfinite(eps)) {
        ln_fail("add_rmsnorm: eps %g must be finite and >= 0 (%s %s)", eps, ln_tensor_label(x, "x"), xs);
        return NULL;
    }
    ln_node *n = ln_node_begin(&add_rmsnorm_op, 3, (ln_tensor *[]){x, delta, weight});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    ln_tensor *s = y ? ln_node_output(n, x->dtype, x->ndim, x->shape) : NULL;
    if (!s) return NULL;
    n->farg[0] = eps;
    ln_node_save(n, weight);
    if (ln_node_run(n) != LN_OK) return NULL;
    *sum_out = s;
    return y;
}
