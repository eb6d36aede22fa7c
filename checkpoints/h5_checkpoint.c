/* The HDF5 layout of a linnet checkpoint: ln_checkpoint_save, _load and _read_recipe of
 * checkpoint.h. The layout (docs/checkpoint-format.md is the user-facing copy):
 *
 *   /                     attributes: format = "linnet-checkpoint" (variable-length UTF-8 string),
 *                                     format_version = 1 (int32), step (int64)
 *   /<name>               one dataset per ln_named_tensor, its name used as an HDF5 path
 *                         ("params/layers.0.attn.wq": slashes make groups, dots are ordinary
 *                         characters); dataspace = the tensor's shape (a 0-dim tensor is a scalar
 *                         dataspace); little-endian storage in the tensor's dtype:
 *                           f32 -> IEEE_F32LE   f64 -> IEEE_F64LE   i32 -> STD_I32LE
 *                           i8  -> STD_I8LE     u8  -> STD_U8LE
 *                           bf16 -> STD_U16LE (raw bits) with dataset attribute dtype = "bf16"
 *   /state/rng            uint64[4]   the RNG state
 *   /state/loader_cursor  int64[n]    the data loader's position (n <= LN_CKPT_MAX_STATE)
 *   /recipe               scalar variable-length UTF-8 string: the resolved recipe YAML
 *
 * Datasets are contiguous and uncompressed so any HDF5 reader (h5py, h5dump) opens them as is.
 * Tensor names may not be "recipe" or start with "state/": those paths belong to the format.
 * The temporary file and rename around a save are atomic_file.c's; step file names, run_dir.c's. */
#include "checkpoints/checkpoint.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/error.h"
#include "checkpoints/atomic_file.h"

#define FORMAT_NAME "linnet-checkpoint"
#define FORMAT_VERSION 1

/* Our messages replace HDF5's multi-line stack dumps; the stack is still recorded, and h5_fail
 * quotes its innermost entry. Called at every entry point (cheap, and per thread in HDF5). */
static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char *buf;
    size_t len;
} reason_buf;

static herr_t innermost_error(unsigned n, const H5E_error2_t *err, void *data) {
    reason_buf *r = data;
    if (n == 0 && err->desc) snprintf(r->buf, r->len, "%s", err->desc);
    return 0;
}

/* Must run before the next HDF5 API call: every API call clears the error stack on entry. */
static int h5_fail(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int h5_fail(const char *file, const char *fmt, ...) {
    char reason[256] = "", what[512];
    reason_buf r = {reason, sizeof reason};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, &r);
    for (char *c = reason; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' '; /* one line, always */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!reason[0]) return ln_fail("%s: %s", file, what);
    return ln_fail("%s: %s (HDF5: %s)", file, what, reason);
}

static void close_id(hid_t id, herr_t (*close)(hid_t)) {
    if (id >= 0) close(id);
}

/* ---- dtypes ---------------------------------------------------------------------------------- */

/* Fixed little-endian types on disk so files are portable; native types in memory. */
static bool dtype_types(ln_dtype d, hid_t *file_type, hid_t *mem_type) {
    switch (d) {
    case LN_F32: *file_type = H5T_IEEE_F32LE, *mem_type = H5T_NATIVE_FLOAT; return true;
    case LN_F64: *file_type = H5T_IEEE_F64LE, *mem_type = H5T_NATIVE_DOUBLE; return true;
    case LN_BF16: *file_type = H5T_STD_U16LE, *mem_type = H5T_NATIVE_UINT16; return true;
    case LN_I32: *file_type = H5T_STD_I32LE, *mem_type = H5T_NATIVE_INT32; return true;
    case LN_I8: *file_type = H5T_STD_I8LE, *mem_type = H5T_NATIVE_INT8; return true;
    case LN_U8: *file_type = H5T_STD_U8LE, *mem_type = H5T_NATIVE_UINT8; return true;
    default: return false;
    }
}

static hid_t vlen_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static void free_vlen_string(hid_t mem_type, char **s) {
    hid_t space = H5Screate(H5S_SCALAR);
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem_type, space, H5P_DEFAULT, s);
#else
    H5Dvlen_reclaim(mem_type, space, H5P_DEFAULT, s);
#endif
    close_id(space, H5Sclose);
}

/* A scalar string attribute or dataset, fixed- or variable-length (other writers use either), as a
 * malloc'd C string. NULL when it is not a single string or cannot be read. */
static char *read_string(hid_t obj, bool is_attr) {
    hid_t ftype = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t space = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hid_t mtype = -1;
    char *out = NULL;
    if (ftype < 0 || space < 0 || H5Tget_class(ftype) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1)
        goto done;
    if ((mtype = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_cset(mtype, H5Tget_cset(ftype)) < 0) goto done;
    if (H5Tis_variable_str(ftype) > 0) {
        char *s = NULL;
        if (H5Tset_size(mtype, H5T_VARIABLE) < 0) goto done;
        herr_t st = is_attr ? H5Aread(obj, mtype, &s) : H5Dread(obj, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s);
        if (st < 0) goto done;
        out = strdup(s ? s : "");
        free_vlen_string(mtype, &s);
    } else {
        /* Convert to NUL-terminated whatever the file's padding, with room for the NUL. */
        size_t n = H5Tget_size(ftype);
        if (H5Tset_size(mtype, n + 1) < 0 || H5Tset_strpad(mtype, H5T_STR_NULLTERM) < 0) goto done;
        char *buf = calloc(1, n + 1);
        if (!buf) goto done;
        herr_t st = is_attr ? H5Aread(obj, mtype, buf) : H5Dread(obj, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        if (st < 0)
            free(buf);
        else
            out = buf;
    }
done:
    close_id(mtype, H5Tclose);
    close_id(space, H5Sclose);
    close_id(ftype, H5Tclose);
    return out;
}

/* ---- names ----------------------------------------------------------------------------------- */

/* A tensor name is a relative HDF5 path: non-empty components, none "." or "..", which HDF5
 * would resolve instead of storing. */
static bool valid_name(const char *name) {
    if (!name || !*name || name[0] == '/') return false;
    const char *p = name;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return false;
        if (!end) break;
        p = end + 1;
        if (!*p) return false; /* trailing slash */
    }
    return true;
}

static bool reserved_name(const char *name) {
    return strcmp(name, "recipe") == 0 || strncmp(name, "recipe/", 7) == 0 || strcmp(name, "state") == 0 ||
           strncmp(name, "state/", 6) == 0;
}

/* H5Lexists fails rather than answering "no" when an intermediate group is missing, so walk the
 * path one component at a time. */
static bool path_exists(hid_t file, const char *name) {
    char *buf = strdup(name);
    if (!buf) return false;
    bool ok = true;
    for (char *p = buf; ok; p++) {
        char *slash = strchr(p, '/');
        if (slash) *slash = '\0';
        ok = H5Lexists(file, buf, H5P_DEFAULT) > 0;
        if (!slash) break;
        *slash = '/';
        p = slash;
    }
    free(buf);
    return ok;
}

static int open_dataset(hid_t file, const char *path, const char *name, hid_t *out) {
    *out = -1;
    if (!path_exists(file, name)) return ln_fail("%s: no dataset %s", path, name);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return h5_fail(path, "%s is not a readable dataset", name);
    *out = d;
    return LN_OK;
}

/* ---- writing --------------------------------------------------------------------------------- */

static int write_dataset(hid_t file, hid_t lcpl, const char *path, const char *name, hid_t file_type,
                         hid_t mem_type, int ndim, const hsize_t *dims, const void *data, bool bf16) {
    int st = LN_ERR;
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    hid_t dset = -1, attr_type = -1, attr_space = -1, attr = -1;
    if (space < 0) {
        h5_fail(path, "cannot make the dataspace of %s", name);
        goto done;
    }
    dset = H5Dcreate2(file, name, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (dset < 0) {
        h5_fail(path, "cannot create dataset %s", name);
        goto done;
    }
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (n > 0 && H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        h5_fail(path, "cannot write dataset %s", name);
        goto done;
    }
    if (bf16) {
        /* uint16 bits say nothing about bf16 by themselves; the attribute tells readers. */
        const char *value = "bf16";
        attr_type = vlen_string_type();
        attr_space = H5Screate(H5S_SCALAR);
        if (attr_type < 0 || attr_space < 0 ||
            (attr = H5Acreate2(dset, "dtype", attr_type, attr_space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
            H5Awrite(attr, attr_type, &value) < 0) {
            h5_fail(path, "cannot write the dtype attribute of %s", name);
            goto done;
        }
    }
    st = LN_OK;
done:
    close_id(attr, H5Aclose);
    close_id(attr_space, H5Sclose);
    close_id(attr_type, H5Tclose);
    close_id(dset, H5Dclose);
    close_id(space, H5Sclose);
    return st;
}

static int write_root_attr(hid_t file, const char *path, const char *name, hid_t file_type, hid_t mem_type,
                           const void *value) {
    hid_t space = H5Screate(H5S_SCALAR), attr = -1;
    int st = LN_OK;
    if (space < 0 || (attr = H5Acreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, mem_type, value) < 0)
        st = h5_fail(path, "cannot write root attribute %s", name);
    close_id(attr, H5Aclose);
    close_id(space, H5Sclose);
    return st;
}

static int write_contents(hid_t file, const char *path, const ln_checkpoint *ck) {
    int st = LN_ERR;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), str_type = vlen_string_type();
    if (lcpl < 0 || str_type < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        h5_fail(path, "cannot set up HDF5 property lists");
        goto done;
    }
    const char *format = FORMAT_NAME;
    int32_t version = FORMAT_VERSION;
    int64_t step = ck->step;
    if (write_root_attr(file, path, "format", str_type, str_type, &format) ||
        write_root_attr(file, path, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version) ||
        write_root_attr(file, path, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &step))
        goto done;

    for (int i = 0; i < ck->n_tensors; i++) {
        const ln_named_tensor *nt = &ck->tensors[i];
        const ln_tensor *t = nt->tensor;
        hsize_t dims[LN_MAX_DIMS];
        hid_t ftype, mtype;
        dtype_types(t->dtype, &ftype, &mtype); /* checked in validate_save */
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        if (write_dataset(file, lcpl, path, nt->name, ftype, mtype, t->ndim, dims, t->data, t->dtype == LN_BF16))
            goto done;
    }

    hsize_t four = 4, n_cursor = (hsize_t)ck->n_cursor;
    if (write_dataset(file, lcpl, path, "state/rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &four, ck->rng_state,
                      false) ||
        write_dataset(file, lcpl, path, "state/loader_cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n_cursor,
                      ck->loader_cursor, false))
        goto done;

    const char *recipe = ck->recipe_yaml ? ck->recipe_yaml : "";
    if (write_dataset(file, lcpl, path, "recipe", str_type, str_type, 0, NULL, &recipe, false)) goto done;
    st = LN_OK;
done:
    close_id(str_type, H5Tclose);
    close_id(lcpl, H5Pclose);
    return st;
}

/* Everything that can be checked without touching the disk is, so bad input fails early. */
static int validate_save(const char *path, const ln_checkpoint *ck) {
    if (ck->n_tensors < 0 || (ck->n_tensors > 0 && !ck->tensors))
        return ln_fail("%s: checkpoint has %d tensors but no tensor list", path, ck->n_tensors);
    if (ck->n_cursor < 0 || ck->n_cursor > LN_CKPT_MAX_STATE)
        return ln_fail("%s: loader cursor has %d entries (0 to %d allowed)", path, ck->n_cursor, LN_CKPT_MAX_STATE);
    for (int i = 0; i < ck->n_tensors; i++) {
        const ln_named_tensor *nt = &ck->tensors[i];
        const char *name = nt->name ? nt->name : "(null)";
        hid_t ft, mt;
        if (!valid_name(nt->name)) return ln_fail("%s: tensor %d has an invalid name '%s'", path, i, name);
        if (reserved_name(nt->name))
            return ln_fail("%s: tensor name %s is reserved by the checkpoint format", path, name);
        if (!nt->tensor) return ln_fail("%s: tensor %s is NULL", path, name);
        const ln_tensor *t = nt->tensor;
        if (t->device != LN_CPU)
            return ln_fail("%s: tensor %s is on %s; copy it to the host before saving", path, name,
                           ln_device_name(t->device));
        if (!dtype_types(t->dtype, &ft, &mt)) return ln_fail("%s: tensor %s has an unknown dtype", path, name);
        if (t->ndim < 0 || t->ndim > LN_MAX_DIMS) return ln_fail("%s: tensor %s has %d dimensions", path, name, t->ndim);
        if (t->numel > 0 && !t->data) return ln_fail("%s: tensor %s has no data", path, name);
    }
    return LN_OK;
}

int ln_checkpoint_save(const char *path, const ln_checkpoint *ck) {
    quiet_hdf5();
    if (!path || !*path || !ck) return ln_fail("checkpoint save: no path or no checkpoint");
    if (validate_save(path, ck)) return LN_ERR;

    ln_atomic_file out;
    if (ln_atomic_begin(&out, path)) return LN_ERR;
    hid_t file = H5Fcreate(out.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        h5_fail(path, "cannot create %s", out.tmp);
        ln_atomic_abort(&out, false); /* not ours: it may be something else that sits at that name */
        return LN_ERR;
    }
    int st = write_contents(file, path, ck);
    if (st == LN_OK && H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) st = h5_fail(path, "cannot flush %s", out.tmp);
    if (H5Fclose(file) < 0 && st == LN_OK) st = h5_fail(path, "cannot close %s", out.tmp);
    if (st != LN_OK) {
        ln_atomic_abort(&out, true);
        return LN_ERR;
    }
    return ln_atomic_commit(&out);
}

/* ---- reading --------------------------------------------------------------------------------- */

/* Opens path read-only and checks it is a linnet checkpoint this build understands. */
static int open_checkpoint(const char *path, hid_t *out) {
    *out = -1;
    struct stat sb;
    if (!path || !*path) return ln_fail("checkpoint load: no path");
    if (stat(path, &sb) != 0) return ln_fail("%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return ln_fail("%s: not a regular file", path);
    htri_t is = H5Fis_hdf5(path);
    if (is < 0) return h5_fail(path, "cannot read the file");
    if (is == 0) return ln_fail("%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return h5_fail(path, "cannot open the HDF5 file, truncated or damaged");

    int st = LN_OK;
    char *format = NULL;
    hid_t attr = -1, type = -1;
    if (H5Aexists(file, "format") <= 0 || (attr = H5Aopen(file, "format", H5P_DEFAULT)) < 0 ||
        !(format = read_string(attr, true)) || strcmp(format, FORMAT_NAME) != 0) {
        st = ln_fail("%s: not a linnet checkpoint (root attribute format is %s%s%s)", path, format ? "'" : "",
                     format ? format : "missing", format ? "'" : "");
        goto done;
    }
    H5Aclose(attr);
    attr = -1;
    int32_t version = 0;
    if (H5Aexists(file, "format_version") <= 0 || (attr = H5Aopen(file, "format_version", H5P_DEFAULT)) < 0 ||
        (type = H5Aget_type(attr)) < 0 || H5Tget_class(type) != H5T_INTEGER ||
        H5Aread(attr, H5T_NATIVE_INT32, &version) < 0) {
        st = ln_fail("%s: root attribute format_version is missing or not an integer", path);
        goto done;
    }
    if (version != FORMAT_VERSION)
        st = ln_fail("%s: checkpoint format_version %d, this linnet reads %d", path, (int)version, FORMAT_VERSION);
done:
    close_id(type, H5Tclose);
    close_id(attr, H5Aclose);
    free(format);
    if (st != LN_OK) {
        H5Fclose(file);
        return st;
    }
    *out = file;
    return LN_OK;
}

/* The linnet dtype a dataset holds, or -1 with a description of its type in desc. */
static int dataset_dtype(hid_t dset, char *desc, size_t len) {
    hid_t type = H5Dget_type(dset);
    int d = -1;
    if (type < 0) {
        snprintf(desc, len, "of unreadable type");
        return -1;
    }
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT) {
        d = size == 4 ? LN_F32 : size == 8 ? LN_F64 : -1;
        if (d < 0) snprintf(desc, len, "a %zu-byte float", size);
    } else if (cls == H5T_INTEGER) {
        bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
        if (size == 4 && is_signed) d = LN_I32;
        else if (size == 1) d = is_signed ? LN_I8 : LN_U8;
        else if (size == 2 && !is_signed) {
            /* bf16 is stored as its bits; only the attribute makes it bf16 rather than uint16. */
            hid_t attr = H5Aexists(dset, "dtype") > 0 ? H5Aopen(dset, "dtype", H5P_DEFAULT) : -1;
            char *s = attr >= 0 ? read_string(attr, true) : NULL;
            if (s && strcmp(s, "bf16") == 0) d = LN_BF16;
            free(s);
            close_id(attr, H5Aclose);
        }
        if (d < 0) snprintf(desc, len, "%sint%zu", is_signed ? "" : "u", size * 8);
    } else {
        snprintf(desc, len, "not numeric");
    }
    H5Tclose(type);
    if (d >= 0) snprintf(desc, len, "%s", ln_dtype_name((ln_dtype)d));
    return d;
}

static void dims_str(int ndim, const hsize_t *dims, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

/* Reads a dataset's shape; ndim -1 for a null dataspace. dims holds H5S_MAX_RANK entries. */
static int dataset_shape(hid_t dset, const char *path, const char *name, int *ndim, hsize_t *dims) {
    hid_t space = H5Dget_space(dset);
    if (space < 0) return h5_fail(path, "cannot read the shape of %s", name);
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    int n = cls == H5S_NULL ? -1 : H5Sget_simple_extent_ndims(space);
    if (n > 0) H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    if (n < -1) return h5_fail(path, "cannot read the shape of %s", name);
    *ndim = n;
    return LN_OK;
}

/* The dataset for a named tensor, checked against the tensor the model expects. */
static int check_tensor(hid_t file, const char *path, const ln_named_tensor *nt, hid_t *out) {
    *out = -1;
    const char *name = nt->name ? nt->name : "(null)";
    if (!valid_name(nt->name)) return ln_fail("%s: invalid tensor name '%s'", path, name);
    if (!nt->tensor) return ln_fail("%s: tensor %s is NULL", path, name);
    const ln_tensor *t = nt->tensor;
    if (t->device != LN_CPU) return ln_fail("%s: tensor %s is on %s; load into host tensors", path, name,
                                            ln_device_name(t->device));
    if (t->numel > 0 && !t->data) return ln_fail("%s: tensor %s has no data", path, name);

    hid_t dset;
    if (open_dataset(file, path, name, &dset)) return LN_ERR;
    char want[160], have[160], desc[64];
    hsize_t dims[H5S_MAX_RANK];
    int ndim = 0;
    if (dataset_shape(dset, path, name, &ndim, dims)) goto fail;
    bool same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++) same = dims[i] == (hsize_t)t->shape[i];
    if (!same) {
        if (ndim < 0) snprintf(have, sizeof have, "no dataspace");
        else dims_str(ndim, dims, have, sizeof have);
        ln_fail("%s: %s has shape %s, the model expects %s", path, name, have, ln_shape_str(t, want, sizeof want));
        goto fail;
    }
    int d = dataset_dtype(dset, desc, sizeof desc);
    if (d != (int)t->dtype) {
        ln_fail("%s: %s is %s, the model expects %s", path, name, desc, ln_dtype_name(t->dtype));
        goto fail;
    }
    *out = dset;
    return LN_OK;
fail:
    H5Dclose(dset);
    return LN_ERR;
}

/* A 1-D integer dataset of at most max entries (state/rng, state/loader_cursor). */
static int read_state(hid_t file, const char *path, const char *name, hid_t mem_type, int max, int exact,
                      void *out, int *n_out) {
    hid_t dset, type = -1;
    if (open_dataset(file, path, name, &dset)) return LN_ERR;
    int st = LN_ERR, ndim = 0;
    hsize_t dims[H5S_MAX_RANK];
    if (dataset_shape(dset, path, name, &ndim, dims)) goto done;
    type = H5Dget_type(dset);
    if (type < 0 || H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 8) {
        ln_fail("%s: %s is not a 64-bit integer dataset", path, name);
        goto done;
    }
    if (ndim != 1 || dims[0] > (hsize_t)max || (exact && dims[0] != (hsize_t)exact)) {
        char have[160];
        if (ndim < 0) snprintf(have, sizeof have, "no dataspace");
        else dims_str(ndim, dims, have, sizeof have);
        if (exact) ln_fail("%s: %s has shape %s, expected [%d]", path, name, have, exact);
        else ln_fail("%s: %s has shape %s, expected at most [%d]", path, name, have, max);
        goto done;
    }
    if (dims[0] > 0 && H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        h5_fail(path, "cannot read %s", name);
        goto done;
    }
    *n_out = (int)dims[0];
    st = LN_OK;
done:
    close_id(type, H5Tclose);
    H5Dclose(dset);
    return st;
}

static int read_recipe(hid_t file, const char *path, char **yaml) {
    hid_t dset;
    if (open_dataset(file, path, "recipe", &dset)) return LN_ERR;
    *yaml = read_string(dset, false);
    H5Dclose(dset);
    if (!*yaml) return ln_fail("%s: recipe is not a readable string dataset", path);
    return LN_OK;
}

static int read_step(hid_t file, const char *path, int64_t *step) {
    hid_t attr = -1, type = -1;
    int st = LN_OK;
    if (H5Aexists(file, "step") <= 0 || (attr = H5Aopen(file, "step", H5P_DEFAULT)) < 0 ||
        (type = H5Aget_type(attr)) < 0 || H5Tget_class(type) != H5T_INTEGER ||
        H5Aread(attr, H5T_NATIVE_INT64, step) < 0)
        st = ln_fail("%s: root attribute step is missing or not an integer", path);
    close_id(type, H5Tclose);
    close_id(attr, H5Aclose);
    return st;
}

int ln_checkpoint_load(const char *path, ln_checkpoint *ck) {
    quiet_hdf5();
    if (!ck) return ln_fail("checkpoint load: no checkpoint");
    if (ck->n_tensors < 0 || (ck->n_tensors > 0 && !ck->tensors))
        return ln_fail("%s: checkpoint has %d tensors but no tensor list", path ? path : "(null)", ck->n_tensors);
    hid_t file;
    if (open_checkpoint(path, &file)) return LN_ERR;

    /* Everything is checked before any tensor is written, so a mismatch leaves the model as it was. */
    int64_t step = 0, cursor[LN_CKPT_MAX_STATE];
    uint64_t rng[4];
    int n_rng = 0, n_cursor = 0, st = LN_ERR;
    char *yaml = NULL;
    for (int i = 0; i < ck->n_tensors; i++) {
        hid_t dset;
        if (check_tensor(file, path, &ck->tensors[i], &dset)) goto done;
        H5Dclose(dset);
    }
    if (read_step(file, path, &step) ||
        read_state(file, path, "state/rng", H5T_NATIVE_UINT64, 4, 4, rng, &n_rng) ||
        read_state(file, path, "state/loader_cursor", H5T_NATIVE_INT64, LN_CKPT_MAX_STATE, 0, cursor, &n_cursor) ||
        read_recipe(file, path, &yaml))
        goto done;
    for (int i = 0; i < ck->n_tensors; i++) {
        const ln_named_tensor *nt = &ck->tensors[i];
        hid_t dset, ft, mt;
        if (check_tensor(file, path, nt, &dset)) goto done;
        dtype_types(nt->tensor->dtype, &ft, &mt);
        herr_t r = nt->tensor->numel > 0 ? H5Dread(dset, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, nt->tensor->data) : 0;
        if (r < 0) h5_fail(path, "cannot read %s", nt->name);
        H5Dclose(dset);
        if (r < 0) goto done;
    }
    ck->step = step;
    memcpy(ck->rng_state, rng, sizeof rng);
    ck->n_cursor = n_cursor;
    memcpy(ck->loader_cursor, cursor, (size_t)n_cursor * sizeof *cursor);
    ck->recipe_yaml = yaml;
    yaml = NULL;
    st = LN_OK;
done:
    free(yaml);
    H5Fclose(file);
    return st;
}

int ln_checkpoint_read_recipe(const char *path, char **yaml) {
    quiet_hdf5();
    if (!yaml) return ln_fail("checkpoint recipe: no output pointer");
    *yaml = NULL;
    hid_t file;
    if (open_checkpoint(path, &file)) return LN_ERR;
    int st = read_recipe(file, path, yaml);
    H5Fclose(file);
    return st;
}
