/* HDF5 checkpoints: round trip, directory scanning, the errors a user meets, and the promise that
 * a failed save never touches the previous checkpoint (also of atomic_file.h on its own). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoints/atomic_file.h"
#include "checkpoints/checkpoint.h"
#include "testing.h"

/* One test_tmpdir() per suite (kept in a global, removed at the end), a fresh folder per test. */
static const char *suite_dir;

static int suite_setup(void **state) {
    suite_dir = test_tmpdir();
    return suite_dir ? 0 : -1;
}

static int suite_teardown(void **state) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", suite_dir);
    return test_system(cmd, NULL) == 0 ? 0 : -1;
}

static const char *fresh_dir(void) {
    static char dir[512];
    static int n;
    snprintf(dir, sizeof dir, "%s/%d", suite_dir, n++);
    if (mkdir(dir, 0755) != 0) fail_msg("cannot make %s", dir);
    return dir;
}

/* A deterministic bit pattern filling every byte (so a dtype-converting read would show). */
static void fill_bits(ln_tensor *t, uint32_t seed) {
    unsigned char *p = t->data;
    size_t n = (size_t)t->numel * ln_dtype_size(t->dtype);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (unsigned char)x;
    }
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Whole file as bytes, for byte-identity checks. */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static void touch(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle)) fail_msg("'%s' does not contain '%s'", haystack, needle);
}

/* A small model-like checkpoint: tensors of every stored dtype, nested dotted names, a 0-dim, a
 * 3-D and an empty tensor. */
enum { N_FIXTURE = 7 };
typedef struct {
    ln_named_tensor named[N_FIXTURE];
    ln_checkpoint ck;
} fixture;

static const char *fixture_names[N_FIXTURE] = {
    "params/embed.weight",          "params/layers.0.attn.wq", "params/layers.0.norm.scale",
    "optim/m/layers.0.attn.wq",     "optim/v/layers.0.attn.wq", "params/layers.1.mask",
    "params/layers.1.empty.bias",
};

static void fixture_make(fixture *f, bool fill) {
    static const ln_dtype dtypes[N_FIXTURE] = {LN_F32, LN_F64, LN_F32, LN_I32, LN_BF16, LN_U8, LN_F32};
    static const int ndims[N_FIXTURE] = {2, 3, 0, 1, 3, 2, 2};
    static const int64_t shapes[N_FIXTURE][3] = {{5, 3}, {2, 3, 4}, {0}, {7}, {2, 3, 4}, {4, 4}, {0, 3}};
    memset(f, 0, sizeof *f);
    for (int i = 0; i < N_FIXTURE; i++) {
        f->named[i].name = fixture_names[i];
        f->named[i].tensor = ln_tensor_new(dtypes[i], LN_CPU, ndims[i], shapes[i]);
        assert_tensor(f->named[i].tensor);
        if (fill) fill_bits(f->named[i].tensor, (uint32_t)i + 1);
    }
    f->ck.n_tensors = N_FIXTURE;
    f->ck.tensors = f->named;
    if (fill) {
        f->ck.step = 1234567890123LL;
        f->ck.rng_state[0] = 0x0123456789abcdefULL, f->ck.rng_state[1] = UINT64_MAX;
        f->ck.rng_state[2] = 0, f->ck.rng_state[3] = 42;
        f->ck.n_cursor = 3;
        f->ck.loader_cursor[0] = 7, f->ck.loader_cursor[1] = -1, f->ck.loader_cursor[2] = INT64_MAX;
        f->ck.recipe_yaml = "model:\n  d_model: 64\n  attention: gla  # ünïcode\nseed: 7\n";
    }
}

static void fixture_free(fixture *f) {
    for (int i = 0; i < N_FIXTURE; i++) ln_tensor_free(f->named[i].tensor);
}

/* A good checkpoint at dir/name; returns its path (static buffer). */
static const char *save_fixture(const char *dir, const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fixture f;
    fixture_make(&f, true);
    assert_ok(ln_checkpoint_save(path, &f.ck));
    fixture_free(&f);
    return path;
}

static void round_trip_is_bitwise(void **state) {
    const char *dir = fresh_dir();
    char path[512], tmp[520];
    ln_checkpoint_path(dir, 100, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fixture a, b;
    fixture_make(&a, true);
    fixture_make(&b, false);
    assert_ok(ln_checkpoint_save(path, &a.ck));
    assert_true(file_exists(path));
    assert_false(file_exists(tmp));

    assert_ok(ln_checkpoint_load(path, &b.ck));
    for (int i = 0; i < N_FIXTURE; i++) {
        const ln_tensor *x = a.named[i].tensor, *y = b.named[i].tensor;
        size_t bytes = (size_t)x->numel * ln_dtype_size(x->dtype);
        if (bytes && memcmp(x->data, y->data, bytes) != 0) fail_msg("%s differs after the round trip", fixture_names[i]);
    }
    assert_int_equal(b.ck.step, a.ck.step);
    assert_memory_equal(b.ck.rng_state, a.ck.rng_state, sizeof a.ck.rng_state);
    assert_int_equal(b.ck.n_cursor, 3);
    assert_memory_equal(b.ck.loader_cursor, a.ck.loader_cursor, 3 * sizeof(int64_t));
    assert_non_null(b.ck.recipe_yaml);
    assert_string_equal(b.ck.recipe_yaml, a.ck.recipe_yaml);
    free(b.ck.recipe_yaml);

    char *yaml = NULL;
    assert_ok(ln_checkpoint_read_recipe(path, &yaml));
    assert_string_equal(yaml, a.ck.recipe_yaml);
    free(yaml);
    fixture_free(&a);
    fixture_free(&b);
}

static void save_replaces_and_ignores_stale_tmp(void **state) {
    const char *dir = fresh_dir();
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    save_fixture(dir, "ckpt.h5");
    FILE *junk = fopen(tmp, "w"); /* what a crash mid-save leaves behind */
    fputs("half a checkpoint", junk);
    fclose(junk);

    ln_tensor *t = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){2});
    ln_set(t, 0, 1.5), ln_set(t, 1, -2.5);
    ln_named_tensor nt = {"w", t};
    ln_checkpoint ck = {.n_tensors = 1, .tensors = &nt, .step = 9, .n_cursor = 0, .recipe_yaml = NULL};
    assert_ok(ln_checkpoint_save(path, &ck));
    assert_false(file_exists(tmp));

    ln_tensor *u = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){2});
    ln_named_tensor nu = {"w", u};
    ln_checkpoint back = {.n_tensors = 1, .tensors = &nu, .n_cursor = 5};
    assert_ok(ln_checkpoint_load(path, &back));
    assert_int_equal(back.step, 9);
    assert_int_equal(back.n_cursor, 0);
    assert_true(ln_get(u, 0) == 1.5 && ln_get(u, 1) == -2.5);
    assert_string_equal(back.recipe_yaml, "");
    free(back.recipe_yaml);
    ln_tensor_free(t);
    ln_tensor_free(u);
}

static void path_format(void **state) {
    char path[64];
    ln_checkpoint_path("runs/a", 100, path, sizeof path);
    assert_string_equal(path, "runs/a/step-00000100.h5");
    ln_checkpoint_path("d", 123456789, path, sizeof path);
    assert_string_equal(path, "d/step-123456789.h5");
}

static void find_latest_picks_highest_step(void **state) {
    const char *dir = fresh_dir();
    char path[512], want[512], sub[512];
    assert_int_equal(ln_checkpoint_find_latest(dir, path, sizeof path), LN_ERR);
    assert_contains(ln_error_message(), "no checkpoint in");
    assert_contains(ln_error_message(), dir);

    touch(dir, "step-00000005.h5");
    touch(dir, "step-00000100.h5");
    touch(dir, "step-00000020.h5");
    touch(dir, "step-00000999.h5.tmp"); /* an interrupted save */
    touch(dir, "step-abc.h5");
    touch(dir, "step-.h5");
    touch(dir, "step-00000500.h5.bak");
    touch(dir, "step-99999999999999999999999.h5"); /* does not fit an int64 */
    touch(dir, "notes.txt");
    snprintf(sub, sizeof sub, "%s/step-00007000.h5", dir); /* a directory is not a checkpoint */
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_ok(ln_checkpoint_find_latest(dir, path, sizeof path));
    ln_checkpoint_path(dir, 100, want, sizeof want);
    assert_string_equal(path, want);

    assert_int_equal(ln_checkpoint_find_latest("/nonexistent/linnet-dir", path, sizeof path), LN_ERR);
    assert_contains(ln_error_message(), "/nonexistent/linnet-dir");
}

static void prune_keeps_newest(void **state) {
    const char *dir = fresh_dir();
    char path[512];
    for (int s = 1; s <= 5; s++) {
        char name[64];
        snprintf(name, sizeof name, "step-%08d.h5", s * 10);
        touch(dir, name);
    }
    touch(dir, "step-00000060.h5.tmp");
    touch(dir, "notes.txt");

    assert_ok(ln_checkpoint_prune(dir, 0)); /* keep all */
    for (int s = 1; s <= 5; s++) {
        ln_checkpoint_path(dir, s * 10, path, sizeof path);
        assert_true(file_exists(path));
    }
    assert_ok(ln_checkpoint_prune(dir, 2));
    for (int s = 1; s <= 5; s++) {
        ln_checkpoint_path(dir, s * 10, path, sizeof path);
        if (file_exists(path) != (s >= 4)) fail_msg("after prune(2), step %d %s", s * 10, s >= 4 ? "is gone" : "remains");
    }
    snprintf(path, sizeof path, "%s/step-00000060.h5.tmp", dir);
    assert_true(file_exists(path));
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    assert_true(file_exists(path));
    assert_ok(ln_checkpoint_prune(dir, 10)); /* more than there are: nothing to do */
    ln_checkpoint_path(dir, 40, path, sizeof path);
    assert_true(file_exists(path));
    assert_int_equal(ln_checkpoint_prune(dir, -1), LN_ERR);
}

static void missing_file_is_an_error(void **state) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/nope.h5", dir);
    fixture f;
    fixture_make(&f, false);
    assert_int_equal(ln_checkpoint_load(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), path);
    assert_null(strchr(ln_error_message(), '\n'));
    char *yaml = (char *)"untouched";
    assert_int_equal(ln_checkpoint_read_recipe(path, &yaml), LN_ERR);
    assert_null(yaml);
    fixture_free(&f);
}

static void truncated_file_is_an_error(void **state) {
    const char *dir = fresh_dir();
    const char *path = save_fixture(dir, "ckpt.h5");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    fixture f;
    fixture_make(&f, false);
    assert_int_equal(ln_checkpoint_load(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), path);
    assert_null(strchr(ln_error_message(), '\n'));

    /* Not HDF5 at all. */
    FILE *txt = fopen(path, "w");
    fputs("model: {}\n", txt);
    fclose(txt);
    assert_int_equal(ln_checkpoint_load(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), "not an HDF5 file");
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(ln_checkpoint_load(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), path);
    fixture_free(&f);
}

static void foreign_hdf5_is_an_error(void **state) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/foreign.h5", dir);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    hsize_t dims[2] = {5, 3};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dset = H5Dcreate2(file, "params/embed.weight", H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(dset >= 0);
    H5Dclose(dset);
    H5Pclose(lcpl);
    H5Sclose(space);
    H5Fclose(file);

    ln_tensor *t = ln_tensor_new(LN_F32, LN_CPU, 2, (int64_t[]){5, 3});
    ln_named_tensor nt = {"params/embed.weight", t};
    ln_checkpoint ck = {.n_tensors = 1, .tensors = &nt};
    assert_int_equal(ln_checkpoint_load(path, &ck), LN_ERR);
    assert_contains(ln_error_message(), path);
    assert_contains(ln_error_message(), "not a linnet checkpoint");
    char *yaml = NULL;
    assert_int_equal(ln_checkpoint_read_recipe(path, &yaml), LN_ERR);
    assert_contains(ln_error_message(), "not a linnet checkpoint");

    /* Another tool's format attribute (a fixed-length string, as many writers use). */
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(file >= 0);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 10);
    space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(file, "format", str, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(attr >= 0);
    assert_true(H5Awrite(attr, str, "other-tool") >= 0);
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(str);
    H5Fclose(file);
    assert_int_equal(ln_checkpoint_load(path, &ck), LN_ERR);
    assert_contains(ln_error_message(), "not a linnet checkpoint (root attribute format is 'other-tool')");
    ln_tensor_free(t);
}

static void shape_mismatch_names_both_shapes(void **state) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    ln_tensor *small = ln_tensor_new(LN_F32, LN_CPU, 2, (int64_t[]){64, 32});
    ln_tensor *emb = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){4});
    fill_bits(small, 3);
    fill_bits(emb, 4);
    ln_named_tensor saved[2] = {{"params/a.emb", emb}, {"params/wq", small}};
    ln_checkpoint ck = {.n_tensors = 2, .tensors = saved, .n_cursor = 1};
    assert_ok(ln_checkpoint_save(path, &ck));

    ln_tensor *big = ln_tensor_new(LN_F32, LN_CPU, 2, (int64_t[]){128, 32});
    ln_tensor *emb2 = ln_tensor_new(LN_F32, LN_CPU, 1, (int64_t[]){4});
    ln_named_tensor want[2] = {{"params/a.emb", emb2}, {"params/wq", big}};
    ln_checkpoint load = {.n_tensors = 2, .tensors = want};
    assert_int_equal(ln_checkpoint_load(path, &load), LN_ERR);
    const char *msg = ln_error_message();
    assert_contains(msg, path);
    assert_contains(msg, "params/wq");
    assert_contains(msg, "[64, 32]");
    assert_contains(msg, "[128, 32]");
    /* Nothing is read before everything is checked: the model is left as it was. */
    for (int i = 0; i < 4; i++) assert_true(ln_get(emb2, i) == 0.0);
    assert_null(load.recipe_yaml);

    /* Same shape, another dtype. */
    ln_tensor *f64 = ln_tensor_new(LN_F64, LN_CPU, 2, (int64_t[]){64, 32});
    want[1].tensor = f64;
    assert_int_equal(ln_checkpoint_load(path, &load), LN_ERR);
    assert_contains(ln_error_message(), "params/wq is f32, the model expects f64");
    /* A 0-dim tensor against a 1-D dataset. */
    ln_tensor *scalar = ln_tensor_new(LN_F32, LN_CPU, 0, (int64_t[]){0}); /* tensor.c memcpy()s shape even at 0 dims */
    want[1].tensor = scalar;
    assert_int_equal(ln_checkpoint_load(path, &load), LN_ERR);
    assert_contains(ln_error_message(), "the model expects []");
    ln_tensor_free(small), ln_tensor_free(emb), ln_tensor_free(big), ln_tensor_free(emb2);
    ln_tensor_free(f64), ln_tensor_free(scalar);
}

static void missing_dataset_is_named(void **state) {
    const char *dir = fresh_dir();
    const char *path = save_fixture(dir, "ckpt.h5");
    fixture f;
    fixture_make(&f, false);
    const char *names[] = {"params/layers.7.attn.wq", "params/nothere", "optim/m/embed.weight", "nogroup/x/y"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        f.named[2].name = names[k];
        assert_int_equal(ln_checkpoint_load(path, &f.ck), LN_ERR);
        assert_contains(ln_error_message(), path);
        assert_contains(ln_error_message(), names[k]);
    }
    /* A group where a tensor is expected. */
    f.named[2].name = "params";
    assert_int_equal(ln_checkpoint_load(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), "params");
    fixture_free(&f);
}

/* A save that fails must leave the file at path exactly as it was. */
static void failed_save_keeps_old_file(void **state) {
    const char *dir = fresh_dir();
    const char *p = save_fixture(dir, "ckpt.h5");
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s", p);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t n_before, n_after;
    unsigned char *before = read_bytes(path, &n_before);
    assert_non_null(before);

    fixture f;
    fixture_make(&f, true);
    f.ck.step = 999;

    /* 1. The temporary file cannot be created. */
    assert_int_equal(mkdir(tmp, 0755), 0);
    assert_int_equal(ln_checkpoint_save(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), path);
    assert_null(strchr(ln_error_message(), '\n'));
    struct stat sb;
    assert_int_equal(stat(tmp, &sb), 0); /* not ours to remove */
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(rmdir(tmp), 0);

    /* 2. A NULL tensor. */
    ln_tensor *keep = f.named[3].tensor;
    f.named[3].tensor = NULL;
    assert_int_equal(ln_checkpoint_save(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), fixture_names[3]);
    assert_false(file_exists(tmp));
    f.named[3].tensor = keep;

    /* 3. Failing midway through the write (a duplicate name): the half-written .tmp goes away. */
    f.named[4].name = f.named[1].name;
    assert_int_equal(ln_checkpoint_save(path, &f.ck), LN_ERR);
    assert_contains(ln_error_message(), f.named[1].name);
    assert_false(file_exists(tmp));
    f.named[4].name = fixture_names[4];

    /* 4. Reserved and malformed names. */
    const char *bad[] = {"state/rng", "recipe", "/abs", "a//b", "a/./b", "trailing/", ""};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        f.named[0].name = bad[k];
        if (ln_checkpoint_save(path, &f.ck) != LN_ERR) fail_msg("saving a tensor named '%s' succeeded", bad[k]);
    }
    f.named[0].name = fixture_names[0];
    f.ck.n_cursor = LN_CKPT_MAX_STATE + 1;
    assert_int_equal(ln_checkpoint_save(path, &f.ck), LN_ERR);

    unsigned char *after = read_bytes(path, &n_after);
    assert_non_null(after);
    assert_int_equal(n_after, n_before);
    assert_memory_equal(after, before, n_before);
    assert_false(file_exists(tmp));

    /* And the old checkpoint still loads. */
    fixture g;
    fixture_make(&g, false);
    assert_ok(ln_checkpoint_load(path, &g.ck));
    assert_int_equal(g.ck.step, 1234567890123LL);
    free(g.ck.recipe_yaml);
    fixture_free(&g);
    fixture_free(&f);
    free(before);
    free(after);
}

/* The atomic replace on its own, with a plain stdio writer (what non-HDF5 writers will do). */
static void atomic_file_replaces_or_keeps(void **state) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    touch(dir, "out.bin"); /* "x" */
    ln_atomic_file f;
    size_t n = 0;

    assert_ok(ln_atomic_begin(&f, path)); /* commit: the new bytes at path, no .tmp left */
    char tmp[520];
    snprintf(tmp, sizeof tmp, "%s", f.tmp);
    assert_int_equal(strcmp(tmp + strlen(path), ".tmp"), 0);
    FILE *out = fopen(f.tmp, "w");
    assert_non_null(out);
    fputs("new", out);
    fclose(out);
    assert_ok(ln_atomic_commit(&f));
    unsigned char *got = read_bytes(path, &n);
    assert_true(got && n == 3 && memcmp(got, "new", 3) == 0);
    free(got);
    assert_false(file_exists(tmp));

    assert_ok(ln_atomic_begin(&f, path)); /* abort: path as it was, the .tmp removed */
    out = fopen(f.tmp, "w");
    assert_non_null(out);
    fputs("half", out);
    fclose(out);
    ln_atomic_abort(&f, true);
    got = read_bytes(path, &n);
    assert_true(got && n == 3 && memcmp(got, "new", 3) == 0);
    free(got);
    assert_false(file_exists(tmp));

    snprintf(path, sizeof path, "%s/sub", dir); /* a failed rename (onto a non-empty directory) */
    assert_int_equal(mkdir(path, 0755), 0);
    touch(path, "keep");
    assert_ok(ln_atomic_begin(&f, path));
    snprintf(tmp, sizeof tmp, "%s", f.tmp);
    touch(dir, "sub.tmp");
    assert_int_equal(ln_atomic_commit(&f), LN_ERR);
    assert_contains(ln_error_message(), "cannot rename");
    assert_false(file_exists(tmp));
}

static void cursor_limit_on_load(void **state) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/big-cursor.h5", dir);
    ln_checkpoint ck = {.n_cursor = 2};
    assert_ok(ln_checkpoint_save(path, &ck));
    /* Grow state/loader_cursor past the limit with the plain HDF5 API. */
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(file >= 0);
    assert_true(H5Ldelete(file, "state/loader_cursor", H5P_DEFAULT) >= 0);
    hsize_t n = LN_CKPT_MAX_STATE + 1;
    int64_t zeros[LN_CKPT_MAX_STATE + 1] = {0};
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t dset = H5Dcreate2(file, "state/loader_cursor", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(dset >= 0);
    assert_true(H5Dwrite(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
    H5Dclose(dset);
    H5Sclose(space);
    H5Fclose(file);
    ln_checkpoint back = {0};
    assert_int_equal(ln_checkpoint_load(path, &back), LN_ERR);
    assert_contains(ln_error_message(), "state/loader_cursor");
}

/* Standard HDF5 tools read the file: the format is not ours alone. */
static void h5dump_reads_it(void **state) {
    if (test_system("command -v h5dump", "/dev/null") != 0) skip();
    const char *dir = fresh_dir();
    const char *path = save_fixture(dir, "ckpt.h5");
    char cmd[1200], log[520];
    snprintf(log, sizeof log, "%s/h5dump.log", dir);
    snprintf(cmd, sizeof cmd, "h5dump -H '%s'", path);
    assert_int_equal(test_system(cmd, log), 0);
    char *out = test_read_file(log);
    assert_non_null(out);
    assert_contains(out, "GROUP \"params\"");
    assert_contains(out, "DATASET \"layers.0.attn.wq\"");
    assert_contains(out, "H5T_IEEE_F64LE");
    assert_contains(out, "DATASPACE  SIMPLE { ( 2, 3, 4 ) / ( 2, 3, 4 ) }");
    assert_contains(out, "ATTRIBUTE \"format\"");
    assert_contains(out, "DATASET \"loader_cursor\"");
    free(out);
    /* The root attribute's value, too. */
    snprintf(cmd, sizeof cmd, "h5dump -a /format '%s'", path);
    assert_int_equal(test_system(cmd, log), 0);
    out = test_read_file(log);
    assert_contains(out, "linnet-checkpoint");
    free(out);
}

/* Runs last: every file and object handle the library opened, on success or failure, is closed. */
static void no_hdf5_handles_left(void **state) {
    ssize_t open_ids = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) fail_msg("%zd HDF5 handles are still open", open_ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_is_bitwise),
        cmocka_unit_test(save_replaces_and_ignores_stale_tmp),
        cmocka_unit_test(path_format),
        cmocka_unit_test(find_latest_picks_highest_step),
        cmocka_unit_test(prune_keeps_newest),
        cmocka_unit_test(missing_file_is_an_error),
        cmocka_unit_test(truncated_file_is_an_error),
        cmocka_unit_test(foreign_hdf5_is_an_error),
        cmocka_unit_test(shape_mismatch_names_both_shapes),
        cmocka_unit_test(missing_dataset_is_named),
        cmocka_unit_test(failed_save_keeps_old_file),
        cmocka_unit_test(atomic_file_replaces_or_keeps),
        cmocka_unit_test(cursor_limit_on_load),
        cmocka_unit_test(h5dump_reads_it),
        cmocka_unit_test(no_hdf5_handles_left),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
