/* The embedding family (autograd/ops/embedding/): token embedding lookup, embedding.c and .cu.
 *
 * embedding: weight [V, D], ids i32 [...] -> [..., D], row ids[i] of weight at position i.
 * Backward scatter-adds rows of dy into weight's gradient (repeated ids add up). */
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/ops.h"


static int embedding_forward_cpu(ln_node *n) {
    ln_tensor *w = n->in[0], *ids = n->in[1], *y = n->out[0];
    int64_t V = w->shape[0], D = w->shape[1];
    const int32_t *id = ids->data;
    size_t row_bytes = (size_t)D * ln_dtype_size(w->dtype);
    for (int64_t i = 0; i < ids->numel; i++) {
        if (id[i] < 0 || id[i] >= V)
            return ln_fail("embedding: id %d at position %lld of %s is outside [0, %lld) (V = %lld)", (int)id[i],
                           (long long)i, ln_tensor_label(ids, "ids"), (long long)V, (long long)V);
        /* the output has weight's dtype: a gather is a plain row copy */
        memcpy((char *)y->data + (size_t)i * row_bytes, (const char *)w->data + (size_t)id[i] * row_bytes, row_bytes);
    }
    return LN_OK;
}

static int embedding_backward_cpu(ln_node *n) {
    ln_tensor *w = n->in[0], *y = n->out[0];
    if (!w->requires_grad) return LN_OK;
    ln_tensor *ids = ln_node_saved(n, 0);
    int64_t D = w->shape[1];
    const int32_t *id = ids->data;
    ln_tensor *g = ln_grad_of(w);
    double *dy = ln_f64_read_grad(y);
    if (!g || !dy) {
        free(dy);
        return LN_ERR;
    }
    /* Only the touched rows change: a [V, D] double copy per step would dwarf the batch for a
     * large vocabulary, so accumulate in place (in double, then rounded to the grad's dtype). */
    for (int64_t i = 0; i < ids->numel; i++)
        for (int64_t d = 0; d < D; d++) {
            int64_t k = (int64_t)id[i] * D + d;
            ln_set(g, k, ln_get(g, k) + dy[i * D + d]);
        }
    free(dy);
    return LN_OK;
}

#ifdef LINNET_CUDA
int ln_embedding_forward_cuda(ln_node *n);
int ln_embedding_backward_cuda(ln_node *n);
#endif

static const ln_op embedding_op = {
    .name = "embedding",
    .forward = {[LN_CPU] = embedding_forward_cpu LN_ON_CUDA(ln_embedding_forward_cuda)},
    .backward = {[LN_CPU] = embedding_backward_cpu LN_ON_CUDA(ln_embedding_backward_cuda)},
};

ln_tensor *ln_embedding(ln_tensor *weight, ln_tensor *ids) {
    if (!weight || !ids) return NULL;
    char sw[96], si[96];
    ln_shape_str(weight, sw, sizeof sw);
    ln_shape_str(ids, si, sizeof si);
    if (weight->ndim != 2 || !ln_dtype_is_float(weight->dtype)) {
        ln_fail("embedding: %s %s (%s) must be a 2-D float [V, D] table", ln_tensor_label(weight, "weight"), sw,
                ln_dtype_name(weight->dtype));
        return NULL;
    }
    if (ids->dtype != LN_I32 || ids->ndim >= LN_MAX_DIMS) {
        ln_fail("embedding: %s %s (%s) must be i32 with at most %d dims", ln_tensor_label(ids, "ids"), si,
                ln_dtype_name(ids->dtype), LN_MAX_DIMS - 1);
        return NULL;
    }
    int64_t shape[LN_MAX_DIMS];
    memcpy(shape, ids->shape, (size_t)ids->ndim * sizeof *shape);
    shape[ids->ndim] = weight->shape[1];
    ln_node *n = ln_node_begin(&embedding_op, 2, (ln_tensor *[]){weight, ids});
    ln_tensor *y = ln_node_output(n, weight->dtype, ids->ndim + 1, shape);
    ln_node_save(n, ids);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
