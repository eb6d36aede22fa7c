// logsigmoid on the GPU: f32 or bf16 storage, fp32 arithmetic, the same stable form as
// logsigmoid.c (the CPU reference): y = s (min(x, 0) - log1p(exp(-|x|))); dx += dy s sigmoid(-x).
#include "autograd/cuda/cuda_check.cuh"

template <typename T>
__global__ void logsigmoid_forward_kernel(const T *x, T *y, long long n, float s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = ln_load(x, i);
        ln_store(y, i, s * (fminf(v, 0.0f) - log1pf(expf(-fabsf(v)))));
    }
}

template <typename T>
__global__ void logsigmoid_backward_kernel(const T *x, const T *dy, T *dx, long long n, float s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dx, i, ln_load(dx, i) + s * ln_load(dy, i) / (1.0f + expf(ln_load(x, i))));
}

extern "C" int ln_logsigmoid_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    LN_DISPATCH_FLOAT(x->dtype, "logsigmoid", {
        logsigmoid_forward_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (T *)y->data,
                                                                                  x->numel, (float)n->farg[0]);
    });
    LN_CUDA_LAUNCHED("logsigmoid forward");
    return LN_OK;
}

extern "C" int ln_logsigmoid_backward_cuda(ln_node *n) {
    ln_tensor *x = ln_node_saved(n, 0), *y = n->out[0];
    if (!n->in[0]->requires_grad || !y->grad) return LN_OK;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, "logsigmoid", {
        logsigmoid_backward_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>(
            (const T *)x->data, (const T *)y->grad->data, (T *)dx->data, x->numel, (float)n->farg[0]);
    });
    LN_CUDA_LAUNCHED("logsigmoid backward");
    return LN_OK;
}
