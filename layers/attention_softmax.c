/* Softmax attention with RoPE and grouped-query heads, as in Llama. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "layers/attention.h"

typedef struct {
    ln_linear q, k, v, o; /* wq, wk, wv, wo: [out, in], as in PyTorch / Hugging Face checkpoints */
    int n_heads, n_kv_heads, head_dim;
    double rope_theta;
} softmax_attention;

static void softmax_destroy(void *state) {
    softmax_attention *a = state;
    ln_linear_free(&a->q);
    ln_linear_free(&a->k);
    ln_linear_free(&a->v);
    ln_linear_free(&a->o);
    free(a);
}

static void *softmax_create(const ln_linear_site *site) {
    const ln_model_config *cfg = site->cfg;
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
    if (ln_linear_create(&a->q, site, &(ln_linear_spec){"attn.q", "wq", NULL, q_width, d, LN_INIT_NORMAL}) ||
        ln_linear_create(&a->k, site, &(ln_linear_spec){"attn.k", "wk", NULL, kv_width, d, LN_INIT_NORMAL}) ||
        ln_linear_create(&a->v, site, &(ln_linear_spec){"attn.v", "wv", NULL, kv_width, d, LN_INIT_NORMAL}) ||
        ln_linear_create(&a->o, site, &(ln_linear_spec){"attn.o", "wo", NULL, d, q_width, LN_INIT_RESIDUAL})) {
        softmax_destroy(a);
        return NULL;
    }
    return a;
}

/* x [B, T, d] -> the heads of projection l: [B, T, heads, D] */
static ln_tensor *heads(const ln_linear *l, ln_tensor *x, int n, int64_t D) {
    return ln_reshape(ln_linear_forward(l, x), 4, (int64_t[]){x->shape[0], x->shape[1], n, D});
}

static ln_tensor *softmax_forward(void *state, ln_tensor *x) {
    softmax_attention *a = state;
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], D = a->head_dim;
    ln_tensor *q = heads(&a->q, x, a->n_heads, D);
    ln_tensor *k = heads(&a->k, x, a->n_kv_heads, D);
    ln_tensor *v = heads(&a->v, x, a->n_kv_heads, D);
    q = ln_rope(q, a->rope_theta, 0);
    k = ln_rope(k, a->rope_theta, 0);
    ln_tensor *o = ln_attention(q, k, v, true, 1.0 / sqrt((double)D));
    o = ln_reshape(o, 3, (int64_t[]){B, T, (int64_t)a->n_heads * D});
    return ln_linear_forward(&a->o, o);
}

const ln_attention_kind ln_attention_softmax = {
    .name = "softmax",
    .create = softmax_create,
    .forward = softmax_forward,
    .destroy = softmax_destroy,
};
