/* Recipes: every key in one table, so loading YAML, --set overrides, "did you mean" hints and the
 * resolved-recipe dump all agree. */
#include "recipes/config.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "layers/attention.h"
#include "layers/linear.h"

/* K_KINDS: one name for every layer, or a list with one per layer (model.attention, model.linear);
 * K_PATTERNS: one string or a list of them (train.freeze); K_OVERRIDES: a mapping of projection
 * to linear kind (model.linear_overrides). */
typedef enum { K_INT, K_INT64, K_U64, K_DOUBLE, K_BOOL, K_STRING, K_KINDS, K_PATTERNS, K_OVERRIDES } key_type;

typedef struct key_def {
    const char *name;
    key_type type;
    size_t offset, size;
    double min, max;
    const char *doc;
} key_def;

#define FIELD(f) offsetof(ln_config, f), sizeof(((ln_config *)0)->f)
#define BIG 9.2e18
static const key_def keys[] = {
    {"model.vocab_size", K_INT, FIELD(model.vocab_size), 2, 1 << 24, "vocabulary size (at least the tokenizer's)"},
    {"model.d_model", K_INT, FIELD(model.d_model), 2, 1 << 16, "width of the residual stream"},
    {"model.n_layers", K_INT, FIELD(model.n_layers), 1, LN_MAX_LAYERS, "transformer blocks"},
    {"model.n_heads", K_INT, FIELD(model.n_heads), 1, 1024, "query heads"},
    {"model.n_kv_heads", K_INT, FIELD(model.n_kv_heads), 1, 1024, "key/value heads (grouped-query attention)"},
    {"model.mlp_hidden", K_INT, FIELD(model.mlp_hidden), 1, 1 << 20, "SwiGLU hidden width"},
    {"model.rope_theta", K_DOUBLE, FIELD(model.rope_theta), 1, 1e12, "RoPE base"},
    {"model.norm_eps", K_DOUBLE, FIELD(model.norm_eps), 0, 1, "RMSNorm epsilon"},
    {"model.init_std", K_DOUBLE, FIELD(model.init_std), 0, 10, "std of the normal initialisation"},
    {"model.tied_embeddings", K_BOOL, FIELD(model.tied_embeddings), 0, 0, "LM head shares the embedding matrix"},
    {"model.attention", K_KINDS, FIELD(model.attention), 0, 0, "attention kind, or a list with one per layer"},
    {"model.linear", K_KINDS, FIELD(model.linear), 0, 0, "linear kind of the projections, or a list with one per layer"},
    {"model.linear_overrides", K_OVERRIDES, FIELD(model.linear_overrides), 0, 0, "{projection: linear kind} over model.linear"},
    /* the linear kinds' options; keys of one sub-section stay together (the YAML dump nests them) */
    {"model.gla.expand_k", K_DOUBLE, FIELD(model.gla.expand_k), 0, 64, "gla: key width / d_model"},
    {"model.gla.expand_v", K_DOUBLE, FIELD(model.gla.expand_v), 0, 64, "gla: value width / d_model"},
    {"model.gla.use_short_conv", K_BOOL, FIELD(model.gla.use_short_conv), 0, 0, "gla: short convolution + silu on q, k, v"},
    {"model.gla.conv_size", K_INT, FIELD(model.gla.conv_size), 2, 4, "gla: short convolution width"},
    {"model.gla.gate_low_rank_dim", K_INT, FIELD(model.gla.gate_low_rank_dim), 1, 1 << 16, "gla: rank of the decay projection"},
    {"model.gla.gate_logit_normalizer", K_DOUBLE, FIELD(model.gla.gate_logit_normalizer), 1e-3, 1e6, "gla: log decay = logsigmoid(.) / this"},
    {"model.simple_gla.expand_k", K_DOUBLE, FIELD(model.simple_gla.expand_k), 0, 64, "simple_gla: key width / d_model"},
    {"model.simple_gla.expand_v", K_DOUBLE, FIELD(model.simple_gla.expand_v), 0, 64, "simple_gla: value width / d_model"},
    {"model.simple_gla.use_short_conv", K_BOOL, FIELD(model.simple_gla.use_short_conv), 0, 0, "simple_gla: short convolution + silu on q, k, v"},
    {"model.simple_gla.conv_size", K_INT, FIELD(model.simple_gla.conv_size), 2, 4, "simple_gla: short convolution width"},
    {"model.simple_gla.gate_logit_normalizer", K_DOUBLE, FIELD(model.simple_gla.gate_logit_normalizer), 1e-3, 1e6, "simple_gla: log decay = logsigmoid(.) / this"},
    {"model.linear_attn.expand_k", K_DOUBLE, FIELD(model.linear_attn.expand_k), 0, 64, "linear: key width / d_model"},
    {"model.linear_attn.expand_v", K_DOUBLE, FIELD(model.linear_attn.expand_v), 0, 64, "linear: value width / d_model"},
    {"model.linear_attn.use_short_conv", K_BOOL, FIELD(model.linear_attn.use_short_conv), 0, 0, "linear: short convolution + silu on q, k, v"},
    {"model.linear_attn.conv_size", K_INT, FIELD(model.linear_attn.conv_size), 2, 4, "linear: short convolution width"},
    {"model.linear_attn.feature_map", K_STRING, FIELD(model.linear_attn.feature_map), 0, 0, "linear: identity | elu1 | relu | hedgehog"},
    {"model.linear_attn.normalize", K_BOOL, FIELD(model.linear_attn.normalize), 0, 0, "linear: divide by q . sum(k)"},
    {"model.linear_chunk_size", K_INT, FIELD(model.linear_chunk_size), 0, 1 << 16, "CPU form of the linear kinds' ops: 0 recurrence, C chunks of C tokens"},
    {"train.steps", K_INT64, FIELD(train.steps), 1, BIG, "optimizer steps"},
    {"train.batch_size", K_INT, FIELD(train.batch_size), 1, 1 << 24, "global batch: sequences per optimizer step"},
    {"train.seq_len", K_INT, FIELD(train.seq_len), 1, 1 << 24, "tokens per sequence"},
    {"train.grad_accum", K_INT, FIELD(train.grad_accum), 1, 1 << 20, "micro-steps per optimizer step"},
    {"train.seed", K_U64, FIELD(train.seed), 0, 0, "seed of initialisation and data order"},
    {"train.log_every", K_INT, FIELD(train.log_every), 1, 1 << 30, "steps between progress lines"},
    {"train.device", K_STRING, FIELD(train.device), 0, 0, "auto | cpu | cuda"},
    {"train.dtype", K_STRING, FIELD(train.dtype), 0, 0, "fp32 | bf16"},
    {"train.attention_impl", K_STRING, FIELD(train.attention_impl), 0, 0, "GPU softmax attention kernel: auto | own | cudnn"},
    {"train.bucket_mb", K_DOUBLE, FIELD(train.bucket_mb), 0, 1 << 20, "MiB of gradients per all-reduce (multi-GPU)"},
    {"train.freeze", K_PATTERNS, FIELD(train.freeze), 0, 0, "parameter-name patterns to freeze (fnmatch)"},
    {"optim.lr", K_DOUBLE, FIELD(optim.lr), 0, 10, "peak learning rate"},
    {"optim.min_lr", K_DOUBLE, FIELD(optim.min_lr), 0, 10, "learning rate at the end of the cosine"},
    {"optim.warmup", K_INT64, FIELD(optim.warmup), 0, BIG, "linear warmup steps"},
    {"optim.weight_decay", K_DOUBLE, FIELD(optim.weight_decay), 0, 10, "decoupled weight decay"},
    {"optim.decay_embeddings", K_BOOL, FIELD(optim.decay_embeddings), 0, 0, "decay the embedding matrix too"},
    {"optim.beta1", K_DOUBLE, FIELD(optim.beta1), 0, 0.999999, "AdamW beta1"},
    {"optim.beta2", K_DOUBLE, FIELD(optim.beta2), 0, 0.999999999, "AdamW beta2"},
    {"optim.eps", K_DOUBLE, FIELD(optim.eps), 0, 1, "AdamW epsilon"},
    {"optim.grad_clip", K_DOUBLE, FIELD(optim.grad_clip), 0, 1e12, "max global gradient norm (0: off)"},
    {"data.path", K_STRING, FIELD(data.path), 0, 0, "directory of token shards from linnet prep"},
    {"data.tokenizer", K_STRING, FIELD(data.tokenizer), 0, 0, "tokenizer of the shards (bytes)"},
    {"ckpt.every", K_INT64, FIELD(ckpt.every), 0, BIG, "steps between checkpoints (0: only the last)"},
    {"ckpt.keep", K_INT, FIELD(ckpt.keep), 0, 1 << 30, "newest checkpoints kept (0: all)"},
    {"eval.every", K_INT64, FIELD(eval.every), 0, BIG, "steps between validation passes (0: none)"},
    {"eval.batches", K_INT, FIELD(eval.batches), 1, 1 << 20, "validation batches per pass"},
    {"sample.prompt", K_STRING, FIELD(sample.prompt), 0, 0, "prompt of the sample printed after training"},
    {"sample.tokens", K_INT, FIELD(sample.tokens), 0, 1 << 20, "tokens to sample"},
    {"sample.temperature", K_DOUBLE, FIELD(sample.temperature), 0, 100, "sampling temperature (0: greedy)"},
    {"sample.top_k", K_INT, FIELD(sample.top_k), 0, 1 << 24, "sample among the k likeliest (0: all)"},
};
#define N_KEYS (int)(sizeof keys / sizeof keys[0])

/* The list keys' entry counts and entry sizes. */
#define LIST(f, n) {offsetof(ln_config, f), offsetof(ln_config, n), sizeof(((ln_config *)0)->f[0])}
static const struct list_shape {
    size_t offset, count_offset, elem_size;
} lists[] = {
    LIST(model.attention, model.attention_count),
    LIST(model.linear, model.linear_count),
    LIST(model.linear_overrides, model.n_linear_overrides),
    LIST(train.freeze, train.n_freeze),
};

static const struct list_shape *list_of(const key_def *k) {
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (lists[i].offset == k->offset) return &lists[i];
    return NULL; /* not reached: every list key has a row */
}

static int *count_of(ln_config *c, const key_def *k) { return (int *)((char *)c + list_of(k)->count_offset); }

void ln_config_defaults(ln_config *c) {
    memset(c, 0, sizeof *c);
    c->model = (ln_model_config){.vocab_size = 256, .d_model = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2,
                                 .mlp_hidden = 384, .rope_theta = 10000, .norm_eps = 1e-5, .init_std = 0.02,
                                 .tied_embeddings = true};
    for (int i = 0; i < LN_MAX_LAYERS; i++) snprintf(c->model.attention[i], LN_NAME_LEN, "softmax");
    /* flash-linear-attention's layer defaults, except that no kind has a short convolution */
    c->model.gla = (ln_gla_config){.expand_k = 0.5, .expand_v = 1, .conv_size = 4, .gate_low_rank_dim = 16,
                                   .gate_logit_normalizer = 16};
    c->model.simple_gla = (ln_gla_config){.expand_k = 1, .expand_v = 1, .conv_size = 4, .gate_low_rank_dim = 16,
                                          .gate_logit_normalizer = 16};
    c->model.linear_attn = (ln_linear_attn_config){.expand_k = 1, .expand_v = 1, .conv_size = 4};
    snprintf(c->model.linear_attn.feature_map, LN_NAME_LEN, "elu1");
    for (int i = 0; i < LN_MAX_LAYERS; i++) snprintf(c->model.linear[i], LN_NAME_LEN, "dense");
    c->train = (ln_train_config){.steps = 300, .batch_size = 16, .seq_len = 128, .grad_accum = 1, .seed = 1,
                                 .log_every = 10, .bucket_mb = 25};
    snprintf(c->train.device, LN_NAME_LEN, "auto");
    snprintf(c->train.dtype, LN_NAME_LEN, "fp32");
    snprintf(c->train.attention_impl, LN_NAME_LEN, "auto");
    c->optim = (ln_optim_config){.lr = 3e-3, .min_lr = 3e-4, .warmup = 30, .weight_decay = 0.1, .beta1 = 0.9,
                                 .beta2 = 0.95, .eps = 1e-8, .grad_clip = 1.0};
    snprintf(c->data.path, LN_PATH_LEN, "data/kjv");
    snprintf(c->data.tokenizer, LN_NAME_LEN, "bytes");
    c->ckpt = (ln_ckpt_config){.every = 100, .keep = 3};
    c->eval = (ln_eval_config){.every = 100, .batches = 4};
    snprintf(c->sample.prompt, sizeof c->sample.prompt, "And God said");
    c->sample.tokens = 200;
    c->sample.temperature = 0.8;
    c->sample.top_k = 40;
}

/* ---- finding keys ---- */

static size_t edit_distance(const char *a, const char *b) {
    size_t n = strlen(b), row[128];
    if (n >= 128) return 1000;
    for (size_t j = 0; j <= n; j++) row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= n; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[n];
}

static const key_def *find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int unknown_key(const char *where, const char *name) {
    const key_def *best = &keys[0];
    for (int i = 1; i < N_KEYS; i++)
        if (edit_distance(name, keys[i].name) < edit_distance(name, best->name)) best = &keys[i];
    return ln_fail("%sunknown key '%s' (did you mean '%s'?)", where, name, best->name);
}

/* ---- values ---- */

static int parse_number(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) return LN_ERR;
    *out = v;
    return LN_OK;
}

static int set_scalar(ln_config *c, const key_def *k, const char *text, const char *where) {
    char *field = (char *)c + k->offset;
    double v;
    switch (k->type) {
    case K_INT:
    case K_INT64:
        if (parse_number(text, &v) || v != floor(v)) return ln_fail("%s%s: expected an integer, got '%s'", where, k->name, text);
        if (v < k->min || v > k->max)
            return ln_fail("%s%s: %s is out of range [%.17g, %.17g]", where, k->name, text, k->min, k->max);
        if (k->type == K_INT) *(int *)field = (int)v;
        else *(int64_t *)field = (int64_t)v;
        return LN_OK;
    case K_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(text, &end, 10);
        if (errno || end == text || *end || text[0] == '-')
            return ln_fail("%s%s: expected a non-negative integer, got '%s'", where, k->name, text);
        *(uint64_t *)field = u;
        return LN_OK;
    }
    case K_DOUBLE:
        if (parse_number(text, &v)) return ln_fail("%s%s: expected a number, got '%s'", where, k->name, text);
        if (v < k->min || v > k->max)
            return ln_fail("%s%s: %s is out of range [%g, %g]", where, k->name, text, k->min, k->max);
        *(double *)field = v;
        return LN_OK;
    case K_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on")) *(bool *)field = true;
        else if (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off")) *(bool *)field = false;
        else return ln_fail("%s%s: expected true or false, got '%s'", where, k->name, text);
        return LN_OK;
    case K_STRING:
        if (strlen(text) >= k->size) return ln_fail("%s%s: longer than %zu characters", where, k->name, k->size - 1);
        memcpy(field, text, strlen(text) + 1);
        return LN_OK;
    case K_KINDS: /* one kind for every layer */
    case K_PATTERNS: { /* a list of one */
        size_t elem = list_of(k)->elem_size, n = k->type == K_KINDS ? k->size / elem : 1;
        if (strlen(text) >= elem) return ln_fail("%s%s: '%s' is too long", where, k->name, text);
        for (size_t i = 0; i < n; i++) snprintf(field + i * elem, elem, "%s", text);
        *count_of(c, k) = k->type == K_KINDS ? 0 : 1;
        return LN_OK;
    }
    case K_OVERRIDES:
        if (!text[0]) { /* "linear_overrides:" with nothing: none */
            c->model.n_linear_overrides = 0;
            return LN_OK;
        }
        return ln_fail("%s%s: expected a mapping {projection: kind}, got '%s'", where, k->name, text);
    }
    return LN_ERR;
}

/* A YAML list of names into list key k (its entries, then its count). */
static int set_list(ln_config *c, const key_def *k, yaml_document_t *doc, yaml_node_t *node, const char *where) {
    char *field = (char *)c + k->offset;
    size_t elem = list_of(k)->elem_size;
    int n = 0, max = (int)(k->size / elem);
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++, n++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        if (n >= max) return ln_fail("%s%s: more than %d entries", where, k->name, max);
        if (item->type != YAML_SCALAR_NODE || item->data.scalar.length >= elem)
            return ln_fail("%s%s[%d]: expected a name of fewer than %zu characters", where, k->name, n, elem);
        snprintf(field + (size_t)n * elem, elem, "%s", (const char *)item->data.scalar.value);
    }
    /* no layers without a kind; no patterns is fine (nothing frozen) */
    if (n == 0 && k->type == K_KINDS) return ln_fail("%s%s: empty list", where, k->name);
    *count_of(c, k) = n;
    return LN_OK;
}

/* A YAML mapping {projection: kind} into model.linear_overrides (replacing what it held). */
static int set_overrides(ln_config *c, const key_def *k, yaml_document_t *doc, yaml_node_t *node, const char *where) {
    ln_model_config *m = &c->model;
    int n = 0;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++, n++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key), *value = yaml_document_get_node(doc, p->value);
        if (n >= LN_MAX_OVERRIDES) return ln_fail("%s%s: more than %d entries", where, k->name, LN_MAX_OVERRIDES);
        if (key->type != YAML_SCALAR_NODE || key->data.scalar.length >= LN_NAME_LEN)
            return ln_fail("%s%s: entry %d: expected a projection name", where, k->name, n);
        const char *projection = (const char *)key->data.scalar.value;
        if (value->type != YAML_SCALAR_NODE || value->data.scalar.length >= LN_NAME_LEN)
            return ln_fail("%s%s.%s: expected a linear kind name", where, k->name, projection);
        snprintf(m->linear_overrides[n].projection, LN_NAME_LEN, "%s", projection);
        snprintf(m->linear_overrides[n].kind, LN_NAME_LEN, "%s", (const char *)value->data.scalar.value);
    }
    m->n_linear_overrides = n;
    return LN_OK;
}

/* Applies one YAML node to key k: a scalar, a sequence (list keys) or a mapping (overrides). */
static int set_node(ln_config *c, const key_def *k, yaml_document_t *doc, yaml_node_t *node, const char *origin) {
    char where[LN_PATH_LEN + 32];
    snprintf(where, sizeof where, "%s:%zu: ", origin, node->start_mark.line + 1);
    if (node->type == YAML_SCALAR_NODE) return set_scalar(c, k, (const char *)node->data.scalar.value, where);
    if (node->type == YAML_SEQUENCE_NODE && (k->type == K_KINDS || k->type == K_PATTERNS))
        return set_list(c, k, doc, node, where);
    if (node->type == YAML_MAPPING_NODE && k->type == K_OVERRIDES) return set_overrides(c, k, doc, node, where);
    return ln_fail("%s%s: expected a single value, got a %s", where, k->name,
                   node->type == YAML_MAPPING_NODE ? "mapping" : "list");
}

/* ---- documents ---- */

static int load_document(yaml_document_t *doc, const char *text, size_t len, const char *origin) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return ln_fail("%s: cannot start the YAML parser", origin);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, doc);
    int status = LN_OK;
    if (!ok)
        status = ln_fail("%s:%zu: malformed YAML: %s", origin, parser.problem_mark.line + 1,
                         parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    return status;
}

/* Whether `name` is a section or sub-section: some key starts with name + ".". */
static bool is_section(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < N_KEYS; i++)
        if (strncmp(keys[i].name, name, n) == 0 && keys[i].name[n] == '.') return true;
    return false;
}

/* Applies a mapping of keys below `prefix` ("model", "model.gla"); sub-sections nest. */
static int apply_mapping(ln_config *c, yaml_document_t *doc, yaml_node_t *body, const char *prefix, const char *origin) {
    char where[LN_PATH_LEN + 32];
    for (yaml_node_pair_t *q = body->data.mapping.pairs.start; q < body->data.mapping.pairs.top; q++) {
        yaml_node_t *key = yaml_document_get_node(doc, q->key), *value = yaml_document_get_node(doc, q->value);
        snprintf(where, sizeof where, "%s:%zu: ", origin, key->start_mark.line + 1);
        if (key->type != YAML_SCALAR_NODE) return ln_fail("%s%s: a key must be a plain word", where, prefix);
        char full[128];
        snprintf(full, sizeof full, "%s.%s", prefix, (const char *)key->data.scalar.value);
        const key_def *k = find_key(full);
        if (k && strcmp(full, "model.linear") == 0 && value->type == YAML_MAPPING_NODE) {
            /* recipes before model.linear named the projections' kind held the linear attention
             * kind's options there (checkpoints keep them): they are model.linear_attn's now */
            if (apply_mapping(c, doc, value, "model.linear_attn", origin)) return LN_ERR;
        } else if (k) {
            if (set_node(c, k, doc, value, origin)) return LN_ERR;
        } else if (is_section(full)) {
            if (value->type == YAML_SCALAR_NODE && value->data.scalar.length == 0) continue;
            if (value->type != YAML_MAPPING_NODE) return ln_fail("%s%s: expected a mapping of keys", where, full);
            if (apply_mapping(c, doc, value, full, origin)) return LN_ERR;
        } else {
            return unknown_key(where, full);
        }
    }
    return LN_OK;
}

static int apply_document(ln_config *c, yaml_document_t *doc, const char *origin) {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root) return ln_fail("%s: the recipe is empty: it needs at least one section (model:, train:, ...)", origin);
    if (root->type != YAML_MAPPING_NODE)
        return ln_fail("%s:%zu: a recipe is a mapping of sections (model:, train:, ...)", origin, root->start_mark.line + 1);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *section = yaml_document_get_node(doc, p->key), *body = yaml_document_get_node(doc, p->value);
        char where[LN_PATH_LEN + 32];
        snprintf(where, sizeof where, "%s:%zu: ", origin, section->start_mark.line + 1);
        if (section->type != YAML_SCALAR_NODE) return ln_fail("%sa section name must be a plain word", where);
        const char *sname = (const char *)section->data.scalar.value;
        if (strchr(sname, '.') || !is_section(sname)) return unknown_key(where, sname);
        if (body->type == YAML_SCALAR_NODE && body->data.scalar.length == 0) continue; /* "eval:" with nothing */
        if (body->type != YAML_MAPPING_NODE) return ln_fail("%s%s: expected a mapping of keys", where, sname);
        if (apply_mapping(c, doc, body, sname, origin)) return LN_ERR;
    }
    return LN_OK;
}

int ln_config_load_string(ln_config *c, const char *yaml, const char *origin) {
    yaml_document_t doc;
    if (load_document(&doc, yaml, strlen(yaml), origin)) return LN_ERR;
    int status = apply_document(c, &doc, origin);
    yaml_document_delete(&doc);
    return status;
}

int ln_config_load_file(ln_config *c, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return ln_fail("%s: cannot open the recipe: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0, got;
    char buf[4096];
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + got + 1 > cap) {
            cap = 2 * (len + got + 1);
            char *grown = realloc(text, cap);
            if (!grown) {
                free(text);
                fclose(f);
                return ln_fail("%s: out of host memory", path);
            }
            text = grown;
        }
        memcpy(text + len, buf, got);
        len += got;
    }
    fclose(f);
    if (!text) return ln_config_load_string(c, "", path); /* no bytes: the empty recipe's error */
    text[len] = '\0';
    int status = strlen(text) != len ? ln_fail("%s: not a text file (NUL byte)", path) : ln_config_load_string(c, text, path);
    free(text);
    return status;
}

int ln_config_set(ln_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) return ln_fail("--set %s: expected key=value", assignment);
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - assignment), assignment);
    const key_def *k = find_key(name);
    if (!k) return unknown_key("--set: ", name);
    const char *value = eq + 1;
    if (!*value) {
        if (k->type == K_STRING) return set_scalar(c, k, "", "--set: ");
        return ln_fail("--set %s: no value", name);
    }
    yaml_document_t doc;
    if (load_document(&doc, value, strlen(value), "--set")) return ln_fail_context("--set %s", name);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int status = root ? set_node(c, k, &doc, root, "--set") : ln_fail("--set %s: no value", name);
    yaml_document_delete(&doc);
    return status;
}

int ln_config_validate(const ln_config *c) {
    const ln_model_config *m = &c->model;
    if (m->d_model % m->n_heads)
        return ln_fail("model.d_model %d is not a multiple of model.n_heads %d", m->d_model, m->n_heads);
    if (m->n_heads % m->n_kv_heads)
        return ln_fail("model.n_heads %d is not a multiple of model.n_kv_heads %d", m->n_heads, m->n_kv_heads);
    if (m->attention_count && m->attention_count != m->n_layers)
        return ln_fail("model.attention lists %d kinds but model.n_layers is %d", m->attention_count, m->n_layers);
    bool softmax = false;
    for (int i = 0; i < m->n_layers; i++) {
        const ln_attention_kind *kind = ln_attention_kind_find(m->attention[i]);
        if (!kind || (kind->check && kind->check(m))) {
            if (m->attention_count) return ln_fail_context("model.attention[%d]", i);
            return ln_fail_context("model.attention");
        }
        softmax |= strcmp(kind->name, "softmax") == 0;
    }
    if (ln_linear_check(m)) return LN_ERR;
    if (softmax && (m->d_model / m->n_heads) % 2)
        return ln_fail("model.d_model / model.n_heads = %d: the head dimension must be even for RoPE", m->d_model / m->n_heads);
    if (c->train.batch_size % c->train.grad_accum)
        return ln_fail("train.batch_size %d is not a multiple of train.grad_accum %d", c->train.batch_size, c->train.grad_accum);
    if (strcmp(c->train.device, "auto") && strcmp(c->train.device, "cpu") && strcmp(c->train.device, "cuda"))
        return ln_fail("train.device: '%s' is not one of auto, cpu, cuda", c->train.device);
    if (strcmp(c->train.dtype, "fp32") && strcmp(c->train.dtype, "bf16"))
        return ln_fail("train.dtype: '%s' is not one of fp32, bf16", c->train.dtype);
    ln_attention_impl impl;
    if (ln_attention_impl_parse(c->train.attention_impl, "train.attention_impl", &impl) != LN_OK) return LN_ERR;
    if (!c->data.path[0]) return ln_fail("data.path is empty: point it at a directory from linnet prep");
    if (!(c->optim.lr > 0)) return ln_fail("optim.lr must be positive");
    if (c->optim.min_lr > c->optim.lr) return ln_fail("optim.min_lr %g is above optim.lr %g", c->optim.min_lr, c->optim.lr);
    return LN_OK;
}

/* ---- the resolved recipe ---- */

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    if (!*buf) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (*len + (size_t)n + 1 > *cap) {
        *cap = 2 * (*len + (size_t)n + 1);
        char *grown = realloc(*buf, *cap);
        if (!grown) {
            free(*buf);
            *buf = NULL;
            return;
        }
        *buf = grown;
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
}

/* A double-quoted YAML string: backslash and quote escaped, control bytes as \xNN. */
static void append_quoted(char **buf, size_t *len, size_t *cap, const char *s) {
    append(buf, len, cap, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') append(buf, len, cap, "\\%c", ch);
        else if (ch < 0x20) append(buf, len, cap, "\\x%02x", ch);
        else append(buf, len, cap, "%c", ch);
    }
    append(buf, len, cap, "\"");
}

char *ln_config_to_yaml(const ln_config *c) {
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    buf[0] = '\0';
    const char *prev = ""; /* the previous key: the sections it opened stay open */
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        /* open each section of k ("model", "model.gla") that differs from prev's */
        int level = 0;
        bool same = true;
        const char *leaf = k->name;
        for (const char *dot = strchr(k->name, '.'); dot; dot = strchr(dot + 1, '.')) {
            size_t n = (size_t)(dot - k->name);
            same = same && strncmp(prev, k->name, n + 1) == 0;
            if (!same) append(&buf, &len, &cap, "%*s%.*s:\n", 2 * level, "", (int)(dot - leaf), leaf);
            leaf = dot + 1;
            level++;
        }
        prev = k->name;
        append(&buf, &len, &cap, "%*s%s: ", 2 * level, "", leaf);
        const char *field = (const char *)c + k->offset;
        switch (k->type) {
        case K_INT: append(&buf, &len, &cap, "%d", *(const int *)field); break;
        case K_INT64: append(&buf, &len, &cap, "%lld", (long long)*(const int64_t *)field); break;
        case K_U64: append(&buf, &len, &cap, "%llu", (unsigned long long)*(const uint64_t *)field); break;
        case K_DOUBLE: append(&buf, &len, &cap, "%.17g", *(const double *)field); break;
        case K_BOOL: append(&buf, &len, &cap, "%s", *(const bool *)field ? "true" : "false"); break;
        case K_STRING: append_quoted(&buf, &len, &cap, field); break;
        case K_KINDS:
        case K_PATTERNS: {
            int count = *count_of((ln_config *)c, k);
            size_t elem = list_of(k)->elem_size;
            if (k->type == K_KINDS && !count) { /* one kind for every layer */
                append_quoted(&buf, &len, &cap, field);
                break;
            }
            append(&buf, &len, &cap, "[");
            for (int j = 0; j < count; j++) {
                if (j) append(&buf, &len, &cap, ", ");
                append_quoted(&buf, &len, &cap, field + (size_t)j * elem);
            }
            append(&buf, &len, &cap, "]");
            break;
        }
        case K_OVERRIDES:
            append(&buf, &len, &cap, "{");
            for (int j = 0; j < c->model.n_linear_overrides; j++) {
                if (j) append(&buf, &len, &cap, ", ");
                append_quoted(&buf, &len, &cap, c->model.linear_overrides[j].projection);
                append(&buf, &len, &cap, ": ");
                append_quoted(&buf, &len, &cap, c->model.linear_overrides[j].kind);
            }
            append(&buf, &len, &cap, "}");
            break;
        }
        append(&buf, &len, &cap, "\n");
    }
    return buf;
}
