/* Deterministic random numbers: xoshiro256** (Blackman & Vigna) seeded by
 * splitmix64.
 *
 * "Same seed, same numbers on every machine": only integer operations, IEEE
 * +,-,*,/ and sqrt (all correctly rounded) are used. The normal sampler needs
 * a logarithm; libm's log may differ in the last bit between libcs, so a
 * small series evaluation (exact to about one ulp, and bit-reproducible) is
 * used instead. FMA contraction is off for the whole project. */
#include <math.h>

#include "internal.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void srp_rng_seed(srp_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t srp_rng_next_u64(srp_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double srp_rng_uniform(srp_rng *r) { return (double)(srp_rng_next_u64(r) >> 11) * 0x1.0p-53; }

uint64_t srp_rng_below(srp_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Reject the top sliver that would make the modulo biased. */
    const uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = srp_rng_next_u64(r);
        if (x >= threshold)
            return x % n;
    }
}

/* log(x) for x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
 * log m = 2 atanh(t), t = (m-1)/(m+1), |t| < 0.172, summed to 1e-20. */
static double portable_log(double x)
{
    int e;
    double m = frexp(x, &e); /* exact */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double series = 1.0 / 25.0;
    for (int k = 11; k >= 0; k--)
        series = series * t2 + 1.0 / (double)(2 * k + 1);
    return 2.0 * t * series + (double)e * 0.69314718055994530942;
}

double srp_rng_normal(srp_rng *r)
{
    for (;;) {
        const double a = 2.0 * srp_rng_uniform(r) - 1.0;
        const double b = 2.0 * srp_rng_uniform(r) - 1.0;
        const double s = a * a + b * b;
        if (s > 0.0 && s < 1.0)
            return a * sqrt(-2.0 * portable_log(s) / s);
    }
}

double srp_rng_trunc_normal(srp_rng *r, double mean, double std)
{
    if (!(std > 0.0))
        return mean;
    for (;;) {
        const double z = srp_rng_normal(r);
        if (z >= -2.0 && z <= 2.0)
            return mean + std * z;
    }
}

void srp_rng_fill_trunc_normal(srp_rng *r, float *x, size_t n, float std)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)srp_rng_trunc_normal(r, 0.0, std);
}

void srp_rng_shuffle(srp_rng *r, size_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)srp_rng_below(r, (uint64_t)i);
        const size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

void srp_rng_permutation(srp_rng *r, uint64_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = i;
    for (size_t i = n; i > 1; i--) { /* the draws of srp_rng_shuffle */
        const size_t j = (size_t)srp_rng_below(r, (uint64_t)i);
        const uint64_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
}
