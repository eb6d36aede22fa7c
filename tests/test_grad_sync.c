/* Bucketed gradient all-reduce without a GPU: the bucket layout, the launch order, and the tape's
 * gradient-ready hook on a real model (tied embeddings, an unused parameter, micro-steps), with a
 * transport that snapshots each bucket when it launches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autocast.h"
#include "distributed/grad_sync.h"
#include "layers/transformer.h"
#include "testing.h"

/* ---- the plan and the launch order ---- */

typedef struct launches {
    int order[64], n;
} launches;

static int record_launch(int bucket, void *ctx) {
    launches *l = ctx;
    l->order[l->n++] = bucket;
    return LN_OK;
}

/* Parameters of the given sizes (f32, CPU). */
static ln_params sized_params(int n, const int64_t *numel) {
    ln_params p = {0};
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ln_params_add(&p, "", name, 1, &numel[i], LN_INIT_ZEROS, false);
    }
    return p;
}

static void buckets_fill_in_reverse_order_aligned(void **state) {
    int64_t numel[4] = {100, 10, 300, 64};
    ln_params p = sized_params(4, numel);
    ln_grad_buckets b;
    /* 1 KiB buckets: p3 (256 B) + p2 (1200 B) close the first; p1 + p0 make the second */
    assert_ok(ln_grad_buckets_plan(&b, &p, 1024, NULL, NULL));
    assert_int_equal(b.n_buckets, 2);
    assert_int_equal(b.offset[3], 0);
    assert_int_equal(b.offset[2], 64);
    assert_int_equal(b.offset[1], 64 + 320);
    assert_int_equal(b.offset[0], 64 + 320 + 64);
    assert_int_equal(b.total, 64 + 320 + 64 + 128);
    for (int i = 0; i < 4; i++) assert_int_equal(b.offset[i] % LN_GRAD_ALIGN, 0);
    assert_int_equal(b.bucket_of[3], 0);
    assert_int_equal(b.bucket_of[2], 0);
    assert_int_equal(b.bucket_of[1], 1);
    assert_int_equal(b.bucket_of[0], 1);
    assert_int_equal(b.begin[0], 0);
    assert_int_equal(b.count[0], 64 + 320);
    assert_int_equal(b.begin[1], 64 + 320);
    assert_int_equal(b.count[1], 64 + 128);
    for (int i = 0; i < 4; i++) assert_int_equal(ln_grad_buckets_find(&b, p.items[i].tensor), i);
    assert_int_equal(ln_grad_buckets_find(&b, &b), -1);
    ln_grad_buckets_free(&b);
    /* 0 bytes: one parameter per bucket; a huge size: one bucket */
    assert_ok(ln_grad_buckets_plan(&b, &p, 0, NULL, NULL));
    assert_int_equal(b.n_buckets, 4);
    ln_grad_buckets_free(&b);
    assert_ok(ln_grad_buckets_plan(&b, &p, 1e12, NULL, NULL));
    assert_int_equal(b.n_buckets, 1);
    assert_int_equal(b.count[0], b.total);
    ln_grad_buckets_free(&b);
    ln_params_free(&p);
}

static void buckets_launch_in_index_order_once(void **state) {
    int64_t numel[4] = {64, 64, 64, 64};
    ln_params p = sized_params(4, numel);
    ln_grad_buckets b;
    launches l = {.n = 0};
    assert_ok(ln_grad_buckets_plan(&b, &p, 0, record_launch, &l)); /* bucket k holds parameter 3 - k */
    for (int step = 0; step < 2; step++) {
        l.n = 0;
        ln_grad_buckets_reset(&b);
        assert_ok(ln_grad_buckets_mark_ready(&b, 1)); /* bucket 2: waits for 0 and 1 */
        assert_int_equal(l.n, 0);
        assert_ok(ln_grad_buckets_mark_ready(&b, 3)); /* bucket 0 goes */
        assert_int_equal(l.n, 1);
        assert_ok(ln_grad_buckets_mark_ready(&b, 3)); /* again: nothing */
        assert_int_equal(l.n, 1);
        assert_ok(ln_grad_buckets_mark_ready(&b, 2)); /* bucket 1, then the waiting bucket 2 */
        assert_int_equal(l.n, 3);
        assert_ok(ln_grad_buckets_flush(&b)); /* parameter 0 never became ready: bucket 3 goes now */
        assert_int_equal(l.n, 4);
        assert_ok(ln_grad_buckets_flush(&b));
        assert_int_equal(l.n, 4);
        for (int k = 0; k < 4; k++) assert_int_equal(l.order[k], k);
    }
    ln_grad_buckets_free(&b);
    ln_params_free(&p);
}

/* ---- the hook on a real backward ---- */

typedef struct snapshot_transport {
    ln_grad_sync *sync;
    float *seen;        /* each bucket's values when it launched */
    int order[256], n;  /* buckets in launch order */
    int during_backward; /* launches made while ln_backward ran */
    bool in_backward;
    int waits;
    bool fail;
} snapshot_transport;

static int snapshot_reduce(float *data, int64_t count, void *ctx) {
    snapshot_transport *t = ctx;
    if (t->fail) return ln_fail("transport refused");
    int64_t at = data - t->sync->flat;
    int k = 0;
    while (k < t->sync->buckets.n_buckets && t->sync->buckets.begin[k] != at) k++;
    assert_true(k < t->sync->buckets.n_buckets);
    assert_int_equal(count, t->sync->buckets.count[k]);
    memcpy(t->seen + at, data, (size_t)count * sizeof *data);
    t->order[t->n++] = k;
    t->during_backward += t->in_backward;
    return LN_OK;
}

static int snapshot_wait(void *ctx) {
    ((snapshot_transport *)ctx)->waits++;
    return LN_OK;
}

static ln_config small_config(bool tied) {
    ln_config c = test_small_config(16, 2, 1, 32);
    c.model.tied_embeddings = tied;
    return c;
}

static ln_tensor *random_ids(uint64_t seed) { return test_random_ids(2, 8, 32, seed); }

/* Two micro-steps (only the second armed) of the model with an extra parameter no op reads.
 * With sync NULL: the plain backward, for reference. */
static void run_step(ln_transformer *m, ln_grad_sync *sync, snapshot_transport *t) {
    ln_params_zero_grad(&m->params);
    for (int micro = 0; micro < 2; micro++) {
        ln_tensor *ids = random_ids(10 + micro), *targets = random_ids(20 + micro);
        ln_tensor *loss = ln_scale(ln_transformer_loss(m, ids, targets), 0.5);
        assert_tensor(loss);
        bool armed = sync && micro == 1;
        if (armed) ln_grad_sync_arm(sync);
        if (t) t->in_backward = true;
        assert_ok(ln_backward(loss));
        if (t) t->in_backward = false;
        if (armed) assert_ok(ln_grad_sync_finish(sync));
        for (int i = 0; i < m->params.n; i++) assert_int_equal(ln_backward_readers(m->params.items[i].tensor), 0);
        ln_tape_clear();
        ln_tensor_free(ids);
        ln_tensor_free(targets);
    }
}

static void check_hooked_backward(bool tied, ln_dtype compute, double bucket_bytes) {
    ln_dtype previous = ln_set_autocast(compute);
    ln_config c = small_config(tied);
    ln_transformer ref, m;
    assert_ok(ln_transformer_create(&ref, &c.model, 3));
    assert_ok(ln_transformer_create(&m, &c.model, 3));
    assert_tensor(ln_params_add(&ref.params, "", "unused", 1, (int64_t[]){5}, LN_INIT_ONES, true));
    assert_tensor(ln_params_add(&m.params, "", "unused", 1, (int64_t[]){5}, LN_INIT_ONES, true));
    run_step(&ref, NULL, NULL);

    ln_grad_sync sync;
    snapshot_transport t = {.sync = &sync};
    ln_grad_transport transport = {snapshot_reduce, snapshot_wait, &t};
    assert_ok(ln_grad_sync_create(&sync, &m.params, bucket_bytes, &transport));
    t.seen = calloc((size_t)sync.buckets.total, sizeof *t.seen);
    for (int step = 0; step < 2; step++) {
        t.n = t.during_backward = t.waits = 0;
        run_step(&m, &sync, &t);
        /* every bucket once, in order, all while the backward ran (the unused parameter's at its
         * start), then one wait */
        assert_int_equal(t.n, sync.buckets.n_buckets);
        for (int k = 0; k < t.n; k++) assert_int_equal(t.order[k], k);
        assert_int_equal(t.during_backward, t.n);
        assert_int_equal(t.waits, 1);
        /* nothing changed a bucket after it launched, and the values are the plain backward's */
        for (int i = 0; i < m.params.n; i++) {
            ln_tensor *g = m.params.items[i].tensor->grad, *want = ref.params.items[i].tensor->grad;
            assert_non_null(g);
            assert_ptr_equal(g->data, sync.flat + sync.buckets.offset[i]);
            const float *seen = t.seen + sync.buckets.offset[i];
            for (int64_t j = 0; j < g->numel; j++) {
                float w = want ? ((const float *)want->data)[j] : 0.0f;
                if (((const float *)g->data)[j] != seen[j] || ((const float *)g->data)[j] != w)
                    fail_msg("%s[%lld]: final %g, at launch %g, plain backward %g", m.params.items[i].name,
                             (long long)j, ((const float *)g->data)[j], seen[j], w);
            }
        }
    }
    free(t.seen);
    ln_grad_sync_free(&sync);
    for (int i = 0; i < m.params.n; i++) assert_null(m.params.items[i].tensor->grad);
    ln_transformer_free(&ref);
    ln_transformer_free(&m);
    ln_set_autocast(previous);
}

static void tied_model_one_parameter_per_bucket(void **state) { check_hooked_backward(true, LN_F32, 0); }
static void tied_model_bf16_small_buckets(void **state) { check_hooked_backward(true, LN_BF16, 4096); }
static void untied_model_one_bucket(void **state) { check_hooked_backward(false, LN_F32, 1e12); }

static void failed_launch_stops_the_backward_cleanly(void **state) {
    ln_config c = small_config(true);
    ln_transformer m;
    assert_ok(ln_transformer_create(&m, &c.model, 3));
    ln_grad_sync sync;
    snapshot_transport t = {.sync = &sync, .fail = true};
    ln_grad_transport transport = {snapshot_reduce, snapshot_wait, &t};
    assert_ok(ln_grad_sync_create(&sync, &m.params, 0, &transport));
    ln_tensor *ids = random_ids(1), *targets = random_ids(2);
    ln_tensor *loss = ln_transformer_loss(&m, ids, targets);
    ln_grad_sync_arm(&sync);
    assert_int_equal(ln_backward(loss), LN_ERR);
    assert_non_null(strstr(ln_error_message(), "transport refused"));
    ln_grad_sync_disarm(&sync);
    for (int i = 0; i < m.params.n; i++) assert_int_equal(ln_backward_readers(m.params.items[i].tensor), 0);
    ln_tape_clear();
    /* disarmed: a plain backward runs with no launch */
    t.fail = false;
    loss = ln_transformer_loss(&m, ids, targets);
    assert_ok(ln_backward(loss));
    assert_int_equal(t.n, 0);
    ln_tape_clear();
    ln_tensor_free(ids);
    ln_tensor_free(targets);
    ln_grad_sync_free(&sync);
    ln_transformer_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buckets_fill_in_reverse_order_aligned),
        cmocka_unit_test(buckets_launch_in_index_order_once),
        cmocka_unit_test(tied_model_one_parameter_per_bucket),
        cmocka_unit_test(tied_model_bf16_small_buckets),
        cmocka_unit_test(untied_model_one_bucket),
        cmocka_unit_test(failed_launch_stops_the_backward_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
