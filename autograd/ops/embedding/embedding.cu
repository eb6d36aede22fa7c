// embedding on the GPU: weight [V, D] (f32 or bf16), ids i32 [...] -> [..., D]. Same result as
// embedding.c (the CPU reference).
//
// Forward: a gather, one thread per output element.
// Backward: deterministic, no atomics. The ids are sorted with their positions (CUB's radix sort
// is stable, so equal ids keep their positions in order), and the sorted entries are cut into
// fixed chunks. One block per chunk sums each run piece of equal ids in order, in fp32: a run
// wholly inside the chunk goes straight into the weight's gradient row; the pieces of a run that
// crosses chunk ends go to fp32 scratch, and a second pass adds them in chunk order, once per row.
// Each gradient row has one writer, so f32 and bf16 work the same way and a run repeats bit for
// bit; and a frequent id (long run) is spread over many blocks instead of one. Cost: a sort of
// the ids plus one read of dy.
//
// Out-of-range ids: checking them on the host would cost a copy and a sync every step, so the
// kernels never trust them instead: the forward writes a zero row and the backward skips the id.
// With the environment variable LINNET_CHECK_IDS set (to anything but "0"), the forward also
// records the first bad position on the device and syncs once to turn it into an error naming
// the op, as the CPU path does; use it when debugging data.
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cub/device/device_radix_sort.cuh>

#include "autograd/cuda/cuda_check.cuh"

static bool check_ids_enabled(void) {
    const char *v = getenv("LINNET_CHECK_IDS");
    return v && *v && strcmp(v, "0") != 0;
}

// y[i, d] = w[ids[i], d]; a bad id gives a zero row and, when first_bad is given, the lowest bad
// position there.
template <typename T>
__global__ void embedding_gather_kernel(const T *w, const int *ids, T *y, long long n, long long V, long long D,
                                        unsigned long long *first_bad) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        long long i = e / D, d = e % D;
        int id = ids[i];
        if (id < 0 || id >= V) {
            ln_store(y, e, 0.0f);
            if (first_bad && d == 0) atomicMin(first_bad, (unsigned long long)i);
        } else {
            y[e] = w[(long long)id * D + d];
        }
    }
}

extern "C" int ln_embedding_forward_cuda(ln_node *n) {
    ln_tensor *w = n->in[0], *ids = n->in[1], *y = n->out[0];
    long long V = w->shape[0], D = w->shape[1], count = y->numel;
    if (count == 0) return LN_OK;
    if (w->dtype != LN_F32 && w->dtype != LN_BF16)
        return ln_fail("embedding: the CUDA kernel takes f32 or bf16, not %s", ln_dtype_name(w->dtype));
    unsigned long long *first_bad = NULL;
    bool check = check_ids_enabled();
    if (check) {
        LN_CUDA_TRY(cudaMallocAsync((void **)&first_bad, sizeof *first_bad, ln_stream()));
        LN_CUDA_TRY(cudaMemsetAsync(first_bad, 0xFF, sizeof *first_bad, ln_stream())); // "none yet"
    }
    cudaError_t launched = cudaSuccess;
    LN_DISPATCH_FLOAT(w->dtype, "embedding", {
        embedding_gather_kernel<T><<<ln_grid(count, 256), 256, 0, ln_stream()>>>((const T *)w->data, (const int *)ids->data,
                                                                             (T *)y->data, count, V, D, first_bad);
        launched = cudaPeekAtLastError();
    });
    if (!check) {
        LN_CUDA_TRY(launched);
        return LN_OK;
    }
    unsigned long long bad = ULLONG_MAX;
    int bad_id = 0;
    cudaError_t copied = launched == cudaSuccess
                             ? cudaMemcpyAsync(&bad, first_bad, sizeof bad, cudaMemcpyDeviceToHost, ln_stream())
                             : launched;
    if (copied == cudaSuccess) copied = cudaStreamSynchronize(ln_stream());
    if (copied == cudaSuccess && bad != ULLONG_MAX) {
        copied = cudaMemcpyAsync(&bad_id, (const int *)ids->data + bad, sizeof bad_id, cudaMemcpyDeviceToHost,
                                 ln_stream());
        if (copied == cudaSuccess) copied = cudaStreamSynchronize(ln_stream());
    }
    LN_CUDA_TRY(cudaFreeAsync(first_bad, ln_stream()));
    LN_CUDA_TRY(copied);
    if (bad != ULLONG_MAX)
        return ln_fail("embedding: id %d at position %llu of %s is outside [0, %lld) (V = %lld)", bad_id, bad,
                       ln_tensor_label(ids, "ids"), V, V);
    return LN_OK;
}

__global__ void embedding_positions_kernel(int *pos, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        pos[i] = (int)i;
}

// VEC consecutive elements, loaded and stored as one (16-byte) access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) ln_pack {
    T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ void pack_zero(ln_pack<T, VEC> &p) {
#pragma unroll
    for (int q = 0; q < VEC; q++) ln_store(p.v, q, 0.0f);
}

template <typename T, int VEC>
__device__ __forceinline__ void pack_add(float (&acc)[VEC], const ln_pack<T, VEC> &p) {
#pragma unroll
    for (int q = 0; q < VEC; q++) acc[q] += ln_load(p.v, q);
}

constexpr int EMB_TILE = 64;   // sorted entries staged in shared memory at a time
constexpr int EMB_AHEAD = 8;   // rows loaded before they are summed: loads in flight per thread
constexpr long long EMB_CHUNK = 64, EMB_MAX_CHUNKS = 1024;

// Where a finished piece [a, b) of a run of `id` (inside chunk c = [lo, hi)) goes. A piece that
// continues from the chunk before goes to pfirst[c], one that starts here and goes on past hi to
// plast[c]; the pass over chunks adds those. Anything else is a whole run: its only writer adds it
// into g. Bad ids are skipped.
template <typename T, int VEC>
__device__ __forceinline__ void embedding_flush(int id, long long a, long long b, long long lo, long long hi,
                                                bool first_cont, bool last_cont, long long c, long long col,
                                                long long V, long long D, const float (&acc)[VEC], T *g,
                                                float *pfirst, float *plast) {
    if (id < 0 || id >= V) return;
    ln_pack<float, VEC> f;
#pragma unroll
    for (int q = 0; q < VEC; q++) f.v[q] = acc[q];
    if (a == lo && first_cont) {
        *(ln_pack<float, VEC> *)(pfirst + c * D + col) = f;
    } else if (b == hi && last_cont) {
        *(ln_pack<float, VEC> *)(plast + c * D + col) = f;
    } else {
        ln_pack<T, VEC> *p = (ln_pack<T, VEC> *)(g + (long long)id * D + col), v = *p;
#pragma unroll
        for (int q = 0; q < VEC; q++) ln_store(v.v, q, ln_load(v.v, q) + acc[q]);
        *p = v;
    }
}

// Block (c, y): chunk c of the sorted entries, [c * chunk, min((c + 1) * chunk, n)), columns in
// steps of VEC over D. Sums each piece of a run in sorted (= position) order, in fp32.
template <typename T, int VEC>
__global__ void embedding_chunk_kernel(const int *sorted_ids, const int *sorted_pos, const T *__restrict__ dy,
                                       T *__restrict__ g, float *pfirst, float *plast, long long n, long long V,
                                       long long D, long long chunk) {
    __shared__ int s_id[EMB_TILE], s_pos[EMB_TILE];
    long long c = blockIdx.x, lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n, nv = D / VEC;
    bool first_cont = lo > 0 && sorted_ids[lo - 1] == sorted_ids[lo];
    bool last_cont = hi < n && sorted_ids[hi] == sorted_ids[hi - 1];
    // uniform over the block, so every thread reaches the barriers
    for (long long jb = (long long)blockIdx.y * blockDim.x; jb < nv; jb += (long long)gridDim.y * blockDim.x) {
        long long j = jb + threadIdx.x, col = j * VEC;
        bool active = j < nv;
        int cur = sorted_ids[lo];
        long long start = lo;
        float acc[VEC];
#pragma unroll
        for (int q = 0; q < VEC; q++) acc[q] = 0.0f;
        for (long long t0 = lo; t0 < hi; t0 += EMB_TILE) {
            int k = hi - t0 < EMB_TILE ? (int)(hi - t0) : EMB_TILE;
            __syncthreads(); // the previous tile is used up
            for (int i = threadIdx.x; i < k; i += blockDim.x) {
                s_id[i] = sorted_ids[t0 + i];
                s_pos[i] = sorted_pos[t0 + i];
            }
            __syncthreads();
            if (!active) continue;
            for (int i0 = 0; i0 < k; i0 += EMB_AHEAD) {
                ln_pack<T, VEC> row[EMB_AHEAD];
#pragma unroll
                for (int u = 0; u < EMB_AHEAD; u++) {
                    int i = i0 + u;
                    if (i < k && s_id[i] >= 0 && s_id[i] < V)
                        row[u] = *(const ln_pack<T, VEC> *)(dy + (long long)s_pos[i] * D + col);
                    else
                        pack_zero(row[u]);
                }
#pragma unroll
                for (int u = 0; u < EMB_AHEAD; u++) {
                    int i = i0 + u;
                    if (i >= k) break;
                    if (s_id[i] != cur) {
                        embedding_flush<T, VEC>(cur, start, t0 + i, lo, hi, first_cont, last_cont, c, col, V, D, acc,
                                                g, pfirst, plast);
                        cur = s_id[i];
                        start = t0 + i;
#pragma unroll
                        for (int q = 0; q < VEC; q++) acc[q] = 0.0f;
                    }
                    pack_add(acc, row[u]);
                }
            }
        }
        if (active)
            embedding_flush<T, VEC>(cur, start, hi, lo, hi, first_cont, last_cont, c, col, V, D, acc, g, pfirst,
                                    plast);
    }
}

// Block (c, y): when chunk c's last run starts in c and goes on past its end, c owns that run:
// g[id] += plast[c] + pfirst[c + 1] + ... + pfirst[c_end], in chunk order (c_end holds the run's
// last entry).
template <typename T, int VEC>
__global__ void embedding_runs_kernel(const int *sorted_ids, T *__restrict__ g, const float *pfirst,
                                      const float *plast, long long n, long long V, long long D, long long chunk) {
    long long c = blockIdx.x, lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n, nv = D / VEC;
    int id = sorted_ids[hi - 1];
    // sorted, so sorted_ids[lo - 1] == id means all of c is the run's middle: not the owner
    if (hi >= n || sorted_ids[hi] != id || (lo > 0 && sorted_ids[lo - 1] == id) || id < 0 || id >= V) return;
    long long a = hi, b = n; // the run ends at the first entry in [hi, n) past id
    while (a < b) {
        long long m = a + (b - a) / 2;
        if (sorted_ids[m] == id) a = m + 1;
        else b = m;
    }
    long long c_end = (a - 1) / chunk;
    long long stride = (long long)gridDim.y * blockDim.x;
    for (long long j = (long long)blockIdx.y * blockDim.x + threadIdx.x; j < nv; j += stride) {
        long long col = j * VEC;
        float acc[VEC];
        ln_pack<float, VEC> p = *(const ln_pack<float, VEC> *)(plast + c * D + col);
#pragma unroll
        for (int q = 0; q < VEC; q++) acc[q] = p.v[q];
        for (long long c0 = c + 1; c0 <= c_end; c0 += EMB_AHEAD) {
            ln_pack<float, VEC> part[EMB_AHEAD];
#pragma unroll
            for (int u = 0; u < EMB_AHEAD; u++)
                if (c0 + u <= c_end) part[u] = *(const ln_pack<float, VEC> *)(pfirst + (c0 + u) * D + col);
#pragma unroll
            for (int u = 0; u < EMB_AHEAD; u++)
                if (c0 + u <= c_end) pack_add(acc, part[u]);
        }
        ln_pack<T, VEC> *gp = (ln_pack<T, VEC> *)(g + (long long)id * D + col), v = *gp;
#pragma unroll
        for (int q = 0; q < VEC; q++) ln_store(v.v, q, ln_load(v.v, q) + acc[q]);
        *gp = v;
    }
}

template <typename T, int VEC>
static int embedding_scatter(const int *sorted_ids, const int *sorted_pos, const T *dy, T *g, float *pfirst,
                             float *plast, long long n, long long V, long long D, long long chunk) {
    long long nv = D / VEC, chunks = (n + chunk - 1) / chunk;
    int threads = nv >= 256 ? 256 : (int)((nv + 31) / 32 * 32);
    long long gy = (nv + threads - 1) / threads;
    dim3 grid((unsigned)chunks, (unsigned)(gy < 65535 ? gy : 65535));
    embedding_chunk_kernel<T, VEC><<<grid, threads, 0, ln_stream()>>>(sorted_ids, sorted_pos, dy, g, pfirst, plast,
                                                                      n, V, D, chunk);
    LN_CUDA_LAUNCHED("embedding_chunk_kernel");
    if (chunks > 1) {
        embedding_runs_kernel<T, VEC><<<grid, threads, 0, ln_stream()>>>(sorted_ids, g, pfirst, plast, n, V, D, chunk);
        LN_CUDA_LAUNCHED("embedding_runs_kernel");
    }
    return LN_OK;
}

// 16-byte accesses when D and both pointers allow them.
template <typename T>
static int embedding_scatter_any(const int *sorted_ids, const int *sorted_pos, const T *dy, T *g, float *pfirst,
                                 float *plast, long long n, long long V, long long D, long long chunk) {
    constexpr int VEC = 16 / sizeof(T);
    if (D % VEC == 0 && ((uintptr_t)dy | (uintptr_t)g) % 16 == 0)
        return embedding_scatter<T, VEC>(sorted_ids, sorted_pos, dy, g, pfirst, plast, n, V, D, chunk);
    return embedding_scatter<T, 1>(sorted_ids, sorted_pos, dy, g, pfirst, plast, n, V, D, chunk);
}

extern "C" int ln_embedding_backward_cuda(ln_node *n) {
    ln_tensor *w = n->in[0], *y = n->out[0];
    if (!w->requires_grad || !y->grad) return LN_OK;
    ln_tensor *ids = ln_node_saved(n, 0);
    long long V = w->shape[0], D = w->shape[1], count = ids->numel;
    ln_tensor *g = ln_grad_of(w);
    if (!g) return LN_ERR;
    if (count == 0 || D == 0) return LN_OK;
    if (count > INT_MAX) return ln_fail("embedding: %lld ids exceed the sort's int range", count);
    if (w->dtype != LN_F32 && w->dtype != LN_BF16)
        return ln_fail("embedding: the CUDA kernel takes f32 or bf16, not %s", ln_dtype_name(w->dtype));
    // chunks of 64 sorted entries, longer past 65536 ids so the pass over chunks stays short
    long long chunk = (count + EMB_MAX_CHUNKS - 1) / EMB_MAX_CHUNKS;
    if (chunk < EMB_CHUNK) chunk = EMB_CHUNK;
    long long chunks = (count + chunk - 1) / chunk;

    // one allocation: sorted ids, positions, sorted positions, the partial sums, the sort's scratch
    size_t sort_bytes = 0;
    LN_CUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const int *)NULL, (int *)NULL, (const int *)NULL,
                                                (int *)NULL, (int)count, 0, 32, ln_stream()));
    size_t ints = (size_t)count, head = (3 * ints * sizeof(int) + 255) / 256 * 256;
    size_t partial = ((size_t)chunks * (size_t)D * sizeof(float) + 255) / 256 * 256;
    char *scratch = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&scratch, head + 2 * partial + sort_bytes, ln_stream()));
    int *sorted_ids = (int *)scratch, *pos = sorted_ids + ints, *sorted_pos = pos + ints;
    float *pfirst = (float *)(scratch + head), *plast = (float *)(scratch + head + partial);

    embedding_positions_kernel<<<ln_grid(count, 256), 256, 0, ln_stream()>>>(pos, count);
    cudaError_t status = cudaPeekAtLastError();
    if (status == cudaSuccess)
        status = cub::DeviceRadixSort::SortPairs(scratch + head + 2 * partial, sort_bytes, (const int *)ids->data,
                                                 sorted_ids, pos, sorted_pos, (int)count, 0, 32, ln_stream());
    int rc = LN_OK;
    if (status == cudaSuccess) {
        LN_DISPATCH_FLOAT(w->dtype, "embedding", {
            rc = embedding_scatter_any<T>(sorted_ids, sorted_pos, (const T *)y->grad->data, (T *)g->data, pfirst,
                                          plast, count, V, D, chunk);
        });
    }
    LN_CUDA_TRY(cudaFreeAsync(scratch, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    return rc;
}
