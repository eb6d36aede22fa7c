// The attention forward on Hopper's warpgroup MMA (wgmma, sm_90a), bf16, D = 64 or 128: the same
// algorithm, grid order, softmax and results layout as attention.cu's mma.sync forward (which stays
// the kernel for other GPUs and the reference this one is tested against), with the two products
// issued a warpgroup at a time from shared memory:
//   one CTA per (q-block of Br, head, batch), a warpgroup per 64 query rows; kv blocks of Bc,
//   double-buffered by cp.async into 128-byte-swizzled tiles (wgmma.cuh);
//   S = Q K^T: m64nBck16 per 16 of D, Q and K from shared memory (both K-major);
//   mask + online softmax in registers (fwd_softmax, attention_common.cuh), P packed to bf16 A
//   fragments; O += P V: m64nDk16 per 16 keys, P from registers, V from shared memory MN-major.
// Every wgmma group is waited for before its results are read, and the CTA's barriers keep its
// warpgroups in step, so a CTA's tensor cores wait during its softmax (what FA3's warpgroup
// ping-pong removes); the tiles kept (Br = Bc = 64, one warpgroup, two CTAs an SM: measured against
// Br = Bc = 128 with two warpgroups, docs/attention-kernel.md) let one CTA's softmax overlap the
// other's products.
#include "autograd/cuda/wgmma.cuh"
#include "autograd/ops/attention/attention_common.cuh"

extern "C" {
#include "autograd/ops.h"
}

namespace ln_attn {
namespace {

using namespace ln_wgmma;

// Tiles: Br query rows a CTA (a warpgroup per 64), Bc keys a kv block.
template <int D, int Br, int Bc>
struct WgmmaCfg {
    static constexpr int kThreads = 2 * Br; // a warpgroup per 64 rows; 2 CTAs an SM at Br = 64
    static constexpr uint32_t kQ = Br * D * sizeof(bf16), kKV = Bc * D * sizeof(bf16); // tile bytes
    static constexpr int smem = (int)(kQ + 4 * kKV) + 1024; // Q, 2 stages of K and V, 1 KB to align them
};

template <int D, bool kPos, int Br, int Bc>
__global__ void __launch_bounds__(2 * Br, Br == 64 ? 2 : 1) fa_fwd_wgmma_kernel(AttnParams p) {
#ifdef LN_WGMMA
    using Cfg = WgmmaCfg<D, Br, Bc>;
    constexpr int NTL = Bc / 8, kThreads = Cfg::kThreads;
    constexpr uint32_t kTile = Cfg::kKV;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t sQ = (smem_u32(smem_raw) + 1023u) & ~1023u, sK = sQ + Cfg::kQ, sV = sK + 2 * kTile;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const int wrow = warp * 16; // the warp's first row in the q-block: warpgroup wg holds rows 64 wg..

    const FwdBlock<D> fb(p, Br, Bc);
    const int h = fb.h, b = fb.b, m0 = fb.m0, off = p.S - p.T, nkb = fb.nkb;
    const long long qstride = fb.qstride, kstride = fb.kstride;
    const bf16 *gq = fb.q, *gk = fb.k, *gv = fb.v;

    load_tile_sw128<Br, D, kThreads>(sQ, gq, qstride, m0, p.T, tid);
    load_tile_sw128<Bc, D, kThreads>(sK, gk, kstride, 0, p.S, tid);
    load_tile_sw128<Bc, D, kThreads>(sV, gv, kstride, 0, p.S, tid);
    cp_async_commit();

    FwdState<D, 1> st;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) st.o[0][dt][e] = 0.f;
    st.m[0][0] = st.m[0][1] = -INFINITY;
    st.l[0][0] = st.l[0][1] = 0.f;
    const float sl2 = p.scale * kLog2e;

    for (int j = 0; j < nkb; ++j) {
        const int sg = j & 1;
        if (j + 1 < nkb) { // prefetch the next kv block into the other stage (freed by the last barrier)
            load_tile_sw128<Bc, D, kThreads>(sK + (sg ^ 1) * kTile, gk, kstride, (j + 1) * Bc, p.S, tid);
            load_tile_sw128<Bc, D, kThreads>(sV + (sg ^ 1) * kTile, gv, kstride, (j + 1) * Bc, p.S, tid);
            cp_async_commit();
        }
        stage_ready(j + 1 < nkb);
        const int n0 = j * Bc;
        const bool need_mask = n0 + Bc > p.S || (p.causal && n0 + Bc - 1 > m0 + off);

        float s[1][NTL][4];
#pragma unroll
        for (int nt = 0; nt < NTL; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[0][nt][e] = 0.f;
        fence_operand(s[0]);
        fence();
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks)
            mma_ss<Bc>(s[0], desc_kmajor<Br>(sQ, wg * 64, ks), desc_kmajor<Bc>(sK + sg * kTile, 0, ks), ks > 0);
        commit();
        wait<0>();
        fence_operand(s[0]);

        uint32_t pf[1][NTL / 2][4];
        fwd_softmax<D, 1, NTL, kPos>(st, s, pf, wrow, m0, n0, need_mask, p, sl2, lane);

        fence_operand(st.o[0]);
        fence();
#pragma unroll
        for (int kk = 0; kk < Bc / 16; ++kk)
            mma_rs_t<D>(st.o[0], pf[0][kk], desc_mnmajor<Bc>(sV + sg * kTile, kk * 16), true);
        commit();
        wait<0>();
        fence_operand(st.o[0]);
        __syncthreads(); // K, V of this stage read by every warpgroup before the next prefetch
    }
    fwd_store<D, 1, kPos>(st, p, b, h, m0, wrow, sl2, lane);
#else
    __trap(); // an image without wgmma (forward_wgmma_available guards against launching it)
#endif
}

template <int D, bool kPos, int Br, int Bc>
int launch_wgmma(const AttnParams &p) {
    using Cfg = WgmmaCfg<D, Br, Bc>;
    const long long blocks = (long long)((p.T + Br - 1) / Br) * p.B * p.Hq;
    if (blocks <= 0) return LN_OK;
    if (blocks > 0x7fffffffLL) return ln_fail("attention: the wgmma forward needs %lld blocks", blocks);
    auto kernel = fa_fwd_wgmma_kernel<D, kPos, Br, Bc>;
    if (ln_kernel_smem(kernel, Cfg::smem, "attention forward (bf16 wgmma)")) return LN_ERR;
    kernel<<<(unsigned)blocks, Cfg::kThreads, Cfg::smem, ln_stream()>>>(p);
    LN_CUDA_LAUNCHED("attention forward (bf16 wgmma)");
    return LN_OK;
}

// The tiles: one CTA of one warpgroup per 64 query rows, kv blocks of 64, two CTAs an SM
// (80 KB of shared memory each at D = 128), so one's softmax can overlap the other's products.
constexpr int kBr = 64, kBc = 64;

} // namespace

// The device is an sm_90 one and this build holds the sm_90a image of the kernels (their binary
// version then reads 90).
bool wgmma_image_available() {
    static int available = -1;
    if (available < 0) {
        int dev = 0, major = 0, minor = 0;
        cudaFuncAttributes attr;
        available = cudaGetDevice(&dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                    major == 9 && minor == 0 &&
                    cudaFuncGetAttributes(&attr, fa_fwd_wgmma_kernel<128, true, kBr, kBc>) == cudaSuccess &&
                    attr.binaryVersion == 90;
        cudaGetLastError(); // a failed query above is an answer, not an error to report later
    }
    return available;
}

// LINNET_ATTN_FWD=mma picks the mma.sync forward instead.
bool forward_wgmma_available(int D) {
    const char *pick = getenv("LINNET_ATTN_FWD");
    return (D == 64 || D == 128) && wgmma_image_available() && !(pick && strcmp(pick, "mma") == 0);
}

int forward_wgmma(const AttnParams &p) {
    if (p.D == 64) return p.scale > 0 ? launch_wgmma<64, true, kBr, kBc>(p) : launch_wgmma<64, false, kBr, kBc>(p);
    return p.scale > 0 ? launch_wgmma<128, true, kBr, kBc>(p) : launch_wgmma<128, false, kBr, kBc>(p);
}

} // namespace ln_attn
