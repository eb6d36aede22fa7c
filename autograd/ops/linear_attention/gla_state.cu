// Chunk states of the tensor-core GLA path (see gla_mma.cuh):
//   1. one block per (chunk, head), fully parallel: U_c = (x w)^T y by mma.sync, and gam_c;
//   2. one thread per (sequence, head, row d, 8 columns of the state): S <- e^gam_c S + U_c along
//      the chunks, storing S before each; only a multiply-add per element and step, so the chain
//      is as long as the number of chunks but costs no more than reading U and writing the states.
// The loads of the next GLA_SCAN_AHEAD chunks are in flight while one is applied.
#include "gla_mma.cuh"

using namespace gla_mma;

#define STATE_THREADS 256
#define SCAN_THREADS 128
#define GLA_SCAN_AHEAD 4

namespace {

template <int K, int V> struct StateSmem {
    static constexpr int LDK = K + 8, LDV = V + 8;
    static constexpr size_t bytes = 2 * (64 * LDK + 64 * LDV) + 4 * (64 * LDK + STATE_THREADS);
};

template <int K, int V, bool REV>
__global__ void __launch_bounds__(STATE_THREADS) chunk_state_kernel(gla_plan p, const bf16 *__restrict__ x,
                                                                    const bf16 *__restrict__ y,
                                                                    const bf16 *__restrict__ g, bf16 *__restrict__ U,
                                                                    float *__restrict__ gam) {
    extern __shared__ __align__(16) char smem[];
    constexpr int LDK = K + 8;
    bf16 *sx = (bf16 *)smem, *sy = sx + 64 * LDK;
    float *sG = (float *)(sy + 64 * (V + 8)), *scratch = sG + 64 * LDK;
    const int gc = blockIdx.x, h = blockIdx.y, H = p.H, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    long long tok0;
    int n;
    gla_chunk_at(p, gc, tok0, n);
    load_tile<64, K, STATE_THREADS>(sx, x + (tok0 * H + h) * K, (long long)H * K, 0, n, tid);
    load_tile<64, V, STATE_THREADS>(sy, y + (tok0 * H + h) * V, (long long)H * V, 0, n, tid);
    gates_issue<K, STATE_THREADS>(sG, g, p.gate, tok0, H, h, n, scratch);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    gates_finish<K, STATE_THREADS>(sG, p.gate, scratch);
    const float *Gam = sG + 63 * LDK; // rows past n repeat row n - 1
    for (int idx = tid; idx < 32 * K; idx += STATE_THREADS) { // x <- x w, two columns at a time
        const int j = idx / (K / 2), d = 2 * (idx % (K / 2));
        const float2 gj = *reinterpret_cast<const float2 *>(sG + j * LDK + d);
        float w0, w1;
        if (REV) {
            w0 = p.scale * __expf(gj.x);
            w1 = p.scale * __expf(gj.y);
        } else {
            w0 = __expf(Gam[d] - gj.x);
            w1 = __expf(Gam[d + 1] - gj.y);
        }
        uint32_t *px = reinterpret_cast<uint32_t *>(sx + j * LDK + d);
        *px = scale2(*px, w0, w1);
    }
    if (tid < K) gam[((long long)gc * H + h) * K + tid] = Gam[tid];
    __syncthreads();
    // U [K, V] = xw^T y: warps WM (rows of U) x WN (columns)
    constexpr int WM = K / 16 < 4 ? K / 16 : 4, WN = 8 / WM, MT = K / 16 / WM, NT = V / 8 / WN;
    static_assert(NT % 2 == 0, "n-tiles come in pairs");
    const int mt0 = (warp % WM) * MT, e0 = (warp / WM) * (V / WN);
    float acc[MT][NT][4] = {};
#pragma unroll
    for (int js = 0; js < 4; js++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int m = 0; m < MT; m++) ldsm_a_km<K>(a[m], sx, 16 * js, mt0 + m, lane);
#pragma unroll
        for (int nc = 0; nc < NT / 2; nc++) {
            uint32_t r[4];
            ldsm_b_kn<V>(r, sy, 16 * js, e0 / 16 + nc, lane);
#pragma unroll
            for (int m = 0; m < MT; m++) {
                mma16816(acc[m][2 * nc], a[m], r[0], r[1]);
                mma16816(acc[m][2 * nc + 1], a[m], r[2], r[3]);
            }
        }
    }
    bf16 *u = U + ((long long)gc * H + h) * K * V;
#pragma unroll
    for (int m = 0; m < MT; m++)
        put_tile<NT>(u + ((mt0 + m) * 16 + (lane >> 2)) * V, 8LL * V, e0, acc[m], false, true, true, lane & 3);
}

struct ScanArgs {
    int H, K, V;
    gla_plan plan;
    const void *init;
    int init_kind;
    void *fin;
    int fin_kind, fin_accum;
};

__device__ __forceinline__ float state_ld(const void *p, int kind, long long i) {
    return kind == GLA_ST_F32 ? ((const float *)p)[i] : __bfloat162float(((const bf16 *)p)[i]);
}

template <bool REV>
__global__ void __launch_bounds__(SCAN_THREADS) scan_kernel(ScanArgs a, const bf16 *__restrict__ U,
                                                            const float *__restrict__ gam, bf16 *__restrict__ states) {
    const int idx = blockIdx.x * SCAN_THREADS + threadIdx.x, per_row = a.V / 8;
    if (idx >= a.K * per_row) return;
    const int nh = blockIdx.y, sq = nh / a.H, h = nh % a.H, d = idx / per_row, e0 = (idx % per_row) * 8;
    long long tok0;
    int len, c0;
    gla_seq_at(a.plan, sq, tok0, len, c0);
    const int nc = (len + 63) / 64;
    const long long KV = (long long)a.K * a.V, at = (long long)d * a.V + e0;
    float S[8];
#pragma unroll
    for (int r = 0; r < 8; r++) S[r] = a.init_kind ? state_ld(a.init, a.init_kind, nh * KV + at + r) : 0.f;
    uint4 ub[GLA_SCAN_AHEAD];
    float gb[GLA_SCAN_AHEAD];
    auto fetch = [&](int step, int slot) {
        const long long c = c0 + (REV ? nc - 1 - step : step);
        ub[slot] = *reinterpret_cast<const uint4 *>(U + (c * a.H + h) * KV + at);
        gb[slot] = gam[(c * a.H + h) * a.K + d];
    };
#pragma unroll
    for (int s = 0; s < GLA_SCAN_AHEAD; s++)
        if (s < nc) fetch(s, s);
    for (int base = 0; base < nc; base += GLA_SCAN_AHEAD) {
#pragma unroll
        for (int s = 0; s < GLA_SCAN_AHEAD; s++) {
            const int step = base + s;
            if (step >= nc) break;
            const long long c = c0 + (REV ? nc - 1 - step : step);
            uint4 out;
            uint32_t *o = reinterpret_cast<uint32_t *>(&out);
            const uint32_t *u = reinterpret_cast<const uint32_t *>(&ub[s]);
            const float decay = __expf(gb[s]);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                o[r] = pack_bf16(S[2 * r], S[2 * r + 1]);
                const __nv_bfloat162 uu = *reinterpret_cast<const __nv_bfloat162 *>(&u[r]);
                S[2 * r] = fmaf(decay, S[2 * r], __low2float(uu));
                S[2 * r + 1] = fmaf(decay, S[2 * r + 1], __high2float(uu));
            }
            *reinterpret_cast<uint4 *>(states + (c * a.H + h) * KV + at) = out;
            if (step + GLA_SCAN_AHEAD < nc) fetch(step + GLA_SCAN_AHEAD, s);
        }
    }
    if (a.fin_kind) {
#pragma unroll
        for (int r = 0; r < 8; r++) {
            const long long i = nh * KV + at + r;
            const float v = S[r] + (a.fin_accum ? state_ld(a.fin, a.fin_kind, i) : 0.f);
            if (a.fin_kind == GLA_ST_F32)
                ((float *)a.fin)[i] = v;
            else
                ((bf16 *)a.fin)[i] = __float2bfloat16(v);
        }
    }
}

template <int K, int V>
int states_kv(const gla_plan *p, bool rev, const bf16 *x, const bf16 *y, const bf16 *g, bf16 *U, float *gam,
              bf16 *states, const ScanArgs &a) {
    if (p->n_chunks > 0) {
        const size_t sm = StateSmem<K, V>::bytes;
        dim3 grid((unsigned)p->n_chunks, (unsigned)p->H);
        if (rev) {
            if (ln_kernel_smem(chunk_state_kernel<K, V, true>, sm, "gla chunk states")) return LN_ERR;
            chunk_state_kernel<K, V, true><<<grid, STATE_THREADS, sm, ln_stream()>>>(*p, x, y, g, U, gam);
        } else {
            if (ln_kernel_smem(chunk_state_kernel<K, V, false>, sm, "gla chunk states")) return LN_ERR;
            chunk_state_kernel<K, V, false><<<grid, STATE_THREADS, sm, ln_stream()>>>(*p, x, y, g, U, gam);
        }
        LN_CUDA_LAUNCHED("gla chunk states");
    }
    dim3 grid(ln_blocks((long long)K * V / 8, SCAN_THREADS), (unsigned)(p->n_seq * p->H));
    if (rev)
        scan_kernel<true><<<grid, SCAN_THREADS, 0, ln_stream()>>>(a, U, gam, states);
    else
        scan_kernel<false><<<grid, SCAN_THREADS, 0, ln_stream()>>>(a, U, gam, states);
    LN_CUDA_LAUNCHED("gla state scan");
    return LN_OK;
}

} // namespace

bool gla_mma_applies(const gla_plan *p, ln_dtype dt) {
    return dt == LN_BF16 && (p->K == 32 || p->K == 64 || p->K == 128) && (p->V == 64 || p->V == 128);
}

int gla_mma_states(const gla_plan *p, bool rev, const bf16 *x, const bf16 *y, const bf16 *g, bf16 *U, float *gam,
                   bf16 *states, const void *init, int init_kind, void *fin, int fin_kind, bool fin_accum) {
    if (p->n_seq == 0) return LN_OK;
    const ScanArgs a = {p->H, p->K, p->V, *p, init, init_kind, fin, fin_kind, fin_accum};
    GLA_MMA_DISPATCH(p->K, p->V, return states_kv<K, V>(p, rev, x, y, g, U, gam, states, a));
    return LN_OK;
}
