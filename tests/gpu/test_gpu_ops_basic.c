/* The core ops' CUDA kernels against the CPU path: matmul, add/mul/scale, div_rows, concat_last,
 * gelu/swiglu, sum/mean/sum_last, embedding, softmax and cross-entropy, forward and backward, f32
 * and bf16, on awkward
 * sizes (not multiples of 32 or 128). Plus run-to-run determinism and out-of-range ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_context.h"
#include "autograd/memory.h"
#include "autograd/rng.h"
#include "gpu/gpu_testing.h"
#include "testing.h"

/* ---- matmul ---- */

typedef struct {
    bool ta, tb;
} mm_ctx;

static ln_tensor *matmul_of(ln_tensor *const *in, void *ctx) {
    const mm_ctx *c = ctx;
    return ln_matmul(in[0], in[1], c->ta, c->tb);
}

/* a [lead..., M, K] (or [..., K, M]), b [lead..., K, N] (or [..., N, K]) or 2-D when shared */
static void check_matmul(const char *what, int lead_dims, const int64_t *lead, bool shared, bool ta, bool tb,
                         uint64_t seed) {
    const int64_t M = 37, K = 130, N = 67;
    int64_t sa[LN_MAX_DIMS], sb[LN_MAX_DIMS];
    for (int i = 0; i < lead_dims; i++) sa[i] = sb[i] = lead[i];
    sa[lead_dims] = ta ? K : M;
    sa[lead_dims + 1] = ta ? M : K;
    int db = shared ? 0 : lead_dims;
    sb[db] = tb ? N : K;
    sb[db + 1] = tb ? K : N;
    ln_tensor *in[2] = {gpu_randn(lead_dims + 2, sa, 1.0, seed), gpu_randn(db + 2, sb, 1.0, seed + 1)};
    mm_ctx c = {ta, tb};
    char name[96];
    snprintf(name, sizeof name, "%s%s%s", what, ta ? " ta" : "", tb ? " tb" : "");
    gpu_check_both(name, matmul_of, &c, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void matmul_matches_cpu(void **state) {
    NEED_GPU();
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        check_matmul("matmul 2-D", 0, NULL, true, ta, tb, 10 + t);
        check_matmul("matmul batched [3]", 1, (int64_t[]){3}, false, ta, tb, 20 + t);
        check_matmul("matmul batched [2,3]", 2, (int64_t[]){2, 3}, false, ta, tb, 30 + t);
        check_matmul("matmul shared b [2,3]", 2, (int64_t[]){2, 3}, true, ta, tb, 40 + t);
    }
}

/* Only one input needs a gradient: the other's stays untouched (and absent). */
static void matmul_one_side_grad(void **state) {
    NEED_GPU();
    ln_tensor *in[2] = {gpu_randn(3, (int64_t[]){3, 37, 130}, 1.0, 50), gpu_randn(2, (int64_t[]){130, 67}, 1.0, 51)};
    mm_ctx c = {false, false};
    in[1]->requires_grad = false;
    gpu_check_both("matmul only da", matmul_of, &c, 2, in);
    in[1]->requires_grad = true;
    in[0]->requires_grad = false;
    gpu_check_both("matmul only db", matmul_of, &c, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

/* ---- elementwise ---- */

static ln_tensor *add_of(ln_tensor *const *in, void *ctx) { return ln_add(in[0], in[1]); }
static ln_tensor *mul_of(ln_tensor *const *in, void *ctx) { return ln_mul(in[0], in[1]); }
static ln_tensor *scale_of(ln_tensor *const *in, void *ctx) { return ln_scale(in[0], -1.7); }

/* a [5, 37, cols], b of nb dims sb */
static void check_binary(const char *what, int64_t cols, int nb, const int64_t *sb, uint64_t seed) {
    ln_tensor *in[2] = {gpu_randn(3, (int64_t[]){5, 37, cols}, 1.0, seed), gpu_randn(nb, sb, 1.0, seed + 1)};
    char name[96];
    snprintf(name, sizeof name, "add %s", what);
    gpu_check_both(name, add_of, NULL, 2, in);
    snprintf(name, sizeof name, "mul %s", what);
    gpu_check_both(name, mul_of, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

static void elementwise_matches_cpu(void **state) {
    NEED_GPU();
    check_binary("same shape", 67, 3, (int64_t[]){5, 37, 67}, 60);
    check_binary("bias [67]", 67, 1, (int64_t[]){67}, 62);
    check_binary("broadcast [37, 67]", 67, 2, (int64_t[]){37, 67}, 64);
    /* sizes in whole 16-byte packs: the packed forward */
    check_binary("same shape, packs", 64, 3, (int64_t[]){5, 37, 64}, 65);
    check_binary("bias [64], packs", 64, 1, (int64_t[]){64}, 66);
    check_binary("broadcast [37, 64], packs", 64, 2, (int64_t[]){37, 64}, 67);
    ln_tensor *x = gpu_randn(2, (int64_t[]){37, 130}, 1.0, 68);
    gpu_check_both("scale", scale_of, NULL, 1, &x);
    ln_tensor_free(x);
}

/* Many rows over a short b: the broadcast gradient's reduction takes its two-pass path. */
static void broadcast_gradient_many_rows(void **state) {
    NEED_GPU();
    ln_tensor *in[2] = {gpu_randn(2, (int64_t[]){20000, 13}, 1.0, 70), gpu_randn(1, (int64_t[]){13}, 1.0, 71)};
    gpu_check_both("add bias, 20000 rows", add_of, NULL, 2, in);
    gpu_check_both("mul gain, 20000 rows", mul_of, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
    /* GLA's gate bias: [rows, 384] + [384], packed */
    in[0] = gpu_randn(2, (int64_t[]){20000, 384}, 1.0, 72);
    in[1] = gpu_randn(1, (int64_t[]){384}, 1.0, 73);
    gpu_check_both("add bias [384], 20000 rows", add_of, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

/* ---- div_rows and concat_last ---- */

static ln_tensor *div_rows_of(ln_tensor *const *in, void *ctx) { return ln_div_rows(in[0], in[1], 1e-6); }
static ln_tensor *concat_of(ln_tensor *const *in, void *ctx) { return ln_concat_last(in[0], in[1]); }
static ln_tensor *concat_self_of(ln_tensor *const *in, void *ctx) { return ln_concat_last(in[0], in[0]); }

/* rows of 67 (over two warp widths), of 5 (fewer than a warp) and of 1 */
static void div_rows_matches_cpu(void **state) {
    NEED_GPU();
    const int64_t widths[] = {67, 5, 1};
    for (int w = 0; w < 3; w++) {
        ln_tensor *in[2] = {gpu_randn(3, (int64_t[]){3, 37, widths[w]}, 1.0, 72 + 2 * w),
                            gpu_randn(3, (int64_t[]){3, 37, 1}, 1.0, 73 + 2 * w)};
        for (int64_t i = 0; i < in[1]->numel; i++) ln_set(in[1], i, 0.2 + fabs(ln_get(in[1], i)));
        char name[64];
        snprintf(name, sizeof name, "div_rows N=%lld", (long long)widths[w]);
        gpu_check_both(name, div_rows_of, NULL, 2, in);
        if (w == 0) {
            in[0]->requires_grad = false;
            gpu_check_both("div_rows (divisor grad only)", div_rows_of, NULL, 2, in);
            in[0]->requires_grad = true;
            in[1]->requires_grad = false;
            gpu_check_both("div_rows (dividend grad only)", div_rows_of, NULL, 2, in);
        }
        ln_tensor_free(in[0]);
        ln_tensor_free(in[1]);
    }
}

static void concat_last_matches_cpu(void **state) {
    NEED_GPU();
    ln_tensor *in[2] = {gpu_randn(3, (int64_t[]){5, 37, 67}, 1.0, 78), gpu_randn(3, (int64_t[]){5, 37, 13}, 1.0, 79)};
    gpu_check_both("concat_last [.., 67] [.., 13]", concat_of, NULL, 2, in);
    gpu_check_both("concat_last (x, x)", concat_self_of, NULL, 1, in);
    in[0]->requires_grad = false;
    gpu_check_both("concat_last (b grad only)", concat_of, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

/* ---- activations ---- */

static ln_tensor *gelu_of(ln_tensor *const *in, void *ctx) { return ln_gelu(in[0]); }
static ln_tensor *swiglu_of(ln_tensor *const *in, void *ctx) { return ln_swiglu(in[0], in[1]); }
static ln_tensor *logsigmoid_of(ln_tensor *const *in, void *ctx) { return ln_logsigmoid(in[0]); }
static ln_tensor *logsigmoid_scaled_of(ln_tensor *const *in, void *ctx) {
    return ln_logsigmoid_scaled(in[0], *(const double *)ctx);
}

static void activations_match_cpu(void **state) {
    NEED_GPU();
    ln_tensor *x = gpu_randn(2, (int64_t[]){37, 130}, 2.0, 80);
    gpu_check_both("gelu", gelu_of, NULL, 1, &x);
    ln_tensor_free(x);
    x = gpu_randn(2, (int64_t[]){37, 130}, 6.0, 83); /* wide: both tails of the stable form */
    gpu_check_both("logsigmoid", logsigmoid_of, NULL, 1, &x);
    const double scale = 1.0 / 16; /* GLA's log decay */
    gpu_check_both("logsigmoid scaled", logsigmoid_scaled_of, (void *)&scale, 1, &x);
    ln_tensor_free(x);
    x = gpu_randn(2, (int64_t[]){37, 128}, 6.0, 84); /* whole 16-byte packs: the packed kernels */
    gpu_check_both("logsigmoid scaled, packs", logsigmoid_scaled_of, (void *)&scale, 1, &x);
    ln_tensor_free(x);
    ln_tensor *in[2] = {gpu_randn(3, (int64_t[]){3, 37, 67}, 2.0, 81), gpu_randn(3, (int64_t[]){3, 37, 67}, 1.0, 82)};
    gpu_check_both("swiglu", swiglu_of, NULL, 2, in);
    in[1]->requires_grad = false;
    gpu_check_both("swiglu (gate grad only)", swiglu_of, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
}

/* ---- reductions ---- */

static ln_tensor *sum_of(ln_tensor *const *in, void *ctx) { return ln_sum(in[0]); }
static ln_tensor *mean_of(ln_tensor *const *in, void *ctx) { return ln_mean(in[0]); }
static ln_tensor *sum_last_of(ln_tensor *const *in, void *ctx) { return ln_sum_last(in[0]); }

static void reductions_match_cpu(void **state) {
    NEED_GPU();
    ln_tensor *small = gpu_randn(2, (int64_t[]){37, 130}, 1.0, 90);
    ln_tensor *large = gpu_randn(2, (int64_t[]){300, 1001}, 1.0, 91); /* many blocks in pass one */
    ln_tensor *one = gpu_randn(1, (int64_t[]){1}, 1.0, 92);
    /* a nonzero mean keeps the total away from zero, where a relative error means little */
    for (int64_t i = 0; i < large->numel; i++) ln_set(large, i, ln_get(large, i) + 0.5);
    gpu_check_both("sum [37, 130]", sum_of, NULL, 1, &small);
    gpu_check_both("sum [300, 1001]", sum_of, NULL, 1, &large);
    gpu_check_both("sum [1]", sum_of, NULL, 1, &one);
    gpu_check_both("mean [37, 130]", mean_of, NULL, 1, &small);
    gpu_check_both("mean [300, 1001]", mean_of, NULL, 1, &large);
    gpu_check_both("sum_last [37, 130]", sum_last_of, NULL, 1, &small);
    gpu_check_both("sum_last [300, 1001]", sum_last_of, NULL, 1, &large);
    ln_tensor *x3 = gpu_randn(3, (int64_t[]){3, 37, 5}, 1.0, 93);
    gpu_check_both("sum_last [3, 37, 5]", sum_last_of, NULL, 1, &x3);
    ln_tensor_free(small);
    ln_tensor_free(large);
    ln_tensor_free(one);
    ln_tensor_free(x3);
}

/* ---- embedding ---- */

static ln_tensor *embedding_of(ln_tensor *const *in, void *ctx) { return ln_embedding(in[0], in[1]); }

static void embedding_matches_cpu(void **state) {
    NEED_GPU();
    /* 148 ids over 50 rows: many repeats; some rows never used */
    ln_tensor *in[2] = {gpu_randn(2, (int64_t[]){50, 67}, 1.0, 100), gpu_randint(2, (int64_t[]){4, 37}, 50, 101)};
    gpu_check_both("embedding V=50 D=67", embedding_of, NULL, 2, in);
    ln_tensor_free(in[0]);
    ln_tensor_free(in[1]);
    /* wide rows (several passes of a block over D), one id repeated everywhere */
    ln_tensor *w = gpu_randn(2, (int64_t[]){1000, 300}, 1.0, 102);
    ln_tensor *ids = gpu_randint(1, (int64_t[]){77}, 1000, 103);
    for (int64_t i = 0; i < ids->numel; i += 3) ln_set(ids, i, 999);
    ln_tensor *in2[2] = {w, ids};
    gpu_check_both("embedding V=1000 D=300", embedding_of, NULL, 2, in2);
    ln_tensor_free(w);
    ln_tensor_free(ids);
}

/* Long runs of equal ids. The backward cuts the sorted ids into chunks of 64 entries: a run inside
 * one chunk, a run ending exactly at a chunk's end, a whole chunk of one run and a run across many
 * chunks all take different paths. */
static void check_ids(const char *what, int64_t V, int64_t D, ln_tensor *ids, uint64_t seed) {
    ln_tensor *w = gpu_randn(2, (int64_t[]){V, D}, 1.0, seed);
    ln_tensor *in[2] = {w, ids};
    gpu_check_both(what, embedding_of, NULL, 2, in);
    ln_tensor_free(w);
    ln_tensor_free(ids);
}

/* ids whose sorted order is runs of the given lengths (run r has id r), in shuffled positions */
static ln_tensor *ids_with_runs(const int *len, int runs, uint64_t seed) {
    int64_t n = 0;
    for (int r = 0; r < runs; r++) n += len[r];
    ln_tensor *ids = ln_tensor_new(LN_I32, LN_CPU, 1, (int64_t[]){n});
    assert_tensor(ids);
    int32_t *v = ids->data;
    for (int r = 0, i = 0; r < runs; r++)
        for (int k = 0; k < len[r]; k++) v[i++] = r;
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ln_rng_below(&rng, (uint64_t)i + 1);
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    return ids;
}

static ln_tensor *embedding_twice_of(ln_tensor *const *in, void *ctx) {
    return ln_add(ln_embedding(in[0], in[1]), ln_embedding(in[0], in[2]));
}

static void embedding_long_runs_match_cpu(void **state) {
    NEED_GPU();
    /* D = 40: 16-byte accesses for f32 and bf16; D = 67: element by element */
    check_ids("embedding 5000 ids of 3 D=40", 3, 40, gpu_randint(1, (int64_t[]){5000}, 3, 200), 201);
    check_ids("embedding 5000 ids of 3 D=67", 3, 67, gpu_randint(1, (int64_t[]){5000}, 3, 202), 203);
    ln_tensor *same = gpu_randint(2, (int64_t[]){50, 100}, 1, 204);
    for (int64_t i = 0; i < same->numel; i++) ln_set(same, i, 5);
    check_ids("embedding 5000 ids all 5", 10, 40, same, 205);
    check_ids("embedding 130 ids V=7", 7, 67, gpu_randint(1, (int64_t[]){130}, 7, 206), 207);
    /* past 65536 ids the chunks grow past the 64 entries staged at a time */
    check_ids("embedding 70000 ids of 5", 5, 8, gpu_randint(1, (int64_t[]){70000}, 5, 208), 209);
    check_ids("embedding 1100 wide rows", 4, 1100, gpu_randint(1, (int64_t[]){300}, 4, 210), 211);

    /* sorted runs at offsets: [0,1) [1,64) ends at a chunk end; [64,128) [128,192) whole chunks;
     * [192,257) one past; [257,386) over two ends; short ones; a 3000 run; [3458,3522) 64 long off
     * the grid; [3583,3585) two entries across the end at 3584; and a tail */
    static const int len[] = {1, 63, 64, 64, 65, 129, 1, 62, 2, 3000, 7, 64, 1, 60, 2, 1, 63, 64, 65};
    int runs = (int)(sizeof len / sizeof *len);
    check_ids("embedding runs 1..3000 D=40", runs + 1, 40, ids_with_runs(len, runs, 212), 213);
    check_ids("embedding runs 1..3000 D=67", runs + 1, 67, ids_with_runs(len, runs, 214), 215);

    /* two embeddings of one weight: the second backward adds into a gradient already there */
    ln_tensor *w = gpu_randn(2, (int64_t[]){300, 40}, 1.0, 216);
    ln_tensor *few = gpu_randint(1, (int64_t[]){5000}, 3, 217), *many = gpu_randint(1, (int64_t[]){5000}, 300, 218);
    ln_tensor *in[3] = {w, few, many};
    gpu_check_both("embedding twice, accumulated", embedding_twice_of, NULL, 3, in);
    ln_tensor_free(w);
    ln_tensor_free(few);
    ln_tensor_free(many);
}

/* ---- softmax ---- */

static ln_tensor *softmax_of(ln_tensor *const *in, void *ctx) { return ln_softmax(in[0]); }

static void softmax_matches_cpu(void **state) {
    NEED_GPU();
    ln_tensor *wide = gpu_randn(2, (int64_t[]){37, 1000}, 3.0, 110);
    ln_tensor *narrow = gpu_randn(3, (int64_t[]){3, 37, 5}, 3.0, 111);
    ln_tensor *single = gpu_randn(2, (int64_t[]){7, 1}, 1.0, 112);
    gpu_check_both("softmax rows of 1000", softmax_of, NULL, 1, &wide);
    gpu_check_both("softmax rows of 5", softmax_of, NULL, 1, &narrow);
    gpu_check_both("softmax rows of 1", softmax_of, NULL, 1, &single);
    ln_tensor_free(wide);
    ln_tensor_free(narrow);
    ln_tensor_free(single);
}

/* ---- cross-entropy ---- */

static ln_tensor *cross_entropy_of(ln_tensor *const *in, void *ctx) { return ln_cross_entropy(in[0], in[1]); }

/* x [37, 130] @ w [130, 1000] -> logits -> loss: the LM head, through two ops */
static ln_tensor *lm_head_of(ln_tensor *const *in, void *ctx) {
    return ln_cross_entropy(ln_matmul(in[0], in[1], false, false), in[2]);
}

static void cross_entropy_matches_cpu(void **state) {
    NEED_GPU();
    ln_tensor *logits = gpu_randn(3, (int64_t[]){3, 37, 1000}, 2.0, 120);
    ln_tensor *targets = gpu_randint(2, (int64_t[]){3, 37}, 1000, 121);
    for (int64_t i = 0; i < targets->numel; i += 7) ln_set(targets, i, -1); /* some ignored */
    ln_tensor *in[2] = {logits, targets};
    gpu_check_both("cross_entropy V=1000", cross_entropy_of, NULL, 2, in);

    ln_tensor *x = gpu_randn(2, (int64_t[]){37, 130}, 1.0, 122);
    ln_tensor *w = gpu_randn(2, (int64_t[]){130, 1000}, 0.1, 123);
    ln_tensor *t = gpu_randint(1, (int64_t[]){37}, 1000, 124);
    ln_set(t, 5, -1);
    ln_tensor *head[3] = {x, w, t};
    gpu_check_both("matmul + cross_entropy", lm_head_of, NULL, 3, head);

    /* every target ignored: loss 0, gradient 0 on both devices */
    ln_tensor *small = gpu_randn(2, (int64_t[]){4, 10}, 1.0, 125);
    ln_tensor *none = gpu_randint(1, (int64_t[]){4}, 10, 126);
    for (int64_t i = 0; i < none->numel; i++) ln_set(none, i, -1);
    ln_tensor *all_ignored[2] = {small, none};
    gpu_check_both("cross_entropy all ignored", cross_entropy_of, NULL, 2, all_ignored);

    ln_tensor_free(logits);
    ln_tensor_free(targets);
    ln_tensor_free(x);
    ln_tensor_free(w);
    ln_tensor_free(t);
    ln_tensor_free(small);
    ln_tensor_free(none);
}

/* ---- determinism and bad ids ---- */

static ln_tensor *upload(const ln_tensor *host) {
    ln_tensor *d = ln_tensor_new(host->dtype, LN_CUDA, host->ndim, host->shape);
    assert_tensor(d);
    assert_ok(ln_tensor_copy(d, host));
    return d;
}

static ln_tensor *download(const ln_tensor *dev) {
    ln_tensor *h = ln_tensor_new(dev->dtype, LN_CPU, dev->ndim, dev->shape);
    assert_tensor(h);
    assert_ok(ln_tensor_copy(h, dev));
    return h;
}

/* loss = sum(embedding(w, ids)) + cross_entropy(embedding(w, ids) @ w^T, targets): the value and
 * w's gradient, on the host. */
static void embed_step(ln_tensor *w_host, ln_tensor *ids_host, ln_tensor *t_host, ln_tensor **loss, ln_tensor **grad) {
    ln_tensor *w = upload(w_host), *ids = upload(ids_host), *t = upload(t_host);
    w->requires_grad = true;
    ln_tensor *e = ln_embedding(w, ids);
    ln_tensor *l = ln_add(ln_sum(e), ln_cross_entropy(ln_matmul(e, w, false, true), t));
    assert_tensor(l);
    assert_ok(ln_backward(l));
    assert_ok(ln_cuda_sync("embed_step"));
    *loss = download(l);
    *grad = download(w->grad);
    ln_tape_clear();
    ln_tensor_free(w);
    ln_tensor_free(ids);
    ln_tensor_free(t);
}

static void results_repeat_bit_for_bit(void **state) {
    NEED_GPU();
    ln_tensor *w = gpu_randn(2, (int64_t[]){301, 96}, 1.0, 130);
    ln_tensor *ids = gpu_randint(1, (int64_t[]){4099}, 301, 131); /* ~14 uses per row */
    ln_tensor *t = gpu_randint(1, (int64_t[]){4099}, 301, 132);
    ln_tensor *loss1, *grad1, *loss2, *grad2;
    embed_step(w, ids, t, &loss1, &grad1);
    embed_step(w, ids, t, &loss2, &grad2);
    assert_memory_equal(loss1->data, loss2->data, sizeof(float));
    assert_memory_equal(grad1->data, grad2->data, (size_t)grad1->numel * sizeof(float));
    /* long runs over many chunks of the sorted ids */
    ln_tensor *few = gpu_randint(1, (int64_t[]){4099}, 3, 134), *loss3, *grad3, *loss4, *grad4;
    for (int64_t i = 0; i < few->numel; i++) ln_set(few, i, 150 * ln_get(few, i));
    embed_step(w, few, t, &loss3, &grad3);
    embed_step(w, few, t, &loss4, &grad4);
    assert_memory_equal(loss3->data, loss4->data, sizeof(float));
    assert_memory_equal(grad3->data, grad4->data, (size_t)grad3->numel * sizeof(float));

    ln_tensor *big = gpu_randn(1, (int64_t[]){3000001}, 1.0, 133);
    ln_tensor *d = upload(big);
    ln_tensor *s1 = download(ln_sum(d)), *s2 = download(ln_sum(d));
    assert_memory_equal(s1->data, s2->data, sizeof(float));
    ln_tape_clear();

    ln_tensor *all[] = {w, ids, t, loss1, grad1, loss2, grad2, few, loss3, grad3, loss4, grad4, big, d, s1, s2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) ln_tensor_free(all[i]);
}

static void bad_ids_never_crash(void **state) {
    NEED_GPU();
    ln_tensor *w_host = gpu_randn(2, (int64_t[]){10, 33}, 1.0, 140);
    ln_tensor *ids_host = gpu_randint(1, (int64_t[]){6}, 10, 141);
    ln_set(ids_host, 2, 10);  /* one past the end */
    ln_set(ids_host, 4, -3);
    ln_tensor *w = upload(w_host), *ids = upload(ids_host);

    /* unchecked: zero rows for the bad ids, the good rows gathered */
    unsetenv("LINNET_CHECK_IDS");
    ln_tensor *y = ln_embedding(w, ids);
    assert_tensor(y);
    ln_tensor *yh = download(y);
    for (int64_t d = 0; d < 33; d++) {
        assert_true(ln_get(yh, 2 * 33 + d) == 0.0 && ln_get(yh, 4 * 33 + d) == 0.0);
        int64_t id0 = (int64_t)ln_get(ids_host, 0);
        assert_true(ln_get(yh, d) == ln_get(w_host, id0 * 33 + d));
    }
    assert_ok(ln_cuda_sync("bad ids"));

    /* checked: an error naming the op and the first bad position */
    setenv("LINNET_CHECK_IDS", "1", 1);
    assert_null(ln_embedding(w, ids));
    assert_non_null(strstr(ln_error_message(), "embedding"));
    assert_non_null(strstr(ln_error_message(), "position 2"));
    ln_tensor *logits_host = gpu_randn(2, (int64_t[]){6, 10}, 1.0, 142), *logits = upload(logits_host);
    assert_null(ln_cross_entropy(logits, ids));
    assert_non_null(strstr(ln_error_message(), "cross_entropy"));
    unsetenv("LINNET_CHECK_IDS");
    assert_ok(ln_cuda_sync("bad ids"));

    ln_tape_clear();
    ln_tensor *all[] = {w_host, ids_host, w, ids, yh, logits_host, logits};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) ln_tensor_free(all[i]);
}

/* The backward skips bad ids (the CPU path refuses them, so the reference is computed here): runs
 * of ids below 0 and past the end, across chunk ends, around good ones. */
static void bad_ids_skipped_in_backward(void **state) {
    NEED_GPU();
    const int64_t V = 12, D = 40, N = 1000;
    unsetenv("LINNET_CHECK_IDS");
    ln_tensor *w_f32 = gpu_randn(2, (int64_t[]){V, D}, 1.0, 150);
    ln_tensor *ids_host = gpu_randint(1, (int64_t[]){N}, 18, 151);
    for (int64_t i = 0; i < N; i++) ln_set(ids_host, i, ln_get(ids_host, i) - 3); /* in [-3, 15) */
    ln_tensor *seed_f32 = gpu_randn(2, (int64_t[]){N, D}, 1.0, 152);
    const ln_dtype dtypes[] = {LN_F32, LN_BF16};
    for (int k = 0; k < 2; k++) {
        ln_dtype dt = dtypes[k];
        ln_tensor *w_host = ln_tensor_new(dt, LN_CPU, 2, w_f32->shape);
        ln_tensor *seed_host = ln_tensor_new(dt, LN_CPU, 2, seed_f32->shape);
        assert_tensor(w_host);
        assert_tensor(seed_host);
        assert_ok(ln_tensor_copy(w_host, w_f32));
        assert_ok(ln_tensor_copy(seed_host, seed_f32));
        ln_tensor *w = upload(w_host), *ids = upload(ids_host), *seed = upload(seed_host);
        w->requires_grad = true;
        ln_tensor *y = ln_embedding(w, ids);
        assert_tensor(y);
        assert_ok(ln_backward_from(y, seed));
        assert_ok(ln_cuda_sync("bad ids backward"));
        ln_tensor *g = download(w->grad);
        double *want = calloc((size_t)(V * D), sizeof *want);
        assert_non_null(want);
        for (int64_t i = 0; i < N; i++) {
            int64_t id = (int64_t)ln_get(ids_host, i);
            if (id < 0 || id >= V) continue;
            for (int64_t d = 0; d < D; d++) want[id * D + d] += ln_get(seed_host, i * D + d);
        }
        double tol = dt == LN_F32 ? 1e-4 : 2e-2;
        for (int64_t e = 0; e < V * D; e++) {
            double got = ln_get(g, e);
            if (!(fabs(got - want[e]) <= tol * (1.0 + fabs(want[e]))))
                fail_msg("bad ids backward %s: grad[%lld] = %g, want %g", dt == LN_F32 ? "f32" : "bf16", (long long)e,
                         got, want[e]);
        }
        free(want);
        ln_tape_clear();
        ln_tensor *all[] = {w_host, seed_host, w, ids, seed, g};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) ln_tensor_free(all[i]);
    }
    ln_tensor_free(w_f32);
    ln_tensor_free(ids_host);
    ln_tensor_free(seed_f32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matmul_matches_cpu),
        cmocka_unit_test(matmul_one_side_grad),
        cmocka_unit_test(elementwise_matches_cpu),
        cmocka_unit_test(broadcast_gradient_many_rows),
        cmocka_unit_test(div_rows_matches_cpu),
        cmocka_unit_test(concat_last_matches_cpu),
        cmocka_unit_test(activations_match_cpu),
        cmocka_unit_test(reductions_match_cpu),
        cmocka_unit_test(embedding_matches_cpu),
        cmocka_unit_test(embedding_long_runs_match_cpu),
        cmocka_unit_test(softmax_matches_cpu),
        cmocka_unit_test(cross_entropy_matches_cpu),
        cmocka_unit_test(results_repeat_bit_for_bit),
        cmocka_unit_test(bad_ids_never_crash),
        cmocka_unit_test(bad_ids_skipped_in_backward),
    };
    return gpu_run_tests(tests);
}
