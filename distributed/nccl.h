/* NCCL for GPU gradients (builds with CUDA and NCCL only, LINNET_NCCL): one communicator over
 * the MPI ranks, one GPU per rank, and a high-priority side stream that runs the all-reduces so
 * they overlap the backward on the compute stream. Usable from C and from .cu files. */
#ifndef LN_NCCL_H
#define LN_NCCL_H

#ifdef __cplusplus
extern "C" {
#endif

#include "distributed/comm.h"
#include "distributed/grad_sync.h"

/* Collective over comm's ranks (rank 0 makes the id, MPI carries it); after ln_cuda_init. */
int ln_nccl_create(struct ln_nccl **out, ln_comm *comm);
/* At the end of a good run, on every rank (it waits for all of them). */
void ln_nccl_free(struct ln_nccl *nccl);
/* The grad_sync transport: each bucket is summed in place on the side stream once the compute
 * stream has reached the point of the call; wait puts the compute stream behind all of them. */
ln_grad_transport ln_nccl_transport(struct ln_nccl *nccl);

#ifdef __cplusplus
}
#endif

#endif
