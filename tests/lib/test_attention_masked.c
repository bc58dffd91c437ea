/* Padding masks and cross-attention (attention.h): the double reference,
 * central differences of dx, dmemory and every projection's gradients,
 * exact zeros where the masks say so, the Theorem 3.1 bound against the
 * entropies it bounds, fixtures from the Python reference
 * (tests/reference/gen_masked_attention_fixtures.py), and the allocation
 * count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

/* A case: B sequences of T queries; Tk keys (cross) or T; H heads of
 * D / H; lens: key lengths or NULL. */
typedef struct {
    size_t B, T, Tk, D, H;
    int causal, cross;
    srp_qkv_sigma qkv_sigma;
    const size_t *lens;
} xcase;

static srp_attention *make(const xcase *c, uint64_t seed)
{
    srp_attention_config cfg = srp_attention_config_default(c->D, c->H);
    cfg.causal = c->causal;
    cfg.cross = c->cross;
    cfg.qkv_sigma = c->qkv_sigma;
    cfg.max_memory_tokens = c->cross ? c->Tk : 0;
    cfg.seed = seed;
    srp_attention *a = NULL;
    assert_ok(srp_attention_create(&a, &cfg, c->B, c->T));
    return a;
}

static size_t keys_of(const xcase *c) { return c->cross ? c->Tk : c->T; }

/* O(1) weights and biases, gamma != sigma, so that every term shows. */
static void randomize(srp_attention *a, srp_rng *r, double wscale, float gamma)
{
    for (size_t i = 0; i <= srp_attention_in_proj_count(a); i++) {
        srp_linear *l = i < srp_attention_in_proj_count(a) ? srp_attention_in_proj(a, i, NULL)
                                                          : srp_attention_proj(a);
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        fill_normal_f(r, srp_linear_weight(l), in * out, wscale);
        assert_ok(srp_linear_reinit_sigma(l));
        fill_normal_f(r, srp_linear_bias(l), out, 0.2);
        *srp_linear_gamma(l) = gamma * (1.0f + 0.3f * (float)i);
    }
}

static srp_status forward(srp_attention *a, const xcase *c, const float *x, const float *mem,
                          float *y, int training)
{
    return c->cross ? srp_attention_forward_cross(a, x, c->B, c->T, mem, c->Tk, c->lens, y,
                                                  training)
                    : srp_attention_forward_masked(a, x, c->B, c->T, c->lens, y, training);
}

static srp_status backward(srp_attention *a, const xcase *c, const float *dy, float *dx,
                           float *dmem)
{
    return c->cross ? srp_attention_backward_cross(a, dy, dx, dmem)
                    : srp_attention_backward(a, dy, dx);
}

/* Query row i of example b attends (a padded row of a self-attention does not). */
static int row_attends(const xcase *c, size_t b, size_t i)
{
    return c->cross || !c->lens || i < c->lens[b];
}

/* The module in the double reference with its inputs and the loss's r. */
typedef struct {
    ref_attention att;
    double *x, *mem, *r;
} problem;

static double loss_of(void *ctx)
{
    const problem *P = ctx;
    const size_t m = P->att.B * P->att.T * P->att.D;
    double *y = alloc_d(m);
    ref_attention_forward_memory(&P->att, P->x, P->mem ? P->mem : P->x, y, NULL);
    const double loss = ref_quadratic_loss(y, P->r, m);
    free(y);
    return loss;
}

static void problem_init(problem *P, srp_attention *a, const xcase *c, const float *x,
                         const float *mem)
{
    const size_t n = c->B * c->T * c->D, nm = c->B * keys_of(c) * c->D;
    if (c->cross)
        ref_attention_init_cross(&P->att, a, c->B, c->T, c->Tk);
    else
        ref_attention_init(&P->att, a, c->B, c->T, c->causal);
    P->att.key_len = c->lens;
    P->x = alloc_d(n);
    P->r = alloc_d(n);
    to_double(x, P->x, n);
    P->mem = NULL;
    if (c->cross) {
        P->mem = alloc_d(nm);
        to_double(mem, P->mem, nm);
    }
}

static void problem_free(problem *P)
{
    ref_attention_free(&P->att);
    free(P->x);
    free(P->mem);
    free(P->r);
}

static const size_t lens_a[] = {5, 2, 1}, lens_b[] = {1, 7, 4}, lens_c[] = {3, 1};
static const xcase k_cases[] = {
    {3, 5, 5, 8, 2, 0, 0, SRP_QKV_SIGMA_FUSED, lens_a},    /* self, padded tails */
    {3, 5, 5, 8, 2, 1, 0, SRP_QKV_SIGMA_QK_V, lens_a},     /* causal too */
    {3, 7, 7, 6, 3, 0, 0, SRP_QKV_SIGMA_SEPARATE, lens_b}, /* length-1 sequence */
    {2, 4, 3, 8, 2, 0, 1, SRP_QKV_SIGMA_FUSED, lens_c},    /* cross, Tq > Tk */
    {3, 3, 7, 6, 2, 0, 1, SRP_QKV_SIGMA_SEPARATE, lens_b}, /* cross, Tq < Tk */
    {2, 1, 6, 8, 4, 0, 1, SRP_QKV_SIGMA_FUSED, NULL},      /* one query, no mask */
    {2, 5, 1, 4, 1, 0, 1, SRP_QKV_SIGMA_SEPARATE, NULL},   /* one key */
};
#define N_CASES (sizeof(k_cases) / sizeof(k_cases[0]))

/* y and the entropies (mean, min, normalized) against the double reference. */
static void test_forward_matches_reference(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(71);
    for (size_t k = 0; k < N_CASES; k++) {
        const xcase *c = &k_cases[k];
        const size_t n = c->B * c->T * c->D, nm = c->B * keys_of(c) * c->D;
        srp_attention *a = make(c, k);
        randomize(a, &r, 0.5, 3.0f);
        float *x = alloc_f(n), *mem = alloc_f(nm), *y = alloc_f(n), *yref = alloc_f(n);
        double *yd = alloc_d(n), *ent = alloc_d(c->B * c->H * c->T);
        fill_normal_f(&r, x, n, 1.0);
        fill_normal_f(&r, mem, nm, 1.0);
        problem P;
        problem_init(&P, a, c, x, mem);
        assert_ok(forward(a, c, x, mem, y, SRP_TRAIN));
        ref_attention_forward_memory(&P.att, P.x, P.mem ? P.mem : P.x, yd, ent);
        to_float(yd, yref, n);
        assert_close_array(y, yref, n, 2e-5, "masked attention y");

        float mean[4], min[4], nmean[4], nmin[4];
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_ok(srp_attention_entropy_normalized(a, nmean, nmin));
        for (size_t h = 0; h < c->H; h++) {
            double sum = 0.0, lo = INFINITY, nsum = 0.0, nlo = INFINITY;
            size_t rows = 0, nrows = 0;
            for (size_t b = 0; b < c->B; b++)
                for (size_t i = 0; i < c->T; i++) {
                    const double e = ent[(b * c->H + h) * c->T + i];
                    if (!row_attends(c, b, i)) {
                        assert_true(isnan(e)); /* the reference leaves it out too */
                        continue;
                    }
                    size_t keys = c->causal ? i + 1 : keys_of(c);
                    if (c->lens && c->lens[b] < keys)
                        keys = c->lens[b];
                    sum += e;
                    lo = fmin(lo, e);
                    rows++;
                    if (keys >= 2) {
                        nsum += e / log((double)keys);
                        nlo = fmin(nlo, e / log((double)keys));
                        nrows++;
                    }
                }
            assert_close_rel(mean[h], sum / (double)rows, 1e-5, 1e-2, "mean entropy");
            assert_close_rel(min[h], lo, 1e-5, 1e-1, "min entropy");
            assert_close_rel(nmean[h], nrows ? nsum / (double)nrows : 1.0, 1e-5, 1e-2,
                             "normalized mean entropy");
            assert_close_rel(nmin[h], nrows ? nlo : 1.0, 1e-5, 1e-1, "normalized min entropy");
        }
        problem_free(&P);
        free(x);
        free(mem);
        free(y);
        free(yref);
        free(yd);
        free(ent);
        srp_attention_destroy(a);
    }
}

/* dx, dmemory and every projection's dW, db, dgamma against central
 * differences of the double reference, for the loss 0.5 |y|^2 + <r, y>. */
static void test_backward_matches_finite_differences(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(72);
    const double tol = 1e-4;
    for (size_t k = 0; k < N_CASES; k++) {
        const xcase *c = &k_cases[k];
        const size_t n = c->B * c->T * c->D, nm = c->B * keys_of(c) * c->D;
        srp_attention *a = make(c, 100 + k);
        randomize(a, &r, 0.5, 3.0f);
        float *x = alloc_f(n), *mem = alloc_f(nm), *y = alloc_f(n), *dy = alloc_f(n);
        float *dx = alloc_f(n), *dmem = alloc_f(nm);
        fill_normal_f(&r, x, n, 1.0);
        fill_normal_f(&r, mem, nm, 1.0);
        problem P;
        problem_init(&P, a, c, x, mem);
        fill_normal_d(&r, P.r, n, 1.0);
        assert_ok(forward(a, c, x, mem, y, SRP_TRAIN));
        for (size_t i = 0; i < n; i++)
            dy[i] = y[i] + (float)P.r[i];
        assert_ok(backward(a, c, dy, dx, dmem));
        ref_assert_gradient(loss_of, &P, P.x, n, dx, tol, 0.0, "dx");
        if (c->cross)
            ref_assert_gradient(loss_of, &P, P.mem, nm, dmem, tol, 0.0, "dmemory");
        for (size_t i = 0; i < P.att.n_in; i++) {
            const char *name;
            srp_linear *l = srp_attention_in_proj(a, i, &name);
            ref_assert_linear_gradients(loss_of, &P, &P.att.in_proj[i], l, tol, 0.0, name);
        }
        ref_assert_linear_gradients(loss_of, &P, &P.att.proj, srp_attention_proj(a), tol, 0.0,
                                    "proj");
        problem_free(&P);
        free(x);
        free(mem);
        free(y);
        free(dy);
        free(dx);
        free(dmem);
        srp_attention_destroy(a);
    }
}

/* What the masks promise, exactly: a masked key's weight is 0, so changing
 * its x or memory row (by a lot) changes no bit of y; padded query rows
 * give y = 0 and dx = 0, masked memory rows dmemory = 0. And NULL lengths,
 * or lengths that mask nothing, are srp_attention_forward's bits. */
static void test_masks_are_exact(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(73);
    for (size_t k = 0; k < N_CASES; k++) {
        const xcase *c = &k_cases[k];
        if (!c->lens)
            continue;
        const size_t n = c->B * c->T * c->D, Tk = keys_of(c), nm = c->B * Tk * c->D, D = c->D;
        srp_attention *a = make(c, 200 + k);
        randomize(a, &r, 0.5, 3.0f);
        float *x = alloc_f(n), *mem = alloc_f(nm), *y = alloc_f(n), *y2 = alloc_f(n);
        float *dy = alloc_f(n), *dx = alloc_f(n), *dmem = alloc_f(nm);
        fill_normal_f(&r, x, n, 1.0);
        fill_normal_f(&r, mem, nm, 1.0);
        fill_normal_f(&r, dy, n, 1.0);
        assert_ok(forward(a, c, x, mem, y, SRP_TRAIN));
        assert_ok(backward(a, c, dy, dx, dmem));
        for (size_t b = 0; b < c->B; b++) {
            for (size_t i = 0; i < c->T; i++)
                for (size_t d = 0; d < D; d++)
                    if (!row_attends(c, b, i)) {
                        assert_true(y[(b * c->T + i) * D + d] == 0.0f);
                        assert_true(dx[(b * c->T + i) * D + d] == 0.0f);
                    }
            for (size_t j = c->lens[b]; c->cross && j < Tk; j++)
                for (size_t d = 0; d < D; d++)
                    assert_true(dmem[(b * Tk + j) * D + d] == 0.0f);
        }
        /* The masked rows (keys and padded queries) scaled by 1000: the
         * logits they make go far off, their weights must stay 0. */
        assert_ok(forward(a, c, x, mem, y, SRP_EVAL)); /* eval: the same sigma both times */
        float *keys_src = c->cross ? mem : x;
        for (size_t b = 0; b < c->B; b++)
            for (size_t j = c->lens[b]; j < Tk; j++)
                for (size_t d = 0; d < D; d++)
                    keys_src[(b * Tk + j) * D + d] *= 1000.0f;
        assert_ok(forward(a, c, x, mem, y2, SRP_EVAL));
        assert_memory_equal(y, y2, sizeof(float) * n);
        srp_attention_destroy(a);

        /* No mask, from NULL or from full lengths: srp_attention_forward's
         * bits (self), and each other's (cross). */
        const size_t full[3] = {Tk, Tk, Tk};
        xcase open = *c, filled = *c;
        open.lens = NULL;
        filled.lens = full;
        srp_attention *a1 = make(c, 300), *a2 = make(c, 300);
        float e1[4], e2[4];
        assert_ok(forward(a2, &filled, x, mem, y2, SRP_EVAL)); /* eval: no state moves */
        assert_ok(forward(a1, &open, x, mem, y, SRP_EVAL));
        assert_memory_equal(y, y2, sizeof(float) * n);
        if (!c->cross) {
            assert_ok(srp_attention_forward(a1, x, c->B, c->T, y, SRP_EVAL));
            assert_memory_equal(y, y2, sizeof(float) * n);
        }
        assert_ok(srp_attention_entropy(a1, e1, NULL));
        assert_ok(srp_attention_entropy(a2, e2, NULL));
        assert_memory_equal(e1, e2, sizeof(float) * c->H);
        srp_attention_destroy(a1);
        srp_attention_destroy(a2);
        free(x);
        free(mem);
        free(y);
        free(y2);
        free(dy);
        free(dx);
        free(dmem);
    }
}

/* Theorem 3.1 for masked rows and cross-attention (attention.h): the
 * bound against the measured minimum (mean, when causal) over the rows
 * that attend, on random modules with weights from tiny to large. */
static void test_bound_never_exceeds_measured_entropy(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(74);
    int cases = 0, tight = 0;
    size_t lens[3];
    for (int trial = 0; trial < 240; trial++) {
        xcase c;
        c.H = 1 + srp_rng_below(&r, 3);
        c.D = c.H * (1 + srp_rng_below(&r, 6));
        c.T = 1 + srp_rng_below(&r, 20);
        c.B = 1 + srp_rng_below(&r, 3);
        c.cross = trial % 3 == 2;
        c.Tk = c.cross ? 1 + srp_rng_below(&r, 20) : c.T;
        c.causal = !c.cross && trial % 3 == 1;
        c.qkv_sigma = (trial / 3) % 2 ? SRP_QKV_SIGMA_SEPARATE : SRP_QKV_SIGMA_FUSED;
        for (size_t b = 0; b < c.B; b++)
            lens[b] = 1 + srp_rng_below(&r, keys_of(&c));
        c.lens = trial % 7 == 6 && c.cross ? NULL : lens;
        srp_attention *a = make(&c, (uint64_t)trial);
        const double gamma = exp(srp_rng_uniform(&r) * 12.0 - 8.0); /* 3e-4 .. 55 */
        randomize(a, &r, 1.0, (float)gamma);
        const size_t n = c.B * c.T * c.D, nm = c.B * keys_of(&c) * c.D;
        float *x = alloc_f(n), *mem = alloc_f(nm), *y = alloc_f(n);
        fill_normal_f(&r, x, n, exp(srp_rng_uniform(&r) * 3.0 - 1.5));
        fill_normal_f(&r, mem, nm, exp(srp_rng_uniform(&r) * 3.0 - 1.5));
        assert_ok(forward(a, &c, x, mem, y, SRP_EVAL));
        float mean[3], min[3], bound[3];
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_ok(srp_attention_entropy_bound(a, bound));
        for (size_t h = 0; h < c.H; h++) {
            const float bounded = c.causal ? mean[h] : min[h];
            assert_true(bound[h] >= 0.0f && bound[h] <= log((double)keys_of(&c)) + 1e-6);
            if (!(bound[h] <= bounded)) {
                print_error("trial %d head %zu: bound %.7g above %s entropy %.7g\n", trial, h,
                            bound[h], c.causal ? "mean" : "min", bounded);
                fail();
            }
            tight += bound[h] > 0.1f * bounded && bound[h] > 0.01f;
            cases++;
        }
        free(x);
        free(mem);
        free(y);
        srp_attention_destroy(a);
    }
    assert_true(cases >= 240);
    assert_true(tight > 20); /* the bound is not trivially 0 */
}

/* The cross-attention's bound at s = 0 (gamma_q = 0 and no query bias) is
 * log(key length) less the softmax's margin, and its terms are the norms
 * the header names: s = ||M_h|| x_gram_norm, x_gram_norm =
 * max_b max_i ||x~_i|| ||Mem~_b|| (from the unmasked memory rows). */
static void test_cross_bound_terms(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(75);
    const size_t lens[2] = {4, 6};
    const xcase c = {2, 3, 6, 4, 2, 0, 1, SRP_QKV_SIGMA_FUSED, lens};
    srp_attention *a = make(&c, 9);
    randomize(a, &r, 1.0, 2.0f);
    srp_linear *q = srp_attention_in_proj(a, 0, NULL);
    *srp_linear_gamma(q) = 0.0f; /* q = 0: W_hat_q = 0 and no bias */
    memset(srp_linear_bias(q), 0, sizeof(float) * 4);
    float x[2 * 3 * 4], mem[2 * 6 * 4], y[2 * 3 * 4], bound[2], s_h[2], m_h[2], g;
    fill_normal_f(&r, x, 24, 1.0);
    fill_normal_f(&r, mem, 48, 1.0);
    assert_ok(forward(a, &c, x, mem, y, SRP_EVAL));
    assert_ok(srp_attention_entropy_bound_terms(a, bound, s_h, m_h, &g));
    const double k = (2.0 * 6 + 32.0) * 0x1p-24, margin = k / (1.0 - k) * (1.0 + log(4.0));
    for (int h = 0; h < 2; h++) {
        assert_true(m_h[h] == 0.0f && s_h[h] == 0.0f);
        assert_true(bound[h] <= log(4.0) && bound[h] >= log(4.0) - margin - 1e-7);
    }
    /* x_gram_norm from an independent route: the exact SVD of Mem~_b. */
    double want = 0.0;
    for (size_t b = 0; b < 2; b++) {
        float mt[6 * 5], sm;
        for (size_t j = 0; j < lens[b]; j++) {
            memcpy(mt + j * 5, mem + (b * 6 + j) * 4, sizeof(float) * 4);
            mt[j * 5 + 4] = 1.0f;
        }
        assert_ok(srp_spectral_norm_exact(mt, lens[b], 5, &sm));
        double top = 0.0;
        for (size_t i = 0; i < 3; i++) {
            double rn = 1.0;
            for (size_t d = 0; d < 4; d++)
                rn += (double)x[(b * 3 + i) * 4 + d] * x[(b * 3 + i) * 4 + d];
            top = fmax(top, sqrt(rn));
        }
        want = fmax(want, top * sm);
    }
    assert_close_rel(g, want, 1e-5, 0.0, "cross x_gram_norm");
    assert_true(g >= want * (1.0 - 1e-6));
    srp_attention_destroy(a);
}

/* Bad calls: status, detail, and the last forward still differentiable. */
static void test_errors(void **state)
{
    (void)state;
    srp_attention_config cfg = srp_attention_config_default(8, 2);
    srp_attention *a = NULL;
    cfg.cross = 1;
    cfg.causal = 1;
    assert_status(srp_attention_create(&a, &cfg, 2, 4), SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "cfg->causal"));
    cfg.causal = 0;
    cfg.qkv_sigma = SRP_QKV_SIGMA_QK_V;
    assert_status(srp_attention_create(&a, &cfg, 2, 4), SRP_ERR_INVALID_ARG);
    assert_null(a);
    cfg.qkv_sigma = SRP_QKV_SIGMA_FUSED;
    cfg.max_memory_tokens = 6;
    assert_ok(srp_attention_create(&a, &cfg, 2, 4));
    assert_null(srp_attention_qkv(a)); /* q and kv, no fused qkv */
    const char *name;
    assert_non_null(srp_attention_in_proj(a, 1, &name));
    assert_string_equal(name, "kv");
    assert_int_equal(srp_linear_out_features(srp_attention_in_proj(a, 1, NULL)), 16);
    srp_param_list *list;
    assert_ok(srp_param_list_create(&list));
    assert_ok(srp_attention_params(a, "dec.cross", list));
    const char *want[] = {"dec.cross.q.weight",   "dec.cross.q.bias",   "dec.cross.q.gamma",
                          "dec.cross.kv.weight",  "dec.cross.kv.bias",  "dec.cross.kv.gamma",
                          "dec.cross.proj.weight", "dec.cross.proj.bias", "dec.cross.proj.gamma"};
    assert_int_equal(srp_param_list_count(list), 9);
    for (size_t i = 0; i < 9; i++)
        assert_string_equal(srp_param_list_entries(list)[i].name, want[i]);
    srp_param_list_destroy(list);

    float x[2 * 4 * 8] = {0}, mem[2 * 6 * 8] = {0}, y[2 * 4 * 8], dx[2 * 4 * 8], dm[2 * 6 * 8];
    size_t lens[2] = {6, 2};
    assert_ok(srp_attention_forward_cross(a, x, 2, 4, mem, 6, lens, y, SRP_TRAIN));
    lens[1] = 0;
    assert_status(srp_attention_forward_cross(a, x, 2, 4, mem, 6, lens, y, SRP_TRAIN),
                  SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "key_len[1] is 0"));
    lens[1] = 7;
    assert_status(srp_attention_forward_cross(a, x, 2, 4, mem, 6, lens, y, SRP_TRAIN),
                  SRP_ERR_INVALID_ARG);
    lens[1] = 6; /* above this call's memory_tokens */
    assert_status(srp_attention_forward_cross(a, x, 2, 4, mem, 5, lens, y, SRP_TRAIN),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward_cross(a, x, 2, 4, mem, 7, NULL, y, SRP_TRAIN),
                  SRP_ERR_SHAPE);
    assert_status(srp_attention_forward_cross(a, x, 2, 5, mem, 6, NULL, y, SRP_TRAIN),
                  SRP_ERR_SHAPE);
    assert_status(srp_attention_forward_cross(a, x, 2, 4, NULL, 6, NULL, y, SRP_TRAIN),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward(a, x, 2, 4, y, SRP_TRAIN), SRP_ERR_UNSUPPORTED);
    assert_status(srp_attention_backward(a, y, dx), SRP_ERR_UNSUPPORTED);
    /* None of that touched the forward on (2, 4, 6): its backward runs. */
    assert_ok(srp_attention_backward_cross(a, y, dx, dm));
    assert_status(srp_attention_backward_cross(a, y, dx, dm), SRP_ERR_ORDER);
    srp_attention_destroy(a);

    cfg = srp_attention_config_default(8, 2);
    assert_ok(srp_attention_create(&a, &cfg, 2, 4));
    size_t sl[2] = {4, 5};
    assert_ok(srp_attention_forward(a, x, 2, 4, y, SRP_TRAIN));
    assert_status(srp_attention_forward_masked(a, x, 2, 4, sl, y, SRP_TRAIN),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_forward_cross(a, x, 2, 4, mem, 4, NULL, y, SRP_TRAIN),
                  SRP_ERR_UNSUPPORTED);
    assert_status(srp_attention_backward_cross(a, y, dx, dm), SRP_ERR_UNSUPPORTED);
    assert_ok(srp_attention_backward(a, y, dx));
    srp_attention_destroy(a);
}

/* One case's linears from the fixture (w0, b0, u0, gamma0), by name. */
static void load_linear(const fixture *fx, const char *tag, const char *name, srp_linear *l)
{
    char key[160];
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    snprintf(key, sizeof(key), "%s/%s/w0", tag, name);
    memcpy(srp_linear_weight(l), fixture_get(fx, key, in * out, NULL), sizeof(float) * in * out);
    snprintf(key, sizeof(key), "%s/%s/b0", tag, name);
    memcpy(srp_linear_bias(l), fixture_get(fx, key, out, NULL), sizeof(float) * out);
    assert_ok(srp_linear_reinit_sigma(l));
    snprintf(key, sizeof(key), "%s/%s/u0", tag, name);
    memcpy(srp_linear_u(l), fixture_get(fx, key, in, NULL), sizeof(float) * in);
    snprintf(key, sizeof(key), "%s/%s/gamma0", tag, name);
    *srp_linear_gamma(l) = fixture_get(fx, key, 1, NULL)[0];
}

static void run_fixture_case(const fixture *fx, const char *tag)
{
    char key[160];
#define FX(name, count)                                                                            \
    (snprintf(key, sizeof(key), "%s/%s", tag, name), fixture_get(fx, key, count, NULL))
    const float *cfg = FX("config", 10);
    size_t lens[8];
    xcase c = {(size_t)cfg[0], (size_t)cfg[1], (size_t)cfg[2], (size_t)cfg[3], (size_t)cfg[4],
               cfg[5] != 0.0f, cfg[6] != 0.0f,
               cfg[7] != 0.0f ? SRP_QKV_SIGMA_SEPARATE : SRP_QKV_SIGMA_FUSED, NULL};
    if (cfg[8] != 0.0f) {
        const float *kl = FX("key_len", c.B);
        for (size_t b = 0; b < c.B; b++)
            lens[b] = (size_t)kl[b];
        c.lens = lens;
    }
    const int steps = (int)cfg[9];
    const size_t n = c.B * c.T * c.D, nm = c.B * c.Tk * c.D;
    const float tol = 1e-5f, lr = 0.05f;
    srp_attention *a = make(&c, 1);
    const size_t n_lin = srp_attention_in_proj_count(a) + 1;
    srp_linear *lin[4];
    const char *names[4];
    for (size_t i = 0; i < n_lin; i++) {
        lin[i] = i + 1 < n_lin ? srp_attention_in_proj(a, i, &names[i]) : srp_attention_proj(a);
        if (i + 1 == n_lin)
            names[i] = "proj";
        load_linear(fx, tag, names[i], lin[i]);
    }
    float *y = alloc_f(n), *dx = alloc_f(n), *dmem = alloc_f(nm), mean[4], min[4];
    char name[96];
    for (int step = 0; step < steps; step++) {
#define STEP(field, count) (snprintf(name, sizeof(name), "step%d/%s", step, field), FX(name, count))
        srp_attention_zero_grad(a);
        assert_ok(forward(a, &c, STEP("x", n), c.cross ? STEP("memory", nm) : NULL, y, SRP_TRAIN));
        assert_close_array(y, STEP("y", n), n, tol, "fixture y");
        assert_ok(srp_attention_entropy(a, mean, min));
        assert_close_array(mean, STEP("ent_mean", c.H), c.H, tol, "fixture entropy mean");
        assert_close_array_floor(min, STEP("ent_min", c.H), c.H, tol, 1.0, "fixture entropy min");
        assert_ok(backward(a, &c, STEP("dy", n), dx, dmem));
        assert_close_array(dx, STEP("dx", n), n, tol, "fixture dx");
        if (c.cross)
            assert_close_array(dmem, STEP("dmemory", nm), nm, tol, "fixture dmemory");
        for (size_t i = 0; i < n_lin; i++) {
            /* db at the scale of dW: the key bias's gradient is 0 up to
             * rounding (softmax ignores a shift of a row) */
            const size_t nw = srp_linear_in_features(lin[i]) * srp_linear_out_features(lin[i]);
            snprintf(name, sizeof(name), "step%d/%s/dw", step, names[i]);
            const float *dw_ref = FX(name, nw);
            double dw_scale = 0.0;
            for (size_t j = 0; j < nw; j++)
                dw_scale = fmax(dw_scale, fabs(dw_ref[j]));
            snprintf(name, sizeof(name), "%s/step%d/%s", tag, step, names[i]);
            fixture_check_linear_step(fx, name, lin[i], tol, dw_scale, lr);
        }
#undef STEP
    }
#undef FX
    free(y);
    free(dx);
    free(dmem);
    srp_attention_destroy(a);
}

static void test_matches_python_reference(void **state)
{
    (void)state;
    fixture *fx = fixture_load(SRP_TEST_DATA_DIR "/masked_attention_fixtures.bin");
    const char *cases[] = {"self_masked",    "self_causal_masked", "self_padded_tail",
                           "cross_fused",    "cross_separate",     "cross_one_query",
                           "cross_one_key"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_fixture_case(fx, cases[i]);
    fixture_free(fx);
}

/* ---- cached decoding of cross-attention (attention.h) ---- */

/* A cross-attention for decoding: O(1) weights, and u moved off the top
 * singular vector, so that the eval forward's power step gives a sigma of
 * its own, which set_memory must take too. */
static srp_attention *make_decoding(const xcase *c, uint64_t seed)
{
    srp_attention *a = make(c, seed);
    srp_rng r = seeded_rng(seed);
    randomize(a, &r, 0.3, 1.5f);
    for (size_t i = 0; i <= srp_attention_in_proj_count(a); i++) {
        srp_linear *l = i < srp_attention_in_proj_count(a) ? srp_attention_in_proj(a, i, NULL)
                                                           : srp_attention_proj(a);
        fill_normal_f(&r, srp_linear_u(l), srp_linear_in_features(l), 1.0);
    }
    return a;
}

/* dst [batch][n] = the rows of src [.][n] that rows names. */
static void pick_rows(float *dst, const float *src, const size_t *rows, size_t batch, size_t n)
{
    for (size_t i = 0; i < batch; i++)
        memcpy(dst + i * n, src + rows[i] * n, sizeof(float) * n);
}

/* Decodes x's positions 0..T-1 one at a time and compares each with row t
 * of want [batch][T][D] (1e-6 relative); returns the worst. */
static double decode_and_compare(srp_attention *a, srp_attention_cache *cache, const float *x,
                                 const float *want, size_t batch, size_t T, size_t D,
                                 const char *what)
{
    float *step = alloc_f(batch * D), *row = alloc_f(batch * D);
    double worst = 0.0;
    for (size_t t = 0; t < T; t++) {
        for (size_t b = 0; b < batch; b++) {
            memcpy(step + b * D, x + (b * T + t) * D, sizeof(float) * D);
            memcpy(row + b * D, want + (b * T + t) * D, sizeof(float) * D);
        }
        const size_t before = srp_attention_cache_length(cache);
        assert_ok(srp_attention_decode(a, cache, step, batch, step));
        assert_int_equal(srp_attention_cache_length(cache), before + 1);
        const double rel = rel_max_diff(step, row, batch * D);
        worst = fmax(worst, rel);
        if (rel > 1e-6)
            fail_msg("%s, position %zu: decoded vs forward_cross %.3g relative", what, t, rel);
    }
    free(step);
    free(row);
    return worst;
}

/* Row t of the eval srp_attention_forward_cross, decoded position by
 * position from a cache whose memory was set once: FUSED and SEPARATE,
 * a memory of the module's full length and a shorter one, with and
 * without key lengths (one of them the full memory, one a single key). */
static void test_cross_decode_matches_forward(void **state)
{
    (void)state;
    static const size_t lens_full[3] = {6, 2, 1}, lens_short[3] = {3, 1, 2};
    const struct {
        size_t mt;
        const size_t *lens;
    } mems[4] = {{6, NULL}, {6, lens_full}, {3, NULL}, {3, lens_short}};
    for (int mode = 0; mode < 3; mode += 2) {
        for (int m = 0; m < 4; m++) {
            const xcase c = {3, 5, 6, 16, 4, 0, 1, (srp_qkv_sigma)mode, mems[m].lens};
            const size_t B = c.B, T = c.T, D = c.D, mt = mems[m].mt;
            srp_attention *a = make_decoding(&c, 60 + (uint64_t)(3 * mode + m));
            float *x = alloc_f(B * T * D), *mem = alloc_f(B * mt * D), *want = alloc_f(B * T * D);
            srp_rng r = seeded_rng(61);
            fill_normal_f(&r, x, B * T * D, 1.0);
            fill_normal_f(&r, mem, B * mt * D, 1.0);
            assert_ok(srp_attention_forward_cross(a, x, B, T, mem, mt, c.lens, want, SRP_EVAL));
            const float sigma = srp_linear_sigma(srp_attention_in_proj(a, 1, NULL));
            srp_attention_cache *cache = NULL;
            assert_ok(srp_attention_cache_create(&cache, a, B, T));
            assert_ok(srp_attention_cache_set_memory(cache, mem, B, mt, c.lens));
            assert_int_equal(srp_attention_cache_length(cache), 0);
            char what[64];
            snprintf(what, sizeof what, "qkv_sigma %d, memory %d", mode, m);
            const double worst = decode_and_compare(a, cache, x, want, B, T, D, what);
            assert_true(srp_linear_sigma(srp_attention_in_proj(a, 1, NULL)) == sigma);
            /* full: the length counts as a self-attention's; a new memory starts again */
            assert_status(srp_attention_decode(a, cache, x, B, want), SRP_ERR_SHAPE);
            assert_ok(srp_attention_cache_set_memory(cache, mem, B, mt, c.lens));
            assert_int_equal(srp_attention_cache_length(cache), 0);
            /* reset forgets the memory */
            srp_attention_cache_reset(cache);
            assert_status(srp_attention_decode(a, cache, x, B, want), SRP_ERR_ORDER);
            printf("cross decode, %s: worst %.2g relative\n", what, worst);
            srp_attention_cache_destroy(cache);
            srp_attention_destroy(a);
            free(x);
            free(mem);
            free(want);
        }
    }
}

/* srp_attention_cache_select on a cross-attention's cache: decode two
 * positions of 3 sequences, keep rows {2, 0, 0, 2} (a repeat each, row 1
 * dropped, one more row than before), decode the rest: the rows are those
 * of a forward over the picked memories and key lengths. */
static void test_cross_decode_select(void **state)
{
    (void)state;
    static const size_t lens[3] = {4, 1, 3}, rows[4] = {2, 0, 0, 2};
    for (int mode = 0; mode < 3; mode += 2) {
        const xcase c = {4, 5, 4, 8, 2, 0, 1, (srp_qkv_sigma)mode, lens};
        const size_t B0 = 3, B1 = 4, T = c.T, D = c.D, Tk = c.Tk;
        srp_attention *a = make_decoding(&c, 70 + (uint64_t)mode);
        float *x = alloc_f(B1 * T * D), *mem = alloc_f(B0 * Tk * D), *want = alloc_f(B1 * T * D);
        float *pmem = alloc_f(B1 * Tk * D);
        size_t plens[4];
        srp_rng r = seeded_rng(71);
        fill_normal_f(&r, x, B1 * T * D, 1.0);
        fill_normal_f(&r, mem, B0 * Tk * D, 1.0);
        srp_attention_cache *cache = NULL;
        assert_ok(srp_attention_cache_create(&cache, a, B1, T));
        assert_ok(srp_attention_cache_set_memory(cache, mem, B0, Tk, lens));
        /* two positions of the 3 sequences (their rows of x: the first 3) */
        float *head = alloc_f(B0 * 2 * D), *head_want = alloc_f(B0 * 2 * D);
        for (size_t b = 0; b < B0; b++)
            memcpy(head + b * 2 * D, x + b * T * D, sizeof(float) * 2 * D);
        assert_ok(srp_attention_forward_cross(a, head, B0, 2, mem, Tk, lens, head_want, SRP_EVAL));
        decode_and_compare(a, cache, head, head_want, B0, 2, D, "before select");
        assert_ok(srp_attention_cache_select(cache, rows, B1));
        assert_int_equal(srp_attention_cache_length(cache), 2);
        /* the rest: 3 positions of 4 sequences against the picked memories */
        pick_rows(pmem, mem, rows, B1, Tk * D);
        for (size_t i = 0; i < B1; i++)
            plens[i] = lens[rows[i]];
        float *tail = alloc_f(B1 * 3 * D);
        for (size_t b = 0; b < B1; b++)
            memcpy(tail + b * 3 * D, x + (b * T + 2) * D, sizeof(float) * 3 * D);
        assert_ok(srp_attention_forward_cross(a, tail, B1, 3, pmem, Tk, plens, want, SRP_EVAL));
        decode_and_compare(a, cache, tail, want, B1, 3, D, "after select");
        assert_status(srp_attention_decode(a, cache, x, B0, want), SRP_ERR_SHAPE); /* 4 now */
        srp_attention_cache_destroy(cache);
        srp_attention_destroy(a);
        free(x);
        free(mem);
        free(want);
        free(pmem);
        free(head);
        free(head_want);
        free(tail);
    }
}

#ifdef SRP_COUNT_ALLOCS
/* After the first call at each shape, masked and cross forwards and
 * backwards, the entropies and the bound allocate nothing. */
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    const size_t lens[4] = {40, 7, 1, 33};
    const xcase self = {4, 40, 40, 32, 4, 1, 0, SRP_QKV_SIGMA_FUSED, lens};
    const xcase cross = {4, 25, 40, 32, 4, 0, 1, SRP_QKV_SIGMA_SEPARATE, lens};
    const xcase *cs[2] = {&self, &cross};
    for (int k = 0; k < 2; k++) {
        const xcase *c = cs[k];
        const size_t n = c->B * c->T * c->D, nm = c->B * c->Tk * c->D;
        alloc_counter_start();
        srp_attention *a = make(c, 5);
        assert_true(alloc_counter_stop(NULL) > 0); /* the probe sees create's */
        float *x = alloc_f(n), *mem = alloc_f(nm), *y = alloc_f(n), *dx = alloc_f(n);
        float *dm = alloc_f(nm), e[4];
        srp_rng r = seeded_rng(76);
        fill_normal_f(&r, x, n, 1.0);
        fill_normal_f(&r, mem, nm, 1.0);
        assert_ok(forward(a, c, x, mem, y, SRP_TRAIN)); /* warm-up: the plans */
        assert_ok(backward(a, c, y, dx, dm));
        alloc_counter_start();
        for (int it = 0; it < 3; it++) {
            assert_ok(forward(a, c, x, mem, y, SRP_TRAIN));
            assert_ok(backward(a, c, y, dx, dm));
            assert_ok(srp_attention_entropy(a, e, e));
            assert_ok(srp_attention_entropy_normalized(a, e, e));
            assert_ok(srp_attention_entropy_bound(a, e));
        }
        assert_int_equal(alloc_counter_stop(NULL), 0);
        free(x);
        free(mem);
        free(y);
        free(dx);
        free(dm);
        srp_attention_destroy(a);
    }
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_backward_matches_finite_differences),
        cmocka_unit_test(test_masks_are_exact),
        cmocka_unit_test(test_bound_never_exceeds_measured_entropy),
        cmocka_unit_test(test_cross_bound_terms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_matches_python_reference),
        cmocka_unit_test(test_cross_decode_matches_forward),
        cmocka_unit_test(test_cross_decode_select),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
