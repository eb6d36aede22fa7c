// softmax over the last dim on the GPU: one block per row, f32 or bf16 storage, fp32 arithmetic.
// Same math as softmax.c (the CPU reference): y = exp(x - max) / sum exp(x - max);
// dx += y (dy - sum(dy y)). The forward saves y, as the CPU forward does, for the backward.
// Block sums are fixed trees (no atomics): run-to-run identical.
#include <math.h>

#include "autograd/cuda/cuda_check.cuh"

#define THREADS 256

// The block's total (or max), in every thread, the same tree every run. Every thread of the
// block must call it; blockDim.x a multiple of 32.
static __device__ float softmax_block_reduce(float v, bool is_max) {
    __shared__ float warp_vals[32];
    for (int o = 16; o > 0; o >>= 1) {
        float other = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, other) : v + other;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads(); // an earlier call may still be reading warp_vals
    if (lane == 0) warp_vals[warp] = v;
    __syncthreads();
    v = lane < warps ? warp_vals[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float other = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, other) : v + other;
    }
    return v;
}

template <typename T>
__global__ void softmax_forward_kernel(const T *x, T *y, long long rows, long long cols) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) { // uniform per block
        const T *xr = x + r * cols;
        T *yr = y + r * cols;
        float max = -INFINITY;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) max = fmaxf(max, ln_load(xr, j));
        max = softmax_block_reduce(max, true);
        float total = 0.0f;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) total += expf(ln_load(xr, j) - max);
        total = softmax_block_reduce(total, false);
        float inv = 1.0f / total;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) ln_store(yr, j, expf(ln_load(xr, j) - max) * inv);
    }
}

template <typename T>
__global__ void softmax_backward_kernel(const T *y, const T *dy, T *dx, long long rows, long long cols) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *yr = y + r * cols, *gr = dy + r * cols;
        T *dr = dx + r * cols;
        float dot = 0.0f;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) dot += ln_load(gr, j) * ln_load(yr, j);
        dot = softmax_block_reduce(dot, false);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x)
            ln_store(dr, j, ln_load(dr, j) + ln_load(yr, j) * (ln_load(gr, j) - dot));
    }
}

static unsigned row_grid(long long rows) { return rows < (1LL << 20) ? (unsigned)rows : (1u << 20); }

extern "C" int ln_softmax_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    long long cols = x->shape[x->ndim - 1], rows = cols ? x->numel / cols : 0;
    if (rows > 0) {
        LN_DISPATCH_FLOAT(x->dtype, "softmax", {
            softmax_forward_kernel<T><<<row_grid(rows), THREADS, 0, ln_stream()>>>((const T *)x->data, (T *)y->data,
                                                                                   rows, cols);
        });
        LN_CUDA_LAUNCHED("softmax forward");
    }
    ln_node_save(n, y); // as the CPU forward: saved once computed
    return LN_OK;
}

extern "C" int ln_softmax_backward_cuda(ln_node *n) {
    ln_tensor *y = ln_node_saved(n, 0), *out = n->out[0];
    if (!out->grad || !n->in[0]->requires_grad) return LN_OK;
    long long cols = y->shape[y->ndim - 1], rows = cols ? y->numel / cols : 0;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    if (!dx) return LN_ERR;
    if (rows == 0) return LN_OK;
    LN_DISPATCH_FLOAT(y->dtype, "softmax", {
        softmax_backward_kernel<T><<<row_grid(rows), THREADS, 0, ln_stream()>>>(
            (const T *)y->data, (const T *)out->grad->data, (T *)dx->data, rows, cols);
    });
    LN_CUDA_LAUNCHED("softmax backward");
    return LN_OK;
}
