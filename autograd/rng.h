/* A small counter-friendly RNG (xoshiro256**, seeded through splitmix64). Its state is plain
 * data so checkpoints can store and restore it exactly. */
#ifndef LN_RNG_H
#define LN_RNG_H

#include <stdint.h>

typedef struct ln_rng {
    uint64_t s[4];
} ln_rng;

void ln_rng_seed(ln_rng *rng, uint64_t seed);
uint64_t ln_rng_next(ln_rng *rng);
double ln_rng_uniform(ln_rng *rng); /* [0, 1) */
double ln_rng_normal(ln_rng *rng);  /* standard normal (Box-Muller) */
uint64_t ln_rng_below(ln_rng *rng, uint64_t n); /* uniform in [0, n), n > 0 */
/* A stateless hash of (seed, a, b): the same inputs always give the same value. */
uint64_t ln_hash3(uint64_t seed, uint64_t a, uint64_t b);

#endif
