/* The communicator: how ranks agree. One process alone uses the local backend; under mpirun the
 * MPI backend. NCCL (GPU buffers, one rank per GPU) is the next backend and slots in behind the
 * same calls. */
#ifndef LN_COMM_H
#define LN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "layers/params.h"

typedef enum { LN_COMM_LOCAL, LN_COMM_MPI } ln_comm_backend;

typedef struct ln_comm {
    ln_comm_backend backend;
    int rank, size;
} ln_comm;

/* MPI when launched by mpirun/mpiexec (detected from the launcher's environment), else local. */
int ln_comm_init(ln_comm *comm, int *argc, char ***argv);
void ln_comm_finalize(ln_comm *comm);
/* In-place sums across ranks. */
int ln_comm_allreduce_f32(ln_comm *comm, float *data, int64_t n);
int ln_comm_allreduce_f64(ln_comm *comm, double *data, int64_t n);
/* Sums every parameter's gradient across ranks (making absent gradients zero first). */
int ln_comm_allreduce_grads(ln_comm *comm, ln_params *params);
/* Rank 0's status reaches every rank: all proceed or all stop together. */
int ln_comm_agree(ln_comm *comm, int status);
int ln_comm_broadcast(ln_comm *comm, void *data, size_t bytes);
void ln_comm_barrier(ln_comm *comm);
/* A failure on one rank ends every rank (exit code `code`), so none waits on a dead peer. */
void ln_comm_abort(ln_comm *comm, int code);

#endif
