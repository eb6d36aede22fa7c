// Backward of the tensor-core GLA path (see gla_mma.cuh):
//   1. the reverse states dh_c+1 (gla_state.cu) and dh0; the forward states h_c are the ones
//      the forward kept (gla_fwd.cu);
//   2. one block per (chunk, head), 16 warps (8 at K = 32): warp (I, part) owns sub-chunk I and
//      a part of the columns of what it computes, in phases separated by barriers:
//        A, dA  scores and scale do v^T of rows I (masked; both to shared memory, bf16)
//        dq     = scale (do h_c^T) e^G + intra rows(dA, k)           -> dG  = q dq
//        dk     = (v dh^T) e^(Gam - G) + intra cols(dA, q)           -> dG -= k dk
//        dv     = scale A^T do + (k e^(Gam - G)) dh
//        dg     = reverse cumulative sum over the chunk of dG, whose last row also gets
//                 rowsum(dh * h_c+1) = e^Gam rowsum(dh * h_c) + sum_j k_j (v dh^T)_j e^(Gam - G_j)
//      (dh = dh_c+1). Gate factors as in the forward: relative to the first row of I for rows
//      (dq) and to its last row for columns (dk), pairwise inside I past GLA_MMA_SPAN; dA's
//      diagonal is kept apart in fp32 (sdAd), so q dq - k dk cancels it exactly.
// Shared memory ~196 KB at K = V = 128: one block per SM.
#include "gla_mma.cuh"

using namespace gla_mma;

namespace {

// Warps per sub-chunk: each owns 1 / WPI of the columns it computes (K >= 64: 16 warps a block,
// 128 registers a thread at most, so the scheduler has 4 warps to pick from; K = 32 keeps 8,
// its column quarters being narrower than one ldmatrix pair).
template <int K> struct BwdShape {
    static constexpr int WPI = K >= 64 ? 4 : 2, THREADS = 128 * WPI;
};

struct BwdOut {
    bf16 *dq, *dk, *dv, *dg; // NULL when not wanted
    bool acc_q, acc_k, acc_v, acc_g; // add into (true) or store
};

template <int K, int V> struct BwdSmem {
    static constexpr int LDK = K + 8, LDV = V + 8, LDA = 72;
    static constexpr size_t bytes = 2 * (2 * 64 * LDK + 2 * 64 * LDV + 2 * K * LDV + 2 * 64 * LDA) +
                                    4 * (64 * LDK + K + 64 + BwdShape<K>::THREADS);
};

// acc[t] += x[r0..r0 + 15] y[d0 + 8 t ..]^T over V (x: [64][V + 8] token rows, y: [K][V + 8] state
// rows): the inter-chunk products of dq (do h^T) and dk (v dh^T)
template <int V, int NQ>
__device__ __forceinline__ void rows_times_states(float (&acc)[NQ][4], const bf16 *x, const bf16 *y, int r0, int d0,
                                                  int lane) {
#pragma unroll 1
    for (int kc = 0; kc < V / 16; kc++) {
        uint32_t a[4];
        ldsm_a<V>(a, x, r0, kc, lane);
#pragma unroll
        for (int nc = 0; nc < NQ / 2; nc++) {
            uint32_t r[4];
            ldsm_b_nk<V>(r, y, d0 + 16 * nc, kc, lane);
            mma16816(acc[2 * nc], a, r[0], r[1]);
            mma16816(acc[2 * nc + 1], a, r[2], r[3]);
        }
    }
}

template <int K, int V>
__global__ void __launch_bounds__(BwdShape<K>::THREADS, 1)
    bwd_kernel(gla_plan p, const bf16 *__restrict__ q, const bf16 *__restrict__ k, const bf16 *__restrict__ v,
               const bf16 *__restrict__ g, const bf16 *__restrict__ dout, const bf16 *__restrict__ hs,
               const bf16 *__restrict__ dhs, BwdOut out) {
    extern __shared__ __align__(16) char smem[];
    constexpr int NT = BwdShape<K>::THREADS, WPI = BwdShape<K>::WPI, TPW = 8 / WPI; // TPW: A's n-tiles a warp
    constexpr int LDK = K + 8, LDV = V + 8, LDA = 72, NQ = K / (8 * WPI), NV = V / (8 * WPI);
    bf16 *sq = (bf16 *)smem, *sk = sq + 64 * LDK, *sv = sk + 64 * LDK, *sdo = sv + 64 * LDV, *sh = sdo + 64 * LDV,
         *sdh = sh + K * LDV, *sA = sdh + K * LDV, *sdA = sA + 64 * LDA;
    float *sG = (float *)(sdA + 64 * LDA), *sdgam = sG + 64 * LDK, *sdAd = sdgam + K, *scratch = sdAd + 64;
    const int gc = blockIdx.x, h = blockIdx.y, H = p.H;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, gid = lane >> 2, t4 = lane & 3;
    long long tok0;
    int n;
    gla_chunk_at(p, gc, tok0, n);
    const long long slot = ((long long)gc * H + h) * K * V;
    const float scale = p.scale;
    load_tile<64, K, NT>(sq, q + (tok0 * H + h) * K, (long long)H * K, 0, n, tid);
    load_tile<64, K, NT>(sk, k + (tok0 * H + h) * K, (long long)H * K, 0, n, tid);
    load_tile<64, V, NT>(sv, v + (tok0 * H + h) * V, (long long)H * V, 0, n, tid);
    load_tile<64, V, NT>(sdo, dout + (tok0 * H + h) * V, (long long)H * V, 0, n, tid);
    load_tile<K, V, NT>(sh, hs + slot, V, 0, K, tid);
    load_tile<K, V, NT>(sdh, dhs + slot, V, 0, K, tid);
    gates_issue<K, NT>(sG, g, p.gate, tok0, H, h, n, scratch);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    gates_finish<K, NT>(sG, p.gate, scratch);
    const float *Gam = sG + 63 * LDK; // rows past n repeat row n - 1
    { // sdgam[d] = e^Gam rowsum(dh * h_c); the column sums of phase dk are added to it
        constexpr int TPD = NT / K, PER = V / TPD;
        const int d = tid / TPD, part = tid % TPD;
        float s = 0.f;
        for (int e = part * PER; e < (part + 1) * PER; e += 2) {
            const __nv_bfloat162 a = *reinterpret_cast<const __nv_bfloat162 *>(sh + d * LDV + e),
                                 b = *reinterpret_cast<const __nv_bfloat162 *>(sdh + d * LDV + e);
            s += __low2float(a) * __low2float(b) + __high2float(a) * __high2float(b);
        }
        for (int o = 1; o < TPD; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (part == 0) sdgam[d] = __expf(Gam[d]) * s;
    }
    const int I = warp & 3, part = warp >> 2, r0 = 16 * I;
    const float *Gr = sG + r0 * LDK, *Gl = sG + (r0 + 15) * LDK;
    const bool diag_mma = sub_span<K>(sG, r0, lane) <= GLA_MMA_SPAN;

    { // A and dA of rows I, n-tiles [TPW part, TPW part + TPW) up to the diagonal
        const int jt0 = TPW * part, jt_end = min(jt0 + TPW, 2 * I + 2);
        if (jt0 < jt_end) {
            float sc[TPW][4] = {}, sd[TPW][4] = {};
            score_tiles<K>(sc, sq, sk, sG, r0, jt0, jt_end, lane);
#pragma unroll 1
            for (int kc = 0; kc < V / 16; kc++) {
                uint32_t a[4];
                ldsm_a<V>(a, sdo, r0, kc, lane);
#pragma unroll
                for (int u = 0; u < TPW; u += 2) {
                    if (jt0 + u >= jt_end) break;
                    uint32_t r[4];
                    ldsm_b_nk<V>(r, sv, 8 * (jt0 + u), kc, lane);
                    mma16816(sd[u], a, r[0], r[1]);
                    mma16816(sd[u + 1], a, r[2], r[3]);
                }
            }
#pragma unroll
            for (int u = 0; u < TPW; u++) {
                const int jt = jt0 + u;
                if (jt >= jt_end) break;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = r0 + gid + (e >> 1) * 8, j = 8 * jt + 2 * t4 + (e & 1);
                    if (j > i) {
                        sc[u][e] = sd[u][e] = 0.f;
                    } else {
                        sd[u][e] *= scale;
                        if (!diag_mma && j >= r0) sc[u][e] = pair_score<K>(sq, sk, sG, i, j);
                        if (j == i) { // kept apart: added in fp32 to dq and dk, it cancels exactly in dG
                            sdAd[i] = sd[u][e];
                            sd[u][e] = 0.f;
                        }
                    }
                }
                const int c = 8 * jt + 2 * t4, i0 = r0 + gid;
                store2(sA + i0 * LDA + c, sc[u][0], sc[u][1]);
                store2(sA + (i0 + 8) * LDA + c, sc[u][2], sc[u][3]);
                store2(sdA + i0 * LDA + c, sd[u][0], sd[u][1]);
                store2(sdA + (i0 + 8) * LDA + c, sd[u][2], sd[u][3]);
            }
        }
    }
    __syncthreads();

    const int d0 = part * (K / WPI); // this warp's columns of dq, dk
    float dG[NQ][4];                 // dG of rows I, columns d0.. (NQ n-tiles of 8 over K / WPI)
    { // dq
        float acc[NQ][4] = {};
        rows_times_states<V>(acc, sdo, sh, r0, d0, lane);
#pragma unroll
        for (int t = 0; t < NQ; t++) { // inter part in the frame of row r0: scale e^G_r
            const int c = d0 + 8 * t + 2 * t4;
            const float f0 = scale * __expf(Gr[c]), f1 = scale * __expf(Gr[c + 1]);
            acc[t][0] *= f0, acc[t][1] *= f1, acc[t][2] *= f0, acc[t][3] *= f1;
        }
#pragma unroll 1
        for (int js = 0; js < 4; js++) { // + dA_I (k e^(G_r - G))
            if (js > I || (js == I && !diag_mma)) break;
            uint32_t a[4];
            ldsm_a<64>(a, sdA, r0, js, lane);
#pragma unroll
            for (int nc = 0; nc < NQ / 2; nc++) {
                uint32_t r[4];
                frag_b_gated_kn<K>(r, sk, sG, 16 * js, d0 / 16 + nc, Gr, -1.f, lane);
                mma16816(acc[2 * nc], a, r[0], r[1]);
                mma16816(acc[2 * nc + 1], a, r[2], r[3]);
            }
        }
#pragma unroll
        for (int t = 0; t < NQ; t++) {
            const int c = d0 + 8 * t + 2 * t4;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = r0 + gid + (e >> 1) * 8, d = c + (e & 1);
                float x = acc[t][e] * __expf(sG[i * LDK + d] - Gr[d]) + sdAd[i] * bf(sk[i * LDK + d]);
                if (!diag_mma) x += pair_column<K>(sdA + i * LDA, 1, sk, sG, i, d, r0, i, 1.f);
                acc[t][e] = x;
                dG[t][e] = bf(sq[i * LDK + d]) * x;
            }
        }
        if (out.dq)
            put_tile<NQ>(out.dq + ((tok0 + r0 + gid) * H + h) * K, 8LL * H * K, d0, acc, out.acc_q, r0 + gid < n,
                         r0 + gid + 8 < n, t4);
    }
    { // dk
        float acc[NQ][4] = {};
        rows_times_states<V>(acc, sv, sdh, r0, d0, lane);
#pragma unroll
        for (int t = 0; t < NQ; t++) { // inter part in the frame of the last row l of I: e^(Gam - G_l)
            const int c = d0 + 8 * t + 2 * t4;
            const float f0 = __expf(Gam[c] - Gl[c]), f1 = __expf(Gam[c + 1] - Gl[c + 1]);
            acc[t][0] *= f0, acc[t][1] *= f1, acc[t][2] *= f0, acc[t][3] *= f1;
            // sum over rows of k * dk_inter, for the last row's gate gradient
            float s[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int d = c + u, i0 = r0 + gid;
                s[u] = bf(sk[i0 * LDK + d]) * acc[t][u] * __expf(Gl[d] - sG[i0 * LDK + d]) +
                       bf(sk[(i0 + 8) * LDK + d]) * acc[t][2 + u] * __expf(Gl[d] - sG[(i0 + 8) * LDK + d]);
                for (int o = 4; o < 32; o <<= 1) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
            }
            if (gid == 0) {
                atomicAdd(sdgam + c, s[0]);
                atomicAdd(sdgam + c + 1, s[1]);
            }
        }
#pragma unroll 1
        for (int ib = 0; ib < 4; ib++) { // + dA^T (q e^(G - G_l)) over the rows i >= j
            if (ib < I || (ib == I && !diag_mma)) continue;
            uint32_t a[4];
            ldsm_a_km<64>(a, sdA, 16 * ib, I, lane);
#pragma unroll
            for (int nc = 0; nc < NQ / 2; nc++) {
                uint32_t r[4];
                frag_b_gated_kn<K>(r, sq, sG, 16 * ib, d0 / 16 + nc, Gl, 1.f, lane);
                mma16816(acc[2 * nc], a, r[0], r[1]);
                mma16816(acc[2 * nc + 1], a, r[2], r[3]);
            }
        }
#pragma unroll
        for (int t = 0; t < NQ; t++) {
            const int c = d0 + 8 * t + 2 * t4;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = r0 + gid + (e >> 1) * 8, d = c + (e & 1);
                float x = acc[t][e] * __expf(Gl[d] - sG[j * LDK + d]) + sdAd[j] * bf(sq[j * LDK + d]);
                if (!diag_mma) x += pair_column<K>(sdA + j, LDA, sq, sG, j, d, j, r0 + 15, -1.f);
                acc[t][e] = x;
                dG[t][e] -= bf(sk[j * LDK + d]) * x;
            }
        }
        if (out.dk)
            put_tile<NQ>(out.dk + ((tok0 + r0 + gid) * H + h) * K, 8LL * H * K, d0, acc, out.acc_k, r0 + gid < n,
                         r0 + gid + 8 < n, t4);
    }
    if (out.dv) { // dv = scale A^T do + (k e^(Gam - G)) dh over this warp's part of V
        const int e0 = part * (V / WPI);
        float acc[NV][4] = {};
#pragma unroll 1
        for (int ib = 0; ib < 4; ib++) {
            if (ib < I) continue;
            uint32_t a[4];
            ldsm_a_km<64>(a, sA, 16 * ib, I, lane);
#pragma unroll
            for (int nc = 0; nc < NV / 2; nc++) {
                uint32_t r[4];
                ldsm_b_kn<V>(r, sdo, 16 * ib, e0 / 16 + nc, lane);
                mma16816(acc[2 * nc], a, r[0], r[1]);
                mma16816(acc[2 * nc + 1], a, r[2], r[3]);
            }
        }
#pragma unroll
        for (int t = 0; t < NV; t++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[t][e] *= scale;
#pragma unroll 1
        for (int kc = 0; kc < K / 16; kc++) {
            uint32_t a[4];
            frag_a_gated<K>(a, sk, sG, r0, kc, Gam, -1.f, lane);
#pragma unroll
            for (int nc = 0; nc < NV / 2; nc++) {
                uint32_t r[4];
                ldsm_b_kn<V>(r, sdh, 16 * kc, e0 / 16 + nc, lane);
                mma16816(acc[2 * nc], a, r[0], r[1]);
                mma16816(acc[2 * nc + 1], a, r[2], r[3]);
            }
        }
        put_tile<NV>(out.dv + ((tok0 + r0 + gid) * H + h) * V, 8LL * H * V, e0, acc, out.acc_v, r0 + gid < n,
                     r0 + gid + 8 < n, t4);
    }
    if (!out.dg) return;
    // dg: dG into f32 over the q and k tiles (same bytes), the last row's term, reverse cumsum
    __syncthreads();
    float *sdG = (float *)sq;
#pragma unroll
    for (int t = 0; t < NQ; t++) {
        const int c = d0 + 8 * t + 2 * t4, i0 = r0 + gid;
        sdG[i0 * LDK + c] = dG[t][0];
        sdG[i0 * LDK + c + 1] = dG[t][1];
        sdG[(i0 + 8) * LDK + c] = dG[t][2];
        sdG[(i0 + 8) * LDK + c + 1] = dG[t][3];
    }
    __syncthreads();
    if (tid < K) sdG[(n - 1) * LDK + tid] += sdgam[tid];
    __syncthreads();
    if (p.gate == GLA_GATE_PER_KEY) {
        constexpr int S = NT / K, R = 64 / S;
        const int d = tid % K, s = tid / K;
        float x[R];
#pragma unroll
        for (int r = R - 1; r >= 0; r--) x[r] = sdG[(s * R + r) * LDK + d] + (r < R - 1 ? x[r + 1] : 0.f);
        scratch[s * K + d] = x[0];
        __syncthreads();
        float off = 0.f;
        for (int t = s + 1; t < S; t++) off += scratch[t * K + d];
        bf16 *dst = out.dg + ((tok0 + s * R) * H + h) * K + d;
        const long long step = (long long)H * K;
        float old[R] = {}; // all read before the first store (see put_tile)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (out.acc_g && s * R + r < n) old[r] = bf(dst[r * step]);
#pragma unroll
        for (int r = 0; r < R; r++)
            if (s * R + r < n) dst[r * step] = __float2bfloat16(x[r] + off + old[r]);
    } else { // per head: row sums, then one warp's reverse scan over the 64 rows
        for (int i = warp; i < 64; i += NT / 32) {
            float s = 0.f;
            for (int d = lane; d < K; d += 32) s += sdG[i * LDK + d];
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0) scratch[i] = s;
        }
        __syncthreads();
        if (warp == 0) {
            const float a0 = scratch[2 * lane], a1 = scratch[2 * lane + 1];
            float incl = a0 + a1; // suffix sums over lanes >= this one
            for (int o = 1; o < 32; o <<= 1) {
                const float y = __shfl_down_sync(0xffffffffu, incl, o);
                if (lane + o < 32) incl += y;
            }
            const float r1 = incl - a0, r0v = incl; // suffix from row 2 lane + 1, from row 2 lane
            const float vals[2] = {r0v, r1};
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int i = 2 * lane + u;
                if (i < n) {
                    bf16 *dst = out.dg + (tok0 + i) * H + h;
                    *dst = __float2bfloat16(vals[u] + (out.acc_g ? bf(*dst) : 0.f));
                }
            }
        }
    }
}

} // namespace

int gla_mma_backward(ln_node *n, const gla_plan *p) {
    ln_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    ln_tensor *g = n->iarg[1] >= 0 ? n->in[n->iarg[1]] : NULL, *h0 = n->iarg[2] >= 0 ? n->in[n->iarg[2]] : NULL;
    const bool want_dg = g && g->requires_grad && n->iarg[0] != GLA_GATE_NONE, want_dh0 = h0 && h0->requires_grad;
    const ln_tensor *dht = n->iarg[5] ? n->out[1]->grad : NULL;
    const int dht_kind = gla_state_kind(dht), h0_kind = gla_state_kind(h0);
    if (dht_kind < 0 || h0_kind < 0) return LN_ERR;
    ln_tensor *dh0 = want_dh0 ? ln_grad_of(h0) : NULL;
    const int dh0_kind = gla_state_kind(dh0);
    if ((want_dh0 && !dh0) || dh0_kind < 0) return LN_ERR;
    BwdOut o = {};
    ln_tensor *gq = q->requires_grad ? ln_grad_for_write(q, &o.acc_q) : NULL;
    ln_tensor *gk = k->requires_grad ? ln_grad_for_write(k, &o.acc_k) : NULL;
    ln_tensor *gv = v->requires_grad ? ln_grad_for_write(v, &o.acc_v) : NULL;
    ln_tensor *gg = want_dg ? ln_grad_for_write(g, &o.acc_g) : NULL;
    if ((q->requires_grad && !gq) || (k->requires_grad && !gk) || (v->requires_grad && !gv) || (want_dg && !gg))
        return LN_ERR;
    o.dq = gq ? (bf16 *)gq->data : NULL;
    o.dk = gk ? (bf16 *)gk->data : NULL;
    o.dv = gv ? (bf16 *)gv->data : NULL;
    o.dg = gg ? (bf16 *)gg->data : NULL;
    const size_t sbytes = (size_t)p->n_chunks * p->H * p->K * p->V * sizeof(bf16);
    const size_t gbytes = (size_t)p->n_chunks * p->H * p->K * sizeof(float);
    const size_t vbytes = (size_t)q->shape[0] * q->shape[1] * p->H * p->V * sizeof(bf16);
    const void *dout = n->out[0]->grad ? n->out[0]->grad->data : NULL;
    cudaStream_t st = ln_stream();
    // the forward kept its states for this (gla_fwd.cu)
    const ln_tensor *kept = n->n_saved > 0 ? ln_node_saved(n, 0) : NULL;
    if (sbytes && (!kept || kept->numel * (int64_t)sizeof(bf16) != (int64_t)sbytes))
        return ln_fail("%s backward: the forward kept no chunk states of %zu bytes", n->op->name, sbytes);
    const bf16 *hs = kept ? (const bf16 *)kept->data : NULL;
    bf16 *dhs = NULL, *U = NULL, *zeros = NULL;
    float *gam = NULL;
    int status = LN_OK;
    if (sbytes && (cudaMallocAsync((void **)&dhs, sbytes, st) != cudaSuccess ||
                   cudaMallocAsync((void **)&U, sbytes, st) != cudaSuccess ||
                   cudaMallocAsync((void **)&gam, gbytes, st) != cudaSuccess ||
                   (!dout && (cudaMallocAsync((void **)&zeros, vbytes, st) != cudaSuccess ||
                              cudaMemsetAsync(zeros, 0, vbytes, st) != cudaSuccess))))
        status = ln_fail("%s backward: out of GPU memory for %zu bytes of chunk states", n->op->name,
                         2 * sbytes + gbytes);
    if (!dout) dout = zeros;
    const bf16 *gd = g ? (const bf16 *)g->data : NULL;
    if (status == LN_OK)
        status = gla_mma_states(p, true, (const bf16 *)q->data, (const bf16 *)dout, gd, U, gam, dhs,
                                dht ? dht->data : NULL, dht_kind, dh0 ? dh0->data : NULL, dh0_kind, true);
    if (status == LN_OK && p->n_chunks > 0 && (o.dq || o.dk || o.dv || o.dg)) {
        GLA_MMA_DISPATCH(p->K, p->V, {
            const size_t sm = BwdSmem<K, V>::bytes;
            status = ln_kernel_smem(bwd_kernel<K, V>, sm, "gla backward (tensor cores)");
            if (status == LN_OK) {
                bwd_kernel<K, V><<<dim3((unsigned)p->n_chunks, (unsigned)p->H), BwdShape<K>::THREADS, sm, st>>>(
                    *p, (const bf16 *)q->data, (const bf16 *)k->data, (const bf16 *)v->data, gd, (const bf16 *)dout,
                    hs, dhs, o);
            }
        });
        cudaError_t e = cudaPeekAtLastError();
        if (status == LN_OK && e != cudaSuccess)
            status = ln_fail("gla backward (tensor cores) launch: %s", cudaGetErrorString(e));
    }
    void *scratch[] = {dhs, U, gam, zeros};
    for (void *b : scratch)
        if (b) cudaFreeAsync(b, st);
    return status;
}
