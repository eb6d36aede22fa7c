/* Times linnet's attention kernel, bf16, causal, on the GPU: forward + backward (one training
 * step of the op: forward, backward from a fixed output gradient, tape clear) and forward alone.
 * Each repeat is timed with CUDA events on linnet's stream; the median of the repeats after two
 * warm-up steps is printed, one line per T:
 *   T <T> B <B> ms <fwd+bwd ms> tflops <TFLOP/s> fwd_ms <ms> fwd_tflops <TFLOP/s> impl <own|cudnn>
 * FLOPs counted as FlashAttention does: forward 4·B·H·T²·D (two GEMMs of 2·T²·D each per head),
 * halved for causal; backward 2.5× the forward (five GEMMs, the recomputed QK^T included);
 * forward + backward = 3.5 × 4·B·H·T²·D / 2.
 * Usage: bench_attention [H] [D] [tokens] [T...]; B = tokens / T (at least 1). BENCH_REPS sets
 * the repeats (default 10, 5 for T > 16384). The kernel timed is linnet's own (LN_ATTN_OWN, the
 * one docs/attention-kernel.md is about) unless BENCH_IMPL=cudnn, which times the op through
 * cuDNN's fused SDPA (LN_ATTN_CUDNN: what train.attention_impl auto picks where cuDNN runs). */
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_context.h"
#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/rng.h"

/* normal(0, 1) values: a table of 2^20 + 1 draws, read from a seed-dependent start with an odd
 * stride (a fresh draw per element makes set-up, not timing, the long part of a run) */
static ln_tensor *random_bf16(int64_t B, int64_t T, int64_t H, int64_t D, uint64_t seed) {
    enum { N = (1 << 20) + 1 };
    static uint16_t table[N];
    static bool filled = false;
    if (!filled) {
        ln_rng rng;
        ln_rng_seed(&rng, 12345);
        for (int i = 0; i < N; i++) table[i] = ln_f32_to_bf16((float)ln_rng_normal(&rng));
        filled = true;
    }
    int64_t shape[4] = {B, T, H, D};
    ln_tensor *host = ln_tensor_new(LN_BF16, LN_CPU, 4, shape), *dev = ln_tensor_new(LN_BF16, LN_CUDA, 4, shape);
    if (!host || !dev) return NULL;
    uint16_t *h = host->data;
    for (int64_t i = 0, j = (int64_t)(seed * 7919 % N); i < host->numel; i++, j = (j + 613) % N) h[i] = table[j];
    if (ln_tensor_copy(dev, host)) return NULL;
    ln_tensor_free(host);
    dev->requires_grad = true;
    return dev;
}

static int step(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *seed, double scale, bool backward) {
    bool was = ln_set_grad_enabled(backward);
    ln_tensor *o = ln_attention(q, k, v, true, scale);
    int status = o ? LN_OK : LN_ERR;
    if (o && backward) status = ln_backward_from(o, seed);
    ln_tape_clear();
    ln_set_grad_enabled(was);
    return status;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* median milliseconds of `reps` steps, after 2 warm-up steps; negative on failure */
static double time_steps(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *seed, double scale, bool backward,
                         int reps) {
    cudaStream_t stream = (cudaStream_t)ln_cuda_stream();
    cudaEvent_t start, stop;
    if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) return -1;
    float ms[64];
    double result = -1;
    for (int w = 0; w < 2; w++)
        if (step(q, k, v, seed, scale, backward)) goto done;
    if (ln_cuda_sync("warm-up")) goto done;
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(start, stream);
        if (step(q, k, v, seed, scale, backward)) goto done;
        cudaEventRecord(stop, stream);
        if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms[r], start, stop) != cudaSuccess) {
            ln_fail("timing: %s", cudaGetErrorString(cudaGetLastError()));
            goto done;
        }
    }
    if (ln_cuda_sync("timing")) goto done;
    qsort(ms, (size_t)reps, sizeof *ms, cmp_float);
    result = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
done:
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return result;
}

int main(int argc, char **argv) {
    int H = argc > 1 ? atoi(argv[1]) : 16, D = argc > 2 ? atoi(argv[2]) : 128;
    long tokens = argc > 3 ? atol(argv[3]) : 32768;
    long lengths[16] = {4096, 16384, 65536};
    int n = 3;
    if (argc > 4) {
        n = 0;
        for (int i = 4; i < argc && n < 16; i++) lengths[n++] = atol(argv[i]);
    }
    const char *env_reps = getenv("BENCH_REPS"), *env_impl = getenv("BENCH_IMPL");
    const bool cudnn = env_impl && !strcmp(env_impl, "cudnn");
    ln_set_attention_impl(cudnn ? LN_ATTN_CUDNN : LN_ATTN_OWN);
    if (ln_cuda_init(0)) {
        fprintf(stderr, "bench_attention: %s\n", ln_error_message());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        long T = lengths[i], B = tokens / T > 0 ? tokens / T : 1;
        int reps = env_reps ? atoi(env_reps) : (T > 16384 ? 5 : 10);
        if (reps < 1) reps = 1;
        if (reps > 64) reps = 64;
        ln_tensor *q = random_bf16(B, T, H, D, 1), *k = random_bf16(B, T, H, D, 2), *v = random_bf16(B, T, H, D, 3);
        ln_tensor *seed = random_bf16(B, T, H, D, 4);
        double scale = 1.0 / __builtin_sqrt((double)D);
        double ms = q && k && v && seed ? time_steps(q, k, v, seed, scale, true, reps) : -1;
        double fwd_ms = ms > 0 ? time_steps(q, k, v, seed, scale, false, reps) : -1;
        if (ms <= 0 || fwd_ms <= 0) {
            fprintf(stderr, "bench_attention: T=%ld: %s\n", T, ln_error_message());
            return 1;
        }
        double fwd_flops = 4.0 * B * H * (double)T * T * D / 2;
        printf("T %ld B %ld ms %.3f tflops %.1f fwd_ms %.3f fwd_tflops %.1f impl %s\n", T, B, ms,
               3.5 * fwd_flops / ms / 1e9, fwd_ms, fwd_flops / fwd_ms / 1e9, cudnn ? "cudnn" : "own");
        fflush(stdout);
        ln_tensor_free(q);
        ln_tensor_free(k);
        ln_tensor_free(v);
        ln_tensor_free(seed);
    }
    return 0;
}
