/* Tensors: a dtype, a device, a shape and contiguous row-major storage.
 *
 * Ownership is simple on purpose. A tensor made by ln_tensor_new belongs to the caller (model
 * parameters, batches) and is released by ln_tensor_free. A tensor made by an op belongs to the
 * tape's arena and is released by ln_tape_clear, together with every gradient of such tensors. */
#ifndef LN_TENSOR_H
#define LN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LN_F32, LN_F64, LN_BF16, LN_I32, LN_I8, LN_U8, LN_DTYPE_COUNT } ln_dtype;
typedef enum { LN_CPU, LN_CUDA, LN_DEVICE_COUNT } ln_device;

#define LN_MAX_DIMS 6

typedef struct ln_tensor {
    ln_dtype dtype;
    ln_device device;
    int ndim;
    int64_t shape[LN_MAX_DIMS];
    int64_t numel;
    void *data;
    bool owns_data;       /* false for views (reshape) that alias another tensor's storage */
    bool in_arena;        /* made by an op: released by ln_tape_clear */
    bool requires_grad;
    struct ln_tensor *grad; /* same dtype/shape; made on first accumulation */
    int pending_readers;  /* in a hooked ln_backward: recorded nodes reading it whose backward is still to run */
    int saved_count;      /* op results: how many nodes saved it for their backward */
    bool aliased;         /* op results: a view shares its storage (or it is one) */
    char name[64];
} ln_tensor;

size_t ln_dtype_size(ln_dtype dtype);
const char *ln_dtype_name(ln_dtype dtype);
bool ln_dtype_is_float(ln_dtype dtype);
const char *ln_device_name(ln_device device);

/* A caller-owned tensor, zero-filled. Returns NULL (message set) on bad shape or no memory. */
ln_tensor *ln_tensor_new(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape);
ln_tensor *ln_tensor_new_like(const ln_tensor *t);
/* As ln_tensor_new, but on the GPU the contents are undefined (no fill pass): for op outputs,
 * every element of which the kernel writes (the GPU tests poison outputs to prove it). */
ln_tensor *ln_tensor_new_uninit(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape);
void ln_tensor_free(ln_tensor *t);
/* Sets the gradient to zero (keeping its buffer). */
void ln_tensor_zero_grad(ln_tensor *t);
/* Sets every element to value, on t's device (a float dtype; on the GPU, f32 or bf16). */
int ln_tensor_fill(ln_tensor *t, double value);
void ln_tensor_set_name(ln_tensor *t, const char *name);
/* The tensor's name for messages, or `role` ("q", "weight") when it has none. */
const char *ln_tensor_label(const ln_tensor *t, const char *role);

/* "[2, 3, 4]" into buf; returns buf. */
const char *ln_shape_str(const ln_tensor *t, char *buf, size_t len);
bool ln_same_shape(const ln_tensor *a, const ln_tensor *b);
int64_t ln_shape_numel(int ndim, const int64_t *shape);

/* Element access in double, whatever the storage dtype (CPU tensors). */
double ln_get(const ln_tensor *t, int64_t i);
void ln_set(ln_tensor *t, int64_t i, double v);
int ln_tensor_copy(ln_tensor *dst, const ln_tensor *src); /* same numel; converts dtype */
/* Moves t's storage (and its gradient's) to `device`, keeping the tensor itself (and pointers to it). */
int ln_tensor_move(ln_tensor *t, ln_device device);
/* Element i as a double from any device (a GPU read waits for the stream); NAN on failure. */
double ln_item(const ln_tensor *t, int64_t i);

uint16_t ln_f32_to_bf16(float f);
float ln_bf16_to_f32(uint16_t b);

/* The CPU reference computes in double. These move a tensor's values in and out of a freshly
 * malloc'd double array (the caller frees it), converting from f32/bf16/f64 storage. */
double *ln_f64_read(const ln_tensor *t);
double *ln_f64_read_grad(const ln_tensor *t);   /* t's gradient, zeros when it has none */
double *ln_f64_zeros(int64_t n);
int ln_f64_write(ln_tensor *t, const double *v);
/* t->grad += dv, when t requires a gradient (no-op otherwise). */
int ln_f64_accum_grad(ln_tensor *t, const double *dv);
/* The gradient tensor of t, made (zero) if absent. */
ln_tensor *ln_grad_of(ln_tensor *t);
/* In a backward: lets t's gradient be g's storage, with no copy, when t has none yet and is an
 * op's result (arena) of g's dtype, device and size. For a node whose input gradient equals its
 * output gradient (reshape, add): the output's gradient is final once the node's backward runs, so
 * its buffer can carry on as the input's. Returns true when it did; false means accumulate. */
bool ln_grad_adopt(ln_tensor *t, ln_tensor *g);
/* t's gradient for a kernel that writes every element: an existing one (*accumulate = true: add
 * into it), or a new one left unfilled (*accumulate = false: store, no zero-fill pass). */
ln_tensor *ln_grad_for_write(ln_tensor *t, bool *accumulate);

#endif
