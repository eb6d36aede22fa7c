/* cuDNN fused attention (autograd/ops/attention/attention_cudnn.cu) against the CPU reference of
 * the attention op: output and the gradients of q, k, v, bf16, D = 64 and 128, causal and not,
 * T = S = 128, 256, 384 and lengths that are not multiples of 128 (77, 96, 192, 1, 5, 130), GQA
 * (Hq = 4, Hkv = 2), MQA and MHA, causal with S > T (bottom-right alignment).
 *
 * What the loaded cuDNN supports is decided by its version (expected_refusal() below, the gates of
 * docs/attention-cudnn.md). Every shape is checked against it: a shape the version supports must be
 * supported and match the CPU within the bf16 tolerance; one it does not must be refused with the
 * expected reason (and nothing run). On cuDNN 9.14 every shape here is supported (lengths that are
 * not multiples of 128 through the backward's padding-mask workaround).
 *
 * Two routes to the kernels:
 *   - direct: a test-local op record whose CUDA kernels are ln_attention_cudnn_forward/_backward,
 *     with the node built exactly as ln_attention builds it (iarg[0] = causal, farg[0] = scale,
 *     q, k, v saved). Independent of the attention op's dispatch.
 *   - dispatch: ln_attention itself with ln_set_attention_impl(LN_ATTN_CUDNN), and a check that the
 *     op honours the setting.
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
#include "autograd/ops/attention/attention_cudnn.h"
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

/* NULL when the loaded cuDNN must support attention with T queries over S keys, else a piece of
 * the reason it must give for refusing (the version gates of docs/attention-cudnn.md). Assumes an
 * sm_80+ GPU (ours are H100/H200) and bf16 with D a multiple of 8 up to 128, as every shape here. */
static const char *expected_refusal(int64_t T, int64_t S, bool causal) {
    size_t v = ln_attention_cudnn_version();
    if (v >= 91000 && v < 91002) return "known SDPA bugs";
    if (causal && S != T && v < 90600) return "causal with S != T";
    if (S % 128 != 0 && v < 91000) return "multiple of 128";
    return NULL;
}

static int supported_for(ln_dtype dtype, int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                         bool causal);

/* A shape the loaded cuDNN does not support: refused with the expected reason. */
static void check_refused(int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, bool causal,
                          const char *why) {
    assert_int_equal(supported_for(LN_BF16, B, T, S, Hq, Hkv, D, causal), 0);
    if (!strstr(ln_attention_cudnn_unsupported_reason(), why))
        fail_msg("refused, but not for '%s': %s", why, ln_attention_cudnn_unsupported_reason());
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

/* The shape through cuDNN against the CPU when the loaded version supports it (then it must);
 * otherwise it must be refused (direct) or is left out (dispatch, whose fallback is not ours). */
static void check_attention(bool direct, int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                            bool causal, uint64_t seed) {
    const char *why = expected_refusal(T, S, causal);
    if (why) {
        if (direct)
            check_refused(B, T, S, Hq, Hkv, D, causal, why);
        else
            printf("  dispatch B%lld T%lld S%lld: not for this cuDNN (%s), left out\n", (long long)B, (long long)T,
                   (long long)S, why);
        return;
    }
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

/* The acceptance grid over the given lengths (T = S): D 64/128, GQA 4/2 and MHA 4/4, causal or not. */
static void check_grid(bool direct, const int64_t *Ts, int nT, uint64_t seed) {
    static const int64_t Ds[] = {64, 128}, Hkvs[] = {2, 4};
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < nT; t++)
            for (int h = 0; h < 2; h++)
                for (int causal = 0; causal < 2; causal++)
                    check_attention(direct, 2, Ts[t], Ts[t], 4, Hkvs[h], Ds[d], causal, seed += 10);
}

/* Multiples of 128: every cuDNN 9 we run on supports them. */
static const int64_t ALIGNED_T[] = {128, 256, 384};
/* The rest: cuDNN >= 9.16 natively, 9.10.2 .. 9.15 through the backward's padding workaround. */
static const int64_t UNALIGNED_T[] = {77, 192};

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
    /* on cuDNN <= 9.15 the lengths that are not multiples of 128 build the padding-workaround graph */
    static const int64_t shapes[][6] = {{2, 128, 128, 4, 2, 64}, {2, 256, 256, 4, 4, 128}, {2, 384, 384, 4, 2, 128},
                                        {2, 128, 256, 4, 2, 64}, {2, 77, 77, 4, 2, 64},    {2, 64, 192, 4, 2, 64},
                                        {1, 77, 200, 4, 4, 128}, {3, 5, 5, 8, 1, 64},      {1, 1, 1, 1, 1, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int causal = 0; causal < 2; causal++)
            for (int backward = 0; backward < 2; backward++) {
                const int64_t *s = shapes[i];
                if (ln_attention_cudnn_check_graph(s[0], s[1], s[2], s[3], s[4], s[5], causal, backward, NULL, NULL))
                    fail_msg("%s", ln_error_message());
            }
    /* a graph cuDNN itself must refuse, named down to the op: 3 query heads over 2 kv heads (the
     * node-level checks and ln_attention refuse such a node before any graph; this is about the
     * error report of check_graph, which skips them) */
    assert_int_equal(ln_attention_cudnn_check_graph(2, 64, 64, 3, 2, 64, 1, 0, NULL, NULL), LN_ERR);
    printf("  refused as expected: %s\n", ln_error_message());
    assert_non_null(strstr(ln_error_message(), "bmm1"));
    ln_error_clear();
}

/* ---- direct: the cuDNN kernels themselves ---- */

static void cudnn_matches_cpu(void **state) {
    NEED_CUDNN();
    check_grid(true, ALIGNED_T, 3, 1000);
}

/* Lengths that are not multiples of 128: supported and right, or refused, as the version says. */
static void cudnn_unaligned_lengths(void **state) {
    NEED_CUDNN();
    check_grid(true, UNALIGNED_T, 2, 1500);
}

/* Causal with more keys than queries: query t sees keys s <= t + S - T (bottom-right). */
static void cudnn_causal_bottom_right(void **state) {
    NEED_CUDNN();
    check_attention(true, 2, 128, 256, 4, 2, 64, true, 2000);
    check_attention(true, 1, 128, 384, 4, 4, 128, true, 2010);
    check_attention(true, 2, 256, 384, 4, 2, 128, true, 2020);
    check_attention(true, 2, 128, 256, 4, 2, 64, false, 2030);
    /* lengths that are not multiples of 128 */
    check_attention(true, 2, 64, 192, 4, 2, 64, true, 2040);
    check_attention(true, 1, 77, 200, 4, 4, 128, true, 2050);
    check_attention(true, 2, 100, 256, 4, 2, 64, false, 2060);
}

/* Odd sizes: one head, one batch, a single query, MQA (Hkv = 1). */
static void cudnn_odd_shapes(void **state) {
    NEED_CUDNN();
    check_attention(true, 2, 128, 128, 8, 1, 64, true, 2990);
    check_attention(true, 1, 128, 128, 1, 1, 128, false, 2995);
    check_attention(true, 1, 1, 1, 1, 1, 64, true, 3000);
    check_attention(true, 3, 5, 5, 8, 1, 64, true, 3010);
    check_attention(true, 1, 130, 130, 2, 2, 128, false, 3020);
}

static void cudnn_self_attention_one_tensor(void **state) {
    NEED_CUDNN();
    static const int64_t Ts[] = {128, 77};
    for (int i = 0; i < 2; i++) {
        const char *why = expected_refusal(Ts[i], Ts[i], false);
        if (why) {
            check_refused(2, Ts[i], Ts[i], 4, 4, 64, false, why);
            continue;
        }
        ln_tensor *x = gpu_randn(4, (int64_t[]){2, Ts[i], 4, 64}, 1.0, 4000 + i);
        attn_ctx c = {true, 0.125, true};
        gpu_check("cudnn q = k = v causal", self_attention_of, &c, 1, &x, LN_BF16, GPU_TOL_BF16);
        c.causal = false;
        gpu_check("cudnn q = k = v", self_attention_of, &c, 1, &x, LN_BF16, GPU_TOL_BF16);
        ln_tensor_free(x);
    }
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
static void accumulate_check(int64_t T) {
    const int64_t B = 2, S = T, Hq = 4, Hkv = 2, D = 64;
    const char *why = expected_refusal(T, S, true);
    if (why) {
        check_refused(B, T, S, Hq, Hkv, D, true, why);
        return;
    }
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
        printf("  accumulate T=%lld d(input %d): rel. error %.3g\n", (long long)T, i, err);
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

static void cudnn_gradients_accumulate(void **state) {
    NEED_CUDNN();
    accumulate_check(128);
    accumulate_check(96);
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

/* Supported when the version says so (both plans built), else refused for the expected reason. */
static void expect_support(int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, bool causal) {
    const char *why = expected_refusal(T, S, causal);
    if (why)
        check_refused(B, T, S, Hq, Hkv, D, causal, why);
    else if (!supported_for(LN_BF16, B, T, S, Hq, Hkv, D, causal))
        fail_msg("must be supported on cuDNN %zu: %s", ln_attention_cudnn_version(),
                 ln_attention_cudnn_unsupported_reason());
}

static void expect_refused(ln_dtype dtype, int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                           bool causal, const char *why) {
    assert_int_equal(supported_for(dtype, B, T, S, Hq, Hkv, D, causal), 0);
    if (!strstr(ln_attention_cudnn_unsupported_reason(), why))
        fail_msg("refused, but not for '%s': %s", why, ln_attention_cudnn_unsupported_reason());
}

static void cudnn_support_checks(void **state) {
    NEED_CUDNN();
    /* the shapes the model uses build both graphs (this is where plans are made and cached) */
    expect_support(2, 256, 256, 4, 2, 64, true);
    expect_support(2, 256, 256, 4, 4, 128, false);
    expect_support(2, 128, 256, 4, 2, 64, true);
    /* lengths that are not multiples of 128: by version (9.16 native, 9.10.2 with the workaround) */
    expect_support(2, 77, 77, 4, 2, 128, true);
    expect_support(2, 64, 192, 4, 2, 64, true);
    /* asking again hits the cache */
    assert_int_equal(supported_for(LN_BF16, 2, 256, 256, 4, 2, 64, true), 1);
    /* refused without building anything, with a reason */
    expect_refused(LN_F32, 2, 128, 128, 4, 2, 64, true, "bf16");
    expect_refused(LN_BF16, 2, 128, 128, 4, 2, 60, true, "head dim");
    expect_refused(LN_BF16, 2, 128, 128, 4, 2, 256, false, "head dim");
    expect_refused(LN_BF16, 2, 128, 128, 3, 2, 64, false, "multiple of Hkv");
    expect_refused(LN_BF16, 2, 256, 128, 4, 2, 64, true, "S >= T");
    /* the error message of the caller is left alone */
    ln_fail("an earlier message");
    supported_for(LN_BF16, 1, 8, 8, 2, 2, 60, false);
    assert_string_equal(ln_error_message(), "an earlier message");
    ln_error_clear();
    /* CPU tensors are never cuDNN's */
    ln_tensor *q = ln_tensor_new(LN_BF16, LN_CPU, 4, (int64_t[]){1, 128, 2, 64});
    ln_node *n = ln_node_begin(&cudnn_attention_op, 3, (ln_tensor *[]){q, q, q});
    assert_int_equal(ln_attention_cudnn_supported(n), 0);
    assert_non_null(strstr(ln_attention_cudnn_unsupported_reason(), "not on the GPU"));
    ln_tape_clear();
    ln_tensor_free(q);
    /* plans are rebuilt after the cache is dropped */
    ln_attention_cudnn_clear_cache();
    assert_int_equal(supported_for(LN_BF16, 2, 128, 128, 4, 2, 64, false), 1);
    expect_support(2, 77, 77, 4, 2, 64, false);
}

/* ---- dispatch: ln_attention with the cuDNN implementation selected ---- */

/* The op honours the setting: with cudnn asked for, a shape cuDNN refuses (f32) is an error
 * naming the reason rather than a silent fall back to our kernel; with own it runs. */
static void dispatch_honours_the_setting(void **state) {
    NEED_CUDNN();
    ln_tensor *q = ln_tensor_new(LN_F32, LN_CUDA, 4, (int64_t[]){1, 128, 2, 64});
    assert_non_null(q);
    ln_set_attention_impl(LN_ATTN_CUDNN);
    ln_tensor *o = ln_attention(q, q, q, true, 0.125);
    assert_null(o);
    assert_non_null(strstr(ln_error_message(), "attention_impl is cudnn"));
    ln_tape_clear();
    ln_error_clear();
    ln_set_attention_impl(LN_ATTN_OWN);
    o = ln_attention(q, q, q, true, 0.125);
    assert_non_null(o);
    ln_tape_clear();
    ln_tensor_free(q);
    ln_set_attention_impl(LN_ATTN_AUTO);
}

static void dispatch_matches_cpu(void **state) {
    NEED_CUDNN();
    ln_set_attention_impl(LN_ATTN_CUDNN);
    check_grid(false, ALIGNED_T, 3, 6000);
    check_grid(false, UNALIGNED_T, 2, 6500); /* those this cuDNN supports */
    ln_set_attention_impl(LN_ATTN_AUTO);
}

static void dispatch_causal_bottom_right(void **state) {
    NEED_CUDNN();
    ln_set_attention_impl(LN_ATTN_CUDNN);
    check_attention(false, 2, 128, 256, 4, 2, 64, true, 7000);
    check_attention(false, 2, 64, 192, 4, 2, 64, true, 7010); /* when this cuDNN supports it */
    ln_set_attention_impl(LN_ATTN_AUTO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cudnn_graphs_finalize_without_gpu),
        cmocka_unit_test(cudnn_support_checks),
        cmocka_unit_test(cudnn_matches_cpu),
        cmocka_unit_test(cudnn_unaligned_lengths),
        cmocka_unit_test(cudnn_causal_bottom_right),
        cmocka_unit_test(cudnn_odd_shapes),
        cmocka_unit_test(cudnn_self_attention_one_tensor),
        cmocka_unit_test(cudnn_gradients_accumulate),
        cmocka_unit_test(dispatch_honours_the_setting),
        cmocka_unit_test(dispatch_matches_cpu),
        cmocka_unit_test(dispatch_causal_bottom_right),
    };
    return gpu_run_tests(tests);
}
