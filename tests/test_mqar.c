/* Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology"), the synthetic task that
 * separates token mixers by what they can look up: each sequence lists key-value pairs, then asks
 * for keys again, and only the answers are scored:
 *   k1 v1 k2 v2 .. kP vP  q1 a1 q2 a2 .. qQ aQ      (q_j one of the keys, a_j its value)
 * Pairs are drawn afresh for every sequence, so a model that does not look back at the pairs
 * (attention kind `none`) can only guess a value: accuracy near chance, 1 / VALUES. A 2-layer GLA
 * model with the same budget learns to recall. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "layers/transformer.h"
#include "optim/adamw.h"
#include "testing.h"

/* The task's size, tuned so that GLA reaches > 0.98 within 600 steps (about 25 s on one core)
 * for every seed tried; MQAR_* environment variables override it for experiments. */
static int KEYS = 16,   /* key tokens 0 .. KEYS-1 (at most 64) */
    VALUES = 16,        /* value tokens KEYS .. KEYS+VALUES-1 */
    PAIRS = 6,          /* key-value pairs per sequence (distinct keys) */
    QUERIES = 6,        /* queries per sequence (keys among the pairs, with repeats) */
    SEQ, BATCH = 32;

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}

/* One batch of MQAR sequences: ids [B, SEQ] and targets [B, SEQ] (-1 except at the queries). */
static void make_batch(ln_rng *rng, ln_tensor *ids, ln_tensor *targets) {
    int32_t *x = ids->data, *y = targets->data;
    for (int b = 0; b < BATCH; b++) {
        int32_t *xs = x + b * SEQ, *ys = y + b * SEQ;
        int keys[64], vals[64];
        for (int i = 0; i < KEYS; i++) keys[i] = i;
        for (int i = 0; i < PAIRS; i++) { /* distinct keys: a partial Fisher-Yates shuffle */
            int j = i + (int)ln_rng_below(rng, KEYS - i), t = keys[i];
            keys[i] = keys[j];
            keys[j] = t;
            vals[i] = KEYS + (int)ln_rng_below(rng, VALUES);
        }
        for (int i = 0; i < PAIRS; i++) {
            xs[2 * i] = keys[i];
            xs[2 * i + 1] = vals[i];
        }
        for (int j = 0; j < QUERIES; j++) {
            int p = (int)ln_rng_below(rng, PAIRS), at = 2 * PAIRS + 2 * j;
            xs[at] = keys[p];
            xs[at + 1] = vals[p];
        }
        for (int t = 0; t < SEQ; t++) ys[t] = -1;
        for (int j = 0; j < QUERIES; j++) ys[2 * PAIRS + 2 * j] = xs[2 * PAIRS + 2 * j + 1];
    }
}

/* Fraction of scored positions whose argmax logit is the target. */
static double accuracy(ln_tensor *logits, ln_tensor *targets) {
    int64_t V = logits->shape[2], right = 0, scored = 0;
    const int32_t *y = targets->data;
    for (int64_t i = 0; i < targets->numel; i++) {
        if (y[i] < 0) continue;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (ln_get(logits, i * V + v) > ln_get(logits, i * V + best)) best = v;
        right += best == y[i];
        scored++;
    }
    return (double)right / (double)scored;
}

/* Trains a 2-layer model of attention kind `kind` for `steps` and returns its accuracy on fresh
 * held-out batches. */
static double train_mqar(const char *kind, int steps, double *final_loss) {
    ln_config c;
    ln_config_defaults(&c);
    c.model.vocab_size = KEYS + VALUES;
    c.model.d_model = env_int("MQAR_D", 64);
    c.model.n_layers = 2;
    c.model.n_heads = env_int("MQAR_H", 2);
    c.model.n_kv_heads = c.model.n_heads;
    c.model.mlp_hidden = 2 * c.model.d_model;
    /* the short convolution puts each key beside its value, so recall is a single lookup */
    c.model.gla.use_short_conv = env_int("MQAR_CONV", 1);
    c.model.gla.expand_k = 1.0;
    for (int i = 0; i < LN_MAX_LAYERS; i++) snprintf(c.model.attention[i], LN_NAME_LEN, "%s", kind);
    c.optim.lr = env_int("MQAR_LR_E4", 30) * 1e-4;
    c.optim.min_lr = c.optim.lr / 10;
    c.optim.warmup = steps / 10;
    c.optim.weight_decay = 0.01;
    assert_ok(ln_config_validate(&c));

    ln_transformer m;
    ln_adamw opt;
    assert_ok(ln_transformer_create(&m, &c.model, (uint64_t)env_int("MQAR_SEED", 11)));
    assert_ok(ln_adamw_create(&opt, &m.params, &c.optim));
    ln_tensor *ids = ln_tensor_new(LN_I32, LN_CPU, 2, (int64_t[]){BATCH, SEQ});
    ln_tensor *targets = ln_tensor_new(LN_I32, LN_CPU, 2, (int64_t[]){BATCH, SEQ});
    ln_rng data;
    ln_rng_seed(&data, 5);
    for (int step = 0; step < steps; step++) {
        make_batch(&data, ids, targets);
        ln_params_zero_grad(&m.params);
        ln_tensor *loss = ln_transformer_loss(&m, ids, targets);
        assert_tensor(loss);
        assert_ok(ln_backward(loss));
        *final_loss = ln_get(loss, 0);
        ln_tape_clear();
        ln_clip_grad_norm(&m.params, 1.0);
        assert_ok(ln_adamw_step(&opt, ln_lr_at(&c.optim, step, steps)));
        if (getenv("MQAR_VERBOSE") && step % 50 == 0) printf("  %s step %d loss %.4f\n", kind, step, *final_loss);
    }
    /* held out: a data stream the training never saw */
    ln_rng_seed(&data, 999);
    double acc = 0;
    bool was = ln_set_grad_enabled(false);
    for (int b = 0; b < 4; b++) {
        make_batch(&data, ids, targets);
        ln_tensor *logits = ln_transformer_logits(&m, ids);
        assert_tensor(logits);
        acc += accuracy(logits, targets) / 4;
        ln_tape_clear();
    }
    ln_set_grad_enabled(was);
    ln_tensor_free(ids);
    ln_tensor_free(targets);
    ln_adamw_free(&opt);
    ln_transformer_free(&m);
    return acc;
}

static void gla_recalls_and_no_mixing_guesses(void **state) {
    int steps = env_int("MQAR_STEPS", 600);
    KEYS = env_int("MQAR_KEYS", KEYS);
    VALUES = env_int("MQAR_VALUES", VALUES);
    PAIRS = env_int("MQAR_PAIRS", PAIRS);
    QUERIES = env_int("MQAR_QUERIES", QUERIES);
    BATCH = env_int("MQAR_BATCH", BATCH);
    SEQ = 2 * (PAIRS + QUERIES);
    double gla_loss = 0, none_loss = 0;
    clock_t t0 = clock();
    double gla = train_mqar("gla", steps, &gla_loss);
    clock_t t1 = clock();
    double none = train_mqar("none", steps, &none_loss);
    clock_t t2 = clock();
    printf("MQAR (%d pairs, %d queries, %d values, %d steps of %d sequences): gla accuracy %.3f (loss %.3f, %.1f s), "
           "none %.3f (loss %.3f, %.1f s), chance %.3f\n",
           PAIRS, QUERIES, VALUES, steps, BATCH, gla, gla_loss, (double)(t1 - t0) / CLOCKS_PER_SEC, none, none_loss,
           (double)(t2 - t1) / CLOCKS_PER_SEC, 1.0 / VALUES);
    if (!(gla > 0.9)) fail_msg("gla accuracy %.3f, expected > 0.9", gla);
    if (!(none < 0.2)) fail_msg("no-mixing accuracy %.3f, expected near chance %.3f", none, 1.0 / VALUES);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gla_recalls_and_no_mixing_guesses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
