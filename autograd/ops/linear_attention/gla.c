/* The linear attention family (autograd/ops/linear_attention/): gla, simple_gla and
 * linear_attention over one state recurrence, plus the feature maps and the short convolution
 * that the layers put before it.
 *   gla.c, simple_gla.c, linear_attention.c   the op records; gla_family.c/.h what they share
 *   CPU: gla_recurrent.c (the reference), gla_chunked.c (the chunkwise form), gla_core.c/.h (the
 *     driver over sequences and heads)
 *   CUDA, tensor cores (bf16, the usual head sizes): gla_fwd.cu (forward), gla_bwd.cu (backward),
 *     gla_state.cu (chunk states), gla_mma.cuh; gla_cuda.cuh what both CUDA paths share
 *   CUDA, generic (f32, other head sizes; the entry points): gla_fwd_generic.cu,
 *     gla_bwd_generic.cu, gla_scan_generic.cu
 *   feature_map.c/.cu, short_conv.c/.cu
 *
 * gla: gated linear attention with a per-key-channel decay (Yang et al. 2023),
 *   S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   o_t = scale q_t S_t.
 * The CPU kernels are the shared ones of the family (gla_family.c): the recurrence when
 * opts->chunk_size is 0, the chunkwise form otherwise (gla_recurrent.c, gla_chunked.c). */
#include "gla_family.h"

static const ln_op gla_op = {
    .name = "gla",
    .forward = {[LN_CPU] = gla_family_forward_cpu LN_ON_CUDA(gla_family_forward_cuda)},
    .backward = {[LN_CPU] = gla_family_backward_cpu LN_ON_CUDA(gla_family_backward_cuda)},
};

ln_tensor *ln_gla(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *g, const ln_gla_opts *opts, ln_tensor **ht) {
    return gla_family_record(&gla_op, GLA_GATE_PER_KEY, q, k, v, g, opts, ht);
}
