#include "gpu_testing.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/memory.h"
#include "autograd/rng.h"
#include "autograd/cuda/cuda_context.h"

bool gpu_present(void) { return ln_cuda_available(NULL, 0); }

ln_tensor *gpu_randn(int ndim, const int64_t *shape, double scale, uint64_t seed) {
    ln_tensor *t = ln_tensor_new(LN_F32, LN_CPU, ndim, shape);
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->numel; i++) ln_set(t, i, scale * ln_rng_normal(&rng));
    t->requires_grad = true;
    return t;
}

ln_tensor *gpu_randint(int ndim, const int64_t *shape, int high, uint64_t seed) {
    ln_tensor *t = ln_tensor_new(LN_I32, LN_CPU, ndim, shape);
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->numel; i++) ln_set(t, i, (double)ln_rng_below(&rng, (uint64_t)high));
    return t;
}

/* A copy of src with the given dtype and device (values rounded through dtype). */
static ln_tensor *copy_as(const ln_tensor *src, ln_dtype dtype, ln_device device) {
    ln_tensor *host = ln_tensor_new(dtype, LN_CPU, src->ndim, src->shape);
    if (!host || ln_tensor_copy(host, src)) fail_msg("copy: %s", ln_error_message());
    if (device == LN_CPU) return host;
    ln_tensor *dev = ln_tensor_new(dtype, device, src->ndim, src->shape);
    if (!dev || ln_tensor_copy(dev, host)) fail_msg("upload: %s", ln_error_message());
    ln_tensor_free(host);
    return dev;
}

/* A host f64 copy of any tensor. */
static ln_tensor *to_host_f64(const ln_tensor *t) {
    ln_tensor *same = ln_tensor_new(t->dtype, LN_CPU, t->ndim, t->shape);
    if (!same || ln_tensor_copy(same, t)) fail_msg("download: %s", ln_error_message());
    ln_tensor *f64 = copy_as(same, LN_F64, LN_CPU);
    ln_tensor_free(same);
    return f64;
}

static double rel_error(const ln_tensor *a, const ln_tensor *b) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = ln_get(a, i), y = ln_get(b, i);
        if (isnan(x) || isnan(y)) return INFINITY;
        num += (x - y) * (x - y);
        den += y * y;
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

static int compare(const char *what, const char *part, const ln_tensor *gpu, const ln_tensor *cpu, double tol) {
    ln_tensor *g = to_host_f64(gpu);
    if (g->numel != cpu->numel) {
        ln_tensor_free(g);
        return ln_fail("%s: %s has %lld elements on the GPU, %lld on the CPU", what, part, (long long)g->numel,
                       (long long)cpu->numel);
    }
    double err = rel_error(g, cpu);
    ln_tensor_free(g);
    printf("  %-40s %-12s rel. error %.3g (tolerance %.0e)\n", what, part, err, tol);
    if (!(err <= tol)) return ln_fail("%s: %s differs from the CPU: rel. error %.3g > %.0e", what, part, err, tol);
    return LN_OK;
}

int gpu_compare(const char *what, ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *inputs, ln_dtype dtype,
               double tol) {
    ln_tensor *cpu_in[LN_MAX_OP_IO], *gpu_in[LN_MAX_OP_IO];
    for (int i = 0; i < n; i++) {
        bool is_float = ln_dtype_is_float(inputs[i]->dtype);
        /* the CPU sees exactly the values the GPU gets */
        ln_tensor *rounded = is_float ? copy_as(inputs[i], dtype, LN_CPU) : NULL;
        cpu_in[i] = is_float ? copy_as(rounded, LN_F64, LN_CPU) : copy_as(inputs[i], inputs[i]->dtype, LN_CPU);
        gpu_in[i] = is_float ? copy_as(rounded, dtype, LN_CUDA) : copy_as(inputs[i], inputs[i]->dtype, LN_CUDA);
        ln_tensor_free(rounded);
        cpu_in[i]->requires_grad = gpu_in[i]->requires_grad = is_float && inputs[i]->requires_grad;
    }
    ln_tape_clear();
    ln_tensor *cpu_out = f(cpu_in, ctx);
    if (!cpu_out) fail_msg("%s on the CPU: %s", what, ln_error_message());
    ln_tensor *seed = gpu_randn(cpu_out->ndim, cpu_out->shape, 1.0, 99);
    ln_tensor *seed_cpu = copy_as(seed, LN_F64, LN_CPU);
    bool grads = cpu_out->requires_grad;
    if (grads && ln_backward_from(cpu_out, seed_cpu)) fail_msg("%s backward on the CPU: %s", what, ln_error_message());
    ln_tensor *cpu_ref = copy_as(cpu_out, LN_F64, LN_CPU);
    ln_tape_clear(); /* the GPU backward must not replay the CPU graph (the input grads live on) */

    ln_set_poison_outputs(true);
    ln_tensor *gpu_out = f(gpu_in, ctx);
    ln_set_poison_outputs(false);
    if (!gpu_out) fail_msg("%s on the GPU: %s", what, ln_error_message());
    if (ln_cuda_sync(what)) fail_msg("%s", ln_error_message());
    int status = compare(what, "output", gpu_out, cpu_ref, tol);
    if (grads && status == LN_OK) {
        ln_tensor *seed_gpu = copy_as(seed, gpu_out->dtype, LN_CUDA);
        if (ln_backward_from(gpu_out, seed_gpu) || ln_cuda_sync(what))
            fail_msg("%s backward on the GPU: %s", what, ln_error_message());
        for (int i = 0; i < n && status == LN_OK; i++) {
            if (!cpu_in[i]->requires_grad) continue;
            char part[32];
            snprintf(part, sizeof part, "d(input %d)", i);
            status = gpu_in[i]->grad ? compare(what, part, gpu_in[i]->grad, cpu_in[i]->grad, tol)
                                     : ln_fail("%s: no gradient reached GPU input %d", what, i);
        }
        ln_tensor_free(seed_gpu);
    }
    ln_tape_clear();
    ln_tensor_free(cpu_ref);
    ln_tensor_free(seed);
    ln_tensor_free(seed_cpu);
    for (int i = 0; i < n; i++) {
        ln_tensor_free(cpu_in[i]);
        ln_tensor_free(gpu_in[i]);
    }
    return status;
}

int gpu_compare_both(const char *what, ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *inputs) {
    char name[160];
    snprintf(name, sizeof name, "%s f32", what);
    if (gpu_compare(name, f, ctx, n, inputs, LN_F32, GPU_TOL_F32) != LN_OK) return LN_ERR;
    snprintf(name, sizeof name, "%s bf16", what);
    return gpu_compare(name, f, ctx, n, inputs, LN_BF16, GPU_TOL_BF16);
}
