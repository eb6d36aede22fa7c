// reshape on the GPU: the forward is a view (shared with the CPU record); backward adds dy into dx.
#include "autograd/cuda/cuda_check.cuh"

extern "C" int ln_reshape_backward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    if (!x->requires_grad || !y->grad) return LN_OK;
    if (ln_grad_adopt(x, y->grad)) return LN_OK; // dx is dy: no copy
    ln_tensor *dx = ln_grad_of(x);
    return dx ? ln_cuda_add_into(dx, y->grad) : LN_ERR;
}
