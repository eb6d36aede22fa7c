/* softmax over the last dim: y = exp(x - max) / sum exp(x - max), row by row (the max shift keeps
 * exp from overflowing). Backward needs only y: dx = y * (dy - sum(dy * y)). */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"


static int softmax_forward_cpu(ln_node *n) {
    ln_tensor *x = n->in[0], *y = n->out[0];
    int64_t cols = x->shape[x->ndim - 1], rows = cols ? x->numel / cols : 0;
    double *v = ln_f64_read(x);
    if (!v) return LN_ERR;
    for (int64_t r = 0; r < rows; r++) {
        double *row = v + r * cols, max = -INFINITY, total = 0;
        for (int64_t j = 0; j < cols; j++) max = row[j] > max ? row[j] : max;
        for (int64_t j = 0; j < cols; j++) total += row[j] = exp(row[j] - max);
        for (int64_t j = 0; j < cols; j++) row[j] /= total;
    }
    int status = ln_f64_write(y, v);
    free(v);
    /* saved here, once computed, so a copying (offload) hook packs the values, not zeros */
    if (status == LN_OK) ln_node_save(n, y);
    return status;
}

static int softmax_backward_cpu(ln_node *n) {
    ln_tensor *yt = ln_node_saved(n, 0);
    int64_t cols = yt->shape[yt->ndim - 1], rows = cols ? yt->numel / cols : 0;
    double *y = ln_f64_read(yt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (y && dy) {
        for (int64_t r = 0; r < rows; r++) {
            double *yr = y + r * cols, *g = dy + r * cols, dot = 0;
            for (int64_t j = 0; j < cols; j++) dot += g[j] * yr[j];
            for (int64_t j = 0; j < cols; j++) g[j] = yr[j] * (g[j] - dot);
        }
        status = ln_f64_accum_grad(n->in[0], dy);
    }
    free(y);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_softmax_forward_cuda(ln_node *n);
int ln_softmax_backward_cuda(ln_node *n);
#endif

static const ln_op softmax_op = {
    .name = "softmax",
    .forward = {[LN_CPU] = softmax_forward_cpu LN_ON_CUDA(ln_softmax_forward_cuda)},
    .backward = {[LN_CPU] = softmax_backward_cpu LN_ON_CUDA(ln_softmax_backward_cuda)},
};

ln_tensor *ln_softmax(ln_tensor *x) {
    if (!x) return NULL;
    if (x->ndim < 1 || !ln_dtype_is_float(x->dtype)) {
        char sx[96];
        ln_fail("softmax: %s %s (%s) needs a last dim and a float dtype", ln_tensor_label(x, "x"),
                ln_shape_str(x, sx, sizeof sx), ln_dtype_name(x->dtype));
        return NULL;
    }
    ln_node *n = ln_node_begin(&softmax_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
