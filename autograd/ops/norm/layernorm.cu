// LayerNorm over the last dim on the GPU: x [rows, D] f32 or bf16, weight and bias [D] f32 or bf16
// (each may differ from x's, as on the CPU), fp32 arithmetic. Same math as layernorm.c (the CPU
// reference):
//   forward:  mean and rstd = 1 / sqrt(var + eps) per row (biased variance, two passes as the CPU
//             does), saved as the CPU saves them (f32 [rows], slots 2 and 3 after x and weight);
//             y = (x - mean) rstd w + b.
//   backward: with xh = (x - mean) rstd, g = dy w:  dx += rstd (g - mean(g) - xh mean(g xh)),
//             dw += sum over rows dy xh,  db += sum over rows dy.
// One warp per row, so a row needs no block sync (D = 768 is 24 elements a lane); 16-byte accesses
// when every row starts 16-byte aligned. dw and db are run-to-run identical without atomics: each
// block sums its rows into its own f32 partial rows (one owner thread per column), then a second
// kernel adds the partial rows in a fixed order.
#include "autograd/ops/norm/norm_cuda.cuh"

template <typename T, int N>
__global__ void layernorm_forward_kernel(const T *x, vec_ref w, vec_ref b, T *y, float *mean, float *rstd,
                                         long long rows, long long D, float eps) {
    int lane = threadIdx.x & 31;
    // r is uniform per warp, so every lane reaches the shuffles
    for (long long r = blockIdx.x * (long long)WARPS + (threadIdx.x >> 5); r < rows; r += (long long)gridDim.x * WARPS) {
        const T *xr = x + r * D;
        T *yr = y + r * D;
        float s = 0.0f;
        for (long long c = (long long)lane * N; c < D; c += 32 * N) {
            float v[N];
            ln_load_n<N>(xr, c, v);
#pragma unroll
            for (int k = 0; k < N; k++) s += v[k];
        }
        float mu = warp_sum(s) / (float)D, var = 0.0f;
        // two passes: E[x^2] - E[x]^2 cancels badly for large means
        for (long long c = (long long)lane * N; c < D; c += 32 * N) {
            float v[N];
            ln_load_n<N>(xr, c, v);
#pragma unroll
            for (int k = 0; k < N; k++) var += (v[k] - mu) * (v[k] - mu);
        }
        float rs = 1.0f / sqrtf(warp_sum(var) / (float)D + eps);
        if (lane == 0) {
            mean[r] = mu;
            rstd[r] = rs;
        }
        for (long long c = (long long)lane * N; c < D; c += 32 * N) {
            float v[N];
            ln_load_n<N>(xr, c, v);
#pragma unroll
            for (int k = 0; k < N; k++) v[k] = (v[k] - mu) * rs * vload(w, c + k) + vload(b, c + k);
            ln_store_n<N>(yr, c, v);
        }
    }
}

// Rows go to blocks in groups of WARPS (warp w of the block takes row g * WARPS + w). Per group:
//   dx (when not NULL): the warp's row, dx += rstd (g - mean(g) - xh mean(g xh));
//   partial (when not NULL): every thread adds the group's dy xh and dy, for the columns it owns,
//   into the block's partial rows (dw's at partial[2 D block], db's D after): set on the block's
//   first group, added to after, so one thread in one order. The group's rows were just read by
//   phase one: they come from cache.
template <typename T, int N>
__global__ void layernorm_backward_kernel(const T *x, vec_ref w, const float *mean, const float *rstd, const T *dy,
                                          T *dx, float *partial, long long rows, long long D) {
    int lane = threadIdx.x & 31;
    long long groups = (rows + WARPS - 1) / WARPS;
    float *pw = partial ? partial + blockIdx.x * 2 * D : NULL, *pb = pw ? pw + D : NULL;
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {
        long long r = g * WARPS + (threadIdx.x >> 5);
        if (dx && r < rows) { // uniform per warp
            const T *xr = x + r * D, *gr = dy + r * D;
            T *dr = dx + r * D;
            float mu = mean[r], rs = rstd[r], sum_g = 0.0f, sum_gx = 0.0f;
            for (long long c = (long long)lane * N; c < D; c += 32 * N) {
                float xv[N], gv[N];
                ln_load_n<N>(xr, c, xv);
                ln_load_n<N>(gr, c, gv);
#pragma unroll
                for (int k = 0; k < N; k++) {
                    float gk = gv[k] * vload(w, c + k);
                    sum_g += gk;
                    sum_gx += gk * (xv[k] - mu) * rs;
                }
            }
            float mean_g = warp_sum(sum_g) / (float)D, mean_gx = warp_sum(sum_gx) / (float)D;
            for (long long c = (long long)lane * N; c < D; c += 32 * N) {
                float xv[N], gv[N], dv[N];
                ln_load_n<N>(xr, c, xv);
                ln_load_n<N>(gr, c, gv);
                ln_load_n<N>(dr, c, dv);
#pragma unroll
                for (int k = 0; k < N; k++)
                    dv[k] += rs * (gv[k] * vload(w, c + k) - mean_g - (xv[k] - mu) * rs * mean_gx);
                ln_store_n<N>(dr, c, dv);
            }
        }
        if (pw) {
            long long r0 = g * WARPS, r1 = r0 + WARPS < rows ? r0 + WARPS : rows;
            bool first = g == blockIdx.x;
            for (long long c = (long long)threadIdx.x * N; c < D; c += (long long)blockDim.x * N) {
                float aw[N] = {}, ab[N] = {};
                for (long long q = r0; q < r1; q++) {
                    float xv[N], gv[N], mq = mean[q], rq = rstd[q];
                    ln_load_n<N>(x + q * D, c, xv);
                    ln_load_n<N>(dy + q * D, c, gv);
#pragma unroll
                    for (int k = 0; k < N; k++) {
                        aw[k] += gv[k] * (xv[k] - mq) * rq;
                        ab[k] += gv[k];
                    }
                }
#pragma unroll
                for (int k = 0; k < N; k++) {
                    pw[c + k] = (first ? 0.0f : pw[c + k]) + aw[k];
                    pb[c + k] = (first ? 0.0f : pb[c + k]) + ab[k];
                }
            }
        }
    }
}

extern "C" int ln_layernorm_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out[0];
    long long D = x->shape[x->ndim - 1], rows = x->numel / D;
    if (!f32_or_bf16(x) || !f32_or_bf16(w) || !f32_or_bf16(b))
        return ln_fail("layernorm: the CUDA kernel takes f32 or bf16 x, weight and bias, not %s, %s and %s",
                       ln_dtype_name(x->dtype), ln_dtype_name(w->dtype), ln_dtype_name(b->dtype));
    int64_t stat_shape[1] = {rows};
    ln_tensor *mean_t = ln_arena_tensor(LN_F32, x->device, 1, stat_shape);
    ln_tensor *rstd_t = ln_arena_tensor(LN_F32, x->device, 1, stat_shape);
    if (!mean_t || !rstd_t) return LN_ERR;
    if (rows > 0) {
        LN_DISPATCH_FLOAT(x->dtype, "layernorm", {
            bool vec = aligned16(x->data) && aligned16(y->data) && D % (long long)(16 / sizeof(T)) == 0;
            LAUNCH_PACKED(vec, layernorm_forward_kernel, group_grid(rows, 1LL << 20), (const T *)x->data, ref_of(w),
                          ref_of(b), (T *)y->data, (float *)mean_t->data, (float *)rstd_t->data, rows, D,
                          (float)n->farg[0]);
        });
        LN_CUDA_LAUNCHED("layernorm forward");
    }
    // slots 2 and 3, as the CPU forward: saved once computed
    ln_node_save(n, mean_t);
    ln_node_save(n, rstd_t);
    return LN_OK;
}

extern "C" int ln_layernorm_backward_cuda(ln_node *n) {
    ln_tensor *out = n->out[0];
    bool need_x = n->in[0]->requires_grad, need_w = n->in[1]->requires_grad, need_b = n->in[2]->requires_grad;
    if (!out->grad || (!need_x && !need_w && !need_b)) return LN_OK;
    ln_tensor *x = ln_node_saved(n, 0), *w = ln_node_saved(n, 1);
    ln_tensor *mean_t = ln_node_saved(n, 2), *rstd_t = ln_node_saved(n, 3);
    long long D = x->shape[x->ndim - 1], rows = x->numel / D;
    ln_tensor *dx = need_x ? ln_grad_of(n->in[0]) : NULL, *dw = need_w ? ln_grad_of(n->in[1]) : NULL;
    ln_tensor *db = need_b ? ln_grad_of(n->in[2]) : NULL;
    if ((need_x && !dx) || (need_w && !dw) || (need_b && !db)) return LN_ERR;
    if (rows == 0) return LN_OK;
    if (!f32_or_bf16(x) || !f32_or_bf16(w) || mean_t->dtype != LN_F32 || rstd_t->dtype != LN_F32 ||
        (db && !f32_or_bf16(db)))
        return ln_fail("layernorm: the CUDA kernel takes f32 or bf16 x, weight and bias and f32 statistics");
    bool need_params = need_w || need_b;
    unsigned blocks = group_grid(rows, MAX_BLOCKS);
    float *partial = NULL;
    if (need_params)
        LN_CUDA_TRY(cudaMallocAsync((void **)&partial, (size_t)blocks * 2 * D * sizeof(float), ln_stream()));
    cudaError_t status = cudaSuccess;
    LN_DISPATCH_FLOAT(x->dtype, "layernorm", {
        T *dxp = dx ? (T *)dx->data : NULL;
        bool vec = aligned16(x->data) && aligned16(out->grad->data) && (!dxp || aligned16(dxp)) &&
                   D % (long long)(16 / sizeof(T)) == 0;
        LAUNCH_PACKED(vec, layernorm_backward_kernel, blocks, (const T *)x->data, ref_of(w), (const float *)mean_t->data,
                      (const float *)rstd_t->data, (const T *)out->grad->data, dxp, partial, rows, D);
        status = cudaPeekAtLastError();
    });
    if (status == cudaSuccess && need_params) {
        // partial rows hold dw's D columns, then db's
        if (dw) launch_norm_colsum(partial, (int)blocks, 2 * D, D, ref_of(dw));
        if (db) launch_norm_colsum(partial + D, (int)blocks, 2 * D, D, ref_of(db));
        status = cudaPeekAtLastError();
    }
    if (partial) LN_CUDA_TRY(cudaFreeAsync(partial, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    return LN_OK;
}
