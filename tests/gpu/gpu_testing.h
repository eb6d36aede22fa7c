/* The GPU-against-CPU harness: every CUDA kernel is compared with the CPU reference on fresh
 * random inputs, outputs poisoned with NaN before the run so an unwritten element fails. */
#ifndef LN_GPU_TESTING_H
#define LN_GPU_TESTING_H

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "testing.h"

#define GPU_TOL_F32 1e-5
#define GPU_TOL_BF16 2e-2

/* True when a GPU is visible. */
bool gpu_present(void);
/* Runs a suite's tests where a GPU is visible; elsewhere prints that the suite is skipped and
 * returns TEST_SKIPPED, so ctest counts it skipped, not passed. */
#define gpu_run_tests(tests) (gpu_present() ? cmocka_run_group_tests(tests, NULL, NULL) : test_skip_suite("no GPU is visible"))

/* A caller-owned CPU tensor: normal(0, scale) floats (f32), or ints uniform in [0, high). */
ln_tensor *gpu_randn(int ndim, const int64_t *shape, double scale, uint64_t seed);
ln_tensor *gpu_randint(int ndim, const int64_t *shape, int high, uint64_t seed);

/* Runs f on the CPU (inputs as f64) and on the GPU (float inputs as `dtype`, outputs poisoned),
 * seeds both with one random output gradient, and returns LN_OK when the output and the gradient
 * of every input with requires_grad agree: ||gpu - cpu|| / ||cpu|| <= tol (NaN never passes).
 * With dtype bf16 the CPU sees the inputs rounded to bf16, so only the kernel's error counts.
 * Prints one line per compared tensor. */
int gpu_compare(const char *what, ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *inputs, ln_dtype dtype,
                double tol);
/* gpu_compare in f32 (GPU_TOL_F32) and then bf16 (GPU_TOL_BF16), " f32" / " bf16" added to what. */
int gpu_compare_both(const char *what, ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *inputs);
#define gpu_check_both(what, f, ctx, n, inputs) assert_ok(gpu_compare_both(what, f, ctx, n, inputs))
/* gpu_compare that fails the test with its message. */
#define gpu_check(what, f, ctx, n, inputs, dtype, tol) assert_ok(gpu_compare(what, f, ctx, n, inputs, dtype, tol))

#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        if (!gpu_present()) skip();                                                                \
    } while (0)

#endif
