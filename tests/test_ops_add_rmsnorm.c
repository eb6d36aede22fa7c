/* The fused residual step ln_add_rmsnorm: both outputs' gradients against float64 central
 * differences (the sum read downstream, the norm's result, both, a chain of two steps, x + x),
 * bit-for-bit equality with ln_add followed by ln_rmsnorm in f64, f32 and bf16 (values and every
 * gradient), a backward that reads only what went through the saved-tensor hook, and one-line
 * errors for bad inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testing.h"

static ln_tensor *randn(int ndim, const int64_t *shape, uint64_t seed) {
    ln_tensor *t = ln_randn_f64(ndim, shape, seed);
    if (!t) fail_msg("randn: %s", ln_error_message());
    return t;
}

/* A caller-owned copy in another dtype, requiring a gradient. */
static ln_tensor *copy_as(const ln_tensor *src, ln_dtype dtype) {
    ln_tensor *t = ln_tensor_new(dtype, LN_CPU, src->ndim, src->shape);
    if (!t || ln_tensor_copy(t, src)) fail_msg("copy: %s", ln_error_message());
    t->requires_grad = true;
    return t;
}

static void free_all(int n, ln_tensor **t) {
    for (int i = 0; i < n; i++) ln_tensor_free(t[i]);
}

/* ---- what the gradchecks build ---- */

typedef enum {
    BOTH,      /* y + 0.5 sum: gradient reaches the sum from its reader and through the norm */
    Y_ONLY,    /* the sum unread: d(sum) only through the norm */
    SUM_ONLY,  /* y unread: no norm backward, x and delta take silu's gradient */
    CHAIN,     /* two residual steps, the second's delta made from the first's y, as in a model */
    SAME,      /* delta = x */
} shape_of_loss;

typedef struct {
    shape_of_loss kind;
    double eps;
    bool fused; /* false: the same graph through ln_add then ln_rmsnorm */
} ar_ctx;

static ln_tensor *step(const ar_ctx *c, ln_tensor *x, ln_tensor *delta, ln_tensor *w, ln_tensor **sum) {
    if (c->fused) return ln_add_rmsnorm(x, delta, w, c->eps, sum);
    *sum = ln_add(x, delta);
    return ln_rmsnorm(*sum, w, c->eps);
}

/* in: x, delta, weight (and for CHAIN a second weight) */
static ln_tensor *loss_of(ln_tensor *const *in, void *ctx) {
    const ar_ctx *c = ctx;
    ln_tensor *s = NULL, *s2 = NULL, *y;
    switch (c->kind) {
    case BOTH:
        y = step(c, in[0], in[1], in[2], &s);
        return ln_add(y, ln_scale(s, 0.5));
    case Y_ONLY:
        return step(c, in[0], in[1], in[2], &s);
    case SUM_ONLY:
        y = step(c, in[0], in[1], in[2], &s);
        return y ? ln_silu(s) : NULL;
    case CHAIN:
        y = step(c, in[0], in[1], in[2], &s);
        y = step(c, s, ln_silu(y), in[3], &s2);
        return ln_add(y, ln_scale(s2, -0.3));
    case SAME:
        y = step(c, in[0], in[0], in[1], &s);
        return ln_add(y, ln_scale(s, 0.7));
    }
    return NULL;
}

static void gradcheck_kind(shape_of_loss kind, int n, uint64_t seed) {
    int64_t shape[3] = {2, 3, 6}, D = 6;
    ln_tensor *in[4] = {randn(3, shape, seed), randn(3, shape, seed + 1), randn(1, &D, seed + 2),
                        randn(1, &D, seed + 3)};
    if (kind == SAME) { /* x, weight */
        ln_tensor_free(in[1]);
        in[1] = in[2];
        in[2] = in[3];
        in[3] = NULL;
    }
    ar_ctx c = {kind, 1e-5, true};
    assert_gradcheck(loss_of, &c, n, in);
    /* and with some inputs left out of the gradient */
    in[0]->requires_grad = false;
    assert_gradcheck(loss_of, &c, n, in);
    in[0]->requires_grad = true;
    in[n - 1]->requires_grad = false;
    assert_gradcheck(loss_of, &c, n, in);
    for (int i = 0; i < 4; i++) ln_tensor_free(in[i]);
}

static void gradcheck_both_outputs(void **state) { gradcheck_kind(BOTH, 3, 10); }
static void gradcheck_y_only(void **state) { gradcheck_kind(Y_ONLY, 3, 20); }
static void gradcheck_sum_only(void **state) { gradcheck_kind(SUM_ONLY, 3, 30); }
static void gradcheck_chain_of_two(void **state) { gradcheck_kind(CHAIN, 4, 40); }
static void gradcheck_delta_is_x(void **state) { gradcheck_kind(SAME, 2, 50); }

/* ---- the same numbers as ln_add then ln_rmsnorm ---- */

static void assert_bits_equal(const ln_tensor *a, const ln_tensor *b, const char *what) {
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->numel, b->numel);
    if (memcmp(a->data, b->data, (size_t)a->numel * ln_dtype_size(a->dtype)))
        fail_msg("%s: fused and unfused differ (rel. error %g)", what, test_rel_error(a, b));
}

/* Runs loss_of fused and unfused on copies (dtype) of the same inputs, seeds both with one
 * weighting, and requires identical bits in the loss's value and every input's gradient. Inputs
 * also carry a prior gradient, so accumulation onto an existing one is covered too. */
static void equal_to_unfused(shape_of_loss kind, ln_dtype dtype, int n, uint64_t seed) {
    int64_t shape[2] = {5, 24}, D = 24;
    ln_tensor *ref[4] = {randn(2, shape, seed), randn(2, shape, seed + 1), randn(1, &D, seed + 2),
                         randn(1, &D, seed + 3)};
    if (kind == SAME) {
        ln_tensor *t = ref[1];
        ref[1] = ref[2], ref[2] = ref[3], ref[3] = t;
    }
    ln_tensor *in[2][4], *out[2];
    for (int p = 0; p < 2; p++) {
        for (int i = 0; i < n; i++) {
            in[p][i] = copy_as(ref[i], dtype);
            ln_tensor *g = ln_grad_of(in[p][i]);
            assert_tensor(g);
            for (int64_t j = 0; j < g->numel; j++) ln_set(g, j, 0.01 * (double)(j % 5) - 0.02);
        }
        ar_ctx c = {kind, 1e-5, p == 1};
        ln_tensor *loss = loss_of(in[p], &c);
        assert_tensor(loss);
        ln_tensor *seed_t = ln_tensor_new(loss->dtype, LN_CPU, loss->ndim, loss->shape);
        for (int64_t j = 0; j < seed_t->numel; j++) ln_set(seed_t, j, sin(0.37 * (double)j + 0.1));
        assert_ok(ln_backward_from(loss, seed_t));
        out[p] = ln_tensor_new_like(loss);
        assert_ok(ln_tensor_copy(out[p], loss));
        ln_tensor_free(seed_t);
        ln_tape_clear();
    }
    assert_bits_equal(out[1], out[0], "output");
    for (int i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "d(input %d)", i);
        assert_bits_equal(in[1][i]->grad, in[0][i]->grad, what);
    }
    for (int p = 0; p < 2; p++) free_all(n, in[p]);
    free_all(2, out);
    free_all(4, ref);
}

static void equal_in(ln_dtype dtype) {
    equal_to_unfused(BOTH, dtype, 3, 100);
    equal_to_unfused(Y_ONLY, dtype, 3, 110);
    equal_to_unfused(SUM_ONLY, dtype, 3, 120);
    equal_to_unfused(CHAIN, dtype, 4, 130);
    equal_to_unfused(SAME, dtype, 2, 140);
}

static void equals_add_then_rmsnorm_f64(void **state) { equal_in(LN_F64); }
static void equals_add_then_rmsnorm_f32(void **state) { equal_in(LN_F32); }
static void equals_add_then_rmsnorm_bf16(void **state) { equal_in(LN_BF16); }

/* The sum is x + delta as stored, and y is rmsnorm of it: both outputs checked directly. */
static void outputs_are_the_sum_and_its_norm(void **state) {
    int64_t shape[2] = {3, 8}, D = 8;
    ln_tensor *x = randn(2, shape, 200), *d = randn(2, shape, 201), *w = randn(1, &D, 202), *s = NULL;
    ln_tensor *y = ln_add_rmsnorm(x, d, w, 1e-6, &s);
    assert_tensor(y);
    assert_tensor(s);
    assert_true(y != s);
    assert_true(s->requires_grad && y->requires_grad);
    for (int64_t r = 0; r < 3; r++) {
        double ss = 0;
        for (int64_t i = 0; i < D; i++) {
            double v = ln_get(x, r * D + i) + ln_get(d, r * D + i);
            assert_true(ln_get(s, r * D + i) == v);
            ss += v * v;
        }
        double rr = 1.0 / sqrt(ss / (double)D + 1e-6);
        for (int64_t i = 0; i < D; i++)
            assert_true(fabs(ln_get(y, r * D + i) - ln_get(s, r * D + i) * rr * ln_get(w, i)) < 1e-12);
    }
    assert_int_equal(ln_tape_size(), 1); /* one node for both */
    ln_tape_clear();
    free_all(3, (ln_tensor *[]){x, d, w});
}

/* ---- backward reads only what went through the saved-tensor hook ---- */

static ln_tensor *copies[16];
static int n_copies;
static void *copy_pack(ln_tensor *t, void *ctx) { /* an "offload": a private copy */
    ln_tensor *c = ln_tensor_new_like(t);
    if (!c || ln_tensor_copy(c, t) || n_copies == 16) fail_msg("copy_pack: %s", ln_error_message());
    return copies[n_copies++] = c;
}
static ln_tensor *copy_unpack(void *packed, void *ctx) { return packed; }

static void backward_uses_only_saved_tensors(void **state) {
    int64_t shape[2] = {4, 6}, D = 6;
    ln_tensor *ref[3] = {randn(2, shape, 300), randn(2, shape, 301), randn(1, &D, 302)}, *hooked[3];
    for (int i = 0; i < 3; i++) hooked[i] = copy_as(ref[i], LN_F64);
    ln_tensor *seed = randn(2, shape, 303), *y_ref = NULL;
    for (int pass = 0; pass < 2; pass++) {
        ln_tensor **in = pass ? hooked : ref, *s;
        if (pass) {
            ln_saved_hooks hooks = {copy_pack, copy_unpack, NULL};
            ln_set_saved_hooks(&hooks);
            n_copies = 0;
        }
        ln_tensor *y = ln_add_rmsnorm(in[0], in[1], in[2], 1e-5, &s);
        ln_tensor *loss = ln_add(y, ln_scale(s, 0.5));
        assert_tensor(loss);
        if (pass) { /* clobber the inputs and the sum: backward must find them in the packed copies */
            for (int i = 0; i < 3; i++)
                for (int64_t j = 0; j < in[i]->numel; j++) ln_set(in[i], j, 1e6);
            for (int64_t j = 0; j < s->numel; j++) ln_set(s, j, -1e6);
        }
        assert_ok(ln_backward_from(loss, seed));
        if (pass) {
            ln_set_saved_hooks(NULL);
            assert_int_equal(n_copies, 3); /* weight, sum, rrms */
            assert_true(test_rel_error(loss, y_ref) < 1e-14);
        } else {
            y_ref = ln_tensor_new_like(loss);
            assert_ok(ln_tensor_copy(y_ref, loss));
        }
        ln_tape_clear();
    }
    for (int i = 0; i < 3; i++) assert_true(test_rel_error(hooked[i]->grad, ref[i]->grad) < 1e-14);
    free_all(n_copies, copies);
    free_all(3, ref);
    free_all(3, hooked);
    free_all(2, (ln_tensor *[]){seed, y_ref});
}

/* ---- bad inputs: NULL and one line naming what is wrong ---- */

static void expect_error(ln_tensor *x, ln_tensor *d, ln_tensor *w, double eps, const char *needle1,
                         const char *needle2) {
    ln_tensor *s = x; /* not NULL: the failure must clear it */
    assert_null(ln_add_rmsnorm(x, d, w, eps, &s));
    assert_null(s);
    const char *msg = ln_error_message();
    if (!strstr(msg, "add_rmsnorm") || !strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
        fail_msg("unexpected message: %s", msg);
    assert_null(strchr(msg, '\n'));
}

static void bad_inputs_name_the_problem(void **state) {
    int64_t shape[2] = {2, 5}, other[2] = {5, 2}, D = 5, D4 = 4;
    ln_tensor *x = randn(2, shape, 400), *d = randn(2, shape, 401), *w = randn(1, &D, 402);
    ln_tensor *d_shape = randn(2, other, 403), *w_bad = randn(1, &D4, 404), *d_f32 = copy_as(d, LN_F32);
    ln_tensor *ids = ln_tensor_new(LN_I32, LN_CPU, 2, shape), *s = NULL;
    expect_error(x, d_shape, w, 1e-5, "[5, 2]", "[2, 5]");
    expect_error(x, d_f32, w, 1e-5, "f32", "f64");
    expect_error(x, d, w_bad, 1e-5, "[4]", "[2, 5]");
    expect_error(ids, ids, w, 1e-5, "i32", NULL);
    expect_error(x, d, w, -1.0, "eps", NULL);
    expect_error(x, d, w, NAN, "eps", NULL);
    assert_null(ln_add_rmsnorm(x, d, w, 1e-5, NULL));
    assert_non_null(strstr(ln_error_message(), "sum_out"));
    /* an earlier failure (NULL input) gives NULL, and a NULL sum */
    s = x;
    assert_null(ln_add_rmsnorm(NULL, d, w, 1e-5, &s));
    assert_null(s);
    s = x;
    assert_null(ln_add_rmsnorm(x, d, NULL, 1e-5, &s));
    assert_null(s);
    assert_int_equal(ln_tape_size(), 0);
    ln_tape_clear();
    free_all(7, (ln_tensor *[]){x, d, w, d_shape, w_bad, d_f32, ids});
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradcheck_both_outputs),
        cmocka_unit_test(gradcheck_y_only),
        cmocka_unit_test(gradcheck_sum_only),
        cmocka_unit_test(gradcheck_chain_of_two),
        cmocka_unit_test(gradcheck_delta_is_x),
        cmocka_unit_test(equals_add_then_rmsnorm_f64),
        cmocka_unit_test(equals_add_then_rmsnorm_f32),
        cmocka_unit_test(equals_add_then_rmsnorm_bf16),
        cmocka_unit_test(outputs_are_the_sum_and_its_norm),
        cmocka_unit_test(backward_uses_only_saved_tensors),
        cmocka_unit_test(bad_inputs_name_the_problem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
