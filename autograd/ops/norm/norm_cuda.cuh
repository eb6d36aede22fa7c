// Device helpers shared by the norm kernels (rmsnorm.cu, add_rmsnorm.cu, layernorm.cu): one warp per row,
// WARPS rows a block, 16-byte packs, a weight of either float dtype, and the fixed-order column sum
// that turns per-block partial rows into a run-to-run identical weight gradient.
#ifndef LN_NORM_CUDA_CUH
#define LN_NORM_CUDA_CUH

#include <stdint.h>

#include "autograd/cuda/cuda_check.cuh"

#define WARPS 8         // rows in flight per block
#define MAX_BLOCKS 1024 // backward blocks: bounds the partials; set by rows alone, so the order is fixed

// A weight or its gradient, f32 or bf16 whatever x is; the branch is uniform over a kernel.
struct vec_ref {
    void *p;
    bool bf16;
};

__device__ __forceinline__ float vload(vec_ref v, long long i) {
    return v.bf16 ? ln_load((const __nv_bfloat16 *)v.p, i) : ln_load((const float *)v.p, i);
}

__device__ __forceinline__ void vadd(vec_ref v, long long i, float a) {
    if (v.bf16)
        ln_store((__nv_bfloat16 *)v.p, i, vload(v, i) + a);
    else
        ln_store((float *)v.p, i, vload(v, i) + a);
}

// The warp's total in every lane, the same butterfly every run; all 32 lanes must call it.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Lanes a row of D takes with N-element packs: a warp covers 32 N columns a pass; a narrower row (a
// GLA head's 64) takes the fewest power-of-two lanes that cover it and shares the warp with 32 / L
// other rows, so lanes do not idle. Uniform over a launch.
__host__ __device__ __forceinline__ int row_lanes(long long D, int N) {
    int L = 1;
    while (L < 32 && (long long)L * N < D) L <<= 1;
    return L;
}

// The row's total over its L lanes (a power of two), in every one of them; all 32 lanes must call it.
__device__ __forceinline__ float row_sum(float v, int L) {
    for (int o = L >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// body(c, j) for a lane's packs of a row: columns c = first + j * stride < D. C > 0: at most C
// packs, the loop unrolled so that j can index registers; C = 0: as many as D takes (j is 0).
template <int C, class F>
__device__ __forceinline__ void for_packs(long long D, long long first, long long stride, F body) {
    if constexpr (C > 0) {
#pragma unroll
        for (int j = 0; j < C; j++)
            if (first + j * stride < D) body(first + j * stride, j);
    } else {
        for (long long c = first; c < D; c += stride) body(c, 0);
    }
}

// The weight gradient's partial row of a block whose threads summed their own columns over the
// rows they handled, in registers: acc[j] holds the pack at first + j * stride of the thread's
// slot (its row in flight, slots = blockDim / L). Each slot's sums go to lane_sums [slots][D]
// (dynamic shared memory), then each column is summed over the slots in order: run-to-run
// identical. Every thread of the block must call it.
template <int N, int C>
__device__ __forceinline__ void partial_from_lanes(const float (&acc)[C][N], float *lane_sums, float *pw, long long D,
                                                   int L, long long first, long long stride) {
    const long long slot = threadIdx.x / L, slots = blockDim.x / L;
    for_packs<C>(D, first, stride, [&](long long c, int j) {
#pragma unroll
        for (int k = 0; k < N; k++) lane_sums[slot * D + c + k] = acc[j][k];
    });
    __syncthreads();
    for (long long c = threadIdx.x; c < D; c += blockDim.x) {
        float s = 0.0f;
        for (long long q = 0; q < slots; q++) s += lane_sums[q * D + c];
        pw[c] = s;
    }
}

// Packs a lane keeps weight-gradient sums for in registers (the C of the backward kernels): cmax
// when that covers its share of a row (rows of D in packs of N on L lanes), else 0 (the kernels'
// block pass over each group of rows instead).
static inline int lane_sum_packs(long long D, int N, int L, int cmax) {
    return (D + (long long)L * N - 1) / ((long long)L * N) <= cmax ? cmax : 0;
}

// dst[j] += sum over b < nb of partial[b * stride + j] for j < D, in a fixed order: row lane y of
// the block's COLSUM_Y sums the partial rows b = y (mod COLSUM_Y) in order, then y = 0 adds those
// sums in order. Block (32, COLSUM_Y): 32 columns; D = 64 (a GLA head) is two blocks, so each
// lane's serial chain is kept short (nb is up to MAX_BLOCKS = 1024 rows).
// static: each kernel file that includes this header has its own copy.
#define COLSUM_Y 32
static __global__ void norm_colsum_kernel(const float *partial, int nb, long long stride, long long D,
                                             vec_ref dst) {
    __shared__ float sums[COLSUM_Y][32];
    long long j = blockIdx.x * 32LL + threadIdx.x;
    float s = 0.0f;
    if (j < D)
        for (int b = threadIdx.y; b < nb; b += COLSUM_Y) s += partial[b * stride + j];
    sums[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < D) {
        float t = 0.0f;
        for (int k = 0; k < COLSUM_Y; k++) t += sums[k][threadIdx.x];
        vadd(dst, j, t);
    }
}

// Launches norm_colsum_kernel over D columns (partial rows stride apart).
static inline void launch_norm_colsum(const float *partial, int nb, long long stride, long long D, vec_ref dst) {
    norm_colsum_kernel<<<ln_blocks(D, 32), dim3(32, COLSUM_Y), 0, ln_stream()>>>(partial, nb, stride, D, dst);
}

static inline bool f32_or_bf16(const ln_tensor *t) { return t->dtype == LN_F32 || t->dtype == LN_BF16; }
static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }
static inline vec_ref ref_of(const ln_tensor *t) { return {t ? t->data : NULL, t && t->dtype == LN_BF16}; }
static inline unsigned group_grid(long long rows, long long cap) {
    long long groups = (rows + WARPS - 1) / WARPS;
    return (unsigned)(groups < cap ? groups : cap);
}

// Blocks for rows of D in packs of N, 32 / row_lanes rows a warp, at most cap.
static inline unsigned row_grid(long long rows, long long D, int N, long long cap) {
    long long per_block = WARPS * (32 / row_lanes(D, N)), blocks = (rows + per_block - 1) / per_block;
    return (unsigned)(blocks < cap ? blocks : cap);
}

// Launches kernel<T, 16-byte packs> when vec, else kernel<T, 1>; T bound by LN_DISPATCH_FLOAT.
#define LAUNCH_PACKED(vec, kernel, grid, ...)                                                      \
    do {                                                                                           \
        if (vec)                                                                                   \
            kernel<T, (int)(16 / sizeof(T))><<<grid, WARPS * 32, 0, ln_stream()>>>(__VA_ARGS__);   \
        else                                                                                       \
            kernel<T, 1><<<grid, WARPS * 32, 0, ln_stream()>>>(__VA_ARGS__);                       \
    } while (0)

// Launches kernel<T, N, C>: N the 16-byte pack when vec (else 1); C = CMAX (a constant) with smem
// bytes of dynamic shared memory when C is not 0 (lane_sum_packs), else C = 0.
#define LAUNCH_PACKED_SUMS(vec, C, CMAX, kernel, grid, smem, ...)                                  \
    do {                                                                                           \
        if (vec)                                                                                   \
            LAUNCH_SUMS_N((int)(16 / sizeof(T)), C, CMAX, kernel, grid, smem, __VA_ARGS__);        \
        else                                                                                       \
            LAUNCH_SUMS_N(1, C, CMAX, kernel, grid, smem, __VA_ARGS__);                            \
    } while (0)
#define LAUNCH_SUMS_N(N, C, CMAX, kernel, grid, smem, ...)                                         \
    do {                                                                                           \
        if (C)                                                                                     \
            kernel<T, N, CMAX><<<grid, WARPS * 32, smem, ln_stream()>>>(__VA_ARGS__);              \
        else                                                                                       \
            kernel<T, N, 0><<<grid, WARPS * 32, 0, ln_stream()>>>(__VA_ARGS__);                    \
    } while (0)

#endif
