/* The optimizer on the GPU against the CPU: ln_adamw_clip_step (global norm, the clip factor on the
 * device, AdamW with decay on some parameters) over steps with and without clipping, sizes that
 * are not multiples of a block, and a NaN gradient that must leave every parameter as it was; then
 * a model's worth of parameters (more than one multi-tensor launch, tensors of several chunks, one
 * without a gradient) and ln_clip_grad_norm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpu/gpu_testing.h"
#include "optim/adamw.h"
#include "testing.h"

/* many: 150 more parameters of 1 to ~70,000 elements */
static void make(ln_params *p, ln_adamw *opt, const ln_optim_config *o, ln_device device, bool many) {
    ln_params_add(p, "", "w", 2, (int64_t[]){37, 300}, LN_INIT_NORMAL, true);
    ln_params_add(p, "", "bias", 1, (int64_t[]){300}, LN_INIT_NORMAL, false);
    ln_params_add(p, "", "e", 2, (int64_t[]){1000, 129}, LN_INIT_NORMAL, true);
    for (int i = 0; many && i < 150; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        int64_t n = i % 50 == 7 ? 70001 : 1 + (i * 7919) % 3000;
        ln_params_add(p, "", name, 1, &n, LN_INIT_NORMAL, i % 3 != 0);
    }
    ln_params_init(p, 11, 0.3, 1);
    assert_ok(ln_params_to(p, device));
    assert_ok(ln_adamw_create(opt, p, o));
}

/* the same gradient on both: scale * a fixed pattern, copied to the GPU; parameter 20 (when there
 * are that many) gets none, as one the loss never reached */
static void set_grads(ln_params *cpu, ln_params *gpu, double scale) {
    for (int i = 0; i < cpu->n; i++) {
        if (i == 20) continue;
        ln_tensor *g = ln_grad_of(cpu->items[i].tensor);
        for (int64_t j = 0; j < g->numel; j++) ln_set(g, j, scale * sin(0.7 * (double)j + i));
        assert_ok(ln_tensor_copy(ln_grad_of(gpu->items[i].tensor), g));
    }
}

static double rel_error(const ln_tensor *gpu_t, const ln_tensor *cpu_t) {
    ln_tensor *back = ln_tensor_new(LN_F32, LN_CPU, cpu_t->ndim, cpu_t->shape);
    assert_non_null(back);
    assert_ok(ln_tensor_copy(back, gpu_t));
    double num = 0, den = 0;
    for (int64_t j = 0; j < cpu_t->numel; j++) {
        double d = ln_get(back, j) - ln_get(cpu_t, j);
        num += d * d;
        den += ln_get(cpu_t, j) * ln_get(cpu_t, j);
    }
    ln_tensor_free(back);
    return sqrt(num / den); /* NaN never passes the <= below */
}

static void clip_step_matches_cpu(void **state) {
    NEED_GPU();
    ln_optim_config o = {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    ln_params cpu = {0}, gpu = {0};
    ln_adamw oc, og;
    make(&cpu, &oc, &o, LN_CPU, false);
    make(&gpu, &og, &o, LN_CUDA, false);
    const double scales[4] = {0.001, 0.5, 0.002, 0.3}; /* norms under and over the max of 1 */
    for (int step = 0; step < 4; step++) {
        set_grads(&cpu, &gpu, scales[step]);
        double nc = 0, ng = 0;
        assert_ok(ln_adamw_clip_step(&oc, 0.01, 1.0, &nc));
        assert_ok(ln_adamw_clip_step(&og, 0.01, 1.0, &ng));
        print_message("  step %d: norm cpu %.9g gpu %.9g\n", step, nc, ng);
        assert_true(fabs(ng - nc) <= 1e-6 * nc);
        for (int i = 0; i < cpu.n; i++) {
            double e = rel_error(gpu.items[i].tensor, cpu.items[i].tensor);
            print_message("  step %d %-5s rel. error %.3g (tolerance 1e-5)\n", step, cpu.items[i].name, e);
            assert_true(e <= 1e-5);
        }
    }
    /* a NaN gradient: the norm says so and nothing moves */
    set_grads(&cpu, &gpu, 0.1);
    ln_tensor *g0 = ln_grad_of(cpu.items[0].tensor);
    ln_set(g0, 5, NAN);
    assert_ok(ln_tensor_copy(ln_grad_of(gpu.items[0].tensor), g0));
    double ng = 0;
    assert_ok(ln_adamw_clip_step(&og, 0.01, 1.0, &ng));
    assert_true(isnan(ng));
    assert_int_equal(og.step, 4);
    for (int i = 0; i < cpu.n; i++) assert_true(rel_error(gpu.items[i].tensor, cpu.items[i].tensor) <= 1e-5);
    ln_adamw_free(&oc);
    ln_adamw_free(&og);
    ln_params_free(&cpu);
    ln_params_free(&gpu);
}

static double worst_error(const ln_params *gpu, const ln_params *cpu) {
    double worst = 0;
    for (int i = 0; i < cpu->n; i++) {
        double e = rel_error(gpu->items[i].tensor, cpu->items[i].tensor);
        if (!(e <= worst)) worst = e; /* NaN sticks */
    }
    return worst;
}

static void many_tensors_match_cpu(void **state) {
    NEED_GPU();
    ln_optim_config o = {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    ln_params cpu = {0}, gpu = {0};
    ln_adamw oc, og;
    make(&cpu, &oc, &o, LN_CPU, true);
    make(&gpu, &og, &o, LN_CUDA, true);
    assert_true(cpu.n > 128); /* three launches of 64 */
    for (int step = 0; step < 3; step++) {
        set_grads(&cpu, &gpu, step == 1 ? 0.05 : 0.001); /* step 1 clips */
        double nc = 0, ng = 0;
        assert_ok(ln_adamw_clip_step(&oc, 0.01, 1.0, &nc));
        assert_ok(ln_adamw_clip_step(&og, 0.01, 1.0, &ng));
        double e = worst_error(&gpu, &cpu);
        print_message("  step %d: norm cpu %.9g gpu %.9g, worst parameter rel. error %.3g (tolerance 1e-5)\n", step,
                      nc, ng, e);
        assert_true(fabs(ng - nc) <= 1e-6 * nc);
        assert_true(e <= 1e-5);
    }
    assert_null(gpu.items[20].tensor->grad);
    /* ln_clip_grad_norm alone: the norm, and the gradients scaled when it is over the max */
    set_grads(&cpu, &gpu, 0.05);
    double nc = ln_clip_grad_norm(&cpu, 1.0), ng = ln_clip_grad_norm(&gpu, 1.0);
    assert_true(nc > 1.0 && fabs(ng - nc) <= 1e-6 * nc);
    for (int i = 0; i < cpu.n; i++) {
        if (!cpu.items[i].tensor->grad) continue;
        double e = rel_error(gpu.items[i].tensor->grad, cpu.items[i].tensor->grad);
        assert_true(e <= 1e-6);
    }
    ln_adamw_free(&oc);
    ln_adamw_free(&og);
    ln_params_free(&cpu);
    ln_params_free(&gpu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clip_step_matches_cpu),
        cmocka_unit_test(many_tensors_match_cpu),
    };
    return gpu_run_tests(tests);
}
