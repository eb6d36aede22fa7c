// The NCCL side of data parallel training: the communicator, the side stream and its events.
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_check.cuh"
#include "distributed/nccl.h"

// A failed NCCL call becomes a linnet error naming the call (and NCCL's own detail, when it has one).
#define LN_NCCL_TRY(call)                                                                          \
    do {                                                                                           \
        ncclResult_t status_ = (call);                                                             \
        if (status_ != ncclSuccess)                                                                \
            return ln_fail("%s failed: %s%s%s (%s:%d)", #call, ncclGetErrorString(status_),        \
                           *ncclGetLastError(NULL) ? ": " : "", ncclGetLastError(NULL), __FILE__, __LINE__); \
    } while (0)

struct ln_nccl {
    ncclComm_t comm;
    cudaStream_t stream; // the side stream: all-reduces only
    cudaEvent_t ready;   // recorded on the compute stream when a bucket's gradients are final
    cudaEvent_t done;    // recorded on the side stream after the last all-reduce issued
    int rank;
};

static int make_id(ncclUniqueId *id) {
    LN_NCCL_TRY(ncclGetUniqueId(id));
    return LN_OK;
}

static int init(ln_nccl *n, ln_comm *comm) {
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int status = comm->rank == 0 ? make_id(&id) : LN_OK;
    // every rank learns whether rank 0 has an id, so none blocks in the broadcast for nothing
    if (ln_comm_agree(comm, status) != LN_OK)
        return comm->rank == 0 ? LN_ERR : ln_fail("rank 0 could not make an NCCL id");
    if (ln_comm_broadcast(comm, &id, sizeof id)) return LN_ERR;
    ncclComm_t made = NULL;
    LN_NCCL_TRY(ncclCommInitRank(&made, comm->size, id, comm->rank));
    n->comm = made; // only a communicator that was fully made
    // the highest priority: NCCL kernels then get SMs as soon as the backward frees some
    int least = 0, greatest = 0;
    LN_CUDA_TRY(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    LN_CUDA_TRY(cudaStreamCreateWithPriority(&n->stream, cudaStreamNonBlocking, greatest));
    LN_CUDA_TRY(cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
    LN_CUDA_TRY(cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming));
    n->rank = comm->rank;
    return LN_OK;
}

// graceful: finalize (which waits for every rank to get there), for the end of a good run; else
// abort, which waits for no peer: after a failure the run is ending and a peer may be gone.
static void destroy(ln_nccl *n, bool graceful) {
    if (!n) return;
    if (n->comm && graceful) {
        if (n->stream) cudaStreamSynchronize(n->stream); // nothing may still run on the side stream
        ncclCommFinalize(n->comm);
        ncclCommDestroy(n->comm);
    } else if (n->comm) {
        ncclCommAbort(n->comm);
    }
    if (n->ready) cudaEventDestroy(n->ready);
    if (n->done) cudaEventDestroy(n->done);
    if (n->stream) cudaStreamDestroy(n->stream);
    free(n);
}

extern "C" int ln_nccl_create(ln_nccl **out, ln_comm *comm) {
    *out = NULL;
    ln_nccl *n = (ln_nccl *)calloc(1, sizeof *n);
    if (!n) return ln_fail("nccl: out of host memory");
    if (init(n, comm)) {
        destroy(n, false);
        return ln_fail_context("NCCL communicator of rank %d of %d", comm->rank, comm->size);
    }
    *out = n;
    return LN_OK;
}

extern "C" void ln_nccl_free(ln_nccl *n) { destroy(n, true); }

// cudaStreamWaitEvent takes the event's latest record at the time of the call, so one event
// serves every bucket.
static int reduce(float *data, int64_t count, void *ctx) {
    ln_nccl *n = (ln_nccl *)ctx;
    LN_CUDA_TRY(cudaEventRecord(n->ready, ln_stream()));
    LN_CUDA_TRY(cudaStreamWaitEvent(n->stream, n->ready, 0));
    // sum, not average: train.c scales the loss by 1 / (ranks x micro-steps) already
    LN_NCCL_TRY(ncclAllReduce(data, data, (size_t)count, ncclFloat32, ncclSum, n->comm, n->stream));
    return LN_OK;
}

static int wait_all(void *ctx) {
    ln_nccl *n = (ln_nccl *)ctx;
    LN_CUDA_TRY(cudaEventRecord(n->done, n->stream));
    LN_CUDA_TRY(cudaStreamWaitEvent(ln_stream(), n->done, 0));
    // a peer's failure shows up here rather than as a hang later
    ncclResult_t async = ncclSuccess;
    LN_NCCL_TRY(ncclCommGetAsyncError(n->comm, &async));
    if (async != ncclSuccess)
        return ln_fail("ncclAllReduce of gradients failed on rank %d: %s", n->rank, ncclGetErrorString(async));
    return LN_OK;
}

extern "C" ln_grad_transport ln_nccl_transport(ln_nccl *n) {
    ln_grad_transport t = {reduce, wait_all, n};
    return t;
}
