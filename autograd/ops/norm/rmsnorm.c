/* The norm family (autograd/ops/norm/): rmsnorm.c (RMSNorm, gated too: this file), add_rmsnorm.c
 * (the residual add fused with the RMSNorm after it), layernorm.c, each .c the op and its CPU
 * reference, its .cu the kernels; norm_cuda.cuh what the norm kernels share.
 *
 * RMSNorm over the last dim: y = x * r * w, r = 1 / sqrt(mean(x^2) + eps) per row; gated, times
 * silu(gate) too (gate: x's shape), the output norm of GLA-style layers in one pass instead of
 * three (flash-linear-attention's FusedRMSNormGated).
 * Saves x, w, the gate and the per-row r (so backward need not recompute the reduction). */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/ops/elementwise/silu.h"

/* saved: 0 = x, 1 = weight, [2 = gate] (by the constructor), then rrms [rows] (by the forward, once
 * computed); iarg[0]: 1 when gated */

static int rmsnorm_forward_cpu(ln_node *n) {
    ln_tensor *xt = n->in[0];
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double eps = n->farg[0];
    /* Per-row statistics are kept in f64 for f64 inputs (exact gradchecks), f32 otherwise. */
    ln_tensor *rrms_t = ln_arena_tensor(xt->dtype == LN_F64 ? LN_F64 : LN_F32, LN_CPU, 1, (int64_t[]){rows});
    const bool gated = n->iarg[0];
    double *x = ln_f64_read(xt), *w = ln_f64_read(n->in[1]), *rrms = ln_f64_zeros(rows);
    double *gate = gated ? ln_f64_read(n->in[2]) : NULL;
    int status = LN_ERR;
    if (rrms_t && x && w && rrms && (!gated || gate)) {
        for (int64_t r = 0; r < rows; r++) {
            double *xr = x + r * D, ss = 0;
            for (int64_t i = 0; i < D; i++) ss += xr[i] * xr[i];
            rrms[r] = 1.0 / sqrt(ss / (double)D + eps);
            for (int64_t i = 0; i < D; i++) xr[i] = xr[i] * rrms[r] * w[i] * (gated ? silu_f64(gate[r * D + i]) : 1.0);
        }
        status = ln_f64_write(n->out[0], x);
        if (status == LN_OK) status = ln_f64_write(rrms_t, rrms);
        if (status == LN_OK) ln_node_save(n, rrms_t);
    }
    free(x);
    free(w);
    free(rrms);
    free(gate);
    return status;
}

/* Gated, dgate = dy x r w silu'(gate), and the rest as ungated with dy silu(gate) for dy.
 * With xh = x * r and g = dy * w:  dw = sum_rows dy * xh,  dx = r * (g - xh * mean(g * xh)). */
static int rmsnorm_backward_cpu(ln_node *n) {
    const bool gated = n->iarg[0];
    ln_tensor *xt = ln_node_saved(n, 0), *wt = ln_node_saved(n, 1), *rt = ln_node_saved(n, 2 + gated);
    int64_t D = xt->shape[xt->ndim - 1], rows = xt->numel / D;
    double *x = ln_f64_read(xt), *w = ln_f64_read(wt), *rrms = ln_f64_read(rt);
    double *gate = gated ? ln_f64_read(ln_node_saved(n, 2)) : NULL;
    double *dy = ln_f64_read_grad(n->out[0]), *dw = ln_f64_zeros(D);
    double *dgate = gated ? ln_f64_zeros(xt->numel) : NULL;
    int status = LN_ERR;
    if (x && w && rrms && dy && dw && (!gated || (gate && dgate))) {
        for (int64_t r = 0; r < rows; r++) {
            double *xr = x + r * D, *dyr = dy + r * D, rr = rrms[r], dot = 0;
            if (gated)
                for (int64_t i = 0; i < D; i++) { /* dy of the norm: dy silu(gate) */
                    double g = gate[r * D + i];
                    dgate[r * D + i] = dyr[i] * xr[i] * rr * w[i] * dsilu_f64(g);
                    dyr[i] *= silu_f64(g);
                }
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
        if (status == LN_OK && gated) status = ln_f64_accum_grad(n->in[2], dgate);
    }
    free(x);
    free(w);
    free(rrms);
    free(gate);
    free(dy);
    free(dw);
    free(dgate);
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


static ln_tensor *rmsnorm(const char *name, ln_tensor *x, ln_tensor *weight, ln_tensor *gate, double eps) {
    char xs[96], ws[96], gs[96];
    ln_shape_str(x, xs, sizeof xs);
    ln_shape_str(weight, ws, sizeof ws);
    if (!ln_dtype_is_float(x->dtype) || !ln_dtype_is_float(weight->dtype)) {
        ln_fail("%s: %s is %s and %s is %s; both must be floating point", name, ln_tensor_label(x, "x"),
                ln_dtype_name(x->dtype), ln_tensor_label(weight, "weight"), ln_dtype_name(weight->dtype));
        return NULL;
    }
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1 || weight->ndim != 1 || weight->shape[0] != x->shape[x->ndim - 1]) {
        ln_fail("%s: %s %s needs %s of shape [D] matching its last dim, got %s", name, ln_tensor_label(x, "x"), xs,
                ln_tensor_label(weight, "weight"), ws);
        return NULL;
    }
    if (gate && (gate->dtype != x->dtype || !ln_same_shape(gate, x))) {
        ln_fail("%s: %s %s %s must have the shape and dtype of %s %s %s", name, ln_tensor_label(gate, "gate"),
                ln_dtype_name(gate->dtype), ln_shape_str(gate, gs, sizeof gs), ln_tensor_label(x, "x"),
                ln_dtype_name(x->dtype), xs);
        return NULL;
    }
    if (!(eps >= 0) || !isfinite(eps)) {
        ln_fail("%s: eps %g must be finite and >= 0 (%s %s)", name, eps, ln_tensor_label(x, "x"), xs);
        return NULL;
    }
    ln_node *n = ln_node_begin(&rmsnorm_op, gate ? 3 : 2, (ln_tensor *[]){x, weight, gate});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    n->farg[0] = eps;
    n->iarg[0] = gate != NULL;
    ln_node_save(n, x);
    ln_node_save(n, weight);
    if (gate) ln_node_save(n, gate);
    return ln_node_run(n) == LN_OK ? y : NULL;
}

ln_tensor *ln_rmsnorm(ln_tensor *x, ln_tensor *weight, double eps) {
    if (!x || !weight) return NULL; /* an earlier op failed: its message stands */
    return rmsnorm("rmsnorm", x, weight, NULL, eps);
}

ln_tensor *ln_rmsnorm_gated(ln_tensor *x, ln_tensor *weight, ln_tensor *gate, double eps) {
    if (!x || !weight || !gate) return NULL;
    return rmsnorm("rmsnorm_gated", x, weight, gate, eps);
}
