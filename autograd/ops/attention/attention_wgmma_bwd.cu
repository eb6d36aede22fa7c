// The attention backward on Hopper's warpgroup MMA (wgmma, sm_90a), bf16, D = 64 or 128: the
// algorithm, grid order and results of attention.cu's mma.sync backward (which stays the kernel for
// other GPUs, and the reference this one is tested against), with every product issued a warpgroup
// at a time. One CTA per (kv-block of 128 keys, kv head, batch), 2 warpgroups of 64 keys; it loops
// over (query head of the group, q-block of Br: 64 at D = 128, 128 at D = 64) with Q, dO, lse and
// delta double-buffered by cp.async into 128-byte-swizzled tiles (wgmma.cuh). Keys are the rows (M)
// of the per-key products, so their A operands are K, V from shared memory or P^T, dS^T from
// registers:
//   S^T = K Q^T, dP^T = V dO^T      m64nBrk16 per 16 of D, Q and dO K-major
//   P^T = exp(S^T - lse), dS^T = P^T (dP^T - delta)     in registers (lse, delta per column)
//   dV += P^T dO, dK += dS^T Q      m64nDk16 per 16 queries, dO and Q MN-major
//   dQ += dS K                      m64n64k16 per 16 keys, a warpgroup's half of D (Br = 64) or of
//                                   the queries (Br = 128): dS^T through shared memory, read
//                                   MN-major as A (trans-a), K MN-major; f32 atomics into the
//                                   scratch, as the mma.sync kernel
// dK, dV stay in registers over the whole loop (the GQA sum inside the CTA), added to the
// gradients at the end. The dQ product overlaps the dV / dK one; the barriers keep the
// warpgroups in step (no producer warp or ping-pong yet: docs/attention-kernel.md).
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/wgmma.cuh"
#include "autograd/ops/attention/attention_common.cuh"

extern "C" {
#include "autograd/ops.h"
}

namespace ln_attn {
namespace {

using namespace ln_wgmma;

// D = 128: q-blocks of 64, each warpgroup's dQ half of D; D = 64: q-blocks of 128 (the mma.sync
// kernel's too: half the steps), each warpgroup's dQ half of the queries.
template <int D_>
struct BwdWgmmaCfg {
    static constexpr int D = D_, Bc = 128, Br = D == 128 ? 64 : 128, kStages = 2, kThreads = 256; // a warpgroup per 64 keys
    static constexpr bool kSplitQ = Br == 128; // dQ: warpgroups split the queries (else D)
    static constexpr uint32_t kKV = Bc * D * sizeof(bf16), kQ = Br * D * sizeof(bf16), kDS = Bc * Br * sizeof(bf16);
    // K, V; stages of Q, dO; dS^T; stages of lse, delta; 1 KB to align the tiles
    static constexpr int smem = (int)(2 * kKV + 2 * kStages * kQ + kDS) + 2 * kStages * Br * (int)sizeof(float) + 1024;
};

template <int D_>
__global__ void __launch_bounds__(256, 1) fa_bwd_wgmma_kernel(AttnParams p) {
#ifdef LN_WGMMA
    using Cfg = BwdWgmmaCfg<D_>;
    constexpr int D = Cfg::D, Bc = Cfg::Bc, Br = Cfg::Br, NS = Cfg::kStages, NT = Cfg::kThreads;
    constexpr int NQ = Br / 8; // n-tiles of 8 queries in S^T, dP^T
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t base = smem_u32(smem_raw), sK = (base + 1023u) & ~1023u, sV = sK + Cfg::kKV,
                   sQ = sV + Cfg::kKV, sdO = sQ + NS * Cfg::kQ, sdS = sdO + NS * Cfg::kQ;
    unsigned char *const dS_ptr = smem_raw + (sdS - base);
    float *const sL = reinterpret_cast<float *>(dS_ptr + Cfg::kDS); // [NS][Br] lse (natural log)
    float *const sDl = sL + NS * Br;                                 // [NS][Br] delta
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, tg = lane & 3;
    const int krow = wg * 64 + (warp & 3) * 16 + g; // this thread's keys in the block: krow, krow + 8

    const BwdBlock<D> bb(p, Br, Bc);
    const int hk = bb.hk, b = bb.b, n0 = bb.n0, off = p.S - p.T, iters = bb.iters;
    const float sl2 = p.scale * kLog2e;

    auto load_q = [&](int it, int sg) {
        int h, m0;
        bb.step(it, h, m0);
        const long long qb = bb.q_base(h);
        load_tile_sw128<Br, D, NT>(sQ + sg * Cfg::kQ, (const bf16 *)p.q + qb, bb.qstride, m0, p.T, tid);
        load_tile_sw128<Br, D, NT>(sdO + sg * Cfg::kQ, (const bf16 *)p.dout + qb, bb.qstride, m0, p.T, tid);
        load_lse_delta<Br, NT>(sL + sg * Br, sDl + sg * Br, p, b, h, m0, tid);
    };

    load_tile_sw128<Bc, D, NT>(sK, bb.k, bb.kstride, n0, p.S, tid);
    load_tile_sw128<Bc, D, NT>(sV, bb.v, bb.kstride, n0, p.S, tid);
    if (iters > 0) load_q(0, 0);
    cp_async_commit();

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[nt][e] = dv[nt][e] = 0.f;

    for (int it = 0; it < iters; ++it) {
        const int sg = it % NS;
        if (it + 1 < iters) { // prefetch the next step's tiles into the other stage (freed by the last barrier)
            load_q(it + 1, (it + 1) % NS);
            cp_async_commit();
        }
        stage_ready(it + 1 < iters);
        int h, m0;
        bb.step(it, h, m0);
        const bool need_mask = n0 + Bc > p.S || (p.causal && n0 + Bc - 1 > m0 + off);
        const uint32_t tQ = sQ + sg * Cfg::kQ, tdO = sdO + sg * Cfg::kQ;
        const float *lse = sL + sg * Br, *delta = sDl + sg * Br;

        // S^T = K Q^T and dP^T = V dO^T: this warpgroup's 64 keys x the 64 queries
        float s[NQ][4], dp[NQ][4];
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
        fence_operand(s);
        fence_operand(dp);
        fence();
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
            mma_ss<Br>(s, desc_kmajor<Bc>(sK, wg * 64, ks), desc_kmajor<Br>(tQ, 0, ks), ks > 0);
            mma_ss<Br>(dp, desc_kmajor<Bc>(sV, wg * 64, ks), desc_kmajor<Br>(tdO, 0, ks), ks > 0);
        }
        commit();
        wait<0>();
        fence_operand(s);
        fence_operand(dp);

        // P^T and dS^T, packed to bf16 as the A fragments of k-steps of 16 queries (the C fragment of
        // n-tiles 2kk, 2kk+1 is the A fragment of k-step kk); dS^T also to shared memory for dQ, as
        // rows of 64 queries (128 bytes) in the tiles' swizzle
        uint32_t pf[Br / 16][4], df[Br / 16][4];
#pragma unroll
        for (int nt = 0; nt < NQ; ++nt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int key = n0 + krow + 8 * r;
                float pr[2], ds[2];
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int qi = nt * 8 + 2 * tg + e;
                    pr[e] = ex2(s[nt][2 * r + e] * sl2 - lse[qi] * kLog2e);
                    if (need_mask && (key >= p.S || (p.causal && key > m0 + qi + off))) pr[e] = 0.f;
                    ds[e] = pr[e] * (dp[nt][2 * r + e] - delta[qi]);
                }
                pf[nt >> 1][(nt & 1) * 2 + r] = pack_bf16(pr[0], pr[1]);
                df[nt >> 1][(nt & 1) * 2 + r] = pack_bf16(ds[0], ds[1]);
                if (p.dq_acc) {
                    const int row = krow + 8 * r;
                    // panels of 64 queries (Br / 64 of them), Bc rows of 128 bytes each
                    *reinterpret_cast<uint32_t *>(dS_ptr + (nt >> 3) * (Bc * 128) + row * 128 +
                                                  (((nt & 7) ^ (row & 7)) << 4) + tg * 4) =
                        df[nt >> 1][(nt & 1) * 2 + r];
                }
            }

        // dV += P^T dO, dK += dS^T Q: 64 keys x D, over the 64 queries
        fence_operand(dv);
        fence_operand(dk);
        fence();
#pragma unroll
        for (int kk = 0; kk < Br / 16; ++kk) {
            mma_rs_t<D>(dv, pf[kk], desc_mnmajor<Br>(tdO, kk * 16), true);
            mma_rs_t<D>(dk, df[kk], desc_mnmajor<Br>(tQ, kk * 16), true);
        }
        commit();

        if (p.dq_acc) {
            fence_proxy_async(); // this thread's dS^T stores, for the tensor cores
            __syncthreads();     // both warpgroups' dS^T
            // dQ += dS K over the block's 128 keys: 64 queries x 64 columns of D a warpgroup (its half
            // of the queries at Br = 128, of D at Br = 64)
            const int q0 = Cfg::kSplitQ ? wg * 64 : 0, c0 = Cfg::kSplitQ ? 0 : wg * 64;
            float dq[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) dq[nt][e] = 0.f;
            fence_operand(dq);
            fence();
#pragma unroll
            for (int kk = 0; kk < Bc / 16; ++kk)
                mma_ss_tt<64>(dq, desc_mnmajor<Bc>(sdS + (q0 / 64) * (Bc * 128), kk * 16),
                              desc_mnmajor<Bc>(sK + (c0 / 64) * (Bc * 128), kk * 16), kk > 0);
            commit();
            wait<0>();
            fence_operand(dq);
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int t = m0 + q0 + (warp & 3) * 16 + g + 8 * r;
                if (t >= p.T) continue;
                float *dst = p.dq_acc + bb.q_base(h) + (long long)t * bb.qstride + c0 + 2 * tg;
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) atomic_add2(dst + nt * 8, dq[nt][2 * r], dq[nt][2 * r + 1]);
            }
        } else {
            wait<0>();
        }
        keep_fragments(pf); // read by the dV / dK products until the wait above
        keep_fragments(df);
        fence_operand(dv);
        fence_operand(dk);
        __syncthreads(); // this stage's Q, dO and dS^T read by every warpgroup before they are rewritten
    }
    if (iters == 0) cp_async_wait<0>();

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = n0 + krow + 8 * r;
        if (key >= p.S) continue;
        const long long row = (((long long)b * p.S + key) * p.Hkv + hk) * D + 2 * tg;
        if (p.dk)
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt)
                add_bf16x2((bf16 *)p.dk + row + nt * 8, p.scale * dk[nt][2 * r], p.scale * dk[nt][2 * r + 1]);
        if (p.dv)
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt)
                add_bf16x2((bf16 *)p.dv + row + nt * 8, dv[nt][2 * r], dv[nt][2 * r + 1]);
    }
#else
    __trap(); // an image without wgmma (backward_wgmma_available guards against launching it)
#endif
}

} // namespace

bool backward_wgmma_available(int D) {
    const char *pick = getenv("LINNET_ATTN_BWD");
    return (D == 64 || D == 128) && wgmma_image_available() && !(pick && strcmp(pick, "mma") == 0);
}

template <int D>
static int launch_bwd(const AttnParams &p) {
    using Cfg = BwdWgmmaCfg<D>;
    const long long blocks = (long long)((p.S + Cfg::Bc - 1) / Cfg::Bc) * p.B * p.Hkv;
    if (blocks <= 0) return LN_OK;
    if (blocks > 0x7fffffffLL) return ln_fail("attention: the wgmma backward needs %lld blocks", blocks);
    if (ln_kernel_smem(fa_bwd_wgmma_kernel<D>, Cfg::smem, "attention backward (bf16 wgmma)")) return LN_ERR;
    fa_bwd_wgmma_kernel<D><<<(unsigned)blocks, Cfg::kThreads, Cfg::smem, ln_stream()>>>(p);
    LN_CUDA_LAUNCHED("attention backward (bf16 wgmma)");
    return LN_OK;
}

int backward_wgmma(const AttnParams &p) { return p.D == 64 ? launch_bwd<64>(p) : launch_bwd<128>(p); }

} // namespace ln_attn
