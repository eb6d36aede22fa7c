/* The core ops. Each takes and returns tensors; a NULL input (an earlier failure) gives NULL,
 * so a chain of ops can be checked once at its end. Shapes are row-major: [B, T, H, D] means D
 * is contiguous. Float ops accept f32, f64 (checks) and bf16 storage on the CPU.
 * Each op lives in its family's folder, autograd/ops/<family>/ (docs/DESIGN.md draws the map), its
 * record and CPU reference forward and backward in <op>.c, its CUDA kernels in <op>.cu. */
#ifndef LN_OPS_H
#define LN_OPS_H

#include "tape.h"

/* ---- shape ---- */
/* Same data, new shape (same element count). */
ln_tensor *ln_reshape(ln_tensor *x, int ndim, const int64_t *shape);

/* The same values in another float dtype (x itself when it has that dtype already). */
ln_tensor *ln_cast(ln_tensor *x, ln_dtype dtype);

/* a [..., Na] and b [..., Nb] side by side along the last dim -> [..., Na + Nb] (same leading
 * dims, same dtype). */
ln_tensor *ln_concat_last(ln_tensor *a, ln_tensor *b);

/* ---- matmul (BLAS on the CPU) ----
 * a [..., M, K] (or [..., K, M] when trans_a), b [K, N] (or [N, K] when trans_b), or b batched
 * with the same leading dims as a. A 2-D b is shared by every batch entry of a. -> [..., M, N] */
ln_tensor *ln_matmul(ln_tensor *a, ln_tensor *b, bool trans_a, bool trans_b);

/* ---- elementwise ----
 * b has a's shape, or a's trailing dims (broadcast over the leading ones, e.g. a bias). */
ln_tensor *ln_add(ln_tensor *a, ln_tensor *b);
ln_tensor *ln_mul(ln_tensor *a, ln_tensor *b);
ln_tensor *ln_scale(ln_tensor *x, double s);
/* Each row of a [..., N] divided by its own divisor: y[..., j] = a[..., j] / (d[..., 0] + eps),
 * d [..., 1] (a's shape with a last dim of 1, a's dtype). */
ln_tensor *ln_div_rows(ln_tensor *a, ln_tensor *d, double eps);
ln_tensor *ln_silu(ln_tensor *x);
ln_tensor *ln_gelu(ln_tensor *x);                   /* tanh approximation, as GPT-2 */
ln_tensor *ln_swiglu(ln_tensor *gate, ln_tensor *up); /* silu(gate) * up */
ln_tensor *ln_logsigmoid(ln_tensor *x);             /* log(sigmoid(x)): gated linear attention's
                                                       log decay */
ln_tensor *ln_logsigmoid_scaled(ln_tensor *x, double scale); /* scale * log(sigmoid(x)) in one op */

/* ---- reductions ---- */
ln_tensor *ln_sum(ln_tensor *x);     /* all elements -> [] */
ln_tensor *ln_mean(ln_tensor *x);    /* all elements -> [] */
ln_tensor *ln_sum_last(ln_tensor *x); /* [..., N] -> [...] */

/* ---- embedding ----  weight [V, D], ids i32 [...] (each in [0, V)) -> [..., D] */
ln_tensor *ln_embedding(ln_tensor *weight, ln_tensor *ids);

/* ---- normalisation over the last dim ---- weight/bias [D] */
ln_tensor *ln_rmsnorm(ln_tensor *x, ln_tensor *weight, double eps);
/* rmsnorm(x) * silu(gate), gate x's shape and dtype: GLA's output norm and gate in one op. */
ln_tensor *ln_rmsnorm_gated(ln_tensor *x, ln_tensor *weight, ln_tensor *gate, double eps);
/* The pre-norm residual step fused: *sum_out = x + delta (delta: x's shape and dtype) and the
 * result rmsnorm(*sum_out, weight, eps), both outputs of one node. Exactly ln_add followed by
 * ln_rmsnorm (same rounding, same saved statistics), with one pass over the rows each way on the
 * GPU. Gradients reaching the sum from its own readers and through the norm both go to x and
 * delta. On failure returns NULL and sets *sum_out to NULL. */
ln_tensor *ln_add_rmsnorm(ln_tensor *x, ln_tensor *delta, ln_tensor *weight, double eps, ln_tensor **sum_out);
ln_tensor *ln_layernorm(ln_tensor *x, ln_tensor *weight, ln_tensor *bias, double eps);

/* ---- rotary position embedding ----  x [B, T, H, D], D even; rotates pairs (i, i + D/2)
 * (the Llama / HF "rotate_half" convention) at position pos_offset + t, frequency
 * theta^(-2i/D). */
ln_tensor *ln_rope(ln_tensor *x, double theta, int64_t pos_offset);

/* ---- softmax over the last dim ---- */
ln_tensor *ln_softmax(ln_tensor *x);

/* ---- attention (plain reference) ----
 * q [B, T, Hq, D], k and v [B, S, Hkv, D] with Hq a multiple of Hkv (grouped-query: query head h
 * reads kv head h / (Hq / Hkv)). Causal masks key s > query t + (S - T) (queries are the last T
 * of S positions). -> [B, T, Hq, D]. scale is usually 1/sqrt(D). */
ln_tensor *ln_attention(ln_tensor *q, ln_tensor *k, ln_tensor *v, bool causal, double scale);

/* Which kernel runs attention on the GPU: our own flash kernel, cuDNN's fused SDPA, or (auto)
 * the faster of the two for the shape. Both save the same lse, so either backward follows either
 * forward. Process-wide; recipes set it from model.attention_impl. */
typedef enum { LN_ATTN_AUTO, LN_ATTN_OWN, LN_ATTN_CUDNN } ln_attention_impl;
void ln_set_attention_impl(ln_attention_impl impl);
ln_attention_impl ln_get_attention_impl(void);
/* "auto", "own" or "cudnn" -> impl; LN_ERR with a message naming `what` otherwise. */
int ln_attention_impl_parse(const char *name, const char *what, ln_attention_impl *impl);

/* ---- loss ----  logits [..., V], targets i32 [...]; targets equal to -1 are ignored.
 * The mean negative log-likelihood over non-ignored targets -> []. Fused: log-softmax and the
 * gather in one pass, probabilities not kept past the op. */
ln_tensor *ln_cross_entropy(ln_tensor *logits, ln_tensor *targets);

#endif
