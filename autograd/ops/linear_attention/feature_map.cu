// feature_map on CUDA for elu1 and relu (identity never makes a node; hedgehog is recorded as
// other ops, feature_map.c). Elementwise, fp32 arithmetic.
#include "autograd/cuda/cuda_check.cuh"

extern "C" {
#include "autograd/ops_linear.h"
}

template <typename T> __global__ void fmap_fwd(const T *x, T *y, long long n, int elu) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = ln_load(x, i);
    ln_store(y, i, v > 0.f ? (elu ? v + 1.f : v) : (elu ? expf(v) : 0.f));
}

template <typename T> __global__ void fmap_bwd(const T *x, const T *dy, T *dx, long long n, int elu) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = ln_load(x, i), d = v > 0.f ? 1.f : (elu ? expf(v) : 0.f);
    ln_store(dx, i, ln_load(dx, i) + ln_load(dy, i) * d);
}

extern "C" int ln_feature_map_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0];
    if (x->numel == 0) return LN_OK;
    LN_DISPATCH_FLOAT(x->dtype, "feature_map", {
        fmap_fwd<T><<<ln_blocks(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (T *)n->out[0]->data,
                                                                      x->numel, n->iarg[0] == LN_FMAP_ELU1);
    });
    LN_CUDA_LAUNCHED("feature_map forward");
    return LN_OK;
}

extern "C" int ln_feature_map_backward_cuda(ln_node *n) {
    ln_tensor *x = ln_node_saved(n, 0), *dy = n->out[0]->grad;
    if (!dy || !n->in[0]->requires_grad || x->numel == 0) return LN_OK;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, "feature_map", {
        fmap_bwd<T><<<ln_blocks(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (const T *)dy->data,
                                                                      (T *)dx->data, x->numel, n->iarg[0] == LN_FMAP_ELU1);
    });
    LN_CUDA_LAUNCHED("feature_map backward");
    return LN_OK;
}
