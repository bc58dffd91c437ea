/* Multi-head attention: a double-precision reference of the whole module,
 * central finite differences, the entropy figures, the Theorem 3.1 bound,
 * and fixtures from a PyTorch re-implementation (timm attention with the
 * official SNLinear, tests/reference/gen_attention_fixtures.py). */
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

/* The module in the double reference with its input and the loss weights:
 * what central differences differentiate. */
typedef struct {
    ref_attention att;
    double *x, *r; /* [B][T][D] */
} attention_problem;

static double attention_loss(void *ctx)
{
    const attention_problem *P = ctx;
    const size_t m = P->att.B * P->att.T * P->att.D;
    double *y = malloc(sizeof(double) * m);
    assert_non_null(y);
    ref_attention_forward(&P->att, P->x, y, NULL);
    const double loss = ref_quadratic_loss(y, P->r, m);
    free(y);
    return loss;
}

/* ---------------- helpers ---------------- */

typedef struct {
    size_t B, T, D, H;
    int causal;
    srp_qkv_sigma qkv_sigma; /* 0 in the initializers below: FUSED */
} attn_shape;

static srp_attention *make(const attn_shape *s, uint64_t seed)
{
    srp_attention_config c = srp_attention_config_default(s->D, s->H);
    c.causal = s->causal;
    c.qkv_sigma = s->qkv_sigma;
    c.seed = seed;
    srp_attention *a = NULL;
    assert_ok(srp_attention_create(&a, &c, s->B, s->T));
    return a;
}

/* O(1) weights, biases, and gamma != sigma, so that every term shows. */
static void randomize_linear(srp_linear *l, srp_rng *r, double wscale, float gamma)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    fill_normal_f(r, srp_linear_weight(l), in * out, wscale);
    assert_ok(srp_linear_reinit_sigma(l));
    fill_normal_f(r, srp_linear_bias(l), out, 0.2);
    *srp_linear_gamma(l) = gamma;
}

/* randomize_linear on every input projection, gamma scaled a little apart
 * between them so that sharing a sigma or not shows. */
static void randomize_inputs(srp_attention *a, srp_rng *r, double wscale, float gamma)
{
    for (size_t i = 0; i < srp_attention_in_proj_count(a); i++)
        randomize_linear(srp_attention_in_proj(a, i, NULL), r, wscale,
                         gamma * (1.0f + 0.3f * (float)i));
}

/* Where q's (part 0) or k's (part 1) weight rows [D][D] and bias [D] are,
 * in whichever input projection holds columns part * D.. of the
 * [q | k | v] row, and that projection's gamma / sigma. */
static void qk_part(srp_attention *a, size_t part, float **w, float **bias, double *scale)
{
    const size_t D = srp_attention_dim(a);
    size_t col = 0, i = 0;
    srp_linear *l = srp_attention_in_proj(a, 0, NULL);
    while (col + srp_linear_out_features(l) <= part * D) {
        col += srp_linear_out_features(l);
        l = srp_attention_in_proj(a, ++i, NULL);
    }
    *w = srp_linear_weight(l) + (part * D - col) * D;
    *bias = srp_linear_bias(l) + (part * D - col);
    *scale = *srp_linear_gamma(l) / srp_linear_sigma(l);
}

/* The module as its next forward on x will compute it; r = 0. */
static void problem_init(attention_problem *P, srp_attention *a, const attn_shape *s,
                         const float *x)
{
    const size_t n = s->B * s->T * s->D;
    ref_attention_init(&P->att, a, s->B, s->T, s->causal);
    P->x = malloc(sizeof(double) * n);
    P->r = calloc(n, sizeof(double));
    assert_true(P->x && P->r);
    to_double(x, P->x, n);
}

static void problem_free(attention_problem *P)
{
    ref_attention_free(&P->att);
    free(P->x);
    free(P->r);
}

static const attn_shape k_shapes[] = {
    {2, 5, 8, 2, 0, SRP_QKV_SIGMA_FUSED},   {2, 5, 8, 2, 1, SRP_QKV_SIGMA_FUSED},
    {3, 4, 6, 1, 0, SRP_QKV_SIGMA_FUSED},   {2, 1, 8, 4, 0, SRP_QKV_SIGMA_FUSED},
    {2, 1, 8, 4, 1, SRP_QKV_SIGMA_FUSED},   {4, 17, 12, 3, 1, SRP_QKV_SIGMA_FUSED},
    {2, 70, 16, 4, 0, SRP_QKV_SIGMA_FUSED}, {1, 300, 8, 2, 0, SRP_QKV_SIGMA_FUSED},
    {1, 300, 8, 2, 1, SRP_QKV_SIGMA_FUSED}, /* long rows */
};

/* ---------------- tests ---------------- */

static void test_forward_and_entropy_match_reference(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(11);
    for (size_t kv = 0; kv < 3 * sizeof(k_shapes) / sizeof(k_shapes[0]); kv++) {
        const size_t k = kv / 3; /* every shape with each way of sharing sigma */
        attn_shape s = k_shapes[k];
        s.qkv_sigma = (srp_qkv_sigma)(kv % 3);
        const size_t n = s.B * s.T * s.D;
        srp_attention *a = make(&s, k);
        randomize_inputs(a, &r, 0.5, 3.0f);
        randomize_linear(srp_attention_proj(a), &r, 0.5, 1.5f);
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        double *yd = malloc(sizeof(double) * n), *ent = malloc(sizeof(double) * s.B * s.H * s.T);
        float *yref = malloc(sizeof(float) * n);
        assert_true(x && y && yd && ent && yref);
        fill_normal_f(&r, x, n, 1.0);
        attention_problem P;
        problem_init(&P, a, &s, x);
        assert_ok(srp_attention_forward(a, x, s.B, s.T, y, SRP_TRAIN));
        ref_attention_forward(&P.att, P.x, yd, ent);
        to_float(yd, yref, n);
        assert_close_array(y, yref, n, 2e-5, "attention y");

        float mean[4], min[4], nmean[4], nmin[4];
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_ok(srp_attention_entropy_normalized(a, nmean, nmin));
        for (size_t h = 0; h < s.H; h++) {
            double sum = 0.0, lo = INFINITY, nsum = 0.0, nlo = INFINITY;
            size_t nrows = 0;
            for (size_t b = 0; b < s.B; b++)
                for (size_t i = 0; i < s.T; i++) {
                    const double e = ent[(b * s.H + h) * s.T + i];
                    const size_t keys = s.causal ? i + 1 : s.T;
                    sum += e;
                    lo = fmin(lo, e);
                    if (keys >= 2) {
                        nsum += e / log((double)keys);
                        nlo = fmin(nlo, e / log((double)keys));
                        nrows++;
                    }
                }
            assert_close_rel(mean[h], sum / (double)(s.B * s.T), 1e-5, 1e-2, "mean entropy");
            /* A near one-hot row's entropy is a difference of tiny terms: its
             * float rounding is ~1e-7 nats whatever its size, so the minima are
             * judged at a floor of 0.1 nats (0.1 of uniform), i.e. to 1e-6. */
            assert_close_rel(min[h], lo, 1e-5, 1e-1, "min entropy");
            assert_true(min[h] <= mean[h]);
            assert_close_rel(nmean[h], nrows ? nsum / (double)nrows : 1.0, 1e-5, 1e-2,
                             "normalized mean entropy");
            assert_close_rel(nmin[h], nrows ? nlo : 1.0, 1e-5, 1e-1, "normalized min entropy");
        }
        problem_free(&P);
        free(x);
        free(y);
        free(yd);
        free(ent);
        free(yref);
        srp_attention_destroy(a);
    }
}

/* A module of shape s (make's seed), randomized, after a training forward
 * on random x and the backward of the test loss 0.5 |y|^2 + <r, y>
 * (dy = y + r, r random); P: the double reference of the module as that
 * forward saw it. x, y, dy, dx: [B][T][D]. */
typedef struct {
    srp_attention *a;
    attention_problem P;
    float *x, *y, *dy, *dx;
} loss_step;

static void loss_step_run(loss_step *t, const attn_shape *s, uint64_t seed, srp_rng *r)
{
    const size_t n = s->B * s->T * s->D;
    t->a = make(s, seed);
    randomize_inputs(t->a, r, 0.5, 3.0f);
    randomize_linear(srp_attention_proj(t->a), r, 0.5, 1.5f);
    t->x = alloc_f(4 * n); /* one buffer for the four */
    t->y = t->x + n;
    t->dy = t->y + n;
    t->dx = t->dy + n;
    fill_normal_f(r, t->x, n, 1.0);
    problem_init(&t->P, t->a, s, t->x);
    fill_normal_d(r, t->P.r, n, 1.0);
    assert_ok(srp_attention_forward(t->a, t->x, s->B, s->T, t->y, SRP_TRAIN));
    for (size_t i = 0; i < n; i++)
        t->dy[i] = t->y[i] + (float)t->P.r[i];
    assert_ok(srp_attention_backward(t->a, t->dy, t->dx));
}

static void loss_step_free(loss_step *t)
{
    problem_free(&t->P);
    free(t->x);
    srp_attention_destroy(t->a);
}

/* Central differences on a sample of entries (a full check of every entry
 * is too slow at T = 300), against the analytic gradient, relative to its
 * largest entry. */
static void check_sampled(attention_problem *P, double *p, const float *analytic, size_t count,
                          srp_rng *r, double tol, const char *what)
{
    double scale = 0.0;
    for (size_t i = 0; i < count; i++)
        scale = fmax(scale, fabs(analytic[i]));
    for (int k = 0; k < 24; k++) {
        const size_t i = (size_t)srp_rng_below(r, count);
        double g;
        ref_central_differences(attention_loss, P, p + i, 1, &g);
        if (!(fabs(analytic[i] - g) <= tol * scale)) {
            print_error("%s[%zu]: analytic %.8g, finite differences %.8g (scale %.3g)\n", what, i,
                        analytic[i], g, scale);
            fail();
        }
    }
}

/* Long sequences (T = 300), causal and not, checked on sampled entries. */
static void test_backward_of_long_sequences(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(23);
    for (size_t k = 7; k < 9; k++) {
        const attn_shape s = k_shapes[k];
        loss_step t;
        loss_step_run(&t, &s, 200 + k, &r);
        check_sampled(&t.P, t.P.x, t.dx, s.B * s.T * s.D, &r, 1e-4, "T = 300 dx");
        check_sampled(&t.P, t.P.att.in_proj[0].w, srp_linear_weight_grad(srp_attention_qkv(t.a)),
                      3 * s.D * s.D, &r, 1e-4, "T = 300 qkv dW");
        loss_step_free(&t);
    }
}

static void test_backward_matches_finite_differences(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(22);
    const double tol = 1e-4;
    for (size_t kv = 0; kv < 3 * 6; kv++) { /* the small shapes, each way of sharing sigma */
        const size_t k = kv / 3;
        attn_shape s = k_shapes[k];
        s.qkv_sigma = (srp_qkv_sigma)(kv % 3);
        loss_step t;
        loss_step_run(&t, &s, 100 + k, &r);
        ref_assert_gradient(attention_loss, &t.P, t.P.x, s.B * s.T * s.D, t.dx, tol, 0.0,
                            "attention dx");
        for (size_t i = 0; i < t.P.att.n_in; i++) {
            const char *name;
            srp_linear *l = srp_attention_in_proj(t.a, i, &name);
            ref_assert_linear_gradients(attention_loss, &t.P, &t.P.att.in_proj[i], l, tol, 0.0,
                                        name);
        }
        ref_assert_linear_gradients(attention_loss, &t.P, &t.P.att.proj, srp_attention_proj(t.a),
                                    tol, 0.0, "proj");
        loss_step_free(&t);
    }
}

/* Sets the qkv so that q = c (1, 1) for every token (bias only) and k_j is
 * W_k x_j: with scale gamma/sigma = 1. D = 2, H = 1. */
static void set_qk(srp_attention *a, const float *w_k, const float *b_q)
{
    srp_linear *qkv = srp_attention_qkv(a);
    float *w = srp_linear_weight(qkv), *b = srp_linear_bias(qkv);
    memset(w, 0, sizeof(float) * 6 * 2);
    memset(b, 0, sizeof(float) * 6);
    memcpy(w + 2 * 2, w_k, sizeof(float) * 4); /* rows 2, 3: k */
    w[4 * 2 + 0] = 1.0f;                       /* rows 4, 5: v = x */
    w[5 * 2 + 1] = 1.0f;
    b[0] = b_q[0];
    b[1] = b_q[1];
    assert_ok(srp_linear_reinit_sigma(qkv));
    *srp_linear_gamma(qkv) = srp_linear_sigma(qkv);
}

static void test_entropy_extremes(void **state)
{
    (void)state;
    enum { T = 9 };
    float x[T * 2], y[T * 2], mean, min, nmean, nmin;
    for (size_t t = 0; t < T; t++) {
        x[2 * t] = t == 0 ? 1.0f : 0.0f;
        x[2 * t + 1] = t == 0 ? 0.0f : 1.0f;
    }
    for (int causal = 0; causal < 2; causal++) {
        const attn_shape s = {1, T, 2, 1, causal, SRP_QKV_SIGMA_FUSED};
        srp_attention *a = make(&s, 5);
        /* Uniform logits (q = k = 0): every row has entropy log(keys). */
        const float zero_k[4] = {0, 0, 0, 0}, zero_b[2] = {0, 0};
        set_qk(a, zero_k, zero_b);
        assert_ok(srp_attention_forward(a, x, 1, T, y, SRP_EVAL));
        assert_ok(srp_attention_entropy(a, &mean, &min));
        assert_ok(srp_attention_entropy_normalized(a, &nmean, &nmin));
        if (!causal) {
            assert_close_rel(mean, log((double)T), 1e-6, 0.0, "uniform: mean = log T");
            assert_close_rel(min, log((double)T), 1e-6, 0.0, "uniform: min = log T");
        } else {
            double expect = 0.0;
            for (size_t i = 1; i <= T; i++)
                expect += log((double)i);
            assert_close_rel(mean, expect / T, 1e-6, 0.0, "causal uniform mean");
            assert_true(min == 0.0f); /* the first query sees one key */
        }
        assert_close_rel(nmean, 1.0, 1e-6, 0.0, "uniform: normalized mean = 1");
        assert_close_rel(nmin, 1.0, 1e-6, 0.0, "uniform: normalized min = 1");

        /* Near one-hot: every query puts logit 100 on key 0, 0 elsewhere. */
        const float k_first[4] = {1, 0, 0, 0};
        const float c = (float)(100.0 * sqrt(2.0));
        const float b_q[2] = {c, c};
        set_qk(a, k_first, b_q);
        assert_ok(srp_attention_forward(a, x, 1, T, y, SRP_EVAL));
        assert_ok(srp_attention_entropy(a, &mean, &min));
        assert_true(mean >= 0.0f && mean < 1e-6f);
        assert_true(min >= 0.0f && min <= mean);
        /* and the output is then v of key 0 = x_0 for every query */
        for (size_t t = 0; t < T; t++) {
            assert_close_rel(y[2 * t], y[0], 1e-6, 1.0, "one-hot output");
            assert_close_rel(y[2 * t + 1], y[1], 1e-6, 1.0, "one-hot output");
        }
        srp_attention_destroy(a);
    }
}

/* The margin srp_attention_entropy_bound takes for the float softmax of T
 * keys below a bound f (entropy.c): gamma_{2T+32} (1 + f). */
static double softmax_margin(size_t T, double f)
{
    const double k = (2.0 * (double)T + 32.0) * 0x1p-24;
    return k / (1.0 - k) * (1.0 + f);
}

/* Theorem 3.1's bound against the entropies it bounds, on random modules
 * with weights from tiny to large, so that entropies range over [0, log T]:
 * the minimum row entropy for full attention, the mean for causal. */
static void test_bound_never_exceeds_measured_entropy(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(33);
    int cases = 0, tight = 0;
    for (int trial = 0; trial < 300; trial++) {
        attn_shape s;
        s.H = 1 + srp_rng_below(&r, 3);
        s.D = s.H * (1 + srp_rng_below(&r, 6));
        s.T = 2 + srp_rng_below(&r, 24);
        s.B = 1 + srp_rng_below(&r, 3);
        s.causal = (trial / 3) % 2;
        s.qkv_sigma = (srp_qkv_sigma)(trial % 3);
        srp_attention *a = make(&s, (uint64_t)trial);
        /* gamma from 0.0003 (s near 0: the bound is log T to within float
         * rounding, the case that needs the margins) to 55 */
        const double gamma = exp(srp_rng_uniform(&r) * 12.0 - 8.0);
        randomize_inputs(a, &r, 1.0, (float)gamma);
        if (trial % 4 == 3) {
            /* A key bias up to 1e6: each row's logits shifted by q . b_k,
             * which the bound leaves out but the float logits carry, with
             * a rounding error that grows with it. */
            float *w, *b_k;
            double scale;
            qk_part(a, 1, &w, &b_k, &scale);
            const float grow = (float)exp(srp_rng_uniform(&r) * log(5e6));
            for (size_t i = 0; i < s.D; i++)
                b_k[i] *= grow;
        }
        const size_t n = s.B * s.T * s.D;
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        assert_true(x && y);
        fill_normal_f(&r, x, n, exp(srp_rng_uniform(&r) * 3.0 - 1.5));
        assert_ok(srp_attention_forward(a, x, s.B, s.T, y, SRP_EVAL));
        float mean[3], min[3], bound[3];
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_ok(srp_attention_entropy_bound(a, bound));
        for (size_t h = 0; h < s.H; h++) {
            const float bounded = s.causal ? mean[h] : min[h];
            assert_true(bound[h] >= 0.0f && bound[h] <= log((double)s.T) + 1e-6);
            if (!(bound[h] <= bounded)) { /* no slack: the bound accounts for rounding */
                print_error("trial %d head %zu: bound %.7g above %s entropy %.7g\n", trial, h,
                            bound[h], s.causal ? "mean" : "min", bounded);
                fail();
            }
            tight += bound[h] > 0.1f * bounded && bound[h] > 0.01f;
            cases++;
        }
        free(x);
        free(y);
        srp_attention_destroy(a);
    }
    assert_true(cases >= 300);
    assert_true(tight > 0); /* the bound is not trivially 0 everywhere */
}

static void test_bound_edge_values(void **state)
{
    (void)state;
    /* s = 0 gives log T; T = 1 gives 0; a negative or NaN s is no bound. */
    for (size_t T = 2; T < 2000; T = T * 3 + 1)
        assert_close_rel(srp_entropy_lower_bound(0.0, T), log((double)T), 1e-12, 0.0, "s = 0");
    assert_true(srp_entropy_lower_bound(3.0, 1) == 0.0);
    assert_true(isnan(srp_entropy_lower_bound(-1.0, 5)));
    assert_true(isnan(srp_entropy_lower_bound(NAN, 5)));
    assert_true(srp_entropy_lower_bound(INFINITY, 5) == 0.0);

    /* The bound is attained by the spike row z_1 = s sqrt((T-1)/T),
     * z_j = -s / sqrt(T(T-1)): compare with that row's entropy. */
    const double svals[] = {0.01, 0.5, 1.0, 3.0, 10.0, 40.0};
    const size_t tvals[] = {2, 3, 10, 50, 197, 1024};
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 6; j++) {
            const double s = svals[i], T = (double)tvals[j];
            const double z1 = s * sqrt((T - 1.0) / T), zj = -s / sqrt(T * (T - 1.0));
            const double ej = exp(zj - z1), Z = 1.0 + (T - 1.0) * ej;
            const double p1 = 1.0 / Z, pj = ej / Z;
            double h = -p1 * log(p1);
            if (pj > 0.0)
                h -= (T - 1.0) * pj * log(pj);
            assert_close_rel(srp_entropy_lower_bound(s, tvals[j]), h, 1e-6, 1e-6, "spike row");
        }

    /* M = 0 (no query weights or bias): the bound is log T. */
    const attn_shape sh = {2, 6, 4, 2, 0, SRP_QKV_SIGMA_FUSED};
    srp_attention *a = make(&sh, 8);
    srp_linear *qkv = srp_attention_qkv(a);
    srp_rng r = seeded_rng(44);
    randomize_linear(qkv, &r, 1.0, 2.0f);
    memset(srp_linear_weight(qkv), 0, sizeof(float) * 4 * 4); /* q rows */
    memset(srp_linear_bias(qkv), 0, sizeof(float) * 4);
    float x[2 * 6 * 4], y[2 * 6 * 4], bound[2];
    fill_normal_f(&r, x, 48, 1.0);
    assert_ok(srp_attention_forward(a, x, 2, 6, y, SRP_EVAL));
    assert_ok(srp_attention_entropy_bound(a, bound));
    for (int h = 0; h < 2; h++) { /* log T, lowered by the softmax margin only */
        assert_true(bound[h] <= log(6.0));
        assert_true(bound[h] >= log(6.0) - softmax_margin(6, log(6.0)) - 1e-7);
    }
    srp_attention_destroy(a);
}

/* The bound from an independent route: form M_h and X~ explicitly and take
 * their norms with the exact SVD. */
static void test_bound_matches_explicit_norms(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(55);
    const attn_shape shapes[] = {{3, 7, 6, 2, 0, SRP_QKV_SIGMA_FUSED},
                                 {2, 30, 8, 4, 0, SRP_QKV_SIGMA_QK_V},
                                 {1, 5, 12, 3, 0, SRP_QKV_SIGMA_SEPARATE},
                                 {2, 9, 8, 2, 1, SRP_QKV_SIGMA_FUSED}};
    for (size_t k = 0; k < 4; k++) {
        const attn_shape s = shapes[k];
        const size_t D = s.D, T = s.T, dh = D / s.H, n = s.B * T * D, c = D + 1;
        srp_attention *a = make(&s, 60 + k);
        randomize_inputs(a, &r, 1.0, 1.3f);
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        float *xt = malloc(sizeof(float) * T * c), *m = malloc(sizeof(float) * c * c);
        double *mq = malloc(sizeof(double) * dh * c), *mk = malloc(sizeof(double) * dh * c);
        assert_true(x && y && xt && m && mq && mk);
        fill_normal_f(&r, x, n, 0.7);
        assert_ok(srp_attention_forward(a, x, s.B, T, y, SRP_EVAL));
        float bound[4], s_h[4], m_h[4], x_gram, bound_short[4];
        assert_ok(srp_attention_entropy_bound_terms(a, bound, s_h, m_h, &x_gram));
        assert_ok(srp_attention_entropy_bound(a, bound_short));
        assert_memory_equal(bound, bound_short, sizeof(float) * s.H);

        double x_norm2 = 0.0;
        for (size_t b = 0; b < s.B; b++) {
            for (size_t t = 0; t < T; t++) {
                memcpy(xt + t * c, x + (b * T + t) * D, sizeof(float) * D);
                xt[t * c + D] = 1.0f;
            }
            float sx;
            assert_ok(srp_spectral_norm_exact(xt, T, c, &sx));
            x_norm2 = fmax(x_norm2, (double)sx * sx);
        }
        assert_close_rel(x_gram, x_norm2, 1e-5, 0.0, "max ||X~ X~^T||");
        assert_true(x_gram >= x_norm2 * (1.0 - 1e-6));
        float *w[2], *bias[2];
        double scale[2];
        for (size_t part = 0; part < 2; part++)
            qk_part(a, part, &w[part], &bias[part], &scale[part]);
        for (size_t h = 0; h < s.H; h++) {
            for (size_t row = 0; row < dh; row++) {
                for (size_t d = 0; d < D; d++) {
                    mq[row * c + d] = scale[0] * w[0][(h * dh + row) * D + d];
                    mk[row * c + d] = scale[1] * w[1][(h * dh + row) * D + d];
                }
                mq[row * c + D] = bias[0][h * dh + row];
                mk[row * c + D] = 0.0; /* the key bias only shifts each row */
            }
            for (size_t i = 0; i < c; i++) /* M = Q~^T K~ / sqrt(dh) */
                for (size_t j = 0; j < c; j++) {
                    double acc = 0.0;
                    for (size_t row = 0; row < dh; row++)
                        acc += mq[row * c + i] * mk[row * c + j];
                    m[i * c + j] = (float)(acc / sqrt((double)dh));
                }
            float sm;
            assert_ok(srp_spectral_norm_exact(m, c, c, &sm));
            /* The terms: upper bounds, within the eigensolver's error (and
             * this route's float SVD) of the exact norms. */
            assert_close_rel(m_h[h], sm, 1e-5, 0.0, "||M_h||");
            assert_true(m_h[h] >= sm * (1.0 - 1e-6));
            assert_close_rel(s_h[h], (double)m_h[h] * x_gram, 1e-6, 0.0, "s = ||M|| ||X~ X~^T||");
            /* Theorem 3.1 with the exact norms (causal: the mean over rows
             * of k = 1..T keys), minus the documented margins: at most the
             * softmax's, plus 1e-4 relative for the logits' rounding and
             * this route's float SVD. */
            double expect = 0.0;
            if (s.causal) {
                for (size_t keys = 1; keys <= T; keys++)
                    expect += srp_entropy_lower_bound(sm * x_norm2, keys) / (double)T;
            } else {
                expect = srp_entropy_lower_bound(sm * x_norm2, T);
            }
            const double below = expect - bound[h];
            if (!(below >= -1e-5 * expect && below <= 1e-4 * expect + softmax_margin(T, expect))) {
                print_error("shape %zu head %zu: bound %.9g, explicit norms give %.9g\n", k, h,
                            bound[h], expect);
                fail();
            }
        }
        free(x);
        free(y);
        free(xt);
        free(m);
        free(mq);
        free(mk);
        srp_attention_destroy(a);
    }
}

/* The key bias adds q_i . b_k / sqrt(dh) to every logit of row i, which
 * the softmax ignores: a large one leaves the attention near uniform, and
 * the bound near log T (with it in K~, s was 78 here and the bound 0).
 * ||M_h|| and s do not depend on it at all. */
static void test_key_bias_does_not_loosen_the_bound(void **state)
{
    (void)state;
    for (int causal = 0; causal < 2; causal++) {
        const attn_shape sh = {2, 7, 8, 2, causal, SRP_QKV_SIGMA_FUSED};
        srp_attention *a = make(&sh, 12);
        srp_rng r = seeded_rng(13);
        randomize_inputs(a, &r, 1.0, 0.01f); /* small logits, b_q ~ 0.2 */
        float x[2 * 7 * 8], y[2 * 7 * 8], *w, *b_k;
        double scale;
        fill_normal_f(&r, x, 112, 1.0);
        qk_part(a, 1, &w, &b_k, &scale);
        float bound[2][2], s_h[2][2], m_h[2][2], x_gram[2], mean[2], min[2];
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            for (size_t i = 0; i < 8; i++) /* -20, 10, 40, ... */
                b_k[i] = with_bias ? 30.0f * (float)(i % 3) - 20.0f : 0.0f;
            assert_ok(srp_attention_forward(a, x, 2, 7, y, SRP_EVAL));
            assert_ok(srp_attention_entropy_bound_terms(a, bound[with_bias], s_h[with_bias],
                                                        m_h[with_bias], &x_gram[with_bias]));
            assert_ok(srp_attention_entropy(a, mean, min));
            for (size_t h = 0; h < 2; h++) {
                const double uniform = causal ? mean[h] : log(7.0);
                assert_true(bound[with_bias][h] <= (causal ? mean[h] : min[h]));
                assert_true(bound[with_bias][h] > 0.95 * uniform);
            }
        }
        assert_memory_equal(m_h[0], m_h[1], sizeof m_h[0]);
        assert_memory_equal(s_h[0], s_h[1], sizeof s_h[0]);
        assert_true(x_gram[0] == x_gram[1]);
        /* Every output is optional. */
        assert_ok(srp_attention_entropy_bound_terms(a, NULL, NULL, NULL, NULL));
        assert_ok(srp_attention_entropy_bound_terms(a, NULL, s_h[0], NULL, NULL));
        assert_memory_equal(s_h[0], s_h[1], sizeof s_h[0]);
        srp_attention_destroy(a);
    }
}

/* A logit of -Inf (q . k overflowing) with a finite row maximum, or a key
 * of -Inf: the forward succeeds with a finite y, and the row's entropy is
 * that of its other keys (the zero-probability term adds 0), not
 * 0 * -Inf = NaN. The bound is then 0, and no error. */
static void test_minus_infinite_logit_gives_a_finite_entropy(void **state)
{
    (void)state;
    /* D = 2, one head: per token x = (x0, x1), q = g (x1, 0),
     * k = g (x0, 0), v = g (0, x1), through the fused qkv (rows 0-1 q,
     * 2-3 k, 4-5 v) with g in W and gamma = sigma. Tokens (0.1, 10),
     * (0.2, 10) and (-3e38, 10): every row's logits are g^2 [0.71, 1.41,
     * -Inf] (q . k overflows; at g = 2 the third key is -Inf itself). g is
     * in W, not in gamma: a GEMM may apply its scale to x before the
     * product (oneDNN's AVX-512 kernels do), and g x0 = -Inf times W's 0
     * would make q and v NaN, an overflow the forward rightly refuses. */
    const float x[6] = {0.1f, 10.0f, 0.2f, 10.0f, -3e38f, 10.0f};
    for (int causal = 0; causal < 2; causal++)
        for (int g = 1; g <= 2; g++) {
            const attn_shape sh = {1, 3, 2, 1, causal, SRP_QKV_SIGMA_FUSED};
            srp_attention *a = make(&sh, 14);
            srp_linear *qkv = srp_attention_qkv(a);
            float *w = srp_linear_weight(qkv), y[6];
            memset(w, 0, sizeof(float) * 6 * 2);
            memset(srp_linear_bias(qkv), 0, sizeof(float) * 6);
            w[0 * 2 + 1] = (float)g; /* q = g (x1, 0) */
            w[2 * 2 + 0] = (float)g; /* k = g (x0, 0) */
            w[5 * 2 + 1] = (float)g; /* v = g (0, x1) */
            assert_ok(srp_linear_reinit_sigma(qkv));
            *srp_linear_gamma(qkv) = srp_linear_sigma(qkv); /* scale 1 */
            assert_ok(srp_attention_forward(a, x, 1, 3, y, SRP_EVAL));
            for (size_t i = 0; i < 6; i++)
                assert_true(isfinite(y[i]));
            /* two keys whose logits differ by d, the third of weight 0 */
            const double d = g * g * 10.0 * 0.1 / sqrt(2.0), p = 1.0 / (1.0 + exp(d));
            const double two = -p * log(p) - (1.0 - p) * log(1.0 - p);
            float mean, min, nmean, nmin, bound;
            assert_ok(srp_attention_entropy(a, &mean, &min));
            assert_ok(srp_attention_entropy_normalized(a, &nmean, &nmin));
            if (!causal) { /* three rows alike */
                assert_close_rel(mean, two, 1e-5, 0.0, "mean entropy");
                assert_close_rel(min, two, 1e-5, 0.0, "min entropy");
                assert_close_rel(nmean, two / log(3.0), 1e-5, 0.0, "normalized mean");
            } else { /* rows of 1, 2 and 3 keys: 0, two and two */
                assert_close_rel(mean, 2.0 * two / 3.0, 1e-5, 0.0, "causal mean entropy");
                assert_true(min == 0.0f);
                assert_close_rel(nmean, (two / log(2.0) + two / log(3.0)) / 2.0, 1e-5, 0.0,
                                 "causal normalized mean");
            }
            assert_close_rel(nmin, two / log(3.0), 1e-5, 0.0, "normalized min");
            assert_ok(srp_attention_entropy_bound(a, &bound));
            assert_true(bound == 0.0f);
            srp_attention_destroy(a);
        }
}

/* The u, v, sigma and gamma of every linear of the module, as bits. */
static void module_state(srp_attention *a, float *state, size_t cap, size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i <= srp_attention_in_proj_count(a); i++) {
        srp_linear *l = i < srp_attention_in_proj_count(a) ? srp_attention_in_proj(a, i, NULL)
                                                           : srp_attention_proj(a);
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        assert_true(n + in + out + 2 <= cap);
        memcpy(state + n, srp_linear_u(l), sizeof(float) * in);
        memcpy(state + n + in, srp_linear_v(l), sizeof(float) * out);
        state[n + in + out] = srp_linear_sigma(l);
        state[n + in + out + 1] = *srp_linear_gamma(l);
        n += in + out + 2;
    }
    *count = n;
}

/* A forward whose y would hold NaN or Inf reports it: NaN in x, and finite
 * inputs whose logits overflow. No power step is kept; the activations are
 * gone, so the backward and the entropies say there is no forward; the
 * next good forward works. */
static void test_non_finite_forward_is_reported(void **state)
{
    (void)state;
    const attn_shape s = {2, 6, 8, 2, 0, SRP_QKV_SIGMA_FUSED};
    srp_attention *a = make(&s, 4);
    float x[2 * 6 * 8], bad[2 * 6 * 8], y[2 * 6 * 8], dy[2 * 6 * 8], mean[2], bound[2];
    float before[256], after[256];
    size_t nb, na;
    srp_rng r = seeded_rng(5);
    fill_normal_f(&r, x, 96, 1.0);
    fill_normal_f(&r, dy, 96, 1.0);
    assert_ok(srp_attention_forward(a, x, 2, 6, y, SRP_TRAIN));
    for (int c = 0; c < 2; c++) {
        memcpy(bad, x, sizeof x);
        if (c == 0)
            bad[8 * 3 + 2] = NAN; /* example 0, token 3 */
        else
            for (size_t i = 0; i < 96; i++) /* finite, but q.k overflows */
                bad[i] = x[i] * 1e30f;
        module_state(a, before, 256, &nb);
        for (int training = 0; training < 2; training++)
            assert_status(srp_attention_forward(a, bad, 2, 6, y, training), SRP_ERR_NUMERIC);
        module_state(a, after, 256, &na);
        assert_int_equal(nb, na);
        assert_memory_equal(before, after, sizeof(float) * nb);
        assert_status(srp_attention_backward(a, dy, NULL), SRP_ERR_UNSUPPORTED);
        assert_status(srp_attention_entropy(a, mean, NULL), SRP_ERR_UNSUPPORTED);
        assert_status(srp_attention_entropy_bound(a, bound), SRP_ERR_UNSUPPORTED);
        assert_ok(srp_attention_forward(a, x, 2, 6, y, SRP_TRAIN));
        assert_ok(srp_attention_backward(a, dy, NULL));
    }
    srp_attention_destroy(a);
}

/* The bound is of the last forward: changing the weights afterwards (an
 * optimizer step) does not change it. */
static void test_bound_uses_the_forward_weights(void **state)
{
    (void)state;
    const attn_shape s = {2, 7, 8, 2, 0, SRP_QKV_SIGMA_FUSED};
    srp_attention *a = make(&s, 6);
    srp_rng r = seeded_rng(7);
    randomize_linear(srp_attention_qkv(a), &r, 1.0, 2.0f);
    float x[2 * 7 * 8], y[2 * 7 * 8], before[2], after[2];
    fill_normal_f(&r, x, 112, 1.0);
    assert_ok(srp_attention_forward(a, x, 2, 7, y, SRP_TRAIN));
    assert_ok(srp_attention_entropy_bound(a, before));
    float *w = srp_linear_weight(srp_attention_qkv(a));
    for (size_t i = 0; i < 3 * 8 * 8; i++)
        w[i] *= (i % 2) ? 3.0f : -0.5f;
    *srp_linear_gamma(srp_attention_qkv(a)) *= 4.0f;
    assert_ok(srp_attention_entropy_bound(a, after));
    assert_memory_equal(before, after, sizeof(before));
    srp_attention_destroy(a);
}

/* Fewer tokens than the maximum: the buffers and the batched products' plans
 * must fit any token count (ASan checks the bounds), and the result is the
 * same as in a module made for exactly that size. */
static void test_fewer_tokens_than_the_maximum(void **state)
{
    (void)state;
    const size_t maxima[3] = {300, 2000, 256};
    const size_t T = 256, D = 8, n = T * D;
    float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n);
    float *y[3], *dx[3];
    assert_true(x && dy);
    srp_rng r = seeded_rng(8);
    fill_normal_f(&r, x, n, 1.0);
    fill_normal_f(&r, dy, n, 1.0);
    for (int k = 0; k < 3; k++) {
        srp_attention_config c = srp_attention_config_default(D, 2);
        c.seed = 3;
        srp_attention *a = NULL;
        assert_ok(srp_attention_create(&a, &c, 1, maxima[k]));
        y[k] = malloc(sizeof(float) * n);
        dx[k] = malloc(sizeof(float) * n);
        assert_true(y[k] && dx[k]);
        assert_ok(srp_attention_forward(a, x, 1, T, y[k], SRP_TRAIN));
        assert_ok(srp_attention_backward(a, dy, dx[k]));
        srp_attention_destroy(a);
    }
    for (int k = 0; k < 2; k++) {
        assert_memory_equal(y[k], y[2], sizeof(float) * n);
        assert_memory_equal(dx[k], dx[2], sizeof(float) * n);
    }
    for (int k = 0; k < 3; k++) {
        free(y[k]);
        free(dx[k]);
    }
    free(x);
    free(dy);
}

static void test_errors(void **state)
{
    (void)state;
    srp_attention *a = NULL;
    srp_attention_config c = srp_attention_config_default(8, 3); /* 8 % 3 != 0 */
    assert_status(srp_attention_create(&a, &c, 2, 4), SRP_ERR_INVALID_ARG);
    c = srp_attention_config_default(8, 2);
    assert_status(srp_attention_create(NULL, &c, 2, 4), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_create(&a, NULL, 2, 4), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_create(&a, &c, 0, 4), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_create(&a, &c, 2, 0), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_create(&a, &c, (size_t)1 << 40, (size_t)1 << 30),
                  SRP_ERR_INVALID_ARG);
    c.heads = 0;
    assert_status(srp_attention_create(&a, &c, 2, 4), SRP_ERR_INVALID_ARG);
    assert_null(a);

    c = srp_attention_config_default(8, 2);
    assert_ok(srp_attention_create(&a, &c, 2, 4));
    float x[2 * 4 * 8] = {0}, y[2 * 4 * 8], dx[2 * 4 * 8], e[2], bound[2];
    assert_status(srp_attention_backward(a, y, dx), SRP_ERR_UNSUPPORTED);
    assert_status(srp_attention_entropy(a, e, e), SRP_ERR_UNSUPPORTED);
    assert_status(srp_attention_entropy_bound(a, bound), SRP_ERR_UNSUPPORTED);
    assert_non_null(strstr(srp_last_error_detail(), "srp_attention_entropy_bound: no forward"));
    assert_status(srp_attention_entropy_bound_terms(NULL, bound, NULL, NULL, NULL),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward(a, x, 3, 4, y, SRP_TRAIN), SRP_ERR_SHAPE);
    assert_status(srp_attention_forward(a, x, 2, 5, y, SRP_TRAIN), SRP_ERR_SHAPE);
    assert_status(srp_attention_forward(a, x, 0, 4, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward(a, NULL, 2, 4, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward(a, x, 2, 4, NULL, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward(NULL, x, 2, 4, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_ok(
        srp_attention_forward(a, x, 1, 3, y, SRP_TRAIN)); /* smaller than the maxima is fine */
    assert_ok(srp_attention_backward(a, y, dx));
    assert_status(srp_attention_backward(a, NULL, dx), SRP_ERR_INVALID_ARG);
    assert_ok(srp_attention_forward(a, x, 1, 3, y, SRP_TRAIN));
    assert_ok(srp_attention_backward(a, y, NULL)); /* dx is optional */

    /* NaN in either layer's weight: SRP_ERR_NUMERIC, and neither layer's
     * u has moved (qkv is checked before proj, and neither is committed
     * before both are checked); the previous forward stays usable. */
    srp_linear *qkv = srp_attention_qkv(a), *proj = srp_attention_proj(a);
    float u_qkv[8], u_proj[8];
    assert_ok(srp_attention_forward(a, x, 1, 3, y, SRP_EVAL)); /* pending, moves no u */
    memcpy(u_qkv, srp_linear_u(qkv), sizeof(u_qkv));
    memcpy(u_proj, srp_linear_u(proj), sizeof(u_proj));
    for (int which = 0; which < 2; which++) {
        srp_linear *bad = which ? proj : qkv;
        const float keep = srp_linear_weight(bad)[5];
        srp_linear_weight(bad)[5] = NAN;
        assert_status(srp_attention_forward(a, x, 2, 4, y, SRP_TRAIN), SRP_ERR_NUMERIC);
        assert_memory_equal(u_qkv, srp_linear_u(qkv), sizeof(u_qkv));
        assert_memory_equal(u_proj, srp_linear_u(proj), sizeof(u_proj));
        srp_linear_weight(bad)[5] = keep;
        assert_ok(srp_attention_backward(a, y, dx)); /* of the forward on 1 x 3 */
        assert_ok(srp_attention_forward(a, x, 1, 3, y, SRP_EVAL)); /* for the next round */
    }
    srp_attention_destroy(a);

    c.track_entropy = 0;
    assert_ok(srp_attention_create(&a, &c, 2, 4));
    assert_ok(srp_attention_forward(a, x, 2, 4, y, SRP_TRAIN));
    assert_status(srp_attention_entropy(a, e, e), SRP_ERR_UNSUPPORTED);
    srp_attention_destroy(a);
    srp_attention_destroy(NULL);
}

/* l's dW, db and dgamma one after the other into g; returns how many. */
static size_t linear_grads(srp_linear *l, float *g)
{
    const size_t out = srp_linear_out_features(l), nw = srp_linear_in_features(l) * out;
    memcpy(g, srp_linear_weight_grad(l), sizeof(float) * nw);
    memcpy(g + nw, srp_linear_bias_grad(l), sizeof(float) * out);
    g[nw + out] = *srp_linear_gamma_grad(l);
    return nw + out + 1;
}

/* A backward that fails in qkv, after proj's part succeeded, leaves every
 * gradient of the module as it was. The failure: one input feature of 1e38
 * that qkv's weights ignore (a zero column), so the forward is finite, but
 * d_qkv^T x overflows in qkv's weight gradient while proj's is finite. */
static void test_failed_backward_changes_no_gradient(void **state)
{
    (void)state;
    const attn_shape s = {2, 5, 8, 2, 0, SRP_QKV_SIGMA_FUSED};
    const size_t n = s.B * s.T * s.D, D = s.D;
    srp_attention *a = make(&s, 12);
    srp_linear *qkv = srp_attention_qkv(a), *proj = srp_attention_proj(a);
    srp_rng r = seeded_rng(13);
    float x[2 * 5 * 8], y[2 * 5 * 8], dy[2 * 5 * 8], dx[2 * 5 * 8];
    fill_normal_f(&r, x, n, 1.0);
    fill_normal_f(&r, dy, n, 1e3);
    float *w = srp_linear_weight(qkv);
    for (size_t row = 0; row < 3 * D; row++)
        w[row * D + 3] = 0.0f;
    assert_ok(srp_linear_reinit_sigma(qkv));
    x[2 * D + 3] = 1e38f;
    /* some gradient in both layers already, as mid-accumulation */
    for (int l = 0; l < 2; l++) {
        srp_linear *lin = l ? proj : qkv;
        const size_t nw = srp_linear_in_features(lin) * srp_linear_out_features(lin);
        fill_normal_f(&r, srp_linear_weight_grad(lin), nw, 0.1);
        fill_normal_f(&r, srp_linear_bias_grad(lin), srp_linear_out_features(lin), 0.1);
        *srp_linear_gamma_grad(lin) = 0.25f;
    }
    enum { GRADS = 3 * 8 * 8 + 3 * 8 + 1 };
    float before[2][GRADS], after[GRADS];
    for (int l = 0; l < 2; l++)
        linear_grads(l ? proj : qkv, before[l]);
    assert_ok(srp_attention_forward(a, x, s.B, s.T, y, SRP_TRAIN));
    for (size_t i = 0; i < n; i++)
        assert_true(isfinite(y[i]));
    assert_status(srp_attention_backward(a, dy, dx), SRP_ERR_NUMERIC);
    for (int l = 0; l < 2; l++) {
        const size_t n_l = linear_grads(l ? proj : qkv, after);
        assert_memory_equal(before[l], after, sizeof(float) * n_l);
    }
    srp_attention_destroy(a);
}

/* Runs forward + backward with the given thread count; returns y, dx, dW_qkv
 * and the mean entropies in malloc'd buffers (out[0..3]). */
static void run_with_threads(int threads, const float *x, const float *dy, float *out[4])
{
    const attn_shape s = {8, 33, 32, 4, 0, SRP_QKV_SIGMA_FUSED};
    const size_t n = s.B * s.T * s.D;
    srp_set_num_threads(threads);
    srp_attention *a = make(&s, 77);
    out[0] = malloc(sizeof(float) * n);
    out[1] = malloc(sizeof(float) * n);
    out[2] = malloc(sizeof(float) * 3 * 32 * 32);
    out[3] = malloc(sizeof(float) * 4);
    assert_true(out[0] && out[1] && out[2] && out[3]);
    assert_ok(srp_attention_forward(a, x, s.B, s.T, out[0], SRP_TRAIN));
    assert_ok(srp_attention_backward(a, dy, out[1]));
    memcpy(out[2], srp_linear_weight_grad(srp_attention_qkv(a)), sizeof(float) * 3 * 32 * 32);
    assert_ok(srp_attention_entropy(a, out[3], NULL));
    srp_attention_destroy(a);
}

/* Same thread count: the same bits, run after run. Another thread count:
 * OpenBLAS itself rounds differently (its sgemm does, with 1 vs 2 threads),
 * so only float-close. */
static void test_results_are_deterministic(void **state)
{
    (void)state;
    const int threads_before = srp_get_num_threads();
    const size_t n = 8 * 33 * 32, sizes[4] = {n, n, 3 * 32 * 32, 4};
    srp_rng r = seeded_rng(66);
    float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n);
    assert_true(x && dy);
    fill_normal_f(&r, x, n, 1.0);
    fill_normal_f(&r, dy, n, 1.0);
    float *two[4], *two_again[4], *one[4];
    run_with_threads(2, x, dy, two);
    run_with_threads(2, x, dy, two_again);
    run_with_threads(1, x, dy, one);
    for (int i = 0; i < 4; i++) {
        assert_memory_equal(two[i], two_again[i], sizeof(float) * sizes[i]);
        assert_close_array(one[i], two[i], sizes[i], 1e-5, "1 vs 2 threads");
        free(two[i]);
        free(two_again[i]);
        free(one[i]);
    }
    free(x);
    free(dy);
    srp_set_num_threads(threads_before);
}

static void run_fixture_case(const fixture *fx, const char *tag)
{
    char key[160];
#define FX(name, count)                                                                            \
    (snprintf(key, sizeof(key), "%s/%s", tag, name), fixture_get(fx, key, count, NULL))
    const float *cfg = FX("config", 6);
    const attn_shape s = {(size_t)cfg[0], (size_t)cfg[1], (size_t)cfg[2],
                          (size_t)cfg[3], cfg[4] != 0.0f, SRP_QKV_SIGMA_FUSED};
    const int steps = (int)cfg[5];
    const size_t D = s.D, n = s.B * s.T * D;
    const float tol = 1e-5f, lr = 0.05f;
    srp_attention *a = make(&s, 1);
    srp_linear *lin[2] = {srp_attention_qkv(a), srp_attention_proj(a)};
    const char *names[2] = {"qkv", "proj"};
    char name[96];
    for (int i = 0; i < 2; i++) {
        const size_t in = srp_linear_in_features(lin[i]), out = srp_linear_out_features(lin[i]);
        snprintf(name, sizeof(name), "%s/w0", names[i]);
        memcpy(srp_linear_weight(lin[i]), FX(name, in * out), sizeof(float) * in * out);
        snprintf(name, sizeof(name), "%s/b0", names[i]);
        memcpy(srp_linear_bias(lin[i]), FX(name, out), sizeof(float) * out);
        assert_ok(srp_linear_reinit_sigma(lin[i]));
        snprintf(name, sizeof(name), "%s/u0", names[i]);
        memcpy(srp_linear_u(lin[i]), FX(name, in), sizeof(float) * in);
        snprintf(name, sizeof(name), "%s/gamma0", names[i]);
        *srp_linear_gamma(lin[i]) = FX(name, 1)[0];
    }
    float *y = malloc(sizeof(float) * n), *dx = malloc(sizeof(float) * n);
    float mean[4], min[4];
    assert_true(y && dx);
    for (int step = 0; step < steps; step++) {
#define STEP(field, count) (snprintf(name, sizeof(name), "step%d/%s", step, field), FX(name, count))
        srp_linear_zero_grad(lin[0]);
        srp_linear_zero_grad(lin[1]);
        assert_ok(srp_attention_forward(a, STEP("x", n), s.B, s.T, y, SRP_TRAIN));
        assert_close_array(y, STEP("y", n), n, tol, "fixture y");
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_close_array(mean, STEP("ent_mean", s.H), s.H, tol, "fixture entropy mean");
        assert_close_array_floor(min, STEP("ent_min", s.H), s.H, tol, 1.0, "fixture entropy min");
        assert_ok(srp_attention_backward(a, STEP("dy", n), dx));
        assert_close_array(dx, STEP("dx", n), n, tol, "fixture dx");
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof(name), "%s/step%d/%s", tag, step, names[i]);
            fixture_check_linear_step(fx, name, lin[i], tol, 0.0, lr);
        }
#undef STEP
    }
#undef FX
    free(y);
    free(dx);
    srp_attention_destroy(a);
}

static void test_matches_pytorch_reference(void **state)
{
    (void)state;
    fixture *fx = fixture_load(SRP_TEST_DATA_DIR "/attention_fixtures.bin");
    const char *cases[] = {"vit", "causal", "onehead", "onetoken"};
    for (size_t i = 0; i < 4; i++)
        run_fixture_case(fx, cases[i]);
    fixture_free(fx);
}

/* Cached decoding (srp_attention_decode), position by position to the
 * cache's end, gives the last row of srp_attention_forward in eval over
 * the same prefix (1e-6 relative), in every qkv_sigma mode, for 2
 * sequences at once; the module's state is not touched. u is moved off the
 * top singular vector first, so that the eval forward's power step gives a
 * sigma of its own, which the decoder must take too. */
static void test_decode_matches_forward(void **state)
{
    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        const attn_shape s = {2, 6, 16, 4, 1, (srp_qkv_sigma)mode};
        const size_t B = s.B, T = s.T, D = s.D;
        srp_attention *a = make(&s, 30 + (uint64_t)mode);
        srp_rng r = seeded_rng(31);
        randomize_inputs(a, &r, 0.3, 1.5f);
        randomize_linear(srp_attention_proj(a), &r, 0.3, 0.8f);
        for (size_t i = 0; i <= srp_attention_in_proj_count(a); i++) {
            srp_linear *l = i < srp_attention_in_proj_count(a) ? srp_attention_in_proj(a, i, NULL)
                                                               : srp_attention_proj(a);
            fill_normal_f(&r, srp_linear_u(l), D, 1.0);
        }
        srp_attention_cache *c = NULL;
        assert_ok(srp_attention_cache_create(&c, a, B, T));
        float *x = alloc_f(B * T * D), *prefix = alloc_f(B * T * D), *full = alloc_f(B * T * D);
        float *step = alloc_f(B * D);
        fill_normal_f(&r, x, B * T * D, 1.0);
        for (size_t t = 0; t < T; t++) {
            for (size_t b = 0; b < B; b++)
                memcpy(step + b * D, x + (b * T + t) * D, sizeof(float) * D);
            const float sigma = srp_linear_sigma(srp_attention_proj(a));
            assert_ok(srp_attention_decode(a, c, step, B, step));
            assert_true(srp_linear_sigma(srp_attention_proj(a)) == sigma); /* no state moves */
            const size_t n = t + 1;
            for (size_t b = 0; b < B; b++)
                memcpy(prefix + b * n * D, x + b * T * D, sizeof(float) * n * D);
            assert_ok(srp_attention_forward(a, prefix, B, n, full, SRP_EVAL));
            double diff = 0.0, scale = 0.0;
            for (size_t b = 0; b < B; b++)
                for (size_t i = 0; i < D; i++) {
                    const double want = full[(b * n + t) * D + i];
                    diff = fmax(diff, fabs(step[b * D + i] - want));
                    scale = fmax(scale, fabs(want));
                }
            if (diff > 1e-6 * scale)
                fail_msg("qkv_sigma %d, position %zu: decoded vs forward %.3g relative", mode, t,
                         diff / scale);
        }
        assert_int_equal(srp_attention_cache_length(c), T);
        assert_status(srp_attention_decode(a, c, step, B, step), SRP_ERR_SHAPE);
        srp_attention_cache_destroy(c);
        srp_attention_destroy(a);
        free(x);
        free(prefix);
        free(full);
        free(step);
    }
}

#ifdef SRP_COUNT_ALLOCS
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    const attn_shape s = {16, 50, 64, 4, 0, SRP_QKV_SIGMA_FUSED};
    const size_t n = s.B * s.T * s.D;
    /* The probe: create allocates, so the counter must see it. If it saw
     * nothing here (the interposed malloc not exported from the test
     * binary, so the shared library's calls bypass it), the 0 below would
     * prove nothing. */
    alloc_counter_start();
    srp_attention *a = make(&s, 9);
    assert_true(alloc_counter_stop(NULL) > 0);
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    float *dx = malloc(sizeof(float) * n), e[4];
    assert_true(x && y && dx);
    srp_rng r = seeded_rng(99);
    fill_normal_f(&r, x, n, 1.0);
    assert_ok(srp_attention_forward(a, x, s.B, s.T, y, SRP_TRAIN)); /* warm-up */
    assert_ok(srp_attention_backward(a, y, dx));
    alloc_counter_start();
    for (int it = 0; it < 3; it++) {
        assert_ok(srp_attention_forward(a, x, s.B, s.T, y, SRP_TRAIN));
        assert_ok(srp_attention_backward(a, y, dx));
        assert_ok(srp_attention_entropy(a, e, e));
        assert_ok(srp_attention_entropy_bound(a, e));
    }
    assert_int_equal(alloc_counter_stop(NULL), 0);
    free(x);
    free(y);
    free(dx);
    srp_attention_destroy(a);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_and_entropy_match_reference),
        cmocka_unit_test(test_backward_matches_finite_differences),
        cmocka_unit_test(test_backward_of_long_sequences),
        cmocka_unit_test(test_entropy_extremes),
        cmocka_unit_test(test_bound_never_exceeds_measured_entropy),
        cmocka_unit_test(test_bound_edge_values),
        cmocka_unit_test(test_bound_matches_explicit_norms),
        cmocka_unit_test(test_key_bias_does_not_loosen_the_bound),
        cmocka_unit_test(test_minus_infinite_logit_gives_a_finite_entropy),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_failed_backward_changes_no_gradient),
        cmocka_unit_test(test_non_finite_forward_is_reported),
        cmocka_unit_test(test_bound_uses_the_forward_weights),
        cmocka_unit_test(test_fewer_tokens_than_the_maximum),
        cmocka_unit_test(test_results_are_deterministic),
        cmocka_unit_test(test_matches_pytorch_reference),
        cmocka_unit_test(test_decode_matches_forward),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
