/* The ops `linnet op` can run: for each, the HDF5 dataset names of its inputs and outputs and the
 * scalar arguments it reads (docs/ops.md lists them for users). Adding an op adds a table entry
 * in cli/op_registry.c. */
#ifndef LN_OP_REGISTRY_H
#define LN_OP_REGISTRY_H

#include <stdbool.h>

#include "autograd/tensor.h"

#define CLI_OP_MAX_IO 6
#define CLI_OP_MAX_SCALARS 4

typedef struct {
    const char *name;     /* dataset name; its gradient is "d" + name */
    bool optional;
    bool differentiable;  /* gets a gradient with --grad-out */
} cli_op_input;

typedef struct {
    const char *name;     /* root attribute or one-element dataset */
    double fallback;      /* used when absent (NAN: the op picks, e.g. attention's 1/sqrt(D)) */
    bool required;
} cli_op_scalar;

typedef struct {
    const char *name, *summary;
    cli_op_input inputs[CLI_OP_MAX_IO];      /* until the first NULL name */
    const char *outputs[CLI_OP_MAX_IO];      /* until NULL; the first one's gradient is required */
    cli_op_scalar scalars[CLI_OP_MAX_SCALARS];
    /* in: the inputs in table order (NULL for absent optional ones); s: the scalars in table order.
     * Fills out[] in table order; LN_ERR with the op's message. */
    int (*run)(ln_tensor *const *in, const double *s, ln_tensor **out);
} cli_op;

const cli_op *cli_op_find(const char *name);
int cli_op_count(void);
const cli_op *cli_op_at(int i);

#endif
