#include "testing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/rng.h"

const char *test_tmpdir(void) {
    /* a few static slots, so callers never free and sanitizers see no leak */
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof paths[0], "%s/linnet-test-XXXXXX", base);
    return mkdtemp(path);
}

int test_system(const char *cmd, const char *log) {
    char *full = malloc(strlen(cmd) + (log ? strlen(log) : 0) + 32);
    if (log)
        sprintf(full, "%s >%s 2>&1", cmd, log);
    else
        sprintf(full, "%s", cmd);
    int status = system(full);
    free(full);
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

const char *test_linnet_bin(void) { return getenv("LINNET_BIN") ? getenv("LINNET_BIN") : "build/linnet"; }

const char *test_source_dir(void) { return getenv("LINNET_SOURCE_DIR") ? getenv("LINNET_SOURCE_DIR") : "."; }

char *test_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

double test_rel_error(const ln_tensor *a, const ln_tensor *b) {
    if (a->numel != b->numel) return INFINITY;
    double num = 0, den = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double d = ln_get(a, i) - ln_get(b, i);
        num += d * d;
        den += ln_get(b, i) * ln_get(b, i);
    }
    double rel = sqrt(num) / sqrt(den > 0 ? den : 1);
    return isnan(rel) ? INFINITY : rel;
}

int test_skip_suite(const char *why) {
    printf("SKIPPED: %s\n", why);
    fflush(stdout);
    return TEST_SKIPPED;
}

ln_config test_small_config(int d_model, int n_heads, int n_kv_heads, int mlp_hidden) {
    ln_config c;
    ln_config_defaults(&c);
    c.model.vocab_size = 32;
    c.model.d_model = d_model;
    c.model.n_layers = 2;
    c.model.n_heads = n_heads;
    c.model.n_kv_heads = n_kv_heads;
    c.model.mlp_hidden = mlp_hidden;
    return c;
}

ln_tensor *test_random_ids(int64_t B, int64_t T, int vocab, uint64_t seed) {
    ln_tensor *t = ln_tensor_new(LN_I32, LN_CPU, 2, (int64_t[]){B, T});
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = 0; i < t->numel; i++) ((int32_t *)t->data)[i] = (int32_t)ln_rng_below(&rng, (uint64_t)vocab);
    return t;
}
