/* Gated linear attention (Yang et al. 2023) in flash-linear-attention's layer form, two kinds:
 *   gla:        a per-key-channel decay from a low-rank projection,
 *               g = logsigmoid((x W_down) W_up + b) / gate_logit_normalizer   [B, T, H, head_k]
 *   simple_gla: one decay per head, g = logsigmoid(x W_gk + b) / gate_logit_normalizer   [B, T, H]
 * Both then run the op (ln_gla / ln_simple_gla), RMSNorm each head's output, gate it
 * with silu(x W_g) and project back with W_o (linear_mixer.h). The normalizer keeps the decay
 * exp(g) near 1 at initialisation (exp(log(1/2) / 16) ~ 0.96), so memories start long. */
#include <stdlib.h>

#include "autograd/error.h"
#include "layers/attention.h"
#include "layers/linear_mixer.h"

typedef struct {
    bool per_head;            /* simple_gla */
    ln_linear_mixer mix;
    /* the decay's logits: gla x gk_down^T gk_up^T + gk_bias ([r, d], [H * head_k, r]);
     * simple_gla x gk_proj^T + gk_bias ([H, d]), in gk alone */
    ln_linear gk, gk_up;
    double normalizer;
} gla_attention;

static ln_linear_mixer_opts opts_of(const ln_model_config *cfg, bool per_head) {
    const ln_gla_config *g = per_head ? &cfg->simple_gla : &cfg->gla;
    return (ln_linear_mixer_opts){.kind = per_head ? "simple_gla" : "gla", .expand_k = g->expand_k,
                                  .expand_v = g->expand_v, .use_short_conv = g->use_short_conv,
                                  .conv_size = g->conv_size, .output_gate = true};
}

static int gla_check(const ln_model_config *cfg) {
    ln_linear_mixer_opts o = opts_of(cfg, false);
    return ln_linear_mixer_check(cfg, &o);
}

static int simple_gla_check(const ln_model_config *cfg) {
    ln_linear_mixer_opts o = opts_of(cfg, true);
    return ln_linear_mixer_check(cfg, &o);
}

static void destroy(void *state) {
    gla_attention *a = state;
    ln_linear_mixer_free(&a->mix);
    ln_linear_free(&a->gk);
    ln_linear_free(&a->gk_up);
    free(a);
}

static void *create(const ln_linear_site *site, bool per_head) {
    const ln_model_config *cfg = site->cfg;
    gla_attention *a = calloc(1, sizeof *a);
    if (!a) {
        ln_fail("attention: out of host memory");
        return NULL;
    }
    a->per_head = per_head;
    const ln_gla_config *g = per_head ? &cfg->simple_gla : &cfg->gla;
    a->normalizer = g->gate_logit_normalizer;
    ln_linear_mixer_opts o = opts_of(cfg, per_head);
    int status = ln_linear_mixer_create(&a->mix, site, &o);
    if (status == LN_OK) {
        int64_t d = cfg->d_model, H = a->mix.n_heads, kw = H * a->mix.head_k, r = g->gate_low_rank_dim;
        if (per_head)
            status = ln_linear_create(&a->gk, site, &(ln_linear_spec){"attn.gk", "gk_proj", "gk_bias", H, d, LN_INIT_NORMAL});
        else
            status = ln_linear_create(&a->gk, site, &(ln_linear_spec){"attn.gk.down", "gk_down", NULL, r, d, LN_INIT_NORMAL}) ||
                             ln_linear_create(&a->gk_up, site,
                                              &(ln_linear_spec){"attn.gk.up", "gk_up", "gk_bias", kw, r, LN_INIT_NORMAL})
                         ? LN_ERR
                         : LN_OK;
    }
    if (status == LN_OK) status = ln_linear_mixer_create_output(&a->mix, site);
    if (status != LN_OK) {
        destroy(a);
        return NULL;
    }
    return a;
}

static void *gla_create(const ln_linear_site *site) { return create(site, false); }

static void *simple_gla_create(const ln_linear_site *site) { return create(site, true); }

/* The log decay g <= 0: [B, T, H, head_k] (gla) or [B, T, H] (simple_gla). */
static ln_tensor *log_decay(const gla_attention *a, ln_tensor *x) {
    ln_tensor *logits = ln_linear_forward(&a->gk, x);
    if (!a->per_head) logits = ln_linear_forward(&a->gk_up, logits);
    ln_tensor *g = ln_logsigmoid_scaled(logits, 1.0 / a->normalizer);
    return a->per_head ? g : ln_split_heads(g, a->mix.n_heads);
}

static ln_tensor *forward(void *state, ln_tensor *x) {
    gla_attention *a = state;
    if (!x) return NULL;
    ln_tensor *q, *k, *v;
    ln_linear_mixer_qkv(&a->mix, x, &q, &k, &v);
    ln_tensor *g = log_decay(a, x);
    ln_gla_opts opts = {.chunk_size = a->mix.chunk_size}; /* scale 1/sqrt(head_k) */
    ln_tensor *o = a->per_head ? ln_simple_gla(q, k, v, g, &opts, NULL) : ln_gla(q, k, v, g, &opts, NULL);
    return ln_linear_mixer_output(&a->mix, o, x);
}

const ln_attention_kind ln_attention_gla = {
    .name = "gla",
    .check = gla_check,
    .create = gla_create,
    .forward = forward,
    .destroy = destroy,
};

const ln_attention_kind ln_attention_simple_gla = {
    .name = "simple_gla",
    .check = simple_gla_check,
    .create = simple_gla_create,
    .forward = forward,
    .destroy = destroy,
};
