// logsigmoid on the GPU: f32 or bf16 storage, fp32 arithmetic, the same stable form as
// logsigmoid.c (the CPU reference): y = s (min(x, 0) - log1p(exp(-|x|))); dx += dy s sigmoid(-x).
#include <stdint.h>

#include "autograd/cuda/cuda_check.cuh"

__device__ __forceinline__ float logsigmoid(float v) { return fminf(v, 0.0f) - log1pf(expf(-fabsf(v))); }

// N elements a thread: 16-byte packs (N = 16 / sizeof(T)) where the sizes and addresses allow, else 1
template <typename T, int N>
__global__ void logsigmoid_forward_kernel(const T *x, T *y, long long n, float s) {
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) * N; i < n;
         i += (long long)gridDim.x * blockDim.x * N) {
        float v[N];
        ln_load_n<N>(x, i, v);
#pragma unroll
        for (int k = 0; k < N; k++) v[k] = s * logsigmoid(v[k]);
        ln_store_n<N>(y, i, v);
    }
}

template <typename T, int N>
__global__ void logsigmoid_backward_kernel(const T *x, const T *dy, T *dx, long long n, float s) {
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) * N; i < n;
         i += (long long)gridDim.x * blockDim.x * N) {
        float xv[N], g[N], d[N];
        ln_load_n<N>(x, i, xv);
        ln_load_n<N>(dy, i, g);
        ln_load_n<N>(dx, i, d);
#pragma unroll
        for (int k = 0; k < N; k++) d[k] += s * g[k] / (1.0f + expf(xv[k]));
        ln_store_n<N>(dx, i, d);
    }
}

// Launches kernel<T, pack> over n elements when every pointer is 16-byte aligned and n a multiple
// of the pack, else kernel<T, 1>.
#define LAUNCH_LOGSIGMOID(kernel, n, aligned, ...)                                                  \
    do {                                                                                           \
        constexpr int P = (int)(16 / sizeof(T));                                                   \
        if ((aligned) && (n) % P == 0)                                                             \
            kernel<T, P><<<ln_grid((n) / P, 256), 256, 0, ln_stream()>>>(__VA_ARGS__);             \
        else                                                                                       \
            kernel<T, 1><<<ln_grid(n, 256), 256, 0, ln_stream()>>>(__VA_ARGS__);                   \
    } while (0)

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" int ln_logsigmoid_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    if (x->numel == 0) return LN_OK;
    const bool aligned = aligned16(x->data) && aligned16(y->data);
    LN_DISPATCH_FLOAT(x->dtype, "logsigmoid", {
        LAUNCH_LOGSIGMOID(logsigmoid_forward_kernel, x->numel, aligned, (const T *)x->data, (T *)y->data, x->numel,
                          (float)n->farg[0]);
    });
    LN_CUDA_LAUNCHED("logsigmoid forward");
    return LN_OK;
}

extern "C" int ln_logsigmoid_backward_cuda(ln_node *n) {
    ln_tensor *x = ln_node_saved(n, 0), *y = n->out[0];
    if (!n->in[0]->requires_grad || !y->grad) return LN_OK;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    if (!dx) return LN_ERR;
    if (x->numel == 0) return LN_OK;
    const bool aligned = aligned16(x->data) && aligned16(y->grad->data) && aligned16(dx->data);
    LN_DISPATCH_FLOAT(x->dtype, "logsigmoid", {
        LAUNCH_LOGSIGMOID(logsigmoid_backward_kernel, x->numel, aligned, (const T *)x->data,
                          (const T *)y->grad->data, (T *)dx->data, x->numel, (float)n->farg[0]);
    });
    LN_CUDA_LAUNCHED("logsigmoid backward");
    return LN_OK;
}
