/* The resolved recipe: every key a run reads, with its default. Keys are table-driven (one row
 * per key in config.c), so YAML loading, --set overrides, the "did you mean" hint and the
 * resolved-recipe dump all come from the same table. */
#ifndef LN_CONFIG_H
#define LN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define LN_MAX_LAYERS 64
#define LN_NAME_LEN 32
#define LN_PATH_LEN 1024

/* Options of the gated linear attention kinds, gla and simple_gla (docs/linear-attention.md). */
typedef struct ln_gla_config {
    double expand_k;              /* model.<kind>.expand_k: key width = expand_k * d_model, over n_heads */
    double expand_v;              /* model.<kind>.expand_v: value width = expand_v * d_model */
    bool use_short_conv;          /* model.<kind>.use_short_conv: causal depthwise conv + silu on q, k, v */
    int conv_size;                /* model.<kind>.conv_size: its width in tokens (2..4) */
    int gate_low_rank_dim;        /* model.gla.gate_low_rank_dim: d_model -> r -> key width (gla only) */
    double gate_logit_normalizer; /* model.<kind>.gate_logit_normalizer: log decay = logsigmoid(.) / it */
} ln_gla_config;

/* Options of the `linear` attention kind (no decay), under model.linear_attn (flash-linear-attention's
 * name for it): model.linear names the projections' linear kind. */
typedef struct ln_linear_attn_config {
    double expand_k, expand_v;     /* model.linear_attn.expand_k, model.linear_attn.expand_v */
    bool use_short_conv;           /* model.linear_attn.use_short_conv */
    int conv_size;                 /* model.linear_attn.conv_size */
    char feature_map[LN_NAME_LEN]; /* model.linear_attn.feature_map: identity | elu1 | relu | hedgehog */
    bool normalize;                /* model.linear_attn.normalize: divide by q . sum(k) (Katharopoulos et al.) */
} ln_linear_attn_config;

#define LN_MAX_OVERRIDES 16
#define LN_MAX_PATTERNS 32
#define LN_PATTERN_LEN 96

/* One entry of model.linear_overrides: the projections named by `projection` ("mlp", "attn.q",
 * "lm_head"; layers/linear.h lists them) take the linear kind `kind` in every layer. */
typedef struct ln_linear_override {
    char projection[LN_NAME_LEN];
    char kind[LN_NAME_LEN];
} ln_linear_override;

typedef struct ln_model_config {
    int vocab_size;       /* model.vocab_size */
    int d_model;          /* model.d_model */
    int n_layers;         /* model.n_layers */
    int n_heads;          /* model.n_heads */
    int n_kv_heads;       /* model.n_kv_heads (grouped-query attention; = n_heads for MHA) */
    int mlp_hidden;       /* model.mlp_hidden (SwiGLU hidden width) */
    double rope_theta;    /* model.rope_theta */
    double norm_eps;      /* model.norm_eps */
    double init_std;      /* model.init_std */
    bool tied_embeddings; /* model.tied_embeddings */
    /* model.attention: one kind for every layer ("softmax") or a YAML list, one per layer */
    char attention[LN_MAX_LAYERS][LN_NAME_LEN];
    int attention_count; /* entries given as a list; 0 when one kind applies to every layer */
    ln_gla_config gla;        /* model.gla.* */
    ln_gla_config simple_gla; /* model.simple_gla.* (gate_low_rank_dim unused) */
    ln_linear_attn_config linear_attn; /* model.linear_attn.* */
    int linear_chunk_size;    /* model.linear_chunk_size: CPU form of the linear kinds' ops (0: recurrence) */
    /* model.linear: the linear kind of every projection ("dense"), or a list with one per layer */
    char linear[LN_MAX_LAYERS][LN_NAME_LEN];
    int linear_count; /* entries given as a list; 0 when one kind applies to every layer */
    /* model.linear_overrides: {projection: kind}, over model.linear in every layer */
    ln_linear_override linear_overrides[LN_MAX_OVERRIDES];
    int n_linear_overrides;
} ln_model_config;

typedef struct ln_train_config {
    int64_t steps;      /* train.steps: optimizer steps */
    int batch_size;     /* train.batch_size: sequences per optimizer step, all ranks and micro-steps */
    int seq_len;        /* train.seq_len */
    int grad_accum;     /* train.grad_accum: micro-steps per optimizer step */
    uint64_t seed;      /* train.seed */
    int log_every;      /* train.log_every: progress line period (steps) */
    char device[LN_NAME_LEN]; /* train.device: auto | cpu | cuda */
    char dtype[LN_NAME_LEN];  /* train.dtype: fp32 | bf16 */
    char attention_impl[LN_NAME_LEN]; /* train.attention_impl: auto | own | cudnn (GPU softmax attention) */
    double bucket_mb;   /* train.bucket_mb: MiB of gradients per all-reduce (GPUs through NCCL) */
    /* train.freeze: parameter-name patterns (fnmatch: "layers.*.mlp.*", "embedding"); the
     * parameters they match get no gradient, no optimizer state and no all-reduce */
    char freeze[LN_MAX_PATTERNS][LN_PATTERN_LEN];
    int n_freeze;
} ln_train_config;

typedef struct ln_optim_config {
    double lr;           /* optim.lr: peak learning rate */
    double min_lr;       /* optim.min_lr: floor of the cosine decay */
    int64_t warmup;      /* optim.warmup: linear warmup steps */
    double weight_decay; /* optim.weight_decay (decoupled; not on norms or embeddings by default) */
    bool decay_embeddings; /* optim.decay_embeddings */
    double beta1, beta2, eps; /* optim.beta1, optim.beta2, optim.eps */
    double grad_clip;    /* optim.grad_clip: global L2 norm; 0 disables */
} ln_optim_config;

typedef struct ln_data_config {
    char path[LN_PATH_LEN]; /* data.path: directory of token shards (linnet prep) */
    char tokenizer[LN_NAME_LEN]; /* data.tokenizer: must match the shards' (for sample/eval) */
} ln_data_config;

typedef struct ln_ckpt_config {
    int64_t every; /* ckpt.every: steps between checkpoints; the last step always writes one */
    int keep;      /* ckpt.keep: newest checkpoints kept (0 keeps all) */
} ln_ckpt_config;

typedef struct ln_eval_config {
    int64_t every; /* eval.every: steps between validation passes; 0 disables */
    int batches;   /* eval.batches: validation batches of train.batch_size sequences */
} ln_eval_config;

typedef struct ln_sample_config {
    char prompt[256];   /* sample.prompt: printed after training, and the default for `linnet sample` */
    int tokens;         /* sample.tokens */
    double temperature; /* sample.temperature (0 = greedy) */
    int top_k;          /* sample.top_k (0 = all) */
} ln_sample_config;

typedef struct ln_config {
    ln_model_config model;
    ln_train_config train;
    ln_optim_config optim;
    ln_data_config data;
    ln_ckpt_config ckpt;
    ln_eval_config eval;
    ln_sample_config sample;
} ln_config;

void ln_config_defaults(ln_config *c);
/* Applies a YAML file over c. Errors name the file, the line and the key; an empty file is an
 * error (a recipe names at least one section). */
int ln_config_load_file(ln_config *c, const char *path);
/* Same from a string; origin names it in errors. */
int ln_config_load_string(ln_config *c, const char *yaml, const char *origin);
/* Applies one "key=value" override (the value is parsed as YAML: lists allowed). */
int ln_config_set(ln_config *c, const char *assignment);
/* Cross-key checks (heads divide d_model, batch divisible, paths set, ...), naming the keys. */
int ln_config_validate(const ln_config *c);
/* The resolved recipe as YAML (malloc'd); loading it gives back the same config. */
char *ln_config_to_yaml(const ln_config *c);

#endif
