// What the CUDA kernels of the gated linear attention family share (gla_*_generic.cu, and the
// tensor-core path through gla_mma.cuh): the chunk plan, tile loads into shared memory, the column
// scan of the gates, the block-wide tile product (mma.sync m16n8k16 bf16 -> fp32 for bf16 storage,
// fp32 FMA for f32 storage: the f32 path keeps fp32 accuracy) and the intra-chunk gated products.
//
// The decomposition is gla_chunked.c's (chunks of GLA_C = 64 tokens):
//   scan   (sequential over chunks, parallel over 32x32 tiles of the [K, V] state): the state
//          entering every chunk, h_c, stored once; the same kernel run in reverse gives dh_c+1.
//   fwd    (one block per chunk and head): o = scale ((q * e^G) h_c + A v).
//   bwd    (one block per chunk and head): dv, dq, dk, dg from h_c and dh_c+1.
// Every exponent is "later minus earlier" of a chunk-local cumulative gate (<= 0), as in the CPU
// blueprint. Between 16-row sub-chunks I > J the gate factor splits into three factors <= 1:
//   e^(G_i - G_j) = e^(G_i - G_f(I)) e^(G_f(I) - G_l(J)) e^(G_l(J) - G_j)
// (f = first row of I, l = last row of J), so gated q, gated k and a [6, K] table of middles
// serve every product; diagonal sub-chunks take the pairwise exponent.
#ifndef LN_GLA_CUDA_CUH
#define LN_GLA_CUDA_CUH

#include <stdint.h>

#include "autograd/cuda/cuda_check.cuh"

extern "C" {
#include "autograd/memory.h"
#include "gla_family.h"
}

#define GLA_C 64   // chunk rows
#define GLA_BC 16  // sub-chunk rows
#define GLA_MAXD 128

// ---- the plan of one call: sequences and chunks, on the host and the device ----
struct gla_plan {
    int n_seq, H, K, V, KP, VP, n_chunks;
    int gate;            // gla_gate
    float scale;
    // uniform: n_seq sequences of seq_T tokens each, sequence s from token s * seq_T, and no
    // tables (no copy to the device). Otherwise (packed documents, cu_seqlens) device tables in
    // one allocation: seq_tok0[n_seq], seq_len[n_seq], seq_c0[n_seq], chunk_tok0[n_chunks],
    // chunk_len[n_chunks].
    bool uniform;
    int seq_T;
    int *dev;
    const int *seq_tok0, *seq_len, *seq_c0, *chunk_tok0, *chunk_len;
};

// chunk c: its first token and its length
__device__ __forceinline__ void gla_chunk_at(const gla_plan &p, int c, long long &tok0, int &n) {
    if (p.uniform) {
        const int per = (p.seq_T + GLA_C - 1) / GLA_C, j = c % per;
        tok0 = (long long)(c / per) * p.seq_T + (long long)j * GLA_C;
        n = min(GLA_C, p.seq_T - j * GLA_C);
    } else {
        tok0 = p.chunk_tok0[c];
        n = p.chunk_len[c];
    }
}

// sequence s: its first token, its length and its first chunk
__device__ __forceinline__ void gla_seq_at(const gla_plan &p, int s, long long &tok0, int &len, int &c0) {
    if (p.uniform) {
        tok0 = (long long)s * p.seq_T;
        len = p.seq_T;
        c0 = s * ((p.seq_T + GLA_C - 1) / GLA_C);
    } else {
        tok0 = p.seq_tok0[s];
        len = p.seq_len[s];
        c0 = p.seq_c0[s];
    }
}

// Builds the plan for node n (with cu_seqlens: reads it to the host and copies tables to the device);
// frees with gla_plan_free.
int gla_plan_make(ln_node *n, gla_plan *p);
void gla_plan_free(gla_plan *p);

// Where a state comes from or goes to: absent, or an f32 / bf16 [n_seq, H, K, V] tensor.
enum { GLA_ST_NONE = 0, GLA_ST_F32 = 1, GLA_ST_BF16 = 2 };
int gla_state_kind(const ln_tensor *t); // GLA_ST_NONE for NULL; -1 (message set) for other dtypes

// The state scan. Forward (rev false): x = k, y = v; S starts at init (h0), and before chunk c
// S = h_c is stored at states[c]; fin gets ht. Reverse: x = q, y = do; S starts at init (dht),
// and before chunk c (walking back) S = dh_c+1 is stored at states[c]; fin gets dh0 (added to
// it when fin_accum). states: [n_chunks, H, K, V] of the storage dtype dt.
int gla_scan(const gla_plan *p, ln_dtype dt, bool rev, const void *x, const void *y, const void *g, void *states,
             const void *init, int init_kind, void *fin, int fin_kind, bool fin_accum);

// ---- element access ----
__device__ __forceinline__ float gla_ld(const float *p, long long i) { return p[i]; }
__device__ __forceinline__ float gla_ld(const __nv_bfloat16 *p, long long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void gla_st(float *p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void gla_st(__nv_bfloat16 *p, long long i, float v) { p[i] = __float2bfloat16(v); }

template <typename T> struct gla_is_bf16 { static constexpr bool value = false; };
template <> struct gla_is_bf16<__nv_bfloat16> { static constexpr bool value = true; };

// exp of a gate difference: accurate for the f32 path, the fast unit for bf16
template <bool FAST> __device__ __forceinline__ float gla_exp(float x) { return FAST ? __expf(x) : expf(x); }

// ---- the block-wide tile product ----
// C[m][n] = sum_k a(m, k) b(k, n) for m < M, n < N, k < KD; epi(m, n, c) receives every element
// once. M a multiple of 16, N of 8 * NT, KD of 16 (the callers pad with zeros). All threads of the
// block call it. MMA: bf16 operands (rounded from a() and b()), fp32 accumulation. b(k, n, m0)
// also gets the first row of the 16-row tile being computed; gla_gemm_if skips the 16 x 8NT
// output tiles (m0, n0) where want(m0, n0) is false (their epilogue never runs).
template <bool MMA, int NT, class FA, class FB, class EPI, class WANT>
__device__ __forceinline__ void gla_gemm_if(int M, int N, int KD, FA a, FB b, EPI epi, WANT want) {
    if constexpr (MMA) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
        const int gid = lane >> 2, tig = lane & 3;
        const int ngroups = N / (8 * NT), tasks = (M / 16) * ngroups;
        for (int task = warp; task < tasks; task += nw) {
            const int m0 = (task / ngroups) * 16, n0 = (task % ngroups) * 8 * NT;
            if (!want(m0, n0)) continue;
            float acc[NT][4];
#pragma unroll
            for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
            for (int k0 = 0; k0 < KD; k0 += 16) {
                uint32_t ra[4];
                {
                    const int r0 = m0 + gid, c0 = k0 + 2 * tig;
                    __nv_bfloat162 x0 = __floats2bfloat162_rn(a(r0, c0), a(r0, c0 + 1));
                    __nv_bfloat162 x1 = __floats2bfloat162_rn(a(r0 + 8, c0), a(r0 + 8, c0 + 1));
                    __nv_bfloat162 x2 = __floats2bfloat162_rn(a(r0, c0 + 8), a(r0, c0 + 9));
                    __nv_bfloat162 x3 = __floats2bfloat162_rn(a(r0 + 8, c0 + 8), a(r0 + 8, c0 + 9));
                    ra[0] = *(uint32_t *)&x0;
                    ra[1] = *(uint32_t *)&x1;
                    ra[2] = *(uint32_t *)&x2;
                    ra[3] = *(uint32_t *)&x3;
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const int nn = n0 + t * 8 + gid, kk = k0 + 2 * tig;
                    __nv_bfloat162 y0 = __floats2bfloat162_rn(b(kk, nn, m0), b(kk + 1, nn, m0));
                    __nv_bfloat162 y1 = __floats2bfloat162_rn(b(kk + 8, nn, m0), b(kk + 9, nn, m0));
                    uint32_t rb0 = *(uint32_t *)&y0, rb1 = *(uint32_t *)&y1;
                    asm volatile(
                        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                        "{%8,%9}, {%0,%1,%2,%3};\n"
                        : "+f"(acc[t][0]), "+f"(acc[t][1]), "+f"(acc[t][2]), "+f"(acc[t][3])
                        : "r"(ra[0]), "r"(ra[1]), "r"(ra[2]), "r"(ra[3]), "r"(rb0), "r"(rb1));
                }
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int r = m0 + gid, c = n0 + t * 8 + 2 * tig;
                epi(r, c, acc[t][0]);
                epi(r, c + 1, acc[t][1]);
                epi(r + 8, c, acc[t][2]);
                epi(r + 8, c + 1, acc[t][3]);
            }
        }
    } else {
        // fp32: 2x2 outputs per thread per pass
        const int MN4 = (M / 2) * (N / 2);
        for (int idx = threadIdx.x; idx < MN4; idx += blockDim.x) {
            const int m = (idx / (N / 2)) * 2, nn = (idx % (N / 2)) * 2;
            if (!want(m & ~15, nn & ~(8 * NT - 1))) continue;
            float c00 = 0.f, c01 = 0.f, c10 = 0.f, c11 = 0.f;
            for (int k = 0; k < KD; k++) {
                float a0 = a(m, k), a1 = a(m + 1, k), b0 = b(k, nn, m), b1 = b(k, nn + 1, m);
                c00 = fmaf(a0, b0, c00);
                c01 = fmaf(a0, b1, c01);
                c10 = fmaf(a1, b0, c10);
                c11 = fmaf(a1, b1, c11);
            }
            epi(m, nn, c00);
            epi(m, nn + 1, c01);
            epi(m + 1, nn, c10);
            epi(m + 1, nn + 1, c11);
        }
    }
}

template <bool MMA, int NT, class FA, class FB, class EPI>
__device__ __forceinline__ void gla_gemm(int M, int N, int KD, FA a, FB b, EPI epi) {
    gla_gemm_if<MMA, NT>(M, N, KD, a, b, epi, [](int, int) { return true; });
}

// ---- loads ----
// dst[i * ld + d] = src row i (rows of `stride` elements), for i < GLA_C, d < cols_p; zero beyond
// n rows or `cols` columns.
template <typename S, typename D>
__device__ __forceinline__ void gla_load_tile(D *dst, int ld, const S *src, long long stride, int n, int cols,
                                              int cols_p) {
    for (int idx = threadIdx.x; idx < GLA_C * cols_p; idx += blockDim.x) {
        const int i = idx / cols_p, d = idx % cols_p;
        float x = (i < n && d < cols) ? gla_ld(src, (long long)i * stride + d) : 0.f;
        gla_st(dst, (long long)i * ld + d, x);
    }
}

// G[i][d] (fp32, ld) = chunk-local cumulative gate: per key (g [tokens, H, K]), per head
// (g [tokens, H], repeated over d) or none (zeros). Rows >= n repeat row n - 1 (g read as 0
// there). scratch: blockDim.x (>= 64) floats. Ends with a barrier.
template <typename T>
__device__ void gla_load_gates(float *G, int ld, const T *g, int gate, long long tok0, int H, int h, int K, int KP,
                               int n, float *scratch) {
    if (gate == GLA_GATE_NONE) {
        for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) G[(idx / KP) * ld + idx % KP] = 0.f;
        __syncthreads();
        return;
    }
    if (gate == GLA_GATE_PER_HEAD) {
        if (threadIdx.x < 32) { // one warp scans the 64 scalars, 2 per lane
            const int l = threadIdx.x;
            float x0 = 2 * l < n ? gla_ld(g, (tok0 + 2 * l) * H + h) : 0.f;
            float x1 = 2 * l + 1 < n ? gla_ld(g, (tok0 + 2 * l + 1) * H + h) : 0.f;
            float s = x0 + x1, incl = s;
            for (int o = 1; o < 32; o <<= 1) {
                float y = __shfl_up_sync(0xffffffffu, incl, o);
                if (l >= o) incl += y;
            }
            scratch[2 * l] = incl - s + x0;
            scratch[2 * l + 1] = incl;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
            const int i = idx / KP;
            G[i * ld + idx % KP] = scratch[i];
        }
        __syncthreads();
        return;
    }
    // per key: each column cut into `segs` segments of rows, one thread per segment
    int segs = blockDim.x / KP;
    segs = segs < 1 ? 1 : (segs > 16 ? 16 : segs);
    const int seg_len = GLA_C / segs;
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
        const int i = idx / KP, d = idx % KP;
        G[i * ld + d] = (i < n && d < K) ? gla_ld(g, ((tok0 + i) * H + h) * (long long)K + d) : 0.f;
    }
    __syncthreads();
    for (int w = threadIdx.x; w < KP * segs; w += blockDim.x) {
        const int d = w % KP, s = w / KP;
        float run = 0.f;
        for (int i = s * seg_len; i < (s + 1) * seg_len; i++) G[i * ld + d] = (run += G[i * ld + d]);
        if (s < segs - 1) scratch[s * KP + d] = run; // (segs - 1) * KP <= blockDim.x
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
        const int i = idx / KP, d = idx % KP, s = i / seg_len;
        float off = 0.f;
        for (int t = 0; t < s; t++) off += scratch[t * KP + d];
        G[i * ld + d] += off;
    }
    __syncthreads();
}

// ---- the chunk tile in shared memory and the intra-chunk gated products ----
// q, k (and v, do) hold the chunk's rows in storage precision (zero beyond n rows / K cols);
// G, qW, kW are fp32 [GLA_C, ldf]; A fp32 [GLA_C, lda]; mid fp32 [6, KP].
template <typename T> struct gla_tile {
    T *q, *k;
    float *G, *qW, *kW, *A, *mid;
    int ldt, ldf, lda, KP;
};

__device__ __forceinline__ int gla_pair(int I, int J) { return I * (I - 1) / 2 + J; } // J < I

// qW_i = q_i e^(G_i - G_f(I)), kW_j = k_j e^(G_l(J) - G_j), mid_IJ = e^(G_f(I) - G_l(J)).
template <bool FAST, typename T> __device__ void gla_gate_prep(const gla_tile<T> &s) {
    const int KP = s.KP;
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
        const int i = idx / KP, d = idx % KP, f = i & ~(GLA_BC - 1), l = f + GLA_BC - 1;
        const float Gi = s.G[i * s.ldf + d];
        s.qW[i * s.ldf + d] = gla_ld(s.q, (long long)i * s.ldt + d) * gla_exp<FAST>(Gi - s.G[f * s.ldf + d]);
        s.kW[i * s.ldf + d] = gla_ld(s.k, (long long)i * s.ldt + d) * gla_exp<FAST>(s.G[l * s.ldf + d] - Gi);
    }
    for (int idx = threadIdx.x; idx < 6 * KP; idx += blockDim.x) {
        const int p = idx / KP, d = idx % KP;
        const int I = p == 0 ? 1 : (p < 3 ? 2 : 3), J = p - gla_pair(I, 0);
        s.mid[p * KP + d] = gla_exp<FAST>(s.G[(I * GLA_BC) * s.ldf + d] - s.G[(J * GLA_BC + GLA_BC - 1) * s.ldf + d]);
    }
}

// A_ij = sum_d q_id k_jd e^(G_id - G_jd) for j <= i, 0 above. After gla_gate_prep and a barrier;
// ends with a barrier.
template <bool MMA, bool FAST, typename T> __device__ void gla_scores(const gla_tile<T> &s) {
    const int KP = s.KP;
    gla_gemm_if<MMA, 2>(
        GLA_C, GLA_C, KP, [&](int m, int k) { return s.qW[m * s.ldf + k]; },
        [&](int k, int n, int m0) {
            const int I = m0 / GLA_BC, J = n / GLA_BC;
            return J < I ? s.kW[n * s.ldf + k] * s.mid[gla_pair(I, J) * KP + k] : 0.f;
        },
        [&](int m, int n, float c) { s.A[m * s.lda + n] = c; }, [](int m0, int n0) { return n0 < m0; });
    for (int idx = threadIdx.x; idx < GLA_C * GLA_C; idx += blockDim.x) {
        const int i = idx / GLA_C, j = idx % GLA_C;
        if (j / GLA_BC < i / GLA_BC) continue;
        float acc = 0.f;
        if (j <= i)
            for (int d = 0; d < KP; d++)
                acc += gla_ld(s.q, (long long)i * s.ldt + d) * gla_ld(s.k, (long long)j * s.ldt + d) *
                       gla_exp<FAST>(s.G[i * s.ldf + d] - s.G[j * s.ldf + d]);
        s.A[i * s.lda + j] = acc;
    }
    __syncthreads();
}

// out_i = sum_{j<=i} W_ij k_j * e^(G_i - G_j) (W = s.A), delivered as epi(i, d, value) in two
// passes (earlier sub-chunks, then the diagonal one) with a barrier between and after.
template <bool MMA, bool FAST, typename T, class EPI> __device__ void gla_intra_rows(const gla_tile<T> &s, EPI epi) {
    const int KP = s.KP;
    gla_gemm_if<MMA, 4>(
        GLA_C, KP, GLA_C, [&](int m, int k) { return k / GLA_BC < m / GLA_BC ? s.A[m * s.lda + k] : 0.f; },
        [&](int k, int n, int m0) {
            const int I = m0 / GLA_BC, J = k / GLA_BC;
            return J < I ? s.kW[k * s.ldf + n] * s.mid[gla_pair(I, J) * KP + n] : 0.f;
        },
        [&](int m, int n, float c) {
            epi(m, n, c * gla_exp<FAST>(s.G[m * s.ldf + n] - s.G[(m & ~(GLA_BC - 1)) * s.ldf + n]));
        },
        [](int m0, int n0) { return m0 >= GLA_BC; });
    __syncthreads();
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
        const int i = idx / KP, d = idx % KP;
        const float Gi = s.G[i * s.ldf + d];
        float acc = 0.f;
        for (int j = i & ~(GLA_BC - 1); j <= i; j++)
            acc += s.A[i * s.lda + j] * gla_ld(s.k, (long long)j * s.ldt + d) * gla_exp<FAST>(Gi - s.G[j * s.ldf + d]);
        epi(i, d, acc);
    }
    __syncthreads();
}

// out_j = sum_{i>=j} W_ij q_i * e^(G_i - G_j) (W = s.A), as gla_intra_rows.
template <bool MMA, bool FAST, typename T, class EPI> __device__ void gla_intra_cols(const gla_tile<T> &s, EPI epi) {
    const int KP = s.KP;
    gla_gemm_if<MMA, 4>(
        GLA_C, KP, GLA_C, [&](int m, int k) { return k / GLA_BC > m / GLA_BC ? s.A[k * s.lda + m] : 0.f; },
        [&](int k, int n, int m0) {
            const int I = k / GLA_BC, J = m0 / GLA_BC;
            return I > J ? s.qW[k * s.ldf + n] * s.mid[gla_pair(I, J) * KP + n] : 0.f;
        },
        [&](int m, int n, float c) {
            epi(m, n, c * gla_exp<FAST>(s.G[((m & ~(GLA_BC - 1)) + GLA_BC - 1) * s.ldf + n] - s.G[m * s.ldf + n]));
        },
        [](int m0, int n0) { return m0 < GLA_C - GLA_BC; });
    __syncthreads();
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
        const int j = idx / KP, d = idx % KP;
        const float Gj = s.G[j * s.ldf + d];
        float acc = 0.f;
        for (int i = j; i < (j & ~(GLA_BC - 1)) + GLA_BC; i++)
            acc += s.A[i * s.lda + j] * gla_ld(s.q, (long long)i * s.ldt + d) * gla_exp<FAST>(s.G[i * s.ldf + d] - Gj);
        epi(j, d, acc);
    }
    __syncthreads();
}

// Carves the dynamic shared memory of the fwd and bwd kernels; returns the bytes needed.
template <typename T> __host__ __device__ inline size_t gla_carve(char *base, int KP, int VP, bool bwd, gla_tile<T> *s,
                                                                 T **v, T **dout, float **dG, float **scratch) {
    size_t off = 0;
    const int ldt = KP + 8, ldv = VP + 8, ldf = KP + 4;
    auto take = [&](size_t bytes) {
        char *p = base ? base + off : nullptr;
        off += (bytes + 15) / 16 * 16;
        return p;
    };
    s->ldt = ldt;
    s->ldf = ldf;
    s->lda = GLA_C + 1;
    s->KP = KP;
    s->q = (T *)take(sizeof(T) * GLA_C * ldt);
    s->k = (T *)take(sizeof(T) * GLA_C * ldt);
    *v = (T *)take(sizeof(T) * GLA_C * ldv);
    *dout = bwd ? (T *)take(sizeof(T) * GLA_C * ldv) : nullptr;
    s->G = (float *)take(sizeof(float) * GLA_C * ldf);
    s->qW = (float *)take(sizeof(float) * GLA_C * ldf);
    s->kW = (float *)take(sizeof(float) * GLA_C * ldf);
    *dG = bwd ? (float *)take(sizeof(float) * GLA_C * ldf) : nullptr;
    s->A = (float *)take(sizeof(float) * GLA_C * (GLA_C + 1));
    s->mid = (float *)take(sizeof(float) * 6 * KP);
    *scratch = (float *)take(sizeof(float) * 256);
    return off;
}

template <typename T> inline size_t gla_smem_bytes(int KP, int VP, bool bwd) {
    gla_tile<T> s;
    T *a, *b;
    float *c, *d;
    return gla_carve<T>(nullptr, KP, VP, bwd, &s, &a, &b, &c, &d);
}

// Checks shared by forward and backward (dtypes, sizes, shared memory) and fills the plan.
int gla_cuda_begin(ln_node *n, gla_plan *p);

#endif
