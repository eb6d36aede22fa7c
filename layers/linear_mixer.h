/* What the linear attention kinds (gla, simple_gla, linear; docs/linear-attention.md) share, as
 * flash-linear-attention's layers have it: q, k, v projections (key width expand_k * d_model,
 * value width expand_v * d_model, both split over model.n_heads), an optional causal short
 * convolution + silu on each, and the output path: RMSNorm per head (a group norm with one gain
 * vector shared by the heads), times silu(x W_g) when the kind has an output gate, then W_o.
 * No RoPE: the recurrence itself orders the tokens. */
#ifndef LN_LINEAR_MIXER_H
#define LN_LINEAR_MIXER_H

#include "autograd/ops.h"
#include "autograd/ops_linear.h"
#include "layers/linear.h"
#include "layers/params.h"
#include "recipes/config.h"

typedef struct ln_linear_mixer_opts {
    const char *kind;     /* names the recipe keys in messages: model.<kind>.expand_k */
    double expand_k, expand_v;
    bool use_short_conv;
    int conv_size;
    bool output_gate;     /* o * silu(x W_g) after the norm */
} ln_linear_mixer_opts;

typedef struct ln_linear_mixer {
    int n_heads, head_k, head_v; /* head_k, head_v: per-head key and value widths */
    double norm_eps;
    int chunk_size;              /* the ops' CPU form (model.linear_chunk_size): 0 recurrence */
    ln_linear q, k, v;           /* wq, wk, wv: [H * head_k, d], [H * head_k, d], [H * head_v, d] */
    ln_tensor *conv_q, *conv_k, *conv_v; /* [width, conv_size], or NULL without short convolution */
    bool gated;
    ln_linear g;                 /* wg [H * head_v, d], when gated */
    ln_tensor *o_norm;           /* [head_v] */
    ln_linear o;                 /* wo [d, H * head_v] */
} ln_linear_mixer;

/* Checks that n_heads divides both widths (LN_ERR naming the keys otherwise). */
int ln_linear_mixer_check(const ln_model_config *cfg, const ln_linear_mixer_opts *o);
/* Adds wq, wk, wv (and conv_q, conv_k, conv_v; wg) at site. Kind-specific parameters are added by
 * the caller after these, then o_norm and wo by ln_linear_mixer_create_output. */
int ln_linear_mixer_create(ln_linear_mixer *m, const ln_linear_site *site, const ln_linear_mixer_opts *o);
int ln_linear_mixer_create_output(ln_linear_mixer *m, const ln_linear_site *site);
/* Frees the projections' state (ln_linear_free of each). */
void ln_linear_mixer_free(ln_linear_mixer *m);
/* x [B, T, d] -> q, k [B, T, H, head_k], v [B, T, H, head_v] (NULL on failure). */
void ln_linear_mixer_qkv(const ln_linear_mixer *m, ln_tensor *x, ln_tensor **q, ln_tensor **k, ln_tensor **v);
/* o [B, T, H, head_v] from the op -> [B, T, d]. x is the layer input (for the gate). */
ln_tensor *ln_linear_mixer_output(const ln_linear_mixer *m, ln_tensor *o, ln_tensor *x);
/* y [B, T, W] viewed as heads [B, T, H, W / H]. */
ln_tensor *ln_split_heads(ln_tensor *y, int n_heads);

#endif
