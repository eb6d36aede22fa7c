// RMSNorm over the last dim on the GPU: x [rows, D] f32 or bf16, weight [D] f32 or bf16 (it may
// differ from x's, as on the CPU), gate (gated only) x's shape and dtype, fp32 arithmetic. Same
// math as rmsnorm.c (the CPU reference):
//   forward:  r = 1 / sqrt(mean(x^2) + eps) per row, saved as the CPU saves it (f32 [rows], after
//             x, weight and gate); y = x r w (times silu(gate) when gated).
//   backward: gated, dgate += dy x r w silu'(gate) and dy silu(gate) stands for dy below;
//             with xh = x r, g = dy w:  dx += r (g - xh mean(g xh)),  dw += sum over rows dy xh.
// A warp per row, so a row needs no block sync (D = 768 is 24 elements a lane); a row narrower than
// the warp's 32 packs shares the warp with others (row_lanes: GLA's per-head norm, D = 64, is 4
// rows a warp); 16-byte accesses when every row starts 16-byte aligned. dw is run-to-run identical
// without atomics: each block sums its rows into its own f32 partial row (one owner thread per
// column), then a second kernel adds the partial rows in a fixed order.
#include "autograd/ops/norm/norm_cuda.cuh"
#include "autograd/ops/elementwise/silu.h"

template <typename T, int N>
__global__ void rmsnorm_forward_kernel(const T *x, vec_ref w, const T *gate, T *y, float *rrms, long long rows,
                                       long long D, float eps) {
    const int L = row_lanes(D, N), lane = threadIdx.x & 31, sub = lane & (L - 1);
    const long long per_warp = 32 / L;
    // the warp's rows start uniform per warp, so every lane reaches the shuffles
    for (long long r0 = (blockIdx.x * (long long)WARPS + (threadIdx.x >> 5)) * per_warp; r0 < rows;
         r0 += (long long)gridDim.x * WARPS * per_warp) {
        long long r = r0 + lane / L;
        bool mine = r < rows;
        const T *xr = x + r * D;
        T *yr = y + r * D;
        float ss = 0.0f;
        for (long long c = (long long)sub * N; mine && c < D; c += L * N) {
            float v[N];
            ln_load_n<N>(xr, c, v);
#pragma unroll
            for (int k = 0; k < N; k++) ss += v[k] * v[k];
        }
        float rr = 1.0f / sqrtf(row_sum(ss, L) / (float)D + eps);
        if (!mine) continue;
        if (sub == 0) rrms[r] = rr;
        for (long long c = (long long)sub * N; c < D; c += L * N) {
            float v[N], gv[N];
            ln_load_n<N>(xr, c, v);
            if (gate) ln_load_n<N>(gate + r * D, c, gv);
#pragma unroll
            for (int k = 0; k < N; k++) v[k] = v[k] * rr * vload(w, c + k) * (gate ? ln_siluf(gv[k]) : 1.0f);
            ln_store_n<N>(yr, c, v);
        }
    }
}

// Rows go to blocks in groups of WARPS * (32 / L) (a warp takes 32 / L rows of the group). Per group:
//   dx, dgate (each when not NULL): the lanes' row, dx += r (g - x r^2 sum(g x) / D), dgate as above;
//   partial (when not NULL), the block's partial row of dw, in a fixed order:
//   - C = 1 (a lane's share of a row is one pack: rows up to 32 packs, a GLA head's 64 among
//     them): each lane sums dy x r for its own columns over all its rows in registers, and the
//     block adds its lanes' sums at the end (partial_from_lanes; a block pass per group of such
//     rows would leave all but D / N of its threads idle);
//   - C = 0 (wider rows): every thread adds the group's dy x r, for the columns it owns, into the
//     block's partial row: set on the block's first group, added to after. The group's rows were
//     just read: they come from cache.
template <typename T, int N, int C>
__global__ void rmsnorm_backward_kernel(const T *x, vec_ref w, const T *gate, const float *rrms, const T *dy, T *dx,
                                        T *dgate, float *partial, long long rows, long long D) {
    extern __shared__ float lane_sums[]; // C > 0: [rows in flight][D]
    const int L = row_lanes(D, N), lane = threadIdx.x & 31, sub = lane & (L - 1);
    const long long per_warp = 32 / L, per_group = WARPS * per_warp, groups = (rows + per_group - 1) / per_group;
    const long long first = (long long)sub * N, stride = (long long)L * N;
    float *pw = partial ? partial + blockIdx.x * D : NULL;
    float acc[C > 0 ? C : 1][N] = {}; // C = 1: this lane's columns of dw
    for (long long g = blockIdx.x; g < groups; g += gridDim.x) {
        long long r = g * per_group + (threadIdx.x >> 5) * per_warp + lane / L;
        bool mine = r < rows;
        if (dx || dgate || (pw && C > 0)) { // uniform per warp
            const T *xr = x + r * D, *gr = dy + r * D, *ar = gate ? gate + r * D : NULL;
            float rr = mine ? rrms[r] : 0.0f, dot = 0.0f;
            if (mine && dx)
                for_packs<C>(D, first, stride, [&](long long c, int) {
                    float xv[N], gv[N], av[N];
                    ln_load_n<N>(xr, c, xv);
                    ln_load_n<N>(gr, c, gv);
                    if (ar) ln_load_n<N>(ar, c, av);
#pragma unroll
                    for (int k = 0; k < N; k++) dot += gv[k] * (ar ? ln_siluf(av[k]) : 1.0f) * vload(w, c + k) * xv[k];
                });
            float coef = row_sum(dot, L) * rr * rr / (float)D; // xh mean(g xh) = x coef
            if (mine)
                for_packs<C>(D, first, stride, [&](long long c, int j) {
                    float xv[N], gv[N], av[N], dv[N];
                    ln_load_n<N>(xr, c, xv);
                    ln_load_n<N>(gr, c, gv);
                    if (ar) ln_load_n<N>(ar, c, av);
                    if (C > 0 && pw)
#pragma unroll
                        for (int k = 0; k < N; k++) acc[j][k] += gv[k] * (ar ? ln_siluf(av[k]) : 1.0f) * xv[k] * rr;
                    if (dgate) {
                        ln_load_n<N>(dgate + r * D, c, dv);
#pragma unroll
                        for (int k = 0; k < N; k++) dv[k] += gv[k] * xv[k] * rr * vload(w, c + k) * ln_dsiluf(av[k]);
                        ln_store_n<N>(dgate + r * D, c, dv);
                    }
                    if (dx) {
                        ln_load_n<N>(dx + r * D, c, dv);
#pragma unroll
                        for (int k = 0; k < N; k++)
                            dv[k] += rr * (gv[k] * (ar ? ln_siluf(av[k]) : 1.0f) * vload(w, c + k) - xv[k] * coef);
                        ln_store_n<N>(dx + r * D, c, dv);
                    }
                });
        }
        if (pw && C == 0) {
            long long r0 = g * WARPS, r1 = r0 + WARPS < rows ? r0 + WARPS : rows;
            bool first_group = g == blockIdx.x;
            for (long long c = (long long)threadIdx.x * N; c < D; c += (long long)blockDim.x * N) {
                float sum[N] = {};
                for (long long q = r0; q < r1; q++) {
                    float xv[N], gv[N], av[N], rq = rrms[q];
                    ln_load_n<N>(x + q * D, c, xv);
                    ln_load_n<N>(dy + q * D, c, gv);
                    if (gate) ln_load_n<N>(gate + q * D, c, av);
#pragma unroll
                    for (int k = 0; k < N; k++) sum[k] += gv[k] * (gate ? ln_siluf(av[k]) : 1.0f) * xv[k] * rq;
                }
#pragma unroll
                for (int k = 0; k < N; k++) pw[c + k] = (first_group ? 0.0f : pw[c + k]) + sum[k];
            }
        }
    }
    if constexpr (C > 0)
        if (pw) partial_from_lanes<N, C>(acc, lane_sums, pw, D, L, first, stride);
}

extern "C" int ln_rmsnorm_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *w = n->in[1], *gate = n->iarg[0] ? n->in[2] : NULL, *y = n->out[0];
    long long D = x->shape[x->ndim - 1], rows = x->numel / D;
    if (!f32_or_bf16(x) || !f32_or_bf16(w))
        return ln_fail("rmsnorm: the CUDA kernel takes f32 or bf16 x and weight, not %s and %s",
                       ln_dtype_name(x->dtype), ln_dtype_name(w->dtype));
    int64_t stat_shape[1] = {rows};
    ln_tensor *rt = ln_arena_tensor(LN_F32, x->device, 1, stat_shape);
    if (!rt) return LN_ERR;
    if (rows > 0) {
        LN_DISPATCH_FLOAT(x->dtype, "rmsnorm", {
            const T *gp = gate ? (const T *)gate->data : NULL;
            bool vec = aligned16(x->data) && aligned16(y->data) && (!gp || aligned16(gp)) &&
                       D % (long long)(16 / sizeof(T)) == 0;
            unsigned grid = row_grid(rows, D, vec ? (int)(16 / sizeof(T)) : 1, 1LL << 20);
            LAUNCH_PACKED(vec, rmsnorm_forward_kernel, grid, (const T *)x->data, ref_of(w), gp, (T *)y->data,
                          (float *)rt->data, rows, D, (float)n->farg[0]);
        });
        LN_CUDA_LAUNCHED("rmsnorm forward");
    }
    ln_node_save(n, rt); // after x, weight (and gate), as the CPU forward: saved once computed
    return LN_OK;
}

extern "C" int ln_rmsnorm_backward_cuda(ln_node *n) {
    ln_tensor *out = n->out[0];
    const bool gated = n->iarg[0];
    bool need_x = n->in[0]->requires_grad, need_w = n->in[1]->requires_grad,
         need_g = gated && n->in[2]->requires_grad;
    if (!out->grad || (!need_x && !need_w && !need_g)) return LN_OK;
    ln_tensor *x = ln_node_saved(n, 0), *w = ln_node_saved(n, 1), *rt = ln_node_saved(n, 2 + gated);
    ln_tensor *gate = gated ? ln_node_saved(n, 2) : NULL;
    long long D = x->shape[x->ndim - 1], rows = x->numel / D;
    ln_tensor *dx = need_x ? ln_grad_of(n->in[0]) : NULL, *dw = need_w ? ln_grad_of(n->in[1]) : NULL;
    ln_tensor *dg = need_g ? ln_grad_of(n->in[2]) : NULL;
    if ((need_x && !dx) || (need_w && !dw) || (need_g && !dg)) return LN_ERR;
    if (rows == 0) return LN_OK;
    if (!f32_or_bf16(x) || !f32_or_bf16(w) || rt->dtype != LN_F32)
        return ln_fail("rmsnorm: the CUDA kernel takes f32 or bf16 x and weight and f32 statistics, not %s, %s, %s",
                       ln_dtype_name(x->dtype), ln_dtype_name(w->dtype), ln_dtype_name(rt->dtype));
    // 16-byte packs when every row starts 16-byte aligned; the pack size sets the grid (row_lanes)
    int pack = x->dtype == LN_BF16 ? 8 : 4;
    bool vec = aligned16(x->data) && aligned16(out->grad->data) && (!dx || aligned16(dx->data)) &&
               (!gate || aligned16(gate->data)) && (!dg || aligned16(dg->data)) && D % pack == 0;
    const int N = vec ? pack : 1, L = row_lanes(D, N), C = need_w ? lane_sum_packs(D, N, L, 1) : 0;
    unsigned blocks = row_grid(rows, D, N, MAX_BLOCKS);
    size_t lane_sum_bytes = C ? (size_t)(WARPS * 32 / L) * D * sizeof(float) : 0; // <= 8 KB
    float *partial = NULL;
    if (need_w) LN_CUDA_TRY(cudaMallocAsync((void **)&partial, (size_t)blocks * D * sizeof(float), ln_stream()));
    cudaError_t status = cudaSuccess;
    LN_DISPATCH_FLOAT(x->dtype, "rmsnorm", {
        LAUNCH_PACKED_SUMS(vec, C, 1, rmsnorm_backward_kernel, blocks, lane_sum_bytes, (const T *)x->data, ref_of(w),
                           gate ? (const T *)gate->data : NULL, (const float *)rt->data, (const T *)out->grad->data,
                           dx ? (T *)dx->data : NULL, dg ? (T *)dg->data : NULL, partial, rows, D);
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
