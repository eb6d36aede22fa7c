#include "layers/linear_mixer.h"

#include "autograd/autocast.h"
#include "autograd/error.h"

/* width = expand * d_model, as int(hidden_size * expand_k) in flash-linear-attention */
static int width_of(const ln_model_config *cfg, double expand) { return (int)(cfg->d_model * expand); }

int ln_linear_mixer_check(const ln_model_config *cfg, const ln_linear_mixer_opts *o) {
    const char *names[2] = {"expand_k", "expand_v"};
    double expands[2] = {o->expand_k, o->expand_v};
    for (int i = 0; i < 2; i++) {
        int w = width_of(cfg, expands[i]);
        if (w < cfg->n_heads || w % cfg->n_heads)
            return ln_fail("model.%s.%s %g gives a width of %d (x model.d_model %d), not a positive multiple of "
                           "model.n_heads %d", o->kind, names[i], expands[i], w, cfg->d_model, cfg->n_heads);
    }
    return LN_OK;
}

int ln_linear_mixer_create(ln_linear_mixer *m, const ln_linear_site *site, const ln_linear_mixer_opts *o) {
    const ln_model_config *cfg = site->cfg;
    if (ln_linear_mixer_check(cfg, o)) return LN_ERR;
    int64_t d = cfg->d_model, kw = width_of(cfg, o->expand_k), vw = width_of(cfg, o->expand_v);
    m->n_heads = cfg->n_heads;
    m->head_k = (int)(kw / cfg->n_heads);
    m->head_v = (int)(vw / cfg->n_heads);
    m->norm_eps = cfg->norm_eps;
    m->chunk_size = cfg->linear_chunk_size;
    if (ln_linear_create(&m->q, site, &(ln_linear_spec){"attn.q", "wq", NULL, kw, d, LN_INIT_NORMAL}) ||
        ln_linear_create(&m->k, site, &(ln_linear_spec){"attn.k", "wk", NULL, kw, d, LN_INIT_NORMAL}) ||
        ln_linear_create(&m->v, site, &(ln_linear_spec){"attn.v", "wv", NULL, vw, d, LN_INIT_NORMAL}))
        return LN_ERR;
    if (o->use_short_conv) {
        int64_t W = o->conv_size;
        m->conv_q = ln_params_add(site->params, site->prefix, "conv_q", 2, (int64_t[]){kw, W}, LN_INIT_FAN_IN, true);
        m->conv_k = ln_params_add(site->params, site->prefix, "conv_k", 2, (int64_t[]){kw, W}, LN_INIT_FAN_IN, true);
        m->conv_v = ln_params_add(site->params, site->prefix, "conv_v", 2, (int64_t[]){vw, W}, LN_INIT_FAN_IN, true);
        if (!m->conv_q || !m->conv_k || !m->conv_v) return LN_ERR;
    }
    m->gated = o->output_gate;
    if (m->gated && ln_linear_create(&m->g, site, &(ln_linear_spec){"attn.g", "wg", NULL, vw, d, LN_INIT_NORMAL}))
        return LN_ERR;
    return LN_OK;
}

int ln_linear_mixer_create_output(ln_linear_mixer *m, const ln_linear_site *site) {
    int64_t width = (int64_t)m->n_heads * m->head_v;
    m->o_norm = ln_params_add(site->params, site->prefix, "o_norm", 1, (int64_t[]){m->head_v}, LN_INIT_ONES, false);
    if (!m->o_norm) return LN_ERR;
    return ln_linear_create(&m->o, site, &(ln_linear_spec){"attn.o", "wo", NULL, site->cfg->d_model, width, LN_INIT_RESIDUAL});
}

void ln_linear_mixer_free(ln_linear_mixer *m) {
    ln_linear_free(&m->q);
    ln_linear_free(&m->k);
    ln_linear_free(&m->v);
    ln_linear_free(&m->g);
    ln_linear_free(&m->o);
}

ln_tensor *ln_split_heads(ln_tensor *y, int n_heads) {
    if (!y) return NULL;
    return ln_reshape(y, 4, (int64_t[]){y->shape[0], y->shape[1], n_heads, y->shape[2] / n_heads});
}

/* x through projection l, then the short convolution + silu when there is one, as heads. */
static ln_tensor *project(ln_tensor *x, const ln_linear *l, ln_tensor *conv, int n_heads) {
    ln_tensor *y = ln_linear_forward(l, x);
    if (conv) y = ln_silu(ln_short_conv(y, ln_weight(conv), NULL, NULL));
    return ln_split_heads(y, n_heads);
}

void ln_linear_mixer_qkv(const ln_linear_mixer *m, ln_tensor *x, ln_tensor **q, ln_tensor **k, ln_tensor **v) {
    *q = project(x, &m->q, m->conv_q, m->n_heads);
    *k = project(x, &m->k, m->conv_k, m->n_heads);
    *v = project(x, &m->v, m->conv_v, m->n_heads);
}

ln_tensor *ln_linear_mixer_output(const ln_linear_mixer *m, ln_tensor *o, ln_tensor *x) {
    if (!o || !x) return NULL;
    int64_t B = o->shape[0], T = o->shape[1], width = (int64_t)m->n_heads * m->head_v;
    /* over head_v: one norm per head, times silu(x W_g) in the same op when gated */
    if (m->gated) {
        ln_tensor *gate = ln_reshape(ln_linear_forward(&m->g, x), 4, o->shape);
        o = ln_rmsnorm_gated(o, ln_weight(m->o_norm), gate, m->norm_eps);
    } else
        o = ln_rmsnorm(o, ln_weight(m->o_norm), m->norm_eps);
    o = ln_reshape(o, 3, (int64_t[]){B, T, width});
    return ln_linear_forward(&m->o, o);
}
