// One device, one stream, one cuBLASLt handle, and CUDA's memory pool as the caching allocator.
#include <stdint.h>
#include <stdio.h>

#include "autograd/cuda/cuda_check.cuh"

static struct {
    bool ready;
    int device;
    cudaStream_t stream;
    cublasLtHandle_t blaslt;
    void *workspace;
    size_t workspace_bytes;
    size_t in_use, peak;
} ctx;

extern "C" int ln_cuda_init(int index) {
    if (ctx.ready) return LN_OK;
    int count = 0;
    LN_CUDA_TRY(cudaGetDeviceCount(&count));
    if (index < 0 || index >= count) return ln_fail("CUDA device %d requested, %d visible", index, count);
    LN_CUDA_TRY(cudaSetDevice(index));
    LN_CUDA_TRY(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
    // keep freed blocks in the pool for reuse: the step loop then never reaches cudaMalloc
    cudaMemPool_t pool;
    LN_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, index));
    uint64_t threshold = UINT64_MAX;
    LN_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    LN_CUBLAS_TRY(cublasLtCreate(&ctx.blaslt));
    ctx.workspace_bytes = 64u << 20; // cuBLASLt's recommended workspace on Hopper is 32 MiB+
    LN_CUDA_TRY(cudaMalloc(&ctx.workspace, ctx.workspace_bytes));
    ctx.device = index;
    ctx.ready = true;
    return LN_OK;
}

extern "C" void *ln_cuda_stream(void) { return ctx.stream; }
extern "C" void *ln_cuda_blaslt(void) { return ctx.blaslt; }

extern "C" void *ln_cuda_workspace(size_t *bytes) {
    *bytes = ctx.workspace_bytes;
    return ctx.workspace;
}

extern "C" int ln_cuda_sync(const char *what) {
    cudaError_t status = cudaStreamSynchronize(ctx.stream);
    if (status != cudaSuccess) return ln_fail("%s: CUDA error %s", what, cudaGetErrorString(status));
    return LN_OK;
}

extern "C" void ln_cuda_memory_stats(size_t *in_use, size_t *peak) {
    cudaMemPool_t pool;
    uint64_t used = 0, high = 0;
    if (ctx.ready && cudaDeviceGetDefaultMemPool(&pool, ctx.device) == cudaSuccess) {
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used);
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high);
    }
    *in_use = used;
    *peak = high;
}
