/* The chunkwise form of gated linear attention (Yang et al. 2023, "Gated Linear Attention
 * Transformers with Hardware-Efficient Training"; flash-linear-attention's chunk_gla), written
 * as the same phases a GPU kernel runs, one sequence of one head at a time.
 *
 * The sequence is cut into chunks of C tokens (the last may be shorter). Inside chunk c, with
 * G_i = g_0 + .. + g_i the chunk-local cumulative log gate (i = 0 .. n-1) and Gam = G_{n-1}:
 *   S_i   = diag(exp(G_i)) h_c + sum_{j<=i} diag(exp(G_i - G_j)) k_j^T v_j
 *   o_i   = scale (q_i * exp(G_i)) h_c + scale sum_{j<=i} A_ij v_j,
 *   A_ij  = sum_d q_id k_jd exp(G_id - G_jd)          (j <= i: the intra-chunk attention)
 *   h_c+1 = diag(exp(Gam)) h_c + sum_j (k_j * exp(Gam - G_j))^T v_j
 * Every exponent above is a difference "later minus earlier" of a cumulative log decay, so it is
 * <= 0 for g <= 0 and never overflows, however strong the decay; exp(-G) alone never appears.
 *
 * The intra-chunk products go through sub-chunks of BC rows, as the GPU does: between sub-chunks
 * I > J a reference row r splits exp(G_i - G_j) = exp(G_i - G_r) exp(G_r - G_j), both factors
 * <= 1, turning the gated sum into a plain matrix product of gated q and k tiles; diagonal
 * sub-chunks use the pairwise exp(G_i - G_j) directly.
 *
 * Backward, with dh_c the gradient wrt h_c (dh_NC = dht):
 *   dh_c  = diag(exp(Gam)) dh_c+1 + scale sum_i (q_i * exp(G_i))^T do_i
 *   dA_ij = scale do_i . v_j                          (j <= i)
 *   dv_j  = scale sum_{i>=j} A_ij do_i + (k_j * exp(Gam - G_j)) dh_c+1
 *   dq_i  = scale (do_i h_c^T) * exp(G_i) + sum_{j<=i} dA_ij k_j * exp(G_i - G_j)
 *   dk_j  = (v_j dh_c+1^T) * exp(Gam - G_j) + sum_{i>=j} dA_ij q_i * exp(G_i - G_j)
 *   dG_i  = q_i * dq_i - k_i * dk_i  (+ rowsum(dh_c+1 * h_c+1) on the chunk's last row, through Gam)
 *   dg_i  = sum_{i'>=i in the chunk} dG_i'            (G is a cumulative sum of g) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "gla_core.h"

#define BC 16 /* sub-chunk rows */

/* ---- phase 1: chunk-local cumulative gates ---- */
static void chunk_cumsum(int64_t L, int64_t K, int64_t C, const double *g, double *G) {
    for (int64_t c0 = 0; c0 < L; c0 += C)
        for (int64_t d = 0; d < K; d++) {
            double sum = 0;
            for (int64_t t = c0; t < c0 + C && t < L; t++) G[t * K + d] = (sum += g[t * K + d]);
        }
}

/* ---- phase 2: the states entering each chunk, h[0] = h0 .. h[NC] = ht ---- */
static void chunk_states(int64_t L, int64_t K, int64_t V, int64_t C, const double *k, const double *v,
                         const double *G, double *h) {
    const int64_t KV = K * V;
    for (int64_t c0 = 0, c = 0; c0 < L; c0 += C, c++) {
        int64_t n = c0 + C < L ? C : L - c0;
        const double *Gam = G + (c0 + n - 1) * K;
        double *hn = h + (c + 1) * KV;
        for (int64_t d = 0; d < K; d++) {
            double decay = exp(Gam[d]);
            for (int64_t e = 0; e < V; e++) hn[d * V + e] = decay * h[c * KV + d * V + e];
        }
        for (int64_t j = 0; j < n; j++)
            for (int64_t d = 0; d < K; d++) {
                double kg = k[(c0 + j) * K + d] * exp(Gam[d] - G[(c0 + j) * K + d]);
                for (int64_t e = 0; e < V; e++) hn[d * V + e] += kg * v[(c0 + j) * V + e];
            }
    }
}

/* ---- the intra-chunk gated products (n rows of one chunk; a, b, G point at its row 0) ---- */

/* A_ij = sum_d a_id b_jd exp(G_id - G_jd) for j <= i; A is [n, n], the upper part left zero. */
static void intra_scores(int64_t n, int64_t K, const double *a, const double *b, const double *G, double *A) {
    memset(A, 0, (size_t)(n * n) * sizeof *A);
    for (int64_t I = 0; I < n; I += BC) {
        int64_t Ie = I + BC < n ? I + BC : n;
        const double *Gr = G + I * K; /* reference: the first row of sub-chunk I */
        for (int64_t J = 0; J < I; J += BC)
            for (int64_t i = I; i < Ie; i++)
                for (int64_t j = J; j < J + BC; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < K; d++)
                        s += a[i * K + d] * exp(G[i * K + d] - Gr[d]) * b[j * K + d] * exp(Gr[d] - G[j * K + d]);
                    A[i * n + j] = s;
                }
        for (int64_t i = I; i < Ie; i++) /* the diagonal sub-chunk, pair by pair */
            for (int64_t j = I; j <= i; j++) {
                double s = 0;
                for (int64_t d = 0; d < K; d++) s += a[i * K + d] * b[j * K + d] * exp(G[i * K + d] - G[j * K + d]);
                A[i * n + j] = s;
            }
    }
}

/* out_i += sum_{j<=i} W_ij b_j * exp(G_i - G_j)   (dq from dA and k) */
static void intra_rows(int64_t n, int64_t K, const double *W, const double *b, const double *G, double *out,
                       double *acc /* [K] scratch */) {
    for (int64_t I = 0; I < n; I += BC) {
        int64_t Ie = I + BC < n ? I + BC : n;
        const double *Gr = G + I * K;
        for (int64_t i = I; i < Ie; i++) {
            memset(acc, 0, (size_t)K * sizeof *acc);
            for (int64_t j = 0; j < I; j++) /* earlier sub-chunks: b gated to the reference row */
                for (int64_t d = 0; d < K; d++) acc[d] += W[i * n + j] * b[j * K + d] * exp(Gr[d] - G[j * K + d]);
            for (int64_t d = 0; d < K; d++) acc[d] *= exp(G[i * K + d] - Gr[d]);
            for (int64_t j = I; j <= i; j++)
                for (int64_t d = 0; d < K; d++) acc[d] += W[i * n + j] * b[j * K + d] * exp(G[i * K + d] - G[j * K + d]);
            for (int64_t d = 0; d < K; d++) out[i * K + d] += acc[d];
        }
    }
}

/* out_j += sum_{i>=j} W_ij a_i * exp(G_i - G_j)   (dk from dA and q) */
static void intra_cols(int64_t n, int64_t K, const double *W, const double *a, const double *G, double *out,
                       double *acc /* [K] scratch */) {
    for (int64_t J = 0; J < n; J += BC) {
        int64_t Je = J + BC < n ? J + BC : n;
        const double *Gr = G + (Je - 1) * K; /* reference: the last row of sub-chunk J */
        for (int64_t j = J; j < Je; j++) {
            memset(acc, 0, (size_t)K * sizeof *acc);
            for (int64_t i = Je; i < n; i++) /* later sub-chunks: a gated to the reference row */
                for (int64_t d = 0; d < K; d++) acc[d] += W[i * n + j] * a[i * K + d] * exp(G[i * K + d] - Gr[d]);
            for (int64_t d = 0; d < K; d++) acc[d] *= exp(Gr[d] - G[j * K + d]);
            for (int64_t i = j; i < Je; i++)
                for (int64_t d = 0; d < K; d++) acc[d] += W[i * n + j] * a[i * K + d] * exp(G[i * K + d] - G[j * K + d]);
            for (int64_t d = 0; d < K; d++) out[j * K + d] += acc[d];
        }
    }
}

/* ---- phase 3: outputs of one chunk ---- */
static void chunk_output(int64_t n, int64_t K, int64_t V, double scale, const double *q, const double *v,
                         const double *G, const double *hc, const double *A, double *o) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t e = 0; e < V; e++) {
            double s = 0;
            for (int64_t d = 0; d < K; d++) s += q[i * K + d] * exp(G[i * K + d]) * hc[d * V + e];
            for (int64_t j = 0; j <= i; j++) s += A[i * n + j] * v[j * V + e];
            o[i * V + e] = scale * s;
        }
}

int gla_seq_forward_chunked(int64_t L, int64_t K, int64_t V, int64_t C, double scale, const double *q,
                            const double *k, const double *v, const double *g, double *S, double *o) {
    const int64_t KV = K * V, NC = (L + C - 1) / C, cn = C < L ? C : (L > 0 ? L : 1);
    double *G = calloc((size_t)(L * K + 1), sizeof *G), *h = malloc((size_t)((NC + 1) * KV) * sizeof *h);
    double *A = malloc((size_t)(cn * cn) * sizeof *A);
    if (!G || !h || !A) {
        free(G), free(h), free(A);
        return ln_fail("gla: out of host memory for the chunked forward (T %lld, chunk %lld)", (long long)L,
                       (long long)C);
    }
    chunk_cumsum(L, K, C, g, G);
    memcpy(h, S, (size_t)KV * sizeof *h);
    chunk_states(L, K, V, C, k, v, G, h);
    for (int64_t c0 = 0, c = 0; c0 < L; c0 += C, c++) {
        int64_t n = c0 + C < L ? C : L - c0;
        intra_scores(n, K, q + c0 * K, k + c0 * K, G + c0 * K, A);
        chunk_output(n, K, V, scale, q + c0 * K, v + c0 * V, G + c0 * K, h + c * KV, A, o + c0 * V);
    }
    memcpy(S, h + NC * KV, (size_t)KV * sizeof *S);
    free(G), free(h), free(A);
    return LN_OK;
}

/* ---- backward phase 3: dh_c in reverse ---- */
static void chunk_state_grads(int64_t L, int64_t K, int64_t V, int64_t C, double scale, const double *q,
                              const double *dout, const double *G, double *dh) {
    const int64_t KV = K * V, NC = (L + C - 1) / C;
    for (int64_t c = NC - 1; c >= 0; c--) {
        int64_t c0 = c * C, n = c0 + C < L ? C : L - c0;
        const double *Gam = G + (c0 + n - 1) * K;
        double *dc = dh + c * KV;
        for (int64_t d = 0; d < K; d++) {
            double decay = exp(Gam[d]);
            for (int64_t e = 0; e < V; e++) dc[d * V + e] = decay * dh[(c + 1) * KV + d * V + e];
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t d = 0; d < K; d++) {
                double qg = scale * q[(c0 + i) * K + d] * exp(G[(c0 + i) * K + d]);
                for (int64_t e = 0; e < V; e++) dc[d * V + e] += qg * dout[(c0 + i) * V + e];
            }
    }
}

/* ---- backward phase 4: dq, dk, dv, dg of one chunk (pointers at its row 0) ---- */
typedef struct {
    int64_t n, K, V;
    double scale;
    const double *q, *k, *v, *G, *dout, *hc, *hn, *dhn; /* hc = h_c, hn = h_c+1, dhn = dh_c+1 */
    double *A, *dA, *acc, *dq, *dk, *dv, *dg; /* A, dA [n, n] and acc [K]: scratch */
} chunk_bwd;

static void chunk_grads(const chunk_bwd *b) {
    const int64_t n = b->n, K = b->K, V = b->V;
    const double *Gam = b->G + (n - 1) * K;
    intra_scores(n, K, b->q, b->k, b->G, b->A);
    memset(b->dA, 0, (size_t)(n * n) * sizeof *b->dA);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t e = 0; e < V; e++) s += b->dout[i * V + e] * b->v[j * V + e];
            b->dA[i * n + j] = b->scale * s;
        }
    for (int64_t j = 0; j < n; j++) {
        for (int64_t e = 0; e < V; e++) { /* dv: intra through A, inter through h_c+1 */
            double s = 0;
            for (int64_t i = j; i < n; i++) s += b->A[i * n + j] * b->dout[i * V + e];
            s *= b->scale;
            for (int64_t d = 0; d < K; d++) s += b->k[j * K + d] * exp(Gam[d] - b->G[j * K + d]) * b->dhn[d * V + e];
            b->dv[j * V + e] = s;
        }
        for (int64_t d = 0; d < K; d++) { /* the inter-chunk parts of dq and dk */
            double sq = 0, sk = 0;
            for (int64_t e = 0; e < V; e++) {
                sq += b->dout[j * V + e] * b->hc[d * V + e];
                sk += b->v[j * V + e] * b->dhn[d * V + e];
            }
            b->dq[j * K + d] = b->scale * sq * exp(b->G[j * K + d]);
            b->dk[j * K + d] = sk * exp(Gam[d] - b->G[j * K + d]);
        }
    }
    intra_rows(n, K, b->dA, b->k, b->G, b->dq, b->acc);
    intra_cols(n, K, b->dA, b->q, b->G, b->dk, b->acc);
    /* dG, then its reverse cumulative sum within the chunk is dg */
    for (int64_t d = 0; d < K; d++) {
        double sum = 0;
        for (int64_t e = 0; e < V; e++) sum += b->dhn[d * V + e] * b->hn[d * V + e];
        for (int64_t i = n - 1; i >= 0; i--) {
            sum += b->q[i * K + d] * b->dq[i * K + d] - b->k[i * K + d] * b->dk[i * K + d];
            b->dg[i * K + d] = sum;
        }
    }
}

int gla_seq_backward_chunked(int64_t L, int64_t K, int64_t V, int64_t C, double scale, const double *q,
                             const double *k, const double *v, const double *g, const double *h0,
                             const double *dout, double *dS, double *dq, double *dk, double *dv, double *dg) {
    const int64_t KV = K * V, NC = (L + C - 1) / C, cn = C < L ? C : (L > 0 ? L : 1);
    double *G = calloc((size_t)(L * K + 1), sizeof *G);
    double *h = malloc((size_t)((NC + 1) * KV) * sizeof *h), *dh = malloc((size_t)((NC + 1) * KV) * sizeof *dh);
    double *A = malloc((size_t)(cn * cn) * sizeof *A), *dA = malloc((size_t)(cn * cn) * sizeof *dA);
    double *acc = malloc((size_t)K * sizeof *acc);
    if (!G || !h || !dh || !A || !dA || !acc) {
        free(G), free(h), free(dh), free(A), free(dA), free(acc);
        return ln_fail("gla: out of host memory for the chunked backward (T %lld, chunk %lld)", (long long)L,
                       (long long)C);
    }
    chunk_cumsum(L, K, C, g, G);
    memcpy(h, h0, (size_t)KV * sizeof *h);
    chunk_states(L, K, V, C, k, v, G, h);
    memcpy(dh + NC * KV, dS, (size_t)KV * sizeof *dh);
    chunk_state_grads(L, K, V, C, scale, q, dout, G, dh);
    for (int64_t c0 = 0, c = 0; c0 < L; c0 += C, c++) {
        chunk_bwd b = {.n = c0 + C < L ? C : L - c0, .K = K, .V = V, .scale = scale,
                       .q = q + c0 * K, .k = k + c0 * K, .v = v + c0 * V, .G = G + c0 * K,
                       .dout = dout + c0 * V, .hc = h + c * KV, .hn = h + (c + 1) * KV, .dhn = dh + (c + 1) * KV,
                       .A = A, .dA = dA, .acc = acc, .dq = dq + c0 * K, .dk = dk + c0 * K, .dv = dv + c0 * V, .dg = dg + c0 * K};
        chunk_grads(&b);
    }
    memcpy(dS, dh, (size_t)KV * sizeof *dS);
    free(G), free(h), free(dh), free(A), free(dA), free(acc);
    return LN_OK;
}
