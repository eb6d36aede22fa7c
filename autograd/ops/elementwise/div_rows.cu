// div_rows on the GPU: y = a / (d + eps) row by row, f32 or bf16 storage, fp32 arithmetic. Same
// math as div_rows.c (the CPU reference). The backward gives each row one warp: its lanes walk
// the row and the sum dy . a is a fixed shuffle tree, so runs are identical (no atomics).
#include "autograd/cuda/cuda_check.cuh"

template <typename T>
__global__ void div_rows_forward_kernel(const T *a, const T *d, T *y, long long n, long long N, float eps) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(y, i, ln_load(a, i) / (ln_load(d, i / N) + eps));
}

// da += dy / (d + eps), dd += -(dy . a) / (d + eps)^2; da or dd NULL when not wanted
template <typename T>
__global__ void div_rows_backward_kernel(const T *a, const T *d, const T *dy, T *da, T *dd, long long rows,
                                         long long N, float eps) {
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    const int lane = threadIdx.x & 31;
    for (long long r = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
        const float inv = 1.0f / (ln_load(d, r) + eps);
        float s = 0.0f;
        for (long long j = lane; j < N; j += 32) {
            const long long i = r * N + j;
            const float g = ln_load(dy, i);
            s += g * ln_load(a, i);
            if (da) ln_store(da, i, ln_load(da, i) + g * inv);
        }
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (dd && lane == 0) ln_store(dd, r, ln_load(dd, r) - inv * inv * s);
    }
}

extern "C" int ln_div_rows_forward_cuda(ln_node *n) {
    ln_tensor *a = n->in[0], *d = n->in[1];
    if (a->numel == 0) return LN_OK;
    LN_DISPATCH_FLOAT(a->dtype, "div_rows", {
        div_rows_forward_kernel<T><<<ln_grid(a->numel, 256), 256, 0, ln_stream()>>>(
            (const T *)a->data, (const T *)d->data, (T *)n->out[0]->data, a->numel, a->shape[a->ndim - 1],
            (float)n->farg[0]);
    });
    LN_CUDA_LAUNCHED("div_rows forward");
    return LN_OK;
}

extern "C" int ln_div_rows_backward_cuda(ln_node *n) {
    ln_tensor *a = ln_node_saved(n, 0), *d = ln_node_saved(n, 1), *dy = n->out[0]->grad;
    bool want_a = n->in[0]->requires_grad, want_d = n->in[1]->requires_grad;
    if (!dy || (!want_a && !want_d) || a->numel == 0) return LN_OK;
    ln_tensor *da = want_a ? ln_grad_of(n->in[0]) : NULL, *dd = want_d ? ln_grad_of(n->in[1]) : NULL;
    if ((want_a && !da) || (want_d && !dd)) return LN_ERR;
    LN_DISPATCH_FLOAT(a->dtype, "div_rows", {
        div_rows_backward_kernel<T><<<ln_grid(d->numel * 32, 256), 256, 0, ln_stream()>>>(
            (const T *)a->data, (const T *)d->data, (const T *)dy->data, da ? (T *)da->data : NULL,
            dd ? (T *)dd->data : NULL, d->numel, a->shape[a->ndim - 1], (float)n->farg[0]);
    });
    LN_CUDA_LAUNCHED("div_rows backward");
    return LN_OK;
}
