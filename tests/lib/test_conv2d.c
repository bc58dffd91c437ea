/* The sigmaReparam convolution against a direct double-precision
 * convolution, central finite differences, and fixtures from a PyTorch
 * re-implementation of the official SNConv2d
 * (tests/reference/gen_conv2d_fixtures.py).
 *
 * A layer runs its largest shape (the maxima given at create) through the
 * GEMM door's convolution where the build has one (oneDNN's), and every
 * other shape as im2col and a GEMM; the tests run each case both ways: a
 * layer made for exactly the case's shape, and one made larger. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

typedef struct {
    size_t batch, in_ch, out_ch, kernel, height, width, stride, padding;
} conv_shape;

static size_t out_side(const conv_shape *s, size_t side)
{
    return (side + 2 * s->padding - s->kernel) / s->stride + 1;
}
static size_t x_count(const conv_shape *s) { return s->batch * s->in_ch * s->height * s->width; }
static size_t y_count(const conv_shape *s)
{
    return s->batch * s->out_ch * out_side(s, s->height) * out_side(s, s->width);
}
static size_t w_count(const conv_shape *s)
{
    return s->out_ch * s->in_ch * s->kernel * s->kernel;
}

/* ---------------- the reference problem ---------------- */

/* The layer in double (its linear: W as [out][in k k], gamma, b, and the
 * u, v its next forward's power step takes), an input and loss weights r:
 * what central differences differentiate. */
typedef struct {
    ref_linear lin;
    conv_shape s;
    double *x, *r; /* x: [B][C][H][W], r: [B][K][OH][OW] */
} conv_problem;

/* The index in x [B][C][H][W] that kernel tap (p, q) of output pixel
 * (i, j) reads in image b, channel c; -1 where it falls in the padding. */
static long tap_input(const conv_shape *s, size_t b, size_t c, size_t i, size_t j, size_t p,
                      size_t q)
{
    const long iy = (long)(i * s->stride + p) - (long)s->padding;
    const long ix = (long)(j * s->stride + q) - (long)s->padding;
    if (iy < 0 || ix < 0 || iy >= (long)s->height || ix >= (long)s->width)
        return -1;
    return (long)(((b * s->in_ch + c) * s->height + (size_t)iy) * s->width + (size_t)ix);
}

/* y = conv2d(x, W_hat) + b, summed naively. y: [B][K][OH][OW] */
static void ref_conv_forward(const conv_problem *P, double *y)
{
    const conv_shape *s = &P->s;
    const size_t OH = out_side(s, s->height), OW = out_side(s, s->width), k = s->kernel;
    const double scale = P->lin.sigma_mode ? P->lin.gamma / ref_linear_sigma(&P->lin) : 1.0;
    for (size_t b = 0; b < s->batch; b++)
        for (size_t o = 0; o < s->out_ch; o++)
            for (size_t i = 0; i < OH; i++)
                for (size_t j = 0; j < OW; j++) {
                    double acc = 0.0;
                    for (size_t c = 0; c < s->in_ch; c++)
                        for (size_t p = 0; p < k; p++)
                            for (size_t q = 0; q < k; q++) {
                                const long xi = tap_input(s, b, c, i, j, p, q);
                                if (xi >= 0)
                                    acc +=
                                        P->lin.w[((o * s->in_ch + c) * k + p) * k + q] * P->x[xi];
                            }
                    y[((b * s->out_ch + o) * OH + i) * OW + j] = scale * acc + P->lin.b[o];
                }
}

static double conv_loss(void *ctx)
{
    const conv_problem *P = ctx;
    const size_t m = y_count(&P->s);
    double *y = malloc(sizeof(double) * m);
    assert_non_null(y);
    ref_conv_forward(P, y);
    const double loss = ref_quadratic_loss(y, P->r, m);
    free(y);
    return loss;
}

/* The layer as its next forward on x will compute it; r = 0. */
static void problem_init(conv_problem *P, srp_conv2d *c, const conv_shape *s, const float *x)
{
    ref_linear_init(&P->lin, srp_conv2d_linear(c));
    P->s = *s;
    P->x = malloc(sizeof(double) * x_count(s));
    P->r = calloc(y_count(s), sizeof(double));
    assert_true(P->x && P->r);
    to_double(x, P->x, x_count(s));
}

static void problem_free(conv_problem *P)
{
    ref_linear_free(&P->lin);
    free(P->x);
    free(P->r);
}

/* ---------------- helpers on the layer ---------------- */

/* A layer for shape s; larger: its maxima one image and two pixels a side
 * above s (so that s runs as im2col). */
static srp_conv2d *make_layer(const conv_shape *s, srp_reparam mode, int bias, int larger,
                              uint64_t seed)
{
    srp_conv2d_config c = srp_conv2d_config_default(s->in_ch, s->out_ch, s->kernel);
    c.stride = s->stride;
    c.padding = s->padding;
    c.reparam = mode;
    c.bias = bias;
    c.seed = seed;
    srp_conv2d *l = NULL;
    const size_t more = larger ? 1 : 0;
    assert_ok(srp_conv2d_create(&l, &c, s->batch + more, s->height + 2 * more,
                                s->width + 2 * more));
    return l;
}

/* O(1) weights, a bias and gamma != sigma: every gradient term visible. */
static void randomize_layer(srp_conv2d *l, const conv_shape *s, srp_rng *r)
{
    fill_normal_f(r, srp_conv2d_weight(l), w_count(s), 0.5);
    assert_ok(srp_linear_reinit_sigma(srp_conv2d_linear(l)));
    if (srp_conv2d_bias(l))
        fill_normal_f(r, srp_conv2d_bias(l), s->out_ch, 0.3);
    if (srp_linear_reparam(srp_conv2d_linear(l)) == SRP_REPARAM_SIGMA)
        *srp_conv2d_gamma(l) = 1.7f;
}

/* stride 1 and 2 (and 3), padding 0, 1 and 2, kernels 1, 2, 3 and 5,
 * non-square images, one channel and several, a kernel that covers the
 * whole padded image; the last shapes have several im2col groups (more
 * than 4096 output pixels) and the OpenMP paths. */
static const conv_shape k_shapes[] = {
    {2, 3, 4, 3, 6, 5, 1, 1},      {3, 2, 5, 3, 7, 9, 2, 1},    {2, 4, 3, 1, 3, 4, 1, 0},
    {2, 2, 3, 5, 8, 11, 2, 0},     {1, 3, 2, 5, 5, 7, 1, 1},    {2, 1, 6, 3, 10, 6, 2, 0},
    {1, 2, 3, 2, 5, 4, 3, 2},      {2, 2, 2, 4, 2, 3, 1, 1},    {1, 1, 1, 3, 1, 1, 1, 1},
    {20, 3, 8, 3, 16, 16, 1, 1},   {70, 6, 16, 3, 16, 12, 2, 1}};
enum { FD_SHAPES = 9 }; /* the small ones, for central differences */
static const srp_reparam k_modes[] = {SRP_REPARAM_SIGMA, SRP_REPARAM_STATS_ONLY, SRP_REPARAM_NONE};

/* ---------------- tests ---------------- */

static void test_config_default_and_create(void **state)
{
    (void)state;
    const srp_conv2d_config c = srp_conv2d_config_default(3, 8, 5);
    const srp_linear_config l = srp_linear_config_default(75, 8);
    assert_int_equal(c.in_channels, 3);
    assert_int_equal(c.out_channels, 8);
    assert_int_equal(c.kernel, 5);
    assert_int_equal(c.stride, 1);
    assert_int_equal(c.padding, 0);
    assert_int_equal(c.bias, l.bias);
    assert_int_equal(c.reparam, l.reparam);
    assert_int_equal(c.gamma_init, l.gamma_init);
    assert_true(c.init_std == l.init_std);
    assert_int_equal(c.power_iters, l.power_iters);

    /* The weight, u, sigma and gamma are a linear's of the same config and
     * seed: the init is the linear's. */
    srp_conv2d_config cc = c;
    cc.seed = 77;
    cc.init_std = 0.3f;
    srp_linear_config lc = l;
    lc.seed = 77;
    lc.init_std = 0.3f;
    srp_conv2d *conv = NULL;
    srp_linear *lin = NULL;
    assert_ok(srp_conv2d_create(&conv, &cc, 2, 9, 9));
    assert_ok(srp_linear_create(&lin, &lc));
    assert_memory_equal(srp_conv2d_weight(conv), srp_linear_weight(lin), sizeof(float) * 75 * 8);
    assert_memory_equal(srp_conv2d_u(conv), srp_linear_u(lin), sizeof(float) * 75);
    assert_memory_equal(srp_conv2d_v(conv), srp_linear_v(lin), sizeof(float) * 8);
    assert_true(srp_conv2d_sigma(conv) == srp_linear_sigma(lin));
    assert_true(*srp_conv2d_gamma(conv) == srp_conv2d_sigma(conv)); /* gamma0 = sigma0 */
    assert_int_equal(srp_linear_in_features(srp_conv2d_linear(conv)), 75);
    assert_int_equal(srp_linear_out_features(srp_conv2d_linear(conv)), 8);
    for (size_t o = 0; o < 8; o++)
        assert_true(srp_conv2d_bias(conv)[o] == 0.0f);
    srp_linear_destroy(lin);
    srp_conv2d_destroy(conv);

    cc.gamma_init = SRP_GAMMA_INIT_ONE;
    cc.bias = 0;
    assert_ok(srp_conv2d_create(&conv, &cc, 1, 5, 5));
    assert_true(*srp_conv2d_gamma(conv) == 1.0f);
    assert_null(srp_conv2d_bias(conv));
    assert_null(srp_conv2d_bias_grad(conv));
    srp_conv2d_destroy(conv);
}

static void test_output_size(void **state)
{
    (void)state;
    srp_conv2d_config c = srp_conv2d_config_default(2, 3, 3);
    c.stride = 2;
    c.padding = 1;
    srp_conv2d *l = NULL;
    assert_ok(srp_conv2d_create(&l, &c, 1, 28, 28));
    size_t oh = 0, ow = 0;
    /* PyTorch's Conv2d(3, stride 2, padding 1): 28 -> 14 -> 7 -> 4 */
    assert_ok(srp_conv2d_output_size(l, 28, 7, &oh, &ow));
    assert_int_equal(oh, 14);
    assert_int_equal(ow, 4);
    assert_ok(srp_conv2d_output_size(l, 1, 2, &oh, &ow)); /* the padding makes room */
    assert_int_equal(oh, 1);
    assert_int_equal(ow, 1);
    srp_conv2d_destroy(l);
    c = srp_conv2d_config_default(1, 1, 5);
    assert_ok(srp_conv2d_create(&l, &c, 1, 9, 5));
    assert_ok(srp_conv2d_output_size(l, 9, 5, &oh, &ow));
    assert_int_equal(oh, 5);
    assert_int_equal(ow, 1);
    oh = ow = 99;
    assert_status(srp_conv2d_output_size(l, 9, 4, &oh, &ow), SRP_ERR_INVALID_ARG);
    assert_int_equal(oh, 99);
    assert_non_null(strstr(srp_last_error_detail(), "kernel 5 larger than the padded image 9 x 4"));
    assert_status(srp_conv2d_output_size(l, 0, 4, &oh, &ow), SRP_ERR_INVALID_ARG);
    assert_status(srp_conv2d_output_size(l, 9, 5, NULL, &ow), SRP_ERR_INVALID_ARG);
    assert_status(srp_conv2d_output_size(NULL, 9, 5, &oh, &ow), SRP_ERR_INVALID_ARG);
    srp_conv2d_destroy(l);
}

static void test_forward_matches_double_reference(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(100);
    for (size_t m = 0; m < 3; m++)
        for (size_t i = 0; i < sizeof(k_shapes) / sizeof(k_shapes[0]); i++)
            for (int larger = 0; larger < 2; larger++) {
                const conv_shape *s = &k_shapes[i];
                srp_conv2d *l = make_layer(s, k_modes[m], (int)(i % 3 != 2), larger, 1 + i);
                randomize_layer(l, s, &r);
                float *x = malloc(sizeof(float) * x_count(s)), *y = malloc(sizeof(float) * y_count(s));
                float *yref = malloc(sizeof(float) * y_count(s));
                double *yd = malloc(sizeof(double) * y_count(s));
                assert_true(x && y && yref && yd);
                fill_normal_f(&r, x, x_count(s), 1.0);
                conv_problem P;
                problem_init(&P, l, s, x);
                assert_ok(srp_conv2d_forward(l, x, s->batch, s->height, s->width, y, SRP_TRAIN));
                ref_conv_forward(&P, yd);
                to_float(yd, yref, y_count(s));
                assert_close_array(y, yref, y_count(s), 2e-5, "forward y");
                if (k_modes[m] != SRP_REPARAM_NONE)
                    assert_close_rel(srp_conv2d_sigma(l), ref_linear_sigma(&P.lin), 1e-5, 0.0,
                                     "sigma");
                else
                    assert_true(isnan(srp_conv2d_sigma(l)));
                problem_free(&P);
                free(x);
                free(y);
                free(yref);
                free(yd);
                srp_conv2d_destroy(l);
            }
}

/* A training forward and a backward of dy = y + r; every gradient against
 * central differences of the double reference, whose u, v are the
 * constants of that forward. Returns the largest |rank-1 term| of dW
 * relative to max |dW| (SIGMA mode), to show the tolerance can see it. */
static double check_gradients(srp_conv2d *l, const conv_shape *s, srp_rng *r, double tol)
{
    const size_t nx = x_count(s), ny = y_count(s), nw = w_count(s);
    const srp_reparam mode = srp_linear_reparam(srp_conv2d_linear(l));
    float *x = alloc_f(2 * (nx + ny)); /* one buffer for x, dx, y, dy */
    float *dx = x + nx, *y = dx + nx, *dy = y + ny;
    fill_normal_f(r, x, nx, 1.0);
    conv_problem P;
    problem_init(&P, l, s, x);
    fill_normal_d(r, P.r, ny, 1.0);

    srp_conv2d_zero_grad(l);
    assert_ok(srp_conv2d_forward(l, x, s->batch, s->height, s->width, y, SRP_TRAIN));
    for (size_t i = 0; i < ny; i++)
        dy[i] = y[i] + (float)P.r[i];
    assert_ok(srp_conv2d_backward(l, x, dy, dx));

    ref_assert_gradient(conv_loss, &P, P.x, nx, dx, tol, 0.0, "dx");
    const double max_dw =
        ref_assert_gradient(conv_loss, &P, P.lin.w, nw, srp_conv2d_weight_grad(l), tol, 0.0, "dW");
    double rank1_share = 0.0;
    if (mode == SRP_REPARAM_SIGMA) {
        /* the sigma term of dW, gamma s / sigma^2 v u^T, with s = sigma dgamma */
        const double sigma = ref_linear_sigma(&P.lin), gamma = P.lin.gamma;
        double max_uv = 0.0;
        for (size_t o = 0; o < s->out_ch; o++)
            for (size_t i = 0; i < nw / s->out_ch; i++)
                max_uv = fmax(max_uv, fabs(P.lin.v[o] * P.lin.u[i]));
        double dgamma;
        ref_central_differences(conv_loss, &P, &P.lin.gamma, 1, &dgamma);
        assert_close_rel(*srp_conv2d_gamma_grad(l), dgamma, tol, 1e-3, "dgamma");
        rank1_share = fabs(gamma * dgamma / sigma) * max_uv / max_dw;
    } else {
        assert_true(*srp_conv2d_gamma_grad(l) == 0.0f);
    }
    if (srp_conv2d_bias(l))
        ref_assert_gradient(conv_loss, &P, P.lin.b, s->out_ch, srp_conv2d_bias_grad(l), tol, 0.0,
                            "db");
    /* dx may be NULL: the parameter gradients are the same. */
    float *dw = malloc(sizeof(float) * nw);
    assert_non_null(dw);
    memcpy(dw, srp_conv2d_weight_grad(l), sizeof(float) * nw);
    srp_conv2d_zero_grad(l);
    assert_ok(srp_conv2d_forward(l, x, s->batch, s->height, s->width, y, SRP_EVAL));
    assert_ok(srp_conv2d_backward(l, x, dy, NULL));
    assert_close_array(srp_conv2d_weight_grad(l), dw, nw, 1e-5, "dW without dx");
    free(dw);
    problem_free(&P);
    free(x);
    return rank1_share;
}

static void test_backward_matches_finite_differences(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(200);
    const double tol = 5e-5;
    double smallest_rank1_share = 1.0;
    for (size_t m = 0; m < 3; m++)
        for (size_t i = 0; i < FD_SHAPES; i++)
            for (int larger = 0; larger < 2; larger++) {
                const conv_shape *s = &k_shapes[i];
                srp_conv2d *l = make_layer(s, k_modes[m], (int)(i % 3 != 1), larger, 10 + i);
                randomize_layer(l, s, &r);
                const double share = check_gradients(l, s, &r, tol);
                if (k_modes[m] == SRP_REPARAM_SIGMA && w_count(s) > 1)
                    smallest_rank1_share = fmin(smallest_rank1_share, share);
                srp_conv2d_destroy(l);
            }
    /* Dropping the sigma term would move dW by this share of its size:
     * far above the tolerance, so the test above would fail. */
    assert_true(smallest_rank1_share > 20.0 * tol);
}

/* gamma0 = 1: the same formulas. Three power steps per forward: u after a
 * training forward is three reference steps. */
static void test_gamma_init_one_and_more_iterations(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(300);
    const conv_shape s = {2, 3, 4, 3, 5, 6, 2, 1};
    srp_conv2d_config c = srp_conv2d_config_default(s.in_ch, s.out_ch, s.kernel);
    c.stride = s.stride;
    c.padding = s.padding;
    c.gamma_init = SRP_GAMMA_INIT_ONE;
    srp_conv2d *l = NULL;
    assert_ok(srp_conv2d_create(&l, &c, s.batch, s.height, s.width));
    assert_true(*srp_conv2d_gamma(l) == 1.0f);
    fill_normal_f(&r, srp_conv2d_weight(l), w_count(&s), 0.5);
    assert_ok(srp_linear_reinit_sigma(srp_conv2d_linear(l)));
    check_gradients(l, &s, &r, 5e-5);
    srp_conv2d_destroy(l);

    c.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    c.power_iters = 3;
    assert_ok(srp_conv2d_create(&l, &c, s.batch, s.height, s.width));
    enum { IN = 27, OUT = 4 };
    fill_normal_f(&r, srp_conv2d_weight(l), IN * OUT, 1.0);
    double w[IN * OUT], u[IN], v[OUT], u1[IN];
    to_double(srp_conv2d_weight(l), w, IN * OUT);
    to_double(srp_conv2d_u(l), u, IN);
    double sigma = 0.0;
    for (int it = 0; it < 3; it++) {
        sigma = ref_power_step(w, OUT, IN, u, v, u1);
        memcpy(u, u1, sizeof(u));
    }
    float x[2 * 3 * 5 * 6], y[2 * 4 * 3 * 3], uref[IN];
    fill_normal_f(&r, x, sizeof(x) / sizeof(x[0]), 1.0);
    assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y, SRP_TRAIN));
    to_float(u, uref, IN);
    assert_close_array(srp_conv2d_u(l), uref, IN, 1e-5, "u after 3 iterations");
    assert_close_rel(srp_conv2d_sigma(l), sigma, 1e-5, 0.0, "sigma after 3 iterations");
    srp_conv2d_destroy(l);
}

static void test_eval_changes_nothing_and_repeats_bitwise(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(400);
    const conv_shape s = {3, 4, 5, 3, 7, 6, 1, 1};
    for (size_t m = 0; m < 3; m++)
        for (int larger = 0; larger < 2; larger++) {
            srp_conv2d *l = make_layer(&s, k_modes[m], 1, larger, 5);
            randomize_layer(l, &s, &r);
            const size_t nx = x_count(&s), ny = y_count(&s), nw = w_count(&s), in = nw / s.out_ch;
            float *x = malloc(sizeof(float) * nx), *y1 = malloc(sizeof(float) * ny);
            float *y2 = malloc(sizeof(float) * ny), *y3 = malloc(sizeof(float) * ny);
            float *u_before = malloc(sizeof(float) * in), *w_before = malloc(sizeof(float) * nw);
            assert_true(x && y1 && y2 && y3 && u_before && w_before);
            fill_normal_f(&r, x, nx, 1.0);
            assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y1, SRP_TRAIN));
            memcpy(u_before, srp_conv2d_u(l), sizeof(float) * in);
            memcpy(w_before, srp_conv2d_weight(l), sizeof(float) * nw);
            const float gamma_before = *srp_conv2d_gamma(l);
            assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y1, SRP_EVAL));
            assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y2, SRP_EVAL));
            assert_memory_equal(y1, y2, sizeof(float) * ny);
            assert_memory_equal(u_before, srp_conv2d_u(l), sizeof(float) * in);
            assert_memory_equal(w_before, srp_conv2d_weight(l), sizeof(float) * nw);
            assert_true(gamma_before == *srp_conv2d_gamma(l));
            /* a training forward takes the same step from the same u */
            assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y3, SRP_TRAIN));
            assert_memory_equal(y1, y3, sizeof(float) * ny);
            if (k_modes[m] != SRP_REPARAM_NONE)
                assert_memory_not_equal(u_before, srp_conv2d_u(l), sizeof(float) * in);
            free(x);
            free(y1);
            free(y2);
            free(y3);
            free(u_before);
            free(w_before);
            srp_conv2d_destroy(l);
        }
}

/* A forward and backward twice in a row give the same bits, and backwards
 * on the halves of a batch add up to one on the whole (eval forwards share
 * one sigma). */
static void test_accumulation_equals_whole_batch(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(500);
    const conv_shape s = {70, 6, 16, 3, 16, 12, 2, 1};
    conv_shape half = s;
    half.batch = 30;
    srp_conv2d *l = make_layer(&s, SRP_REPARAM_SIGMA, 1, 0, 6);
    randomize_layer(l, &s, &r);
    const size_t nx = x_count(&s), ny = y_count(&s), nw = w_count(&s);
    const size_t hx = x_count(&half), hy = y_count(&half);
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    float *dy = malloc(sizeof(float) * ny), *dx1 = malloc(sizeof(float) * nx);
    float *dx2 = malloc(sizeof(float) * nx), *dw_one = malloc(sizeof(float) * nw);
    float db_one[16];
    assert_true(x && y && dy && dx1 && dx2 && dw_one);
    fill_normal_f(&r, x, nx, 1.0);
    fill_normal_f(&r, dy, ny, 1.0);
    assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y, SRP_EVAL));
    assert_ok(srp_conv2d_backward(l, x, dy, dx1));
    memcpy(dw_one, srp_conv2d_weight_grad(l), sizeof(float) * nw);
    memcpy(db_one, srp_conv2d_bias_grad(l), sizeof(db_one));
    const float dg_one = *srp_conv2d_gamma_grad(l);
    srp_conv2d_zero_grad(l);
    assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y, SRP_EVAL));
    assert_ok(srp_conv2d_backward(l, x, dy, dx2));
    assert_memory_equal(srp_conv2d_weight_grad(l), dw_one, sizeof(float) * nw);
    assert_memory_equal(dx1, dx2, sizeof(float) * nx);
    srp_conv2d_zero_grad(l);
    for (size_t i = 0; i < nw; i++)
        assert_true(srp_conv2d_weight_grad(l)[i] == 0.0f);
    assert_ok(srp_conv2d_forward(l, x, half.batch, s.height, s.width, y, SRP_EVAL));
    assert_ok(srp_conv2d_backward(l, x, dy, dx2));
    assert_ok(srp_conv2d_forward(l, x + hx, s.batch - half.batch, s.height, s.width, y, SRP_EVAL));
    assert_ok(srp_conv2d_backward(l, x + hx, dy + hy, dx2 + hx));
    assert_close_array(srp_conv2d_weight_grad(l), dw_one, nw, 1e-5, "dW accumulated");
    assert_close_array(srp_conv2d_bias_grad(l), db_one, 16, 1e-5, "db accumulated");
    assert_close_rel(*srp_conv2d_gamma_grad(l), dg_one, 1e-5, 1e-3, "dgamma accumulated");
    assert_close_array(dx2, dx1, nx, 1e-5, "dx in halves");
    free(x);
    free(y);
    free(dy);
    free(dx1);
    free(dx2);
    free(dw_one);
    srp_conv2d_destroy(l);
}

/* ---- bad input ---- */

typedef struct {
    float w[2 * 3 * 9], b[3], gamma, u[18], v[3], sigma, dw[2 * 3 * 9], db[3], dgamma;
} layer_snapshot;

static layer_snapshot snapshot(srp_conv2d *l)
{
    layer_snapshot s;
    memset(&s, 0, sizeof(s));
    memcpy(s.w, srp_conv2d_weight(l), sizeof(s.w));
    memcpy(s.b, srp_conv2d_bias(l), sizeof(s.b));
    s.gamma = *srp_conv2d_gamma(l);
    memcpy(s.u, srp_conv2d_u(l), sizeof(s.u));
    memcpy(s.v, srp_conv2d_v(l), sizeof(s.v));
    s.sigma = srp_conv2d_sigma(l);
    memcpy(s.dw, srp_conv2d_weight_grad(l), sizeof(s.dw));
    memcpy(s.db, srp_conv2d_bias_grad(l), sizeof(s.db));
    s.dgamma = *srp_conv2d_gamma_grad(l);
    return s;
}

static void assert_detail(const char *part)
{
    const char *d = srp_last_error_detail();
    if (!strstr(d, part))
        fail_msg("detail \"%s\" lacks \"%s\"", d, part);
}

static void test_bad_input_leaves_the_layer_untouched(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(700);
    const conv_shape s = {2, 2, 3, 3, 5, 4, 1, 1};
    for (int larger = 0; larger < 2; larger++) {
        /* l sees the bad calls, its twin does not: both do the good ones */
        srp_conv2d *l = make_layer(&s, SRP_REPARAM_SIGMA, 1, larger, 2);
        srp_conv2d *twin = make_layer(&s, SRP_REPARAM_SIGMA, 1, larger, 2);
        randomize_layer(l, &s, &r);
        memcpy(srp_conv2d_weight(twin), srp_conv2d_weight(l), sizeof(float) * w_count(&s));
        memcpy(srp_conv2d_bias(twin), srp_conv2d_bias(l), sizeof(float) * s.out_ch);
        *srp_conv2d_gamma(twin) = *srp_conv2d_gamma(l);
        assert_ok(srp_linear_reinit_sigma(srp_conv2d_linear(twin)));
        float x[2 * 2 * 5 * 4], y[2 * 3 * 5 * 4], dy[2 * 3 * 5 * 4], dx[2 * 2 * 5 * 4];
        float dx_want[2 * 2 * 5 * 4];
        fill_normal_f(&r, x, sizeof(x) / sizeof(x[0]), 1.0);
        fill_normal_f(&r, dy, sizeof(dy) / sizeof(dy[0]), 1.0);
        srp_conv2d *both[2] = {l, twin};
        for (int i = 0; i < 2; i++) {
            assert_ok(srp_conv2d_forward(both[i], x, 2, 5, 4, y, SRP_TRAIN));
            assert_ok(srp_conv2d_backward(both[i], x, dy, dx));
            assert_ok(srp_conv2d_forward(both[i], x, 2, 5, 4, y, SRP_TRAIN)); /* pending */
        }
        const layer_snapshot before = snapshot(l);

        /* sizes above the maxima, a kernel larger than the padded image */
        const size_t mb = 2 + (size_t)larger, mh = 5 + 2 * (size_t)larger;
        assert_status(srp_conv2d_forward(l, x, mb + 1, 5, 4, y, SRP_TRAIN), SRP_ERR_SHAPE);
        assert_detail("srp_conv2d_forward: batch");
        assert_detail("above the maxima");
        assert_status(srp_conv2d_forward(l, x, 1, mh + 1, 4, y, SRP_EVAL), SRP_ERR_SHAPE);
        srp_conv2d_config c = srp_conv2d_config_default(2, 3, 4);
        srp_conv2d *big = NULL;
        assert_ok(srp_conv2d_create(&big, &c, 2, 5, 4));
        assert_status(srp_conv2d_forward(big, x, 1, 5, 3, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
        assert_detail("kernel 4 larger than the padded image 5 x 3 (padding 0)");
        srp_conv2d_destroy(big);
        assert_status(srp_conv2d_forward(l, x, 0, 5, 4, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
        assert_status(srp_conv2d_forward(l, NULL, 2, 5, 4, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
        assert_status(srp_conv2d_forward(l, x, 2, 5, 4, NULL, SRP_TRAIN), SRP_ERR_INVALID_ARG);
        layer_snapshot after = snapshot(l);
        assert_memory_equal(&before, &after, sizeof(before));

        /* NaN/Inf in x, in the bias, in W, in gamma: nothing commits */
        const float bad[3] = {NAN, INFINITY, -INFINITY};
        for (int k = 0; k < 3; k++) {
            float xb[sizeof(x) / sizeof(x[0])];
            memcpy(xb, x, sizeof(x));
            xb[13] = bad[k];
            assert_status(srp_conv2d_forward(l, xb, 2, 5, 4, y, SRP_TRAIN), SRP_ERR_NUMERIC);
            assert_detail("srp_conv2d_forward: NaN or Inf in y");
            srp_conv2d_bias(l)[1] = bad[k];
            assert_status(srp_conv2d_forward(l, x, 2, 5, 4, y, SRP_EVAL), SRP_ERR_NUMERIC);
            srp_conv2d_bias(l)[1] = before.b[1];
            srp_conv2d_weight(l)[7] = bad[k];
            assert_status(srp_conv2d_forward(l, x, 2, 5, 4, y, SRP_TRAIN), SRP_ERR_NUMERIC);
            assert_detail("srp_conv2d_forward: the weight's power step");
            srp_conv2d_weight(l)[7] = before.w[7];
            *srp_conv2d_gamma(l) = bad[k];
            assert_status(srp_conv2d_forward(l, x, 2, 5, 4, y, SRP_TRAIN), SRP_ERR_NUMERIC);
            *srp_conv2d_gamma(l) = before.gamma;
            after = snapshot(l);
            assert_memory_equal(&before, &after, sizeof(before));
        }
        /* An overflow of finite numbers. */
        float xb[sizeof(x) / sizeof(x[0])];
        for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
            xb[i] = x[i] * 1e36f;
        *srp_conv2d_gamma(l) *= 1e4f;
        assert_status(srp_conv2d_forward(l, xb, 2, 5, 4, y, SRP_TRAIN), SRP_ERR_NUMERIC);
        *srp_conv2d_gamma(l) = before.gamma;

        /* NaN/Inf in dy or x at the backward: no gradient moves, and the
         * pending forward may still be differentiated */
        for (int k = 0; k < 3; k++) {
            float dyb[sizeof(dy) / sizeof(dy[0])];
            memcpy(dyb, dy, sizeof(dy));
            dyb[9] = bad[k];
            assert_status(srp_conv2d_backward(l, x, dyb, dx), SRP_ERR_NUMERIC);
            assert_detail("srp_conv2d_backward: NaN or Inf");
            memcpy(xb, x, sizeof(x));
            xb[6] = bad[k];
            assert_status(srp_conv2d_backward(l, xb, dy, NULL), SRP_ERR_NUMERIC);
            after = snapshot(l);
            assert_memory_equal(&before, &after, sizeof(before));
        }
        assert_status(srp_conv2d_backward(NULL, x, dy, dx), SRP_ERR_INVALID_ARG);
        assert_status(srp_conv2d_backward(l, NULL, dy, dx), SRP_ERR_INVALID_ARG);
        assert_status(srp_conv2d_backward(l, x, NULL, dx), SRP_ERR_INVALID_ARG);
        /* After all that, the pending forward's backward is the twin's. */
        assert_ok(srp_conv2d_backward(twin, x, dy, dx_want));
        assert_ok(srp_conv2d_backward(l, x, dy, dx));
        assert_memory_equal(dx, dx_want, sizeof(dx));
        const layer_snapshot mine = snapshot(l), its = snapshot(twin);
        assert_memory_equal(&mine, &its, sizeof(mine));
        srp_conv2d_destroy(twin);
        /* the order rules: a second backward of that forward is refused */
        const layer_snapshot done = snapshot(l);
        assert_status(srp_conv2d_backward(l, x, dy, dx), SRP_ERR_ORDER);
        assert_detail("srp_conv2d_backward");
        after = snapshot(l);
        assert_memory_equal(&done, &after, sizeof(done));
        assert_memory_equal(dx, dx_want, sizeof(dx));
        /* two training forwards: which one? refused */
        assert_ok(srp_conv2d_forward(l, x, 2, 5, 4, y, SRP_TRAIN));
        assert_ok(srp_conv2d_forward(l, x, 2, 5, 4, y, SRP_TRAIN));
        assert_status(srp_conv2d_backward(l, x, dy, dx), SRP_ERR_ORDER);
        srp_conv2d_destroy(l);
    }
    /* before any forward */
    srp_conv2d *l = make_layer(&s, SRP_REPARAM_SIGMA, 1, 0, 2);
    float x[2 * 2 * 5 * 4] = {0}, dy[2 * 3 * 5 * 4] = {0};
    assert_status(srp_conv2d_backward(l, x, dy, NULL), SRP_ERR_ORDER);
    srp_conv2d_destroy(l);
}

static void test_bad_configs(void **state)
{
    (void)state;
    srp_conv2d *l = (srp_conv2d *)&l;
    const srp_conv2d_config good = srp_conv2d_config_default(2, 3, 3);
    assert_status(srp_conv2d_create(NULL, &good, 1, 4, 4), SRP_ERR_INVALID_ARG);
    assert_status(srp_conv2d_create(&l, NULL, 1, 4, 4), SRP_ERR_INVALID_ARG);
    assert_null(l);
    /* every bad config is a row of test_contract.c (create_conv); here the
     * detail of one */
    srp_conv2d_config c = good;
    c.kernel = 7; /* larger than 4 + 2 * 0 */
    l = (srp_conv2d *)&l;
    assert_status(srp_conv2d_create(&l, &c, 1, 4, 4), SRP_ERR_INVALID_ARG);
    assert_null(l);
    assert_detail("srp_conv2d_create: kernel 7 larger than the padded largest image");
    /* a kernel larger than the image, padded to fit */
    c.kernel = 5;
    c.padding = 1;
    assert_ok(srp_conv2d_create(&l, &c, 1, 3, 3));
    srp_conv2d_destroy(l);
    srp_conv2d_destroy(NULL);
    srp_conv2d_zero_grad(NULL);
    assert_null(srp_conv2d_weight(NULL));
    assert_null(srp_conv2d_linear(NULL));
    assert_true(isnan(srp_conv2d_sigma(NULL)));
}

/* ---- lists ---- */

static void test_params_and_state_refs(void **state)
{
    (void)state;
    srp_conv2d_config c = srp_conv2d_config_default(2, 3, 5);
    srp_conv2d *l = NULL;
    assert_ok(srp_conv2d_create(&l, &c, 1, 8, 8));
    srp_param_list *params = NULL;
    srp_tensor_list *refs = NULL;
    assert_ok(srp_param_list_create(&params));
    assert_ok(srp_tensor_list_create(&refs));
    assert_ok(srp_conv2d_params(l, "stem.conv0", params));
    assert_int_equal(srp_param_list_count(params), 3);
    const srp_param *p = srp_param_list_entries(params);
    assert_string_equal(p[0].name, "stem.conv0.weight");
    assert_ptr_equal(p[0].data, srp_conv2d_weight(l));
    assert_ptr_equal(p[0].grad, srp_conv2d_weight_grad(l));
    assert_int_equal(p[0].size, 3 * 2 * 5 * 5);
    assert_string_equal(p[1].name, "stem.conv0.bias");
    assert_string_equal(p[2].name, "stem.conv0.gamma");
    assert_int_equal(srp_param_list_kind(params, 2), SRP_PARAM_GAMMA);

    assert_ok(srp_conv2d_state_refs(l, "stem.conv0", refs));
    const char *names[6] = {"stem.conv0.weight", "stem.conv0.bias", "stem.conv0.gamma",
                            "stem.conv0.u",      "stem.conv0.v",    "stem.conv0.sigma"};
    assert_int_equal(srp_tensor_list_count(refs), 6);
    const srp_tensor_ref *t = srp_tensor_list_refs(refs);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(t[i].name, names[i]);
    assert_int_equal(t[0].ndim, 4);
    assert_int_equal(t[0].shape[0], 3);
    assert_int_equal(t[0].shape[1], 2);
    assert_int_equal(t[0].shape[2], 5);
    assert_int_equal(t[0].shape[3], 5);
    assert_ptr_equal(t[0].data, srp_conv2d_weight(l));
    assert_int_equal(t[3].shape[0], 2 * 5 * 5);
    assert_ptr_equal(t[3].data, srp_conv2d_u(l));
    assert_ptr_equal(t[4].data, srp_conv2d_v(l));
    assert_int_equal(t[5].ndim, 0);
    assert_true(*(const float *)t[5].data == srp_conv2d_sigma(l));
    /* a second layer under the same prefix is refused, as the linear's */
    assert_status(srp_conv2d_state_refs(l, "stem.conv0", refs), SRP_ERR_INVALID_ARG);
    assert_status(srp_conv2d_state_refs(NULL, "x", refs), SRP_ERR_INVALID_ARG);
    assert_status(srp_conv2d_state_refs(l, "x", NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_conv2d_params(NULL, "x", params), SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(params);
    srp_tensor_list_destroy(refs);
    srp_conv2d_destroy(l);

    /* NONE mode: weight and bias only */
    c.reparam = SRP_REPARAM_NONE;
    assert_ok(srp_conv2d_create(&l, &c, 1, 8, 8));
    assert_ok(srp_tensor_list_create(&refs));
    assert_ok(srp_conv2d_state_refs(l, NULL, refs));
    assert_int_equal(srp_tensor_list_count(refs), 2);
    assert_string_equal(srp_tensor_list_refs(refs)[0].name, "weight");
    srp_tensor_list_destroy(refs);
    srp_conv2d_destroy(l);
}

/* ---- the official semantics ---- */

/* The fixtures hold what the PyTorch re-implementation computed, step by
 * step, with SGD between the steps. */
static void run_fixture_case(const fixture *fx, const char *tag, int larger)
{
    char key[128];
#define FX(name, count)                                                                            \
    (snprintf(key, sizeof(key), "%s/%s", tag, name), fixture_get(fx, key, count, NULL))
    const float *cfg = FX("config", 11);
    const conv_shape s = {(size_t)cfg[0], (size_t)cfg[1], (size_t)cfg[2], (size_t)cfg[3],
                          (size_t)cfg[4], (size_t)cfg[5], (size_t)cfg[6], (size_t)cfg[7]};
    const int bias = cfg[8] != 0.0f, stats = cfg[9] != 0.0f, steps = (int)cfg[10];
    const size_t nx = x_count(&s), ny = y_count(&s), nw = w_count(&s), in = nw / s.out_ch;
    const float lr = 0.05f, tol = 1e-5f;
    srp_conv2d *l =
        make_layer(&s, stats ? SRP_REPARAM_STATS_ONLY : SRP_REPARAM_SIGMA, bias, larger, 1);
    memcpy(srp_conv2d_weight(l), FX("w0", nw), sizeof(float) * nw);
    if (bias)
        memcpy(srp_conv2d_bias(l), FX("b0", s.out_ch), sizeof(float) * s.out_ch);
    assert_ok(srp_linear_reinit_sigma(srp_conv2d_linear(l)));
    /* torch's SVD may pick the opposite sign of u; take its vector as is */
    memcpy(srp_conv2d_u(l), FX("u0", in), sizeof(float) * in);
    if (!stats)
        *srp_conv2d_gamma(l) = FX("gamma0", 1)[0];

    float *y = malloc(sizeof(float) * ny), *dx = malloc(sizeof(float) * nx);
    assert_true(y && dx);
    for (int step = 0; step < steps; step++) {
        char name[96];
#define STEP(field, count) (snprintf(name, sizeof(name), "step%d/%s", step, field), FX(name, count))
        const float *x = STEP("x", nx);
        srp_conv2d_zero_grad(l);
        assert_ok(srp_conv2d_forward(l, x, s.batch, s.height, s.width, y, SRP_TRAIN));
        assert_close_array(y, STEP("y", ny), ny, tol, "fixture y");
        assert_close_array(srp_conv2d_u(l), STEP("u", in), in, tol, "fixture u");
        assert_close_rel(srp_conv2d_sigma(l), STEP("sigma", 1)[0], tol, 0.0, "fixture sigma");
        const float *dy = STEP("dy", ny);
        assert_ok(srp_conv2d_backward(l, x, dy, dx));
        assert_close_array(dx, STEP("dx", nx), nx, tol, "fixture dx");
        assert_close_array(srp_conv2d_weight_grad(l), STEP("dw", nw), nw, tol, "fixture dW");
        if (bias)
            assert_close_array(srp_conv2d_bias_grad(l), STEP("db", s.out_ch), s.out_ch, tol,
                               "fixture db");
        if (!stats)
            assert_close_rel(*srp_conv2d_gamma_grad(l), STEP("dgamma", 1)[0], tol, 0.0,
                             "fixture dgamma");
#undef STEP
        float *w = srp_conv2d_weight(l); /* the generator's plain SGD step */
        for (size_t i = 0; i < nw; i++)
            w[i] -= lr * srp_conv2d_weight_grad(l)[i];
        for (size_t o = 0; bias && o < s.out_ch; o++)
            srp_conv2d_bias(l)[o] -= lr * srp_conv2d_bias_grad(l)[o];
        if (!stats)
            *srp_conv2d_gamma(l) -= lr * *srp_conv2d_gamma_grad(l);
    }
    assert_ok(srp_conv2d_forward(l, FX("eval/x", nx), s.batch, s.height, s.width, y, SRP_EVAL));
    assert_close_array(y, FX("eval/y", ny), ny, tol, "fixture eval y");
    assert_close_rel(srp_conv2d_sigma(l), FX("eval/sigma", 1)[0], tol, 0.0, "fixture eval sigma");
#undef FX
    free(y);
    free(dx);
    srp_conv2d_destroy(l);
}

static void test_matches_official_pytorch_semantics(void **state)
{
    (void)state;
    fixture *fx = fixture_load(SRP_TEST_DATA_DIR "/conv2d_fixtures.bin");
    const char *cases[] = {"k3s1p1", "k3s2p1", "k1s1p0", "k5s2p0", "k5s1p1", "k3s2p0", "stats"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int larger = 0; larger < 2; larger++)
            run_fixture_case(fx, cases[i], larger);
    fixture_free(fx);
}

#ifdef SRP_COUNT_ALLOCS
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(800);
    const conv_shape s = {40, 8, 16, 3, 14, 14, 1, 1}; /* the OpenMP paths, two im2col groups */
    conv_shape smaller = s;
    smaller.batch = 17; /* im2col where the largest shape runs through the door */
    for (size_t m = 0; m < 3; m++) {
        srp_conv2d *l = make_layer(&s, k_modes[m], 1, 0, 3);
        float *x = malloc(sizeof(float) * x_count(&s)), *y = malloc(sizeof(float) * y_count(&s));
        float *dx = malloc(sizeof(float) * x_count(&s));
        assert_true(x && y && dx);
        fill_normal_f(&r, x, x_count(&s), 1.0);
        for (int warm = 0; warm < 2; warm++) { /* thread pools, oneDNN's kernels */
            const conv_shape *t = warm ? &smaller : &s;
            assert_ok(srp_conv2d_forward(l, x, t->batch, t->height, t->width, y, SRP_TRAIN));
            assert_ok(srp_conv2d_backward(l, x, y, dx));
        }
        alloc_counter_start();
        for (int it = 0; it < 2; it++)
            for (int which = 0; which < 2; which++) {
                const conv_shape *t = which ? &smaller : &s;
                assert_ok(srp_conv2d_forward(l, x, t->batch, t->height, t->width, y, SRP_EVAL));
                assert_ok(srp_conv2d_forward(l, x, t->batch, t->height, t->width, y, SRP_TRAIN));
                assert_ok(srp_conv2d_backward(l, x, y, it ? dx : NULL));
            }
        assert_int_equal(alloc_counter_stop(NULL), 0);
        free(x);
        free(y);
        free(dx);
        srp_conv2d_destroy(l);
    }
}
#endif

/* ---------------- bf16 inputs ---------------- */

/* x rounded to the nearest bf16, ties to even (test-side, from the bits). */
static double bf16(double x)
{
    const float f = (float)x;
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
    float r;
    memcpy(&r, &bits, sizeof(r));
    return r;
}

static double gamma_f32(double k) { return k * 0x1p-24 / (1.0 - k * 0x1p-24); }

/* dx = conv's adjoint on dy, dw = sum of dy x over every output, in double
 * (scale 1, as SRP_REPARAM_NONE). dy: [B][K][OH][OW] */
static void ref_conv_backward(const conv_problem *P, const double *dy, double *dx, double *dw)
{
    const conv_shape *s = &P->s;
    const size_t OH = out_side(s, s->height), OW = out_side(s, s->width), k = s->kernel;
    memset(dx, 0, sizeof(double) * x_count(s));
    memset(dw, 0, sizeof(double) * w_count(s));
    for (size_t b = 0; b < s->batch; b++)
        for (size_t o = 0; o < s->out_ch; o++)
            for (size_t i = 0; i < OH; i++)
                for (size_t j = 0; j < OW; j++) {
                    const double g = dy[((b * s->out_ch + o) * OH + i) * OW + j];
                    for (size_t c = 0; c < s->in_ch; c++)
                        for (size_t p = 0; p < k; p++)
                            for (size_t q = 0; q < k; q++) {
                                const long xi = tap_input(s, b, c, i, j, p, q);
                                if (xi < 0)
                                    continue;
                                const size_t wi = ((o * s->in_ch + c) * k + p) * k + q;
                                dx[xi] += g * P->lin.w[wi];
                                dw[wi] += g * P->x[xi];
                            }
                }
}

/* Whether |got - want| <= tol m elementwise; prints the first miss when
 * loud. */
static int within(const float *got, const double *want, const double *m, size_t n, double tol,
                  const char *what, int loud)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * m[i])) {
            if (loud)
                print_error("%s[%zu]: %.9g, reference %.9g, allowed %.3g\n", what, i,
                            (double)got[i], want[i], tol * m[i]);
            return 0;
        }
    return 1;
}

/* y, dx and dW of a layer on x and dy against the sums in double of the
 * inputs rounded to bf16 (rounded) or as they are, within fp32's
 * gamma_{k+2} sum |a||b| for k terms: what a convolution that sums in fp32
 * gives. Returns whether they are within. */
static int matches_sums(srp_conv2d *l, const conv_shape *s, const float *x, const float *dy,
                        const float *y, const float *dx, int rounded, int loud)
{
    const size_t nx = x_count(s), ny = y_count(s), nw = w_count(s);
    const size_t most = ny > nx + nw ? ny : nx + nw; /* y, then dx and dW side by side */
    double *want = malloc(sizeof(double) * most), *m = malloc(sizeof(double) * most);
    double *dyr = malloc(sizeof(double) * ny), *dya = malloc(sizeof(double) * ny);
    assert_true(want && m && dyr && dya);
    /* P: the inputs; A: their magnitudes, the sums the tolerances scale */
    conv_problem P, A;
    problem_init(&P, l, s, x);
    problem_init(&A, l, s, x);
    for (size_t j = 0; j < nx; j++) {
        P.x[j] = rounded ? bf16(P.x[j]) : P.x[j];
        A.x[j] = fabs(P.x[j]);
    }
    for (size_t j = 0; j < nw; j++) {
        P.lin.w[j] = rounded ? bf16(P.lin.w[j]) : P.lin.w[j];
        A.lin.w[j] = fabs(P.lin.w[j]);
    }
    for (size_t o = 0; o < s->out_ch; o++)
        A.lin.b[o] = fabs(A.lin.b[o]);
    for (size_t j = 0; j < ny; j++) {
        dyr[j] = rounded ? bf16(dy[j]) : dy[j];
        dya[j] = fabs(dyr[j]);
    }
    const size_t kk = s->kernel * s->kernel;
    const double tol_y = gamma_f32((double)(s->in_ch * kk) + 2.0);
    const double tol_dx = gamma_f32((double)(s->out_ch * kk) + 2.0);
    const double tol_dw =
        gamma_f32((double)(s->batch * out_side(s, s->height) * out_side(s, s->width)) + 2.0);
    ref_conv_forward(&P, want);
    ref_conv_forward(&A, m);
    int good = within(y, want, m, ny, tol_y, "y", loud);
    ref_conv_backward(&P, dyr, want, want + nx);
    ref_conv_backward(&A, dya, m, m + nx);
    good = good && within(dx, want, m, nx, tol_dx, "dx", loud) &&
           within(srp_conv2d_weight_grad(l), want + nx, m + nx, nw, tol_dw, "dW", loud);
    problem_free(&P);
    problem_free(&A);
    free(want), free(m), free(dyr), free(dya);
    return good;
}

/* Under bf16 GEMM inputs (core.h), on a CPU that multiplies bf16, the
 * door's convolution reads x, the weight and dy rounded to bf16 and sums
 * in fp32, where oneDNN has a kernel for the shape that is found right
 * (blas_conv.c), and stays fp32 elsewhere. Each shape's y, dx and dW
 * against the sums of the rounded inputs in double, within fp32's own
 * error, as test_bf16.c holds the linear: not rounding, or rounding an
 * output instead, misses it by orders of magnitude (2^-8 against 2^-24
 * k). The 3x3 shapes (the ViT stem's second layer among them, and
 * channels that pad oneDNN's blocks) must round; the 1x1 ones may stay
 * fp32, and then meet the unrounded sums. */
static void test_bf16_inputs(void **state)
{
    (void)state;
    if (srp_set_precision(SRP_PRECISION_BF16) != SRP_OK) {
        print_message("bf16 does not run here: %s\n", srp_last_error_detail());
        skip();
    }
    const conv_shape shapes[] = {{3, 2, 5, 3, 7, 9, 2, 1},
                                 {4, 48, 96, 3, 14, 14, 2, 1},
                                 {2, 16, 24, 3, 5, 6, 1, 1},
                                 {2, 16, 32, 1, 5, 6, 1, 0},
                                 {2, 16, 24, 1, 5, 6, 1, 0}};
    srp_rng r = seeded_rng(300);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const conv_shape *s = &shapes[i];
        assert_ok(srp_set_precision(SRP_PRECISION_BF16));
        srp_conv2d *l = make_layer(s, SRP_REPARAM_NONE, 1, 0, 30 + i); /* the door's shape */
        assert_ok(srp_set_precision(SRP_PRECISION_FP32));
        randomize_layer(l, s, &r);
        const size_t nx = x_count(s), ny = y_count(s);
        float *x = malloc(sizeof(float) * nx), *dx = malloc(sizeof(float) * nx);
        float *y = malloc(sizeof(float) * ny), *dy = malloc(sizeof(float) * ny);
        assert_true(x && dx && y && dy);
        fill_normal_f(&r, x, nx, 1.0);
        fill_normal_f(&r, dy, ny, 1.0);
        assert_ok(srp_conv2d_forward(l, x, s->batch, s->height, s->width, y, SRP_TRAIN));
        srp_conv2d_zero_grad(l);
        assert_ok(srp_conv2d_backward(l, x, dy, dx));
        if (s->kernel == 3) {
            assert_true(matches_sums(l, s, x, dy, y, dx, 1, 1));
        } else {
            const int rounded = matches_sums(l, s, x, dy, y, dx, 1, 0);
            print_message("%zux%zu kernel, %zu -> %zu channels: %s\n", s->kernel, s->kernel,
                          s->in_ch, s->out_ch, rounded ? "bf16" : "fp32");
            assert_true(rounded || matches_sums(l, s, x, dy, y, dx, 0, 1));
        }
        free(x), free(dx), free(y), free(dy);
        srp_conv2d_destroy(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_default_and_create),
        cmocka_unit_test(test_output_size),
        cmocka_unit_test(test_forward_matches_double_reference),
        cmocka_unit_test(test_backward_matches_finite_differences),
        cmocka_unit_test(test_gamma_init_one_and_more_iterations),
        cmocka_unit_test(test_eval_changes_nothing_and_repeats_bitwise),
        cmocka_unit_test(test_accumulation_equals_whole_batch),
        cmocka_unit_test(test_bad_input_leaves_the_layer_untouched),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_params_and_state_refs),
        cmocka_unit_test(test_matches_official_pytorch_semantics),
        cmocka_unit_test(test_bf16_inputs),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
