/* cuDNN fused attention (autograd/ops/attention_cudnn.cu) against the CPU reference of the
 * attention op: output and the gradients of q, k, v, bf16, D = 64 and 128, causal and not,
 * T = S = 77 and 256, GQA (Hq = 4, Hkv = 2) and MHA, causal with S > T (bottom-right alignment).
 *
 * Two routes to the kernels:
 *   - direct: a test-local op record whose CUDA kernels are ln_attention_cudnn_forward/_backward,
 *     with the node built exactly as ln_attention builds it (iarg[0] = causal, farg[0] = scale,
 *     q, k, v saved). Independent of the attention op's dispatch.
 *   - dispatch: ln_attention itself with ln_set_attention_impl(LN_ATTN_CUDNN); these skip while
 *     the attention op has no CUDA kernel wired (the message says so).
 * Plus the support checks on a few shapes, gradient accumulation and q = k = v on one tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_context.h"
#include "autograd/memory.h"
#include "autograd/ops/attention_cudnn.h"
#include "gpu/gpu_testing.h"
#include "testing.h"

typedef struct {
    bool causal;
    double scale;
    bool direct; /* through the test-local op record, not ln_attention's dispatch */
} attn_ctx;

static const ln_op cudnn_attention_op = {
    .name = "attention (cuDNN, direct)",
    .forward = {[LN_CUDA] = ln_attention_cudnn_forward},
    .backward = {[LN_CUDA] = ln_attention_cudnn_backward},
};

/* The node ln_attention would make, run by the cuDNN kernels. Fails the test (with cuDNN's reason)
 * when the shape is not supported: every shape given here must be. */
static ln_tensor *attention_direct(ln_tensor *q, ln_tensor *k, ln_tensor *v, bool causal, double scale) {
    ln_node *n = ln_node_begin(&cudnn_attention_op, 3, (ln_tensor *[]){q, k, v});
    ln_tensor *out = ln_node_output(n, q->dtype, 4, q->shape);
    if (!out) return NULL;
    n->iarg[0] = causal;
    n->farg[0] = scale;
    ln_node_save(n, q);
    ln_node_save(n, k);
    ln_node_save(n, v);
    if (!ln_attention_cudnn_supported(n)) fail_msg("cuDNN does not support this shape: %s", ln_attention_cudnn_unsupported_reason());
    return ln_node_run(n) == LN_OK ? out : NULL;
}

static ln_tensor *attention_of(ln_tensor *const *in, void *ctx) {
    const attn_ctx *c = ctx;
    if (c->direct && in[0]->device == LN_CUDA) return attention_direct(in[0], in[1], in[2], c->causal, c->scale);
    return ln_attention(in[0], in[1], in[2], c->causal, c->scale);
}

/* Self attention on one tensor: q = k = v. */
static ln_tensor *self_attention_of(ln_tensor *const *in, void *ctx) {
    const attn_ctx *c = ctx;
    if (c->direct && in[0]->device == LN_CUDA) return attention_direct(in[0], in[0], in[0], c->causal, c->scale);
    return ln_attention(in[0], in[0], in[0], c->causal, c->scale);
}

static void check_attention(bool direct, int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                            bool causal, uint64_t seed) {
    ln_tensor *in[3] = {gpu_randn(4, (int64_t[]){B, T, Hq, D}, 1.0, seed),
                        gpu_randn(4, (int64_t[]){B, S, Hkv, D}, 1.0, seed + 1),
                        gpu_randn(4, (int64_t[]){B, S, Hkv, D}, 1.0, seed + 2)};
    attn_ctx c = {causal, 1.0 / sqrt((double)D), direct};
    char name[128];
    snprintf(name, sizeof name, "%s B%lld T%lld S%lld H%lld/%lld D%lld%s", direct ? "cudnn" : "dispatch",
             (long long)B, (long long)T, (long long)S, (long long)Hq, (long long)Hkv, (long long)D,
             causal ? " causal" : "");
    gpu_check(name, attention_of, &c, 3, in, LN_BF16, GPU_TOL_BF16);
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

/* The acceptance grid: D 64/128, causal or not, T = S = 77 and 256, GQA 4/2 and MHA 4/4. */
static void check_grid(bool direct, uint64_t seed) {
    static const int64_t Ds[] = {64, 128}, Ts[] = {77, 256}, Hkvs[] = {2, 4};
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < 2; t++)
            for (int h = 0; h < 2; h++)
                for (int causal = 0; causal < 2; causal++)
                    check_attention(direct, 2, Ts[t], Ts[t], 4, Hkvs[h], Ds[d], causal, seed += 10);
}

static void print_library(void) {
    static bool printed;
    if (printed) return;
    printed = true;
    printf("  cuDNN %zu\n", ln_attention_cudnn_version());
}

#define NEED_CUDNN()                                                                               \
    do {                                                                                           \
        NEED_GPU();                                                                                \
        if (ln_attention_cudnn_version() == 0) {                                                   \
            printf("  (built without cuDNN)\n");                                                   \
            skip();                                                                                \
        }                                                                                          \
        print_library();                                                                           \
    } while (0)

/* ---- no GPU needed: every descriptor of both graphs finalizes ---- */

/* Builds the descriptors of the forward and backward graphs for the test shapes and finalizes
 * their operation graphs (attribute types and counts, dims, strides, dtypes, matmul broadcasts are
 * all checked there). Runs wherever cuDNN is linked, GPU or not; planning needs the GPU. */
static void cudnn_graphs_finalize_without_gpu(void **state) {
    if (ln_attention_cudnn_version() == 0) skip();
    static const int64_t shapes[][6] = {{2, 77, 77, 4, 2, 64},  {2, 256, 256, 4, 4, 128}, {2, 64, 192, 4, 2, 64},
                                        {1, 77, 200, 4, 4, 128}, {3, 5, 5, 8, 1, 64},     {1, 1, 1, 1, 1, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int causal = 0; causal < 2; causal++)
            for (int backward = 0; backward < 2; backward++) {
                const int64_t *s = shapes[i];
                if (ln_attention_cudnn_check_graph(s[0], s[1], s[2], s[3], s[4], s[5], causal, backward, NULL, NULL))
                    fail_msg("%s", ln_error_message());
            }
    /* a graph cuDNN must refuse: 3 query heads over 2 kv heads, named down to the op */
    assert_int_equal(ln_attention_cudnn_check_graph(2, 64, 64, 3, 2, 64, 1, 0, NULL, NULL), LN_ERR);
    printf("  refused as expected: %s\n", ln_error_message());
    assert_non_null(strstr(ln_error_message(), "bmm1"));
    ln_error_clear();
}

/* ---- direct: the cuDNN kernels themselves ---- */

static void cudnn_matches_cpu(void **state) {
    NEED_CUDNN();
    check_grid(true, 1000);
}

/* Causal with more keys than queries: query t sees keys s <= t + S - T (bottom-right). */
static void cudnn_causal_bottom_right(void **state) {
    NEED_CUDNN();
    check_attention(true, 2, 64, 192, 4, 2, 64, true, 2000);
    check_attention(true, 1, 77, 200, 4, 4, 128, true, 2010);
    check_attention(true, 2, 100, 256, 4, 2, 64, false, 2020);
}

/* Odd sizes: one head, one batch, a single query, MQA (Hkv = 1). */
static void cudnn_odd_shapes(void **state) {
    NEED_CUDNN();
    check_attention(true, 1, 1, 1, 1, 1, 64, true, 3000);
    check_attention(true, 3, 5, 5, 8, 1, 64, true, 3010);
    check_attention(true, 1, 130, 130, 2, 2, 128, false, 3020);
}

static void cudnn_self_attention_one_tensor(void **state) {
    NEED_CUDNN();
    ln_tensor *x = gpu_randn(4, (int64_t[]){2, 77, 4, 64}, 1.0, 4000);
    attn_ctx c = {true, 0.125, true};
    gpu_check("cudnn q = k = v causal", self_attention_of, &c, 1, &x, LN_BF16, GPU_TOL_BF16);
    c.causal = false;
    gpu_check("cudnn q = k = v", self_attention_of, &c, 1, &x, LN_BF16, GPU_TOL_BF16);
    ln_tensor_free(x);
}

/* A bf16 GPU copy of a random CPU tensor, requiring a gradient. */
static ln_tensor *upload_bf16(const ln_tensor *host) {
    ln_tensor *b = ln_tensor_new(LN_BF16, LN_CPU, host->ndim, host->shape);
    ln_tensor *d = ln_tensor_new(LN_BF16, LN_CUDA, host->ndim, host->shape);
    assert_non_null(b);
    assert_non_null(d);
    assert_ok(ln_tensor_copy(b, host));
    assert_ok(ln_tensor_copy(d, b));
    ln_tensor_free(b);
    d->requires_grad = true;
    return d;
}

static double *grad_values(const ln_tensor *t) {
    ln_tensor *host = ln_tensor_new(LN_F64, LN_CPU, t->ndim, t->shape);
    ln_tensor *same = ln_tensor_new(t->grad->dtype, LN_CPU, t->ndim, t->shape);
    assert_ok(ln_tensor_copy(same, t->grad));
    assert_ok(ln_tensor_copy(host, same));
    double *v = malloc((size_t)t->numel * sizeof *v);
    for (int64_t i = 0; i < t->numel; i++) v[i] = ln_get(host, i);
    ln_tensor_free(host);
    ln_tensor_free(same);
    return v;
}

/* Gradients accumulate: two backward passes without zeroing give twice one pass (bf16 sums). The
 * first pass writes into fresh gradients, the second adds through scratch: both paths run. */
static void cudnn_gradients_accumulate(void **state) {
    NEED_CUDNN();
    const int64_t B = 2, T = 96, S = 96, Hq = 4, Hkv = 2, D = 64;
    ln_tensor *host[3] = {gpu_randn(4, (int64_t[]){B, T, Hq, D}, 1.0, 5000),
                          gpu_randn(4, (int64_t[]){B, S, Hkv, D}, 1.0, 5001),
                          gpu_randn(4, (int64_t[]){B, S, Hkv, D}, 1.0, 5002)};
    ln_tensor *dev[3];
    for (int i = 0; i < 3; i++) dev[i] = upload_bf16(host[i]);
    double *once[3], *twice[3];
    for (int pass = 0; pass < 2; pass++) {
        ln_tape_clear();
        ln_tensor *o = attention_direct(dev[0], dev[1], dev[2], true, 0.125);
        assert_non_null(o);
        ln_tensor *loss = ln_sum(o);
        assert_non_null(loss);
        assert_ok(ln_backward(loss));
        assert_ok(ln_cuda_sync("attention backward"));
        for (int i = 0; i < 3; i++) (pass == 0 ? once : twice)[i] = grad_values(dev[i]);
    }
    for (int i = 0; i < 3; i++) {
        double num = 0, den = 0;
        for (int64_t j = 0; j < dev[i]->numel; j++) {
            double diff = twice[i][j] - 2 * once[i][j];
            num += diff * diff;
            den += 4 * once[i][j] * once[i][j];
        }
        double err = sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
        printf("  accumulate d(input %d): rel. error %.3g\n", i, err);
        assert_true(den > 0);
        assert_true(err <= GPU_TOL_BF16);
        free(once[i]);
        free(twice[i]);
    }
    ln_tape_clear();
    for (int i = 0; i < 3; i++) {
        ln_tensor_free(host[i]);
        ln_tensor_free(dev[i]);
    }
}

/* ---- the support checks ---- */

/* Whether cuDNN takes a node of this shape (a node made but never run: nothing executes). */
static int supported_for(ln_dtype dtype, int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                         bool causal) {
    ln_tensor *q = ln_tensor_new(dtype, LN_CUDA, 4, (int64_t[]){B, T, Hq, D});
    ln_tensor *k = ln_tensor_new(dtype, LN_CUDA, 4, (int64_t[]){B, S, Hkv, D});
    ln_tensor *v = ln_tensor_new(dtype, LN_CUDA, 4, (int64_t[]){B, S, Hkv, D});
    assert_non_null(q);
    assert_non_null(k);
    assert_non_null(v);
    ln_node *n = ln_node_begin(&cudnn_attention_op, 3, (ln_tensor *[]){q, k, v});
    assert_non_null(ln_node_output(n, dtype, 4, q->shape));
    n->iarg[0] = causal;
    n->farg[0] = 1.0 / sqrt((double)D);
    int ok = ln_attention_cudnn_supported(n);
    printf("  supported(%s B%lld T%lld S%lld H%lld/%lld D%lld%s) = %d%s%s\n", ln_dtype_name(dtype), (long long)B,
           (long long)T, (long long)S, (long long)Hq, (long long)Hkv, (long long)D, causal ? " causal" : "", ok,
           ok ? "" : ": ", ok ? "" : ln_attention_cudnn_unsupported_reason());
    ln_tape_clear();
    ln_tensor_free(q);
    ln_tensor_free(k);
    ln_tensor_free(v);
    return ok;
}

static void cudnn_support_checks(void **state) {
    NEED_CUDNN();
    /* the shapes the model uses build both graphs (this is where plans are made and cached) */
    assert_int_equal(supported_for(LN_BF16, 2, 256, 256, 4, 2, 64, true), 1);
    assert_int_equal(supported_for(LN_BF16, 2, 256, 256, 4, 4, 128, false), 1);
    assert_int_equal(supported_for(LN_BF16, 2, 77, 77, 4, 2, 128, true), 1);
    /* asking again hits the cache */
    assert_int_equal(supported_for(LN_BF16, 2, 256, 256, 4, 2, 64, true), 1);
    /* refused without building anything, with a reason */
    assert_int_equal(supported_for(LN_F32, 2, 64, 64, 4, 2, 64, true), 0);
    assert_non_null(strstr(ln_attention_cudnn_unsupported_reason(), "bf16"));
    assert_int_equal(supported_for(LN_BF16, 2, 64, 64, 4, 2, 60, true), 0);
    assert_non_null(strstr(ln_attention_cudnn_unsupported_reason(), "head dim"));
    assert_int_equal(supported_for(LN_BF16, 2, 64, 64, 4, 2, 256, false), 0);
    /* the error message of the caller is left alone */
    ln_fail("an earlier message");
    supported_for(LN_BF16, 1, 8, 8, 2, 2, 60, false);
    assert_string_equal(ln_error_message(), "an earlier message");
    ln_error_clear();
    /* CPU tensors are never cuDNN's */
    ln_tensor *q = ln_tensor_new(LN_BF16, LN_CPU, 4, (int64_t[]){1, 8, 2, 64});
    ln_node *n = ln_node_begin(&cudnn_attention_op, 3, (ln_tensor *[]){q, q, q});
    assert_int_equal(ln_attention_cudnn_supported(n), 0);
    ln_tape_clear();
    ln_tensor_free(q);
    /* plans are rebuilt after the cache is dropped */
    ln_attention_cudnn_clear_cache();
    assert_int_equal(supported_for(LN_BF16, 2, 77, 77, 4, 2, 64, false), 1);
}

/* ---- dispatch: ln_attention with the cuDNN implementation selected ---- */

/* True (and the test skipped) while the attention op has no CUDA kernel to dispatch from. */
static bool dispatch_not_wired(void) {
    ln_tensor *q = ln_tensor_new(LN_BF16, LN_CUDA, 4, (int64_t[]){1, 8, 2, 64});
    ln_tensor *o = ln_attention(q, q, q, true, 0.125);
    bool missing = !o && strstr(ln_error_message(), "no cuda forward kernel");
    ln_tape_clear();
    ln_tensor_free(q);
    if (missing) printf("  the attention op has no CUDA kernel yet: dispatch not wired, skipping\n");
    ln_error_clear();
    return missing;
}

static void dispatch_matches_cpu(void **state) {
    NEED_CUDNN();
    ln_set_attention_impl(LN_ATTN_CUDNN);
    if (dispatch_not_wired()) {
        ln_set_attention_impl(LN_ATTN_AUTO);
        skip();
    }
    check_grid(false, 6000);
    ln_set_attention_impl(LN_ATTN_AUTO);
}

static void dispatch_causal_bottom_right(void **state) {
    NEED_CUDNN();
    ln_set_attention_impl(LN_ATTN_CUDNN);
    if (dispatch_not_wired()) {
        ln_set_attention_impl(LN_ATTN_AUTO);
        skip();
    }
    check_attention(false, 2, 64, 192, 4, 2, 64, true, 7000);
    ln_set_attention_impl(LN_ATTN_AUTO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cudnn_graphs_finalize_without_gpu),
        cmocka_unit_test(cudnn_support_checks),
        cmocka_unit_test(cudnn_matches_cpu),
        cmocka_unit_test(cudnn_causal_bottom_right),
        cmocka_unit_test(cudnn_odd_shapes),
        cmocka_unit_test(cudnn_self_attention_one_tensor),
        cmocka_unit_test(cudnn_gradients_accumulate),
        cmocka_unit_test(dispatch_matches_cpu),
        cmocka_unit_test(dispatch_causal_bottom_right),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
