#include "distributed/grad_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/memory.h"
#include "autograd/tape.h"

static int launch_bucket(int k, void *ctx) {
    ln_grad_sync *s = ctx;
    return s->transport.reduce(s->flat + s->buckets.begin[k], s->buckets.count[k], s->transport.ctx);
}

/* A parameter the backward does not reach keeps the gradient it has: final from the start. */
static int on_begin(void *ctx) {
    ln_grad_sync *s = ctx;
    for (int i = 0; i < s->params->n; i++)
        if (ln_backward_readers(s->params->items[i].tensor) == 0 && ln_grad_buckets_mark_ready(&s->buckets, i))
            return LN_ERR;
    return LN_OK;
}

static int on_ready(ln_tensor *t, void *ctx) {
    ln_grad_sync *s = ctx;
    int i = ln_grad_buckets_find(&s->buckets, t);
    return i < 0 ? LN_OK : ln_grad_buckets_mark_ready(&s->buckets, i); /* not ours: another leaf */
}

static bool is_our_view(const ln_grad_sync *s, int i) {
    const ln_tensor *g = s->params->items[i].tensor->grad;
    return g && !g->owns_data && g->data == s->flat + s->buckets.offset[i];
}

int ln_grad_sync_create(ln_grad_sync *s, ln_params *params, double bucket_bytes, const ln_grad_transport *transport) {
    memset(s, 0, sizeof *s);
    s->params = params;
    s->transport = *transport;
    s->device = params->n ? params->items[0].tensor->device : LN_CPU;
    for (int i = 0; i < params->n; i++) {
        const ln_tensor *t = params->items[i].tensor;
        if (t->dtype != LN_F32 || t->device != s->device || !t->owns_data)
            return ln_fail("gradient buckets: %s is not an f32 %s parameter like the first", t->name,
                           ln_device_name(s->device));
    }
    if (ln_grad_buckets_plan(&s->buckets, params, bucket_bytes, launch_bucket, s)) return LN_ERR;
    s->flat = ln_device_alloc_zeroed(s->device, (size_t)(s->buckets.total ? s->buckets.total : 1) * sizeof(float));
    if (!s->flat) {
        ln_grad_buckets_free(&s->buckets);
        return ln_fail_context("gradient buckets of %lld floats", (long long)s->buckets.total);
    }
    for (int i = 0; i < params->n; i++) {
        ln_tensor *t = params->items[i].tensor, *view = calloc(1, sizeof *view);
        if (!view) {
            ln_grad_sync_free(s);
            return ln_fail("gradient buckets: out of host memory");
        }
        *view = (ln_tensor){.dtype = LN_F32, .device = t->device, .ndim = t->ndim, .numel = t->numel,
                            .data = s->flat + s->buckets.offset[i]};
        memcpy(view->shape, t->shape, sizeof view->shape);
        snprintf(view->name, sizeof view->name, "%s", t->name);
        if (t->grad && ln_tensor_copy(view, t->grad)) {
            free(view);
            ln_grad_sync_free(s);
            return LN_ERR;
        }
        ln_tensor_free(t->grad);
        t->grad = view;
    }
    return LN_OK;
}

void ln_grad_sync_arm(ln_grad_sync *s) {
    ln_grad_buckets_reset(&s->buckets);
    ln_set_grad_ready_hook(&(ln_grad_ready_hook){on_begin, on_ready, s});
}

void ln_grad_sync_disarm(ln_grad_sync *s) { ln_set_grad_ready_hook(NULL); }

int ln_grad_sync_finish(ln_grad_sync *s) {
    ln_grad_sync_disarm(s);
    if (ln_grad_buckets_flush(&s->buckets) || s->transport.wait(s->transport.ctx))
        return ln_fail_context("gradient all-reduce");
    return LN_OK;
}

void ln_grad_sync_free(ln_grad_sync *s) {
    if (!s->params) return;
    /* after a failed step reductions may still be in flight: the buffer's release waits for them */
    if (s->flat) s->transport.wait(s->transport.ctx);
    for (int i = 0; i < s->params->n && s->flat; i++)
        if (is_our_view(s, i)) {
            free(s->params->items[i].tensor->grad); /* a view: the struct only */
            s->params->items[i].tensor->grad = NULL;
        }
    if (s->flat) ln_device_free(s->device, s->flat);
    ln_grad_buckets_free(&s->buckets);
    memset(s, 0, sizeof *s);
}
