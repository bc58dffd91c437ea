/* The profiler (profile.h): off by default, it counts nothing; on, the
 * parts a call runs gain calls and time, and reset zeroes them. */
#define SRP_UNSTABLE_API
#include <stdlib.h>

#include "testutil.h"

/* A sigmaReparam linear's training forward: a power step and a GEMM. */
static void run_linear_forward(void)
{
    srp_linear_config cfg = srp_linear_config_default(16, 8);
    srp_linear *l = NULL;
    assert_ok(srp_linear_create(&l, &cfg));
    float x[4 * 16], y[4 * 8];
    srp_rng r = seeded_rng(3);
    fill_normal_f(&r, x, 4 * 16, 1.0);
    assert_ok(srp_linear_forward(l, x, 4, y, SRP_TRAIN));
    srp_linear_destroy(l);
}

static void test_counts_only_while_enabled(void **state)
{
    (void)state;
    srp_profile_reset();
    run_linear_forward(); /* off by default */
    for (int p = 0; p < SRP_PROF_COUNT; p++) {
        assert_int_equal(srp_profile_calls((srp_profile_part)p), 0);
        assert_true(srp_profile_seconds((srp_profile_part)p) == 0.0);
    }
    srp_profile_enable(1);
    run_linear_forward();
    srp_profile_enable(0);
    assert_int_equal(srp_profile_calls(SRP_PROF_POWER_ITER), 1);
    assert_true(srp_profile_calls(SRP_PROF_LINEAR_GEMM) >= 1);
    assert_true(srp_profile_seconds(SRP_PROF_LINEAR_GEMM) > 0.0);
    assert_int_equal(srp_profile_calls(SRP_PROF_LOSS), 0);
    run_linear_forward(); /* off again: the counters keep their values */
    assert_int_equal(srp_profile_calls(SRP_PROF_POWER_ITER), 1);
    srp_profile_reset();
    assert_int_equal(srp_profile_calls(SRP_PROF_POWER_ITER), 0);
    assert_true(srp_profile_seconds(SRP_PROF_LINEAR_GEMM) == 0.0);
}

/* A convolution's time is its own part, not the linears' GEMMs it shares
 * a layer object with: the step's breakdown tells the stem apart. */
static void test_convolution_is_its_own_part(void **state)
{
    (void)state;
    srp_conv2d_config cfg = srp_conv2d_config_default(2, 4, 3);
    srp_conv2d *c = NULL;
    assert_ok(srp_conv2d_create(&c, &cfg, 2, 6, 6));
    float x[2 * 2 * 6 * 6], y[2 * 4 * 4 * 4], dy[2 * 4 * 4 * 4];
    srp_rng r = seeded_rng(5);
    fill_normal_f(&r, x, 2 * 2 * 6 * 6, 1.0);
    fill_normal_f(&r, dy, 2 * 4 * 4 * 4, 1.0);
    srp_profile_reset();
    srp_profile_enable(1);
    assert_ok(srp_conv2d_forward(c, x, 2, 6, 6, y, SRP_TRAIN));
    assert_ok(srp_conv2d_backward(c, x, dy, NULL));
    srp_profile_enable(0);
    assert_true(srp_profile_calls(SRP_PROF_CONVOLUTION) >= 2);
    assert_int_equal(srp_profile_calls(SRP_PROF_LINEAR_GEMM), 0);
    assert_int_equal(srp_profile_calls(SRP_PROF_POWER_ITER), 1);
    srp_profile_reset();
    srp_conv2d_destroy(c);
}

static void test_names_and_unknown_parts(void **state)
{
    (void)state;
    for (int p = 0; p < SRP_PROF_COUNT; p++) {
        const char *name = srp_profile_name((srp_profile_part)p);
        assert_non_null(name);
        assert_string_not_equal(name, "unknown");
        for (int q = 0; q < p; q++) /* one name per part */
            assert_string_not_equal(name, srp_profile_name((srp_profile_part)q));
    }
    assert_string_equal(srp_profile_name(SRP_PROF_COUNT), "unknown");
    assert_string_equal(srp_profile_name((srp_profile_part)-1), "unknown");
    assert_int_equal(srp_profile_calls(SRP_PROF_COUNT), 0);
    assert_true(srp_profile_seconds((srp_profile_part)-1) == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_only_while_enabled),
        cmocka_unit_test(test_convolution_is_its_own_part),
        cmocka_unit_test(test_names_and_unknown_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
