/* The dense linear kind: y = x W^T (+ b) with W [out, in] a plain weight, read through autocast
 * (bf16 working copy of the fp32 master when train.dtype is bf16). Decayed; the bias is not. */
#include "autograd/autocast.h"
#include "autograd/error.h"
#include "layers/linear.h"

static int dense_create(ln_linear *l, ln_params *params, const char *prefix) {
    const ln_linear_spec *s = &l->spec;
    l->weight = ln_params_add(params, prefix, s->weight, 2, (int64_t[]){s->out, s->in}, s->init, true);
    if (!l->weight) return LN_ERR;
    if (s->bias && !(l->bias = ln_params_add(params, prefix, s->bias, 1, (int64_t[]){s->out}, LN_INIT_ZEROS, false)))
        return LN_ERR;
    return LN_OK;
}

static ln_tensor *dense_forward(const ln_linear *l, ln_tensor *x) {
    ln_tensor *y = ln_matmul(x, ln_weight(l->weight), false, true);
    return l->bias ? ln_add(y, ln_weight(l->bias)) : y;
}

const ln_linear_kind ln_linear_dense = {
    .name = "dense",
    .create = dense_create,
    .forward = dense_forward,
};
