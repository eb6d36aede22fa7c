// The tensor-core path of the gated linear attention family (bf16 storage, K 32, 64 or 128, V 64
// or 128): what gla_state.cu, gla_fwd.cu and gla_bwd.cu share. Other shapes and f32 take the
// generic kernels (gla_scan_generic.cu, gla_fwd_generic.cu, gla_bwd_generic.cu). Design and
// measurements: docs/gla-kernel.md.
//
// Chunks of 64 tokens, four 16-row sub-chunks I, one warp per sub-chunk. G is the chunk-local
// cumulative log gate (fp32 in shared memory). Gate factors are applied to bf16 fragments on
// their way into mma.sync, always relative to a row r of the warp's own sub-chunk:
//   e^(G_i - G_j) = e^(G_i - G_r) e^(G_r - G_j),
// so between sub-chunks both factors are <= 1. Inside a sub-chunk one factor is >= 1, at most
// e^span with span = max over d of G_first - G_last of that sub-chunk. While span <= GLA_MMA_SPAN
// the diagonal block goes through the tensor cores too; past it (strong decay) its 16 x 16
// entries are summed pairwise in fp32 with the exact exponent. The limit is set by precision, not
// range: the gate gradient is a difference of pair terms (q dq - k dk) that cancel more the
// stronger the decay, and each pair term carries the bf16 rounding of its gated operand; at
// span <= 4 that stays near 1e-2 (bench/gla_dg_precision.py emulates it; GLA's usual gates,
// logsigmoid(x) / 16, span well under 2). The diagonal terms themselves (j = i) are kept apart and
// added in fp32, so they cancel exactly.
#ifndef LN_GLA_MMA_CUH
#define LN_GLA_MMA_CUH

#include "autograd/cuda/mma.cuh"
#include "gla_cuda.cuh"

#define GLA_MMA_SPAN 4.f

using ln_mma::bf16;

bool gla_mma_applies(const gla_plan *p, ln_dtype dt);

// The states every chunk starts from, by the tensor cores: per chunk and head
// U_c = (x w)^T y ([K, V], bf16) and gam_c = G_last ([K], f32); then the linear scan
// S <- e^gam_c S + U_c over the chunks of every sequence, storing S before each chunk.
// Forward (rev false): x = k, w = e^(gam - G), y = v: states = h_c, fin = ht.
// Reverse: x = q, w = scale e^G, y = do: states = dh_c+1, fin = dh0 (added when fin_accum).
// U: [n_chunks, H, K, V], gam: [n_chunks, H, K] scratch.
int gla_mma_states(const gla_plan *p, bool rev, const bf16 *x, const bf16 *y, const bf16 *g, bf16 *U, float *gam,
                   bf16 *states, const void *init, int init_kind, void *fin, int fin_kind, bool fin_accum);

int gla_mma_forward(ln_node *n, const gla_plan *p);
int gla_mma_backward(ln_node *n, const gla_plan *p);

// Runs body with compile-time K (32, 64 or 128) and V (64 or 128).
#define GLA_MMA_DISPATCH_V(Kc, Vv, ...)                                                                            \
    do {                                                                                                           \
        if ((Vv) == 64) { constexpr int K = Kc, V = 64; __VA_ARGS__; }                                             \
        else { constexpr int K = Kc, V = 128; __VA_ARGS__; }                                                       \
    } while (0)
#define GLA_MMA_DISPATCH(Kv, Vv, ...)                                                                              \
    do {                                                                                                           \
        if ((Kv) == 32) GLA_MMA_DISPATCH_V(32, Vv, __VA_ARGS__);                                                   \
        else if ((Kv) == 64) GLA_MMA_DISPATCH_V(64, Vv, __VA_ARGS__);                                              \
        else GLA_MMA_DISPATCH_V(128, Vv, __VA_ARGS__);                                                             \
    } while (0)

namespace gla_mma {

using namespace ln_mma;

__device__ __forceinline__ float bf(bf16 x) { return __bfloat162float(x); }

// x (bf16 pair) times (a, b), repacked
__device__ __forceinline__ uint32_t scale2(uint32_t x, float a, float b) {
    __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&x);
    return pack_bf16(__low2float(v) * a, __high2float(v) * b);
}

// The chunk-local cumulative gate G[i][d] (ld K + 8, f32) for rows i < 64, in two steps around
// the block's cp.async wait, so the gate tile arrives with the others instead of by 64 dependent
// scalar loads per thread:
//   gates_issue:  per key (g [tokens, H, K]), a cp.async of the bf16 tile into the upper half of
//                 G's own storage (rows >= n zero-filled); per head (g [tokens, H]), 64 plain loads
//                 into scratch; none: nothing.
//   gates_finish: after cp_async_wait and a barrier: the running sums into G (rows >= n add 0, so
//                 they repeat row n - 1; per head repeated over d). Ends with a barrier.
// NT threads (a multiple of K, >= 64); scratch: NT floats.
template <int K, int NT>
__device__ __forceinline__ void gates_issue(float *G, const bf16 *g, int gate, long long tok0, int H, int h, int n,
                                            float *scratch) {
    if (gate == GLA_GATE_PER_KEY)
        load_tile<64, K, NT>(reinterpret_cast<bf16 *>(G) + 64 * (K + 8), g + (tok0 * H + h) * K, (long long)H * K, 0,
                             n, threadIdx.x);
    else if (gate == GLA_GATE_PER_HEAD && threadIdx.x < 64)
        scratch[threadIdx.x] = (int)threadIdx.x < n ? bf(g[(tok0 + threadIdx.x) * H + h]) : 0.f;
}

template <int K, int NT> __device__ void gates_finish(float *G, int gate, float *scratch) {
    constexpr int LD = K + 8, S = NT / K, R = 64 / S;
    const int d = threadIdx.x % K, s = threadIdx.x / K;
    const bf16 *tile = reinterpret_cast<const bf16 *>(G) + 64 * LD;
    float x[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int i = s * R + r;
        const float v = gate == GLA_GATE_PER_KEY ? bf(tile[i * LD + d]) : gate == GLA_GATE_PER_HEAD ? scratch[i] : 0.f;
        x[r] = r ? x[r - 1] + v : v;
    }
    __syncthreads(); // every thread has read the tile (and scratch) before G and the totals overwrite them
    float off = 0.f;
    if constexpr (S > 1) {
        scratch[s * K + d] = x[R - 1];
        __syncthreads();
        for (int t = 0; t < s; t++) off += scratch[t * K + d];
    }
#pragma unroll
    for (int r = 0; r < R; r++) G[(s * R + r) * LD + d] = x[r] + off;
    __syncthreads();
}

// max over d of G[r0][d] - G[r0 + 15][d]: the largest gate factor inside sub-chunk r0 is e^span
template <int K> __device__ __forceinline__ float sub_span(const float *G, int r0, int lane) {
    constexpr int LD = K + 8;
    float m = 0.f;
    for (int d = lane; d < K; d += 32) m = fmaxf(m, G[r0 * LD + d] - G[(r0 + 15) * LD + d]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    return m;
}

// A fragment (rows row0.., k columns 16 kc..) of x[i][d] e^(sign (G[i][d] - ref[d])), x a
// [64][K + 8] bf16 tile; ref = nullptr reads as 0.
template <int K>
__device__ __forceinline__ void frag_a_gated(uint32_t (&a)[4], const bf16 *x, const float *G, int row0, int kc,
                                             const float *ref, float sign, int lane) {
    constexpr int LD = K + 8;
    const int gid = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int i = row0 + gid + (q & 1) * 8, d = kc * 16 + 2 * t4 + (q >> 1) * 8;
        const float2 gi = *reinterpret_cast<const float2 *>(G + i * LD + d);
        const float2 gr = ref ? *reinterpret_cast<const float2 *>(ref + d) : make_float2(0.f, 0.f);
        a[q] = scale2(*reinterpret_cast<const uint32_t *>(x + i * LD + d), __expf(sign * (gi.x - gr.x)),
                      __expf(sign * (gi.y - gr.y)));
    }
}

// B fragment (n rows n0..n0 + 7, k columns 16 kc..) of k[j][d] e^(ref[d] - G[j][d]) from a
// [64][K + 8] tile stored [n][k].
template <int K>
__device__ __forceinline__ void frag_b_gated_nk(uint32_t &b0, uint32_t &b1, const bf16 *x, const float *G, int n0,
                                                int kc, const float *ref, int lane) {
    constexpr int LD = K + 8;
    const int j = n0 + (lane >> 2), d = kc * 16 + 2 * (lane & 3);
    const float2 g0 = *reinterpret_cast<const float2 *>(G + j * LD + d),
                 g1 = *reinterpret_cast<const float2 *>(G + j * LD + d + 8);
    const float2 r0 = *reinterpret_cast<const float2 *>(ref + d), r1 = *reinterpret_cast<const float2 *>(ref + d + 8);
    b0 = scale2(*reinterpret_cast<const uint32_t *>(x + j * LD + d), __expf(r0.x - g0.x), __expf(r0.y - g0.y));
    b1 = scale2(*reinterpret_cast<const uint32_t *>(x + j * LD + d + 8), __expf(r1.x - g1.x), __expf(r1.y - g1.y));
}

// B fragments of two n-tiles (n columns 16 nc..) over k rows k0..k0 + 15 of a [64][K + 8] tile
// stored [k][n] (k = token, n = d), each element x[j][d] times e^(sign (G[j][d] - ref[d])).
template <int K>
__device__ __forceinline__ void frag_b_gated_kn(uint32_t (&r)[4], const bf16 *x, const float *G, int k0, int nc,
                                                const float *ref, float sign, int lane) {
    constexpr int LD = K + 8;
    ldsm_b_kn<K>(r, x, k0, nc, lane);
    const int j = k0 + 2 * (lane & 3);
#pragma unroll
    for (int u = 0; u < 2; u++) {
        const int d = nc * 16 + u * 8 + (lane >> 2);
        const float rd = ref[d];
#pragma unroll
        for (int v = 0; v < 2; v++) {
            const int jj = j + 8 * v;
            r[2 * u + v] = scale2(r[2 * u + v], __expf(sign * (G[jj * LD + d] - rd)),
                                  __expf(sign * (G[(jj + 1) * LD + d] - rd)));
        }
    }
}

// Scores of the sub-chunk at rows r0..r0 + 15 against the 8-column tiles [jt0, jt_end) (at most
// NTILE): sc[u] += (q e^(G - G_r)) (k e^(G_r - G))^T for tile jt0 + u, r = r0, unmasked. The first
// phase of the forward and of the backward.
template <int K, int NTILE>
__device__ __forceinline__ void score_tiles(float (&sc)[NTILE][4], const bf16 *q, const bf16 *k, const float *G,
                                            int r0, int jt0, int jt_end, int lane) {
    const float *Gr = G + r0 * (K + 8);
#pragma unroll 1
    for (int kc = 0; kc < K / 16; kc++) {
        uint32_t a[4];
        frag_a_gated<K>(a, q, G, r0, kc, Gr, 1.f, lane);
#pragma unroll
        for (int u = 0; u < NTILE; u++) {
            if (jt0 + u >= jt_end) break;
            uint32_t b0, b1;
            frag_b_gated_nk<K>(b0, b1, k, G, 8 * (jt0 + u), kc, Gr, lane);
            mma16816(sc[u], a, b0, b1);
        }
    }
}

// The strong-decay fallbacks, out of line: they are rare, and inlined into every element of the
// unrolled fragment loops they made the kernels several times larger than the instruction cache.
// sum_d q[i][d] k[j][d] e^(G[i][d] - G[j][d]): one score with the exact exponent
template <int K>
__device__ __noinline__ float pair_score(const bf16 *q, const bf16 *k, const float *G, int i, int j) {
    constexpr int LD = K + 8;
    float s = 0.f;
#pragma unroll 4
    for (int d = 0; d < K; d++) s += bf(q[i * LD + d]) * bf(k[j * LD + d]) * __expf(G[i * LD + d] - G[j * LD + d]);
    return s;
}

// sum over rows m in [m0, m1] of w[m * ws] x[m][d] e^(sign (G[r][d] - G[m][d])): one column d of
// a gated product with the exact exponent
template <int K>
__device__ __noinline__ float pair_column(const bf16 *w, int ws, const bf16 *x, const float *G, int r, int d, int m0,
                                          int m1, float sign) {
    constexpr int LD = K + 8;
    float s = 0.f;
    for (int m = m0; m <= m1; m++)
        s += bf(w[m * ws]) * bf(x[m * LD + d]) * __expf(sign * (G[r * LD + d] - G[m * LD + d]));
    return s;
}

// dst pair (2 bf16) = (a, b)
__device__ __forceinline__ void store2(bf16 *dst, float a, float b) {
    *reinterpret_cast<__nv_bfloat162 *>(dst) = __floats2bfloat162_rn(a, b);
}

// The warp's 16 x 8NT fragment tile v (rows gid and gid + 8, columns c0 + 8 t + 2 t4) into a
// row-major bf16 array (global or shared): row0 points at row gid's column 0, row gid + 8 is
// stride further; ok0 / ok1 say which rows exist. With acc it is added: every old value is read before the first
// store, so the reads are in flight together (stores in between would order them one by one).
template <int NT>
__device__ __forceinline__ void put_tile(bf16 *row0, long long stride, int c0, const float (&v)[NT][4], bool acc,
                                         bool ok0, bool ok1, int t4) {
    float old[NT][4] = {};
    if (acc) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int c = c0 + 8 * t + 2 * t4;
            if (ok0) {
                const __nv_bfloat162 o = *reinterpret_cast<const __nv_bfloat162 *>(row0 + c);
                old[t][0] = __low2float(o), old[t][1] = __high2float(o);
            }
            if (ok1) {
                const __nv_bfloat162 o = *reinterpret_cast<const __nv_bfloat162 *>(row0 + stride + c);
                old[t][2] = __low2float(o), old[t][3] = __high2float(o);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const int c = c0 + 8 * t + 2 * t4;
        if (ok0) store2(row0 + c, v[t][0] + old[t][0], v[t][1] + old[t][1]);
        if (ok1) store2(row0 + stride + c, v[t][2] + old[t][2], v[t][3] + old[t][3]);
    }
}

} // namespace gla_mma

#endif
