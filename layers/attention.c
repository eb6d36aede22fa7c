#include "attention.h"

#include <string.h>

#include "autograd/error.h"

static const ln_attention_kind *const kinds[] = {
    &ln_attention_softmax, &ln_attention_gla, &ln_attention_simple_gla, &ln_attention_linear, &ln_attention_none,
};

const ln_attention_kind *ln_attention_kind_find(const char *name) {
    size_t n = sizeof kinds / sizeof kinds[0];
    for (size_t i = 0; i < n; i++)
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    char known[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, kinds[i]->name, sizeof known - strlen(known) - 1);
    }
    ln_fail("unknown attention kind '%s' (known: %s)", name, known);
    return NULL;
}
