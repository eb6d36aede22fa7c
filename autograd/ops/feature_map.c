/* Feature maps for linear attention, over the last dim of x [..., K]:
 *   identity    x (returned as is)
 *   elu1        elu(x) + 1 = x + 1 (x > 0), exp(x) (x <= 0)     always positive
 *   relu        max(x, 0)
 *   hedgehog    [softmax(x W), softmax(-x W)] with W [K, F] learnable -> [..., 2F]
 *               (Zhang et al. 2024, "The Hedgehog & the Porcupine")
 * Hedgehog backward, with z = x W, p = softmax(z), m = softmax(-z) and dy = [dp, dm]:
 *   dz = p * (dp - p . dp) - m * (dm - m . dm),   dx = dz W^T,   dW = sum_rows x^T dz. */
#include <math.h>
#include <stdlib.h>

#include "../error.h"
#include "../ops_linear.h"

/* saved: 0 = x, 1 = W (hedgehog) */

static const char *kind_name(int64_t kind) {
    static const char *names[] = {"identity", "elu1", "relu", "hedgehog"};
    return kind >= 0 && kind <= LN_FMAP_HEDGEHOG ? names[kind] : "unknown";
}

/* softmax of sign * z (length F) into out */
static void softmax_signed(const double *z, int64_t F, double sign, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t f = 0; f < F; f++) mx = fmax(mx, sign * z[f]);
    for (int64_t f = 0; f < F; f++) sum += (out[f] = exp(sign * z[f] - mx));
    for (int64_t f = 0; f < F; f++) out[f] /= sum;
}

/* z = x W for one row */
static void project(const double *x, const double *W, int64_t K, int64_t F, double *z) {
    for (int64_t f = 0; f < F; f++) z[f] = 0;
    for (int64_t d = 0; d < K; d++)
        for (int64_t f = 0; f < F; f++) z[f] += x[d] * W[d * F + f];
}

static int feature_map_forward_cpu(ln_node *n) {
    ln_tensor *xt = n->in[0];
    int64_t kind = n->iarg[0], K = xt->shape[xt->ndim - 1], rows = K ? xt->numel / K : 0;
    double *x = ln_f64_read(xt), *y = ln_f64_zeros(n->out[0]->numel), *W = NULL, *z = NULL;
    int status = LN_ERR;
    if (!x || !y) goto done;
    if (kind == LN_FMAP_HEDGEHOG) {
        int64_t F = n->in[1]->shape[1];
        if (!(W = ln_f64_read(n->in[1])) || !(z = ln_f64_zeros(F))) goto done;
        for (int64_t r = 0; r < rows; r++) {
            project(x + r * K, W, K, F, z);
            softmax_signed(z, F, 1.0, y + r * 2 * F);
            softmax_signed(z, F, -1.0, y + r * 2 * F + F);
        }
    } else {
        for (int64_t i = 0; i < xt->numel; i++)
            y[i] = kind == LN_FMAP_ELU1 ? (x[i] > 0 ? x[i] + 1 : exp(x[i])) : (x[i] > 0 ? x[i] : 0);
    }
    status = ln_f64_write(n->out[0], y);
done:
    free(x), free(y), free(W), free(z);
    return status;
}

static int feature_map_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0);
    int64_t kind = n->iarg[0], K = xt->shape[xt->ndim - 1], rows = K ? xt->numel / K : 0;
    double *x = ln_f64_read(xt), *dy = ln_f64_read_grad(n->out[0]), *dx = ln_f64_zeros(xt->numel);
    double *W = NULL, *dW = NULL, *z = NULL, *p = NULL, *m = NULL;
    int status = LN_ERR;
    if (!x || !dy || !dx) goto done;
    if (kind != LN_FMAP_HEDGEHOG) {
        for (int64_t i = 0; i < xt->numel; i++)
            dx[i] = dy[i] * (x[i] > 0 ? 1.0 : kind == LN_FMAP_ELU1 ? exp(x[i]) : 0.0);
        status = ln_f64_accum_grad(n->in[0], dx);
        goto done;
    }
    int64_t F = n->in[1]->shape[1];
    W = ln_f64_read(ln_node_saved(n, 1)), dW = ln_f64_zeros(K * F);
    z = ln_f64_zeros(F), p = ln_f64_zeros(F), m = ln_f64_zeros(F);
    if (!W || !dW || !z || !p || !m) goto done;
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * K, *dp = dy + r * 2 * F, *dm = dp + F;
        project(xr, W, K, F, z);
        softmax_signed(z, F, 1.0, p);
        softmax_signed(z, F, -1.0, m);
        double pdp = 0, mdm = 0;
        for (int64_t f = 0; f < F; f++) pdp += p[f] * dp[f], mdm += m[f] * dm[f];
        for (int64_t f = 0; f < F; f++) z[f] = p[f] * (dp[f] - pdp) - m[f] * (dm[f] - mdm); /* z becomes dz */
        for (int64_t d = 0; d < K; d++)
            for (int64_t f = 0; f < F; f++) {
                dx[r * K + d] += z[f] * W[d * F + f];
                dW[d * F + f] += xr[d] * z[f];
            }
    }
    status = ln_f64_accum_grad(n->in[0], dx);
    if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], dW);
done:
    free(x), free(dy), free(dx), free(W), free(dW), free(z), free(p), free(m);
    return status;
}

#ifdef LINNET_CUDA
int ln_feature_map_forward_cuda(ln_node *n); /* feature_map.cu: elu1, relu; hedgehog fails there */
int ln_feature_map_backward_cuda(ln_node *n);
#endif

static const ln_op feature_map_op = {
    .name = "feature_map",
    .forward = {[LN_CPU] = feature_map_forward_cpu LN_ON_CUDA(ln_feature_map_forward_cuda)},
    .backward = {[LN_CPU] = feature_map_backward_cpu LN_ON_CUDA(ln_feature_map_backward_cuda)},
};

ln_tensor *ln_feature_map(ln_tensor *x, ln_feature_map_kind kind, ln_tensor *weight) {
    if (!x) return NULL; /* an earlier op failed: its message stands */
    const char *xn = ln_tensor_label(x, "x");
    char xs[96], ws[96];
    ln_shape_str(x, xs, sizeof xs);
    if ((int)kind < 0 || kind > LN_FMAP_HEDGEHOG) {
        ln_fail("feature_map: unknown kind %d for %s %s", (int)kind, xn, xs);
        return NULL;
    }
    if (!ln_dtype_is_float(x->dtype) || x->ndim < 1) {
        ln_fail("feature_map %s: %s %s %s must be floating point with at least one dim", kind_name(kind), xn, xs,
                ln_dtype_name(x->dtype));
        return NULL;
    }
    if (kind != LN_FMAP_HEDGEHOG && weight) {
        ln_fail("feature_map %s: takes no weight (got %s %s for %s %s)", kind_name(kind),
                ln_tensor_label(weight, "weight"), ln_shape_str(weight, ws, sizeof ws), xn, xs);
        return NULL;
    }
    if (kind == LN_FMAP_IDENTITY) return x;
    int64_t shape[LN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    if (kind == LN_FMAP_HEDGEHOG) {
        if (!weight) {
            ln_fail("feature_map hedgehog: needs a weight [K, F] for %s %s", xn, xs);
            return NULL;
        }
        ln_shape_str(weight, ws, sizeof ws);
        if (!ln_dtype_is_float(weight->dtype) || weight->ndim != 2 || weight->shape[0] != x->shape[x->ndim - 1] ||
            weight->shape[1] < 1) {
            ln_fail("feature_map hedgehog: %s %s %s must be floating point [K, F] with K = %lld, the last dim of %s %s",
                    ln_tensor_label(weight, "weight"), ws, ln_dtype_name(weight->dtype),
                    (long long)x->shape[x->ndim - 1], xn, xs);
            return NULL;
        }
        shape[x->ndim - 1] = 2 * weight->shape[1];
    }
    ln_node *n = ln_node_begin(&feature_map_op, weight ? 2 : 1, (ln_tensor *[]){x, weight});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, shape);
    if (!y) return NULL;
    n->iarg[0] = kind;
    ln_node_save(n, x);
    if (weight) ln_node_save(n, weight);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
