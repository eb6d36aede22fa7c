/* The CUDA infrastructure and the first kernels against the CPU path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "autograd/memory.h"
#include "gpu/gpu_testing.h"
#include "testing.h"

static ln_tensor *silu_of(ln_tensor *const *in, void *ctx) { return ln_silu(in[0]); }

static ln_tensor *reshape_silu(ln_tensor *const *in, void *ctx) {
    return ln_silu(ln_reshape(in[0], 2, (int64_t[]){in[0]->numel / 10, 10}));
}

static void silu_matches_cpu(void **state) {
    NEED_GPU();
    ln_tensor *x = gpu_randn(2, (int64_t[]){37, 130}, 2.0, 1);
    gpu_check("silu f32", silu_of, NULL, 1, &x, LN_F32, GPU_TOL_F32);
    gpu_check("silu bf16", silu_of, NULL, 1, &x, LN_BF16, GPU_TOL_BF16);
    gpu_check("reshape+silu f32", reshape_silu, NULL, 1, &x, LN_F32, GPU_TOL_F32);
    ln_tensor_free(x);
}

static ln_tensor *cast_across(ln_tensor *const *in, void *ctx) {
    return ln_cast(in[0], in[0]->dtype == LN_BF16 ? LN_F32 : LN_BF16);
}

static void cast_matches_cpu(void **state) {
    NEED_GPU();
    /* 2541 elements (one at a time), 2560 (8 a thread: the packed kernels, forward and backward) */
    const int64_t cols[2] = {77, 80};
    for (int i = 0; i < 2; i++) {
        ln_tensor *x = gpu_randn(2, (int64_t[]){i ? 32 : 33, cols[i]}, 3.0, 4 + i);
        gpu_check("cast f32 -> bf16", cast_across, NULL, 1, &x, LN_F32, GPU_TOL_BF16);
        gpu_check("cast bf16 -> f32", cast_across, NULL, 1, &x, LN_BF16, GPU_TOL_BF16);
        ln_tensor_free(x);
    }
}

static void copies_round_trip(void **state) {
    NEED_GPU();
    ln_tensor *x = gpu_randn(1, (int64_t[]){1000}, 1.0, 2);
    ln_tensor *d = ln_tensor_new(LN_F32, LN_CUDA, 1, (int64_t[]){1000});
    ln_tensor *back = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){1000});
    assert_tensor(d);
    assert_ok(ln_tensor_copy(d, x));
    assert_ok(ln_tensor_copy(back, d));
    assert_memory_equal(x->data, back->data, 4000);
    assert_ok(ln_device_poison(LN_CUDA, d->data, 4000));
    assert_ok(ln_tensor_copy(back, d));
    assert_true(isnan(ln_get(back, 0)) && isnan(ln_get(back, 999)));
    ln_tensor_free(x);
    ln_tensor_free(d);
    ln_tensor_free(back);
}

/* Fill writes every element, in f32 and bf16, at an odd length. */
static void fill_on_the_gpu(void **state) {
    NEED_GPU();
    const ln_dtype dtypes[] = {LN_F32, LN_BF16};
    for (int d = 0; d < 2; d++) {
        ln_tensor *t = ln_tensor_new(dtypes[d], LN_CUDA, 1, (int64_t[]){1003});
        ln_tensor *back = ln_tensor_new(dtypes[d], LN_CPU, 1, (int64_t[]){1003});
        assert_tensor(t);
        assert_ok(ln_device_poison(LN_CUDA, t->data, 1003 * ln_dtype_size(dtypes[d])));
        assert_ok(ln_tensor_fill(t, -2.5));
        assert_ok(ln_tensor_copy(back, t));
        for (int64_t i = 0; i < 1003; i++) assert_true(ln_get(back, i) == -2.5);
        ln_tensor_free(t);
        ln_tensor_free(back);
    }
}

/* The harness itself must catch a kernel that leaves an element unwritten. */
static ln_tensor *half_written(ln_tensor *const *in, void *ctx) {
    ln_tensor *y = ln_silu(in[0]);
    if (y && y->device == LN_CUDA) ln_device_poison(LN_CUDA, (char *)y->data + 4, 4); /* element 1 */
    return y;
}

static void poisoned_outputs_fail(void **state) {
    NEED_GPU();
    ln_tensor *x = gpu_randn(1, (int64_t[]){8}, 1.0, 3);
    x->requires_grad = false;
    ln_tensor *in[1] = {x};
    assert_int_equal(gpu_compare("planted unwritten element", half_written, NULL, 1, in, LN_F32, GPU_TOL_F32), LN_ERR);
    assert_non_null(strstr(ln_error_message(), "output"));
    ln_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(copies_round_trip),
        cmocka_unit_test(fill_on_the_gpu),
        cmocka_unit_test(silu_matches_cpu),
        cmocka_unit_test(cast_matches_cpu),
        cmocka_unit_test(poisoned_outputs_fail),
    };
    return gpu_run_tests(tests);
}
