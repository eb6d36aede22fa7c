// dst += src: how CUDA backward kernels that produce a separate result add it into a gradient.
#include "autograd/cuda/cuda_check.cuh"

template <typename D, typename S>
__global__ void add_into_kernel(D *dst, const S *src, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dst, i, ln_load(dst, i) + ln_load(src, i));
}

// The same, 8 elements a thread (n8 packs; ln_packs8): a weight's bf16 gradient into its f32 one
template <typename D, typename S>
__global__ void add_into8_kernel(D *dst, const S *src, long long n8) {
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < n8; p += (long long)gridDim.x * blockDim.x) {
        float d[8], v[8];
        ln_load8(dst, p * 8, d);
        ln_load8(src, p * 8, v);
#pragma unroll
        for (int k = 0; k < 8; k++) d[k] += v[k];
        ln_store8(dst, p * 8, d);
    }
}

template <typename D>
static int add_into_from(ln_tensor *dst, const ln_tensor *src) {
    const bool packed = ln_packs8(dst->numel, dst->data, src->data);
    const long long n = packed ? dst->numel / 8 : dst->numel;
    unsigned blocks = ln_blocks(n, 256) < 65535u * 8 ? ln_blocks(n, 256) : 65535u * 8;
    LN_DISPATCH_FLOAT(src->dtype, "add_into", {
        if (packed)
            add_into8_kernel<D, T><<<blocks, 256, 0, ln_stream()>>>((D *)dst->data, (const T *)src->data, n);
        else
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
