// sum, mean and sum_last on the GPU: f32 or bf16 storage, fp32 accumulation. Same math as
// reductions.c (the CPU reference).
//
// Deterministic: no atomics. Every sum is a fixed tree (threads stride in a fixed pattern, then a
// warp-shuffle butterfly and one pass over the warp sums), and sum/mean of everything runs in two
// passes whose block count depends only on the element count, so a run repeats bit for bit.
#include "autograd/cuda/cuda_check.cuh"

#define THREADS 256

// The block's total, in every thread, the same tree every run. Every thread of the block must
// call it; blockDim.x a multiple of 32.
static __device__ float block_sum(float v) {
    __shared__ float warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads(); // an earlier call may still be reading warp_sums
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = lane < warps ? warp_sums[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out[block] = factor * (sum of this block's grid-stride share of x[0, n))
template <typename TI, typename TO>
__global__ void partial_sums_kernel(const TI *x, long long n, TO *out, float factor) {
    float s = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        s += ln_load(x, i);
    s = block_sum(s);
    if (threadIdx.x == 0) ln_store(out, blockIdx.x, s * factor);
}

// dx += dy[0] * factor
template <typename T>
__global__ void fill_backward_kernel(const T *dy, T *dx, float factor, long long n) {
    float g = ln_load(dy, 0) * factor;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dx, i, ln_load(dx, i) + g);
}

// ---- sum / mean of everything: farg[0] is the factor (1 for sum, 1/numel for mean) ----

extern "C" int ln_total_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    long long count = x->numel;
    long long blocks = (count + 8 * THREADS - 1) / (8 * THREADS); // ~8 elements a thread, at most 1024 blocks
    if (blocks < 1) blocks = 1;
    if (blocks > 1024) blocks = 1024;
    float *partial = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&partial, (size_t)blocks * sizeof(float), ln_stream()));
    cudaError_t launched = cudaSuccess;
    LN_DISPATCH_FLOAT(x->dtype, n->op->name, {
        partial_sums_kernel<T, float><<<(unsigned)blocks, THREADS, 0, ln_stream()>>>((const T *)x->data, count, partial, 1.0f);
        launched = cudaPeekAtLastError();
        if (launched == cudaSuccess) {
            partial_sums_kernel<float, T><<<1, THREADS, 0, ln_stream()>>>(partial, blocks, (T *)y->data, (float)n->farg[0]);
            launched = cudaPeekAtLastError();
        }
    });
    LN_CUDA_TRY(cudaFreeAsync(partial, ln_stream())); // stream-ordered: after both passes
    LN_CUDA_TRY(launched);
    return LN_OK;
}

extern "C" int ln_total_backward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    if (!y->grad || !x->requires_grad || x->numel == 0) return LN_OK;
    ln_tensor *dx = ln_grad_of(x);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, n->op->name, {
        fill_backward_kernel<T><<<ln_grid(x->numel, THREADS), THREADS, 0, ln_stream()>>>((const T *)y->grad->data, (T *)dx->data,
                                                                                (float)n->farg[0], x->numel);
    });
    LN_CUDA_LAUNCHED("sum/mean backward");
    return LN_OK;
}

// ---- sum over the last dim: [rows, cols] -> [rows], one block per row ----

template <typename T>
__global__ void sum_last_forward_kernel(const T *x, T *y, long long rows, long long cols) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) { // uniform per block: block_sum is safe
        const T *row = x + r * cols;
        float s = 0.0f;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += ln_load(row, j);
        s = block_sum(s);
        if (threadIdx.x == 0) ln_store(y, r, s);
    }
}

// dx[r, j] += dy[r]
template <typename T>
__global__ void sum_last_backward_kernel(const T *dy, T *dx, long long n, long long cols) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dx, i, ln_load(dx, i) + ln_load(dy, i / cols));
}

extern "C" int ln_sum_last_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    long long cols = x->shape[x->ndim - 1], rows = y->numel;
    if (rows == 0) return LN_OK;
    unsigned grid = rows < (1LL << 20) ? (unsigned)rows : (1u << 20);
    LN_DISPATCH_FLOAT(x->dtype, "sum_last", {
        sum_last_forward_kernel<T><<<grid, THREADS, 0, ln_stream()>>>((const T *)x->data, (T *)y->data, rows, cols);
    });
    LN_CUDA_LAUNCHED("sum_last forward");
    return LN_OK;
}

extern "C" int ln_sum_last_backward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    long long cols = x->shape[x->ndim - 1];
    if (!y->grad || !x->requires_grad || x->numel == 0) return LN_OK;
    ln_tensor *dx = ln_grad_of(x);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, "sum_last", {
        sum_last_backward_kernel<T><<<ln_grid(x->numel, THREADS), THREADS, 0, ln_stream()>>>((const T *)y->grad->data,
                                                                                    (T *)dx->data, x->numel, cols);
    });
    LN_CUDA_LAUNCHED("sum_last backward");
    return LN_OK;
}
