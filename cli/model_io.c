#include "cli/model_io.h"

#include <stdio.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "checkpoints/checkpoint.h"

int cli_load_model(const char *checkpoint, ln_config *cfg, ln_transformer *model) {
    char *yaml = NULL;
    if (ln_checkpoint_read_recipe(checkpoint, &yaml)) return LN_ERR;
    ln_config_defaults(cfg);
    int status = ln_config_load_string(cfg, yaml, checkpoint);
    free(yaml);
    if (status || ln_transformer_create(model, &cfg->model, cfg->train.seed)) return ln_fail_context("%s", checkpoint);
    ln_params *p = &model->params;
    ln_named_tensor *entries = calloc((size_t)p->n, sizeof *entries);
    char (*names)[128] = calloc((size_t)p->n, sizeof *names);
    if (!entries || !names) {
        free(entries);
        free(names);
        return ln_fail("out of host memory");
    }
    for (int i = 0; i < p->n; i++) {
        snprintf(names[i], sizeof names[i], "params/%s", p->items[i].name);
        entries[i] = (ln_named_tensor){names[i], p->items[i].tensor};
    }
    ln_checkpoint ck = {.n_tensors = p->n, .tensors = entries};
    status = ln_checkpoint_load(checkpoint, &ck);
    free(ck.recipe_yaml);
    free(entries);
    free(names);
    return status;
}
