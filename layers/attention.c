#include "attention.h"

#include "layers/kind_table.h"

static const ln_attention_kind *const kinds[] = {
    &ln_attention_softmax, &ln_attention_gla, &ln_attention_simple_gla, &ln_attention_linear, &ln_attention_none,
};

const ln_attention_kind *ln_attention_kind_find(const char *name) {
    return ln_kind_find((const void *const *)kinds, (int)(sizeof kinds / sizeof kinds[0]), name, "attention kind");
}
