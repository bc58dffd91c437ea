/* LayerNorm over the last dimension, as torch.nn.LayerNorm.
 *
 * x, y: [n][d]. Per row: mean, var (biased), rstd = 1 / sqrt(var + eps),
 * xhat = (x - mean) rstd, y = xhat * weight + bias.
 * Backward, with g = dy * weight:
 *     dx       = rstd (g - mean(g) - xhat mean(g xhat))
 *     dweight += sum_rows dy xhat        dbias += sum_rows dy
 * Row statistics and the row means of the backward are taken in double.
 * The column sums run in blocks of columns, each over all rows in order,
 * so they give the same bits for any thread count. */
#include <math.h>

#include "internal.h"

/* Columns per task of the dweight/dbias sums (their double accumulators
 * live on the stack). */
#define COL_BLOCK 64

/* x and y set, n x d elements that fit: SRP_OK, or SRP_ERR_INVALID_ARG
 * naming call and what is wrong. */
static srp_status args_check(const void *x, const void *y, size_t n, size_t d, const char *call)
{
    if (!x || !y)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is NULL", call, x ? "the output" : "x");
    if (n == 0 || d == 0 || n > SIZE_MAX / d)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n %zu, d %zu: %s", call, n, d,
                        n == 0 || d == 0 ? "a size is 0" : "n x d overflows");
    return SRP_OK;
}

/* x: [d] -> mean, rstd of the row, two passes in double. */
static void row_stats(const float *x, size_t d, double eps, double *mean, double *rstd)
{
    double sum = 0.0;
    for (size_t j = 0; j < d; j++)
        sum += x[j];
    const double m = sum / (double)d;
    double sq = 0.0;
    for (size_t j = 0; j < d; j++) {
        const double c = (double)x[j] - m;
        sq += c * c;
    }
    *mean = m;
    *rstd = 1.0 / sqrt(sq / (double)d + eps);
}

srp_status srp_layernorm_forward(const float *x, const float *weight, const float *bias, size_t n,
                                 size_t d, float eps, float *y, float *mean, float *rstd)
{
    const srp_status st = args_check(x, y, n, d, "srp_layernorm_forward");
    if (st != SRP_OK)
        return st;
    if (!(eps > 0.0f) || !isfinite(eps))
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_layernorm_forward: eps %g: must be finite and "
                        "> 0", (double)eps);
    const uint64_t t0 = srp_profile_begin();
    const long rows = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * d >= SRP_PARALLEL_MIN_ELEMS)
    for (long i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
        double m, r;
        row_stats(xi, d, (double)eps, &m, &r);
        /* The saved statistics are what the backward uses. */
        const float mf = (float)m, rf = (float)r;
        for (size_t j = 0; j < d; j++) {
            const float xhat = (xi[j] - mf) * rf;
            const float w = weight ? weight[j] : 1.0f, b = bias ? bias[j] : 0.0f;
            yi[j] = xhat * w + b;
        }
        if (mean)
            mean[i] = mf;
        if (rstd)
            rstd[i] = rf;
    }
    srp_profile_end(SRP_PROF_LAYERNORM, t0);
    return SRP_OK;
}

/* dweight[j] += sum_i dy[i][j] xhat[i][j], dbias[j] += sum_i dy[i][j].
 * x, dy: [n][d]; mean, rstd: [n]. */
static void param_grads(const float *x, const float *mean, const float *rstd, const float *dy,
                        size_t n, size_t d, float *dweight, float *dbias)
{
    const long blocks = (long)((d + COL_BLOCK - 1) / COL_BLOCK);
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * d >= SRP_PARALLEL_MIN_ELEMS)
    for (long blk = 0; blk < blocks; blk++) {
        const size_t j0 = (size_t)blk * COL_BLOCK, j1 = j0 + COL_BLOCK < d ? j0 + COL_BLOCK : d;
        double acc_w[COL_BLOCK] = {0}, acc_b[COL_BLOCK] = {0};
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * d, *gi = dy + i * d;
            for (size_t j = j0; j < j1; j++) {
                const float xhat = (xi[j] - mean[i]) * rstd[i];
                acc_w[j - j0] += (double)gi[j] * (double)xhat;
                acc_b[j - j0] += (double)gi[j];
            }
        }
        for (size_t j = j0; j < j1; j++) {
            if (dweight)
                dweight[j] += (float)acc_w[j - j0];
            if (dbias)
                dbias[j] += (float)acc_b[j - j0];
        }
    }
}

srp_status srp_layernorm_backward(const float *x, const float *weight, const float *mean,
                                  const float *rstd, const float *dy, size_t n, size_t d, float *dx,
                                  float *dweight, float *dbias)
{
    const srp_status st = args_check(x, dx, n, d, "srp_layernorm_backward");
    if (st != SRP_OK)
        return st;
    if (!mean || !rstd || !dy)
        return SRP_FAIL_NULL(mean, rstd, dy);
    const uint64_t t0 = srp_profile_begin();
    /* Parameter gradients first: dx may be dy. */
    if (dweight || dbias)
        param_grads(x, mean, rstd, dy, n, d, dweight, dbias);
    const long rows = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * d >= SRP_PARALLEL_MIN_ELEMS)
    for (long i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * d, *gi = dy + (size_t)i * d;
        float *dxi = dx + (size_t)i * d;
        const float m = mean[i], r = rstd[i];
        double sum_g = 0.0, sum_gx = 0.0; /* sums of g and g * xhat */
        for (size_t j = 0; j < d; j++) {
            const double g = (double)gi[j] * (weight ? (double)weight[j] : 1.0);
            sum_g += g;
            sum_gx += g * (double)((xi[j] - m) * r);
        }
        const double mean_g = sum_g / (double)d, mean_gx = sum_gx / (double)d;
        for (size_t j = 0; j < d; j++) {
            const double g = (double)gi[j] * (weight ? (double)weight[j] : 1.0);
            const double xhat = (double)((xi[j] - m) * r);
            dxi[j] = (float)((double)r * (g - mean_g - xhat * mean_gx));
        }
    }
    srp_profile_end(SRP_PROF_LAYERNORM, t0);
    return SRP_OK;
}
