/* Token embeddings and the tied head: the lookup and scatter-add exactly,
 * the head against a double reference and central differences, and bad
 * input refused with nothing changed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

static srp_embedding *make(size_t vocab, size_t dim, uint64_t seed)
{
    srp_embedding *e = NULL;
    assert_ok(srp_embedding_create(&e, vocab, dim, 0.5f, seed));
    return e;
}

static void test_lookup_and_scatter_add(void **state)
{
    (void)state;
    enum { V = 7, D = 5, N = 9 };
    srp_embedding *e = make(V, D, 1);
    const uint32_t tokens[N] = {3, 0, 6, 3, 3, 1, 6, 2, 0}; /* repeats add up */
    float x[N * D], dx[N * D];
    assert_ok(srp_embedding_forward(e, tokens, N, x));
    for (size_t i = 0; i < N; i++)
        assert_memory_equal(x + i * D, srp_embedding_weight(e) + tokens[i] * D, sizeof(float) * D);
    srp_rng r = seeded_rng(2);
    fill_normal_f(&r, dx, N * D, 1.0);
    assert_ok(srp_embedding_backward(e, tokens, dx, N));
    assert_ok(srp_embedding_backward(e, tokens, dx, N)); /* accumulates */
    double sums[V * D] = {0};
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < D; k++)
            sums[tokens[i] * D + k] += 2.0 * dx[i * D + k];
    assert_close_to_double(srp_embedding_weight_grad(e), sums, V * D, 1e-6, 0.0, "dE");
    for (size_t k = 0; k < D; k++) /* token 4 and 5 never came: no gradient */
        assert_true(srp_embedding_weight_grad(e)[4 * D + k] == 0.0f &&
                    srp_embedding_weight_grad(e)[5 * D + k] == 0.0f);
    srp_embedding_zero_grad(e);
    for (size_t i = 0; i < V * D; i++)
        assert_true(srp_embedding_weight_grad(e)[i] == 0.0f);
    srp_embedding_destroy(e);
}

/* The tied head's problem for central differences: loss of logits = h E^T. */
typedef struct {
    size_t n, vocab, dim;
    double *e, *h, *r;
} head_problem;

static double head_loss(void *ctx)
{
    const head_problem *P = ctx;
    double *logits = malloc(sizeof(double) * P->n * P->vocab);
    assert_non_null(logits);
    for (size_t i = 0; i < P->n; i++)
        for (size_t v = 0; v < P->vocab; v++)
            logits[i * P->vocab + v] = dot_d(P->h + i * P->dim, P->e + v * P->dim, P->dim);
    const double loss = ref_quadratic_loss(logits, P->r, P->n * P->vocab);
    free(logits);
    return loss;
}

static void test_tied_head_matches_differences(void **state)
{
    (void)state;
    enum { V = 11, D = 6, N = 4 };
    srp_embedding *e = make(V, D, 3);
    srp_rng r = seeded_rng(4);
    float h[N * D], logits[N * V], dlogits[N * V], dh[N * D];
    fill_normal_f(&r, h, N * D, 1.0);
    head_problem P = {N, V, D, malloc(sizeof(double) * V * D), malloc(sizeof(double) * N * D),
                      malloc(sizeof(double) * N * V)};
    assert_true(P.e && P.h && P.r);
    to_double(srp_embedding_weight(e), P.e, V * D);
    to_double(h, P.h, N * D);
    fill_normal_d(&r, P.r, N * V, 1.0);
    assert_ok(srp_embedding_logits(e, h, N, logits));
    double ref[N * V];
    for (size_t i = 0; i < N; i++)
        for (size_t v = 0; v < V; v++)
            ref[i * V + v] = dot_d(P.h + i * D, P.e + v * D, D);
    assert_close_to_double(logits, ref, N * V, 1e-6, 0.0, "tied logits");
    for (size_t i = 0; i < N * V; i++) /* dL/dlogits = logits + r */
        dlogits[i] = logits[i] + (float)P.r[i];
    assert_ok(srp_embedding_logits_backward(e, h, dlogits, N, dh));
    ref_assert_gradient(head_loss, &P, P.e, V * D, srp_embedding_weight_grad(e), 1e-5, 0.0,
                        "head dE");
    ref_assert_gradient(head_loss, &P, P.h, N * D, dh, 1e-5, 0.0, "head dh");
    free(P.e);
    free(P.h);
    free(P.r);
    srp_embedding_destroy(e);
}

static void test_errors_change_nothing(void **state)
{
    (void)state;
    enum { V = 5, D = 3 };
    srp_embedding *e = NULL;
    assert_status(srp_embedding_create(&e, 0, D, 0.5f, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_create(&e, V, 0, 0.5f, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_create(&e, V, D, NAN, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_create(&e, V, D, 0.0f, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_create(NULL, V, D, 0.5f, 1), SRP_ERR_INVALID_ARG);
    assert_null(e);
    e = make(V, D, 5);
    const uint32_t ok[2] = {1, 4}, bad[2] = {1, 5};
    float x[2 * D] = {9, 9, 9, 9, 9, 9}, dx[2 * D] = {1, 2, 3, 4, 5, 6};
    assert_status(srp_embedding_forward(e, bad, 2, x), SRP_ERR_INVALID_ARG);
    for (size_t i = 0; i < 2 * D; i++)
        assert_true(x[i] == 9.0f); /* nothing written */
    assert_status(srp_embedding_forward(e, ok, 0, x), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_forward(NULL, ok, 2, x), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_backward(e, bad, dx, 2), SRP_ERR_INVALID_ARG);
    dx[4] = NAN;
    assert_status(srp_embedding_backward(e, ok, dx, 2), SRP_ERR_NUMERIC);
    float h[2 * D] = {1, 2, 3, 4, 5, 6}, dlogits[2 * V] = {0}, dh[2 * D];
    dlogits[3] = INFINITY;
    assert_status(srp_embedding_logits_backward(e, h, dlogits, 2, dh), SRP_ERR_NUMERIC);
    for (size_t i = 0; i < V * D; i++)
        assert_true(srp_embedding_weight_grad(e)[i] == 0.0f);
    assert_status(srp_embedding_logits(e, NULL, 2, dlogits), SRP_ERR_INVALID_ARG);
    srp_embedding_destroy(e);
    srp_embedding_destroy(NULL);
}

#ifdef SRP_COUNT_ALLOCS
static void test_allocates_nothing(void **state)
{
    (void)state;
    enum { V = 256, D = 64, N = 512 };
    /* The probe: create allocates, so the counter must see it. If it saw
     * nothing here (the interposed malloc not exported from the test
     * binary, so the shared library's calls bypass it), the 0 below would
     * prove nothing. */
    alloc_counter_start();
    srp_embedding *e = make(V, D, 6);
    assert_true(alloc_counter_stop(NULL) > 0);
    uint32_t tokens[N];
    float *x = malloc(sizeof(float) * N * D), *logits = malloc(sizeof(float) * N * V);
    assert_true(x && logits);
    for (size_t i = 0; i < N; i++)
        tokens[i] = (uint32_t)(i * 37 % V);
    assert_ok(srp_embedding_forward(e, tokens, N, x)); /* warm-up */
    assert_ok(srp_embedding_logits(e, x, N, logits));
    assert_ok(srp_embedding_logits_backward(e, x, logits, N, x));
    alloc_counter_start();
    assert_ok(srp_embedding_forward(e, tokens, N, x));
    assert_ok(srp_embedding_logits(e, x, N, logits));
    assert_ok(srp_embedding_logits_backward(e, x, logits, N, x));
    assert_ok(srp_embedding_backward(e, tokens, x, N));
    assert_int_equal(alloc_counter_stop(NULL), 0);
    free(x);
    free(logits);
    srp_embedding_destroy(e);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_and_scatter_add),
        cmocka_unit_test(test_tied_head_matches_differences),
        cmocka_unit_test(test_errors_change_nothing),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_allocates_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
