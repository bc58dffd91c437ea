/* The seeded RNG: reference values from an independent implementation
 * (tests/reference/rng_reference.py) and distribution checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void test_xoshiro_reference_vector(void **state)
{
    (void)state;
    /* The published xoshiro256** sequence from state {1, 2, 3, 4}. */
    srp_rng r = {{1, 2, 3, 4}};
    assert_true(srp_rng_next_u64(&r) == 11520u);
    assert_true(srp_rng_next_u64(&r) == 0u);
    assert_true(srp_rng_next_u64(&r) == 1509978240u);
    assert_true(srp_rng_next_u64(&r) == 1215971899390074240u);
}

static void test_seeding_matches_reference(void **state)
{
    (void)state;
    srp_rng r;
    srp_rng_seed(&r, 0);
    assert_true(r.s[0] == 0xe220a8397b1dcdafu); /* splitmix64(0), published */
    assert_true(r.s[3] == 0xf88bb8a8724c81ecu);
    assert_true(srp_rng_next_u64(&r) == 0x99ec5f36cb75f2b4u);
    srp_rng_seed(&r, 42);
    assert_true(srp_rng_next_u64(&r) == 0x15780b2e0c2ec716u);
    assert_true(srp_rng_next_u64(&r) == 0x6104d9866d113a7eu);
    assert_true(srp_rng_next_u64(&r) == 0xae17533239e499a1u);
}

static void test_normal_matches_reference_algorithm(void **state)
{
    (void)state;
    /* Python's math.log is libm's; ours is a series: equal to ~1 ulp. */
    const double expected[5] = {-0.7262191382447857, 0.2216227015035933, 0.46417731016247366,
                                1.476249461018415, 1.0078198992420604};
    srp_rng r;
    srp_rng_seed(&r, 42);
    for (int i = 0; i < 5; i++)
        assert_close_rel(srp_rng_normal(&r), expected[i], 1e-14, 0.0, "normal vs reference");
}

static void test_same_seed_same_stream(void **state)
{
    (void)state;
    srp_rng a, b, c;
    srp_rng_seed(&a, 1234);
    srp_rng_seed(&b, 1234);
    srp_rng_seed(&c, 1235);
    int differs = 0;
    for (int i = 0; i < 1000; i++) {
        const double x = srp_rng_normal(&a);
        assert_true(x == srp_rng_normal(&b));
        differs += x != srp_rng_normal(&c);
    }
    assert_true(differs > 990);
    /* The state is plain data: a copy continues the same stream. */
    srp_rng saved = a;
    const uint64_t next = srp_rng_next_u64(&a);
    assert_true(srp_rng_next_u64(&saved) == next);
}

static void test_uniform_moments(void **state)
{
    (void)state;
    srp_rng r;
    srp_rng_seed(&r, 3);
    const int n = 1000000;
    double sum = 0, sumsq = 0, lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        const double u = srp_rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        sumsq += u * u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
    }
    const double mean = sum / n, var = sumsq / n - mean * mean;
    assert_true(fabs(mean - 0.5) < 5.0 * sqrt(1.0 / 12.0 / n));
    assert_true(fabs(var - 1.0 / 12.0) < 1e-3);
    assert_true(lo < 1e-5 && hi > 1.0 - 1e-5);
}

/* Standard normal CDF at a few points vs empirical frequencies. */
static void test_normal_distribution(void **state)
{
    (void)state;
    srp_rng r;
    srp_rng_seed(&r, 4);
    const int n = 2000000;
    const double points[5] = {-1.96, -1.0, 0.0, 1.0, 2.5};
    const double cdf[5] = {0.024997895, 0.158655254, 0.5, 0.841344746, 0.993790335};
    int below[5] = {0};
    double sum = 0, sumsq = 0, sum4 = 0;
    for (int i = 0; i < n; i++) {
        const double z = srp_rng_normal(&r);
        sum += z;
        sumsq += z * z;
        sum4 += z * z * z * z;
        for (int k = 0; k < 5; k++)
            below[k] += z < points[k];
    }
    assert_true(fabs(sum / n) < 5.0 / sqrt(n));
    assert_true(fabs(sumsq / n - 1.0) < 5.0 * sqrt(2.0 / n));
    assert_true(fabs(sum4 / n - 3.0) < 5.0 * sqrt(96.0 / n));
    for (int k = 0; k < 5; k++) {
        const double p = (double)below[k] / n, se = sqrt(cdf[k] * (1 - cdf[k]) / n);
        if (fabs(p - cdf[k]) > 5.0 * se) {
            print_error("P(z < %g) = %.6f, expected %.6f\n", points[k], p, cdf[k]);
            fail();
        }
    }
}

static void test_trunc_normal(void **state)
{
    (void)state;
    srp_rng r;
    srp_rng_seed(&r, 5);
    const int n = 1000000;
    const double std = 0.02;
    double sumsq = 0;
    for (int i = 0; i < n; i++) {
        const double x = srp_rng_trunc_normal(&r, 1.0, std);
        assert_true(x >= 1.0 - 2.0 * std && x <= 1.0 + 2.0 * std);
        sumsq += (x - 1.0) * (x - 1.0);
    }
    /* Var of N(0,1) truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1). */
    const double phi2 = exp(-2.0) / sqrt(6.283185307179586), mass = 0.954499736;
    const double var = 1.0 - 4.0 * phi2 / mass;
    assert_close_rel(sumsq / n / (std * std), var, 0.005, 0.0, "truncated variance");
    assert_true(srp_rng_trunc_normal(&r, 3.0, 0.0) == 3.0);

    float w[1000];
    srp_rng_fill_trunc_normal(&r, w, 1000, 0.5f);
    for (int i = 0; i < 1000; i++)
        assert_true(fabsf(w[i]) <= 1.0f);
}

static void test_below_is_unbiased(void **state)
{
    (void)state;
    srp_rng r;
    srp_rng_seed(&r, 6);
    const int n = 700000, k = 7;
    int counts[7] = {0};
    for (int i = 0; i < n; i++) {
        const uint64_t x = srp_rng_below(&r, (uint64_t)k);
        assert_true(x < (uint64_t)k);
        counts[x]++;
    }
    double chi2 = 0;
    for (int i = 0; i < k; i++)
        chi2 += pow(counts[i] - n / k, 2) / (n / k);
    assert_true(chi2 < 22.5); /* 6 dof: P(chi2 > 22.5) = 0.001 */
    assert_true(srp_rng_below(&r, 0) == 0);
    assert_true(srp_rng_below(&r, 1) == 0);
}

static void test_shuffle_is_a_uniform_permutation(void **state)
{
    (void)state;
    srp_rng r;
    srp_rng_seed(&r, 7);
    enum { N = 5, TRIALS = 120000 };
    int where[N][N] = {{0}}; /* where[value][position] */
    for (int t = 0; t < TRIALS; t++) {
        size_t idx[N] = {0, 1, 2, 3, 4};
        srp_rng_shuffle(&r, idx, N);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            assert_true(idx[i] < N);
            seen[idx[i]]++;
            where[idx[i]][i]++;
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(seen[i], 1);
    }
    const double expected = (double)TRIALS / N, se = sqrt(expected * (1.0 - 1.0 / N));
    for (int v = 0; v < N; v++)
        for (int p = 0; p < N; p++)
            assert_true(fabs(where[v][p] - expected) < 5.0 * se);
    srp_rng_shuffle(&r, NULL, 0); /* nothing to do, no crash */
}

/* The permutation is the shuffle of the identity, draw for draw. */
static void test_permutation_matches_the_shuffle(void **state)
{
    (void)state;
    enum { N = 1000 };
    srp_rng a, b;
    srp_rng_seed(&a, 11);
    srp_rng_seed(&b, 11);
    size_t idx[N];
    uint64_t perm[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = i;
    srp_rng_shuffle(&a, idx, N);
    srp_rng_permutation(&b, perm, N);
    for (size_t i = 0; i < N; i++)
        assert_true(perm[i] == idx[i]);
    assert_true(srp_rng_next_u64(&a) == srp_rng_next_u64(&b));
    srp_rng_permutation(&b, NULL, 0); /* nothing to do, no crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xoshiro_reference_vector),
        cmocka_unit_test(test_seeding_matches_reference),
        cmocka_unit_test(test_normal_matches_reference_algorithm),
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_uniform_moments),
        cmocka_unit_test(test_normal_distribution),
        cmocka_unit_test(test_trunc_normal),
        cmocka_unit_test(test_below_is_unbiased),
        cmocka_unit_test(test_shuffle_is_a_uniform_permutation),
        cmocka_unit_test(test_permutation_matches_the_shuffle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
