/* Times linnet's attention kernel, forward + backward, bf16, causal, on the GPU. One line per T:
 *   T <T> B <B> ms <ms> tflops <TFLOP/s>
 * FLOPs counted as FlashAttention does: 4·B·H·T²·D forward (two GEMMs) halved for causal, and
 * 2.5× that for forward + backward. Usage: bench_attention [H] [D] [tokens] [T...] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "autograd/cuda/cuda_context.h"
#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static ln_tensor *random_bf16(int64_t B, int64_t T, int64_t H, int64_t D, uint64_t seed) {
    int64_t shape[4] = {B, T, H, D};
    ln_tensor *host = ln_tensor_new(LN_BF16, LN_CPU, 4, shape), *dev = ln_tensor_new(LN_BF16, LN_CUDA, 4, shape);
    if (!host || !dev) return NULL;
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < host->numel; i++) ln_set(host, i, ln_rng_normal(&rng));
    if (ln_tensor_copy(dev, host)) return NULL;
    ln_tensor_free(host);
    dev->requires_grad = true;
    return dev;
}

static int step(ln_tensor *q, ln_tensor *k, ln_tensor *v, ln_tensor *seed, double scale) {
    ln_tensor *o = ln_attention(q, k, v, true, scale);
    int status = o ? ln_backward_from(o, seed) : LN_ERR;
    ln_tape_clear();
    return status;
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
    if (ln_cuda_init(0)) {
        fprintf(stderr, "bench_attention: %s\n", ln_error_message());
        return 1;
    }
    for (int i = 0; i < n; i++) {
        long T = lengths[i], B = tokens / T > 0 ? tokens / T : 1;
        ln_tensor *q = random_bf16(B, T, H, D, 1), *k = random_bf16(B, T, H, D, 2), *v = random_bf16(B, T, H, D, 3);
        ln_tensor *seed = random_bf16(B, T, H, D, 4);
        if (!q || !k || !v || !seed || step(q, k, v, seed, 0.088) || ln_cuda_sync("warm-up")) {
            fprintf(stderr, "bench_attention: T=%ld: %s\n", T, ln_error_message());
            return 1;
        }
        int reps = 5;
        double t0 = now();
        for (int r = 0; r < reps; r++)
            if (step(q, k, v, seed, 0.088)) return 1;
        if (ln_cuda_sync("timing")) return 1;
        double ms = (now() - t0) / reps * 1e3;
        double flops = 2.5 * 4.0 * B * H * (double)T * T * D / 2;
        printf("T %ld B %ld ms %.3f tflops %.1f\n", T, B, ms, flops / ms / 1e9);
        fflush(stdout);
        ln_tensor_free(q);
        ln_tensor_free(k);
        ln_tensor_free(v);
        ln_tensor_free(seed);
    }
    return 0;
}
