/* The communicator: how ranks agree. One process alone uses the local backend; under mpirun the
 * MPI backend. Training on GPUs with more than one rank adds NCCL (distributed/nccl.h) for the
 * gradients; MPI still carries the small host values (losses, statuses, the NCCL id). */
#ifndef LN_COMM_H
#define LN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "layers/params.h"

typedef enum { LN_COMM_LOCAL, LN_COMM_MPI } ln_comm_backend;

typedef struct ln_comm {
    ln_comm_backend backend;
    int rank, size;
    struct ln_nccl *nccl; /* GPU gradients go through it when set (ln_comm_init_gpu) */
} ln_comm;

/* MPI when launched by mpirun/mpiexec (detected from the launcher's environment), else local. */
int ln_comm_init(ln_comm *comm, int *argc, char ***argv);
void ln_comm_finalize(ln_comm *comm);
/* After the rank's GPU is chosen: NCCL among the ranks when there are several and this build has
 * NCCL (else gradients keep going through host copies and MPI). Collective. */
int ln_comm_init_gpu(ln_comm *comm);
/* In-place sums across ranks. */
int ln_comm_allreduce_f32(ln_comm *comm, float *data, int64_t n);
int ln_comm_allreduce_f64(ln_comm *comm, double *data, int64_t n);
/* Sums every parameter's gradient across ranks (making absent gradients zero first), through
 * host memory: the path of CPU training and of GPUs without NCCL. */
int ln_comm_allreduce_grads(ln_comm *comm, ln_params *params);
/* Rank 0's status reaches every rank: all proceed or all stop together. */
int ln_comm_agree(ln_comm *comm, int status);
int ln_comm_broadcast(ln_comm *comm, void *data, size_t bytes);
void ln_comm_barrier(ln_comm *comm);
/* A failure on one rank ends every rank (exit code `code`), so none waits on a dead peer. */
void ln_comm_abort(ln_comm *comm, int code);

#endif
