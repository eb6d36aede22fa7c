#include <stdlib.h>

#include "autograd/error.h"
#include "recipes/batch.h"
#include "recipes/train.h"

int ln_evaluate(ln_transformer *model, ln_loader *loader, int batches, int batch_size, int seq_len, ln_comm *comm,
                double *mean_loss) {
    if (batch_size % comm->size)
        return ln_fail("evaluation: batch size %d does not split over %d ranks", batch_size, comm->size);
    int local = batch_size / comm->size;
    ln_batch batch;
    int status = ln_batch_init(&batch, local, seq_len, model->embedding->device);
    if (status == LN_OK) status = ln_loader_set_cursor(loader, (ln_loader_cursor){0});
    bool was = ln_set_grad_enabled(false);
    double sum = 0;
    for (int b = 0; b < batches && status == LN_OK; b++) {
        status = ln_batch_load(&batch, loader, comm->rank * local, (comm->size - 1 - comm->rank) * local);
        if (status) break;
        ln_tensor *loss = ln_transformer_loss(model, batch.ids, batch.targets);
        if (!loss) status = LN_ERR;
        else sum += ln_item(loss, 0) / comm->size;
        ln_tape_clear();
    }
    ln_set_grad_enabled(was);
    if (status == LN_OK) status = ln_comm_allreduce_f64(comm, &sum, 1);
    *mean_loss = sum / batches;
    ln_batch_free(&batch);
    return status;
}
