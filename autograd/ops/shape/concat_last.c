/* concat_last: a [..., Na] and b [..., Nb] side by side -> y [..., Na + Nb]; backward hands each
 * input its columns of dy. Nothing is saved: backward needs only the shapes. */
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

static int concat_last_forward_cpu(ln_node *n) {
    ln_tensor *at = n->in[0], *bt = n->in[1];
    int64_t Na = at->shape[at->ndim - 1], Nb = bt->shape[bt->ndim - 1], N = Na + Nb;
    double *a = ln_f64_read(at), *b = ln_f64_read(bt), *y = ln_f64_zeros(n->out[0]->numel);
    int status = LN_ERR;
    if (a && b && y) {
        for (int64_t i = 0; i < n->out[0]->numel; i++) {
            int64_t r = i / N, j = i % N;
            y[i] = j < Na ? a[r * Na + j] : b[r * Nb + j - Na];
        }
        status = ln_f64_write(n->out[0], y);
    }
    free(a), free(b), free(y);
    return status;
}

static int concat_last_backward_cpu(ln_node *n) {
    ln_tensor *at = n->in[0], *bt = n->in[1];
    int64_t Na = at->shape[at->ndim - 1], Nb = bt->shape[bt->ndim - 1], N = Na + Nb;
    double *dy = ln_f64_read_grad(n->out[0]), *da = ln_f64_zeros(at->numel), *db = ln_f64_zeros(bt->numel);
    int status = LN_ERR;
    if (dy && da && db) {
        for (int64_t i = 0; i < n->out[0]->numel; i++) {
            int64_t r = i / N, j = i % N;
            if (j < Na) da[r * Na + j] = dy[i];
            else db[r * Nb + j - Na] = dy[i];
        }
        status = ln_f64_accum_grad(at, da);
        if (status == LN_OK) status = ln_f64_accum_grad(bt, db);
    }
    free(dy), free(da), free(db);
    return status;
}

#ifdef LINNET_CUDA
int ln_concat_last_forward_cuda(ln_node *n);
int ln_concat_last_backward_cuda(ln_node *n);
#endif

static const ln_op concat_last_op = {
    .name = "concat_last",
    .forward = {[LN_CPU] = concat_last_forward_cpu LN_ON_CUDA(ln_concat_last_forward_cuda)},
    .backward = {[LN_CPU] = concat_last_backward_cpu LN_ON_CUDA(ln_concat_last_backward_cuda)},
};

ln_tensor *ln_concat_last(ln_tensor *a, ln_tensor *b) {
    if (!a || !b) return NULL; /* an earlier op failed: its message stands */
    char sa[96], sb[96];
    ln_shape_str(a, sa, sizeof sa);
    ln_shape_str(b, sb, sizeof sb);
    bool fits = a->ndim >= 1 && b->ndim == a->ndim;
    for (int i = 0; fits && i < a->ndim - 1; i++) fits = b->shape[i] == a->shape[i];
    if (!ln_dtype_is_float(a->dtype) || b->dtype != a->dtype || !fits) {
        ln_fail("concat_last: %s %s %s and %s %s %s: need one float dtype and the same leading dims",
                ln_tensor_label(a, "a"), sa, ln_dtype_name(a->dtype), ln_tensor_label(b, "b"), sb,
                ln_dtype_name(b->dtype));
        return NULL;
    }
    int64_t shape[LN_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[a->ndim - 1] += b->shape[b->ndim - 1];
    ln_node *n = ln_node_begin(&concat_last_op, 2, (ln_tensor *[]){a, b});
    ln_tensor *y = ln_node_output(n, a->dtype, a->ndim, shape);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
