// Fused cross-entropy on the GPU: logits [rows, V] (f32 or bf16, read as stored: no fp32 copy, no
// probabilities kept), targets i32 [rows] (-1 = ignored). Same math as cross_entropy.c (the CPU
// reference), which it shares one op record with:
//   forward:  lse[r] = max + log sum exp(x - max), saved (f32) for the backward as the CPU saves
//             it; loss = sum over counted rows of (lse[r] - x[r, target]) / count.
//   backward: dlogits += (exp(x - lse) - onehot(target)) * dloss / count, zero for ignored rows.
// The count of non-ignored targets is taken on the device (no host sync in a step). Sums are fixed
// block trees and the loss one single-block pass over the rows: run-to-run identical.
//
// Out-of-range targets (not -1, not in [0, V)) are treated as ignored rather than trusted; with
// LINNET_CHECK_IDS set (to anything but "0") the forward finds the first one and syncs once to
// report it as the CPU path does (see embedding.cu).
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_check.cuh"

#define THREADS 256

static bool check_ids_enabled(void) {
    const char *v = getenv("LINNET_CHECK_IDS");
    return v && *v && strcmp(v, "0") != 0;
}

// The block's total, in every thread, the same tree every run (float or long long). Every
// thread of the block must call it; blockDim.x a multiple of 32.
template <typename A>
static __device__ A ce_block_sum(A v) {
    __shared__ A warp_vals[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads(); // an earlier call may still be reading warp_vals
    if (lane == 0) warp_vals[warp] = v;
    __syncthreads();
    v = lane < warps ? warp_vals[lane] : (A)0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ bool counted(int t, long long V) { return t >= 0 && t < V; }

// Online log-sum-exp state (max m, sum s of exp(x - m)) and its merge; an empty side has
// m = -inf, s = 0, and two empty sides stay empty (no inf - inf).
struct lse_state {
    float m, s;
};
__device__ __forceinline__ lse_state lse_merge(lse_state a, lse_state b) {
    float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return {m, 0.0f};
    return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// The block's merged state, in every thread, the same tree every run.
static __device__ lse_state lse_block_merge(lse_state v) {
    __shared__ float ms[32], ss[32];
    for (int o = 16; o > 0; o >>= 1)
        v = lse_merge(v, {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)});
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) ms[warp] = v.m, ss[warp] = v.s;
    __syncthreads();
    v = lane < warps ? lse_state{ms[lane], ss[lane]} : lse_state{-INFINITY, 0.0f};
    for (int o = 16; o > 0; o >>= 1)
        v = lse_merge(v, {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)});
    return v;
}

// One block per row, one pass over the logits (8 at a time where rows are 16-byte aligned):
// lse[r], and row_loss[r] = lse[r] - x[r, target] (0 when not counted).
template <typename T>
__global__ void ce_forward_rows_kernel(const T *x, const int *targets, float *lse, float *row_loss, long long rows,
                                       long long V, bool vec, unsigned long long *first_bad) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) { // uniform per block
        const T *xr = x + r * V;
        lse_state st = {-INFINITY, 0.0f};
        if (vec) {
            for (long long j = 8LL * threadIdx.x; j < V; j += 8LL * blockDim.x) {
                float v[8], m = -INFINITY, s = 0.0f;
                ln_load8(xr + j, v);
                for (int i = 0; i < 8; i++) m = fmaxf(m, v[i]);
                for (int i = 0; i < 8; i++) s += expf(v[i] - m);
                st = lse_merge(st, {m, s});
            }
        } else {
            for (long long j = threadIdx.x; j < V; j += blockDim.x) st = lse_merge(st, {ln_load(xr, j), 1.0f});
        }
        st = lse_block_merge(st);
        if (threadIdx.x == 0) {
            float l = st.m + logf(st.s);
            int t = targets[r];
            lse[r] = l;
            row_loss[r] = counted(t, V) ? l - ln_load(xr, t) : 0.0f;
            if (first_bad && t != -1 && !counted(t, V)) atomicMin(first_bad, (unsigned long long)r);
        }
    }
}

// One block: out = sum(row_loss) / max(count, 1).
template <typename T>
__global__ void ce_forward_loss_kernel(const float *row_loss, const int *targets, long long rows, long long V, T *out) {
    float s = 0.0f;
    long long c = 0;
    for (long long r = threadIdx.x; r < rows; r += blockDim.x) {
        s += row_loss[r];
        c += counted(targets[r], V);
    }
    s = ce_block_sum(s);
    c = ce_block_sum(c);
    if (threadIdx.x == 0) ln_store(out, 0, s / (float)(c ? c : 1));
}

// One block: scale[0] = dloss / max(count, 1).
template <typename T>
__global__ void ce_backward_scale_kernel(const int *targets, long long rows, long long V, const T *dloss, float *scale) {
    long long c = 0;
    for (long long r = threadIdx.x; r < rows; r += blockDim.x) c += counted(targets[r], V);
    c = ce_block_sum(c);
    if (threadIdx.x == 0) scale[0] = ln_load(dloss, 0) / (float)(c ? c : 1);
}

// One block per row: dx[r, j] (+)= (exp(x - lse) - [j == target]) * scale for counted rows; with
// accumulate false dx is a fresh buffer, stored in full (zeros for ignored rows).
template <typename T>
__global__ void ce_backward_rows_kernel(const T *x, const int *targets, const float *lse, const float *scale, T *dx,
                                        long long rows, long long V, bool vec, bool accumulate) {
    float s = scale[0];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        int t = targets[r];
        bool live = counted(t, V);
        if (!live && accumulate) continue;
        const T *xr = x + r * V;
        T *dr = dx + r * V;
        float l = lse[r], rs = live ? s : 0.0f;
        if (vec) {
            for (long long j = 8LL * threadIdx.x; j < V; j += 8LL * blockDim.x) {
                float v[8], old[8];
                ln_load8(xr + j, v);
                if (accumulate) ln_load8(dr + j, old);
                for (int i = 0; i < 8; i++) {
                    float p = expf(v[i] - l) * rs - (j + i == t ? rs : 0.0f);
                    v[i] = accumulate ? old[i] + p : p;
                }
                ln_store8(dr + j, v);
            }
        } else {
            for (long long j = threadIdx.x; j < V; j += blockDim.x) {
                float p = expf(ln_load(xr, j) - l) * rs - (j == t ? rs : 0.0f);
                ln_store(dr, j, accumulate ? ln_load(dr, j) + p : p);
            }
        }
    }
}

// 8 at a time when every row starts 16-byte aligned.
static bool rows_vectorizable(const void *p, long long V, size_t elem) {
    return V % 8 == 0 && (V * (long long)elem) % 16 == 0 && ((uintptr_t)p % 16) == 0;
}

static unsigned row_grid(long long rows) { return rows < (1LL << 20) ? (unsigned)rows : (1u << 20); }

extern "C" int ln_cross_entropy_forward_cuda(ln_node *n) {
    ln_tensor *lt = n->in[0], *tt = n->in[1], *out = n->out[0];
    long long V = lt->shape[lt->ndim - 1], rows = tt->numel;
    if (lt->dtype != LN_F32 && lt->dtype != LN_BF16)
        return ln_fail("cross_entropy: the CUDA kernel takes f32 or bf16 logits, not %s", ln_dtype_name(lt->dtype));
    ln_tensor *lse_t = ln_arena_tensor(LN_F32, lt->device, tt->ndim, tt->shape);
    if (!lse_t) return LN_ERR;
    bool check = check_ids_enabled();
    // row losses, then (when checking) the first bad row
    char *scratch = NULL;
    size_t loss_bytes = ((size_t)(rows > 0 ? rows : 1) * sizeof(float) + 7) / 8 * 8;
    LN_CUDA_TRY(cudaMallocAsync((void **)&scratch, loss_bytes + sizeof(unsigned long long), ln_stream()));
    float *row_loss = (float *)scratch;
    unsigned long long *first_bad = check ? (unsigned long long *)(scratch + loss_bytes) : NULL;
    cudaError_t status = check ? cudaMemsetAsync(first_bad, 0xFF, sizeof *first_bad, ln_stream()) : cudaSuccess;
    if (status == cudaSuccess && rows > 0) {
        LN_DISPATCH_FLOAT(lt->dtype, "cross_entropy", {
            ce_forward_rows_kernel<T><<<row_grid(rows), THREADS, 0, ln_stream()>>>(
                (const T *)lt->data, (const int *)tt->data, (float *)lse_t->data, row_loss, rows, V,
                rows_vectorizable(lt->data, V, sizeof(T)), first_bad);
        });
        status = cudaPeekAtLastError();
    }
    if (status == cudaSuccess) {
        // the loss is f32 whatever the logits' dtype (cross_entropy.c)
        ce_forward_loss_kernel<float><<<1, THREADS, 0, ln_stream()>>>(row_loss, (const int *)tt->data, rows, V,
                                                                       (float *)out->data);
        status = cudaPeekAtLastError();
    }
    unsigned long long bad = ULLONG_MAX;
    int bad_target = 0;
    if (status == cudaSuccess && check) {
        status = cudaMemcpyAsync(&bad, first_bad, sizeof bad, cudaMemcpyDeviceToHost, ln_stream());
        if (status == cudaSuccess) status = cudaStreamSynchronize(ln_stream());
        if (status == cudaSuccess && bad != ULLONG_MAX) {
            status = cudaMemcpyAsync(&bad_target, (const int *)tt->data + bad, sizeof bad_target,
                                     cudaMemcpyDeviceToHost, ln_stream());
            if (status == cudaSuccess) status = cudaStreamSynchronize(ln_stream());
        }
    }
    LN_CUDA_TRY(cudaFreeAsync(scratch, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    if (bad != ULLONG_MAX)
        return ln_fail("cross_entropy: target %d at position %llu of %s is outside [0, %lld) (or -1 to ignore)",
                       bad_target, bad, ln_tensor_label(tt, "targets"), V);
    ln_node_save(n, lse_t); // SAVED_LSE, as the CPU forward
    return LN_OK;
}

extern "C" int ln_cross_entropy_backward_cuda(ln_node *n) {
    ln_tensor *out = n->out[0];
    if (!out->grad || !n->in[0]->requires_grad) return LN_OK;
    ln_tensor *lt = ln_node_saved(n, 0), *tt = ln_node_saved(n, 1), *lse_t = ln_node_saved(n, 2);
    long long V = lt->shape[lt->ndim - 1], rows = tt->numel;
    bool accumulate = false; // the rows kernel reads each element before writing it: dx may be lt
    ln_tensor *dx = ln_grad_over_input(n, 0, lt);
    if (!dx) dx = ln_grad_for_write(n->in[0], &accumulate);
    if (!dx) return LN_ERR;
    if (rows == 0 || V == 0) return LN_OK;
    if (lt->dtype != LN_F32 && lt->dtype != LN_BF16)
        return ln_fail("cross_entropy: the CUDA kernel takes f32 or bf16 logits, not %s", ln_dtype_name(lt->dtype));
    float *scale = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&scale, sizeof *scale, ln_stream()));
    cudaError_t status = cudaSuccess;
    LN_DISPATCH_FLOAT(lt->dtype, "cross_entropy", {
        ce_backward_scale_kernel<float><<<1, THREADS, 0, ln_stream()>>>((const int *)tt->data, rows, V,
                                                                         (const float *)out->grad->data, scale);
        status = cudaPeekAtLastError();
        if (status == cudaSuccess) {
            bool vec = rows_vectorizable(lt->data, V, sizeof(T)) && rows_vectorizable(dx->data, V, sizeof(T));
            ce_backward_rows_kernel<T><<<row_grid(rows), THREADS, 0, ln_stream()>>>(
                (const T *)lt->data, (const int *)tt->data, (const float *)lse_t->data, scale, (T *)dx->data, rows, V,
                vec, accumulate);
            status = cudaPeekAtLastError();
        }
    });
    LN_CUDA_TRY(cudaFreeAsync(scale, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    return LN_OK;
}
