/* The linear module's kind table, the recipe's choice of kind per layer and projection, and the
 * calls every projection goes through (linear.h). */
#include "layers/linear.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "layers/kind_table.h"

static const ln_linear_kind *const kinds[] = {
    &ln_linear_dense,
};

/* Every projection the layers make, by its model.linear_overrides name. A key of the overrides
 * names one of these or a group of them: "attn" covers every "attn.*", "attn.gk" gla's pair. */
static const char *const projections[] = {
    "attn.q", "attn.k", "attn.v", "attn.o", /* every attention kind with token mixing */
    "attn.g",                               /* the output gate of gla and simple_gla */
    "attn.gk",                              /* simple_gla's decay projection */
    "attn.gk.down", "attn.gk.up",           /* gla's low-rank decay projection */
    "mlp.gate", "mlp.up", "mlp.down",
    "lm_head",                              /* untied only: a tied head is the embedding */
};
#define N_KINDS (int)(sizeof kinds / sizeof kinds[0])
#define N_PROJECTIONS (int)(sizeof projections / sizeof projections[0])

const ln_linear_kind *ln_linear_kind_find(const char *name) {
    return ln_kind_find((const void *const *)kinds, N_KINDS, name, "linear kind");
}

/* Whether override key `key` names `projection`: the same name, or a group above it. */
static bool names(const char *key, const char *projection) {
    size_t n = strlen(key);
    return strncmp(key, projection, n) == 0 && (projection[n] == '\0' || projection[n] == '.');
}

const char *ln_linear_kind_name(const ln_model_config *cfg, int layer, const char *projection) {
    const ln_linear_override *best = NULL;
    for (int i = 0; i < cfg->n_linear_overrides; i++) {
        const ln_linear_override *o = &cfg->linear_overrides[i];
        if (names(o->projection, projection) && (!best || strlen(o->projection) > strlen(best->projection))) best = o;
    }
    if (best) return best->kind;
    if (layer < 0) return cfg->linear_count ? "dense" : cfg->linear[0];
    return cfg->linear[layer];
}

int ln_linear_check(const ln_model_config *cfg) {
    if (cfg->linear_count && cfg->linear_count != cfg->n_layers)
        return ln_fail("model.linear lists %d kinds but model.n_layers is %d", cfg->linear_count, cfg->n_layers);
    for (int i = 0; i < (cfg->linear_count ? cfg->linear_count : 1); i++)
        if (!ln_linear_kind_find(cfg->linear[i]))
            return cfg->linear_count ? ln_fail_context("model.linear[%d]", i) : ln_fail_context("model.linear");
    for (int i = 0; i < cfg->n_linear_overrides; i++) {
        const ln_linear_override *o = &cfg->linear_overrides[i];
        bool known = false;
        for (int j = 0; j < N_PROJECTIONS; j++) known |= names(o->projection, projections[j]);
        if (!known) {
            char list[256];
            ln_names_join(projections, N_PROJECTIONS, list, sizeof list);
            return ln_fail("model.linear_overrides: unknown projection '%s' (known: attn, mlp, %s)", o->projection, list);
        }
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->linear_overrides[j].projection, o->projection) == 0)
                return ln_fail("model.linear_overrides: '%s' is given twice", o->projection);
        if (!ln_linear_kind_find(o->kind)) return ln_fail_context("model.linear_overrides.%s", o->projection);
    }
    return LN_OK;
}

int ln_linear_create(ln_linear *l, const ln_linear_site *site, const ln_linear_spec *spec) {
    memset(l, 0, sizeof *l);
    const char *name = ln_linear_kind_name(site->cfg, site->layer, spec->projection);
    l->kind = ln_linear_kind_find(name);
    l->spec = *spec;
    if (!l->kind) {
        if (site->layer < 0) return ln_fail_context("%s", spec->projection);
        return ln_fail_context("layer %d %s", site->layer, spec->projection);
    }
    if (l->kind->create(l, site->params, site->prefix)) return LN_ERR;
    ln_linears *all = site->all;
    if (all->n == all->cap) {
        int cap = all->cap ? 2 * all->cap : 32;
        ln_linear **items = realloc(all->items, (size_t)cap * sizeof *items);
        if (!items) return ln_fail("linear: out of host memory");
        all->items = items;
        all->cap = cap;
    }
    all->items[all->n++] = l;
    return LN_OK;
}

ln_tensor *ln_linear_forward(const ln_linear *l, ln_tensor *x) { return x ? l->kind->forward(l, x) : NULL; }

void ln_linear_free(ln_linear *l) {
    if (l->kind && l->kind->destroy) l->kind->destroy(l);
    l->state = NULL;
}

void ln_linears_free(ln_linears *all) {
    free(all->items);
    *all = (ln_linears){0};
}
