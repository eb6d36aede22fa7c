/* silu(x) = x sigmoid(x) and its derivative s + x s (1 - s), s = sigmoid(x): shared by the ops that
 * use them (silu, swiglu, the gated rmsnorm), double on the CPU reference paths, float in kernels. */
#ifndef LN_SILU_H
#define LN_SILU_H

#include <math.h>

static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double silu_f64(double x) { return x * sigmoid_f64(x); }
static inline double dsilu_f64(double x) {
    double s = sigmoid_f64(x);
    return s + x * s * (1.0 - s);
}

#ifdef __CUDACC__
__device__ __forceinline__ float ln_sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }
__device__ __forceinline__ float ln_siluf(float x) { return x * ln_sigmoidf(x); }
__device__ __forceinline__ float ln_dsiluf(float x) {
    float s = ln_sigmoidf(x);
    return s + x * s * (1.0f - s);
}
#endif

#endif
