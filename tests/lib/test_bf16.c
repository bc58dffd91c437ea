/* bf16 GEMM inputs through the reference path (core.h, unstable API):
 * the rounding itself, the linear's three products against double
 * references made from the rounded inputs, the bf16 path against the fp32
 * one within a tolerance derived from bf16's unit roundoff, determinism,
 * no allocation, and Theorem 3.1's bound with bf16 logits.
 *
 * The tolerances, for a product over k terms (Higham, 3.1 and 3.5):
 *  - against the same product of the rounded inputs, in double: the float
 *    GEMM's own error, gamma_{k+2} sum |a_b||b_b| (products, alpha, bias),
 *    u = 2^-24: rounding the output instead of the inputs, or not rounding
 *    at all, misses it by orders of magnitude;
 *  - against the fp32 path: rounding each input to bf16 moves a product by
 *    at most ((1 + u_b)^2 - 1) |a||b|, u_b = 2^-8, and both GEMMs add their
 *    gamma_{k+2}: ((1 + u_b)^2 - 1 + 2 (1 + u_b)^2 gamma_{k+2}) sum |a||b|. */
#define SRP_UNSTABLE_API
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

#define BF16_UNIT 0x1p-8

static double gamma_f32(double k) { return k * 0x1p-24 / (1.0 - k * 0x1p-24); }

static float from_bits(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof(x));
    return x;
}

static uint32_t to_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof(b));
    return b;
}

/* bf16(x) as the library rounds it, read back through a one-element layer:
 * a 1 -> 1 linear without sigma, weight 1 and no bias, gives y = bf16(x).
 * A finite x that rounds to Inf makes the forward report the overflow. */
static float rounded_by_layer(srp_linear *one, float x)
{
    float y;
    const srp_status st = srp_linear_forward(one, &x, 1, &y, SRP_EVAL);
    if (st == SRP_ERR_NUMERIC)
        return INFINITY;
    assert_ok(st);
    return y;
}

/* Round to nearest, ties to even, at bf16's 8 significant bits; the
 * expected values are worked out by hand from the bit patterns. */
static void test_rounding(void **state)
{
    (void)state;
    srp_set_precision_bf16_reference();
    srp_linear *one = make_linear(1, 1, SRP_REPARAM_NONE, 0, 1);
    srp_set_precision(SRP_PRECISION_FP32);
    srp_linear_weight(one)[0] = 1.0f;
    const struct {
        uint32_t in, out;
    } cases[] = {
        {0x3f800000u, 0x3f800000u}, /* 1: exact */
        {0x3f808000u, 0x3f800000u}, /* 1 + 2^-8, a tie: to even (down) */
        {0x3f818000u, 0x3f820000u}, /* 1 + 3 2^-8, a tie: to even (up) */
        {0x3f808001u, 0x3f810000u}, /* just above the tie: up */
        {0x3f807fffu, 0x3f800000u}, /* just below it: down */
        {0xbf818000u, 0xbf820000u}, /* the sign is kept */
        {0x7f7fffffu, 0x7f800000u}, /* FLT_MAX: past bf16's largest, Inf */
        {0x7f7f7fffu, 0x7f7f0000u}, /* bf16's largest stays */
        {0x00000001u, 0x00000000u}, /* the least subnormal: down to 0 */
        {0x00018000u, 0x00020000u}, /* a subnormal tie: to even (up) */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const float got = rounded_by_layer(one, from_bits(cases[i].in));
        if (to_bits(got) != cases[i].out) {
            print_error("case %zu: bf16(0x%08x) = 0x%08x, want 0x%08x\n", i, (unsigned)cases[i].in,
                        (unsigned)to_bits(got), (unsigned)cases[i].out);
            fail();
        }
    }
    srp_linear_destroy(one);
}

/* The bf16 path's distance from the fp32 one over k terms (the top). */
static double bf16_against_fp32(size_t k)
{
    const double r = (1.0 + BF16_UNIT) * (1.0 + BF16_UNIT);
    return (r - 1.0) + 2.0 * r * gamma_f32((double)k + 2.0);
}

/* a: [rows][k] and b: [cols][k] rounded to bf16, in double: c = a_b b_b^T,
 * and m = |a_b| |b_b|^T, the sums the tolerances scale. */
static void reference_product(const float *a, const float *b, size_t rows, size_t cols, size_t k,
                              double *c, double *m)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++) {
            double s = 0.0, sa = 0.0;
            for (size_t i = 0; i < k; i++) {
                const double p = (double)a[r * k + i] * (double)b[j * k + i];
                s += p;
                sa += fabs(p);
            }
            c[r * cols + j] = s;
            m[r * cols + j] = sa;
        }
}

static void round_copy(const float *x, float *y, size_t n, srp_linear *one)
{
    for (size_t i = 0; i < n; i++)
        y[i] = rounded_by_layer(one, x[i]);
}

/* |got - want| <= tol m elementwise (plus tol |bias| where one is added) */
static void assert_within(const float *got, const double *want, const double *m, size_t n,
                          double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * m[i])) {
            print_error("%s[%zu]: %.9g, reference %.9g, allowed %.3g\n", what, i, (double)got[i],
                        want[i], tol * m[i]);
            fail();
        }
}

/* y, dx and G^T x of a bf16 layer, with more rows than one rounding chunk
 * (256) and both shapes of dW's product (out > in takes x^T G), against
 * the products of the rounded inputs in double and against the fp32 path. */
static void test_linear_products(void **state)
{
    (void)state;
    const size_t shapes[2][3] = {{600, 48, 80}, {300, 96, 40}}; /* n, in, out */
    srp_set_precision_bf16_reference();
    srp_linear *one = make_linear(1, 1, SRP_REPARAM_NONE, 0, 1);
    srp_set_precision(SRP_PRECISION_FP32);
    srp_linear_weight(one)[0] = 1.0f;
    srp_rng r = seeded_rng(11);
    for (size_t s = 0; s < 2; s++) {
        const size_t n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        srp_set_precision_bf16_reference();
        srp_linear *lb = make_linear(in, out, SRP_REPARAM_NONE, 1, 3 + s);
        srp_set_precision(SRP_PRECISION_FP32);
        srp_linear *lf = make_linear(in, out, SRP_REPARAM_NONE, 1, 3 + s);
        fill_normal_f(&r, srp_linear_weight(lb), in * out, 1.0);
        fill_normal_f(&r, srp_linear_bias(lb), out, 1.0);
        memcpy(srp_linear_weight(lf), srp_linear_weight(lb), in * out * sizeof(float));
        memcpy(srp_linear_bias(lf), srp_linear_bias(lb), out * sizeof(float));
        float *x = alloc_f(n * in), *dy = alloc_f(n * out), *yb = alloc_f(n * out);
        float *yf = alloc_f(n * out), *dxb = alloc_f(n * in), *dxf = alloc_f(n * in);
        float *xr = alloc_f(n * in), *dyr = alloc_f(n * out), *wr = alloc_f(in * out);
        float *dyrt = alloc_f(n * out), *xrt = alloc_f(n * in), *wt = alloc_f(in * out);
        double *c = alloc_d(n * (in > out ? in : out) + in * out);
        double *m = alloc_d(n * (in > out ? in : out) + in * out);
        fill_normal_f(&r, x, n * in, 1.0);
        fill_normal_f(&r, dy, n * out, 1.0);
        round_copy(x, xr, n * in, one);
        round_copy(dy, dyr, n * out, one);
        round_copy(srp_linear_weight(lb), wr, in * out, one);

        /* forward: y = x_b W_b^T + b */
        assert_ok(srp_linear_forward(lb, x, n, yb, SRP_TRAIN));
        assert_ok(srp_linear_forward(lf, x, n, yf, SRP_TRAIN));
        reference_product(xr, wr, n, out, in, c, m);
        for (size_t i = 0; i < n * out; i++) {
            c[i] += srp_linear_bias(lb)[i % out];
            m[i] += fabs(srp_linear_bias(lb)[i % out]);
        }
        assert_within(yb, c, m, n * out, gamma_f32((double)in + 2.0), "y against bf16 inputs");
        /* against the fp32 path, m from the fp32 inputs */
        reference_product(x, srp_linear_weight(lf), n, out, in, c, m);
        for (size_t i = 0; i < n * out; i++) {
            m[i] += fabs(srp_linear_bias(lb)[i % out]);
            c[i] = yf[i];
        }
        assert_within(yb, c, m, n * out, bf16_against_fp32(in), "y against the fp32 path");

        /* backward: dx = G_b W_b, dW = G_b^T x_b (no sigma: scale 1) */
        srp_linear_zero_grad(lb);
        srp_linear_zero_grad(lf);
        assert_ok(srp_linear_backward(lb, x, dy, n, dxb));
        assert_ok(srp_linear_backward(lf, x, dy, n, dxf));
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++)
                wt[i * out + o] = wr[o * in + i];
        reference_product(dyr, wt, n, in, out, c, m);
        assert_within(dxb, c, m, n * in, gamma_f32((double)out + 2.0), "dx against bf16 inputs");
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++)
                wt[i * out + o] = srp_linear_weight(lf)[o * in + i];
        reference_product(dy, wt, n, in, out, c, m);
        for (size_t i = 0; i < n * in; i++)
            c[i] = dxf[i];
        assert_within(dxb, c, m, n * in, bf16_against_fp32(out), "dx against the fp32 path");
        for (size_t t = 0; t < n; t++) {
            for (size_t o = 0; o < out; o++)
                dyrt[o * n + t] = dyr[t * out + o];
            for (size_t i = 0; i < in; i++)
                xrt[i * n + t] = xr[t * in + i];
        }
        reference_product(dyrt, xrt, out, in, n, c, m);
        assert_within(srp_linear_weight_grad(lb), c, m, in * out, gamma_f32((double)n + 2.0),
                      "dW against bf16 inputs");
        for (size_t t = 0; t < n; t++) {
            for (size_t o = 0; o < out; o++)
                dyrt[o * n + t] = dy[t * out + o];
            for (size_t i = 0; i < in; i++)
                xrt[i * n + t] = x[t * in + i];
        }
        reference_product(dyrt, xrt, out, in, n, c, m);
        for (size_t i = 0; i < in * out; i++)
            c[i] = srp_linear_weight_grad(lf)[i];
        assert_within(srp_linear_weight_grad(lb), c, m, in * out, bf16_against_fp32(n),
                      "dW against the fp32 path");
        free(x), free(dy), free(yb), free(yf), free(dxb), free(dxf), free(xr), free(dyr);
        free(wr), free(dyrt), free(xrt), free(wt), free(c), free(m);
        srp_linear_destroy(lb);
        srp_linear_destroy(lf);
    }
    srp_linear_destroy(one);
}

/* Two bf16 runs give the same bits, and (outside the sanitizer build)
 * a bf16 layer's forward and backward allocate nothing after create. */
static void test_determinism_and_no_allocation(void **state)
{
    (void)state;
    const size_t n = 700, in = 64, out = 96;
    float *x = alloc_f(n * in), *dy = alloc_f(n * out), *y[2], *dx[2], *dw[2];
    srp_rng r = seeded_rng(21);
    fill_normal_f(&r, x, n * in, 1.0);
    fill_normal_f(&r, dy, n * out, 1.0);
    for (int run = 0; run < 2; run++) {
        y[run] = alloc_f(n * out);
        dx[run] = alloc_f(n * in);
        dw[run] = alloc_f(in * out);
        srp_set_precision_bf16_reference();
        srp_linear *l = make_linear(in, out, SRP_REPARAM_SIGMA, 1, 4);
        srp_set_precision(SRP_PRECISION_FP32);
#ifdef SRP_COUNT_ALLOCS
        alloc_counter_start();
#endif
        assert_ok(srp_linear_forward(l, x, n, y[run], SRP_TRAIN));
        assert_ok(srp_linear_backward(l, x, dy, n, dx[run]));
#ifdef SRP_COUNT_ALLOCS
        assert_int_equal(alloc_counter_stop(NULL), 0);
#endif
        memcpy(dw[run], srp_linear_weight_grad(l), in * out * sizeof(float));
        srp_linear_destroy(l);
    }
    assert_memory_equal(y[0], y[1], n * out * sizeof(float));
    assert_memory_equal(dx[0], dx[1], n * in * sizeof(float));
    assert_memory_equal(dw[0], dw[1], in * out * sizeof(float));
    for (int run = 0; run < 2; run++)
        free(y[run]), free(dx[run]), free(dw[run]);
    free(x);
    free(dy);
}

/* An attention module of the given precision, its input projections drawn
 * from r (weights, biases, gamma): two made from equal draws are equal. */
static srp_attention *make_attention(int bf16, size_t B, size_t T, size_t D, size_t H, int causal,
                                     srp_qkv_sigma qkv, srp_rng *r, double gamma)
{
    srp_attention_config c = srp_attention_config_default(D, H);
    c.causal = causal;
    c.qkv_sigma = qkv;
    if (bf16)
        srp_set_precision_bf16_reference();
    srp_attention *a = NULL;
    assert_ok(srp_attention_create(&a, &c, B, T));
    srp_set_precision(SRP_PRECISION_FP32);
    for (size_t i = 0; i < srp_attention_in_proj_count(a); i++) {
        srp_linear *l = srp_attention_in_proj(a, i, NULL);
        const size_t n_in = srp_linear_in_features(l), n_out = srp_linear_out_features(l);
        fill_normal_f(r, srp_linear_weight(l), n_in * n_out, 1.0);
        assert_ok(srp_linear_reinit_sigma(l));
        fill_normal_f(r, srp_linear_bias(l), n_out, 0.2);
        *srp_linear_gamma(l) = (float)gamma * (1.0f + 0.3f * (float)i);
    }
    return a;
}

/* Theorem 3.1's bound with bf16 logits: never above the entropies the
 * forward measured, over random modules with weights from tiny (s near 0,
 * where the rounding margins decide) to large; and lower than the fp32
 * module's bound where the margins show, since bf16 inputs widen them. */
static void test_entropy_bound_with_bf16_logits(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(33);
    int cases = 0, tight = 0, wider = 0;
    for (int trial = 0; trial < 120; trial++) {
        const size_t H = 1 + srp_rng_below(&r, 3), D = H * (2 + srp_rng_below(&r, 8));
        const size_t T = 2 + srp_rng_below(&r, 24), B = 1 + srp_rng_below(&r, 3);
        const int causal = (trial / 3) % 2;
        const srp_qkv_sigma qkv = (srp_qkv_sigma)(trial % 3);
        const double gamma = exp(srp_rng_uniform(&r) * 12.0 - 8.0);
        const srp_rng draw = r;
        srp_rng r_fp32 = draw;
        srp_attention *a = make_attention(1, B, T, D, H, causal, qkv, &r, gamma);
        srp_attention *f = make_attention(0, B, T, D, H, causal, qkv, &r_fp32, gamma);
        const size_t n = B * T * D;
        float *x = alloc_f(n), *y = alloc_f(n);
        fill_normal_f(&r, x, n, exp(srp_rng_uniform(&r) * 3.0 - 1.5));
        float mean[3], min[3], bound[3], bound_fp32[3];
        assert_ok(srp_attention_forward(a, x, B, T, y, SRP_EVAL));
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_ok(srp_attention_entropy_bound(a, bound));
        assert_ok(srp_attention_forward(f, x, B, T, y, SRP_EVAL));
        assert_ok(srp_attention_entropy_bound(f, bound_fp32));
        for (size_t h = 0; h < H; h++) {
            const float measured = causal ? mean[h] : min[h];
            if (!(bound[h] <= measured)) {
                print_error("trial %d head %zu: bf16 bound %.7g above %s entropy %.7g\n", trial, h,
                            bound[h], causal ? "mean" : "min", measured);
                fail();
            }
            assert_true(bound[h] <= bound_fp32[h]);
            wider += bound[h] < bound_fp32[h];
            tight += bound[h] > 0.1f * measured && bound[h] > 0.01f;
            cases++;
        }
        free(x);
        free(y);
        srp_attention_destroy(a);
        srp_attention_destroy(f);
    }
    assert_true(cases >= 120);
    assert_true(tight > 10); /* the bound is not trivially 0 */
    assert_true(wider > 10); /* the bf16 margins are taken */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_linear_products),
        cmocka_unit_test(test_determinism_and_no_allocation),
        cmocka_unit_test(test_entropy_bound_with_bf16_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
