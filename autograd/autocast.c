#include "autograd/autocast.h"

static ln_dtype compute = LN_F32;

ln_dtype ln_set_autocast(ln_dtype dtype) {
    ln_dtype previous = compute;
    compute = dtype;
    return previous;
}

ln_dtype ln_autocast(void) { return compute; }

ln_tensor *ln_weight(ln_tensor *w) { return ln_cast(w, compute); }
