// concat_last on the GPU: f32 or bf16 storage. Same layout as concat_last.c (the CPU reference).
// The backward adds dy's columns into a's gradient, then into b's, in two launches, so that
// concat_last(x, x) accumulates both halves without a race.
#include "autograd/cuda/cuda_check.cuh"

template <typename T>
__global__ void concat_last_forward_kernel(const T *a, const T *b, T *y, long long n, long long Na, long long Nb) {
    const long long N = Na + Nb;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const long long r = i / N, j = i % N;
        ln_store(y, i, j < Na ? ln_load(a, r * Na + j) : ln_load(b, r * Nb + j - Na));
    }
}

// dx [rows, Nx] += columns [c0, c0 + Nx) of dy [rows, N]
template <typename T>
__global__ void take_columns_kernel(const T *dy, T *dx, long long n, long long N, long long c0, long long Nx) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const long long r = i / Nx, j = i % Nx;
        ln_store(dx, i, ln_load(dx, i) + ln_load(dy, r * N + c0 + j));
    }
}

extern "C" int ln_concat_last_forward_cuda(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0];
    if (y->numel == 0) return LN_OK;
    LN_DISPATCH_FLOAT(a->dtype, "concat_last", {
        concat_last_forward_kernel<T><<<ln_grid(y->numel, 256), 256, 0, ln_stream()>>>(
            (const T *)a->data, (const T *)b->data, (T *)y->data, y->numel, a->shape[a->ndim - 1],
            b->shape[b->ndim - 1]);
    });
    LN_CUDA_LAUNCHED("concat_last forward");
    return LN_OK;
}

extern "C" int ln_concat_last_backward_cuda(ln_node *n) {
    ln_tensor *dy = n->out[0]->grad;
    if (!dy) return LN_OK;
    const long long N = dy->shape[dy->ndim - 1];
    long long c0 = 0;
    for (int side = 0; side < 2; side++) {
        ln_tensor *x = n->in[side];
        const long long Nx = x->shape[x->ndim - 1];
        if (x->requires_grad && x->numel > 0) {
            ln_tensor *dx = ln_grad_of(x);
            if (!dx) return LN_ERR;
            LN_DISPATCH_FLOAT(x->dtype, "concat_last", {
                take_columns_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>(
                    (const T *)dy->data, (T *)dx->data, x->numel, N, c0, Nx);
            });
            LN_CUDA_LAUNCHED("concat_last backward");
        }
        c0 += Nx;
    }
    return LN_OK;
}
