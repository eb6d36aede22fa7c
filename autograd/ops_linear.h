/* The linear-attention ops (the gated linear attention family), flash-linear-attention's
 * conventions so results compare directly with its kernels:
 *   state S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t   (S is [K, V] per batch entry and head)
 *   o_t       = scale * q_t S_t
 * The CPU reference runs the recurrence step by step; the chunked forms (CPU and CUDA) must match
 * it. The ops live in autograd/ops/linear_attention/: CPU in <name>.c, CUDA in the .cu files.
 * gla, simple_gla and linear_attention share gla_family.c (validation, node layout) and the
 * numerics of gla_core.h: gla_recurrent.c (the reference) and gla_chunked.c (the chunkwise
 * blueprint of the kernels). */
#ifndef LN_OPS_LINEAR_H
#define LN_OPS_LINEAR_H

#include "tape.h"

/* Optional extras of the gated ops. Zero-initialised means: no initial state, no final state,
 * one sequence per batch entry, scale 1/sqrt(K). */
typedef struct {
    ln_tensor *h0;          /* [B, H, K, V] initial state, or NULL (zeros) */
    ln_tensor *cu_seqlens;  /* i32 [N + 1] cumulative document offsets for a packed batch (B = 1),
                               or NULL; no state crosses a document boundary, h0/ht are per document
                               ([N, H, K, V]) */
    double scale;           /* 0 means 1/sqrt(K) */
    bool want_final_state;  /* produce ht */
    int chunk_size;         /* CPU only: 0 runs the step-by-step recurrence (the reference); C > 0 the
                               chunkwise form with chunks of C tokens (what CUDA runs, C = 64) */
} ln_gla_opts;

/* The constant of linear_attention's normalizer (q . z + LN_LINEAR_ATTN_EPS). */
#define LN_LINEAR_ATTN_EPS 1e-6

/* gla: per-key-channel decay. q, k [B, T, H, K], v [B, T, H, V], g [B, T, H, K] (log decay,
 * <= 0). Returns o [B, T, H, V]; *ht (when opts->want_final_state) gets [B, H, K, V] in f32. */
ln_tensor *ln_gla(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *g, const ln_gla_opts *opts,
                  ln_tensor **ht);

/* simple_gla: one scalar log decay per head and step, g [B, T, H] (RetNet / Lightning style). */
ln_tensor *ln_simple_gla(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *g, const ln_gla_opts *opts,
                         ln_tensor **ht);

/* linear: no decay. The feature map is applied to q and k by the caller (ln_feature_map);
 * normalize divides o_t by (q_t . sum_{s<=t} k_s) (+ eps), as in Katharopoulos et al.
 * Precisely, as flash-linear-attention's normalize_output(q * scale, k, o) with our eps:
 *   o_t = scale q_t S_t / (scale q_t . z_t + LN_LINEAR_ATTN_EPS),  z_t = sum_{s<=t} k_s,
 * z summing only this call's keys of the current sequence or document (h0/ht carry S, not z). */
ln_tensor *ln_linear_attention(ln_tensor *q, ln_tensor *k, ln_tensor *v, bool normalize, const ln_gla_opts *opts,
                               ln_tensor **ht);

/* Feature maps for linear attention: identity, elu(x) + 1, relu(x); hedgehog is
 * softmax(x W) over the last dim, concatenated with softmax(-x W) (W [K, F] learnable). */
typedef enum { LN_FMAP_IDENTITY, LN_FMAP_ELU1, LN_FMAP_RELU, LN_FMAP_HEDGEHOG } ln_feature_map_kind;
ln_tensor *ln_feature_map(ln_tensor *x, ln_feature_map_kind kind, ln_tensor *weight);

/* Causal depthwise convolution over tokens: x [B, T, C], weight [C, W] (W = 2..4), optional bias
 * [C]; y_t = sum_{j<W} weight[:, W-1-j] * x_{t-j} (+ bias), zero before the sequence start (and
 * before each document start when cu_seqlens is given). */
ln_tensor *ln_short_conv(ln_tensor *x, ln_tensor *weight, ln_tensor *bias, ln_tensor *cu_seqlens);

#endif
