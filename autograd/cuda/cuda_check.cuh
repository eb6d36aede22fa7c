// Status checks for CUDA code: every call's status is checked, and a failure becomes a linnet
// error naming the call, file and line.
#ifndef LN_CUDA_CHECK_CUH
#define LN_CUDA_CHECK_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

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
