/* Bucketed gradient reduction on one GPU: the gradient-ready hook over the CUDA kernels, with a
 * transport that copies each bucket on a side stream ordered exactly as the NCCL one (an event on
 * the compute stream at launch): what it copies must be the final gradients. Then the NCCL
 * transport itself on a one-rank communicator (its sum is the identity): the calls, the streams
 * and the events run, and the gradients come out as the plain backward's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autocast.h"
#include "autograd/cuda/cuda_context.h"
#include "distributed/grad_sync.h"
#include "gpu/gpu_testing.h"
#include "layers/transformer.h"
#include "testing.h"
#ifdef LINNET_NCCL
#include "distributed/nccl.h"
#endif

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            ln_fail("%s: %s", #call, cudaGetErrorString(e_));                                      \
            return LN_ERR;                                                                         \
        }                                                                                          \
    } while (0)

typedef struct side_copy {
    ln_grad_sync *sync;
    float *snapshot; /* device: each bucket as the side stream saw it */
    cudaStream_t side;
    cudaEvent_t ready, done;
    int launches;
} side_copy;

static int side_reduce(float *data, int64_t count, void *ctx) {
    side_copy *c = ctx;
    CUDA_OK(cudaEventRecord(c->ready, (cudaStream_t)ln_cuda_stream()));
    CUDA_OK(cudaStreamWaitEvent(c->side, c->ready, 0));
    CUDA_OK(cudaMemcpyAsync(c->snapshot + (data - c->sync->flat), data, (size_t)count * sizeof(float),
                            cudaMemcpyDeviceToDevice, c->side));
    c->launches++;
    return LN_OK;
}

static int side_wait(void *ctx) {
    side_copy *c = ctx;
    CUDA_OK(cudaEventRecord(c->done, c->side));
    CUDA_OK(cudaStreamWaitEvent((cudaStream_t)ln_cuda_stream(), c->done, 0));
    return LN_OK;
}

static ln_config small_config(void) {
    ln_config c;
    ln_config_defaults(&c);
    c.model.vocab_size = 64;
    c.model.d_model = 64;
    c.model.n_layers = 2;
    c.model.n_heads = 4;
    c.model.n_kv_heads = 2;
    c.model.mlp_hidden = 128;
    c.model.tied_embeddings = true; /* the embedding is read twice: its bucket must wait for both */
    return c;
}

static ln_tensor *gpu_ids(uint64_t seed) {
    ln_tensor *t = gpu_randint(2, (int64_t[]){4, 32}, 64, seed);
    assert_ok(ln_tensor_move(t, LN_CUDA));
    return t;
}

/* Two micro-steps, the second armed when sync is given. */
static void run_step(ln_transformer *m, ln_grad_sync *sync) {
    ln_params_zero_grad(&m->params);
    for (int micro = 0; micro < 2; micro++) {
        ln_tensor *ids = gpu_ids(10 + micro), *targets = gpu_ids(20 + micro);
        ln_tensor *loss = ln_scale(ln_transformer_loss(m, ids, targets), 0.5);
        assert_tensor(loss);
        bool armed = sync && micro == 1;
        if (armed) ln_grad_sync_arm(sync);
        assert_ok(ln_backward(loss));
        if (armed) assert_ok(ln_grad_sync_finish(sync));
        ln_tape_clear();
        ln_tensor_free(ids);
        ln_tensor_free(targets);
    }
    assert_ok(ln_cuda_sync("step"));
}

/* Parameter i's gradient on the host (zeros when it has none). */
static ln_tensor *host_grad(ln_transformer *m, int i) {
    ln_tensor *p = m->params.items[i].tensor, *h = ln_tensor_new(LN_F32, LN_CPU, p->ndim, p->shape);
    if (p->grad) assert_ok(ln_tensor_copy(h, p->grad));
    return h;
}

static void make_models(ln_transformer *ref, ln_transformer *m) {
    ln_config c = small_config();
    assert_ok(ln_transformer_create(ref, &c.model, 5));
    assert_ok(ln_transformer_create(m, &c.model, 5));
    assert_ok(ln_params_to(&ref->params, LN_CUDA));
    assert_ok(ln_params_to(&m->params, LN_CUDA));
}

/* Every gradient of m against ref's (relative tol: GPU sums may run in another order). */
static void expect_reference_grads(ln_transformer *ref, ln_transformer *m, double tol) {
    for (int i = 0; i < m->params.n; i++) {
        ln_tensor *got = host_grad(m, i), *want = host_grad(ref, i);
        double rel = test_rel_error(got, want);
        if (!(rel <= tol)) fail_msg("%s: gradient %.3g relative from the plain backward", m->params.items[i].name, rel);
        ln_tensor_free(got);
        ln_tensor_free(want);
    }
}

static void side_stream_sees_final_gradients(ln_dtype compute) {
    NEED_GPU();
    ln_dtype previous = ln_set_autocast(compute);
    ln_transformer ref, m;
    make_models(&ref, &m);
    run_step(&ref, NULL);

    ln_grad_sync sync;
    side_copy c = {.sync = &sync};
    assert_int_equal(cudaStreamCreateWithFlags(&c.side, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaEventCreateWithFlags(&c.ready, cudaEventDisableTiming), cudaSuccess);
    assert_int_equal(cudaEventCreateWithFlags(&c.done, cudaEventDisableTiming), cudaSuccess);
    ln_grad_transport transport = {side_reduce, side_wait, &c};
    assert_ok(ln_grad_sync_create(&sync, &m.params, 0, &transport)); /* one parameter per bucket */
    int64_t total = sync.buckets.total;
    assert_int_equal(cudaMalloc((void **)&c.snapshot, (size_t)total * sizeof(float)), cudaSuccess);
    float *snap = malloc((size_t)total * sizeof(float)), *flat = malloc((size_t)total * sizeof(float));
    for (int step = 0; step < 3; step++) {
        c.launches = 0;
        run_step(&m, &sync);
        assert_int_equal(c.launches, sync.buckets.n_buckets);
        assert_int_equal(cudaMemcpy(snap, c.snapshot, (size_t)total * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
        assert_int_equal(cudaMemcpy(flat, sync.flat, (size_t)total * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
        for (int i = 0; i < m.params.n; i++) {
            int64_t off = sync.buckets.offset[i];
            for (int64_t j = 0; j < m.params.items[i].tensor->numel; j++)
                if (snap[off + j] != flat[off + j])
                    fail_msg("step %d, %s[%lld]: the side stream saw %g, the final gradient is %g", step,
                             m.params.items[i].name, (long long)j, snap[off + j], flat[off + j]);
        }
    }
    expect_reference_grads(&ref, &m, 1e-5);
    free(snap);
    free(flat);
    cudaFree(c.snapshot);
    ln_grad_sync_free(&sync);
    cudaEventDestroy(c.ready);
    cudaEventDestroy(c.done);
    cudaStreamDestroy(c.side);
    ln_transformer_free(&ref);
    ln_transformer_free(&m);
    ln_set_autocast(previous);
}

static void side_stream_sees_final_gradients_f32(void **state) { side_stream_sees_final_gradients(LN_F32); }
static void side_stream_sees_final_gradients_bf16(void **state) { side_stream_sees_final_gradients(LN_BF16); }

static void nccl_one_rank_keeps_the_gradients(void **state) {
    NEED_GPU();
#ifndef LINNET_NCCL
    skip();
#else
    ln_dtype previous = ln_set_autocast(LN_BF16);
    ln_transformer ref, m;
    make_models(&ref, &m);
    run_step(&ref, NULL);
    ln_comm comm = {.backend = LN_COMM_LOCAL, .rank = 0, .size = 1};
    struct ln_nccl *nccl = NULL;
    assert_ok(ln_nccl_create(&nccl, &comm));
    ln_grad_transport transport = ln_nccl_transport(nccl);
    ln_grad_sync sync;
    assert_ok(ln_grad_sync_create(&sync, &m.params, 64 << 10, &transport));
    printf("  %d buckets of ~64 KiB\n", sync.buckets.n_buckets);
    for (int step = 0; step < 3; step++) run_step(&m, &sync); /* each step recomputes the same gradients */
    expect_reference_grads(&ref, &m, 1e-5);
    ln_grad_sync_free(&sync);
    ln_nccl_free(nccl);
    ln_transformer_free(&ref);
    ln_transformer_free(&m);
    ln_set_autocast(previous);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(side_stream_sees_final_gradients_f32),
        cmocka_unit_test(side_stream_sees_final_gradients_bf16),
        cmocka_unit_test(nccl_one_rank_keeps_the_gradients),
    };
    return gpu_run_tests(tests);
}
