/* The loader streams token shards (data/shard.h) of one split ("train" or "val") from a
 * directory and hands out sequences of seq_len + 1 tokens (inputs and next-token targets).
 *
 * It yields one global stream of sequences whose order depends only on the seed: every rank opens
 * the same stream and the trainer takes its slice of each batch (ln_loader_skip for the others'
 * sequences), so the order never depends on the number of ranks. Only one shard is decompressed
 * in memory at a time. With shuffle, each epoch visits the shards in a seeded order and each
 * shard's windows in a seeded order; without, both in file order (validation). */
#ifndef LN_LOADER_H
#define LN_LOADER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ln_loader ln_loader;

/* Where the stream stands; stored in checkpoints as int64[4]. */
typedef struct ln_loader_cursor {
    int64_t epoch;     /* passes over the split completed */
    int64_t shard;     /* position in this epoch's shard order */
    int64_t window;    /* position in this shard's window order */
    int64_t sequences; /* sequences handed out (or skipped) since the start */
} ln_loader_cursor;

int ln_loader_open(ln_loader **out, const char *dir, const char *split, int seq_len, uint64_t seed, bool shuffle);
int ln_loader_vocab_size(const ln_loader *l);
const char *ln_loader_tokenizer(const ln_loader *l);
/* Sequences in one pass over the split (windows over all shards). */
int64_t ln_loader_sequences_per_epoch(const ln_loader *l);
/* The next `count` sequences: inputs and targets are [count, seq_len] i32, targets shifted by one. */
int ln_loader_next(ln_loader *l, int count, int32_t *inputs, int32_t *targets);
/* Advances past `count` sequences without copying them. */
int ln_loader_skip(ln_loader *l, int count);
ln_loader_cursor ln_loader_get_cursor(const ln_loader *l);
int ln_loader_set_cursor(ln_loader *l, ln_loader_cursor cursor);
void ln_loader_close(ln_loader *l);

#endif
