/* The matmul family (autograd/ops/matmul/): matmul.c (record, OpenBLAS on the CPU), matmul.cu
 * (cuBLASLt), matmul_algo.cuh (the per-shape algorithm cache).
 *
 * matmul: a [..., M, K] (or [..., K, M] with trans_a) times b [K, N] (or [N, K] with trans_b), b
 * either shared 2-D or batched like a -> [..., M, N], through OpenBLAS GEMMs.
 *
 * f32 runs sgemm on the tensors' own buffers (the CPU training hot path), f64 runs dgemm, bf16 goes
 * through float copies. Backward accumulates into existing gradients with beta = 1. */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/ops.h"

/* iarg slots */
enum { ARG_TRANS_A, ARG_TRANS_B, ARG_BATCH, ARG_M, ARG_N, ARG_K, ARG_SHARED };


/* A tensor's values as BLAS sees them: its own buffer for f32/f64, a float copy for bf16. */
typedef struct {
    ln_tensor *t;
    void *p;
    bool copy;
} blas_buf;

static int buf_open(blas_buf *f, ln_tensor *t, bool read) {
    f->t = t;
    f->copy = t->dtype == LN_BF16;
    if (!f->copy) {
        f->p = t->data;
        return LN_OK;
    }
    float *p = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof *p);
    if (!p) return ln_fail("matmul: out of host memory converting %s from bf16", ln_tensor_label(t, "a tensor"));
    const uint16_t *src = t->data;
    if (read)
        for (int64_t i = 0; i < t->numel; i++) p[i] = ln_bf16_to_f32(src[i]);
    f->p = p;
    return LN_OK;
}

/* Writes a bf16 copy back into its tensor when asked, then releases it. */
static void buf_close(blas_buf *f, bool write) {
    if (!f->copy || !f->p) return;
    if (write) {
        uint16_t *dst = f->t->data;
        const float *p = f->p;
        for (int64_t i = 0; i < f->t->numel; i++) dst[i] = ln_f32_to_bf16(p[i]);
    }
    free(f->p);
    f->p = NULL;
}

/* Row-major C [m, n] = op(A) op(B) + beta C, op(A) [m, k], op(B) [k, n]; A stored [m, k] or,
 * transposed, [k, m] (likewise B). Dimensions were checked to fit BLAS ints by ln_matmul. */
static void gemm(bool f64, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a, const void *b,
                 double beta, void *c) {
    if (m == 0 || n == 0) return;
    if (k == 0) { /* empty inner product: BLAS rejects lda = 0, and C is beta C */
        if (beta == 0) memset(c, 0, (size_t)(m * n) * (f64 ? sizeof(double) : sizeof(float)));
        return;
    }
    blasint lda = (blasint)(ta ? m : k), ldb = (blasint)(tb ? k : n);
    enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
    if (f64)
        cblas_dgemm(CblasRowMajor, opa, opb, (blasint)m, (blasint)n, (blasint)k, 1.0, a, lda, b, ldb, beta, c,
                    (blasint)n);
    else
        cblas_sgemm(CblasRowMajor, opa, opb, (blasint)m, (blasint)n, (blasint)k, 1.0f, a, lda, b, ldb, (float)beta,
                    c, (blasint)n);
}

/* The element at offset in a buffer of f64 or f32 values. */
static void *at(void *p, bool f64, int64_t offset) {
    return (char *)p + (size_t)offset * (f64 ? sizeof(double) : sizeof(float));
}

static int matmul_forward_cpu(ln_node *n) {
    bool ta = n->iarg[ARG_TRANS_A], tb = n->iarg[ARG_TRANS_B], shared = n->iarg[ARG_SHARED];
    int64_t batch = n->iarg[ARG_BATCH], M = n->iarg[ARG_M], N = n->iarg[ARG_N], K = n->iarg[ARG_K];
    bool f64 = n->in[0]->dtype == LN_F64;
    blas_buf A = {0}, B = {0}, C = {0};
    int status = buf_open(&A, n->in[0], true);
    if (status == LN_OK) status = buf_open(&B, n->in[1], true);
    if (status == LN_OK) status = buf_open(&C, n->out[0], false);
    if (status == LN_OK) {
        if (shared && !ta) { /* a is one [batch*M, K] matrix: one big GEMM beats many small ones */
            gemm(f64, false, tb, batch * M, N, K, A.p, B.p, 0.0, C.p);
        } else {
            for (int64_t i = 0; i < batch; i++)
                gemm(f64, ta, tb, M, N, K, at(A.p, f64, i * M * K), at(B.p, f64, shared ? 0 : i * K * N), 0.0,
                     at(C.p, f64, i * M * N));
        }
    }
    buf_close(&A, false);
    buf_close(&B, false);
    buf_close(&C, status == LN_OK);
    return status;
}

/* dA = dC op(B)^T (stored transposed when trans_a); a shared b reads the same B for every entry. */
static int matmul_backward_a(ln_node *n, ln_tensor *b, blas_buf *dC) {
    bool ta = n->iarg[ARG_TRANS_A], tb = n->iarg[ARG_TRANS_B], shared = n->iarg[ARG_SHARED];
    int64_t batch = n->iarg[ARG_BATCH], M = n->iarg[ARG_M], N = n->iarg[ARG_N], K = n->iarg[ARG_K];
    bool f64 = b->dtype == LN_F64;
    ln_tensor *ga = ln_grad_of(n->in[0]);
    if (!ga) return LN_ERR;
    blas_buf B = {0}, G = {0};
    int status = buf_open(&B, b, true);
    if (status == LN_OK) status = buf_open(&G, ga, true);
    if (status == LN_OK) {
        if (!ta && shared) {
            gemm(f64, false, !tb, batch * M, K, N, dC->p, B.p, 1.0, G.p);
        } else {
            for (int64_t i = 0; i < batch; i++) {
                void *dc = at(dC->p, f64, i * M * N), *bi = at(B.p, f64, shared ? 0 : i * K * N);
                void *gi = at(G.p, f64, i * M * K);
                if (!ta)
                    gemm(f64, false, !tb, M, K, N, dc, bi, 1.0, gi); /* [M, K] = dC [M, N] op(B)^T */
                else
                    gemm(f64, tb, true, K, M, N, bi, dc, 1.0, gi); /* [K, M] = op(B) [K, N] dC^T */
            }
        }
    }
    buf_close(&B, false);
    buf_close(&G, status == LN_OK);
    return status;
}

/* dB = op(A)^T dC (stored transposed when trans_b), summed over the batch when b is shared. */
static int matmul_backward_b(ln_node *n, ln_tensor *a, blas_buf *dC) {
    bool ta = n->iarg[ARG_TRANS_A], tb = n->iarg[ARG_TRANS_B], shared = n->iarg[ARG_SHARED];
    int64_t batch = n->iarg[ARG_BATCH], M = n->iarg[ARG_M], N = n->iarg[ARG_N], K = n->iarg[ARG_K];
    bool f64 = a->dtype == LN_F64;
    ln_tensor *gb = ln_grad_of(n->in[1]);
    if (!gb) return LN_ERR;
    blas_buf A = {0}, G = {0};
    int status = buf_open(&A, a, true);
    if (status == LN_OK) status = buf_open(&G, gb, true);
    if (status == LN_OK) {
        if (shared && !ta) { /* the batch sum is the inner dimension of one GEMM over [batch*M] rows */
            if (!tb)
                gemm(f64, true, false, K, N, batch * M, A.p, dC->p, 1.0, G.p);
            else
                gemm(f64, true, false, N, K, batch * M, dC->p, A.p, 1.0, G.p);
        } else {
            for (int64_t i = 0; i < batch; i++) {
                void *dc = at(dC->p, f64, i * M * N), *ai = at(A.p, f64, i * M * K);
                void *gi = at(G.p, f64, shared ? 0 : i * K * N);
                if (!tb)
                    gemm(f64, !ta, false, K, N, M, ai, dc, 1.0, gi); /* [K, N] = op(A)^T dC */
                else
                    gemm(f64, true, ta, N, K, M, dc, ai, 1.0, gi); /* [N, K] = dC^T op(A) */
            }
        }
    }
    buf_close(&A, false);
    buf_close(&G, status == LN_OK);
    return status;
}

static int matmul_backward_cpu(ln_node *n) {
    ln_tensor *c = n->out[0];
    if (!c->grad) return LN_OK;
    ln_tensor *a = ln_node_saved(n, 0), *b = ln_node_saved(n, 1);
    if (!a || !b) return ln_fail("matmul: saved inputs are gone");
    blas_buf dC = {0};
    int status = buf_open(&dC, c->grad, true);
    if (status == LN_OK && n->in[0]->requires_grad) status = matmul_backward_a(n, b, &dC);
    if (status == LN_OK && n->in[1]->requires_grad) status = matmul_backward_b(n, a, &dC);
    buf_close(&dC, false);
    return status;
}

#ifdef LINNET_CUDA
int ln_matmul_forward_cuda(ln_node *n);
int ln_matmul_backward_cuda(ln_node *n);
#endif

static const ln_op matmul_op = {
    .name = "matmul",
    .forward = {[LN_CPU] = matmul_forward_cpu LN_ON_CUDA(ln_matmul_forward_cuda)},
    .backward = {[LN_CPU] = matmul_backward_cpu LN_ON_CUDA(ln_matmul_backward_cuda)},
};

ln_tensor *ln_matmul(ln_tensor *a, ln_tensor *b, bool trans_a, bool trans_b) {
    if (!a || !b) return NULL;
    char sa[96], sb[96];
    ln_shape_str(a, sa, sizeof sa);
    ln_shape_str(b, sb, sizeof sb);
    const char *na = ln_tensor_label(a, "a"), *nb = ln_tensor_label(b, "b");
    if (a->ndim < 2 || b->ndim < 2) {
        ln_fail("matmul: %s %s and %s %s: both need at least 2 dimensions", na, sa, nb, sb);
        return NULL;
    }
    if (!ln_dtype_is_float(a->dtype) || a->dtype != b->dtype) {
        ln_fail("matmul: %s %s is %s and %s %s is %s: need one float dtype", na, sa, ln_dtype_name(a->dtype), nb, sb,
                ln_dtype_name(b->dtype));
        return NULL;
    }
    int da = a->ndim, db = b->ndim;
    int64_t M = trans_a ? a->shape[da - 1] : a->shape[da - 2], Ka = trans_a ? a->shape[da - 2] : a->shape[da - 1];
    int64_t Kb = trans_b ? b->shape[db - 1] : b->shape[db - 2], N = trans_b ? b->shape[db - 2] : b->shape[db - 1];
    bool shared = db == 2;
    bool leading_ok = shared || db == da;
    for (int i = 0; leading_ok && !shared && i < da - 2; i++) leading_ok = a->shape[i] == b->shape[i];
    if (!leading_ok || Ka != Kb) {
        ln_fail("matmul: %s %s%s and %s %s%s do not fit: %s", na, sa, trans_a ? " (transposed)" : "", nb, sb,
                trans_b ? " (transposed)" : "",
                leading_ok ? "inner dimensions differ" : "b must be 2-D or have a's leading dimensions");
        return NULL;
    }
    int64_t batch = ln_shape_numel(da - 2, a->shape);
    if (M > INT_MAX || N > INT_MAX || Ka > INT_MAX || (shared && !trans_a && batch * M > INT_MAX)) {
        ln_fail("matmul: %s %s and %s %s exceed the BLAS integer range", na, sa, nb, sb);
        return NULL;
    }
    int64_t out_shape[LN_MAX_DIMS];
    memcpy(out_shape, a->shape, (size_t)(da - 2) * sizeof *out_shape);
    out_shape[da - 2] = M;
    out_shape[da - 1] = N;

    ln_node *n = ln_node_begin(&matmul_op, 2, (ln_tensor *[]){a, b});
    ln_tensor *y = ln_node_output(n, a->dtype, da, out_shape);
    if (!y) return NULL;
    n->iarg[ARG_TRANS_A] = trans_a;
    n->iarg[ARG_TRANS_B] = trans_b;
    n->iarg[ARG_BATCH] = batch;
    n->iarg[ARG_M] = M;
    n->iarg[ARG_N] = N;
    n->iarg[ARG_K] = Ka;
    n->iarg[ARG_SHARED] = shared;
    ln_node_save(n, a);
    ln_node_save(n, b);
    return ln_node_run(n) == LN_OK ? y : NULL;
}
