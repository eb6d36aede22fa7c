#include "cli/op_registry.h"

#include <math.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/ops_linear.h"

/* A scalar that must be a whole number in [lo, hi]. */
static bool whole(double v, double lo, double hi, const char *what, int *out) {
    if (!(v >= lo && v <= hi) || v != floor(v)) {
        ln_fail("%s must be a whole number in [%g, %g], got %g", what, lo, hi, v);
        return false;
    }
    *out = (int)v;
    return true;
}

static int run_gated(int kind, ln_tensor *const *in, const double *s, ln_tensor **out) {
    /* gla, simple_gla: q k v g h0 cu_seqlens; linear_attention: q k v h0 cu_seqlens */
    int gated = kind != 2, chunk, normalize = 0;
    if (!whole(s[1], 0, 1 << 20, "chunk_size", &chunk)) return LN_ERR;
    if (kind == 2 && !whole(s[2], 0, 1, "normalize", &normalize)) return LN_ERR;
    ln_gla_opts o = {.h0 = in[3 + gated], .cu_seqlens = in[4 + gated], .scale = s[0], .want_final_state = true,
                     .chunk_size = chunk};
    out[0] = kind == 0   ? ln_gla(in[0], in[1], in[2], in[3], &o, &out[1])
             : kind == 1 ? ln_simple_gla(in[0], in[1], in[2], in[3], &o, &out[1])
                         : ln_linear_attention(in[0], in[1], in[2], normalize, &o, &out[1]);
    return out[0] ? LN_OK : LN_ERR;
}
static int run_gla(ln_tensor *const *in, const double *s, ln_tensor **out) { return run_gated(0, in, s, out); }
static int run_simple_gla(ln_tensor *const *in, const double *s, ln_tensor **out) { return run_gated(1, in, s, out); }
static int run_linear(ln_tensor *const *in, const double *s, ln_tensor **out) { return run_gated(2, in, s, out); }

static int run_short_conv(ln_tensor *const *in, const double *s, ln_tensor **out) {
    return (out[0] = ln_short_conv(in[0], in[1], in[2], in[3])) ? LN_OK : LN_ERR;
}

static int run_feature_map(ln_tensor *const *in, const double *s, ln_tensor **out) {
    int kind;
    if (!whole(s[0], LN_FMAP_IDENTITY, LN_FMAP_HEDGEHOG, "kind", &kind)) return LN_ERR;
    return (out[0] = ln_feature_map(in[0], (ln_feature_map_kind)kind, in[1])) ? LN_OK : LN_ERR;
}

static int run_attention(ln_tensor *const *in, const double *s, ln_tensor **out) {
    int causal;
    if (!whole(s[0], 0, 1, "causal", &causal)) return LN_ERR;
    double scale = isnan(s[1]) ? 1.0 / sqrt((double)in[0]->shape[in[0]->ndim - 1]) : s[1];
    return (out[0] = ln_attention(in[0], in[1], in[2], causal, scale)) ? LN_OK : LN_ERR;
}

static int run_rmsnorm(ln_tensor *const *in, const double *s, ln_tensor **out) {
    return (out[0] = ln_rmsnorm(in[0], in[1], s[0])) ? LN_OK : LN_ERR;
}

static int run_rmsnorm_gated(ln_tensor *const *in, const double *s, ln_tensor **out) {
    return (out[0] = ln_rmsnorm_gated(in[0], in[1], in[2], s[0])) ? LN_OK : LN_ERR;
}

static int run_softmax(ln_tensor *const *in, const double *s, ln_tensor **out) {
    return (out[0] = ln_softmax(in[0])) ? LN_OK : LN_ERR;
}

#define IN(n) {n, false, true}
#define OPT(n) {n, true, true}
#define INDEX(n) {n, true, false}
#define SCALAR(n, v) {n, v, false}
#define NO_SCALARS {{NULL, 0, false}}

static const cli_op ops[] = {
    {"gla", "gated linear attention, per-key decay g [B, T, H, K]",
     {IN("q"), IN("k"), IN("v"), IN("g"), OPT("h0"), INDEX("cu_seqlens")}, {"o", "ht"},
     {SCALAR("scale", 0), SCALAR("chunk_size", 0)}, run_gla},
    {"simple_gla", "gated linear attention, one decay per head g [B, T, H]",
     {IN("q"), IN("k"), IN("v"), IN("g"), OPT("h0"), INDEX("cu_seqlens")}, {"o", "ht"},
     {SCALAR("scale", 0), SCALAR("chunk_size", 0)}, run_simple_gla},
    {"linear_attention", "linear attention without decay, optionally normalized",
     {IN("q"), IN("k"), IN("v"), OPT("h0"), INDEX("cu_seqlens")}, {"o", "ht"},
     {SCALAR("scale", 0), SCALAR("chunk_size", 0), SCALAR("normalize", 0)}, run_linear},
    {"short_conv", "causal depthwise convolution over tokens",
     {IN("x"), IN("weight"), OPT("bias"), INDEX("cu_seqlens")}, {"y"}, NO_SCALARS, run_short_conv},
    {"feature_map", "linear-attention feature map (kind 0 identity, 1 elu+1, 2 relu, 3 hedgehog)",
     {IN("x"), OPT("weight")}, {"y"}, {{"kind", 0, true}}, run_feature_map},
    {"attention", "softmax attention (plain reference)", {IN("q"), IN("k"), IN("v")}, {"o"},
     {SCALAR("causal", 1), SCALAR("scale", NAN)}, run_attention},
    {"rmsnorm", "RMSNorm over the last dim", {IN("x"), IN("weight")}, {"y"}, {SCALAR("eps", 1e-6)}, run_rmsnorm},
    {"rmsnorm_gated", "RMSNorm over the last dim times silu(gate)", {IN("x"), IN("weight"), IN("gate")}, {"y"},
     {SCALAR("eps", 1e-6)}, run_rmsnorm_gated},
    {"softmax", "softmax over the last dim", {IN("x")}, {"y"}, NO_SCALARS, run_softmax},
};

int cli_op_count(void) { return (int)(sizeof ops / sizeof ops[0]); }
const cli_op *cli_op_at(int i) { return i >= 0 && i < cli_op_count() ? &ops[i] : NULL; }

const cli_op *cli_op_find(const char *name) {
    for (int i = 0; i < cli_op_count(); i++)
        if (!strcmp(ops[i].name, name)) return &ops[i];
    return NULL;
}
