/* The loss family (autograd/ops/loss/): fused cross-entropy, cross_entropy.c and .cu.
 *
 * cross_entropy: logits [..., V], targets i32 [...] (-1 = ignored) -> mean over the counted rows
 * of lse(row) - row[target]. Fused: the forward keeps only each row's log-sum-exp; the backward
 * rebuilds softmax from logits and lse, so [rows, V] probabilities never outlive the op.
 *   dlogits = (softmax - onehot(target)) * dloss / count   (zero for ignored rows)
 * With every target ignored the loss is 0 and so is the gradient (count is taken as 1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/ops.h"

/* saved slots */
enum { SAVED_LOGITS, SAVED_TARGETS, SAVED_LSE };


static int64_t counted(const int32_t *t, int64_t rows) {
    int64_t c = 0;
    for (int64_t r = 0; r < rows; r++) c += t[r] != -1;
    return c;
}

static int cross_entropy_forward_cpu(ln_node *n) {
    ln_tensor *lt = n->in[0], *tt = n->in[1];
    int64_t V = lt->shape[lt->ndim - 1], rows = tt->numel;
    const int32_t *target = tt->data;
    for (int64_t r = 0; r < rows; r++)
        if (target[r] < -1 || target[r] >= V)
            return ln_fail("cross_entropy: target %d at position %lld of %s is outside [0, %lld) (or -1 to ignore)",
                           (int)target[r], (long long)r, ln_tensor_label(tt, "targets"), (long long)V);
    /* lse at the precision the backward will subtract it from: f64 for f64 logits, else f32 */
    ln_tensor *lse_t = ln_arena_tensor(lt->dtype == LN_F64 ? LN_F64 : LN_F32, lt->device, tt->ndim, tt->shape);
    double *x = ln_f64_read(lt), *lse = ln_f64_zeros(rows);
    int status = LN_ERR;
    if (lse_t && x && lse) {
        double loss = 0;
        for (int64_t r = 0; r < rows; r++) {
            const double *row = x + r * V;
            double max = -INFINITY, total = 0;
            for (int64_t j = 0; j < V; j++) max = row[j] > max ? row[j] : max;
            for (int64_t j = 0; j < V; j++) total += exp(row[j] - max);
            lse[r] = max + log(total);
            if (target[r] != -1) loss += lse[r] - row[target[r]];
        }
        int64_t count = counted(target, rows);
        loss /= (double)(count ? count : 1);
        status = ln_f64_write(lse_t, lse);
        if (status == LN_OK) status = ln_f64_write(n->out[0], &loss);
        if (status == LN_OK) ln_node_save(n, lse_t); /* SAVED_LSE */
    }
    free(x);
    free(lse);
    return status;
}

static int cross_entropy_backward_cpu(ln_node *n) {
    ln_tensor *out = n->out[0];
    if (!out->grad || !n->in[0]->requires_grad) return LN_OK;
    ln_tensor *lt = ln_node_saved(n, SAVED_LOGITS), *tt = ln_node_saved(n, SAVED_TARGETS);
    ln_tensor *lse_t = ln_node_saved(n, SAVED_LSE);
    int64_t V = lt->shape[lt->ndim - 1], rows = tt->numel;
    const int32_t *target = tt->data;
    int64_t count = counted(target, rows);
    double scale = ln_get(out->grad, 0) / (double)(count ? count : 1);
    double *dx = ln_f64_read(lt), *lse = ln_f64_read(lse_t);
    ln_tensor *over = dx ? ln_grad_over_input(n, 0, lt) : NULL; /* logits read: may be overwritten */
    int status = LN_ERR;
    if (dx && lse) {
        for (int64_t r = 0; r < rows; r++) {
            double *row = dx + r * V;
            if (target[r] == -1) {
                memset(row, 0, (size_t)V * sizeof *row);
                continue;
            }
            for (int64_t j = 0; j < V; j++) row[j] = exp(row[j] - lse[r]) * scale;
            row[target[r]] -= scale;
        }
        status = over ? ln_f64_write(over, dx) : ln_f64_accum_grad(n->in[0], dx);
    }
    free(dx);
    free(lse);
    return status;
}

#ifdef LINNET_CUDA
int ln_cross_entropy_forward_cuda(ln_node *n);
int ln_cross_entropy_backward_cuda(ln_node *n);
#endif

static const ln_op cross_entropy_op = {
    .name = "cross_entropy",
    .forward = {[LN_CPU] = cross_entropy_forward_cpu LN_ON_CUDA(ln_cross_entropy_forward_cuda)},
    .backward = {[LN_CPU] = cross_entropy_backward_cpu LN_ON_CUDA(ln_cross_entropy_backward_cuda)},
};

ln_tensor *ln_cross_entropy(ln_tensor *logits, ln_tensor *targets) {
    if (!logits || !targets) return NULL;
    char sl[96], st[96];
    ln_shape_str(logits, sl, sizeof sl);
    ln_shape_str(targets, st, sizeof st);
    const char *nl = ln_tensor_label(logits, "logits"), *nt = ln_tensor_label(targets, "targets");
    if (logits->ndim < 1 || !ln_dtype_is_float(logits->dtype) || targets->dtype != LN_I32) {
        ln_fail("cross_entropy: need float %s [..., V] and i32 %s [...], got %s %s and %s %s", nl, nt,
                ln_dtype_name(logits->dtype), sl, ln_dtype_name(targets->dtype), st);
        return NULL;
    }
    bool fits = targets->ndim == logits->ndim - 1;
    for (int i = 0; fits && i < targets->ndim; i++) fits = targets->shape[i] == logits->shape[i];
    if (!fits) {
        ln_fail("cross_entropy: %s %s must be %s %s without its last dim", nt, st, nl, sl);
        return NULL;
    }
    ln_node *n = ln_node_begin(&cross_entropy_op, 2, (ln_tensor *[]){logits, targets});
    /* the loss is f32 (f64 for f64 checks) even for bf16 logits: a bf16 loss would be too coarse */
    ln_tensor *y = ln_node_output(n, logits->dtype == LN_F64 ? LN_F64 : LN_F32, 0, logits->shape); /* 0-dim */
    ln_node_save(n, logits);  /* SAVED_LOGITS */
    ln_node_save(n, targets); /* SAVED_TARGETS */
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
