/* Tokenizers turn text into token ids and back. "bytes" (vocab 256: one token per byte) is the
 * first; others (tokenizer.json via cJSON) add a kind here. */
#ifndef LN_TOKENIZER_H
#define LN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ln_tokenizer ln_tokenizer;

int ln_tokenizer_open(ln_tokenizer **out, const char *name);
const char *ln_tokenizer_name(const ln_tokenizer *tok);
int ln_tokenizer_vocab_size(const ln_tokenizer *tok);
int ln_tokenizer_encode(const ln_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n_ids);
/* Malloc'd, NUL-terminated. */
int ln_tokenizer_decode(const ln_tokenizer *tok, const int32_t *ids, size_t n_ids, char **text, size_t *len);
void ln_tokenizer_free(ln_tokenizer *tok);

#endif
