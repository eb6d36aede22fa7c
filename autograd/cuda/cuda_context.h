/* The CUDA runtime state linnet uses: one device, one stream every kernel runs on, a cuBLASLt
 * handle with its workspace, and CUDA's stream-ordered memory pool as the caching allocator
 * (allocations in the step loop are served from the pool, not from cudaMalloc). Usable from C
 * (pointers are opaque there) and from .cu files. */
#ifndef LN_CUDA_CONTEXT_H
#define LN_CUDA_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Selects device `index` and makes the stream, handle and pool; idempotent. */
int ln_cuda_init(int index);
void *ln_cuda_stream(void);        /* cudaStream_t */
void *ln_cuda_blaslt(void);        /* cublasLtHandle_t */
void *ln_cuda_workspace(size_t *bytes);
/* Waits for the stream; reports any asynchronous kernel error, naming `what`. */
int ln_cuda_sync(const char *what);
/* Bytes the pool holds now and at most since start. */
void ln_cuda_memory_stats(size_t *in_use, size_t *peak);

struct ln_tensor;
/* dst += src elementwise (same element count; f32 or bf16 each), on the stream. */
int ln_cuda_add_into(struct ln_tensor *dst, const struct ln_tensor *src);
/* Every element of t (f32 or bf16) set to value, on the stream. */
int ln_cuda_fill(struct ln_tensor *t, double value);

#ifdef __cplusplus
}
#endif

#endif
