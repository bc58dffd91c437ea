/*
 * libsigmareparam: sigmaReparam for transformer training in C.
 *
 * Every linear weight is used as W_hat = (gamma / sigma(W)) * W, where
 * sigma(W), the spectral norm, is tracked by one power-iteration step per
 * training forward and gamma is a learned scalar (Zhai et al., "Stabilizing
 * Transformer Training by Preventing Attention Entropy Collapse", ICML 2023;
 * semantics of apple/ml-sigma-reparam, vision/layers.py). Attention tracks
 * its per-head entropy and the paper's lower bound on it.
 *
 * Conventions, everywhere in this header:
 *  - every fallible call returns srp_status; the library never aborts,
 *    exits or prints, and a failed call leaves its object as it was;
 *  - arrays are row-major float32, sizes are size_t;
 *  - activations (x, y, dy, dx) belong to the caller; layers own their
 *    parameters, gradients, optimizer-visible state and workspaces;
 *  - parameter gradients accumulate (+=); input gradients are overwritten;
 *  - handles come in create/destroy pairs and destroy(NULL) does nothing;
 *  - forward and backward allocate nothing; all memory is taken at create.
 */
#ifndef SIGMAREPARAM_H
#define SIGMAREPARAM_H

#include <stddef.h>
#include <stdint.h>

#define SRP_VERSION_MAJOR 0
#define SRP_VERSION_MINOR 1
#define SRP_VERSION_PATCH 0
#define SRP_VERSION_NUMBER (SRP_VERSION_MAJOR * 10000 + SRP_VERSION_MINOR * 100 + SRP_VERSION_PATCH)
#define SRP_VERSION_STRINGIFY_(x) #x
#define SRP_VERSION_STRINGIFY(x) SRP_VERSION_STRINGIFY_(x)
#define SRP_VERSION_STRING                                                                   \
    SRP_VERSION_STRINGIFY(SRP_VERSION_MAJOR) "." SRP_VERSION_STRINGIFY(SRP_VERSION_MINOR) "." \
        SRP_VERSION_STRINGIFY(SRP_VERSION_PATCH)

/* Symbols are hidden by default when the library is built; SRP_API marks the
 * public ones. */
#if defined(_WIN32) && defined(SRP_SHARED_BUILD)
#define SRP_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define SRP_API __attribute__((visibility("default")))
#else
#define SRP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Status, version, threads
 * ====================================================================== */

typedef enum {
    SRP_OK = 0,
    SRP_ERR_INVALID_ARG, /* NULL pointer, zero size, value out of range */
    SRP_ERR_SHAPE,       /* sizes that do not match the object or each other */
    SRP_ERR_NOMEM,       /* allocation failed (only at create/load time) */
    SRP_ERR_NUMERIC,     /* NaN/Inf in an input, or a result that would be */
    SRP_ERR_IO,          /* a file could not be opened, read or written */
    SRP_ERR_FORMAT,      /* a file is truncated, corrupt or not ours */
    SRP_ERR_VERSION,     /* a file from a format version we cannot read */
    SRP_ERR_UNSUPPORTED  /* a valid request this build or object cannot do */
} srp_status;

/* A short English description, never NULL (also for unknown values). */
SRP_API const char *srp_status_str(srp_status s);

/* "MAJOR.MINOR.PATCH" of the library actually linked (SRP_VERSION_STRING is
 * the one compiled against). */
SRP_API const char *srp_version_string(void);
SRP_API unsigned srp_version_number(void);

/* Threads used by the library and by OpenBLAS. n <= 0 means one per online
 * CPU. Results for a given thread count are deterministic. */
SRP_API void srp_set_num_threads(int n);
SRP_API int srp_get_num_threads(void);

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

/* ======================================================================
 * Spectral norm
 *
 * W is row-major [rows][cols]. The power iteration keeps u (length cols,
 * right singular side) and v (length rows). One step, as vision/layers.py:
 *     v <- normalize(W u);  u <- normalize(W^T v);  sigma = v^T W u
 * with normalize(x) = x / max(||x||_2, 1e-12). sigma is computed as
 * <W^T v, u>, which is v^T W u without a third pass over W.
 * One deliberate difference from the official code: when W u or W^T v is
 * exactly zero (W = 0), u and v are kept instead of becoming zero vectors,
 * so the iteration can recover once W is non-zero again; sigma is 0.
 * ====================================================================== */

/* Largest singular value of W by a LAPACK SVD done in double. */
SRP_API srp_status srp_spectral_norm_exact(const float *w, size_t rows, size_t cols, float *sigma);

typedef struct srp_power_iter srp_power_iter;

/* u and v start as seeded random unit vectors; sigma starts at 0. */
SRP_API srp_status srp_power_iter_create(srp_power_iter **out, size_t rows, size_t cols, uint64_t seed);
SRP_API void srp_power_iter_destroy(srp_power_iter *p);
/* u, v, sigma from an exact SVD of W (in double). */
SRP_API srp_status srp_power_iter_init_svd(srp_power_iter *p, const float *w);
/* iters >= 1 power steps on W; updates u, v, sigma; *sigma may be NULL.
 * NaN/Inf in W (or a non-finite result): SRP_ERR_NUMERIC, state untouched. */
SRP_API srp_status srp_power_iter_step(srp_power_iter *p, const float *w, int iters, float *sigma);
/* One step from the stored u into internal scratch; returns its sigma and
 * leaves u, v, sigma untouched (bit-identical when repeated). Not safe to
 * call concurrently on the same object. */
SRP_API srp_status srp_power_iter_estimate(const srp_power_iter *p, const float *w, float *sigma);
SRP_API const float *srp_power_iter_u(const srp_power_iter *p); /* length cols */
SRP_API const float *srp_power_iter_v(const srp_power_iter *p); /* length rows */
SRP_API float srp_power_iter_sigma(const srp_power_iter *p);    /* of the last init/step */
/* Restore a saved state (u: cols, v: rows). Non-finite values: SRP_ERR_NUMERIC. */
SRP_API srp_status srp_power_iter_set_state(srp_power_iter *p, const float *u, const float *v, float sigma);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_H */
