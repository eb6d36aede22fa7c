/* The model, the optimizer and the schedule, through the library; the model's fused residual
 * steps train exactly as the plain add + RMSNorm graph. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/autocast.h"
#include "layers/transformer.h"
#include "optim/adamw.h"
#include "testing.h"

static ln_config small_config(void) { return test_small_config(32, 4, 2, 64); }

static void overfits_one_batch(void **state) {
    ln_config c = small_config();
    c.optim.lr = 1e-2;
    c.optim.weight_decay = 0;
    ln_transformer m;
    ln_adamw opt;
    assert_ok(ln_transformer_create(&m, &c.model, 7));
    assert_ok(ln_adamw_create(&opt, &m.params, &c.optim));
    ln_tensor *ids = test_random_ids(4, 16, 32, 1), *targets = test_random_ids(4, 16, 32, 2);
    double first = 0, last = 0;
    for (int step = 0; step < 120; step++) {
        ln_params_zero_grad(&m.params);
        ln_tensor *loss = ln_transformer_loss(&m, ids, targets);
        assert_tensor(loss);
        assert_ok(ln_backward(loss));
        last = ln_get(loss, 0);
        if (step == 0) first = last;
        ln_tape_clear();
        ln_clip_grad_norm(&m.params, 1.0);
        assert_ok(ln_adamw_step(&opt, c.optim.lr));
    }
    assert_true(fabs(first - log(32.0)) < 0.2); /* a fresh model is near uniform */
    if (!(last < 0.1 * first)) fail_msg("loss went from %g to %g, not below 10%%", first, last);
    ln_adamw_free(&opt);
    ln_transformer_free(&m);
    ln_tensor_free(ids);
    ln_tensor_free(targets);
}

/* The transformer's forward with a separate ln_add and ln_rmsnorm at every residual step, as
 * ln_transformer_logits was written before it used ln_add_rmsnorm. */
static ln_tensor *unfused_loss(ln_transformer *m, ln_tensor *ids, ln_tensor *targets) {
    const double eps = m->cfg.norm_eps;
    ln_tensor *x = ln_embedding(ln_weight(m->embedding), ids);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        ln_block *b = &m->blocks[i];
        x = ln_add(x, b->attention_kind->forward(b->attention, ln_rmsnorm(x, ln_weight(b->attn_norm), eps)));
        x = ln_add(x, ln_mlp_forward(&b->mlp, ln_rmsnorm(x, ln_weight(b->mlp_norm), eps)));
    }
    ln_tensor *logits = ln_matmul(ln_rmsnorm(x, ln_weight(m->final_norm), eps), ln_weight(m->lm_head), false, true);
    return ln_cross_entropy(logits, targets);
}

/* One training step (as recipes/train.c takes it); returns the loss, *nodes the tape's size. */
static double train_step(ln_transformer *m, ln_adamw *opt, bool fused, ln_tensor *ids, ln_tensor *targets,
                         size_t *nodes) {
    ln_params_zero_grad(&m->params);
    ln_tensor *loss = fused ? ln_transformer_loss(m, ids, targets) : unfused_loss(m, ids, targets);
    assert_tensor(loss);
    *nodes = ln_tape_size();
    assert_ok(ln_backward(loss));
    double value = ln_get(loss, 0);
    ln_tape_clear();
    ln_clip_grad_norm(&m->params, 1.0);
    assert_ok(ln_adamw_step(opt, 3e-3));
    return value;
}

/* Fusing each residual add with the RMSNorm after it (the final norm included) changes no bit of
 * the losses or the trained parameters, in f32 and under bf16 autocast, over a stack of mixed
 * attention kinds, and takes two nodes per block off the tape. */
static void fused_residual_steps_train_as_the_plain_graph(void **state) {
    const char *kinds[] = {"softmax", "gla", "linear", "none"};
    for (int bf16 = 0; bf16 < 2; bf16++) {
        ln_config c = small_config();
        c.model.n_layers = c.model.attention_count = 4;
        for (int i = 0; i < 4; i++) snprintf(c.model.attention[i], LN_NAME_LEN, "%s", kinds[i]);
        assert_ok(ln_config_validate(&c));
        ln_transformer fused, plain;
        ln_adamw opt_fused, opt_plain;
        assert_ok(ln_transformer_create(&fused, &c.model, 5));
        assert_ok(ln_transformer_create(&plain, &c.model, 5));
        assert_ok(ln_adamw_create(&opt_fused, &fused.params, &c.optim));
        assert_ok(ln_adamw_create(&opt_plain, &plain.params, &c.optim));
        ln_dtype was = ln_set_autocast(bf16 ? LN_BF16 : LN_F32);
        for (int step = 0; step < 4; step++) {
            ln_tensor *ids = test_random_ids(2, 12, 32, 10 + step), *targets = test_random_ids(2, 12, 32, 20 + step);
            size_t n_fused, n_plain;
            double a = train_step(&fused, &opt_fused, true, ids, targets, &n_fused);
            double b = train_step(&plain, &opt_plain, false, ids, targets, &n_plain);
            if (a != b) fail_msg("%s step %d: fused loss %.17g, plain %.17g", bf16 ? "bf16" : "f32", step, a, b);
            assert_int_equal(n_plain - n_fused, 2 * c.model.n_layers);
            ln_tensor_free(ids);
            ln_tensor_free(targets);
        }
        ln_set_autocast(was);
        for (int i = 0; i < fused.params.n; i++) {
            const ln_tensor *p = fused.params.items[i].tensor, *q = plain.params.items[i].tensor;
            if (memcmp(p->data, q->data, (size_t)p->numel * ln_dtype_size(p->dtype)))
                fail_msg("%s: %s differs after training", bf16 ? "bf16" : "f32", fused.params.items[i].name);
        }
        ln_adamw_free(&opt_fused);
        ln_adamw_free(&opt_plain);
        ln_transformer_free(&fused);
        ln_transformer_free(&plain);
    }
}

static void logits_are_causal(void **state) {
    ln_config c = small_config();
    ln_transformer m;
    assert_ok(ln_transformer_create(&m, &c.model, 3));
    ln_tensor *ids = test_random_ids(1, 12, 32, 5);
    ln_tensor *a = ln_transformer_logits(&m, ids);
    assert_tensor(a);
    ((int32_t *)ids->data)[8] = (((int32_t *)ids->data)[8] + 1) % 32;
    ln_tensor *b = ln_transformer_logits(&m, ids);
    assert_tensor(b);
    int64_t V = 32;
    for (int64_t i = 0; i < 8 * V; i++) assert_true(ln_get(a, i) == ln_get(b, i));
    double changed = 0;
    for (int64_t i = 8 * V; i < 12 * V; i++) changed += fabs(ln_get(a, i) - ln_get(b, i));
    assert_true(changed > 0);
    ln_tape_clear();
    ln_tensor_free(ids);
    ln_transformer_free(&m);
}

static void init_is_seeded(void **state) {
    ln_config c = small_config();
    ln_transformer a, b, d;
    assert_ok(ln_transformer_create(&a, &c.model, 1));
    assert_ok(ln_transformer_create(&b, &c.model, 1));
    assert_ok(ln_transformer_create(&d, &c.model, 2));
    ln_tensor *wa = ln_params_find(&a.params, "layers.0.attn.wq")->tensor, *wb = ln_params_find(&b.params, "layers.0.attn.wq")->tensor,
              *wd = ln_params_find(&d.params, "layers.0.attn.wq")->tensor;
    assert_memory_equal(wa->data, wb->data, (size_t)wa->numel * 4);
    assert_true(memcmp(wa->data, wd->data, (size_t)wa->numel * 4) != 0);
    /* norms start at one, and tied embeddings share the LM head */
    assert_true(ln_get(a.final_norm, 0) == 1.0);
    assert_ptr_equal(a.lm_head, a.embedding);
    ln_transformer_free(&a);
    ln_transformer_free(&b);
    ln_transformer_free(&d);
}

static void attention_kind_comes_from_the_table(void **state) {
    ln_config c = small_config();
    snprintf(c.model.attention[1], sizeof c.model.attention[1], "mamba");
    ln_transformer m;
    assert_int_equal(ln_transformer_create(&m, &c.model, 1), LN_ERR);
    assert_non_null(strstr(ln_error_message(), "model.attention[1]"));
    assert_non_null(strstr(ln_error_message(), "softmax"));
    ln_transformer_free(&m);
}

static void untied_head_has_its_own_matrix(void **state) {
    ln_config c = small_config();
    c.model.tied_embeddings = false;
    ln_transformer m;
    assert_ok(ln_transformer_create(&m, &c.model, 1));
    assert_ptr_not_equal(m.lm_head, m.embedding);
    assert_non_null(ln_params_find(&m.params, "lm_head"));
    ln_transformer_free(&m);
}

static void schedule_warms_up_then_decays(void **state) {
    ln_optim_config o = {.lr = 1.0, .min_lr = 0.1, .warmup = 10};
    assert_true(fabs(ln_lr_at(&o, 0, 100) - 0.1) < 1e-12);
    assert_true(fabs(ln_lr_at(&o, 9, 100) - 1.0) < 1e-12);
    assert_true(fabs(ln_lr_at(&o, 10, 100) - 1.0) < 1e-12);
    assert_true(fabs(ln_lr_at(&o, 55, 100) - 0.55) < 1e-12); /* halfway down the cosine */
    assert_true(fabs(ln_lr_at(&o, 100, 100) - 0.1) < 1e-12);
    for (int64_t s = 11; s <= 100; s++) assert_true(ln_lr_at(&o, s, 100) <= ln_lr_at(&o, s - 1, 100));
}

static void clipping_scales_to_the_max_norm(void **state) {
    ln_params p = {0};
    ln_tensor *a = ln_params_add(&p, "", "a", 1, (int64_t[]){2}, LN_INIT_ZEROS, true);
    ln_tensor *b = ln_params_add(&p, "", "b", 1, (int64_t[]){1}, LN_INIT_ZEROS, true);
    ln_tensor *ga = ln_grad_of(a), *gb = ln_grad_of(b);
    ln_set(ga, 0, 3);
    ln_set(ga, 1, 0);
    ln_set(gb, 0, 4);
    assert_true(fabs(ln_clip_grad_norm(&p, 1.0) - 5.0) < 1e-12);
    assert_true(fabs(ln_get(ga, 0) - 0.6) < 1e-6 && fabs(ln_get(gb, 0) - 0.8) < 1e-6);
    assert_true(fabs(ln_clip_grad_norm(&p, 10.0) - 1.0) < 1e-6); /* under the max: untouched */
    assert_true(fabs(ln_get(ga, 0) - 0.6) < 1e-6);
    ln_params_free(&p);
}

/* ln_adamw_clip_step = ln_clip_grad_norm then ln_adamw_step, bit for bit; a NaN gradient leaves
 * the parameters and the step count as they were */
static void clip_step_is_clip_then_step(void **state) {
    ln_params p[2] = {{0}, {0}};
    ln_adamw opt[2];
    ln_optim_config o = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    for (int k = 0; k < 2; k++) {
        ln_params_add(&p[k], "", "a", 1, (int64_t[]){3}, LN_INIT_NORMAL, true);
        ln_params_add(&p[k], "", "b", 2, (int64_t[]){2, 2}, LN_INIT_NORMAL, false);
        ln_params_init(&p[k], 7, 0.5, 1);
        assert_ok(ln_adamw_create(&opt[k], &p[k], &o));
    }
    for (int step = 0; step < 3; step++) {
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < p[k].n; i++) {
                ln_tensor *g = ln_grad_of(p[k].items[i].tensor);
                for (int64_t j = 0; j < g->numel; j++) ln_set(g, j, (step == 1 ? 5.0 : 0.2) * sin(1.0 + 3 * i + j));
            }
        double norm_ref = ln_clip_grad_norm(&p[0], 1.0), norm = 0;
        assert_ok(ln_adamw_step(&opt[0], 0.05));
        assert_ok(ln_adamw_clip_step(&opt[1], 0.05, 1.0, &norm));
        assert_true(norm == norm_ref);
        for (int i = 0; i < p[0].n; i++)
            assert_memory_equal(p[0].items[i].tensor->data, p[1].items[i].tensor->data,
                                (size_t)p[0].items[i].tensor->numel * sizeof(float));
    }
    ln_tensor *a = p[1].items[0].tensor;
    float before = ((float *)a->data)[0];
    ln_set(ln_grad_of(a), 1, NAN);
    double norm = 0;
    assert_ok(ln_adamw_clip_step(&opt[1], 0.05, 1.0, &norm));
    assert_true(isnan(norm));
    assert_true(((float *)a->data)[0] == before);
    assert_int_equal(opt[1].step, 3);
    for (int k = 0; k < 2; k++) {
        ln_adamw_free(&opt[k]);
        ln_params_free(&p[k]);
    }
}

static void adamw_matches_the_formula(void **state) {
    ln_params p = {0};
    ln_tensor *w = ln_params_add(&p, "", "w", 1, (int64_t[]){1}, LN_INIT_ZEROS, true);
    ln_tensor *n = ln_params_add(&p, "", "norm", 1, (int64_t[]){1}, LN_INIT_ONES, false);
    ln_params_init(&p, 1, 0.02, 1);
    ln_set(w, 0, 2.0);
    ln_optim_config o = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.5};
    ln_adamw opt;
    assert_ok(ln_adamw_create(&opt, &p, &o));
    double m = 0, v = 0, x = 2.0, y = 1.0;
    double grads[3] = {0.5, -1.0, 0.25};
    for (int t = 1; t <= 3; t++) {
        ln_set(ln_grad_of(w), 0, grads[t - 1]);
        ln_set(ln_grad_of(n), 0, grads[t - 1]);
        assert_ok(ln_adamw_step(&opt, 0.1));
        m = 0.9 * m + 0.1 * grads[t - 1];
        v = 0.95 * v + 0.05 * grads[t - 1] * grads[t - 1];
        double update = (m / (1 - pow(0.9, t))) / (sqrt(v / (1 - pow(0.95, t))) + 1e-8);
        x = x - 0.1 * 0.5 * x - 0.1 * update; /* decayed */
        y = y - 0.1 * update;                 /* a norm gain: no decay */
        assert_true(fabs(ln_get(w, 0) - x) < 1e-5);
        assert_true(fabs(ln_get(n, 0) - y) < 1e-5);
    }
    ln_adamw_free(&opt);
    ln_params_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(overfits_one_batch),
        cmocka_unit_test(fused_residual_steps_train_as_the_plain_graph),
        cmocka_unit_test(logits_are_causal),
        cmocka_unit_test(init_is_seeded),
        cmocka_unit_test(attention_kind_comes_from_the_table),
        cmocka_unit_test(untied_head_has_its_own_matrix),
        cmocka_unit_test(schedule_warms_up_then_decays),
        cmocka_unit_test(clipping_scales_to_the_max_norm),
        cmocka_unit_test(clip_step_is_clip_then_step),
        cmocka_unit_test(adamw_matches_the_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
