/* The sigmaReparam linear layer: y = x ((gamma / sigma) W)^T + b.
 *
 * W: [out][in], u: [in], v: [out], x: [n][in], y: [n][out].
 * Training forward: power iteration on W (updates u, v), scale = gamma/sigma.
 * Eval forward: the same step into scratch; the state does not move.
 * Backward, with G = dy and u, v constant (dsigma/dW = v u^T):
 *     dx     = scale G W
 *     s      = <G^T x, W>
 *     dW    += scale G^T x - (gamma s / sigma^2) v u^T
 *     dgamma += s / sigma          db += sum_n G
 * G^T x goes to a layer-owned scratch so that s, and a finiteness check of
 * the whole gradient, come from one pass over it before anything is added.
 * A layer created under bf16 GEMM inputs (precision.c) rounds W once per
 * forward, and x and G in chunks of rows, before each of the three
 * products: natively into bf16's bits for oneDNN's bf16 GEMM, or on the
 * reference path into floats for the fp32 GEMM. Everything else stays
 * fp32.
 * The math and the official-code semantics are in linear.h; what was tried
 * for speed and not kept, in docs/PERFORMANCE.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Row chunks of the bias gradient's sums: fixed, so that its bits do not
 * depend on the thread count. */
#define BIAS_CHUNKS 32

struct srp_linear {
    size_t in, out;
    int has_bias;
    srp_reparam mode;
    int power_iters;
    float *w, *dw, *b, *db;
    float gamma, dgamma;
    float *u, *v;           /* persistent power-iteration state */
    float sigma;            /* of the last forward, or of the last SVD */
    float *cand_u, *cand_v; /* a forward's power step before it is accepted */
    float cand_sigma, cand_scale;
    /* What the backward needs from the last successful forward. */
    float *last_u, *last_v;
    float last_sigma, last_scale;
    float *gtx;           /* [out][in] scratch: G^T x */
    float *xtg;           /* [in][out] scratch: x^T G, when out > in (see the backward) */
    double *bias_acc;     /* [out] scratch: column sums of G */
    double *bias_partial; /* [BIAS_CHUNKS][out] scratch for them */
    double pending_s;     /* <G^T x, W> of a prepared backward */
    srp_gemm_inputs inputs; /* fp32 or bf16's path (the precision at create) */
    /* The reference path: */
    float *w_bf16; /* [out][in]: W rounded, by the last forward_prepare */
    float *x_bf16; /* [SRP_BF16_CHUNK_ROWS][in] scratch: rows of x rounded */
    float *g_bf16; /* [SRP_BF16_CHUNK_ROWS][out] scratch: rows of G rounded */
    /* The native path, the same in bf16's bits: */
    uint16_t *w_b16;      /* [out][in] */
    uint16_t *x_b16;      /* [SRP_BF16_NATIVE_CHUNK_ROWS][in] */
    uint16_t *g_b16;      /* [SRP_BF16_NATIVE_CHUNK_ROWS][out] */
    srp_call_order order; /* which forward the backward may differentiate */
};

srp_linear_config srp_linear_config_default(size_t in, size_t out)
{
    srp_linear_config c;
    memset(&c, 0, sizeof(c));
    c.in_features = in;
    c.out_features = out;
    c.bias = 1;
    c.reparam = SRP_REPARAM_SIGMA;
    c.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    c.init_std = 0.02f;
    c.power_iters = 1;
    c.seed = 0;
    return c;
}

srp_status srp_linear_config_check(const srp_linear_config *c, const char *call, const char *what)
{
    if (c->in_features == 0 || c->out_features == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s.%s_features is 0", call, what,
                        c->in_features == 0 ? "in" : "out");
    if (!srp_blas_size_ok(c->in_features) || !srp_blas_size_ok(c->out_features) ||
        c->in_features > SIZE_MAX / sizeof(float) / c->out_features)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: %s.out_features %zu x in_features %zu is too large (a dimension "
                        "past BLAS's int, or the weight's bytes past SIZE_MAX)",
                        call, what, c->out_features, c->in_features);
    if (c->reparam != SRP_REPARAM_SIGMA && c->reparam != SRP_REPARAM_NONE &&
        c->reparam != SRP_REPARAM_STATS_ONLY)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s.reparam %d is unknown", call, what,
                        (int)c->reparam);
    if (c->gamma_init != SRP_GAMMA_INIT_SIGMA0 && c->gamma_init != SRP_GAMMA_INIT_ONE)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s.gamma_init %d is unknown", call, what,
                        (int)c->gamma_init);
    if (!isfinite(c->init_std) || !(c->init_std > 0.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s.init_std %g: must be finite and > 0", call,
                        what, (double)c->init_std);
    if (c->power_iters < 1)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s.power_iters %d < 1", call, what,
                        c->power_iters);
    return SRP_OK;
}

/* Sets u, v, sigma from an exact SVD of W, and the backward cache with it. */
static srp_status init_from_svd(srp_linear *l)
{
    float sigma;
    srp_status st = srp_svd_top(l->w, l->out, l->in, l->cand_u, l->cand_v, &sigma);
    if (st != SRP_OK)
        return st;
    if (l->mode == SRP_REPARAM_SIGMA && !(sigma > 0.0f))
        return SRP_ERR_NUMERIC; /* W = 0: gamma / sigma is undefined */
    memcpy(l->u, l->cand_u, l->in * sizeof(float));
    memcpy(l->v, l->cand_v, l->out * sizeof(float));
    memcpy(l->last_u, l->u, l->in * sizeof(float));
    memcpy(l->last_v, l->v, l->out * sizeof(float));
    l->sigma = l->last_sigma = sigma;
    l->last_scale = l->mode == SRP_REPARAM_SIGMA ? l->gamma / sigma : 1.0f;
    return SRP_OK;
}

/* The layer's buffers, in the block of the layer (srp_arena_new). */
static void layout(void *obj, srp_arena *a)
{
    srp_linear *l = obj;
    const size_t in = l->in, o = l->out;
    SRP_ARENA_FLOATS(a, in * o, &l->w, &l->dw, &l->gtx);
    SRP_ARENA_FLOATS(a, o > in ? in * o : 0, &l->xtg);
    SRP_ARENA_FLOATS(a, in, &l->u, &l->cand_u, &l->last_u);
    SRP_ARENA_FLOATS(a, o, &l->v, &l->cand_v, &l->last_v);
    SRP_ARENA_DOUBLES(a, o, &l->bias_acc);
    SRP_ARENA_DOUBLES(a, BIAS_CHUNKS * o, &l->bias_partial);
    SRP_ARENA_FLOATS(a, l->has_bias ? o : 0, &l->b, &l->db);
    const int reference = l->inputs == SRP_INPUTS_BF16_REFERENCE;
    SRP_ARENA_FLOATS(a, reference ? in * o : 0, &l->w_bf16);
    SRP_ARENA_FLOATS(a, reference ? SRP_BF16_CHUNK_ROWS * in : 0, &l->x_bf16);
    SRP_ARENA_FLOATS(a, reference ? SRP_BF16_CHUNK_ROWS * o : 0, &l->g_bf16);
    const int native = l->inputs == SRP_INPUTS_BF16_NATIVE;
    l->w_b16 = srp_arena_take(a, native ? in * o : 0, sizeof(uint16_t));
    l->x_b16 = srp_arena_take(a, native ? SRP_BF16_NATIVE_CHUNK_ROWS * in : 0, sizeof(uint16_t));
    l->g_b16 = srp_arena_take(a, native ? SRP_BF16_NATIVE_CHUNK_ROWS * o : 0, sizeof(uint16_t));
}

/* inputs: the precision at create, or fp32 for a module that multiplies W
 * itself. */
static srp_status create_layer(srp_linear **out, const srp_linear_config *cfg,
                               srp_gemm_inputs inputs)
{
    if (!out)
        return srp_fail_null("srp_linear_create", "out", (const void *const[]){out}, 1);
    *out = NULL;
    if (!cfg)
        return srp_fail_null("srp_linear_create", "cfg", (const void *const[]){cfg}, 1);
    const srp_status checked = srp_linear_config_check(cfg, "srp_linear_create", "cfg");
    if (checked != SRP_OK)
        return checked;
    const size_t in = cfg->in_features, o = cfg->out_features;
    srp_linear *l =
        SRP_ARENA_NEW(srp_linear, layout, .in = in, .out = o, .has_bias = cfg->bias != 0,
                      .mode = cfg->reparam, .power_iters = cfg->power_iters, .inputs = inputs);
    if (!l)
        return SRP_ERR_NOMEM;

    srp_rng rng;
    srp_rng_seed(&rng, cfg->seed);
    srp_rng_fill_trunc_normal(&rng, l->w, in * o, cfg->init_std);
    l->gamma = 1.0f;
    if (l->mode == SRP_REPARAM_NONE) {
        /* No sigma is tracked; u, v are kept valid (random) all the same. */
        srp_random_unit(&rng, l->u, in);
        srp_random_unit(&rng, l->v, o);
        memcpy(l->last_u, l->u, in * sizeof(float));
        memcpy(l->last_v, l->v, o * sizeof(float));
        l->sigma = l->last_sigma = NAN;
        l->last_scale = 1.0f;
    } else {
        srp_status st = init_from_svd(l);
        if (st != SRP_OK) {
            srp_linear_destroy(l);
            return st;
        }
        if (l->mode == SRP_REPARAM_SIGMA && cfg->gamma_init == SRP_GAMMA_INIT_SIGMA0) {
            l->gamma = l->sigma; /* W_hat = W at step 0 */
            l->last_scale = 1.0f;
        }
    }
    *out = l;
    return SRP_OK;
}

srp_status srp_linear_create(srp_linear **out, const srp_linear_config *cfg)
{
    return create_layer(out, cfg, srp_gemm_inputs_active());
}

srp_status srp_linear_create_fp32(srp_linear **out, const srp_linear_config *cfg)
{
    return create_layer(out, cfg, SRP_INPUTS_FP32);
}

void srp_linear_destroy(srp_linear *l) { free(l); }

size_t srp_linear_in_features(const srp_linear *l) { return l ? l->in : 0; }
size_t srp_linear_out_features(const srp_linear *l) { return l ? l->out : 0; }
srp_reparam srp_linear_reparam(const srp_linear *l) { return l ? l->mode : SRP_REPARAM_NONE; }
float *srp_linear_weight(srp_linear *l) { return l ? l->w : NULL; }
float *srp_linear_weight_grad(srp_linear *l) { return l ? l->dw : NULL; }
float *srp_linear_bias(srp_linear *l) { return l ? l->b : NULL; }
float *srp_linear_bias_grad(srp_linear *l) { return l ? l->db : NULL; }
float *srp_linear_gamma(srp_linear *l) { return l ? &l->gamma : NULL; }
float *srp_linear_gamma_grad(srp_linear *l) { return l ? &l->dgamma : NULL; }
float *srp_linear_u(srp_linear *l) { return l ? l->u : NULL; }
float *srp_linear_v(srp_linear *l) { return l ? l->v : NULL; }
float srp_linear_sigma(const srp_linear *l) { return l ? l->sigma : NAN; }
float srp_linear_forward_scale(const srp_linear *l) { return l->last_scale; }
int srp_linear_rounds_to_bf16(const srp_linear *l) { return l->inputs != SRP_INPUTS_FP32; }
float srp_linear_prepared_scale(const srp_linear *l) { return l->cand_scale; }

srp_status srp_linear_set_sigma(srp_linear *l, float sigma)
{
    if (!l)
        return SRP_FAIL_NULL(l);
    if (l->mode == SRP_REPARAM_NONE)
        return isnan(sigma) ? SRP_OK
                            : srp_fail(SRP_ERR_INVALID_ARG,
                                       "srp_linear_set_sigma: sigma %g for a layer without "
                                       "sigma (SRP_REPARAM_NONE): only NaN",
                                       (double)sigma);
    if (!isfinite(sigma))
        return SRP_ERR_NUMERIC;
    if (sigma < 0.0f)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_linear_set_sigma: sigma %g < 0", (double)sigma);
    l->sigma = sigma;
    return SRP_OK;
}

srp_status srp_linear_reinit_sigma(srp_linear *l)
{
    if (!l)
        return SRP_FAIL_NULL(l);
    if (l->mode == SRP_REPARAM_NONE)
        return SRP_OK;
    return init_from_svd(l);
}

void srp_linear_zero_grad(srp_linear *l)
{
    if (!l)
        return;
    memset(l->dw, 0, sizeof(float) * l->in * l->out);
    if (l->has_bias)
        memset(l->db, 0, sizeof(float) * l->out);
    l->dgamma = 0.0f;
}

static int batch_ok(const srp_linear *l, size_t n)
{
    const size_t widest = l->in > l->out ? l->in : l->out;
    return n > 0 && srp_blas_size_ok(n) && n <= SIZE_MAX / sizeof(float) / widest;
}

/* SRP_ERR_INVALID_ARG for a row count batch_ok refuses. */
static srp_status batch_fail(const srp_linear *l, size_t n, const char *call)
{
    if (n == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n is 0", call);
    return srp_fail(SRP_ERR_INVALID_ARG,
                    "%s: n %zu rows is too many for a %zu -> %zu layer (past BLAS's int, or "
                    "the bytes past SIZE_MAX)",
                    call, n, l->in, l->out);
}

/* The linear's passes keep twice the library's threshold: the dot's chunk
 * size derives from it, and changing it would change the bits of dgamma. */
#define PARALLEL_MIN_ELEMS (2 * SRP_PARALLEL_MIN_ELEMS)

/* y[r][0..out) = b for every row r. y: [n][ldy] */
static void fill_rows_with_bias(float *y, size_t ldy, const float *b, size_t n, size_t out)
{
    const long rows = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * out >= PARALLEL_MIN_ELEMS)
    for (long r = 0; r < rows; r++)
        memcpy(y + (size_t)r * ldy, b, out * sizeof(float));
}

srp_status srp_linear_forward_prepare(srp_linear *l, int training)
{
    float sigma = l->sigma, scale = 1.0f;
    if (l->mode != SRP_REPARAM_NONE) {
        const int iters = training ? l->power_iters : 1;
        const uint64_t t0 = srp_profile_begin();
        srp_status st = srp_power_steps_into(l->w, l->out, l->in, iters, l->u, l->v, l->cand_u,
                                             l->cand_v, &sigma);
        srp_profile_end(SRP_PROF_POWER_ITER, t0);
        if (st != SRP_OK)
            return st;
        if (l->mode == SRP_REPARAM_SIGMA) {
            scale = l->gamma / sigma;
            if (!(sigma > 0.0f) || !isfinite(l->gamma) || !isfinite(scale))
                return SRP_ERR_NUMERIC;
        }
    }
    l->cand_sigma = sigma;
    l->cand_scale = scale;
    if (l->inputs != SRP_INPUTS_FP32) {
        /* The rounded W serves this forward and its backward's dx. */
        const uint64_t t0 = srp_profile_begin();
        if (l->inputs == SRP_INPUTS_BF16_NATIVE)
            srp_bf16_pack_rows(l->w, l->in, l->out, l->in, l->w_b16);
        else
            srp_bf16_round_rows(l->w, l->in, l->out, l->in, l->w_bf16);
        srp_profile_end(SRP_PROF_BF16_ROUNDING, t0);
    }
    return SRP_OK;
}

void srp_linear_forward_compute(srp_linear *l, const float *x, size_t n, float *y, size_t ldy)
{
    srp_linear_forward_scaled(l, l->cand_scale, x, n, y, ldy);
}

/* A bf16 layer's rounded operands: W (rounded by forward_prepare), and the
 * chunk of x or of G rounded last. On the native path in bf16's bits, on
 * the reference path in floats. */
typedef enum { ROUNDED_W, ROUNDED_X, ROUNDED_G } rounded_operand;

/* Rows of x or G rounded at a time: the size of the layer's scratch. */
static size_t rounded_chunk_rows(const srp_linear *l)
{
    return l->inputs == SRP_INPUTS_BF16_NATIVE ? SRP_BF16_NATIVE_CHUNK_ROWS : SRP_BF16_CHUNK_ROWS;
}

/* The chunk's operand op = bf16(src). src: [rows][ld] */
static void round_chunk(srp_linear *l, rounded_operand op, const float *src, size_t ld, size_t rows,
                        size_t cols)
{
    if (l->inputs == SRP_INPUTS_BF16_NATIVE)
        srp_bf16_pack_rows(src, ld, rows, cols, op == ROUNDED_X ? l->x_b16 : l->g_b16);
    else
        srp_bf16_round_rows(src, ld, rows, cols, op == ROUNDED_X ? l->x_bf16 : l->g_bf16);
}

/* c = alpha op(a) op(b) + beta c on two rounded operands, as srp_sgemm:
 * oneDNN's bf16 GEMM on the native path, the fp32 GEMM on the reference
 * one. */
static void rounded_gemm(const srp_linear *l, int trans_a, int trans_b, size_t m, size_t n,
                         size_t k, float alpha, rounded_operand a, size_t lda, rounded_operand b,
                         size_t ldb, float beta, float *c, size_t ldc)
{
    if (l->inputs == SRP_INPUTS_BF16_NATIVE) {
        const uint16_t *const bits[3] = {l->w_b16, l->x_b16, l->g_b16};
        srp_bf16_gemm(trans_a, trans_b, m, n, k, alpha, bits[a], lda, bits[b], ldb, beta, c, ldc);
    } else {
        const float *const floats[3] = {l->w_bf16, l->x_bf16, l->g_bf16};
        srp_sgemm(trans_a, trans_b, m, n, k, alpha, floats[a], lda, floats[b], ldb, beta, c, ldc);
    }
}

/* The forward's product with bf16 inputs: y (+)= scale bf16(x) bf16(W)^T,
 * a chunk of rows of x rounded at a time. x: [n][in], y: [n][ldy] */
static void forward_product_bf16(srp_linear *l, float scale, const float *x, size_t n, float beta,
                                 float *y, size_t ldy)
{
    const size_t chunk = rounded_chunk_rows(l);
    for (size_t r = 0; r < n; r += chunk) {
        const size_t rows = n - r < chunk ? n - r : chunk;
        uint64_t t0 = srp_profile_begin();
        round_chunk(l, ROUNDED_X, x + r * l->in, l->in, rows, l->in);
        srp_profile_end(SRP_PROF_BF16_ROUNDING, t0);
        t0 = srp_profile_begin();
        rounded_gemm(l, 0, 1, rows, l->out, l->in, scale, ROUNDED_X, l->in, ROUNDED_W, l->in, beta,
                     y + r * ldy, ldy);
        srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
    }
}

void srp_linear_forward_scaled(srp_linear *l, float scale, const float *x, size_t n, float *y,
                               size_t ldy)
{
    /* y = scale x W^T (+ b): [n][out] = [n][in] x [in][out]. With the bias
     * written first, the GEMM adds onto it (beta = 1) at no extra cost:
     * OpenBLAS would otherwise zero C in a pass of its own. */
    float beta = 0.0f;
    if (l->has_bias) {
        const uint64_t t0 = srp_profile_begin();
        fill_rows_with_bias(y, ldy, l->b, n, l->out);
        srp_profile_end(SRP_PROF_LINEAR_EXTRA, t0);
        beta = 1.0f;
    }
    if (l->inputs != SRP_INPUTS_FP32) {
        forward_product_bf16(l, scale, x, n, beta, y, ldy);
        return;
    }
    const uint64_t t0 = srp_profile_begin();
    srp_sgemm(0, 1, n, l->out, l->in, scale, x, l->in, l->w, l->in, beta, y, ldy);
    srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
}

void srp_linear_forward_commit(srp_linear *l, int training)
{
    if (l->mode != SRP_REPARAM_NONE) {
        if (training) {
            memcpy(l->u, l->cand_u, l->in * sizeof(float));
            memcpy(l->v, l->cand_v, l->out * sizeof(float));
        }
        memcpy(l->last_u, l->cand_u, l->in * sizeof(float));
        memcpy(l->last_v, l->cand_v, l->out * sizeof(float));
        l->sigma = l->last_sigma = l->cand_sigma;
    }
    l->last_scale = l->cand_scale;
    srp_order_forward(&l->order, training);
}

int srp_linear_batch_ok(const srp_linear *l, size_t n) { return batch_ok(l, n); }

srp_status srp_linear_forward(srp_linear *l, const float *x, size_t n, float *y, int training)
{
    if (!l || !x || !y)
        return SRP_FAIL_NULL(l, x, y);
    if (!batch_ok(l, n))
        return batch_fail(l, n, "srp_linear_forward");
    const srp_status st = srp_linear_forward_prepare(l, training);
    if (st != SRP_OK)
        return st;
    srp_linear_forward_compute(l, x, n, y, l->out);
    /* NaN or Inf in x, or an overflow in the product: reported here, with
     * the layer as it was, rather than found layers later. */
    const uint64_t t0 = srp_profile_begin();
    const int finite = srp_all_finite(y, n * l->out);
    srp_profile_end(SRP_PROF_FINITE_CHECK, t0);
    if (!finite)
        return SRP_ERR_NUMERIC;
    srp_linear_forward_commit(l, training);
    return SRP_OK;
}

/* Sum of x[i] * y[i] in double over fixed chunks combined in order: the same
 * bits for any thread count. */
static double parallel_dot_f64(const float *x, const float *y, size_t n)
{
    enum { MAX_CHUNKS = 64 };
    size_t chunk = (n + MAX_CHUNKS - 1) / MAX_CHUNKS;
    if (chunk < PARALLEL_MIN_ELEMS / 4)
        chunk = PARALLEL_MIN_ELEMS / 4;
    const long nchunks = (long)((n + chunk - 1) / chunk);
    double partial[MAX_CHUNKS];
#pragma omp parallel for num_threads(srp_threads()) schedule(static) if (nchunks > 1)
    for (long c = 0; c < nchunks; c++) {
        const size_t lo = (size_t)c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        partial[c] = srp_dot_f64(x + lo, y + lo, hi - lo);
    }
    double sum = 0.0;
    for (long c = 0; c < nchunks; c++)
        sum += partial[c];
    return sum;
}

/* acc[o] = sum_r dy[r][o] in double. Rows go in BIAS_CHUNKS fixed chunks,
 * each summed along its rows (contiguous, vectorized reads) into its own
 * partial row, and the partials are added in order: the same bits for any
 * thread count. dy: [n][lddy] (its first out columns), partial:
 * [BIAS_CHUNKS][out] scratch */
static void column_sums(const float *dy, size_t lddy, size_t n, size_t out, double *partial,
                        double *acc)
{
    const size_t rows_per = (n + BIAS_CHUNKS - 1) / BIAS_CHUNKS;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * out >= PARALLEL_MIN_ELEMS)
    for (long c = 0; c < BIAS_CHUNKS; c++) {
        double *p = partial + (size_t)c * out;
        const size_t r0 = (size_t)c * rows_per, r1 = r0 + rows_per < n ? r0 + rows_per : n;
        for (size_t o = 0; o < out; o++)
            p[o] = 0.0;
        size_t r = r0;
        /* Four rows per pass over p, added in row order: the same sums
         * with a quarter of the loads and stores of p. */
        for (; r + 4 <= r1; r += 4) {
            const float *row = dy + r * lddy;
#pragma omp simd
            for (size_t o = 0; o < out; o++)
                p[o] = (((p[o] + (double)row[o]) + (double)row[lddy + o]) +
                        (double)row[2 * lddy + o]) +
                       (double)row[3 * lddy + o];
        }
        for (; r < r1; r++) {
            const float *row = dy + r * lddy;
#pragma omp simd
            for (size_t o = 0; o < out; o++)
                p[o] += (double)row[o];
        }
    }
    for (size_t o = 0; o < out; o++)
        acc[o] = 0.0;
    for (size_t c = 0; c < BIAS_CHUNKS; c++)
        for (size_t o = 0; o < out; o++)
            acc[o] += partial[c * out + o];
}

/* b = a^T. a: [rows][cols], b: [cols][rows] */
static void transpose(const float *a, size_t rows, size_t cols, float *b)
{
    const long bcols = (long)cols;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (rows * cols >= PARALLEL_MIN_ELEMS)
    for (long c = 0; c < bcols; c++)
        for (size_t r = 0; r < rows; r++)
            b[(size_t)c * rows + r] = a[r * cols + (size_t)c];
}

/* dw[o][i] += a * gtx[o][i] - c * v[o] u[i]. dw, gtx: [out][in] */
static void accumulate_weight_grad(float *dw, const float *gtx, float a, float c, const float *v,
                                   const float *u, size_t out, size_t in)
{
    const long rows = (long)out;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (out * in >= PARALLEL_MIN_ELEMS)
    for (long o = 0; o < rows; o++) {
        float *d = dw + (size_t)o * in;
        const float *g = gtx + (size_t)o * in;
        const float cv = c * v[o];
        for (size_t i = 0; i < in; i++)
            d[i] += a * g[i] - cv * u[i];
    }
}

/* With G^T x in gtx and the bias sums in bias_acc: s = <G^T x, W>, the
 * pending backward's, after a check that every gradient term is finite
 * (s is non-finite iff some entry of G^T x is). */
static srp_status take_weight_grad(srp_linear *l)
{
    const double s = parallel_dot_f64(l->gtx, l->w, l->in * l->out);
    int finite = isfinite(s);
    for (size_t o = 0; l->has_bias && o < l->out; o++)
        finite &= isfinite(l->bias_acc[o]) != 0;
    if (!finite)
        return SRP_ERR_NUMERIC;
    l->pending_s = s;
    return SRP_OK;
}

/* The backward's products with bf16 inputs, a chunk of rows of G and x
 * rounded at a time: dx (+)= scale bf16(G) bf16(W), and gtx = sum over the
 * chunks of bf16(G)^T bf16(x) (or xtg, its transpose, when out > in, as the
 * fp32 path does it). x: [n][in], dy: [n][lddy] */
static void backward_products_bf16(srp_linear *l, const float *x, const float *dy, size_t lddy,
                                   size_t n, float *dx, int add_dx)
{
    const size_t in = l->in, out = l->out, chunk = rounded_chunk_rows(l);
    for (size_t r = 0; r < n; r += chunk) {
        const size_t rows = n - r < chunk ? n - r : chunk;
        const float beta = r > 0 ? 1.0f : 0.0f; /* the first chunk writes, the rest add */
        uint64_t t0 = srp_profile_begin();
        round_chunk(l, ROUNDED_G, dy + r * lddy, lddy, rows, out);
        round_chunk(l, ROUNDED_X, x + r * in, in, rows, in);
        srp_profile_end(SRP_PROF_BF16_ROUNDING, t0);
        t0 = srp_profile_begin();
        if (dx)
            rounded_gemm(l, 0, 0, rows, in, out, l->last_scale, ROUNDED_G, out, ROUNDED_W, in,
                         add_dx ? 1.0f : 0.0f, dx + r * in, in);
        if (l->xtg)
            rounded_gemm(l, 1, 0, in, out, rows, 1.0f, ROUNDED_X, in, ROUNDED_G, out, beta, l->xtg,
                         out);
        else
            rounded_gemm(l, 1, 0, out, in, rows, 1.0f, ROUNDED_G, out, ROUNDED_X, in, beta, l->gtx,
                         in);
        srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
    }
    if (l->xtg) {
        const uint64_t t0 = srp_profile_begin();
        transpose(l->xtg, in, out, l->gtx);
        srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
    }
}

/* The backward's products in fp32. x: [n][in], dy: [n][lddy] */
static void backward_products_fp32(srp_linear *l, const float *x, const float *dy, size_t lddy,
                                   size_t n, float *dx, int add_dx)
{
    const uint64_t t0 = srp_profile_begin();
    /* dx (+)= scale dy W: [n][in] = [n][out] x [out][in] */
    if (dx)
        srp_sgemm(0, 0, n, l->in, l->out, l->last_scale, dy, lddy, l->w, l->in,
                  add_dx ? 1.0f : 0.0f, dx, l->in);
    if (l->xtg) {
        /* The same product, transposed, when out > in: oneDNN splits an
         * [in][out] result better over 2 threads (docs/PERFORMANCE.md); then
         * one transposing pass over the small result.
         * xtg = x^T dy: [in][out] = [in][n] x [n][out] */
        srp_sgemm(1, 0, l->in, l->out, n, 1.0f, x, l->in, dy, lddy, 0.0f, l->xtg, l->out);
        transpose(l->xtg, l->in, l->out, l->gtx);
    } else {
        /* gtx = dy^T x: [out][in] = [out][n] x [n][in] */
        srp_sgemm(1, 0, l->out, l->in, n, 1.0f, dy, lddy, x, l->in, 0.0f, l->gtx, l->in);
    }
    srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
}

srp_status srp_linear_backward_prepare(srp_linear *l, const float *x, const float *dy, size_t lddy,
                                       size_t n, float *dx, int add_dx)
{
    if (l->inputs != SRP_INPUTS_FP32)
        backward_products_bf16(l, x, dy, lddy, n, dx, add_dx);
    else
        backward_products_fp32(l, x, dy, lddy, n, dx, add_dx);

    const uint64_t t0 = srp_profile_begin();
    if (l->has_bias)
        column_sums(dy, lddy, n, l->out, l->bias_partial, l->bias_acc);
    const srp_status st = take_weight_grad(l);
    srp_profile_end(SRP_PROF_LINEAR_EXTRA, t0);
    return st;
}

void srp_linear_backward_commit(srp_linear *l)
{
    const uint64_t t0 = srp_profile_begin();
    const float scale = l->last_scale;
    const double s = l->pending_s;
    /* gamma s / sigma^2 = scale s / sigma, with the gamma of the forward. */
    float rank1 = 0.0f;
    if (l->mode == SRP_REPARAM_SIGMA) {
        const double sigma = l->last_sigma;
        rank1 = (float)((double)scale * s / sigma);
        l->dgamma += (float)(s / sigma);
    }
    accumulate_weight_grad(l->dw, l->gtx, scale, rank1, l->last_v, l->last_u, l->out, l->in);
    if (l->has_bias)
        for (size_t o = 0; o < l->out; o++)
            l->db[o] += (float)l->bias_acc[o];
    srp_order_backward_done(&l->order);
    srp_profile_end(SRP_PROF_LINEAR_EXTRA, t0);
}

srp_status srp_linear_backward(srp_linear *l, const float *x, const float *dy, size_t n, float *dx)
{
    if (!l || !x || !dy)
        return SRP_FAIL_NULL(l, x, dy);
    if (!batch_ok(l, n))
        return batch_fail(l, n, "srp_linear_backward");
    srp_status st = srp_order_backward(&l->order, "srp_linear_backward");
    if (st == SRP_OK)
        st = srp_linear_backward_prepare(l, x, dy, l->out, n, dx, 0);
    if (st != SRP_OK)
        return st;
    srp_linear_backward_commit(l);
    return SRP_OK;
}

srp_status srp_linear_forward_weight(srp_linear *l, int training, float *w_hat)
{
    if (!l || !w_hat)
        return SRP_FAIL_NULL(l, w_hat);
    const srp_status st = srp_linear_forward_prepare(l, training);
    if (st != SRP_OK)
        return st;
    const size_t count = l->in * l->out;
    const float scale = l->cand_scale;
    for (size_t i = 0; i < count; i++) /* w_hat: [out][in] */
        w_hat[i] = scale * l->w[i];
    if (!srp_all_finite(w_hat, count)) /* scale * W overflowed */
        return SRP_ERR_NUMERIC;
    srp_linear_forward_commit(l, training);
    return SRP_OK;
}

srp_status srp_linear_folded_weight(const srp_linear *l, float *w_hat)
{
    if (!l || !w_hat)
        return SRP_FAIL_NULL(l, w_hat);
    float scale = 1.0f;
    if (l->mode == SRP_REPARAM_SIGMA) {
        /* the eval forward's power step, into scratch of our own: the
         * layer's candidates belong to its forwards */
        float *uv = malloc(sizeof(float) * (l->in + l->out)), sigma;
        if (!uv)
            return srp_fail(SRP_ERR_NOMEM, "srp_linear_folded_weight: %zu floats of scratch",
                            l->in + l->out);
        const srp_status st =
            srp_power_steps_into(l->w, l->out, l->in, 1, l->u, l->v, uv, uv + l->in, &sigma);
        free(uv);
        if (st != SRP_OK)
            return st;
        scale = l->gamma / sigma;
        if (!(sigma > 0.0f) || !isfinite(l->gamma) || !isfinite(scale))
            return srp_fail(SRP_ERR_NUMERIC, "srp_linear_folded_weight: gamma %g / sigma %g",
                            (double)l->gamma, (double)sigma);
    }
    const size_t count = l->in * l->out;
    for (size_t i = 0; i < count; i++) /* w_hat: [out][in] */
        w_hat[i] = scale * l->w[i];
    if (!srp_all_finite(w_hat, count))
        return srp_fail(SRP_ERR_NUMERIC, "srp_linear_folded_weight: gamma / sigma * W overflows");
    return SRP_OK;
}

srp_status srp_linear_backward_order(srp_linear *l, const char *call)
{
    return srp_order_backward(&l->order, call);
}

srp_status srp_linear_backward_weight(srp_linear *l, const float *dw_hat, const float *db)
{
    if (!l || !dw_hat)
        return SRP_FAIL_NULL(l, dw_hat);
    if (l->has_bias && !db)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_linear_backward_weight: db is NULL, and the layer has a bias");
    srp_status st = srp_linear_backward_order(l, "srp_linear_backward_weight");
    if (st != SRP_OK)
        return st;
    memcpy(l->gtx, dw_hat, sizeof(float) * l->in * l->out);
    for (size_t o = 0; l->has_bias && o < l->out; o++)
        l->bias_acc[o] = db[o];
    st = take_weight_grad(l);
    if (st != SRP_OK)
        return st;
    srp_linear_backward_commit(l);
    return SRP_OK;
}

srp_status srp_linear_params(srp_linear *l, const char *prefix, srp_param_list *list)
{
    if (!l || !list)
        return SRP_FAIL_NULL(l, list);
    srp_status st =
        srp_param_list_add(list, prefix, "weight", l->w, l->dw, l->in * l->out, SRP_PARAM_WEIGHT);
    if (st == SRP_OK && l->has_bias)
        st = srp_param_list_add(list, prefix, "bias", l->b, l->db, l->out, SRP_PARAM_BIAS);
    if (st == SRP_OK && l->mode == SRP_REPARAM_SIGMA)
        st = srp_param_list_add(list, prefix, "gamma", &l->gamma, &l->dgamma, 1, SRP_PARAM_GAMMA);
    return st;
}

srp_status srp_linear_state_refs(srp_linear *l, const char *prefix, srp_tensor_list *list)
{
    if (!l || !list)
        return SRP_FAIL_NULL(l, list);
    const size_t shape[2] = {l->out, l->in};
    srp_status st = srp_tensor_list_add(list, prefix, "weight", SRP_DTYPE_F32, 2, shape, l->w);
    if (st == SRP_OK && l->has_bias)
        st = srp_tensor_list_add_f32(list, prefix, "bias", l->b, l->out);
    if (l->mode == SRP_REPARAM_NONE)
        return st;
    if (st == SRP_OK)
        st = srp_tensor_list_add(list, prefix, "gamma", SRP_DTYPE_F32, 0, NULL, &l->gamma);
    if (st == SRP_OK)
        st = srp_tensor_list_add_f32(list, prefix, "u", l->u, l->in);
    if (st == SRP_OK)
        st = srp_tensor_list_add_f32(list, prefix, "v", l->v, l->out);
    if (st == SRP_OK)
        st = srp_tensor_list_add(list, prefix, "sigma", SRP_DTYPE_F32, 0, NULL, &l->sigma);
    return st;
}
