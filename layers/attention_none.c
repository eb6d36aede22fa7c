/* No token mixing: the attention sublayer adds zeros, leaving an MLP-only stack. The baseline of
 * tests/test_mqar.c (what a model learns without looking at other tokens). */
#include "autograd/error.h"
#include "layers/attention.h"

static char no_state; /* create must return non-NULL */

static void *none_create(const ln_linear_site *site) { return &no_state; }

/* x * 0 keeps x's shape, dtype and device, and sends no gradient back */
static ln_tensor *none_forward(void *state, ln_tensor *x) { return ln_scale(x, 0.0); }

static void none_destroy(void *state) {}

const ln_attention_kind ln_attention_none = {
    .name = "none",
    .create = none_create,
    .forward = none_forward,
    .destroy = none_destroy,
};
