/* The LayerNorm layer (layernorm.h): its forward and both backwards against
 * the double reference and central differences, the same bits as the
 * kernels it wraps (and as the example models' LayerNorm, whose backward
 * adds into the residual stream through a scratch), the order rule, bad
 * input, its lists, threads, and no allocation after create. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

static srp_layernorm *make(size_t dim, size_t max_rows, float eps)
{
    srp_layernorm_config c = srp_layernorm_config_default(dim);
    c.eps = eps;
    srp_layernorm *ln = NULL;
    assert_ok(srp_layernorm_create(&ln, &c, max_rows));
    return ln;
}

/* weight and bias away from 1 and 0, so that both show in every gradient. */
static void randomize(srp_layernorm *ln, srp_rng *r)
{
    const size_t d = srp_layernorm_dim(ln);
    fill_normal_f(r, srp_layernorm_weight(ln), d, 1.0);
    fill_normal_f(r, srp_layernorm_bias(ln), d, 1.0);
}

/* ---- the double problem central differences differentiate ---- */

typedef struct {
    size_t n, d;
    double eps;
    double *x, *w, *b, *r; /* the loss 0.5 |y|^2 + <r, y> */
} ln_problem;

static double ln_loss(void *ctx)
{
    const ln_problem *P = ctx;
    double *y = alloc_d(P->n * P->d);
    ref_layernorm_forward(P->x, P->w, P->b, P->n, P->d, P->eps, y);
    const double loss = ref_quadratic_loss(y, P->r, P->n * P->d);
    free(y);
    return loss;
}

/* One forward and one backward (add: backward_add onto a known dx) against
 * the reference; the parameter gradients accumulate onto 0.25. */
static void check_against_reference(size_t n, size_t d, float eps, int add, uint64_t seed)
{
    srp_rng r = seeded_rng(seed);
    srp_layernorm *ln = make(d, n + 3, eps);
    randomize(ln, &r);
    float *x = alloc_f(n * d), *y = alloc_f(n * d), *dy = alloc_f(n * d), *dx = alloc_f(n * d);
    float *dx0 = alloc_f(n * d), *yref = alloc_f(n * d);
    fill_normal_f(&r, x, n * d, 2.0);
    for (size_t i = 0; i < n; i++) /* rows with their own offsets: the mean matters */
        for (size_t j = 0; j < d; j++)
            x[i * d + j] += (float)i - 1.5f;
    ln_problem P = {n, d, eps, alloc_d(n * d), alloc_d(d), alloc_d(d), alloc_d(n * d)};
    to_double(x, P.x, n * d);
    to_double(srp_layernorm_weight(ln), P.w, d);
    to_double(srp_layernorm_bias(ln), P.b, d);
    fill_normal_d(&r, P.r, n * d, 1.0);

    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    double *yd = alloc_d(n * d);
    ref_layernorm_forward(P.x, P.w, P.b, n, d, P.eps, yd);
    to_float(yd, yref, n * d);
    assert_close_array_floor(y, yref, n * d, 2e-6, 1.0, "layernorm layer y");

    for (size_t i = 0; i < n * d; i++)
        dy[i] = y[i] + (float)P.r[i];
    for (size_t j = 0; j < d; j++)
        srp_layernorm_weight_grad(ln)[j] = srp_layernorm_bias_grad(ln)[j] = 0.25f;
    fill_normal_f(&r, dx0, n * d, 1.0);
    memcpy(dx, dx0, sizeof(float) * n * d);
    if (add)
        assert_ok(srp_layernorm_layer_backward_add(ln, x, dy, n, dx));
    else
        assert_ok(srp_layernorm_layer_backward(ln, x, dy, n, dx));

    double *g = alloc_d(n * d);
    ref_central_differences(ln_loss, &P, P.x, n * d, g);
    for (size_t i = 0; add && i < n * d; i++)
        g[i] += dx0[i]; /* backward_add keeps what dx held */
    assert_close_to_double(dx, g, n * d, 2e-5, 0.0, add ? "dx (add)" : "dx");
    ref_central_differences(ln_loss, &P, P.w, d, g);
    for (size_t j = 0; j < d; j++)
        g[j] += 0.25;
    assert_close_to_double(srp_layernorm_weight_grad(ln), g, d, 2e-5, 0.0, "dweight");
    ref_central_differences(ln_loss, &P, P.b, d, g);
    for (size_t j = 0; j < d; j++)
        g[j] += 0.25;
    assert_close_to_double(srp_layernorm_bias_grad(ln), g, d, 2e-5, 0.0, "dbias");

    free(g);
    free(yd);
    free(P.x);
    free(P.w);
    free(P.b);
    free(P.r);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(dx0);
    free(yref);
    srp_layernorm_destroy(ln);
}

static void test_against_reference_and_central_differences(void **state)
{
    (void)state;
    for (int add = 0; add < 2; add++) {
        check_against_reference(5, 16, 1e-5f, add, 1);
        check_against_reference(3, 1, 1e-5f, add, 2);   /* d = 1: y = bias, dx = 0 */
        check_against_reference(4, 130, 1e-6f, add, 3); /* column blocks of the dweight sum */
        check_against_reference(9, 7, 1e-3f, add, 4);
    }
}

/* The layer gives the kernels' bits (nn.h): y and the statistics, dx of
 * srp_layernorm_backward, and for backward_add what the example models'
 * LayerNorm computes today: the kernel into a scratch, then srp_accumulate
 * into the stream. Above the parallel threshold, on 1 and 2 threads. */
static void test_same_bits_as_the_kernels(void **state)
{
    (void)state;
    const size_t n = 200, d = 192, nd = n * d;
    srp_rng r = seeded_rng(7);
    srp_layernorm *ln = make(d, n, 1e-6f);
    randomize(ln, &r);
    float *x = alloc_f(nd), *dy = alloc_f(nd), *y = alloc_f(nd), *yk = alloc_f(nd);
    float *dx = alloc_f(nd), *dxk = alloc_f(nd), *stream = alloc_f(nd), *streamk = alloc_f(nd);
    float *scratch = alloc_f(nd), *mean = alloc_f(n), *rstd = alloc_f(n);
    float *dw = alloc_f(d), *db = alloc_f(d);
    fill_normal_f(&r, x, nd, 3.0);
    fill_normal_f(&r, dy, nd, 1.0);
    fill_normal_f(&r, stream, nd, 1.0);
    memcpy(streamk, stream, sizeof(float) * nd);
    const float *w = srp_layernorm_weight(ln), *b = srp_layernorm_bias(ln);
    for (int threads = 1; threads <= 2; threads++) {
        srp_set_num_threads(threads);
        assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
        assert_ok(srp_layernorm_forward(x, w, b, n, d, 1e-6f, yk, mean, rstd));
        assert_memory_equal(y, yk, sizeof(float) * nd);
        assert_memory_equal(srp_layernorm_mean(ln), mean, sizeof(float) * n);
        assert_memory_equal(srp_layernorm_rstd(ln), rstd, sizeof(float) * n);
        assert_ok(srp_layernorm_layer_backward(ln, x, dy, n, dx));
        assert_ok(srp_layernorm_backward(x, w, mean, rstd, dy, n, d, dxk, dw, db));
        assert_memory_equal(dx, dxk, sizeof(float) * nd);

        assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
        assert_ok(srp_layernorm_layer_backward_add(ln, x, dy, n, stream));
        assert_ok(srp_layernorm_backward(x, w, mean, rstd, dy, n, d, scratch, dw, db));
        assert_ok(srp_accumulate(streamk, scratch, nd));
        assert_memory_equal(stream, streamk, sizeof(float) * nd);
        /* the gradients accumulated over the same calls in the same order */
        assert_memory_equal(srp_layernorm_weight_grad(ln), dw, sizeof(float) * d);
        assert_memory_equal(srp_layernorm_bias_grad(ln), db, sizeof(float) * d);
    }
    /* dx may be dy */
    memcpy(dxk, dy, sizeof(float) * nd);
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_EVAL));
    assert_ok(srp_layernorm_layer_backward(ln, x, dxk, n, dxk));
    assert_memory_equal(dx, dxk, sizeof(float) * nd);
    free(x);
    free(dy);
    free(y);
    free(yk);
    free(dx);
    free(dxk);
    free(stream);
    free(streamk);
    free(scratch);
    free(mean);
    free(rstd);
    free(dw);
    free(db);
    srp_layernorm_destroy(ln);
}

static void test_create_and_defaults(void **state)
{
    (void)state;
    srp_layernorm_config c = srp_layernorm_config_default(6);
    assert_int_equal(c.dim, 6);
    assert_true(c.eps == 1e-5f);
    srp_layernorm *ln = make(6, 4, 1e-5f);
    for (size_t j = 0; j < 6; j++) {
        assert_true(srp_layernorm_weight(ln)[j] == 1.0f);
        assert_true(srp_layernorm_bias(ln)[j] == 0.0f);
        assert_true(srp_layernorm_weight_grad(ln)[j] == 0.0f);
        assert_true(srp_layernorm_bias_grad(ln)[j] == 0.0f);
    }
    assert_null(srp_layernorm_mean(ln)); /* before any forward */
    assert_true(srp_layernorm_eps(ln) == 1e-5f);
    srp_layernorm_destroy(ln);

    srp_layernorm *bad = NULL;
    const srp_layernorm_config zero = srp_layernorm_config_default(0);
    assert_status(srp_layernorm_create(&bad, &zero, 4), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_create(&bad, &c, 0), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_create(&bad, &c, SIZE_MAX / 2), SRP_ERR_INVALID_ARG);
    c.eps = 0.0f;
    assert_status(srp_layernorm_create(&bad, &c, 4), SRP_ERR_INVALID_ARG);
    c.eps = INFINITY;
    assert_status(srp_layernorm_create(&bad, &c, 4), SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "eps"));
    assert_status(srp_layernorm_create(&bad, NULL, 4), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_create(NULL, &c, 4), SRP_ERR_INVALID_ARG);
    assert_null(bad);
    srp_layernorm_destroy(NULL);
    srp_layernorm_zero_grad(NULL);
    assert_null(srp_layernorm_weight(NULL));
    assert_int_equal(srp_layernorm_dim(NULL), 0);
}

/* A backward consumes its forward (internal.h's order rule). */
static void test_order_rule(void **state)
{
    (void)state;
    enum { n = 3, d = 5 };
    srp_layernorm *ln = make(d, n, 1e-5f);
    float x[n * d], y[n * d], dy[n * d], dx[n * d], dw[d];
    srp_rng r = seeded_rng(3);
    fill_normal_f(&r, x, n * d, 1.0);
    fill_normal_f(&r, dy, n * d, 1.0);
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n, dx), SRP_ERR_UNSUPPORTED);
    /* a second backward of one forward, and a retry after the refusal */
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    assert_ok(srp_layernorm_layer_backward(ln, x, dy, n, dx));
    memcpy(dw, srp_layernorm_weight_grad(ln), sizeof(dw));
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n, dx), SRP_ERR_ORDER);
    assert_non_null(strstr(srp_last_error_detail(), "srp_layernorm_layer_backward"));
    assert_status(srp_layernorm_layer_backward_add(ln, x, dy, n, dx), SRP_ERR_ORDER);
    assert_memory_equal(srp_layernorm_weight_grad(ln), dw, sizeof(dw));
    /* two training forwards; an eval forward after a training one */
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n, dx), SRP_ERR_ORDER);
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_EVAL));
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n, dx), SRP_ERR_ORDER);
    assert_memory_equal(srp_layernorm_weight_grad(ln), dw, sizeof(dw));
    /* eval forwards alone: the last one is differentiated */
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_EVAL));
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_EVAL));
    assert_ok(srp_layernorm_layer_backward(ln, x, dy, n, dx));
    srp_layernorm_destroy(ln);
}

/* Sizes above the maximum, NaN/Inf: a status, a detail, nothing changed. */
static void test_bad_input(void **state)
{
    (void)state;
    enum { n = 4, d = 6 };
    srp_layernorm *ln = make(d, n, 1e-5f);
    srp_rng r = seeded_rng(5);
    randomize(ln, &r);
    float x[(n + 1) * d], y[(n + 1) * d], dy[n * d], dx[n * d], dx0[n * d], keep[4 * d];
    fill_normal_f(&r, x, (n + 1) * d, 1.0);
    fill_normal_f(&r, dy, n * d, 1.0);
    fill_normal_f(&r, dx0, n * d, 1.0);
    assert_status(srp_layernorm_layer_forward(ln, x, n + 1, y, SRP_TRAIN), SRP_ERR_SHAPE);
    assert_non_null(strstr(srp_last_error_detail(), "max_rows 4"));
    assert_status(srp_layernorm_layer_forward(ln, x, 0, y, SRP_TRAIN), SRP_ERR_SHAPE);
    assert_status(srp_layernorm_layer_forward(NULL, x, n, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_layer_forward(ln, NULL, n, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_layer_forward(ln, x, n, NULL, SRP_TRAIN), SRP_ERR_INVALID_ARG);

    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n - 1, dx), SRP_ERR_SHAPE);
    assert_status(srp_layernorm_layer_backward(ln, x, NULL, n, dx), SRP_ERR_INVALID_ARG);
    /* NaN in dy: no gradient changes, dx_add untouched, and a retry works */
    memcpy(keep, srp_layernorm_weight_grad(ln), sizeof(float) * d);
    memcpy(keep + d, srp_layernorm_bias_grad(ln), sizeof(float) * d);
    dy[7] = NAN;
    memcpy(dx, dx0, sizeof(dx));
    assert_status(srp_layernorm_layer_backward_add(ln, x, dy, n, dx), SRP_ERR_NUMERIC);
    assert_memory_equal(dx, dx0, sizeof(dx));
    dy[7] = INFINITY;
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n, dx), SRP_ERR_NUMERIC);
    assert_non_null(strstr(srp_last_error_detail(), "NaN or Inf"));
    assert_memory_equal(srp_layernorm_weight_grad(ln), keep, sizeof(float) * d);
    assert_memory_equal(srp_layernorm_bias_grad(ln), keep + d, sizeof(float) * d);
    dy[7] = 0.5f;
    assert_ok(srp_layernorm_layer_backward(ln, x, dy, n, dx));

    /* NaN in x or in the weight: SRP_ERR_NUMERIC, the parameters as they
     * were, and no backward until the next good forward */
    memcpy(keep, srp_layernorm_weight(ln), sizeof(float) * d);
    memcpy(keep + d, srp_layernorm_bias(ln), sizeof(float) * d);
    memcpy(keep + 2 * d, srp_layernorm_weight_grad(ln), sizeof(float) * d);
    x[3] = NAN;
    assert_status(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN), SRP_ERR_NUMERIC);
    assert_status(srp_layernorm_layer_backward(ln, x, dy, n, dx), SRP_ERR_UNSUPPORTED);
    x[3] = 1.0f;
    srp_layernorm_bias(ln)[2] = INFINITY;
    assert_status(srp_layernorm_layer_forward(ln, x, n, y, SRP_EVAL), SRP_ERR_NUMERIC);
    srp_layernorm_bias(ln)[2] = keep[d + 2];
    assert_memory_equal(srp_layernorm_weight(ln), keep, sizeof(float) * d);
    assert_memory_equal(srp_layernorm_bias(ln), keep + d, sizeof(float) * d);
    assert_memory_equal(srp_layernorm_weight_grad(ln), keep + 2 * d, sizeof(float) * d);
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
    assert_ok(srp_layernorm_layer_backward(ln, x, dy, n, dx));
    srp_layernorm_destroy(ln);
}

static void test_lists(void **state)
{
    (void)state;
    srp_layernorm *ln = make(5, 2, 1e-5f);
    srp_param_list *params = NULL;
    srp_tensor_list *tensors = NULL;
    assert_ok(srp_param_list_create(&params));
    assert_ok(srp_tensor_list_create(&tensors));
    assert_ok(srp_layernorm_params(ln, "blocks.0.norm1", params));
    assert_ok(srp_layernorm_state_refs(ln, "blocks.0.norm1", tensors));
    assert_int_equal(srp_param_list_count(params), 2);
    const srp_param *p = srp_param_list_entries(params);
    assert_string_equal(p[0].name, "blocks.0.norm1.weight");
    assert_string_equal(p[1].name, "blocks.0.norm1.bias");
    assert_ptr_equal(p[0].data, srp_layernorm_weight(ln));
    assert_ptr_equal(p[0].grad, srp_layernorm_weight_grad(ln));
    assert_ptr_equal(p[1].data, srp_layernorm_bias(ln));
    assert_int_equal(p[1].size, 5);
    assert_int_equal(srp_param_list_kind(params, 0), SRP_PARAM_NORM);
    assert_int_equal(srp_param_list_kind(params, 1), SRP_PARAM_NORM);
    assert_int_equal(srp_tensor_list_count(tensors), 2);
    const srp_tensor_ref *t = srp_tensor_list_refs(tensors);
    assert_string_equal(t[0].name, "blocks.0.norm1.weight");
    assert_string_equal(t[1].name, "blocks.0.norm1.bias");
    assert_int_equal(t[1].shape[0], 5);
    assert_ptr_equal(t[1].data, srp_layernorm_bias(ln));
    /* a name already there */
    assert_status(srp_layernorm_params(ln, "blocks.0.norm1", params), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_params(NULL, "x", params), SRP_ERR_INVALID_ARG);
    assert_status(srp_layernorm_state_refs(ln, "x", NULL), SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(params);
    srp_tensor_list_destroy(tensors);
    srp_layernorm_destroy(ln);
}

#ifdef SRP_COUNT_ALLOCS
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    const size_t n = 256, d = 160;
    srp_layernorm *ln = make(d, n, 1e-5f);
    float *x = alloc_f(n * d), *y = alloc_f(n * d), *dx = alloc_f(n * d);
    srp_rng r = seeded_rng(1);
    fill_normal_f(&r, x, n * d, 1.0);
    assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN)); /* warm-up: the thread pool */
    assert_ok(srp_layernorm_layer_backward(ln, x, y, n, dx));
    alloc_counter_start();
    for (int it = 0; it < 3; it++) {
        assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
        assert_ok(srp_layernorm_layer_backward(ln, x, y, n, dx));
        assert_ok(srp_layernorm_layer_forward(ln, x, n, y, SRP_TRAIN));
        assert_ok(srp_layernorm_layer_backward_add(ln, x, y, n, dx));
    }
    assert_int_equal(alloc_counter_stop(NULL), 0);
    free(x);
    free(y);
    free(dx);
    srp_layernorm_destroy(ln);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference_and_central_differences),
        cmocka_unit_test(test_same_bits_as_the_kernels),
        cmocka_unit_test(test_create_and_defaults),
        cmocka_unit_test(test_order_rule),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_lists),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
