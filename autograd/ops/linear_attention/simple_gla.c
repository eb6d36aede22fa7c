/* simple_gla: one scalar log decay per head and step, g [B, T, H] (RetNet / Lightning style).
 * Runs gla's numerics with g repeated over the key channels; dg is the sum over them. */
#include "gla_family.h"

static const ln_op simple_gla_op = {
    .name = "simple_gla",
    .forward = {[LN_CPU] = gla_family_forward_cpu LN_ON_CUDA(gla_family_forward_cuda)},
    .backward = {[LN_CPU] = gla_family_backward_cpu LN_ON_CUDA(gla_family_backward_cuda)},
};

ln_tensor *ln_simple_gla(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *g, const ln_gla_opts *opts,
                         ln_tensor **ht) {
    return gla_family_record(&simple_gla_op, GLA_GATE_PER_HEAD, q, k, v, g, opts, ht);
}
