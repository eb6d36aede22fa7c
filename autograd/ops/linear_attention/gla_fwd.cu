// Forward of the tensor-core GLA path (see gla_mma.cuh): the chunk states (gla_state.cu), then
// one block per (chunk, head), 16 warps (8 at K = 32): warp (I, part) owns sub-chunk I and a
// part of the columns of what it computes, in two phases around one barrier:
//   A_I   = scores of rows I against columns j <= i: (q e^(G - G_r)) (k e^(G_r - G))^T, r = the
//           first row of I, masked above the diagonal (pairwise past GLA_MMA_SPAN), each warp
//           some of the 8-column tiles, into shared memory (bf16);
//   o_I   = scale (A_I v + (q e^G) h_c), each warp its columns of V.
// q, k and G are loaded and A computed once per chunk and head, whatever V.
// Shared memory ~150 KB at K = V = 128: one block per SM.
#include "gla_mma.cuh"

using namespace gla_mma;

namespace {

template <int K> struct FwdShape {
    static constexpr int WPI = K >= 64 ? 4 : 2, THREADS = 128 * WPI; // warps per sub-chunk
};

template <int K, int V> struct FwdSmem {
    static constexpr int LDK = K + 8, LDV = V + 8, LDA = 72;
    static constexpr size_t bytes =
        2 * (2 * 64 * LDK + 2 * 64 * LDV + K * LDV + 64 * LDA) + 4 * (64 * LDK + FwdShape<K>::THREADS);
};

template <int K, int V>
__global__ void __launch_bounds__(FwdShape<K>::THREADS, 1)
    fwd_kernel(gla_plan p, const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
               const bf16 *__restrict__ g, const bf16 *__restrict__ hs, bf16 *__restrict__ o) {
    extern __shared__ __align__(16) char smem[];
    constexpr int NT = FwdShape<K>::THREADS, WPI = FwdShape<K>::WPI, TPW = 8 / WPI; // TPW: A's n-tiles a warp
    constexpr int LDK = K + 8, LDV = V + 8, LDA = 72, NV = V / (8 * WPI); // NV: n-tiles a warp
    bf16 *sq = (bf16 *)smem, *sk = sq + 64 * LDK, *sv = sk + 64 * LDK, *sh = sv + 64 * LDV, *so = sh + K * LDV,
         *sA = so + 64 * LDV;
    float *sG = (float *)(sA + 64 * LDA), *scratch = sG + 64 * LDK;
    const int gc = blockIdx.x, h = blockIdx.y, H = p.H;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, gid = lane >> 2, t4 = lane & 3;
    long long tok0;
    int n;
    gla_chunk_at(p, gc, tok0, n);
    load_tile<64, K, NT>(sq, q + (tok0 * H + h) * K, (long long)H * K, 0, n, tid);
    load_tile<64, K, NT>(sk, k + (tok0 * H + h) * K, (long long)H * K, 0, n, tid);
    load_tile<64, V, NT>(sv, v + (tok0 * H + h) * V, (long long)H * V, 0, n, tid);
    load_tile<K, V, NT>(sh, hs + ((long long)gc * H + h) * K * V, V, 0, K, tid);
    gates_issue<K, NT>(sG, g, p.gate, tok0, H, h, n, scratch);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    gates_finish<K, NT>(sG, p.gate, scratch);

    const int I = warp & 3, part = warp >> 2, r0 = 16 * I;
    { // this warp's n-tiles [TPW part, TPW part + TPW) of A_I, up to the end of sub-chunk I
        const bool diag_mma = sub_span<K>(sG, r0, lane) <= GLA_MMA_SPAN;
        const int jt0 = TPW * part, jt_end = min(jt0 + TPW, 2 * I + 2);
        if (jt0 < jt_end) {
            float sc[TPW][4] = {};
            score_tiles<K>(sc, sq, sk, sG, r0, jt0, jt_end, lane);
#pragma unroll
            for (int u = 0; u < TPW; u++) {
                const int jt = jt0 + u;
                if (jt >= jt_end) break;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = r0 + gid + (e >> 1) * 8, j = 8 * jt + 2 * t4 + (e & 1);
                    if (j > i) sc[u][e] = 0.f;
                    else if (!diag_mma && j >= r0) sc[u][e] = pair_score<K>(sq, sk, sG, i, j);
                }
                const int c = 8 * jt + 2 * t4, i0 = r0 + gid;
                store2(sA + i0 * LDA + c, sc[u][0], sc[u][1]);
                store2(sA + (i0 + 8) * LDA + c, sc[u][2], sc[u][3]);
            }
        }
    }
    __syncthreads();
    // o = A v + (q e^G) h_c over this warp's columns e0..
    const int e0 = part * (V / WPI);
    float acc[NV][4] = {};
#pragma unroll 1
    for (int js = 0; js <= I; js++) {
        uint32_t a[4];
        ldsm_a<64>(a, sA, r0, js, lane);
#pragma unroll
        for (int nc = 0; nc < NV / 2; nc++) {
            uint32_t r[4];
            ldsm_b_kn<V>(r, sv, 16 * js, e0 / 16 + nc, lane);
            mma16816(acc[2 * nc], a, r[0], r[1]);
            mma16816(acc[2 * nc + 1], a, r[2], r[3]);
        }
    }
#pragma unroll 1
    for (int kc = 0; kc < K / 16; kc++) {
        uint32_t a[4];
        frag_a_gated<K>(a, sq, sG, r0, kc, nullptr, 1.f, lane);
#pragma unroll
        for (int nc = 0; nc < NV / 2; nc++) {
            uint32_t r[4];
            ldsm_b_kn<V>(r, sh, 16 * kc, e0 / 16 + nc, lane);
            mma16816(acc[2 * nc], a, r[0], r[1]);
            mma16816(acc[2 * nc + 1], a, r[2], r[3]);
        }
    }
    // through the warp's part of a staging tile to 16-byte stores (NV of them a row)
#pragma unroll
    for (int t = 0; t < NV; t++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[t][e] *= p.scale;
    put_tile<NV>(so + (r0 + gid) * LDV, 8LL * LDV, e0, acc, false, true, true, t4);
    __syncwarp();
#pragma unroll
    for (int x = lane; x < 16 * NV; x += 32) {
        const int i = r0 + x / NV, cc = e0 + (x % NV) * 8;
        if (i < n)
            *reinterpret_cast<uint4 *>(o + ((tok0 + i) * H + h) * V + cc) =
                *reinterpret_cast<const uint4 *>(so + i * LDV + cc);
    }
}

} // namespace

// The backward needs the states again: when it will run (gradients on and an input wanting one),
// they go into an arena tensor saved on the node instead of scratch, so the backward need not
// compute them again (two passes over k, v and the states: ~10 % of a fwd + bwd at K = V = 128).
// The cost is their memory until the backward: H K V / 32 bytes per token (8 KB at H 16,
// K = V = 128; 0.75 KB at recipes/gla-small.yaml's H 12, K 32, V 64).
static bool backward_will_run(const ln_node *n) {
    if (!ln_grad_enabled()) return false;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->requires_grad) return true;
    return false;
}

int gla_mma_forward(ln_node *n, const gla_plan *p) {
    const ln_tensor *h0 = n->iarg[2] >= 0 ? n->in[n->iarg[2]] : NULL;
    ln_tensor *ht = n->iarg[5] ? n->out[1] : NULL;
    const bf16 *g = n->iarg[1] >= 0 ? (const bf16 *)n->in[n->iarg[1]]->data : NULL;
    const int h0_kind = gla_state_kind(h0), ht_kind = gla_state_kind(ht);
    if (h0_kind < 0 || ht_kind < 0) return LN_ERR;
    const size_t sbytes = (size_t)p->n_chunks * p->H * p->K * p->V * sizeof(bf16);
    const size_t gbytes = (size_t)p->n_chunks * p->H * p->K * sizeof(float);
    cudaStream_t st = ln_stream();
    ln_tensor *kept = NULL;
    bf16 *states = NULL, *U = NULL;
    float *gam = NULL;
    int status = LN_OK;
    if (sbytes && backward_will_run(n)) {
        const int64_t shape[4] = {p->n_chunks, p->H, p->K, p->V};
        kept = ln_arena_tensor_uninit(LN_BF16, LN_CUDA, 4, shape);
        if (!kept) return LN_ERR;
        states = (bf16 *)kept->data;
    }
    if (sbytes && ((!kept && cudaMallocAsync((void **)&states, sbytes, st) != cudaSuccess) ||
                   cudaMallocAsync((void **)&U, sbytes, st) != cudaSuccess ||
                   cudaMallocAsync((void **)&gam, gbytes, st) != cudaSuccess))
        status = ln_fail("%s: out of GPU memory for %zu bytes of chunk states", n->op->name, 2 * sbytes + gbytes);
    if (status == LN_OK)
        status = gla_mma_states(p, false, (const bf16 *)n->in[1]->data, (const bf16 *)n->in[2]->data, g, U, gam,
                                states, h0 ? h0->data : NULL, h0_kind, ht ? ht->data : NULL, ht_kind, false);
    if (status == LN_OK && p->n_chunks > 0) {
        GLA_MMA_DISPATCH(p->K, p->V, {
            const size_t sm = FwdSmem<K, V>::bytes;
            status = ln_kernel_smem(fwd_kernel<K, V>, sm, "gla forward (tensor cores)");
            if (status == LN_OK) {
                fwd_kernel<K, V><<<dim3((unsigned)p->n_chunks, (unsigned)p->H), FwdShape<K>::THREADS, sm, st>>>(
                    *p, (const bf16 *)n->in[0]->data, (const bf16 *)n->in[1]->data, (const bf16 *)n->in[2]->data, g,
                    states, (bf16 *)n->out[0]->data);
            }
        });
        cudaError_t e = cudaPeekAtLastError();
        if (status == LN_OK && e != cudaSuccess)
            status = ln_fail("gla forward (tensor cores) launch: %s", cudaGetErrorString(e));
    }
    if (kept && status == LN_OK) ln_node_save(n, kept); // once written: a saved-tensor hook may copy it
    if (states && !kept) cudaFreeAsync(states, st);
    if (U) cudaFreeAsync(U, st);
    if (gam) cudaFreeAsync(gam, st);
    return status;
}
