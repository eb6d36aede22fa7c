/* Helpers shared by the cmocka suites. Include after <setjmp.h>, <stdarg.h>, <stddef.h>, <cmocka.h>. */
#ifndef LN_TESTING_H
#define LN_TESTING_H

#include "autograd/error.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "recipes/config.h"

/* Fails the test with linnet's error message when status is not LN_OK. */
#define assert_ok(expr)                                                                          \
    do {                                                                                         \
        if ((expr) != LN_OK) fail_msg("%s failed: %s", #expr, ln_error_message());               \
    } while (0)
#define assert_tensor(t)                                                                         \
    do {                                                                                         \
        if (!(t)) fail_msg("%s is NULL: %s", #t, ln_error_message());                            \
    } while (0)

/* The exit status of a suite that could not run here: ctest's SKIP_RETURN_CODE
 * (tests/CMakeLists.txt), so the summary counts it skipped. */
#define TEST_SKIPPED 77
/* Prints "SKIPPED: <why>" and returns TEST_SKIPPED (for main). */
int test_skip_suite(const char *why);

/* Gradient check with the suites' usual step and tolerance. */
#define assert_gradcheck(fn, ctx, n, inputs) assert_ok(ln_gradcheck(fn, ctx, n, inputs, 1e-6, 1e-6))

/* A fresh temporary directory (mkdtemp under TMPDIR); the string is static (8 slots, reused). */
const char *test_tmpdir(void);
/* Runs a shell command; returns its exit status (-1 when killed by a signal). Output goes to
 * the file `log` when non-NULL. */
int test_system(const char *cmd, const char *log);
/* The linnet binary under test (LINNET_BIN) and the source tree (LINNET_SOURCE_DIR). */
const char *test_linnet_bin(void);
const char *test_source_dir(void);
/* Whole-file read into a malloc'd NUL-terminated string (NULL when missing). */
char *test_read_file(const char *path);
/* A small model's recipe: vocabulary 32, two layers, these widths; every other key its default. */
ln_config test_small_config(int d_model, int n_heads, int n_kv_heads, int mlp_hidden);
/* Token ids i32 [B, T], uniform in [0, vocab), from seed (a caller-owned CPU tensor). */
ln_tensor *test_random_ids(int64_t B, int64_t T, int vocab, uint64_t seed);
/* Relative difference ||a - b|| / ||b|| of two CPU tensors, in double. */
double test_rel_error(const ln_tensor *a, const ln_tensor *b);

#endif
