/* The attention family (autograd/ops/attention/): exact softmax attention, causal or not, GQA.
 *   attention.c            the op record and its CPU reference (this file)
 *   attention.cu           the GPU entry points; the mma.sync flash kernels (any sm_80+) and the
 *                          CUDA-core generic path, forward and backward
 *   attention_wgmma_fwd.cu, attention_wgmma_bwd.cu   the Hopper (sm_90a) forward and backward
 *   attention_common.cuh   what the flash kernels share
 *   attention_cudnn.cu/.h  cuDNN's fused attention; attention_impl.c the process-wide choice
 *                          between our kernels and cuDNN
 *
 * Softmax attention, the plain CPU reference the CUDA (flash) kernels are checked against.
 *
 * q [B, T, Hq, D], k and v [B, S, Hkv, D] -> o [B, T, Hq, D]; query head h reads kv head
 * h / (Hq / Hkv). Causal masks key s > t + (S - T): the queries are the last T of S positions.
 *
 * Memory is FlashAttention-style: the forward keeps only the log-sum-exp per (b, h, t) — lse
 * [B, Hq, T] — never the [B, Hq, T, S] probabilities; the backward recomputes each probability
 * row from q, k and lse:
 *   P = exp(scale q k^T - lse),  dP = dO v^T,  dS = P * (dP - rowsum(dO * O)),
 *   dQ = scale dS k,  dK = scale dS^T q,  dV = P^T dO,
 * with dK, dV of a kv head summed over the query heads that share it. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

/* saved: 0 = q, 1 = k, 2 = v (by ln_attention), 3 = o, 4 = lse [B, Hq, T] (by the forward) */

typedef struct {
    int64_t B, T, S, Hq, Hkv, D, group;
    bool causal;
    double scale;
} attn_dims;

static attn_dims dims_of(const ln_node *n) {
    const ln_tensor *q = n->in[0], *k = n->in[1];
    attn_dims a = {.B = q->shape[0], .T = q->shape[1], .Hq = q->shape[2], .D = q->shape[3],
                   .S = k->shape[1], .Hkv = k->shape[2], .causal = n->iarg[0] != 0, .scale = n->farg[0]};
    a.group = a.Hq / a.Hkv;
    return a;
}

/* Keys visible from query t: [0, s_end). */
static int64_t visible_keys(const attn_dims *a, int64_t t) {
    if (!a->causal) return a->S;
    int64_t end = t + (a->S - a->T) + 1;
    return end < a->S ? end : a->S;
}

static double dot(const double *x, const double *y, int64_t D) {
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += x[d] * y[d];
    return s;
}

static int attention_forward_cpu(ln_node *n) {
    attn_dims a = dims_of(n);
    ln_tensor *lse_t = ln_arena_tensor(n->in[0]->dtype == LN_F64 ? LN_F64 : LN_F32, LN_CPU, 3,
                                       (int64_t[]){a.B, a.Hq, a.T});
    double *q = ln_f64_read(n->in[0]), *k = ln_f64_read(n->in[1]), *v = ln_f64_read(n->in[2]);
    double *o = ln_f64_zeros(a.B * a.T * a.Hq * a.D), *lse = ln_f64_zeros(a.B * a.Hq * a.T);
    double *p = ln_f64_zeros(a.S); /* one row of scores, then probabilities */
    int status = LN_ERR;
    if (!lse_t || !q || !k || !v || !o || !lse || !p) goto done;
    for (int64_t b = 0; b < a.B; b++)
        for (int64_t h = 0; h < a.Hq; h++) {
            int64_t g = h / a.group;
            for (int64_t t = 0; t < a.T; t++) {
                const double *qr = q + ((b * a.T + t) * a.Hq + h) * a.D;
                double *orow = o + ((b * a.T + t) * a.Hq + h) * a.D;
                int64_t s_end = visible_keys(&a, t);
                double mx = -INFINITY;
                for (int64_t s = 0; s < s_end; s++) {
                    p[s] = a.scale * dot(qr, k + ((b * a.S + s) * a.Hkv + g) * a.D, a.D);
                    if (p[s] > mx) mx = p[s];
                }
                /* stable softmax: subtract the row max before exp */
                double sum = 0;
                for (int64_t s = 0; s < s_end; s++) sum += (p[s] = exp(p[s] - mx));
                for (int64_t s = 0; s < s_end; s++) {
                    const double *vr = v + ((b * a.S + s) * a.Hkv + g) * a.D;
                    double w = p[s] / sum;
                    for (int64_t d = 0; d < a.D; d++) orow[d] += w * vr[d];
                }
                lse[(b * a.Hq + h) * a.T + t] = mx + log(sum);
            }
        }
    status = ln_f64_write(n->out[0], o);
    if (status == LN_OK) status = ln_f64_write(lse_t, lse);
    if (status == LN_OK) {
        ln_node_save(n, n->out[0]);
        ln_node_save(n, lse_t);
    }
done:
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    free(p);
    return status;
}

static int attention_backward_cpu(ln_node *n) {
    attn_dims a = dims_of(n);
    double *q = ln_f64_read(ln_node_saved(n, 0)), *k = ln_f64_read(ln_node_saved(n, 1));
    double *v = ln_f64_read(ln_node_saved(n, 2)), *o = ln_f64_read(ln_node_saved(n, 3));
    double *lse = ln_f64_read(ln_node_saved(n, 4)), *dout = ln_f64_read_grad(n->out[0]);
    double *dq = ln_f64_zeros(a.B * a.T * a.Hq * a.D);
    double *dk = ln_f64_zeros(a.B * a.S * a.Hkv * a.D), *dv = ln_f64_zeros(a.B * a.S * a.Hkv * a.D);
    int status = LN_ERR;
    if (!q || !k || !v || !o || !lse || !dout || !dq || !dk || !dv) goto done;
    for (int64_t b = 0; b < a.B; b++)
        for (int64_t h = 0; h < a.Hq; h++) {
            int64_t g = h / a.group;
            for (int64_t t = 0; t < a.T; t++) {
                int64_t row = ((b * a.T + t) * a.Hq + h) * a.D;
                const double *qr = q + row, *dor = dout + row;
                double *dqr = dq + row;
                double row_lse = lse[(b * a.Hq + h) * a.T + t];
                double delta = dot(dor, o + row, a.D); /* rowsum(dO * O) = sum_s P dP */
                int64_t s_end = visible_keys(&a, t);
                for (int64_t s = 0; s < s_end; s++) {
                    int64_t kv = ((b * a.S + s) * a.Hkv + g) * a.D;
                    const double *kr = k + kv, *vr = v + kv;
                    double *dkr = dk + kv, *dvr = dv + kv;
                    double prob = exp(a.scale * dot(qr, kr, a.D) - row_lse);
                    double ds = prob * (dot(dor, vr, a.D) - delta);
                    for (int64_t d = 0; d < a.D; d++) {
                        dqr[d] += a.scale * ds * kr[d];
                        dkr[d] += a.scale * ds * qr[d];
                        dvr[d] += prob * dor[d];
                    }
                }
            }
        }
    status = ln_f64_accum_grad(n->in[0], dq);
    if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], dk);
    if (status == LN_OK) status = ln_f64_accum_grad(n->in[2], dv);
done:
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    free(dout);
    free(dq);
    free(dk);
    free(dv);
    return status;
}

#ifdef LINNET_CUDA
/* attention.cu: FlashAttention-2 style kernels (bf16 tensor-core path for D = 64, 128; f32
 * CUDA-core path otherwise), the same saved slots as the CPU forward */
int ln_attention_forward_cuda(ln_node *n);
int ln_attention_backward_cuda(ln_node *n);
#endif

static const ln_op attention_op = {
    .name = "attention",
    .forward = {[LN_CPU] = attention_forward_cpu LN_ON_CUDA(ln_attention_forward_cuda)},
    .backward = {[LN_CPU] = attention_backward_cpu LN_ON_CUDA(ln_attention_backward_cuda)},
};


ln_tensor *ln_attention(ln_tensor *q, ln_tensor *k, ln_tensor *v, bool causal, double scale) {
    if (!q || !k || !v) return NULL; /* an earlier op failed: its message stands */
    const char *qn = ln_tensor_label(q, "q"), *kn = ln_tensor_label(k, "k"), *vn = ln_tensor_label(v, "v");
    char qs[96], ks[96], vs[96];
    ln_shape_str(q, qs, sizeof qs);
    ln_shape_str(k, ks, sizeof ks);
    ln_shape_str(v, vs, sizeof vs);
    if (!ln_dtype_is_float(q->dtype) || !ln_dtype_is_float(k->dtype) || !ln_dtype_is_float(v->dtype)) {
        ln_fail("attention: %s (%s), %s (%s) and %s (%s) must all be floating point", qn, ln_dtype_name(q->dtype),
                kn, ln_dtype_name(k->dtype), vn, ln_dtype_name(v->dtype));
        return NULL;
    }
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        ln_fail("attention: %s %s, %s %s and %s %s must be 4-D ([B, T, Hq, D], [B, S, Hkv, D])", qn, qs, kn, ks,
                vn, vs);
        return NULL;
    }
    if (!ln_same_shape(k, v)) {
        ln_fail("attention: %s %s and %s %s must have the same shape", kn, ks, vn, vs);
        return NULL;
    }
    if (q->shape[0] != k->shape[0]) {
        ln_fail("attention: batch differs: %s %s, %s %s", qn, qs, kn, ks);
        return NULL;
    }
    if (q->shape[3] != k->shape[3]) {
        ln_fail("attention: head dim D differs: %s %s, %s %s", qn, qs, kn, ks);
        return NULL;
    }
    if (k->shape[2] < 1 || q->shape[2] % k->shape[2] != 0) {
        ln_fail("attention: query heads of %s %s are not a multiple of kv heads of %s %s", qn, qs, kn, ks);
        return NULL;
    }
    if (causal && k->shape[1] < q->shape[1]) {
        ln_fail("attention: causal needs S >= T, got %s %s and %s %s", qn, qs, kn, ks);
        return NULL;
    }
    if (k->shape[1] < 1 && q->shape[1] > 0) {
        /* softmax over no keys is undefined */
        ln_fail("attention: no keys: %s %s for %s %s", kn, ks, qn, qs);
        return NULL;
    }
    if (!isfinite(scale)) {
        ln_fail("attention: scale %g is not finite (%s %s)", scale, qn, qs);
        return NULL;
    }
    ln_node *n = ln_node_begin(&attention_op, 3, (ln_tensor *[]){q, k, v});
    ln_tensor *out = ln_node_output(n, q->dtype, 4, q->shape);
    if (!out) return NULL;
    n->iarg[0] = causal;
    n->farg[0] = scale;
    ln_node_save(n, q);
    ln_node_save(n, k);
    ln_node_save(n, v);
    return ln_node_run(n) == LN_OK ? out : NULL;
}
