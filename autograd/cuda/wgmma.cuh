// wgmma (sm_90a) building blocks for the tensor-core kernels: shared-memory tiles in the 128-byte
// swizzled layout, their matrix descriptors, the warpgroup MMA wrappers (m64nNk16, bf16 in, f32
// accumulate; N = 64 or 128) and the fences around them. A warpgroup is 4 consecutive warps starting
// at a warp index divisible by 4; its accumulators hold, per warp, 16 rows in the m16n8 C-fragment
// layout n-tile by n-tile, the same as mma.sync's (mma.cuh), so code around either can be shared.
// The wrappers assemble only for sm_90a: call them from code under LN_WGMMA.
#ifndef LN_WGMMA_CUH
#define LN_WGMMA_CUH

#include <stdint.h>

#include "autograd/cuda/mma.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LN_WGMMA 1
#endif

namespace ln_wgmma {

typedef __nv_bfloat16 bf16;

// A [ROWS][D] bf16 tile as D / 64 panels of [ROWS][64] (128-byte rows), each row's eight 16-byte
// chunks stored at chunk ^ (row % 8): the 128-byte swizzle. Panels start 1024-byte aligned.
// Rows [row0, row0 + ROWS) of a [*, D] global view with row_stride, rows >= limit zero-filled, by
// 16-byte cp.async: each thread one chunk of every (NT / (D / 8))-th row, so its swizzle (row % 8)
// stays the same down the rows.
template <int ROWS, int D, int NT>
__device__ __forceinline__ void load_tile_sw128(uint32_t s, const bf16 *g, long long row_stride, int row0, int limit,
                                                int tid) {
    constexpr int CH = D / 8, RPI = NT / CH;
    static_assert(D % 64 == 0 && NT % CH == 0 && ROWS % RPI == 0 && RPI % 8 == 0, "tile not a multiple of the CTA");
    const int r0 = tid / CH, c = tid % CH;
    const bf16 *src = g + (long long)(row0 + r0) * row_stride + c * 8;
    const uint32_t dst = s + (c >> 3) * (ROWS * 128) + r0 * 128 + (((c & 7) ^ (r0 & 7)) << 4);
#pragma unroll
    for (int it = 0; it < ROWS / RPI; ++it) {
        const bool valid = row0 + r0 + it * RPI < limit;
        ln_mma::cp_async16(dst + it * RPI * 128, valid ? src : g, valid);
        src += RPI * row_stride;
    }
}

// Matrix descriptor of a 128-byte-swizzled operand: start address, leading and stride byte offsets.
__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)((lbo & 0x3FFFF) >> 4) << 16 |
           (uint64_t)((sbo & 0x3FFFF) >> 4) << 32 | 1ull << 62;
}

// K-major operand (A [M][K] or B [N][K], K contiguous) from a [ROWS][D] tile: its rows row0.. (a
// multiple of 8), k-step ks (columns 16 ks..). Within a panel the k-steps are 32 bytes apart (the
// hardware applies the swizzle to the final address); 8-row groups 1024 bytes apart.
template <int ROWS>
__device__ __forceinline__ uint64_t desc_kmajor(uint32_t tile, int row0, int ks) {
    return desc_sw128(tile + (ks >> 2) * (ROWS * 128) + row0 * 128 + (ks & 3) * 32, 16, 1024);
}

// MN-major operand (B [K][N] with N contiguous, or A [K][M] with M contiguous: a [ROWS = K][D = N or
// M] tile): k rows k0.. (a multiple of 8), all of N (M): 64-column panels ROWS * 128 bytes apart
// (leading), 8-row groups 1024 (stride). One panel's N (M) starts at its panel's address.
template <int ROWS>
__device__ __forceinline__ uint64_t desc_mnmajor(uint32_t tile, int k0) {
    return desc_sw128(tile + k0 * 128, ROWS * 128, 1024);
}

#ifdef LN_WGMMA
// Orders the warpgroup's register accesses before the wgmma that follow.
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N committed groups are pending.
template <int N>
__device__ __forceinline__ void wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared memory written by this thread's ordinary (or cp.async) stores, made visible to the
// tensor cores' reads (the async proxy); a barrier after it covers the other threads' writes.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// A stage of cp.async tiles ready for every thread and the tensor cores: all committed groups but
// the newest landed (more: the next stage's group is in flight) or all of them, then the fence and
// the CTA's barrier.
__device__ __forceinline__ void stage_ready(bool more) {
    if (more) ln_mma::cp_async_wait<1>();
    else ln_mma::cp_async_wait<0>();
    fence_proxy_async(); // this thread's copies, for the tensor cores; the barrier, everyone's
    __syncthreads();
}
#endif

// Keeps the compiler from moving accesses of accumulators across an asynchronous MMA.
template <int R, int C>
__device__ __forceinline__ void fence_operand(float (&d)[R][C]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < C; ++j) asm volatile("" : "+f"(d[i][j])::"memory");
}

template <int N>
__device__ void mma_ss(float (&d)[N / 8][4], uint64_t a, uint64_t b, bool accumulate);
template <int N>
__device__ void mma_rs_t(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b, bool accumulate);
template <int N>
__device__ void mma_ss_tt(float (&d)[N / 8][4], uint64_t a, uint64_t b, bool accumulate);

#ifdef LN_WGMMA
// The operand lists of the accumulators: n-tiles i.. of d, four floats each.
#define LN_WGMMA_ACC4(d, i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define LN_WGMMA_ACC32(d) \
    LN_WGMMA_ACC4(d, 0), LN_WGMMA_ACC4(d, 1), LN_WGMMA_ACC4(d, 2), LN_WGMMA_ACC4(d, 3), LN_WGMMA_ACC4(d, 4), \
        LN_WGMMA_ACC4(d, 5), LN_WGMMA_ACC4(d, 6), LN_WGMMA_ACC4(d, 7)
#define LN_WGMMA_ACC64(d) \
    LN_WGMMA_ACC32(d), LN_WGMMA_ACC4(d, 8), LN_WGMMA_ACC4(d, 9), LN_WGMMA_ACC4(d, 10), LN_WGMMA_ACC4(d, 11), \
        LN_WGMMA_ACC4(d, 12), LN_WGMMA_ACC4(d, 13), LN_WGMMA_ACC4(d, 14), LN_WGMMA_ACC4(d, 15)
#define LN_WGMMA_R32                                                                                           \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31"
#define LN_WGMMA_R64                                                                                          \
    LN_WGMMA_R32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, " \
                 "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// d (+)= A B, m64n64k16, A and B from shared memory; TRANS: the PTX trans-a, trans-b immediates
// ("0, 0": both K-major; "1, 1": both MN-major).
#define LN_WGMMA_SS_N64(d, a, b, accumulate, TRANS)                                               \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                     \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" LN_WGMMA_R32 "}, "         \
                 "%32, %33, p, 1, 1, " TRANS ";\n}\n"                                               \
                 : LN_WGMMA_ACC32(d)                                                               \
                 : "l"(a), "l"(b), "r"((int)(accumulate)))

// d (+)= A B: A [64 x 16] and B [16 x N] from shared memory, both K-major.
template <>
__device__ __forceinline__ void mma_ss<64>(float (&d)[8][4], uint64_t a, uint64_t b, bool accumulate) {
    LN_WGMMA_SS_N64(d, a, b, accumulate, "0, 0");
}
template <>
__device__ __forceinline__ void mma_ss<128>(float (&d)[16][4], uint64_t a, uint64_t b, bool accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" LN_WGMMA_R64 "}, "
                 "%64, %65, p, 1, 1, 0, 0;\n}\n"
                 : LN_WGMMA_ACC64(d)
                 : "l"(a), "l"(b), "r"((int)accumulate));
}

// d (+)= A B: A [64 x 16] from registers (each warp's 16 rows as the m16n8k16 A fragment),
// B [16 x N] from shared memory MN-major (trans-b: stored [k][n], n contiguous).
template <>
__device__ __forceinline__ void mma_rs_t<64>(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" LN_WGMMA_R32 "}, "
                 "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                 : LN_WGMMA_ACC32(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"((int)accumulate));
}
template <>
__device__ __forceinline__ void mma_rs_t<128>(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b, bool accumulate) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" LN_WGMMA_R64 "}, "
                 "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : LN_WGMMA_ACC64(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"((int)accumulate));
}

// d (+)= A B: A [64 x 16] and B [16 x 64] from shared memory, both MN-major (trans-a: A stored
// [k][m], m contiguous; trans-b: B stored [k][n], n contiguous).
template <>
__device__ __forceinline__ void mma_ss_tt<64>(float (&d)[8][4], uint64_t a, uint64_t b, bool accumulate) {
    LN_WGMMA_SS_N64(d, a, b, accumulate, "1, 1");
}
#endif

// Keeps the registers of A fragments live (and unmoved) until this point: after the wait for an
// asynchronous MMA that reads them, so the compiler cannot reuse them while it runs.
template <int R>
__device__ __forceinline__ void keep_fragments(uint32_t (&a)[R][4]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(a[i][j])::"memory");
}

} // namespace ln_wgmma

#endif
