#include "distributed/grad_buckets.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

static int by_address(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const struct ln_bucket_key *)a)->tensor;
    uintptr_t y = (uintptr_t)((const struct ln_bucket_key *)b)->tensor;
    return x < y ? -1 : x > y;
}

int ln_grad_buckets_plan(ln_grad_buckets *b, const ln_params *p, double bucket_bytes, ln_bucket_launch_fn launch,
                         void *ctx) {
    memset(b, 0, sizeof *b);
    int n = p->n;
    b->n_params = n;
    b->launch = launch;
    b->ctx = ctx;
    size_t np = n ? (size_t)n : 1;
    b->offset = calloc(np, sizeof *b->offset);
    b->bucket_of = calloc(np, sizeof *b->bucket_of);
    b->ready = calloc(np, sizeof *b->ready);
    b->keys = calloc(np, sizeof *b->keys);
    /* at most one bucket per parameter */
    b->begin = calloc(np, sizeof *b->begin);
    b->count = calloc(np, sizeof *b->count);
    b->size = calloc(np, sizeof *b->size);
    b->pending = calloc(np, sizeof *b->pending);
    if (!b->offset || !b->bucket_of || !b->ready || !b->keys || !b->begin || !b->count || !b->size || !b->pending) {
        ln_grad_buckets_free(b);
        return ln_fail("gradient buckets: out of host memory");
    }
    int64_t at = 0;
    int k = -1;
    for (int i = n - 1; i >= 0; i--) {
        /* a bucket closes once it holds bucket_bytes: the next parameter opens a new one */
        if (k < 0 || (double)(at - b->begin[k]) * sizeof(float) >= bucket_bytes) {
            b->begin[++k] = at;
        }
        b->offset[i] = at;
        b->bucket_of[i] = k;
        b->size[k]++;
        int64_t numel = p->items[i].tensor->numel;
        at += (numel + LN_GRAD_ALIGN - 1) / LN_GRAD_ALIGN * LN_GRAD_ALIGN;
        b->count[k] = at - b->begin[k];
        b->keys[i] = (struct ln_bucket_key){p->items[i].tensor, i};
    }
    b->n_buckets = k + 1;
    b->total = at;
    qsort(b->keys, (size_t)n, sizeof *b->keys, by_address);
    ln_grad_buckets_reset(b);
    return LN_OK;
}

void ln_grad_buckets_free(ln_grad_buckets *b) {
    free(b->offset);
    free(b->bucket_of);
    free(b->ready);
    free(b->keys);
    free(b->begin);
    free(b->count);
    free(b->size);
    free(b->pending);
    memset(b, 0, sizeof *b);
}

int ln_grad_buckets_find(const ln_grad_buckets *b, const void *t) {
    struct ln_bucket_key key = {t, 0};
    const struct ln_bucket_key *hit = b->n_params ? bsearch(&key, b->keys, (size_t)b->n_params, sizeof key, by_address)
                                                  : NULL;
    return hit ? hit->index : -1;
}

void ln_grad_buckets_reset(ln_grad_buckets *b) {
    for (int k = 0; k < b->n_buckets; k++) b->pending[k] = b->size[k];
    for (int i = 0; i < b->n_params; i++) b->ready[i] = false;
    b->next = 0;
}

static int launch_next(ln_grad_buckets *b) {
    int k = b->next++;
    if (b->launch && b->launch(k, b->ctx)) return ln_fail_context("gradient bucket %d of %d", k, b->n_buckets);
    return LN_OK;
}

int ln_grad_buckets_mark_ready(ln_grad_buckets *b, int i) {
    if (i < 0 || i >= b->n_params) return ln_fail("gradient buckets: no parameter %d", i);
    if (b->ready[i]) return LN_OK;
    b->ready[i] = true;
    b->pending[b->bucket_of[i]]--;
    while (b->next < b->n_buckets && b->pending[b->next] == 0)
        if (launch_next(b)) return LN_ERR;
    return LN_OK;
}

int ln_grad_buckets_flush(ln_grad_buckets *b) {
    while (b->next < b->n_buckets)
        if (launch_next(b)) return LN_ERR;
    return LN_OK;
}
