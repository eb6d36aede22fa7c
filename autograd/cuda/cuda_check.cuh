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

static inline unsigned ln_blocks(long long n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// Loads and stores that serve f32 and bf16 storage with fp32 arithmetic.
__device__ __forceinline__ float ln_load(const float *p, long long i) { return p[i]; }
__device__ __forceinline__ float ln_load(const __nv_bfloat16 *p, long long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void ln_store(float *p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void ln_store(__nv_bfloat16 *p, long long i, float v) { p[i] = __float2bfloat16(v); }

// 8 consecutive values as floats, in one 16-byte (bf16) or two (f32) accesses: p must be 16-byte aligned.
__device__ __forceinline__ void ln_load8(const float *p, float v[8]) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void ln_load8(const __nv_bfloat16 *p, float v[8]) {
    uint4 raw = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw;
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        v[2 * i] = f.x, v[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void ln_store8(float *p, const float v[8]) {
    *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
    *(float4 *)(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void ln_store8(__nv_bfloat16 *p, const float v[8]) {
    uint4 raw;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&raw;
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    *(uint4 *)p = raw;
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
