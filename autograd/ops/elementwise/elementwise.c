/* The elementwise family (autograd/ops/elementwise/): elementwise.c (add, mul, scale: this file),
 * activations.c (silu, gelu, swiglu), logsigmoid.c, cast.c (between float dtypes), div_rows.c,
 * each .c the op and its CPU reference, its .cu the kernel; silu.h the sigmoid arithmetic that the
 * gated rmsnorm shares.
 *
 * Elementwise add and mul with trailing-dims broadcast of b (a bias, a gain), and scale.
 *
 * b has a's shape or a's trailing dims, so b's element for a's flat index i is i % numel(b);
 * b's gradient sums over the broadcast (leading) dims. The output takes a's dtype. */
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"


/* Checks b against a (shape or trailing dims, float dtypes); op names the caller in the message. */
static int check_broadcast(const char *op, const ln_tensor *a, const ln_tensor *b) {
    char sa[96], sb[96];
    ln_shape_str(a, sa, sizeof sa);
    ln_shape_str(b, sb, sizeof sb);
    if (!ln_dtype_is_float(a->dtype) || !ln_dtype_is_float(b->dtype))
        return ln_fail("%s: %s %s is %s and %s %s is %s: need float dtypes", op, ln_tensor_label(a, "a"), sa,
                       ln_dtype_name(a->dtype), ln_tensor_label(b, "b"), sb, ln_dtype_name(b->dtype));
    bool fits = b->ndim <= a->ndim;
    for (int i = 0; fits && i < b->ndim; i++) fits = b->shape[i] == a->shape[a->ndim - b->ndim + i];
    if (!fits)
        return ln_fail("%s: %s %s is neither the shape nor the trailing dims of %s %s", op, ln_tensor_label(b, "b"), sb,
                       ln_tensor_label(a, "a"), sa);
    return LN_OK;
}

/* ---- add: y = a + b ---- */

static int add_forward_cpu(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1];
    double *x = ln_f64_read(a), *bv = ln_f64_read(b);
    int status = LN_ERR;
    if (x && bv) {
        int64_t nb = b->numel;
        for (int64_t i = 0; i < a->numel; i++) x[i] += bv[i % nb];
        status = ln_f64_write(n->out[0], x);
    }
    free(x);
    free(bv);
    return status;
}

/* The gradient of a broadcast b: dy summed over the leading dims (into a fresh array). */
static double *reduce_to_b(const double *dy, int64_t n_a, int64_t n_b) {
    double *db = ln_f64_zeros(n_b);
    if (db)
        for (int64_t i = 0; i < n_a; i++) db[i % n_b] += dy[i];
    return db;
}

static int add_backward_cpu(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1];
    double *dy = ln_f64_read_grad(n->out[0]);
    if (!dy) return LN_ERR;
    int status = ln_f64_accum_grad(a, dy);
    if (status == LN_OK && b->requires_grad) {
        double *db = reduce_to_b(dy, a->numel, b->numel);
        status = ln_f64_accum_grad(b, db);
        free(db);
    }
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_add_forward_cuda(ln_node *n);
int ln_add_backward_cuda(ln_node *n);
#endif

static const ln_op add_op = {
    .name = "add",
    .forward = {[LN_CPU] = add_forward_cpu LN_ON_CUDA(ln_add_forward_cuda)},
    .backward = {[LN_CPU] = add_backward_cpu LN_ON_CUDA(ln_add_backward_cuda)},
};

ln_tensor *ln_add(ln_tensor *a, ln_tensor *b) {
    if (!a || !b || check_broadcast("add", a, b)) return NULL;
    ln_node *n = ln_node_begin(&add_op, 2, (ln_tensor *[]){a, b});
    ln_tensor *y = ln_node_output(n, a->dtype, a->ndim, a->shape);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}

/* ---- mul: y = a * b; da = dy * b, db = sum over leading dims of dy * a ---- */

static int mul_forward_cpu(ln_node *n) {
    ln_tensor *a = n->in[0], *b = n->in[1];
    double *x = ln_f64_read(a), *bv = ln_f64_read(b);
    int status = LN_ERR;
    if (x && bv) {
        int64_t nb = b->numel;
        for (int64_t i = 0; i < a->numel; i++) x[i] *= bv[i % nb];
        status = ln_f64_write(n->out[0], x);
    }
    free(x);
    free(bv);
    return status;
}

static int mul_backward_cpu(ln_node *n) {
    ln_tensor *at = ln_node_saved(n, 0), *bt = ln_node_saved(n, 1);
    double *av = ln_f64_read(at), *bv = ln_f64_read(bt), *dy = ln_f64_read_grad(n->out[0]);
    double *dx = ln_f64_zeros(at->numel);
    int status = LN_ERR;
    if (av && bv && dy && dx) {
        int64_t na = at->numel, nb = bt->numel;
        status = LN_OK;
        if (n->in[0]->requires_grad) {
            for (int64_t i = 0; i < na; i++) dx[i] = dy[i] * bv[i % nb];
            status = ln_f64_accum_grad(n->in[0], dx);
        }
        if (status == LN_OK && n->in[1]->requires_grad) {
            for (int64_t i = 0; i < na; i++) dx[i] = dy[i] * av[i];
            double *db = reduce_to_b(dx, na, nb);
            status = ln_f64_accum_grad(n->in[1], db);
            free(db);
        }
    }
    free(av);
    free(bv);
    free(dy);
    free(dx);
    return status;
}

#ifdef LINNET_CUDA
int ln_mul_forward_cuda(ln_node *n);
int ln_mul_backward_cuda(ln_node *n);
#endif

static const ln_op mul_op = {
    .name = "mul",
    .forward = {[LN_CPU] = mul_forward_cpu LN_ON_CUDA(ln_mul_forward_cuda)},
    .backward = {[LN_CPU] = mul_backward_cpu LN_ON_CUDA(ln_mul_backward_cuda)},
};

ln_tensor *ln_mul(ln_tensor *a, ln_tensor *b) {
    if (!a || !b || check_broadcast("mul", a, b)) return NULL;
    ln_node *n = ln_node_begin(&mul_op, 2, (ln_tensor *[]){a, b});
    ln_tensor *y = ln_node_output(n, a->dtype, a->ndim, a->shape);
    ln_node_save(n, a);
    ln_node_save(n, b);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}

/* ---- scale: y = s x (s in farg[0]); nothing to save ---- */

static int scale_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    if (!x) return LN_ERR;
    for (int64_t i = 0; i < n->in[0]->numel; i++) x[i] *= n->farg[0];
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int scale_backward_cpu(ln_node *n) {
    double *dy = ln_f64_read_grad(n->out[0]);
    if (!dy) return LN_ERR;
    for (int64_t i = 0; i < n->out[0]->numel; i++) dy[i] *= n->farg[0];
    int status = ln_f64_accum_grad(n->in[0], dy);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_scale_forward_cuda(ln_node *n);
int ln_scale_backward_cuda(ln_node *n);
#endif

static const ln_op scale_op = {
    .name = "scale",
    .forward = {[LN_CPU] = scale_forward_cpu LN_ON_CUDA(ln_scale_forward_cuda)},
    .backward = {[LN_CPU] = scale_backward_cpu LN_ON_CUDA(ln_scale_backward_cuda)},
};

ln_tensor *ln_scale(ln_tensor *x, double s) {
    if (!x) return NULL;
    if (!ln_dtype_is_float(x->dtype)) {
        char sx[96];
        ln_fail("scale: %s %s is %s, not a float dtype", ln_tensor_label(x, "x"), ln_shape_str(x, sx, sizeof sx),
                ln_dtype_name(x->dtype));
        return NULL;
    }
    ln_node *n = ln_node_begin(&scale_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    n->farg[0] = s;
    return ln_node_run(n) == LN_OK ? y : NULL;
}
