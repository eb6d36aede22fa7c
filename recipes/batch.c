#include "recipes/batch.h"

#include "autograd/error.h"

int ln_batch_init(ln_batch *batch, int b, int seq_len, ln_device device) {
    int64_t shape[2] = {b, seq_len};
    *batch = (ln_batch){0};
    batch->host_ids = ln_tensor_new(LN_I32, LN_CPU, 2, shape);
    batch->host_targets = ln_tensor_new(LN_I32, LN_CPU, 2, shape);
    if (device == LN_CPU) {
        batch->ids = batch->host_ids;
        batch->targets = batch->host_targets;
    } else {
        batch->ids = ln_tensor_new(LN_I32, device, 2, shape);
        batch->targets = ln_tensor_new(LN_I32, device, 2, shape);
    }
    return batch->host_ids && batch->host_targets && batch->ids && batch->targets ? LN_OK : LN_ERR;
}

int ln_batch_load(ln_batch *batch, ln_loader *loader, int before, int after) {
    int b = (int)batch->host_ids->shape[0];
    if (ln_loader_skip(loader, before) || ln_loader_next(loader, b, batch->host_ids->data, batch->host_targets->data) ||
        ln_loader_skip(loader, after))
        return LN_ERR;
    if (batch->ids == batch->host_ids) return LN_OK;
    return ln_tensor_copy(batch->ids, batch->host_ids) || ln_tensor_copy(batch->targets, batch->host_targets) ? LN_ERR
                                                                                                            : LN_OK;
}

void ln_batch_free(ln_batch *batch) {
    if (batch->ids != batch->host_ids) {
        ln_tensor_free(batch->ids);
        ln_tensor_free(batch->targets);
    }
    ln_tensor_free(batch->host_ids);
    ln_tensor_free(batch->host_targets);
    *batch = (ln_batch){0};
}
