/* The reference: the gated recurrence one step at a time, and its exact reverse-mode.
 *
 * Forward, per step t (a = exp(g_t)):   S_t = diag(a) S_{t-1} + k_t^T v_t,   o_t = scale q_t S_t.
 * Backward sweeps t = L-1 .. 0 carrying dS (the gradient wrt S_t, seeded with dht):
 *   dS   += scale q_t^T do_t                (o_t reads S_t)
 *   dq_t  = scale S_t do_t^T
 *   dk_t  = dS v_t^T,  dv_t = k_t dS
 *   dg_t  = a * rowsum(dS * S_{t-1})        (d/dg of exp(g) S_{t-1})
 *   dS    = diag(a) dS                      (now the gradient wrt S_{t-1})
 * and what is left at the end is dh0. The backward needs every S_t; rather than keep L states
 * it keeps one per SEG steps and recomputes a segment's states when the sweep reaches it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "gla_core.h"

#define SEG 64

static void step(int64_t K, int64_t V, const double *k, const double *v, const double *g, double *S) {
    for (int64_t i = 0; i < K; i++) {
        double a = exp(g[i]);
        for (int64_t j = 0; j < V; j++) S[i * V + j] = a * S[i * V + j] + k[i] * v[j];
    }
}

void gla_seq_forward_recurrent(int64_t L, int64_t K, int64_t V, double scale, const double *q, const double *k,
                               const double *v, const double *g, double *S, double *o) {
    for (int64_t t = 0; t < L; t++) {
        step(K, V, k + t * K, v + t * V, g + t * K, S);
        double *ot = o + t * V;
        for (int64_t j = 0; j < V; j++) {
            double s = 0;
            for (int64_t i = 0; i < K; i++) s += q[t * K + i] * S[i * V + j];
            ot[j] = scale * s;
        }
    }
}

int gla_seq_backward_recurrent(int64_t L, int64_t K, int64_t V, double scale, const double *q, const double *k,
                               const double *v, const double *g, const double *h0, const double *dout, double *dS,
                               double *dq, double *dk, double *dv, double *dg) {
    const int64_t KV = K * V, nseg = (L + SEG - 1) / SEG;
    double *marks = malloc((size_t)((nseg > 0 ? nseg : 1) * KV) * sizeof *marks); /* S entering each segment */
    double *states = malloc((size_t)((SEG + 1) * KV) * sizeof *states);             /* one segment's states */
    if (!marks || !states) {
        free(marks);
        free(states);
        return ln_fail("gla: out of host memory for the recurrent backward (K %lld, V %lld)", (long long)K,
                       (long long)V);
    }
    memcpy(states, h0, (size_t)KV * sizeof *states);
    for (int64_t t = 0; t < L; t++) {
        if (t % SEG == 0) memcpy(marks + (t / SEG) * KV, states, (size_t)KV * sizeof *marks);
        step(K, V, k + t * K, v + t * V, g + t * K, states);
    }
    for (int64_t seg = nseg - 1; seg >= 0; seg--) {
        int64_t t0 = seg * SEG, t1 = t0 + SEG < L ? t0 + SEG : L;
        memcpy(states, marks + seg * KV, (size_t)KV * sizeof *states);
        for (int64_t t = t0; t < t1; t++) { /* states[t - t0 + 1] = S_t */
            memcpy(states + (t - t0 + 1) * KV, states + (t - t0) * KV, (size_t)KV * sizeof *states);
            step(K, V, k + t * K, v + t * V, g + t * K, states + (t - t0 + 1) * KV);
        }
        for (int64_t t = t1 - 1; t >= t0; t--) {
            const double *St = states + (t - t0 + 1) * KV, *Sp = states + (t - t0) * KV;
            const double *qt = q + t * K, *kt = k + t * K, *vt = v + t * V, *gt = g + t * K, *dot = dout + t * V;
            for (int64_t i = 0; i < K; i++) {
                double a = exp(gt[i]), dqi = 0, dki = 0, dgi = 0;
                for (int64_t j = 0; j < V; j++) {
                    double *d = dS + i * V + j;
                    *d += scale * qt[i] * dot[j];
                    dqi += St[i * V + j] * dot[j];
                    dki += *d * vt[j];
                    dgi += *d * Sp[i * V + j];
                }
                dq[t * K + i] = scale * dqi;
                dk[t * K + i] = dki;
                dg[t * K + i] = a * dgi;
            }
            for (int64_t j = 0; j < V; j++) {
                double s = 0;
                for (int64_t i = 0; i < K; i++) s += kt[i] * dS[i * V + j];
                dv[t * V + j] = s;
            }
            for (int64_t i = 0; i < K; i++) {
                double a = exp(gt[i]);
                for (int64_t j = 0; j < V; j++) dS[i * V + j] *= a;
            }
        }
    }
    free(marks);
    free(states);
    return LN_OK;
}
