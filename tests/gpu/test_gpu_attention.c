/* The attention kernels (attention.cu, attention_wgmma_fwd.cu, attention_wgmma_bwd.cu) against the
 * CPU reference (attention.c), forward and backward: the bf16 tensor-core path (D = 64, 128) on
 * awkward lengths (not multiples of the tiles), causal with S > T, non-causal, GQA, both on wgmma
 * (on Hopper, the default there, forward and backward at D = 64 and 128) and on mma.sync
 * (LINNET_ATTN_FWD=mma LINNET_ATTN_BWD=mma, every other GPU's kernels); the f32 generic path
 * (any D); inputs that need no gradient; a grid of more than 65535 heads; and the forward repeating
 * bit for bit. */
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
#include "gpu/gpu_testing.h"
#include "testing.h"

typedef struct {
    bool causal;
    double scale;
} attn_ctx;

static ln_tensor *attention_of(ln_tensor *const *in, void *ctx) {
    const attn_ctx *c = ctx;
    return ln_attention(in[0], in[1], in[2], c->causal, c->scale);
}

typedef struct {
    int64_t B, T, S, Hq, Hkv, D;
    bool causal;
} shape;

/* q/k/v random normal; requires_grad per `grads` bit (1 = q, 2 = k, 4 = v); scale 1/sqrt(D) unless
 * `scale` is nonzero */
static void check_scaled(const char *what, shape s, ln_dtype dtype, int grads, uint64_t seed, double scale) {
    ln_tensor *in[3] = {gpu_randn(4, (int64_t[]){s.B, s.T, s.Hq, s.D}, 1.0, seed),
                        gpu_randn(4, (int64_t[]){s.B, s.S, s.Hkv, s.D}, 1.0, seed + 1),
                        gpu_randn(4, (int64_t[]){s.B, s.S, s.Hkv, s.D}, 1.0, seed + 2)};
    for (int i = 0; i < 3; i++) in[i]->requires_grad = (grads >> i) & 1;
    attn_ctx c = {s.causal, scale != 0 ? scale : 1.0 / sqrt((double)s.D)};
    char name[160];
    snprintf(name, sizeof name, "%s %s B%lld T%lld S%lld H%lld/%lld D%lld%s", what, dtype == LN_F32 ? "f32" : "bf16",
             (long long)s.B, (long long)s.T, (long long)s.S, (long long)s.Hq, (long long)s.Hkv, (long long)s.D,
             s.causal ? " causal" : "");
    gpu_check(name, attention_of, &c, 3, in, dtype, dtype == LN_F32 ? GPU_TOL_F32 : GPU_TOL_BF16);
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

static void check(const char *what, shape s, ln_dtype dtype, int grads, uint64_t seed) {
    check_scaled(what, s, dtype, grads, seed, 0);
}

static void bf16_fast_path_matches_cpu(void **state) {
    NEED_GPU();
    uint64_t seed = 1000;
    for (int d = 0; d < 2; d++) {
        int64_t D = d ? 128 : 64;
        for (int causal = 0; causal < 2; causal++) {
            check("attn", (shape){2, 77, 77, 2, 2, D, causal}, LN_BF16, 7, seed += 3);
            check("attn", (shape){1, 256, 256, 2, 2, D, causal}, LN_BF16, 7, seed += 3);
            check("attn S>T", (shape){2, 50, 130, 2, 2, D, causal}, LN_BF16, 7, seed += 3);
            check("attn GQA", (shape){2, 77, 77, 4, 2, D, causal}, LN_BF16, 7, seed += 3);
            check("attn MQA", (shape){1, 100, 100, 4, 1, D, causal}, LN_BF16, 7, seed += 3);
        }
        check("attn S>T GQA", (shape){1, 70, 200, 4, 1, D, true}, LN_BF16, 7, seed += 3);
        check("attn tiny", (shape){3, 1, 5, 2, 1, D, true}, LN_BF16, 7, seed += 3);
    }
}

/* the same cases with the mma.sync kernels where the wgmma ones are the default (elsewhere: again) */
static void bf16_mma_sync_kernels_match_cpu(void **state) {
    NEED_GPU();
    setenv("LINNET_ATTN_FWD", "mma", 1);
    setenv("LINNET_ATTN_BWD", "mma", 1);
    bf16_fast_path_matches_cpu(state);
    check_scaled("attn scale<0", (shape){2, 77, 90, 4, 2, 128, true}, LN_BF16, 7, 3600, -0.07);
    check("attn long", (shape){1, 1024, 1024, 2, 2, 128, true}, LN_BF16, 7, 3610);
    unsetenv("LINNET_ATTN_FWD");
    unsetenv("LINNET_ATTN_BWD");
}

static void f32_generic_path_matches_cpu(void **state) {
    NEED_GPU();
    uint64_t seed = 2000;
    const int64_t dims[] = {32, 48, 128};
    for (int d = 0; d < 3; d++) {
        int64_t D = dims[d];
        for (int causal = 0; causal < 2; causal++) {
            check("attn", (shape){2, 37, 37, 2, 2, D, causal}, LN_F32, 7, seed += 3);
            check("attn S>T", (shape){1, 20, 45, 2, 2, D, causal}, LN_F32, 7, seed += 3);
            check("attn GQA", (shape){1, 33, 33, 4, 2, D, causal}, LN_F32, 7, seed += 3);
        }
        check("attn MQA", (shape){2, 19, 40, 3, 1, D, true}, LN_F32, 7, seed += 3);
    }
    check("attn D=256", (shape){1, 40, 40, 2, 1, 256, true}, LN_F32, 7, seed += 3);
    check("attn D=1", (shape){1, 9, 12, 2, 2, 1, true}, LN_F32, 7, seed += 3);
    /* bf16 storage with a head dim the tensor-core path does not take */
    check("attn generic", (shape){2, 45, 45, 4, 2, 48, true}, LN_BF16, 7, seed += 3);
    check("attn generic", (shape){1, 30, 61, 2, 2, 96, false}, LN_BF16, 7, seed += 3);
}

static void only_some_inputs_need_grads(void **state) {
    NEED_GPU();
    const int masks[] = {1, 2, 4, 6};
    for (int i = 0; i < 4; i++) {
        check("attn grads", (shape){1, 77, 77, 4, 2, 64, true}, LN_BF16, masks[i], 3000 + 7 * i);
        check("attn grads", (shape){1, 21, 30, 4, 2, 40, true}, LN_F32, masks[i], 3100 + 7 * i);
    }
}

/* a negative scale (the fast forward's max-on-raw-scores shortcut does not apply) */
static void negative_scale(void **state) {
    NEED_GPU();
    check_scaled("attn scale<0", (shape){2, 77, 90, 4, 2, 128, true}, LN_BF16, 7, 3500, -0.07);
    check_scaled("attn scale<0", (shape){2, 77, 77, 2, 1, 64, false}, LN_BF16, 7, 3503, -0.1);
    check_scaled("attn scale<0", (shape){1, 25, 25, 2, 2, 32, true}, LN_F32, 7, 3506, -0.15);
}

static void long_causal_bf16_matches_cpu(void **state) {
    NEED_GPU();
    check("attn long", (shape){1, 1024, 1024, 2, 2, 128, true}, LN_BF16, 7, 4000);
}

/* more heads than a grid's y or z could hold: the grids run over blockIdx.x */
static void many_heads(void **state) {
    NEED_GPU();
    check("attn many heads", (shape){1, 2, 3, 70000, 70000, 64, true}, LN_BF16, 7, 5000);
    check("attn many heads", (shape){1, 2, 3, 70000, 35000, 8, false}, LN_F32, 7, 5003);
}

static ln_tensor *upload_as(const ln_tensor *host, ln_dtype dtype) {
    ln_tensor *t = ln_tensor_new(dtype, LN_CPU, host->ndim, host->shape);
    ln_tensor *dev = ln_tensor_new(dtype, LN_CUDA, host->ndim, host->shape);
    assert_non_null(t);
    assert_non_null(dev);
    assert_ok(ln_tensor_copy(t, host));
    assert_ok(ln_tensor_copy(dev, t));
    ln_tensor_free(t);
    return dev;
}

static ln_tensor *download(const ln_tensor *dev) {
    ln_tensor *t = ln_tensor_new(dev->dtype, LN_CPU, dev->ndim, dev->shape);
    assert_non_null(t);
    assert_ok(ln_tensor_copy(t, dev));
    return t;
}

static void forward_repeats_bit_for_bit(void **state) {
    NEED_GPU();
    const ln_dtype dtypes[] = {LN_BF16, LN_F32};
    for (int i = 0; i < 2; i++) {
        int64_t T = 300, H = 4, D = i ? 48 : 128;
        ln_tensor *hq = gpu_randn(4, (int64_t[]){2, T, H, D}, 1.0, 6000 + i);
        ln_tensor *hk = gpu_randn(4, (int64_t[]){2, T, H / 2, D}, 1.0, 6010 + i);
        ln_tensor *hv = gpu_randn(4, (int64_t[]){2, T, H / 2, D}, 1.0, 6020 + i);
        ln_tensor *q = upload_as(hq, dtypes[i]), *k = upload_as(hk, dtypes[i]), *v = upload_as(hv, dtypes[i]);
        bool was = ln_set_grad_enabled(false);
        ln_tensor *o1 = download(ln_attention(q, k, v, true, 0.1));
        ln_tensor *o2 = download(ln_attention(q, k, v, true, 0.1));
        ln_set_grad_enabled(was);
        assert_memory_equal(o1->data, o2->data, (size_t)o1->numel * ln_dtype_size(o1->dtype));
        ln_tape_clear();
        ln_tensor *all[] = {hq, hk, hv, q, k, v, o1, o2};
        for (size_t j = 0; j < sizeof all / sizeof *all; j++) ln_tensor_free(all[j]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bf16_fast_path_matches_cpu),
        cmocka_unit_test(bf16_mma_sync_kernels_match_cpu),
        cmocka_unit_test(f32_generic_path_matches_cpu),
        cmocka_unit_test(only_some_inputs_need_grads),
        cmocka_unit_test(negative_scale),
        cmocka_unit_test(long_causal_bf16_matches_cpu),
        cmocka_unit_test(many_heads),
        cmocka_unit_test(forward_repeats_bit_for_bit),
    };
    /* ATTN_TEST_FILTER="bf16_fast*" runs a subset (cmocka pattern) */
    /* our own kernel, not cuDNN (which auto would pick where it can; its suite is
     * test_gpu_attention_cudnn) */
    ln_set_attention_impl(LN_ATTN_OWN);
    const char *filter = getenv("ATTN_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return gpu_run_tests(tests);
}
