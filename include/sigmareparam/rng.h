/* Deterministic seeded random numbers. Part of <sigmareparam.h>; include that. */
#ifndef SIGMAREPARAM_RNG_H
#define SIGMAREPARAM_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Deterministic random numbers
 *
 * xoshiro256** seeded through splitmix64. The state is a plain struct so it
 * can be copied into a checkpoint. Only integer and IEEE basic arithmetic
 * (no libm transcendental) is used, so a seed gives the same numbers on
 * every machine and compiler.
 * ====================================================================== */

typedef struct srp_rng {
    uint64_t s[4];
} srp_rng;

SRP_API void srp_rng_seed(srp_rng *r, uint64_t seed);
SRP_API uint64_t srp_rng_next_u64(srp_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
SRP_API double srp_rng_uniform(srp_rng *r);
/* Uniform integer in [0, n), unbiased; 0 when n == 0. */
SRP_API uint64_t srp_rng_below(srp_rng *r, uint64_t n);
/* Standard normal (Marsaglia's polar method). */
SRP_API double srp_rng_normal(srp_rng *r);
/* Normal(mean, std) truncated to [mean - 2 std, mean + 2 std] by rejection
 * (acceptance 95%). std <= 0 returns mean. */
SRP_API double srp_rng_trunc_normal(srp_rng *r, double mean, double std);
/* x[i] ~ Normal(0, std) truncated to [-2 std, 2 std]: the weight init. */
SRP_API void srp_rng_fill_trunc_normal(srp_rng *r, float *x, size_t n, float std);
/* Fisher-Yates shuffle of idx[0..n). */
SRP_API void srp_rng_shuffle(srp_rng *r, size_t *idx, size_t n);
/* out[0..n) = a uniformly random permutation of 0..n-1: the shuffle of the
 * identity, with the same draws (an epoch's order, in the 64-bit integers
 * a checkpoint stores). */
SRP_API void srp_rng_permutation(srp_rng *r, uint64_t *out, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_RNG_H */
