/* The linear attention kinds as layers of a model: gla, simple_gla, linear (each feature map),
 * none, and hybrid stacks. Every kind builds, is causal and trains; the GLA layer's gradient
 * matches finite differences in float64; GLA parameters go through a checkpoint and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autocast.h"
#include "checkpoints/checkpoint.h"
#include "layers/transformer.h"
#include "optim/adamw.h"
#include "testing.h"

static ln_config small_config(const char *kind) {
    ln_config c = test_small_config(32, 4, 2, 64);
    for (int i = 0; i < LN_MAX_LAYERS; i++) snprintf(c.model.attention[i], LN_NAME_LEN, "%s", kind);
    return c;
}

static void set_kinds(ln_config *c, int n, const char *const *kinds) {
    c->model.n_layers = n;
    c->model.attention_count = n;
    for (int i = 0; i < n; i++) snprintf(c->model.attention[i], LN_NAME_LEN, "%s", kinds[i]);
}

/* Logits are finite, and changing token 8 changes no logit before it (but some after). */
static void expect_causal_model(const ln_config *c) {
    ln_transformer m;
    assert_ok(ln_config_validate(c));
    assert_ok(ln_transformer_create(&m, &c->model, 3));
    ln_tensor *ids = test_random_ids(2, 12, 32, 5);
    ln_tensor *a = ln_transformer_logits(&m, ids);
    assert_tensor(a);
    assert_int_equal(a->ndim, 3);
    assert_int_equal(a->shape[2], 32);
    ((int32_t *)ids->data)[8] = (((int32_t *)ids->data)[8] + 1) % 32;
    ln_tensor *b = ln_transformer_logits(&m, ids);
    assert_tensor(b);
    int64_t V = 32, T = 12;
    double changed = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        assert_true(isfinite(ln_get(a, i)));
        int64_t t = i / V % T, batch = i / (V * T);
        if (batch == 0 && t < 8) assert_true(ln_get(a, i) == ln_get(b, i));
        if (batch == 0 && t >= 8) changed += fabs(ln_get(a, i) - ln_get(b, i));
    }
    if (strcmp(c->model.attention[0], "none") != 0 || c->model.attention_count) assert_true(changed > 0);
    ln_tape_clear();
    ln_tensor_free(ids);
    ln_transformer_free(&m);
}

static void every_kind_builds_and_is_causal(void **state) {
    const char *kinds[] = {"gla", "simple_gla", "linear", "none", "softmax"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        ln_config c = small_config(kinds[i]);
        expect_causal_model(&c);
    }
    const char *maps[] = {"identity", "elu1", "relu", "hedgehog"};
    for (size_t i = 0; i < 4; i++) {
        ln_config c = small_config("linear");
        snprintf(c.model.linear_attn.feature_map, LN_NAME_LEN, "%s", maps[i]);
        c.model.linear_attn.normalize = i % 2;
        expect_causal_model(&c);
    }
    /* short convolutions, the chunkwise CPU form, and other widths */
    ln_config c = small_config("gla");
    c.model.gla.use_short_conv = true;
    c.model.gla.conv_size = 3;
    c.model.gla.expand_v = 2;
    c.model.linear_chunk_size = 4;
    expect_causal_model(&c);
    c = small_config("simple_gla");
    c.model.simple_gla.use_short_conv = true;
    c.model.linear_chunk_size = 64;
    expect_causal_model(&c);
}

static void hybrid_list_builds_each_kind(void **state) {
    ln_config c = small_config("gla");
    set_kinds(&c, 4, (const char *const[]){"gla", "simple_gla", "linear", "softmax"});
    expect_causal_model(&c);
    ln_transformer m;
    assert_ok(ln_transformer_create(&m, &c.model, 1));
    assert_string_equal(m.blocks[0].attention_kind->name, "gla");
    assert_string_equal(m.blocks[3].attention_kind->name, "softmax");
    /* gla's parameters, by name and shape: key width d/2 over 4 heads, value width d */
    const struct {
        const char *name;
        int64_t rows, cols;
    } want[] = {{"layers.0.attn.wq", 16, 32},    {"layers.0.attn.wk", 16, 32},   {"layers.0.attn.wv", 32, 32},
                {"layers.0.attn.wg", 32, 32},    {"layers.0.attn.gk_down", 16, 32}, {"layers.0.attn.gk_up", 16, 16},
                {"layers.0.attn.gk_bias", 16, 0}, {"layers.0.attn.o_norm", 8, 0}, {"layers.0.attn.wo", 32, 32},
                {"layers.1.attn.gk_proj", 4, 32}, {"layers.1.attn.gk_bias", 4, 0}, {"layers.2.attn.wq", 32, 32},
                {"layers.3.attn.wk", 16, 32}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ln_param *p = ln_params_find(&m.params, want[i].name);
        if (!p) fail_msg("no parameter %s", want[i].name);
        assert_int_equal(p->tensor->shape[0], want[i].rows);
        if (want[i].cols) assert_int_equal(p->tensor->shape[1], want[i].cols);
    }
    assert_null(ln_params_find(&m.params, "layers.0.attn.conv_q")); /* off by default */
    assert_null(ln_params_find(&m.params, "layers.2.attn.rope"));
    ln_transformer_free(&m);
}

/* ---- gradient check of a GLA block in float64 ---- */

/* Turns a parameter into f64 in place (pointers held by the layer stay valid), with values
 * N(0, std) so the check exercises the nonlinearities, not a near-linear start. */
static void promote_f64(ln_tensor *t, ln_rng *rng, double std, bool keep) {
    ln_tensor *n = ln_tensor_new(LN_F64, LN_CPU, t->ndim, t->shape);
    for (int64_t i = 0; i < t->numel; i++) ln_set(n, i, keep ? ln_get(t, i) : std * ln_rng_normal(rng));
    void *data = t->data;
    t->data = n->data;
    n->data = data;
    n->dtype = LN_F32;
    t->dtype = LN_F64;
    ln_tensor_free(n);
}

typedef struct {
    const ln_attention_kind *kind;
    void *layer;
    ln_tensor *norm; /* the block's pre-norm gain */
} block_ctx;

/* x + attention(rmsnorm(x)): the attention half of a pre-norm block */
static ln_tensor *block_fn(ln_tensor *const *in, void *ctx) {
    block_ctx *b = ctx;
    return ln_add(in[0], b->kind->forward(b->layer, ln_rmsnorm(in[0], b->norm, 1e-5)));
}

static void check_block(const char *kind_name, ln_config *c, int64_t T) {
    ln_params params = {0};
    block_ctx b = {.kind = ln_attention_kind_find(kind_name)};
    assert_non_null(b.kind);
    b.norm = ln_params_add(&params, "layers.0", "attn_norm", 1, (int64_t[]){c->model.d_model}, LN_INIT_ONES, false);
    ln_linears linears = {0};
    b.layer = b.kind->create(&(ln_linear_site){&params, "layers.0.attn", &c->model, 0, &linears});
    assert_non_null(b.layer);
    ln_params_init(&params, 1, 0.02, 1);
    ln_rng rng;
    ln_rng_seed(&rng, 9);
    ln_tensor *inputs[32];
    int n = 0;
    inputs[n++] = ln_randn_f64(3, (int64_t[]){2, T, c->model.d_model}, 4);
    for (int i = 0; i < params.n; i++) {
        ln_param *p = &params.items[i];
        /* gains near one; a gate bias around +2 keeps the decay between about 0.9 and 1 */
        bool gain = strstr(p->name, "norm") != NULL;
        promote_f64(p->tensor, &rng, 0.5, gain);
        if (strstr(p->name, "gk_bias"))
            for (int64_t j = 0; j < p->tensor->numel; j++) ln_set(p->tensor, j, 2 + ln_get(p->tensor, j));
        assert_true(n < 32);
        inputs[n++] = p->tensor;
    }
    ln_dtype was = ln_set_autocast(LN_F64); /* ln_weight leaves the f64 parameters as they are */
    assert_gradcheck(block_fn, &b, n, inputs);
    ln_set_autocast(was);
    ln_tape_clear();
    b.kind->destroy(b.layer);
    ln_linears_free(&linears);
    ln_params_free(&params);
    ln_tensor_free(inputs[0]);
}

static void gla_block_gradient_matches_finite_differences(void **state) {
    ln_config c = small_config("gla");
    c.model.d_model = 8;
    c.model.n_heads = 2;
    c.model.gla.gate_low_rank_dim = 3;
    check_block("gla", &c, 5); /* the recurrence */
    c.model.gla.use_short_conv = true;
    c.model.linear_chunk_size = 4; /* chunks of 4: T = 7 crosses a boundary */
    check_block("gla", &c, 7);
}

static void other_linear_blocks_pass_gradcheck(void **state) {
    ln_config c = small_config("simple_gla");
    c.model.d_model = 8;
    c.model.n_heads = 2;
    c.model.simple_gla.use_short_conv = true;
    check_block("simple_gla", &c, 6);
    snprintf(c.model.linear_attn.feature_map, LN_NAME_LEN, "hedgehog");
    c.model.linear_attn.normalize = true;
    check_block("linear", &c, 6);
}

/* ---- training ---- */

static double train_steps(ln_transformer *m, const ln_config *c, int steps, ln_tensor *ids, ln_tensor *targets,
                          double *first) {
    ln_adamw opt;
    assert_ok(ln_adamw_create(&opt, &m->params, &c->optim));
    double last = 0;
    for (int step = 0; step < steps; step++) {
        ln_params_zero_grad(&m->params);
        ln_tensor *loss = ln_transformer_loss(m, ids, targets);
        assert_tensor(loss);
        assert_ok(ln_backward(loss));
        last = ln_get(loss, 0);
        if (step == 0 && first) *first = last;
        ln_tape_clear();
        ln_clip_grad_norm(&m->params, 1.0);
        assert_ok(ln_adamw_step(&opt, c->optim.lr));
    }
    ln_adamw_free(&opt);
    return last;
}

static void loss_decreases_for_each_kind(void **state) {
    const char *kinds[] = {"gla", "simple_gla", "linear", "hybrid"};
    for (size_t i = 0; i < 4; i++) {
        ln_config c = small_config(kinds[i]);
        if (i == 3) set_kinds(&c, 2, (const char *const[]){"gla", "softmax"});
        c.optim.lr = 1e-2;
        c.optim.weight_decay = 0;
        ln_transformer m;
        assert_ok(ln_transformer_create(&m, &c.model, 7));
        ln_tensor *ids = test_random_ids(4, 16, 32, 1), *targets = test_random_ids(4, 16, 32, 2);
        double first = 0, last = train_steps(&m, &c, 40, ids, targets, &first);
        assert_true(fabs(first - log(32.0)) < 0.2); /* a fresh model is near uniform */
        if (!(last < 0.5 * first)) fail_msg("%s: loss went from %g to %g, not below half", kinds[i], first, last);
        ln_transformer_free(&m);
        ln_tensor_free(ids);
        ln_tensor_free(targets);
    }
}

static void bf16_autocast_runs_gla(void **state) {
    ln_config c = small_config("gla");
    ln_transformer m;
    assert_ok(ln_transformer_create(&m, &c.model, 2));
    ln_tensor *ids = test_random_ids(2, 10, 32, 1), *targets = test_random_ids(2, 10, 32, 2);
    ln_tensor *ref = ln_transformer_loss(&m, ids, targets);
    assert_tensor(ref);
    double want = ln_get(ref, 0);
    ln_tape_clear();
    ln_dtype was = ln_set_autocast(LN_BF16);
    ln_tensor *loss = ln_transformer_loss(&m, ids, targets);
    assert_tensor(loss);
    assert_ok(ln_backward(loss));
    assert_true(fabs(ln_get(loss, 0) - want) < 0.05);
    ln_set_autocast(was);
    ln_tensor *g = ln_params_find(&m.params, "layers.0.attn.gk_up")->tensor->grad;
    assert_non_null(g); /* gradients reach the f32 masters */
    ln_tape_clear();
    ln_transformer_free(&m);
    ln_tensor_free(ids);
    ln_tensor_free(targets);
}

/* ---- checkpoints ---- */

static void gla_params_survive_a_checkpoint(void **state) {
    ln_config c = small_config("gla");
    set_kinds(&c, 2, (const char *const[]){"gla", "softmax"});
    c.model.gla.use_short_conv = true;
    ln_transformer a, b;
    assert_ok(ln_transformer_create(&a, &c.model, 1));
    assert_ok(ln_transformer_create(&b, &c.model, 2)); /* other values, same names and shapes */
    ln_tensor *ids = test_random_ids(2, 12, 32, 1), *targets = test_random_ids(2, 12, 32, 2);
    train_steps(&a, &c, 3, ids, targets, NULL);

    char names[128][112];
    ln_named_tensor ta[128], tb[128];
    assert_true(a.params.n <= 128);
    for (int i = 0; i < a.params.n; i++) {
        snprintf(names[i], sizeof names[i], "params/%s", a.params.items[i].name);
        ta[i] = (ln_named_tensor){names[i], a.params.items[i].tensor};
        tb[i] = (ln_named_tensor){names[i], b.params.items[i].tensor};
    }
    char path[600];
    snprintf(path, sizeof path, "%s/gla.h5", test_tmpdir());
    char *yaml = ln_config_to_yaml(&c);
    ln_checkpoint save = {.n_tensors = a.params.n, .tensors = ta, .step = 3, .recipe_yaml = yaml};
    assert_ok(ln_checkpoint_save(path, &save));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Lexists(f, "params", H5P_DEFAULT) > 0);
    const char *expected[] = {"params/layers.0.attn.wq", "params/layers.0.attn.gk_up", "params/layers.0.attn.conv_k",
                              "params/layers.0.attn.o_norm", "params/layers.1.attn.wq"};
    for (int i = 0; i < 5; i++)
        if (H5Lexists(f, expected[i], H5P_DEFAULT) <= 0) fail_msg("%s: no dataset %s", path, expected[i]);
    H5Fclose(f);

    ln_checkpoint load = {.n_tensors = b.params.n, .tensors = tb};
    assert_ok(ln_checkpoint_load(path, &load));
    assert_int_equal(load.step, 3);
    /* the recipe in the checkpoint rebuilds the same stack */
    ln_config back;
    ln_config_defaults(&back);
    assert_ok(ln_config_load_string(&back, load.recipe_yaml, "checkpoint"));
    assert_string_equal(back.model.attention[0], "gla");
    assert_true(back.model.gla.use_short_conv);
    free(load.recipe_yaml);
    free(yaml);

    ln_tensor *la = ln_transformer_logits(&a, ids), *lb = ln_transformer_logits(&b, ids);
    assert_tensor(la);
    assert_tensor(lb);
    for (int64_t i = 0; i < la->numel; i++) assert_true(ln_get(la, i) == ln_get(lb, i));
    ln_tape_clear();
    /* and training goes on identically from the restored weights */
    double ra = train_steps(&a, &c, 2, ids, targets, NULL), rb = train_steps(&b, &c, 2, ids, targets, NULL);
    assert_true(ra == rb);
    ln_transformer_free(&a);
    ln_transformer_free(&b);
    ln_tensor_free(ids);
    ln_tensor_free(targets);
}

/* ---- the op the gates add ---- */

static ln_tensor *logsigmoid_fn(ln_tensor *const *in, void *ctx) { return ln_logsigmoid(in[0]); }
static ln_tensor *logsigmoid_scaled_fn(ln_tensor *const *in, void *ctx) {
    return ln_logsigmoid_scaled(in[0], *(const double *)ctx);
}

static void logsigmoid_is_stable_and_differentiable(void **state) {
    ln_tensor *x = ln_randn_f64(1, (int64_t[]){6}, 3);
    const double values[6] = {-800, -3, -1e-9, 0, 2.5, 800};
    for (int i = 0; i < 6; i++) ln_set(x, i, values[i]);
    ln_tensor *y = ln_logsigmoid(x);
    assert_tensor(y);
    for (int i = 0; i < 6; i++) {
        double v = values[i], want = v < 0 ? v - log1p(exp(v)) : -log1p(exp(-v));
        assert_true(isfinite(ln_get(y, i)));
        assert_true(fabs(ln_get(y, i) - want) <= 1e-12 * (1 + fabs(want)));
    }
    ln_tape_clear();
    for (int i = 0; i < 6; i++) ln_set(x, i, 3 * (i - 2.5));
    assert_gradcheck(logsigmoid_fn, NULL, 1, (ln_tensor *[]){x});
    /* with a scale (GLA's 1 / gate_logit_normalizer, and a negative one): s times the above */
    const double scales[2] = {1.0 / 16, -0.7};
    for (int k = 0; k < 2; k++) {
        ln_tensor *plain = ln_logsigmoid(x), *scaled = ln_logsigmoid_scaled(x, scales[k]);
        assert_tensor(plain);
        assert_tensor(scaled);
        for (int i = 0; i < 6; i++)
            assert_true(fabs(ln_get(scaled, i) - scales[k] * ln_get(plain, i)) <= 1e-15 * (1 + fabs(ln_get(plain, i))));
        ln_tape_clear();
        assert_gradcheck(logsigmoid_scaled_fn, (void *)&scales[k], 1, (ln_tensor *[]){x});
    }
    assert_null(ln_logsigmoid_scaled(x, NAN));
    ln_tensor_free(x);
}

/* ---- errors ---- */

static void expect_one_line(const char *needle1, const char *needle2) {
    const char *msg = ln_error_message();
    if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)) || strchr(msg, '\n'))
        fail_msg("message '%s' lacks '%s'/'%s' or spans lines", msg, needle1, needle2 ? needle2 : "");
}

static void bad_kinds_and_keys_are_named(void **state) {
    ln_config c = small_config("gla");
    assert_ok(ln_config_set(&c, "model.attention=[gla, mamba]"));
    assert_int_equal(ln_config_validate(&c), LN_ERR);
    expect_one_line("model.attention[1]", "unknown attention kind 'mamba' (known: softmax, gla, simple_gla, linear, none)");
    ln_transformer m;
    assert_int_equal(ln_transformer_create(&m, &c.model, 1), LN_ERR);
    expect_one_line("model.attention[1]", "mamba");
    ln_transformer_free(&m);

    c = small_config("gla");
    assert_ok(ln_config_set(&c, "model.attention=glaa"));
    assert_int_equal(ln_config_validate(&c), LN_ERR);
    expect_one_line("model.attention: unknown attention kind 'glaa'", NULL);

    c = small_config("gla");
    assert_ok(ln_config_set(&c, "model.attention=[gla, gla, softmax]"));
    assert_int_equal(ln_config_validate(&c), LN_ERR);
    expect_one_line("model.attention lists 3 kinds but model.n_layers is 2", NULL);

    c = small_config("linear");
    assert_ok(ln_config_set(&c, "model.linear_attn.feature_map=cosine"));
    assert_int_equal(ln_config_validate(&c), LN_ERR);
    expect_one_line("model.linear_attn.feature_map: 'cosine'", "hedgehog");
    assert_int_equal(ln_transformer_create(&m, &c.model, 1), LN_ERR);
    expect_one_line("model.attention[0]", "model.linear_attn.feature_map");
    ln_transformer_free(&m);

    c = small_config("gla");
    c.model.gla.expand_k = 0.3; /* 9 key channels over 4 heads */
    assert_int_equal(ln_config_validate(&c), LN_ERR);
    expect_one_line("model.gla.expand_k 0.3", "model.n_heads 4");
    c.model.gla.expand_k = 1; /* a linear kind's head dim need not be even: no RoPE */
    c.model.d_model = 12;     /* head dim 3 */
    assert_ok(ln_config_validate(&c));
    assert_ok(ln_config_set(&c, "model.attention=[gla, softmax]"));
    assert_int_equal(ln_config_validate(&c), LN_ERR);
    expect_one_line("RoPE", NULL);

    /* an unused kind's options are not checked */
    c = small_config("softmax");
    snprintf(c.model.linear_attn.feature_map, LN_NAME_LEN, "nope");
    assert_ok(ln_config_validate(&c));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kind_builds_and_is_causal),
        cmocka_unit_test(hybrid_list_builds_each_kind),
        cmocka_unit_test(gla_block_gradient_matches_finite_differences),
        cmocka_unit_test(other_linear_blocks_pass_gradcheck),
        cmocka_unit_test(loss_decreases_for_each_kind),
        cmocka_unit_test(bf16_autocast_runs_gla),
        cmocka_unit_test(gla_params_survive_a_checkpoint),
        cmocka_unit_test(logsigmoid_is_stable_and_differentiable),
        cmocka_unit_test(bad_kinds_and_keys_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
