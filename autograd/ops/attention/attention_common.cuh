// Shared by the attention kernels (attention.cu: mma.sync, any sm_80+; attention_wgmma_fwd.cu: the
// sm_90a forward): the launch parameters, the grid order, and the forward's per-row state with its
// online softmax and final store, whose register layout is the one both kernels' accumulators have
// (per warp 16 query rows: the m16n8 C fragment, n-tile by n-tile).
#ifndef LN_ATTENTION_COMMON_CUH
#define LN_ATTENTION_COMMON_CUH

#include <math.h>
#include <stdint.h>

#include "autograd/cuda/cuda_check.cuh"
#include "autograd/cuda/mma.cuh"

namespace ln_attn {

using namespace ln_mma;
typedef __nv_bfloat16 bf16;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct AttnParams {
    const void *q, *k, *v, *o, *dout;
    void *out;
    float *lse, *delta, *dq_acc;
    void *dq, *dk, *dv;
    int B, T, S, Hq, Hkv, D, group, causal;
    int fwd_group, bwd_group; // heads per grid group (grid_map)
    float scale;
};

// blockIdx.x -> (block rank, head) for a grid of nblk blocks per head and heads (b, h) pairs, in
// groups of G heads (G <= 0: all heads in one group): groups one after the other, inside a group
// the rank slowest and the head fastest. Rank 0 is a head's heaviest block (the caller maps it),
// so each group runs heaviest-first (longest-processing-time order) while only the group's heads
// are live at a time (their data shared in L2).
__device__ __forceinline__ void grid_map(long long x, int nblk, long long heads, int G, int &rank, long long &bh) {
    const long long gh = G > 0 && G < heads ? G : heads, span = gh * nblk;
    const long long grp = x / span, w = x % span, gs = min(gh, heads - grp * gh);
    rank = (int)(w / gs);
    bh = grp * gh + w % gs;
}

// A forward CTA's work: blockIdx.x -> (q-block of Br rows, head h, batch b), the heaviest (last,
// under causal) q-blocks first; its first query m0, the kv blocks of Bc it visits (nkb: past the
// diagonal none), and the head's q, k, v rows (row strides qstride, kstride).
template <int D>
struct FwdBlock {
    int h, b, m0, nkb;
    long long qstride, kstride;
    const bf16 *q, *k, *v;
    __device__ __forceinline__ FwdBlock(const AttnParams &p, int Br, int Bc) {
        const int nqb = (p.T + Br - 1) / Br;
        int qb;
        long long bh;
        grid_map(blockIdx.x, nqb, (long long)p.B * p.Hq, p.fwd_group, qb, bh);
        qb = nqb - 1 - qb;
        h = (int)(bh % p.Hq);
        b = (int)(bh / p.Hq);
        m0 = qb * Br;
        const int kv_end = p.causal ? min(p.S, min(p.T, m0 + Br) + p.S - p.T) : p.S;
        nkb = (kv_end + Bc - 1) / Bc;
        const int hk = h / p.group;
        qstride = (long long)p.Hq * D;
        kstride = (long long)p.Hkv * D;
        q = (const bf16 *)p.q + ((long long)b * p.T * p.Hq + h) * D;
        k = (const bf16 *)p.k + ((long long)b * p.S * p.Hkv + hk) * D;
        v = (const bf16 *)p.v + ((long long)b * p.S * p.Hkv + hk) * D;
    }
};

// A backward CTA's work: blockIdx.x -> (kv-block of Bc keys, kv head hk, batch b), grouped by
// grid_map with kv-block 0 (the heaviest under causal) first; its first key n0 and its steps: for
// each query head of the group, the q-blocks of Br rows that see any of its keys (step()).
template <int D>
struct BwdBlock {
    int hk, b, n0, qb0, nq, iters;
    long long qstride, kstride;
    const bf16 *k, *v;
    int group, Br, T;
    __device__ __forceinline__ BwdBlock(const AttnParams &p, int Br_, int Bc) : group(p.group), Br(Br_), T(p.T) {
        const int nkb = (p.S + Bc - 1) / Bc;
        int kb;
        long long bh;
        grid_map(blockIdx.x, nkb, (long long)p.B * p.Hkv, p.bwd_group, kb, bh);
        hk = (int)(bh % p.Hkv);
        b = (int)(bh / p.Hkv);
        n0 = kb * Bc;
        qb0 = p.causal ? max(0, n0 - (p.S - p.T)) / Br : 0;
        nq = (p.T + Br - 1) / Br - qb0;
        iters = group * nq;
        qstride = (long long)p.Hq * D;
        kstride = (long long)p.Hkv * D;
        k = (const bf16 *)p.k + ((long long)b * p.S * p.Hkv + hk) * D;
        v = (const bf16 *)p.v + ((long long)b * p.S * p.Hkv + hk) * D;
    }
    // step it -> (query head h, first query row m0)
    __device__ __forceinline__ void step(int it, int &h, int &m0) const {
        h = hk * group + it / nq;
        m0 = (qb0 + it % nq) * Br;
    }
    // offset of (batch b, query row 0, head h) in q and dout
    __device__ __forceinline__ long long q_base(int h) const { return (long long)b * qstride * T + (long long)h * D; }
};

// lse and delta of query rows m0.. (Br of them) of head h into shared memory, by 4-byte cp.async
// with the step's other tiles (no thread waits on a global load before its step). Rows past T read
// 0 and 0: their Q and dO are zero, so P = 1 and dS = 0 there and P^T dO = 0: nothing reaches dK,
// dV (and their dQ is never stored).
template <int Br, int NT>
__device__ __forceinline__ void load_lse_delta(float *sL, float *sDl, const AttnParams &p, int b, int h, int m0,
                                               int tid) {
    static_assert(2 * Br <= NT && (Br & (Br - 1)) == 0, "lse/delta: one thread per value");
    if (tid < 2 * Br) {
        const int r = tid & (Br - 1), t = m0 + r;
        const long long i = ((long long)b * p.Hq + h) * p.T + (t < p.T ? t : 0);
        if (tid < Br) cp_async4(smem_u32(sL + r), p.lse + i, t < p.T);
        else cp_async4(smem_u32(sDl + r), p.delta + i, t < p.T);
    }
}

__device__ __forceinline__ void atomic_add2(float *dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(dst), make_float2(a, b));
#else
    atomicAdd(dst, a);
    atomicAdd(dst + 1, b);
#endif
}

// dst[0..1] += (a, b) on bf16 storage.
__device__ __forceinline__ void add_bf16x2(bf16 *dst, float a, float b) {
    __nv_bfloat162 old = *reinterpret_cast<__nv_bfloat162 *>(dst);
    *reinterpret_cast<__nv_bfloat162 *>(dst) =
        __floats2bfloat162_rn(__low2float(old) + a, __high2float(old) + b);
}

// Per-warp forward state: O accumulators and the running max (log2 units) and partial row sums.
template <int D, int MT>
struct FwdState {
    float o[MT][D / 8][4];
    float m[MT][2], l[MT][2];
};

// Mask, online softmax and the O rescale for a warp's MT m-tiles against NTL 8-key n-tiles of
// scores s (the C fragments of S = Q K^T, raw when kPos, else scaled here). kPos (scale > 0): the
// row max is taken on raw scores (st.m in raw units) and the scale folds into one FFMA per
// probability; otherwise st.m is in log2 units. P goes to bf16 as soon as each pair of
// probabilities is known, laid out as the m16n8k16 A fragment: the C fragment of n-tiles 2kk,
// 2kk+1 is the A fragment of k-step kk (so P V reads P from registers). wrow is the warp's first
// row in the q-block, m0 / n0 the tiles' first query / key.
template <int D, int MT, int NTL, bool kPos>
__device__ __forceinline__ void fwd_softmax(FwdState<D, MT> &st, float (&s)[MT][NTL][4], uint32_t (&pf)[MT][NTL / 2][4],
                                            int wrow, int m0, int n0, bool need_mask, const AttnParams &p, float sl2,
                                            int lane) {
    const int g = lane >> 2, tg = lane & 3;
    const int off = p.S - p.T;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTL; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float x = kPos ? s[mt][nt][e] : s[mt][nt][e] * sl2;
                if (need_mask) {
                    int row = m0 + wrow + mt * 16 + g + ((e >> 1) << 3), col = n0 + nt * 8 + 2 * tg + (e & 1);
                    if (col >= p.S || (p.causal && col > row + off)) x = -INFINITY;
                }
                s[mt][nt][e] = x;
            }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = st.m[mt][r];
#pragma unroll
            for (int nt = 0; nt < NTL; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mu = mx == -INFINITY ? 0.f : mx; // a row with nothing visible yet
            const float alpha = kPos ? ex2((st.m[mt][r] - mu) * sl2) : ex2(st.m[mt][r] - mu);
            st.m[mt][r] = mx;
            const float ms = kPos ? mu * sl2 : mu, f = kPos ? sl2 : 1.f;
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < NTL; ++nt) {
                const float e0 = ex2(fmaf(s[mt][nt][2 * r], f, -ms)), e1 = ex2(fmaf(s[mt][nt][2 * r + 1], f, -ms));
                pf[mt][nt >> 1][(nt & 1) * 2 + r] = pack_bf16(e0, e1);
                sum += e0 + e1;
            }
            st.l[mt][r] = st.l[mt][r] * alpha + sum;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                st.o[mt][dt][2 * r] *= alpha;
                st.o[mt][dt][2 * r + 1] *= alpha;
            }
        }
}

// O / l to out (bf16) and lse = (m + log2 l) ln 2 (natural log) for the warp's rows below T.
template <int D, int MT, bool kPos>
__device__ __forceinline__ void fwd_store(FwdState<D, MT> &st, const AttnParams &p, int b, int h, int m0, int wrow,
                                          float sl2, int lane) {
    const int g = lane >> 2, tg = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = st.l[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = 1.f / l;
            const int row = m0 + wrow + mt * 16 + g + r * 8;
            if (row < p.T) {
                bf16 *go = (bf16 *)p.out + (((long long)b * p.T + row) * p.Hq + h) * D + 2 * tg;
#pragma unroll
                for (int dt = 0; dt < D / 8; ++dt)
                    *reinterpret_cast<uint32_t *>(go + dt * 8) =
                        pack_bf16(st.o[mt][dt][2 * r] * inv, st.o[mt][dt][2 * r + 1] * inv);
                const float m2 = kPos ? st.m[mt][r] * sl2 : st.m[mt][r];
                if (tg == 0) p.lse[((long long)b * p.Hq + h) * p.T + row] = (m2 + log2f(l)) * kLn2;
            }
        }
}

// The sm_90a kernels: whether this device is an sm_90 one and the build holds their sm_90a image
// (attention_wgmma_fwd.cu); the forward (there), bf16, D = 64 or 128, and the backward
// (attention_wgmma_bwd.cu), bf16, D = 64 or 128: whether each is chosen (LINNET_ATTN_FWD / _BWD=mma pick
// the mma.sync kernels instead), and their launches.
bool wgmma_image_available();
bool forward_wgmma_available(int D);
int forward_wgmma(const AttnParams &p);
bool backward_wgmma_available(int D);
int backward_wgmma(const AttnParams &p);

} // namespace ln_attn

#endif
