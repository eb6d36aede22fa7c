/* Bucketed gradient all-reduce that overlaps the backward.
 *
 * Every parameter's gradient becomes a view into one flat buffer (allocated once), laid out in
 * buckets (grad_buckets.h). While armed, the tape's gradient-ready hook tells the sync when each
 * gradient is final; each complete bucket is handed to the transport (NCCL on a side stream, or
 * anything that sums a float range across ranks), and finish makes the compute stream wait for
 * every reduction before the optimizer reads the gradients. */
#ifndef LN_GRAD_SYNC_H
#define LN_GRAD_SYNC_H

#include "distributed/grad_buckets.h"

typedef struct ln_grad_transport {
    /* Starts summing data[0, count) across ranks in place, after all work issued so far. */
    int (*reduce)(float *data, int64_t count, void *ctx);
    /* Work issued from now on runs after every reduction started so far. */
    int (*wait)(void *ctx);
    void *ctx;
} ln_grad_transport;

typedef struct ln_grad_sync {
    ln_grad_buckets buckets;
    ln_params *params;
    ln_device device;
    float *flat; /* every gradient, bucket after bucket */
    ln_grad_transport transport;
} ln_grad_sync;

/* Lays the gradients of params (all f32 on one device) into buckets of about bucket_bytes,
 * keeping any gradient values they already have. Free it before the params. */
int ln_grad_sync_create(ln_grad_sync *s, ln_params *params, double bucket_bytes, const ln_grad_transport *transport);
/* The next backward is the step's last micro-step: its gradients reduce as they become final. */
void ln_grad_sync_arm(ln_grad_sync *s);
/* After that backward: disarms, reduces the buckets not started yet (their gradients got nothing
 * from it, or are final now), and orders later work after the reductions. */
int ln_grad_sync_finish(ln_grad_sync *s);
/* After a failed backward: only disarms (the run is ending; peers are not waited for). */
void ln_grad_sync_disarm(ln_grad_sync *s);
/* Gives each parameter back a gradient of its own (NULL), then frees the flat buffer. */
void ln_grad_sync_free(ln_grad_sync *s);

#endif
