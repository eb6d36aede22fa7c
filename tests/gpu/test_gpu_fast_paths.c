/* The GPU's shortcuts against the CPU path: 16-byte vector kernels (swiglu, cross-entropy), fresh
 * gradients stored without a zero-fill (ln_grad_for_write), and output gradients handed to an
 * input without a copy (ln_grad_adopt: reshape, add), including an adopted buffer that later
 * takes more accumulation. Inputs go through an op first where a path needs arena tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "gpu/gpu_testing.h"
#include "testing.h"

static void free_all(int n, ln_tensor **t) {
    for (int i = 0; i < n; i++) ln_tensor_free(t[i]);
}

/* leaves: gradients exist (accumulate); through scale: fresh arena gradients (store) */
static ln_tensor *swiglu_leaf(ln_tensor *const *in, void *ctx) { return ln_swiglu(in[0], in[1]); }
static ln_tensor *swiglu_fresh(ln_tensor *const *in, void *ctx) {
    return ln_swiglu(ln_scale(in[0], 1.5), ln_scale(in[1], -0.5));
}
static ln_tensor *swiglu_same(ln_tensor *const *in, void *ctx) {
    ln_tensor *h = ln_scale(in[0], 1.5);
    return ln_swiglu(h, h);
}

static void swiglu_paths(void **state) {
    NEED_GPU();
    ln_tensor *in[2] = {gpu_randn(2, (int64_t[]){5, 96}, 2.0, 1), gpu_randn(2, (int64_t[]){5, 96}, 1.0, 2)};
    gpu_check_both("swiglu vec, leaves", swiglu_leaf, NULL, 2, in);
    gpu_check_both("swiglu vec, fresh grads", swiglu_fresh, NULL, 2, in);
    gpu_check_both("swiglu(h, h) vec-sized", swiglu_same, NULL, 1, in);
    in[1]->requires_grad = false;
    gpu_check_both("swiglu vec, gate grad only", swiglu_fresh, NULL, 2, in);
    free_all(2, in);
    ln_tensor *odd[2] = {gpu_randn(2, (int64_t[]){5, 97}, 2.0, 3), gpu_randn(2, (int64_t[]){5, 97}, 1.0, 4)};
    gpu_check_both("swiglu scalar, fresh grads", swiglu_fresh, NULL, 2, odd);
    free_all(2, odd);
}

/* logits from a matmul: a fresh gradient, stored in full, zero rows for ignored targets */
static ln_tensor *lm_head(ln_tensor *const *in, void *ctx) {
    return ln_cross_entropy(ln_matmul(in[0], in[1], false, false), in[2]);
}
/* logits read by two ops: the cross-entropy's gradient adds to the other's */
static ln_tensor *lm_head_twice(ln_tensor *const *in, void *ctx) {
    ln_tensor *logits = ln_matmul(in[0], in[1], false, false);
    return ln_add(ln_scale(ln_mean(logits), 3.0), ln_cross_entropy(logits, in[2]));
}

static void cross_entropy_paths(void **state) {
    NEED_GPU();
    const int64_t widths[2] = {1000, 1001}; /* vector and scalar kernels */
    for (int i = 0; i < 2; i++) {
        int64_t V = widths[i];
        ln_tensor *in[3] = {gpu_randn(2, (int64_t[]){37, 64}, 1.0, 10 + i), gpu_randn(2, (int64_t[]){64, V}, 0.2, 20 + i),
                            gpu_randint(1, (int64_t[]){37}, (int)V, 30 + i)};
        for (int64_t r = 0; r < 37; r += 6) ln_set(in[2], r, -1);
        char name[64];
        snprintf(name, sizeof name, "matmul + cross_entropy V=%lld", (long long)V);
        gpu_check_both(name, lm_head, NULL, 3, in);
        snprintf(name, sizeof name, "logits used twice V=%lld", (long long)V);
        gpu_check_both(name, lm_head_twice, NULL, 3, in);
        free_all(3, in);
    }
}

/* reshape and add pass dy on; the adopted buffer of h then takes mul's gradient too */
static ln_tensor *adopt_chain(ln_tensor *const *in, void *ctx) {
    ln_tensor *h = ln_scale(in[0], 2.0);                           /* [6, 40] */
    ln_tensor *p = ln_mul(h, in[1]);                               /* earlier reader of h */
    ln_tensor *y = ln_add(h, ln_reshape(ln_scale(in[2], 0.5), 2, (int64_t[]){6, 40}));
    return ln_add(y, p);
}
static ln_tensor *add_self(ln_tensor *const *in, void *ctx) {
    ln_tensor *h = ln_scale(in[0], 2.0);
    return ln_add(h, h);
}
static ln_tensor *add_broadcast(ln_tensor *const *in, void *ctx) {
    return ln_add(ln_scale(in[0], 2.0), ln_scale(in[1], -1.0)); /* b [40]: not adopted */
}

static void adopted_gradients(void **state) {
    NEED_GPU();
    ln_tensor *in[4] = {gpu_randn(2, (int64_t[]){6, 40}, 1.0, 40), gpu_randn(2, (int64_t[]){6, 40}, 1.0, 41),
                        gpu_randn(3, (int64_t[]){2, 3, 40}, 1.0, 42), gpu_randn(1, (int64_t[]){40}, 1.0, 43)};
    gpu_check_both("reshape/add adoption chain", adopt_chain, NULL, 3, in);
    gpu_check_both("add(h, h)", add_self, NULL, 1, in);
    ln_tensor *pair[2] = {in[0], in[3]};
    gpu_check_both("add with broadcast b", add_broadcast, NULL, 2, pair);
    free_all(4, in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(swiglu_paths),
        cmocka_unit_test(cross_entropy_paths),
        cmocka_unit_test(adopted_gradients),
    };
    return gpu_run_tests(tests);
}
