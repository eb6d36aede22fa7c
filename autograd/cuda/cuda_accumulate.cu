// dst += src: how CUDA backward kernels that produce a separate result add it into a gradient.
#include "autograd/cuda/cuda_check.cuh"

template <typename D, typename S>
__global__ void add_into_kernel(D *dst, const S *src, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dst, i, ln_load(dst, i) + ln_load(src, i));
}

template <typename D>
static int add_into_from(ln_tensor *dst, const ln_tensor *src) {
    long long n = dst->numel;
    unsigned blocks = ln_blocks(n, 256) < 65535u * 8 ? ln_blocks(n, 256) : 65535u * 8;
    LN_DISPATCH_FLOAT(src->dtype, "add_into", {
        add_into_kernel<D, T><<<blocks, 256, 0, ln_stream()>>>((D *)dst->data, (const T *)src->data, n);
    });
    LN_CUDA_LAUNCHED("add_into");
    return LN_OK;
}

extern "C" int ln_cuda_add_into(ln_tensor *dst, const ln_tensor *src) {
    if (dst->numel != src->numel) return ln_fail("add_into: %lld vs %lld elements", (long long)dst->numel, (long long)src->numel);
    if (dst->numel == 0) return LN_OK;
    LN_DISPATCH_FLOAT(dst->dtype, "add_into", { return add_into_from<T>(dst, src); });
    return LN_OK;
}
