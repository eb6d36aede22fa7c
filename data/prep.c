#include "data/prep.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

static int mkdir_p(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return ln_fail("%s: path too long", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return ln_fail("%s: cannot create directory (%s)", path, strerror(errno));
        *p = c;
        if (c == '\0') break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return ln_fail("%s: not a directory", dir);
    return LN_OK;
}

static int read_text(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ln_fail("%s: cannot read (%s)", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return ln_fail("%s: out of memory", path);
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ln_fail("%s: read failed", path);
    }
    *text = buf;
    *len = n;
    return LN_OK;
}

/* Writes tokens as <split>-00000.lnshard, ... of at most shard_tokens each. */
static int write_split(const char *dir, const char *split, const char *tok_name, int vocab, const int32_t *tokens,
                       int64_t n, int64_t shard_tokens, int *shards) {
    *shards = 0;
    for (int64_t at = 0; at < n; at += shard_tokens, (*shards)++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-%05d.lnshard", dir, split, *shards);
        int64_t m = n - at < shard_tokens ? n - at : shard_tokens;
        if (ln_shard_write(path, tok_name, vocab, tokens + at, m) != LN_OK) return LN_ERR;
    }
    return LN_OK;
}

/* A previous prep may have written more shards; the loader would pick those stale ones up. */
static int remove_stale(const char *dir, const char *split, int keep) {
    DIR *d = opendir(dir);
    if (!d) return ln_fail("%s: cannot list (%s)", dir, strerror(errno));
    struct dirent *e;
    int rc = LN_OK;
    while ((e = readdir(d))) {
        int64_t idx = ln_shard_name_index(e->d_name, split);
        if (idx < keep) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (remove(path) != 0) rc = ln_fail("%s: cannot remove stale shard (%s)", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

int ln_prep_ex(const char *out_dir, const char *tokenizer, int n_files, char *const *files, double val_fraction,
               int64_t shard_tokens, ln_prep_summary *summary) {
    if (!out_dir || !*out_dir) return ln_fail("prep: output directory is required");
    if (n_files < 1 || !files) return ln_fail("prep: no input files");
    if (!(val_fraction >= 0 && val_fraction < 1))
        return ln_fail("prep: val fraction %g must be in [0, 1)", val_fraction);
    if (shard_tokens < 1) return ln_fail("prep: shard size %lld must be positive", (long long)shard_tokens);
    ln_tokenizer *tok;
    if (ln_tokenizer_open(&tok, tokenizer) != LN_OK) return LN_ERR;

    int32_t *all = NULL;
    int64_t total = 0, cap = 0;
    int rc = LN_OK;
    for (int i = 0; i < n_files && rc == LN_OK; i++) {
        char *text = NULL;
        size_t len = 0;
        int32_t *ids;
        size_t n_ids;
        if ((rc = read_text(files[i], &text, &len)) != LN_OK) break;
        rc = ln_tokenizer_encode(tok, text, len, &ids, &n_ids);
        free(text);
        if (rc != LN_OK) {
            ln_fail_context("%s", files[i]);
            break;
        }
        if (total + (int64_t)n_ids > cap) {
            int64_t want = cap * 2 > total + (int64_t)n_ids ? cap * 2 : total + (int64_t)n_ids;
            int32_t *grown = realloc(all, (size_t)(want ? want : 1) * sizeof *all);
            if (!grown) {
                free(ids);
                rc = ln_fail("%s: out of memory after %lld tokens", files[i], (long long)total);
                break;
            }
            all = grown;
            cap = want;
        }
        if (n_ids) memcpy(all + total, ids, n_ids * sizeof *ids);
        total += (int64_t)n_ids;
        free(ids);
    }

    int64_t n_val = (int64_t)((double)total * val_fraction);
    int64_t n_train = total - n_val;
    int train_shards = 0, val_shards = 0, vocab = ln_tokenizer_vocab_size(tok);
    if (rc == LN_OK && n_train < 1) rc = ln_fail("prep: the input files hold no training tokens");
    if (rc == LN_OK) rc = mkdir_p(out_dir);
    if (rc == LN_OK)
        rc = write_split(out_dir, "train", ln_tokenizer_name(tok), vocab, all, n_train, shard_tokens, &train_shards);
    if (rc == LN_OK)
        rc = write_split(out_dir, "val", ln_tokenizer_name(tok), vocab, all + n_train, n_val, shard_tokens, &val_shards);
    if (rc == LN_OK) rc = remove_stale(out_dir, "train", train_shards);
    if (rc == LN_OK) rc = remove_stale(out_dir, "val", val_shards);
    if (rc == LN_OK && summary)
        *summary = (ln_prep_summary){total, n_train, n_val, train_shards, val_shards, vocab};
    free(all);
    ln_tokenizer_free(tok);
    return rc;
}

int ln_prep(const char *out_dir, const char *tokenizer, int n_files, char *const *files, double val_fraction,
            int64_t shard_tokens) {
    return ln_prep_ex(out_dir, tokenizer, n_files, files, val_fraction, shard_tokens, NULL);
}
