/* `linnet op`: files written with the HDF5 C API (as h5py would), the binary run on them, and
 * its outputs and gradients compared with calling the ops directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops_linear.h"
#include "cli/op_registry.h"
#include "testing.h"

/* ---- raw HDF5 helpers (independent of the reader under test) ---- */

static void write_ds(hid_t f, const char *name, const ln_tensor *t, hid_t file_type) {
    hsize_t dims[LN_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
    hid_t space = H5Screate_simple(t->ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t mem = t->dtype == LN_F64 ? H5T_NATIVE_DOUBLE : t->dtype == LN_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
    assert_true(d >= 0 && H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0);
    H5Dclose(d);
    H5Sclose(space);
}

/* t's values rounded to bf16 as a uint16 dataset tagged dtype = "bf16" the way h5py writes it (a
 * variable-length UTF-8 string) or, utf8 false, as a fixed-length ASCII string */
static void write_bf16_ds(hid_t f, const char *name, const ln_tensor *t, bool utf8) {
    hsize_t dims[LN_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
    uint16_t *bits = malloc((size_t)t->numel * sizeof *bits);
    for (int64_t i = 0; i < t->numel; i++) {
        float x = (float)ln_get(t, i);
        uint32_t u;
        memcpy(&u, &x, 4);
        bits[i] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    }
    hid_t space = H5Screate_simple(t->ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_STD_U16LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits) >= 0);
    hid_t st = H5Tcopy(H5T_C_S1), scalar = H5Screate(H5S_SCALAR);
    H5Tset_size(st, utf8 ? H5T_VARIABLE : 5);
    H5Tset_cset(st, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
    hid_t a = H5Acreate2(d, "dtype", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const char *tag = "bf16";
    assert_true(a >= 0 && H5Awrite(a, st, utf8 ? (const void *)&tag : (const void *)tag) >= 0);
    H5Aclose(a);
    H5Sclose(scalar);
    H5Tclose(st);
    H5Dclose(d);
    H5Sclose(space);
    free(bits);
}

static void write_attr(hid_t f, const char *name, double v) {
    hid_t space = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    H5Sclose(space);
}

/* dataset `name` of path as an f64 tensor; *bytes gets the stored element size */
static ln_tensor *read_ds(const char *path, const char *name, size_t *bytes) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fail_msg("cannot open %s", path);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) fail_msg("%s has no dataset %s", path, name);
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    hsize_t dims[LN_MAX_DIMS];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    int64_t shape[LN_MAX_DIMS];
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
    ln_tensor *t = ln_tensor_new(LN_F64, LN_CPU, nd, shape);
    assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0);
    if (bytes) *bytes = H5Tget_size(type);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    return t;
}

static ln_tensor *randn(int ndim, const int64_t *shape, uint64_t seed) {
    ln_tensor *t = ln_randn_f64(ndim, shape, seed);
    if (!t) fail_msg("randn: %s", ln_error_message());
    return t;
}

static void to_log_decay(ln_tensor *g) {
    for (int64_t i = 0; i < g->numel; i++) ln_set(g, i, -log1p(exp(-ln_get(g, i))));
}

static int run_linnet(const char *args, const char *log) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s op %s", test_linnet_bin(), args);
    return test_system(cmd, log);
}

static void assert_close(const ln_tensor *a, const ln_tensor *b, double tol, const char *what) {
    double e = test_rel_error(a, b);
    if (!(e <= tol)) fail_msg("%s: relative error %.3g > %.1g", what, e, tol);
}

/* ---- gla through the binary == gla called directly ---- */

static void op_gla_matches_direct_call(void **state) {
    const int64_t B = 2, T = 70, H = 2, K = 4, V = 3;
    const char *dir = test_tmpdir();
    char in_path[600], dy_path[600], out_path[600], args[2048];
    snprintf(in_path, sizeof in_path, "%s/in.h5", dir);
    snprintf(dy_path, sizeof dy_path, "%s/dy.h5", dir);
    snprintf(out_path, sizeof out_path, "%s/out.h5", dir);
    ln_tensor *in[5] = {randn(4, (int64_t[]){B, T, H, K}, 1), randn(4, (int64_t[]){B, T, H, K}, 2),
                        randn(4, (int64_t[]){B, T, H, V}, 3), randn(4, (int64_t[]){B, T, H, K}, 4),
                        randn(4, (int64_t[]){B, H, K, V}, 5)};
    to_log_decay(in[3]);
    ln_tensor *dout = randn(4, (int64_t[]){B, T, H, V}, 6), *dht = randn(4, (int64_t[]){B, H, K, V}, 7);
    static const char *names[] = {"q", "k", "v", "g", "h0"};
    hid_t f = H5Fcreate(in_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    for (int i = 0; i < 5; i++) write_ds(f, names[i], in[i], H5T_IEEE_F64LE);
    write_attr(f, "scale", 0.4);
    write_attr(f, "chunk_size", 64);
    H5Fclose(f);
    f = H5Fcreate(dy_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "do", dout, H5T_IEEE_F64LE);
    write_ds(f, "dht", dht, H5T_IEEE_F64LE);
    H5Fclose(f);
    snprintf(args, sizeof args, "gla --in %s --out %s --grad-out %s", in_path, out_path, dy_path);
    assert_int_equal(run_linnet(args, NULL), 0);

    /* the same through the API: the recurrent reference, so the CLI's chunked run is checked too */
    ln_tensor *ht = NULL;
    ln_tensor *o = ln_gla(in[0], in[1], in[2], in[3], &(ln_gla_opts){.h0 = in[4], .scale = 0.4, .want_final_state = true}, &ht);
    assert_tensor(o);
    assert_ok(ln_tensor_copy(ln_grad_of(ht), dht));
    assert_ok(ln_backward_from(o, dout));
    size_t bytes;
    ln_tensor *got = read_ds(out_path, "o", &bytes);
    assert_int_equal(bytes, 8);
    assert_close(got, o, 1e-12, "o");
    ln_tensor_free(got);
    got = read_ds(out_path, "ht", NULL);
    assert_close(got, ht, 1e-12, "ht");
    ln_tensor_free(got);
    for (int i = 0; i < 5; i++) {
        char dname[8];
        snprintf(dname, sizeof dname, "d%s", names[i]);
        got = read_ds(out_path, dname, NULL);
        assert_close(got, in[i]->grad, 1e-11, dname);
        ln_tensor_free(got);
    }
    ln_tape_clear();
    for (int i = 0; i < 5; i++) ln_tensor_free(in[i]);
    ln_tensor_free(dout);
    ln_tensor_free(dht);
}

/* bf16 inputs as h5py tags them (UTF-8) and as C code may (ASCII): read as bf16, run in bf16,
 * written as float32; the same as the op on the same bf16 values, called directly */
static void op_reads_tagged_bf16(void **state) {
    const char *dir = test_tmpdir();
    char in_path[600], out_path[600], args[2048];
    snprintf(in_path, sizeof in_path, "%s/in16.h5", dir);
    snprintf(out_path, sizeof out_path, "%s/out16.h5", dir);
    ln_tensor *x64 = randn(3, (int64_t[]){1, 9, 3}, 21), *w64 = randn(2, (int64_t[]){3, 4}, 22);
    hid_t f = H5Fcreate(in_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_bf16_ds(f, "x", x64, true);
    write_bf16_ds(f, "weight", w64, false);
    H5Fclose(f);
    snprintf(args, sizeof args, "short_conv --in %s --out %s", in_path, out_path);
    assert_int_equal(run_linnet(args, NULL), 0);
    ln_tensor *x = ln_tensor_new(LN_BF16, LN_CPU, 3, x64->shape), *w = ln_tensor_new(LN_BF16, LN_CPU, 2, w64->shape);
    ln_tensor_copy(x, x64);
    ln_tensor_copy(w, w64);
    ln_tensor *y = ln_short_conv(x, w, NULL, NULL);
    assert_tensor(y);
    size_t bytes;
    ln_tensor *got = read_ds(out_path, "y", &bytes);
    assert_int_equal(bytes, 4); /* bf16 results are written as float32 */
    assert_close(got, y, 0, "y");
    ln_tensor_free(got);
    ln_tape_clear();
    ln_tensor *all[] = {x64, w64, x, w};
    for (int i = 0; i < 4; i++) ln_tensor_free(all[i]);
}

/* float32 files give float32 outputs; int64 cu_seqlens (numpy's default) are read as offsets */
static void op_short_conv_f32_and_int64_offsets(void **state) {
    const char *dir = test_tmpdir();
    char in_path[600], out_path[600], args[2048];
    snprintf(in_path, sizeof in_path, "%s/in.h5", dir);
    snprintf(out_path, sizeof out_path, "%s/out.h5", dir);
    ln_tensor *x64 = randn(3, (int64_t[]){1, 9, 3}, 11), *w64 = randn(2, (int64_t[]){3, 4}, 12);
    ln_tensor *x = ln_tensor_new(LN_F32, LN_CPU, 3, x64->shape), *w = ln_tensor_new(LN_F32, LN_CPU, 2, w64->shape);
    ln_tensor_copy(x, x64);
    ln_tensor_copy(w, w64);
    ln_tensor *cu = ln_tensor_new(LN_I32, LN_CPU, 1, (int64_t[]){3});
    int32_t cuv[3] = {0, 4, 9};
    memcpy(cu->data, cuv, sizeof cuv);
    hid_t f = H5Fcreate(in_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "x", x, H5T_IEEE_F32LE);
    write_ds(f, "weight", w, H5T_IEEE_F32LE);
    write_ds(f, "cu_seqlens", cu, H5T_STD_I64LE);
    H5Fclose(f);
    snprintf(args, sizeof args, "short_conv --in %s --out %s", in_path, out_path);
    assert_int_equal(run_linnet(args, NULL), 0);
    ln_tensor *y = ln_short_conv(x, w, NULL, cu);
    assert_tensor(y);
    size_t bytes;
    ln_tensor *got = read_ds(out_path, "y", &bytes);
    assert_int_equal(bytes, 4);
    assert_close(got, y, 1e-7, "y");
    ln_tensor_free(got);
    ln_tape_clear();
    ln_tensor *all[] = {x64, w64, x, w, cu};
    for (int i = 0; i < 5; i++) ln_tensor_free(all[i]);
}

/* ---- bad input: non-zero exit, one line naming the file and dataset ---- */

static void expect_error(const char *args, const char *needle) {
    const char *dir = test_tmpdir();
    char log[600];
    snprintf(log, sizeof log, "%s/err.txt", dir);
    assert_int_not_equal(run_linnet(args, log), 0);
    char *msg = test_read_file(log);
    assert_non_null(msg);
    if (!strstr(msg, needle)) fail_msg("expected '%s' in: %s", needle, msg);
    char *nl = strchr(msg, '\n');
    assert_true(nl == NULL || nl[1] == '\0'); /* one line */
    free(msg);
}

static void op_bad_inputs_fail_with_one_line(void **state) {
    const char *dir = test_tmpdir();
    char in_path[600], out_path[600], args[2048];
    snprintf(in_path, sizeof in_path, "%s/in.h5", dir);
    snprintf(out_path, sizeof out_path, "%s/out.h5", dir);
    ln_tensor *q = randn(4, (int64_t[]){1, 5, 2, 4}, 21), *kbad = randn(4, (int64_t[]){1, 5, 2, 3}, 22);
    hid_t f = H5Fcreate(in_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_ds(f, "q", q, H5T_IEEE_F64LE);
    write_ds(f, "k", kbad, H5T_IEEE_F64LE);
    write_ds(f, "v", q, H5T_IEEE_F64LE);
    H5Fclose(f);
    snprintf(args, sizeof args, "gla --in %s --out %s", in_path, out_path);
    expect_error(args, "no dataset g");
    snprintf(args, sizeof args, "linear_attention --in %s --out %s", in_path, out_path);
    expect_error(args, "k [1, 5, 2, 3]");
    snprintf(args, sizeof args, "gla --in %s/missing.h5 --out %s", dir, out_path);
    expect_error(args, "missing.h5");
    snprintf(args, sizeof args, "nope --in %s --out %s", in_path, out_path);
    expect_error(args, "unknown op 'nope'");
    snprintf(args, sizeof args, "softmax --in %s --out %s --grad-out %s", in_path, out_path, in_path);
    expect_error(args, "no dataset x");
#ifndef LINNET_CUDA
    snprintf(args, sizeof args, "softmax --in %s --out %s --device cuda", in_path, out_path);
    expect_error(args, "without CUDA");
#endif
    ln_tensor_free(q);
    ln_tensor_free(kbad);
}

/* every registered op is documented in docs/ops.md */
static void every_registered_op_is_documented(void **state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/ops.md", test_source_dir());
    char *doc = test_read_file(path);
    assert_non_null(doc);
    for (int i = 0; i < cli_op_count(); i++) {
        char heading[96];
        snprintf(heading, sizeof heading, "## %s\n", cli_op_at(i)->name);
        if (!strstr(doc, heading)) fail_msg("docs/ops.md has no section '## %s'", cli_op_at(i)->name);
    }
    free(doc);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(op_gla_matches_direct_call),
        cmocka_unit_test(op_short_conv_f32_and_int64_offsets),
        cmocka_unit_test(op_reads_tagged_bf16),
        cmocka_unit_test(op_bad_inputs_fail_with_one_line),
        cmocka_unit_test(every_registered_op_is_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
