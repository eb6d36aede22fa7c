#include "data/shard.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "autograd/error.h"

/* Header offsets (docs/data-format.md). */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 8,
    OFF_WIDTH = 12,
    OFF_VOCAB = 16,
    OFF_TOKENIZER = 20,
    OFF_TOKENS = 36,
    OFF_CHECKSUM = 44,
    OFF_PAYLOAD = 52,
    OFF_RESERVED = 60,
};

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint32_t ln_shard_token_width(int64_t vocab_size) {
    if (vocab_size <= 256) return 1;
    if (vocab_size <= 65536) return 2;
    return 4;
}

uint64_t ln_fnv1a64(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int64_t ln_shard_name_index(const char *name, const char *split) {
    size_t sl = strlen(split);
    if (strncmp(name, split, sl) != 0 || name[sl] != '-') return -1;
    const char *p = name + sl + 1;
    int64_t idx = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 15; p++, digits++) idx = idx * 10 + (*p - '0');
    return digits > 0 && strcmp(p, ".lnshard") == 0 ? idx : -1;
}

static void pack_tokens(uint8_t *dst, const int32_t *src, int64_t n, uint32_t width) {
    for (int64_t i = 0; i < n; i++) put_le(dst + i * width, (uint32_t)src[i], (int)width);
}

/* Compresses tokens frame by frame into f; returns payload bytes via *payload and the checksum. */
static int write_frames(FILE *f, const char *path, const int32_t *tokens, int64_t n, uint32_t width,
                        uint64_t *payload, uint64_t *checksum) {
    size_t raw_cap = (size_t)LN_SHARD_FRAME_TOKENS * width, out_cap = ZSTD_compressBound(raw_cap);
    uint8_t *raw = malloc(raw_cap), *out = malloc(out_cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    int rc = LN_OK;
    if (!raw || !out || !cctx) {
        rc = ln_fail("%s: out of memory while compressing", path);
        goto done;
    }
    /* The frame checksum lets zstd itself catch corruption before our whole-shard FNV does. */
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
    *payload = 0;
    *checksum = LN_FNV1A_OFFSET;
    for (int64_t at = 0; at < n; at += LN_SHARD_FRAME_TOKENS) {
        int64_t m = n - at < LN_SHARD_FRAME_TOKENS ? n - at : LN_SHARD_FRAME_TOKENS;
        size_t raw_n = (size_t)m * width;
        pack_tokens(raw, tokens + at, m, width);
        *checksum = ln_fnv1a64(*checksum, raw, raw_n);
        size_t z = ZSTD_compress2(cctx, out, out_cap, raw, raw_n);
        if (ZSTD_isError(z)) {
            rc = ln_fail("%s: zstd compression failed (%s)", path, ZSTD_getErrorName(z));
            goto done;
        }
        if (fwrite(out, 1, z, f) != z) {
            rc = ln_fail("%s: write failed (%s)", path, strerror(errno));
            goto done;
        }
        *payload += z;
    }
done:
    ZSTD_freeCCtx(cctx);
    free(raw);
    free(out);
    return rc;
}

int ln_shard_write(const char *path, const char *tokenizer, int64_t vocab_size, const int32_t *tokens, int64_t n) {
    if (!path || !tokenizer) return ln_fail("shard write: path and tokenizer name are required");
    if (vocab_size < 1 || vocab_size > INT32_MAX)
        return ln_fail("%s: vocab size %lld out of range [1, %d]", path, (long long)vocab_size, INT32_MAX);
    if (strlen(tokenizer) >= LN_SHARD_TOKENIZER_BYTES)
        return ln_fail("%s: tokenizer name '%s' longer than %d bytes", path, tokenizer, LN_SHARD_TOKENIZER_BYTES - 1);
    if (n < 0 || (n > 0 && !tokens)) return ln_fail("%s: bad token array (n = %lld)", path, (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab_size)
            return ln_fail("%s: token %d at position %lld is outside vocab [0, %lld)", path, tokens[i],
                           (long long)i, (long long)vocab_size);

    uint32_t width = ln_shard_token_width(vocab_size);
    size_t tmp_len = strlen(path) + 5;
    char *tmp = malloc(tmp_len);
    if (!tmp) return ln_fail("%s: out of memory", path);
    snprintf(tmp, tmp_len, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = ln_fail("%s: cannot create (%s)", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    uint8_t header[LN_SHARD_HEADER_BYTES] = {0};
    uint64_t payload = 0, checksum = 0;
    /* Header first as a placeholder; the payload size and checksum are known only at the end. */
    int rc = fwrite(header, 1, sizeof header, f) == sizeof header ? LN_OK
                                                                   : ln_fail("%s: write failed (%s)", tmp, strerror(errno));
    if (rc == LN_OK) rc = write_frames(f, tmp, tokens, n, width, &payload, &checksum);
    if (rc == LN_OK) {
        memcpy(header + OFF_MAGIC, LN_SHARD_MAGIC, 8);
        put_le(header + OFF_VERSION, LN_SHARD_VERSION, 4);
        put_le(header + OFF_WIDTH, width, 4);
        put_le(header + OFF_VOCAB, (uint64_t)vocab_size, 4);
        memcpy(header + OFF_TOKENIZER, tokenizer, strlen(tokenizer));
        put_le(header + OFF_TOKENS, (uint64_t)n, 8);
        put_le(header + OFF_CHECKSUM, checksum, 8);
        put_le(header + OFF_PAYLOAD, payload, 8);
        if (fseek(f, 0, SEEK_SET) != 0 || fwrite(header, 1, sizeof header, f) != sizeof header || fflush(f) != 0 ||
            fsync(fileno(f)) != 0)
            rc = ln_fail("%s: write failed (%s)", tmp, strerror(errno));
    }
    if (fclose(f) != 0 && rc == LN_OK) rc = ln_fail("%s: close failed (%s)", tmp, strerror(errno));
    if (rc == LN_OK && rename(tmp, path) != 0) rc = ln_fail("%s: cannot rename from %s (%s)", path, tmp, strerror(errno));
    if (rc != LN_OK) remove(tmp);
    free(tmp);
    return rc;
}

/* Parses and checks the header against the file size; leaves f positioned after the header. */
static int read_header(FILE *f, const char *path, ln_shard_info *info) {
    struct stat st;
    if (fstat(fileno(f), &st) != 0) return ln_fail("%s: cannot stat (%s)", path, strerror(errno));
    uint8_t h[LN_SHARD_HEADER_BYTES];
    if (st.st_size < LN_SHARD_HEADER_BYTES || fread(h, 1, sizeof h, f) != sizeof h)
        return ln_fail("%s: truncated header (%lld bytes, need %d)", path, (long long)st.st_size,
                       LN_SHARD_HEADER_BYTES);
    if (memcmp(h + OFF_MAGIC, LN_SHARD_MAGIC, 8) != 0) return ln_fail("%s: bad magic (not a linnet token shard)", path);
    memset(info, 0, sizeof *info);
    info->version = (uint32_t)get_le(h + OFF_VERSION, 4);
    info->token_width = (uint32_t)get_le(h + OFF_WIDTH, 4);
    info->vocab_size = (uint32_t)get_le(h + OFF_VOCAB, 4);
    memcpy(info->tokenizer, h + OFF_TOKENIZER, LN_SHARD_TOKENIZER_BYTES);
    uint64_t tokens = get_le(h + OFF_TOKENS, 8);
    info->checksum = get_le(h + OFF_CHECKSUM, 8);
    info->payload_bytes = get_le(h + OFF_PAYLOAD, 8);

    if (info->version != LN_SHARD_VERSION)
        return ln_fail("%s: unsupported version %u (this build reads %d)", path, info->version, LN_SHARD_VERSION);
    uint32_t w = info->token_width;
    if (w != 1 && w != 2 && w != 4) return ln_fail("%s: bad token width %u (must be 1, 2 or 4)", path, w);
    if (info->vocab_size < 1 || info->vocab_size > INT32_MAX)
        return ln_fail("%s: bad vocab size %u", path, info->vocab_size);
    if (w < 4 && info->vocab_size > (1u << (8 * w)))
        return ln_fail("%s: vocab size %u does not fit token width %u", path, info->vocab_size, w);
    /* A name, then NUL padding: anything else in the field means the header is damaged. */
    size_t name_len = strnlen(info->tokenizer, LN_SHARD_TOKENIZER_BYTES);
    bool padded = name_len > 0 && name_len < LN_SHARD_TOKENIZER_BYTES;
    for (size_t i = name_len; padded && i < LN_SHARD_TOKENIZER_BYTES; i++) padded = info->tokenizer[i] == '\0';
    if (!padded) return ln_fail("%s: bad tokenizer name field in header", path);
    for (int i = OFF_RESERVED; i < LN_SHARD_HEADER_BYTES; i++)
        if (h[i] != 0) return ln_fail("%s: reserved header bytes are not zero", path);
    if (tokens > (uint64_t)INT64_MAX / 4 || tokens * w > (uint64_t)SIZE_MAX / 2)
        return ln_fail("%s: token count %llu too large", path, (unsigned long long)tokens);
    info->tokens = (int64_t)tokens;
    uint64_t have = (uint64_t)st.st_size - LN_SHARD_HEADER_BYTES;
    if (info->payload_bytes > have)
        return ln_fail("%s: truncated (header says %llu payload bytes, file has %llu)", path,
                       (unsigned long long)info->payload_bytes, (unsigned long long)have);
    if (info->payload_bytes < have)
        return ln_fail("%s: %llu unexpected bytes after the payload", path,
                       (unsigned long long)(have - info->payload_bytes));
    if ((tokens == 0) != (info->payload_bytes == 0))
        return ln_fail("%s: token count %llu does not match payload of %llu bytes", path, (unsigned long long)tokens,
                       (unsigned long long)info->payload_bytes);
    return LN_OK;
}

int ln_shard_read_info(const char *path, ln_shard_info *info) {
    FILE *f = fopen(path, "rb");
    if (!f) return ln_fail("%s: cannot open (%s)", path, strerror(errno));
    int rc = read_header(f, path, info);
    fclose(f);
    return rc;
}

/* Decompresses the payload frame by frame into raw (exactly raw_n bytes expected). Each frame
 * must declare its size, so a lying header or frame cannot make us write past raw. With raw
 * NULL it only walks the frame headers: that runs before allocating, so a corrupt token count
 * cannot ask for an absurd buffer. */
static int decompress(const char *path, const uint8_t *src, size_t src_n, uint8_t *raw, size_t raw_n, size_t width) {
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) return ln_fail("%s: out of memory", path);
    size_t at = 0, off = 0;
    int rc = LN_OK, frame = 0;
    for (; at < src_n && rc == LN_OK; frame++) {
        size_t csize = ZSTD_findFrameCompressedSize(src + at, src_n - at);
        unsigned long long content = ZSTD_isError(csize) ? 0 : ZSTD_getFrameContentSize(src + at, csize);
        size_t got = 0;
        if (ZSTD_isError(csize))
            rc = ln_fail("%s: zstd frame %d: %s (file is corrupted)", path, frame, ZSTD_getErrorName(csize));
        else if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN)
            rc = ln_fail("%s: zstd frame %d has no valid content size (file is corrupted)", path, frame);
        else if (content > (unsigned long long)LN_SHARD_FRAME_TOKENS * width || content % width != 0)
            rc = ln_fail("%s: zstd frame %d holds %llu bytes, not whole tokens up to %d per frame", path, frame,
                         content, LN_SHARD_FRAME_TOKENS);
        else if (content > raw_n - off)
            rc = ln_fail("%s: payload holds more tokens than the header's count", path);
        else if (raw && ZSTD_isError(got = ZSTD_decompressDCtx(dctx, raw + off, (size_t)content, src + at, csize)))
            rc = ln_fail("%s: zstd frame %d: %s (file is corrupted)", path, frame, ZSTD_getErrorName(got));
        else if (raw && got != content)
            rc = ln_fail("%s: zstd frame %d decompressed to %zu bytes, declared %llu", path, frame, got, content);
        at += ZSTD_isError(csize) ? 0 : csize;
        off += (size_t)content;
    }
    ZSTD_freeDCtx(dctx);
    if (rc == LN_OK && off != raw_n)
        rc = ln_fail("%s: payload holds %zu tokens, header says %zu", path, off / width, raw_n / width);
    return rc;
}

int ln_shard_read(const char *path, ln_shard_info *info, int32_t **tokens) {
    *tokens = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ln_fail("%s: cannot open (%s)", path, strerror(errno));
    int rc = read_header(f, path, info);
    uint8_t *src = NULL, *raw = NULL;
    int32_t *out = NULL;
    size_t w = 0, raw_n = 0;
    if (rc != LN_OK) goto done;
    w = info->token_width;
    raw_n = (size_t)info->tokens * w;
    src = malloc(info->payload_bytes ? (size_t)info->payload_bytes : 1);
    if (!src) {
        rc = ln_fail("%s: out of memory for %llu payload bytes", path, (unsigned long long)info->payload_bytes);
        goto done;
    }
    if (fread(src, 1, (size_t)info->payload_bytes, f) != info->payload_bytes) {
        rc = ln_fail("%s: read failed (truncated?)", path);
        goto done;
    }
    if ((rc = decompress(path, src, (size_t)info->payload_bytes, NULL, raw_n, w)) != LN_OK) goto done;
    raw = malloc(raw_n ? raw_n : 1);
    out = malloc(info->tokens ? (size_t)info->tokens * sizeof(int32_t) : 1);
    if (!raw || !out) {
        rc = ln_fail("%s: out of memory for %lld tokens", path, (long long)info->tokens);
        goto done;
    }
    if ((rc = decompress(path, src, (size_t)info->payload_bytes, raw, raw_n, w)) != LN_OK) goto done;
    if (ln_fnv1a64(LN_FNV1A_OFFSET, raw, raw_n) != info->checksum) {
        rc = ln_fail("%s: checksum mismatch (file is corrupted)", path);
        goto done;
    }
    for (int64_t i = 0; i < info->tokens; i++) {
        uint64_t t = get_le(raw + (size_t)i * w, (int)w);
        if (t >= info->vocab_size) {
            rc = ln_fail("%s: token %llu at position %lld is outside vocab size %u", path, (unsigned long long)t,
                         (long long)i, info->vocab_size);
            goto done;
        }
        out[i] = (int32_t)t;
    }
    *tokens = out;
    out = NULL;
done:
    fclose(f);
    free(src);
    free(raw);
    free(out);
    return rc;
}
