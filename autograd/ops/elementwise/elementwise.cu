// add, mul (b broadcast over a's leading dims) and scale on the GPU: f32 or bf16 storage, fp32
// arithmetic. Same math as elementwise.c (the CPU reference). a and b may differ in dtype; the
// output (and so its gradient) takes a's.
//
// The broadcast b's gradient sums dy over the leading dims. It runs in two fixed passes (partial
// sums over chunks of rows, then the chunks in order), so it is run-to-run identical: no atomics.
#include <math.h>
#include <stdint.h>

#include "autograd/cuda/cuda_check.cuh"

#define GRID_STRIDE(i, n)                                                                          \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

// Binds TA to a's storage type and TB to b's (f32 or bf16 each).
#define DISPATCH_AB(da, db, opname, ...)                                                           \
    LN_DISPATCH_FLOAT(da, opname, {                                                                \
        typedef T TA;                                                                              \
        LN_DISPATCH_FLOAT(db, opname, {                                                            \
            typedef T TB;                                                                          \
            __VA_ARGS__                                                                            \
        });                                                                                        \
    })

// y = a + b or a * b, b's element for a's flat index i being i % nb
template <typename TA, typename TB>
__global__ void binary_forward_kernel(const TA *a, const TB *b, TA *y, long long n, long long nb, bool multiply) {
    GRID_STRIDE(i, n) {
        float x = ln_load(a, i), v = ln_load(b, i % nb);
        ln_store(y, i, multiply ? x * v : x + v);
    }
}

// The same in 16-byte packs of a and y (N elements; n and nb multiples of N, a and y 16-byte
// aligned): one index modulo per pack instead of per element, a pack's b elements consecutive.
template <typename TA, typename TB, int N>
__global__ void binary_forward_packed_kernel(const TA *a, const TB *b, TA *y, long long n, long long nb,
                                             bool multiply) {
    GRID_STRIDE(pk, n / N) {
        const long long i = pk * N, j = nb == n ? i : i % nb;
        float x[N];
        ln_load_n<N>(a, i, x);
#pragma unroll
        for (int k = 0; k < N; k++) {
            const float v = ln_load(b, j + k);
            x[k] = multiply ? x[k] * v : x[k] + v;
        }
        ln_store_n<N>(y, i, x);
    }
}

// y = a (+ or *) b, packed when the sizes and addresses allow
template <typename TA, typename TB>
static void binary_forward(const TA *a, const TB *b, TA *y, long long n, long long nb, bool multiply) {
    constexpr int N = 16 / sizeof(TA);
    if (n % N == 0 && nb % N == 0 && ((uintptr_t)a & 15) == 0 && ((uintptr_t)y & 15) == 0)
        binary_forward_packed_kernel<TA, TB, N><<<ln_grid(n / N, 256), 256, 0, ln_stream()>>>(a, b, y, n, nb, multiply);
    else
        binary_forward_kernel<TA, TB><<<ln_grid(n, 256), 256, 0, ln_stream()>>>(a, b, y, n, nb, multiply);
}

// da += dy * b (mul's gradient of a)
template <typename TA, typename TB>
__global__ void mul_backward_a_kernel(const TA *dy, const TB *b, TA *da, long long n, long long nb) {
    GRID_STRIDE(i, n) ln_store(da, i, ln_load(da, i) + ln_load(dy, i) * ln_load(b, i % nb));
}

// Pass 1 of the reduction over the leading dims of dy [rows, nb] (times x when x is given):
// out[c, j] (+)= sum over rows r of chunk c (rows_per_chunk each, in order) of dy[r, j] * x[r, j].
// With one chunk, out is db itself and the sum is added to it.
template <typename TY, typename TO>
__global__ void reduce_rows_kernel(const TY *dy, const TY *x, TO *out, long long rows, long long nb,
                                   long long chunks, long long rows_per_chunk, bool accumulate) {
    GRID_STRIDE(idx, chunks * nb) {
        long long c = idx / nb, j = idx % nb;
        long long r0 = c * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
        float s = 0.0f;
        for (long long r = r0; r < r1; r++) {
            long long i = r * nb + j;
            s += x ? ln_load(dy, i) * ln_load(x, i) : ln_load(dy, i);
        }
        ln_store(out, idx, accumulate ? ln_load(out, idx) + s : s);
    }
}

// Pass 2: db[j] += sum over chunks c, in order, of partial[c, j].
template <typename TB>
__global__ void reduce_chunks_kernel(const float *partial, TB *db, long long nb, long long chunks) {
    GRID_STRIDE(j, nb) {
        float s = 0.0f;
        for (long long c = 0; c < chunks; c++) s += partial[c * nb + j];
        ln_store(db, j, ln_load(db, j) + s);
    }
}

// db += sum over the leading dims of dy (times x when x is non-NULL); dy and x have a's shape.
template <typename TY, typename TB>
static int reduce_to_b(const TY *dy, const TY *x, TB *db, long long n_a, long long nb) {
    if (n_a == 0 || nb == 0) return LN_OK;
    long long rows = n_a / nb;
    // up to ~256K threads in pass 1, and chunks of at least sqrt(rows) rows, so that neither pass
    // runs a long sequential fp32 sum
    long long max_chunks = (1LL << 18) / nb;
    if (max_chunks < 1) max_chunks = 1;
    long long rows_per_chunk = (rows + max_chunks - 1) / max_chunks;
    long long root = (long long)ceil(sqrt((double)rows));
    if (rows_per_chunk < root) rows_per_chunk = root;
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    long long chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    if (chunks == 1) {
        reduce_rows_kernel<TY, TB><<<ln_grid(nb, 256), 256, 0, ln_stream()>>>(dy, x, db, rows, nb, 1, rows, true);
        LN_CUDA_LAUNCHED("broadcast gradient");
        return LN_OK;
    }
    float *partial = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&partial, (size_t)(chunks * nb) * sizeof(float), ln_stream()));
    reduce_rows_kernel<TY, float><<<ln_grid(chunks * nb, 256), 256, 0, ln_stream()>>>(dy, x, partial, rows, nb, chunks,
                                                                                 rows_per_chunk, false);
    cudaError_t launched = cudaPeekAtLastError();
    if (launched == cudaSuccess) {
        reduce_chunks_kernel<TB><<<ln_grid(nb, 256), 256, 0, ln_stream()>>>(partial, db, nb, chunks);
        launched = cudaPeekAtLastError();
    }
    LN_CUDA_TRY(cudaFreeAsync(partial, ln_stream())); // stream-ordered: after both passes
    LN_CUDA_TRY(launched);
    return LN_OK;
}

// ---- add ----

extern "C" int ln_add_forward_cuda(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0];
    if (a->numel == 0) return LN_OK;
    DISPATCH_AB(a->dtype, b->dtype, "add", {
        binary_forward<TA, TB>((const TA *)a->data, (const TB *)b->data, (TA *)y->data, a->numel, b->numel, false);
    });
    LN_CUDA_LAUNCHED("add forward");
    return LN_OK;
}

extern "C" int ln_add_backward_cuda(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1], *dy = n->out[0]->grad;
    if (!dy) return LN_OK;
    // da = dy: the first input without a gradient yet takes dy's buffer (no copy); a + a does not
    bool adopted = a->requires_grad && a != b && ln_grad_adopt(a, dy);
    if (a->requires_grad && !adopted) {
        ln_tensor *ga = ln_grad_of(a);
        if (!ga || ln_cuda_add_into(ga, dy)) return LN_ERR;
    }
    if (b->requires_grad && !adopted && a != b && ln_grad_adopt(b, dy)) return LN_OK;
    if (b->requires_grad) {
        ln_tensor *gb = ln_grad_of(b);
        if (!gb) return LN_ERR;
        DISPATCH_AB(a->dtype, b->dtype, "add", {
            return reduce_to_b<TA, TB>((const TA *)dy->data, (const TA *)NULL, (TB *)gb->data, a->numel, b->numel);
        });
    }
    return LN_OK;
}

// ---- mul ----

extern "C" int ln_mul_forward_cuda(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0];
    if (a->numel == 0) return LN_OK;
    DISPATCH_AB(a->dtype, b->dtype, "mul", {
        binary_forward<TA, TB>((const TA *)a->data, (const TB *)b->data, (TA *)y->data, a->numel, b->numel, true);
    });
    LN_CUDA_LAUNCHED("mul forward");
    return LN_OK;
}

extern "C" int ln_mul_backward_cuda(ln_node *n) {
    ln_tensor *a = ln_node_saved(n, 0), *b = ln_node_saved(n, 1), *dy = n->out[0]->grad;
    if (!dy || a->numel == 0) return LN_OK;
    if (n->in[0]->requires_grad) {
        ln_tensor *ga = ln_grad_of(n->in[0]);
        if (!ga) return LN_ERR;
        DISPATCH_AB(a->dtype, b->dtype, "mul", {
            mul_backward_a_kernel<TA, TB><<<ln_grid(a->numel, 256), 256, 0, ln_stream()>>>(
                (const TA *)dy->data, (const TB *)b->data, (TA *)ga->data, a->numel, b->numel);
        });
        LN_CUDA_LAUNCHED("mul backward (a)");
    }
    if (n->in[1]->requires_grad) {
        ln_tensor *gb = ln_grad_of(n->in[1]);
        if (!gb) return LN_ERR;
        DISPATCH_AB(a->dtype, b->dtype, "mul", {
            return reduce_to_b<TA, TB>((const TA *)dy->data, (const TA *)a->data, (TB *)gb->data, a->numel, b->numel);
        });
    }
    return LN_OK;
}

// ---- scale: y = s x; dx += s dy ----

template <typename T>
__global__ void scale_kernel(const T *x, T *y, float s, long long n, bool accumulate) {
    GRID_STRIDE(i, n) ln_store(y, i, (accumulate ? ln_load(y, i) : 0.0f) + s * ln_load(x, i));
}

extern "C" int ln_scale_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    if (x->numel == 0) return LN_OK;
    LN_DISPATCH_FLOAT(x->dtype, "scale", {
        scale_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (T *)y->data,
                                                                     (float)n->farg[0], x->numel, false);
    });
    LN_CUDA_LAUNCHED("scale forward");
    return LN_OK;
}

extern "C" int ln_scale_backward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *dy = n->out[0]->grad;
    if (!dy || !x->requires_grad || x->numel == 0) return LN_OK;
    ln_tensor *dx = ln_grad_of(x);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, "scale", {
        scale_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)dy->data, (T *)dx->data,
                                                                     (float)n->farg[0], x->numel, true);
    });
    LN_CUDA_LAUNCHED("scale backward");
    return LN_OK;
}
