// Softmax attention on the GPU, FlashAttention-2 style: no [T, S] matrix is ever stored; the
// forward keeps lse [B, Hq, T] (f32, natural log) and o, the backward recomputes probabilities from
// q, k and lse. Same semantics and saved slots as attention.c (the CPU reference):
//   q [B, T, Hq, D], k/v [B, S, Hkv, D]; query head h reads kv head h / (Hq / Hkv); causal masks
//   key s > t + (S - T); saved 0..2 = q, k, v (by ln_attention), 3 = o, 4 = lse (by the forward).
//
// Two paths:
//  * fast (bf16 storage, D = 64 or 128): tensor cores through mma.sync m16n8k16 (bf16 in, f32
//    accumulate), ldmatrix from padded shared-memory tiles (row + 16 bytes: conflict-free),
//    cp.async multi-stage tile loads (zero-filled past T / S), online softmax in f32 in the log2
//    domain (for scale > 0 the scale folds into one FFMA per probability), causal blocks past the
//    diagonal skipped and only blocks that cross it (or the S tail) masked.
//      forward : one CTA per (q-block of 128, head, batch), the last (heaviest causal) q-blocks
//                of every head launched first; 4 warps of 32 query rows; kv blocks of 64,
//                double-buffered; P packed to bf16 at the exp and fed from registers to P V.
//      backward: delta = rowsum(dO * O) (f32) first; then one CTA per (kv-block of 128, kv head,
//                batch), 8 warps, looping over (query head of the group, q-block of 64; 128 at
//                D = 64) with 3 stages of (Q, dO, lse, delta) in flight (all by cp.async); the
//                grid in groups of heads whose Q, dO, dQ scratch fit ~16 MB of L2 (grid_map).
//                Per step, FA2's layout: S and dP (warps 2 x 4), P and dS through shared memory,
//                dV += P^T dO and dK += dS^T Q in registers (the GQA sum over the group happens
//                inside the CTA: no atomics for dK, dV), dQ += dS K into an f32 scratch with
//                atomicAdd (float2), added times scale into dq at the end. The (q-block, kv-block)
//                step is one body (fwd_scores + fwd_pv, bwd_tile) on a tile pair, so a block list
//                (block-sparse attention) can drive the same code.
//  * generic (f32 storage any D <= 256, bf16 with other D): CUDA cores, f32 arithmetic, K/V tiles
//    in shared memory; forward and dQ one warp per query row, dK/dV one warp per 4 keys. No
//    atomics anywhere on this path.
// Every grid runs over blockIdx.x (any B * H). Forward results are run-to-run identical on both
// paths (fixed reduction orders); the fast backward's dq uses atomics and may differ in the last
// bits between runs. Design, measurements and what is left: docs/attention-kernel.md.
#include "autograd/ops/attention/attention_common.cuh"

extern "C" {
#include "autograd/ops.h"
#include "autograd/ops/attention/attention_cudnn.h"
}

namespace {

using namespace ln_attn;

// ---------------------------------------------------------------------------------------------
// Fast forward
// ---------------------------------------------------------------------------------------------

template <int D_, int Bc_, int kWarps_, int MT_>
struct FwdCfg {
    static constexpr int D = D_, kWarps = kWarps_, NT = kWarps * 32, MT = MT_; // MT m-tiles of 16 rows per warp
    static constexpr int Br = kWarps * 16 * MT, Bc = Bc_;
    static constexpr int kMinBlocks = NT == 128 ? 2 : 1;
    static constexpr int LD = Pad<D>::LD;
    static constexpr int smem = (Br + 4 * Bc) * LD * (int)sizeof(bf16); // Q + 2 stages of K, V
};

// One (q-block, kv-block) step of the forward for one warp, in two halves: fwd_scores (S = Q K^T,
// then fwd_softmax: mask, online softmax, P as bf16 A fragments) and fwd_pv (O += P V).
// sQ/sK/sV are the CTA's tiles, wrow the warp's first row in the q-block, m0/n0 the tiles' global
// first query/key.
template <class Cfg, bool kPos>
__device__ __forceinline__ void fwd_scores(FwdState<Cfg::D, Cfg::MT> &st, uint32_t (&pf)[Cfg::MT][Cfg::Bc / 16][4],
                                           const bf16 *sQ, const bf16 *sK, int wrow, int m0, int n0, bool need_mask,
                                           const AttnParams &p, float sl2, int lane) {
    constexpr int D = Cfg::D, MT = Cfg::MT, Bc = Cfg::Bc, NTL = Bc / 8;
    float s[MT][NTL][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTL; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) ldsm_a<D>(a[mt], sQ, wrow + mt * 16, ks, lane);
#pragma unroll
        for (int np = 0; np < NTL / 2; ++np) {
            uint32_t b[4];
            ldsm_b_nk<D>(b, sK, np * 16, ks, lane);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma16816(s[mt][2 * np], a[mt], b[0], b[1]);
                mma16816(s[mt][2 * np + 1], a[mt], b[2], b[3]);
            }
        }
    }
    fwd_softmax<D, MT, NTL, kPos>(st, s, pf, wrow, m0, n0, need_mask, p, sl2, lane);
}

template <class Cfg>
__device__ __forceinline__ void fwd_pv(FwdState<Cfg::D, Cfg::MT> &st, const uint32_t (&pf)[Cfg::MT][Cfg::Bc / 16][4],
                                       const bf16 *sV, int lane) {
    constexpr int D = Cfg::D, MT = Cfg::MT, Bc = Cfg::Bc;
#pragma unroll
    for (int kk = 0; kk < Bc / 16; ++kk) {
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t b[4];
            ldsm_b_kn<D>(b, sV, kk * 16, dp, lane);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma16816(st.o[mt][2 * dp], pf[mt][kk], b[0], b[1]);
                mma16816(st.o[mt][2 * dp + 1], pf[mt][kk], b[2], b[3]);
            }
        }
    }
}

template <class Cfg, bool kPos>
__global__ void __launch_bounds__(Cfg::NT, Cfg::kMinBlocks) fa_fwd_kernel(AttnParams p) {
    constexpr int D = Cfg::D;
    constexpr int Br = Cfg::Br, Bc = Cfg::Bc, MT = Cfg::MT, NT = Cfg::NT;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem_raw);
    constexpr int LD = Cfg::LD;
    bf16 *sK = sQ + Br * LD; // [2][Bc][LD]
    bf16 *sV = sK + 2 * Bc * LD;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    const FwdBlock<D> fb(p, Br, Bc);
    const int h = fb.h, b = fb.b, m0 = fb.m0, off = p.S - p.T, nkb = fb.nkb;
    const long long qstride = fb.qstride, kstride = fb.kstride;
    const bf16 *gq = fb.q, *gk = fb.k, *gv = fb.v;

    load_tile<Br, D, NT>(sQ, gq, qstride, m0, p.T, tid);
    load_tile<Bc, D, NT>(sK, gk, kstride, 0, p.S, tid);
    load_tile<Bc, D, NT>(sV, gv, kstride, 0, p.S, tid);
    cp_async_commit();

    FwdState<D, MT> st;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) st.o[mt][dt][e] = 0.f;
        st.m[mt][0] = st.m[mt][1] = -INFINITY;
        st.l[mt][0] = st.l[mt][1] = 0.f;
    }
    const float sl2 = p.scale * kLog2e;
    const int wrow = warp * 16 * MT;

    for (int j = 0; j < nkb; ++j) {
        const int sg = j & 1;
        if (j + 1 < nkb) { // prefetch the next kv block into the other stage (freed by the last barrier)
            load_tile<Bc, D, NT>(sK + (sg ^ 1) * Bc * LD, gk, kstride, (j + 1) * Bc, p.S, tid);
            load_tile<Bc, D, NT>(sV + (sg ^ 1) * Bc * LD, gv, kstride, (j + 1) * Bc, p.S, tid);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int n0 = j * Bc;
        const bool need_mask = n0 + Bc > p.S || (p.causal && n0 + Bc - 1 > m0 + off);
        uint32_t pf[MT][Bc / 16][4];
        fwd_scores<Cfg, kPos>(st, pf, sQ, sK + sg * Bc * LD, wrow, m0, n0, need_mask, p, sl2, lane);
        fwd_pv<Cfg>(st, pf, sV + sg * Bc * LD, lane);
        __syncthreads();
    }

    fwd_store<D, MT, kPos>(st, p, b, h, m0, wrow, sl2, lane);
}

// ---------------------------------------------------------------------------------------------
// Fast backward, FA2 layout: 8 warps, kv tile 128, q tile 64. The step's three products
// use different warp grids so each warp works on 32x32 or 32x64 pieces (fewer shared-memory bytes
// per mma than one warp per 16 keys):
//   S = Q K^T, dP = dO V^T  [64 q x 128 k]  warps 2 (q) x 4 (k), 32 x 32 each
//   P, dS (bf16) -> shared memory [q][k]
//   dV += P^T dO, dK += dS^T Q  [128 k x D]  warps 4 (k) x 2 (d), 32 x D/2 each (registers)
//   dQ += dS K  [64 q x D]  warps 2 (q) x 4 (d), 32 x D/4 each -> f32 scratch (atomics)
// ---------------------------------------------------------------------------------------------

template <int D_, int kStages_, int kAW_, int Br_ = 64>
struct BwdCfg {
    static constexpr int D = D_, NT = 256, kStages = kStages_, kAW = kAW_, kMinBlocks = 1; // 8 warps
    static constexpr int Bc = 128, Br = Br_;
    static constexpr int MQ = Br / 32, WQ = Br / 2; // per warp in S/dP and dQ: MQ m-tiles, WQ rows
    static constexpr int LD = Pad<D>::LD, LDP = Pad<Bc>::LD;
    // K, V; stages of Q, dO; P, dS [Br][Bc]; stages of lse, delta
    static constexpr int smem = ((2 * Bc + 2 * kStages * Br) * LD + 2 * Br * LDP) * (int)sizeof(bf16) +
                                2 * kStages * Br * (int)sizeof(float);
};

template <class Cfg>
__device__ __forceinline__ void bwd_tile(float (&dk)[2][Cfg::D / 16][4], float (&dv)[2][Cfg::D / 16][4],
                                          const bf16 *sK, const bf16 *sV, const bf16 *sQ, const bf16 *sdO, bf16 *sP,
                                          bf16 *sdS, const float *sL, const float *sDl, int m0, int n0, int b, int h,
                                          bool need_mask, const AttnParams &p, float sl2, int warp, int lane) {
    constexpr int D = Cfg::D, Bc = Cfg::Bc, LDP = Cfg::LDP;
    const int g = lane >> 2, tg = lane & 3, off = p.S - p.T;
    {
        // S, dP: warp (wm, wn) = queries 32 wm.., keys 32 wn..
        const int wm = warp & 1, wn = warp >> 1;
        float s[Cfg::MQ][4][4], dp[Cfg::MQ][4][4];
#pragma unroll
        for (int mt = 0; mt < Cfg::MQ; ++mt)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][nt][e] = dp[mt][nt][e] = 0.f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
            uint32_t aq[Cfg::MQ][4], ao[Cfg::MQ][4];
#pragma unroll
            for (int mt = 0; mt < Cfg::MQ; ++mt) {
                ldsm_a<D>(aq[mt], sQ, wm * Cfg::WQ + mt * 16, ks, lane);
                ldsm_a<D>(ao[mt], sdO, wm * Cfg::WQ + mt * 16, ks, lane);
            }
#pragma unroll
            for (int np = 0; np < 2; ++np) {
                uint32_t bk[4], bv[4];
                ldsm_b_nk<D>(bk, sK, wn * 32 + np * 16, ks, lane);
                ldsm_b_nk<D>(bv, sV, wn * 32 + np * 16, ks, lane);
#pragma unroll
                for (int mt = 0; mt < Cfg::MQ; ++mt) {
                    mma16816(s[mt][2 * np], aq[mt], bk[0], bk[1]);
                    mma16816(s[mt][2 * np + 1], aq[mt], bk[2], bk[3]);
                    mma16816(dp[mt][2 * np], ao[mt], bv[0], bv[1]);
                    mma16816(dp[mt][2 * np + 1], ao[mt], bv[2], bv[3]);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < Cfg::MQ; ++mt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int qi = wm * Cfg::WQ + mt * 16 + g + 8 * r, t = m0 + qi;
                const float l2 = sL[qi] * kLog2e, dl = sDl[qi];
#pragma unroll
                for (int nt = 0; nt < 4; ++nt) {
                    float pr[2], ds[2];
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        pr[e] = ex2(s[mt][nt][2 * r + e] * sl2 - l2);
                        if (need_mask) {
                            const int key = n0 + wn * 32 + nt * 8 + 2 * tg + e;
                            if (key >= p.S || (p.causal && key > t + off)) pr[e] = 0.f;
                        }
                        ds[e] = pr[e] * (dp[mt][nt][2 * r + e] - dl);
                    }
                    const int o = qi * LDP + wn * 32 + nt * 8 + 2 * tg;
                    *reinterpret_cast<uint32_t *>(sP + o) = pack_bf16(pr[0], pr[1]);
                    *reinterpret_cast<uint32_t *>(sdS + o) = pack_bf16(ds[0], ds[1]);
                }
            }
    }
    __syncthreads(); // P, dS complete
    {
        // dV += P^T dO, dK += dS^T Q: warp (wk, wd) = keys 32 wk.., columns wd D/2..
        const int wk = warp & 3, wd = warp >> 2;
        constexpr int DH = D / 2;
#pragma unroll
        for (int kk = 0; kk < Cfg::Br / 16; ++kk) {
            uint32_t ap[2][4], ad[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                ldsm_a_km<Bc>(ap[mt], sP, kk * 16, wk * 2 + mt, lane);
                ldsm_a_km<Bc>(ad[mt], sdS, kk * 16, wk * 2 + mt, lane);
            }
#pragma unroll
            for (int dp2 = 0; dp2 < DH / 16; ++dp2) {
                uint32_t bo[4], bq[4];
                ldsm_b_kn<D>(bo, sdO, kk * 16, wd * (DH / 16) + dp2, lane);
                ldsm_b_kn<D>(bq, sQ, kk * 16, wd * (DH / 16) + dp2, lane);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    mma16816(dv[mt][2 * dp2], ap[mt], bo[0], bo[1]);
                    mma16816(dv[mt][2 * dp2 + 1], ap[mt], bo[2], bo[3]);
                    mma16816(dk[mt][2 * dp2], ad[mt], bq[0], bq[1]);
                    mma16816(dk[mt][2 * dp2 + 1], ad[mt], bq[2], bq[3]);
                }
            }
        }
    }
    if (p.dq_acc) {
        // dQ += dS K: warp (wq, wc) = queries 32 wq.., columns wc D/4..
        const int wq = warp & 1, wc = warp >> 1;
        constexpr int DQ = D / 4;
        float acc[Cfg::MQ][DQ / 8][4];
#pragma unroll
        for (int mt = 0; mt < Cfg::MQ; ++mt)
#pragma unroll
            for (int dt = 0; dt < DQ / 8; ++dt)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[mt][dt][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < Bc / 16; ++kk) {
            uint32_t a[Cfg::MQ][4];
#pragma unroll
            for (int mt = 0; mt < Cfg::MQ; ++mt) ldsm_a<Bc>(a[mt], sdS, wq * Cfg::WQ + mt * 16, kk, lane);
#pragma unroll
            for (int dp2 = 0; dp2 < DQ / 16; ++dp2) {
                uint32_t bk[4];
                ldsm_b_kn<D>(bk, sK, kk * 16, wc * (DQ / 16) + dp2, lane);
#pragma unroll
                for (int mt = 0; mt < Cfg::MQ; ++mt) {
                    mma16816(acc[mt][2 * dp2], a[mt], bk[0], bk[1]);
                    mma16816(acc[mt][2 * dp2 + 1], a[mt], bk[2], bk[3]);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < Cfg::MQ; ++mt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int t = m0 + wq * Cfg::WQ + mt * 16 + g + 8 * r;
                if (t >= p.T) continue;
                float *dst = p.dq_acc + (((long long)b * p.T + t) * p.Hq + h) * D + wc * DQ + 2 * tg;
#pragma unroll
                for (int dt = 0; dt < DQ / 8; ++dt) {
                    if (Cfg::kAW == 2) {
                        atomic_add2(dst + dt * 8, acc[mt][dt][2 * r], acc[mt][dt][2 * r + 1]);
                    } else {
                        atomicAdd(dst + dt * 8, acc[mt][dt][2 * r]);
                        atomicAdd(dst + dt * 8 + 1, acc[mt][dt][2 * r + 1]);
                    }
                }
            }
    }
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::NT, Cfg::kMinBlocks) fa_bwd_kernel(AttnParams p) {
    constexpr int D = Cfg::D, Br = Cfg::Br, Bc = Cfg::Bc, NT = Cfg::NT, NS = Cfg::kStages;
    constexpr int LD = Cfg::LD, LDP = Cfg::LDP;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16 *sK = reinterpret_cast<bf16 *>(smem_raw); // [Bc][LD]
    bf16 *sV = sK + Bc * LD;
    bf16 *sQ = sV + Bc * LD;        // [NS][Br][LD]
    bf16 *sdO = sQ + NS * Br * LD;  // [NS][Br][LD]
    bf16 *sP = sdO + NS * Br * LD;  // [Br][LDP]
    bf16 *sdS = sP + Br * LDP;      // [Br][LDP]
    float *sL = reinterpret_cast<float *>(sdS + Br * LDP); // [NS][Br] lse (natural log)
    float *sDl = sL + NS * Br;                              // [NS][Br] delta
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tg = lane & 3;

    // the CTA's kv-block and steps, heads in groups sharing their Q, dO and dQ scratch in L2
    const BwdBlock<D> bb(p, Br, Bc);
    const int hk = bb.hk, b = bb.b, n0 = bb.n0, off = p.S - p.T, iters = bb.iters;
    const long long qstride = bb.qstride, kstride = bb.kstride;
    const bf16 *gk = bb.k, *gv = bb.v;
    const float sl2 = p.scale * kLog2e;

    auto load_q = [&](int it, int sg) {
        int h, m0;
        bb.step(it, h, m0);
        const long long base = bb.q_base(h);
        load_tile<Br, D, NT>(sQ + sg * Br * LD, (const bf16 *)p.q + base, qstride, m0, p.T, tid);
        load_tile<Br, D, NT>(sdO + sg * Br * LD, (const bf16 *)p.dout + base, qstride, m0, p.T, tid);
        load_lse_delta<Br, NT>(sL + sg * Br, sDl + sg * Br, p, b, h, m0, tid);
    };

    load_tile<Bc, D, NT>(sK, gk, kstride, n0, p.S, tid);
    load_tile<Bc, D, NT>(sV, gv, kstride, n0, p.S, tid);
    if (iters > 0) load_q(0, 0);
    cp_async_commit();

    float dk[2][D / 16][4], dv[2][D / 16][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int dt = 0; dt < D / 16; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) dk[mt][dt][e] = dv[mt][dt][e] = 0.f;

    for (int it = 0; it < iters; ++it) {
        const int sg = it % NS;
        if (it + 1 < iters) {
            load_q(it + 1, (it + 1) % NS);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads(); // data of step it ready; P, dS of step it - 1 consumed
        int h, m0;
        bb.step(it, h, m0);
        const bool need_mask = n0 + Bc > p.S || (p.causal && n0 + Bc - 1 > m0 + off);
        bwd_tile<Cfg>(dk, dv, sK, sV, sQ + sg * Br * LD, sdO + sg * Br * LD, sP, sdS, sL + sg * Br,
                               sDl + sg * Br, m0, n0, b, h, need_mask, p, sl2, warp, lane);
        if (NS < 3) __syncthreads(); // the stage is rewritten by the next prefetch
    }
    if (iters == 0) cp_async_wait<0>();

    const int wk = warp & 3, wd = warp >> 2;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int key = n0 + wk * 32 + mt * 16 + g + 8 * r;
            if (key >= p.S) continue;
            const long long row = (((long long)b * p.S + key) * p.Hkv + hk) * D + wd * (D / 2) + 2 * tg;
            if (p.dk)
#pragma unroll
                for (int dt = 0; dt < D / 16; ++dt)
                    add_bf16x2((bf16 *)p.dk + row + dt * 8, p.scale * dk[mt][dt][2 * r], p.scale * dk[mt][dt][2 * r + 1]);
            if (p.dv)
#pragma unroll
                for (int dt = 0; dt < D / 16; ++dt)
                    add_bf16x2((bf16 *)p.dv + row + dt * 8, dv[mt][dt][2 * r], dv[mt][dt][2 * r + 1]);
        }
}

// ---------------------------------------------------------------------------------------------
// Shared by both paths: delta = rowsum(dO * O) (f32, [B, Hq, T]); dq += scale * dq_acc.
// ---------------------------------------------------------------------------------------------

template <typename T>
__global__ void attn_delta_kernel(const T *o, const T *dout, float *delta, long long rows, int Tn, int Hq, int D) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long r = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
        const T *orow = o + r * D, *grow = dout + r * D;
        float s = 0.f;
        for (int d = lane; d < D; d += 32) s += ln_load(orow, d) * ln_load(grow, d);
        for (int x = 16; x > 0; x >>= 1) s += __shfl_xor_sync(0xffffffffu, s, x);
        if (lane == 0) { // r = (b T + t) Hq + h
            const long long h = r % Hq, bt = r / Hq, t = bt % Tn, b = bt / Tn;
            delta[(b * Hq + h) * Tn + t] = s;
        }
    }
}

template <typename T>
__global__ void attn_dq_finish_kernel(T *dq, const float *acc, long long n, float scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dq, i, ln_load(dq, i) + scale * acc[i]);
}

// ---------------------------------------------------------------------------------------------
// Generic path: CUDA cores, f32 arithmetic, any D <= 256.
// ---------------------------------------------------------------------------------------------

constexpr int GW = 4;        // warps per CTA
constexpr int GQ = 16;       // query rows per CTA (forward, dQ)
constexpr int GQW = GQ / GW; // rows per warp
constexpr int GK = 32;       // keys per tile (one per lane)
constexpr int GKB = 16;      // keys per CTA (dK, dV)
constexpr int GKW = GKB / GW;
constexpr int GMAXD = 256;
constexpr int GDL = GMAXD / 32; // elements of a row per lane

__device__ __forceinline__ float warp_max(float v) {
    for (int x = 16; x > 0; x >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, x));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int x = 16; x > 0; x >>= 1) v += __shfl_xor_sync(0xffffffffu, v, x);
    return v;
}

// rows [row0, row0 + ROWS) of a [*, D] view (row_stride elements) into s[ROWS][ld] f32, zeros past limit
template <typename T>
__device__ __forceinline__ void gen_load(float *s, int rows, int ld, const T *g, long long row_stride, int row0,
                                         int limit, int D) {
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x) {
        const int r = i / D, d = i % D, row = row0 + r;
        s[r * ld + d] = row < limit ? ln_load(g, (long long)row * row_stride + d) : 0.f;
    }
}

__device__ __forceinline__ float gen_dot(const float *x, const float *y, int D) {
    float s = 0.f;
    for (int d = 0; d < D; ++d) s = fmaf(x[d], y[d], s);
    return s;
}

template <typename T>
__global__ void __launch_bounds__(GW * 32) gen_fwd_kernel(AttnParams p) {
    extern __shared__ float gsm[];
    const int D = p.D, DP = D | 1;
    float *sQ = gsm, *sK = sQ + GQ * D, *sV = sK + GK * DP;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nqb = (p.T + GQ - 1) / GQ;
    const long long heads = (long long)p.B * p.Hq;
    const int qb = nqb - 1 - (int)(blockIdx.x / heads);
    const long long bh = blockIdx.x % heads;
    const int h = (int)(bh % p.Hq), b = (int)(bh / p.Hq), hk = h / p.group;
    const int m0 = qb * GQ, off = p.S - p.T;
    const int kv_end = p.causal ? min(p.S, min(p.T, m0 + GQ) + off) : p.S;
    const long long qstride = (long long)p.Hq * D, kstride = (long long)p.Hkv * D;
    const T *gq = (const T *)p.q + ((long long)b * p.T * p.Hq + h) * D;
    const T *gk = (const T *)p.k + ((long long)b * p.S * p.Hkv + hk) * D;
    const T *gv = (const T *)p.v + ((long long)b * p.S * p.Hkv + hk) * D;
    gen_load(sQ, GQ, D, gq, qstride, m0, p.T, D);

    float o[GQW][GDL], m[GQW], l[GQW];
#pragma unroll
    for (int qi = 0; qi < GQW; ++qi) {
        m[qi] = -INFINITY;
        l[qi] = 0.f;
#pragma unroll
        for (int i = 0; i < GDL; ++i) o[qi][i] = 0.f;
    }
    for (int n0 = 0; n0 < kv_end; n0 += GK) {
        __syncthreads(); // the last tile's readers are done
        gen_load(sK, GK, DP, gk, kstride, n0, p.S, D);
        gen_load(sV, GK, D, gv, kstride, n0, p.S, D);
        __syncthreads();
#pragma unroll
        for (int qi = 0; qi < GQW; ++qi) {
            const int r = warp * GQW + qi, t = m0 + r, s = n0 + lane;
            float sc = p.scale * gen_dot(sQ + r * D, sK + lane * DP, D);
            if (s >= p.S || (p.causal && s > t + off)) sc = -INFINITY;
            const float mn = fmaxf(m[qi], warp_max(sc));
            const float mu = mn == -INFINITY ? 0.f : mn;
            const float alpha = expf(m[qi] - mu), pj = expf(sc - mu);
            l[qi] = l[qi] * alpha + warp_sum(pj);
            m[qi] = mn;
#pragma unroll
            for (int i = 0; i < GDL; ++i) o[qi][i] *= alpha;
            for (int j = 0; j < GK; ++j) {
                const float pr = __shfl_sync(0xffffffffu, pj, j);
                const float *vr = sV + j * D;
#pragma unroll
                for (int i = 0; i < GDL; ++i)
                    if (lane + 32 * i < D) o[qi][i] = fmaf(pr, vr[lane + 32 * i], o[qi][i]);
            }
        }
    }
#pragma unroll
    for (int qi = 0; qi < GQW; ++qi) {
        const int t = m0 + warp * GQW + qi;
        if (t >= p.T) continue;
        const float inv = 1.f / l[qi];
        T *go = (T *)p.out + (((long long)b * p.T + t) * p.Hq + h) * D;
#pragma unroll
        for (int i = 0; i < GDL; ++i)
            if (lane + 32 * i < D) ln_store(go, lane + 32 * i, o[qi][i] * inv);
        if (lane == 0) p.lse[((long long)b * p.Hq + h) * p.T + t] = m[qi] + logf(l[qi]);
    }
}

template <typename T>
__global__ void __launch_bounds__(GW * 32) gen_dq_kernel(AttnParams p) {
    extern __shared__ float gsm[];
    const int D = p.D, DP = D | 1;
    float *sQ = gsm, *sdO = sQ + GQ * D, *sK = sdO + GQ * D, *sV = sK + GK * DP;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nqb = (p.T + GQ - 1) / GQ;
    const long long heads = (long long)p.B * p.Hq;
    const int qb = nqb - 1 - (int)(blockIdx.x / heads);
    const long long bh = blockIdx.x % heads;
    const int h = (int)(bh % p.Hq), b = (int)(bh / p.Hq), hk = h / p.group;
    const int m0 = qb * GQ, off = p.S - p.T;
    const int kv_end = p.causal ? min(p.S, min(p.T, m0 + GQ) + off) : p.S;
    const long long qstride = (long long)p.Hq * D, kstride = (long long)p.Hkv * D;
    const long long qbase = ((long long)b * p.T * p.Hq + h) * D;
    const T *gk = (const T *)p.k + ((long long)b * p.S * p.Hkv + hk) * D;
    const T *gv = (const T *)p.v + ((long long)b * p.S * p.Hkv + hk) * D;
    gen_load(sQ, GQ, D, (const T *)p.q + qbase, qstride, m0, p.T, D);
    gen_load(sdO, GQ, D, (const T *)p.dout + qbase, qstride, m0, p.T, D);

    float dq[GQW][GDL], lse[GQW], dl[GQW];
#pragma unroll
    for (int qi = 0; qi < GQW; ++qi) {
        const int t = m0 + warp * GQW + qi;
        const long long i = ((long long)b * p.Hq + h) * p.T + t;
        lse[qi] = t < p.T ? p.lse[i] : INFINITY;
        dl[qi] = t < p.T ? p.delta[i] : 0.f;
#pragma unroll
        for (int k = 0; k < GDL; ++k) dq[qi][k] = 0.f;
    }
    for (int n0 = 0; n0 < kv_end; n0 += GK) {
        __syncthreads();
        gen_load(sK, GK, DP, gk, kstride, n0, p.S, D);
        gen_load(sV, GK, DP, gv, kstride, n0, p.S, D);
        __syncthreads();
#pragma unroll
        for (int qi = 0; qi < GQW; ++qi) {
            const int r = warp * GQW + qi, t = m0 + r, s = n0 + lane;
            float pr = expf(p.scale * gen_dot(sQ + r * D, sK + lane * DP, D) - lse[qi]);
            if (t >= p.T || s >= p.S || (p.causal && s > t + off)) pr = 0.f;
            const float ds = pr * (gen_dot(sdO + r * D, sV + lane * DP, D) - dl[qi]);
            for (int j = 0; j < GK; ++j) {
                const float dsj = __shfl_sync(0xffffffffu, ds, j);
                const float *kr = sK + j * DP;
#pragma unroll
                for (int i = 0; i < GDL; ++i)
                    if (lane + 32 * i < D) dq[qi][i] = fmaf(dsj, kr[lane + 32 * i], dq[qi][i]);
            }
        }
    }
#pragma unroll
    for (int qi = 0; qi < GQW; ++qi) {
        const int t = m0 + warp * GQW + qi;
        if (t >= p.T) continue;
        T *g = (T *)p.dq + (((long long)b * p.T + t) * p.Hq + h) * D;
#pragma unroll
        for (int i = 0; i < GDL; ++i)
            if (lane + 32 * i < D) ln_store(g, lane + 32 * i, ln_load(g, lane + 32 * i) + p.scale * dq[qi][i]);
    }
}

template <typename T>
__global__ void __launch_bounds__(GW * 32) gen_dkv_kernel(AttnParams p) {
    extern __shared__ float gsm[];
    const int D = p.D, DP = D | 1;
    float *sQ = gsm, *sdO = sQ + GK * DP, *sK = sdO + GK * DP, *sV = sK + GKB * D;
    float *sL = sV + GKB * D, *sDl = sL + GK;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long heads = (long long)p.B * p.Hkv;
    const int kb = (int)(blockIdx.x / heads);
    const long long bh = blockIdx.x % heads;
    const int hk = (int)(bh % p.Hkv), b = (int)(bh / p.Hkv);
    const int n0 = kb * GKB, off = p.S - p.T;
    const int t_start = p.causal ? max(0, n0 - off) / GK * GK : 0;
    const long long qstride = (long long)p.Hq * D, kstride = (long long)p.Hkv * D;
    const long long kbase = ((long long)b * p.S * p.Hkv + hk) * D;
    gen_load(sK, GKB, D, (const T *)p.k + kbase, kstride, n0, p.S, D);
    gen_load(sV, GKB, D, (const T *)p.v + kbase, kstride, n0, p.S, D);

    float dk[GKW][GDL], dv[GKW][GDL];
#pragma unroll
    for (int kj = 0; kj < GKW; ++kj)
#pragma unroll
        for (int i = 0; i < GDL; ++i) dk[kj][i] = dv[kj][i] = 0.f;
    for (int h = hk * p.group; h < (hk + 1) * p.group; ++h) {
        const long long qbase = ((long long)b * p.T * p.Hq + h) * D;
        for (int t0 = t_start; t0 < p.T; t0 += GK) {
            __syncthreads();
            gen_load(sQ, GK, DP, (const T *)p.q + qbase, qstride, t0, p.T, D);
            gen_load(sdO, GK, DP, (const T *)p.dout + qbase, qstride, t0, p.T, D);
            if (threadIdx.x < GK) {
                const int t = t0 + threadIdx.x;
                const long long i = ((long long)b * p.Hq + h) * p.T + t;
                sL[threadIdx.x] = t < p.T ? p.lse[i] : INFINITY;
                sDl[threadIdx.x] = t < p.T ? p.delta[i] : 0.f;
            }
            __syncthreads();
            const int t = t0 + lane;
#pragma unroll
            for (int kj = 0; kj < GKW; ++kj) {
                const int r = warp * GKW + kj, s = n0 + r;
                float pr = expf(p.scale * gen_dot(sQ + lane * DP, sK + r * D, D) - sL[lane]);
                if (t >= p.T || s >= p.S || (p.causal && s > t + off)) pr = 0.f;
                const float ds = pr * (gen_dot(sdO + lane * DP, sV + r * D, D) - sDl[lane]);
                for (int j = 0; j < GK; ++j) {
                    const float pj = __shfl_sync(0xffffffffu, pr, j), dsj = __shfl_sync(0xffffffffu, ds, j);
                    const float *qr = sQ + j * DP, *orow = sdO + j * DP;
#pragma unroll
                    for (int i = 0; i < GDL; ++i)
                        if (lane + 32 * i < D) {
                            dv[kj][i] = fmaf(pj, orow[lane + 32 * i], dv[kj][i]);
                            dk[kj][i] = fmaf(dsj, qr[lane + 32 * i], dk[kj][i]);
                        }
                }
            }
        }
    }
#pragma unroll
    for (int kj = 0; kj < GKW; ++kj) {
        const int s = n0 + warp * GKW + kj;
        if (s >= p.S) continue;
        const long long row = (((long long)b * p.S + s) * p.Hkv + hk) * D;
#pragma unroll
        for (int i = 0; i < GDL; ++i) {
            const int d = lane + 32 * i;
            if (d >= D) continue;
            if (p.dk) ln_store((T *)p.dk, row + d, ln_load((const T *)p.dk, row + d) + p.scale * dk[kj][i]);
            if (p.dv) ln_store((T *)p.dv, row + d, ln_load((const T *)p.dv, row + d) + dv[kj][i]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

// Raises a kernel's dynamic shared-memory limit (once per kernel) and launches it.
template <typename K>
static int launch(K kernel, long long blocks, int threads, size_t smem, const AttnParams &p, const char *what) {
    if (blocks <= 0) return LN_OK;
    if (blocks > 0x7fffffffLL) return ln_fail("attention: %s needs %lld blocks", what, blocks);
    if (smem > 48 * 1024 && ln_kernel_smem(kernel, smem, what)) return LN_ERR;
    kernel<<<(unsigned)blocks, threads, smem, ln_stream()>>>(p);
    LN_CUDA_LAUNCHED(what);
    return LN_OK;
}

static int fill_params(ln_node *n, const ln_tensor *q, const ln_tensor *k, const ln_tensor *v, AttnParams *p) {
    if (q->dtype != k->dtype || q->dtype != v->dtype)
        return ln_fail("attention: the CUDA kernel needs q, k, v of one dtype, got %s, %s, %s", ln_dtype_name(q->dtype),
                       ln_dtype_name(k->dtype), ln_dtype_name(v->dtype));
    if (q->dtype != LN_F32 && q->dtype != LN_BF16)
        return ln_fail("attention: the CUDA kernel takes f32 or bf16, not %s", ln_dtype_name(q->dtype));
    *p = AttnParams{};
    p->B = (int)q->shape[0];
    p->T = (int)q->shape[1];
    p->Hq = (int)q->shape[2];
    p->D = (int)q->shape[3];
    p->S = (int)k->shape[1];
    p->Hkv = (int)k->shape[2];
    p->group = p->Hq / p->Hkv;
    p->causal = n->iarg[0] != 0;
    p->scale = (float)n->farg[0];
    // Grid groups (grid_map). Forward: all heads in one group, so the whole grid runs heaviest
    // q-block first; its K, V reuse in L2 mattered less than that balance (head-major was slower).
    // Backward: as many (kv head, batch) pairs as keep their Q, dO and f32 dQ scratch (8 T D bytes
    // per query head) within ~16 MB of L2, 1 to 8: the kv-block-major order re-read every head's
    // Q, dO and dQ from DRAM (docs/attention-kernel.md).
    p->fwd_group = 0;
    const double per_head = 8.0 * p->T * p->D * p->group;
    p->bwd_group = per_head > 0 ? (int)fmin(8.0, fmax(1.0, 16.0 * (1 << 20) / per_head)) : 1;
    p->q = q->data;
    p->k = k->data;
    p->v = v->data;
    if (p->D > GMAXD) return ln_fail("attention: the CUDA kernel takes head dim D <= %d, got %d", GMAXD, p->D);
    if (q->shape[1] > 0x7fffffff || k->shape[1] > 0x7fffffff) return ln_fail("attention: sequence too long");
    return LN_OK;
}

static bool fast_path(const AttnParams &p, ln_dtype dtype) { return dtype == LN_BF16 && (p.D == 64 || p.D == 128); }

static size_t gen_fwd_smem(int D) { return sizeof(float) * (size_t)(GQ * D + GK * (D | 1) + GK * D); }
static size_t gen_dq_smem(int D) { return sizeof(float) * (size_t)(2 * GQ * D + 2 * GK * (D | 1)); }
static size_t gen_dkv_smem(int D) { return sizeof(float) * (size_t)(2 * GK * (D | 1) + 2 * GKB * D + 2 * GK); }

template <class Cfg>
static int fast_forward_cfg(const AttnParams &p) {
    long long blocks = (long long)((p.T + Cfg::Br - 1) / Cfg::Br) * p.B * p.Hq;
    if (p.scale > 0)
        return launch(fa_fwd_kernel<Cfg, true>, blocks, Cfg::NT, Cfg::smem, p, "attention forward (bf16 mma)");
    return launch(fa_fwd_kernel<Cfg, false>, blocks, Cfg::NT, Cfg::smem, p, "attention forward (bf16 mma)");
}

// Tiles as measured best on an H100 (docs/attention-kernel.md): forward 4 warps x 32 query rows,
// kv tile 64; backward the FA2-layout kernel, 3 stages of (Q, dO, lse, delta), float2 dQ atomics,
// q tile 64 at D = 128 and 128 at D = 64 (half the steps, the same registers).
template <int D>
static int fast_forward(const AttnParams &p) {
    return fast_forward_cfg<FwdCfg<D, 64, 4, 2>>(p);
}

template <class Cfg>
static int fast_backward_cfg(const AttnParams &p) {
    long long blocks = (long long)((p.S + Cfg::Bc - 1) / Cfg::Bc) * p.B * p.Hkv;
    return launch(fa_bwd_kernel<Cfg>, blocks, Cfg::NT, Cfg::smem, p, "attention backward (bf16 mma)");
}

template <int D>
static int fast_backward(const AttnParams &p) {
    return fast_backward_cfg<BwdCfg<D, 3, 2, D == 64 ? 128 : 64>>(p);
}

} // namespace

// train.attention_impl: cuDNN's fused SDPA when asked for, or (auto) whenever it takes the shape,
// since it is the faster of the two on Hopper (docs/PERF.md); our kernel otherwise. Both save the
// same lse, so forward and backward may even come from different kernels.
static int pick_cudnn(const ln_node *n, bool *use) {
    ln_attention_impl impl = ln_get_attention_impl();
    *use = false;
    if (impl == LN_ATTN_OWN) return LN_OK;
    *use = ln_attention_cudnn_supported(n) == 1;
    if (!*use && impl == LN_ATTN_CUDNN)
        return ln_fail("attention: train.attention_impl is cudnn but cuDNN cannot run this shape: %s",
                       ln_attention_cudnn_unsupported_reason());
    return LN_OK;
}

extern "C" int ln_attention_forward_cuda(ln_node *n) {
    bool cudnn;
    if (pick_cudnn(n, &cudnn)) return LN_ERR;
    if (cudnn) return ln_attention_cudnn_forward(n);
    ln_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *out = n->out[0];
    AttnParams p;
    if (fill_params(n, q, k, v, &p)) return LN_ERR;
    const int64_t lse_shape[3] = {q->shape[0], q->shape[2], q->shape[1]};
    ln_tensor *lse = ln_arena_tensor(LN_F32, LN_CUDA, 3, lse_shape);
    if (!lse) return LN_ERR;
    p.out = out->data;
    p.lse = (float *)lse->data;
    if ((long long)p.B * p.T * p.Hq > 0 && p.D > 0) {
        int status;
        if (fast_path(p, q->dtype) && forward_wgmma_available(p.D))
            status = forward_wgmma(p);
        else if (fast_path(p, q->dtype))
            status = p.D == 64 ? fast_forward<64>(p) : fast_forward<128>(p);
        else {
            long long blocks = (long long)((p.T + GQ - 1) / GQ) * p.B * p.Hq;
            LN_DISPATCH_FLOAT(q->dtype, "attention", {
                status = launch(gen_fwd_kernel<T>, blocks, GW * 32, gen_fwd_smem(p.D), p, "attention forward");
            });
        }
        if (status) return status;
    }
    // as the CPU forward: o and lse saved once computed (slots 3, 4)
    ln_node_save(n, out);
    ln_node_save(n, lse);
    return LN_OK;
}

extern "C" int ln_attention_backward_cuda(ln_node *n) {
    bool cudnn;
    if (pick_cudnn(n, &cudnn)) return LN_ERR;
    if (cudnn) return ln_attention_cudnn_backward(n);
    ln_tensor *q = ln_node_saved(n, 0), *k = ln_node_saved(n, 1), *v = ln_node_saved(n, 2);
    ln_tensor *o = ln_node_saved(n, 3), *lse = ln_node_saved(n, 4), *out = n->out[0];
    if (!out->grad) return LN_OK;
    const bool need_q = n->in[0]->requires_grad, need_k = n->in[1]->requires_grad, need_v = n->in[2]->requires_grad;
    if (!need_q && !need_k && !need_v) return LN_OK;
    AttnParams p;
    if (fill_params(n, q, k, v, &p)) return LN_ERR;
    ln_tensor *dq = need_q ? ln_grad_of(n->in[0]) : NULL, *dk = need_k ? ln_grad_of(n->in[1]) : NULL;
    ln_tensor *dv = need_v ? ln_grad_of(n->in[2]) : NULL;
    if ((need_q && !dq) || (need_k && !dk) || (need_v && !dv)) return LN_ERR;
    if ((long long)p.B * p.T * p.Hq == 0 || p.D == 0) return LN_OK;
    const int64_t delta_shape[3] = {p.B, p.Hq, p.T};
    ln_tensor *delta = ln_arena_tensor(LN_F32, LN_CUDA, 3, delta_shape);
    if (!delta) return LN_ERR;
    p.o = o->data;
    p.dout = out->grad->data;
    p.lse = (float *)lse->data;
    p.delta = (float *)delta->data;
    p.dq = dq ? dq->data : NULL;
    p.dk = dk ? dk->data : NULL;
    p.dv = dv ? dv->data : NULL;

    const long long rows = (long long)p.B * p.T * p.Hq;
    const unsigned dblocks = (unsigned)((rows + 7) / 8 < 65535LL * 16 ? (rows + 7) / 8 : 65535LL * 16);
    LN_DISPATCH_FLOAT(q->dtype, "attention", {
        attn_delta_kernel<T><<<dblocks, 256, 0, ln_stream()>>>((const T *)o->data, (const T *)out->grad->data,
                                                               p.delta, rows, p.T, p.Hq, p.D);
    });
    LN_CUDA_LAUNCHED("attention backward delta");

    if (fast_path(p, q->dtype)) {
        ln_tensor *acc = NULL;
        if (need_q) {
            acc = ln_arena_tensor(LN_F32, LN_CUDA, 4, q->shape); // zeroed
            if (!acc) return LN_ERR;
            p.dq_acc = (float *)acc->data;
        }
        int status = backward_wgmma_available(p.D) ? backward_wgmma(p)
                     : p.D == 64                   ? fast_backward<64>(p)
                                                   : fast_backward<128>(p);
        if (status) return status;
        if (need_q) {
            long long nel = q->numel;
            unsigned blocks = ln_blocks(nel, 256) < 65535u * 16 ? ln_blocks(nel, 256) : 65535u * 16;
            attn_dq_finish_kernel<bf16><<<blocks, 256, 0, ln_stream()>>>((bf16 *)dq->data, p.dq_acc, nel, p.scale);
            LN_CUDA_LAUNCHED("attention backward dq");
        }
        return LN_OK;
    }
    LN_DISPATCH_FLOAT(q->dtype, "attention", {
        if (need_k || need_v) {
            long long blocks = (long long)((p.S + GKB - 1) / GKB) * p.B * p.Hkv;
            if (launch(gen_dkv_kernel<T>, blocks, GW * 32, gen_dkv_smem(p.D), p, "attention backward dk dv"))
                return LN_ERR;
        }
        if (need_q) {
            long long blocks = (long long)((p.T + GQ - 1) / GQ) * p.B * p.Hq;
            if (launch(gen_dq_kernel<T>, blocks, GW * 32, gen_dq_smem(p.D), p, "attention backward dq")) return LN_ERR;
        }
    });
    return LN_OK;
}
