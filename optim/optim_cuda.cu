// The optimizer's GPU kernels: the fused AdamW update and the pieces of global-norm clipping.
#include "autograd/cuda/cuda_check.cuh"

extern "C" {
#include "optim/optim_cuda.h"
}

// One pass per parameter: moments, bias correction, decoupled decay and the update, in fp32. With
// clip, every gradient is first scaled by *clip (ln_norm_clip_cuda's factor); a NaN factor (the
// norm was not finite) leaves the parameter as it was.
__global__ void adamw_kernel(float *w, const float *g, float *m, float *v, long long n, float lr, float beta1,
                             float beta2, float eps, float decay, float bias1, float bias2, const float *clip) {
    const float c = clip ? *clip : 1.0f;
    if (c != c) return;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float gi = c * g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float update = (mi / bias1) / (sqrtf(vi / bias2) + eps);
        w[i] = w[i] - decay * w[i] - lr * update;
    }
}

static unsigned grid_for(long long n) {
    unsigned b = ln_blocks(n, 256);
    return b == 0 ? 1 : b < 65535u * 8 ? b : 65535u * 8;
}

extern "C" int ln_adamw_update_cuda(float *w, const float *g, float *m, float *v, long long n, double lr, double beta1,
                                    double beta2, double eps, double decay, double bias1, double bias2,
                                    const float *clip) {
    adamw_kernel<<<grid_for(n), 256, 0, ln_stream()>>>(w, g, m, v, n, (float)lr, (float)beta1, (float)beta2, (float)eps,
                                                        (float)decay, (float)bias1, (float)bias2, clip);
    LN_CUDA_LAUNCHED("adamw");
    return LN_OK;
}

// Sum of squares of one gradient into partial[blockIdx.x]; a fixed grid and a fixed order make
// the norm identical run to run.
#define NORM_BLOCKS 256
__global__ void sum_squares_kernel(const float *g, long long n, double *partial) {
    __shared__ double shared[256];
    double s = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        s += (double)g[i] * g[i];
    shared[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] += shared[0];
}

extern "C" int ln_sum_squares_cuda(const float *g, long long n, double *partials) {
    sum_squares_kernel<<<NORM_BLOCKS, 256, 0, ln_stream()>>>(g, n, partials);
    LN_CUDA_LAUNCHED("sum of squares");
    return LN_OK;
}

extern "C" int ln_norm_partials(double **partials) {
    static double *buffer;
    if (!buffer) LN_CUDA_TRY(cudaMalloc(&buffer, NORM_BLOCKS * sizeof(double)));
    LN_CUDA_TRY(cudaMemsetAsync(buffer, 0, NORM_BLOCKS * sizeof(double), ln_stream()));
    *partials = buffer;
    return LN_OK;
}

extern "C" int ln_norm_finish(const double *partials, double *sum) {
    double host[NORM_BLOCKS];
    LN_CUDA_TRY(cudaMemcpyAsync(host, partials, sizeof host, cudaMemcpyDeviceToHost, ln_stream()));
    if (ln_cuda_sync("gradient norm")) return LN_ERR;
    double s = 0;
    for (int i = 0; i < NORM_BLOCKS; i++) s += host[i];
    *sum = s;
    return LN_OK;
}

// The partials summed in the host's order (ln_norm_finish), on the device: norm = sqrt(sum) and the
// clip factor max_norm / (norm + 1e-12) when max_norm > 0 and the norm exceeds it, else 1; NaN when
// the norm is not finite. One thread: 256 additions.
__global__ void norm_clip_kernel(const double *partials, double max_norm, double *norm, float *clip) {
    double s = 0;
    for (int i = 0; i < NORM_BLOCKS; i++) s += partials[i];
    const double r = sqrt(s);
    *norm = r;
    *clip = !isfinite(r) ? NAN : max_norm > 0 && r > max_norm ? (float)(max_norm / (r + 1e-12)) : 1.0f;
}

extern "C" int ln_norm_clip_cuda(const double *partials, double max_norm, double **norm, float **clip) {
    static double *buffer; // the norm, then the factor
    if (!buffer) LN_CUDA_TRY(cudaMalloc(&buffer, 2 * sizeof(double)));
    *norm = buffer;
    *clip = (float *)(buffer + 1);
    norm_clip_kernel<<<1, 1, 0, ln_stream()>>>(partials, max_norm, *norm, *clip);
    LN_CUDA_LAUNCHED("gradient norm and clip factor");
    return LN_OK;
}

__global__ void scale_kernel(float *g, long long n, float s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        g[i] *= s;
}

extern "C" int ln_scale_cuda(float *g, long long n, double s) {
    scale_kernel<<<grid_for(n), 256, 0, ln_stream()>>>(g, n, (float)s);
    LN_CUDA_LAUNCHED("scale");
    return LN_OK;
}
