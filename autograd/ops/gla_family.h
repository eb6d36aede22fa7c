/* What gla, simple_gla and linear_attention share: input validation, the node layout, reading
 * a node's tensors into the double arrays of gla_core.h, and the plain (unnormalized) kernels.
 *
 * Node layout: in = q, k, v, then g, h0, cu_seqlens when present; out = o, then ht when wanted.
 *   iarg: 0 gate kind, 1 index of g (-1 none), 2 index of h0 (-1), 3 index of cu_seqlens (-1),
 *         4 chunk size (0 = recurrence), 5 ht wanted, 6 normalize (linear_attention)
 *   farg: 0 scale (resolved: never 0)
 * Nothing is saved through the hook: the inputs are the node's inputs and the backward
 * recomputes the states, as the GPU backward does. */
#ifndef LN_GLA_FAMILY_H
#define LN_GLA_FAMILY_H

#include "../ops_linear.h"
#include "gla_core.h"

typedef enum { GLA_GATE_PER_KEY, GLA_GATE_PER_HEAD, GLA_GATE_NONE } gla_gate;

/* Validates (messages prefixed with op->name), records the node and runs its forward. */
ln_tensor *gla_family_record(const ln_op *op, gla_gate gate, ln_tensor *q, ln_tensor *k, ln_tensor *v,
                             ln_tensor *g, const ln_gla_opts *opts, bool normalize, ln_tensor **ht);

/* A node's inputs as doubles; g is expanded to [tokens, H, K] (log decay 0 for no gate). */
typedef struct {
    gla_problem p;
    int64_t tokens;
    int64_t *starts;
    double *q, *k, *v, *g, *h0; /* h0 NULL when absent */
} gla_io;
int gla_io_read(ln_node *n, gla_io *io);
void gla_io_free(gla_io *io);

/* Writes ht (when the node has it). */
int gla_io_write_ht(ln_node *n, const double *ht);
/* The gradient reaching ht, or NULL when ht is absent or unused (caller frees). */
double *gla_io_read_dht(ln_node *n, bool *failed);
/* Accumulates dq, dk, dv, dg ([tokens, H, K], reduced over K for a per-head gate) and dh0 into
 * the inputs that require gradients. */
int gla_io_accum_grads(ln_node *n, const gla_io *io, const double *dq, const double *dk, const double *dv,
                       const double *dg, const double *dh0);

int gla_family_forward_cpu(ln_node *n);
int gla_family_backward_cpu(ln_node *n);

#ifdef LINNET_CUDA
/* gla_fwd.cu, gla_bwd.cu: the chunkwise kernels (the normalized linear_attention fails there). */
int gla_family_forward_cuda(ln_node *n);
int gla_family_backward_cuda(ln_node *n);
#endif

#endif
