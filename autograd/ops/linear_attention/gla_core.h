/* The shared numerics of the gated linear attention family (gla, simple_gla, linear_attention):
 * double-precision forward and backward of
 *   S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   o_t = scale * q_t S_t
 * over a set of independent sequences (batch entries or packed documents) and heads.
 *
 * Two forms, chosen by `chunk`: 0 runs the plain recurrence (the reference); C > 0 runs the
 * chunkwise form (gla_chunked.c), the blueprint of the CUDA kernels. Both take the same arrays
 * and must agree to rounding. Internal to autograd/ops: the ops convert tensors to and from
 * these arrays. */
#ifndef LN_GLA_CORE_H
#define LN_GLA_CORE_H

#include <stdbool.h>
#include <stdint.h>

/* Layouts (row-major, as the ops' tensors): q, k, g [tokens, H, K]; v, o [tokens, H, V];
 * states h0, ht [n_seq, H, K, V]. Sequence n covers tokens [starts[n], starts[n + 1]). */
typedef struct {
    int64_t n_seq, H, K, V;
    const int64_t *starts; /* n_seq + 1 token offsets */
    double scale;
    int64_t chunk;         /* 0: recurrence; > 0: chunked with this chunk length */
} gla_problem;

/* h0 may be NULL (zero state); ht may be NULL (not wanted). */
int gla_forward(const gla_problem *p, const double *q, const double *k, const double *v, const double *g,
                const double *h0, double *o, double *ht);

/* Gradients of sum(dout * o) + sum(dht * ht): written (not accumulated) into dq, dk, dv, dg and,
 * when non-NULL, dh0. dht may be NULL (ht unused downstream). */
int gla_backward(const gla_problem *p, const double *q, const double *k, const double *v, const double *g,
                 const double *h0, const double *dout, const double *dht, double *dq, double *dk, double *dv,
                 double *dg, double *dh0);

/* ---- one sequence of one head, contiguous: q, k, g [L, K]; v, o [L, V]; S [K, V] ----
 * Forward: S holds h0 on entry (zeros for none) and ht on return.
 * Backward: dS holds dht on entry (zeros for none) and dh0 on return; h0 is the entry state. */
void gla_seq_forward_recurrent(int64_t L, int64_t K, int64_t V, double scale, const double *q, const double *k,
                               const double *v, const double *g, double *S, double *o);
int gla_seq_backward_recurrent(int64_t L, int64_t K, int64_t V, double scale, const double *q, const double *k,
                               const double *v, const double *g, const double *h0, const double *dout, double *dS,
                               double *dq, double *dk, double *dv, double *dg);
int gla_seq_forward_chunked(int64_t L, int64_t K, int64_t V, int64_t C, double scale, const double *q,
                            const double *k, const double *v, const double *g, double *S, double *o);
int gla_seq_backward_chunked(int64_t L, int64_t K, int64_t V, int64_t C, double scale, const double *q,
                             const double *k, const double *v, const double *g, const double *h0,
                             const double *dout, double *dS, double *dq, double *dk, double *dv, double *dg);

#endif
