/* linear_attention: no decay (gla with g = 0), optionally normalized as in Katharopoulos et al.:
 *   num_t = scale q_t S_t,   den_t = scale q_t . z_t,   z_t = sum_{s<=t} k_s,   o_t = num_t / (den_t + eps)
 * (flash-linear-attention's normalize_output(q * scale, k, o), eps = LN_LINEAR_ATTN_EPS; z restarts
 * with every sequence or document and every call). The normalized form is recorded as ops that run
 * on both devices: den is itself linear attention of q and k over values of one, without h0 (its
 * state is z), and div_rows divides. The backward of that graph is the normalizer's backward. */
#include "autograd/error.h"
#include "autograd/ops.h"
#include "gla_family.h"

static const ln_op linear_attention_op = {
    .name = "linear_attention",
    .forward = {[LN_CPU] = gla_family_forward_cpu LN_ON_CUDA(gla_family_forward_cuda)},
    .backward = {[LN_CPU] = gla_family_backward_cpu LN_ON_CUDA(gla_family_backward_cuda)},
};

/* ones [B, T, H, 1] on v's device, in v's dtype: the values whose running sum weighted by keys is z */
static ln_tensor *ones_per_head(const ln_tensor *v) {
    ln_tensor *ones = ln_arena_tensor(v->dtype, v->device, 4, (int64_t[]){v->shape[0], v->shape[1], v->shape[2], 1});
    return ones && ln_tensor_fill(ones, 1.0) == LN_OK ? ones : NULL;
}

ln_tensor *ln_linear_attention(ln_tensor *q, ln_tensor *k, ln_tensor *v, bool normalize, const ln_gla_opts *opts,
                               ln_tensor **ht) {
    ln_tensor *num = gla_family_record(&linear_attention_op, GLA_GATE_NONE, q, k, v, NULL, opts, ht);
    if (!num || !normalize) return num; /* num validated the inputs */
    ln_gla_opts den_opts = opts ? *opts : (ln_gla_opts){0};
    den_opts.h0 = NULL; /* h0 / ht carry S, not z */
    den_opts.want_final_state = false;
    ln_tensor *den = gla_family_record(&linear_attention_op, GLA_GATE_NONE, q, k, ones_per_head(v), NULL, &den_opts, NULL);
    ln_tensor *o = ln_div_rows(num, den, LN_LINEAR_ATTN_EPS);
    if (!o && ht) *ht = NULL;
    return o;
}
