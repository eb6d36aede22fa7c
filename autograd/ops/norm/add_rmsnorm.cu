// sum = x + delta and y = rmsnorm(sum) * weight on the GPU, one node (add_rmsnorm.c is the CPU
// reference): x, delta [rows, D] of one dtype, f32 or bf16; weight [D] f32 or bf16; fp32 arithmetic.
// The same math, rounding and saved statistics as add.cu's add followed by rmsnorm.cu's rmsnorm:
//   forward:  s = x + delta stored in x's dtype, r = 1 / sqrt(mean(s^2) + eps) of the stored s
//             (f32 [rows], saved in slot 2 after the weight and the sum), y = s r w.
//   backward: g = ds + [dy given] r (dy w - s r^2 mean(dy w s)), rounded to the sum's dtype as its
//             stored gradient would be; dx = ddelta = g; dw += sum over rows dy s r.
// One warp per row, 16-byte accesses when every row start allows them, and the weight gradient
// through per-block partial rows and a fixed-order column sum (run-to-run identical, no atomics),
// as rmsnorm.cu. What it saves over two ops: forward, the sum is normalised while it is in cache;
// backward, g is written once into x's and delta's gradients (the sum's gradient buffer carrying
// on as one of them), no zero-fill and no separate add pass.
#include "autograd/ops/norm/norm_cuda.cuh"

// v as T stores it: the value a later read of the stored element gives.
template <typename T>
__device__ __forceinline__ float as_stored(float v) {
    T t;
    ln_store(&t, 0, v);
    return ln_load(&t, 0);
}

template <typename T, int N>
__global__ void add_rmsnorm_forward_kernel(const T *x, const T *delta, vec_ref w, T *y, T *sum, float *rrms,
                                           long long rows, long long D, float eps) {
    int lane = threadIdx.x & 31;
    // r is uniform per warp, so every lane reaches the shuffles
    for (long long r = blockIdx.x * (long long)WARPS + (threadIdx.x >> 5); r < rows; r += (long long)gridDim.x * WARPS) {
        const T *xr = x + r * D, *dr = delta + r * D;
        T *yr = y + r * D, *sr = sum + r * D;
        float ss = 0.0f;
        for (long long c = (long long)lane * N; c < D; c += 32 * N) {
            float v[N], d[N];
            ln_load_n<N>(xr, c, v);
            ln_load_n<N>(dr, c, d);
#pragma unroll
            for (int k = 0; k < N; k++) v[k] = as_stored<T>(v[k] + d[k]);
            ln_store_n<N>(sr, c, v);
#pragma unroll
            for (int k = 0; k < N; k++) ss += v[k] * v[k];
        }
        float rr = 1.0f / sqrtf(warp_sum(ss) / (float)D + eps);
        if (lane == 0) rrms[r] = rr;
        // the lane reads back the sum elements it stored itself: no sync, and they are in cache
        for (long long c = (long long)lane * N; c < D; c += 32 * N) {
            float v[N];
            ln_load_n<N>(sr, c, v);
#pragma unroll
            for (int k = 0; k < N; k++) v[k] = v[k] * rr * vload(w, c + k);
            ln_store_n<N>(yr, c, v);
        }
    }
}

// g into out (store) or onto it (acc); the same thread read anything it overwrites.
template <int N, typename T>
__device__ __forceinline__ void put_n(T *out, bool acc, long long i, const float (&g)[N]) {
    float o[N];
    if (acc) {
        ln_load_n<N>(out, i, o);
#pragma unroll
        for (int k = 0; k < N; k++) o[k] += g[k];
    } else {
#pragma unroll
        for (int k = 0; k < N; k++) o[k] = g[k];
    }
    ln_store_n<N>(out, i, o);
}

// Rows go to blocks in groups of WARPS (warp w of the block takes row g * WARPS + w), as in
// rmsnorm_backward_kernel. Per group:
//   rows (when out1 or out2): the warp's row, g = ds (0 when NULL) + the norm's part (when dy),
//   rounded to T, stored to (or, acc, added onto) out1 and then out2. out1 may be ds itself (its
//   buffer adopted as an input's gradient): each element is read before it is written, by the
//   same thread. out2 may be out1 (x + x: acc2 adds g a second time, after out1 was written);
//   partial (when not NULL; needs dy): the rows' dy s r summed into the block's partial row: C = 4
//   (a lane's share of a row at most 4 packs: D <= 1024 in bf16, 512 in f32) in registers over
//   all the lane's rows, added up by the block at the end (partial_from_lanes); C = 0 (wider rows)
//   by a block pass over each group, as rmsnorm_backward_kernel does.
template <typename T, int N, int C>
__global__ void add_rmsnorm_backward_kernel(const T *sum, vec_ref w, const float *rrms, const T *dy, const T *ds,
                                            T *out1, bool acc1, T *out2, bool acc2, float *partial, long long rows,
                                            long long D) {
    extern __shared__ float lane_sums[]; // C > 0: [WARPS][D]
    const int lane = threadIdx.x & 31;
    const long long first = (long long)lane * N, stride = 32LL * N;
    long long groups = (rows + WARPS - 1) / WARPS;
    float *pw = partial ? partial + blockIdx.x * D : NULL;
    float acc[C > 0 ? C : 1][N] = {}; // C > 0: this lane's columns of dw
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {
        long long r = g * WARPS + (threadIdx.x >> 5);
        if ((out1 || out2 || (pw && C > 0)) && r < rows) { // uniform per warp
            const T *sr = sum + r * D, *gr = dy ? dy + r * D : NULL, *dsr = ds ? ds + r * D : NULL;
            float rr = rrms[r], coef = 0.0f;
            if (gr) { // uniform: every lane or none reaches the shuffles
                float dot = 0.0f;
                for_packs<C>(D, first, stride, [&](long long c, int) {
                    float sv[N], gv[N];
                    ln_load_n<N>(sr, c, sv);
                    ln_load_n<N>(gr, c, gv);
#pragma unroll
                    for (int k = 0; k < N; k++) dot += gv[k] * vload(w, c + k) * sv[k];
                });
                coef = warp_sum(dot) * rr * rr / (float)D; // sh mean(gy sh) = s coef
            }
            for_packs<C>(D, first, stride, [&](long long c, int j) {
                float dv[N];
                if (dsr) {
                    ln_load_n<N>(dsr, c, dv);
                } else {
#pragma unroll
                    for (int k = 0; k < N; k++) dv[k] = 0.0f;
                }
                if (gr) {
                    float sv[N], gv[N];
                    ln_load_n<N>(sr, c, sv);
                    ln_load_n<N>(gr, c, gv);
#pragma unroll
                    for (int k = 0; k < N; k++) dv[k] += rr * (gv[k] * vload(w, c + k) - sv[k] * coef);
                    if (C > 0 && pw)
#pragma unroll
                        for (int k = 0; k < N; k++) acc[j][k] += gv[k] * sv[k] * rr;
                }
#pragma unroll
                for (int k = 0; k < N; k++) dv[k] = as_stored<T>(dv[k]);
                if (out1) put_n<N>(out1 + r * D, acc1, c, dv);
                if (out2) put_n<N>(out2 + r * D, acc2, c, dv);
            });
        }
        if (pw && C == 0) {
            long long r0 = g * WARPS, r1 = r0 + WARPS < rows ? r0 + WARPS : rows;
            bool first_group = g == blockIdx.x;
            for (long long c = (long long)threadIdx.x * N; c < D; c += (long long)blockDim.x * N) {
                float sum_q[N] = {};
                for (long long q = r0; q < r1; q++) {
                    float sv[N], gv[N], rq = rrms[q];
                    ln_load_n<N>(sum + q * D, c, sv);
                    ln_load_n<N>(dy + q * D, c, gv);
#pragma unroll
                    for (int k = 0; k < N; k++) sum_q[k] += gv[k] * sv[k] * rq;
                }
#pragma unroll
                for (int k = 0; k < N; k++) pw[c + k] = (first_group ? 0.0f : pw[c + k]) + sum_q[k];
            }
        }
    }
    if constexpr (C > 0)
        if (pw) partial_from_lanes<N, C>(acc, lane_sums, pw, D, 32, first, stride);
}

static bool check_dtypes(const ln_tensor *x, const ln_tensor *delta, const ln_tensor *w) {
    return f32_or_bf16(x) && delta->dtype == x->dtype && f32_or_bf16(w);
}

extern "C" int ln_add_rmsnorm_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *delta = n->in[1], *w = n->in[2], *y = n->out[0], *s = n->out[1];
    long long D = x->shape[x->ndim - 1], rows = x->numel / D;
    if (!check_dtypes(x, delta, w))
        return ln_fail("add_rmsnorm: the CUDA kernel takes f32 or bf16 x (delta the same) and weight, not %s, %s and %s",
                       ln_dtype_name(x->dtype), ln_dtype_name(delta->dtype), ln_dtype_name(w->dtype));
    int64_t stat_shape[1] = {rows};
    ln_tensor *rt = ln_arena_tensor(LN_F32, x->device, 1, stat_shape);
    if (!rt) return LN_ERR;
    if (rows > 0) {
        LN_DISPATCH_FLOAT(x->dtype, "add_rmsnorm", {
            bool vec = aligned16(x->data) && aligned16(delta->data) && aligned16(y->data) && aligned16(s->data) &&
                       D % (long long)(16 / sizeof(T)) == 0;
            LAUNCH_PACKED(vec, add_rmsnorm_forward_kernel, group_grid(rows, 1LL << 20), (const T *)x->data,
                          (const T *)delta->data, ref_of(w), (T *)y->data, (T *)s->data, (float *)rt->data, rows, D,
                          (float)n->farg[0]);
        });
        LN_CUDA_LAUNCHED("add_rmsnorm forward");
    }
    ln_node_save(n, s);  // slot 1, as the CPU forward: saved once written
    ln_node_save(n, rt); // slot 2
    return LN_OK;
}

extern "C" int ln_add_rmsnorm_backward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *delta = n->in[1], *dy = n->out[0]->grad, *ds = n->out[1]->grad;
    bool same = x == delta;
    bool need_x = x->requires_grad, need_d = delta->requires_grad && !same;
    bool need_w = n->in[2]->requires_grad && dy;
    if (!need_x && !need_d && !need_w) return LN_OK;
    ln_tensor *w = ln_node_saved(n, 0), *s = ln_node_saved(n, 1), *rt = ln_node_saved(n, 2);
    long long D = s->shape[s->ndim - 1], rows = s->numel / D;
    if (!check_dtypes(s, s, w) || rt->dtype != LN_F32 || (dy && dy->dtype != s->dtype) || (ds && ds->dtype != s->dtype))
        return ln_fail("add_rmsnorm: the CUDA kernel takes f32 or bf16 sum, gradients of its dtype, f32 or bf16 weight "
                       "and f32 statistics, not %s, %s, %s, %s and %s",
                       ln_dtype_name(s->dtype), dy ? ln_dtype_name(dy->dtype) : "-",
                       ds ? ln_dtype_name(ds->dtype) : "-", ln_dtype_name(w->dtype), ln_dtype_name(rt->dtype));

    // Where g goes. The sum's gradient is final once this node's backward runs, so an input with
    // no gradient yet may take its buffer (g is then formed in place); only one input may, as two
    // live tensors must not share a gradient. The other input gets a gradient written whole
    // (ln_grad_for_write: no zero-fill) or added onto. x + x: g is added twice to x's one.
    ln_tensor *first = need_x ? x : need_d ? delta : NULL, *second = need_x && need_d ? delta : NULL;
    ln_tensor *g1 = NULL, *g2 = NULL;
    bool acc1 = false, acc2 = false, in_place = false;
    if (first) {
        if (ds && ln_grad_adopt(first, ds)) {
            in_place = true;
        } else if (ds && second && ln_grad_adopt(second, ds)) {
            ln_tensor *t = first;
            first = second;
            second = t;
            in_place = true;
        }
        g1 = in_place ? first->grad : ln_grad_for_write(first, &acc1);
        if (!g1) return LN_ERR;
        if (second) {
            g2 = ln_grad_for_write(second, &acc2);
            if (!g2) return LN_ERR;
        } else if (same) {
            g2 = g1;
            acc2 = true;
        }
    }
    ln_tensor *dw = need_w ? ln_grad_of(n->in[2]) : NULL;
    if (need_w && !dw) return LN_ERR;
    // in place with no dy, g is ds as it stands: only a second destination needs the rows pass
    if (in_place && !dy && !same) g1 = NULL;
    if (rows == 0 || (!g1 && !g2 && !need_w)) return LN_OK;

    // 16-byte packs when every row starts 16-byte aligned; dw's sums in registers when they fit
    int pack = s->dtype == LN_BF16 ? 8 : 4;
    bool vec = aligned16(s->data) && (!dy || aligned16(dy->data)) && (!ds || aligned16(ds->data)) &&
               (!g1 || aligned16(g1->data)) && (!g2 || aligned16(g2->data)) && D % pack == 0;
    const int C = need_w ? lane_sum_packs(D, vec ? pack : 1, 32, 4) : 0;
    size_t lane_sum_bytes = C ? (size_t)WARPS * D * sizeof(float) : 0; // <= 32 KB
    unsigned blocks = group_grid(rows, MAX_BLOCKS);
    float *partial = NULL;
    if (need_w) LN_CUDA_TRY(cudaMallocAsync((void **)&partial, (size_t)blocks * D * sizeof(float), ln_stream()));
    cudaError_t status = cudaSuccess;
    LN_DISPATCH_FLOAT(s->dtype, "add_rmsnorm", {
        LAUNCH_PACKED_SUMS(vec, C, 4, add_rmsnorm_backward_kernel, blocks, lane_sum_bytes, (const T *)s->data,
                           ref_of(w), (const float *)rt->data, dy ? (const T *)dy->data : NULL,
                           ds ? (const T *)ds->data : NULL, g1 ? (T *)g1->data : NULL, acc1,
                           g2 ? (T *)g2->data : NULL, acc2, partial, rows, D);
        status = cudaPeekAtLastError();
    });
    if (status == cudaSuccess && need_w) {
        launch_norm_colsum(partial, (int)blocks, D, D, ref_of(dw));
        status = cudaPeekAtLastError();
    }
    if (partial) LN_CUDA_TRY(cudaFreeAsync(partial, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    return LN_OK;
}
