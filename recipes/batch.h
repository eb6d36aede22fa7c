/* One rank's slice of a batch: token ids and next-token targets, drawn from the loader on the
 * host and uploaded to the model's device. */
#ifndef LN_BATCH_H
#define LN_BATCH_H

#include "autograd/tensor.h"
#include "data/loader.h"

typedef struct ln_batch {
    ln_tensor *ids, *targets;           /* [b, T] i32 on the model's device */
    ln_tensor *host_ids, *host_targets; /* the loader writes here (the same tensors on the CPU) */
} ln_batch;

int ln_batch_init(ln_batch *batch, int b, int seq_len, ln_device device);
/* Skips `before` sequences, takes b, skips `after` (the other ranks' share), uploads. */
int ln_batch_load(ln_batch *batch, ln_loader *loader, int before, int after);
void ln_batch_free(ln_batch *batch);

#endif
