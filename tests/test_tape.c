/* The tape itself: recording, gradient accumulation, no-grad mode, the saved-tensor hook; casts
 * and fills. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "testing.h"

static ln_tensor *silu_of(ln_tensor *const *in, void *ctx) { return ln_silu(in[0]); }

static ln_tensor *reshape_silu(ln_tensor *const *in, void *ctx) {
    int64_t shape[2] = {3, 4};
    return ln_silu(ln_reshape(in[0], 2, shape));
}

static void silu_gradcheck(void **state) {
    ln_tensor *x = ln_randn_f64(2, (int64_t[]){4, 5}, 1);
    assert_gradcheck(silu_of, NULL, 1, &x);
    ln_tensor_free(x);
}

static void reshape_gradcheck(void **state) {
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){12}, 2);
    assert_gradcheck(reshape_silu, NULL, 1, &x);
    ln_tensor_free(x);
}

static void gradients_accumulate_until_zeroed(void **state) {
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){3}, 3);
    int64_t one[1] = {1};
    for (int pass = 0; pass < 2; pass++) {
        ln_tensor *y = ln_reshape(ln_silu(x), 1, (int64_t[]){3});
        ln_tensor *seed = ln_tensor_new(LN_F64, LN_CPU, 1, (int64_t[]){3});
        for (int i = 0; i < 3; i++) ln_set(seed, i, 1.0);
        assert_ok(ln_backward_from(y, seed));
        ln_tensor_free(seed);
        ln_tape_clear();
    }
    for (int i = 0; i < 3; i++) {
        double v = ln_get(x, i), s = 1 / (1 + exp(-v));
        assert_true(fabs(ln_get(x->grad, i) - 2 * (s + v * s * (1 - s))) < 1e-12);
    }
    ln_tensor_zero_grad(x);
    for (int i = 0; i < 3; i++) assert_true(ln_get(x->grad, i) == 0.0);
    (void)one;
    ln_tensor_free(x);
}

/* Intermediate gradients go back to the allocator once their producer's backward has read them:
 * the peak holds the activations and a couple of gradients, not all of them; a second backward
 * over the same tape finds no stale intermediate gradients (x's gradient exactly doubles). */
static void intermediate_gradients_are_released(void **state) {
    enum { N = 1000, DEPTH = 8 };
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){N}, 7);
    ln_tensor *y[DEPTH];
    y[0] = ln_silu(x);
    for (int i = 1; i < DEPTH; i++) y[i] = ln_silu(y[i - 1]);
    ln_tensor *loss = ln_sum(y[DEPTH - 1]);
    const size_t one = N * sizeof(double), activations = ln_arena_bytes();
    assert_true(activations >= DEPTH * one);
    assert_ok(ln_backward(loss));
    for (int i = 0; i < DEPTH; i++) assert_null(y[i]->grad);
    assert_non_null(loss->grad); /* the root keeps its seed */
    assert_true(ln_arena_peak_bytes() <= activations + 2 * one + sizeof(double));
    double first[N];
    for (int i = 0; i < N; i++) first[i] = ln_get(x->grad, i);
    assert_ok(ln_backward(loss));
    for (int i = 0; i < N; i++) assert_true(ln_get(x->grad, i) == 2 * first[i]);
    ln_tape_clear();
    assert_int_equal(ln_arena_peak_bytes(), 0);
    ln_tensor_free(x);
}

static void no_grad_records_nothing(void **state) {
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){3}, 4);
    bool was = ln_set_grad_enabled(false);
    ln_tensor *y = ln_silu(x);
    ln_set_grad_enabled(was);
    assert_tensor(y);
    assert_int_equal(ln_tape_size(), 0);
    assert_false(y->requires_grad);
    ln_tape_clear();
    ln_tensor_free(x);
}

static int packed_count;
static void *count_pack(ln_tensor *t, void *ctx) {
    packed_count++;
    return t;
}
static ln_tensor *count_unpack(void *p, void *ctx) { return p; }

static void saved_tensors_go_through_the_hook(void **state) {
    ln_saved_hooks hooks = {count_pack, count_unpack, NULL};
    ln_set_saved_hooks(&hooks);
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){3}, 5);
    packed_count = 0;
    ln_tensor *y = ln_silu(ln_silu(x));
    assert_tensor(y);
    assert_int_equal(packed_count, 2);
    ln_set_saved_hooks(NULL);
    ln_tape_clear();
    ln_tensor_free(x);
}

static void null_inputs_propagate(void **state) {
    assert_null(ln_silu(NULL));
    assert_null(ln_reshape(ln_silu(NULL), 1, (int64_t[]){1}));
}

static void bad_reshape_names_the_shape(void **state) {
    ln_tensor *x = ln_randn_f64(2, (int64_t[]){2, 3}, 6);
    ln_tensor_set_name(x, "x");
    assert_null(ln_reshape(x, 1, (int64_t[]){7}));
    assert_non_null(strstr(ln_error_message(), "[2, 3]"));
    ln_tape_clear();
    ln_tensor_free(x);
}

static void cast_passes_gradients_through(void **state) {
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){5}, 7);
    ln_tensor *y = ln_cast(ln_cast(x, LN_BF16), LN_F32);
    assert_tensor(y);
    assert_int_equal(y->dtype, LN_F32);
    ln_tensor *seed = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){5});
    for (int i = 0; i < 5; i++) {
        ln_set(seed, i, i + 1.0);
        /* values pass through bf16: within its rounding */
        assert_true(fabs(ln_get(y, i) - ln_get(x, i)) <= fabs(ln_get(x, i)) / 128);
    }
    assert_ok(ln_backward_from(y, seed));
    for (int i = 0; i < 5; i++) assert_true(ln_get(x->grad, i) == i + 1.0);
    assert_ptr_equal(ln_cast(x, LN_F64), x);
    ln_tensor *ids = ln_tensor_new(LN_I32, LN_CPU, 0, NULL);
    assert_null(ln_cast(ids, LN_F32));
    ln_tensor_free(ids);
    ln_tensor_free(seed);
    ln_tape_clear();
    ln_tensor_free(x);
}

static void fill_sets_every_element(void **state) {
    const ln_dtype dtypes[] = {LN_F32, LN_F64, LN_BF16};
    for (int d = 0; d < 3; d++) {
        ln_tensor *t = ln_tensor_new(dtypes[d], LN_CPU, 2, (int64_t[]){3, 5});
        assert_ok(ln_tensor_fill(t, -2.5));
        for (int64_t i = 0; i < t->numel; i++) assert_true(ln_get(t, i) == -2.5);
        ln_tensor_free(t);
    }
    ln_tensor *ids = ln_tensor_new(LN_I32, LN_CPU, 1, (int64_t[]){3});
    assert_int_equal(ln_tensor_fill(ids, 1), LN_ERR);
    assert_non_null(strstr(ln_error_message(), "i32"));
    ln_tensor_free(ids);
}

static void bf16_round_trip(void **state) {
    float values[] = {1.0f, -2.5f, 3.140625f, 1e-3f, 65504.0f};
    for (int i = 0; i < 5; i++) {
        float back = ln_bf16_to_f32(ln_f32_to_bf16(values[i]));
        assert_true(fabsf(back - values[i]) <= fabsf(values[i]) * (1.0f / 128));
    }
    assert_true(isnan(ln_bf16_to_f32(ln_f32_to_bf16(NAN))));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(silu_gradcheck),
        cmocka_unit_test(reshape_gradcheck),
        cmocka_unit_test(gradients_accumulate_until_zeroed),
        cmocka_unit_test(intermediate_gradients_are_released),
        cmocka_unit_test(no_grad_records_nothing),
        cmocka_unit_test(saved_tensors_go_through_the_hook),
        cmocka_unit_test(null_inputs_propagate),
        cmocka_unit_test(bad_reshape_names_the_shape),
        cmocka_unit_test(cast_passes_gradients_through),
        cmocka_unit_test(fill_sets_every_element),
        cmocka_unit_test(bf16_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
