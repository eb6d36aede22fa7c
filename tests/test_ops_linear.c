/* The linear-attention ops (autograd/ops_linear.h): gradients against float64 central
 * differences, the chunked form against the recurrence, state carry, packed documents, and the
 * relations between gla, simple_gla and linear_attention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "autograd/ops_linear.h"
#include "testing.h"

/* ---- helpers ---- */

static ln_tensor *randn(int ndim, const int64_t *shape, uint64_t seed) {
    ln_tensor *t = ln_randn_f64(ndim, shape, seed);
    if (!t) fail_msg("randn: %s", ln_error_message());
    return t;
}

/* log decays in (-inf, 0): log(sigmoid(x)) of normal x, then strong decay in some channels */
static ln_tensor *gate(int ndim, const int64_t *shape, uint64_t seed, bool strong) {
    ln_tensor *g = randn(ndim, shape, seed);
    int64_t K = shape[ndim - 1];
    for (int64_t i = 0; i < g->numel; i++) {
        double x = ln_get(g, i), v = -log1p(exp(-x));
        if (strong && i % K == 0) v = -20.0;                       /* a channel that forgets at once */
        if (strong && K > 2 && i % K == 1 && (i / K) % 3 == 0) v = -200.0; /* spikes far past exp range */
        ln_set(g, i, v);
    }
    return g;
}

static ln_tensor *i32_vec(int n, const int32_t *v) {
    ln_tensor *t = ln_tensor_new(LN_I32, LN_CPU, 1, (int64_t[]){n});
    for (int i = 0; i < n; i++) ((int32_t *)t->data)[i] = v[i];
    return t;
}

static ln_tensor *keep(const ln_tensor *t) {
    ln_tensor *c = ln_tensor_new(t->dtype, LN_CPU, t->ndim, t->shape);
    if (!c || ln_tensor_copy(c, t)) fail_msg("copy: %s", ln_error_message());
    return c;
}

static ln_tensor *copy_as(const ln_tensor *src, ln_dtype dtype) {
    ln_tensor *t = ln_tensor_new(dtype, LN_CPU, src->ndim, src->shape);
    if (!t || ln_tensor_copy(t, src)) fail_msg("copy: %s", ln_error_message());
    t->requires_grad = src->requires_grad;
    return t;
}

static void free_all(int n, ln_tensor **t) {
    for (int i = 0; i < n; i++) ln_tensor_free(t[i]);
}

static void assert_close(const ln_tensor *a, const ln_tensor *b, double tol, const char *what) {
    double e = test_rel_error(a, b);
    if (!(e <= tol)) fail_msg("%s: relative error %.3g > %.1g", what, e, tol);
}

/* a fixed seed pattern for backward: the same for every run of a comparison */
static ln_tensor *seed_like(const ln_tensor *y, double phase) {
    ln_tensor *s = ln_tensor_new(y->dtype, LN_CPU, y->ndim, y->shape);
    for (int64_t i = 0; i < y->numel; i++) ln_set(s, i, sin(0.37 * (double)i + phase));
    return s;
}

/* ---- running the gated ops ---- */

enum { OP_GLA, OP_SIMPLE, OP_LINEAR, OP_LINEAR_NORM };

typedef struct {
    int op;
    int chunk;
    bool h0, ht;         /* pass in[4] as h0; want ht */
    ln_tensor *cu;       /* cu_seqlens or NULL */
    double scale;
    ln_tensor *wo, *wh;  /* gradcheck weights of o and ht (f64, no grad) */
    bool fmap;           /* linear: q, k through elu + 1 first (positive normalizers) */
} gcase;

static ln_tensor *run_op(const gcase *c, ln_tensor *const *in, ln_tensor **ht) {
    ln_gla_opts o = {.h0 = c->h0 ? in[4] : NULL, .cu_seqlens = c->cu, .scale = c->scale,
                     .want_final_state = c->ht, .chunk_size = c->chunk};
    switch (c->op) {
    case OP_GLA: return ln_gla(in[0], in[1], in[2], in[3], &o, ht);
    case OP_SIMPLE: return ln_simple_gla(in[0], in[1], in[2], in[3], &o, ht);
    default: {
        ln_tensor *q = in[0], *k = in[1];
        if (c->fmap) q = ln_feature_map(q, LN_FMAP_ELU1, NULL), k = ln_feature_map(k, LN_FMAP_ELU1, NULL);
        return ln_linear_attention(q, k, in[2], c->op == OP_LINEAR_NORM, &o, ht);
    }
    }
}

/* sum(wo * o) + sum(wh * ht), or o itself without weights */
static ln_tensor *gated_of(ln_tensor *const *in, void *ctx) {
    const gcase *c = ctx;
    ln_tensor *ht = NULL, *o = run_op(c, in, &ht);
    if (!c->wo) return o;
    ln_tensor *out = ln_sum(ln_mul(o, c->wo));
    return c->ht ? ln_add(out, ln_sum(ln_mul(ht, c->wh))) : out;
}

/* o, ht and the gradients of q, k, v, g, h0 after backward from fixed seeds (caller-owned) */
typedef struct {
    ln_tensor *o, *ht, *grad[5];
} result;

static result run_and_grad(const gcase *c, ln_tensor *const *in, int n_in) {
    ln_tape_clear();
    for (int i = 0; i < n_in; i++) ln_tensor_zero_grad(in[i]);
    ln_tensor *ht = NULL, *o = run_op(c, in, &ht);
    assert_tensor(o);
    result r = {.o = keep(o), .ht = ht ? keep(ht) : NULL};
    ln_tensor *so = seed_like(o, 0.1);
    if (ht) {
        ln_tensor *sh = seed_like(ht, 0.7);
        assert_ok(ln_tensor_copy(ln_grad_of(ht), sh));
        ln_tensor_free(sh);
    }
    assert_ok(ln_backward_from(o, so));
    ln_tensor_free(so);
    for (int i = 0; i < n_in; i++) {
        r.grad[i] = ln_tensor_new(LN_F64, LN_CPU, in[i]->ndim, in[i]->shape);
        if (in[i]->grad) assert_ok(ln_tensor_copy(r.grad[i], in[i]->grad));
    }
    ln_tape_clear();
    return r;
}

static void result_free(result *r) {
    ln_tensor_free(r->o);
    ln_tensor_free(r->ht);
    free_all(5, r->grad);
}

static void assert_results_close(const result *a, const result *b, int n_in, double tol) {
    static const char *names[] = {"dq", "dk", "dv", "dg", "dh0"};
    assert_close(a->o, b->o, tol, "o");
    if (a->ht) assert_close(a->ht, b->ht, tol, "ht");
    for (int i = 0; i < n_in; i++)
        if (a->grad[i]) assert_close(a->grad[i], b->grad[i], tol, names[i]);
}

/* q, k, v, g (per key or per head), h0 for B sequences of T tokens */
static void make_inputs(ln_tensor **in, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t n_state,
                        bool per_head, bool strong, uint64_t seed) {
    in[0] = randn(4, (int64_t[]){B, T, H, K}, seed);
    in[1] = randn(4, (int64_t[]){B, T, H, K}, seed + 1);
    in[2] = randn(4, (int64_t[]){B, T, H, V}, seed + 2);
    in[3] = per_head ? gate(3, (int64_t[]){B, T, H}, seed + 3, false) : gate(4, (int64_t[]){B, T, H, K}, seed + 3, strong);
    in[4] = randn(4, (int64_t[]){n_state, H, K, V}, seed + 4);
}

static void gated_gradcheck(gcase c, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, uint64_t seed) {
    ln_tensor *in[5];
    int64_t n_state = c.cu ? c.cu->shape[0] - 1 : B;
    make_inputs(in, B, T, H, K, V, n_state, c.op == OP_SIMPLE, false, seed);
    if (c.op >= OP_LINEAR) in[3]->requires_grad = false; /* no gate: in[3] is unused */
    c.wo = randn(4, (int64_t[]){B, T, H, V}, seed + 10);
    c.wh = randn(4, (int64_t[]){n_state, H, K, V}, seed + 11);
    c.wo->requires_grad = c.wh->requires_grad = false;
    assert_gradcheck(gated_of, &c, 5, in);
    ln_tensor_free(c.wo);
    ln_tensor_free(c.wh);
    free_all(5, in);
}

/* ---- gradchecks ---- */

static void gla_gradcheck_recurrent(void **state) {
    gated_gradcheck((gcase){.op = OP_GLA, .h0 = true, .ht = true, .scale = 0.7}, 2, 4, 2, 3, 2, 101);
    gated_gradcheck((gcase){.op = OP_GLA}, 1, 3, 1, 2, 3, 102); /* no h0, no ht, default scale */
}

static void gla_gradcheck_chunked(void **state) {
    gated_gradcheck((gcase){.op = OP_GLA, .chunk = 3, .h0 = true, .ht = true}, 2, 4, 2, 3, 2, 111);
    /* chunks of 32 with 16-row sub-chunks, a partial last chunk */
    gated_gradcheck((gcase){.op = OP_GLA, .chunk = 32, .h0 = true, .ht = true}, 1, 37, 1, 2, 2, 112);
}

static void gla_gradcheck_varlen(void **state) {
    ln_tensor *cu = i32_vec(3, (int32_t[]){0, 2, 5});
    gated_gradcheck((gcase){.op = OP_GLA, .h0 = true, .ht = true, .cu = cu}, 1, 5, 2, 2, 2, 121);
    gated_gradcheck((gcase){.op = OP_GLA, .chunk = 2, .h0 = true, .ht = true, .cu = cu}, 1, 5, 2, 2, 2, 122);
    ln_tensor_free(cu);
}

static void simple_gla_gradcheck(void **state) {
    gated_gradcheck((gcase){.op = OP_SIMPLE, .h0 = true, .ht = true}, 2, 4, 2, 3, 2, 131);
    gated_gradcheck((gcase){.op = OP_SIMPLE, .chunk = 3, .h0 = true, .ht = true}, 1, 5, 2, 3, 2, 132);
}

static void linear_attention_gradcheck(void **state) {
    gated_gradcheck((gcase){.op = OP_LINEAR, .h0 = true, .ht = true}, 2, 4, 2, 3, 2, 141);
    gated_gradcheck((gcase){.op = OP_LINEAR_NORM, .fmap = true, .h0 = true, .ht = true}, 2, 4, 2, 3, 2, 142);
    ln_tensor *cu = i32_vec(3, (int32_t[]){0, 3, 5});
    gated_gradcheck((gcase){.op = OP_LINEAR_NORM, .fmap = true, .chunk = 2, .cu = cu, .ht = true}, 1, 5, 1, 2, 2, 143);
    ln_tensor_free(cu);
}

/* ---- chunked == recurrent ---- */

static void chunked_case(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int chunk, uint64_t seed) {
    ln_tensor *in[5];
    make_inputs(in, B, T, H, K, V, B, false, true, seed);
    gcase rec = {.op = OP_GLA, .h0 = true, .ht = true}, chk = rec;
    chk.chunk = chunk;
    result a = run_and_grad(&rec, in, 5), b = run_and_grad(&chk, in, 5);
    assert_results_close(&b, &a, 5, 1e-10);
    for (int64_t i = 0; i < b.o->numel; i++) assert_true(isfinite(ln_get(b.o, i)));
    for (int64_t i = 0; i < b.grad[3]->numel; i++) assert_true(isfinite(ln_get(b.grad[3], i)));
    result_free(&a);
    result_free(&b);
    free_all(5, in);
}

static void chunked_equals_recurrent(void **state) {
    const int64_t Ts[] = {1, 63, 64, 65, 200};
    for (int i = 0; i < 5; i++) chunked_case(Ts[i] < 100 ? 2 : 1, Ts[i], 2, 4, 3, 64, 200 + (uint64_t)i);
    chunked_case(1, 50, 1, 3, 5, 16, 210); /* chunk = one sub-chunk */
    chunked_case(1, 50, 1, 3, 2, 7, 211);  /* chunks shorter than a sub-chunk */
}

static void chunked_equals_recurrent_f32(void **state) {
    ln_tensor *in[5], *in32[5];
    make_inputs(in, 1, 130, 2, 4, 3, 1, false, true, 220);
    for (int i = 0; i < 5; i++) in32[i] = copy_as(in[i], LN_F32);
    gcase rec = {.op = OP_GLA, .h0 = true, .ht = true}, chk = rec;
    chk.chunk = 64;
    result a = run_and_grad(&rec, in32, 5), b = run_and_grad(&chk, in32, 5);
    assert_int_equal(a.o->dtype, LN_F32);
    assert_int_equal(a.ht->dtype, LN_F32);
    assert_results_close(&b, &a, 5, 1e-5);
    result_free(&a);
    result_free(&b);
    /* bf16 storage runs too, o in bf16 and ht in f32 */
    ln_tensor *q16 = copy_as(in[0], LN_BF16), *ht = NULL;
    ln_tensor *o16 = ln_gla(q16, in32[1], in32[2], in32[3], &(ln_gla_opts){.want_final_state = true, .chunk_size = 64}, &ht);
    assert_tensor(o16);
    assert_int_equal(o16->dtype, LN_BF16);
    assert_int_equal(ht->dtype, LN_F32);
    ln_tape_clear();
    ln_tensor_free(q16);
    free_all(5, in);
    free_all(5, in32);
}

/* ---- state carry: two halves through ht -> h0 equal one run ---- */

/* rows [t0, t0 + n) of a [B, T, ...] tensor as a new caller-owned tensor requiring a gradient */
static ln_tensor *slice_t(const ln_tensor *x, int64_t t0, int64_t n) {
    int64_t shape[LN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[1] = n;
    ln_tensor *s = ln_tensor_new(x->dtype, LN_CPU, x->ndim, shape);
    int64_t inner = x->numel / (x->shape[0] * x->shape[1]);
    for (int64_t b = 0; b < x->shape[0]; b++)
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < inner; i++)
                ln_set(s, (b * n + t) * inner + i, ln_get(x, (b * x->shape[1] + t0 + t) * inner + i));
    s->requires_grad = true;
    return s;
}

/* does the slice [t0, t0 + n) of whole match part? */
static void assert_slice_close(const ln_tensor *whole, int64_t t0, const ln_tensor *part, double tol, const char *what) {
    ln_tensor *s = slice_t(whole, t0, part->shape[1]);
    assert_close(part, s, tol, what);
    ln_tensor_free(s);
}

static void state_carry_case(int op, int chunk) {
    const int64_t B = 2, T = 10, T1 = 6, H = 2, K = 3, V = 2;
    ln_tensor *in[5];
    make_inputs(in, B, T, H, K, V, B, op == OP_SIMPLE, false, 300);
    gcase c = {.op = op, .chunk = chunk, .h0 = true, .ht = true};
    result whole = run_and_grad(&c, in, 5);
    /* the same seeds, cut in two: o's seed rows follow o's rows; ht's seed goes to the second half */
    ln_tensor *a[5], *b[5];
    for (int i = 0; i < 4; i++) a[i] = slice_t(in[i], 0, T1), b[i] = slice_t(in[i], T1, T - T1);
    a[4] = in[4];
    ln_tape_clear();
    ln_tensor *ht1 = NULL, *ht2 = NULL;
    ln_tensor *o1 = run_op(&c, a, &ht1);
    b[4] = ht1;
    ln_tensor *o2 = run_op(&c, b, &ht2);
    assert_tensor(o1);
    assert_tensor(o2);
    assert_slice_close(whole.o, 0, o1, 1e-12, "o first half");
    assert_slice_close(whole.o, T1, o2, 1e-12, "o second half");
    assert_close(ht2, whole.ht, 1e-12, "ht");
    ln_tensor *so = seed_like(whole.o, 0.1), *sh = seed_like(whole.ht, 0.7);
    ln_tensor *s1 = slice_t(so, 0, T1), *s2 = slice_t(so, T1, T - T1);
    assert_ok(ln_tensor_copy(ln_grad_of(ht2), sh));
    assert_ok(ln_tensor_copy(ln_grad_of(o1), s1));
    ln_tensor_zero_grad(in[4]);
    assert_ok(ln_backward_from(o2, s2));
    static const char *names[] = {"dq", "dk", "dv", "dg"};
    for (int i = 0; i < 4; i++) {
        assert_slice_close(whole.grad[i], 0, a[i]->grad, 1e-12, names[i]);
        assert_slice_close(whole.grad[i], T1, b[i]->grad, 1e-12, names[i]);
    }
    assert_close(in[4]->grad, whole.grad[4], 1e-12, "dh0");
    ln_tape_clear();
    free_all(4, (ln_tensor *[]){so, sh, s1, s2});
    free_all(4, a);
    free_all(4, b);
    free_all(5, in);
    result_free(&whole);
}

static void state_carry_equals_one_run(void **state) {
    state_carry_case(OP_GLA, 0);
    state_carry_case(OP_GLA, 4);
    state_carry_case(OP_SIMPLE, 4);
}

/* ---- packed documents == separate runs ---- */

/* row n of a state tensor [N, H, K, V] as a caller-owned [1, H, K, V] tensor requiring a gradient */
static ln_tensor *state_row(const ln_tensor *s, int64_t n) {
    ln_tensor *r = ln_tensor_new(LN_F64, LN_CPU, 4, (int64_t[]){1, s->shape[1], s->shape[2], s->shape[3]});
    for (int64_t i = 0; i < r->numel; i++) ln_set(r, i, ln_get(s, n * r->numel + i));
    r->requires_grad = true;
    return r;
}

static void varlen_case(int op, int chunk) {
    const int32_t cu_v[] = {0, 3, 11, 17};
    const int64_t N = 3, T = 17, H = 2, K = 3, V = 2;
    ln_tensor *in[5], *cu = i32_vec(4, cu_v);
    make_inputs(in, 1, T, H, K, V, N, op == OP_SIMPLE, true, 400);
    gcase packed = {.op = op, .chunk = chunk, .h0 = true, .ht = true, .cu = cu}, single = packed;
    single.cu = NULL;
    result all = run_and_grad(&packed, in, 5);
    ln_tensor *so = seed_like(all.o, 0.1), *sh = seed_like(all.ht, 0.7);
    static const char *names[] = {"dq", "dk", "dv", "dg"};
    for (int64_t n = 0; n < N; n++) {
        int64_t t0 = cu_v[n], len = cu_v[n + 1] - cu_v[n];
        ln_tensor *doc[5];
        for (int i = 0; i < 4; i++) doc[i] = slice_t(in[i], t0, len);
        doc[4] = state_row(in[4], n);
        /* seeds: the matching rows of the packed run's seeds */
        ln_tensor *so_n = slice_t(so, t0, len), *sh_n = state_row(sh, n), *ht_n = state_row(all.ht, n);
        ln_tensor *dh0_n = state_row(all.grad[4], n);
        ln_tape_clear();
        ln_tensor *ht = NULL, *o = run_op(&single, doc, &ht);
        assert_tensor(o);
        assert_slice_close(all.o, t0, o, 1e-12, "o");
        assert_close(ht, ht_n, 1e-12, "ht");
        assert_ok(ln_tensor_copy(ln_grad_of(ht), sh_n));
        assert_ok(ln_backward_from(o, so_n));
        for (int i = 0; i < 4; i++) assert_slice_close(all.grad[i], t0, doc[i]->grad, 1e-11, names[i]);
        assert_close(doc[4]->grad, dh0_n, 1e-11, "dh0");
        ln_tape_clear();
        free_all(5, doc);
        free_all(4, (ln_tensor *[]){so_n, sh_n, ht_n, dh0_n});
    }
    free_all(2, (ln_tensor *[]){so, sh});
    result_free(&all);
    free_all(5, in);
    ln_tensor_free(cu);
}

static void varlen_equals_separate_runs(void **state) {
    varlen_case(OP_GLA, 0);
    varlen_case(OP_GLA, 4);
    varlen_case(OP_SIMPLE, 0);
}

static void varlen_empty_document_passes_h0_through(void **state) {
    ln_tensor *in[5], *cu = i32_vec(3, (int32_t[]){0, 0, 4});
    make_inputs(in, 1, 4, 1, 2, 2, 2, false, false, 450);
    ln_tensor *ht = NULL;
    ln_tensor *o = ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.h0 = in[4], .cu_seqlens = cu, .want_final_state = true}, &ht);
    assert_tensor(o);
    for (int i = 0; i < 4; i++) assert_true(ln_get(ht, i) == ln_get(in[4], i));
    ln_tape_clear();
    free_all(5, in);
    ln_tensor_free(cu);
}

/* ---- relations between the ops ---- */

static void simple_gla_equals_gla_with_broadcast_gate(void **state) {
    const int64_t B = 2, T = 9, H = 2, K = 3, V = 2;
    ln_tensor *in[5], *gk = ln_tensor_new(LN_F64, LN_CPU, 4, (int64_t[]){B, T, H, K});
    make_inputs(in, B, T, H, K, V, B, true, false, 500);
    for (int64_t i = 0; i < gk->numel; i++) ln_set(gk, i, ln_get(in[3], i / K));
    gk->requires_grad = true;
    for (int chunk = 0; chunk <= 4; chunk += 4) {
        gcase s = {.op = OP_SIMPLE, .chunk = chunk, .h0 = true, .ht = true}, g = s;
        g.op = OP_GLA;
        result rs = run_and_grad(&s, in, 5);
        ln_tensor *ing[5] = {in[0], in[1], in[2], gk, in[4]};
        result rg = run_and_grad(&g, ing, 5);
        ln_tensor *dg_sum = ln_tensor_new(LN_F64, LN_CPU, 3, (int64_t[]){B, T, H});
        for (int64_t i = 0; i < gk->numel; i++) ln_set(dg_sum, i / K, ln_get(dg_sum, i / K) + ln_get(rg.grad[3], i));
        ln_tensor_free(rg.grad[3]);
        rg.grad[3] = dg_sum;
        assert_results_close(&rs, &rg, 5, 1e-12);
        result_free(&rs);
        result_free(&rg);
    }
    free_all(5, in);
    ln_tensor_free(gk);
}

static void linear_attention_is_gla_without_decay(void **state) {
    const int64_t B = 1, T = 7, H = 2, K = 3, V = 2;
    ln_tensor *in[5];
    make_inputs(in, B, T, H, K, V, B, false, false, 510);
    for (int64_t i = 0; i < in[3]->numel; i++) ln_set(in[3], i, 0.0);
    gcase l = {.op = OP_LINEAR, .h0 = true, .ht = true}, g = l;
    g.op = OP_GLA;
    result rl = run_and_grad(&l, in, 5), rg = run_and_grad(&g, in, 5);
    ln_tensor_free(rl.grad[3]), ln_tensor_free(rg.grad[3]);
    rl.grad[3] = rg.grad[3] = NULL; /* no gate in linear attention */
    assert_results_close(&rl, &rg, 5, 1e-13);
    result_free(&rl);
    result_free(&rg);
    free_all(5, in);
}

/* o_t = scale q_t (h0_n + sum_{s<=t} k_s^T v_s) / (scale q_t . sum_{s<=t} k_s + eps), by brute force,
 * s running over the current document n only: z restarts with every document and h0 carries S only */
static void normalized_by_hand_case(const ln_tensor *cu, bool with_h0) {
    const int64_t T = 6, H = 1, K = 3, V = 2, N = cu ? cu->shape[0] - 1 : 1;
    ln_tensor *q = randn(4, (int64_t[]){1, T, H, K}, 520), *k = randn(4, (int64_t[]){1, T, H, K}, 521),
              *v = randn(4, (int64_t[]){1, T, H, V}, 522), *h0 = randn(4, (int64_t[]){N, H, K, V}, 523);
    for (int64_t i = 0; i < q->numel; i++) ln_set(q, i, fabs(ln_get(q, i))), ln_set(k, i, fabs(ln_get(k, i)));
    double scale = 0.5;
    ln_tensor *o = ln_linear_attention(q, k, v, true, &(ln_gla_opts){.scale = scale, .h0 = with_h0 ? h0 : NULL,
                                                                     .cu_seqlens = (ln_tensor *)cu}, NULL);
    assert_tensor(o);
    for (int64_t n = 0, t = 0; t < T; t++) {
        while (cu && t >= ln_get(cu, n + 1)) n++;
        int64_t start = cu ? (int64_t)ln_get(cu, n) : 0;
        for (int64_t e = 0; e < V; e++) {
            double num = 0, den = 0;
            for (int64_t d = 0; with_h0 && d < K; d++) num += scale * ln_get(q, t * K + d) * ln_get(h0, (n * K + d) * V + e);
            for (int64_t s = start; s <= t; s++) {
                double qk = 0;
                for (int64_t d = 0; d < K; d++) qk += ln_get(q, t * K + d) * ln_get(k, s * K + d);
                num += scale * qk * ln_get(v, s * V + e);
                den += scale * qk;
            }
            assert_true(fabs(ln_get(o, t * V + e) - num / (den + LN_LINEAR_ATTN_EPS)) < 1e-12);
        }
    }
    ln_tape_clear();
    free_all(4, (ln_tensor *[]){q, k, v, h0});
}

static void normalized_linear_attention_by_hand(void **state) {
    normalized_by_hand_case(NULL, false);
    normalized_by_hand_case(NULL, true);
    ln_tensor *cu = i32_vec(3, (int32_t[]){0, 2, 6});
    normalized_by_hand_case(cu, true);
    ln_tensor_free(cu);
}

/* ---- feature maps ---- */

typedef struct {
    ln_feature_map_kind kind;
} fm_args;

static ln_tensor *fmap_of(ln_tensor *const *in, void *ctx) {
    fm_args *a = ctx;
    return ln_feature_map(in[0], a->kind, a->kind == LN_FMAP_HEDGEHOG ? in[1] : NULL);
}

static void feature_map_gradcheck(void **state) {
    ln_tensor *in[2] = {randn(3, (int64_t[]){2, 3, 4}, 600), randn(2, (int64_t[]){4, 3}, 601)};
    for (int kind = LN_FMAP_ELU1; kind <= LN_FMAP_HEDGEHOG; kind++) {
        fm_args a = {.kind = kind};
        assert_gradcheck(fmap_of, &a, kind == LN_FMAP_HEDGEHOG ? 2 : 1, in);
    }
    free_all(2, in);
}

static void feature_map_values(void **state) {
    ln_tensor *x = randn(2, (int64_t[]){5, 4}, 610), *w = randn(2, (int64_t[]){4, 3}, 611);
    assert_ptr_equal(ln_feature_map(x, LN_FMAP_IDENTITY, NULL), x);
    ln_tensor *e = ln_feature_map(x, LN_FMAP_ELU1, NULL), *r = ln_feature_map(x, LN_FMAP_RELU, NULL);
    ln_tensor *hh = ln_feature_map(x, LN_FMAP_HEDGEHOG, w);
    assert_tensor(e);
    assert_tensor(r);
    assert_tensor(hh);
    for (int64_t i = 0; i < x->numel; i++) {
        double xi = ln_get(x, i);
        assert_true(fabs(ln_get(e, i) - (xi > 0 ? xi + 1 : exp(xi))) < 1e-15 && ln_get(e, i) > 0);
        assert_true(ln_get(r, i) == (xi > 0 ? xi : 0));
    }
    assert_int_equal(hh->shape[1], 6);
    for (int64_t row = 0; row < 5; row++) { /* each half is a distribution; the halves mirror each other */
        double s1 = 0, s2 = 0;
        for (int f = 0; f < 3; f++) s1 += ln_get(hh, row * 6 + f), s2 += ln_get(hh, row * 6 + 3 + f);
        assert_true(fabs(s1 - 1) < 1e-12 && fabs(s2 - 1) < 1e-12);
        double z0 = 0, z1 = 0;
        for (int d = 0; d < 4; d++) z0 += ln_get(x, row * 4 + d) * ln_get(w, d * 3), z1 += ln_get(x, row * 4 + d) * ln_get(w, d * 3 + 1);
        assert_true(fabs(ln_get(hh, row * 6) / ln_get(hh, row * 6 + 1) - exp(z0 - z1)) < 1e-9 * exp(z0 - z1));
    }
    ln_tape_clear();
    free_all(2, (ln_tensor *[]){x, w});
}

/* ---- short convolution ---- */

typedef struct {
    ln_tensor *cu;
    bool bias;
} conv_args;

static ln_tensor *conv_of(ln_tensor *const *in, void *ctx) {
    conv_args *a = ctx;
    return ln_short_conv(in[0], in[1], a->bias ? in[2] : NULL, a->cu);
}

static void short_conv_gradcheck(void **state) {
    for (int64_t W = 2; W <= 4; W++) {
        ln_tensor *in[3] = {randn(3, (int64_t[]){2, 5, 3}, 700 + W), randn(2, (int64_t[]){3, W}, 710 + W),
                            randn(1, (int64_t[]){3}, 720 + W)};
        conv_args a = {.bias = W != 3};
        assert_gradcheck(conv_of, &a, a.bias ? 3 : 2, in);
        free_all(3, in);
    }
    ln_tensor *cu = i32_vec(4, (int32_t[]){0, 1, 4, 7});
    ln_tensor *in[3] = {randn(3, (int64_t[]){1, 7, 2}, 730), randn(2, (int64_t[]){2, 4}, 731), randn(1, (int64_t[]){2}, 732)};
    conv_args a = {.cu = cu, .bias = true};
    assert_gradcheck(conv_of, &a, 3, in);
    free_all(3, in);
    ln_tensor_free(cu);
}

static void short_conv_by_hand_and_no_leak(void **state) {
    /* one channel, W = 3: y_t = w2 x_t + w1 x_{t-1} + w0 x_{t-2} + b */
    ln_tensor *x = ln_tensor_new(LN_F64, LN_CPU, 3, (int64_t[]){1, 5, 1}), *w = ln_tensor_new(LN_F64, LN_CPU, 2, (int64_t[]){1, 3});
    ln_tensor *b = ln_tensor_new(LN_F64, LN_CPU, 1, (int64_t[]){1}), *cu = i32_vec(3, (int32_t[]){0, 2, 5});
    for (int i = 0; i < 5; i++) ln_set(x, i, i + 1.0);
    ln_set(w, 0, 100.0), ln_set(w, 1, 10.0), ln_set(w, 2, 1.0), ln_set(b, 0, 0.5);
    ln_tensor *y = ln_short_conv(x, w, b, NULL), *yd = ln_short_conv(x, w, b, cu);
    assert_tensor(y);
    assert_tensor(yd);
    const double want[5] = {1.5, 12.5, 123.5, 234.5, 345.5}, want_docs[5] = {1.5, 12.5, 3.5, 34.5, 345.5};
    for (int i = 0; i < 5; i++) {
        assert_true(ln_get(y, i) == want[i]);
        assert_true(ln_get(yd, i) == want_docs[i]);
    }
    ln_tape_clear();
    free_all(4, (ln_tensor *[]){x, w, b, cu});
}

/* ---- bad inputs ---- */

static void bad_inputs_name_tensor_and_shape(void **state) {
    ln_tensor *in[5];
    make_inputs(in, 2, 4, 2, 3, 2, 2, false, false, 800);
    ln_tensor *g3 = gate(3, (int64_t[]){2, 4, 2}, 801, false), *k_bad = randn(4, (int64_t[]){2, 4, 2, 5}, 802);
    ln_tensor *ki = ln_tensor_new(LN_I32, LN_CPU, 4, (int64_t[]){2, 4, 2, 3}), *ht = NULL;
    ln_tensor_set_name(k_bad, "layer1.k");
    assert_null(ln_gla(in[0], k_bad, in[2], in[3], NULL, NULL));
    assert_non_null(strstr(ln_error_message(), "layer1.k [2, 4, 2, 5]"));
    assert_null(ln_gla(in[0], in[1], in[2], g3, NULL, NULL));
    assert_non_null(strstr(ln_error_message(), "g [2, 4, 2]"));
    assert_null(ln_simple_gla(in[0], in[1], in[2], in[3], NULL, NULL));
    assert_non_null(strstr(ln_error_message(), "[B, T, H]"));
    assert_null(ln_gla(in[0], ki, in[2], in[3], NULL, NULL));
    assert_non_null(strstr(ln_error_message(), "i32"));
    assert_null(ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.h0 = k_bad}, NULL));
    assert_non_null(strstr(ln_error_message(), "layer1.k [2, 4, 2, 5]"));
    assert_null(ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.want_final_state = true}, NULL));
    assert_null(ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.chunk_size = -1}, &ht));
    assert_null(ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.scale = NAN}, &ht));
    ln_tensor *cu = i32_vec(3, (int32_t[]){0, 2, 4});
    assert_null(ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.cu_seqlens = cu}, NULL)); /* B = 2 */
    assert_non_null(strstr(ln_error_message(), "batch 1"));
    ln_tensor *q1 = randn(4, (int64_t[]){1, 4, 2, 3}, 803), *v1 = randn(4, (int64_t[]){1, 4, 2, 2}, 804);
    ln_tensor *g1 = gate(4, (int64_t[]){1, 4, 2, 3}, 805, false), *cu_bad = i32_vec(3, (int32_t[]){0, 3, 2});
    assert_null(ln_gla(q1, q1, v1, g1, &(ln_gla_opts){.cu_seqlens = cu_bad}, NULL));
    assert_non_null(strstr(ln_error_message(), "entry 2 is 2"));
    assert_tensor(ln_gla(q1, q1, v1, g1, &(ln_gla_opts){.cu_seqlens = cu}, NULL));
    assert_null(ln_gla(NULL, in[1], in[2], in[3], NULL, NULL));
    assert_null(strchr(ln_error_message(), '\n'));
    /* feature maps and the convolution */
    ln_tensor *w_bad = randn(2, (int64_t[]){5, 2}, 806);
    assert_null(ln_feature_map(in[0], LN_FMAP_HEDGEHOG, w_bad));
    assert_non_null(strstr(ln_error_message(), "[5, 2]"));
    assert_null(ln_feature_map(in[0], LN_FMAP_HEDGEHOG, NULL));
    assert_null(ln_feature_map(in[0], LN_FMAP_RELU, w_bad));
    ln_tensor *x = randn(3, (int64_t[]){1, 4, 5}, 807), *w5 = randn(2, (int64_t[]){5, 5}, 808);
    assert_null(ln_short_conv(x, w5, NULL, NULL));
    assert_non_null(strstr(ln_error_message(), "[5, 5]"));
    assert_null(ln_short_conv(x, w_bad, NULL, cu_bad));
    assert_null(ln_short_conv(in[0], w_bad, NULL, NULL));
    assert_non_null(strstr(ln_error_message(), "[2, 4, 2, 3]"));
    ln_tape_clear();
    free_all(5, in);
    free_all(12, (ln_tensor *[]){g3, k_bad, ki, cu, q1, v1, g1, cu_bad, w_bad, x, w5, NULL});
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gla_gradcheck_recurrent),
        cmocka_unit_test(gla_gradcheck_chunked),
        cmocka_unit_test(gla_gradcheck_varlen),
        cmocka_unit_test(simple_gla_gradcheck),
        cmocka_unit_test(linear_attention_gradcheck),
        cmocka_unit_test(chunked_equals_recurrent),
        cmocka_unit_test(chunked_equals_recurrent_f32),
        cmocka_unit_test(state_carry_equals_one_run),
        cmocka_unit_test(varlen_equals_separate_runs),
        cmocka_unit_test(varlen_empty_document_passes_h0_through),
        cmocka_unit_test(simple_gla_equals_gla_with_broadcast_gate),
        cmocka_unit_test(linear_attention_is_gla_without_decay),
        cmocka_unit_test(normalized_linear_attention_by_hand),
        cmocka_unit_test(feature_map_gradcheck),
        cmocka_unit_test(feature_map_values),
        cmocka_unit_test(short_conv_gradcheck),
        cmocka_unit_test(short_conv_by_hand_and_no_leak),
        cmocka_unit_test(bad_inputs_name_tensor_and_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
