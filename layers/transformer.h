/* A decoder-only transformer built from the recipe's model section: token embedding, n_layers
 * pre-norm blocks (RMSNorm -> attention of the layer's kind -> residual, RMSNorm -> SwiGLU MLP ->
 * residual), a final RMSNorm and the LM head (tied to the embedding or its own matrix). Each
 * residual add and the RMSNorm after it run as one op (ln_add_rmsnorm). Every projection is an
 * ln_linear of the kind the recipe gives it (model.linear, model.linear_overrides). */
#ifndef LN_TRANSFORMER_H
#define LN_TRANSFORMER_H

#include "layers/attention.h"
#include "layers/linear.h"
#include "layers/mlp.h"
#include "layers/params.h"
#include "recipes/config.h"

typedef struct ln_block {
    ln_tensor *attn_norm, *mlp_norm;
    const ln_attention_kind *attention_kind;
    void *attention;
    ln_mlp mlp;
} ln_block;

typedef struct ln_transformer {
    ln_model_config cfg;
    ln_params params;
    ln_tensor *embedding; /* [vocab, d_model] */
    ln_tensor *final_norm;
    ln_tensor *lm_head;   /* [vocab, d_model]; the embedding when tied */
    ln_linear head;       /* the untied LM head (its weight is lm_head) */
    ln_block *blocks;
    ln_linears linears;   /* every projection, in the order they were made */
} ln_transformer;

/* Builds the model and initializes it from seed. Errors name the recipe key (model.attention[2]). */
int ln_transformer_create(ln_transformer *m, const ln_model_config *cfg, uint64_t seed);
/* ids i32 [B, T] -> logits [B, T, vocab] */
ln_tensor *ln_transformer_logits(ln_transformer *m, ln_tensor *ids);
/* Mean next-token cross-entropy of ids [B, T] against targets [B, T] -> [] */
ln_tensor *ln_transformer_loss(ln_transformer *m, ln_tensor *ids, ln_tensor *targets);
void ln_transformer_free(ln_transformer *m);

#endif
