/* The process-wide choice of GPU attention kernel (see ln_attention_impl in ops.h). */
#include <string.h>

#include "autograd/error.h"
#include "autograd/ops.h"

static ln_attention_impl current_impl = LN_ATTN_AUTO;

void ln_set_attention_impl(ln_attention_impl impl) { current_impl = impl; }

ln_attention_impl ln_get_attention_impl(void) { return current_impl; }

int ln_attention_impl_parse(const char *name, const char *what, ln_attention_impl *impl) {
    static const char *const names[] = {"auto", "own", "cudnn"};
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) {
            *impl = (ln_attention_impl)i;
            return LN_OK;
        }
    return ln_fail("%s: attention_impl '%s' is not one of auto, own, cudnn", what, name ? name : "(null)");
}
