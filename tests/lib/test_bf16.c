/* bf16 GEMM inputs (core.h), each test run on both paths: the native one
 * (oneDNN's bf16 GEMM; srp_set_precision_bf16_any_cpu, so that it runs on
 * every CPU, emulated where the CPU lacks bf16, and in the OpenBLAS build
 * as blas.c's plain loop) and the reference one (the
 * rounded inputs through the fp32 GEMM). The rounding itself, the linear's
 * three products against double references made from the rounded inputs,
 * the bf16 path against the fp32 one within a tolerance derived from
 * bf16's unit roundoff, determinism, no allocation, and Theorem 3.1's bound
 * with bf16 logits. Both paths meet the same tolerances: they differ only
 * in the order of the fp32 sums.
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

/* The path a test runs on, its cmocka state. */
enum { REFERENCE, NATIVE };
static const int k_reference = REFERENCE, k_native = NATIVE;

/* Layers created from now on take bf16 inputs on the state's path (the
 * native one through a plain loop in a build without oneDNN). */
static void bf16_on(void **state)
{
    if (*(const int *)*state == REFERENCE)
        srp_set_precision_bf16_reference();
    else
        srp_set_precision_bf16_any_cpu();
}

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
 * expected values are worked out by hand from the bit patterns. The native
 * path may read a subnormal input as 0 (the CPU's conversion instruction,
 * core.h). */
static void test_rounding(void **state)
{
    bf16_on(state);
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
        const int flushed = *(const int *)*state == NATIVE &&
                            fpclassify(from_bits(cases[i].in)) == FP_SUBNORMAL && got == 0.0f;
        if (to_bits(got) != cases[i].out && !flushed) {
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
 * (256 rows on the reference path, 1024 on the native one) and both shapes
 * of dW's product (out > in takes x^T G), against
 * the products of the rounded inputs in double and against the fp32 path:
 * with sigma (scale = gamma / sigma != 1 in y and dx) and without (dW is
 * then G^T x itself). A forward with other weights runs first, so that a
 * W rounded once and kept would show. */
static void test_linear_products(void **state)
{
    /* n, in, out */
    const size_t shapes[2][3] = {{1100, 48, 80}, {1300, 96, 40}};
    bf16_on(state);
    srp_linear *one = make_linear(1, 1, SRP_REPARAM_NONE, 0, 1);
    srp_set_precision(SRP_PRECISION_FP32);
    srp_linear_weight(one)[0] = 1.0f;
    srp_rng r = seeded_rng(11);
    for (size_t run = 0; run < 4; run++) {
        const size_t s = run / 2, n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        const srp_reparam mode = run % 2 ? SRP_REPARAM_NONE : SRP_REPARAM_SIGMA;
        bf16_on(state);
        srp_linear *lb = make_linear(in, out, mode, 1, 3 + s);
        srp_set_precision(SRP_PRECISION_FP32);
        srp_linear *lf = make_linear(in, out, mode, 1, 3 + s);
        float *x = alloc_f(n * in), *dy = alloc_f(n * out), *yb = alloc_f(n * out);
        float *yf = alloc_f(n * out), *dxb = alloc_f(n * in), *dxf = alloc_f(n * in);
        float *xr = alloc_f(n * in), *dyr = alloc_f(n * out), *wr = alloc_f(in * out);
        float *dyrt = alloc_f(n * out), *xrt = alloc_f(n * in), *wt = alloc_f(in * out);
        double *c = alloc_d(n * (in > out ? in : out) + in * out);
        double *m = alloc_d(n * (in > out ? in : out) + in * out);
        fill_normal_f(&r, x, n * in, 1.0);
        fill_normal_f(&r, dy, n * out, 1.0);
        assert_ok(srp_linear_forward(lb, x, n, yb, SRP_EVAL)); /* with the initial W */
        assert_ok(srp_linear_forward(lf, x, n, yf, SRP_EVAL));
        fill_normal_f(&r, srp_linear_weight(lb), in * out, 1.0);
        fill_normal_f(&r, srp_linear_bias(lb), out, 1.0);
        *srp_linear_gamma(lb) = 1.7f;
        memcpy(srp_linear_weight(lf), srp_linear_weight(lb), in * out * sizeof(float));
        memcpy(srp_linear_bias(lf), srp_linear_bias(lb), out * sizeof(float));
        *srp_linear_gamma(lf) = 1.7f;
        round_copy(x, xr, n * in, one);
        round_copy(dy, dyr, n * out, one);
        round_copy(srp_linear_weight(lb), wr, in * out, one);

        /* forward: y = scale x_b W_b^T + b, scale = gamma / sigma as the
         * layer divides them (1 without sigma) */
        assert_ok(srp_linear_forward(lb, x, n, yb, SRP_TRAIN));
        assert_ok(srp_linear_forward(lf, x, n, yf, SRP_TRAIN));
        const double scale = mode == SRP_REPARAM_SIGMA
                                 ? (double)(*srp_linear_gamma(lb) / srp_linear_sigma(lb))
                                 : 1.0;
        assert_true(mode == SRP_REPARAM_NONE || fabs(scale - 1.0) > 0.1);
        reference_product(xr, wr, n, out, in, c, m);
        for (size_t i = 0; i < n * out; i++) {
            c[i] = scale * c[i] + srp_linear_bias(lb)[i % out];
            m[i] = scale * m[i] + fabs(srp_linear_bias(lb)[i % out]);
        }
        assert_within(yb, c, m, n * out, gamma_f32((double)in + 2.0), "y against bf16 inputs");
        /* against the fp32 path, m from the fp32 inputs */
        reference_product(x, srp_linear_weight(lf), n, out, in, c, m);
        for (size_t i = 0; i < n * out; i++) {
            m[i] = scale * m[i] + fabs(srp_linear_bias(lb)[i % out]);
            c[i] = yf[i];
        }
        assert_within(yb, c, m, n * out, bf16_against_fp32(in), "y against the fp32 path");

        /* backward: dx = scale G_b W_b; without sigma, dW = G_b^T x_b */
        srp_linear_zero_grad(lb);
        srp_linear_zero_grad(lf);
        assert_ok(srp_linear_backward(lb, x, dy, n, dxb));
        assert_ok(srp_linear_backward(lf, x, dy, n, dxf));
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++)
                wt[i * out + o] = wr[o * in + i];
        reference_product(dyr, wt, n, in, out, c, m);
        for (size_t i = 0; i < n * in; i++)
            c[i] *= scale, m[i] *= scale;
        assert_within(dxb, c, m, n * in, gamma_f32((double)out + 2.0), "dx against bf16 inputs");
        for (size_t o = 0; o < out; o++)
            for (size_t i = 0; i < in; i++)
                wt[i * out + o] = srp_linear_weight(lf)[o * in + i];
        reference_product(dy, wt, n, in, out, c, m);
        for (size_t i = 0; i < n * in; i++)
            c[i] = dxf[i], m[i] *= scale;
        assert_within(dxb, c, m, n * in, bf16_against_fp32(out), "dx against the fp32 path");
        if (mode == SRP_REPARAM_NONE) { /* with sigma, dW has its rank-1 term too */
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
        }
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
    const size_t n = 1500, in = 64, out = 96; /* two native chunks */
    float *x = alloc_f(n * in), *dy = alloc_f(n * out), *y[2], *dx[2], *dw[2];
    srp_rng r = seeded_rng(21);
    fill_normal_f(&r, x, n * in, 1.0);
    fill_normal_f(&r, dy, n * out, 1.0);
    for (int run = 0; run < 2; run++) {
        y[run] = alloc_f(n * out);
        dx[run] = alloc_f(n * in);
        dw[run] = alloc_f(in * out);
        bf16_on(state);
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
static srp_attention *make_attention(void **bf16, size_t B, size_t T, size_t D, size_t H,
                                     int causal, srp_qkv_sigma qkv, srp_rng *r, double gamma)
{
    srp_attention_config c = srp_attention_config_default(D, H);
    c.causal = causal;
    c.qkv_sigma = qkv;
    if (bf16)
        bf16_on(bf16);
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
        srp_attention *a = make_attention(state, B, T, D, H, causal, qkv, &r, gamma);
        srp_attention *f = make_attention(NULL, B, T, D, H, causal, qkv, &r_fp32, gamma);
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

/* The attention's wiring of its linears under bf16: q, k, v one linear
 * (its G read with a stride of 3D) or three (each adding into dx). The
 * sharp checks are the per-product ones above; here the bf16 module
 * follows the fp32 one within 2^-4 of the largest entry, which a G read
 * with the wrong stride or a dx overwritten instead of added misses by
 * far. (Measured: 0.3% to 0.8%.) */
static void test_attention_under_bf16(void **state)
{
    const size_t B = 2, T = 7, D = 16, H = 2, n = B * T * D;
    for (int layout = 0; layout < 3; layout++) {
        srp_rng r = seeded_rng(40 + (uint64_t)layout), r_fp32 = r;
        srp_attention *ab = make_attention(state, B, T, D, H, 0, (srp_qkv_sigma)layout, &r, 1.5);
        srp_attention *af =
            make_attention(NULL, B, T, D, H, 0, (srp_qkv_sigma)layout, &r_fp32, 1.5);
        float *x = alloc_f(n), *dy = alloc_f(n), *y[2], *dx[2];
        fill_normal_f(&r, x, n, 1.0);
        fill_normal_f(&r, dy, n, 1.0);
        srp_attention *mods[2] = {ab, af};
        for (int i = 0; i < 2; i++) {
            y[i] = alloc_f(n);
            dx[i] = alloc_f(n);
            assert_ok(srp_attention_forward(mods[i], x, B, T, y[i], SRP_TRAIN));
            assert_ok(srp_attention_backward(mods[i], dy, dx[i]));
        }
        double y_max = 0.0, dx_max = 0.0, y_err = 0.0, dx_err = 0.0;
        for (size_t i = 0; i < n; i++) {
            y_max = fmax(y_max, fabs(y[1][i]));
            dx_max = fmax(dx_max, fabs(dx[1][i]));
            y_err = fmax(y_err, fabs((double)y[0][i] - y[1][i]));
            dx_err = fmax(dx_err, fabs((double)dx[0][i] - dx[1][i]));
        }
        assert_true(y_err <= 0x1p-4 * y_max && dx_err <= 0x1p-4 * dx_max);
        assert_true(y_err > 0.0 && dx_err > 0.0); /* bf16 did round something */
        for (int i = 0; i < 2; i++)
            free(y[i]), free(dx[i]);
        free(x);
        free(dy);
        srp_attention_destroy(ab);
        srp_attention_destroy(af);
    }
}

/* Theorem 3.1's equality case, where no bound has slack to spare: one
 * head of width 1, two tokens x = (1, -1), q = t x + t and k = t x (W's q
 * and k entries w, scale t / w; the bias t on q alone). Row 1's logits are
 * (2t^2, -2t^2), of norm exactly s = ||M|| ||X~ X~^T|| = sqrt(2) t^2 * 2
 * and mean 0: its entropy is f(s, 2). w sits just above a bf16 tie, so
 * rounding W lengthens q and k by about 2^-8 and row 1's logits by 1.5
 * times that, and the measured entropy falls below f(s, 2): only margins
 * for the rounded inputs keep the bf16 bound below it. */
static void test_entropy_bound_at_its_equality_case(void **state)
{
    const float w = from_bits(0x3f808001u); /* 1 + 2^-8 + 2^-23: bf16 rounds it up */
    const double t = sqrt(1.6 / (2.0 * sqrt(2.0)));
    const float x[2] = {1.0f, -1.0f};
    float entropy[2], bound[2];
    for (int bf16 = 0; bf16 < 2; bf16++) {
        srp_attention_config c = srp_attention_config_default(1, 1);
        if (bf16)
            bf16_on(state);
        srp_attention *a = NULL;
        assert_ok(srp_attention_create(&a, &c, 1, 2));
        srp_set_precision(SRP_PRECISION_FP32);
        srp_linear *qkv = srp_attention_in_proj(a, 0, NULL);
        float *W = srp_linear_weight(qkv), *b = srp_linear_bias(qkv); /* [3][1], [3] */
        W[0] = W[1] = w;
        W[2] = 1.0f;
        b[0] = (float)t;
        b[1] = b[2] = 0.0f;
        assert_ok(srp_linear_reinit_sigma(qkv));
        *srp_linear_gamma(qkv) = (float)(t / w * srp_linear_sigma(qkv));
        float y[2], mean;
        assert_ok(srp_attention_forward(a, x, 1, 2, y, SRP_EVAL));
        assert_ok(srp_attention_entropy(a, &mean, &entropy[bf16]));
        assert_ok(srp_attention_entropy_bound(a, &bound[bf16]));
        srp_attention_destroy(a);
    }
    const double exact = srp_entropy_lower_bound(2.0 * sqrt(2.0) * t * t, 2);
    /* fp32: the bound is tight, and below the entropy */
    assert_true(bound[0] <= entropy[0] && entropy[0] - bound[0] < 1e-4);
    assert_close_rel(entropy[0], exact, 1e-5, 0.0, "fp32 entropy at the equality case");
    /* bf16: rounding took the entropy below f(s, 2), and the bound below it */
    assert_true(entropy[1] < exact - 1e-3);
    if (!(bound[1] <= entropy[1])) {
        print_error("bf16 bound %.7g above the entropy %.7g (f(s, 2) = %.7g)\n", bound[1],
                    entropy[1], exact);
        fail();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define BOTH_PATHS(test)                                                                           \
    {#test " (reference path)", test, NULL, NULL, (void *)&k_reference},                           \
        {#test " (native path)", test, NULL, NULL, (void *)&k_native}
        BOTH_PATHS(test_rounding),
        BOTH_PATHS(test_linear_products),
        BOTH_PATHS(test_determinism_and_no_allocation),
        BOTH_PATHS(test_entropy_bound_with_bf16_logits),
        BOTH_PATHS(test_entropy_bound_at_its_equality_case),
        BOTH_PATHS(test_attention_under_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
