// Backward of gla / simple_gla / linear_attention on CUDA (gla_chunked.c's backward):
//   1. the forward scan again: h_c for every chunk (nothing was saved),
//   2. the reverse scan: dh_c+1 for every chunk, dh0 at the end,
//   3. one block per (chunk, head), phases separated by barriers:
//        A (gated scores) -> dv = scale A^T do + (k e^(Gam-G)) dh_c+1        (one product, [64 | K])
//        dA = scale do v^T (j <= i)
//        dk  = (v dh_c+1^T) e^(Gam-G) + intra cols(dA, q)
//        dq  = scale (do h_c^T) e^G + intra rows(dA, k)
//        dG  = q dq - k dk, + rowsum(dh_c+1 * h_c+1) on the last row, where
//              rowsum(dh_c+1 * h_c+1) = e^Gam rowsum(dh_c+1 * h_c) + sum_j k_j (v dh_c+1^T)_j e^(Gam-G_j)
//        dg  = reverse cumulative sum of dG over the chunk (summed over K for a per-head gate).
//      Gradients are added to what the tensors hold (grads accumulate).
#include "gla_mma.cuh"

#define BWD_THREADS 256

struct bwd_out {
    void *dq, *dk, *dv, *dg; // NULL when not wanted
};

template <typename T, bool MMA>
__global__ void __launch_bounds__(BWD_THREADS) gla_bwd_kernel(gla_plan p, const T *__restrict__ q,
                                                              const T *__restrict__ k, const T *__restrict__ v,
                                                              const T *__restrict__ g, const T *__restrict__ dout,
                                                              const T *__restrict__ hs, const T *__restrict__ dhs,
                                                              bwd_out out) {
    extern __shared__ __align__(16) char smem[];
    constexpr bool FAST = MMA;
    gla_tile<T> s;
    T *sv, *sdo;
    float *sdG, *scratch;
    gla_carve<T>(smem, p.KP, p.VP, true, &s, &sv, &sdo, &sdG, &scratch);
    const int gc = blockIdx.x, h = blockIdx.y, H = p.H, K = p.K, V = p.V, KP = p.KP, VP = p.VP;
    long long tok0;
    int n;
    gla_chunk_at(p, gc, tok0, n);
    const int ldv = VP + 8, ldf = s.ldf;
    const float scale = p.scale;
    T *dq = (T *)out.dq, *dk = (T *)out.dk, *dv = (T *)out.dv, *dg = (T *)out.dg;
    const long long qrow0 = (tok0 * H + h) * K, vrow0 = (tok0 * H + h) * V, qstride = (long long)H * K,
                    vstride = (long long)H * V;
    gla_load_tile(s.q, s.ldt, q + qrow0, qstride, n, K, KP);
    gla_load_tile(s.k, s.ldt, k + qrow0, qstride, n, K, KP);
    gla_load_tile(sv, ldv, v + vrow0, vstride, n, V, VP);
    gla_load_tile(sdo, ldv, dout + vrow0, vstride, n, V, VP);
    gla_load_gates(s.G, ldf, g, p.gate, tok0, H, h, K, KP, n, scratch); // ends with a barrier
    gla_gate_prep<FAST>(s);
    const float *Gam = s.G + (GLA_C - 1) * ldf; // rows past n repeat row n - 1
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) { // k e^(Gam - G) into dG's slot
        const int j = idx / KP, d = idx % KP;
        sdG[j * ldf + d] = gla_ld(s.k, (long long)j * s.ldt + d) * gla_exp<FAST>(Gam[d] - s.G[j * ldf + d]);
    }
    __syncthreads();
    gla_scores<MMA, FAST>(s);
    const long long slot = ((long long)gc * H + h) * K * V;
    const T *hc = hs + slot, *dh = dhs + slot;
    // dv = scale A^T do + (k e^(Gam-G)) dh_c+1
    gla_gemm<MMA, 4>(
        GLA_C, VP, GLA_C + KP,
        [&](int m, int kk) { return kk < GLA_C ? s.A[kk * s.lda + m] : sdG[m * ldf + kk - GLA_C]; },
        [&](int kk, int nn, int) {
            if (kk < GLA_C) return scale * gla_ld(sdo, (long long)kk * ldv + nn);
            const int d = kk - GLA_C;
            return d < K && nn < V ? gla_ld(dh, (long long)d * V + nn) : 0.f;
        },
        [&](int m, int nn, float c) {
            if (dv && m < n && nn < V) {
                const long long i = vrow0 + (long long)m * vstride + nn;
                gla_st(dv, i, gla_ld(dv, i) + c);
            }
        });
    __syncthreads();
    // dA = scale do v^T, lower triangle
    gla_gemm<MMA, 4>(
        GLA_C, GLA_C, VP, [&](int m, int kk) { return gla_ld(sdo, (long long)m * ldv + kk); },
        [&](int kk, int nn, int) { return gla_ld(sv, (long long)nn * ldv + kk); },
        [&](int m, int nn, float c) { s.A[m * s.lda + nn] = nn <= m ? scale * c : 0.f; });
    // dk inter = (v dh^T) e^(Gam - G); dG = -k dk (assigned: every element once)
    gla_gemm<MMA, 4>(
        GLA_C, KP, VP, [&](int m, int kk) { return gla_ld(sv, (long long)m * ldv + kk); },
        [&](int kk, int nn, int) { return nn < K && kk < V ? gla_ld(dh, (long long)nn * V + kk) : 0.f; },
        [&](int m, int nn, float c) {
            const float val = c * gla_exp<FAST>(Gam[nn] - s.G[m * ldf + nn]);
            if (dk && m < n && nn < K) {
                const long long i = qrow0 + (long long)m * qstride + nn;
                gla_st(dk, i, gla_ld(dk, i) + val);
            }
            sdG[m * ldf + nn] = -gla_ld(s.k, (long long)m * s.ldt + nn) * val;
        });
    __syncthreads();
    // rowsum(dh_c+1 * h_c+1)_d = e^Gam_d sum_e dh h_c - sum_j dG_jd (so far), one warp per d
    {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
        for (int d = warp; d < KP; d += nw) {
            float acc = 0.f, cs = 0.f;
            if (d < K)
                for (int e = lane; e < V; e += 32) acc += gla_ld(dh, (long long)d * V + e) * gla_ld(hc, (long long)d * V + e);
            for (int j = lane; j < GLA_C; j += 32) cs += sdG[j * ldf + d];
            for (int o = 16; o > 0; o >>= 1) {
                acc += __shfl_xor_sync(0xffffffffu, acc, o);
                cs += __shfl_xor_sync(0xffffffffu, cs, o);
            }
            if (lane == 0) scratch[d] = gla_exp<FAST>(Gam[d]) * acc - cs;
        }
    }
    __syncthreads();
    // dq inter = scale (do h_c^T) e^G; dG += q dq
    gla_gemm<MMA, 4>(
        GLA_C, KP, VP, [&](int m, int kk) { return gla_ld(sdo, (long long)m * ldv + kk); },
        [&](int kk, int nn, int) { return nn < K && kk < V ? gla_ld(hc, (long long)nn * V + kk) : 0.f; },
        [&](int m, int nn, float c) {
            const float val = scale * c * gla_exp<FAST>(s.G[m * ldf + nn]);
            if (dq && m < n && nn < K) {
                const long long i = qrow0 + (long long)m * qstride + nn;
                gla_st(dq, i, gla_ld(dq, i) + val);
            }
            sdG[m * ldf + nn] += gla_ld(s.q, (long long)m * s.ldt + nn) * val;
        });
    __syncthreads();
    gla_intra_rows<MMA, FAST>(s, [&](int i, int d, float val) {
        if (dq && i < n && d < K) {
            const long long x = qrow0 + (long long)i * qstride + d;
            gla_st(dq, x, gla_ld(dq, x) + val);
        }
        sdG[i * ldf + d] += gla_ld(s.q, (long long)i * s.ldt + d) * val;
    });
    gla_intra_cols<MMA, FAST>(s, [&](int j, int d, float val) {
        if (dk && j < n && d < K) {
            const long long x = qrow0 + (long long)j * qstride + d;
            gla_st(dk, x, gla_ld(dk, x) + val);
        }
        sdG[j * ldf + d] -= gla_ld(s.k, (long long)j * s.ldt + d) * val;
    });
    if (!dg) return;
    // dg_i = rowsum term + sum_{i' >= i} dG_i' (reverse scan per column, in segments)
    int segs = blockDim.x / KP;
    segs = segs < 1 ? 1 : (segs > 16 ? 16 : segs);
    const int seg_len = GLA_C / segs;
    for (int w = threadIdx.x; w < KP * segs; w += blockDim.x) {
        const int d = w % KP, sg = w / KP;
        float run = 0.f;
        for (int i = (sg + 1) * seg_len - 1; i >= sg * seg_len; i--) sdG[i * ldf + d] = (run += sdG[i * ldf + d]);
    }
    __syncthreads();
    if (p.gate == GLA_GATE_PER_KEY) {
        for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
            const int i = idx / KP, d = idx % KP, sg = i / seg_len;
            if (i >= n || d >= K) continue;
            float tot = scratch[d];
            for (int t = sg + 1; t < segs; t++) tot += sdG[(t * seg_len) * ldf + d];
            const long long x = qrow0 + (long long)i * qstride + d;
            gla_st(dg, x, gla_ld(dg, x) + sdG[i * ldf + d] + tot);
        }
    } else { // per head: sum over d, one warp per row
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
        for (int i = warp; i < n; i += nw) {
            const int sg = i / seg_len;
            float acc = 0.f;
            for (int d = lane; d < K; d += 32) {
                float tot = scratch[d] + sdG[i * ldf + d];
                for (int t = sg + 1; t < segs; t++) tot += sdG[(t * seg_len) * ldf + d];
                acc += tot;
            }
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane == 0) {
                const long long x = (tok0 + i) * H + h;
                gla_st(dg, x, gla_ld(dg, x) + acc);
            }
        }
    }
}

extern "C" int gla_family_backward_cuda(ln_node *n) {
    ln_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    ln_tensor *g = n->iarg[1] >= 0 ? n->in[n->iarg[1]] : NULL, *h0 = n->iarg[2] >= 0 ? n->in[n->iarg[2]] : NULL;
    const bool want_dg = g && g->requires_grad && n->iarg[0] != GLA_GATE_NONE, want_dh0 = h0 && h0->requires_grad;
    if (!q->requires_grad && !k->requires_grad && !v->requires_grad && !want_dg && !want_dh0) return LN_OK;
    gla_plan p;
    if (gla_cuda_begin(n, &p)) return LN_ERR;
    const ln_dtype dt = q->dtype;
    if (gla_mma_applies(&p, dt)) {
        const int status = gla_mma_backward(n, &p);
        gla_plan_free(&p);
        return status;
    }
    const size_t es = ln_dtype_size(dt);
    const ln_tensor *dht = n->iarg[5] ? n->out[1]->grad : NULL;
    bwd_out o = {q->requires_grad ? ln_grad_of(q) : NULL, k->requires_grad ? ln_grad_of(k) : NULL,
                 v->requires_grad ? ln_grad_of(v) : NULL, want_dg ? ln_grad_of(g) : NULL};
    ln_tensor *dh0 = want_dh0 ? ln_grad_of(h0) : NULL;
    int status = LN_OK;
    if ((q->requires_grad && !o.dq) || (k->requires_grad && !o.dk) || (v->requires_grad && !o.dv) ||
        (want_dg && !o.dg) || (want_dh0 && !dh0))
        status = LN_ERR;
    o.dq = o.dq ? ((ln_tensor *)o.dq)->data : NULL;
    o.dk = o.dk ? ((ln_tensor *)o.dk)->data : NULL;
    o.dv = o.dv ? ((ln_tensor *)o.dv)->data : NULL;
    o.dg = o.dg ? ((ln_tensor *)o.dg)->data : NULL;
    const int dht_kind = gla_state_kind(dht), h0_kind = gla_state_kind(h0), dh0_kind = gla_state_kind(dh0);
    if (dht_kind < 0 || h0_kind < 0 || dh0_kind < 0) status = LN_ERR;
    const size_t tokens_v = (size_t)q->shape[0] * q->shape[1] * p.H * p.V;
    const size_t sbytes = (size_t)p.n_chunks * p.H * p.K * p.V * es;
    void *hs = NULL, *dhs = NULL, *zeros = NULL;
    const void *dout = n->out[0]->grad ? n->out[0]->grad->data : NULL;
    if (status == LN_OK && sbytes) {
        cudaStream_t st = ln_stream();
        if (cudaMallocAsync(&hs, sbytes, st) != cudaSuccess || cudaMallocAsync(&dhs, sbytes, st) != cudaSuccess ||
            (!dout && (cudaMallocAsync(&zeros, tokens_v * es, st) != cudaSuccess ||
                       cudaMemsetAsync(zeros, 0, tokens_v * es, st) != cudaSuccess)))
            status = ln_fail("%s backward: out of GPU memory for %zu bytes of states", n->op->name, 2 * sbytes);
        if (!dout) dout = zeros;
    }
    const void *gd = g ? g->data : NULL;
    if (status == LN_OK)
        status = gla_scan(&p, dt, false, k->data, v->data, gd, hs, h0 ? h0->data : NULL, h0_kind, NULL, 0, false);
    if (status == LN_OK)
        status = gla_scan(&p, dt, true, q->data, dout ? dout : q->data /* no chunks: unread */, gd, dhs,
                          dht ? dht->data : NULL, dht_kind, dh0 ? dh0->data : NULL, dh0_kind, true);
    if (status == LN_OK && p.n_chunks > 0) {
        dim3 grid((unsigned)p.n_chunks, (unsigned)p.H);
        LN_DISPATCH_FLOAT(dt, "gla backward", {
            constexpr bool MMA = gla_is_bf16<T>::value;
            size_t sm = gla_smem_bytes<T>(p.KP, p.VP, true);
            status = ln_kernel_smem(gla_bwd_kernel<T, MMA>, sm, "gla backward");
            if (status == LN_OK)
                gla_bwd_kernel<T, MMA><<<grid, BWD_THREADS, sm, ln_stream()>>>(
                p, (const T *)q->data, (const T *)k->data, (const T *)v->data, (const T *)gd, (const T *)dout,
                (const T *)hs, (const T *)dhs, o);
        });
        cudaError_t e = cudaPeekAtLastError();
        if (status == LN_OK && e != cudaSuccess) status = ln_fail("gla backward launch: %s", cudaGetErrorString(e));
    }
    if (hs) cudaFreeAsync(hs, ln_stream());
    if (dhs) cudaFreeAsync(dhs, ln_stream());
    if (zeros) cudaFreeAsync(zeros, ln_stream());
    gla_plan_free(&p);
    return status;
}
