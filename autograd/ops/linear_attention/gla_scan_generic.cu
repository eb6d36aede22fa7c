// The state scan of the gated linear attention family, and the chunk plan (see gla_cuda.cuh).
//
// One block per (32 x 32 tile of the [K, V] state, sequence, head): rows of the state are
// independent in S <- diag(e^Gam) S + (x * w)^T y, so the tiles never talk and the GPU is full
// even at one sequence (16 heads x 16 tiles = 256 blocks at K = V = 128). The chunks of a
// sequence are walked in order (reversed for dh); the next chunk's x, g, y tiles are loaded into
// registers while the current one is multiplied, so the chain pays load latency once.
// Per chunk and block: 64 x 32 of x, g, y (12 KB in bf16) in, one 32 x 32 state tile out.
#include <stdlib.h>
#include <string.h>

#include "gla_cuda.cuh"

#define SCAN_THREADS 128
#define SB 32 // state tile edge

int gla_state_kind(const ln_tensor *t) {
    if (!t) return GLA_ST_NONE;
    if (t->dtype == LN_F32) return GLA_ST_F32;
    if (t->dtype == LN_BF16) return GLA_ST_BF16;
    return ln_fail("gla on CUDA: states must be f32 or bf16, not %s", ln_dtype_name(t->dtype)), -1;
}

int gla_plan_make(ln_node *n, gla_plan *p) {
    memset(p, 0, sizeof *p);
    const ln_tensor *q = n->in[0], *v = n->in[2];
    const ln_tensor *cu = n->iarg[3] >= 0 ? n->in[n->iarg[3]] : NULL;
    const int64_t B = q->shape[0], T = q->shape[1];
    p->H = (int)q->shape[2];
    p->K = (int)q->shape[3];
    p->V = (int)v->shape[3];
    p->KP = (p->K + 31) / 32 * 32;
    p->VP = (p->V + 31) / 32 * 32;
    p->gate = (int)n->iarg[0];
    p->scale = (float)n->farg[0];
    if (p->K > GLA_MAXD || p->V > GLA_MAXD)
        return ln_fail("%s on CUDA: K = %d and V = %d must be <= %d (not on CUDA yet)", n->op->name, p->K, p->V,
                       GLA_MAXD);
    if (B * T * p->H > 0x7fffffffLL / GLA_MAXD)
        return ln_fail("%s on CUDA: %lld tokens x %d heads is over the 32-bit index range", n->op->name,
                       (long long)(B * T), p->H);
    p->n_seq = (int)(cu ? cu->shape[0] - 1 : B);
    if (!cu) { // equal sequences: positions follow from T, nothing to copy
        p->uniform = true;
        p->seq_T = (int)T;
        p->n_chunks = (int)(B * ((T + GLA_C - 1) / GLA_C));
        return LN_OK;
    }
    int *starts = (int *)malloc((size_t)(p->n_seq + 1) * sizeof(int));
    if (!starts) return ln_fail("%s: out of host memory", n->op->name);
    if (ln_device_copy(LN_CPU, starts, cu->device, cu->data, (size_t)(p->n_seq + 1) * sizeof(int))) {
        free(starts);
        return LN_ERR;
    }
    int chunks = 0;
    for (int i = 0; i < p->n_seq; i++) chunks += (starts[i + 1] - starts[i] + GLA_C - 1) / GLA_C;
    p->n_chunks = chunks;
    const size_t count = 3 * (size_t)p->n_seq + 2 * (size_t)chunks;
    int *host = (int *)malloc(count * sizeof(int));
    if (!host) {
        free(starts);
        return ln_fail("%s: out of host memory", n->op->name);
    }
    int *s_tok0 = host, *s_len = host + p->n_seq, *s_c0 = host + 2 * p->n_seq;
    int *c_tok0 = host + 3 * p->n_seq, *c_len = c_tok0 + chunks;
    for (int i = 0, c = 0; i < p->n_seq; i++) {
        s_tok0[i] = starts[i];
        s_len[i] = starts[i + 1] - starts[i];
        s_c0[i] = c;
        for (int t = starts[i]; t < starts[i + 1]; t += GLA_C, c++) {
            c_tok0[c] = t;
            c_len[c] = starts[i + 1] - t < GLA_C ? starts[i + 1] - t : GLA_C;
        }
    }
    free(starts);
    cudaError_t st = cudaMallocAsync((void **)&p->dev, count * sizeof(int), ln_stream());
    if (st != cudaSuccess) {
        free(host);
        return ln_fail("%s: cudaMallocAsync of the chunk plan failed: %s", n->op->name, cudaGetErrorString(st));
    }
    int status = ln_device_copy(LN_CUDA, p->dev, LN_CPU, host, count * sizeof(int));
    free(host);
    p->seq_tok0 = p->dev;
    p->seq_len = p->dev + p->n_seq;
    p->seq_c0 = p->dev + 2 * p->n_seq;
    p->chunk_tok0 = p->dev + 3 * p->n_seq;
    p->chunk_len = p->chunk_tok0 + chunks;
    return status;
}

void gla_plan_free(gla_plan *p) {
    if (p->dev) cudaFreeAsync(p->dev, ln_stream());
    p->dev = NULL;
}

__device__ __forceinline__ float st_ld(const void *p, int kind, long long i) {
    return kind == GLA_ST_F32 ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
__device__ __forceinline__ void st_st(void *p, int kind, long long i, float v) {
    if (kind == GLA_ST_F32)
        ((float *)p)[i] = v;
    else
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
}

struct scan_args {
    int H, K, V, VT, gate;
    float scale;
    gla_plan plan;
    const void *init;
    int init_kind;
    void *fin;
    int fin_kind, fin_accum;
};

template <typename T, bool REV, bool MMA>
__global__ void __launch_bounds__(SCAN_THREADS) gla_scan_kernel(scan_args a, const T *__restrict__ x,
                                                                const T *__restrict__ y, const T *__restrict__ g,
                                                                T *__restrict__ states) {
    __shared__ float sX[GLA_C][SB + 1], sY[GLA_C][SB + 1], sGam[SB], segtot[4][SB];
    const int tid = threadIdx.x, col = tid & 31, seg = tid >> 5;
    const int kt = blockIdx.x / a.VT, vt = blockIdx.x % a.VT;
    const int nh = blockIdx.y, sq = nh / a.H, h = nh % a.H;
    const int d0 = kt * SB, e0 = vt * SB;
    const int H = a.H, K = a.K, V = a.V;
    long long tok_base;
    int L, c0;
    gla_seq_at(a.plan, sq, tok_base, L, c0);
    const int nc = (L + GLA_C - 1) / GLA_C;
    const long long KV = (long long)K * V;

    // this thread's 8 state elements: (d, e) within the tile
    int ed[8], ee[8];
    {
        const int lane = tid & 31, warp = tid >> 5, gid = lane >> 2, tig = lane & 3;
#pragma unroll
        for (int r = 0; r < 8; r++) {
            if (MMA) {
                const int t = r >> 2, qd = r & 3, mt = warp & 1, nt = (warp >> 1) * 2 + t;
                ed[r] = mt * 16 + gid + (qd >= 2 ? 8 : 0);
                ee[r] = nt * 8 + 2 * tig + (qd & 1);
            } else {
                ed[r] = (tid + SCAN_THREADS * r) / SB;
                ee[r] = (tid + SCAN_THREADS * r) % SB;
            }
        }
    }
    float S[8];
#pragma unroll
    for (int r = 0; r < 8; r++) {
        const int d = d0 + ed[r], e = e0 + ee[r];
        S[r] = (a.init_kind && d < K && e < V) ? st_ld(a.init, a.init_kind, ((long long)nh * K + d) * V + e) : 0.f;
    }

    float xr[16], gr[16], yr[16];
    auto load = [&](int c) { // chunk c of this sequence into registers
        const long long t0 = tok_base + (long long)c * GLA_C;
        const int n = L - c * GLA_C < GLA_C ? L - c * GLA_C : GLA_C;
#pragma unroll
        for (int r = 0; r < 16; r++) {
            const int i = seg * 16 + r;
            const long long row = (t0 + i) * H + h;
            const bool ok = i < n;
            xr[r] = ok && d0 + col < K ? gla_ld(x, row * K + d0 + col) : 0.f;
            yr[r] = ok && e0 + col < V ? gla_ld(y, row * V + e0 + col) : 0.f;
            if (a.gate == GLA_GATE_PER_KEY)
                gr[r] = ok && d0 + col < K ? gla_ld(g, row * K + d0 + col) : 0.f;
            else if (a.gate == GLA_GATE_PER_HEAD)
                gr[r] = ok ? gla_ld(g, row) : 0.f;
            else
                gr[r] = 0.f;
        }
    };
    if (nc > 0) load(REV ? nc - 1 : 0);
    for (int step = 0; step < nc; step++) {
        const int c = REV ? nc - 1 - step : step;
        // chunk-local cumulative gates of this thread's column
#pragma unroll
        for (int r = 1; r < 16; r++) gr[r] += gr[r - 1];
        segtot[seg][col] = gr[15];
        __syncthreads();
        float off = 0.f, gam = 0.f;
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const float t = segtot[s][col];
            off += s < seg ? t : 0.f;
            gam += t;
        }
        if (seg == 0) sGam[col] = gam;
#pragma unroll
        for (int r = 0; r < 16; r++) {
            const float G = gr[r] + off;
            const float w = REV ? a.scale * expf(G) : expf(gam - G);
            sX[seg * 16 + r][col] = xr[r] * w;
            sY[seg * 16 + r][col] = yr[r];
        }
        if (step + 1 < nc) load(REV ? c - 1 : c + 1); // in flight during the product below
        __syncthreads();
        // store S (h_c, or dh_c+1 walking back), then S = e^Gam S + X^T Y
        const long long slot = ((long long)(c0 + c) * H + h) * KV;
#pragma unroll
        for (int r = 0; r < 8; r++) {
            const int d = d0 + ed[r], e = e0 + ee[r];
            if (d < K && e < V) gla_st(states, slot + (long long)d * V + e, S[r]);
            S[r] *= expf(sGam[ed[r]]);
        }
        if constexpr (MMA) {
            const int lane = tid & 31, warp = tid >> 5, gid = lane >> 2, tig = lane & 3, mt = warp & 1;
#pragma unroll
            for (int k0 = 0; k0 < GLA_C; k0 += 16) {
                const int m = mt * 16 + gid, kk = k0 + 2 * tig;
                __nv_bfloat162 a0 = __floats2bfloat162_rn(sX[kk][m], sX[kk + 1][m]);
                __nv_bfloat162 a1 = __floats2bfloat162_rn(sX[kk][m + 8], sX[kk + 1][m + 8]);
                __nv_bfloat162 a2 = __floats2bfloat162_rn(sX[kk + 8][m], sX[kk + 9][m]);
                __nv_bfloat162 a3 = __floats2bfloat162_rn(sX[kk + 8][m + 8], sX[kk + 9][m + 8]);
#pragma unroll
                for (int t = 0; t < 2; t++) {
                    const int nn = ((warp >> 1) * 2 + t) * 8 + gid;
                    __nv_bfloat162 b0 = __floats2bfloat162_rn(sY[kk][nn], sY[kk + 1][nn]);
                    __nv_bfloat162 b1 = __floats2bfloat162_rn(sY[kk + 8][nn], sY[kk + 9][nn]);
                    asm volatile(
                        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                        "{%8,%9}, {%0,%1,%2,%3};\n"
                        : "+f"(S[4 * t]), "+f"(S[4 * t + 1]), "+f"(S[4 * t + 2]), "+f"(S[4 * t + 3])
                        : "r"(*(uint32_t *)&a0), "r"(*(uint32_t *)&a1), "r"(*(uint32_t *)&a2), "r"(*(uint32_t *)&a3),
                          "r"(*(uint32_t *)&b0), "r"(*(uint32_t *)&b1));
                }
            }
        } else {
#pragma unroll
            for (int r = 0; r < 8; r++) {
                float s = 0.f;
                for (int j = 0; j < GLA_C; j++) s = fmaf(sX[j][ed[r]], sY[j][ee[r]], s);
                S[r] += s;
            }
        }
        __syncthreads();
    }
    if (a.fin_kind) {
#pragma unroll
        for (int r = 0; r < 8; r++) {
            const int d = d0 + ed[r], e = e0 + ee[r];
            if (d < K && e < V) {
                const long long i = ((long long)nh * K + d) * V + e;
                st_st(a.fin, a.fin_kind, i, S[r] + (a.fin_accum ? st_ld(a.fin, a.fin_kind, i) : 0.f));
            }
        }
    }
}

int gla_scan(const gla_plan *p, ln_dtype dt, bool rev, const void *x, const void *y, const void *g, void *states,
             const void *init, int init_kind, void *fin, int fin_kind, bool fin_accum) {
    if (p->n_seq == 0) return LN_OK;
    scan_args a = {p->H, p->K, p->V, p->VP / SB, p->gate, p->scale, *p,
                   init, init_kind, fin, fin_kind, fin_accum};
    dim3 grid((unsigned)((p->KP / SB) * (p->VP / SB)), (unsigned)(p->n_seq * p->H));
    LN_DISPATCH_FLOAT(dt, "gla scan", {
        constexpr bool MMA = gla_is_bf16<T>::value;
        if (rev)
            gla_scan_kernel<T, true, MMA><<<grid, SCAN_THREADS, 0, ln_stream()>>>(a, (const T *)x, (const T *)y,
                                                                                (const T *)g, (T *)states);
        else
            gla_scan_kernel<T, false, MMA><<<grid, SCAN_THREADS, 0, ln_stream()>>>(a, (const T *)x, (const T *)y,
                                                                                 (const T *)g, (T *)states);
    });
    LN_CUDA_LAUNCHED("gla scan");
    return LN_OK;
}
