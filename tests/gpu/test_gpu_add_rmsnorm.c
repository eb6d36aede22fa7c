/* The fused residual step ln_add_rmsnorm on the GPU against the CPU path, forward and backward, f32
 * and bf16: the row lengths of the rmsnorm suite (not multiples of 32 or of a 16-byte pack, D = 1,
 * D = 2049, enough rows that backward blocks take several row groups); the sum read downstream,
 * the norm's result, or both; x and delta as caller-owned leaves or as op results (arena tensors,
 * whose gradient the kernel may form in the sum's gradient buffer or write unfilled), x with a
 * gradient already started, delta = x, gradients switched off input by input; a weight of the other
 * dtype. Plus: the same numbers as ln_add then ln_rmsnorm on the GPU, every gradient element
 * written (unfilled gradients poisoned), and run-to-run identical results. */
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

typedef enum { OUT_BOTH, OUT_Y, OUT_SUM } ar_outputs;

typedef struct {
    double eps;
    ln_dtype param_dtype; /* LN_F64: the weight as given; else cast to it on the tape */
    bool arena_x, arena_delta; /* pass x / delta through ln_scale(., 1) first: op results, as in a model */
    bool same;                 /* delta = x (in[1] unused) */
    bool x_read_later;         /* x also feeds the result: its gradient is started before the node's backward */
    ar_outputs outputs;
    bool unfused;              /* ln_add then ln_rmsnorm instead */
} ar_ctx;

/* in: x, delta, weight. One output that reads y and/or the sum, so gpu_compare checks both paths. */
static ln_tensor *add_rmsnorm_of(ln_tensor *const *in, void *ctx) {
    const ar_ctx *c = ctx;
    ln_tensor *x = c->arena_x ? ln_scale(in[0], 1.0) : in[0];
    ln_tensor *d = c->same ? x : c->arena_delta ? ln_scale(in[1], 1.0) : in[1];
    ln_tensor *w = c->param_dtype == LN_F64 ? in[2] : ln_cast(in[2], c->param_dtype);
    ln_tensor *s = NULL, *y;
    if (c->unfused) {
        s = ln_add(x, d);
        y = ln_rmsnorm(s, w, c->eps);
    } else {
        y = ln_add_rmsnorm(x, d, w, c->eps, &s);
    }
    if (!y) return NULL;
    ln_tensor *out = c->outputs == OUT_Y     ? ln_scale(y, 1.0)
                     : c->outputs == OUT_SUM ? ln_scale(s, 0.5)
                                             : ln_add(ln_scale(y, 1.0), ln_scale(s, 0.5));
    return c->x_read_later ? ln_add(out, ln_scale(x, 0.25)) : out;
}

/* One case: which inputs take a gradient (x, delta, weight) and how the graph is built. */
typedef struct {
    const char *name;
    bool grad[3];
    ar_ctx c;
} ar_case;

/* Every case below at the shape; ncases > 0: only the first ncases (all with a weight gradient), for
 * shapes whose CPU reference is slow (15 cases x 2 dtypes at 20001 x 768 ran over two minutes). */
static void check_shape(int ndim, const int64_t *shape, double eps, uint64_t seed, size_t ncases) {
    int64_t D = shape[ndim - 1];
    ln_tensor *in[3] = {gpu_randn(ndim, shape, 1.0, seed), gpu_randn(ndim, shape, 1.0, seed + 1),
                        gpu_randn(1, &D, 1.0, seed + 2)};
    const bool T = true, F = false;
    const ar_case cases[] = {
        /* leaves: no adoption, every gradient added onto the caller's */
        {"leaves, y and sum", {T, T, T}, {.outputs = OUT_BOTH}},
        /* op results: x carries the sum's gradient buffer on, delta's is written unfilled */
        {"arena, y and sum", {T, T, T}, {.arena_x = T, .arena_delta = T, .outputs = OUT_BOTH}},
        /* a leaf x cannot take the sum's buffer: delta does */
        {"leaf x, arena delta", {T, T, T}, {.arena_delta = T, .outputs = OUT_BOTH}},
        /* no gradient reaches the sum from downstream: both written unfilled */
        {"arena, y only", {T, T, T}, {.arena_x = T, .arena_delta = T, .outputs = OUT_Y}},
        /* y unread: no norm backward (and nothing for the weight); x takes the sum's gradient as is,
         * delta a copy */
        {"arena, sum only", {T, T, F}, {.arena_x = T, .arena_delta = T, .outputs = OUT_SUM}},
        /* x's gradient started by a later reader: added onto; delta takes the sum's buffer */
        {"arena, x read later", {T, T, T}, {.arena_x = T, .arena_delta = T, .x_read_later = T}},
        {"leaves, x read later", {T, T, T}, {.x_read_later = T}},
        /* x + x: g twice into x's one gradient */
        {"arena, delta = x", {T, F, T}, {.arena_x = T, .same = T, .outputs = OUT_BOTH}},
        {"arena, delta = x, sum only", {T, F, F}, {.arena_x = T, .same = T, .outputs = OUT_SUM}},
        {"leaves, delta = x, y only", {T, F, T}, {.same = T, .outputs = OUT_Y}},
        /* gradients switched off input by input */
        {"arena, weight only", {F, F, T}, {.arena_x = T, .arena_delta = T, .outputs = OUT_BOTH}},
        {"arena, x only", {T, F, F}, {.arena_x = T, .arena_delta = T, .outputs = OUT_BOTH}},
        {"arena, delta only", {F, T, F}, {.arena_x = T, .arena_delta = T, .outputs = OUT_BOTH}},
        {"leaves, x and delta", {T, T, F}, {.outputs = OUT_BOTH}},
        {"arena, x and weight, y only", {T, F, T}, {.arena_x = T, .arena_delta = T, .outputs = OUT_Y}},
    };
    char dims[64] = "", name[160];
    for (int i = 0; i < ndim; i++)
        snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld", i ? "," : "", (long long)shape[i]);
    size_t n = sizeof cases / sizeof cases[0];
    if (ncases > 0 && ncases < n) n = ncases;
    for (size_t k = 0; k < n; k++) {
        ar_ctx c = cases[k].c;
        c.eps = eps;
        c.param_dtype = LN_F64;
        for (int i = 0; i < 3; i++) in[i]->requires_grad = cases[k].grad[i];
        snprintf(name, sizeof name, "add_rmsnorm [%s] %s", dims, cases[k].name);
        gpu_check_both(name, add_rmsnorm_of, (void *)&c, 3, in);
    }
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

static void add_rmsnorm_matches_cpu(void **state) {
    NEED_GPU();
    check_shape(3, (int64_t[]){3, 37, 130}, 1e-5, 600, 0);
    check_shape(2, (int64_t[]){5, 768}, 1e-5, 610, 0); /* 16-byte packs */
    /* D = 1: rmsnorm's dx is r g eps / (x^2 + eps), a cancellation in fp32 unless eps is large */
    check_shape(2, (int64_t[]){7, 1}, 1.0, 620, 0);
    check_shape(2, (int64_t[]){3, 2049}, 1e-5, 630, 0);
    /* 1026 groups of 8 rows over 1024 blocks: two blocks take a second group, the last one short */
    check_shape(2, (int64_t[]){8203, 40}, 1e-5, 640, 0);
    /* dw summed in registers (a lane's share at most 4 packs: bf16 768 is 3, f32 512 is 4) over
     * blocks of several row groups; f32 768 (6 packs) takes the block pass */
    check_shape(2, (int64_t[]){20001, 768}, 1e-5, 650, 3);
    check_shape(2, (int64_t[]){9000, 512}, 1e-5, 660, 3);
}

/* The weight in the other dtype than x: f32 x with a bf16 weight, bf16 x with an f32 one. */
static void add_rmsnorm_mixed_weight_dtype(void **state) {
    NEED_GPU();
    int64_t shape[2] = {37, 130}, D = 130;
    ln_tensor *in[3] = {gpu_randn(2, shape, 1.0, 650), gpu_randn(2, shape, 1.0, 651), gpu_randn(1, &D, 1.0, 652)};
    ar_ctx to_bf16 = {.eps = 1e-5, .param_dtype = LN_BF16, .arena_x = true, .arena_delta = true};
    ar_ctx to_f32 = {.eps = 1e-5, .param_dtype = LN_F32, .arena_x = true, .arena_delta = true};
    gpu_check("add_rmsnorm f32 x, bf16 weight", add_rmsnorm_of, &to_bf16, 3, in, LN_F32, GPU_TOL_BF16);
    gpu_check("add_rmsnorm bf16 x, f32 weight", add_rmsnorm_of, &to_f32, 3, in, LN_BF16, GPU_TOL_BF16);
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

/* ---- on the GPU alone: poisoned, against the unfused ops, run to run ---- */

/* host (f32) values as a tensor of dtype on `device` */
static ln_tensor *upload_as(const ln_tensor *host, ln_dtype dtype) {
    ln_tensor *h = ln_tensor_new(dtype, LN_CPU, host->ndim, host->shape);
    ln_tensor *d = ln_tensor_new(dtype, LN_CUDA, host->ndim, host->shape);
    assert_tensor(h);
    assert_tensor(d);
    assert_ok(ln_tensor_copy(h, host));
    assert_ok(ln_tensor_copy(d, h));
    ln_tensor_free(h);
    return d;
}

/* An f64 host copy of a GPU tensor. */
static ln_tensor *download_f64(const ln_tensor *dev) {
    ln_tensor *h = ln_tensor_new(dev->dtype, LN_CPU, dev->ndim, dev->shape);
    ln_tensor *f = ln_tensor_new(LN_F64, LN_CPU, dev->ndim, dev->shape);
    assert_tensor(h);
    assert_tensor(f);
    assert_ok(ln_tensor_copy(h, dev));
    assert_ok(ln_tensor_copy(f, h));
    ln_tensor_free(h);
    return f;
}

/* f on the GPU (inputs as dtype, all requiring gradients), outputs and unfilled gradients poisoned
 * throughout: got[0] = the output, got[1 + i] = input i's gradient (NULL when none reached it), as
 * f64 on the host. */
static void run_on_gpu(const ar_ctx *c, ln_tensor *const *host, ln_dtype dtype, ln_tensor **got) {
    ln_tensor *dev[3];
    for (int i = 0; i < 3; i++) {
        dev[i] = upload_as(host[i], dtype);
        dev[i]->requires_grad = true;
    }
    ln_tape_clear();
    ln_set_poison_outputs(true);
    ln_tensor *y = add_rmsnorm_of(dev, (void *)c);
    assert_tensor(y);
    ln_tensor *seed_host = gpu_randn(y->ndim, y->shape, 1.0, 99), *seed = upload_as(seed_host, y->dtype);
    assert_ok(ln_backward_from(y, seed));
    ln_set_poison_outputs(false);
    assert_ok(ln_cuda_sync("run_on_gpu"));
    got[0] = download_f64(y);
    for (int i = 0; i < 3; i++) got[1 + i] = dev[i]->grad ? download_f64(dev[i]->grad) : NULL;
    ln_tape_clear();
    for (int i = 0; i < 3; i++) ln_tensor_free(dev[i]);
    ln_tensor_free(seed_host);
    ln_tensor_free(seed);
}

static bool has_nan(const ln_tensor *t) {
    for (int64_t i = 0; i < t->numel; i++)
        if (isnan(ln_get(t, i))) return true;
    return false;
}

/* Fused against ln_add + ln_rmsnorm, both on the GPU: the same math, rounding and statistics, so
 * the same numbers up to the compiler's choice of fused multiply-adds (bit-identical expected;
 * printed). Every configuration of gradient buffers the backward can pick, poisoned. */
static void fused_matches_unfused_on_gpu(void **state) {
    NEED_GPU();
    const int64_t shapes[3][2] = {{5, 768}, {37, 130}, {8203, 40}};
    const ar_ctx configs[] = {
        {.arena_x = true, .arena_delta = true, .outputs = OUT_BOTH},
        {.arena_x = true, .arena_delta = true, .outputs = OUT_Y},
        {.arena_x = true, .arena_delta = true, .outputs = OUT_SUM},
        {.arena_x = true, .arena_delta = true, .x_read_later = true},
        {.arena_delta = true, .outputs = OUT_BOTH},
        {.outputs = OUT_BOTH},
        {.arena_x = true, .same = true, .outputs = OUT_BOTH},
    };
    const char *part[4] = {"output", "d(x)", "d(delta)", "d(weight)"};
    for (int sh = 0; sh < 3; sh++) {
        int64_t D = shapes[sh][1];
        ln_tensor *in[3] = {gpu_randn(2, shapes[sh], 1.0, 700 + sh), gpu_randn(2, shapes[sh], 1.0, 710 + sh),
                            gpu_randn(1, &D, 1.0, 720 + sh)};
        for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++)
            for (int bf = 0; bf < 2; bf++) {
                ln_dtype dtype = bf ? LN_BF16 : LN_F32;
                ar_ctx c = configs[k];
                c.eps = 1e-5;
                c.param_dtype = LN_F64;
                ln_tensor *fused[4], *plain[4];
                run_on_gpu(&c, in, dtype, fused);
                c.unfused = true;
                run_on_gpu(&c, in, dtype, plain);
                for (int i = 0; i < 4; i++) {
                    if (!fused[i] && !plain[i]) continue; /* no gradient either way (the weight, sum only) */
                    if (!fused[i] || !plain[i])
                        fail_msg("[%lld, %lld] config %zu: %s reached only the %s graph", (long long)shapes[sh][0],
                                 (long long)D, k, part[i], fused[i] ? "fused" : "unfused");
                    if (has_nan(fused[i])) fail_msg("[%lld, %lld] config %zu %s: %s has NaN (an element not written)",
                                                    (long long)shapes[sh][0], (long long)D, k, bf ? "bf16" : "f32",
                                                    part[i]);
                    double e = test_rel_error(fused[i], plain[i]);
                    printf("  fused vs unfused [%lld, %lld] config %zu %-4s %-9s rel. error %.3g%s\n",
                           (long long)shapes[sh][0], (long long)D, k, bf ? "bf16" : "f32", part[i], e,
                           e == 0 ? " (bit-identical)" : "");
                    if (!(e <= (bf ? 1e-2 : 1e-6)))
                        fail_msg("fused vs unfused: %s rel. error %g", part[i], e);
                    ln_tensor_free(fused[i]);
                    ln_tensor_free(plain[i]);
                }
            }
        for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
    }
}

static void add_rmsnorm_repeats_bit_for_bit(void **state) {
    NEED_GPU();
    int64_t shape[2] = {8203, 40}, D = 40;
    ln_tensor *in[3] = {gpu_randn(2, shape, 1.0, 730), gpu_randn(2, shape, 1.0, 731), gpu_randn(1, &D, 1.0, 732)};
    ar_ctx c = {.eps = 1e-5, .param_dtype = LN_F64, .arena_x = true, .arena_delta = true, .outputs = OUT_BOTH};
    ln_tensor *a[4], *b[4];
    run_on_gpu(&c, in, LN_F32, a);
    run_on_gpu(&c, in, LN_F32, b);
    for (int i = 0; i < 4; i++) {
        assert_memory_equal(a[i]->data, b[i]->data, (size_t)a[i]->numel * sizeof(double));
        ln_tensor_free(a[i]);
        ln_tensor_free(b[i]);
    }
    for (int i = 0; i < 3; i++) ln_tensor_free(in[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_rmsnorm_matches_cpu),
        cmocka_unit_test(add_rmsnorm_mixed_weight_dtype),
        cmocka_unit_test(fused_matches_unfused_on_gpu),
        cmocka_unit_test(add_rmsnorm_repeats_bit_for_bit),
    };
    return gpu_run_tests(tests);
}
