/* Spectral norm: the exact value by a double-precision SVD (LAPACK), and the
 * power iteration that sigmaReparam runs once per training forward.
 *
 * W: [rows][cols] row-major. u: [cols] (right singular side), v: [rows].
 * One step, in the order of vision/layers.py:
 *     v = normalize(W u)          (gemv, one pass over W)
 *     t = W^T v                   (gemv, second pass over W)
 *     u = normalize(t)
 *     sigma = v^T W u = <t, u> = ||t||^2 / max(||t||, eps)
 * The last line is why a step costs two passes over W instead of three. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct srp_power_iter {
    size_t rows, cols;
    float *u, *v; /* state */
    float sigma;
    float *scratch_u, *scratch_v; /* step candidates and estimates */
};

/* rows x cols fits the power iteration's gemv (and is not empty): SRP_OK,
 * else SRP_ERR_INVALID_ARG naming call. */
static srp_status power_sizes_check(size_t rows, size_t cols, const char *call)
{
    if (rows == 0 || cols == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is 0", call, rows == 0 ? "rows" : "cols");
    if (!srp_blas_size_ok(rows) || !srp_blas_size_ok(cols) ||
        rows > SIZE_MAX / sizeof(double) / cols)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: rows %zu x cols %zu is too large (past BLAS's "
                        "int, or the bytes past SIZE_MAX)",
                        call, rows, cols);
    return SRP_OK;
}

/* y = x / max(||x||, eps) in place, given ||x|| (computed in double). */
static void scale_to_unit(float *x, size_t n, double norm)
{
    const float denom = (float)(norm > SRP_NORMALIZE_EPS ? norm : SRP_NORMALIZE_EPS);
    for (size_t i = 0; i < n; i++)
        x[i] /= denom;
}

enum { STEP_OK, STEP_ZERO, STEP_NONFINITE };

/* y = op(W) x scaled to unit length, *norm its norm before: STEP_OK, or
 * STEP_NONFINITE, or STEP_ZERO (y is then left unscaled). W: [rows][cols];
 * x, y: [cols], [rows] (trans 0) or [rows], [cols] (trans 1). */
static int unit_product(int trans, const float *w, size_t rows, size_t cols, const float *x,
                        float *y, double *norm)
{
    const size_t n = trans ? cols : rows;
    srp_sgemv(trans, rows, cols, 1.0f, w, cols, x, 0.0f, y);
    *norm = sqrt(srp_sumsq_f64(y, n));
    if (!isfinite(*norm))
        return STEP_NONFINITE;
    if (*norm == 0.0)
        return STEP_ZERO;
    scale_to_unit(y, n, *norm);
    return STEP_OK;
}

/* One step from u_in into v_out, u_out. STEP_ZERO: W u_in or W^T v is
 * exactly zero, outputs are garbage and the caller keeps its vectors. */
static int power_step(const float *w, size_t rows, size_t cols, const float *u_in, float *v_out,
                      float *u_out, double *sigma)
{
    double norm_v, norm_t;
    /* v_out = W u_in: [rows] = [rows][cols] x [cols] */
    int r = unit_product(0, w, rows, cols, u_in, v_out, &norm_v);
    /* u_out = t = W^T v_out: [cols] = [rows][cols]^T x [rows] */
    if (r == STEP_OK)
        r = unit_product(1, w, rows, cols, v_out, u_out, &norm_t);
    if (r == STEP_OK)
        *sigma = norm_t >= SRP_NORMALIZE_EPS ? norm_t : norm_t * norm_t / SRP_NORMALIZE_EPS;
    return r;
}

srp_status srp_power_steps_into(const float *w, size_t rows, size_t cols, int iters, const float *u,
                                const float *v, float *u_out, float *v_out, float *sigma)
{
    const float *u_cur = u;
    double s = 0.0;
    for (int it = 0; it < iters; it++) {
        const int r = power_step(w, rows, cols, u_cur, v_out, u_out, &s);
        if (r == STEP_NONFINITE)
            return srp_fail(SRP_ERR_NUMERIC,
                            "power iteration on W [%zu][%zu]: W u or W^T v is "
                            "not finite (NaN/Inf in W, or an overflow)",
                            rows, cols);
        if (r == STEP_ZERO) {
            memcpy(u_out, u, cols * sizeof(float));
            memcpy(v_out, v, rows * sizeof(float));
            s = 0.0;
            break;
        }
        u_cur = u_out;
    }
    if (!isfinite((float)s))
        return srp_fail(SRP_ERR_NUMERIC,
                        "power iteration on W [%zu][%zu]: sigma %g overflows "
                        "a float",
                        rows, cols, s);
    *sigma = (float)s;
    return SRP_OK;
}

srp_status srp_svd_top(const float *w, size_t rows, size_t cols, float *u, float *v, float *sigma)
{
    if (!srp_all_finite(w, rows * cols))
        return srp_fail(SRP_ERR_NUMERIC, "SVD of W [%zu][%zu]: W holds NaN or Inf", rows, cols);
    const size_t k = rows < cols ? rows : cols;
    double *a = malloc(sizeof(double) * rows * cols);
    double *s = malloc(sizeof(double) * k);
    double *du = u ? malloc(sizeof(double) * cols) : NULL;
    double *dv = v ? malloc(sizeof(double) * rows) : NULL;
    srp_status st = SRP_OK;
    if (!a || !s || (u && !du) || (v && !dv)) {
        st = SRP_ERR_NOMEM;
        goto done;
    }
    /* Row-major W is column-major W^T ([cols x rows]). SVD(W^T) = U' S V'^T
     * gives W = V' S U'^T: W's right vector (u) is U'[:,0], its left one
     * (v) is V'[:,0], i.e. the first row of V'^T. */
    for (size_t i = 0; i < rows * cols; i++)
        a[i] = w[i];
    int info = srp_lapack_dgesdd_top(a, cols, rows, s, du, dv);
    if (info == SRP_LAPACK_NOMEM) {
        st = SRP_ERR_NOMEM;
        goto done;
    }
    if (info != 0 || !isfinite(s[0])) {
        st = srp_fail(SRP_ERR_NUMERIC,
                      "SVD of W [%zu][%zu]: LAPACK dgesdd returned info %d, "
                      "sigma %g",
                      rows, cols, info, s[0]);
        goto done;
    }
    *sigma = (float)s[0];
    if (u && v) {
        for (size_t j = 0; j < cols; j++)
            u[j] = (float)du[j];
        for (size_t i = 0; i < rows; i++)
            v[i] = (float)dv[i];
    }
done:
    free(dv);
    free(du);
    free(s);
    free(a);
    return st;
}

srp_status srp_spectral_norm_exact(const float *w, size_t rows, size_t cols, float *sigma)
{
    if (!w || !sigma)
        return SRP_FAIL_NULL(w, sigma);
    const srp_status st = power_sizes_check(rows, cols, "srp_spectral_norm_exact");
    return st == SRP_OK ? srp_svd_top(w, rows, cols, NULL, NULL, sigma) : st;
}

void srp_random_unit(srp_rng *rng, float *x, size_t n)
{
    double norm = 0.0;
    do {
        for (size_t i = 0; i < n; i++)
            x[i] = (float)srp_rng_normal(rng);
        norm = sqrt(srp_sumsq_f64(x, n));
    } while (norm == 0.0);
    scale_to_unit(x, n, norm);
}

/* The vectors, in the block of the object (srp_arena_new). */
static void layout(void *obj, srp_arena *a)
{
    srp_power_iter *p = obj;
    SRP_ARENA_FLOATS(a, p->cols, &p->u, &p->scratch_u);
    SRP_ARENA_FLOATS(a, p->rows, &p->v, &p->scratch_v);
}

srp_status srp_power_iter_create(srp_power_iter **out, size_t rows, size_t cols, uint64_t seed)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    const srp_status st = power_sizes_check(rows, cols, "srp_power_iter_create");
    if (st != SRP_OK)
        return st;
    srp_power_iter *p = SRP_ARENA_NEW(srp_power_iter, layout, .rows = rows, .cols = cols);
    if (!p)
        return SRP_ERR_NOMEM;
    srp_rng rng;
    srp_rng_seed(&rng, seed);
    srp_random_unit(&rng, p->u, cols);
    srp_random_unit(&rng, p->v, rows);
    *out = p;
    return SRP_OK;
}

void srp_power_iter_destroy(srp_power_iter *p) { free(p); }

/* The state: u, v, sigma. */
static void set_state(srp_power_iter *p, const float *u, const float *v, float sigma)
{
    memcpy(p->u, u, p->cols * sizeof(float));
    memcpy(p->v, v, p->rows * sizeof(float));
    p->sigma = sigma;
}

srp_status srp_power_iter_init_svd(srp_power_iter *p, const float *w)
{
    if (!p || !w)
        return SRP_FAIL_NULL(p, w);
    float sigma;
    srp_status st = srp_svd_top(w, p->rows, p->cols, p->scratch_u, p->scratch_v, &sigma);
    if (st == SRP_OK)
        set_state(p, p->scratch_u, p->scratch_v, sigma);
    return st;
}

srp_status srp_power_iter_step(srp_power_iter *p, const float *w, int iters, float *sigma)
{
    if (!p || !w)
        return SRP_FAIL_NULL(p, w);
    if (iters < 1)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_power_iter_step: iters %d < 1", iters);
    float s;
    srp_status st = srp_power_steps_into(w, p->rows, p->cols, iters, p->u, p->v, p->scratch_u,
                                         p->scratch_v, &s);
    if (st != SRP_OK)
        return st;
    set_state(p, p->scratch_u, p->scratch_v, s);
    if (sigma)
        *sigma = s;
    return SRP_OK;
}

srp_status srp_power_iter_estimate(const srp_power_iter *p, const float *w, float *sigma)
{
    if (!p || !w || !sigma)
        return SRP_FAIL_NULL(p, w, sigma);
    /* The scratch vectors are workspace, not state: writing them through a
     * const handle is why this call is not thread-safe per object. */
    srp_power_iter *mut = (srp_power_iter *)p;
    return srp_power_steps_into(w, p->rows, p->cols, 1, p->u, p->v, mut->scratch_u, mut->scratch_v,
                                sigma);
}

const float *srp_power_iter_u(const srp_power_iter *p) { return p ? p->u : NULL; }

const float *srp_power_iter_v(const srp_power_iter *p) { return p ? p->v : NULL; }

float srp_power_iter_sigma(const srp_power_iter *p) { return p ? p->sigma : NAN; }

srp_status srp_power_iter_set_state(srp_power_iter *p, const float *u, const float *v, float sigma)
{
    if (!p || !u || !v)
        return SRP_FAIL_NULL(p, u, v);
    if (!srp_all_finite(u, p->cols) || !srp_all_finite(v, p->rows) || !isfinite(sigma))
        return srp_fail(SRP_ERR_NUMERIC, "srp_power_iter_set_state: %s is not finite",
                        !srp_all_finite(u, p->cols)   ? "u"
                        : !srp_all_finite(v, p->rows) ? "v"
                                                      : "sigma");
    set_state(p, u, v, sigma);
    return SRP_OK;
}
