/* `linnet prep`: text files -> token shards. The files are tokenized and concatenated in the
 * order given; the last val_fraction of the tokens goes to val-NNNNN.lnshard, the rest to
 * train-NNNNN.lnshard, each shard at most shard_tokens tokens. Prints nothing. */
#ifndef LN_PREP_H
#define LN_PREP_H

#include <stdint.h>

typedef struct ln_prep_summary {
    int64_t tokens;       /* all tokens written */
    int64_t train_tokens;
    int64_t val_tokens;
    int train_shards;
    int val_shards;
    int vocab_size;
} ln_prep_summary;

int ln_prep(const char *out_dir, const char *tokenizer, int n_files, char *const *files, double val_fraction,
            int64_t shard_tokens);
/* As ln_prep, and fills *summary (may be NULL) for the caller to print. */
int ln_prep_ex(const char *out_dir, const char *tokenizer, int n_files, char *const *files, double val_fraction,
               int64_t shard_tokens, ln_prep_summary *summary);

#endif
