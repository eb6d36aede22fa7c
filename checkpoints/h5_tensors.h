/* Plain HDF5 files of named tensors, without the checkpoint layout: what `linnet op` reads and
 * writes, so h5py (or any HDF5 tool) can feed an op and read its results.
 *
 * Reading keeps the stored precision: float64 -> f64, other floats -> f32, uint16 with the
 * attribute dtype = "bf16" (linnet's checkpoint convention) -> bf16, any other integer -> i32.
 * Writing: f32 and f64 as they are, bf16 widened to float32 (exact), i32 as int32. */
#ifndef LN_H5_TENSORS_H
#define LN_H5_TENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"

typedef int64_t ln_h5_file; /* an HDF5 file id */

int ln_h5_open(const char *path, ln_h5_file *file);   /* read-only */
int ln_h5_create(const char *path, ln_h5_file *file); /* truncates */
int ln_h5_close(ln_h5_file file, const char *path);

/* Whether a dataset of that name exists at the root. */
bool ln_h5_has_dataset(ln_h5_file file, const char *name);
/* A new caller-owned CPU tensor with the dataset's shape and (converted) dtype, named `name`. */
int ln_h5_read_tensor(ln_h5_file file, const char *path, const char *name, ln_tensor **out);
/* A number from a root attribute or a one-element dataset of that name; *found false when neither. */
int ln_h5_read_scalar(ln_h5_file file, const char *path, const char *name, double *value, bool *found);
int ln_h5_write_tensor(ln_h5_file file, const char *path, const char *name, const ln_tensor *t);

#endif
