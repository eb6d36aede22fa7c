// Forward of gla / simple_gla / linear_attention on CUDA (see gla_cuda.cuh for the plan):
//   1. the state scan writes h_c (the state entering every chunk; ht at the end),
//   2. one block per (chunk, head): A = the gated intra-chunk scores, o = scale ((q e^G) h_c + A v)
//      as one product over the concatenated inner dimension [K | 64].
// HBM per chunk and head (bf16, K = V = 128): q, k, g, v read once (64 KB), h_c written by the
// scan and read here (2 x 32 KB), o written (16 KB); the scan re-reads k, g, v per state tile
// (from L2 mostly: the tiles of one head walk the same chunks together).
#include "gla_mma.cuh"

#define FWD_THREADS 256

template <typename T, bool MMA>
__global__ void __launch_bounds__(FWD_THREADS) gla_fwd_kernel(gla_plan p, const T *__restrict__ q,
                                                              const T *__restrict__ k, const T *__restrict__ v,
                                                              const T *__restrict__ g, const T *__restrict__ hs,
                                                              T *__restrict__ o) {
    extern __shared__ __align__(16) char smem[];
    constexpr bool FAST = MMA;
    gla_tile<T> s;
    T *sv, *sdo;
    float *sdG, *scratch;
    gla_carve<T>(smem, p.KP, p.VP, false, &s, &sv, &sdo, &sdG, &scratch);
    const int gc = blockIdx.x, h = blockIdx.y, H = p.H, K = p.K, V = p.V, KP = p.KP, VP = p.VP;
    long long tok0;
    int n;
    gla_chunk_at(p, gc, tok0, n);
    gla_load_tile(s.q, s.ldt, q + (tok0 * H + h) * K, (long long)H * K, n, K, KP);
    gla_load_tile(s.k, s.ldt, k + (tok0 * H + h) * K, (long long)H * K, n, K, KP);
    gla_load_tile(sv, VP + 8, v + (tok0 * H + h) * V, (long long)H * V, n, V, VP);
    gla_load_gates(s.G, s.ldf, g, p.gate, tok0, H, h, K, KP, n, scratch); // ends with a barrier
    gla_gate_prep<FAST>(s);
    __syncthreads();
    gla_scores<MMA, FAST>(s);
    // qW <- q e^G, the inter-chunk operand
    for (int idx = threadIdx.x; idx < GLA_C * KP; idx += blockDim.x) {
        const int i = idx / KP, d = idx % KP;
        s.qW[i * s.ldf + d] = gla_ld(s.q, (long long)i * s.ldt + d) * gla_exp<FAST>(s.G[i * s.ldf + d]);
    }
    __syncthreads();
    const T *hc = hs + ((long long)gc * H + h) * K * V;
    T *orow = o + (tok0 * H + h) * V;
    const float scale = p.scale;
    const int ldv = VP + 8;
    gla_gemm<MMA, 4>(
        GLA_C, VP, KP + GLA_C,
        [&](int m, int kk) { return kk < KP ? s.qW[m * s.ldf + kk] : s.A[m * s.lda + kk - KP]; },
        [&](int kk, int nn, int) {
            if (kk < KP) return kk < K && nn < V ? gla_ld(hc, (long long)kk * V + nn) : 0.f;
            return gla_ld(sv, (long long)(kk - KP) * ldv + nn);
        },
        [&](int m, int nn, float c) {
            if (m < n && nn < V) gla_st(orow, (long long)m * H * V + nn, scale * c);
        });
}

// Checks shared by forward and backward: dtypes, sizes. Fills the plan.
int gla_cuda_begin(ln_node *n, gla_plan *p) {
    const char *on = n->op->name;
    const ln_dtype dt = n->in[0]->dtype;
    if (dt != LN_F32 && dt != LN_BF16) return ln_fail("%s on CUDA takes f32 or bf16, not %s", on, ln_dtype_name(dt));
    if (n->in[1]->dtype != dt || n->in[2]->dtype != dt || (n->iarg[1] >= 0 && n->in[n->iarg[1]]->dtype != dt))
        return ln_fail("%s on CUDA: q, k, v and g must share one dtype (q is %s)", on, ln_dtype_name(dt));
    if (gla_plan_make(n, p)) return LN_ERR;
    int dev = 0, limit = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    size_t need = dt == LN_F32 ? gla_smem_bytes<float>(p->KP, p->VP, true)
                               : gla_smem_bytes<__nv_bfloat16>(p->KP, p->VP, true);
    if (need > (size_t)limit) {
        gla_plan_free(p);
        return ln_fail("%s on CUDA: K = %d, V = %d in %s need %zu bytes of shared memory per block, over the %d "
                       "this GPU gives (bf16 takes K, V <= 128; f32 K, V <= 64)",
                       on, p->K, p->V, ln_dtype_name(dt), need, limit);
    }
    return LN_OK;
}

extern "C" int gla_family_forward_cuda(ln_node *n) {
    gla_plan p;
    if (gla_cuda_begin(n, &p)) return LN_ERR;
    const ln_dtype dt = n->in[0]->dtype;
    if (gla_mma_applies(&p, dt)) {
        const int status = gla_mma_forward(n, &p);
        gla_plan_free(&p);
        return status;
    }
    const ln_tensor *h0 = n->iarg[2] >= 0 ? n->in[n->iarg[2]] : NULL;
    ln_tensor *ht = n->iarg[5] ? n->out[1] : NULL;
    const void *g = n->iarg[1] >= 0 ? n->in[n->iarg[1]]->data : NULL;
    int h0_kind = gla_state_kind(h0), ht_kind = gla_state_kind(ht);
    if (h0_kind < 0 || ht_kind < 0) {
        gla_plan_free(&p);
        return LN_ERR;
    }
    void *states = NULL;
    const size_t bytes = (size_t)p.n_chunks * p.H * p.K * p.V * ln_dtype_size(dt);
    int status = LN_OK;
    if (bytes) {
        cudaError_t e = cudaMallocAsync(&states, bytes, ln_stream());
        if (e != cudaSuccess) status = ln_fail("%s: cudaMallocAsync of %zu bytes of states failed: %s", n->op->name,
                                              bytes, cudaGetErrorString(e));
    }
    if (status == LN_OK)
        status = gla_scan(&p, dt, false, n->in[1]->data, n->in[2]->data, g, states, h0 ? h0->data : NULL, h0_kind,
                          ht ? ht->data : NULL, ht_kind, false);
    if (status == LN_OK && p.n_chunks > 0) {
        dim3 grid((unsigned)p.n_chunks, (unsigned)p.H);
        if (dt == LN_F32) {
            size_t sm = gla_smem_bytes<float>(p.KP, p.VP, false);
            status = ln_kernel_smem(gla_fwd_kernel<float, false>, sm, "gla forward");
            if (status == LN_OK)
                gla_fwd_kernel<float, false><<<grid, FWD_THREADS, sm, ln_stream()>>>(
                p, (const float *)n->in[0]->data, (const float *)n->in[1]->data, (const float *)n->in[2]->data,
                (const float *)g, (const float *)states, (float *)n->out[0]->data);
        } else {
            typedef __nv_bfloat16 B;
            size_t sm = gla_smem_bytes<B>(p.KP, p.VP, false);
            status = ln_kernel_smem(gla_fwd_kernel<B, true>, sm, "gla forward");
            if (status == LN_OK)
                gla_fwd_kernel<B, true><<<grid, FWD_THREADS, sm, ln_stream()>>>(
                p, (const B *)n->in[0]->data, (const B *)n->in[1]->data, (const B *)n->in[2]->data, (const B *)g,
                (const B *)states, (B *)n->out[0]->data);
        }
        cudaError_t e = cudaPeekAtLastError();
        if (status == LN_OK && e != cudaSuccess) status = ln_fail("gla forward launch: %s", cudaGetErrorString(e));
    }
    if (states) cudaFreeAsync(states, ln_stream());
    gla_plan_free(&p);
    return status;
}
