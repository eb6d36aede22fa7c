// cast on the GPU: convert on the way forward; add the converted gradient on the way back.
#include "autograd/cuda/cuda_check.cuh"

template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dst, i, ln_load(src, i));
}

// The same, 8 elements a thread (n8 packs; ln_packs8)
template <typename D, typename S>
__global__ void convert8_kernel(D *dst, const S *src, long long n8) {
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < n8; p += (long long)gridDim.x * blockDim.x) {
        float v[8];
        ln_load8(src, p * 8, v);
        ln_store8(dst, p * 8, v);
    }
}

template <typename D>
static int convert_from(ln_tensor *dst, const ln_tensor *src) {
    const bool packed = ln_packs8(src->numel, dst->data, src->data);
    const long long work = packed ? src->numel / 8 : src->numel;
    unsigned blocks = ln_blocks(work, 256);
    blocks = blocks == 0 ? 1 : blocks < 65535u * 8 ? blocks : 65535u * 8;
    LN_DISPATCH_FLOAT(src->dtype, "cast", {
        if (packed)
            convert8_kernel<D, T><<<blocks, 256, 0, ln_stream()>>>((D *)dst->data, (const T *)src->data, work);
        else
            convert_kernel<D, T><<<blocks, 256, 0, ln_stream()>>>((D *)dst->data, (const T *)src->data, work);
    });
    LN_CUDA_LAUNCHED("cast");
    return LN_OK;
}

extern "C" int ln_cast_forward_cuda(ln_node *n) {
    ln_tensor *y = n->out[0];
    LN_DISPATCH_FLOAT(y->dtype, "cast", { return convert_from<T>(y, n->in[0]); });
    return LN_OK;
}

extern "C" int ln_cast_backward_cuda(ln_node *n) {
    if (!n->in[0]->requires_grad) return LN_OK;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    return dx ? ln_cuda_add_into(dx, n->out[0]->grad) : LN_ERR;
}
