/* Recipes: YAML loading, --set overrides, validation and the resolved-recipe round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "recipes/config.h"
#include "testing.h"

/* Fails unless loading `yaml` fails with a message containing every needle. */
static void expect_load_error(const char *yaml, const char *needle1, const char *needle2) {
    ln_config c;
    ln_config_defaults(&c);
    if (ln_config_load_string(&c, yaml, "r.yaml") != LN_ERR) fail_msg("accepted: %s", yaml);
    const char *msg = ln_error_message();
    if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2))) fail_msg("message '%s' lacks '%s'", msg, needle1);
    assert_null(strchr(msg, '\n'));
}

static void expect_set_error(const char *assignment, const char *needle) {
    ln_config c;
    ln_config_defaults(&c);
    if (ln_config_set(&c, assignment) != LN_ERR) fail_msg("accepted --set %s", assignment);
    if (!strstr(ln_error_message(), needle)) fail_msg("message '%s' lacks '%s'", ln_error_message(), needle);
}

static void expect_invalid(ln_config *c, const char *needle) {
    if (ln_config_validate(c) != LN_ERR) fail_msg("validated a config that should fail on %s", needle);
    if (!strstr(ln_error_message(), needle)) fail_msg("message '%s' lacks '%s'", ln_error_message(), needle);
}

/* c's resolved recipe holds every needle (NULL ends them) and loads back into the same config. */
static void expect_round_trip(const ln_config *c, const char *const *needles) {
    char *yaml = ln_config_to_yaml(c);
    assert_non_null(yaml);
    for (; *needles; needles++)
        if (!strstr(yaml, *needles)) fail_msg("resolved recipe lacks '%s':\n%s", *needles, yaml);
    ln_config b;
    ln_config_defaults(&b);
    assert_ok(ln_config_load_string(&b, yaml, "resolved"));
    assert_memory_equal(c, &b, sizeof b);
    free(yaml);
}

static void defaults_validate(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_ok(ln_config_validate(&c));
    assert_string_equal(c.model.attention[3], "softmax");
}

static void tiny_recipe_is_the_default(void **state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/recipes/tiny.yaml", test_source_dir());
    ln_config a, b;
    ln_config_defaults(&a);
    ln_config_defaults(&b);
    assert_ok(ln_config_load_file(&b, path));
    assert_memory_equal(&a, &b, sizeof a); /* both start from zeroed defaults, so padding matches */
}

/* gla-tiny.yaml and hybrid-tiny.yaml are tiny.yaml but for the attention kinds */
static void linear_recipes_differ_from_tiny_only_in_attention(void **state) {
    const char *names[] = {"gla-tiny.yaml", "hybrid-tiny.yaml"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/recipes/%s", test_source_dir(), names[i]);
        ln_config a, b;
        ln_config_defaults(&a);
        ln_config_defaults(&b);
        assert_ok(ln_config_load_file(&b, path));
        assert_ok(ln_config_validate(&b));
        assert_string_equal(b.model.attention[0], "gla");
        assert_string_equal(b.model.attention[3], i == 0 ? "gla" : "softmax");
        assert_int_equal(b.model.attention_count, i == 0 ? 0 : 4);
        memcpy(b.model.attention, a.model.attention, sizeof a.model.attention);
        b.model.attention_count = 0;
        assert_memory_equal(&a, &b, sizeof a);
    }
}

static void values_of_every_type_load(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_ok(ln_config_load_string(&c,
                                    "model:\n  d_model: 256\n  tied_embeddings: no\n  attention: [softmax, softmax, softmax, softmax]\n"
                                    "train:\n  steps: 1e3\n  seed: 18446744073709551615\n  device: cpu\n"
                                    "optim:\n  lr: 3e-4\n  min_lr: 0\n"
                                    "sample:\n  prompt: \"In the \\\"beginning\\\"\"\n",
                                    "r.yaml"));
    assert_int_equal(c.model.d_model, 256);
    assert_false(c.model.tied_embeddings);
    assert_int_equal(c.model.attention_count, 4);
    assert_int_equal(c.train.steps, 1000);
    assert_true(c.train.seed == UINT64_MAX);
    assert_string_equal(c.train.device, "cpu");
    assert_true(c.optim.lr == 3e-4);
    assert_string_equal(c.sample.prompt, "In the \"beginning\"");
}

static void resolved_recipe_round_trips(void **state) {
    ln_config a;
    ln_config_defaults(&a);
    assert_ok(ln_config_set(&a, "optim.lr=0.1234567890123"));
    assert_ok(ln_config_set(&a, "model.n_layers=3"));
    assert_ok(ln_config_set(&a, "model.attention=[softmax, softmax, softmax]"));
    assert_ok(ln_config_set(&a, "sample.prompt=a \"quoted\" \\ prompt"));
    assert_ok(ln_config_set(&a, "train.seed=12345678901234"));
    expect_round_trip(&a, (const char *[]){NULL});
}

static void set_parses_each_type(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_ok(ln_config_set(&c, "train.steps=42"));
    assert_ok(ln_config_set(&c, "optim.warmup=0"));
    assert_ok(ln_config_set(&c, "optim.weight_decay=1e-2"));
    assert_ok(ln_config_set(&c, "model.tied_embeddings=false"));
    assert_ok(ln_config_set(&c, "data.path=/tmp/some where"));
    assert_ok(ln_config_set(&c, "model.attention=softmax"));
    assert_int_equal(c.train.steps, 42);
    assert_int_equal(c.optim.warmup, 0);
    assert_true(fabs(c.optim.weight_decay - 0.01) < 1e-15);
    assert_false(c.model.tied_embeddings);
    assert_string_equal(c.data.path, "/tmp/some where");
    assert_int_equal(c.model.attention_count, 0);
}

static void bad_recipes_name_the_key(void **state) {
    expect_load_error("model:\n  d_model: [1, 2\n", "r.yaml:", "malformed YAML");
    expect_load_error("optim:\n  lrr: 0.1\n", "'optim.lrr'", "did you mean 'optim.lr'");
    expect_load_error("optimizer:\n  lr: 0.1\n", "'optimizer'", "did you mean");
    expect_load_error("train:\n  steps: ten\n", "train.steps", "expected an integer");
    expect_load_error("train:\n  steps: 2.5\n", "r.yaml:2", "train.steps");
    expect_load_error("train:\n  batch_size: -4\n", "train.batch_size", "out of range");
    expect_load_error("model:\n  tied_embeddings: maybe\n", "model.tied_embeddings", NULL);
    expect_load_error("model:\n  d_model:\n    x: 1\n", "model.d_model", "mapping");
    expect_load_error("- just\n- a list\n", "r.yaml:1", "mapping of sections");
    expect_load_error("train: 5\n", "train", "expected a mapping");
}

static void bad_overrides_name_the_key(void **state) {
    expect_set_error("train.stepz=3", "did you mean 'train.steps'");
    expect_set_error("train.steps", "key=value");
    expect_set_error("optim.lr=fast", "optim.lr");
    expect_set_error("train.seed=-1", "train.seed");
    expect_set_error("model.d_model=[1", "model.d_model");
}

static void validation_names_the_keys(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    c.model.n_heads = 3;
    expect_invalid(&c, "model.n_heads");
    ln_config_defaults(&c);
    c.model.n_kv_heads = 3;
    expect_invalid(&c, "model.n_kv_heads");
    ln_config_defaults(&c);
    c.model.d_model = 12; /* head dim 3: odd */
    expect_invalid(&c, "RoPE");
    ln_config_defaults(&c);
    assert_ok(ln_config_set(&c, "model.attention=[softmax, softmax]"));
    expect_invalid(&c, "model.n_layers");
    ln_config_defaults(&c);
    c.train.grad_accum = 3;
    expect_invalid(&c, "train.grad_accum");
    ln_config_defaults(&c);
    assert_ok(ln_config_set(&c, "train.device=tpu"));
    expect_invalid(&c, "train.device");
    ln_config_defaults(&c);
    assert_ok(ln_config_set(&c, "train.attention_impl=flash"));
    expect_invalid(&c, "train.attention_impl");
    ln_config_defaults(&c);
    assert_ok(ln_config_set(&c, "train.attention_impl=cudnn"));
    assert_ok(ln_config_validate(&c));
    ln_config_defaults(&c);
    c.optim.min_lr = 1;
    expect_invalid(&c, "optim.min_lr");
    ln_config_defaults(&c);
    c.data.path[0] = '\0';
    expect_invalid(&c, "data.path");
}

static void linear_kinds_take_nested_sections(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_ok(ln_config_load_string(&c,
                                    "model:\n  attention: [gla, simple_gla, linear, softmax]\n"
                                    "  gla:\n    use_short_conv: true\n    expand_k: 1\n"
                                    "  linear_attn:\n    feature_map: hedgehog\n    normalize: yes\n"
                                    "  simple_gla:\n"
                                    "  linear_chunk_size: 64\n",
                                    "r.yaml"));
    assert_true(c.model.gla.use_short_conv);
    assert_true(c.model.gla.expand_k == 1);
    assert_int_equal(c.model.gla.gate_low_rank_dim, 16); /* untouched keys keep their defaults */
    assert_string_equal(c.model.linear_attn.feature_map, "hedgehog");
    assert_true(c.model.linear_attn.normalize);
    assert_int_equal(c.model.linear_chunk_size, 64);
    assert_ok(ln_config_validate(&c));
    assert_ok(ln_config_set(&c, "model.simple_gla.gate_logit_normalizer=8"));
    assert_true(c.model.simple_gla.gate_logit_normalizer == 8);
    /* the dump nests them and loads back the same */
    expect_round_trip(&c, (const char *[]){"\n  gla:\n    expand_k: 1\n", "\n  linear_chunk_size: 64\ntrain:\n", NULL});
}

static void bad_nested_keys_name_the_key(void **state) {
    expect_load_error("model:\n  gla:\n    expand_kk: 1\n", "r.yaml:3", "did you mean 'model.gla.expand_k'");
    expect_load_error("model:\n  gla: 5\n", "model.gla", "expected a mapping");
    expect_load_error("model:\n  gla:\n    conv_size: 5\n", "model.gla.conv_size", "out of range");
    expect_load_error("model:\n  gla:\n    use_short_conv: [1]\n", "model.gla.use_short_conv", "list");
    expect_load_error("model:\n  mamba:\n    d_state: 16\n", "'model.mamba'", "did you mean");
    expect_set_error("model.gla.expand=1", "did you mean 'model.gla.expand_k'");
    expect_set_error("model.linear_attn.normalize=maybe", "model.linear_attn.normalize");
}

/* Recipes (and the checkpoints that keep them) from before model.linear named the projections'
 * kind held the linear attention kind's options under model.linear: they load as linear_attn's. */
static void old_linear_section_loads_as_linear_attn(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_ok(ln_config_load_string(&c, "model:\n  attention: linear\n  linear:\n    feature_map: relu\n"
                                        "    expand_k: 0.5\n", "old.yaml"));
    assert_string_equal(c.model.linear_attn.feature_map, "relu");
    assert_true(c.model.linear_attn.expand_k == 0.5);
    assert_string_equal(c.model.linear[0], "dense");
    assert_ok(ln_config_validate(&c));
    expect_load_error("model:\n  linear:\n    feature_mapp: relu\n", "model.linear_attn.feature_mapp", "did you mean");
}

/* model.linear: one kind, or a list with one per layer; overrides per projection; the dump. */
static void linear_kinds_per_layer_and_projection(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_ok(ln_config_load_string(&c, "model:\n  linear: [dense, dense, dense, dense]\n"
                                        "  linear_overrides: {mlp: dense, attn.q: dense}\n"
                                        "train:\n  freeze: [embedding, \"layers.*.mlp.*\"]\n", "r.yaml"));
    assert_int_equal(c.model.linear_count, 4);
    assert_int_equal(c.model.n_linear_overrides, 2);
    assert_string_equal(c.model.linear_overrides[1].projection, "attn.q");
    assert_int_equal(c.train.n_freeze, 2);
    assert_string_equal(c.train.freeze[1], "layers.*.mlp.*");
    assert_ok(ln_config_validate(&c));
    expect_round_trip(&c, (const char *[]){"  linear_overrides: {\"mlp\": \"dense\", \"attn.q\": \"dense\"}\n",
                                            "  freeze: [\"embedding\", \"layers.*.mlp.*\"]\n", NULL});
    /* one pattern alone, and --set of each */
    assert_ok(ln_config_set(&c, "train.freeze=embedding"));
    assert_int_equal(c.train.n_freeze, 1);
    assert_ok(ln_config_set(&c, "train.freeze=[]"));
    assert_int_equal(c.train.n_freeze, 0);
    assert_ok(ln_config_set(&c, "model.linear_overrides={lm_head: dense}"));
    assert_int_equal(c.model.n_linear_overrides, 1);
    assert_ok(ln_config_set(&c, "model.linear=dense"));
    assert_int_equal(c.model.linear_count, 0);

    /* each accepted by --set, refused by validation with a message naming the entry */
    const char *invalid[][2] = {
        {"model.linear=[dense, dense]", "model.linear lists 2 kinds but model.n_layers is 4"},
        {"model.linear=[dense, dense, int3, dense]", "model.linear[2]: unknown linear kind 'int3' (known: dense)"},
        {"model.linear=int3", "model.linear: unknown linear kind 'int3'"},
        {"model.linear_overrides={attn.x: dense}", "model.linear_overrides: unknown projection 'attn.x'"},
        {"model.linear_overrides={mlp.up: int3}", "model.linear_overrides.mlp.up: unknown linear kind 'int3'"},
        {"model.linear_overrides={mlp: dense, mlp: dense}", "'mlp' is given twice"},
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        ln_config_defaults(&c);
        assert_ok(ln_config_set(&c, invalid[i][0]));
        expect_invalid(&c, invalid[i][1]);
    }
    expect_set_error("model.linear_overrides=dense", "expected a mapping");
    expect_set_error("model.linear={a: b}", "expected a single value, got a mapping");
}

static void empty_recipe_is_an_error(void **state) {
    char path[] = "/tmp/linnet-empty-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "# only a comment\n", 17), 17);
    close(fd);
    ln_config c;
    ln_config_defaults(&c);
    assert_int_equal(ln_config_load_file(&c, path), LN_ERR);
    assert_non_null(strstr(ln_error_message(), path));
    assert_non_null(strstr(ln_error_message(), "empty"));
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd); /* zero bytes */
    assert_int_equal(ln_config_load_file(&c, path), LN_ERR);
    assert_non_null(strstr(ln_error_message(), path));
    unlink(path);
    expect_load_error("", "r.yaml", "empty");
}

static void missing_file_is_named(void **state) {
    ln_config c;
    ln_config_defaults(&c);
    assert_int_equal(ln_config_load_file(&c, "/nonexistent/recipe.yaml"), LN_ERR);
    assert_non_null(strstr(ln_error_message(), "/nonexistent/recipe.yaml"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_validate),
        cmocka_unit_test(tiny_recipe_is_the_default),
        cmocka_unit_test(linear_recipes_differ_from_tiny_only_in_attention),
        cmocka_unit_test(values_of_every_type_load),
        cmocka_unit_test(resolved_recipe_round_trips),
        cmocka_unit_test(set_parses_each_type),
        cmocka_unit_test(bad_recipes_name_the_key),
        cmocka_unit_test(bad_overrides_name_the_key),
        cmocka_unit_test(validation_names_the_keys),
        cmocka_unit_test(linear_kinds_take_nested_sections),
        cmocka_unit_test(bad_nested_keys_name_the_key),
        cmocka_unit_test(missing_file_is_named),
        cmocka_unit_test(old_linear_section_loads_as_linear_attn),
        cmocka_unit_test(linear_kinds_per_layer_and_projection),
        cmocka_unit_test(empty_recipe_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
