/* Plain HDF5 files of named tensors for `linnet op` (h5_tensors.h): no checkpoint layout, and
 * lenient reading (any float or integer type) where checkpoints (h5_checkpoint.c) are strict. */
#include "checkpoints/h5_tensors.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); } /* our one-line messages instead */

int ln_h5_open(const char *path, ln_h5_file *file) {
    quiet();
    *file = -1;
    if (H5Fis_hdf5(path) <= 0) return ln_fail("%s: missing or not an HDF5 file", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ln_fail("%s: cannot open the HDF5 file", path);
    *file = f;
    return LN_OK;
}

int ln_h5_create(const char *path, ln_h5_file *file) {
    quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    *file = f;
    return f < 0 ? ln_fail("%s: cannot create the HDF5 file", path) : LN_OK;
}

int ln_h5_close(ln_h5_file file, const char *path) {
    if (file >= 0 && H5Fclose(file) < 0) return ln_fail("%s: cannot close the HDF5 file", path);
    return LN_OK;
}

bool ln_h5_has_dataset(ln_h5_file file, const char *name) {
    quiet();
    if (!name[0] || strchr(name, '/') || H5Lexists(file, name, H5P_DEFAULT) <= 0) return false;
    hid_t obj = H5Oopen(file, name, H5P_DEFAULT); /* H5Oopen + H5Iget_type: the same in every HDF5 1.x API */
    bool is_dataset = obj >= 0 && H5Iget_type(obj) == H5I_DATASET;
    if (obj >= 0) H5Oclose(obj);
    return is_dataset;
}

/* Is a uint16 dataset tagged dtype = "bf16" (fixed- or variable-length string, ASCII or UTF-8:
 * h5py writes UTF-8, and HDF5 converts between the two character sets not at all)? */
static bool tagged_bf16(hid_t dset) {
    if (H5Aexists(dset, "dtype") <= 0) return false;
    hid_t attr = H5Aopen(dset, "dtype", H5P_DEFAULT), ftype = attr >= 0 ? H5Aget_type(attr) : -1, mtype = -1;
    bool yes = false;
    if (ftype >= 0 && H5Tget_class(ftype) == H5T_STRING && (mtype = H5Tcopy(H5T_C_S1)) >= 0 &&
        H5Tset_cset(mtype, H5Tget_cset(ftype)) >= 0) {
        if (H5Tis_variable_str(ftype) > 0) {
            char *s = NULL;
            if (H5Tset_size(mtype, H5T_VARIABLE) >= 0 && H5Aread(attr, mtype, &s) >= 0 && s) {
                yes = strcmp(s, "bf16") == 0;
                H5free_memory(s);
            }
        } else {
            char buf[16] = "";
            if (H5Tget_size(ftype) < sizeof buf && H5Tset_size(mtype, sizeof buf) >= 0 &&
                H5Tset_strpad(mtype, H5T_STR_NULLTERM) >= 0 && H5Aread(attr, mtype, buf) >= 0)
                yes = strcmp(buf, "bf16") == 0;
        }
    }
    if (mtype >= 0) H5Tclose(mtype);
    if (ftype >= 0) H5Tclose(ftype);
    if (attr >= 0) H5Aclose(attr);
    return yes;
}

/* The dtype a dataset is read as, with the memory type that converts to it; -1 if not numeric. */
static int read_dtype(hid_t dset, hid_t *mem_type) {
    hid_t type = H5Dget_type(dset);
    if (type < 0) return -1;
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    bool is_unsigned = cls == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_NONE;
    H5Tclose(type);
    if (cls == H5T_FLOAT) {
        *mem_type = size == 8 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
        return size == 8 ? LN_F64 : LN_F32;
    }
    if (cls != H5T_INTEGER) return -1;
    if (size == 2 && is_unsigned && tagged_bf16(dset)) {
        *mem_type = H5T_NATIVE_UINT16;
        return LN_BF16;
    }
    *mem_type = H5T_NATIVE_INT32;
    return LN_I32;
}

int ln_h5_read_tensor(ln_h5_file file, const char *path, const char *name, ln_tensor **out) {
    quiet();
    *out = NULL;
    if (!ln_h5_has_dataset(file, name)) return ln_fail("%s: no dataset %s", path, name);
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT), space = dset >= 0 ? H5Dget_space(dset) : -1, mem_type = -1;
    int status = LN_ERR, ndim = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[H5S_MAX_RANK];
    int dtype = dset >= 0 ? read_dtype(dset, &mem_type) : -1;
    if (dset < 0 || ndim < 0) {
        ln_fail("%s: dataset %s cannot be read", path, name);
    } else if (ndim > LN_MAX_DIMS) {
        ln_fail("%s: dataset %s has %d dims (at most %d)", path, name, ndim, LN_MAX_DIMS);
    } else if (dtype < 0) {
        ln_fail("%s: dataset %s is not numeric", path, name);
    } else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        int64_t shape[LN_MAX_DIMS];
        for (int i = 0; i < ndim; i++) shape[i] = (int64_t)dims[i];
        ln_tensor *t = ln_tensor_new((ln_dtype)dtype, LN_CPU, ndim, shape);
        if (t && (t->numel == 0 || H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0)) {
            ln_tensor_set_name(t, name);
            *out = t;
            status = LN_OK;
        } else if (t) {
            ln_tensor_free(t);
            ln_fail("%s: dataset %s cannot be read", path, name);
        }
    }
    if (space >= 0) H5Sclose(space);
    if (dset >= 0) H5Dclose(dset);
    return status;
}

int ln_h5_read_scalar(ln_h5_file file, const char *path, const char *name, double *value, bool *found) {
    quiet();
    *found = false;
    hid_t type = -1, space = -1;
    if (H5Aexists(file, name) > 0) {
        hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
        type = attr >= 0 ? H5Aget_type(attr) : -1;
        space = attr >= 0 ? H5Aget_space(attr) : -1;
        H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
        bool ok = (cls == H5T_FLOAT || cls == H5T_INTEGER) && H5Sget_simple_extent_npoints(space) == 1 &&
                  H5Aread(attr, H5T_NATIVE_DOUBLE, value) >= 0;
        if (type >= 0) H5Tclose(type);
        if (space >= 0) H5Sclose(space);
        if (attr >= 0) H5Aclose(attr);
        if (!ok) return ln_fail("%s: attribute %s is not a single number", path, name);
        *found = true;
        return LN_OK;
    }
    if (!ln_h5_has_dataset(file, name)) return LN_OK;
    ln_tensor *t;
    if (ln_h5_read_tensor(file, path, name, &t)) return LN_ERR;
    if (t->numel != 1) {
        char s[96];
        ln_fail("%s: dataset %s %s should hold a single number", path, name, ln_shape_str(t, s, sizeof s));
        ln_tensor_free(t);
        return LN_ERR;
    }
    *value = ln_get(t, 0);
    *found = true;
    ln_tensor_free(t);
    return LN_OK;
}

int ln_h5_write_tensor(ln_h5_file file, const char *path, const char *name, const ln_tensor *t) {
    quiet();
    if (t->device != LN_CPU) return ln_fail("%s: %s is on %s; copy it to the host first", path, name, ln_device_name(t->device));
    const ln_tensor *src = t;
    ln_tensor *wide = NULL;
    if (t->dtype == LN_BF16) { /* float32 holds every bf16 exactly, and every reader knows it */
        wide = ln_tensor_new(LN_F32, LN_CPU, t->ndim, t->shape);
        if (!wide || ln_tensor_copy(wide, t)) {
            ln_tensor_free(wide);
            return LN_ERR;
        }
        src = wide;
    }
    hid_t ftype, mtype;
    switch (src->dtype) {
    case LN_F32: ftype = H5T_IEEE_F32LE, mtype = H5T_NATIVE_FLOAT; break;
    case LN_F64: ftype = H5T_IEEE_F64LE, mtype = H5T_NATIVE_DOUBLE; break;
    case LN_I32: ftype = H5T_STD_I32LE, mtype = H5T_NATIVE_INT32; break;
    default: ln_tensor_free(wide); return ln_fail("%s: %s is %s, which op files do not store", path, name, ln_dtype_name(t->dtype));
    }
    hsize_t dims[LN_MAX_DIMS];
    for (int i = 0; i < src->ndim; i++) dims[i] = (hsize_t)src->shape[i];
    hid_t space = src->ndim ? H5Screate_simple(src->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dset = space >= 0 ? H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int status = LN_OK;
    if (dset < 0 || (src->numel > 0 && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src->data) < 0))
        status = ln_fail("%s: cannot write dataset %s", path, name);
    if (dset >= 0) H5Dclose(dset);
    if (space >= 0) H5Sclose(space);
    ln_tensor_free(wide);
    return status;
}
