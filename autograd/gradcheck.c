#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "rng.h"

ln_tensor *ln_randn_f64(int ndim, const int64_t *shape, uint64_t seed) {
    ln_tensor *t = ln_tensor_new(LN_F64, LN_CPU, ndim, shape);
    if (!t) return NULL;
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->numel; i++) ((double *)t->data)[i] = ln_rng_normal(&rng);
    t->requires_grad = true;
    return t;
}

/* sum(w * f(inputs)) with gradients off */
static int weighted_output(ln_gradcheck_fn f, void *ctx, ln_tensor *const *inputs, const double *w, double *value) {
    bool was = ln_set_grad_enabled(false);
    ln_tensor *out = f(inputs, ctx);
    ln_set_grad_enabled(was);
    if (!out) return LN_ERR;
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += w[i] * ln_get(out, i);
    *value = s;
    return LN_OK;
}

int ln_gradcheck(ln_gradcheck_fn f, void *ctx, int n_inputs, ln_tensor *const *inputs, double eps, double tol) {
    ln_tape_clear();
    for (int i = 0; i < n_inputs; i++) {
        if (inputs[i]->dtype != LN_F64 && inputs[i]->requires_grad)
            return ln_fail("gradcheck: input %d is %s, not f64", i, ln_dtype_name(inputs[i]->dtype));
        ln_tensor_zero_grad(inputs[i]);
    }
    ln_tensor *out = f(inputs, ctx);
    if (!out) return ln_fail_context("gradcheck: forward");
    ln_tensor *w = ln_tensor_new(LN_F64, LN_CPU, out->ndim, out->shape);
    if (!w) return LN_ERR;
    ln_rng rng;
    ln_rng_seed(&rng, 1234);
    for (int64_t i = 0; i < w->numel; i++) ((double *)w->data)[i] = 2 * ln_rng_uniform(&rng) - 1;
    int status = ln_backward_from(out, w);
    for (int i = 0; i < n_inputs && status == LN_OK; i++) {
        ln_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        double *xd = x->data;
        for (int64_t j = 0; j < x->numel && status == LN_OK; j++) {
            double saved = xd[j], plus, minus;
            xd[j] = saved + eps;
            status = weighted_output(f, ctx, inputs, w->data, &plus);
            xd[j] = saved - eps;
            if (status == LN_OK) status = weighted_output(f, ctx, inputs, w->data, &minus);
            xd[j] = saved;
            if (status) break;
            double numeric = (plus - minus) / (2 * eps);
            double analytic = x->grad ? ((double *)x->grad->data)[j] : 0.0;
            if (!(fabs(analytic - numeric) <= tol * (1 + fabs(numeric))))
                status = ln_fail("gradcheck: input %d element %lld: analytic %.10g, numeric %.10g", i, (long long)j,
                                 analytic, numeric);
        }
    }
    ln_tensor_free(w);
    ln_tape_clear();
    return status;
}
