#include "params.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

ln_tensor *ln_params_add(ln_params *p, const char *prefix, const char *name, int ndim, const int64_t *shape,
                         ln_init_rule init, bool decay) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        ln_param *items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) {
            ln_fail("parameters: out of host memory");
            return NULL;
        }
        p->items = items;
        p->cap = cap;
    }
    ln_tensor *t = ln_tensor_new(LN_F32, LN_CPU, ndim, shape);
    if (!t) return NULL;
    ln_param *item = &p->items[p->n++];
    memset(item, 0, sizeof *item);
    snprintf(item->name, sizeof item->name, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    ln_tensor_set_name(t, item->name);
    t->requires_grad = true;
    item->tensor = t;
    item->init = init;
    item->decay = decay;
    return t;
}

void ln_params_init(ln_params *p, uint64_t seed, double std, int n_layers) {
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    double residual_std = std / sqrt(2.0 * (n_layers > 0 ? n_layers : 1));
    for (int i = 0; i < p->n; i++) {
        ln_tensor *t = p->items[i].tensor;
        float *d = t->data;
        for (int64_t j = 0; j < t->numel; j++) {
            switch (p->items[i].init) {
            case LN_INIT_NORMAL: d[j] = (float)(std * ln_rng_normal(&rng)); break;
            case LN_INIT_RESIDUAL: d[j] = (float)(residual_std * ln_rng_normal(&rng)); break;
            case LN_INIT_ONES: d[j] = 1.0f; break;
            case LN_INIT_ZEROS: d[j] = 0.0f; break;
            case LN_INIT_FAN_IN: {
                double bound = 1.0 / sqrt((double)t->shape[t->ndim - 1]);
                d[j] = (float)(bound * (2 * ln_rng_uniform(&rng) - 1));
                break;
            }
            case LN_INIT_IDENTITY: d[j] = j / t->shape[1] == j % t->shape[1] ? 1.0f : 0.0f; break;
            }
        }
    }
}

ln_param *ln_params_find(ln_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0) return &p->items[i];
    return NULL;
}

int64_t ln_params_count(const ln_params *p) {
    int64_t n = 0;
    for (int i = 0; i < p->n; i++) n += p->items[i].tensor->numel;
    return n;
}

void ln_params_zero_grad(ln_params *p) {
    for (int i = 0; i < p->n; i++) ln_tensor_zero_grad(p->items[i].tensor);
}

int ln_params_freeze(ln_params *p, const char *pattern) {
    int matched = 0;
    for (int i = 0; i < p->n; i++)
        if (fnmatch(pattern, p->items[i].name, 0) == 0) {
            p->items[i].frozen = true;
            p->items[i].tensor->requires_grad = false;
            matched++;
        }
    return matched;
}

int ln_params_trainable(const ln_params *p, ln_params *out) {
    memset(out, 0, sizeof *out);
    out->borrowed = true;
    out->items = malloc((size_t)(p->n ? p->n : 1) * sizeof *out->items);
    if (!out->items) return ln_fail("parameters: out of host memory");
    out->cap = p->n;
    for (int i = 0; i < p->n; i++)
        if (!p->items[i].frozen) out->items[out->n++] = p->items[i];
    return LN_OK;
}

int ln_params_to(ln_params *p, ln_device device) {
    for (int i = 0; i < p->n; i++)
        if (ln_tensor_move(p->items[i].tensor, device)) return LN_ERR;
    return LN_OK;
}

void ln_params_free(ln_params *p) {
    for (int i = 0; i < p->n && !p->borrowed; i++) ln_tensor_free(p->items[i].tensor);
    free(p->items);
    memset(p, 0, sizeof *p);
}
