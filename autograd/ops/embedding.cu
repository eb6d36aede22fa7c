// embedding on the GPU: weight [V, D] (f32 or bf16), ids i32 [...] -> [..., D]. Same result as
// embedding.c (the CPU reference).
//
// Forward: a gather, one thread per output element.
// Backward: deterministic, no atomics. The ids are sorted with their positions (CUB's radix sort
// is stable, so equal ids keep their positions in order); then the first sorted entry of each
// distinct id sums dy's rows for that id in position order, in fp32, and adds the sum into the
// weight's gradient row once. Each gradient row has one writer, so f32 and bf16 work the same way
// and a run repeats bit for bit. Cost: a sort of the ids plus one read of dy.
//
// Out-of-range ids: checking them on the host would cost a copy and a sync every step, so the
// kernels never trust them instead: the forward writes a zero row and the backward skips the id.
// With the environment variable LINNET_CHECK_IDS set (to anything but "0"), the forward also
// records the first bad position on the device and syncs once to turn it into an error naming
// the op, as the CPU path does; use it when debugging data.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cub/device/device_radix_sort.cuh>

#include "autograd/cuda/cuda_check.cuh"

static unsigned grid_for(long long n) {
    unsigned b = ln_blocks(n, 256);
    return b < 65535u * 8 ? (b ? b : 1) : 65535u * 8;
}

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
        embedding_gather_kernel<T><<<grid_for(count), 256, 0, ln_stream()>>>((const T *)w->data, (const int *)ids->data,
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

// One block per sorted entry s that starts a run of equal ids: g[id, :] += sum over the run, in
// order, of dy[pos, :]. Entries inside a run, and bad ids, do nothing.
template <typename T>
__global__ void embedding_scatter_kernel(const int *sorted_ids, const int *sorted_pos, const T *dy, T *g, long long n,
                                         long long V, long long D) {
    for (long long s = blockIdx.x; s < n; s += gridDim.x) {
        int id = sorted_ids[s];
        if ((s > 0 && sorted_ids[s - 1] == id) || id < 0 || id >= V) continue;
        for (long long d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.0f;
            for (long long t = s; t < n && sorted_ids[t] == id; t++) acc += ln_load(dy, (long long)sorted_pos[t] * D + d);
            long long k = (long long)id * D + d;
            ln_store(g, k, ln_load(g, k) + acc);
        }
    }
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

    // one allocation: sorted ids, positions, sorted positions, then the sort's scratch
    size_t sort_bytes = 0;
    LN_CUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const int *)NULL, (int *)NULL, (const int *)NULL,
                                                (int *)NULL, (int)count, 0, 32, ln_stream()));
    size_t ints = (size_t)count, head = (3 * ints * sizeof(int) + 255) / 256 * 256;
    char *scratch = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&scratch, head + sort_bytes, ln_stream()));
    int *sorted_ids = (int *)scratch, *pos = sorted_ids + ints, *sorted_pos = pos + ints;

    embedding_positions_kernel<<<grid_for(count), 256, 0, ln_stream()>>>(pos, count);
    cudaError_t status = cudaPeekAtLastError();
    if (status == cudaSuccess)
        status = cub::DeviceRadixSort::SortPairs(scratch + head, sort_bytes, (const int *)ids->data, sorted_ids, pos,
                                                 sorted_pos, (int)count, 0, 32, ln_stream());
    if (status == cudaSuccess) {
        unsigned grid = count < (1LL << 20) ? (unsigned)count : (1u << 20);
        int threads = D >= 256 ? 256 : (int)((D + 31) / 32 * 32);
        LN_DISPATCH_FLOAT(w->dtype, "embedding", {
            embedding_scatter_kernel<T><<<grid, threads, 0, ln_stream()>>>(sorted_ids, sorted_pos, (const T *)y->grad->data,
                                                                           (T *)g->data, count, V, D);
        });
        status = cudaPeekAtLastError();
    }
    LN_CUDA_TRY(cudaFreeAsync(scratch, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    return LN_OK;
}
