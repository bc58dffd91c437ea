/* Data-parallel training in one process (dist.h, srp_dist_create_single),
 * in every build: rank 0 of 1, every collective the one-process answer
 * (the values as they were, bit for bit; the status as it was), nothing
 * moved (no allreduce counted) and nothing allocated per step; create's
 * checks and their details. The MPI build runs it too, without MPI_Init:
 * the one-process handle needs no MPI. test_dist.c runs the same calls on
 * 2 ranks. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

#define IN 6
#define OUT 4

/* A sigmaReparam linear and a plain one, and their weights and biases. */
typedef struct {
    srp_linear *l[2];
    srp_param params[4];
} model;

static void model_make(model *m)
{
    for (int i = 0; i < 2; i++) {
        srp_linear_config c = srp_linear_config_default(IN, OUT);
        c.seed = 3 + (uint64_t)i;
        c.init_std = 0.3f;
        c.reparam = i == 0 ? SRP_REPARAM_SIGMA : SRP_REPARAM_NONE;
        assert_ok(srp_linear_create(&m->l[i], &c));
        m->params[2 * i] =
            srp_param_make("w", srp_linear_weight(m->l[i]), srp_linear_weight_grad(m->l[i]),
                           IN * OUT, SRP_PARAM_WEIGHT);
        m->params[2 * i + 1] = srp_param_make("b", srp_linear_bias(m->l[i]),
                                              srp_linear_bias_grad(m->l[i]), OUT, SRP_PARAM_BIAS);
        float *g = srp_linear_weight_grad(m->l[i]);
        for (size_t k = 0; k < IN * OUT; k++)
            g[k] = 0.1f * (float)k - 1.0f / 3.0f;
    }
}

static void model_free(model *m)
{
    srp_linear_destroy(m->l[0]);
    srp_linear_destroy(m->l[1]);
}

/* Everything a collective could change: gradients, parameters, u, v, sigma. */
typedef struct {
    float grad[IN * OUT], weight[IN * OUT], u[IN], v[OUT], sigma;
} snapshot;

static snapshot snap(const model *m)
{
    snapshot s;
    memcpy(s.grad, srp_linear_weight_grad(m->l[0]), sizeof(s.grad));
    memcpy(s.weight, srp_linear_weight(m->l[0]), sizeof(s.weight));
    memcpy(s.u, srp_linear_u(m->l[0]), sizeof(s.u));
    memcpy(s.v, srp_linear_v(m->l[0]), sizeof(s.v));
    s.sigma = srp_linear_sigma(m->l[0]);
    return s;
}

static void test_one_rank_leaves_everything_as_it_was(void **state)
{
    (void)state;
    model m;
    model_make(&m);
    srp_dist *d = NULL;
    assert_ok(srp_dist_create_single(&d, m.params, 4, m.l, 2));
    assert_int_equal(srp_dist_rank(d), 0);
    assert_int_equal(srp_dist_size(d), 1);
    assert_true(srp_dist_numerics_uniform(d));
    const snapshot before = snap(&m);

    /* The mean of one rank's gradients is its own; a failure stays its. */
    assert_ok(srp_dist_average_gradients(d, SRP_OK));
    assert_status(srp_dist_average_gradients(d, SRP_ERR_NUMERIC), SRP_ERR_NUMERIC);
    /* Nothing to broadcast, whatever the policy. */
    srp_dist_set_spectral_policy(d, SRP_DIST_SPECTRAL_BROADCAST);
    assert_false(srp_dist_spectral_broadcasts(d));
    assert_ok(srp_dist_sync_spectral(d));
    int identical = 0, same = 0;
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_true(identical);
    assert_ok(srp_dist_same_bytes(d, "--lr 0.1", 8, &same));
    assert_true(same);
    const snapshot after = snap(&m);
    assert_memory_equal(&before, &after, sizeof(before));
    size_t bytes = 0;
    uint64_t calls = 9;
    double seconds = -1.0;
    srp_dist_allreduce_stats(d, &bytes, &calls, &seconds);
    assert_int_equal(bytes, sizeof(float) * (2 * (IN * OUT + OUT) + 1)); /* what 2 ranks move */
    assert_int_equal(calls, 0);
    assert_true(seconds == 0.0);

    /* The reductions: the values themselves, bit for bit (-0, a NaN, the
     * float nearest 1/3, more values than one chunk of the sums). */
    enum { N = 200 };
    double sums[N], sums0[N];
    float floats[N], floats0[N];
    for (size_t i = 0; i < N; i++) {
        sums0[i] = sums[i] = (double)i / 3.0 - 7.0;
        floats0[i] = floats[i] = (float)i / 3.0f - 7.0f;
    }
    sums0[1] = sums[1] = -0.0;
    floats0[2] = floats[2] = NAN;
    assert_ok(srp_dist_sum(d, sums, N));
    assert_ok(srp_dist_broadcast(d, sums, N));
    assert_ok(srp_dist_sum_agree(d, sums, N, SRP_OK));
    assert_memory_equal(sums, sums0, sizeof(sums));
    assert_ok(srp_dist_mean(d, floats, N));
    assert_ok(srp_dist_min(d, floats, N));
    assert_ok(srp_dist_max(d, floats, N));
    assert_memory_equal(floats, floats0, sizeof(floats));
    /* Agreement: the local status. */
    assert_ok(srp_dist_agree(d, SRP_OK));
    assert_status(srp_dist_agree(d, SRP_ERR_IO), SRP_ERR_IO);
    assert_status(srp_dist_sum_agree(d, sums, 2, SRP_ERR_NUMERIC), SRP_ERR_NUMERIC);
    assert_memory_equal(sums, sums0, sizeof(sums));
    srp_dist_destroy(d);
    model_free(&m);
}

/* No model yet: a handle for the collectives. */
static void test_a_handle_without_a_model(void **state)
{
    (void)state;
    srp_dist *d = NULL;
    assert_ok(srp_dist_create_single(&d, NULL, 0, NULL, 0));
    double v = 2.5;
    assert_ok(srp_dist_sum(d, &v, 1));
    assert_true(v == 2.5);
    assert_ok(srp_dist_average_gradients(d, SRP_OK));
    assert_ok(srp_dist_sync_spectral(d));
    int identical = 0;
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_true(identical);
    srp_dist_destroy(d);
}

/* create's checks, each with its detail; *out stays NULL. */
static void test_create_checks_its_arguments(void **state)
{
    (void)state;
    model m;
    model_make(&m);
    srp_dist *d = (srp_dist *)&d;
    assert_status(srp_dist_create_single(&d, NULL, 4, m.l, 2), SRP_ERR_INVALID_ARG);
    assert_null(d);
    assert_string_equal(srp_last_error_detail(),
                        "srp_dist_create_single: params is NULL with nparams 4");
    srp_param broken[4];
    memcpy(broken, m.params, sizeof(broken));
    broken[3].grad = NULL;
    assert_status(srp_dist_create_single(&d, broken, 4, m.l, 2), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_create_single: params[3]: grad is NULL");
    broken[3] = m.params[3];
    broken[1].size = 0;
    assert_status(srp_dist_create_single(&d, broken, 4, m.l, 2), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_create_single: params[1]: size is 0");
    assert_status(srp_dist_create_single(&d, m.params, 4, NULL, 2), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(),
                        "srp_dist_create_single: linears is NULL with nlinears 2");
    srp_linear *one_missing[2] = {m.l[0], NULL};
    assert_status(srp_dist_create_single(&d, m.params, 4, one_missing, 2), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_create_single: linears[1] is NULL");
    assert_null(d);
    assert_status(srp_dist_create_single(NULL, m.params, 4, m.l, 2), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_create_single: out is NULL");
    /* the collectives' own checks, with the call's name */
    assert_ok(srp_dist_create_single(&d, m.params, 4, m.l, 2));
    float f = 1.0f;
    assert_status(srp_dist_mean(d, &f, 0), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_mean: n 0 is 0 or past INT_MAX");
    assert_status(srp_dist_max(d, NULL, 1), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_max: values is NULL");
    assert_status(srp_dist_broadcast(NULL, (double[]){1.0}, 1), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_broadcast: d is NULL");
    assert_status(srp_dist_same_bytes(d, "x", 1, NULL), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_same_bytes: same is NULL");
    srp_dist_destroy(d);
    /* NULL handles elsewhere */
    srp_dist_destroy(NULL);
    assert_int_equal(srp_dist_rank(NULL), 0);
    assert_int_equal(srp_dist_size(NULL), 1);
    assert_false(srp_dist_spectral_broadcasts(NULL));
    srp_dist_set_spectral_policy(NULL, SRP_DIST_SPECTRAL_LOCAL);
    size_t bytes = 1;
    srp_dist_allreduce_stats(NULL, &bytes, NULL, NULL);
    assert_int_equal(bytes, 0);
    model_free(&m);
}

#ifdef SRP_COUNT_ALLOCS
/* 1 when the counter sees the library's own mallocs (a create allocates):
 * the interposed malloc must be exported from the test binary for calls
 * from the shared library to reach it. */
static int counter_sees_library(void)
{
    srp_dist *d = NULL;
    alloc_counter_start();
    const srp_status st = srp_dist_create_single(&d, NULL, 0, NULL, 0);
    const size_t n = alloc_counter_stop(NULL);
    assert_ok(st);
    srp_dist_destroy(d);
    return n > 0;
}
#endif

/* The per-step calls allocate nothing (outside the sanitizer builds). */
static void test_no_allocation_per_step(void **state)
{
    (void)state;
#ifdef SRP_COUNT_ALLOCS
    if (!counter_sees_library()) {
        print_message("alloc counter does not see the library's mallocs: skipped\n");
        return;
    }
    model m;
    model_make(&m);
    srp_dist *d = NULL;
    assert_ok(srp_dist_create_single(&d, m.params, 4, m.l, 2));
    double sums[100] = {0};
    float values[300] = {0};
    int identical = 0;
    alloc_counter_start();
    assert_ok(srp_dist_average_gradients(d, SRP_OK));
    assert_ok(srp_dist_sum_agree(d, sums, 100, SRP_OK));
    assert_ok(srp_dist_sync_spectral(d));
    assert_ok(srp_dist_mean(d, values, 300));
    assert_ok(srp_dist_min(d, values, 300));
    assert_ok(srp_dist_max(d, values, 300));
    assert_ok(srp_dist_sum(d, sums, 100));
    assert_ok(srp_dist_broadcast(d, sums, 100));
    assert_ok(srp_dist_agree(d, SRP_OK));
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_int_equal(alloc_counter_stop(NULL), 0);
    srp_dist_destroy(d);
    model_free(&m);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_rank_leaves_everything_as_it_was),
        cmocka_unit_test(test_a_handle_without_a_model),
        cmocka_unit_test(test_create_checks_its_arguments),
        cmocka_unit_test(test_no_allocation_per_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
