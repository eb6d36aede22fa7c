#include "comm.h"

#include <mpi.h>
#include <stdlib.h>

#include "autograd/error.h"
#ifdef LINNET_NCCL
#include "distributed/nccl.h"
#endif

static int launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int ln_comm_init(ln_comm *comm, int *argc, char ***argv) {
    comm->backend = LN_COMM_LOCAL;
    comm->rank = 0;
    comm->size = 1;
    comm->nccl = NULL;
    if (!launched_by_mpi()) return LN_OK; /* no MPI start-up cost for a single process */
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return ln_fail("MPI_Init failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &comm->size);
    comm->backend = LN_COMM_MPI;
    return LN_OK;
}

int ln_comm_init_gpu(ln_comm *comm) {
#ifdef LINNET_NCCL
    if (comm->size > 1 && !comm->nccl) return ln_nccl_create(&comm->nccl, comm);
#endif
    return LN_OK;
}

void ln_comm_finalize(ln_comm *comm) {
#ifdef LINNET_NCCL
    ln_nccl_free(comm->nccl); /* before MPI goes */
    comm->nccl = NULL;
#endif
    if (comm->backend == LN_COMM_MPI) MPI_Finalize();
    comm->backend = LN_COMM_LOCAL;
}

/* MPI counts are int: large buffers go in pieces. */
static int allreduce(ln_comm *comm, void *data, int64_t n, MPI_Datatype type, size_t elem) {
    if (comm->backend != LN_COMM_MPI || comm->size == 1) return LN_OK;
    const int64_t piece = 1 << 30;
    for (int64_t off = 0; off < n; off += piece) {
        int count = (int)(n - off < piece ? n - off : piece);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)data + off * (int64_t)elem, count, type, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return ln_fail("MPI_Allreduce of %d elements failed on rank %d", count, comm->rank);
    }
    return LN_OK;
}

int ln_comm_allreduce_f32(ln_comm *comm, float *data, int64_t n) { return allreduce(comm, data, n, MPI_FLOAT, 4); }

int ln_comm_allreduce_f64(ln_comm *comm, double *data, int64_t n) { return allreduce(comm, data, n, MPI_DOUBLE, 8); }

/* GPU gradients travel through a host copy when there is no NCCL. */
static int allreduce_staged(ln_comm *comm, ln_tensor *g) {
    ln_tensor *host = ln_tensor_new(g->dtype, LN_CPU, g->ndim, g->shape);
    int status = host && ln_tensor_copy(host, g) == LN_OK && ln_comm_allreduce_f32(comm, host->data, host->numel) == LN_OK &&
                         ln_tensor_copy(g, host) == LN_OK
                     ? LN_OK
                     : LN_ERR;
    ln_tensor_free(host);
    return status;
}

int ln_comm_allreduce_grads(ln_comm *comm, ln_params *params) {
    for (int i = 0; i < params->n; i++) {
        ln_tensor *g = ln_grad_of(params->items[i].tensor);
        if (!g) return ln_fail_context("gradient of %s", params->items[i].name);
        if (comm->size == 1) continue;
        int status = g->device == LN_CPU ? ln_comm_allreduce_f32(comm, g->data, g->numel) : allreduce_staged(comm, g);
        if (status) return ln_fail_context("gradient of %s", params->items[i].name);
    }
    return LN_OK;
}

int ln_comm_agree(ln_comm *comm, int status) {
    if (comm->backend != LN_COMM_MPI) return status;
    int value = status;
    MPI_Bcast(&value, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return value;
}

int ln_comm_broadcast(ln_comm *comm, void *data, size_t bytes) {
    if (comm->backend != LN_COMM_MPI) return LN_OK;
    if (MPI_Bcast(data, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return ln_fail("MPI_Bcast failed");
    return LN_OK;
}

void ln_comm_barrier(ln_comm *comm) {
    if (comm->backend == LN_COMM_MPI) MPI_Barrier(MPI_COMM_WORLD);
}

void ln_comm_abort(ln_comm *comm, int code) {
    if (comm->backend == LN_COMM_MPI && comm->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}
