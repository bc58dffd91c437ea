/* LayerNorm, GELU, cross-entropy, residual add and pooling: forwards against
 * double-precision re-implementations of PyTorch's definitions, backwards
 * against central differences of those double forwards. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"

/* Central-difference step for the double forwards: truncation ~h^2, round
 * off ~1e-16/h, both far below the float errors being measured. */
#define FD_H 1e-5

/* max_i |got_i - ref_i| / max_i |ref_i| <= tol; names the worst index. */
static void assert_grad_close(const float *got, const double *ref, size_t n, double tol,
                              const char *what)
{
    double scale = 0.0, worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ref[i]));
    if (scale == 0.0)
        scale = 1.0; /* an all-zero reference: absolute error */
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - ref[i]);
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    if (!(worst <= tol * scale)) {
        print_error("%s: [%zu] got %.9g, expected %.9g (err %.3g of scale %.3g > tol %.3g)\n", what,
                    at, (double)got[at], ref[at], worst / scale, scale, tol);
        fail();
    }
}

/* ======================================================================
 * LayerNorm
 * ====================================================================== */

/* L = sum(r * LN(x; w, b)) */
static double ln_loss(const double *x, const double *w, const double *b, const double *r, size_t n,
                      size_t d, double eps, double *scratch)
{
    ref_layernorm_forward(x, w, b, n, d, eps, scratch);
    return dot_d(scratch, r, n * d);
}

/* dL/dv by central differences, v being x, w or b (perturbed in place). */
static void ln_fd(double *v, size_t len, const double *x, const double *w, const double *b,
                  const double *r, size_t n, size_t d, double eps, double *out)
{
    double *scratch = alloc_d(n * d);
    for (size_t k = 0; k < len; k++) {
        const double keep = v[k];
        v[k] = keep + FD_H;
        const double lp = ln_loss(x, w, b, r, n, d, eps, scratch);
        v[k] = keep - FD_H;
        const double lm = ln_loss(x, w, b, r, n, d, eps, scratch);
        v[k] = keep;
        out[k] = (lp - lm) / (2.0 * FD_H);
    }
    free(scratch);
}

static void check_layernorm(size_t n, size_t d, int affine, float eps, uint64_t seed)
{
    srp_rng rng = seeded_rng(seed);
    float *x = alloc_f(n * d), *y = alloc_f(n * d), *dy = alloc_f(n * d), *dx = alloc_f(n * d);
    float *w = alloc_f(d), *b = alloc_f(d), *dw = alloc_f(d), *db = alloc_f(d);
    float *mean = alloc_f(n), *rstd = alloc_f(n);
    double *xd = alloc_d(n * d), *yd = alloc_d(n * d), *rd = alloc_d(n * d);
    double *wd = alloc_d(d), *bd = alloc_d(d), *fd = alloc_d(n * d);
    fill_normal_f(&rng, x, n * d, 2.0);
    for (size_t i = 0; i < n; i++) /* rows with an offset: the mean matters */
        for (size_t j = 0; j < d; j++)
            x[i * d + j] += (float)(3.0 * (double)i / (double)n - 1.0);
    fill_normal_f(&rng, w, d, 1.0);
    fill_normal_f(&rng, b, d, 1.0);
    fill_normal_f(&rng, dy, n * d, 1.0);
    to_double(x, xd, n * d);
    to_double(w, wd, d);
    to_double(b, bd, d);
    to_double(dy, rd, n * d);
    const float *wp = affine ? w : NULL, *bp = affine ? b : NULL;
    const double *wdp = affine ? wd : NULL, *bdp = affine ? bd : NULL;

    assert_ok(srp_layernorm_forward(x, wp, bp, n, d, eps, y, mean, rstd));
    ref_layernorm_forward(xd, wdp, bdp, n, d, eps, yd);
    assert_grad_close(y, yd, n * d, 2e-6, "layernorm forward");
    for (size_t i = 0; i < n; i++) { /* the saved statistics */
        double r;
        const double m = ref_row_mean(xd + i * d, d, eps, &r);
        assert_close_rel(mean[i], m, 1e-6, 1e-3, "saved mean");
        assert_close_rel(rstd[i], r, 1e-6, 0.0, "saved rstd");
    }

    /* dx is overwritten (start from garbage); dw, db accumulate onto 0.5. */
    for (size_t k = 0; k < n * d; k++)
        dx[k] = 1e6f;
    for (size_t j = 0; j < d; j++)
        dw[j] = db[j] = 0.5f;
    assert_ok(srp_layernorm_backward(x, wp, mean, rstd, dy, n, d, dx, affine ? dw : NULL,
                                     affine ? db : NULL));
    ln_fd(xd, n * d, xd, wdp, bdp, rd, n, d, eps, fd);
    assert_grad_close(dx, fd, n * d, 2e-5, "layernorm dx");
    if (affine) {
        ln_fd(wd, d, xd, wd, bd, rd, n, d, eps, fd);
        for (size_t j = 0; j < d; j++)
            fd[j] += 0.5;
        assert_grad_close(dw, fd, d, 2e-6, "layernorm dweight (+= onto 0.5)");
        ln_fd(bd, d, xd, wd, bd, rd, n, d, eps, fd);
        for (size_t j = 0; j < d; j++)
            fd[j] += 0.5;
        assert_grad_close(db, fd, d, 2e-6, "layernorm dbias (+= onto 0.5)");
    }
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(w);
    free(b);
    free(dw);
    free(db);
    free(mean);
    free(rstd);
    free(xd);
    free(yd);
    free(rd);
    free(wd);
    free(bd);
    free(fd);
}

static void test_layernorm_against_reference_and_fd(void **state)
{
    (void)state;
    check_layernorm(5, 16, 1, 1e-5f, 1);
    check_layernorm(3, 1, 1, 1e-5f, 2);   /* d = 1: y = bias, dx = 0 */
    check_layernorm(4, 130, 1, 1e-5f, 3); /* column blocks of the dweight sum */
    check_layernorm(6, 37, 0, 1e-3f, 4);  /* no scale/shift, larger eps */
    check_layernorm(70, 9, 1, 1e-6f, 5);
}

/* With eps dominating (tiny variance) the eps term must be in rstd. */
static void test_layernorm_eps_and_constant_rows(void **state)
{
    (void)state;
    float x[8] = {1, 1, 1, 1, 2, 2.001f, 2, 1.999f}, y[8], mean[2], rstd[2];
    assert_ok(srp_layernorm_forward(x, NULL, NULL, 2, 4, 1e-5f, y, mean, rstd));
    for (int j = 0; j < 4; j++)
        assert_true(y[j] == 0.0f); /* a constant row: 0, not NaN */
    assert_close_rel(rstd[0], 1.0 / sqrt(1e-5), 1e-6, 0.0, "rstd of a constant row");
    const double v = (1e-6 + 1e-6) / 4.0; /* var of {2, 2.001, 2, 1.999} */
    assert_close_rel(rstd[1], 1.0 / sqrt(v + 1e-5), 1e-3, 0.0, "rstd with eps");
}

static void test_layernorm_aliasing_and_threads(void **state)
{
    (void)state;
    const size_t n = 96, d = 384; /* above the parallel threshold */
    srp_rng rng = seeded_rng(9);
    float *x = alloc_f(n * d), *dy = alloc_f(n * d), *w = alloc_f(d), *b = alloc_f(d);
    float *y1 = alloc_f(n * d), *y2 = alloc_f(n * d), *dx1 = alloc_f(n * d), *dx2 = alloc_f(n * d);
    float dw1[384] = {0}, db1[384] = {0}, dw2[384] = {0}, db2[384] = {0};
    float m1[96], r1[96], m2[96], r2[96];
    fill_normal_f(&rng, x, n * d, 1.0);
    fill_normal_f(&rng, dy, n * d, 1.0);
    fill_normal_f(&rng, w, d, 1.0);
    fill_normal_f(&rng, b, d, 1.0);
    srp_set_num_threads(1);
    assert_ok(srp_layernorm_forward(x, w, b, n, d, 1e-5f, y1, m1, r1));
    assert_ok(srp_layernorm_backward(x, w, m1, r1, dy, n, d, dx1, dw1, db1));
    srp_set_num_threads(2);
    memcpy(y2, x, n * d * sizeof(float)); /* in place: y = x */
    assert_ok(srp_layernorm_forward(y2, w, b, n, d, 1e-5f, y2, m2, r2));
    memcpy(dx2, dy, n * d * sizeof(float)); /* in place: dx = dy */
    assert_ok(srp_layernorm_backward(x, w, m2, r2, dx2, n, d, dx2, dw2, db2));
    assert_memory_equal(y1, y2, n * d * sizeof(float));
    assert_memory_equal(m1, m2, sizeof(m1));
    assert_memory_equal(r1, r2, sizeof(r1));
    assert_memory_equal(dx1, dx2, n * d * sizeof(float));
    assert_memory_equal(dw1, dw2, sizeof(dw1));
    assert_memory_equal(db1, db2, sizeof(db1));
    free(x);
    free(dy);
    free(w);
    free(b);
    free(y1);
    free(y2);
    free(dx1);
    free(dx2);
}

static void test_layernorm_invalid(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, y[4] = {9, 9, 9, 9}, m[1], r[1];
    const float y0[4] = {9, 9, 9, 9};
    const srp_status bad = SRP_ERR_INVALID_ARG;
    assert_status(srp_layernorm_forward(NULL, NULL, NULL, 1, 4, 1e-5f, y, m, r), bad);
    assert_status(srp_layernorm_forward(x, NULL, NULL, 1, 4, 1e-5f, NULL, m, r), bad);
    assert_status(srp_layernorm_forward(x, NULL, NULL, 0, 4, 1e-5f, y, m, r), bad);
    assert_status(srp_layernorm_forward(x, NULL, NULL, 1, 0, 1e-5f, y, m, r), bad);
    assert_status(srp_layernorm_forward(x, NULL, NULL, 1, 4, 0.0f, y, m, r), bad);
    assert_status(srp_layernorm_forward(x, NULL, NULL, 1, 4, NAN, y, m, r), bad);
    assert_status(srp_layernorm_forward(x, NULL, NULL, SIZE_MAX, 4, 1e-5f, y, m, r),
                  SRP_ERR_INVALID_ARG);
    assert_memory_equal(y, y0, sizeof(y));
    assert_status(srp_layernorm_backward(x, NULL, NULL, r, x, 1, 4, y, NULL, NULL), bad);
    assert_status(srp_layernorm_backward(x, NULL, m, NULL, x, 1, 4, y, NULL, NULL), bad);
    assert_status(srp_layernorm_backward(x, NULL, m, r, NULL, 1, 4, y, NULL, NULL), bad);
    assert_status(srp_layernorm_backward(x, NULL, m, r, x, 1, 4, NULL, NULL, NULL), bad);
    assert_status(srp_layernorm_backward(x, NULL, m, r, x, 0, 4, y, NULL, NULL), bad);
    assert_memory_equal(y, y0, sizeof(y));
}

/* ======================================================================
 * GELU
 * ====================================================================== */

/* 0.5 x (1 + erf(x / sqrt 2)), written with erfc(-t) = 1 + erf(t) so that
 * the double reference keeps its digits in the negative tail too. */
static double gelu_d(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }

static void test_gelu_against_erf_and_fd(void **state)
{
    (void)state;
    enum { N = 2001 };
    float *x = alloc_f(N), *y = alloc_f(N), *dy = alloc_f(N), *dx = alloc_f(N);
    double *ref = alloc_d(N);
    srp_rng rng = seeded_rng(21);
    for (size_t i = 0; i < N; i++) /* a grid over [-9, 9], and 0 exactly */
        x[i] = (float)(-9.0 + 18.0 * (double)i / (double)(N - 1));
    fill_normal_f(&rng, dy, N, 1.0);
    assert_ok(srp_gelu_forward(x, N, y));
    for (size_t i = 0; i < N; i++) { /* elementwise relative error: the tails too */
        const double r = gelu_d(x[i]);
        assert_close_rel(y[i], r, 2e-5, 1e-30, "gelu forward");
    }
    assert_true(y[N / 2] == 0.0f);
    assert_ok(srp_gelu_backward(x, dy, N, dx));
    for (size_t i = 0; i < N; i++) {
        const double xi = x[i];
        ref[i] = dy[i] * (gelu_d(xi + FD_H) - gelu_d(xi - FD_H)) / (2.0 * FD_H);
        assert_close_rel(dx[i], ref[i], 2e-5, 1e-12, "gelu backward vs central differences");
    }
    /* in place: y = x, dx = dy */
    float *buf = alloc_f(N);
    memcpy(buf, x, N * sizeof(float));
    assert_ok(srp_gelu_forward(buf, N, buf));
    assert_memory_equal(buf, y, N * sizeof(float));
    memcpy(buf, dy, N * sizeof(float));
    assert_ok(srp_gelu_backward(x, buf, N, buf));
    assert_memory_equal(buf, dx, N * sizeof(float));
    assert_status(srp_gelu_forward(NULL, N, y), SRP_ERR_INVALID_ARG);
    assert_status(srp_gelu_forward(x, 0, y), SRP_ERR_INVALID_ARG);
    assert_status(srp_gelu_backward(x, NULL, N, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_gelu_backward(x, dy, N, NULL), SRP_ERR_INVALID_ARG);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(ref);
    free(buf);
}

/* The backward from the forward's output: against the same differences,
 * on the grid and where y / x is delicate (0, +-1e-30 around the 1e-20
 * guard, small values, and deep in the negative tail). */
static void test_gelu_backward_from_output(void **state)
{
    (void)state;
    enum { GRID = 2001, EXTRA = 14, N = GRID + EXTRA };
    const float extra[EXTRA] = {0.0f,    -0.0f,  1e-30f,  -1e-30f, 1e-20f, -1e-20f, 3e-21f,
                                -3e-21f, 1e-13f, -1e-13f, 1e-6f,   -1e-6f, -13.0f,  -15.0f};
    float *x = alloc_f(N), *y = alloc_f(N), *dy = alloc_f(N), *dx = alloc_f(N), *dx2 = alloc_f(N);
    srp_rng rng = seeded_rng(22);
    for (size_t i = 0; i < GRID; i++)
        x[i] = (float)(-9.0 + 18.0 * (double)i / (double)(GRID - 1));
    memcpy(x + GRID, extra, sizeof(extra));
    fill_normal_f(&rng, dy, N, 1.0);
    assert_ok(srp_gelu_forward(x, N, y));
    assert_ok(srp_gelu_backward_from_output(x, y, dy, N, dx));
    assert_ok(srp_gelu_backward(x, dy, N, dx2));
    for (size_t i = 0; i < N; i++) {
        const double xi = x[i];
        const double h = fabs(xi) < 1e-2 ? 1e-6 : FD_H; /* the series region, finely */
        const double ref = dy[i] * (gelu_d(xi + h) - gelu_d(xi - h)) / (2.0 * h);
        assert_close_rel(dx[i], ref, 2e-5, 1e-12, "gelu backward from output vs differences");
        /* where Phi(x) + x phi(x) cancels (x near -0.75) relative to the
         * terms' size, 0.5 |dy| */
        assert_close_rel(dx[i], dx2[i], 2e-6, 0.5 * fabs(dy[i]),
                         "gelu backward from output vs from input");
    }
    memcpy(dx2, dy, N * sizeof(float)); /* dx may be dy */
    assert_ok(srp_gelu_backward_from_output(x, y, dx2, N, dx2));
    assert_memory_equal(dx2, dx, N * sizeof(float));
    assert_status(srp_gelu_backward_from_output(x, NULL, dy, N, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_gelu_backward_from_output(x, y, dy, 0, dx), SRP_ERR_INVALID_ARG);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(dx2);
}

/* ======================================================================
 * Cross-entropy
 * ====================================================================== */

/* torch.nn.CrossEntropyLoss(label_smoothing=s) written from its definition:
 * log-softmax, then (1 - s) nll + s * mean over classes of -log p. */
static double ce_ref(const double *z, const int *labels, size_t n, size_t c, double s)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double *zi = z + i * c;
        double m = zi[0], sum = 0.0, smooth = 0.0;
        for (size_t k = 1; k < c; k++)
            m = fmax(m, zi[k]);
        for (size_t k = 0; k < c; k++)
            sum += exp(zi[k] - m);
        for (size_t k = 0; k < c; k++)
            smooth += -(zi[k] - m - log(sum));
        const double nll = -(zi[labels[i]] - m - log(sum));
        total += (1.0 - s) * nll + s * smooth / (double)c;
    }
    return total / (double)n;
}

static void check_cross_entropy(size_t n, size_t c, double scale, float s, uint64_t seed)
{
    srp_rng rng = seeded_rng(seed);
    float *z = alloc_f(n * c), *dz = alloc_f(n * c);
    double *zd = alloc_d(n * c), *fd = alloc_d(n * c);
    int *labels = malloc(sizeof(int) * n);
    assert_non_null(labels);
    fill_normal_f(&rng, z, n * c, scale);
    for (size_t i = 0; i < n; i++)
        labels[i] = (int)srp_rng_below(&rng, c);
    to_double(z, zd, n * c);
    float loss = -1.0f;
    assert_ok(srp_cross_entropy_forward(z, labels, n, c, s, &loss));
    assert_close_rel(loss, ce_ref(zd, labels, n, c, s), 2e-6, 1e-3, "cross-entropy forward");
    assert_ok(srp_cross_entropy_backward(z, labels, n, c, s, dz));
    for (size_t k = 0; k < n * c; k++) {
        const double keep = zd[k];
        zd[k] = keep + FD_H;
        const double lp = ce_ref(zd, labels, n, c, s);
        zd[k] = keep - FD_H;
        const double lm = ce_ref(zd, labels, n, c, s);
        zd[k] = keep;
        fd[k] = (lp - lm) / (2.0 * FD_H);
    }
    assert_grad_close(dz, fd, n * c, 1e-5, "cross-entropy dlogits vs central differences");
    free(z);
    free(dz);
    free(zd);
    free(fd);
    free(labels);
}

static void test_cross_entropy_against_reference_and_fd(void **state)
{
    (void)state;
    check_cross_entropy(7, 5, 1.0, 0.0f, 1);
    check_cross_entropy(7, 5, 1.0, 0.1f, 2);
    check_cross_entropy(3, 11, 4.0, 0.3f, 3);
    check_cross_entropy(4, 6, 1.0, 1.0f, 4); /* all smoothing */
    check_cross_entropy(9, 1, 1.0, 0.2f, 5); /* one class: loss 0, gradient 0 */
    check_cross_entropy(2, 40, 10.0, 0.1f, 6);
}

/* Shifting a row by a constant changes nothing; huge logits stay finite. */
static void test_cross_entropy_is_stable(void **state)
{
    (void)state;
    const float z[2 * 3] = {1.0f, -2.0f, 0.5f, 3.0f, 3.0f, -1.0f};
    float big[2 * 3], g_small[6], g_big[6], l_small, l_big;
    const int labels[2] = {1, 2};
    for (int k = 0; k < 6; k++)
        big[k] = z[k] + (k < 3 ? 1e4f : -3e4f);
    for (int si = 0; si < 2; si++) {
        const float s = si ? 0.1f : 0.0f;
        assert_ok(srp_cross_entropy_forward(z, labels, 2, 3, s, &l_small));
        assert_ok(srp_cross_entropy_forward(big, labels, 2, 3, s, &l_big));
        assert_close_rel(l_big, l_small, 1e-5, 0.0, "shifted logits, same loss");
        assert_ok(srp_cross_entropy_backward(z, labels, 2, 3, s, g_small));
        assert_ok(srp_cross_entropy_backward(big, labels, 2, 3, s, g_big));
        for (int k = 0; k < 6; k++)
            assert_close_rel(g_big[k], g_small[k], 1e-3, 1e-3, "shifted logits, same gradient");
    }
    /* A confident wrong answer: loss = 2000 exactly (in double). */
    const float far[2] = {1000.0f, -1000.0f};
    const int one[1] = {1};
    float loss;
    assert_ok(srp_cross_entropy_forward(far, one, 1, 2, 0.0f, &loss));
    assert_close_rel(loss, 2000.0, 1e-7, 0.0, "loss of a confident wrong answer");
}

static void test_cross_entropy_errors_leave_outputs(void **state)
{
    (void)state;
    float z[2 * 3] = {1, 2, 3, 4, 5, 6}, dz[6], loss = 7.0f;
    const float dz0[6] = {8, 8, 8, 8, 8, 8};
    memcpy(dz, dz0, sizeof(dz));
    const int good[2] = {0, 2}, neg[2] = {0, -1}, high[2] = {3, 0};
    size_t correct = 99;
    assert_status(srp_cross_entropy_forward(z, neg, 2, 3, 0.0f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, high, 2, 3, 0.0f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_backward(z, high, 2, 3, 0.0f, dz), SRP_ERR_INVALID_ARG);
    assert_status(srp_accuracy_count(z, neg, 2, 3, &correct), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, good, 2, 3, -0.1f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, good, 2, 3, 1.5f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, good, 2, 3, NAN, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, good, 0, 3, 0.0f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, good, 2, 0, 0.0f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(NULL, good, 2, 3, 0.0f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, NULL, 2, 3, 0.0f, &loss), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_forward(z, good, 2, 3, 0.0f, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_cross_entropy_backward(z, good, 2, 3, 0.0f, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_accuracy_count(z, good, 2, 3, NULL), SRP_ERR_INVALID_ARG);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        z[4] = bad[b];
        if (b != 2) /* -inf on a non-label logit is a legal zero probability */
            assert_status(srp_cross_entropy_forward(z, good, 2, 3, 0.0f, &loss), SRP_ERR_NUMERIC);
        assert_status(srp_cross_entropy_forward(z, good, 2, 3, 0.1f, &loss), SRP_ERR_NUMERIC);
        assert_status(srp_cross_entropy_backward(z, good, 2, 3, 0.1f, dz), SRP_ERR_NUMERIC);
    }
    assert_true(loss == 7.0f);
    assert_true(correct == 99);
    assert_memory_equal(dz, dz0, sizeof(dz));
}

static void test_accuracy_count(void **state)
{
    (void)state;
    /* rows: clear max at 2; a tie between 0 and 1 (first wins); NaN first
     * (never wins, so 1); all equal (0). */
    const float z[4 * 3] = {0.1f, 0.2f, 0.9f, 5.0f, 5.0f, 1.0f, NAN, 2.0f, 1.0f, 3.0f, 3.0f, 3.0f};
    const int right[4] = {2, 0, 1, 0}, wrong[4] = {1, 1, 0, 2}, mixed[4] = {2, 1, 1, 2};
    size_t c = 99;
    assert_ok(srp_accuracy_count(z, right, 4, 3, &c));
    assert_int_equal(c, 4);
    assert_ok(srp_accuracy_count(z, wrong, 4, 3, &c));
    assert_int_equal(c, 0);
    assert_ok(srp_accuracy_count(z, mixed, 4, 3, &c));
    assert_int_equal(c, 2);
}

static void test_cross_entropy_threads_bit_identical(void **state)
{
    (void)state;
    const size_t n = 300, c = 200; /* above the parallel threshold, 64 chunks */
    srp_rng rng = seeded_rng(77);
    float *z = alloc_f(n * c), *g1 = alloc_f(n * c), *g2 = alloc_f(n * c);
    int *labels = malloc(sizeof(int) * n);
    assert_non_null(labels);
    fill_normal_f(&rng, z, n * c, 3.0);
    for (size_t i = 0; i < n; i++)
        labels[i] = (int)srp_rng_below(&rng, c);
    float l1, l2;
    srp_set_num_threads(1);
    assert_ok(srp_cross_entropy_forward(z, labels, n, c, 0.1f, &l1));
    assert_ok(srp_cross_entropy_backward(z, labels, n, c, 0.1f, g1));
    srp_set_num_threads(2);
    assert_ok(srp_cross_entropy_forward(z, labels, n, c, 0.1f, &l2));
    assert_ok(srp_cross_entropy_backward(z, labels, n, c, 0.1f, g2));
    assert_memory_equal(&l1, &l2, sizeof(float));
    assert_memory_equal(g1, g2, n * c * sizeof(float));
    double *zd = alloc_d(n * c);
    to_double(z, zd, n * c);
    assert_close_rel(l1, ce_ref(zd, labels, n, c, 0.1), 2e-6, 0.0, "loss over 300 rows");
    free(z);
    free(g1);
    free(g2);
    free(labels);
    free(zd);
}

/* ======================================================================
 * Residual add, pooling
 * ====================================================================== */

static void test_residual_add_and_accumulate(void **state)
{
    (void)state;
    float x[5] = {1, 2, 3, 4, 5}, r[5] = {0.5f, -2, 1e-3f, 4, -5}, y[5];
    assert_ok(srp_residual_add(x, r, 5, y));
    for (int i = 0; i < 5; i++)
        assert_true(y[i] == x[i] + r[i]);
    assert_ok(srp_residual_add(x, r, 5, x)); /* y = x */
    assert_memory_equal(x, y, sizeof(y));
    float acc[5] = {1, 1, 1, 1, 1};
    assert_ok(srp_accumulate(acc, r, 5));
    for (int i = 0; i < 5; i++)
        assert_true(acc[i] == 1.0f + r[i]);
    assert_status(srp_residual_add(NULL, r, 5, y), SRP_ERR_INVALID_ARG);
    assert_status(srp_residual_add(x, r, 0, y), SRP_ERR_INVALID_ARG);
    assert_status(srp_accumulate(acc, NULL, 5), SRP_ERR_INVALID_ARG);
}

typedef enum { POOL_MEAN, POOL_TOKEN } pool_kind;

/* L = sum(r * pool(x)) in double. x: [B][T][D], r: [B][D] */
static double pool_loss(pool_kind k, const double *x, const double *r, size_t B, size_t T, size_t D,
                        size_t token)
{
    double l = 0.0;
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < D; c++) {
            double v = 0.0;
            if (k == POOL_MEAN) {
                for (size_t t = 0; t < T; t++)
                    v += x[(b * T + t) * D + c];
                v /= (double)T;
            } else {
                v = x[(b * T + token) * D + c];
            }
            l += r[b * D + c] * v;
        }
    return l;
}

static void test_pooling_forward_and_fd(void **state)
{
    (void)state;
    const size_t B = 3, T = 7, D = 70, token = 4; /* D > 64: two column blocks */
    srp_rng rng = seeded_rng(31);
    float *x = alloc_f(B * T * D), *dx = alloc_f(B * T * D), y[3 * 70], dy[3 * 70];
    double *xd = alloc_d(B * T * D), *fd = alloc_d(B * T * D), rd[3 * 70];
    fill_normal_f(&rng, x, B * T * D, 1.0);
    fill_normal_f(&rng, dy, B * D, 1.0);
    to_double(x, xd, B * T * D);
    to_double(dy, rd, B * D);
    for (int k = 0; k < 2; k++) {
        const pool_kind kind = k ? POOL_TOKEN : POOL_MEAN;
        if (kind == POOL_MEAN)
            assert_ok(srp_mean_pool_forward(x, B, T, D, y));
        else
            assert_ok(srp_token_select_forward(x, B, T, D, token, y));
        for (size_t b = 0; b < B; b++)
            for (size_t c = 0; c < D; c++) {
                double v = 0.0;
                for (size_t t = 0; t < T; t++)
                    v += xd[(b * T + t) * D + c];
                const double ref = kind == POOL_MEAN ? v / (double)T : xd[(b * T + token) * D + c];
                assert_close_rel(y[b * D + c], ref, 1e-6, 1e-3, "pool forward");
            }
        for (size_t i = 0; i < B * T * D; i++)
            dx[i] = 1e6f; /* overwritten */
        if (kind == POOL_MEAN)
            assert_ok(srp_mean_pool_backward(dy, B, T, D, dx));
        else
            assert_ok(srp_token_select_backward(dy, B, T, D, token, dx));
        for (size_t i = 0; i < B * T * D; i++) {
            const double keep = xd[i];
            xd[i] = keep + FD_H;
            const double lp = pool_loss(kind, xd, rd, B, T, D, token);
            xd[i] = keep - FD_H;
            const double lm = pool_loss(kind, xd, rd, B, T, D, token);
            xd[i] = keep;
            fd[i] = (lp - lm) / (2.0 * FD_H);
        }
        assert_grad_close(dx, fd, B * T * D, 1e-6, kind == POOL_MEAN ? "mean-pool dx" : "token dx");
    }
    assert_status(srp_token_select_forward(x, B, T, D, T, y), SRP_ERR_INVALID_ARG);
    assert_status(srp_token_select_backward(dy, B, T, D, T, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_mean_pool_forward(x, B, 0, D, y), SRP_ERR_INVALID_ARG);
    assert_status(srp_mean_pool_backward(NULL, B, T, D, dx), SRP_ERR_INVALID_ARG);
    assert_status(srp_mean_pool_forward(x, SIZE_MAX, T, D, y), SRP_ERR_INVALID_ARG);
    free(x);
    free(dx);
    free(xd);
    free(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_against_reference_and_fd),
        cmocka_unit_test(test_layernorm_eps_and_constant_rows),
        cmocka_unit_test(test_layernorm_aliasing_and_threads),
        cmocka_unit_test(test_layernorm_invalid),
        cmocka_unit_test(test_gelu_against_erf_and_fd),
        cmocka_unit_test(test_gelu_backward_from_output),
        cmocka_unit_test(test_cross_entropy_against_reference_and_fd),
        cmocka_unit_test(test_cross_entropy_is_stable),
        cmocka_unit_test(test_cross_entropy_errors_leave_outputs),
        cmocka_unit_test(test_accuracy_count),
        cmocka_unit_test(test_cross_entropy_threads_bit_identical),
        cmocka_unit_test(test_residual_add_and_accumulate),
        cmocka_unit_test(test_pooling_forward_and_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
