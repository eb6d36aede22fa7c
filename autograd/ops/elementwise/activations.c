/* Pointwise activations: SiLU, GELU (tanh approximation) and SwiGLU = silu(gate) * up. */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"
#include "silu.h"

/* ---- SiLU: y = x * sigmoid(x); dy/dx = s + x s (1 - s) ---- */

static int silu_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    if (!x) return LN_ERR;
    for (int64_t i = 0; i < n->in[0]->numel; i++) x[i] = silu_f64(x[i]);
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int silu_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0);
    double *x = ln_f64_read(xt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (x && dy) {
        for (int64_t i = 0; i < xt->numel; i++) dy[i] *= dsilu_f64(x[i]);
        status = ln_f64_accum_grad(n->in[0], dy);
    }
    free(x);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_silu_forward_cuda(ln_node *n);
int ln_silu_backward_cuda(ln_node *n);
#endif

static const ln_op silu_op = {
    .name = "silu",
    .forward = {[LN_CPU] = silu_forward_cpu LN_ON_CUDA(ln_silu_forward_cuda)},
    .backward = {[LN_CPU] = silu_backward_cpu LN_ON_CUDA(ln_silu_backward_cuda)},
};

ln_tensor *ln_silu(ln_tensor *x) {
    ln_node *n = ln_node_begin(&silu_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = n ? ln_node_output(n, x->dtype, x->ndim, x->shape) : NULL;
    ln_node_save(n, x);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}


/* ---- GELU, tanh approximation (GPT-2): y = 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3),
 * c = sqrt(2/pi); dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2) ---- */

#define GELU_C 0.7978845608028654 /* sqrt(2 / pi) */
#define GELU_A 0.044715

static int gelu_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    if (!x) return LN_ERR;
    for (int64_t i = 0; i < n->in[0]->numel; i++) {
        double v = x[i];
        x[i] = 0.5 * v * (1 + tanh(GELU_C * (v + GELU_A * v * v * v)));
    }
    int status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int gelu_backward_cpu(ln_node *n) {
    ln_tensor *xt = ln_node_saved(n, 0);
    double *x = ln_f64_read(xt), *dy = ln_f64_read_grad(n->out[0]);
    int status = LN_ERR;
    if (x && dy) {
        for (int64_t i = 0; i < xt->numel; i++) {
            double v = x[i], t = tanh(GELU_C * (v + GELU_A * v * v * v));
            dy[i] *= 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * v * v);
        }
        status = ln_f64_accum_grad(n->in[0], dy);
    }
    free(x);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_gelu_forward_cuda(ln_node *n);
int ln_gelu_backward_cuda(ln_node *n);
#endif

static const ln_op gelu_op = {
    .name = "gelu",
    .forward = {[LN_CPU] = gelu_forward_cpu LN_ON_CUDA(ln_gelu_forward_cuda)},
    .backward = {[LN_CPU] = gelu_backward_cpu LN_ON_CUDA(ln_gelu_backward_cuda)},
};

ln_tensor *ln_gelu(ln_tensor *x) {
    if (x && !ln_dtype_is_float(x->dtype)) {
        char sx[96];
        ln_fail("gelu: %s %s is %s, not a float dtype", ln_tensor_label(x, "x"), ln_shape_str(x, sx, sizeof sx),
                ln_dtype_name(x->dtype));
        return NULL;
    }
    ln_node *n = ln_node_begin(&gelu_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = n ? ln_node_output(n, x->dtype, x->ndim, x->shape) : NULL;
    ln_node_save(n, x);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}

/* ---- SwiGLU: y = silu(g) u; dg = dy u (s + g s (1 - s)), du = dy g s ---- */

static int swiglu_forward_cpu(ln_node *n) {
    double *g = ln_f64_read(n->in[0]), *u = ln_f64_read(n->in[1]);
    int status = LN_ERR;
    if (g && u) {
        for (int64_t i = 0; i < n->in[0]->numel; i++) g[i] = g[i] * sigmoid_f64(g[i]) * u[i];
        status = ln_f64_write(n->out[0], g);
    }
    free(g);
    free(u);
    return status;
}

static int swiglu_backward_cpu(ln_node *n) {
    ln_tensor *gt = ln_node_saved(n, 0), *ut = ln_node_saved(n, 1);
    double *g = ln_f64_read(gt), *u = ln_f64_read(ut), *dy = ln_f64_read_grad(n->out[0]);
    double *dg = ln_f64_zeros(gt->numel);
    int status = LN_ERR;
    if (g && u && dy && dg) {
        for (int64_t i = 0; i < gt->numel; i++) {
            double s = sigmoid_f64(g[i]);
            dg[i] = dy[i] * u[i] * (s + g[i] * s * (1 - s));
            dy[i] *= g[i] * s; /* becomes du */
        }
        status = ln_f64_accum_grad(n->in[0], dg);
        if (status == LN_OK) status = ln_f64_accum_grad(n->in[1], dy);
    }
    free(g);
    free(u);
    free(dy);
    free(dg);
    return status;
}

#ifdef LINNET_CUDA
int ln_swiglu_forward_cuda(ln_node *n);
int ln_swiglu_backward_cuda(ln_node *n);
#endif

static const ln_op swiglu_op = {
    .name = "swiglu",
    .forward = {[LN_CPU] = swiglu_forward_cpu LN_ON_CUDA(ln_swiglu_forward_cuda)},
    .backward = {[LN_CPU] = swiglu_backward_cpu LN_ON_CUDA(ln_swiglu_backward_cuda)},
};

ln_tensor *ln_swiglu(ln_tensor *gate, ln_tensor *up) {
    if (!gate || !up) return NULL;
    if (!ln_same_shape(gate, up) || !ln_dtype_is_float(gate->dtype) || !ln_dtype_is_float(up->dtype)) {
        char sg[96], su[96];
        ln_fail("swiglu: %s %s (%s) and %s %s (%s) need one shape and float dtypes", ln_tensor_label(gate, "gate"),
                ln_shape_str(gate, sg, sizeof sg), ln_dtype_name(gate->dtype), ln_tensor_label(up, "up"),
                ln_shape_str(up, su, sizeof su), ln_dtype_name(up->dtype));
        return NULL;
    }
    ln_node *n = ln_node_begin(&swiglu_op, 2, (ln_tensor *[]){gate, up});
    ln_tensor *y = ln_node_output(n, gate->dtype, gate->ndim, gate->shape);
    ln_node_save(n, gate);
    ln_node_save(n, up);
    return y && ln_node_run(n) == LN_OK ? y : NULL;
}
