/* Loading a trained model back from a checkpoint, for sample and eval. */
#ifndef LN_MODEL_IO_H
#define LN_MODEL_IO_H

#include "layers/transformer.h"
#include "recipes/config.h"

/* Reads the checkpoint's recipe into cfg, builds the model and loads its parameters. */
int cli_load_model(const char *checkpoint, ln_config *cfg, ln_transformer *model);

#endif
