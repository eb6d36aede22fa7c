#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

typedef enum { TOK_BYTES } tok_kind;

struct ln_tokenizer {
    tok_kind kind;
    const char *name;
    int vocab_size;
};

/* The table of known tokenizers; a new kind adds a row here and a case in encode/decode. */
static const struct {
    const char *name;
    tok_kind kind;
    int vocab_size;
} known[] = {
    {"bytes", TOK_BYTES, 256},
};
#define N_KNOWN (int)(sizeof known / sizeof known[0])

int ln_tokenizer_open(ln_tokenizer **out, const char *name) {
    *out = NULL;
    for (int i = 0; i < N_KNOWN; i++) {
        if (!name || strcmp(name, known[i].name) != 0) continue;
        ln_tokenizer *tok = malloc(sizeof *tok);
        if (!tok) return ln_fail("tokenizer %s: out of memory", name);
        *tok = (ln_tokenizer){known[i].kind, known[i].name, known[i].vocab_size};
        *out = tok;
        return LN_OK;
    }
    char list[256] = "";
    for (int i = 0; i < N_KNOWN; i++) {
        if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, known[i].name, sizeof list - strlen(list) - 1);
    }
    return ln_fail("unknown tokenizer '%s' (known: %s)", name ? name : "(null)", list);
}

const char *ln_tokenizer_name(const ln_tokenizer *tok) { return tok->name; }

int ln_tokenizer_vocab_size(const ln_tokenizer *tok) { return tok->vocab_size; }

int ln_tokenizer_encode(const ln_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    int32_t *out = malloc(len ? len * sizeof *out : 1);
    if (!out) return ln_fail("tokenizer %s: out of memory encoding %zu bytes", tok->name, len);
    const unsigned char *bytes = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++) out[i] = bytes[i];
    *ids = out;
    *n_ids = len;
    return LN_OK;
}

int ln_tokenizer_decode(const ln_tokenizer *tok, const int32_t *ids, size_t n_ids, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    char *out = malloc(n_ids + 1);
    if (!out) return ln_fail("tokenizer %s: out of memory decoding %zu tokens", tok->name, n_ids);
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            free(out);
            return ln_fail("tokenizer %s: token %d at position %zu is outside vocab [0, %d)", tok->name, ids[i], i,
                           tok->vocab_size);
        }
        out[i] = (char)(unsigned char)ids[i];
    }
    out[n_ids] = '\0';
    *text = out;
    *len = n_ids;
    return LN_OK;
}

void ln_tokenizer_free(ln_tokenizer *tok) { free(tok); }
