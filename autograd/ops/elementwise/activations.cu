// Pointwise activations on the GPU: f32 or bf16 storage, fp32 arithmetic. Same math as
// activations.c (the CPU reference they are tested against).
#include "autograd/cuda/cuda_check.cuh"
#include "autograd/ops/elementwise/silu.h"

template <typename T>
__global__ void silu_forward_kernel(const T *x, T *y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(y, i, ln_siluf(ln_load(x, i)));
}

// dx += dy * (s + x s (1 - s))
template <typename T>
__global__ void silu_backward_kernel(const T *x, const T *dy, T *dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        ln_store(dx, i, ln_load(dx, i) + ln_load(dy, i) * ln_dsiluf(ln_load(x, i)));
}

extern "C" int ln_silu_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    LN_DISPATCH_FLOAT(x->dtype, "silu", {
        silu_forward_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (T *)y->data, x->numel);
    });
    LN_CUDA_LAUNCHED("silu forward");
    return LN_OK;
}

extern "C" int ln_silu_backward_cuda(ln_node *n) {
    ln_tensor *x = ln_node_saved(n, 0), *y = n->out[0];
    if (!n->in[0]->requires_grad) return LN_OK;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, "silu", {
        silu_backward_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (const T *)y->grad->data,
                                                                         (T *)dx->data, x->numel);
    });
    LN_CUDA_LAUNCHED("silu backward");
    return LN_OK;
}

// ---- GELU, tanh approximation: y = 0.5 x (1 + tanh(u)), u = c (x + a x^3) ----

#define GELU_C 0.7978845608028654f // sqrt(2 / pi)
#define GELU_A 0.044715f

template <typename T>
__global__ void gelu_forward_kernel(const T *x, T *y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = ln_load(x, i);
        ln_store(y, i, 0.5f * v * (1.0f + tanhf(GELU_C * (v + GELU_A * v * v * v))));
    }
}

// dx += dy * (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2)), t = tanh(u)
template <typename T>
__global__ void gelu_backward_kernel(const T *x, const T *dy, T *dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = ln_load(x, i), t = tanhf(GELU_C * (v + GELU_A * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * v * v);
        ln_store(dx, i, ln_load(dx, i) + ln_load(dy, i) * d);
    }
}

extern "C" int ln_gelu_forward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    LN_DISPATCH_FLOAT(x->dtype, "gelu", {
        gelu_forward_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (T *)y->data, x->numel);
    });
    LN_CUDA_LAUNCHED("gelu forward");
    return LN_OK;
}

extern "C" int ln_gelu_backward_cuda(ln_node *n) {
    ln_tensor *x = ln_node_saved(n, 0), *y = n->out[0];
    if (!n->in[0]->requires_grad || !y->grad) return LN_OK;
    ln_tensor *dx = ln_grad_of(n->in[0]);
    if (!dx) return LN_ERR;
    LN_DISPATCH_FLOAT(x->dtype, "gelu", {
        gelu_backward_kernel<T><<<ln_grid(x->numel, 256), 256, 0, ln_stream()>>>((const T *)x->data, (const T *)y->grad->data,
                                                                         (T *)dx->data, x->numel);
    });
    LN_CUDA_LAUNCHED("gelu backward");
    return LN_OK;
}

// ---- SwiGLU: y = silu(g) u; dg = dy u (s + g s (1 - s)), du = dy g s ----

template <typename T>
__global__ void swiglu_forward_vec_kernel(const T *g, const T *u, T *y, long long n) {
    for (long long i = 8 * (blockIdx.x * (long long)blockDim.x + threadIdx.x); i < n;
         i += 8LL * gridDim.x * blockDim.x) {
        float gv[8], uv[8];
        ln_load8(g + i, gv);
        ln_load8(u + i, uv);
        for (int k = 0; k < 8; k++) gv[k] = gv[k] * ln_sigmoidf(gv[k]) * uv[k];
        ln_store8(y + i, gv);
    }
}

template <typename T>
__global__ void swiglu_forward_kernel(const T *g, const T *u, T *y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = ln_load(g, i);
        ln_store(y, i, v * ln_sigmoidf(v) * ln_load(u, i));
    }
}

// dg and du may be NULL (that input needs no gradient)
template <typename T>
__global__ void swiglu_backward_kernel(const T *g, const T *u, const T *dy, T *dg, T *du, long long n, bool acc_g,
                                       bool acc_u) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = ln_load(g, i), s = ln_sigmoidf(v), d = ln_load(dy, i);
        if (dg) ln_store(dg, i, (acc_g ? ln_load(dg, i) : 0.0f) + d * ln_load(u, i) * (s + v * s * (1.0f - s)));
        if (du) ln_store(du, i, (acc_u ? ln_load(du, i) : 0.0f) + d * v * s);
    }
}

// The same, 8 elements a thread in 16-byte accesses (n % 8 == 0, aligned pointers).
template <typename T>
__global__ void swiglu_backward_vec_kernel(const T *g, const T *u, const T *dy, T *dg, T *du, long long n, bool acc_g,
                                           bool acc_u) {
    for (long long i = 8 * (blockIdx.x * (long long)blockDim.x + threadIdx.x); i < n;
         i += 8LL * gridDim.x * blockDim.x) {
        float gv[8], uv[8], dv[8], og[8], ou[8];
        ln_load8(g + i, gv);
        ln_load8(u + i, uv);
        ln_load8(dy + i, dv);
        if (dg && acc_g) ln_load8(dg + i, og);
        if (du && acc_u) ln_load8(du + i, ou);
        for (int k = 0; k < 8; k++) {
            float v = gv[k], s = ln_sigmoidf(v), d = dv[k];
            og[k] = (acc_g ? og[k] : 0.0f) + d * uv[k] * (s + v * s * (1.0f - s));
            ou[k] = (acc_u ? ou[k] : 0.0f) + d * v * s;
        }
        if (dg) ln_store8(dg + i, og);
        if (du) ln_store8(du + i, ou);
    }
}

static int swiglu_same_dtype(const ln_tensor *g, const ln_tensor *u) {
    if (g->dtype == u->dtype) return LN_OK;
    return ln_fail("swiglu: the CUDA kernel needs gate and up in one dtype, got %s and %s", ln_dtype_name(g->dtype),
                   ln_dtype_name(u->dtype));
}

extern "C" int ln_swiglu_forward_cuda(ln_node *n) {
    ln_tensor *g = n->in[0], *u = n->in[1], *y = n->out[0];
    if (swiglu_same_dtype(g, u)) return LN_ERR;
    bool vec = ln_vec8(g->numel, g->data, u->data, y->data);
    LN_DISPATCH_FLOAT(g->dtype, "swiglu", {
        if (vec)
            swiglu_forward_vec_kernel<T><<<ln_grid(g->numel / 8, 256), 256, 0, ln_stream()>>>(
                (const T *)g->data, (const T *)u->data, (T *)y->data, g->numel);
        else
            swiglu_forward_kernel<T><<<ln_grid(g->numel, 256), 256, 0, ln_stream()>>>(
                (const T *)g->data, (const T *)u->data, (T *)y->data, g->numel);
    });
    LN_CUDA_LAUNCHED("swiglu forward");
    return LN_OK;
}

extern "C" int ln_swiglu_backward_cuda(ln_node *n) {
    ln_tensor *g = ln_node_saved(n, 0), *u = ln_node_saved(n, 1), *y = n->out[0];
    if (!y->grad) return LN_OK;
    if (swiglu_same_dtype(g, u)) return LN_ERR;
    bool acc_g = true, acc_u = true; // fresh gradients are stored, not added to (no zero-fill)
    ln_tensor *dg = n->in[0]->requires_grad ? ln_grad_for_write(n->in[0], &acc_g) : NULL;
    ln_tensor *du = n->in[1]->requires_grad ? ln_grad_for_write(n->in[1], &acc_u) : NULL;
    if ((n->in[0]->requires_grad && !dg) || (n->in[1]->requires_grad && !du)) return LN_ERR;
    if (!dg && !du) return LN_OK;
    // swiglu(x, x): one buffer for both; only the scalar kernel orders its two updates
    bool vec = n->in[0] != n->in[1] && ln_vec8(g->numel, g->data, u->data, y->grad->data, dg ? dg->data : NULL,
                                               du ? du->data : NULL);
    LN_DISPATCH_FLOAT(g->dtype, "swiglu", {
        if (vec)
            swiglu_backward_vec_kernel<T><<<ln_grid(g->numel / 8, 256), 256, 0, ln_stream()>>>(
                (const T *)g->data, (const T *)u->data, (const T *)y->grad->data, dg ? (T *)dg->data : NULL,
                du ? (T *)du->data : NULL, g->numel, acc_g, acc_u);
        else
            swiglu_backward_kernel<T><<<ln_grid(g->numel, 256), 256, 0, ln_stream()>>>(
                (const T *)g->data, (const T *)u->data, (const T *)y->grad->data, dg ? (T *)dg->data : NULL,
                du ? (T *)du->data : NULL, g->numel, acc_g, acc_u);
    });
    LN_CUDA_LAUNCHED("swiglu backward");
    return LN_OK;
}
