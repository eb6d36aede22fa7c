#include "transformer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autocast.h"
#include "autograd/error.h"

int ln_transformer_create(ln_transformer *m, const ln_model_config *cfg, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    int64_t V = cfg->vocab_size, d = cfg->d_model;
    m->blocks = calloc((size_t)cfg->n_layers, sizeof *m->blocks);
    if (!m->blocks) return ln_fail("model: out of host memory");
    /* embeddings are not decayed by default (optim.decay_embeddings) */
    m->embedding = ln_params_add(&m->params, "", "embedding", 2, (int64_t[]){V, d}, LN_INIT_NORMAL, false);
    if (!m->embedding) return LN_ERR;
    m->params.items[m->params.n - 1].embedding = true;
    if (ln_linear_check(cfg)) return LN_ERR;
    for (int i = 0; i < cfg->n_layers; i++) {
        ln_block *b = &m->blocks[i];
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%d", i);
        b->attention_kind = ln_attention_kind_find(cfg->attention[i]);
        if (!b->attention_kind || (b->attention_kind->check && b->attention_kind->check(cfg)))
            return ln_fail_context("model.attention[%d]", i);
        b->attn_norm = ln_params_add(&m->params, prefix, "attn_norm", 1, (int64_t[]){d}, LN_INIT_ONES, false);
        snprintf(prefix, sizeof prefix, "layers.%d.attn", i);
        b->attention = b->attention_kind->create(&(ln_linear_site){&m->params, prefix, cfg, i, &m->linears});
        if (!b->attn_norm || !b->attention) return LN_ERR;
        snprintf(prefix, sizeof prefix, "layers.%d", i);
        b->mlp_norm = ln_params_add(&m->params, prefix, "mlp_norm", 1, (int64_t[]){d}, LN_INIT_ONES, false);
        snprintf(prefix, sizeof prefix, "layers.%d.mlp", i);
        if (!b->mlp_norm ||
            ln_mlp_create(&b->mlp, &(ln_linear_site){&m->params, prefix, cfg, i, &m->linears}, cfg->d_model, cfg->mlp_hidden))
            return LN_ERR;
    }
    m->final_norm = ln_params_add(&m->params, "", "final_norm", 1, (int64_t[]){d}, LN_INIT_ONES, false);
    if (!m->final_norm) return LN_ERR;
    if (cfg->tied_embeddings) {
        m->lm_head = m->embedding;
    } else {
        ln_linear_spec spec = {"lm_head", "lm_head", NULL, V, d, LN_INIT_NORMAL};
        if (ln_linear_create(&m->head, &(ln_linear_site){&m->params, "", cfg, -1, &m->linears}, &spec)) return LN_ERR;
        m->lm_head = m->head.weight;
    }
    ln_params_init(&m->params, seed, cfg->init_std, cfg->n_layers);
    return LN_OK;
}

/* The norm in front of block i's attention; past the last block, the final norm. */
static ln_tensor *norm_before_block(const ln_transformer *m, int i) {
    return i < m->cfg.n_layers ? m->blocks[i].attn_norm : m->final_norm;
}

/* x is the residual stream and h its normalised value, the next sublayer's input. Each residual
 * add is fused with the RMSNorm that reads its sum (ln_add_rmsnorm): the MLP's, the next block's
 * attention's, or the final one; the same numbers as ln_add then ln_rmsnorm, in one node.
 * Sublayers run in statements of their own: the order of ops on the tape (ln_weight may record
 * a cast) must not rest on C's unspecified order of argument evaluation. */
ln_tensor *ln_transformer_logits(ln_transformer *m, ln_tensor *ids) {
    const double eps = m->cfg.norm_eps;
    ln_tensor *x = ln_embedding(ln_weight(m->embedding), ids);
    ln_tensor *h = ln_rmsnorm(x, ln_weight(norm_before_block(m, 0)), eps);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        ln_block *b = &m->blocks[i];
        ln_tensor *attn = b->attention_kind->forward(b->attention, h);
        h = ln_add_rmsnorm(x, attn, ln_weight(b->mlp_norm), eps, &x);
        ln_tensor *mlp = ln_mlp_forward(&b->mlp, h);
        h = ln_add_rmsnorm(x, mlp, ln_weight(norm_before_block(m, i + 1)), eps, &x);
    }
    if (!m->cfg.tied_embeddings) return ln_linear_forward(&m->head, h);
    return ln_matmul(h, ln_weight(m->embedding), false, true);
}

ln_tensor *ln_transformer_loss(ln_transformer *m, ln_tensor *ids, ln_tensor *targets) {
    return ln_cross_entropy(ln_transformer_logits(m, ids), targets);
}

void ln_transformer_free(ln_transformer *m) {
    for (int i = 0; m->blocks && i < m->cfg.n_layers; i++) {
        if (m->blocks[i].attention) m->blocks[i].attention_kind->destroy(m->blocks[i].attention);
        ln_mlp_free(&m->blocks[i].mlp);
    }
    ln_linear_free(&m->head);
    ln_linears_free(&m->linears);
    free(m->blocks);
    ln_params_free(&m->params);
    memset(m, 0, sizeof *m);
}
