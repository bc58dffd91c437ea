/* Elementwise and pooling kernels: exact GELU, residual add, gradient
 * accumulation, mean-pool and token select over [batch][tokens][dim].
 *
 * GELU (PyTorch's default, approximate='none'), Phi the normal CDF:
 *     y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
 *     dy/dx = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
 * Evaluated in float as 0.5 x erfc(-x / sqrt 2): the same function, without
 * the cancellation of 1 + erf(.) for negative x (which loses all digits of
 * y below x = -5 in float).
 *
 * Speed: the GELU loops call libmvec's vector erfcf and expf (internal.h),
 * about 20x faster than the scalar calls. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Columns per pass of the mean-pool sums (double accumulators on the stack). */
#define COL_BLOCK 64

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

/* y = GELU(x) over [lo, hi). x, y: [n] */
SRP_VECTOR_CLONES
static void gelu_forward_range(const float *x, float *y, long lo, long hi)
{
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        const float v = x[i];
        y[i] = 0.5f * v * erfcf(-v * INV_SQRT2);
    }
}

/* dx = dy GELU'(x) over [lo, hi). x, dy, dx: [n] */
SRP_VECTOR_CLONES
static void gelu_backward_range(const float *x, const float *dy, float *dx, long lo, long hi)
{
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        const float v = x[i];
        const float cdf = 0.5f * erfcf(-v * INV_SQRT2);
        const float pdf = INV_SQRT_2PI * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

/* The same from y = GELU(x) = x Phi(x): Phi(x) = y / x, taken as
 *     Phi ~ (y + s/2) / (x + s),   s = copysign(1e-20, x),
 * which is 1/2 at x = 0 and never divides by zero; its error,
 * s (1/2 - Phi) / (x + s), is below 0.4 s = 4e-21 since |1/2 - Phi(x)| <=
 * 0.4 |x|. No comparison in the loop: it vectorizes (a select on x would
 * not, as comparisons may trap). x, y, dy, dx: [n] */
SRP_VECTOR_CLONES
static void gelu_backward_from_output_range(const float *x, const float *y, const float *dy,
                                            float *dx, long lo, long hi)
{
#pragma omp simd
    for (long i = lo; i < hi; i++) {
        const float v = x[i], s = copysignf(1e-20f, v);
        const float cdf = (y[i] + 0.5f * s) / (v + s);
        const float pdf = INV_SQRT_2PI * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

/* Chunks of this many elements per task: the vector loops run inside. */
#define GELU_CHUNK 8192

/* One of the GELU kernels over [0, n), a chunk per task: y = GELU(x) into
 * out (dy NULL), dx = dy GELU'(x) into out (y NULL), or dx from y. */
static srp_status gelu(const float *x, const float *y, const float *dy, size_t n, float *out,
                       const char *call)
{
    if (n == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n is 0", call);
    const uint64_t t0 = srp_profile_begin();
    const long len = (long)n, chunks = (len + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n >= SRP_PARALLEL_MIN_ELEMS)
    for (long c = 0; c < chunks; c++) {
        const long lo = c * GELU_CHUNK, hi = c + 1 < chunks ? (c + 1) * GELU_CHUNK : len;
        if (!dy)
            gelu_forward_range(x, out, lo, hi);
        else if (!y)
            gelu_backward_range(x, dy, out, lo, hi);
        else
            gelu_backward_from_output_range(x, y, dy, out, lo, hi);
    }
    srp_profile_end(SRP_PROF_ACTIVATION, t0);
    return SRP_OK;
}

/* x, y: [n] */
srp_status srp_gelu_forward(const float *x, size_t n, float *y)
{
    if (!x || !y)
        return SRP_FAIL_NULL(x, y);
    return gelu(x, NULL, NULL, n, y, "srp_gelu_forward");
}

/* x, dy, dx: [n] */
srp_status srp_gelu_backward(const float *x, const float *dy, size_t n, float *dx)
{
    if (!x || !dy || !dx)
        return SRP_FAIL_NULL(x, dy, dx);
    return gelu(x, NULL, dy, n, dx, "srp_gelu_backward");
}

/* x, y, dy, dx: [n] */
srp_status srp_gelu_backward_from_output(const float *x, const float *y, const float *dy, size_t n,
                                         float *dx)
{
    if (!x || !y || !dy || !dx)
        return SRP_FAIL_NULL(x, y, dy, dx);
    return gelu(x, y, dy, n, dx, "srp_gelu_backward_from_output");
}

/* y = x + r; x, r, y: [n] */
static srp_status add_arrays(const float *x, const float *r, size_t n, float *y, const char *call)
{
    if (!x || !r || !y)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: a pointer argument is NULL", call);
    if (n == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n is 0", call);
    const uint64_t t0 = srp_profile_begin();
    const long len = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n >= SRP_PARALLEL_MIN_ELEMS)
    for (long i = 0; i < len; i++)
        y[i] = x[i] + r[i];
    srp_profile_end(SRP_PROF_ELEMENTWISE, t0);
    return SRP_OK;
}

srp_status srp_residual_add(const float *x, const float *r, size_t n, float *y)
{
    if (!x || !r || !y)
        return SRP_FAIL_NULL(x, r, y);
    return add_arrays(x, r, n, y, "srp_residual_add");
}

/* acc, x: [n] */
srp_status srp_accumulate(float *acc, const float *x, size_t n)
{
    if (!acc || !x)
        return SRP_FAIL_NULL(acc, x);
    return add_arrays(acc, x, n, acc, "srp_accumulate");
}

/* The pooling calls' arguments: SRP_OK, or SRP_ERR_INVALID_ARG naming
 * call and what is wrong. */
static srp_status pool_args_check(const void *in, const void *out, size_t batch, size_t tokens,
                                  size_t dim, const char *call)
{
    if (!in || !out)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: the %s is NULL", call, in ? "output" : "input");
    if (batch == 0 || tokens == 0 || dim == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: batch %zu, tokens %zu, dim %zu: a size is 0",
                        call, batch, tokens, dim);
    if (tokens > SIZE_MAX / dim || batch > SIZE_MAX / sizeof(float) / (tokens * dim))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: batch %zu x tokens %zu x dim %zu floats overflow size_t", call, batch,
                        tokens, dim);
    return SRP_OK;
}

/* x: [batch][tokens][dim] -> y: [batch][dim]. Sums in double, over blocks
 * of columns so that the reads stay along rows. */
srp_status srp_mean_pool_forward(const float *x, size_t batch, size_t tokens, size_t dim, float *y)
{
    const srp_status st = pool_args_check(x, y, batch, tokens, dim, "srp_mean_pool_forward");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    const long nb = (long)batch;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (batch * tokens * dim >= SRP_PARALLEL_MIN_ELEMS)
    for (long b = 0; b < nb; b++) {
        const float *xb = x + (size_t)b * tokens * dim;
        for (size_t c0 = 0; c0 < dim; c0 += COL_BLOCK) {
            const size_t c1 = c0 + COL_BLOCK < dim ? c0 + COL_BLOCK : dim;
            double acc[COL_BLOCK] = {0};
            for (size_t t = 0; t < tokens; t++)
                for (size_t c = c0; c < c1; c++)
                    acc[c - c0] += xb[t * dim + c];
            for (size_t c = c0; c < c1; c++)
                y[(size_t)b * dim + c] = (float)(acc[c - c0] / (double)tokens);
        }
    }
    srp_profile_end(SRP_PROF_ELEMENTWISE, t0);
    return SRP_OK;
}

/* dy: [batch][dim] -> dx: [batch][tokens][dim] */
srp_status srp_mean_pool_backward(const float *dy, size_t batch, size_t tokens, size_t dim,
                                  float *dx)
{
    const srp_status st = pool_args_check(dy, dx, batch, tokens, dim, "srp_mean_pool_backward");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    const long nb = (long)batch;
    const float count = (float)tokens;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (batch * tokens * dim >= SRP_PARALLEL_MIN_ELEMS)
    for (long b = 0; b < nb; b++)
        for (size_t t = 0; t < tokens; t++)
            for (size_t c = 0; c < dim; c++)
                dx[((size_t)b * tokens + t) * dim + c] = dy[(size_t)b * dim + c] / count;
    srp_profile_end(SRP_PROF_ELEMENTWISE, t0);
    return SRP_OK;
}

/* Token `token` of every example: gathered, y[b] = x[b][token], or
 * scattered back, dx[b][token] = dy[b] and every other token 0.
 * x, dx: [batch][tokens][dim]; y, dy: [batch][dim] */
static srp_status select_token(const float *in, size_t batch, size_t tokens, size_t dim,
                               size_t token, float *out, int scatter, const char *call)
{
    srp_status st = pool_args_check(in, out, batch, tokens, dim, call);
    if (st == SRP_OK && token >= tokens)
        st = srp_fail(SRP_ERR_INVALID_ARG, "%s: token %zu >= tokens %zu", call, token, tokens);
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    if (scatter)
        memset(out, 0, batch * tokens * dim * sizeof(float));
    for (size_t b = 0; b < batch; b++) {
        const size_t picked = (b * tokens + token) * dim, example = b * dim;
        memcpy(out + (scatter ? picked : example), in + (scatter ? example : picked),
               dim * sizeof(float));
    }
    srp_profile_end(SRP_PROF_ELEMENTWISE, t0);
    return SRP_OK;
}

srp_status srp_token_select_forward(const float *x, size_t batch, size_t tokens, size_t dim,
                                    size_t token, float *y)
{
    return select_token(x, batch, tokens, dim, token, y, 0, "srp_token_select_forward");
}

srp_status srp_token_select_backward(const float *dy, size_t batch, size_t tokens, size_t dim,
                                     size_t token, float *dx)
{
    return select_token(dy, batch, tokens, dim, token, dx, 1, "srp_token_select_backward");
}
