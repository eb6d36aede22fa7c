// The optimizer's GPU kernels: the fused AdamW update and the global gradient norm with its clip
// factor, each over all parameters in a few launches (multi-tensor: a list of up to GROUP tensors
// travels as the kernel's argument, block b takes chunk b of them), not one launch per tensor: a
// model's ~170 parameters, most of them small, cost ~170 kernels of a few microseconds each.
#include "autograd/cuda/cuda_check.cuh"

extern "C" {
#include "optim/optim_cuda.h"
}

#define GROUP 64     // tensors a launch (the argument stays under the 4 KB kernel-parameter limit)
#define CHUNK 16384  // elements a block
#define THREADS 256

// Up to GROUP tensors of n[i] elements; chunk c of the launch is tensor i's chunk c - first[i]
// for the i with first[i] <= c < first[i + 1].
struct tensor_list {
    int count;
    int first[GROUP + 1];
    long long n[GROUP];
};

__device__ __forceinline__ int tensor_of(const tensor_list &l, int chunk) {
    int lo = 0, hi = l.count - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (l.first[mid] <= chunk) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

struct adamw_group {
    tensor_list l;
    float *w[GROUP], *m[GROUP], *v[GROUP];
    const float *g[GROUP];
    float decay[GROUP]; // lr * weight decay, or 0
};

// Moments, bias correction, decoupled decay and the update, in fp32. With clip, every gradient is
// first scaled by *clip (ln_grad_norm_cuda's factor); a NaN factor (the norm was not finite) leaves
// the parameter as it was. __grid_constant__: the list is read in place, not copied per thread.
__global__ void __launch_bounds__(THREADS) adamw_kernel(const __grid_constant__ adamw_group a, float lr, float beta1,
                                                         float beta2, float eps, float bias1, float bias2,
                                                         const float *clip) {
    const float c = clip ? *clip : 1.0f;
    if (c != c) return;
    const int t = tensor_of(a.l, blockIdx.x);
    const long long start = (long long)(blockIdx.x - a.l.first[t]) * CHUNK;
    const long long end = min(start + CHUNK, a.l.n[t]);
    float *w = a.w[t], *m = a.m[t], *v = a.v[t];
    const float *g = a.g[t];
    const float decay = a.decay[t];
    for (long long i = start + threadIdx.x; i < end; i += THREADS) {
        float gi = c * g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float update = (mi / bias1) / (sqrtf(vi / bias2) + eps);
        w[i] = w[i] - decay * w[i] - lr * update;
    }
}

// Adds tensor i to the list; false when the list is full. Chunks of one launch stay under 2^31.
static bool list_add(tensor_list &l, long long n) {
    if (l.count == GROUP) return false;
    if (l.count == 0) l.first[0] = 0;
    l.n[l.count] = n;
    l.first[l.count + 1] = l.first[l.count] + (int)((n + CHUNK - 1) / CHUNK);
    l.count++;
    return true;
}

extern "C" int ln_adamw_update_many_cuda(const ln_adamw_item *items, int count, double lr, double beta1, double beta2,
                                         double eps, double bias1, double bias2, const float *clip) {
    adamw_group a;
    a.l.count = 0;
    for (int i = 0; i <= count; i++) {
        if (i == count || !list_add(a.l, items[i].n)) { // launch what is listed, then go on
            if (a.l.count && a.l.first[a.l.count] > 0) {
                adamw_kernel<<<a.l.first[a.l.count], THREADS, 0, ln_stream()>>>(
                    a, (float)lr, (float)beta1, (float)beta2, (float)eps, (float)bias1, (float)bias2, clip);
                LN_CUDA_LAUNCHED("adamw");
            }
            if (i == count) break;
            a.l.count = 0;
            list_add(a.l, items[i].n);
        }
        int k = a.l.count - 1;
        a.w[k] = items[i].w;
        a.g[k] = items[i].g;
        a.m[k] = items[i].m;
        a.v[k] = items[i].v;
        a.decay[k] = (float)items[i].decay;
    }
    return LN_OK;
}

struct norm_group {
    tensor_list l;
    const float *g[GROUP];
};

// Sum of squares of each chunk into partial[chunk] (double), one block a chunk, a fixed order.
__global__ void __launch_bounds__(THREADS) sum_squares_kernel(const __grid_constant__ norm_group a, double *partial) {
    __shared__ double shared[THREADS];
    const int t = tensor_of(a.l, blockIdx.x);
    const long long start = (long long)(blockIdx.x - a.l.first[t]) * CHUNK;
    const long long end = min(start + CHUNK, a.l.n[t]);
    const float *g = a.g[t];
    double s = 0;
    for (long long i = start + threadIdx.x; i < end; i += THREADS) s += (double)g[i] * g[i];
    shared[threadIdx.x] = s;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = shared[0];
}

// The chunks' partials summed in a fixed order: norm = sqrt(sum) and the clip factor max_norm /
// (norm + 1e-12) when max_norm > 0 and the norm exceeds it, else 1; NaN when the norm is not finite.
__global__ void __launch_bounds__(THREADS) norm_clip_kernel(const double *partials, long long chunks, double max_norm,
                                                            double *norm, float *clip) {
    __shared__ double shared[THREADS];
    double s = 0;
    for (long long i = threadIdx.x; i < chunks; i += THREADS) s += partials[i];
    shared[threadIdx.x] = s;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const double r = sqrt(shared[0]);
        *norm = r;
        *clip = !isfinite(r) ? NAN : max_norm > 0 && r > max_norm ? (float)(max_norm / (r + 1e-12)) : 1.0f;
    }
}

extern "C" int ln_grad_norm_cuda(const float *const *grads, const long long *n, int count, double max_norm,
                                 double **norm, float **clip) {
    // module buffers: the norm and the factor; the partials, one per chunk of all the gradients
    // (grown once, the first step: the parameters do not change after)
    static double *result, *partials;
    static long long capacity;
    long long chunks = 0;
    for (int i = 0; i < count; i++) chunks += (n[i] + CHUNK - 1) / CHUNK;
    if (!result) LN_CUDA_TRY(cudaMalloc(&result, 2 * sizeof(double)));
    if (chunks > capacity) {
        if (partials) LN_CUDA_TRY(cudaFree(partials));
        LN_CUDA_TRY(cudaMalloc(&partials, (size_t)chunks * sizeof(double)));
        capacity = chunks;
    }
    norm_group a;
    a.l.count = 0;
    long long done = 0; // chunks of the launches before
    for (int i = 0; i <= count; i++) {
        if (i == count || !list_add(a.l, n[i])) {
            if (a.l.count && a.l.first[a.l.count] > 0) {
                sum_squares_kernel<<<a.l.first[a.l.count], THREADS, 0, ln_stream()>>>(a, partials + done);
                LN_CUDA_LAUNCHED("sum of squares");
                done += a.l.first[a.l.count];
            }
            if (i == count) break;
            a.l.count = 0;
            list_add(a.l, n[i]);
        }
        a.g[a.l.count - 1] = grads[i];
    }
    *norm = result;
    *clip = (float *)(result + 1);
    norm_clip_kernel<<<1, THREADS, 0, ln_stream()>>>(partials, chunks, max_norm, *norm, *clip);
    LN_CUDA_LAUNCHED("gradient norm and clip factor");
    return LN_OK;
}

__global__ void scale_kernel(float *g, long long n, const float *s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        g[i] *= *s;
}

extern "C" int ln_scale_cuda(float *g, long long n, const float *s) {
    unsigned b = ln_blocks(n, 256);
    scale_kernel<<<b == 0 ? 1 : b < 65535u * 8 ? b : 65535u * 8, 256, 0, ln_stream()>>>(g, n, s);
    LN_CUDA_LAUNCHED("scale");
    return LN_OK;
}
