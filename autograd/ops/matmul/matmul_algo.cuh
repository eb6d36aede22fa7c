// Which cuBLASLt algorithm a GEMM shape runs, decided once per shape and kept: the heuristic query
// costs tens of microseconds of host time, and a training step makes hundreds of GEMM calls over a
// few dozen shapes. By default the heuristic's first choice (what every call got before the cache).
// LINNET_MATMUL_TUNE=1: each shape's first call times the heuristic's top candidates on a scratch
// output (3 runs each after one warm-up) and keeps the fastest; the choice can then differ
// between processes (timing noise), so results are bit-identical within a run but not across runs.
#ifndef LN_MATMUL_ALGO_CUH
#define LN_MATMUL_ALGO_CUH

#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_check.cuh"

// A GEMM's shape as cuBLASLt sees it: everything its heuristic reads.
struct gemm_key {
    int dt, op_a, op_b, batch, beta_zero;
    long long m, n, k, sa, sb, sc;
    uint32_t align_a, align_b, align_c;
};

struct gemm_choice {
    gemm_key key;
    cublasLtMatmulAlgo_t algo;
};

#define TUNE_CANDIDATES 8

static bool matmul_tuning(void) {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("LINNET_MATMUL_TUNE");
        on = v && *v && strcmp(v, "0") != 0;
    }
    return on;
}

// Milliseconds of one run of algo on c_scratch (3 timed runs after a warm-up); a negative value
// when the algorithm fails to run.
static float time_algo(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const cublasLtMatmulAlgo_t *algo,
                       const void *a, cublasLtMatrixLayout_t la, const void *b, cublasLtMatrixLayout_t lb,
                       float beta, void *c_scratch, cublasLtMatrixLayout_t lc, void *ws, size_t ws_bytes) {
    const float alpha = 1.0f;
    cudaEvent_t start = NULL, stop = NULL;
    float ms = -1.0f;
    if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) goto done;
    if (cublasLtMatmul(h, desc, &alpha, a, la, b, lb, &beta, c_scratch, lc, c_scratch, lc, algo, ws, ws_bytes,
                       ln_stream()) != CUBLAS_STATUS_SUCCESS)
        goto done;
    cudaEventRecord(start, ln_stream());
    for (int r = 0; r < 3; r++)
        if (cublasLtMatmul(h, desc, &alpha, a, la, b, lb, &beta, c_scratch, lc, c_scratch, lc, algo, ws, ws_bytes,
                           ln_stream()) != CUBLAS_STATUS_SUCCESS)
            goto done;
    cudaEventRecord(stop, ln_stream());
    if (cudaEventSynchronize(stop) == cudaSuccess && cudaEventElapsedTime(&ms, start, stop) == cudaSuccess) ms /= 3;
    else ms = -1.0f;
done:
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    cudaGetLastError(); // a candidate that failed is skipped, not an error of the op
    return ms;
}

// The algorithm for key, from the cache or (first call of the shape) the heuristic, tuned when
// asked. c_bytes: the size of the output (a scratch of it is used for timing). Returns false with
// the error set when there is none.
static bool gemm_algo(const gemm_key &key, cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                      cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, cublasLtMatmulPreference_t pref,
                      const void *a, const void *b, float beta, size_t c_bytes, void *ws, size_t ws_bytes,
                      cublasLtMatmulAlgo_t *out) {
    static gemm_choice *cache;
    static int count, capacity;
    for (int i = 0; i < count; i++)
        if (memcmp(&cache[i].key, &key, sizeof key) == 0) {
            *out = cache[i].algo;
            return true;
        }
    cublasLtMatmulHeuristicResult_t results[TUNE_CANDIDATES];
    int found = 0;
    const int want = matmul_tuning() ? TUNE_CANDIDATES : 1;
    if (cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, want, results, &found) != CUBLAS_STATUS_SUCCESS ||
        found == 0) {
        ln_fail("matmul: cuBLASLt has no algorithm for [%lld, %lld] x [%lld, %lld] (batch %d)", key.m, key.k, key.k,
                key.n, key.batch);
        return false;
    }
    int best = 0;
    void *scratch = NULL;
    if (found > 1 && cudaMallocAsync(&scratch, c_bytes, ln_stream()) == cudaSuccess) {
        cudaMemsetAsync(scratch, 0, c_bytes, ln_stream());
        float best_ms = -1.0f;
        for (int i = 0; i < found; i++) {
            float ms = time_algo(h, desc, &results[i].algo, a, la, b, lb, beta, scratch, lc, ws, ws_bytes);
            if (ms >= 0 && (best_ms < 0 || ms < best_ms)) {
                best_ms = ms;
                best = i;
            }
        }
        cudaFreeAsync(scratch, ln_stream());
    }
    cudaGetLastError();
    if (count == capacity) {
        int grown = capacity ? 2 * capacity : 64;
        gemm_choice *more = (gemm_choice *)realloc(cache, (size_t)grown * sizeof *more);
        if (!more) { // no room to remember: still a valid choice for this call
            *out = results[best].algo;
            return true;
        }
        cache = more;
        capacity = grown;
    }
    cache[count].key = key;
    cache[count].algo = results[best].algo;
    count++;
    *out = results[best].algo;
    return true;
}

#endif
