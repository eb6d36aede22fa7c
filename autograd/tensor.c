#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "memory.h"
#ifdef LINNET_CUDA
#include "cuda/cuda_context.h"
#endif

size_t ln_dtype_size(ln_dtype dtype) {
    static const size_t sizes[LN_DTYPE_COUNT] = {4, 8, 2, 4, 1, 1};
    return sizes[dtype];
}

const char *ln_dtype_name(ln_dtype dtype) {
    static const char *names[LN_DTYPE_COUNT] = {"f32", "f64", "bf16", "i32", "i8", "u8"};
    return names[dtype];
}

bool ln_dtype_is_float(ln_dtype dtype) { return dtype == LN_F32 || dtype == LN_F64 || dtype == LN_BF16; }

const char *ln_device_name(ln_device device) { return device == LN_CPU ? "cpu" : "cuda"; }

int64_t ln_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static ln_tensor *tensor_alloc(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape, bool zero) {
    if (ndim < 0 || ndim > LN_MAX_DIMS) {
        ln_fail("tensor: %d dimensions (at most %d)", ndim, LN_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            ln_fail("tensor: negative extent %lld in dimension %d", (long long)shape[i], i);
            return NULL;
        }
    ln_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        ln_fail("tensor: out of host memory");
        return NULL;
    }
    t->dtype = dtype;
    t->device = device;
    t->ndim = ndim;
    if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = ln_shape_numel(ndim, shape);
    t->owns_data = true;
    size_t bytes = (size_t)t->numel * ln_dtype_size(dtype);
    t->data = zero ? ln_device_alloc_zeroed(device, bytes ? bytes : 1) : ln_device_alloc(device, bytes ? bytes : 1);
    if (!t->data) {
        free(t);
        ln_fail_context("tensor of %zu bytes", bytes);
        return NULL;
    }
    return t;
}

ln_tensor *ln_tensor_new(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape) {
    return tensor_alloc(dtype, device, ndim, shape, true);
}

ln_tensor *ln_tensor_new_uninit(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape) {
    return tensor_alloc(dtype, device, ndim, shape, false);
}

ln_tensor *ln_tensor_new_like(const ln_tensor *t) { return ln_tensor_new(t->dtype, t->device, t->ndim, t->shape); }

void ln_tensor_free(ln_tensor *t) {
    if (!t) return;
    ln_tensor_free(t->grad);
    if (t->owns_data) ln_device_free(t->device, t->data);
    free(t);
}

void ln_tensor_zero_grad(ln_tensor *t) {
    if (t->grad) ln_device_memset0(t->device, t->grad->data, (size_t)t->numel * ln_dtype_size(t->dtype));
}

int ln_tensor_fill(ln_tensor *t, double value) {
    if (!ln_dtype_is_float(t->dtype))
        return ln_fail("fill: %s is %s, not a float dtype", ln_tensor_label(t, "tensor"), ln_dtype_name(t->dtype));
#ifdef LINNET_CUDA
    if (t->device == LN_CUDA) return ln_cuda_fill(t, value);
#endif
    for (int64_t i = 0; i < t->numel; i++) ln_set(t, i, value);
    return LN_OK;
}

void ln_tensor_set_name(ln_tensor *t, const char *name) { snprintf(t->name, sizeof t->name, "%s", name); }

const char *ln_tensor_label(const ln_tensor *t, const char *role) { return t->name[0] ? t->name : role; }

const char *ln_shape_str(const ln_tensor *t, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

bool ln_same_shape(const ln_tensor *a, const ln_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

uint16_t ln_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if (isnan(f)) return (uint16_t)((bits >> 16) | 0x40); /* keep it a (quiet) NaN */
    bits += 0x7FFF + ((bits >> 16) & 1);                   /* round to nearest even */
    return (uint16_t)(bits >> 16);
}

float ln_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

double ln_get(const ln_tensor *t, int64_t i) {
    switch (t->dtype) {
    case LN_F32: return ((const float *)t->data)[i];
    case LN_F64: return ((const double *)t->data)[i];
    case LN_BF16: return ln_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case LN_I32: return ((const int32_t *)t->data)[i];
    case LN_I8: return ((const int8_t *)t->data)[i];
    case LN_U8: return ((const uint8_t *)t->data)[i];
    default: return NAN;
    }
}

void ln_set(ln_tensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case LN_F32: ((float *)t->data)[i] = (float)v; break;
    case LN_F64: ((double *)t->data)[i] = v; break;
    case LN_BF16: ((uint16_t *)t->data)[i] = ln_f32_to_bf16((float)v); break;
    case LN_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case LN_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case LN_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    default: break;
    }
}

int ln_tensor_copy(ln_tensor *dst, const ln_tensor *src) {
    if (dst->numel != src->numel) {
        char a[64], b[64];
        return ln_fail("copy: %s %s into %s %s", src->name, ln_shape_str(src, a, sizeof a), dst->name,
                       ln_shape_str(dst, b, sizeof b));
    }
    if (dst->device != LN_CPU || src->device != LN_CPU) {
        if (dst->dtype != src->dtype) return ln_fail("copy: dtype conversion across devices is not supported");
        return ln_device_copy(dst->device, dst->data, src->device, src->data,
                              (size_t)src->numel * ln_dtype_size(src->dtype));
    }
    if (dst->dtype == src->dtype) {
        memcpy(dst->data, src->data, (size_t)src->numel * ln_dtype_size(src->dtype));
        return LN_OK;
    }
    for (int64_t i = 0; i < src->numel; i++) ln_set(dst, i, ln_get(src, i));
    return LN_OK;
}

int ln_tensor_move(ln_tensor *t, ln_device device) {
    if (t->device == device) return LN_OK;
    if (!t->owns_data) return ln_fail("%s: a view cannot move devices", ln_tensor_label(t, "tensor"));
    size_t bytes = (size_t)t->numel * ln_dtype_size(t->dtype);
    void *data = ln_device_alloc_zeroed(device, bytes ? bytes : 1);
    if (!data) return ln_fail_context("moving %s to %s", ln_tensor_label(t, "tensor"), ln_device_name(device));
    if (ln_device_copy(device, data, t->device, t->data, bytes)) {
        ln_device_free(device, data);
        return LN_ERR;
    }
    ln_device_free(t->device, t->data);
    t->data = data;
    t->device = device;
    return t->grad ? ln_tensor_move(t->grad, device) : LN_OK;
}

double ln_item(const ln_tensor *t, int64_t i) {
    if (i < 0 || i >= t->numel) return NAN;
    if (t->device == LN_CPU) return ln_get(t, i);
    size_t size = ln_dtype_size(t->dtype);
    ln_tensor *one = ln_tensor_new(t->dtype, LN_CPU, 0, NULL);
    if (!one) return NAN;
    double v = ln_device_copy(LN_CPU, one->data, t->device, (const char *)t->data + (size_t)i * size, size) ? NAN
                                                                                                         : ln_get(one, 0);
    ln_tensor_free(one);
    return v;
}

/* ---- the double-precision view used by CPU reference kernels ---- */

double *ln_f64_zeros(int64_t n) {
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    if (!v) ln_fail("out of host memory for %lld doubles", (long long)n);
    return v;
}

double *ln_f64_read(const ln_tensor *t) {
    if (t->device != LN_CPU) {
        ln_fail("%s: a CPU kernel was handed a %s tensor", ln_tensor_label(t, "tensor"), ln_device_name(t->device));
        return NULL;
    }
    double *v = malloc((size_t)(t->numel > 0 ? t->numel : 1) * sizeof *v);
    if (!v) {
        ln_fail("out of host memory reading %s", t->name);
        return NULL;
    }
    if (t->dtype == LN_F64) {
        memcpy(v, t->data, (size_t)t->numel * sizeof *v);
    } else if (t->dtype == LN_F32) {
        const float *f = t->data;
        for (int64_t i = 0; i < t->numel; i++) v[i] = f[i];
    } else {
        for (int64_t i = 0; i < t->numel; i++) v[i] = ln_get(t, i);
    }
    return v;
}

double *ln_f64_read_grad(const ln_tensor *t) { return t->grad ? ln_f64_read(t->grad) : ln_f64_zeros(t->numel); }

int ln_f64_write(ln_tensor *t, const double *v) {
    if (!v) return LN_ERR;
    if (t->device != LN_CPU) return ln_fail("%s: a CPU kernel wrote a %s tensor", ln_tensor_label(t, "tensor"), ln_device_name(t->device));
    if (t->dtype == LN_F64) {
        memcpy(t->data, v, (size_t)t->numel * sizeof *v);
    } else if (t->dtype == LN_F32) {
        float *f = t->data;
        for (int64_t i = 0; i < t->numel; i++) f[i] = (float)v[i];
    } else {
        for (int64_t i = 0; i < t->numel; i++) ln_set(t, i, v[i]);
    }
    return LN_OK;
}

int ln_f64_accum_grad(ln_tensor *t, const double *dv) {
    if (!dv) return LN_ERR;
    if (!t->requires_grad) return LN_OK;
    if (t->device != LN_CPU) return ln_fail("%s: a CPU kernel accumulated into a %s gradient", ln_tensor_label(t, "tensor"), ln_device_name(t->device));
    ln_tensor *g = ln_grad_of(t);
    if (!g) return LN_ERR;
    if (g->dtype == LN_F64) {
        double *d = g->data;
        for (int64_t i = 0; i < g->numel; i++) d[i] += dv[i];
    } else if (g->dtype == LN_F32) {
        float *f = g->data;
        for (int64_t i = 0; i < g->numel; i++) f[i] = (float)((double)f[i] + dv[i]);
    } else {
        for (int64_t i = 0; i < g->numel; i++) ln_set(g, i, ln_get(g, i) + dv[i]);
    }
    return LN_OK;
}
