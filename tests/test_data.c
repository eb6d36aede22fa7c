/* Data: the shard format, the bytes tokenizer, prep, and the loader's ordering and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/rng.h"
#include "data/loader.h"
#include "data/prep.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "testing.h"

/* --- helpers ---------------------------------------------------------------------------- */

/* test_tmpdir, remembered so main can remove them all at the end. */
static const char *made[256];
static int n_made;
static const char *tmpdir(void) {
    const char *d = test_tmpdir();
    assert_non_null(d);
    if (n_made < 256) made[n_made++] = d;
    return d;
}

static char *path_in(const char *dir, const char *name) {
    static char buf[8][1024];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

static uint8_t *read_bytes(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)*n + 1);
    assert_int_equal(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

static void write_bytes(const char *path, const void *b, long n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

/* The error is one line and names `what` (a file or directory). */
static void assert_error_names(int rc, const char *what) {
    assert_int_equal(rc, LN_ERR);
    const char *msg = ln_error_message();
    if (!strstr(msg, what)) fail_msg("error does not name %s: %s", what, msg);
    assert_null(strchr(msg, '\n'));
}

static int32_t *random_tokens(int64_t n, int vocab, uint64_t seed) {
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)ln_rng_below(&rng, (uint64_t)vocab);
    return t;
}

/* A small train split whose tokens are their global position, so a window's first token says
 * exactly which window it is. Shard lengths 1001, 1500, 777 with seq_len 16: 62 + 93 + 48. */
enum { SEQ = 16, PER_EPOCH = 62 + 93 + 48 };
static const int64_t lengths[3] = {1001, 1500, 777};

static const char *make_dataset(void) {
    const char *dir = tmpdir();
    int32_t g = 0;
    for (int s = 0; s < 3; s++) {
        int32_t *t = malloc((size_t)lengths[s] * sizeof *t);
        for (int64_t i = 0; i < lengths[s]; i++) t[i] = g++;
        char name[64];
        snprintf(name, sizeof name, "train-%05d.lnshard", s);
        assert_ok(ln_shard_write(path_in(dir, name), "test", 4096, t, lengths[s]));
        free(t);
    }
    return dir;
}

static void take(ln_loader *l, int count, int32_t *in, int32_t *tg) { assert_ok(ln_loader_next(l, count, in, tg)); }

/* --- shards ------------------------------------------------------------------------------- */

static void shard_round_trip(int vocab, int64_t n, uint32_t width) {
    const char *dir = tmpdir();
    const char *path = path_in(dir, "x.lnshard");
    int32_t *t = random_tokens(n, vocab, (uint64_t)vocab);
    t[0] = vocab - 1; /* the largest token must survive the packing */
    assert_ok(ln_shard_write(path, "bytes", vocab, t, n));
    assert_int_equal(access(path_in(dir, "x.lnshard.tmp"), F_OK), -1);
    ln_shard_info info;
    int32_t *back;
    assert_ok(ln_shard_read(path, &info, &back));
    assert_int_equal(info.version, 1);
    assert_int_equal(info.token_width, width);
    assert_int_equal(info.vocab_size, vocab);
    assert_string_equal(info.tokenizer, "bytes");
    assert_int_equal(info.tokens, n);
    assert_memory_equal(back, t, (size_t)n * sizeof *t);
    /* The payload is several frames: more than one frame's worth of tokens went in. */
    long size;
    uint8_t *bytes = read_bytes(path, &size);
    assert_memory_equal(bytes, "LNSHARD\0", 8);
    assert_int_equal((uint64_t)size, LN_SHARD_HEADER_BYTES + info.payload_bytes);
    free(bytes);
    free(back);
    free(t);
}

static void shard_round_trip_width1(void **state) { shard_round_trip(256, LN_SHARD_FRAME_TOKENS + 4321, 1); }
static void shard_round_trip_width2(void **state) { shard_round_trip(50000, 2 * LN_SHARD_FRAME_TOKENS + 7, 2); }
static void shard_round_trip_width4(void **state) { shard_round_trip(100000, 5000, 4); }

static void shard_width_is_smallest(void **state) {
    assert_int_equal(ln_shard_token_width(256), 1);
    assert_int_equal(ln_shard_token_width(257), 2);
    assert_int_equal(ln_shard_token_width(65536), 2);
    assert_int_equal(ln_shard_token_width(65537), 4);
}

static void shard_write_rejects_out_of_vocab(void **state) {
    const char *dir = tmpdir();
    int32_t t[3] = {1, 256, 2};
    assert_error_names(ln_shard_write(path_in(dir, "bad.lnshard"), "bytes", 256, t, 3), "bad.lnshard");
    assert_int_equal(access(path_in(dir, "bad.lnshard"), F_OK), -1);
}

/* Writes a 3000-token width-1 shard and returns its bytes for tampering. */
static uint8_t *good_shard(const char *path, long *size) {
    int32_t *t = random_tokens(3000, 256, 7);
    assert_ok(ln_shard_write(path, "bytes", 256, t, 3000));
    free(t);
    return read_bytes(path, size);
}

static void shard_truncated(void **state) {
    const char *path = path_in(tmpdir(), "train-00000.lnshard");
    long size;
    uint8_t *b = good_shard(path, &size);
    write_bytes(path, b, size - 10);
    ln_shard_info info;
    int32_t *t;
    assert_error_names(ln_shard_read(path, &info, &t), path);
    assert_non_null(strstr(ln_error_message(), "truncated"));
    assert_null(t);
    write_bytes(path, b, 20); /* not even a header */
    assert_error_names(ln_shard_read(path, &info, &t), path);
    free(b);
}

static void shard_flipped_payload_byte(void **state) {
    const char *path = path_in(tmpdir(), "train-00000.lnshard");
    long size;
    uint8_t *b = good_shard(path, &size);
    b[LN_SHARD_HEADER_BYTES + (size - LN_SHARD_HEADER_BYTES) / 2] ^= 0x10;
    write_bytes(path, b, size);
    ln_shard_info info;
    int32_t *t;
    assert_error_names(ln_shard_read(path, &info, &t), path);
    const char *msg = ln_error_message();
    assert_true(strstr(msg, "checksum") || strstr(msg, "zstd") || strstr(msg, "corrupt"));
    free(b);
}

static void shard_wrong_magic(void **state) {
    const char *path = path_in(tmpdir(), "train-00000.lnshard");
    long size;
    uint8_t *b = good_shard(path, &size);
    b[0] = 'X';
    write_bytes(path, b, size);
    ln_shard_info info;
    int32_t *t;
    assert_error_names(ln_shard_read(path, &info, &t), path);
    assert_non_null(strstr(ln_error_message(), "magic"));
    free(b);
}

static void shard_header_vocab_mismatch(void **state) {
    const char *path = path_in(tmpdir(), "train-00000.lnshard");
    long size;
    uint8_t *b = good_shard(path, &size);
    ln_shard_info info;
    int32_t *t;
    b[16] = 100; /* vocab 100, but the tokens go up to 255 */
    write_bytes(path, b, size);
    assert_error_names(ln_shard_read(path, &info, &t), path);
    assert_non_null(strstr(ln_error_message(), "vocab"));
    b[16] = 0x70, b[17] = 0x11, b[18] = 0x01; /* vocab 70000 cannot be width 1 */
    write_bytes(path, b, size);
    assert_error_names(ln_shard_read(path, &info, &t), path);
    assert_non_null(strstr(ln_error_message(), "width"));
    free(b);
}

static void shard_token_count_mismatch(void **state) {
    const char *path = path_in(tmpdir(), "train-00000.lnshard");
    long size;
    uint8_t *b = good_shard(path, &size);
    ln_shard_info info;
    int32_t *t;
    b[36] ^= 1; /* 3000 -> 3001 tokens */
    write_bytes(path, b, size);
    assert_error_names(ln_shard_read(path, &info, &t), path);
    b[36] ^= 1;
    b[42] = 0x40; /* an absurd token count must not be allocated for */
    write_bytes(path, b, size);
    assert_error_names(ln_shard_read(path, &info, &t), path);
    free(b);
}

/* No single-byte corruption or truncation crashes or silently changes the tokens: each is an
 * error naming the file (or, where zstd ignores the bit, the same tokens). */
static void shard_never_crashes(void **state) {
    const char *path = path_in(tmpdir(), "fuzz.lnshard");
    int32_t t[300];
    for (int i = 0; i < 300; i++) t[i] = (i * 7) % 256;
    assert_ok(ln_shard_write(path, "bytes", 256, t, 300));
    long size;
    uint8_t *good = read_bytes(path, &size);
    uint8_t *b = malloc((size_t)size);
    const uint8_t flips[3] = {0x01, 0x80, 0xff};
    for (long at = 0; at < size; at++) {
        for (int k = 0; k < 3; k++) {
            memcpy(b, good, (size_t)size);
            b[at] ^= flips[k];
            write_bytes(path, b, size);
            ln_shard_info info;
            int32_t *back;
            int rc = ln_shard_read(path, &info, &back);
            /* The name is not checksummed: a flip there reads as another tokenizer's name, which
             * the loader then refuses to mix with the other shards. */
            bool in_name = at >= 20 && at < 36;
            if (rc == LN_OK && in_name) {
                assert_string_not_equal(info.tokenizer, "bytes");
                free(back);
                continue;
            }
            if (rc == LN_OK) {
                /* zstd ignores a few bits (e.g. reserved ones); then the data must be intact. */
                assert_string_equal(info.tokenizer, "bytes");
                if (info.tokens != 300 || memcmp(back, t, sizeof t) != 0)
                    fail_msg("a flip of byte %ld by 0x%02x changed the tokens unnoticed", at, flips[k]);
                free(back);
                continue;
            }
            assert_error_names(rc, path);
        }
    }
    for (long n = 0; n < size; n++) {
        write_bytes(path, good, n);
        ln_shard_info info;
        int32_t *back;
        assert_error_names(ln_shard_read(path, &info, &back), path);
    }
    free(b);
    free(good);
}

/* --- tokenizer ---------------------------------------------------------------------------- */

static void bytes_tokenizer_round_trip(void **state) {
    ln_tokenizer *tok;
    assert_ok(ln_tokenizer_open(&tok, "bytes"));
    assert_string_equal(ln_tokenizer_name(tok), "bytes");
    assert_int_equal(ln_tokenizer_vocab_size(tok), 256);
    char text[512];
    for (int i = 0; i < 512; i++) text[i] = (char)(i * 37 + 11); /* every byte value, NULs included */
    int32_t *ids;
    size_t n;
    assert_ok(ln_tokenizer_encode(tok, text, sizeof text, &ids, &n));
    assert_int_equal(n, sizeof text);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], (unsigned char)text[i]);
    char *back;
    size_t len;
    assert_ok(ln_tokenizer_decode(tok, ids, n, &back, &len));
    assert_int_equal(len, sizeof text);
    assert_memory_equal(back, text, sizeof text);
    assert_int_equal(back[len], '\0');
    free(back);
    ids[3] = 256;
    assert_int_equal(ln_tokenizer_decode(tok, ids, n, &back, &len), LN_ERR);
    free(ids);
    ln_tokenizer_free(tok);
}

static void unknown_tokenizer_lists_known(void **state) {
    ln_tokenizer *tok;
    assert_int_equal(ln_tokenizer_open(&tok, "gpt9"), LN_ERR);
    assert_null(tok);
    assert_non_null(strstr(ln_error_message(), "gpt9"));
    assert_non_null(strstr(ln_error_message(), "bytes"));
}

/* --- prep --------------------------------------------------------------------------------- */

static int64_t split_tokens(const char *dir, const char *split, int *shards, int32_t *into) {
    int64_t total = 0;
    *shards = 0;
    for (;; (*shards)++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%05d.lnshard", split, *shards);
        if (access(path_in(dir, name), F_OK) != 0) break;
        ln_shard_info info;
        int32_t *t;
        assert_ok(ln_shard_read(path_in(dir, name), &info, &t));
        assert_string_equal(info.tokenizer, "bytes");
        assert_int_equal(info.vocab_size, 256);
        if (into) memcpy(into + total, t, (size_t)info.tokens * sizeof *t);
        total += info.tokens;
        free(t);
    }
    return total;
}

static void prep_writes_train_and_val(void **state) {
    const char *in = tmpdir();
    char a[3000], b[4000];
    for (int i = 0; i < 3000; i++) a[i] = (char)('a' + i % 26);
    for (int i = 0; i < 4000; i++) b[i] = (char)(i % 256);
    write_bytes(path_in(in, "a.txt"), a, 3000);
    write_bytes(path_in(in, "b.txt"), b, 4000);
    char *files[2] = {strdup(path_in(in, "a.txt")), strdup(path_in(in, "b.txt"))};
    char *out = strdup(path_in(in, "out/nested")); /* created like mkdir -p */
    ln_prep_summary s;
    assert_ok(ln_prep_ex(out, "bytes", 2, files, 0.1, 1000, &s));
    assert_int_equal(s.tokens, 7000);
    assert_int_equal(s.val_tokens, 700);
    assert_int_equal(s.train_tokens, 6300);
    assert_int_equal(s.train_shards, 7);
    assert_int_equal(s.val_shards, 1);
    int32_t all[7000];
    int n_train, n_val;
    assert_int_equal(split_tokens(out, "train", &n_train, all), 6300);
    assert_int_equal(split_tokens(out, "val", &n_val, all + 6300), 700);
    assert_int_equal(n_train, 7);
    assert_int_equal(n_val, 1);
    for (int i = 0; i < 7000; i++) assert_int_equal(all[i], (unsigned char)(i < 3000 ? a[i] : b[i - 3000]));

    /* A second prep with bigger shards leaves no stale shards behind, and val can span shards. */
    assert_ok(ln_prep_ex(out, "bytes", 2, files, 0.5, 3000, &s));
    assert_int_equal(split_tokens(out, "train", &n_train, NULL), 3500);
    assert_int_equal(split_tokens(out, "val", &n_val, NULL), 3500);
    assert_int_equal(n_train, 2);
    assert_int_equal(n_val, 2);
    assert_int_equal(access(path_in(out, "train-00002.lnshard"), F_OK), -1);
    assert_ok(ln_prep(out, "bytes", 1, files, 0.0, 1 << 20));
    free(files[0]);
    free(files[1]);
    free(out);
}

static void prep_names_missing_file(void **state) {
    const char *dir = tmpdir();
    char *files[1] = {strdup(path_in(dir, "nope.txt"))};
    assert_error_names(ln_prep(path_in(dir, "out"), "bytes", 1, files, 0.1, 100), "nope.txt");
    assert_error_names(ln_prep(path_in(dir, "out"), "wordpiece", 1, files, 0.1, 100), "bytes");
    free(files[0]);
}

/* --- loader ------------------------------------------------------------------------------- */

static void loader_reports_header_facts(void **state) {
    ln_loader *l;
    assert_ok(ln_loader_open(&l, make_dataset(), "train", SEQ, 1, true));
    assert_int_equal(ln_loader_vocab_size(l), 4096);
    assert_string_equal(ln_loader_tokenizer(l), "test");
    assert_int_equal(ln_loader_sequences_per_epoch(l), PER_EPOCH);
    ln_loader_close(l);
}

static void loader_same_seed_same_stream(void **state) {
    const char *dir = make_dataset();
    enum { N = 450 }; /* more than two epochs */
    static int32_t a[N * SEQ], at[N * SEQ], b[N * SEQ], bt[N * SEQ], c[N * SEQ], ct[N * SEQ];
    ln_loader *la, *lb, *lc;
    assert_ok(ln_loader_open(&la, dir, "train", SEQ, 42, true));
    assert_ok(ln_loader_open(&lb, dir, "train", SEQ, 42, true));
    assert_ok(ln_loader_open(&lc, dir, "train", SEQ, 43, true));
    take(la, N, a, at);
    for (int i = 0; i < N; i += 50) take(lb, 50, b + i * SEQ, bt + i * SEQ); /* batch size does not matter */
    take(lc, N, c, ct);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(at, bt, sizeof at);
    assert_memory_not_equal(a, c, sizeof a);
    ln_loader_close(la);
    ln_loader_close(lb);
    ln_loader_close(lc);
}

static void loader_targets_are_shifted_inputs(void **state) {
    ln_loader *l;
    assert_ok(ln_loader_open(&l, make_dataset(), "train", SEQ, 5, true));
    int32_t in[40 * SEQ], tg[40 * SEQ];
    take(l, 40, in, tg);
    for (int i = 0; i < 40; i++) {
        for (int j = 0; j + 1 < SEQ; j++) assert_int_equal(tg[i * SEQ + j], in[i * SEQ + j + 1]);
        assert_int_equal(tg[i * SEQ + SEQ - 1], in[i * SEQ + SEQ - 1] + 1); /* the window's extra token */
    }
    ln_loader_close(l);
}

static void loader_cursor_resumes_exactly(void **state) {
    const char *dir = make_dataset();
    static int32_t a[250 * SEQ], at[250 * SEQ], b[250 * SEQ], bt[250 * SEQ];
    for (int before = 0; before < 3 * PER_EPOCH; before += 97) {
        ln_loader *l, *fresh;
        assert_ok(ln_loader_open(&l, dir, "train", SEQ, 9, true));
        assert_ok(ln_loader_open(&fresh, dir, "train", SEQ, 9, true));
        for (int i = 0; i < before; i++) take(l, 1, a, at);
        ln_loader_cursor c = ln_loader_get_cursor(l);
        assert_int_equal(c.sequences, before);
        assert_ok(ln_loader_set_cursor(fresh, c));
        take(l, 250, a, at);
        take(fresh, 250, b, bt);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_equal(at, bt, sizeof at);
        ln_loader_cursor ca = ln_loader_get_cursor(l), cb = ln_loader_get_cursor(fresh);
        assert_memory_equal(&ca, &cb, sizeof ca);
        ln_loader_close(l);
        ln_loader_close(fresh);
    }
}

static void loader_rejects_foreign_cursor(void **state) {
    ln_loader *l;
    const char *dir = make_dataset();
    assert_ok(ln_loader_open(&l, dir, "train", SEQ, 9, true));
    ln_loader_cursor bad[] = {{0, 3, 0, 0}, {0, 0, 500, 500}, {-1, 0, 0, 0}, {0, 0, 5, 6}, {1, 0, 0, 0}};
    for (int i = 0; i < 5; i++) assert_error_names(ln_loader_set_cursor(l, bad[i]), dir);
    ln_loader_close(l);
}

static void loader_skip_matches_next(void **state) {
    const char *dir = make_dataset();
    const int skips[] = {0, 1, 61, 62, 63, PER_EPOCH, PER_EPOCH + 5, 2 * PER_EPOCH + 100, 700};
    for (int k = 0; k < (int)(sizeof skips / sizeof *skips); k++) {
        ln_loader *a, *b;
        assert_ok(ln_loader_open(&a, dir, "train", SEQ, 3, true));
        assert_ok(ln_loader_open(&b, dir, "train", SEQ, 3, true));
        int32_t in[SEQ], tg[SEQ], in2[10 * SEQ], tg2[10 * SEQ], in3[10 * SEQ], tg3[10 * SEQ];
        take(a, 7, in2, tg2); /* start both mid-shard */
        take(b, 7, in2, tg2);
        for (int i = 0; i < skips[k]; i++) take(a, 1, in, tg);
        assert_ok(ln_loader_skip(b, skips[k]));
        ln_loader_cursor ca = ln_loader_get_cursor(a), cb = ln_loader_get_cursor(b);
        assert_memory_equal(&ca, &cb, sizeof ca);
        take(a, 10, in2, tg2);
        take(b, 10, in3, tg3);
        assert_memory_equal(in2, in3, sizeof in2);
        ln_loader_close(a);
        ln_loader_close(b);
    }
}

/* First tokens of the windows of one epoch in file order: global positions k * SEQ per shard. */
static int expected_starts(int32_t *starts) {
    int n = 0;
    int32_t base = 0;
    for (int s = 0; s < 3; s++) {
        for (int64_t w = 0; w < (lengths[s] - 1) / SEQ; w++) starts[n++] = base + (int32_t)(w * SEQ);
        base += (int32_t)lengths[s];
    }
    return n;
}

static int cmp_i32(const void *a, const void *b) { return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b); }

static void loader_epoch_visits_every_window_once(void **state) {
    int32_t want[PER_EPOCH];
    assert_int_equal(expected_starts(want), PER_EPOCH);
    ln_loader *l;
    assert_ok(ln_loader_open(&l, make_dataset(), "train", SEQ, 11, true));
    static int32_t in[PER_EPOCH * SEQ], tg[PER_EPOCH * SEQ];
    int32_t first[2][PER_EPOCH];
    for (int e = 0; e < 2; e++) {
        take(l, PER_EPOCH, in, tg);
        for (int i = 0; i < PER_EPOCH; i++) first[e][i] = in[i * SEQ];
        ln_loader_cursor c = ln_loader_get_cursor(l);
        assert_int_equal(c.epoch, e + 1);
        assert_int_equal(c.shard, 0);
        assert_int_equal(c.window, 0);
        assert_int_equal(c.sequences, (e + 1) * PER_EPOCH);
    }
    /* Windows are shuffled inside shards too: few neighbours in the stream are neighbours in the text. */
    int adjacent = 0;
    for (int i = 1; i < PER_EPOCH; i++) adjacent += first[0][i] == first[0][i - 1] + SEQ;
    assert_true(adjacent < PER_EPOCH / 10);
    assert_memory_not_equal(first[0], first[1], sizeof first[0]); /* each epoch reshuffles */
    assert_memory_not_equal(first[0], want, sizeof want);          /* and it is shuffled at all */
    for (int e = 0; e < 2; e++) {
        qsort(first[e], PER_EPOCH, sizeof(int32_t), cmp_i32);
        assert_memory_equal(first[e], want, sizeof want);
    }
    ln_loader_close(l);
}

static void loader_no_shuffle_is_file_order(void **state) {
    int32_t want[PER_EPOCH];
    expected_starts(want);
    ln_loader *l;
    assert_ok(ln_loader_open(&l, make_dataset(), "train", SEQ, 11, false));
    static int32_t in[PER_EPOCH * SEQ], tg[PER_EPOCH * SEQ];
    for (int e = 0; e < 2; e++) {
        take(l, PER_EPOCH, in, tg);
        for (int i = 0; i < PER_EPOCH; i++) assert_int_equal(in[i * SEQ], want[i]);
    }
    ln_loader_close(l);
}

static void loader_missing_dir(void **state) {
    ln_loader *l;
    const char *dir = path_in(tmpdir(), "no-such-dir");
    assert_error_names(ln_loader_open(&l, dir, "train", SEQ, 1, true), "no-such-dir");
    assert_null(l);
}

static void loader_no_shards_of_split(void **state) {
    ln_loader *l;
    const char *dir = make_dataset();
    assert_error_names(ln_loader_open(&l, dir, "val", SEQ, 1, true), dir);
    assert_non_null(strstr(ln_error_message(), "val"));
}

static void loader_shard_too_short(void **state) {
    ln_loader *l;
    const char *dir = make_dataset();
    assert_error_names(ln_loader_open(&l, dir, "train", 800, 1, true), "train-00002.lnshard");
    assert_non_null(strstr(ln_error_message(), "short"));
}

static void loader_mixed_vocab(void **state) {
    ln_loader *l;
    const char *dir = make_dataset();
    int32_t t[100] = {0};
    assert_ok(ln_shard_write(path_in(dir, "train-00003.lnshard"), "test", 5000, t, 100));
    assert_error_names(ln_loader_open(&l, dir, "train", SEQ, 1, true), "train-00003.lnshard");
    assert_ok(ln_shard_write(path_in(dir, "train-00003.lnshard"), "bytes", 4096, t, 100));
    assert_error_names(ln_loader_open(&l, dir, "train", SEQ, 1, true), "train-00003.lnshard");
}

static void loader_truncated_shard(void **state) {
    ln_loader *l;
    const char *dir = make_dataset();
    const char *path = path_in(dir, "train-00001.lnshard");
    long size;
    uint8_t *b = read_bytes(path, &size);
    write_bytes(path, b, size - 1);
    assert_error_names(ln_loader_open(&l, dir, "train", SEQ, 1, true), "train-00001.lnshard");
    free(b);
}

static void loader_corrupt_payload_fails_on_read(void **state) {
    ln_loader *l;
    const char *dir = make_dataset();
    const char *path = path_in(dir, "train-00001.lnshard");
    long size;
    uint8_t *b = read_bytes(path, &size);
    b[size - 20] ^= 0x5a;
    write_bytes(path, b, size);
    assert_ok(ln_loader_open(&l, dir, "train", SEQ, 1, false)); /* headers are fine */
    static int32_t in[PER_EPOCH * SEQ], tg[PER_EPOCH * SEQ];
    assert_ok(ln_loader_next(l, 62, in, tg)); /* shard 0 is intact */
    assert_error_names(ln_loader_next(l, 1, in, tg), "train-00001.lnshard");
    ln_loader_cursor c = ln_loader_get_cursor(l);
    assert_int_equal(c.sequences, 62); /* a failed read does not advance */
    ln_loader_close(l);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shard_round_trip_width1),
        cmocka_unit_test(shard_round_trip_width2),
        cmocka_unit_test(shard_round_trip_width4),
        cmocka_unit_test(shard_width_is_smallest),
        cmocka_unit_test(shard_write_rejects_out_of_vocab),
        cmocka_unit_test(shard_truncated),
        cmocka_unit_test(shard_flipped_payload_byte),
        cmocka_unit_test(shard_wrong_magic),
        cmocka_unit_test(shard_header_vocab_mismatch),
        cmocka_unit_test(shard_token_count_mismatch),
        cmocka_unit_test(shard_never_crashes),
        cmocka_unit_test(bytes_tokenizer_round_trip),
        cmocka_unit_test(unknown_tokenizer_lists_known),
        cmocka_unit_test(prep_writes_train_and_val),
        cmocka_unit_test(prep_names_missing_file),
        cmocka_unit_test(loader_reports_header_facts),
        cmocka_unit_test(loader_same_seed_same_stream),
        cmocka_unit_test(loader_targets_are_shifted_inputs),
        cmocka_unit_test(loader_cursor_resumes_exactly),
        cmocka_unit_test(loader_rejects_foreign_cursor),
        cmocka_unit_test(loader_skip_matches_next),
        cmocka_unit_test(loader_epoch_visits_every_window_once),
        cmocka_unit_test(loader_no_shuffle_is_file_order),
        cmocka_unit_test(loader_missing_dir),
        cmocka_unit_test(loader_no_shards_of_split),
        cmocka_unit_test(loader_shard_too_short),
        cmocka_unit_test(loader_mixed_vocab),
        cmocka_unit_test(loader_truncated_shard),
        cmocka_unit_test(loader_corrupt_payload_fails_on_read),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < n_made && !failed; i++) { /* keep the files of a failed run to look at */
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", made[i]);
        test_system(cmd, NULL);
    }
    return failed;
}
