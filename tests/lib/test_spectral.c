/* Spectral norm: exact SVD and power iteration against matrices whose
 * spectrum is known by construction (W = U diag(s) V^T in double). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    size_t rows, cols;
    double *w_d;
    float *w;
    double *s;      /* chosen singular values, largest first */
    double *left1;  /* true first left singular vector [rows] */
    double *right1; /* true first right singular vector [cols] */
} built_matrix;

/* s[0] = scale, s[1] = gap * scale, then a decreasing tail; rank-1 keeps s[0]. */
static built_matrix build(srp_rng *r, size_t rows, size_t cols, double scale, double gap,
                          int rank_one)
{
    built_matrix m = {rows, cols, NULL, NULL, NULL, NULL, NULL};
    const size_t k = rows < cols ? rows : cols;
    m.w_d = malloc(sizeof(double) * rows * cols);
    m.w = malloc(sizeof(float) * rows * cols);
    m.s = calloc(k, sizeof(double));
    m.left1 = malloc(sizeof(double) * rows);
    m.right1 = malloc(sizeof(double) * cols);
    assert_true(m.w_d && m.w && m.s && m.left1 && m.right1);
    m.s[0] = scale;
    for (size_t i = 1; i < k && !rank_one; i++)
        m.s[i] = scale * gap * (0.5 + 0.5 * srp_rng_uniform(r)) / (double)i;
    if (k > 1 && !rank_one)
        m.s[1] = scale * gap;
    matrix_with_spectrum(r, m.w_d, rows, cols, m.s, m.left1, m.right1);
    to_float(m.w_d, m.w, rows * cols);
    return m;
}

static void release(built_matrix *m)
{
    free(m->w_d);
    free(m->w);
    free(m->s);
    free(m->left1);
    free(m->right1);
}

/* Rounding W to float moves sigma by at most ||W - fl(W)||_2 <= 2^-24 ||W||_F. */
static double float_rounding_bound(const built_matrix *m)
{
    const size_t k = m->rows < m->cols ? m->rows : m->cols;
    return ldexp(norm_d(m->s, k), -24) / m->s[0];
}

static void test_exact_and_svd_init_on_50_shapes(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(2023);
    size_t shapes[50][2] = {{1024, 1024}, {1024, 64}, {64, 1024}, {1, 1024},  {1024, 1},
                            {1, 1},       {2, 1},     {1, 2},     {512, 256}, {256, 512}};
    for (int i = 10; i < 50; i++) { /* log-uniform sizes in [1, 600] */
        shapes[i][0] = (size_t)exp(srp_rng_uniform(&r) * log(600.0)) + 1;
        shapes[i][1] = (size_t)exp(srp_rng_uniform(&r) * log(600.0)) + 1;
    }
    for (int i = 0; i < 50; i++) {
        const size_t rows = shapes[i][0], cols = shapes[i][1];
        const double scale = exp((srp_rng_uniform(&r) - 0.5) * 12.0); /* 2.5e-3 .. 400 */
        const int rank_one = (i % 5 == 4);
        built_matrix m = build(&r, rows, cols, scale, 0.9, rank_one);
        const double tol = 1e-5 + float_rounding_bound(&m);

        float sigma = 0.0f;
        assert_ok(srp_spectral_norm_exact(m.w, rows, cols, &sigma));
        assert_close_rel(sigma, m.s[0], tol, 0.0, "srp_spectral_norm_exact");

        srp_power_iter *p = NULL;
        assert_ok(srp_power_iter_create(&p, rows, cols, 7));
        assert_ok(srp_power_iter_init_svd(p, m.w));
        assert_close_rel(srp_power_iter_sigma(p), m.s[0], tol, 0.0, "init_svd sigma");
        /* u, v are the top singular pair (up to one common sign). */
        double u[1024], v[1024];
        to_double(srp_power_iter_u(p), u, cols);
        to_double(srp_power_iter_v(p), v, rows);
        const double cu = dot_d(u, m.right1, cols), cv = dot_d(v, m.left1, rows);
        assert_close_rel(fabs(cu), 1.0, 1e-4, 1.0, "u . right1");
        assert_close_rel(fabs(cv), 1.0, 1e-4, 1.0, "v . left1");
        assert_true(cu * cv > 0.0);
        srp_power_iter_destroy(p);
        release(&m);
    }
}

/* tan of the angle between unit u and the true right vector. */
static double tan_angle(const float *u, const double *right1, size_t n)
{
    double ud[1024];
    to_double(u, ud, n);
    const double c = fabs(dot_d(ud, right1, n)) / norm_d(ud, n);
    return sqrt(fmax(1.0 - c * c, 0.0)) / c;
}

/* Theory for u <- normalize(W^T W u): tan(theta_k) <= tan(theta_0) rho^(2k)
 * with rho = s2/s1, and the ratio of successive tangents tends to rho^2.
 * The sigma estimate ||W^T v|| has relative error <= tan^2(theta_prev) rho^2. */
static void check_convergence(size_t rows, size_t cols, double rho, uint64_t seed)
{
    srp_rng r = seeded_rng(seed);
    built_matrix m = build(&r, rows, cols, 2.0, rho, 0);
    /* Make the tail clearly below s2 so that the rate is set by rho alone. */
    const size_t k = rows < cols ? rows : cols;
    for (size_t i = 2; i < k; i++)
        m.s[i] = 2.0 * rho * 0.5 / (double)i;
    matrix_with_spectrum(&r, m.w_d, rows, cols, m.s, m.left1, m.right1);
    to_float(m.w_d, m.w, rows * cols);

    srp_power_iter *p = NULL;
    assert_ok(srp_power_iter_create(&p, rows, cols, seed + 1));
    double t_prev = tan_angle(srp_power_iter_u(p), m.right1, cols);
    const double t0 = t_prev;
    int checked_rate = 0;
    for (int step = 1; step <= 60; step++) {
        float sigma;
        assert_ok(srp_power_iter_step(p, m.w, 1, &sigma));
        const double t = tan_angle(srp_power_iter_u(p), m.right1, cols);
        /* float noise floor of the iteration itself */
        const double floor = 1e-5;
        assert_true(t <= t0 * pow(rho, 2.0 * step) * 1.001 + floor);
        /* 1 - s/s1 <= 1 - (s/s1)^2 = sum_i c_i^2 r_i^2 (1 - r_i^2) / sum_i c_i^2 r_i^2
         *          <= tan^2(theta_prev) rho^2 */
        const double bound = t_prev * t_prev * rho * rho;
        const double err = (m.s[0] - sigma) / m.s[0];
        if (!(err <= bound * 1.01 + 2e-6 && err >= -2e-6)) {
            print_error("step %d: sigma rel err %.3g, bound %.3g\n", step, err, bound);
            fail();
        }
        if (t_prev > 1e-3 && t > 1e-3 && step > 3) { /* rate, away from the floor */
            const double ratio = t / t_prev;
            assert_close_rel(ratio, rho * rho, 0.03, 0.0, "tan ratio vs rho^2");
            checked_rate++;
        }
        t_prev = t;
    }
    assert_true(checked_rate >= 2);
    srp_power_iter_destroy(p);
    release(&m);
}

static void test_convergence_follows_the_gap(void **state)
{
    (void)state;
    check_convergence(64, 64, 0.5, 1);
    check_convergence(200, 80, 0.8, 2);
    check_convergence(48, 300, 0.9, 3);
    check_convergence(128, 128, 0.95, 4);
}

static void test_multi_iter_equals_repeated_single(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(5);
    built_matrix m = build(&r, 40, 70, 1.0, 0.7, 0);
    srp_power_iter *a = NULL, *b = NULL;
    assert_ok(srp_power_iter_create(&a, 40, 70, 11));
    assert_ok(srp_power_iter_create(&b, 40, 70, 11));
    float sa, sb;
    assert_ok(srp_power_iter_step(a, m.w, 3, &sa));
    for (int i = 0; i < 3; i++)
        assert_ok(srp_power_iter_step(b, m.w, 1, &sb));
    assert_memory_equal(srp_power_iter_u(a), srp_power_iter_u(b), 70 * sizeof(float));
    assert_memory_equal(srp_power_iter_v(a), srp_power_iter_v(b), 40 * sizeof(float));
    assert_true(sa == sb);
    /* sigma is v^T W u of the returned vectors, as in vision/layers.py */
    double wu[40] = {0}, u[70], v[40];
    to_double(srp_power_iter_u(a), u, 70);
    to_double(srp_power_iter_v(a), v, 40);
    for (size_t i = 0; i < 40; i++)
        for (size_t j = 0; j < 70; j++)
            wu[i] += (double)m.w[i * 70 + j] * u[j];
    assert_close_rel(sa, dot_d(v, wu, 40), 1e-6, 0.0, "sigma = v^T W u");
    assert_close_rel(norm_d(u, 70), 1.0, 1e-6, 0.0, "|u|");
    assert_close_rel(norm_d(v, 40), 1.0, 1e-6, 0.0, "|v|");
    srp_power_iter_destroy(a);
    srp_power_iter_destroy(b);
    release(&m);
}

static void test_estimate_is_pure_and_repeatable(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(6);
    built_matrix m = build(&r, 30, 50, 3.0, 0.8, 0);
    srp_power_iter *p = NULL;
    assert_ok(srp_power_iter_create(&p, 30, 50, 3));
    assert_ok(srp_power_iter_step(p, m.w, 2, NULL));
    float u0[50], v0[30];
    memcpy(u0, srp_power_iter_u(p), sizeof(u0));
    memcpy(v0, srp_power_iter_v(p), sizeof(v0));
    const float s0 = srp_power_iter_sigma(p);
    float e1, e2;
    assert_ok(srp_power_iter_estimate(p, m.w, &e1));
    assert_ok(srp_power_iter_estimate(p, m.w, &e2));
    assert_memory_equal(&e1, &e2, sizeof(float));
    assert_memory_equal(u0, srp_power_iter_u(p), sizeof(u0));
    assert_memory_equal(v0, srp_power_iter_v(p), sizeof(v0));
    assert_memory_equal(&s0, &(float){srp_power_iter_sigma(p)}, sizeof(float));
    /* and the estimate is what a step would return */
    float s_step;
    assert_ok(srp_power_iter_step(p, m.w, 1, &s_step));
    assert_memory_equal(&e1, &s_step, sizeof(float));
    srp_power_iter_destroy(p);
    release(&m);
}

static void test_zero_matrix(void **state)
{
    (void)state;
    float w[6 * 4] = {0};
    float sigma = -1.0f;
    assert_ok(srp_spectral_norm_exact(w, 6, 4, &sigma));
    assert_true(sigma == 0.0f);
    srp_power_iter *p = NULL;
    assert_ok(srp_power_iter_create(&p, 6, 4, 9));
    assert_ok(srp_power_iter_init_svd(p, w));
    assert_true(srp_power_iter_sigma(p) == 0.0f);
    assert_ok(srp_power_iter_step(p, w, 3, &sigma));
    assert_true(sigma == 0.0f);
    for (int i = 0; i < 4; i++)
        assert_true(isfinite(srp_power_iter_u(p)[i]));
    for (int i = 0; i < 6; i++)
        assert_true(isfinite(srp_power_iter_v(p)[i]));
    /* The iteration recovers as soon as W is non-zero again. */
    srp_rng r = seeded_rng(10);
    built_matrix m = build(&r, 6, 4, 5.0, 0.3, 0);
    for (int i = 0; i < 40; i++)
        assert_ok(srp_power_iter_step(p, m.w, 1, &sigma));
    assert_close_rel(sigma, 5.0, 1e-5, 0.0, "sigma after recovery");
    srp_power_iter_destroy(p);
    release(&m);
}

static void test_non_finite_is_rejected_and_state_kept(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(12);
    built_matrix m = build(&r, 8, 5, 1.0, 0.5, 0);
    srp_power_iter *p = NULL;
    assert_ok(srp_power_iter_create(&p, 8, 5, 1));
    assert_ok(srp_power_iter_init_svd(p, m.w));
    float u0[5], v0[8];
    memcpy(u0, srp_power_iter_u(p), sizeof(u0));
    memcpy(v0, srp_power_iter_v(p), sizeof(v0));
    const float s0 = srp_power_iter_sigma(p);
    const float bad_values[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        for (size_t pos = 0; pos < 40; pos += 13) {
            float w[40];
            memcpy(w, m.w, sizeof(w));
            w[pos] = bad_values[b];
            float sigma = 123.0f;
            /* Each failure says what was not finite, and in which W. */
            assert_status(srp_power_iter_step(p, w, 1, &sigma), SRP_ERR_NUMERIC);
            assert_non_null(strstr(srp_last_error_detail(), "W [8][5]"));
            assert_status(srp_power_iter_step(p, w, 4, &sigma), SRP_ERR_NUMERIC);
            assert_status(srp_power_iter_estimate(p, w, &sigma), SRP_ERR_NUMERIC);
            assert_non_null(strstr(srp_last_error_detail(), "not finite"));
            assert_status(srp_power_iter_init_svd(p, w), SRP_ERR_NUMERIC);
            assert_non_null(strstr(srp_last_error_detail(), "NaN or Inf"));
            assert_status(srp_spectral_norm_exact(w, 8, 5, &sigma), SRP_ERR_NUMERIC);
            assert_non_null(strstr(srp_last_error_detail(), "SVD of W [8][5]"));
            assert_true(sigma == 123.0f);
            assert_memory_equal(u0, srp_power_iter_u(p), sizeof(u0));
            assert_memory_equal(v0, srp_power_iter_v(p), sizeof(v0));
            assert_true(s0 == srp_power_iter_sigma(p));
        }
    }
    srp_power_iter_destroy(p);
    release(&m);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    float w[4] = {1, 2, 3, 4}, sigma;
    srp_power_iter *p = NULL;
    assert_status(srp_power_iter_create(NULL, 2, 2, 0), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_create(&p, 0, 2, 0), SRP_ERR_INVALID_ARG);
    assert_null(p);
    assert_status(srp_power_iter_create(&p, 2, 0, 0), SRP_ERR_INVALID_ARG);
    assert_status(srp_spectral_norm_exact(NULL, 2, 2, &sigma), SRP_ERR_INVALID_ARG);
    assert_status(srp_spectral_norm_exact(w, 2, 2, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_spectral_norm_exact(w, 0, 2, &sigma), SRP_ERR_INVALID_ARG);
    assert_status(srp_spectral_norm_exact(w, 2, 0, &sigma), SRP_ERR_INVALID_ARG);
    assert_ok(srp_power_iter_create(&p, 2, 2, 0));
    assert_status(srp_power_iter_step(p, NULL, 1, &sigma), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_step(p, w, 0, &sigma), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_step(NULL, w, 1, &sigma), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_estimate(p, w, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_estimate(p, NULL, &sigma), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_init_svd(p, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_init_svd(NULL, w), SRP_ERR_INVALID_ARG);
    assert_status(srp_power_iter_set_state(p, NULL, w, 1.0f), SRP_ERR_INVALID_ARG);
    float bad[2] = {NAN, 0.0f};
    assert_status(srp_power_iter_set_state(p, bad, w, 1.0f), SRP_ERR_NUMERIC);
    assert_string_equal(srp_last_error_detail(), "srp_power_iter_set_state: u is not finite");
    assert_status(srp_power_iter_set_state(p, w, bad, 1.0f), SRP_ERR_NUMERIC);
    assert_string_equal(srp_last_error_detail(), "srp_power_iter_set_state: v is not finite");
    assert_status(srp_power_iter_set_state(p, w, w, INFINITY), SRP_ERR_NUMERIC);
    assert_string_equal(srp_last_error_detail(), "srp_power_iter_set_state: sigma is not finite");
    assert_null(srp_power_iter_u(NULL));
    assert_null(srp_power_iter_v(NULL));
    srp_power_iter_destroy(p);
    srp_power_iter_destroy(NULL);
}

/* 1x1, 1xN and Nx1: sigma is |w|, the row norm, the column norm. */
static void test_vector_shapes(void **state)
{
    (void)state;
    float one = -3.5f, sigma;
    srp_power_iter *p = NULL;
    assert_ok(srp_spectral_norm_exact(&one, 1, 1, &sigma));
    assert_true(sigma == 3.5f);
    assert_ok(srp_power_iter_create(&p, 1, 1, 4));
    assert_ok(srp_power_iter_step(p, &one, 1, &sigma));
    assert_true(sigma == 3.5f);
    srp_power_iter_destroy(p);

    srp_rng r = seeded_rng(77);
    float x[300];
    double xd[300];
    fill_normal_f(&r, x, 300, 1.0);
    to_double(x, xd, 300);
    const double norm = norm_d(xd, 300);
    const size_t shapes[2][2] = {{1, 300}, {300, 1}};
    for (int s = 0; s < 2; s++) {
        assert_ok(srp_spectral_norm_exact(x, shapes[s][0], shapes[s][1], &sigma));
        assert_close_rel(sigma, norm, 1e-6, 0.0, "exact, vector shape");
        assert_ok(srp_power_iter_create(&p, shapes[s][0], shapes[s][1], 4));
        assert_ok(srp_power_iter_step(p, x, 1, &sigma)); /* exact after one step */
        assert_close_rel(sigma, norm, 1e-6, 0.0, "power step, vector shape");
        srp_power_iter_destroy(p);
    }
}

static void test_create_gives_seeded_random_unit_vectors(void **state)
{
    (void)state;
    srp_power_iter *a = NULL, *b = NULL, *c = NULL;
    assert_ok(srp_power_iter_create(&a, 20, 30, 1));
    assert_ok(srp_power_iter_create(&b, 20, 30, 1));
    assert_ok(srp_power_iter_create(&c, 20, 30, 2));
    assert_memory_equal(srp_power_iter_u(a), srp_power_iter_u(b), 30 * sizeof(float));
    assert_memory_not_equal(srp_power_iter_u(a), srp_power_iter_u(c), 30 * sizeof(float));
    double u[30];
    to_double(srp_power_iter_u(a), u, 30);
    assert_close_rel(norm_d(u, 30), 1.0, 1e-6, 0.0, "|u|");
    int distinct = 0;
    for (int i = 1; i < 30; i++)
        distinct += fabs(u[i]) != fabs(u[0]);
    assert_true(distinct > 25); /* not a constant vector */
    srp_power_iter_destroy(a);
    srp_power_iter_destroy(b);
    srp_power_iter_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_svd_init_on_50_shapes),
        cmocka_unit_test(test_convergence_follows_the_gap),
        cmocka_unit_test(test_multi_iter_equals_repeated_single),
        cmocka_unit_test(test_estimate_is_pure_and_repeatable),
        cmocka_unit_test(test_zero_matrix),
        cmocka_unit_test(test_non_finite_is_rejected_and_state_kept),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_vector_shapes),
        cmocka_unit_test(test_create_gives_seeded_random_unit_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
