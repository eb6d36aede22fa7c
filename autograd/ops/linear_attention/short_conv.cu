// short_conv on CUDA (short_conv.c is the reference): the causal depthwise convolution over tokens.
// Forward: one thread per output element (channel-fastest, so a warp reads 32 adjacent channels of
// a token). Backward: dx per element by the mirrored sum (no atomics); dweight and dbias reduced
// per channel by one block each with a fixed tree (run-to-run identical).
#include "autograd/cuda/cuda_check.cuh"

#define CONV_THREADS 256

// document start of token t: the largest cu[i] <= t (binary search), or t's batch row start
__device__ __forceinline__ long long conv_doc_start(long long t, long long T, const int *cu, int n_docs) {
    if (!cu) return t / T * T;
    int lo = 0, hi = n_docs; // cu[lo] <= t < cu[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (cu[mid] <= t) lo = mid; else hi = mid;
    }
    return cu[lo];
}
__device__ __forceinline__ long long conv_doc_end(long long t, long long T, const int *cu, int n_docs) {
    if (!cu) return t / T * T + T;
    int lo = 0, hi = n_docs;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (cu[mid] <= t) lo = mid; else hi = mid;
    }
    return cu[lo + 1];
}

template <typename T, typename TW>
__global__ void conv_fwd(const T *x, const TW *w, const TW *bias, T *y, long long tokens, long long T_, int C, int W,
                         const int *cu, int n_docs) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= tokens * C) return;
    long long t = i / C;
    int c = (int)(i % C);
    long long s0 = conv_doc_start(t, T_, cu, n_docs);
    float s = bias ? ln_load(bias, c) : 0.f;
    for (int j = 0; j < W && t - j >= s0; j++) s += ln_load(w, (long long)c * W + W - 1 - j) * ln_load(x, (t - j) * C + c);
    ln_store(y, i, s);
}

// dx[t] += sum_j w[c, W-1-j] dy[t + j] (same document)
template <typename T, typename TW>
__global__ void conv_bwd_dx(const T *dy, const TW *w, T *dx, long long tokens, long long T_, int C, int W,
                            const int *cu, int n_docs) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= tokens * C) return;
    long long t = i / C;
    int c = (int)(i % C);
    long long e = conv_doc_end(t, T_, cu, n_docs);
    float s = 0.f;
    for (int j = 0; j < W && t + j < e; j++) s += ln_load(w, (long long)c * W + W - 1 - j) * ln_load(dy, (t + j) * C + c);
    ln_store(dx, i, ln_load(dx, i) + s);
}

// one block per channel: dw[c, W-1-j] += sum_t x[t-j] dy[t], db[c] += sum_t dy[t]
template <typename T, typename TW>
__global__ void conv_bwd_dw(const T *x, const T *dy, TW *dw, TW *db, long long tokens, long long T_, int C, int W,
                            const int *cu, int n_docs) {
    __shared__ float red[5][CONV_THREADS];
    const int c = blockIdx.x;
    float acc[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
    for (long long t = threadIdx.x; t < tokens; t += blockDim.x) {
        float g = ln_load(dy, t * C + c);
        long long s0 = conv_doc_start(t, T_, cu, n_docs);
        acc[4] += g;
        for (int j = 0; j < W && t - j >= s0; j++) acc[j] += ln_load(x, (t - j) * C + c) * g;
    }
    for (int j = 0; j < 5; j++) red[j][threadIdx.x] = acc[j];
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o)
            for (int j = 0; j < 5; j++) red[j][threadIdx.x] += red[j][threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (dw)
            for (int j = 0; j < W; j++) {
                long long k = (long long)c * W + W - 1 - j;
                ln_store(dw, k, ln_load(dw, k) + red[j][0]);
            }
        if (db) ln_store(db, c, ln_load(db, c) + red[4][0]);
    }
}

#define CONV_DISPATCH2(dx_, dw_, ...)                                                              \
    do {                                                                                           \
        if ((dx_) == LN_F32 && (dw_) == LN_F32) { typedef float T; typedef float TW; __VA_ARGS__ }  \
        else if ((dx_) == LN_BF16 && (dw_) == LN_BF16) { typedef __nv_bfloat16 T; typedef __nv_bfloat16 TW; __VA_ARGS__ } \
        else if ((dx_) == LN_BF16 && (dw_) == LN_F32) { typedef __nv_bfloat16 T; typedef float TW; __VA_ARGS__ } \
        else if ((dx_) == LN_F32 && (dw_) == LN_BF16) { typedef float T; typedef __nv_bfloat16 TW; __VA_ARGS__ } \
        else return ln_fail("short_conv on CUDA takes f32 or bf16 (x %s, weight %s)", ln_dtype_name(dx_), ln_dtype_name(dw_)); \
    } while (0)

extern "C" int ln_short_conv_forward_cuda(ln_node *n) {
    const ln_tensor *x = n->in[0], *w = n->in[1];
    const ln_tensor *b = n->iarg[0] >= 0 ? n->in[n->iarg[0]] : NULL, *cu = n->iarg[1] >= 0 ? n->in[n->iarg[1]] : NULL;
    if (b && b->dtype != w->dtype) return ln_fail("short_conv on CUDA: bias and weight must share a dtype");
    const long long tokens = x->shape[0] * x->shape[1], T_ = x->shape[1];
    const int C = (int)x->shape[2], W = (int)w->shape[1];
    if (tokens * C == 0) return LN_OK;
    CONV_DISPATCH2(x->dtype, w->dtype, {
        conv_fwd<T, TW><<<ln_blocks(tokens * C, CONV_THREADS), CONV_THREADS, 0, ln_stream()>>>(
            (const T *)x->data, (const TW *)w->data, b ? (const TW *)b->data : NULL, (T *)n->out[0]->data, tokens, T_,
            C, W, cu ? (const int *)cu->data : NULL, cu ? (int)cu->shape[0] - 1 : 0);
    });
    LN_CUDA_LAUNCHED("short_conv forward");
    return LN_OK;
}

extern "C" int ln_short_conv_backward_cuda(ln_node *n) {
    ln_tensor *x = ln_node_saved(n, 0), *w = ln_node_saved(n, 1), *dy = n->out[0]->grad;
    ln_tensor *xin = n->in[0], *win = n->in[1], *b = n->iarg[0] >= 0 ? n->in[n->iarg[0]] : NULL;
    const ln_tensor *cu = n->iarg[1] >= 0 ? n->in[n->iarg[1]] : NULL;
    if (!dy) return LN_OK;
    const long long tokens = x->shape[0] * x->shape[1], T_ = x->shape[1];
    const int C = (int)x->shape[2], W = (int)w->shape[1];
    const int *cud = cu ? (const int *)cu->data : NULL, nd = cu ? (int)cu->shape[0] - 1 : 0;
    if (tokens * C == 0) return LN_OK;
    ln_tensor *dx = xin->requires_grad ? ln_grad_of(xin) : NULL;
    ln_tensor *dw = win->requires_grad ? ln_grad_of(win) : NULL;
    ln_tensor *db = b && b->requires_grad ? ln_grad_of(b) : NULL;
    if ((xin->requires_grad && !dx) || (win->requires_grad && !dw) || (b && b->requires_grad && !db)) return LN_ERR;
    CONV_DISPATCH2(x->dtype, w->dtype, {
        if (dx)
            conv_bwd_dx<T, TW><<<ln_blocks(tokens * C, CONV_THREADS), CONV_THREADS, 0, ln_stream()>>>(
                (const T *)dy->data, (const TW *)w->data, (T *)dx->data, tokens, T_, C, W, cud, nd);
        if (dw || db)
            conv_bwd_dw<T, TW><<<C, CONV_THREADS, 0, ln_stream()>>>((const T *)x->data, (const T *)dy->data,
                                                                   dw ? (TW *)dw->data : NULL, db ? (TW *)db->data : NULL,
                                                                   tokens, T_, C, W, cud, nd);
    });
    LN_CUDA_LAUNCHED("short_conv backward");
    return LN_OK;
}
