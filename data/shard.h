/* Token shards: a 64-byte little-endian header followed by zstd frames of packed tokens.
 * The byte-by-byte layout is in docs/data-format.md. Readers validate everything and never
 * crash on bad bytes: each failure is one line naming the file and what was wrong. */
#ifndef LN_SHARD_H
#define LN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define LN_SHARD_MAGIC "LNSHARD" /* 8 bytes with the terminating NUL */
#define LN_SHARD_VERSION 1
#define LN_SHARD_HEADER_BYTES 64
#define LN_SHARD_FRAME_TOKENS (1 << 20) /* at most this many tokens per zstd frame */
#define LN_SHARD_TOKENIZER_BYTES 16

typedef struct ln_shard_info {
    uint32_t version;
    uint32_t token_width; /* bytes per token: 1, 2 or 4 */
    uint32_t vocab_size;
    char tokenizer[LN_SHARD_TOKENIZER_BYTES]; /* NUL-terminated name, e.g. "bytes" */
    int64_t tokens;
    uint64_t checksum;      /* FNV-1a 64 over the uncompressed little-endian token bytes */
    uint64_t payload_bytes; /* compressed bytes after the header */
} ln_shard_info;

/* The smallest width (1, 2 or 4 bytes) that holds every token below vocab_size. */
uint32_t ln_shard_token_width(int64_t vocab_size);
/* FNV-1a 64, continuing from `h` (start with LN_FNV1A_OFFSET). */
#define LN_FNV1A_OFFSET 0xcbf29ce484222325ULL
uint64_t ln_fnv1a64(uint64_t h, const void *data, size_t n);

/* The index N when `name` is "<split>-N.lnshard" (N decimal digits), else -1. */
int64_t ln_shard_name_index(const char *name, const char *split);

/* Writes `n` tokens (each in [0, vocab_size)) to path.tmp, then renames it to path. */
int ln_shard_write(const char *path, const char *tokenizer, int64_t vocab_size, const int32_t *tokens, int64_t n);
/* Reads and validates the header and the file size only (no decompression). */
int ln_shard_read_info(const char *path, ln_shard_info *info);
/* Reads, decompresses and validates the whole shard; *tokens is malloc'd (free it). */
int ln_shard_read(const char *path, ln_shard_info *info, int32_t **tokens);

#endif
