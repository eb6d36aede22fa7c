#include "data/loader.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/rng.h"
#include "data/shard.h"

typedef struct shard_file {
    char *path;
    int64_t index; /* N in <split>-N.lnshard */
    int64_t tokens;
    int64_t windows; /* (tokens - 1) / seq_len: windows of seq_len + 1 tokens at stride seq_len */
} shard_file;

struct ln_loader {
    char *dir;
    int seq_len;
    uint64_t seed;
    bool shuffle;
    int n_shards;
    shard_file *files; /* sorted by index: the file order */
    int64_t per_epoch;
    int vocab_size;
    char tokenizer[LN_SHARD_TOKENIZER_BYTES];
    ln_loader_cursor cur;
    /* This epoch's shard order (positions into files). */
    int64_t order_epoch;
    int *order;
    /* The one shard in memory and its window order for window_epoch. */
    int loaded;
    int32_t *tokens;
    int64_t window_epoch;
    int64_t *window_order; /* NULL without shuffle: file order */
};

/* Seed streams: the shard order uses the (seed, epoch, ~0) stream, file i's window order the
 * (seed, epoch, i) stream, so each is independent of how far the others were consumed. */
#define SHARD_ORDER_STREAM UINT64_MAX

static void shuffle_ints(int *a, int64_t n, ln_rng *rng) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ln_rng_below(rng, (uint64_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void shuffle_i64(int64_t *a, int64_t n, ln_rng *rng) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ln_rng_below(rng, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void ensure_order(ln_loader *l, int64_t epoch) {
    if (l->order_epoch == epoch) return;
    for (int i = 0; i < l->n_shards; i++) l->order[i] = i;
    if (l->shuffle) {
        ln_rng rng;
        ln_rng_seed(&rng, ln_hash3(l->seed, (uint64_t)epoch, SHARD_ORDER_STREAM));
        shuffle_ints(l->order, l->n_shards, &rng);
    }
    l->order_epoch = epoch;
}

static int cmp_files(const void *a, const void *b) {
    const shard_file *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* Lists <split>-N.lnshard files in dir, sorted by N. */
static int list_shards(ln_loader *l, const char *dir, const char *split) {
    DIR *d = opendir(dir);
    if (!d) return ln_fail("%s: cannot open data directory (%s)", dir, strerror(errno));
    int cap = 0, rc = LN_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t idx = ln_shard_name_index(e->d_name, split);
        if (idx < 0) continue;
        if (l->n_shards == cap) {
            cap = cap ? cap * 2 : 16;
            shard_file *grown = realloc(l->files, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = ln_fail("%s: out of memory listing shards", dir);
                break;
            }
            l->files = grown;
        }
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(n);
        if (!path) {
            rc = ln_fail("%s: out of memory listing shards", dir);
            break;
        }
        snprintf(path, n, "%s/%s", dir, e->d_name);
        l->files[l->n_shards++] = (shard_file){path, idx, 0, 0};
    }
    closedir(d);
    if (rc != LN_OK) return rc;
    if (l->n_shards == 0) return ln_fail("%s: no %s shards (expected %s-00000.lnshard)", dir, split, split);
    qsort(l->files, (size_t)l->n_shards, sizeof *l->files, cmp_files);
    return LN_OK;
}

/* Reads every header: consistent vocab and tokenizer, each shard long enough for one window. */
static int check_headers(ln_loader *l) {
    for (int i = 0; i < l->n_shards; i++) {
        shard_file *f = &l->files[i];
        ln_shard_info info;
        if (ln_shard_read_info(f->path, &info) != LN_OK) return LN_ERR;
        if (i == 0) {
            l->vocab_size = (int)info.vocab_size;
            memcpy(l->tokenizer, info.tokenizer, sizeof l->tokenizer);
        } else if ((int)info.vocab_size != l->vocab_size || strcmp(info.tokenizer, l->tokenizer) != 0) {
            return ln_fail("%s: vocab %u / tokenizer '%s' differs from %s (vocab %d / tokenizer '%s')", f->path,
                           info.vocab_size, info.tokenizer, l->files[0].path, l->vocab_size, l->tokenizer);
        }
        if (info.tokens < (int64_t)l->seq_len + 1)
            return ln_fail("%s: %lld tokens, too short for one window of seq_len + 1 = %d", f->path,
                           (long long)info.tokens, l->seq_len + 1);
        f->tokens = info.tokens;
        f->windows = (info.tokens - 1) / l->seq_len;
        if (l->per_epoch > INT64_MAX - f->windows) return ln_fail("%s: too many windows", l->dir);
        l->per_epoch += f->windows;
    }
    return LN_OK;
}

int ln_loader_open(ln_loader **out, const char *dir, const char *split, int seq_len, uint64_t seed, bool shuffle) {
    *out = NULL;
    if (!dir || !split || !*split) return ln_fail("loader: a directory and a split are required");
    if (seq_len < 1) return ln_fail("%s: seq_len %d must be positive", dir, seq_len);
    ln_loader *l = calloc(1, sizeof *l);
    if (!l) return ln_fail("%s: out of memory", dir);
    l->dir = strdup(dir);
    l->seq_len = seq_len;
    l->seed = seed;
    l->shuffle = shuffle;
    l->loaded = -1;
    l->order_epoch = -1;
    l->window_epoch = -1;
    int rc = l->dir ? list_shards(l, dir, split) : ln_fail("%s: out of memory", dir);
    if (rc == LN_OK) rc = check_headers(l);
    if (rc == LN_OK && !(l->order = malloc((size_t)l->n_shards * sizeof *l->order))) rc = ln_fail("%s: out of memory", dir);
    if (rc != LN_OK) {
        ln_loader_close(l);
        return rc;
    }
    ensure_order(l, 0);
    *out = l;
    return LN_OK;
}

int ln_loader_vocab_size(const ln_loader *l) { return l->vocab_size; }

const char *ln_loader_tokenizer(const ln_loader *l) { return l->tokenizer; }

int64_t ln_loader_sequences_per_epoch(const ln_loader *l) { return l->per_epoch; }

/* Makes the shard under the cursor resident, with its window order for the cursor's epoch. */
static int load_current(ln_loader *l) {
    ensure_order(l, l->cur.epoch);
    int fi = l->order[l->cur.shard];
    shard_file *f = &l->files[fi];
    if (l->loaded != fi) {
        free(l->tokens); /* one shard in memory at a time */
        l->tokens = NULL;
        l->loaded = -1;
        ln_shard_info info;
        int32_t *tokens;
        if (ln_shard_read(f->path, &info, &tokens) != LN_OK) return LN_ERR;
        if (info.tokens != f->tokens || (int)info.vocab_size != l->vocab_size || strcmp(info.tokenizer, l->tokenizer)) {
            free(tokens);
            return ln_fail("%s: changed since the loader opened it", f->path);
        }
        l->tokens = tokens;
        l->loaded = fi;
        l->window_epoch = -1;
    }
    if (l->shuffle && l->window_epoch != l->cur.epoch) {
        int64_t *order = realloc(l->window_order, (size_t)f->windows * sizeof *order);
        if (!order) return ln_fail("%s: out of memory for %lld windows", f->path, (long long)f->windows);
        l->window_order = order;
        for (int64_t w = 0; w < f->windows; w++) order[w] = w;
        ln_rng rng;
        ln_rng_seed(&rng, ln_hash3(l->seed, (uint64_t)l->cur.epoch, (uint64_t)fi));
        shuffle_i64(order, f->windows, &rng);
        l->window_epoch = l->cur.epoch;
    }
    return LN_OK;
}

/* Moves the cursor forward by n <= the windows left in the current shard, rolling over. */
static void advance(ln_loader *l, int64_t n) {
    ensure_order(l, l->cur.epoch);
    l->cur.window += n;
    l->cur.sequences += n;
    if (l->cur.window == l->files[l->order[l->cur.shard]].windows) {
        l->cur.window = 0;
        if (++l->cur.shard == l->n_shards) {
            l->cur.shard = 0;
            l->cur.epoch++;
        }
    }
}

int ln_loader_next(ln_loader *l, int count, int32_t *inputs, int32_t *targets) {
    if (count < 0 || (count > 0 && (!inputs || !targets)))
        return ln_fail("%s: bad next() arguments (count %d)", l->dir, count);
    size_t L = (size_t)l->seq_len;
    for (int i = 0; i < count; i++) {
        if (load_current(l) != LN_OK) return LN_ERR;
        int64_t w = l->shuffle ? l->window_order[l->cur.window] : l->cur.window;
        const int32_t *src = l->tokens + w * l->seq_len;
        memcpy(inputs + (size_t)i * L, src, L * sizeof *src);
        memcpy(targets + (size_t)i * L, src + 1, L * sizeof *src);
        advance(l, 1);
    }
    return LN_OK;
}

int ln_loader_skip(ln_loader *l, int count) {
    if (count < 0) return ln_fail("%s: cannot skip %d sequences", l->dir, count);
    int64_t left = count;
    /* Whole epochs from an epoch boundary need no walking. */
    if (l->cur.shard == 0 && l->cur.window == 0 && left >= l->per_epoch) {
        int64_t epochs = left / l->per_epoch;
        l->cur.epoch += epochs;
        l->cur.sequences += epochs * l->per_epoch;
        left -= epochs * l->per_epoch;
    }
    while (left > 0) {
        ensure_order(l, l->cur.epoch);
        int64_t room = l->files[l->order[l->cur.shard]].windows - l->cur.window;
        int64_t take = left < room ? left : room;
        advance(l, take);
        left -= take;
    }
    return LN_OK;
}

ln_loader_cursor ln_loader_get_cursor(const ln_loader *l) { return l->cur; }

int ln_loader_set_cursor(ln_loader *l, ln_loader_cursor c) {
    /* The four numbers are redundant on purpose: a cursor from different data is caught here. */
    bool ok = c.epoch >= 0 && c.shard >= 0 && c.shard < l->n_shards && c.window >= 0 && c.sequences >= 0 &&
              c.epoch <= INT64_MAX / l->per_epoch - 1;
    if (ok) {
        ensure_order(l, c.epoch);
        int64_t expect = c.epoch * l->per_epoch;
        for (int64_t s = 0; s < c.shard; s++) expect += l->files[l->order[s]].windows;
        ok = c.window < l->files[l->order[c.shard]].windows && expect + c.window == c.sequences;
    }
    if (!ok)
        return ln_fail("%s: cursor (epoch %lld, shard %lld, window %lld, sequences %lld) does not fit these %d shards",
                       l->dir, (long long)c.epoch, (long long)c.shard, (long long)c.window, (long long)c.sequences,
                       l->n_shards);
    l->cur = c;
    return LN_OK;
}

void ln_loader_close(ln_loader *l) {
    if (!l) return;
    for (int i = 0; i < l->n_shards; i++) free(l->files[i].path);
    free(l->files);
    free(l->order);
    free(l->tokens);
    free(l->window_order);
    free(l->dir);
    free(l);
}
