/* RMSNorm, LayerNorm and RoPE CUDA kernels against the CPU path, forward and backward, f32 and
 * bf16: awkward row lengths (not multiples of 32 or of a 16-byte pack, D = 1, D = 2049), weight
 * and bias with and without gradients, a weight of another dtype than x, enough rows that the
 * backward's blocks take several row groups, RoPE at large positions. Plus run-to-run identical
 * weight and bias gradients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/cuda/cuda_context.h"
#include "autograd/memory.h"
#include "gpu/gpu_testing.h"
#include "testing.h"

typedef struct {
    double eps;
    ln_dtype param_dtype; /* LN_F64: the weight and bias as given; else cast to it on the tape */
} norm_ctx;

static ln_tensor *param(ln_tensor *p, const norm_ctx *c) {
    return c->param_dtype == LN_F64 ? p : ln_cast(p, c->param_dtype);
}

static ln_tensor *rmsnorm_of(ln_tensor *const *in, void *ctx) {
    const norm_ctx *c = ctx;
    return ln_rmsnorm(in[0], param(in[1], c), c->eps);
}

static ln_tensor *layernorm_of(ln_tensor *const *in, void *ctx) {
    const norm_ctx *c = ctx;
    return ln_layernorm(in[0], param(in[1], c), param(in[2], c), c->eps);
}

/* x [shape] with weight (and bias) [D]: every gradient, then some switched off. */
static void check_norm(bool layer, int ndim, const int64_t *shape, double eps, uint64_t seed) {
    int64_t D = shape[ndim - 1];
    ln_tensor *in[3] = {gpu_randn(ndim, shape, 1.0, seed), gpu_randn(1, &D, 1.0, seed + 1),
                        gpu_randn(1, &D, 1.0, seed + 2)};
    int n = layer ? 3 : 2;
    ln_gradcheck_fn f = layer ? layernorm_of : rmsnorm_of;
    norm_ctx c = {eps, LN_F64};
    char dims[64] = "", name[96];
    for (int i = 0; i < ndim; i++)
        snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld", i ? "," : "", (long long)shape[i]);
    const char *op = layer ? "layernorm" : "rmsnorm";

    snprintf(name, sizeof name, "%s [%s]", op, dims);
    gpu_check_both(name, f, &c, n, in);
    in[1]->requires_grad = in[2]->requires_grad = false;
    snprintf(name, sizeof name, "%s [%s] dx only", op, dims);
    gpu_check_both(name, f, &c, n, in);
    in[0]->requires_grad = false;
    in[1]->requires_grad = in[2]->requires_grad = true;
    snprintf(name, sizeof name, "%s [%s] params only", op, dims);
    gpu_check_both(name, f, &c, n, in);
    if (layer) { /* bias alone: the weight's partial sums are made but not stored */
        in[1]->requires_grad = false;
        snprintf(name, sizeof name, "%s [%s] bias only", op, dims);
        gpu_check_both(name, f, &c, n, in);
    }
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

/* The weight (and bias) in the other dtype than x: f32 x with bf16 ones, bf16 x with f32 ones.
 * The parameters' gradients pass through bf16 either way, hence the bf16 tolerance. */
static void check_norm_mixed(bool layer, uint64_t seed) {
    int64_t shape[2] = {37, 130}, D = 130;
    ln_tensor *in[3] = {gpu_randn(2, shape, 1.0, seed), gpu_randn(1, &D, 1.0, seed + 1),
                        gpu_randn(1, &D, 1.0, seed + 2)};
    ln_gradcheck_fn f = layer ? layernorm_of : rmsnorm_of;
    norm_ctx to_bf16 = {1e-5, LN_BF16}, to_f32 = {1e-5, LN_F32};
    gpu_check(layer ? "layernorm f32 x, bf16 params" : "rmsnorm f32 x, bf16 weight", f, &to_bf16, layer ? 3 : 2, in,
              LN_F32, GPU_TOL_BF16);
    gpu_check(layer ? "layernorm bf16 x, f32 params" : "rmsnorm bf16 x, f32 weight", f, &to_f32, layer ? 3 : 2, in,
              LN_BF16, GPU_TOL_BF16);
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

static void norms_match_cpu(bool layer, uint64_t seed) {
    check_norm(layer, 3, (int64_t[]){3, 37, 130}, 1e-5, seed);
    check_norm(layer, 2, (int64_t[]){5, 768}, 1e-5, seed + 10); /* 16-byte packs */
    /* D = 1: rmsnorm's dx is r g eps / (x^2 + eps), a cancellation in fp32 unless eps is large */
    check_norm(layer, 2, (int64_t[]){7, 1}, 1.0, seed + 20);
    check_norm(layer, 2, (int64_t[]){3, 2049}, 1e-5, seed + 30);
    /* rows narrower than a warp's packs share it (rmsnorm): 16 lanes a row of 40 in f32, 8 in bf16 */
    check_norm(layer, 2, (int64_t[]){8203, 40}, 1e-5, seed + 40);
    /* 16 (f32) or 8 (bf16) lanes a row: 2500 or 1250 groups over 1024 blocks, the last one short */
    check_norm(layer, 2, (int64_t[]){40001, 64}, 1e-5, seed + 45);
    /* 6 packs of f32 on 8 lanes, 3 of bf16 on 4 lanes: lanes without a pack */
    check_norm(layer, 2, (int64_t[]){40000, 24}, 1e-5, seed + 48);
    check_norm_mixed(layer, seed + 50);
}

static void rmsnorm_matches_cpu(void **state) {
    NEED_GPU();
    norms_match_cpu(false, 200);
}

static void layernorm_matches_cpu(void **state) {
    NEED_GPU();
    norms_match_cpu(true, 300);
}

/* gated (times silu(gate), gate x's shape): GLA's output norm; D = 64 is its head width */
static ln_tensor *rmsnorm_gated_of(ln_tensor *const *in, void *ctx) {
    const norm_ctx *c = ctx;
    return ln_rmsnorm_gated(in[0], param(in[1], c), in[2], c->eps);
}

static void check_gated(int ndim, const int64_t *shape, uint64_t seed) {
    int64_t D = shape[ndim - 1];
    ln_tensor *in[3] = {gpu_randn(ndim, shape, 1.0, seed), gpu_randn(1, &D, 1.0, seed + 1),
                        gpu_randn(ndim, shape, 2.0, seed + 2)};
    norm_ctx c = {1e-5, LN_F64};
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_gated [..., %lld]", (long long)D);
    gpu_check_both(name, rmsnorm_gated_of, &c, 3, in);
    in[0]->requires_grad = in[1]->requires_grad = false;
    snprintf(name, sizeof name, "rmsnorm_gated [..., %lld] dgate only", (long long)D);
    gpu_check_both(name, rmsnorm_gated_of, &c, 3, in);
    in[0]->requires_grad = true;
    in[2]->requires_grad = false;
    snprintf(name, sizeof name, "rmsnorm_gated [..., %lld] dx only", (long long)D);
    gpu_check_both(name, rmsnorm_gated_of, &c, 3, in);
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

static void rmsnorm_gated_matches_cpu(void **state) {
    NEED_GPU();
    check_gated(3, (int64_t[]){3, 37, 130}, 400);
    check_gated(4, (int64_t[]){2, 300, 12, 64}, 410); /* GLA's per-head norm, 16-byte packs */
    check_gated(2, (int64_t[]){8203, 40}, 420);       /* 2 (f32) or 4 (bf16) rows a warp */
    check_gated(2, (int64_t[]){40000, 64}, 430);      /* blocks with more than one row group */
}

/* ---- rope ---- */

typedef struct {
    double theta;
    int64_t pos_offset;
} rope_ctx;

static ln_tensor *rope_of(ln_tensor *const *in, void *ctx) {
    const rope_ctx *c = ctx;
    return ln_rope(in[0], c->theta, c->pos_offset);
}

static void rope_matches_cpu(void **state) {
    NEED_GPU();
    const int64_t dims[] = {64, 2}, offsets[] = {0, 60000};
    for (int d = 0; d < 2; d++)
        for (int o = 0; o < 2; o++) {
            ln_tensor *x = gpu_randn(4, (int64_t[]){2, 45, 3, dims[d]}, 1.0, 400 + 2 * d + o);
            rope_ctx c = {10000.0, offsets[o]};
            char name[96];
            snprintf(name, sizeof name, "rope [2,45,3,%lld] from %lld", (long long)dims[d], (long long)offsets[o]);
            gpu_check_both(name, rope_of, &c, 1, &x);
            ln_tensor_free(x);
        }
}

/* ---- determinism ---- */

static ln_tensor *upload(const ln_tensor *host) {
    ln_tensor *d = ln_tensor_new(host->dtype, LN_CUDA, host->ndim, host->shape);
    assert_tensor(d);
    assert_ok(ln_tensor_copy(d, host));
    return d;
}

static ln_tensor *download(const ln_tensor *dev) {
    ln_tensor *h = ln_tensor_new(dev->dtype, LN_CPU, dev->ndim, dev->shape);
    assert_tensor(h);
    assert_ok(ln_tensor_copy(h, dev));
    return h;
}

/* f on the GPU (f32): got[0] = the output, got[1 + i] = input i's gradient, on the host. */
static void run_on_gpu(ln_gradcheck_fn f, void *ctx, int n, ln_tensor *const *host, ln_tensor **got) {
    ln_tensor *dev[3];
    for (int i = 0; i < n; i++) {
        dev[i] = upload(host[i]);
        dev[i]->requires_grad = true;
    }
    ln_tensor *y = f(dev, ctx);
    assert_tensor(y);
    ln_tensor *seed_host = gpu_randn(y->ndim, y->shape, 1.0, 99), *seed = upload(seed_host);
    assert_ok(ln_backward_from(y, seed));
    assert_ok(ln_cuda_sync("run_on_gpu"));
    got[0] = download(y);
    for (int i = 0; i < n; i++) got[1 + i] = download(dev[i]->grad);
    ln_tape_clear();
    for (int i = 0; i < n; i++) ln_tensor_free(dev[i]);
    ln_tensor_free(seed_host);
    ln_tensor_free(seed);
}

static void norm_results_repeat_bit_for_bit(void **state) {
    NEED_GPU();
    int64_t shape[2] = {8203, 40}, D = 40;
    ln_tensor *in[3] = {gpu_randn(2, shape, 1.0, 500), gpu_randn(1, &D, 1.0, 501), gpu_randn(1, &D, 1.0, 502)};
    norm_ctx c = {1e-5, LN_F64};
    for (int layer = 0; layer < 2; layer++) {
        int n = layer ? 3 : 2;
        ln_tensor *a[4], *b[4];
        run_on_gpu(layer ? layernorm_of : rmsnorm_of, &c, n, in, a);
        run_on_gpu(layer ? layernorm_of : rmsnorm_of, &c, n, in, b);
        for (int i = 0; i <= n; i++) {
            assert_memory_equal(a[i]->data, b[i]->data, (size_t)a[i]->numel * sizeof(float));
            ln_tensor_free(a[i]);
            ln_tensor_free(b[i]);
        }
    }
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rmsnorm_matches_cpu),
        cmocka_unit_test(layernorm_matches_cpu),
        cmocka_unit_test(rmsnorm_gated_matches_cpu),
        cmocka_unit_test(rope_matches_cpu),
        cmocka_unit_test(norm_results_repeat_bit_for_bit),
    };
    return gpu_run_tests(tests);
}
