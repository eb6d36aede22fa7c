#include <stdlib.h>

#include "autograd/error.h"
#include "recipes/train.h"

int ln_evaluate(ln_transformer *model, ln_loader *loader, int batches, int batch_size, int seq_len, ln_comm *comm,
                double *mean_loss) {
    if (batch_size % comm->size)
        return ln_fail("evaluation: batch size %d does not split over %d ranks", batch_size, comm->size);
    int local = batch_size / comm->size;
    ln_tensor *ids = ln_tensor_new(LN_I32, LN_CPU, 2, (int64_t[]){local, seq_len});
    ln_tensor *targets = ln_tensor_new(LN_I32, LN_CPU, 2, (int64_t[]){local, seq_len});
    if (!ids || !targets) return LN_ERR;
    int status = ln_loader_set_cursor(loader, (ln_loader_cursor){0});
    bool was = ln_set_grad_enabled(false);
    double sum = 0;
    for (int b = 0; b < batches && status == LN_OK; b++) {
        status = ln_loader_skip(loader, comm->rank * local);
        if (status == LN_OK) status = ln_loader_next(loader, local, ids->data, targets->data);
        if (status == LN_OK) status = ln_loader_skip(loader, (comm->size - 1 - comm->rank) * local);
        if (status) break;
        ln_tensor *loss = ln_transformer_loss(model, ids, targets);
        if (!loss) status = LN_ERR;
        else sum += ln_get(loss, 0) / comm->size;
        ln_tape_clear();
    }
    ln_set_grad_enabled(was);
    if (status == LN_OK) status = ln_comm_allreduce_f64(comm, &sum, 1);
    *mean_loss = sum / batches;
    ln_tensor_free(ids);
    ln_tensor_free(targets);
    return status;
}
