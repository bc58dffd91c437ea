/* Data-parallel training over MPI (dist.h, dist_mpi.h), run by CTest
 * under `mpirun -np 2`: gradient averaging against one process's
 * full-batch gradient, agreement on a failure of one rank (no hang,
 * nothing changed), the replica check and the u/v/sigma broadcast, the
 * shape and argument checks of create, the metrics reductions. Every rank
 * runs the same tests in the same order; each rank asserts what it sees.
 * test_dist_single.c runs the same calls in one process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam/dist_mpi.h>

#include "testutil.h"

#define IN 12
#define OUT 5
#define BATCH 8 /* global; each of the 2 ranks takes 4 */

static int g_rank, g_size;

/* A sigmaReparam linear and its parameter list (weight, bias, gamma). */
typedef struct {
    srp_linear *l;
    srp_param params[3];
} layer;

static void layer_make(layer *m, uint64_t seed)
{
    srp_linear_config c = srp_linear_config_default(IN, OUT);
    c.seed = seed;
    c.init_std = 0.3f;
    assert_ok(srp_linear_create(&m->l, &c));
    m->params[0] = srp_param_make("w", srp_linear_weight(m->l), srp_linear_weight_grad(m->l),
                                  IN * OUT, SRP_PARAM_WEIGHT);
    m->params[1] =
        srp_param_make("b", srp_linear_bias(m->l), srp_linear_bias_grad(m->l), OUT, SRP_PARAM_BIAS);
    m->params[2] = srp_param_make("gamma", srp_linear_gamma(m->l), srp_linear_gamma_grad(m->l), 1,
                                  SRP_PARAM_GAMMA);
}

/* The batch every rank knows: x [BATCH][IN], labels [BATCH]. */
static void batch_make(float *x, int *labels)
{
    srp_rng rng;
    srp_rng_seed(&rng, 77);
    for (size_t i = 0; i < BATCH * IN; i++)
        x[i] = (float)srp_rng_normal(&rng);
    for (size_t i = 0; i < BATCH; i++)
        labels[i] = (int)(i % OUT);
}

/* Gradients of the mean cross-entropy over rows first .. first + n. */
static void gradients(layer *m, const float *x, const int *labels, size_t first, size_t n)
{
    float y[BATCH * OUT], dy[BATCH * OUT], loss;
    srp_linear_zero_grad(m->l);
    assert_ok(srp_linear_forward(m->l, x + first * IN, n, y, SRP_TRAIN));
    assert_ok(srp_cross_entropy_forward(y, labels + first, n, OUT, 0.0f, &loss));
    assert_ok(srp_cross_entropy_backward(y, labels + first, n, OUT, 0.0f, dy));
    assert_ok(srp_linear_backward(m->l, x + first * IN, dy, n, NULL));
}

/* Each rank's half-batch gradient, averaged, is the full batch's (to
 * float rounding), and the same bits on every rank. */
static void test_average_is_the_full_batch_gradient(void **state)
{
    (void)state;
    float x[BATCH * IN];
    int labels[BATCH];
    batch_make(x, labels);
    layer ranked, whole;
    layer_make(&ranked, 5);
    layer_make(&whole, 5);
    srp_dist *d = NULL;
    assert_ok(srp_dist_create(&d, MPI_COMM_WORLD, ranked.params, 3, &ranked.l, 1));
    assert_int_equal(srp_dist_rank(d), g_rank);
    assert_int_equal(srp_dist_size(d), g_size);
    assert_true(srp_dist_numerics_uniform(d)); /* CTest runs every rank alike */
    const size_t share = BATCH / (size_t)g_size;
    gradients(&ranked, x, labels, (size_t)g_rank * share, share);
    gradients(&whole, x, labels, 0, BATCH);
    assert_ok(srp_dist_average_gradients(d, SRP_OK));
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < ranked.params[p].size; i++)
            /* Not assert_float_equal: it passes NaN. */
            assert_true(fabsf(ranked.params[p].grad[i] - whole.params[p].grad[i]) <=
                        1e-6f + 1e-5f * fabsf(whole.params[p].grad[i]));
    /* The same bits everywhere: the gradient's CRC through a step. */
    srp_optim *o = NULL;
    srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_SGD);
    assert_ok(srp_optim_create(&o, ranked.params, 3, &oc));
    assert_ok(srp_optim_step(o, 0.1f));
    int identical = 0;
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_true(identical);
    size_t bytes;
    uint64_t calls;
    double seconds;
    srp_dist_allreduce_stats(d, &bytes, &calls, &seconds);
    assert_int_equal(bytes, sizeof(float) * (IN * OUT + OUT + 1 + 1));
    assert_int_equal(calls, 1);
    assert_true(seconds >= 0.0);
    srp_optim_destroy(o);
    srp_dist_destroy(d);
    srp_linear_destroy(ranked.l);
    srp_linear_destroy(whole.l);
}

/* Rank 1 fails before the allreduce: both ranks return (no hang), rank 1
 * its own status, rank 0 SRP_ERR_PEER, and no gradient changes. */
static void test_a_failed_rank_stops_every_rank(void **state)
{
    (void)state;
    layer m;
    layer_make(&m, 9);
    srp_dist *d = NULL;
    assert_ok(srp_dist_create(&d, MPI_COMM_WORLD, m.params, 3, &m.l, 1));
    for (size_t i = 0; i < IN * OUT; i++)
        m.params[0].grad[i] = (float)(g_rank + 1) * (float)i;
    const srp_status local = g_rank == 1 ? SRP_ERR_NUMERIC : SRP_OK;
    assert_status(srp_dist_average_gradients(d, local),
                  g_rank == 1 ? SRP_ERR_NUMERIC : SRP_ERR_PEER);
    for (size_t i = 0; i < IN * OUT; i++)
        assert_true(m.params[0].grad[i] == (float)(g_rank + 1) * (float)i);
    /* The next step goes through: the failure was that step's only. */
    assert_ok(srp_dist_average_gradients(d, SRP_OK));
    assert_true(m.params[0].grad[3] == 0.5f * (3.0f + 6.0f));
    /* Agreement on a status outside the step, likewise. */
    assert_status(srp_dist_agree(d, local), g_rank == 1 ? SRP_ERR_NUMERIC : SRP_ERR_PEER);
    assert_ok(srp_dist_agree(d, SRP_OK));
    /* And with a step's figures: the failed rank keeps its own, the other
     * gets the sums with the news. */
    double sums[2] = {1.0 + g_rank, 10.0};
    assert_status(srp_dist_sum_agree(d, sums, 2, local),
                  g_rank == 1 ? SRP_ERR_NUMERIC : SRP_ERR_PEER);
    assert_true(g_rank == 1 ? sums[0] == 2.0 && sums[1] == 10.0
                            : sums[0] == 3.0 && sums[1] == 20.0);
    /* More figures than one allreduce carries: each chunk has the news. */
    double many[150];
    for (size_t i = 0; i < 150; i++)
        many[i] = (double)i * (g_rank + 1);
    assert_status(srp_dist_sum_agree(d, many, 150, g_rank == 0 ? SRP_ERR_IO : SRP_OK),
                  g_rank == 0 ? SRP_ERR_IO : SRP_ERR_PEER);
    /* rank 0 kept its i, rank 1 took the sums 3 i: 4 i now */
    assert_ok(srp_dist_sum_agree(d, many, 150, SRP_OK));
    for (size_t i = 0; i < 150; i++)
        assert_true(many[i] == 4.0 * (double)i);
    srp_dist_destroy(d);
    srp_linear_destroy(m.l);
}

/* The replica check sees one differing u; the broadcast policy makes u, v
 * and sigma rank 0's again; the local policy leaves them. */
static void test_replica_check_and_broadcast(void **state)
{
    (void)state;
    layer m;
    layer_make(&m, 13);
    srp_dist *d = NULL;
    assert_ok(srp_dist_create(&d, MPI_COMM_WORLD, m.params, 3, &m.l, 1));
    int identical = 0;
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_true(identical);
    const float u0 = srp_linear_u(m.l)[0], sigma0 = srp_linear_sigma(m.l);
    if (g_rank == 1) {
        srp_linear_u(m.l)[0] = u0 + 1e-3f; /* one rank's state drifts */
        assert_ok(srp_linear_set_sigma(m.l, sigma0 * 1.5f));
    }
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_false(identical);
    assert_false(srp_dist_spectral_broadcasts(d)); /* uniform numerics: AUTO does not */
    srp_dist_set_spectral_policy(d, SRP_DIST_SPECTRAL_LOCAL);
    assert_ok(srp_dist_sync_spectral(d));
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_false(identical);
    srp_dist_set_spectral_policy(d, SRP_DIST_SPECTRAL_BROADCAST);
    assert_true(srp_dist_spectral_broadcasts(d));
    assert_ok(srp_dist_sync_spectral(d));
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_true(identical);
    assert_true(srp_linear_u(m.l)[0] == u0);
    assert_true(srp_linear_sigma(m.l) == sigma0);
    /* A parameter that differs is seen too. */
    if (g_rank == 0)
        m.params[1].data[2] += 1.0f;
    assert_ok(srp_dist_replicas_identical(d, &identical));
    assert_false(identical);
    srp_dist_destroy(d);
    srp_linear_destroy(m.l);
}

/* create agrees on every rank's arguments: one rank's bad list or other
 * shapes fail it everywhere. */
static void test_create_checks_every_rank(void **state)
{
    (void)state;
    layer m;
    layer_make(&m, 17);
    srp_dist *d = NULL;
    /* Rank 1 lists one entry fewer: other shapes. */
    assert_status(srp_dist_create(&d, MPI_COMM_WORLD, m.params, g_rank == 1 ? 2 : 3, &m.l, 1),
                  SRP_ERR_SHAPE);
    assert_null(d);
    /* the detail, on every rank: both sizes (weight 60 + bias 5 + gamma 1) */
    assert_non_null(strstr(srp_last_error_detail(), "srp_dist_create: the ranks' models differ: "
                                                    "65 to 66 gradient floats"));
    /* Rank 1 passes no list at all. */
    assert_status(srp_dist_create(&d, MPI_COMM_WORLD, g_rank == 1 ? NULL : m.params, 3, &m.l, 1),
                  g_rank == 1 ? SRP_ERR_INVALID_ARG : SRP_ERR_PEER);
    assert_null(d);
    /* An entry without a gradient, on every rank. */
    srp_param broken[3];
    memcpy(broken, m.params, sizeof(broken));
    broken[2].grad = NULL;
    assert_status(srp_dist_create(&d, MPI_COMM_WORLD, broken, 3, &m.l, 1), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_create: params[2]: grad is NULL");
    assert_status(srp_dist_create(&d, MPI_COMM_WORLD, m.params, 3, NULL, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_dist_create(NULL, MPI_COMM_WORLD, m.params, 3, &m.l, 1), SRP_ERR_INVALID_ARG);
    /* No model at all: a handle for the collectives, on 2 ranks. */
    assert_ok(srp_dist_create(&d, MPI_COMM_WORLD, NULL, 0, NULL, 0));
    assert_int_equal(srp_dist_size(d), 2);
    assert_ok(srp_dist_average_gradients(d, SRP_OK));
    srp_dist_destroy(d);
    /* No linears at all is fine (a model without sigmaReparam). */
    assert_ok(srp_dist_create(&d, MPI_COMM_WORLD, m.params, 3, NULL, 0));
    assert_ok(srp_dist_sync_spectral(d));
    /* Local argument errors, the same on every rank. */
    double v = 1.0;
    assert_status(srp_dist_sum(d, NULL, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_dist_sum(d, &v, 0), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_dist_sum: n 0 is 0 or past INT_MAX");
    assert_status(srp_dist_replicas_identical(d, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_dist_average_gradients(NULL, SRP_OK), SRP_ERR_INVALID_ARG);
    srp_dist_destroy(d);
    srp_dist_destroy(NULL);
    srp_linear_destroy(m.l);
}

static void test_metric_reductions(void **state)
{
    (void)state;
    layer m;
    layer_make(&m, 21);
    srp_dist *d = NULL;
    assert_ok(srp_dist_create(&d, MPI_COMM_WORLD, m.params, 3, &m.l, 1));
    double sums[2] = {1.0 + g_rank, 0.25 * g_rank};
    assert_ok(srp_dist_sum(d, sums, 2));
    assert_true(sums[0] == 3.0 && sums[1] == 0.25); /* 2 ranks */
    float mins[3] = {(float)g_rank, 5.0f - (float)g_rank, -1.0f};
    assert_ok(srp_dist_min(d, mins, 3));
    assert_true(mins[0] == 0.0f && mins[1] == 4.0f && mins[2] == -1.0f);
    float maxs[3] = {(float)g_rank, 5.0f - (float)g_rank, -1.0f};
    assert_ok(srp_dist_max(d, maxs, 3));
    assert_true(maxs[0] == 1.0f && maxs[1] == 5.0f && maxs[2] == -1.0f);
    double decision[2] = {10.0 + g_rank, -g_rank};
    assert_ok(srp_dist_broadcast(d, decision, 2));
    assert_true(decision[0] == 10.0 && decision[1] == 0.0); /* rank 0's */
    /* The mean, over more values than one chunk of its sums. */
    float means[150];
    for (size_t i = 0; i < 150; i++)
        means[i] = (float)i * (float)(g_rank + 1) / 3.0f;
    assert_ok(srp_dist_mean(d, means, 150));
    for (size_t i = 0; i < 150; i++) {
        const double want = 0.5 * ((double)((float)i / 3.0f) + (double)((float)i * 2.0f / 3.0f));
        assert_true(means[i] == (float)want);
    }
    /* The ranks' options: the same, then not. */
    int same = 0;
    assert_ok(srp_dist_same_bytes(d, "--lr 0.1", 8, &same));
    assert_true(same);
    assert_ok(srp_dist_same_bytes(d, g_rank == 0 ? "--lr 0.1" : "--lr 0.2", 8, &same));
    assert_false(same);
    srp_dist_destroy(d);
    srp_linear_destroy(m.l);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size != 2) {
        fprintf(stderr, "test_dist runs on 2 ranks (mpirun -np 2), not %d\n", g_size);
        MPI_Finalize();
        return 1;
    }
    srp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_average_is_the_full_batch_gradient),
        cmocka_unit_test(test_a_failed_rank_stops_every_rank),
        cmocka_unit_test(test_replica_check_and_broadcast),
        cmocka_unit_test(test_create_checks_every_rank),
        cmocka_unit_test(test_metric_reductions),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
