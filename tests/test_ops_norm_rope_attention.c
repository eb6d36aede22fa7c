/* RMSNorm, LayerNorm, RoPE and the reference attention: gradients against float64 central
 * differences, and forward properties that an error in the math would break. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "testing.h"

/* ---- helpers ---- */

static ln_tensor *randn(int ndim, const int64_t *shape, uint64_t seed) {
    ln_tensor *t = ln_randn_f64(ndim, shape, seed);
    if (!t) fail_msg("randn: %s", ln_error_message());
    return t;
}

static ln_tensor *filled(int ndim, const int64_t *shape, double value) {
    ln_tensor *t = ln_tensor_new(LN_F64, LN_CPU, ndim, shape);
    if (!t) fail_msg("tensor_new: %s", ln_error_message());
    for (int64_t i = 0; i < t->numel; i++) ln_set(t, i, value);
    return t;
}

/* A caller-owned copy in another dtype, requiring a gradient. */
static ln_tensor *copy_as(const ln_tensor *src, ln_dtype dtype) {
    ln_tensor *t = ln_tensor_new(dtype, LN_CPU, src->ndim, src->shape);
    if (!t || ln_tensor_copy(t, src)) fail_msg("copy: %s", ln_error_message());
    t->requires_grad = true;
    return t;
}

static void free_all(int n, ln_tensor **t) {
    for (int i = 0; i < n; i++) ln_tensor_free(t[i]);
}

/* Runs backward from y seeded with a fixed pseudo-random weighting, then clears the tape (a
 * later backward would replay this graph again). Returns a caller-owned copy of y. */
static ln_tensor *backward_weighted(ln_tensor *y) {
    ln_tensor *seed = ln_tensor_new(y->dtype, LN_CPU, y->ndim, y->shape), *kept = ln_tensor_new_like(y);
    for (int64_t i = 0; i < y->numel; i++) ln_set(seed, i, sin(0.37 * (double)i + 0.1));
    assert_ok(ln_backward_from(y, seed));
    assert_ok(ln_tensor_copy(kept, y));
    ln_tensor_free(seed);
    ln_tape_clear();
    return kept;
}

typedef struct {
    double eps, theta, scale;
    int64_t pos_offset;
    bool causal;
} op_args;

static ln_tensor *rmsnorm_of(ln_tensor *const *in, void *ctx) {
    return ln_rmsnorm(in[0], in[1], ((op_args *)ctx)->eps);
}
static ln_tensor *rmsnorm_gated_of(ln_tensor *const *in, void *ctx) {
    return ln_rmsnorm_gated(in[0], in[1], in[2], ((op_args *)ctx)->eps);
}
static ln_tensor *layernorm_of(ln_tensor *const *in, void *ctx) {
    return ln_layernorm(in[0], in[1], in[2], ((op_args *)ctx)->eps);
}
static ln_tensor *rope_of(ln_tensor *const *in, void *ctx) {
    op_args *a = ctx;
    return ln_rope(in[0], a->theta, a->pos_offset);
}
static ln_tensor *attention_of(ln_tensor *const *in, void *ctx) {
    op_args *a = ctx;
    return ln_attention(in[0], in[1], in[2], a->causal, a->scale);
}

/* ---- RMSNorm ---- */

static void rmsnorm_gradcheck(void **state) {
    ln_tensor *in[2] = {randn(3, (int64_t[]){2, 3, 5}, 11), randn(1, (int64_t[]){5}, 12)};
    op_args a = {.eps = 1e-5};
    assert_gradcheck(rmsnorm_of, &a, 2, in);
    free_all(2, in);
}

static void rmsnorm_has_unit_rms_before_weight(void **state) {
    ln_tensor *x = randn(2, (int64_t[]){4, 16}, 13), *w = randn(1, (int64_t[]){16}, 14);
    for (int64_t i = 0; i < x->numel; i++) ln_set(x, i, 3.0 * ln_get(x, i) + 0.5); /* not already unit */
    ln_tensor *y = ln_rmsnorm(x, w, 1e-12);
    assert_tensor(y);
    for (int r = 0; r < 4; r++) {
        double ss = 0;
        for (int i = 0; i < 16; i++) {
            double u = ln_get(y, r * 16 + i) / ln_get(w, i);
            ss += u * u;
        }
        assert_true(fabs(sqrt(ss / 16) - 1) < 1e-9);
    }
    ln_tape_clear();
    ln_tensor_free(x);
    ln_tensor_free(w);
}

static void rmsnorm_bad_weight_names_the_shape(void **state) {
    ln_tensor *x = randn(2, (int64_t[]){2, 5}, 15), *w = randn(1, (int64_t[]){4}, 16);
    assert_null(ln_rmsnorm(x, w, 1e-5));
    assert_non_null(strstr(ln_error_message(), "[2, 5]"));
    assert_non_null(strstr(ln_error_message(), "[4]"));
    assert_null(ln_rmsnorm(NULL, w, 1e-5));
    ln_tape_clear();
    ln_tensor_free(x);
    ln_tensor_free(w);
}

/* gated: the gradients of x, weight and gate, and the output equal to the three ops it fuses */
static void rmsnorm_gated_gradcheck_and_equals_the_ops(void **state) {
    ln_tensor *in[3] = {randn(3, (int64_t[]){2, 3, 5}, 17), randn(1, (int64_t[]){5}, 18),
                        randn(3, (int64_t[]){2, 3, 5}, 19)};
    op_args a = {.eps = 1e-5};
    assert_gradcheck(rmsnorm_gated_of, &a, 3, in);
    ln_tensor *fused = ln_rmsnorm_gated(in[0], in[1], in[2], 1e-5);
    ln_tensor *ops = ln_mul(ln_rmsnorm(in[0], in[1], 1e-5), ln_silu(in[2]));
    assert_tensor(fused);
    assert_tensor(ops);
    for (int64_t i = 0; i < fused->numel; i++) assert_true(fabs(ln_get(fused, i) - ln_get(ops, i)) < 1e-12);
    ln_tape_clear();
    free_all(3, in);
}

static void rmsnorm_gated_bad_gate_names_the_shape(void **state) {
    ln_tensor *x = randn(2, (int64_t[]){2, 5}, 20), *w = randn(1, (int64_t[]){5}, 21),
              *g = randn(2, (int64_t[]){5, 2}, 22);
    assert_null(ln_rmsnorm_gated(x, w, g, 1e-5));
    assert_non_null(strstr(ln_error_message(), "rmsnorm_gated"));
    assert_non_null(strstr(ln_error_message(), "[5, 2]"));
    assert_non_null(strstr(ln_error_message(), "[2, 5]"));
    ln_tape_clear();
    ln_tensor_free(x);
    ln_tensor_free(w);
    ln_tensor_free(g);
}

/* ---- LayerNorm ---- */

static void layernorm_gradcheck(void **state) {
    ln_tensor *in[3] = {randn(3, (int64_t[]){2, 3, 6}, 21), randn(1, (int64_t[]){6}, 22), randn(1, (int64_t[]){6}, 23)};
    op_args a = {.eps = 1e-5};
    assert_gradcheck(layernorm_of, &a, 3, in);
    free_all(3, in);
}

static void layernorm_gives_zero_mean_unit_variance(void **state) {
    ln_tensor *x = randn(2, (int64_t[]){5, 12}, 24);
    for (int64_t i = 0; i < x->numel; i++) ln_set(x, i, 4.0 * ln_get(x, i) + 100.0); /* large mean */
    ln_tensor *w = filled(1, (int64_t[]){12}, 1.0), *b = filled(1, (int64_t[]){12}, 0.0);
    ln_tensor *y = ln_layernorm(x, w, b, 1e-12);
    assert_tensor(y);
    for (int r = 0; r < 5; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < 12; i++) mu += ln_get(y, r * 12 + i) / 12;
        for (int i = 0; i < 12; i++) var += pow(ln_get(y, r * 12 + i) - mu, 2) / 12;
        assert_true(fabs(mu) < 1e-12);
        assert_true(fabs(var - 1) < 1e-9);
    }
    /* weight and bias apply per feature after normalisation */
    ln_set(w, 3, 2.0);
    ln_set(b, 3, 0.5);
    ln_tensor *y2 = ln_layernorm(x, w, b, 1e-12);
    assert_tensor(y2);
    assert_true(fabs(ln_get(y2, 3) - (2.0 * ln_get(y, 3) + 0.5)) < 1e-12);
    assert_true(fabs(ln_get(y2, 4) - ln_get(y, 4)) < 1e-15);
    ln_tape_clear();
    ln_tensor_free(x);
    ln_tensor_free(w);
    ln_tensor_free(b);
}

static void layernorm_bad_bias_names_the_shape(void **state) {
    ln_tensor *x = randn(2, (int64_t[]){3, 6}, 25), *w = randn(1, (int64_t[]){6}, 26),
              *b = randn(1, (int64_t[]){7}, 27);
    assert_null(ln_layernorm(x, w, b, 1e-5));
    assert_non_null(strstr(ln_error_message(), "[3, 6]"));
    assert_non_null(strstr(ln_error_message(), "[7]"));
    ln_tape_clear();
    free_all(3, (ln_tensor *[]){x, w, b});
}

/* eps sits inside the square root, added to the mean square (rmsnorm) or the variance (layernorm) */
static void norms_add_eps_inside_the_sqrt(void **state) {
    ln_tensor *x = filled(2, (int64_t[]){1, 4}, 1e-3), *w = filled(1, (int64_t[]){4}, 1.0),
              *b = filled(1, (int64_t[]){4}, 0.0);
    ln_set(x, 1, -1e-3); /* mean square 1e-6, mean 0, variance 1e-6 */
    ln_set(x, 3, -1e-3);
    ln_tensor *r = ln_rmsnorm(x, w, 3e-6), *l = ln_layernorm(x, w, b, 3e-6);
    assert_tensor(r);
    assert_tensor(l);
    assert_true(fabs(ln_get(r, 0) - 0.5) < 1e-12);
    assert_true(fabs(ln_get(l, 1) + 0.5) < 1e-12);
    ln_tape_clear();
    free_all(3, (ln_tensor *[]){x, w, b});
}

/* ---- RoPE ---- */

static void rope_gradcheck(void **state) {
    ln_tensor *x = randn(4, (int64_t[]){2, 3, 2, 6}, 31);
    op_args a = {.theta = 10000.0, .pos_offset = 5};
    assert_gradcheck(rope_of, &a, 1, &x);
    a.theta = 3.0; /* fast rotations, so every pair moves a lot */
    assert_gradcheck(rope_of, &a, 1, &x);
    ln_tensor_free(x);
}

static void rope_matches_rotate_half_by_hand(void **state) {
    /* D = 4: pairs (0, 2) at frequency 1 and (1, 3) at frequency theta^(-1/2) = 0.1 */
    ln_tensor *x = ln_tensor_new(LN_F64, LN_CPU, 4, (int64_t[]){1, 1, 1, 4});
    double xv[4] = {1.0, 2.0, 3.0, 4.0};
    for (int i = 0; i < 4; i++) ln_set(x, i, xv[i]);
    ln_tensor *y = ln_rope(x, 100.0, 2);
    assert_tensor(y);
    double a0 = 2.0, a1 = 0.2;
    double want[4] = {1 * cos(a0) - 3 * sin(a0), 2 * cos(a1) - 4 * sin(a1), 3 * cos(a0) + 1 * sin(a0),
                      4 * cos(a1) + 2 * sin(a1)};
    for (int i = 0; i < 4; i++) assert_true(fabs(ln_get(y, i) - want[i]) < 1e-12);
    ln_tape_clear();
    ln_tensor_free(x);
}

static void rope_preserves_norms_and_pos0_is_identity(void **state) {
    ln_tensor *x = randn(4, (int64_t[]){2, 5, 3, 8}, 32);
    ln_tensor *y = ln_rope(x, 10000.0, 0), *y7 = ln_rope(x, 500.0, 7);
    assert_tensor(y);
    assert_tensor(y7);
    for (int64_t row = 0; row < 2 * 5 * 3; row++) {
        double nx = 0, ny = 0;
        for (int d = 0; d < 8; d++) {
            nx += pow(ln_get(x, row * 8 + d), 2);
            ny += pow(ln_get(y7, row * 8 + d), 2);
        }
        assert_true(fabs(nx - ny) < 1e-12 * (1 + nx));
    }
    /* t = 0 rows of y sit at position 0: unchanged; t = 1 rows are not */
    for (int64_t b = 0; b < 2; b++)
        for (int64_t i = 0; i < 3 * 8; i++) {
            int64_t at0 = (b * 5 + 0) * 24 + i;
            assert_true(ln_get(y, at0) == ln_get(x, at0));
        }
    assert_true(fabs(ln_get(y, 24) - ln_get(x, 24)) + fabs(ln_get(y, 24 + 4) - ln_get(x, 24 + 4)) > 1e-3);
    ln_tape_clear();
    ln_tensor_free(x);
}

/* q at position pq, k at position pk: the dot product after rope */
static double rope_dot(ln_tensor *q, ln_tensor *k, int64_t pq, int64_t pk) {
    ln_tensor *rq = ln_rope(q, 10000.0, pq), *rk = ln_rope(k, 10000.0, pk);
    if (!rq || !rk) fail_msg("rope: %s", ln_error_message());
    double s = 0;
    for (int64_t i = 0; i < q->numel; i++) s += ln_get(rq, i) * ln_get(rk, i);
    return s;
}

static void rope_dot_depends_only_on_relative_position(void **state) {
    ln_tensor *q = randn(4, (int64_t[]){1, 1, 1, 16}, 33), *k = randn(4, (int64_t[]){1, 1, 1, 16}, 34);
    double base = rope_dot(q, k, 3, 1);
    assert_true(fabs(rope_dot(q, k, 3 + 17, 1 + 17) - base) < 1e-10);
    assert_true(fabs(rope_dot(q, k, 3 + 1000, 1 + 1000) - base) < 1e-9);
    assert_true(fabs(rope_dot(q, k, 4, 1) - base) > 1e-6); /* another offset does change it */
    ln_tape_clear();
    ln_tensor_free(q);
    ln_tensor_free(k);
}

static void rope_odd_dim_names_the_shape(void **state) {
    ln_tensor *x = randn(4, (int64_t[]){1, 2, 3, 5}, 35), *x3 = randn(3, (int64_t[]){2, 3, 4}, 36);
    assert_null(ln_rope(x, 10000.0, 0));
    assert_non_null(strstr(ln_error_message(), "[1, 2, 3, 5]"));
    assert_null(ln_rope(x3, 10000.0, 0));
    assert_non_null(strstr(ln_error_message(), "[2, 3, 4]"));
    ln_tape_clear();
    ln_tensor_free(x);
    ln_tensor_free(x3);
}

/* ---- attention ---- */

static void attention_gradcheck_case(int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                                     bool causal, double scale, uint64_t seed) {
    ln_tensor *in[3] = {randn(4, (int64_t[]){B, T, Hq, D}, seed), randn(4, (int64_t[]){B, S, Hkv, D}, seed + 1),
                        randn(4, (int64_t[]){B, S, Hkv, D}, seed + 2)};
    op_args a = {.causal = causal, .scale = scale};
    assert_gradcheck(attention_of, &a, 3, in);
    free_all(3, in);
}

static void attention_gradcheck(void **state) {
    attention_gradcheck_case(2, 3, 4, 2, 2, 4, false, 0.7, 41); /* plain, S > T */
    attention_gradcheck_case(2, 4, 4, 2, 2, 4, true, 0.5, 44);  /* causal */
    attention_gradcheck_case(1, 3, 5, 4, 2, 4, true, 0.3, 47);  /* GQA, causal, S > T */
    attention_gradcheck_case(1, 5, 3, 4, 1, 2, false, 1.3, 50); /* MQA, T > S */
}

/* The test's own attention: materialized scores and softmax, straight from the definition. */
static double naive_attention_at(const ln_tensor *q, const ln_tensor *k, const ln_tensor *v, bool causal,
                                 double scale, int64_t b, int64_t t, int64_t h, int64_t d) {
    int64_t T = q->shape[1], Hq = q->shape[2], D = q->shape[3], S = k->shape[1], Hkv = k->shape[2];
    int64_t g = h / (Hq / Hkv);
    double scores[64], probs[64], mx = -INFINITY, sum = 0, out = 0;
    for (int64_t s = 0; s < S; s++) {
        scores[s] = 0;
        for (int64_t e = 0; e < D; e++)
            scores[s] += ln_get(q, ((b * T + t) * Hq + h) * D + e) * ln_get(k, ((b * S + s) * Hkv + g) * D + e);
        scores[s] = causal && s > t + (S - T) ? -INFINITY : scores[s] * scale;
        mx = fmax(mx, scores[s]);
    }
    for (int64_t s = 0; s < S; s++) sum += probs[s] = exp(scores[s] - mx);
    for (int64_t s = 0; s < S; s++) out += probs[s] / sum * ln_get(v, ((b * S + s) * Hkv + g) * D + d);
    return out;
}

static void attention_matches_naive_softmax(void **state) {
    struct { int64_t B, T, S, Hq, Hkv, D; bool causal; double scale; } cases[] = {
        {2, 5, 5, 2, 2, 8, false, 0.35}, {2, 5, 5, 2, 2, 8, true, 0.35}, {1, 4, 7, 4, 2, 6, true, 0.9},
        {1, 6, 3, 3, 1, 4, false, 2.0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t B = cases[c].B, T = cases[c].T, S = cases[c].S, Hq = cases[c].Hq, Hkv = cases[c].Hkv, D = cases[c].D;
        ln_tensor *q = randn(4, (int64_t[]){B, T, Hq, D}, 60 + c), *k = randn(4, (int64_t[]){B, S, Hkv, D}, 70 + c),
                  *v = randn(4, (int64_t[]){B, S, Hkv, D}, 80 + c);
        for (int64_t i = 0; i < q->numel; i++) ln_set(q, i, 3 * ln_get(q, i)); /* peaked softmax rows */
        ln_tensor *o = ln_attention(q, k, v, cases[c].causal, cases[c].scale);
        assert_tensor(o);
        double worst = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t h = 0; h < Hq; h++)
                    for (int64_t d = 0; d < D; d++) {
                        double want = naive_attention_at(q, k, v, cases[c].causal, cases[c].scale, b, t, h, d);
                        worst = fmax(worst, fabs(ln_get(o, ((b * T + t) * Hq + h) * D + d) - want));
                    }
        if (worst > 1e-12) fail_msg("case %zu: max |attention - naive| = %g", c, worst);
        ln_tape_clear();
        free_all(3, (ln_tensor *[]){q, k, v});
    }
}

/* kv [B, S, Hkv, D] with each head repeated `group` times -> [B, S, Hkv * group, D] */
static ln_tensor *repeat_heads(const ln_tensor *kv, int64_t group) {
    int64_t B = kv->shape[0], S = kv->shape[1], Hkv = kv->shape[2], D = kv->shape[3];
    ln_tensor *r = ln_tensor_new(LN_F64, LN_CPU, 4, (int64_t[]){B, S, Hkv * group, D});
    for (int64_t bs = 0; bs < B * S; bs++)
        for (int64_t h = 0; h < Hkv * group; h++)
            for (int64_t d = 0; d < D; d++)
                ln_set(r, (bs * Hkv * group + h) * D + d, ln_get(kv, (bs * Hkv + h / group) * D + d));
    r->requires_grad = true;
    return r;
}

static void gqa_equals_mha_with_repeated_kv(void **state) {
    int64_t B = 2, T = 4, S = 6, Hq = 6, Hkv = 2, D = 4, group = Hq / Hkv;
    ln_tensor *q = randn(4, (int64_t[]){B, T, Hq, D}, 90), *k = randn(4, (int64_t[]){B, S, Hkv, D}, 91),
              *v = randn(4, (int64_t[]){B, S, Hkv, D}, 92);
    ln_tensor *kr = repeat_heads(k, group), *vr = repeat_heads(v, group);
    ln_tensor *q2 = copy_as(q, LN_F64);
    ln_tensor *o = ln_attention(q, k, v, true, 0.4);
    assert_tensor(o);
    o = backward_weighted(o);
    ln_tensor *o2 = ln_attention(q2, kr, vr, true, 0.4);
    assert_tensor(o2);
    o2 = backward_weighted(o2);
    assert_true(test_rel_error(o, o2) < 1e-14);
    assert_true(test_rel_error(q->grad, q2->grad) < 1e-13);
    /* a shared kv head's gradient is the sum over the query heads reading it */
    for (int64_t bs = 0; bs < B * S; bs++)
        for (int64_t g = 0; g < Hkv; g++)
            for (int64_t d = 0; d < D; d++) {
                double sk = 0, sv = 0;
                for (int64_t j = 0; j < group; j++) {
                    sk += ln_get(kr->grad, (bs * Hq + g * group + j) * D + d);
                    sv += ln_get(vr->grad, (bs * Hq + g * group + j) * D + d);
                }
                assert_true(fabs(ln_get(k->grad, (bs * Hkv + g) * D + d) - sk) < 1e-12);
                assert_true(fabs(ln_get(v->grad, (bs * Hkv + g) * D + d) - sv) < 1e-12);
            }
    ln_tape_clear();
    free_all(8, (ln_tensor *[]){q, k, v, kr, vr, q2, o, o2});
}

static void causal_future_keys_do_not_leak(void **state) {
    int64_t B = 1, T = 4, S = 6, H = 2, D = 4, s_future = 4; /* visible from t >= s_future - (S - T) = 2 */
    ln_tensor *q = randn(4, (int64_t[]){B, T, H, D}, 100), *k = randn(4, (int64_t[]){B, S, H, D}, 101),
              *v = randn(4, (int64_t[]){B, S, H, D}, 102);
    ln_tensor *o = ln_attention(q, k, v, true, 0.5);
    assert_tensor(o);
    for (int64_t i = 0; i < H * D; i++) {
        ln_set(k, s_future * H * D + i, ln_get(k, s_future * H * D + i) + 5.0);
        ln_set(v, s_future * H * D + i, ln_get(v, s_future * H * D + i) - 3.0);
    }
    ln_tensor *o2 = ln_attention(q, k, v, true, 0.5);
    assert_tensor(o2);
    double changed_late = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H * D; i++) {
            double diff = fabs(ln_get(o, t * H * D + i) - ln_get(o2, t * H * D + i));
            if (t < 2) assert_true(diff == 0.0);
            else changed_late = fmax(changed_late, diff);
        }
    assert_true(changed_late > 1e-3);
    /* and without the mask the early rows do move */
    ln_tensor *o3 = ln_attention(q, k, v, false, 0.5);
    assert_tensor(o3);
    assert_true(fabs(ln_get(o3, 0) - ln_get(o2, 0)) > 1e-6);
    ln_tape_clear();
    free_all(3, (ln_tensor *[]){q, k, v});
}

/* ---- f32 storage agrees with f64 ---- */

static void f32_matches_f64(void **state) {
    ln_tensor *q = randn(4, (int64_t[]){2, 5, 4, 8}, 113), *k = randn(4, (int64_t[]){2, 7, 2, 8}, 114),
              *v = randn(4, (int64_t[]){2, 7, 2, 8}, 115), *w = randn(1, (int64_t[]){8}, 111),
              *b = randn(1, (int64_t[]){8}, 112);
    ln_tensor *f64[5] = {q, k, v, w, b}, *f32[5], *y[2];
    for (int i = 0; i < 5; i++) f32[i] = copy_as(f64[i], LN_F32);
    for (int p = 0; p < 2; p++) {
        ln_tensor **t = p ? f32 : f64;
        /* one graph through all four ops, so every forward and backward runs in both dtypes */
        y[p] = ln_attention(ln_layernorm(t[0], t[3], t[4], 1e-5), ln_rope(t[1], 500.0, 1), ln_rmsnorm(t[2], t[3], 1e-6),
                            true, 0.3);
        assert_tensor(y[p]);
        y[p] = backward_weighted(y[p]);
    }
    assert_int_equal(y[1]->dtype, LN_F32);
    double e = test_rel_error(y[1], y[0]);
    if (e > 1e-5) fail_msg("output f32 vs f64: relative error %g", e);
    for (int i = 0; i < 5; i++) {
        e = test_rel_error(f32[i]->grad, f64[i]->grad);
        if (e > 1e-5) fail_msg("gradient of input %d f32 vs f64: relative error %g", i, e);
    }
    free_all(5, f64);
    free_all(5, f32);
    free_all(2, y);
}

/* ---- backward reads only what went through the saved-tensor hook ---- */

static ln_tensor *copies[64];
static int n_copies;
static void *copy_pack(ln_tensor *t, void *ctx) { /* an "offload": a private copy */
    ln_tensor *c = ln_tensor_new_like(t);
    if (!c || ln_tensor_copy(c, t) || n_copies == 64) fail_msg("copy_pack: %s", ln_error_message());
    return copies[n_copies++] = c;
}
static ln_tensor *copy_unpack(void *packed, void *ctx) { return packed; }

static ln_tensor *all_four_ops(ln_tensor *const *t) {
    return ln_attention(ln_layernorm(t[0], t[3], t[4], 1e-5), ln_rope(t[1], 500.0, 1), ln_rmsnorm(t[2], t[3], 1e-6),
                        true, 0.3);
}

static void backward_uses_only_saved_tensors(void **state) {
    ln_tensor *ref[5] = {randn(4, (int64_t[]){1, 3, 2, 4}, 130), randn(4, (int64_t[]){1, 4, 1, 4}, 131),
                         randn(4, (int64_t[]){1, 4, 1, 4}, 132), randn(1, (int64_t[]){4}, 133),
                         randn(1, (int64_t[]){4}, 134)},
              *hooked[5];
    for (int i = 0; i < 5; i++) hooked[i] = copy_as(ref[i], LN_F64);
    ln_tensor *y = backward_weighted(all_four_ops(ref));
    ln_saved_hooks hooks = {copy_pack, copy_unpack, NULL};
    ln_set_saved_hooks(&hooks);
    n_copies = 0;
    ln_tensor *y2 = all_four_ops(hooked);
    assert_tensor(y2);
    /* clobber the inputs: backward must find their values in the packed copies */
    for (int i = 0; i < 5; i++)
        for (int64_t j = 0; j < hooked[i]->numel; j++) ln_set(hooked[i], j, 1e6);
    y2 = backward_weighted(y2);
    ln_set_saved_hooks(NULL);
    assert_true(n_copies >= 5);
    for (int i = 0; i < 5; i++) assert_true(test_rel_error(hooked[i]->grad, ref[i]->grad) < 1e-14);
    assert_true(test_rel_error(y2, y) < 1e-14);
    free_all(n_copies, copies);
    free_all(5, ref);
    free_all(5, hooked);
    free_all(2, (ln_tensor *[]){y, y2});
}

/* ---- attention shape errors ---- */

static void attention_bad_shapes_name_the_shapes(void **state) {
    ln_tensor *q = randn(4, (int64_t[]){2, 4, 4, 8}, 120);
    struct { int64_t k[4]; bool causal; const char *needle; } cases[] = {
        {{3, 4, 2, 8}, false, "[3, 4, 2, 8]"}, /* batch */
        {{2, 4, 2, 6}, false, "[2, 4, 2, 6]"}, /* D */
        {{2, 4, 3, 8}, false, "[2, 4, 3, 8]"}, /* Hq % Hkv */
        {{2, 3, 2, 8}, true, "[2, 3, 2, 8]"},  /* causal, S < T */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ln_tensor *k = randn(4, cases[c].k, 121), *v = randn(4, cases[c].k, 122);
        ln_error_clear();
        assert_null(ln_attention(q, k, v, cases[c].causal, 0.35));
        if (!strstr(ln_error_message(), cases[c].needle) || !strstr(ln_error_message(), "[2, 4, 4, 8]"))
            fail_msg("case %zu: message lacks the shapes: %s", c, ln_error_message());
        assert_null(strchr(ln_error_message(), '\n'));
        ln_tensor_free(k);
        ln_tensor_free(v);
    }
    /* S < T is fine without the mask */
    ln_tensor *k = randn(4, (int64_t[]){2, 3, 2, 8}, 123), *v = randn(4, (int64_t[]){2, 3, 2, 8}, 124),
              *v_bad = randn(4, (int64_t[]){2, 3, 2, 4}, 125);
    assert_tensor(ln_attention(q, k, v, false, 0.35));
    ln_tensor_set_name(v_bad, "layer0.v");
    assert_null(ln_attention(q, k, v_bad, false, 0.35));
    assert_non_null(strstr(ln_error_message(), "layer0.v [2, 3, 2, 4]"));
    assert_null(ln_attention(q, NULL, v, false, 0.35));
    ln_tape_clear();
    free_all(4, (ln_tensor *[]){q, k, v, v_bad});
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rmsnorm_gradcheck),
        cmocka_unit_test(rmsnorm_has_unit_rms_before_weight),
        cmocka_unit_test(rmsnorm_bad_weight_names_the_shape),
        cmocka_unit_test(rmsnorm_gated_gradcheck_and_equals_the_ops),
        cmocka_unit_test(rmsnorm_gated_bad_gate_names_the_shape),
        cmocka_unit_test(layernorm_gradcheck),
        cmocka_unit_test(layernorm_gives_zero_mean_unit_variance),
        cmocka_unit_test(layernorm_bad_bias_names_the_shape),
        cmocka_unit_test(norms_add_eps_inside_the_sqrt),
        cmocka_unit_test(rope_gradcheck),
        cmocka_unit_test(rope_matches_rotate_half_by_hand),
        cmocka_unit_test(rope_preserves_norms_and_pos0_is_identity),
        cmocka_unit_test(rope_dot_depends_only_on_relative_position),
        cmocka_unit_test(rope_odd_dim_names_the_shape),
        cmocka_unit_test(attention_gradcheck),
        cmocka_unit_test(attention_matches_naive_softmax),
        cmocka_unit_test(gqa_equals_mha_with_repeated_kv),
        cmocka_unit_test(causal_future_keys_do_not_leak),
        cmocka_unit_test(f32_matches_f64),
        cmocka_unit_test(backward_uses_only_saved_tensors),
        cmocka_unit_test(attention_bad_shapes_name_the_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
