/* Core ops: matmul, add/mul/scale, div_rows, concat_last, reductions, embedding, softmax,
 * cross-entropy, gelu, swiglu.
 * Each op gets a float64 gradient check, a forward check against an independent computation,
 * an f32-versus-f64 comparison (forward and gradients), and its error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

/* ---- helpers ---- */

static ln_tensor *ids_new(int ndim, const int64_t *shape, const int32_t *values) {
    ln_tensor *t = ln_tensor_new(LN_I32, LN_CPU, ndim, shape);
    memcpy(t->data, values, (size_t)t->numel * sizeof *values);
    return t;
}

/* A caller-owned copy of t in another dtype, requiring a gradient. */
static ln_tensor *copy_as(const ln_tensor *t, ln_dtype dtype) {
    ln_tensor *c = ln_tensor_new(dtype, LN_CPU, t->ndim, t->shape);
    assert_ok(ln_tensor_copy(c, t));
    c->requires_grad = ln_dtype_is_float(dtype);
    return c;
}

/* ln_backward seeds through ln_tensor_new(.., 0, NULL), whose memcpy from NULL UBSan rejects;
 * seed a 0-dim root here with a non-NULL shape pointer instead. */
static int backward_scalar(ln_tensor *root) {
    if (!root) return LN_ERR;
    int64_t unused[1] = {0};
    ln_tensor *one = ln_tensor_new(LN_F64, LN_CPU, 0, unused);
    ln_set(one, 0, 1.0);
    int status = ln_backward_from(root, one);
    ln_tensor_free(one);
    return status;
}

static double max_abs_diff(const ln_tensor *a, const ln_tensor *b) {
    assert_int_equal(a->numel, b->numel);
    double m = 0;
    for (int64_t i = 0; i < a->numel; i++) m = fmax(m, fabs(ln_get(a, i) - ln_get(b, i)));
    return m;
}

/* Runs f on f64 inputs and on f32 copies (int inputs shared), backward from one random seed, and
 * compares outputs and every float input's gradient within rel_tol. Each precision gets its own
 * tape: a backward replays every recorded node that has an output gradient. */
static void assert_f32_matches_f64(ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *in64, double rel_tol) {
    ln_tensor *in32[8];
    for (int i = 0; i < n; i++) {
        in32[i] = ln_dtype_is_float(in64[i]->dtype) ? copy_as(in64[i], LN_F32) : in64[i];
        ln_tensor_zero_grad(in64[i]);
    }
    ln_tape_clear();
    ln_tensor *y = f(in64, ctx);
    assert_tensor(y);
    ln_tensor *y64 = copy_as(y, LN_F64), *seed = ln_randn_f64(y->ndim, y->shape, 99);
    assert_ok(ln_backward_from(y, seed));
    ln_tape_clear();
    y = f(in32, ctx);
    assert_tensor(y);
    assert_int_equal(y->dtype, LN_F32);
    double err = test_rel_error(y, y64);
    if (!(err < rel_tol)) fail_msg("f32 output differs from f64 by %g", err);
    assert_ok(ln_backward_from(y, seed));
    for (int i = 0; i < n; i++) {
        if (!ln_dtype_is_float(in64[i]->dtype)) continue;
        assert_non_null(in64[i]->grad);
        assert_non_null(in32[i]->grad);
        err = test_rel_error(in32[i]->grad, in64[i]->grad);
        if (!(err < rel_tol)) fail_msg("f32 gradient of input %d differs from f64 by %g", i, err);
        ln_tensor_free(in32[i]);
        ln_tensor_zero_grad(in64[i]);
    }
    ln_tensor_free(seed);
    ln_tensor_free(y64);
    ln_tape_clear();
}

/* An offload-like hook: pack copies the tensor, so a backward that reads the live input instead of
 * what was saved sees the scrambled values below and gets the gradient wrong. */
static ln_tensor *packed[64];
static int n_packed;
static void *copy_pack(ln_tensor *t, void *ctx) {
    ln_tensor *c = ln_tensor_new_like(t);
    ln_tensor_copy(c, t);
    packed[n_packed++] = c;
    return c;
}
static ln_tensor *copy_unpack(void *p, void *ctx) { return p; }

static void assert_backward_uses_saved(ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *in) {
    ln_tensor *seed, *y, *ref[8] = {0};
    y = f(in, ctx);
    assert_tensor(y);
    seed = ln_randn_f64(y->ndim, y->shape, 7);
    for (int i = 0; i < n; i++) ln_tensor_zero_grad(in[i]);
    assert_ok(ln_backward_from(y, seed));
    for (int i = 0; i < n; i++)
        if (in[i]->requires_grad) {
            ref[i] = ln_tensor_new_like(in[i]);
            assert_ok(ln_tensor_copy(ref[i], in[i]->grad));
            ln_tensor_zero_grad(in[i]);
        }
    ln_tape_clear();

    ln_saved_hooks hooks = {copy_pack, copy_unpack, NULL};
    ln_set_saved_hooks(&hooks);
    n_packed = 0;
    y = f(in, ctx);
    assert_tensor(y);
    ln_tensor *orig[8] = {0};
    for (int i = 0; i < n; i++)
        if (ln_dtype_is_float(in[i]->dtype)) {
            orig[i] = ln_tensor_new_like(in[i]);
            assert_ok(ln_tensor_copy(orig[i], in[i]));
            for (int64_t j = 0; j < in[i]->numel; j++) ln_set(in[i], j, 1e3 * (double)(j % 7) - 5);
        }
    assert_ok(ln_backward_from(y, seed));
    ln_set_saved_hooks(NULL);
    for (int i = 0; i < n; i++) {
        if (orig[i]) assert_ok(ln_tensor_copy(in[i], orig[i]));
        if (ref[i]) assert_true(max_abs_diff(in[i]->grad, ref[i]) < 1e-12);
        ln_tensor_free(orig[i]);
        ln_tensor_free(ref[i]);
        ln_tensor_zero_grad(in[i]);
    }
    for (int i = 0; i < n_packed; i++) ln_tensor_free(packed[i]);
    ln_tensor_free(seed);
    ln_tape_clear();
}

static void assert_message_has(const char *needle) {
    if (!strstr(ln_error_message(), needle)) fail_msg("message \"%s\" lacks \"%s\"", ln_error_message(), needle);
}

/* ---- matmul ---- */

typedef struct {
    bool ta, tb;
} mm_ctx;

static ln_tensor *mm_fn(ln_tensor *const *in, void *ctx) {
    mm_ctx *c = ctx;
    return ln_matmul(in[0], in[1], c->ta, c->tb);
}

/* Naive reference: C[b, i, j] = sum_k op(A)[b, i, k] op(B)[b or 0, k, j]. */
static double naive_mm(const ln_tensor *a, const ln_tensor *b, bool ta, bool tb, int64_t batch, int64_t M, int64_t N,
                       int64_t K, int64_t bi, int64_t i, int64_t j) {
    bool shared = b->ndim == 2;
    double s = 0;
    for (int64_t k = 0; k < K; k++) {
        double av = ln_get(a, bi * M * K + (ta ? k * M + i : i * K + k));
        double bv = ln_get(b, (shared ? 0 : bi * K * N) + (tb ? j * K + k : k * N + j));
        s += av * bv;
    }
    (void)batch;
    return s;
}

/* a [batch dims..., M, K] (or transposed), b 2-D or batched, all four transpose combinations. */
static void check_matmul_case(int a_ndim, bool batched_b, uint64_t seed) {
    const int64_t B0 = 2, B1 = 3, M = 3, N = 5, K = 4;
    for (int combo = 0; combo < 4; combo++) {
        mm_ctx c = {combo & 1, combo & 2};
        int64_t ashape[4], bshape[4], lead[2] = {B0, B1};
        int nb = a_ndim - 2, bdim = batched_b ? a_ndim : 2;
        for (int i = 0; i < nb; i++) ashape[i] = bshape[i] = lead[i];
        ashape[nb] = c.ta ? K : M;
        ashape[nb + 1] = c.ta ? M : K;
        bshape[bdim - 2] = c.tb ? N : K;
        bshape[bdim - 1] = c.tb ? K : N;
        ln_tensor *in[2] = {ln_randn_f64(a_ndim, ashape, seed + combo), ln_randn_f64(bdim, bshape, seed + 10 + combo)};
        assert_gradcheck(mm_fn, &c, 2, in);

        ln_tensor *y = ln_matmul(in[0], in[1], c.ta, c.tb);
        assert_tensor(y);
        assert_int_equal(y->ndim, a_ndim);
        assert_int_equal(y->shape[a_ndim - 2], M);
        assert_int_equal(y->shape[a_ndim - 1], N);
        int64_t batch = y->numel / (M * N);
        for (int64_t b = 0; b < batch; b++)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double want = naive_mm(in[0], in[1], c.ta, c.tb, batch, M, N, K, b, i, j);
                    assert_true(fabs(ln_get(y, (b * M + i) * N + j) - want) < 1e-12);
                }
        ln_tape_clear();
        assert_f32_matches_f64(mm_fn, &c, 2, in, 1e-5);
        assert_backward_uses_saved(mm_fn, &c, 2, in);
        ln_tensor_free(in[0]);
        ln_tensor_free(in[1]);
    }
}

static void matmul_2d(void **state) { check_matmul_case(2, false, 100); }
static void matmul_batched_a_shared_b(void **state) { check_matmul_case(4, false, 200); }
static void matmul_batched_a_and_b(void **state) { check_matmul_case(3, true, 300); }

static void matmul_only_b_requires_grad(void **state) {
    mm_ctx c = {false, false};
    ln_tensor *in[2] = {ln_randn_f64(3, (int64_t[]){2, 3, 4}, 1), ln_randn_f64(2, (int64_t[]){4, 2}, 2)};
    in[0]->requires_grad = false;
    assert_gradcheck(mm_fn, &c, 2, in);
    assert_null(in[0]->grad);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void matmul_gradients_accumulate(void **state) {
    ln_tensor *a = ln_randn_f64(2, (int64_t[]){3, 4}, 5), *b = ln_randn_f64(2, (int64_t[]){4, 2}, 6);
    for (int pass = 0; pass < 2; pass++) {
        assert_ok(backward_scalar(ln_sum(ln_matmul(a, b, false, false))));
        ln_tape_clear();
    }
    /* d sum(AB)/dA[i, k] = sum_j B[k, j]; twice after two passes */
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) {
            double want = 2 * (ln_get(b, k * 2) + ln_get(b, k * 2 + 1));
            assert_true(fabs(ln_get(a->grad, i * 4 + k) - want) < 1e-12);
        }
    /* d sum(AB)/dB[k, j] = sum_i A[i, k]; twice */
    for (int k = 0; k < 4; k++) {
        double want = 2 * (ln_get(a, k) + ln_get(a, 4 + k) + ln_get(a, 8 + k));
        for (int j = 0; j < 2; j++) assert_true(fabs(ln_get(b->grad, k * 2 + j) - want) < 1e-12);
    }
    ln_tensor_free(a);
    ln_tensor_free(b);
}

static void matmul_bf16_close_to_f64(void **state) {
    ln_tensor *a = ln_randn_f64(3, (int64_t[]){2, 3, 8}, 7), *b = ln_randn_f64(2, (int64_t[]){8, 5}, 8);
    ln_tensor *a16 = copy_as(a, LN_BF16), *b16 = copy_as(b, LN_BF16);
    ln_tensor *y = ln_matmul(a, b, false, false), *y16 = ln_matmul(a16, b16, false, false);
    assert_tensor(y16);
    assert_int_equal(y16->dtype, LN_BF16);
    assert_true(test_rel_error(y16, y) < 2e-2);
    assert_ok(backward_scalar(ln_sum(y16)));
    assert_non_null(a16->grad);
    assert_true(fabs(ln_get(a16->grad, 0) - (ln_get(b16, 0) + ln_get(b16, 1) + ln_get(b16, 2) + ln_get(b16, 3) +
                                             ln_get(b16, 4))) < 5e-2);
    ln_tape_clear();
    ln_tensor_free(a);
    ln_tensor_free(b);
    ln_tensor_free(a16);
    ln_tensor_free(b16);
}

static void matmul_bad_shapes(void **state) {
    ln_tensor *a = ln_randn_f64(2, (int64_t[]){2, 3}, 1), *b = ln_randn_f64(2, (int64_t[]){4, 5}, 2);
    ln_tensor_set_name(a, "x");
    ln_tensor_set_name(b, "w_up");
    assert_null(ln_matmul(a, b, false, false));
    assert_message_has("[2, 3]");
    assert_message_has("[4, 5]");
    assert_message_has("w_up");
    ln_tensor *c = ln_randn_f64(3, (int64_t[]){2, 2, 3}, 3), *d = ln_randn_f64(3, (int64_t[]){3, 3, 4}, 4);
    assert_null(ln_matmul(c, d, false, false)); /* leading dims 2 vs 3 */
    assert_message_has("[3, 3, 4]");
    ln_tensor *e = ln_randn_f64(1, (int64_t[]){3}, 5);
    assert_null(ln_matmul(e, b, false, false));
    assert_message_has("[3]");
    assert_null(ln_matmul(a, c, true, false)); /* a 2-D a with a 3-D b is refused */
    assert_message_has("[2, 2, 3]");
    ln_tape_clear();
    ln_tensor_free(a);
    ln_tensor_free(b);
    ln_tensor_free(c);
    ln_tensor_free(d);
    ln_tensor_free(e);
}

/* ---- add, mul, scale ---- */

static ln_tensor *add_fn(ln_tensor *const *in, void *ctx) { return ln_add(in[0], in[1]); }
static ln_tensor *mul_fn(ln_tensor *const *in, void *ctx) { return ln_mul(in[0], in[1]); }
static ln_tensor *scale_fn(ln_tensor *const *in, void *ctx) { return ln_scale(in[0], -1.75); }
static ln_tensor *mul_self_fn(ln_tensor *const *in, void *ctx) { return ln_mul(in[0], in[0]); }

static void elementwise_case(ln_gradcheck_fn f, bool is_mul, int b_ndim, const int64_t *b_shape) {
    ln_tensor *in[2] = {ln_randn_f64(3, (int64_t[]){2, 3, 4}, 11), ln_randn_f64(b_ndim, b_shape, 12)};
    assert_gradcheck(f, NULL, 2, in);
    ln_tensor *y = f(in, NULL);
    assert_tensor(y);
    for (int64_t i = 0; i < 24; i++) {
        double a = ln_get(in[0], i), b = ln_get(in[1], i % in[1]->numel);
        assert_true(fabs(ln_get(y, i) - (is_mul ? a * b : a + b)) < 1e-15);
    }
    ln_tape_clear();
    assert_f32_matches_f64(f, NULL, 2, in, 1e-5);
    if (is_mul) assert_backward_uses_saved(f, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void add_same_shape(void **state) { elementwise_case(add_fn, false, 3, (int64_t[]){2, 3, 4}); }
static void add_broadcast(void **state) {
    elementwise_case(add_fn, false, 1, (int64_t[]){4});
    elementwise_case(add_fn, false, 2, (int64_t[]){3, 4});
}
static void mul_same_shape(void **state) { elementwise_case(mul_fn, true, 3, (int64_t[]){2, 3, 4}); }
static void mul_broadcast(void **state) {
    elementwise_case(mul_fn, true, 1, (int64_t[]){4});
    elementwise_case(mul_fn, true, 2, (int64_t[]){3, 4});
}

static void broadcast_gradient_sums_leading_dims(void **state) {
    /* y = a + b with b [2] under a [3, 2]: d sum(y) / db = 3 per element */
    ln_tensor *a = ln_randn_f64(2, (int64_t[]){3, 2}, 1), *b = ln_randn_f64(1, (int64_t[]){2}, 2);
    assert_ok(backward_scalar(ln_sum(ln_add(a, b))));
    assert_true(ln_get(b->grad, 0) == 3.0 && ln_get(b->grad, 1) == 3.0);
    ln_tape_clear();
    ln_tensor_free(a);
    ln_tensor_free(b);
}

static void mul_of_a_tensor_with_itself(void **state) {
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){5}, 3);
    assert_gradcheck(mul_self_fn, NULL, 1, &x);
    ln_tensor_free(x);
}

static void scale_values_and_gradient(void **state) {
    ln_tensor *x = ln_randn_f64(2, (int64_t[]){3, 2}, 13);
    assert_gradcheck(scale_fn, NULL, 1, &x);
    ln_tensor *y = ln_scale(x, -1.75);
    for (int i = 0; i < 6; i++) assert_true(ln_get(y, i) == -1.75 * ln_get(x, i));
    ln_tape_clear();
    assert_f32_matches_f64(scale_fn, NULL, 1, &x, 1e-5);
    ln_tensor_free(x);
}

static void elementwise_bad_shapes(void **state) {
    ln_tensor *a = ln_randn_f64(2, (int64_t[]){2, 3}, 1), *b = ln_randn_f64(1, (int64_t[]){2}, 2);
    ln_tensor_set_name(b, "bias");
    assert_null(ln_add(a, b));
    assert_message_has("[2]");
    assert_message_has("[2, 3]");
    assert_message_has("bias");
    assert_null(ln_mul(b, a)); /* b larger than a */
    assert_message_has("[2, 3]");
    ln_tensor *ids = ids_new(1, (int64_t[]){3}, (int32_t[]){0, 1, 2});
    assert_null(ln_add(a, ids));
    assert_message_has("i32");
    ln_tape_clear();
    ln_tensor_free(a);
    ln_tensor_free(b);
    ln_tensor_free(ids);
}

/* ---- div_rows and concat_last ---- */

static ln_tensor *div_rows_fn(ln_tensor *const *in, void *ctx) { return ln_div_rows(in[0], in[1], 0.25); }
static ln_tensor *concat_fn(ln_tensor *const *in, void *ctx) { return ln_concat_last(in[0], in[1]); }
static ln_tensor *concat_self_fn(ln_tensor *const *in, void *ctx) { return ln_concat_last(in[0], in[0]); }

static void div_rows(void **state) {
    ln_tensor *in[2] = {ln_randn_f64(3, (int64_t[]){2, 3, 4}, 14), ln_randn_f64(3, (int64_t[]){2, 3, 1}, 15)};
    for (int64_t r = 0; r < 6; r++) ln_set(in[1], r, 0.5 + fabs(ln_get(in[1], r))); /* away from -eps */
    assert_gradcheck(div_rows_fn, NULL, 2, in);
    ln_tensor *y = div_rows_fn(in, NULL);
    assert_tensor(y);
    for (int64_t i = 0; i < 24; i++) assert_true(ln_get(y, i) == ln_get(in[0], i) / (ln_get(in[1], i / 4) + 0.25));
    ln_tape_clear();
    assert_f32_matches_f64(div_rows_fn, NULL, 2, in, 1e-5);
    assert_backward_uses_saved(div_rows_fn, NULL, 2, in);
    in[0]->requires_grad = false; /* only the divisor's gradient */
    assert_gradcheck(div_rows_fn, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void concat_last(void **state) {
    ln_tensor *in[2] = {ln_randn_f64(3, (int64_t[]){2, 3, 4}, 16), ln_randn_f64(3, (int64_t[]){2, 3, 2}, 17)};
    assert_gradcheck(concat_fn, NULL, 2, in);
    assert_gradcheck(concat_self_fn, NULL, 1, in); /* both halves' gradients reach x */
    ln_tensor *y = concat_fn(in, NULL);
    assert_tensor(y);
    assert_int_equal(y->shape[2], 6);
    for (int64_t i = 0; i < 36; i++) {
        int64_t r = i / 6, j = i % 6;
        assert_true(ln_get(y, i) == (j < 4 ? ln_get(in[0], r * 4 + j) : ln_get(in[1], r * 2 + j - 4)));
    }
    ln_tape_clear();
    assert_f32_matches_f64(concat_fn, NULL, 2, in, 1e-6);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void div_rows_and_concat_bad_shapes(void **state) {
    ln_tensor *a = ln_randn_f64(2, (int64_t[]){2, 3}, 1), *d2 = ln_randn_f64(2, (int64_t[]){2, 2}, 2);
    ln_tensor *b = ln_randn_f64(2, (int64_t[]){3, 3}, 3), *a32 = copy_as(a, LN_F32);
    ln_tensor_set_name(d2, "den");
    assert_null(ln_div_rows(a, d2, 0));
    assert_message_has("den [2, 2]");
    assert_null(ln_div_rows(a32, ln_reshape(d2, 2, (int64_t[]){4, 1}), 0));
    assert_message_has("[4, 1]");
    assert_null(ln_concat_last(a, b));
    assert_message_has("[3, 3]");
    assert_null(ln_concat_last(a, a32));
    assert_message_has("f32");
    ln_tape_clear();
    ln_tensor_free(a);
    ln_tensor_free(d2);
    ln_tensor_free(b);
    ln_tensor_free(a32);
}

/* ---- reductions ---- */

static ln_tensor *sum_fn(ln_tensor *const *in, void *ctx) { return ln_sum(in[0]); }
static ln_tensor *mean_fn(ln_tensor *const *in, void *ctx) { return ln_mean(in[0]); }
static ln_tensor *sum_last_fn(ln_tensor *const *in, void *ctx) { return ln_sum_last(in[0]); }

static void reductions(void **state) {
    ln_tensor *x = ln_randn_f64(3, (int64_t[]){2, 3, 4}, 21);
    assert_gradcheck(sum_fn, NULL, 1, &x);
    assert_gradcheck(mean_fn, NULL, 1, &x);
    assert_gradcheck(sum_last_fn, NULL, 1, &x);
    double total = 0, rows[6] = {0};
    for (int i = 0; i < 24; i++) {
        total += ln_get(x, i);
        rows[i / 4] += ln_get(x, i);
    }
    ln_tensor *s = ln_sum(x), *m = ln_mean(x), *r = ln_sum_last(x);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(m->ndim, 0);
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->shape[0], 2);
    assert_int_equal(r->shape[1], 3);
    assert_true(fabs(ln_get(s, 0) - total) < 1e-12);
    assert_true(fabs(ln_get(m, 0) - total / 24) < 1e-12);
    for (int i = 0; i < 6; i++) assert_true(fabs(ln_get(r, i) - rows[i]) < 1e-12);
    ln_tape_clear();
    assert_f32_matches_f64(sum_fn, NULL, 1, &x, 1e-5);
    assert_f32_matches_f64(mean_fn, NULL, 1, &x, 1e-5);
    assert_f32_matches_f64(sum_last_fn, NULL, 1, &x, 1e-5);
    ln_tensor_free(x);
}

static void reductions_bad_inputs(void **state) {
    ln_tensor *s = ln_tensor_new(LN_F64, LN_CPU, 0, (int64_t[]){1});
    ln_tensor_set_name(s, "scalar");
    assert_null(ln_sum_last(s));
    assert_message_has("scalar");
    ln_tensor *e = ln_tensor_new(LN_F64, LN_CPU, 2, (int64_t[]){0, 3});
    assert_null(ln_mean(e));
    assert_message_has("[0, 3]");
    ln_tape_clear();
    ln_tensor_free(s);
    ln_tensor_free(e);
}

/* ---- embedding ---- */

static ln_tensor *embedding_fn(ln_tensor *const *in, void *ctx) { return ln_embedding(in[0], in[1]); }

static void embedding(void **state) {
    ln_tensor *in[2] = {ln_randn_f64(2, (int64_t[]){5, 3}, 31),
                        ids_new(2, (int64_t[]){2, 3}, (int32_t[]){1, 4, 1, 0, 1, 4})};
    assert_gradcheck(embedding_fn, NULL, 2, in);
    ln_tensor *y = ln_embedding(in[0], in[1]);
    assert_tensor(y);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[2], 3);
    const int32_t *id = in[1]->data;
    for (int p = 0; p < 6; p++)
        for (int d = 0; d < 3; d++) assert_true(ln_get(y, p * 3 + d) == ln_get(in[0], id[p] * 3 + d));
    /* repeated ids add up: with dy = 1, row 1 appears three times, row 2 never */
    ln_tensor_zero_grad(in[0]);
    assert_ok(backward_scalar(ln_sum(y)));
    for (int d = 0; d < 3; d++) {
        assert_true(ln_get(in[0]->grad, 1 * 3 + d) == 3.0);
        assert_true(ln_get(in[0]->grad, 4 * 3 + d) == 2.0);
        assert_true(ln_get(in[0]->grad, 2 * 3 + d) == 0.0);
    }
    ln_tape_clear();
    ln_tensor_zero_grad(in[0]);
    assert_f32_matches_f64(embedding_fn, NULL, 2, in, 1e-5);
    assert_backward_uses_saved(embedding_fn, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void embedding_bad_ids(void **state) {
    ln_tensor *w = ln_randn_f64(2, (int64_t[]){5, 3}, 32);
    ln_tensor *ids = ids_new(1, (int64_t[]){4}, (int32_t[]){0, 2, 7, 1});
    assert_null(ln_embedding(w, ids));
    assert_message_has("id 7");
    assert_message_has("position 2");
    assert_message_has("5");
    ((int32_t *)ids->data)[2] = 2;
    ((int32_t *)ids->data)[3] = -3;
    assert_null(ln_embedding(w, ids));
    assert_message_has("id -3");
    assert_message_has("position 3");
    ln_tensor *w1 = ln_randn_f64(1, (int64_t[]){5}, 33);
    assert_null(ln_embedding(w1, ids));
    assert_message_has("[5]");
    ln_tape_clear();
    ln_tensor_free(w);
    ln_tensor_free(w1);
    ln_tensor_free(ids);
}

/* ---- softmax ---- */

static ln_tensor *softmax_fn(ln_tensor *const *in, void *ctx) { return ln_softmax(in[0]); }

static void softmax(void **state) {
    ln_tensor *x = ln_randn_f64(3, (int64_t[]){2, 3, 5}, 41);
    assert_gradcheck(softmax_fn, NULL, 1, &x);
    ln_tensor *y = ln_softmax(x);
    assert_tensor(y);
    for (int r = 0; r < 6; r++) {
        double z = 0, total = 0;
        for (int j = 0; j < 5; j++) z += exp(ln_get(x, r * 5 + j));
        for (int j = 0; j < 5; j++) {
            assert_true(fabs(ln_get(y, r * 5 + j) - exp(ln_get(x, r * 5 + j)) / z) < 1e-14);
            total += ln_get(y, r * 5 + j);
        }
        assert_true(fabs(total - 1) < 1e-14);
    }
    ln_tape_clear();
    assert_f32_matches_f64(softmax_fn, NULL, 1, &x, 1e-5);
    assert_backward_uses_saved(softmax_fn, NULL, 1, &x);
    ln_tensor_free(x);
}

static void softmax_is_stable(void **state) {
    ln_tensor *x = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){3});
    ln_set(x, 0, 1000);
    ln_set(x, 1, 1000);
    ln_set(x, 2, -1000);
    ln_tensor *y = ln_softmax(x);
    assert_tensor(y);
    assert_true(fabs(ln_get(y, 0) - 0.5) < 1e-7 && fabs(ln_get(y, 1) - 0.5) < 1e-7 && ln_get(y, 2) == 0.0);
    ln_tape_clear();
    ln_tensor_free(x);
}

/* ---- cross-entropy ---- */

static ln_tensor *ce_fn(ln_tensor *const *in, void *ctx) { return ln_cross_entropy(in[0], in[1]); }

static void cross_entropy(void **state) {
    ln_tensor *in[2] = {ln_randn_f64(3, (int64_t[]){2, 3, 4}, 51),
                        ids_new(2, (int64_t[]){2, 3}, (int32_t[]){3, -1, 0, 2, 2, -1})};
    assert_gradcheck(ce_fn, NULL, 2, in);
    /* by hand: mean over the four counted rows of log(sum exp) - logit[target] */
    const int32_t *t = in[1]->data;
    double want = 0;
    for (int r = 0; r < 6; r++) {
        if (t[r] == -1) continue;
        double z = 0;
        for (int j = 0; j < 4; j++) z += exp(ln_get(in[0], r * 4 + j));
        want += log(z) - ln_get(in[0], r * 4 + t[r]);
    }
    ln_tensor *loss = ln_cross_entropy(in[0], in[1]);
    assert_tensor(loss);
    assert_int_equal(loss->ndim, 0);
    assert_true(fabs(ln_get(loss, 0) - want / 4) < 1e-12);
    /* ignored rows get no gradient */
    ln_tensor_zero_grad(in[0]);
    assert_ok(backward_scalar(loss));
    for (int j = 0; j < 4; j++) assert_true(ln_get(in[0]->grad, 1 * 4 + j) == 0.0);
    ln_tape_clear();
    ln_tensor_zero_grad(in[0]);
    assert_f32_matches_f64(ce_fn, NULL, 2, in, 1e-5);
    assert_backward_uses_saved(ce_fn, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

/* With ln_set_grad_over_inputs on, cross_entropy's backward writes dlogits over logits that only
 * it saved (the trainer's case): the same gradients bit for bit, one [rows, V] buffer less at the
 * peak; logits also saved by another node (mul) keep their values and give the same result too. */
static double over_inputs_run(bool over, bool logits_shared, ln_tensor *x, ln_tensor *w, ln_tensor *t, double *dx) {
    ln_set_grad_over_inputs(over);
    ln_tensor_zero_grad(x);
    ln_tensor *logits = ln_matmul(x, w, false, true);
    ln_tensor *loss = ln_cross_entropy(logits, t);
    if (logits_shared) loss = ln_add(loss, ln_scale(ln_sum(ln_mul(logits, logits)), 1e-3));
    assert_tensor(loss);
    assert_ok(backward_scalar(loss));
    for (int64_t i = 0; i < x->numel; i++) dx[i] = ln_get(x->grad, i);
    double peak = (double)ln_arena_peak_bytes();
    ln_tape_clear();
    ln_set_grad_over_inputs(false);
    return peak;
}

static void cross_entropy_writes_over_dead_logits(void **state) {
    enum { ROWS = 64, D = 8, V = 512 };
    ln_tensor *x64 = ln_randn_f64(2, (int64_t[]){ROWS, D}, 53), *w64 = ln_randn_f64(2, (int64_t[]){V, D}, 54);
    ln_tensor *x = ln_tensor_new(LN_F32, LN_CPU, 2, x64->shape), *w = ln_tensor_new(LN_F32, LN_CPU, 2, w64->shape);
    ln_tensor_copy(x, x64);
    ln_tensor_copy(w, w64);
    x->requires_grad = true;
    int32_t ids[ROWS];
    for (int r = 0; r < ROWS; r++) ids[r] = (r * 37) % V;
    ln_tensor *t = ids_new(1, (int64_t[]){ROWS}, ids);
    static double a[ROWS * D], b[ROWS * D];
    for (int shared = 0; shared < 2; shared++) {
        double peak_plain = over_inputs_run(false, shared, x, w, t, a);
        double peak_over = over_inputs_run(true, shared, x, w, t, b);
        assert_memory_equal(a, b, sizeof a);
        const double logits_bytes = (double)ROWS * V * sizeof(float);
        if (shared)
            assert_true(peak_over == peak_plain);
        else
            assert_true(peak_over <= peak_plain - logits_bytes);
    }
    ln_tensor *all[] = {x64, w64, x, w, t};
    for (int i = 0; i < 5; i++) ln_tensor_free(all[i]);
}

static void cross_entropy_uniform_is_log_v(void **state) {
    ln_tensor *logits = ln_tensor_new(LN_F32, LN_CPU, 2, (int64_t[]){3, 50});
    for (int i = 0; i < 150; i++) ln_set(logits, i, 2.5);
    ln_tensor *t = ids_new(1, (int64_t[]){3}, (int32_t[]){0, 49, 17});
    ln_tensor *loss = ln_cross_entropy(logits, t);
    assert_tensor(loss);
    assert_true(fabs(ln_get(loss, 0) - log(50.0)) < 1e-6);
    ln_tape_clear();
    ln_tensor_free(logits);
    ln_tensor_free(t);
}

static void cross_entropy_saves_only_lse_beyond_inputs(void **state) {
    ln_tensor *logits = ln_randn_f64(2, (int64_t[]){3, 7}, 52);
    ln_tensor *t = ids_new(1, (int64_t[]){3}, (int32_t[]){0, 6, 3});
    ln_saved_hooks hooks = {copy_pack, copy_unpack, NULL};
    ln_set_saved_hooks(&hooks);
    n_packed = 0;
    ln_tensor *loss = ln_cross_entropy(logits, t);
    ln_set_saved_hooks(NULL);
    assert_tensor(loss);
    assert_int_equal(n_packed, 3); /* logits, targets, and the [3] log-sum-exp */
    assert_int_equal(packed[2]->numel, 3);
    for (int i = 0; i < n_packed; i++) ln_tensor_free(packed[i]);
    ln_tape_clear();
    ln_tensor_free(logits);
    ln_tensor_free(t);
}

static void cross_entropy_all_ignored(void **state) {
    ln_tensor *logits = ln_randn_f64(2, (int64_t[]){2, 3}, 53);
    ln_tensor *t = ids_new(1, (int64_t[]){2}, (int32_t[]){-1, -1});
    ln_tensor *loss = ln_cross_entropy(logits, t);
    assert_tensor(loss);
    assert_true(ln_get(loss, 0) == 0.0);
    assert_ok(backward_scalar(loss));
    for (int i = 0; i < 6; i++) assert_true(ln_get(logits->grad, i) == 0.0);
    ln_tape_clear();
    ln_tensor_free(logits);
    ln_tensor_free(t);
}

static void cross_entropy_bad_targets(void **state) {
    ln_tensor *logits = ln_randn_f64(2, (int64_t[]){3, 4}, 54);
    ln_tensor *t = ids_new(1, (int64_t[]){3}, (int32_t[]){0, 9, 1});
    assert_null(ln_cross_entropy(logits, t));
    assert_message_has("target 9");
    assert_message_has("position 1");
    ((int32_t *)t->data)[1] = -2;
    assert_null(ln_cross_entropy(logits, t));
    assert_message_has("target -2");
    ln_tensor *t2 = ids_new(1, (int64_t[]){2}, (int32_t[]){0, 1});
    assert_null(ln_cross_entropy(logits, t2));
    assert_message_has("[3, 4]");
    assert_message_has("[2]");
    ln_tape_clear();
    ln_tensor_free(logits);
    ln_tensor_free(t);
    ln_tensor_free(t2);
}

/* ---- gelu, swiglu ---- */

static ln_tensor *gelu_fn(ln_tensor *const *in, void *ctx) { return ln_gelu(in[0]); }
static ln_tensor *swiglu_fn(ln_tensor *const *in, void *ctx) { return ln_swiglu(in[0], in[1]); }

static void gelu(void **state) {
    ln_tensor *x = ln_randn_f64(2, (int64_t[]){3, 4}, 61);
    assert_gradcheck(gelu_fn, NULL, 1, &x);
    ln_tensor *y = ln_gelu(x);
    for (int i = 0; i < 12; i++) {
        double v = ln_get(x, i);
        double want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        assert_true(fabs(ln_get(y, i) - want) < 1e-14);
    }
    ln_tape_clear();
    /* known values of the tanh approximation (as PyTorch's approximate="tanh") */
    ln_tensor *k = ln_tensor_new(LN_F64, LN_CPU, 1, (int64_t[]){3});
    ln_set(k, 0, 1.0);
    ln_set(k, 1, -1.0);
    ln_set(k, 2, 0.0);
    ln_tensor *ky = ln_gelu(k);
    assert_true(fabs(ln_get(ky, 0) - 0.841192) < 1e-6);
    assert_true(fabs(ln_get(ky, 1) + 0.158808) < 1e-6);
    assert_true(ln_get(ky, 2) == 0.0);
    ln_tape_clear();
    assert_f32_matches_f64(gelu_fn, NULL, 1, &x, 1e-5);
    assert_backward_uses_saved(gelu_fn, NULL, 1, &x);
    ln_tensor_free(k);
    ln_tensor_free(x);
}

static void swiglu(void **state) {
    ln_tensor *in[2] = {ln_randn_f64(2, (int64_t[]){3, 4}, 71), ln_randn_f64(2, (int64_t[]){3, 4}, 72)};
    assert_gradcheck(swiglu_fn, NULL, 2, in);
    ln_tensor *y = ln_swiglu(in[0], in[1]);
    for (int i = 0; i < 12; i++) {
        double g = ln_get(in[0], i);
        assert_true(fabs(ln_get(y, i) - g / (1 + exp(-g)) * ln_get(in[1], i)) < 1e-14);
    }
    ln_tape_clear();
    assert_f32_matches_f64(swiglu_fn, NULL, 2, in, 1e-5);
    assert_backward_uses_saved(swiglu_fn, NULL, 2, in);
    ln_tensor *bad = ln_randn_f64(2, (int64_t[]){4, 3}, 73);
    assert_null(ln_swiglu(in[0], bad));
    assert_message_has("[4, 3]");
    ln_tape_clear();
    ln_tensor_free(bad);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void null_inputs_propagate(void **state) {
    ln_tensor *x = ln_randn_f64(2, (int64_t[]){2, 2}, 1);
    assert_null(ln_matmul(NULL, x, false, false));
    assert_null(ln_add(x, NULL));
    assert_null(ln_mul(NULL, x));
    assert_null(ln_scale(NULL, 2));
    assert_null(ln_sum(NULL));
    assert_null(ln_mean(NULL));
    assert_null(ln_sum_last(NULL));
    assert_null(ln_embedding(x, NULL));
    assert_null(ln_softmax(NULL));
    assert_null(ln_cross_entropy(NULL, NULL));
    assert_null(ln_gelu(NULL));
    assert_null(ln_swiglu(x, NULL));
    assert_null(ln_div_rows(x, NULL, 0));
    assert_null(ln_concat_last(NULL, x));
    ln_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matmul_2d),
        cmocka_unit_test(matmul_batched_a_shared_b),
        cmocka_unit_test(matmul_batched_a_and_b),
        cmocka_unit_test(matmul_only_b_requires_grad),
        cmocka_unit_test(matmul_gradients_accumulate),
        cmocka_unit_test(matmul_bf16_close_to_f64),
        cmocka_unit_test(matmul_bad_shapes),
        cmocka_unit_test(add_same_shape),
        cmocka_unit_test(add_broadcast),
        cmocka_unit_test(mul_same_shape),
        cmocka_unit_test(mul_broadcast),
        cmocka_unit_test(broadcast_gradient_sums_leading_dims),
        cmocka_unit_test(mul_of_a_tensor_with_itself),
        cmocka_unit_test(scale_values_and_gradient),
        cmocka_unit_test(elementwise_bad_shapes),
        cmocka_unit_test(div_rows),
        cmocka_unit_test(concat_last),
        cmocka_unit_test(div_rows_and_concat_bad_shapes),
        cmocka_unit_test(reductions),
        cmocka_unit_test(reductions_bad_inputs),
        cmocka_unit_test(embedding),
        cmocka_unit_test(embedding_bad_ids),
        cmocka_unit_test(softmax),
        cmocka_unit_test(softmax_is_stable),
        cmocka_unit_test(cross_entropy),
        cmocka_unit_test(cross_entropy_writes_over_dead_logits),
        cmocka_unit_test(cross_entropy_uniform_is_log_v),
        cmocka_unit_test(cross_entropy_saves_only_lse_beyond_inputs),
        cmocka_unit_test(cross_entropy_all_ignored),
        cmocka_unit_test(cross_entropy_bad_targets),
        cmocka_unit_test(gelu),
        cmocka_unit_test(swiglu),
        cmocka_unit_test(null_inputs_propagate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
