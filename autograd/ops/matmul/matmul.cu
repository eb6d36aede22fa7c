// matmul on the GPU through cuBLASLt: the same GEMMs as matmul.c (the CPU reference), f32 or bf16
// storage, fp32 compute (CUBLAS_COMPUTE_32F, never TF32). Backward accumulates with beta = 1.
//
// cuBLASLt is column-major. A row-major C [m, n] = op(A) op(B) is the column-major
// C^T [n, m] = op(B)^T op(A)^T, so every call passes b's buffer as cuBLASLt's A and a's as its B,
// with the same transpose flags: no data moves. Descriptors are made per call; the algorithm is
// chosen once per shape (matmul_algo.cuh).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "autograd/cuda/cuda_check.cuh"
#include "autograd/ops/matmul/matmul_algo.cuh"

// iarg slots, as in matmul.c
enum { ARG_TRANS_A, ARG_TRANS_B, ARG_BATCH, ARG_M, ARG_N, ARG_K, ARG_SHARED };

// The largest power of two, at most 256, dividing the address and the byte stride between batch
// entries: cuBLASLt's heuristic must not pick a kernel that assumes more alignment than we have.
static uint32_t alignment_of(const void *p, long long stride_bytes) {
    uintptr_t v = (uintptr_t)p | (uintptr_t)stride_bytes | (uintptr_t)256;
    return (uint32_t)(v & (~v + 1));
}

#define LT_TRY(call)                                                                               \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            status = ln_fail("%s failed: cuBLAS status %d (%s:%d)", #call, (int)s_, __FILE__, __LINE__); \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

// A column-major layout rows x cols with leading dimension ld, batched when batch > 1.
static cublasStatus_t make_layout(cublasLtMatrixLayout_t *l, cudaDataType dt, long long rows, long long cols,
                                  long long ld, int batch, long long stride) {
    cublasStatus_t s = cublasLtMatrixLayoutCreate(l, dt, (uint64_t)rows, (uint64_t)cols, (int64_t)ld);
    if (s != CUBLAS_STATUS_SUCCESS || batch <= 1) return s;
    int32_t count = batch;
    int64_t offset = stride;
    s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset, sizeof offset);
    return s;
}

// Row-major C [m, n] = op(A) op(B) + beta C for `batch` entries (strides in elements, all
// nonzero when batch > 1). A is stored [m, k], or [k, m] when ta; B [k, n], or [n, k] when tb.
static int lt_gemm(ln_dtype dtype, bool ta, bool tb, long long m, long long n, long long k, const void *a,
                   long long sa, const void *b, long long sb, void *c, long long sc, int batch, float beta) {
    size_t es = ln_dtype_size(dtype);
    if (m == 0 || n == 0 || batch == 0) return LN_OK;
    if (k == 0) { // an empty inner product: C = beta C (c is contiguous over the batch here)
        if (beta == 0.0f) LN_CUDA_TRY(cudaMemsetAsync(c, 0, (size_t)(batch * m * n) * es, ln_stream()));
        return LN_OK;
    }
    cudaDataType dt;
    if (dtype == LN_F32) dt = CUDA_R_32F;
    else if (dtype == LN_BF16) dt = CUDA_R_16BF;
    else return ln_fail("matmul: the CUDA kernel takes f32 or bf16, not %s", ln_dtype_name(dtype));

    int status = LN_OK;
    float alpha = 1.0f;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t lay_a = NULL, lay_b = NULL, lay_c = NULL; // cuBLASLt's A (= our B), B (= our A), C
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulAlgo_t algo;
    cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    size_t ws_bytes = 0;
    void *ws = ln_cuda_workspace(&ws_bytes);
    uint64_t ws_limit = ws_bytes;
    uint32_t align_a = alignment_of(b, batch > 1 ? sb * (long long)es : 0);
    uint32_t align_b = alignment_of(a, batch > 1 ? sa * (long long)es : 0);
    uint32_t align_c = alignment_of(c, batch > 1 ? sc * (long long)es : 0);
    cublasLtHandle_t handle = (cublasLtHandle_t)ln_cuda_blaslt();

    LT_TRY(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    // our B as stored, column-major: [n, k] (ld n), or [k, n] (ld k) when tb
    LT_TRY(make_layout(&lay_a, dt, tb ? k : n, tb ? n : k, tb ? k : n, batch, sb));
    // our A as stored, column-major: [k, m] (ld k), or [m, k] (ld m) when ta
    LT_TRY(make_layout(&lay_b, dt, ta ? m : k, ta ? k : m, ta ? m : k, batch, sa));
    // C^T, column-major [n, m] (ld n)
    LT_TRY(make_layout(&lay_c, dt, n, m, n, batch, sc));
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_limit,
                                                sizeof ws_limit));
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                sizeof align_a));
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                sizeof align_b));
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                sizeof align_c));
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                                sizeof align_c));
    {
        gemm_key key;
        memset(&key, 0, sizeof key); // padding too: keys compare as bytes
        key.dt = (int)dt;
        key.op_a = (int)op_a;
        key.op_b = (int)op_b;
        key.batch = batch;
        key.beta_zero = beta == 0.0f;
        key.m = m, key.n = n, key.k = k, key.sa = sa, key.sb = sb, key.sc = sc;
        key.align_a = align_a, key.align_b = align_b, key.align_c = align_c;
        const size_t c_bytes = (size_t)((batch > 1 ? (long long)(batch - 1) * sc : 0) + m * n) * es;
        if (!gemm_algo(key, handle, desc, lay_a, lay_b, lay_c, pref, b, a, beta, c_bytes, ws, ws_bytes, &algo)) {
            status = LN_ERR;
            goto done;
        }
    }
    LT_TRY(cublasLtMatmul(handle, desc, &alpha, b, lay_a, a, lay_b, &beta, c, lay_c, c, lay_c, &algo, ws, ws_bytes,
                          ln_stream()));
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lay_c) cublasLtMatrixLayoutDestroy(lay_c);
    if (lay_b) cublasLtMatrixLayoutDestroy(lay_b);
    if (lay_a) cublasLtMatrixLayoutDestroy(lay_a);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return status;
}

// lt_gemm over a batch where an operand may be shared (stride 0): a shared input or output is run
// as one GEMM per entry, in order (an output stride of 0 accumulates the batch sum, with beta 1).
static int gemm(ln_dtype dtype, bool ta, bool tb, long long m, long long n, long long k, const void *a, long long sa,
                const void *b, long long sb, void *c, long long sc, long long batch, float beta) {
    if (batch <= 1 || (sa != 0 && sb != 0 && sc != 0)) {
        if (batch > INT32_MAX) return ln_fail("matmul: batch %lld exceeds cuBLASLt's batch count", batch);
        return lt_gemm(dtype, ta, tb, m, n, k, a, sa, b, sb, c, sc, (int)batch, beta);
    }
    size_t es = ln_dtype_size(dtype);
    for (long long i = 0; i < batch; i++) {
        int status = lt_gemm(dtype, ta, tb, m, n, k, (const char *)a + (size_t)(i * sa) * es, 0,
                             (const char *)b + (size_t)(i * sb) * es, 0, (char *)c + (size_t)(i * sc) * es, 0, 1, beta);
        if (status) return status;
    }
    return LN_OK;
}

extern "C" int ln_matmul_forward_cuda(ln_node *n) {
    bool ta = n->iarg[ARG_TRANS_A], tb = n->iarg[ARG_TRANS_B], shared = n->iarg[ARG_SHARED];
    long long batch = n->iarg[ARG_BATCH], M = n->iarg[ARG_M], N = n->iarg[ARG_N], K = n->iarg[ARG_K];
    ln_tensor *a = n->in[0], *b = n->in[1], *c = n->out[0];
    if (shared && !ta) // a is one [batch*M, K] matrix: one GEMM
        return gemm(a->dtype, false, tb, batch * M, N, K, a->data, 0, b->data, 0, c->data, 0, 1, 0.0f);
    return gemm(a->dtype, ta, tb, M, N, K, a->data, M * K, b->data, shared ? 0 : K * N, c->data, M * N, batch, 0.0f);
}

// dA = dC op(B)^T (stored transposed when trans_a)
static int matmul_backward_a_cuda(ln_node *n, ln_tensor *b, ln_tensor *dc) {
    bool ta = n->iarg[ARG_TRANS_A], tb = n->iarg[ARG_TRANS_B], shared = n->iarg[ARG_SHARED];
    long long batch = n->iarg[ARG_BATCH], M = n->iarg[ARG_M], N = n->iarg[ARG_N], K = n->iarg[ARG_K];
    ln_tensor *ga = ln_grad_of(n->in[0]);
    if (!ga) return LN_ERR;
    ln_dtype dt = b->dtype;
    if (!ta && shared) // [batch*M, K] = dC [batch*M, N] op(B)^T
        return gemm(dt, false, !tb, batch * M, K, N, dc->data, 0, b->data, 0, ga->data, 0, 1, 1.0f);
    long long sb = shared ? 0 : K * N;
    if (!ta) // [M, K] = dC [M, N] op(B)^T
        return gemm(dt, false, !tb, M, K, N, dc->data, M * N, b->data, sb, ga->data, M * K, batch, 1.0f);
    // [K, M] = op(B) [K, N] dC^T
    return gemm(dt, tb, true, K, M, N, b->data, sb, dc->data, M * N, ga->data, M * K, batch, 1.0f);
}

// dB = op(A)^T dC (stored transposed when trans_b), summed over the batch when b is shared
static int matmul_backward_b_cuda(ln_node *n, ln_tensor *a, ln_tensor *dc) {
    bool ta = n->iarg[ARG_TRANS_A], tb = n->iarg[ARG_TRANS_B], shared = n->iarg[ARG_SHARED];
    long long batch = n->iarg[ARG_BATCH], M = n->iarg[ARG_M], N = n->iarg[ARG_N], K = n->iarg[ARG_K];
    ln_tensor *gb = ln_grad_of(n->in[1]);
    if (!gb) return LN_ERR;
    ln_dtype dt = a->dtype;
    if (shared && !ta) { // the batch sum is the inner dimension of one GEMM over [batch*M] rows
        if (!tb) return gemm(dt, true, false, K, N, batch * M, a->data, 0, dc->data, 0, gb->data, 0, 1, 1.0f);
        return gemm(dt, true, false, N, K, batch * M, dc->data, 0, a->data, 0, gb->data, 0, 1, 1.0f);
    }
    long long sg = shared ? 0 : K * N; // shared (with trans_a): one GEMM per entry into the same dB
    if (!tb) // [K, N] = op(A)^T dC
        return gemm(dt, !ta, false, K, N, M, a->data, M * K, dc->data, M * N, gb->data, sg, batch, 1.0f);
    // [N, K] = dC^T op(A)
    return gemm(dt, true, ta, N, K, M, dc->data, M * N, a->data, M * K, gb->data, sg, batch, 1.0f);
}

extern "C" int ln_matmul_backward_cuda(ln_node *n) {
    ln_tensor *c = n->out[0];
    if (!c->grad) return LN_OK;
    ln_tensor *a = ln_node_saved(n, 0), *b = ln_node_saved(n, 1);
    if (!a || !b) return ln_fail("matmul: saved inputs are gone");
    if (c->grad->dtype != a->dtype)
        return ln_fail("matmul: the output gradient is %s, the inputs %s", ln_dtype_name(c->grad->dtype),
                       ln_dtype_name(a->dtype));
    int status = LN_OK;
    if (n->in[0]->requires_grad) status = matmul_backward_a_cuda(n, b, c->grad);
    if (status == LN_OK && n->in[1]->requires_grad) status = matmul_backward_b_cuda(n, a, c->grad);
    return status;
}
