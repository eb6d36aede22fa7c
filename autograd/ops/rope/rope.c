/* The rope family (autograd/ops/rope/): rotary position embedding, rope.c and rope.cu.
 *
 * Rotary position embedding, the Llama / HF "rotate_half" convention: for x [B, T, H, D] the
 * pairs (i, i + D/2), i < D/2, are rotated by the angle (pos_offset + t) * theta^(-2i/D):
 *   y[i]       = x[i] cos - x[i + D/2] sin
 *   y[i + D/2] = x[i + D/2] cos + x[i] sin
 * A rotation is orthogonal, so backward is the inverse rotation of dy; nothing is saved.
 * Angles are computed in double (HF computes them in f32, which differs at large positions). */
#include <math.h>
#include <stdlib.h>

#include "autograd/error.h"
#include "autograd/ops.h"

/* cos/sin for position pos into cs[0 .. D/2) and sn[0 .. D/2) */
static void rope_angles(int64_t pos, int64_t D, double theta, double *cs, double *sn) {
    for (int64_t i = 0; i < D / 2; i++) {
        double angle = (double)pos * pow(theta, -2.0 * (double)i / (double)D);
        cs[i] = cos(angle);
        sn[i] = sin(angle);
    }
}

/* Rotates v in place by +angle (sign 1) or by -angle (sign -1, the inverse). */
static int rope_apply(ln_node *n, double *v, double sign) {
    const ln_tensor *shape_of = n->out[0];
    int64_t B = shape_of->shape[0], T = shape_of->shape[1], H = shape_of->shape[2], D = shape_of->shape[3];
    int64_t half = D / 2, pos_offset = n->iarg[0];
    double theta = n->farg[0];
    double *cs = ln_f64_zeros(half), *sn = ln_f64_zeros(half);
    if (!cs || !sn) {
        free(cs);
        free(sn);
        return LN_ERR;
    }
    /* t outermost so each position's cos/sin table is computed once */
    for (int64_t t = 0; t < T; t++) {
        rope_angles(pos_offset + t, D, theta, cs, sn);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                double *row = v + ((b * T + t) * H + h) * D;
                for (int64_t i = 0; i < half; i++) {
                    double a = row[i], c = row[i + half], s = sign * sn[i];
                    row[i] = a * cs[i] - c * s;
                    row[i + half] = c * cs[i] + a * s;
                }
            }
    }
    free(cs);
    free(sn);
    return LN_OK;
}

static int rope_forward_cpu(ln_node *n) {
    double *x = ln_f64_read(n->in[0]);
    int status = x ? rope_apply(n, x, 1.0) : LN_ERR;
    if (status == LN_OK) status = ln_f64_write(n->out[0], x);
    free(x);
    return status;
}

static int rope_backward_cpu(ln_node *n) {
    double *dy = ln_f64_read_grad(n->out[0]);
    int status = dy ? rope_apply(n, dy, -1.0) : LN_ERR;
    if (status == LN_OK) status = ln_f64_accum_grad(n->in[0], dy);
    free(dy);
    return status;
}

#ifdef LINNET_CUDA
int ln_rope_forward_cuda(ln_node *n);
int ln_rope_backward_cuda(ln_node *n);
#endif

static const ln_op rope_op = {
    .name = "rope",
    .forward = {[LN_CPU] = rope_forward_cpu LN_ON_CUDA(ln_rope_forward_cuda)},
    .backward = {[LN_CPU] = rope_backward_cpu LN_ON_CUDA(ln_rope_backward_cuda)},
};

ln_tensor *ln_rope(ln_tensor *x, double theta, int64_t pos_offset) {
    if (!x) return NULL; /* an earlier op failed: its message stands */
    const char *name = x->name[0] ? x->name : "x";
    char xs[96];
    ln_shape_str(x, xs, sizeof xs);
    if (!ln_dtype_is_float(x->dtype)) {
        ln_fail("rope: %s %s is %s, not floating point", name, xs, ln_dtype_name(x->dtype));
        return NULL;
    }
    if (x->ndim != 4 || x->shape[3] % 2 != 0) {
        ln_fail("rope: %s %s must be [B, T, H, D] with D even", name, xs);
        return NULL;
    }
    if (!(theta > 0) || !isfinite(theta)) {
        ln_fail("rope: theta %g must be finite and > 0 (%s %s)", theta, name, xs);
        return NULL;
    }
    ln_node *n = ln_node_begin(&rope_op, 1, (ln_tensor *[]){x});
    ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    n->farg[0] = theta;
    n->iarg[0] = pos_offset;
    return ln_node_run(n) == LN_OK ? y : NULL;
}
