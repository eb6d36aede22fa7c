#include "adamw.h"

#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/memory.h"
#ifdef LINNET_CUDA
#include "optim/optim_cuda.h"
#endif

int ln_adamw_create(ln_adamw *opt, ln_params *params, const ln_optim_config *cfg) {
    opt->cfg = *cfg;
    opt->params = params;
    opt->step = 0;
    opt->m = calloc((size_t)params->n, sizeof *opt->m);
    opt->v = calloc((size_t)params->n, sizeof *opt->v);
    if (!opt->m || !opt->v) return ln_fail("adamw: out of host memory");
    for (int i = 0; i < params->n; i++) {
        opt->m[i] = ln_tensor_new_like(params->items[i].tensor);
        opt->v[i] = ln_tensor_new_like(params->items[i].tensor);
        if (!opt->m[i] || !opt->v[i]) return LN_ERR;
    }
    return LN_OK;
}

bool ln_adamw_decays(const ln_adamw *opt, int i) {
    const ln_param *p = &opt->params->items[i];
    return p->decay || (p->embedding && opt->cfg.decay_embeddings);
}

#ifdef LINNET_CUDA
/* The GPU parameters that have a gradient, updated in a few multi-tensor launches. */
static int update_cuda(ln_adamw *opt, double lr, double bias1, double bias2, const float *clip) {
    const ln_optim_config *c = &opt->cfg;
    ln_adamw_item *items = malloc((size_t)opt->params->n * sizeof *items);
    if (!items) return ln_fail("adamw: out of host memory");
    int count = 0;
    for (int i = 0; i < opt->params->n; i++) {
        ln_tensor *p = opt->params->items[i].tensor;
        if (p->device != LN_CUDA || !p->grad) continue;
        items[count++] = (ln_adamw_item){p->data, p->grad->data, opt->m[i]->data, opt->v[i]->data, p->numel,
                                         ln_adamw_decays(opt, i) ? lr * c->weight_decay : 0.0};
    }
    int rc = ln_adamw_update_many_cuda(items, count, lr, c->beta1, c->beta2, c->eps, bias1, bias2, clip);
    free(items);
    return rc;
}

/* The global norm of the GPU gradients and the clip factor, on the device (see optim_cuda.h). */
static int grad_norm_cuda(ln_params *params, double max_norm, double **norm, float **clip) {
    const float **grads = malloc((size_t)params->n * sizeof *grads);
    long long *sizes = malloc((size_t)params->n * sizeof *sizes);
    int count = 0, rc = LN_ERR;
    if (!grads || !sizes) {
        ln_fail("gradient norm: out of host memory");
        goto done;
    }
    for (int i = 0; i < params->n; i++) {
        ln_tensor *g = params->items[i].tensor->grad;
        if (!g) continue;
        grads[count] = g->data;
        sizes[count++] = g->numel;
    }
    rc = ln_grad_norm_cuda(grads, sizes, count, max_norm, norm, clip);
done:
    free(grads);
    free(sizes);
    return rc;
}
#endif

/* clip: NULL, or (GPU parameters) a device factor every gradient is scaled by first */
static int update(ln_adamw *opt, double lr, const float *clip) {
    const ln_optim_config *c = &opt->cfg;
    opt->step++;
    double bias1 = 1 - pow(c->beta1, (double)opt->step), bias2 = 1 - pow(c->beta2, (double)opt->step);
    for (int i = 0; i < opt->params->n; i++) {
        ln_tensor *p = opt->params->items[i].tensor;
        if (!p->grad) continue; /* never reached by the loss: nothing to update */
        if (p->device == LN_CUDA) {
#ifdef LINNET_CUDA
            continue; /* all of them at once, below */
#else
            (void)clip;
            return ln_fail("adamw: %s is on the GPU in a build without CUDA", p->name);
#endif
        }
        float *w = p->data, *g = p->grad->data, *m = opt->m[i]->data, *v = opt->v[i]->data;
        double decay = ln_adamw_decays(opt, i) ? lr * c->weight_decay : 0.0;
        for (int64_t j = 0; j < p->numel; j++) {
            double gj = g[j];
            m[j] = (float)(c->beta1 * m[j] + (1 - c->beta1) * gj);
            v[j] = (float)(c->beta2 * v[j] + (1 - c->beta2) * gj * gj);
            double update = (m[j] / bias1) / (sqrt(v[j] / bias2) + c->eps);
            w[j] = (float)(w[j] - decay * w[j] - lr * update);
        }
    }
#ifdef LINNET_CUDA
    return update_cuda(opt, lr, bias1, bias2, clip);
#else
    return LN_OK;
#endif
}

int ln_adamw_step(ln_adamw *opt, double lr) { return update(opt, lr, NULL); }

int ln_adamw_clip_step(ln_adamw *opt, double lr, double max_norm, double *norm) {
    ln_params *params = opt->params;
#ifdef LINNET_CUDA
    if (params->n && params->items[0].tensor->device == LN_CUDA) {
        double *norm_dev;
        float *clip;
        if (grad_norm_cuda(params, max_norm, &norm_dev, &clip) || update(opt, lr, clip)) return LN_ERR;
        if (ln_device_copy(LN_CPU, norm, LN_CUDA, norm_dev, sizeof *norm)) return LN_ERR; /* the one sync */
        if (!isfinite(*norm)) opt->step--; /* the kernels left every parameter as it was */
        return LN_OK;
    }
#endif
    *norm = ln_clip_grad_norm(params, max_norm);
    return isfinite(*norm) ? update(opt, lr, NULL) : LN_OK;
}

void ln_adamw_free(ln_adamw *opt) {
    for (int i = 0; opt->params && i < opt->params->n; i++) {
        if (opt->m) ln_tensor_free(opt->m[i]);
        if (opt->v) ln_tensor_free(opt->v[i]);
    }
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

double ln_lr_at(const ln_optim_config *cfg, int64_t step, int64_t total) {
    if (step < cfg->warmup) return cfg->lr * (double)(step + 1) / (double)cfg->warmup;
    int64_t span = total - cfg->warmup;
    if (span <= 0) return cfg->lr;
    double progress = (double)(step - cfg->warmup) / (double)span;
    if (progress > 1) progress = 1;
    return cfg->min_lr + 0.5 * (cfg->lr - cfg->min_lr) * (1 + cos(M_PI * progress));
}

#ifdef LINNET_CUDA
static double clip_grad_norm_cuda(ln_params *params, double max_norm) {
    double *norm_dev, norm;
    float *clip;
    if (grad_norm_cuda(params, max_norm, &norm_dev, &clip) ||
        ln_device_copy(LN_CPU, &norm, LN_CUDA, norm_dev, sizeof norm))
        return NAN;
    if (max_norm > 0 && norm > max_norm)
        for (int i = 0; i < params->n; i++) {
            ln_tensor *g = params->items[i].tensor->grad;
            if (g && ln_scale_cuda(g->data, g->numel, clip)) return NAN;
        }
    return norm;
}
#endif

double ln_clip_grad_norm(ln_params *params, double max_norm) {
#ifdef LINNET_CUDA
    if (params->n && params->items[0].tensor->device == LN_CUDA) return clip_grad_norm_cuda(params, max_norm);
#endif
    double sum = 0;
    for (int i = 0; i < params->n; i++) {
        ln_tensor *g = params->items[i].tensor->grad;
        if (!g) continue;
        const float *d = g->data;
        for (int64_t j = 0; j < g->numel; j++) sum += (double)d[j] * d[j];
    }
    double norm = sqrt(sum);
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-12));
        for (int i = 0; i < params->n; i++) {
            ln_tensor *g = params->items[i].tensor->grad;
            if (!g) continue;
            float *d = g->data;
            for (int64_t j = 0; j < g->numel; j++) d[j] *= scale;
        }
    }
    return norm;
}
