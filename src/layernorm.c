/* LayerNorm over the last dimension, as torch.nn.LayerNorm: the kernels
 * (nn.h) and the layer object around them (layernorm.h).
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
#include <stdlib.h>
#include <string.h>

#include "layernorm_internal.h"

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

/* The forward's rows: y and, where wanted, the statistics. */
static void forward_rows(const float *x, const float *weight, const float *bias, size_t n, size_t d,
                         float eps, float *y, float *mean, float *rstd)
{
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
}

srp_status srp_layernorm_forward(const float *x, const float *weight, const float *bias, size_t n,
                                 size_t d, float eps, float *y, float *mean, float *rstd)
{
    const srp_status st = args_check(x, y, n, d, "srp_layernorm_forward");
    if (st != SRP_OK)
        return st;
    if (!(eps > 0.0f) || !isfinite(eps))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_layernorm_forward: eps %g: must be finite and > 0", (double)eps);
    const uint64_t t0 = srp_profile_begin();
    forward_rows(x, weight, bias, n, d, eps, y, mean, rstd);
    srp_profile_end(SRP_PROF_LAYERNORM, t0);
    return SRP_OK;
}

/* dweight[j] (+)= sum_i dy[i][j] xhat[i][j], dbias[j] (+)= sum_i dy[i][j]:
 * added in with add, else stored (the layer's pending gradients, added in
 * at its commit: the same bits). x, dy: [n][d]; mean, rstd: [n]. */
static void param_grads(const float *x, const float *mean, const float *rstd, const float *dy,
                        size_t n, size_t d, float *dweight, float *dbias, int add)
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
                dweight[j] = add ? dweight[j] + (float)acc_w[j - j0] : (float)acc_w[j - j0];
            if (dbias)
                dbias[j] = add ? dbias[j] + (float)acc_b[j - j0] : (float)acc_b[j - j0];
        }
    }
}

/* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy * weight, row by
 * row; dx may be dy. x, dy, dx: [n][d]; mean, rstd: [n]. */
static void input_grad(const float *x, const float *weight, const float *mean, const float *rstd,
                       const float *dy, size_t n, size_t d, float *dx)
{
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
        param_grads(x, mean, rstd, dy, n, d, dweight, dbias, 1);
    input_grad(x, weight, mean, rstd, dy, n, d, dx);
    srp_profile_end(SRP_PROF_LAYERNORM, t0);
    return SRP_OK;
}

/* ---- the layer (layernorm.h) ---- */

srp_layernorm_config srp_layernorm_config_default(size_t dim)
{
    srp_layernorm_config c;
    memset(&c, 0, sizeof(c));
    c.dim = dim;
    c.eps = 1e-5f;
    return c;
}

/* The layer's buffers, in the block of the layer (srp_arena_new). */
static void layout(void *obj, srp_arena *a)
{
    srp_layernorm *ln = obj;
    SRP_ARENA_FLOATS(a, ln->dim, &ln->w, &ln->b, &ln->dw, &ln->db, &ln->pending_dw,
                     &ln->pending_db);
    SRP_ARENA_FLOATS(a, ln->max_rows, &ln->mean, &ln->rstd);
    SRP_ARENA_FLOATS(a, ln->max_rows * ln->dim, &ln->stage);
}

srp_status srp_layernorm_create(srp_layernorm **out, const srp_layernorm_config *cfg,
                                size_t max_rows)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!cfg || max_rows == 0 || cfg->dim == 0 || max_rows > SIZE_MAX / cfg->dim ||
        max_rows * cfg->dim > SIZE_MAX / sizeof(float) || !(cfg->eps > 0.0f) || !isfinite(cfg->eps))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_layernorm_create: config %s, dim %zu, max_rows %zu, eps %g "
                        "(want dim, max_rows > 0 and eps finite > 0)",
                        cfg ? "given" : "NULL", cfg ? cfg->dim : 0, max_rows,
                        cfg ? (double)cfg->eps : 0.0);
    srp_layernorm *ln = SRP_ARENA_NEW(srp_layernorm, layout, .dim = cfg->dim, .max_rows = max_rows,
                                      .eps = cfg->eps);
    if (!ln)
        return SRP_ERR_NOMEM;
    for (size_t j = 0; j < ln->dim; j++)
        ln->w[j] = 1.0f;
    *out = ln;
    return SRP_OK;
}

void srp_layernorm_destroy(srp_layernorm *ln) { free(ln); }

size_t srp_layernorm_dim(const srp_layernorm *ln) { return ln ? ln->dim : 0; }
float srp_layernorm_eps(const srp_layernorm *ln) { return ln ? ln->eps : NAN; }
float *srp_layernorm_weight(srp_layernorm *ln) { return ln ? ln->w : NULL; }
float *srp_layernorm_weight_grad(srp_layernorm *ln) { return ln ? ln->dw : NULL; }
float *srp_layernorm_bias(srp_layernorm *ln) { return ln ? ln->b : NULL; }
float *srp_layernorm_bias_grad(srp_layernorm *ln) { return ln ? ln->db : NULL; }
const float *srp_layernorm_mean(const srp_layernorm *ln)
{
    return ln && ln->have_forward ? ln->mean : NULL;
}
const float *srp_layernorm_rstd(const srp_layernorm *ln)
{
    return ln && ln->have_forward ? ln->rstd : NULL;
}

void srp_layernorm_layer_compute(srp_layernorm *ln, const float *x, size_t rows, float *y)
{
    ln->have_forward = 0;
    const uint64_t t0 = srp_profile_begin();
    forward_rows(x, ln->w, ln->b, rows, ln->dim, ln->eps, y, ln->mean, ln->rstd);
    ln->rows = rows;
    srp_profile_end(SRP_PROF_LAYERNORM, t0);
}

void srp_layernorm_layer_commit(srp_layernorm *ln, int training)
{
    ln->have_forward = 1;
    srp_order_forward(&ln->order, training);
}

srp_status srp_layernorm_layer_forward(srp_layernorm *ln, const float *x, size_t rows, float *y,
                                       int training)
{
    if (!ln || !x || !y)
        return SRP_FAIL_NULL(ln, x, y);
    if (rows == 0 || rows > ln->max_rows)
        return srp_fail(SRP_ERR_SHAPE,
                        "srp_layernorm_layer_forward: rows %zu (want 1 to max_rows %zu, given at "
                        "create)",
                        rows, ln->max_rows);
    srp_layernorm_layer_compute(ln, x, rows, y);
    const uint64_t t0 = srp_profile_begin();
    const int finite = srp_all_finite(y, rows * ln->dim);
    srp_profile_end(SRP_PROF_FINITE_CHECK, t0);
    if (!finite) {
        ln->order = SRP_PENDING_NONE; /* the statistics are gone */
        return srp_fail(SRP_ERR_NUMERIC,
                        "srp_layernorm_layer_forward: NaN or Inf in y (from x, weight or bias)");
    }
    srp_layernorm_layer_commit(ln, training);
    return SRP_OK;
}

srp_status srp_layernorm_layer_backward_prepare(srp_layernorm *ln, const float *x, const float *dy,
                                                float *dx)
{
    const uint64_t t0 = srp_profile_begin();
    const size_t rows = ln->rows, d = ln->dim;
    /* Parameter gradients first: dx may be dy. */
    param_grads(x, ln->mean, ln->rstd, dy, rows, d, ln->pending_dw, ln->pending_db, 0);
    const int finite = srp_all_finite(ln->pending_dw, d) && srp_all_finite(ln->pending_db, d);
    if (finite)
        input_grad(x, ln->w, ln->mean, ln->rstd, dy, rows, d, dx);
    srp_profile_end(SRP_PROF_LAYERNORM, t0);
    return finite ? SRP_OK : SRP_ERR_NUMERIC;
}

void srp_layernorm_layer_backward_commit(srp_layernorm *ln)
{
    for (size_t j = 0; j < ln->dim; j++) {
        ln->dw[j] += ln->pending_dw[j];
        ln->db[j] += ln->pending_db[j];
    }
    srp_order_backward_done(&ln->order);
}

/* Both backwards: dx overwritten (may be dy), or with add dx += the
 * gradient, staged and added only when finite. */
static srp_status layer_backward(srp_layernorm *ln, const float *x, const float *dy, size_t rows,
                                 float *dx, int add, const char *call)
{
    if (!ln || !x || !dy || !dx)
        return srp_fail_null(call, "ln, x, dy, dx", (const void *const[]){ln, x, dy, dx}, 4);
    if (!ln->have_forward)
        return srp_fail(SRP_ERR_UNSUPPORTED, "%s: no forward to differentiate", call);
    if (rows != ln->rows)
        return srp_fail(SRP_ERR_SHAPE, "%s: rows %zu, but the forward had %zu", call, rows,
                        ln->rows);
    const srp_status order = srp_order_backward(&ln->order, call);
    if (order != SRP_OK)
        return order;
    const size_t n = rows * ln->dim;
    float *out = add ? ln->stage : dx;
    srp_status st = srp_layernorm_layer_backward_prepare(ln, x, dy, out);
    if (st == SRP_OK && !srp_all_finite(out, n))
        st = SRP_ERR_NUMERIC;
    if (st != SRP_OK)
        return srp_fail(st, "%s: NaN or Inf in dy or dx", call);
    if (add)
        srp_accumulate(dx, ln->stage, n);
    srp_layernorm_layer_backward_commit(ln);
    return SRP_OK;
}

srp_status srp_layernorm_layer_backward(srp_layernorm *ln, const float *x, const float *dy,
                                        size_t rows, float *dx)
{
    return layer_backward(ln, x, dy, rows, dx, 0, "srp_layernorm_layer_backward");
}

srp_status srp_layernorm_layer_backward_add(srp_layernorm *ln, const float *x, const float *dy,
                                            size_t rows, float *dx)
{
    return layer_backward(ln, x, dy, rows, dx, 1, "srp_layernorm_layer_backward_add");
}

void srp_layernorm_zero_grad(srp_layernorm *ln)
{
    if (!ln)
        return;
    memset(ln->dw, 0, sizeof(float) * ln->dim);
    memset(ln->db, 0, sizeof(float) * ln->dim);
}

srp_status srp_layernorm_params(srp_layernorm *ln, const char *prefix, srp_param_list *list)
{
    if (!ln || !list)
        return SRP_FAIL_NULL(ln, list);
    const srp_status st =
        srp_param_list_add(list, prefix, "weight", ln->w, ln->dw, ln->dim, SRP_PARAM_NORM);
    return st != SRP_OK
               ? st
               : srp_param_list_add(list, prefix, "bias", ln->b, ln->db, ln->dim, SRP_PARAM_NORM);
}

srp_status srp_layernorm_state_refs(srp_layernorm *ln, const char *prefix, srp_tensor_list *list)
{
    if (!ln || !list)
        return SRP_FAIL_NULL(ln, list);
    const srp_status st = srp_tensor_list_add_f32(list, prefix, "weight", ln->w, ln->dim);
    return st != SRP_OK ? st : srp_tensor_list_add_f32(list, prefix, "bias", ln->b, ln->dim);
}
