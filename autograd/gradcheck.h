/* Finite-difference gradient checks in float64: the proof every op's backward is right. */
#ifndef LN_GRADCHECK_H
#define LN_GRADCHECK_H

#include "tape.h"

/* Builds the output from the inputs with ops (it may read ctx for scalar arguments). */
typedef ln_tensor *(*ln_gradcheck_fn)(ln_tensor *const *inputs, void *ctx);

/* Checks d(sum(w * f(inputs)))/d(input) for every input with requires_grad, element by element,
 * against central differences (step eps), with w a fixed random weighting of the output.
 * Inputs must be caller-owned f64 CPU tensors. Passes when |analytic - numeric| <= tol * (1 +
 * |numeric|) everywhere; else LN_ERR with a message naming the input and element. */
int ln_gradcheck(ln_gradcheck_fn f, void *ctx, int n_inputs, ln_tensor *const *inputs, double eps, double tol);

/* A caller-owned f64 CPU tensor of normal random values (seeded), requires_grad set. */
ln_tensor *ln_randn_f64(int ndim, const int64_t *shape, uint64_t seed);

#endif
