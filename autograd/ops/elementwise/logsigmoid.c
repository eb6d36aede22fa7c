/* logsigmoid: y = s log(sigmoid(x)) = s (min(x, 0) - log1p(exp(-|x|))) (stable for large |x|);
 * dy/dx = s sigmoid(-x). The log-decay activation of the gated linear attention layers, whose
 * 1 / gate_logit_normalizer is the scale s (farg[0]; 1 for ln_logsigmoid): one pass each way
 * instead of a second op's. Saved: 0 = x. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

static int logsigmoid_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    if (!x) return LN_ERR;
    const double s = n->farg[0];
    for (int64_t i = 0; i < n->in[0]->numel; i++) x[i] = s * (fmin(x[i], 0.0) - log1p(exp(-fabs(x[i]))));
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int logsigmoid_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0);
    double *x = ln_f64_read(xt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (x && dy) {
        const double s = n->farg[0];
        for (int64_t i = 0; i < xt->numel; i++) dy[i] *= s / (1.0 + exp(x[i]));
        status = ln_f64_accum_grad(n->in[0], dy);
    }
    free(x);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_logsigmoid_forward_cuda(ln_node *n);
int ln_logsigmoid_backward_cuda(ln_node *n);
#endif

static const ln_op logsigmoid_op = {
    .name = "logsigmoid",
    .forward = {[LN_CPU] = logsigmoid_forward_cpu LN_ON_CUDA(ln_logsigmoid_forward_cuda)},
    .backward = {[LN_CPU] = logsigmoid_backward_cpu LN_ON_CUDA(ln_logsigmoid_backward_cuda)},
};

ln_tensor *ln_logsigmoid(ln_tensor *x) { return ln_logsigmoid_scaled(x, 1.0); }

ln_tensor *ln_logsigmoid_scaled(ln_tensor *x, double scale) {
    if (!x) return NULL;
    if (!ln_dtype_is_float(x->dtype)) {
        char sx[96];
        ln_fail("logsigmoid: %s %s is %s, not a float dtype", ln_tensor_label(x, "x"), ln_shape_str(x, sx, sizeof sx),
                ln_dtype_name(x->dtype));
        return NULL;
    }
    if (!isfinite(scale)) {
        ln_fail("logsigmoid: scale %g is not finite", scale);
        return NULL;
    }
    ln_node *n = ln_node_begin(&logsigmoid_op, 1, (ln_tensor *[]){x});
    if (n) n->farg[0] = scale;
    ln_tensor *y = n ? ln_node_output(n, x->dtype, x->ndim, x->shape) : NULL;
    ln_node_save(n, x);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
