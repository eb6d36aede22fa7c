// Status checks for CUDA code: every call's status is checked, and a failure becomes a linnet
// error naming the call, file and line.
#ifndef LN_CUDA_CHECK_CUH
#define LN_CUDA_CHECK_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "autograd/error.h"
#include "autograd/tape.h"
#include "autograd/cuda/cuda_context.h"
}

#define LN_CUDA_TRY(call)                                                                          \
    do {                                                                                           \
        cudaError_t status_ = (call);                                                              \
        if (status_ != cudaSuccess)                                                                \
            return ln_fail("%s failed: %s (%s:%d)", #call, cudaGetErrorString(status_), __FILE__, __LINE__); \
    } while (0)

#define LN_CUBLAS_TRY(call)                                                                        \
    do {                                                                                           \
        cublasStatus_t status_ = (call);                                                           \
        if (status_ != CUBLAS_STATUS_SUCCESS)                                                      \
            return ln_fail("%s failed: cuBLAS status %d (%s:%d)", #call, (int)status_, __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: launch-configuration errors surface here (execution errors at the next sync).
#define LN_CUDA_LAUNCHED(name) LN_CUDA_TRY(cudaPeekAtLastError())

static inline cudaStream_t ln_stream() { return (cudaStream_t)ln_cuda_stream(); }

// Lets kernel use `bytes` of dynamic shared memory (past 48 KB it must ask); a refusal becomes a
// linnet error naming `what` and the size, and is cleared so later launch checks do not see it.
template <class Kernel> static inline int ln_kernel_smem(Kernel kernel, size_t bytes, const char *what) {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) == cudaSuccess)
        return LN_OK;
    return ln_fail("%s: %zu bytes of shared memory per block: %s", what, bytes, cudaGetErrorString(cudaGetLastError()));
}

static inline unsigned ln_blocks(long long n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// Loads and stores that serve f32 and bf16 storage with fp32 arithmetic.
__device__ __forceinline__ float ln_load(const float *p, long long i) { return p[i]; }
__device__ __forceinline__ float ln_load(const __nv_bfloat16 *p, long long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void ln_store(float *p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void ln_store(__nv_bfloat16 *p, long long i, float v) { p[i] = __float2bfloat16(v); }

// N consecutive elements from i (a multiple of N) as fp32: one 16-byte access when N > 1
// (N = 4 for f32, 8 for bf16; p + i 16-byte aligned).
template <int N, typename T>
__device__ __forceinline__ void ln_load_n(const T *p, long long i, float (&v)[N]) {
    if constexpr (N == 1) {
        v[0] = ln_load(p, i);
    } else {
        static_assert(N * sizeof(T) == 16, "a pack is 16 bytes");
        int4 raw = *reinterpret_cast<const int4 *>(p + i);
        const T *e = reinterpret_cast<const T *>(&raw);
#pragma unroll
        for (int k = 0; k < N; k++) v[k] = ln_load(e, k);
    }
}

template <int N, typename T>
__device__ __forceinline__ void ln_store_n(T *p, long long i, const float (&v)[N]) {
    if constexpr (N == 1) {
        ln_store(p, i, v[0]);
    } else {
        static_assert(N * sizeof(T) == 16, "a pack is 16 bytes");
        int4 raw;
        T *e = reinterpret_cast<T *>(&raw);
#pragma unroll
        for (int k = 0; k < N; k++) ln_store(e, k, v[k]);
        *reinterpret_cast<int4 *>(p + i) = raw;
    }
}

// 8 consecutive elements from i (a multiple of 8; p 16-byte aligned) of either float dtype: one
// 16-byte access (bf16) or two (f32), for kernels whose input and output dtypes differ.
template <typename T>
__device__ __forceinline__ void ln_load8(const T *p, long long i, float (&v)[8]) {
    constexpr int N = 16 / sizeof(T);
#pragma unroll
    for (int h = 0; h < 8 / N; h++) ln_load_n<N>(p, i + h * N, *reinterpret_cast<float(*)[N]>(v + h * N));
}

template <typename T>
__device__ __forceinline__ void ln_store8(T *p, long long i, const float (&v)[8]) {
    constexpr int N = 16 / sizeof(T);
#pragma unroll
    for (int h = 0; h < 8 / N; h++) ln_store_n<N>(p, i + h * N, *reinterpret_cast<const float(*)[N]>(v + h * N));
}

// Whether n elements at both pointers go in 8-element packs (ln_load8 / ln_store8).
static inline bool ln_packs8(long long n, const void *a, const void *b) {
    return n % 8 == 0 && ((uintptr_t)a & 15) == 0 && ((uintptr_t)b & 15) == 0;
}

// 8 consecutive values as floats whatever the dtype (two packs for f32, one for bf16).
__device__ __forceinline__ void ln_load8(const float *p, float (&v)[8]) {
    ln_load_n<4>(p, 0, *reinterpret_cast<float(*)[4]>(v));
    ln_load_n<4>(p, 4, *reinterpret_cast<float(*)[4]>(v + 4));
}
__device__ __forceinline__ void ln_load8(const __nv_bfloat16 *p, float (&v)[8]) { ln_load_n<8>(p, 0, v); }
__device__ __forceinline__ void ln_store8(float *p, const float (&v)[8]) {
    ln_store_n<4>(p, 0, *reinterpret_cast<const float(*)[4]>(v));
    ln_store_n<4>(p, 4, *reinterpret_cast<const float(*)[4]>(v + 4));
}
__device__ __forceinline__ void ln_store8(__nv_bfloat16 *p, const float (&v)[8]) { ln_store_n<8>(p, 0, v); }

// Blocks for a grid-stride loop over n elements: enough to cover them, at least 1, at most 65535 * 8.
static inline unsigned ln_grid(long long n, int threads) {
    unsigned b = ln_blocks(n, threads);
    return b < 65535u * 8 ? (b ? b : 1) : 65535u * 8;
}

// True when n elements at each pointer (NULL ones skipped) can go 8 at a time.
static inline bool ln_vec8(long long n, const void *a, const void *b = NULL, const void *c = NULL,
                           const void *d = NULL, const void *e = NULL) {
    const void *ps[5] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++)
        if (ps[i] && (uintptr_t)ps[i] % 16) return false;
    return n % 8 == 0;
}

// Runs `body` with T bound to the storage type of dtype (f32 or bf16); others are an error.
#define LN_DISPATCH_FLOAT(dtype, opname, ...)                                                      \
    do {                                                                                           \
        if ((dtype) == LN_F32) {                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__                                                                            \
        } else if ((dtype) == LN_BF16) {                                                           \
            typedef __nv_bfloat16 T;                                                               \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            return ln_fail("%s: the CUDA kernel takes f32 or bf16, not %s", opname, ln_dtype_name(dtype)); \
        }                                                                                          \
    } while (0)

#endif
