// mma.sync building blocks shared by the tensor-core kernels (attention.cu; GLA's gla_mma.cuh:
// gla_state.cu, gla_fwd.cu, gla_bwd.cu): PTX wrappers (cp.async, ldmatrix, mma m16n8k16 bf16 ->
// f32) and padded shared-memory bf16 tiles with their fragment loaders.
#ifndef LN_MMA_CUH
#define LN_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

namespace ln_mma {

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
// 4 bytes global -> shared (through L1); zero-filled when !valid.
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// c += a (16x16, row) * b (16x8, col), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

// ---------------------------------------------------------------------------------------------
// Shared-memory tiles: [rows][COLS] bf16 stored with a padded row of COLS + 8 elements (16 bytes
// more). The 8 row addresses of one ldmatrix 8x8 matrix (same columns, 8 consecutive rows) then
// start 16 bytes apart modulo 128: 8 different bank groups, conflict-free. (Padding rather than an
// XOR swizzle keeps every fragment address "per-thread base + compile-time immediate", so the
// unrolled loops hold no table of addresses in registers.)
// ---------------------------------------------------------------------------------------------

template <int COLS>
struct Pad {
    static constexpr int LD = COLS + 8; // elements per stored row
};

// rows [row0, row0 + ROWS) of a [*, D] global view with row_stride; rows >= limit zero-filled.
// Each thread copies one 16-byte column chunk of every (NT / (D / 8))-th row: one pointer walked
// down the rows (nothing per row kept in registers).
template <int ROWS, int D, int NT>
__device__ __forceinline__ void load_tile(bf16 *s, const bf16 *g, long long row_stride, int row0, int limit,
                                          int tid) {
    constexpr int CH = D / 8, RPI = NT / CH, LD = Pad<D>::LD;
    static_assert(NT % CH == 0 && ROWS % RPI == 0, "tile not a multiple of the CTA");
    const int r0 = tid / CH, c = tid % CH;
    const bf16 *src = g + (long long)(row0 + r0) * row_stride + c * 8;
    const uint32_t dst = smem_u32(s + r0 * LD + c * 8);
#pragma unroll
    for (int it = 0; it < ROWS / RPI; ++it) {
        const bool valid = row0 + r0 + it * RPI < limit;
        cp_async16(dst + 2u * (it * RPI * LD), valid ? src : g, valid);
        src += RPI * row_stride;
    }
}

// A fragments (16x16, rows = m) from a [*, COLS] tile at rows row0.., k columns 16 kc..
template <int COLS>
__device__ __forceinline__ void ldsm_a(uint32_t (&a)[4], const bf16 *s, int row0, int kc, int lane) {
    constexpr int LD = Pad<COLS>::LD;
    const uint32_t base = smem_u32(s) + 2u * ((lane & 15) * LD + (lane >> 4) * 8);
    ldsm_x4(a, base + 2u * (row0 * LD + kc * 16));
}
// B fragments for two n-tiles (n rows n0..n0+15) when the tile is stored [n][k] (k contiguous),
// k columns 16 kc..: r[0], r[1] = b0, b1 of n-tile n0; r[2], r[3] = of n-tile n0 + 8.
template <int COLS>
__device__ __forceinline__ void ldsm_b_nk(uint32_t (&r)[4], const bf16 *s, int n0, int kc, int lane) {
    constexpr int LD = Pad<COLS>::LD;
    const uint32_t base = smem_u32(s) + 2u * (((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8);
    ldsm_x4(r, base + 2u * (n0 * LD + kc * 16));
}
// B fragments for two n-tiles (n columns 16 nc..) when the tile is stored [k][n] (n contiguous),
// k rows k0..k0+15: transposing ldmatrix.
template <int COLS>
__device__ __forceinline__ void ldsm_b_kn(uint32_t (&r)[4], const bf16 *s, int k0, int nc, int lane) {
    constexpr int LD = Pad<COLS>::LD;
    const uint32_t base = smem_u32(s) + 2u * (((lane & 7) + (((lane >> 3) & 1) << 3)) * LD + (lane >> 4) * 8);
    ldsm_x4_t(r, base + 2u * (k0 * LD + nc * 16));
}
// A fragments (rows = m) when the tile is stored [k][m] (m contiguous): k rows k0..k0+15, m
// columns 16 mc..
template <int COLS>
__device__ __forceinline__ void ldsm_a_km(uint32_t (&a)[4], const bf16 *s, int k0, int mc, int lane) {
    constexpr int LD = Pad<COLS>::LD;
    const uint32_t base = smem_u32(s) + 2u * (((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8);
    ldsm_x4_t(a, base + 2u * (k0 * LD + mc * 16));
}

} // namespace ln_mma

#endif
