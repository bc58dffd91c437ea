/* The sigmaReparam linear layer against a double-precision reference, central
 * finite differences, and fixtures from a PyTorch re-implementation of the
 * official SNLinear (tests/reference/gen_linear_fixtures.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

/* ---------------- the reference problem ---------------- */

/* A layer in the double reference with its input and the loss weights:
 * what central differences differentiate. */
typedef struct {
    ref_linear lin;
    size_t n;
    double *x, *r; /* x: [n][in], r: [n][out] */
} linear_problem;

static double linear_loss(void *ctx)
{
    const linear_problem *P = ctx;
    const size_t m = P->n * P->lin.out;
    double *y = malloc(sizeof(double) * m);
    assert_non_null(y);
    ref_linear_forward(&P->lin, P->x, P->n, y);
    const double loss = ref_quadratic_loss(y, P->r, m);
    free(y);
    return loss;
}

/* The layer as its next forward on x [n][in] will compute it; r = 0. */
static void problem_init(linear_problem *P, srp_linear *l, size_t n, const float *x)
{
    ref_linear_init(&P->lin, l);
    P->n = n;
    P->x = malloc(sizeof(double) * n * P->lin.in);
    P->r = calloc(n * P->lin.out, sizeof(double));
    assert_true(P->x && P->r);
    to_double(x, P->x, n * P->lin.in);
}

static void problem_free(linear_problem *P)
{
    ref_linear_free(&P->lin);
    free(P->x);
    free(P->r);
}

/* ---------------- helpers on the layer ---------------- */

/* Gives the layer O(1) weights, a bias and gamma != sigma, so that every
 * term of the gradient is of a visible size. */
static void randomize_layer(srp_linear *l, srp_rng *r)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    fill_normal_f(r, srp_linear_weight(l), in * out, 0.5);
    assert_ok(srp_linear_reinit_sigma(l));
    if (srp_linear_bias(l))
        fill_normal_f(r, srp_linear_bias(l), out, 0.3);
    if (srp_linear_reparam(l) == SRP_REPARAM_SIGMA)
        *srp_linear_gamma(l) = 1.7f;
}

typedef struct {
    size_t n, in, out;
} shape;

/* The last one is big enough for the OpenMP paths (n out and in out >= 65536). */
static const shape k_shapes[] = {{1, 1, 1},  {1, 7, 3},    {5, 16, 12},    {3, 1, 9},
                                 {9, 20, 1}, {33, 64, 48}, {200, 130, 70}, {600, 300, 256}};
static const srp_reparam k_modes[] = {SRP_REPARAM_SIGMA, SRP_REPARAM_STATS_ONLY, SRP_REPARAM_NONE};

/* ---------------- tests ---------------- */

static void test_forward_matches_double_reference(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(100);
    for (size_t m = 0; m < 3; m++) {
        for (size_t s = 0; s < sizeof(k_shapes) / sizeof(k_shapes[0]); s++) {
            const shape sh = k_shapes[s];
            srp_linear *l = make_linear(sh.in, sh.out, k_modes[m], (int)(s % 2 == 0), 1 + s);
            randomize_layer(l, &r);
            float *x = malloc(sizeof(float) * sh.n * sh.in);
            float *y = malloc(sizeof(float) * sh.n * sh.out);
            double *yd = malloc(sizeof(double) * sh.n * sh.out);
            float *yref = malloc(sizeof(float) * sh.n * sh.out);
            assert_true(x && y && yd && yref);
            fill_normal_f(&r, x, sh.n * sh.in, 1.0);

            linear_problem P;
            problem_init(&P, l, sh.n, x); /* u, v of the training forward's step */
            const double sigma_ref = ref_linear_sigma(&P.lin);
            double *u0 = malloc(sizeof(double) * sh.in);
            assert_non_null(u0);

            for (int pass = 0; pass < 2; pass++) { /* training, then eval from the new u */
                const int training = pass == 0;
                if (!training) {
                    to_double(srp_linear_u(l), u0, sh.in);
                    ref_power_step(P.lin.w, sh.out, sh.in, u0, P.lin.v, P.lin.u);
                }
                assert_ok(srp_linear_forward(l, x, sh.n, y, training));
                ref_linear_forward(&P.lin, P.x, sh.n, yd);
                to_float(yd, yref, sh.n * sh.out);
                assert_close_array(y, yref, sh.n * sh.out, 2e-5, "forward y");
                if (k_modes[m] == SRP_REPARAM_NONE) {
                    assert_true(isnan(srp_linear_sigma(l)));
                } else if (training) {
                    assert_close_rel(srp_linear_sigma(l), sigma_ref, 1e-5, 0.0, "sigma");
                    float *uref = malloc(sizeof(float) * sh.in);
                    assert_non_null(uref);
                    to_float(P.lin.u, uref, sh.in);
                    assert_close_array(srp_linear_u(l), uref, sh.in, 1e-5, "u after training");
                    free(uref);
                }
            }
            problem_free(&P);
            free(u0);
            free(x);
            free(y);
            free(yd);
            free(yref);
            srp_linear_destroy(l);
        }
    }
}

/* Runs a training forward and a backward of dy = y + r, and compares every
 * gradient with central differences of the double reference in which u, v
 * are the constants of that forward. Returns the largest |rank-1 term| of
 * dW relative to max |dW| (SIGMA mode), to show the tolerance can see it. */
static double check_gradients(srp_linear *l, size_t n, srp_rng *r, double tol)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    const srp_reparam mode = srp_linear_reparam(l);
    float *x = alloc_f(2 * n * (in + out)); /* one buffer for x, dx, y, dy */
    float *dx = x + n * in, *y = dx + n * in, *dy = y + n * out;
    fill_normal_f(r, x, n * in, 1.0);

    linear_problem P;
    problem_init(&P, l, n, x); /* u, v: the constants of the training forward below */
    const ref_linear *L = &P.lin;
    fill_normal_d(r, P.r, n * out, 1.0);

    srp_linear_zero_grad(l);
    assert_ok(srp_linear_forward(l, x, n, y, SRP_TRAIN));
    for (size_t i = 0; i < n * out; i++)
        dy[i] = y[i] + (float)P.r[i];
    assert_ok(srp_linear_backward(l, x, dy, n, dx));

    /* G^T x, s and sigma in double: the terms dW is made of. */
    double *gtx = calloc(in * out, sizeof(double));
    assert_non_null(gtx);
    const double sigma = ref_linear_sigma(L);
    double s = 0.0, first_term = 0.0;
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++) {
            for (size_t k = 0; k < n; k++)
                gtx[o * in + i] += (double)dy[k * out + o] * P.x[k * in + i];
            s += gtx[o * in + i] * L->w[o * in + i];
        }
    const double scale = mode == SRP_REPARAM_SIGMA ? L->gamma / sigma : 1.0;
    for (size_t j = 0; j < in * out; j++)
        first_term = fmax(first_term, fabs(scale * gtx[j]));

    /* For a 1x1 layer dW is exactly 0 (W_hat = gamma sign(W)): compare at the
     * scale of the terms that cancel. */
    const double max_dw = ref_assert_gradient(linear_loss, &P, P.lin.w, in * out,
                                              srp_linear_weight_grad(l), tol, first_term, "dW");

    /* Size of the sigma (rank-1) term, gamma s / sigma^2 v u^T, against dW. */
    double rank1_share = 0.0;
    if (mode == SRP_REPARAM_SIGMA) {
        double max_r1 = 0.0;
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++)
                max_r1 = fmax(max_r1, fabs(L->gamma * s / (sigma * sigma) * L->v[o] * L->u[i]));
        rank1_share = max_r1 / fmax(max_dw, first_term);

        double dgamma;
        ref_central_differences(linear_loss, &P, &P.lin.gamma, 1, &dgamma);
        assert_close_rel(*srp_linear_gamma_grad(l), dgamma, tol, 1e-3, "dgamma");
    } else {
        assert_true(*srp_linear_gamma_grad(l) == 0.0f);
    }
    free(gtx);
    ref_assert_gradient(linear_loss, &P, P.x, n * in, dx, tol, 0.0, "dx");
    if (srp_linear_bias(l))
        ref_assert_gradient(linear_loss, &P, P.lin.b, out, srp_linear_bias_grad(l), tol, 0.0, "db");
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
    for (size_t m = 0; m < 3; m++) {
        for (size_t s = 0; s < 6; s++) { /* all but the largest shape */
            const shape sh = k_shapes[s];
            srp_linear *l = make_linear(sh.in, sh.out, k_modes[m], (int)(s % 3 != 1), 10 + s);
            randomize_layer(l, &r);
            const double share = check_gradients(l, sh.n, &r, tol);
            if (k_modes[m] == SRP_REPARAM_SIGMA && sh.in * sh.out > 1)
                smallest_rank1_share = fmin(smallest_rank1_share, share);
            srp_linear_destroy(l);
        }
    }
    /* Dropping the rank-1 term would move dW by this share of its size:
     * far above the tolerance, so the test above would fail. */
    assert_true(smallest_rank1_share > 20.0 * tol);
}

/* The weight path (srp_linear_forward_weight / backward_weight) with the
 * test as the caller: it computes y = x W_hat^T + b and hands back
 * dL/dW_hat = dy^T x and dL/db = sum_n dy, which must give W_hat, dW,
 * dgamma and db as the double reference and its central differences do. */
static void check_weight_path(srp_linear *l, size_t n, srp_rng *r, double tol)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    float *x = malloc(sizeof(float) * n * in), *w_hat = malloc(sizeof(float) * in * out);
    float *dw_hat = malloc(sizeof(float) * in * out), *db = malloc(sizeof(float) * out);
    double *y = malloc(sizeof(double) * n * out), *g = malloc(sizeof(double) * in * out);
    assert_true(x && w_hat && dw_hat && db && y && g);
    fill_normal_f(r, x, n * in, 1.0);
    linear_problem P;
    problem_init(&P, l, n, x);
    const ref_linear *L = &P.lin;
    fill_normal_d(r, P.r, n * out, 1.0);

    srp_linear_zero_grad(l);
    assert_ok(srp_linear_forward_weight(l, SRP_TRAIN, w_hat));
    const double scale = L->sigma_mode ? L->gamma / ref_linear_sigma(L) : 1.0;
    for (size_t j = 0; j < in * out; j++)
        g[j] = scale * L->w[j];
    assert_close_to_double(w_hat, g, in * out, 1e-6, 0.0, "W_hat");

    /* The caller's product and its gradients, in double; dy = y + r. */
    ref_linear_forward(L, P.x, n, y);
    for (size_t k = 0; k < n * out; k++)
        y[k] += P.r[k];
    for (size_t o = 0; o < out; o++) {
        double sum = 0.0;
        for (size_t k = 0; k < n; k++)
            sum += y[k * out + o];
        db[o] = (float)sum;
        for (size_t i = 0; i < in; i++) {
            double acc = 0.0;
            for (size_t k = 0; k < n; k++)
                acc += y[k * out + o] * P.x[k * in + i];
            dw_hat[o * in + i] = (float)acc;
        }
    }
    assert_ok(srp_linear_backward_weight(l, dw_hat, db));

    ref_assert_gradient(linear_loss, &P, P.lin.w, in * out, srp_linear_weight_grad(l), tol, 0.0,
                        "dW");
    double dgamma;
    ref_central_differences(linear_loss, &P, &P.lin.gamma, 1, &dgamma);
    assert_close_rel(*srp_linear_gamma_grad(l), L->sigma_mode ? dgamma : 0.0, tol, 1e-3, "dgamma");
    if (srp_linear_bias(l))
        ref_assert_gradient(linear_loss, &P, P.lin.b, out, srp_linear_bias_grad(l), tol, 0.0, "db");
    problem_free(&P);
    free(x);
    free(w_hat);
    free(dw_hat);
    free(db);
    free(y);
    free(g);
}

static void test_weight_path_matches_finite_differences(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(210);
    for (size_t m = 0; m < 3; m++)
        for (size_t s = 1; s < 6; s++) {
            const shape sh = k_shapes[s];
            srp_linear *l = make_linear(sh.in, sh.out, k_modes[m], (int)(s % 3 != 1), 30 + s);
            randomize_layer(l, &r);
            check_weight_path(l, sh.n, &r, 5e-5);
            srp_linear_destroy(l);
        }
}

static void test_backward_with_gamma_init_one_and_more_iterations(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(300);
    srp_linear_config c = srp_linear_config_default(11, 6);
    c.gamma_init = SRP_GAMMA_INIT_ONE;
    c.seed = 4;
    srp_linear *l = NULL;
    assert_ok(srp_linear_create(&l, &c));
    assert_true(*srp_linear_gamma(l) == 1.0f);
    randomize_layer(l, &r);
    check_gradients(l, 4, &r, 5e-5);
    srp_linear_destroy(l);

    /* power_iters = 3: u after a training forward is three reference steps. */
    c.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    c.power_iters = 3;
    assert_ok(srp_linear_create(&l, &c));
    fill_normal_f(&r, srp_linear_weight(l), 66, 1.0);
    double w[66], u[11], v[6], u1[11];
    to_double(srp_linear_weight(l), w, 66);
    to_double(srp_linear_u(l), u, 11);
    double sigma = 0.0;
    for (int it = 0; it < 3; it++) {
        sigma = ref_power_step(w, 6, 11, u, v, u1);
        memcpy(u, u1, sizeof(u));
    }
    float x[11], y[6], uref[11];
    fill_normal_f(&r, x, 11, 1.0);
    assert_ok(srp_linear_forward(l, x, 1, y, SRP_TRAIN));
    to_float(u, uref, 11);
    assert_close_array(srp_linear_u(l), uref, 11, 1e-5, "u after 3 iterations");
    assert_close_rel(srp_linear_sigma(l), sigma, 1e-5, 0.0, "sigma after 3 iterations");
    srp_linear_destroy(l);
}

static void test_eval_changes_nothing_and_repeats_bitwise(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(400);
    for (size_t m = 0; m < 3; m++) {
        srp_linear *l = make_linear(24, 10, k_modes[m], 1, 5);
        randomize_layer(l, &r);
        float x[3 * 24], y1[30], y2[30], y3[30];
        fill_normal_f(&r, x, 3 * 24, 1.0);
        assert_ok(srp_linear_forward(l, x, 3, y1, SRP_TRAIN)); /* move u off the SVD vector */
        float u_before[24], w_before[240];
        memcpy(u_before, srp_linear_u(l), sizeof(u_before));
        memcpy(w_before, srp_linear_weight(l), sizeof(w_before));
        const float gamma_before = *srp_linear_gamma(l);
        assert_ok(srp_linear_forward(l, x, 3, y1, SRP_EVAL));
        assert_ok(srp_linear_forward(l, x, 3, y2, SRP_EVAL));
        assert_memory_equal(y1, y2, sizeof(y1));
        assert_memory_equal(u_before, srp_linear_u(l), sizeof(u_before));
        assert_memory_equal(w_before, srp_linear_weight(l), sizeof(w_before));
        assert_true(gamma_before == *srp_linear_gamma(l));
        /* A training forward takes the same step from the same u, so its
         * output is the eval output bit for bit; then u moves. */
        assert_ok(srp_linear_forward(l, x, 3, y3, SRP_TRAIN));
        assert_memory_equal(y1, y3, sizeof(y1));
        if (k_modes[m] != SRP_REPARAM_NONE)
            assert_memory_not_equal(u_before, srp_linear_u(l), sizeof(u_before));
        else
            assert_memory_equal(u_before, srp_linear_u(l), sizeof(u_before));
        srp_linear_destroy(l);
    }
}

/* srp_linear_folded_weight is the weight of the eval forward: x W_hat^T + b
 * is the double reference's next forward (one power step from the stored
 * u, gamma / sigma applied in SIGMA mode, W as is otherwise), and the layer
 * is unchanged: u, sigma and the pending backward. */
static void test_folded_weight_is_the_eval_weight(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(450);
    for (size_t m = 0; m < 3; m++) {
        for (size_t s = 0; s + 1 < sizeof(k_shapes) / sizeof(k_shapes[0]); s++) {
            const shape sh = k_shapes[s];
            srp_linear *l = make_linear(sh.in, sh.out, k_modes[m], (int)(s % 2 == 0), 1 + s);
            randomize_layer(l, &r);
            float *x = malloc(sizeof(float) * sh.n * sh.in);
            float *y = malloc(sizeof(float) * sh.n * sh.out);
            float *yref = malloc(sizeof(float) * sh.n * sh.out);
            float *w_hat = malloc(sizeof(float) * sh.in * sh.out);
            float *u = malloc(sizeof(float) * sh.in);
            double *yd = malloc(sizeof(double) * sh.n * sh.out);
            assert_true(x && y && yref && w_hat && u && yd);
            fill_normal_f(&r, x, sh.n * sh.in, 1.0);
            /* u far from the singular vector, so that the eval step's sigma
             * is not the last training forward's */
            fill_normal_f(&r, srp_linear_u(l), sh.in, 1.0);
            assert_ok(srp_linear_forward(l, x, sh.n, y, SRP_TRAIN));
            memcpy(u, srp_linear_u(l), sizeof(float) * sh.in);
            const float sigma = srp_linear_sigma(l);

            assert_ok(srp_linear_folded_weight(l, w_hat));
            assert_memory_equal(u, srp_linear_u(l), sizeof(float) * sh.in);
            assert_true(memcmp(&sigma, &(float){srp_linear_sigma(l)}, sizeof(float)) == 0);
            float *dy = y; /* any dy: the backward of the training forward is still due */
            assert_ok(srp_linear_backward(l, x, dy, sh.n, NULL));

            linear_problem P;
            problem_init(&P, l, sh.n, x); /* the next forward: the eval forward's step */
            ref_linear_forward(&P.lin, P.x, sh.n, yd);
            to_float(yd, yref, sh.n * sh.out);
            const float *b = srp_linear_bias(l);
            for (size_t i = 0; i < sh.n; i++)
                for (size_t o = 0; o < sh.out; o++) { /* y = x W_hat^T + b, in double */
                    double acc = b ? b[o] : 0.0;
                    for (size_t k = 0; k < sh.in; k++)
                        acc += (double)x[i * sh.in + k] * w_hat[o * sh.in + k];
                    y[i * sh.out + o] = (float)acc;
                }
            assert_close_array(y, yref, sh.n * sh.out, 2e-5, "x folded^T + b");
            problem_free(&P);
            free(x);
            free(y);
            free(yref);
            free(w_hat);
            free(u);
            free(yd);
            srp_linear_destroy(l);
        }
    }
}

/* Backwards on the halves of a batch add up to one on the whole. Eval
 * forwards all take sigma from the same stored u, so the three forwards
 * (whole, first half, second half) share one sigma; each backward
 * differentiates its own forward, once. The large shape takes the OpenMP
 * paths of the bias and dW passes, which must also give the same bits when
 * run again. */
static void test_accumulation_equals_concatenated_batch(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(500);
    const size_t sizes[2][4] = {{10, 13, 7, 4}, {500, 300, 256, 170}}; /* n, in, out, half */
    for (size_t k = 0; k < 2; k++)
        for (size_t m = 0; m < 3; m++) {
            const size_t N = sizes[k][0], IN = sizes[k][1], OUT = sizes[k][2], HALF = sizes[k][3];
            srp_linear *a = make_linear(IN, OUT, k_modes[m], 1, 6);
            randomize_layer(a, &r);
            float *x = malloc(sizeof(float) * N * IN), *y = malloc(sizeof(float) * N * OUT);
            float *dy = malloc(sizeof(float) * N * OUT), *dw_one = malloc(sizeof(float) * IN * OUT);
            float *db_one = malloc(sizeof(float) * OUT);
            assert_true(x && y && dy && dw_one && db_one);
            fill_normal_f(&r, x, N * IN, 1.0);
            fill_normal_f(&r, dy, N * OUT, 1.0);
            assert_ok(srp_linear_forward(a, x, N, y, SRP_EVAL));
            assert_ok(srp_linear_backward(a, x, dy, N, NULL));
            const float dg_one = *srp_linear_gamma_grad(a);
            memcpy(dw_one, srp_linear_weight_grad(a), sizeof(float) * IN * OUT);
            memcpy(db_one, srp_linear_bias_grad(a), sizeof(float) * OUT);
            srp_linear_zero_grad(a); /* and again: the same bits */
            assert_ok(srp_linear_forward(a, x, N, y, SRP_EVAL));
            assert_ok(srp_linear_backward(a, x, dy, N, NULL));
            assert_memory_equal(srp_linear_weight_grad(a), dw_one, sizeof(float) * IN * OUT);
            assert_memory_equal(srp_linear_bias_grad(a), db_one, sizeof(float) * OUT);
            srp_linear_zero_grad(a);
            for (size_t i = 0; i < IN * OUT; i++)
                assert_true(srp_linear_weight_grad(a)[i] == 0.0f);
            assert_true(*srp_linear_gamma_grad(a) == 0.0f);
            assert_ok(srp_linear_forward(a, x, HALF, y, SRP_EVAL));
            assert_ok(srp_linear_backward(a, x, dy, HALF, NULL));
            assert_ok(srp_linear_forward(a, x + HALF * IN, N - HALF, y, SRP_EVAL));
            assert_ok(srp_linear_backward(a, x + HALF * IN, dy + HALF * OUT, N - HALF, NULL));
            assert_close_array(srp_linear_weight_grad(a), dw_one, IN * OUT, 1e-5, "dW accumulated");
            assert_close_array(srp_linear_bias_grad(a), db_one, OUT, 1e-5, "db accumulated");
            if (k_modes[m] == SRP_REPARAM_SIGMA)
                assert_close_rel(*srp_linear_gamma_grad(a), dg_one, 1e-5, 1e-3,
                                 "dgamma accumulated");
            free(x);
            free(y);
            free(dy);
            free(dw_one);
            free(db_one);
            srp_linear_destroy(a);
        }
}

static void test_create_defaults(void **state)
{
    (void)state;
    srp_linear_config c = srp_linear_config_default(64, 32);
    assert_int_equal(c.bias, 1);
    assert_int_equal(c.reparam, SRP_REPARAM_SIGMA);
    assert_int_equal(c.gamma_init, SRP_GAMMA_INIT_SIGMA0);
    assert_int_equal(c.power_iters, 1);
    assert_true(c.init_std == 0.02f);
    srp_linear *l = NULL, *same = NULL;
    assert_ok(srp_linear_create(&l, &c));
    assert_ok(srp_linear_create(&same, &c));
    assert_memory_equal(srp_linear_weight(l), srp_linear_weight(same), 64 * 32 * sizeof(float));
    const float *w = srp_linear_weight(l);
    double sumsq = 0.0;
    for (size_t i = 0; i < 64 * 32; i++) {
        assert_true(fabsf(w[i]) <= 0.04f);
        sumsq += (double)w[i] * w[i];
    }
    /* std of N(0, 0.02) truncated at 2 std: 0.02 * sqrt(0.7737) */
    assert_close_rel(sqrt(sumsq / (64 * 32)), 0.02 * sqrt(0.77376), 0.05, 0.0, "init std");
    for (size_t o = 0; o < 32; o++)
        assert_true(srp_linear_bias(l)[o] == 0.0f);
    float exact;
    assert_ok(srp_spectral_norm_exact(w, 32, 64, &exact));
    assert_close_rel(srp_linear_sigma(l), exact, 1e-6, 0.0, "sigma0");
    assert_true(*srp_linear_gamma(l) == srp_linear_sigma(l)); /* W_hat = W at step 0 */
    /* so the first forward is the plain linear */
    float x[2 * 64], y[2 * 32], yplain[2 * 32];
    srp_rng r = seeded_rng(1);
    fill_normal_f(&r, x, 2 * 64, 1.0);
    assert_ok(srp_linear_forward(l, x, 2, y, SRP_EVAL));
    for (size_t k = 0; k < 2; k++)
        for (size_t o = 0; o < 32; o++) {
            double acc = 0.0;
            for (size_t i = 0; i < 64; i++)
                acc += (double)x[k * 64 + i] * w[o * 64 + i];
            yplain[k * 32 + o] = (float)acc;
        }
    assert_close_array(y, yplain, 64, 1e-5, "first forward = plain linear");
    srp_linear_destroy(l);
    srp_linear_destroy(same);

    c.bias = 0;
    assert_ok(srp_linear_create(&l, &c));
    assert_null(srp_linear_bias(l));
    assert_null(srp_linear_bias_grad(l));
    srp_linear_destroy(l);
    srp_linear_destroy(NULL);
}

static void test_reinit_sigma_after_loading_weights(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(600);
    srp_linear *l = make_linear(30, 20, SRP_REPARAM_SIGMA, 1, 1);
    *srp_linear_gamma(l) = 2.5f;
    fill_normal_f(&r, srp_linear_weight(l), 600, 3.0);
    assert_ok(srp_linear_reinit_sigma(l));
    float exact;
    assert_ok(srp_spectral_norm_exact(srp_linear_weight(l), 20, 30, &exact));
    assert_close_rel(srp_linear_sigma(l), exact, 1e-6, 0.0, "sigma after reinit");
    assert_true(*srp_linear_gamma(l) == 2.5f);
    /* u is the top right singular vector: one more step keeps sigma. */
    float x[30], y[20];
    fill_normal_f(&r, x, 30, 1.0);
    assert_ok(srp_linear_forward(l, x, 1, y, SRP_TRAIN));
    assert_close_rel(srp_linear_sigma(l), exact, 1e-5, 0.0, "sigma after a step from the SVD");
    srp_linear_destroy(l);
}

static void test_invalid_arguments_and_configs(void **state)
{
    (void)state;
    srp_linear *l = NULL;
    srp_linear_config c = srp_linear_config_default(4, 3);
    assert_status(srp_linear_create(NULL, &c), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_create(&l, NULL), SRP_ERR_INVALID_ARG);
    srp_linear_config bad = c;
    bad.in_features = 0;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad = c;
    bad.out_features = 0;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad = c;
    bad.reparam = (srp_reparam)7;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad = c;
    bad.gamma_init = (srp_gamma_init)9;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad = c;
    bad.init_std = 0.0f;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad.init_std = NAN;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad = c;
    bad.power_iters = 0;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    bad = c;
    bad.in_features = (size_t)1 << 40;
    assert_status(srp_linear_create(&l, &bad), SRP_ERR_INVALID_ARG);
    assert_null(l);

    assert_ok(srp_linear_create(&l, &c));
    float x[8] = {0}, y[6], dy[6] = {0}, dx[8];
    assert_status(srp_linear_forward(NULL, x, 2, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_forward(l, NULL, 2, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_forward(l, x, 2, NULL, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_forward(l, x, 0, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_backward(l, x, dy, 0, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_backward(l, NULL, dy, 2, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_backward(l, x, NULL, 2, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_backward(NULL, x, dy, 2, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_set_sigma(l, NAN), SRP_ERR_NUMERIC);
    assert_status(srp_linear_set_sigma(l, -1.0f), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_reinit_sigma(NULL), SRP_ERR_INVALID_ARG);
    assert_null(srp_linear_weight(NULL));
    assert_true(isnan(srp_linear_sigma(NULL)));
    srp_linear_destroy(l);
}

/* Snapshot of everything a failed call must leave alone. */
typedef struct {
    float w[60], dw[60], b[6], db[6], u[10], gamma, dgamma, sigma;
} layer_snapshot;

static layer_snapshot snapshot(srp_linear *l)
{
    layer_snapshot s;
    memset(&s, 0, sizeof(s));
    memcpy(s.w, srp_linear_weight(l), sizeof(s.w));
    memcpy(s.dw, srp_linear_weight_grad(l), sizeof(s.dw));
    memcpy(s.b, srp_linear_bias(l), sizeof(s.b));
    memcpy(s.db, srp_linear_bias_grad(l), sizeof(s.db));
    memcpy(s.u, srp_linear_u(l), sizeof(s.u));
    s.gamma = *srp_linear_gamma(l);
    s.dgamma = *srp_linear_gamma_grad(l);
    s.sigma = srp_linear_sigma(l);
    return s;
}

static void test_non_finite_input_leaves_the_layer_untouched(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(700);
    srp_linear *l = make_linear(10, 6, SRP_REPARAM_SIGMA, 1, 2);
    randomize_layer(l, &r);
    float x[2 * 10], y[2 * 6], dy[2 * 6], dx[2 * 10];
    fill_normal_f(&r, x, 20, 1.0);
    fill_normal_f(&r, dy, 12, 1.0);
    assert_ok(srp_linear_forward(l, x, 2, y, SRP_TRAIN));
    assert_ok(srp_linear_backward(l, x, dy, 2, dx));
    assert_ok(srp_linear_forward(l, x, 2, y, SRP_EVAL)); /* pending: differentiated below */

    /* NaN/Inf in W: the power step sees it; nothing changes. */
    const layer_snapshot before = snapshot(l);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        srp_linear_weight(l)[17] = bad[k];
        memset(y, 0x7f, sizeof(y));
        assert_status(srp_linear_forward(l, x, 2, y, SRP_TRAIN), SRP_ERR_NUMERIC);
        assert_status(srp_linear_forward(l, x, 2, y, SRP_EVAL), SRP_ERR_NUMERIC);
        srp_linear_weight(l)[17] = before.w[17];
        layer_snapshot after = snapshot(l);
        assert_memory_equal(&before, &after, sizeof(before));
    }
    /* A non-finite gamma. */
    *srp_linear_gamma(l) = INFINITY;
    assert_status(srp_linear_forward(l, x, 2, y, SRP_TRAIN), SRP_ERR_NUMERIC);
    *srp_linear_gamma(l) = before.gamma;
    layer_snapshot after = snapshot(l);
    assert_memory_equal(&before, &after, sizeof(before));

    /* NaN/Inf in dy or x: no gradient is touched, and the pending forward
     * (the eval one above) may still be differentiated. */
    for (int k = 0; k < 3; k++) {
        float dy_bad[12], x_bad[20];
        memcpy(dy_bad, dy, sizeof(dy));
        dy_bad[5] = bad[k];
        assert_status(srp_linear_backward(l, x, dy_bad, 2, dx), SRP_ERR_NUMERIC);
        memcpy(x_bad, x, sizeof(x));
        x_bad[13] = bad[k];
        assert_status(srp_linear_backward(l, x_bad, dy, 2, NULL), SRP_ERR_NUMERIC);
        after = snapshot(l);
        assert_memory_equal(&before, &after, sizeof(before));
    }

    /* All-zero W: sigma = 0, so gamma / sigma is undefined in SIGMA mode;
     * STATS_ONLY just reports 0. */
    memset(srp_linear_weight(l), 0, sizeof(float) * 60);
    assert_status(srp_linear_forward(l, x, 2, y, SRP_TRAIN), SRP_ERR_NUMERIC);
    assert_status(srp_linear_reinit_sigma(l), SRP_ERR_NUMERIC);
    srp_linear_destroy(l);
    l = make_linear(10, 6, SRP_REPARAM_STATS_ONLY, 1, 2);
    memset(srp_linear_weight(l), 0, sizeof(float) * 60);
    assert_ok(srp_linear_reinit_sigma(l));
    assert_ok(srp_linear_forward(l, x, 2, y, SRP_TRAIN));
    assert_true(srp_linear_sigma(l) == 0.0f);
    for (int i = 0; i < 12; i++)
        assert_true(y[i] == 0.0f);
    srp_linear_destroy(l);
}

/* Bad input to the weight path: clear errors, and a failed call leaves the
 * layer as it was. */
static void test_weight_path_refuses_bad_input(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(220);
    srp_linear *l = make_linear(10, 6, SRP_REPARAM_SIGMA, 1, 3);
    randomize_layer(l, &r);
    float w_hat[60], dw_hat[60], db[6];
    fill_normal_f(&r, dw_hat, 60, 1.0);
    fill_normal_f(&r, db, 6, 1.0);
    assert_status(srp_linear_forward_weight(NULL, SRP_TRAIN, w_hat), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_forward_weight(l, SRP_TRAIN, NULL), SRP_ERR_INVALID_ARG);
    assert_ok(srp_linear_forward_weight(l, SRP_TRAIN, w_hat));
    assert_status(srp_linear_backward_weight(NULL, dw_hat, db), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_backward_weight(l, NULL, db), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_backward_weight(l, dw_hat, NULL), SRP_ERR_INVALID_ARG);

    const layer_snapshot before = snapshot(l);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        float dw_bad[60], db_bad[6];
        memcpy(dw_bad, dw_hat, sizeof(dw_bad));
        memcpy(db_bad, db, sizeof(db_bad));
        dw_bad[7] = bad[k];
        assert_status(srp_linear_backward_weight(l, dw_bad, db), SRP_ERR_NUMERIC);
        db_bad[2] = bad[k];
        assert_status(srp_linear_backward_weight(l, dw_hat, db_bad), SRP_ERR_NUMERIC);
        srp_linear_weight(l)[17] = bad[k]; /* the power step sees it */
        assert_status(srp_linear_forward_weight(l, SRP_TRAIN, w_hat), SRP_ERR_NUMERIC);
        srp_linear_weight(l)[17] = before.w[17];
        const layer_snapshot after = snapshot(l);
        assert_memory_equal(&before, &after, sizeof(before));
    }
    /* Two training forwards: the backward cannot tell which to follow. */
    assert_ok(srp_linear_forward_weight(l, SRP_TRAIN, w_hat));
    assert_ok(srp_linear_forward_weight(l, SRP_TRAIN, w_hat));
    assert_status(srp_linear_backward_weight(l, dw_hat, db), SRP_ERR_ORDER);
    srp_linear_destroy(l);
    /* Without a bias, db may be NULL. */
    l = make_linear(10, 6, SRP_REPARAM_SIGMA, 0, 3);
    assert_ok(srp_linear_forward_weight(l, SRP_TRAIN, w_hat));
    assert_ok(srp_linear_backward_weight(l, dw_hat, NULL));
    srp_linear_destroy(l);
}

/* Equality with the official semantics: the fixtures hold what the PyTorch
 * re-implementation computed, step by step, with SGD between the steps. */
static void run_fixture_case(const fixture *fx, const char *tag)
{
    char key[128];
#define FX(name, count)                                                                            \
    (snprintf(key, sizeof(key), "%s/%s", tag, name), fixture_get(fx, key, count, NULL))
    const float *cfg = FX("config", 6);
    const size_t n = (size_t)cfg[0], in = (size_t)cfg[1], out = (size_t)cfg[2];
    const int bias = cfg[3] != 0.0f, stats = cfg[4] != 0.0f, steps = (int)cfg[5];
    const float lr = 0.05f, tol = 1e-5f;
    srp_linear *l =
        make_linear(in, out, stats ? SRP_REPARAM_STATS_ONLY : SRP_REPARAM_SIGMA, bias, 1);
    memcpy(srp_linear_weight(l), FX("w0", in * out), sizeof(float) * in * out);
    if (bias)
        memcpy(srp_linear_bias(l), FX("b0", out), sizeof(float) * out);
    assert_ok(srp_linear_reinit_sigma(l));
    assert_close_rel(srp_linear_sigma(l), FX("sigma0", 1)[0], 1e-6, 0.0, "SVD sigma0");
    /* torch's SVD may pick the opposite sign of u; take its vector as is. */
    memcpy(srp_linear_u(l), FX("u0", in), sizeof(float) * in);
    if (!stats)
        *srp_linear_gamma(l) = FX("gamma0", 1)[0];

    float *y = malloc(sizeof(float) * n * out), *dx = malloc(sizeof(float) * n * in);
    assert_true(y && dx);
    for (int step = 0; step < steps; step++) {
        char p[64];
        snprintf(p, sizeof(p), "step%d/", step);
        char name[96];
#define STEP(field, count) (snprintf(name, sizeof(name), "%s%s", p, field), FX(name, count))
        const float *x = STEP("x", n * in);
        srp_linear_zero_grad(l);
        assert_ok(srp_linear_forward(l, x, n, y, SRP_TRAIN));
        assert_close_array(y, STEP("y", n * out), n * out, tol, "fixture y");
        assert_close_array(srp_linear_u(l), STEP("u", in), in, tol, "fixture u");
        assert_close_rel(srp_linear_sigma(l), STEP("sigma", 1)[0], tol, 0.0, "fixture sigma");
        const float *dy = STEP("dy", n * out);
        assert_ok(srp_linear_backward(l, x, dy, n, dx));
        assert_close_array(dx, STEP("dx", n * in), n * in, tol, "fixture dx");
        /* dW is (gamma/sigma) G^T x minus its projection; for a 1x1 layer the
         * two cancel exactly, so compare at the scale of the first term. */
        double first_term = 0.0;
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++) {
                double acc = 0.0;
                for (size_t k = 0; k < n; k++)
                    acc += fabs((double)dy[k * out + o] * x[k * in + i]);
                first_term = fmax(first_term, acc);
            }
        if (!stats)
            first_term *= fabs(*srp_linear_gamma(l) / srp_linear_sigma(l));
        assert_close_array_floor(srp_linear_weight_grad(l), STEP("dw", in * out), in * out, tol,
                                 first_term, "fixture dW");
        if (bias)
            assert_close_array(srp_linear_bias_grad(l), STEP("db", out), out, tol, "fixture db");
        if (!stats)
            assert_close_rel(*srp_linear_gamma_grad(l), STEP("dgamma", 1)[0], tol, 0.0,
                             "fixture dgamma");
#undef STEP
        /* the same plain SGD step as the generator */
        float *w = srp_linear_weight(l);
        for (size_t i = 0; i < in * out; i++)
            w[i] -= lr * srp_linear_weight_grad(l)[i];
        for (size_t o = 0; bias && o < out; o++)
            srp_linear_bias(l)[o] -= lr * srp_linear_bias_grad(l)[o];
        if (!stats)
            *srp_linear_gamma(l) -= lr * *srp_linear_gamma_grad(l);
    }
    assert_ok(srp_linear_forward(l, FX("eval/x", n * in), n, y, SRP_EVAL));
    assert_close_array(y, FX("eval/y", n * out), n * out, tol, "fixture eval y");
    assert_close_rel(srp_linear_sigma(l), FX("eval/sigma", 1)[0], tol, 0.0, "fixture eval sigma");
    assert_close_array(srp_linear_u(l), FX("eval/u", in), in, tol, "fixture u after eval");
#undef FX
    free(y);
    free(dx);
    srp_linear_destroy(l);
}

static void test_matches_official_pytorch_semantics(void **state)
{
    (void)state;
    fixture *fx = fixture_load(SRP_TEST_DATA_DIR "/linear_fixtures.bin");
    const char *cases[] = {"small", "wide", "stats", "scalar", "tall"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_fixture_case(fx, cases[i]);
    fixture_free(fx);
}

#ifdef SRP_COUNT_ALLOCS
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    enum { N = 400, IN = 300, OUT = 256 }; /* big enough for the parallel paths */
    srp_rng r = seeded_rng(800);
    for (size_t m = 0; m < 3; m++) {
        /* The probe: create allocates, so the counter must see it. If it saw
         * nothing here (the interposed malloc not exported from the test
         * binary, so the shared library's calls bypass it), the 0 below would
         * prove nothing. */
        alloc_counter_start();
        srp_linear *l = make_linear(IN, OUT, k_modes[m], 1, 3);
        assert_true(alloc_counter_stop(NULL) > 0);
        float *x = malloc(sizeof(float) * N * IN), *y = malloc(sizeof(float) * N * OUT);
        float *dx = malloc(sizeof(float) * N * IN);
        assert_true(x && y && dx);
        fill_normal_f(&r, x, N * IN, 1.0);
        assert_ok(srp_linear_forward(l, x, N, y, SRP_TRAIN)); /* warm-up: thread pools */
        assert_ok(srp_linear_backward(l, x, y, N, dx));
        alloc_counter_start();
        for (int it = 0; it < 3; it++) {
            assert_ok(srp_linear_forward(l, x, N, y, SRP_EVAL));
            assert_ok(srp_linear_forward(l, x, N, y, SRP_TRAIN));
            assert_ok(srp_linear_backward(l, x, y, N, dx));
        }
        assert_int_equal(alloc_counter_stop(NULL), 0);
        free(x);
        free(y);
        free(dx);
        srp_linear_destroy(l);
    }
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_double_reference),
        cmocka_unit_test(test_backward_matches_finite_differences),
        cmocka_unit_test(test_weight_path_matches_finite_differences),
        cmocka_unit_test(test_weight_path_refuses_bad_input),
        cmocka_unit_test(test_backward_with_gamma_init_one_and_more_iterations),
        cmocka_unit_test(test_eval_changes_nothing_and_repeats_bitwise),
        cmocka_unit_test(test_folded_weight_is_the_eval_weight),
        cmocka_unit_test(test_accumulation_equals_concatenated_batch),
        cmocka_unit_test(test_create_defaults),
        cmocka_unit_test(test_reinit_sigma_after_loading_weights),
        cmocka_unit_test(test_invalid_arguments_and_configs),
        cmocka_unit_test(test_non_finite_input_leaves_the_layer_untouched),
        cmocka_unit_test(test_matches_official_pytorch_semantics),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
