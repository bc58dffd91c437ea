/* Spectral norm: exact SVD and power iteration. Part of <sigmareparam.h>; include that. */
#ifndef SIGMAREPARAM_SPECTRAL_H
#define SIGMAREPARAM_SPECTRAL_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* Errors, as for every call of the library (core.h): a NULL pointer
 * argument, rows or cols 0, or so large that a BLAS int or SIZE_MAX bytes
 * cannot hold them: SRP_ERR_INVALID_ARG; NaN/Inf in W, u or
 * v, or a result that is not finite: SRP_ERR_NUMERIC; no memory:
 * SRP_ERR_NOMEM. srp_last_error_detail() says which argument, and the
 * object is unchanged on every error. */

/* Largest singular value of W by a LAPACK SVD done in double. Allocates
 * (its workspace). A LAPACK failure to converge: SRP_ERR_NUMERIC. */
SRP_API srp_status srp_spectral_norm_exact(const float *w, size_t rows, size_t cols, float *sigma);

typedef struct srp_power_iter srp_power_iter;

/* u and v start as seeded random unit vectors; sigma starts at 0. W is
 * then [rows][cols]. */
SRP_API srp_status srp_power_iter_create(srp_power_iter **out, size_t rows, size_t cols,
                                         uint64_t seed);
SRP_API void srp_power_iter_destroy(srp_power_iter *p);
/* u, v, sigma from an exact SVD of W (in double). Allocates, as
 * srp_spectral_norm_exact. */
SRP_API srp_status srp_power_iter_init_svd(srp_power_iter *p, const float *w);
/* iters >= 1 power steps on W; updates u, v, sigma; sigma may be NULL.
 * iters < 1: SRP_ERR_INVALID_ARG. NaN/Inf in W (or a non-finite result):
 * SRP_ERR_NUMERIC, state untouched. Allocates nothing. */
SRP_API srp_status srp_power_iter_step(srp_power_iter *p, const float *w, int iters, float *sigma);
/* One step from the stored u into internal scratch; returns its sigma and
 * leaves u, v, sigma untouched (bit-identical when repeated). Not safe to
 * call concurrently on the same object. */
SRP_API srp_status srp_power_iter_estimate(const srp_power_iter *p, const float *w, float *sigma);
SRP_API const float *srp_power_iter_u(const srp_power_iter *p); /* length cols */
SRP_API const float *srp_power_iter_v(const srp_power_iter *p); /* length rows */
SRP_API float srp_power_iter_sigma(const srp_power_iter *p);    /* of the last init/step */
/* Restore a saved state (u: cols, v: rows). Non-finite values: SRP_ERR_NUMERIC. */
SRP_API srp_status srp_power_iter_set_state(srp_power_iter *p, const float *u, const float *v,
                                            float sigma);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_SPECTRAL_H */
