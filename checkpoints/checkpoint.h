/* linnet checkpoints: parameters, optimizer moments, step, RNG state, loader cursor and the
 * resolved recipe, in an HDF5 layout documented in docs/checkpoint-format.md so h5py can read it.
 * Writes go to a temporary file renamed into place: a crash mid-write never destroys the last good
 * one. The layout is checkpoints/h5_checkpoint.c, the temporary file + rename atomic_file.c; the
 * file names of a run directory (latest, prune) are run_dir.h, included here for callers. */
#ifndef LN_CHECKPOINT_H
#define LN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "checkpoints/run_dir.h"

#define LN_CKPT_MAX_STATE 16

typedef struct ln_named_tensor {
    const char *name; /* HDF5 path below the root, e.g. "params/layers.0.attn.wq" */
    ln_tensor *tensor;
} ln_named_tensor;

typedef struct ln_checkpoint {
    int n_tensors;
    ln_named_tensor *tensors;
    int64_t step;
    uint64_t rng_state[4];
    int n_cursor;
    int64_t loader_cursor[LN_CKPT_MAX_STATE];
    char *recipe_yaml; /* save: the resolved recipe; load: malloc'd by the loader (caller frees) */
} ln_checkpoint;

/* Writes path.tmp, flushes it, renames it over path. */
int ln_checkpoint_save(const char *path, const ln_checkpoint *ck);
/* Reads into the tensors already in ck (by name; every one must exist with the same shape, else
 * an error names the dataset and both shapes), plus step, RNG, cursor and recipe. */
int ln_checkpoint_load(const char *path, ln_checkpoint *ck);
/* Only the recipe (to build the model before loading the rest). *yaml is malloc'd. */
int ln_checkpoint_read_recipe(const char *path, char **yaml);

#endif
