/* Softmax attention with RoPE and grouped-query heads, as in Llama. */
#include <math.h>
#include <stdlib.h>

#include "autograd/autocast.h"
#include "autograd/error.h"
#include "layers/attention.h"

typedef struct {
    ln_tensor *wq, *wk, *wv, *wo; /* [out, in], as in PyTorch / Hugging Face checkpoints */
    int n_heads, n_kv_heads, head_dim;
    double rope_theta;
} softmax_attention;

static void *softmax_create(ln_params *params, const char *prefix, const ln_model_config *cfg) {
    softmax_attention *a = calloc(1, sizeof *a);
    if (!a) {
        ln_fail("attention: out of host memory");
        return NULL;
    }
    a->n_heads = cfg->n_heads;
    a->n_kv_heads = cfg->n_kv_heads;
    a->head_dim = cfg->d_model / cfg->n_heads;
    a->rope_theta = cfg->rope_theta;
    int64_t d = cfg->d_model, q_width = (int64_t)a->n_heads * a->head_dim, kv_width = (int64_t)a->n_kv_heads * a->head_dim;
    a->wq = ln_params_add(params, prefix, "wq", 2, (int64_t[]){q_width, d}, LN_INIT_NORMAL, true);
    a->wk = ln_params_add(params, prefix, "wk", 2, (int64_t[]){kv_width, d}, LN_INIT_NORMAL, true);
    a->wv = ln_params_add(params, prefix, "wv", 2, (int64_t[]){kv_width, d}, LN_INIT_NORMAL, true);
    a->wo = ln_params_add(params, prefix, "wo", 2, (int64_t[]){d, q_width}, LN_INIT_RESIDUAL, true);
    if (!a->wq || !a->wk || !a->wv || !a->wo) {
        free(a);
        return NULL;
    }
    return a;
}

static ln_tensor *softmax_forward(void *state, ln_tensor *x) {
    softmax_attention *a = state;
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], D = a->head_dim;
    ln_tensor *q = ln_reshape(ln_matmul(x, ln_weight(a->wq), false, true), 4, (int64_t[]){B, T, a->n_heads, D});
    ln_tensor *k = ln_reshape(ln_matmul(x, ln_weight(a->wk), false, true), 4, (int64_t[]){B, T, a->n_kv_heads, D});
    ln_tensor *v = ln_reshape(ln_matmul(x, ln_weight(a->wv), false, true), 4, (int64_t[]){B, T, a->n_kv_heads, D});
    q = ln_rope(q, a->rope_theta, 0);
    k = ln_rope(k, a->rope_theta, 0);
    ln_tensor *o = ln_attention(q, k, v, true, 1.0 / sqrt((double)D));
    o = ln_reshape(o, 3, (int64_t[]){B, T, (int64_t)a->n_heads * D});
    return ln_matmul(o, ln_weight(a->wo), false, true);
}

const ln_attention_kind ln_attention_softmax = {
    .name = "softmax",
    .create = softmax_create,
    .forward = softmax_forward,
    .destroy = free,
};
