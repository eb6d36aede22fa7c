/* The checkpoints of a run directory, by file name only (nothing here opens a checkpoint): the
 * step-%08lld.h5 name of a step's checkpoint, the newest one (for resume) and pruning old ones.
 * checkpoint.h includes this header. */
#ifndef LN_RUN_DIR_H
#define LN_RUN_DIR_H

#include <stddef.h>
#include <stdint.h>

/* The newest checkpoint (highest step) in dir: "step-00000100.h5" files. LN_ERR if none. */
int ln_checkpoint_find_latest(const char *dir, char *path, size_t len);
/* dir/step-%08lld.h5 */
void ln_checkpoint_path(const char *dir, int64_t step, char *path, size_t len);
/* Deletes all but the newest `keep` step-*.h5 files in dir (keep 0 keeps all; .tmp files and
 * other names are left alone). LN_ERR when dir cannot be read or a file cannot be removed. */
int ln_checkpoint_prune(const char *dir, int keep);

#endif
