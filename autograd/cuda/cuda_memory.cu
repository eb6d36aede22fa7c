// CUDA device memory for linnet tensors. Every CUDA call's status is checked and a failure
// becomes a linnet error naming the call. A caching allocator replaces the plain cudaMalloc here
// when the CUDA training path lands (issue: CUDA backend).
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "../error.h"
}

#define LN_CUDA_TRY(call, fallback)                                                              \
    do {                                                                                       \
        cudaError_t status_ = (call);                                                          \
        if (status_ != cudaSuccess) {                                                          \
            ln_fail("%s failed: %s (%s:%d)", #call, cudaGetErrorString(status_), __FILE__, __LINE__); \
            return fallback;                                                                   \
        }                                                                                      \
    } while (0)

extern "C" void *ln_cuda_alloc_zeroed(size_t bytes) {
    void *ptr = NULL;
    LN_CUDA_TRY(cudaMalloc(&ptr, bytes), NULL);
    LN_CUDA_TRY(cudaMemset(ptr, 0, bytes), NULL);
    return ptr;
}

extern "C" void ln_cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}

extern "C" void ln_cuda_memset0(void *ptr, size_t bytes) {
    if (cudaMemset(ptr, 0, bytes) != cudaSuccess) ln_fail("cudaMemset of %zu bytes failed", bytes);
}

extern "C" int ln_cuda_copy(void *dst, bool dst_on_gpu, const void *src, bool src_on_gpu, size_t bytes) {
    cudaMemcpyKind kind = dst_on_gpu ? (src_on_gpu ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                     : (src_on_gpu ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    LN_CUDA_TRY(cudaMemcpy(dst, src, bytes, kind), LN_ERR);
    return LN_OK;
}

extern "C" bool ln_cuda_probe(char *name, size_t name_len) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError(); // clear the sticky "no device" status
        return false;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return false;
    if (name && name_len) snprintf(name, name_len, "%s", prop.name);
    return true;
}
