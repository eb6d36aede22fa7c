/* Gradient buckets: the bookkeeping of bucketed all-reduce, with no device or transport in it.
 *
 * Every parameter's gradient gets a place in one flat buffer; consecutive places form buckets of
 * about bucket_bytes. Parameters are placed in reverse order, the order backward finishes them,
 * so the first bucket fills first. During a step each parameter is marked ready once its gradient
 * is final; a bucket whose parameters are all ready is launched (handed to the transport), and
 * buckets launch strictly in index order, so every rank issues the same collectives in the same
 * order whatever order its gradients finished in. */
#ifndef LN_GRAD_BUCKETS_H
#define LN_GRAD_BUCKETS_H

#include <stdbool.h>
#include <stdint.h>

#include "layers/params.h"

/* Gradient offsets are multiples of this many elements (256 bytes of f32): aligned for vector
 * loads and for NCCL. The padding between them is never written, so it stays zero. */
#define LN_GRAD_ALIGN 64

typedef int (*ln_bucket_launch_fn)(int bucket, void *ctx);

typedef struct ln_grad_buckets {
    int n_params, n_buckets;
    int64_t total;           /* elements of the flat buffer */
    int64_t *offset;         /* per parameter: element offset of its gradient in the flat buffer */
    int *bucket_of;          /* per parameter */
    int64_t *begin, *count;  /* per bucket: its element range in the flat buffer */
    int *size;               /* per bucket: parameters in it */
    /* per step */
    int *pending;            /* per bucket: parameters not ready yet */
    bool *ready;             /* per parameter */
    int next;                /* the next bucket to launch */
    /* lookup of a parameter index by tensor: (tensor, index) sorted by address */
    struct ln_bucket_key { const void *tensor; int index; } *keys;
    ln_bucket_launch_fn launch;
    void *ctx;
} ln_grad_buckets;

/* Places every parameter of p (its numel, in reverse order) into buckets of at least
 * bucket_bytes of f32 each (the last may be smaller; 0 gives one parameter per bucket). */
int ln_grad_buckets_plan(ln_grad_buckets *b, const ln_params *p, double bucket_bytes, ln_bucket_launch_fn launch,
                         void *ctx);
void ln_grad_buckets_free(ln_grad_buckets *b);
/* Parameter index of tensor t, or -1 when t is not one of the planned parameters. */
int ln_grad_buckets_find(const ln_grad_buckets *b, const void *t);

/* A new step: nothing ready, nothing launched. */
void ln_grad_buckets_reset(ln_grad_buckets *b);
/* Parameter i's gradient is final for this step (again: no effect). Launches every bucket that
 * is now complete and has no unlaunched bucket before it. */
int ln_grad_buckets_mark_ready(ln_grad_buckets *b, int i);
/* Launches every bucket not launched yet, in order (their unready gradients are final too: the
 * backward is over). */
int ln_grad_buckets_flush(ln_grad_buckets *b);

#endif
