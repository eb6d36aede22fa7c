/* Linear attention without decay (Katharopoulos et al. 2020), flash-linear-attention's
 * LinearAttention layer: o = phi(q) S / (normalizer) with S = sum phi(k)^T v, phi a feature map
 * (model.linear_attn.feature_map) applied per head to q and k, then per-head RMSNorm and W_o (no
 * output gate). hedgehog (Zhang et al. 2024) learns one [head_k, head_k] map each for q and k,
 * started at the identity; it doubles the key width seen by the op. */
#include <stdlib.h>
#include <string.h>

#include "autograd/autocast.h"
#include "autograd/error.h"
#include "layers/attention.h"
#include "layers/linear_mixer.h"

typedef struct {
    ln_linear_mixer mix;
    ln_feature_map_kind fmap;
    ln_tensor *fmap_q, *fmap_k; /* hedgehog only: [head_k, head_k] */
    bool normalize;
} linear_attention;

static const char *const fmap_names[] = {[LN_FMAP_IDENTITY] = "identity", [LN_FMAP_ELU1] = "elu1",
                                         [LN_FMAP_RELU] = "relu", [LN_FMAP_HEDGEHOG] = "hedgehog"};

static int parse_fmap(const char *name, ln_feature_map_kind *kind) {
    for (int i = 0; i < (int)(sizeof fmap_names / sizeof fmap_names[0]); i++)
        if (strcmp(name, fmap_names[i]) == 0) {
            *kind = (ln_feature_map_kind)i;
            return LN_OK;
        }
    return ln_fail("model.linear_attn.feature_map: '%s' is not one of identity, elu1, relu, hedgehog", name);
}

static ln_linear_mixer_opts opts_of(const ln_model_config *cfg) {
    const ln_linear_attn_config *l = &cfg->linear_attn;
    return (ln_linear_mixer_opts){.kind = "linear_attn", .expand_k = l->expand_k, .expand_v = l->expand_v,
                                  .use_short_conv = l->use_short_conv, .conv_size = l->conv_size};
}

static int linear_check(const ln_model_config *cfg) {
    ln_feature_map_kind kind;
    ln_linear_mixer_opts o = opts_of(cfg);
    return parse_fmap(cfg->linear_attn.feature_map, &kind) || ln_linear_mixer_check(cfg, &o) ? LN_ERR : LN_OK;
}

static void linear_destroy(void *state) {
    linear_attention *a = state;
    ln_linear_mixer_free(&a->mix);
    free(a);
}

static void *linear_create(const ln_linear_site *site) {
    const ln_model_config *cfg = site->cfg;
    linear_attention *a = calloc(1, sizeof *a);
    if (!a) {
        ln_fail("attention: out of host memory");
        return NULL;
    }
    a->normalize = cfg->linear_attn.normalize;
    ln_linear_mixer_opts o = opts_of(cfg);
    int status = parse_fmap(cfg->linear_attn.feature_map, &a->fmap);
    if (status == LN_OK) status = ln_linear_mixer_create(&a->mix, site, &o);
    if (status == LN_OK && a->fmap == LN_FMAP_HEDGEHOG) {
        int64_t hk = a->mix.head_k;
        /* not decayed: decay would pull the maps towards zero, away from their identity start */
        a->fmap_q = ln_params_add(site->params, site->prefix, "fmap_q", 2, (int64_t[]){hk, hk}, LN_INIT_IDENTITY, false);
        a->fmap_k = ln_params_add(site->params, site->prefix, "fmap_k", 2, (int64_t[]){hk, hk}, LN_INIT_IDENTITY, false);
        if (!a->fmap_q || !a->fmap_k) status = LN_ERR;
    }
    if (status == LN_OK) status = ln_linear_mixer_create_output(&a->mix, site);
    if (status != LN_OK) {
        linear_destroy(a);
        return NULL;
    }
    return a;
}

static ln_tensor *linear_forward(void *state, ln_tensor *x) {
    linear_attention *a = state;
    if (!x) return NULL;
    ln_tensor *q, *k, *v;
    ln_linear_mixer_qkv(&a->mix, x, &q, &k, &v);
    q = ln_feature_map(q, a->fmap, a->fmap_q ? ln_weight(a->fmap_q) : NULL);
    k = ln_feature_map(k, a->fmap, a->fmap_k ? ln_weight(a->fmap_k) : NULL);
    ln_gla_opts opts = {.chunk_size = a->mix.chunk_size}; /* scale 1/sqrt(feature width) */
    return ln_linear_mixer_output(&a->mix, ln_linear_attention(q, k, v, a->normalize, &opts, NULL), x);
}

const ln_attention_kind ln_attention_linear = {
    .name = "linear",
    .check = linear_check,
    .create = linear_create,
    .forward = linear_forward,
    .destroy = linear_destroy,
};
