/* short_conv: the causal depthwise convolution over tokens that gated linear attention models put
 * in front of q, k, v. x [B, T, C], weight [C, W] (W = 2..4), optional bias [C]:
 *   y[b, t, c] = bias[c] + sum_{j<W} weight[c, W-1-j] * x[b, t-j, c]
 * with x = 0 before the sequence start, and before each document start when cu_seqlens (i32
 * [N + 1], B = 1) packs documents, so nothing leaks across them. Backward is the same sum read
 * the other way: dx[t-j] += weight[c, W-1-j] dy[t], dweight[c, W-1-j] += x[t-j] dy[t],
 * dbias = sum dy. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops_linear.h"

/* node: in = x, weight, then bias and cu_seqlens when present; iarg 0/1 = their indices or -1.
 * saved: 0 = x, 1 = weight */

typedef struct {
    int64_t B, T, C, W;
    const ln_tensor *cu;
} conv_dims;

static conv_dims dims_of(const ln_node *n) {
    const ln_tensor *x = n->in[0];
    return (conv_dims){.B = x->shape[0], .T = x->shape[1], .C = x->shape[2], .W = n->in[1]->shape[1],
                       .cu = n->iarg[1] >= 0 ? n->in[n->iarg[1]] : NULL};
}

/* The documents as token ranges [starts[i], starts[i + 1]) of one flat [B * T] token axis. */
static int64_t *doc_starts(const conv_dims *d, int64_t *n_docs) {
    *n_docs = d->cu ? d->cu->shape[0] - 1 : d->B;
    int64_t *s = malloc((size_t)(*n_docs + 1) * sizeof *s);
    if (!s) {
        ln_fail("short_conv: out of host memory");
        return NULL;
    }
    for (int64_t i = 0; i <= *n_docs; i++) s[i] = d->cu ? (int64_t)ln_get(d->cu, i) : i * d->T;
    return s;
}

static int short_conv_forward_cpu(ln_node *n) {
    conv_dims d = dims_of(n);
    int64_t n_docs, *starts = doc_starts(&d, &n_docs);
    double *x = ln_f64_read(n->in[0]), *w = ln_f64_read(n->in[1]), *y = ln_f64_zeros(n->in[0]->numel);
    double *bias = n->iarg[0] >= 0 ? ln_f64_read(n->in[n->iarg[0]]) : ln_f64_zeros(d.C);
    int status = LN_ERR;
    if (starts && x && w && y && bias) {
        for (int64_t doc = 0; doc < n_docs; doc++)
            for (int64_t t = starts[doc]; t < starts[doc + 1]; t++)
                for (int64_t c = 0; c < d.C; c++) {
                    double s = bias[c];
                    for (int64_t j = 0; j < d.W && t - j >= starts[doc]; j++)
                        s += w[c * d.W + d.W - 1 - j] * x[(t - j) * d.C + c];
                    y[t * d.C + c] = s;
                }
        status = ln_f64_write(n->out[0], y);
    }
    free(starts), free(x), free(w), free(y), free(bias);
    return status;
}

static int short_conv_backward_cpu(ln_node *n) {
    conv_dims d = dims_of(n);
    int64_t n_docs, *starts = doc_starts(&d, &n_docs);
    double *x = ln_f64_read(ln_node_saved(n, 0)), *w = ln_f64_read(ln_node_saved(n, 1));
    double *dy = ln_f64_read_grad(n->out[0]), *dx = ln_f64_zeros(n->in[0]->numel);
    double *dw = ln_f64_zeros(d.C * d.W), *db = ln_f64_zeros(d.C);
    int status = LN_ERR;
    if (starts && x && w && dy && dx && dw && db) {
        for (int64_t doc = 0; doc < n_docs; doc++)
            for (int64_t t = starts[doc]; t < starts[doc + 1]; t++)
                for (int64_t c = 0; c < d.C; c++) {
                    double g = dy[t * d.C + c];
                    db[c] += g;
                    for (int64_t j = 0; j < d.W && t - j >= starts[doc]; j++) {
                        dx[(t - j) * d.C + c] += w[c * d.W + d.W - 1 - j] * g;
                        dw[c * d.W + d.W - 1 - j] += x[(t - j) * d.C + c] * g;
                    }
                }
        status = ln_f64_accum_grad(n->in[0], dx);
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], dw);
        if (status == LN_OK && n->iarg[0] >= 0) status = ln_f64_accum_grad(n->in[n->iarg[0]], db);
    }
    free(starts), free(x), free(w), free(dy), free(dx), free(dw), free(db);
    return status;
}

#ifdef LINNET_CUDA
int ln_short_conv_forward_cuda(ln_node *n); /* short_conv.cu */
int ln_short_conv_backward_cuda(ln_node *n);
#endif

static const ln_op short_conv_op = {
    .name = "short_conv",
    .forward = {[LN_CPU] = short_conv_forward_cpu LN_ON_CUDA(ln_short_conv_forward_cuda)},
    .backward = {[LN_CPU] = short_conv_backward_cpu LN_ON_CUDA(ln_short_conv_backward_cuda)},
};

static bool check_cu(const ln_tensor *cu, const ln_tensor *x) {
    char cs[96], xs[96];
    ln_shape_str(cu, cs, sizeof cs);
    ln_shape_str(x, xs, sizeof xs);
    const char *cn = ln_tensor_label(cu, "cu_seqlens"), *xn = ln_tensor_label(x, "x");
    if (cu->dtype != LN_I32 || cu->ndim != 1 || cu->shape[0] < 2 || x->shape[0] != 1) {
        ln_fail("short_conv: %s %s %s must be i32 [N + 1] (N >= 1) with %s %s of batch 1", cn, cs,
                ln_dtype_name(cu->dtype), xn, xs);
        return false;
    }
    double prev = 0;
    for (int64_t i = 0; i < cu->shape[0]; i++) {
        double c = ln_item(cu, i);
        if ((i == 0 && c != 0) || !(c >= prev) || (i == cu->shape[0] - 1 && c != (double)x->shape[1])) {
            ln_fail("short_conv: %s %s must rise from 0 to T = %lld (%s %s); entry %lld is %g", cn, cs,
                    (long long)x->shape[1], xn, xs, (long long)i, c);
            return false;
        }
        prev = c;
    }
    return true;
}

ln_tensor *ln_short_conv(ln_tensor *x, ln_tensor *weight, ln_tensor *bias, ln_tensor *cu_seqlens) {
    if (!x || !weight) return NULL; /* an earlier op failed: its message stands */
    const char *xn = ln_tensor_label(x, "x"), *wn = ln_tensor_label(weight, "weight");
    char xs[96], ws[96], bs[96];
    ln_shape_str(x, xs, sizeof xs);
    ln_shape_str(weight, ws, sizeof ws);
    if (!ln_dtype_is_float(x->dtype) || !ln_dtype_is_float(weight->dtype) || (bias && !ln_dtype_is_float(bias->dtype))) {
        ln_fail("short_conv: %s %s (%s), %s %s (%s)%s must be floating point", xn, xs, ln_dtype_name(x->dtype), wn, ws,
                ln_dtype_name(weight->dtype), bias ? " and the bias" : "");
        return NULL;
    }
    if (x->ndim != 3) {
        ln_fail("short_conv: %s %s must be [B, T, C]", xn, xs);
        return NULL;
    }
    if (weight->ndim != 2 || weight->shape[0] != x->shape[2] || weight->shape[1] < 2 || weight->shape[1] > 4) {
        ln_fail("short_conv: %s %s must be [C, W] with C = %lld (%s %s) and W in 2..4", wn, ws,
                (long long)x->shape[2], xn, xs);
        return NULL;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != x->shape[2])) {
        ln_fail("short_conv: %s %s must be [C] = [%lld] (%s %s)", ln_tensor_label(bias, "bias"),
                ln_shape_str(bias, bs, sizeof bs), (long long)x->shape[2], xn, xs);
        return NULL;
    }
    if (cu_seqlens && !check_cu(cu_seqlens, x)) return NULL;
    ln_tensor *in[4] = {x, weight};
    int n_in = 2, bi = -1, ci = -1;
    if (bias) in[bi = n_in++] = bias;
    if (cu_seqlens) in[ci = n_in++] = cu_seqlens;
    ln_node *n = ln_node_begin(&short_conv_op, n_in, in);
    ln_tensor *y = ln_node_output(n, x->dtype, 3, x->shape);
    if (!y) return NULL;
    n->iarg[0] = bi;
    n->iarg[1] = ci;
    ln_node_save(n, x);
    ln_node_save(n, weight);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
