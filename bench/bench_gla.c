/* Times linnet's gla (per-key gated linear attention), bf16, H heads of key width K and value
 * width V (K = V = D, or "KxV"), on the GPU:
 * forward alone and forward + backward, median of repeats after warm-up, CUDA events on the
 * stream every kernel runs on. One line per T:
 *   T <T> B <B> fwd_ms <ms> ms <fwd+bwd ms> tok_per_s <tokens/s> ns_per_tok <ns> roof_pct <%>
 *
 * Counted per token and head (chunk C = 64), as the chunkwise kernels compute it:
 *   forward  scan 2KV, scores CK (causal half of 2C K), o inter 2KV, o intra CV     (81,920 FLOP
 *   backward scans 2 x 2KV, scores CK, dv 2KV + CV, dA CV, dk/dq inter 2 x 2KV,    at K = V = 128)
 *            intra rows / cols 2 CK                                                 (204,800)
 * and the fewest bytes: q, k, g, v read and o written (forward, 2 (3K + 2V) bytes), q, k, g, v, do
 * read and dq, dk, dg, dv written (backward, 2 (6K + 3V)): 28 D bytes per token and head at K = V = D. States
 * (the chunk's [K, V] h and dh) are not in that floor. Roof: 989 TFLOP/s bf16, 3.35 TB/s (H100
 * SXM datasheet); roof_pct = max(flop time, byte time) / measured.
 * Usage: bench_gla [H] [D | KxV] [tokens] [T...] */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/cuda/cuda_context.h"
#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/ops_linear.h"
#include "autograd/rng.h"

static ln_tensor *random_bf16(int ndim, const int64_t *shape, uint64_t seed, int gate) {
    ln_tensor *host = ln_tensor_new(LN_BF16, LN_CPU, ndim, shape), *dev = ln_tensor_new(LN_BF16, LN_CUDA, ndim, shape);
    if (!host || !dev) return NULL;
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < host->numel; i++) {
        double x = ln_rng_normal(&rng);
        /* gates as GLA models make them: logsigmoid(x) / 16 */
        ln_set(host, i, gate ? -log1p(exp(-x)) / 16.0 : x);
    }
    if (ln_tensor_copy(dev, host)) return NULL;
    ln_tensor_free(host);
    dev->requires_grad = true;
    return dev;
}

static int step(ln_tensor *const *in, ln_tensor *seed, int backward) {
    ln_tensor *o = ln_gla(in[0], in[1], in[2], in[3], NULL, NULL);
    int status = o ? (backward ? ln_backward_from(o, seed) : LN_OK) : LN_ERR;
    ln_tape_clear();
    return status;
}

static int cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double median_ms(ln_tensor *const *in, ln_tensor *seed, int backward, int reps) {
    cudaStream_t st = (cudaStream_t)ln_cuda_stream();
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[64];
    for (int r = 0; r < 3; r++)
        if (step(in, seed, backward)) return -1;
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(e0, st);
        if (step(in, seed, backward)) return -1;
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[r], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    qsort(t, (size_t)reps, sizeof *t, cmp);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    int H = argc > 1 ? atoi(argv[1]) : 16, K = 128, V = 128;
    if (argc > 2 && sscanf(argv[2], "%dx%d", &K, &V) == 1) V = K;
    long tokens = argc > 3 ? atol(argv[3]) : 32768;
    long lengths[16] = {4096, 16384, 65536};
    int n = 3;
    if (argc > 4) {
        n = 0;
        for (int i = 4; i < argc && n < 16; i++) lengths[n++] = atol(argv[i]);
    }
    if (ln_cuda_init(0)) {
        fprintf(stderr, "bench_gla: %s\n", ln_error_message());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        long T = lengths[i], B = tokens / T > 0 ? tokens / T : 1;
        int64_t kshape[4] = {B, T, H, K}, vshape[4] = {B, T, H, V};
        ln_tensor *in[4] = {random_bf16(4, kshape, 1, 0), random_bf16(4, kshape, 2, 0), random_bf16(4, vshape, 3, 0),
                            random_bf16(4, kshape, 4, 1)};
        ln_tensor *seed = random_bf16(4, vshape, 5, 0);
        if (!in[0] || !in[1] || !in[2] || !in[3] || !seed) {
            fprintf(stderr, "bench_gla: T=%ld: %s\n", T, ln_error_message());
            return 1;
        }
        double fwd = median_ms(in, seed, 0, 11), all = median_ms(in, seed, 1, 11);
        if (fwd < 0 || all < 0 || ln_cuda_sync("timing")) {
            fprintf(stderr, "bench_gla: T=%ld: %s\n", T, ln_error_message());
            return 1;
        }
        const double C = 64, KV = (double)K * V;
        double toks = (double)B * T, flops = toks * H * (4 * KV + C * (K + V) + 10 * KV + 3 * C * K + 2 * C * V),
               bytes = toks * H * 2.0 * (9 * K + 5 * V);
        double floor_ms = fmax(flops / 989e12, bytes / 3.35e12) * 1e3;
        printf("T %ld B %ld fwd_ms %.3f ms %.3f tok_per_s %.3e ns_per_tok %.2f roof_pct %.1f\n", T, B, fwd, all,
               toks / (all * 1e-3), all * 1e6 / toks, 100.0 * floor_ms / all);
        fflush(stdout);
        for (int j = 0; j < 4; j++) ln_tensor_free(in[j]);
        ln_tensor_free(seed);
    }
    return 0;
}
