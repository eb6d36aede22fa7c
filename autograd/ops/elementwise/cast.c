/* cast: the same values in another float dtype (f32 master weights -> bf16 working copies);
 * backward converts the gradient back and adds it to the source's. */
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

static int cast_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int cast_backward_cpu(ln_node *n) {
    double *dy = ln_f64_read_grad(n->out[0]);
    int status = ln_f64_accum_grad(n->in[0], dy);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_cast_forward_cuda(ln_node *n);
int ln_cast_backward_cuda(ln_node *n);
#endif

static const ln_op cast_op = {
    .name = "cast",
    .forward = {[LN_CPU] = cast_forward_cpu LN_ON_CUDA(ln_cast_forward_cuda)},
    .backward = {[LN_CPU] = cast_backward_cpu LN_ON_CUDA(ln_cast_backward_cuda)},
};

ln_tensor *ln_cast(ln_tensor *x, ln_dtype dtype) {
    if (x && (!ln_dtype_is_float(x->dtype) || !ln_dtype_is_float(dtype))) {
        ln_fail("cast: %s is %s; only float dtypes cast", ln_tensor_label(x, "x"), ln_dtype_name(x->dtype));
        return NULL;
    }
    if (x && x->dtype == dtype) return x;
    ln_node *n = ln_node_begin(&cast_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = n ? ln_node_output(n, dtype, x->ndim, x->shape) : NULL;
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
