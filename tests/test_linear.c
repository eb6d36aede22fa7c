/* The linear module (layers/linear.c) and frozen parameters: the dense kind is matmul + bias with
 * exact float64 gradients; every projection of every attention kind goes through the module;
 * the recipe's per-layer list and per-projection overrides pick the kind; frozen parameters get
 * no gradient, no optimizer state and no place in the gradient buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autocast.h"
#include "distributed/grad_buckets.h"
#include "layers/transformer.h"
#include "optim/adamw.h"
#include "testing.h"

static ln_config small_config(const char *attention) {
    ln_config c = test_small_config(16, 2, 1, 24);
    c.model.tied_embeddings = false;
    for (int i = 0; i < LN_MAX_LAYERS; i++) snprintf(c.model.attention[i], LN_NAME_LEN, "%s", attention);
    return c;
}

static ln_tensor *random_f64(int ndim, const int64_t *shape, uint64_t seed) {
    ln_tensor *t = ln_tensor_new(LN_F64, LN_CPU, ndim, shape);
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->numel; i++) ln_set(t, i, ln_rng_normal(&rng));
    t->requires_grad = true;
    return t;
}

typedef struct {
    ln_linear *l;
} linear_ctx;

/* in[0] is x; the weight and bias are the linear's own (inputs 1 and 2 of the check) */
static ln_tensor *linear_fn(ln_tensor *const *in, void *ctx) { return ln_linear_forward(((linear_ctx *)ctx)->l, in[0]); }

static void dense_is_matmul_plus_bias_with_exact_gradients(void **state) {
    ln_config c = small_config("softmax");
    ln_params params = {0};
    ln_linears all = {0};
    ln_linear l;
    ln_linear_site site = {&params, "layers.0.attn", &c.model, 0, &all};
    assert_ok(ln_linear_create(&l, &site, &(ln_linear_spec){"attn.q", "wq", "bq", 5, 3, LN_INIT_NORMAL}));
    assert_ptr_equal(l.kind, &ln_linear_dense);
    assert_int_equal(params.n, 2);
    assert_string_equal(params.items[0].name, "layers.0.attn.wq");
    assert_string_equal(params.items[1].name, "layers.0.attn.bq");
    assert_true(params.items[0].decay);
    assert_false(params.items[1].decay);
    assert_int_equal(all.n, 1);
    assert_ptr_equal(all.items[0], &l);
    /* f64 weights, a bias that is not zero, and x [2, 4, 3] */
    ln_tensor *w = random_f64(2, (int64_t[]){5, 3}, 1), *b = random_f64(1, (int64_t[]){5}, 2);
    ln_tensor *x = random_f64(3, (int64_t[]){2, 4, 3}, 3);
    ln_tensor *f32w = l.weight, *f32b = l.bias;
    l.weight = w;
    l.bias = b;
    ln_dtype was = ln_set_autocast(LN_F64);
    ln_tensor *y = ln_linear_forward(&l, x), *want = ln_add(ln_matmul(x, w, false, true), b);
    assert_tensor(y);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[2], 5);
    for (int64_t i = 0; i < y->numel; i++) assert_true(ln_get(y, i) == ln_get(want, i));
    linear_ctx ctx = {&l};
    assert_gradcheck(linear_fn, &ctx, 3, ((ln_tensor *[]){x, w, b}));
    ln_set_autocast(was);
    assert_null(ln_linear_forward(&l, NULL));
    ln_tape_clear();
    l.weight = f32w;
    l.bias = f32b;
    ln_linear_free(&l);
    ln_linears_free(&all);
    ln_params_free(&params);
    ln_tensor_free(w);
    ln_tensor_free(b);
    ln_tensor_free(x);
}

/* Weights that are not projections: the embedding and the short convolutions and hedgehog maps
 * of the linear attention kinds (the ops take those directly). */
static bool is_projection_weight(const ln_param *p) {
    return p->tensor->ndim == 2 && strcmp(p->name, "embedding") != 0 && !strstr(p->name, ".conv_") &&
           !strstr(p->name, ".fmap_");
}

static void every_projection_goes_through_the_module(void **state) {
    const char *kinds[] = {"softmax", "gla", "simple_gla", "linear", "none"};
    for (int k = 0; k < 5; k++) {
        ln_config c = small_config(kinds[k]);
        c.model.gla.use_short_conv = c.model.simple_gla.use_short_conv = c.model.linear_attn.use_short_conv = true;
        snprintf(c.model.linear_attn.feature_map, LN_NAME_LEN, "hedgehog");
        assert_ok(ln_config_validate(&c));
        ln_transformer m;
        assert_ok(ln_transformer_create(&m, &c.model, 1));
        int projections = 0;
        for (int i = 0; i < m.params.n; i++) {
            const ln_param *p = &m.params.items[i];
            if (!is_projection_weight(p)) continue;
            projections++;
            bool found = false;
            for (int j = 0; j < m.linears.n; j++) found |= m.linears.items[j]->weight == p->tensor;
            if (!found) fail_msg("%s: %s is a projection that is no ln_linear", kinds[k], p->name);
        }
        assert_int_equal(projections, m.linears.n);
        /* softmax: q k v o; gla: q k v g gk.down gk.up o; simple_gla: q k v g gk o; linear: q k v o;
         * all: mlp gate up down per layer, plus the untied head */
        const int per_layer[] = {4 + 3, 7 + 3, 6 + 3, 4 + 3, 3};
        assert_int_equal(m.linears.n, 2 * per_layer[k] + 1);
        assert_ptr_equal(m.linears.items[m.linears.n - 1]->weight, m.lm_head);
        ln_transformer_free(&m);
    }
}

static void the_recipe_picks_each_projections_kind(void **state) {
    ln_config c = small_config("gla");
    c.model.n_layers = 4;
    c.model.linear_count = 4;
    const char *per_layer[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) snprintf(c.model.linear[i], LN_NAME_LEN, "%s", per_layer[i]);
    const char *overrides[][2] = {{"attn", "x"}, {"attn.q", "y"}, {"mlp.down", "z"}};
    c.model.n_linear_overrides = 3;
    for (int i = 0; i < 3; i++) {
        snprintf(c.model.linear_overrides[i].projection, LN_NAME_LEN, "%s", overrides[i][0]);
        snprintf(c.model.linear_overrides[i].kind, LN_NAME_LEN, "%s", overrides[i][1]);
    }
    const ln_model_config *m = &c.model;
    assert_string_equal(ln_linear_kind_name(m, 1, "mlp.up"), "b");
    assert_string_equal(ln_linear_kind_name(m, 3, "mlp.gate"), "d");
    assert_string_equal(ln_linear_kind_name(m, 2, "mlp.down"), "z");
    assert_string_equal(ln_linear_kind_name(m, 2, "attn.k"), "x");
    assert_string_equal(ln_linear_kind_name(m, 0, "attn.q"), "y"); /* the more specific entry wins */
    assert_string_equal(ln_linear_kind_name(m, 0, "attn.gk.down"), "x");
    assert_string_equal(ln_linear_kind_name(m, -1, "lm_head"), "dense"); /* a list leaves the head dense */
    c.model.linear_count = 0;
    assert_string_equal(ln_linear_kind_name(m, -1, "lm_head"), "a"); /* one kind reaches the head */
    snprintf(c.model.linear_overrides[2].projection, LN_NAME_LEN, "lm_head");
    assert_string_equal(ln_linear_kind_name(m, -1, "lm_head"), "z");
    /* a group name covers only whole name parts: "attn.g" is not "attn.gk" */
    snprintf(c.model.linear_overrides[0].projection, LN_NAME_LEN, "attn.g");
    assert_string_equal(ln_linear_kind_name(m, 1, "attn.g"), "x");
    assert_string_equal(ln_linear_kind_name(m, 1, "attn.gk.up"), "b");
    /* building a model with an unknown kind names the layer and projection */
    ln_config bad = small_config("softmax");
    snprintf(bad.model.linear_overrides[0].projection, LN_NAME_LEN, "mlp.up");
    snprintf(bad.model.linear_overrides[0].kind, LN_NAME_LEN, "int3");
    bad.model.n_linear_overrides = 1;
    ln_transformer t;
    assert_int_equal(ln_transformer_create(&t, &bad.model, 1), LN_ERR);
    assert_non_null(strstr(ln_error_message(), "unknown linear kind 'int3'"));
    ln_transformer_free(&t);
}

/* Frozen parameters: no gradient from the backward, untouched by AdamW (which holds state for the
 * trainable ones only), and no place in the gradient buckets. */
static void frozen_parameters_get_no_gradient_and_no_state(void **state) {
    ln_config c = small_config("gla");
    ln_transformer m;
    assert_ok(ln_transformer_create(&m, &c.model, 1));
    assert_int_equal(ln_params_freeze(&m.params, "layers.*.mlp.*"), 6);
    assert_int_equal(ln_params_freeze(&m.params, "embedding"), 1);
    assert_int_equal(ln_params_freeze(&m.params, "nothing.*"), 0);
    ln_params trainable;
    assert_ok(ln_params_trainable(&m.params, &trainable));
    assert_int_equal(trainable.n, m.params.n - 7);
    for (int i = 0; i < trainable.n; i++) assert_false(trainable.items[i].frozen);
    /* the frozen values before a step */
    int n_frozen = 0;
    float *before[16];
    for (int i = 0; i < m.params.n; i++)
        if (m.params.items[i].frozen) {
            ln_tensor *t = m.params.items[i].tensor;
            before[n_frozen] = malloc((size_t)t->numel * sizeof(float));
            memcpy(before[n_frozen++], t->data, (size_t)t->numel * sizeof(float));
        }
    assert_int_equal(n_frozen, 7);
    ln_adamw opt;
    assert_ok(ln_adamw_create(&opt, &trainable, &(ln_config){0}.optim));
    opt.cfg.lr = 1e-2;
    opt.cfg.beta1 = 0.9;
    opt.cfg.beta2 = 0.95;
    opt.cfg.eps = 1e-8;
    ln_tensor *ids = test_random_ids(2, 6, 32, 4), *targets = test_random_ids(2, 6, 32, 5);
    ln_tensor *loss = ln_transformer_loss(&m, ids, targets);
    assert_tensor(loss);
    assert_ok(ln_backward(loss));
    ln_tape_clear();
    double norm;
    assert_ok(ln_adamw_clip_step(&opt, 1e-2, 1.0, &norm));
    assert_true(isfinite(norm) && norm > 0);
    n_frozen = 0;
    for (int i = 0; i < m.params.n; i++) {
        const ln_param *p = &m.params.items[i];
        if (p->frozen) {
            if (p->tensor->grad) fail_msg("%s is frozen but has a gradient", p->name);
            assert_false(p->tensor->requires_grad);
            assert_memory_equal(before[n_frozen], p->tensor->data, (size_t)p->tensor->numel * sizeof(float));
            free(before[n_frozen++]);
        } else if (!p->tensor->grad) {
            fail_msg("%s is trainable but got no gradient", p->name);
        }
    }
    /* the optimizer's state and the gradient buckets cover the trainable parameters alone */
    ln_grad_buckets b;
    assert_ok(ln_grad_buckets_plan(&b, &trainable, 0, NULL, NULL));
    assert_int_equal(b.n_params, trainable.n);
    for (int i = 0; i < m.params.n; i++)
        if (m.params.items[i].frozen) assert_int_equal(ln_grad_buckets_find(&b, m.params.items[i].tensor), -1);
    ln_grad_buckets_free(&b);
    ln_adamw_free(&opt);
    ln_params_free(&trainable); /* the list only: the tensors are the model's */
    assert_non_null(m.params.items[0].tensor->data);
    ln_tensor_free(ids);
    ln_tensor_free(targets);
    ln_transformer_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_is_matmul_plus_bias_with_exact_gradients),
        cmocka_unit_test(every_projection_goes_through_the_module),
        cmocka_unit_test(the_recipe_picks_each_projections_kind),
        cmocka_unit_test(frozen_parameters_get_no_gradient_and_no_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
