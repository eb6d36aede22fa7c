/* Feature maps for linear attention, over the last dim of x [..., K]:
 *   identity    x (returned as is)
 *   elu1        elu(x) + 1 = x + 1 (x > 0), exp(x) (x <= 0)     always positive
 *   relu        max(x, 0)
 *   hedgehog    [softmax(x W), softmax(-x W)] with W [K, F] learnable -> [..., 2F]
 *               (Zhang et al. 2024, "The Hedgehog & the Porcupine")
 * elu1 and relu are this file's op; hedgehog is recorded as matmul, softmax and friends, which
 * run (forward and backward) on both devices. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/ops_linear.h"

/* saved: 0 = x */

static const char *kind_name(int64_t kind) {
    static const char *names[] = {"identity", "elu1", "relu", "hedgehog"};
    return kind >= 0 && kind <= LN_FMAP_HEDGEHOG ? names[kind] : "unknown";
}

static int feature_map_forward_cpu(ln_node *n) {
    ln_tensor *xt = n->in[0];
    bool elu = n->iarg[0] == LN_FMAP_ELU1;
    double *x = ln_f64_read(xt);
    if (!x) return LN_ERR;
    for (int64_t i = 0; i < xt->numel; i++) x[i] = x[i] > 0 ? x[i] + (elu ? 1 : 0) : (elu ? exp(x[i]) : 0);
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int feature_map_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0);
    bool elu = n->iarg[0] == LN_FMAP_ELU1;
    double *x = ln_f64_read(xt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (x && dy) {
        for (int64_t i = 0; i < xt->numel; i++) dy[i] *= x[i] > 0 ? 1.0 : elu ? exp(x[i]) : 0.0; /* dy becomes dx */
        status = ln_f64_accum_grad(n->in[0], dy);
    }
    free(x), free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_feature_map_forward_cuda(ln_node *n); /* feature_map.cu */
int ln_feature_map_backward_cuda(ln_node *n);
#endif

static const ln_op feature_map_op = {
    .name = "feature_map",
    .forward = {[LN_CPU] = feature_map_forward_cpu LN_ON_CUDA(ln_feature_map_forward_cuda)},
    .backward = {[LN_CPU] = feature_map_backward_cpu LN_ON_CUDA(ln_feature_map_backward_cuda)},
};

/* hedgehog as ops: z = x [W, -W] is [rows, 2F]; one softmax over each half (z seen as [rows, 2, F])
 * gives softmax(x W) and softmax(-x W) side by side. One matmul reads x once. */
static ln_tensor *hedgehog(ln_tensor *x, ln_tensor *weight) {
    int64_t K = x->shape[x->ndim - 1], F = weight->shape[1], rows = ln_shape_numel(x->ndim - 1, x->shape);
    int64_t shape[LN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = 2 * F;
    ln_tensor *w = ln_cast(weight, x->dtype); /* matmul takes one dtype */
    ln_tensor *w_both = ln_concat_last(w, ln_scale(w, -1.0));
    ln_tensor *z = ln_matmul(ln_reshape(x, 2, (int64_t[]){rows, K}), w_both, false, false);
    ln_tensor *y = ln_softmax(ln_reshape(z, 3, (int64_t[]){rows, 2, F}));
    return ln_reshape(y, x->ndim, shape);
}

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
        return hedgehog(x, weight);
    }
    ln_node *n = ln_node_begin(&feature_map_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    n->iarg[0] = kind;
    ln_node_save(n, x);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
