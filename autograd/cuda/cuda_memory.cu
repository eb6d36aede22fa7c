// CUDA device memory for linnet tensors, stream-ordered from the pool set up in cuda_context.cu.
// Every call's status is checked; a failure becomes a linnet error naming the call.
#include <stdio.h>
#include <string.h>

#include "autograd/cuda/cuda_check.cuh"

#define TRY_OR(call, fallback)                                                                     \
    do {                                                                                           \
        cudaError_t status_ = (call);                                                              \
        if (status_ != cudaSuccess) {                                                              \
            ln_fail("%s failed: %s (%s:%d)", #call, cudaGetErrorString(status_), __FILE__, __LINE__); \
            return fallback;                                                                       \
        }                                                                                          \
    } while (0)

extern "C" void *ln_cuda_alloc(size_t bytes) {
    if (ln_cuda_init(0)) return NULL;
    void *ptr = NULL;
    TRY_OR(cudaMallocAsync(&ptr, bytes, ln_stream()), NULL);
    return ptr;
}

extern "C" void *ln_cuda_alloc_zeroed(size_t bytes) {
    void *ptr = ln_cuda_alloc(bytes);
    if (ptr) TRY_OR(cudaMemsetAsync(ptr, 0, bytes, ln_stream()), NULL);
    return ptr;
}

extern "C" int ln_cuda_fill_bytes(void *ptr, int byte, size_t bytes) {
    LN_CUDA_TRY(cudaMemsetAsync(ptr, byte, bytes, ln_stream()));
    return LN_OK;
}

template <typename T> __global__ void fill_kernel(T *p, long long n, float value) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(p, i, value);
}

extern "C" int ln_cuda_fill(ln_tensor *t, double value) {
    if (t->numel == 0) return LN_OK;
    LN_DISPATCH_FLOAT(t->dtype, "fill", {
        fill_kernel<T><<<ln_grid(t->numel, 256), 256, 0, ln_stream()>>>((T *)t->data, t->numel, (float)value);
    });
    LN_CUDA_LAUNCHED("fill");
    return LN_OK;
}

extern "C" void ln_cuda_free(void *ptr) {
    if (ptr) cudaFreeAsync(ptr, ln_stream());
}

extern "C" void ln_cuda_memset0(void *ptr, size_t bytes) {
    if (cudaMemsetAsync(ptr, 0, bytes, ln_stream()) != cudaSuccess) ln_fail("cudaMemsetAsync of %zu bytes failed", bytes);
}

extern "C" int ln_cuda_copy(void *dst, bool dst_on_gpu, const void *src, bool src_on_gpu, size_t bytes) {
    if (ln_cuda_init(0)) return LN_ERR;
    cudaMemcpyKind kind = dst_on_gpu ? (src_on_gpu ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                     : (src_on_gpu ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    LN_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind, ln_stream()));
    // host memory may be reused by the caller at once: finish before returning
    if (!dst_on_gpu || !src_on_gpu) return ln_cuda_sync("copy between host and device");
    return LN_OK;
}

extern "C" bool ln_cuda_probe(char *name, size_t name_len) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError(); // clear the "no device" status
        return false;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return false;
    if (name && name_len) snprintf(name, name_len, "%s", prop.name);
    return true;
}
