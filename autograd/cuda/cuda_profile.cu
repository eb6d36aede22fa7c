// Event pairs for the op profiler. Events are created once and reused after each flush. A failed
// event call turns profiling of that pair off rather than failing the step: timing is advisory.
#include <stdio.h>
#include <stdlib.h>

#include "autograd/cuda/cuda_check.cuh"

extern "C" {
#include "autograd/cuda/cuda_profile.h"
}

typedef struct {
    const char *name;
    bool backward;
    cudaEvent_t start, stop;
} pair;

static pair *pairs;
static size_t n_pairs, cap_pairs, n_created;

extern "C" void ln_cuda_profile_mark(const char *name, bool backward, bool end) {
    if (!end) {
        if (n_pairs == cap_pairs) {
            size_t cap = cap_pairs ? cap_pairs * 2 : 1024;
            pair *p = (pair *)realloc(pairs, cap * sizeof *p);
            if (!p) return;
            pairs = p;
            cap_pairs = cap;
        }
        pair *p = &pairs[n_pairs];
        if (n_pairs == n_created) {
            if (cudaEventCreate(&p->start) != cudaSuccess || cudaEventCreate(&p->stop) != cudaSuccess) {
                fprintf(stderr, "profile: cudaEventCreate failed; op timings incomplete\n");
                return;
            }
            n_created++;
        }
        p->name = name;
        p->backward = backward;
        if (cudaEventRecord(p->start, ln_stream()) == cudaSuccess) n_pairs++;
        return;
    }
    if (n_pairs && pairs[n_pairs - 1].name == name) cudaEventRecord(pairs[n_pairs - 1].stop, ln_stream());
}

extern "C" void ln_cuda_profile_flush(void) {
    if (!n_pairs) return;
    if (cudaStreamSynchronize(ln_stream()) != cudaSuccess) {
        fprintf(stderr, "profile: stream sync failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        n_pairs = 0;
        return;
    }
    for (size_t i = 0; i < n_pairs; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, pairs[i].start, pairs[i].stop) == cudaSuccess)
            ln_profile_add(pairs[i].name, pairs[i].backward, ms);
    }
    n_pairs = 0;
}
