/* What gla, simple_gla and linear_attention share: input validation, the node layout, and the
 * kernels (CPU: gla_core.h's double arrays; CUDA: the entry points in gla_fwd_generic.cu and
 * gla_bwd_generic.cu, which hand the tensor-core shapes to gla_fwd.cu and gla_bwd.cu).
 *
 * Node layout: in = q, k, v, then g, h0, cu_seqlens when present; out = o, then ht when wanted.
 *   iarg: 0 gate kind, 1 index of g (-1 none), 2 index of h0 (-1), 3 index of cu_seqlens (-1),
 *         4 chunk size (0 = recurrence), 5 ht wanted
 *   farg: 0 scale (resolved: never 0)
 * Nothing is saved through the hook: the inputs are the node's inputs and the backward
 * recomputes the states, as the GPU backward does. */
#ifndef LN_GLA_FAMILY_H
#define LN_GLA_FAMILY_H

#include "autograd/ops_linear.h"
#include "gla_core.h"

typedef enum { GLA_GATE_PER_KEY, GLA_GATE_PER_HEAD, GLA_GATE_NONE } gla_gate;

/* Validates (messages prefixed with op->name), records the node and runs its forward. */
ln_tensor *gla_family_record(const ln_op *op, gla_gate gate, ln_tensor *q, ln_tensor *k, ln_tensor *v,
                             ln_tensor *g, const ln_gla_opts *opts, ln_tensor **ht);

/* The CPU kernels: the recurrence or chunkwise form of gla_core.h on the node's tensors in double. */
int gla_family_forward_cpu(ln_node *n);
int gla_family_backward_cpu(ln_node *n);

#ifdef LINNET_CUDA
/* gla_fwd_generic.cu, gla_bwd_generic.cu: the chunkwise kernels' entry points (both paths). */
int gla_family_forward_cuda(ln_node *n);
int gla_family_backward_cuda(ln_node *n);
#endif

#endif
