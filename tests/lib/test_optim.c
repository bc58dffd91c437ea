/* Optimizers against double-precision implementations of the update rules
 * documented in optim.h (written here from the formulas, not from the
 * library), over several steps with changing gradients and learning rates;
 * clipping; learning-rate schedules against closed-form values; the state
 * exposed for checkpoints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

#define MAX_ENTRIES 5
#define STEPS 7

/* One model: entries in float for the library, and a double copy of the
 * parameters and optimizer state that the reference rule updates. */
typedef struct {
    size_t count;
    srp_param params[MAX_ENTRIES];
    float *data[MAX_ENTRIES], *grad[MAX_ENTRIES];
    double *p[MAX_ENTRIES], *p0[MAX_ENTRIES];  /* reference params, initial params */
    double *s0[MAX_ENTRIES], *s1[MAX_ENTRIES]; /* reference state: buf or m; v */
} model;

typedef struct {
    const char *name;
    size_t size;
    srp_param_kind kind;
    float lr_mult;
} entry_spec;

/* Entries of every kind: a matrix, its bias, the scalar gamma (lr_mult 2),
 * a norm scale with lr_mult 0.5, another matrix. */
static const entry_spec SPECS[MAX_ENTRIES] = {
    {"blocks.0.fc1.weight", 48, SRP_PARAM_WEIGHT, 1.0f},
    {"blocks.0.fc1.bias", 6, SRP_PARAM_BIAS, 1.0f},
    {"blocks.0.fc1.gamma", 1, SRP_PARAM_GAMMA, 2.0f},
    {"blocks.0.norm.weight", 8, SRP_PARAM_NORM, 0.5f},
    {"head.weight", 30, SRP_PARAM_WEIGHT, 1.0f},
};

static void model_init(model *m, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->count = MAX_ENTRIES;
    srp_rng rng = seeded_rng(seed);
    for (size_t i = 0; i < m->count; i++) {
        const size_t n = SPECS[i].size;
        m->data[i] = malloc(sizeof(float) * n);
        m->grad[i] = malloc(sizeof(float) * n);
        m->p[i] = malloc(sizeof(double) * n);
        m->p0[i] = malloc(sizeof(double) * n);
        m->s0[i] = calloc(n, sizeof(double));
        m->s1[i] = calloc(n, sizeof(double));
        assert_true(m->data[i] && m->grad[i] && m->p[i] && m->p0[i] && m->s0[i] && m->s1[i]);
        fill_normal_f(&rng, m->data[i], n, 1.0);
        memset(m->grad[i], 0, sizeof(float) * n);
        to_double(m->data[i], m->p[i], n);
        to_double(m->data[i], m->p0[i], n);
        m->params[i] = srp_param_make(SPECS[i].name, m->data[i], m->grad[i], n, SPECS[i].kind);
        m->params[i].lr_mult = SPECS[i].lr_mult;
    }
}

static void model_free(model *m)
{
    for (size_t i = 0; i < m->count; i++) {
        free(m->data[i]);
        free(m->grad[i]);
        free(m->p[i]);
        free(m->p0[i]);
        free(m->s0[i]);
        free(m->s1[i]);
    }
}

static void new_gradients(model *m, srp_rng *rng, double scale)
{
    for (size_t i = 0; i < m->count; i++)
        fill_normal_f(rng, m->grad[i], SPECS[i].size, scale);
}

/* ---- the reference rules, in double, from optim.h ---- */

static double norm_of(const double *x, size_t n) { return sqrt(dot_d(x, x, n)); }

/* SGD / LARS. t: steps taken before this one. g: the float gradient. */
static void ref_sgd(const srp_optim_config *c, const srp_param *e, const float *gf, double *p,
                    double *buf, double lr, uint64_t t)
{
    const size_t n = e->size;
    const double lr_e = lr * e->lr_mult;
    const double wd = e->weight_decay ? c->weight_decay : 0.0;
    const int decoupled = c->kind == SRP_OPTIM_SGD && c->wd_mode == SRP_WD_DECOUPLED;
    double *d = malloc(sizeof(double) * n), *g = malloc(sizeof(double) * n);
    assert_true(d && g);
    to_double(gf, g, n);
    double trust = 1.0;
    if (c->kind == SRP_OPTIM_LARS && e->lars) {
        const double pn = norm_of(p, n), gn = norm_of(g, n);
        if (pn > 0.0 && gn + wd * pn > 0.0)
            trust = c->lars_eta * pn / (gn + wd * pn);
    }
    for (size_t k = 0; k < n; k++)
        d[k] = trust * (g[k] + (decoupled ? 0.0 : wd) * p[k]);
    for (size_t k = 0; k < n; k++) {
        if (c->momentum > 0.0f) {
            buf[k] = t == 0 ? d[k] : c->momentum * buf[k] + (1.0 - c->dampening) * d[k];
            d[k] = c->nesterov ? d[k] + c->momentum * buf[k] : buf[k];
        }
        if (decoupled)
            p[k] *= 1.0 - lr_e * wd;
        p[k] -= lr_e * d[k];
    }
    free(d);
    free(g);
}

/* AdamW (decoupled) or Adam with L2 (coupled). t: steps taken before. */
static void ref_adamw(const srp_optim_config *c, const srp_param *e, const float *gf, double *p,
                      double *m, double *v, double lr, uint64_t t)
{
    const double lr_e = lr * e->lr_mult;
    const double wd = e->weight_decay ? c->weight_decay : 0.0;
    const int decoupled = c->wd_mode == SRP_WD_DECOUPLED;
    const double b1 = c->beta1, b2 = c->beta2, step = (double)(t + 1);
    const double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    for (size_t k = 0; k < e->size; k++) {
        const double g = (double)gf[k] + (decoupled ? 0.0 : wd * p[k]);
        if (decoupled)
            p[k] *= 1.0 - lr_e * wd;
        m[k] = b1 * m[k] + (1.0 - b1) * g;
        v[k] = b2 * v[k] + (1.0 - b2) * g * g;
        p[k] -= (lr_e / bc1) * m[k] / (sqrt(v[k]) / sqrt(bc2) + c->eps);
    }
}

/* The global norm of the float gradients, in double. */
static double grad_norm(const model *m)
{
    double sq = 0.0;
    for (size_t i = 0; i < m->count; i++)
        for (size_t k = 0; k < SPECS[i].size; k++)
            sq += (double)m->grad[i][k] * (double)m->grad[i][k];
    return sqrt(sq);
}

/* ---- comparisons ---- */

/* The displacement p - p0 of the library against the reference's,
 * relative to the largest reference displacement: sensitive to every term
 * of the update, not drowned by |p|. */
static void assert_moved_like(const float *got, const double *ref, const double *p0, size_t n,
                              double tol, const char *what, size_t entry)
{
    double scale = 0.0, worst = 0.0;
    for (size_t k = 0; k < n; k++)
        scale = fmax(scale, fabs(ref[k] - p0[k]));
    assert_true(scale > 0.0);
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        const double e = fabs(((double)got[k] - p0[k]) - (ref[k] - p0[k]));
        if (!(e <= worst)) {
            worst = e;
            at = k;
        }
    }
    if (!(worst <= tol * scale)) {
        print_error("%s, entry %zu [%zu]: moved %.9g, reference %.9g (err %.3g > tol %.3g)\n", what,
                    entry, at, (double)got[at] - p0[at], ref[at] - p0[at], worst / scale, tol);
        fail();
    }
}

static void assert_state_like(const float *got, const double *ref, size_t n, double tol,
                              const char *what, size_t entry)
{
    double scale = 0.0;
    for (size_t k = 0; k < n; k++)
        scale = fmax(scale, fabs(ref[k]));
    assert_true(scale > 0.0);
    for (size_t k = 0; k < n; k++) {
        if (!(fabs((double)got[k] - ref[k]) <= tol * scale)) {
            print_error("%s, entry %zu [%zu]: %.9g vs reference %.9g\n", what, entry, k,
                        (double)got[k], ref[k]);
            fail();
        }
    }
}

/* Runs STEPS steps of cfg with a cosine schedule (with warmup) and optional
 * clipping on the library and on the reference; compares params and state
 * after every step. */
static void run_against_reference(const srp_optim_config *cfg, double gscale, float clip,
                                  uint64_t seed)
{
    model m;
    model_init(&m, seed);
    srp_optim *o = NULL;
    assert_ok(srp_optim_create(&o, m.params, m.count, cfg));
    srp_lr_schedule sched = srp_lr_schedule_default(SRP_LR_COSINE, 0.2f, STEPS + 2);
    sched.warmup_steps = 2;
    sched.min_lr = 0.01f;
    srp_rng rng = seeded_rng(seed + 100);
    for (uint64_t t = 0; t < STEPS; t++) {
        new_gradients(&m, &rng, gscale);
        if (clip > 0.0f) {
            const double ref_norm = grad_norm(&m);
            float norm = -1.0f;
            assert_ok(srp_optim_clip_grad_norm(o, clip, &norm));
            assert_close_rel(norm, ref_norm, 1e-6, 0.0, "pre-clip norm");
            assert_true(ref_norm > clip); /* the test data does clip */
            /* the clipped global norm is max_norm (up to the 1e-6) */
            assert_close_rel(grad_norm(&m), clip, 1e-5, 0.0, "post-clip norm");
        }
        const float lr = srp_lr_at(&sched, t);
        assert_true(srp_optim_step_count(o) == t);
        assert_ok(srp_optim_step(o, lr));
        for (size_t i = 0; i < m.count; i++) {
            if (cfg->kind == SRP_OPTIM_ADAMW)
                ref_adamw(cfg, &m.params[i], m.grad[i], m.p[i], m.s0[i], m.s1[i], lr, t);
            else
                ref_sgd(cfg, &m.params[i], m.grad[i], m.p[i], m.s0[i], lr, t);
            assert_moved_like(m.data[i], m.p[i], m.p0[i], SPECS[i].size, 1e-4, "params", i);
            for (size_t b = 0; b < srp_optim_state_buffers(o); b++)
                assert_state_like(srp_optim_state(o, i, b), b == 0 ? m.s0[i] : m.s1[i],
                                  SPECS[i].size, 1e-5, b == 0 ? "state 0" : "state 1", i);
        }
    }
    assert_true(srp_optim_step_count(o) == STEPS);
    srp_optim_destroy(o);
    model_free(&m);
}

static void test_sgd_momentum_coupled_decay(void **state)
{
    (void)state;
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_SGD);
    c.weight_decay = 0.05f;
    c.dampening = 0.3f; /* the first step's buffer is d, not (1 - 0.3) d */
    run_against_reference(&c, 1.0, 0.0f, 1);
}

static void test_sgd_nesterov_decoupled_decay_clipped(void **state)
{
    (void)state;
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_SGD);
    c.weight_decay = 0.3f;
    c.wd_mode = SRP_WD_DECOUPLED;
    c.nesterov = 1;
    c.momentum = 0.8f;
    run_against_reference(&c, 1.0, 2.0f, 2);
}

static void test_sgd_without_momentum(void **state)
{
    (void)state;
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_SGD);
    c.momentum = 0.0f;
    c.weight_decay = 0.1f;
    srp_optim *o = NULL;
    model m;
    model_init(&m, 3);
    assert_ok(srp_optim_create(&o, m.params, m.count, &c));
    assert_int_equal(srp_optim_state_buffers(o), 0);
    assert_null(srp_optim_state(o, 0, 0));
    srp_optim_destroy(o);
    model_free(&m);
    run_against_reference(&c, 1.0, 0.0f, 3);
}

static void test_lars_trust_ratio(void **state)
{
    (void)state;
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_LARS);
    c.weight_decay = 0.02f;
    c.lars_eta = 0.02f;
    run_against_reference(&c, 1.0, 0.0f, 4);
    c.nesterov = 1;
    run_against_reference(&c, 3.0, 1.0f, 5);
}

/* One LARS step on a single entry, by hand: w = (3, 4), g = (0, 2). */
static void test_lars_one_step_by_hand(void **state)
{
    (void)state;
    float w[2] = {3.0f, 4.0f}, g[2] = {0.0f, 2.0f};
    srp_param p = srp_param_make("w", w, g, 2, SRP_PARAM_WEIGHT);
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_LARS);
    c.weight_decay = 0.1f;
    c.lars_eta = 0.01f;
    srp_optim *o = NULL;
    assert_ok(srp_optim_create(&o, &p, 1, &c));
    assert_ok(srp_optim_step(o, 1.0f));
    /* trust = 0.01 * 5 / (2 + 0.1 * 5) = 0.02; d = 0.02 * (0.3, 2.4) */
    assert_close_rel(w[0], 3.0 - 0.006, 1e-6, 0.0, "w0");
    assert_close_rel(w[1], 4.0 - 0.048, 1e-6, 0.0, "w1");
    srp_optim_destroy(o);
}

static void test_adamw(void **state)
{
    (void)state;
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_ADAMW);
    c.weight_decay = 0.1f;
    run_against_reference(&c, 1.0, 0.0f, 6);
    /* eps comparable to sqrt(v): where eps goes (after the bias-corrected
     * sqrt) and beta2's correction both show. */
    c.eps = 1e-3f;
    c.beta2 = 0.99f;
    run_against_reference(&c, 1e-3, 0.0f, 7);
    /* Adam with L2 decay (coupled), clipped */
    c.wd_mode = SRP_WD_COUPLED;
    c.eps = 1e-8f;
    run_against_reference(&c, 1.0, 1.5f, 8);
}

static void test_param_defaults(void **state)
{
    (void)state;
    float x[1], g[1];
    const srp_param_kind kinds[5] = {SRP_PARAM_WEIGHT, SRP_PARAM_BIAS, SRP_PARAM_GAMMA,
                                     SRP_PARAM_NORM, SRP_PARAM_EMBEDDING};
    for (int k = 0; k < 5; k++) {
        srp_param p = srp_param_make("x", x, g, 1, kinds[k]);
        assert_int_equal(p.weight_decay, k == 0);
        assert_int_equal(p.lars, k == 0);
        assert_true(p.lr_mult == 1.0f);
        assert_ptr_equal(p.data, x);
        assert_ptr_equal(p.grad, g);
        assert_int_equal(p.size, 1);
    }
    srp_optim_config s = srp_optim_config_default(SRP_OPTIM_SGD);
    assert_true(s.weight_decay == 0.0f && s.momentum == 0.9f && s.wd_mode == SRP_WD_COUPLED);
    srp_optim_config a = srp_optim_config_default(SRP_OPTIM_ADAMW);
    assert_true(a.weight_decay == 0.01f && a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f &&
                a.wd_mode == SRP_WD_DECOUPLED);
}

/* ---- clipping ---- */

static void test_clip_grad_norm(void **state)
{
    (void)state;
    float g1[3] = {3.0f, 0.0f, 0.0f}, g2[1] = {4.0f}, d1[3], d2[1];
    srp_param list[2] = {srp_param_make("a", d1, g1, 3, SRP_PARAM_WEIGHT),
                         srp_param_make("b", d2, g2, 1, SRP_PARAM_BIAS)};
    float norm = 0.0f;
    /* norm 5 below max 10: nothing changes */
    assert_ok(srp_clip_grad_norm(list, 2, 10.0f, &norm));
    assert_true(norm == 5.0f);
    assert_true(g1[0] == 3.0f && g2[0] == 4.0f);
    /* max 1: scaled by 1 / (5 + 1e-6) */
    assert_ok(srp_clip_grad_norm(list, 2, 1.0f, &norm));
    assert_true(norm == 5.0f);
    assert_close_rel(g1[0], 3.0 / (5.0 + 1e-6), 1e-7, 0.0, "clipped g1");
    assert_close_rel(g2[0], 4.0 / (5.0 + 1e-6), 1e-7, 0.0, "clipped g2");
    assert_true(g1[1] == 0.0f);
    /* non-finite: reported, nothing scaled */
    g1[2] = INFINITY;
    const float keep0 = g1[0], keep1 = g2[0];
    assert_status(srp_clip_grad_norm(list, 2, 1.0f, &norm), SRP_ERR_NUMERIC);
    assert_true(isinf(norm));
    g1[2] = NAN;
    assert_status(srp_clip_grad_norm(list, 2, 1.0f, &norm), SRP_ERR_NUMERIC);
    assert_true(isnan(norm));
    assert_true(g1[0] == keep0 && g2[0] == keep1);
    g1[2] = 0.0f;
    assert_status(srp_clip_grad_norm(list, 2, 0.0f, &norm), SRP_ERR_INVALID_ARG);
    assert_status(srp_clip_grad_norm(list, 2, NAN, &norm), SRP_ERR_INVALID_ARG);
    assert_status(srp_clip_grad_norm(NULL, 2, 1.0f, &norm), SRP_ERR_INVALID_ARG);
    assert_status(srp_clip_grad_norm(list, 0, 1.0f, &norm), SRP_ERR_INVALID_ARG);
    assert_ok(srp_clip_grad_norm(list, 2, 1.0f, NULL));
}

/* ---- failures leave everything as it was ---- */

static void snapshot(srp_optim *o, model *m, float **copy)
{
    size_t at = 0;
    for (size_t i = 0; i < m->count; i++) {
        memcpy(copy[0] + at, m->data[i], SPECS[i].size * sizeof(float));
        for (size_t b = 0; b < srp_optim_state_buffers(o); b++)
            memcpy(copy[1 + b] + at, srp_optim_state(o, i, b), SPECS[i].size * sizeof(float));
        at += SPECS[i].size;
    }
}

static void test_step_rejects_bad_input_and_changes_nothing(void **state)
{
    (void)state;
    const srp_optim_kind kinds[3] = {SRP_OPTIM_SGD, SRP_OPTIM_LARS, SRP_OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        model m;
        model_init(&m, 40 + k);
        srp_optim_config c = srp_optim_config_default(kinds[k]);
        srp_optim *o = NULL;
        assert_ok(srp_optim_create(&o, m.params, m.count, &c));
        srp_rng rng = seeded_rng(9);
        new_gradients(&m, &rng, 1.0);
        assert_ok(srp_optim_step(o, 0.1f)); /* some state to keep */
        enum { TOTAL = 48 + 6 + 1 + 8 + 30 };
        float before[3][TOTAL], after[3][TOTAL];
        float *pb[3] = {before[0], before[1], before[2]}, *pa[3] = {after[0], after[1], after[2]};
        memset(before, 0, sizeof(before));
        memset(after, 0, sizeof(after));
        snapshot(o, &m, pb);
        m.grad[4][29] = NAN; /* the last element of the last entry */
        assert_status(srp_optim_step(o, 0.1f), SRP_ERR_NUMERIC);
        m.grad[4][29] = -INFINITY;
        assert_status(srp_optim_step(o, 0.1f), SRP_ERR_NUMERIC);
        m.grad[4][29] = 0.0f;
        assert_status(srp_optim_step(o, NAN), SRP_ERR_INVALID_ARG);
        assert_status(srp_optim_step(o, -1.0f), SRP_ERR_INVALID_ARG);
        assert_status(srp_optim_step(o, INFINITY), SRP_ERR_INVALID_ARG);
        snapshot(o, &m, pa);
        assert_memory_equal(before, after, sizeof(before));
        assert_true(srp_optim_step_count(o) == 1);
        srp_optim_zero_grad(o);
        for (size_t i = 0; i < m.count; i++)
            for (size_t j = 0; j < SPECS[i].size; j++)
                assert_true(m.grad[i][j] == 0.0f);
        srp_optim_destroy(o);
        model_free(&m);
    }
    assert_status(srp_optim_step(NULL, 0.1f), SRP_ERR_INVALID_ARG);
    srp_optim_zero_grad(NULL);
    srp_optim_destroy(NULL);
}

static void test_create_validates(void **state)
{
    (void)state;
    float d[4] = {0}, g[4] = {0};
    srp_param p[2] = {srp_param_make("a", d, g, 2, SRP_PARAM_WEIGHT),
                      srp_param_make("b", d + 2, g + 2, 2, SRP_PARAM_BIAS)};
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_SGD);
    srp_optim *o = (srp_optim *)&c; /* not NULL: create must reset it */
    assert_status(srp_optim_create(&o, NULL, 2, &c), SRP_ERR_INVALID_ARG);
    assert_null(o);
    assert_status(srp_optim_create(NULL, p, 2, &c), SRP_ERR_INVALID_ARG);
    assert_status(srp_optim_create(&o, p, 0, &c), SRP_ERR_INVALID_ARG);
    assert_status(srp_optim_create(&o, p, 2, NULL), SRP_ERR_INVALID_ARG);

    srp_param bad[2];
    char long_name[300];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    for (int k = 0; k < 7; k++) {
        memcpy(bad, p, sizeof(p));
        switch (k) {
        case 0: bad[1].name = "a"; break; /* duplicate */
        case 1: bad[1].grad = NULL; break;
        case 2: bad[1].data = NULL; break;
        case 3: bad[1].size = 0; break;
        case 4: bad[1].lr_mult = -1.0f; break;
        case 5: bad[1].name = NULL; break;
        case 6: bad[1].name = long_name; break;
        }
        assert_status(srp_optim_create(&o, bad, 2, &c), SRP_ERR_INVALID_ARG);
        assert_null(o);
    }
    srp_optim_config cc;
    for (int k = 0; k < 8; k++) {
        cc = srp_optim_config_default(k < 5 ? SRP_OPTIM_SGD : SRP_OPTIM_ADAMW);
        switch (k) {
        case 0: cc.momentum = 1.0f; break;
        case 1:
            cc.nesterov = 1;
            cc.dampening = 0.1f;
            break;
        case 2:
            cc.nesterov = 1;
            cc.momentum = 0.0f;
            break;
        case 3: cc.weight_decay = -0.1f; break;
        case 4: cc.kind = (srp_optim_kind)7; break;
        case 5: cc.beta1 = 1.0f; break;
        case 6: cc.beta2 = -0.1f; break;
        case 7: cc.eps = 0.0f; break;
        }
        assert_status(srp_optim_create(&o, p, 2, &cc), SRP_ERR_INVALID_ARG);
    }
    cc = srp_optim_config_default(SRP_OPTIM_LARS);
    cc.lars_eta = 0.0f;
    assert_status(srp_optim_create(&o, p, 2, &cc), SRP_ERR_INVALID_ARG);
    cc = srp_optim_config_default(SRP_OPTIM_LARS);
    cc.wd_mode = SRP_WD_DECOUPLED;
    assert_status(srp_optim_create(&o, p, 2, &cc), SRP_ERR_UNSUPPORTED);
    assert_null(o);
    /* the optimizer keeps its own copy of the list and of the names */
    char name[8] = "a";
    p[0].name = name;
    assert_ok(srp_optim_create(&o, p, 2, &c));
    name[0] = 'z';
    p[1].size = 99;
    assert_string_equal(srp_optim_param(o, 0)->name, "a");
    assert_int_equal(srp_optim_param(o, 1)->size, 2);
    assert_int_equal(srp_optim_param_count(o), 2);
    assert_null(srp_optim_param(o, 2));
    srp_optim_destroy(o);
}

/* ---- state for checkpoints ---- */

static void test_state_refs(void **state)
{
    (void)state;
    const srp_optim_kind kinds[2] = {SRP_OPTIM_SGD, SRP_OPTIM_ADAMW};
    for (int k = 0; k < 2; k++) {
        model m;
        model_init(&m, 60 + k);
        srp_optim_config c = srp_optim_config_default(kinds[k]);
        srp_optim *o = NULL;
        assert_ok(srp_optim_create(&o, m.params, m.count, &c));
        const size_t buffers = k == 0 ? 1 : 2;
        assert_int_equal(srp_optim_state_buffers(o), buffers);
        assert_int_equal(srp_optim_tensor_count(o), 1 + m.count * buffers);
        srp_tensor_ref refs[1 + 2 * MAX_ENTRIES];
        assert_status(srp_optim_tensor_refs(o, refs, srp_optim_tensor_count(o) - 1),
                      SRP_ERR_INVALID_ARG);
        assert_ok(srp_optim_tensor_refs(o, refs, srp_optim_tensor_count(o)));
        assert_string_equal(refs[0].name, "optim.step");
        assert_int_equal(refs[0].dtype, SRP_DTYPE_U64);
        assert_int_equal(refs[0].ndim, 0);
        srp_optim_set_step_count(o, 12345);
        assert_true(*(const uint64_t *)refs[0].data == 12345);
        *(uint64_t *)refs[0].data = 7; /* what a checkpoint load does */
        assert_true(srp_optim_step_count(o) == 7);
        const char *suffix[2][2] = {{"momentum_buffer", ""}, {"exp_avg", "exp_avg_sq"}};
        for (size_t i = 0; i < m.count; i++)
            for (size_t b = 0; b < buffers; b++) {
                const srp_tensor_ref *r = &refs[1 + i * buffers + b];
                char want[300];
                snprintf(want, sizeof(want), "optim.%s.%s", SPECS[i].name, suffix[k][b]);
                assert_string_equal(r->name, want);
                assert_int_equal(r->dtype, SRP_DTYPE_F32);
                assert_int_equal(r->ndim, 1);
                assert_int_equal(r->shape[0], SPECS[i].size);
                assert_ptr_equal(r->data, srp_optim_state(o, i, b));
            }
        assert_null(srp_optim_state(o, m.count, 0));
        assert_null(srp_optim_state(o, 0, buffers));
        srp_optim_destroy(o);
        model_free(&m);
    }
}

/* Restoring state + step count into a fresh optimizer continues the run
 * bit for bit (momentum initialised, Adam's bias correction at its step). */
static void test_restored_state_continues_exactly(void **state)
{
    (void)state;
    const srp_optim_kind kinds[3] = {SRP_OPTIM_SGD, SRP_OPTIM_LARS, SRP_OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        model a, b;
        model_init(&a, 80);
        model_init(&b, 80);
        srp_optim_config c = srp_optim_config_default(kinds[k]);
        c.weight_decay = 0.05f;
        srp_optim *oa = NULL, *ob = NULL;
        assert_ok(srp_optim_create(&oa, a.params, a.count, &c));
        srp_rng ra = seeded_rng(3);
        for (int t = 0; t < 3; t++) {
            new_gradients(&a, &ra, 1.0);
            assert_ok(srp_optim_step(oa, 0.05f));
        }
        /* b: a new optimizer given a's params, state and step count */
        assert_ok(srp_optim_create(&ob, b.params, b.count, &c));
        for (size_t i = 0; i < a.count; i++) {
            memcpy(b.data[i], a.data[i], SPECS[i].size * sizeof(float));
            for (size_t s = 0; s < srp_optim_state_buffers(oa); s++)
                memcpy(srp_optim_state(ob, i, s), srp_optim_state(oa, i, s),
                       SPECS[i].size * sizeof(float));
        }
        srp_optim_set_step_count(ob, srp_optim_step_count(oa));
        srp_rng rb = ra;
        for (int t = 0; t < 3; t++) {
            new_gradients(&a, &ra, 1.0);
            new_gradients(&b, &rb, 1.0);
            assert_ok(srp_optim_step(oa, 0.05f));
            assert_ok(srp_optim_step(ob, 0.05f));
        }
        for (size_t i = 0; i < a.count; i++)
            assert_memory_equal(a.data[i], b.data[i], SPECS[i].size * sizeof(float));
        srp_optim_destroy(oa);
        srp_optim_destroy(ob);
        model_free(&a);
        model_free(&b);
    }
}

#ifdef SRP_COUNT_ALLOCS
/* 1 when the counter sees the library's own mallocs (an optimizer's create
 * allocates): the interposed malloc must be exported from the test binary
 * for calls from the shared library to reach it. */
static int counter_sees_library(void)
{
    float d[1], g[1];
    srp_param p = srp_param_make("probe", d, g, 1, SRP_PARAM_WEIGHT);
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_SGD);
    srp_optim *o = NULL;
    alloc_counter_start();
    const srp_status st = srp_optim_create(&o, &p, 1, &c);
    const size_t n = alloc_counter_stop(NULL);
    assert_ok(st);
    srp_optim_destroy(o);
    return n > 0;
}
#endif

/* Large entries take the threaded path: same bits for 1 and 2 threads, and
 * (outside the sanitizer build) no allocation in a step or a clip. */
static void test_threads_and_no_allocation(void **state)
{
    (void)state;
    const size_t n = 100000;
    const srp_optim_kind kinds[3] = {SRP_OPTIM_SGD, SRP_OPTIM_LARS, SRP_OPTIM_ADAMW};
    float *d1 = malloc(n * sizeof(float)), *d2 = malloc(n * sizeof(float));
    float *g = malloc(n * sizeof(float));
    assert_true(d1 && d2 && g);
#ifdef SRP_COUNT_ALLOCS
    const int count_allocs = counter_sees_library();
    if (!count_allocs)
        print_message("alloc counter does not see the library's mallocs: "
                      "the no-allocation check is skipped\n");
#endif
    for (int k = 0; k < 3; k++) {
        srp_rng rng = seeded_rng(5);
        fill_normal_f(&rng, d1, n, 1.0);
        memcpy(d2, d1, n * sizeof(float));
        srp_param p1 = srp_param_make("w", d1, g, n, SRP_PARAM_WEIGHT);
        srp_param p2 = srp_param_make("w", d2, g, n, SRP_PARAM_WEIGHT);
        srp_optim_config c = srp_optim_config_default(kinds[k]);
        c.weight_decay = 0.01f;
        c.nesterov = kinds[k] == SRP_OPTIM_SGD;
        srp_optim *o1 = NULL, *o2 = NULL;
        assert_ok(srp_optim_create(&o1, &p1, 1, &c));
        assert_ok(srp_optim_create(&o2, &p2, 1, &c));
        for (int t = 0; t < 3; t++) {
            fill_normal_f(&rng, g, n, 1.0);
            srp_set_num_threads(1);
            assert_ok(srp_optim_step(o1, 0.1f));
            srp_set_num_threads(2);
#ifdef SRP_COUNT_ALLOCS
            alloc_counter_start();
#endif
            assert_ok(srp_optim_step(o2, 0.1f));
            float norm;
            assert_ok(srp_optim_clip_grad_norm(o2, 1e9f, &norm));
#ifdef SRP_COUNT_ALLOCS
            const size_t allocs = alloc_counter_stop(NULL);
            if (count_allocs && t > 0) /* the first region may start the thread pool */
                assert_int_equal(allocs, 0);
#endif
        }
        assert_memory_equal(d1, d2, n * sizeof(float));
        for (size_t b = 0; b < srp_optim_state_buffers(o1); b++)
            assert_memory_equal(srp_optim_state(o1, 0, b), srp_optim_state(o2, 0, b),
                                n * sizeof(float));
        srp_optim_destroy(o1);
        srp_optim_destroy(o2);
    }
    free(d1);
    free(d2);
    free(g);
}

/* ---- learning-rate schedules, against closed forms ---- */

static void assert_lr(const srp_lr_schedule *s, uint64_t step, double expected)
{
    char what[64];
    snprintf(what, sizeof(what), "lr at step %llu", (unsigned long long)step);
    assert_close_rel(srp_lr_at(s, step), expected, 1e-6, 1e-12, what);
}

static void test_lr_schedules(void **state)
{
    (void)state;
    const double pi = 3.14159265358979323846;
    /* constant, no warmup by default */
    srp_lr_schedule s = srp_lr_schedule_default(SRP_LR_CONSTANT, 0.1f, 100);
    assert_int_equal(s.warmup_steps, 0);
    assert_ok(srp_lr_schedule_check(&s));
    assert_lr(&s, 0, 0.1);
    assert_lr(&s, 1000000, 0.1);
    s.warmup_steps = 4; /* 0.025, 0.05, 0.075, 0.1, then 0.1 */
    assert_lr(&s, 0, 0.025);
    assert_lr(&s, 2, 0.075);
    assert_lr(&s, 3, 0.1);
    assert_lr(&s, 4, 0.1);

    /* step: x0.1 every 30 steps, after 5 warmup steps */
    s = srp_lr_schedule_default(SRP_LR_STEP, 0.5f, 100);
    s.step_size = 30;
    s.warmup_steps = 5;
    assert_lr(&s, 0, 0.1);
    assert_lr(&s, 4, 0.5);
    assert_lr(&s, 34, 0.5);
    assert_lr(&s, 35, 0.05);
    assert_lr(&s, 64, 0.05);
    assert_lr(&s, 65, 0.005);
    assert_lr(&s, 95, 0.0005);
    s = srp_lr_schedule_default(SRP_LR_STEP, 0.5f, 90);
    assert_int_equal(s.step_size, 30); /* total / 3 */
    assert_true(s.step_gamma == 0.1f);

    /* cosine from 0.1 to 0.001 over 100 steps after 10 warmup steps */
    s = srp_lr_schedule_default(SRP_LR_COSINE, 0.1f, 110);
    s.min_lr = 0.001f;
    s.warmup_steps = 10;
    assert_lr(&s, 0, 0.01);
    assert_lr(&s, 9, 0.1);
    assert_lr(&s, 10, 0.1);
    assert_lr(&s, 35, 0.001 + 0.099 * 0.5 * (1.0 + sqrt(0.5))); /* a quarter: cos(pi/4) */
    assert_lr(&s, 60, 0.001 + 0.099 * 0.5);                     /* half way: cos(pi/2) = 0 */
    assert_lr(&s, 85, 0.001 + 0.099 * 0.5 * (1.0 - sqrt(0.5)));
    assert_lr(&s, 109, 0.001 + 0.099 * 0.5 * (1.0 + cos(pi * 99.0 / 100.0)));
    assert_lr(&s, 110, 0.001);
    assert_lr(&s, 5000, 0.001);
    /* no warmup: starts at base */
    s.warmup_steps = 0;
    s.total_steps = 100;
    assert_lr(&s, 0, 0.1);
    assert_lr(&s, 50, 0.001 + 0.099 * 0.5);

    /* invalid schedules: NaN, which the optimizer refuses */
    s = srp_lr_schedule_default(SRP_LR_COSINE, 0.1f, 10);
    s.warmup_steps = 10;
    assert_status(srp_lr_schedule_check(&s), SRP_ERR_INVALID_ARG);
    assert_true(isnan(srp_lr_at(&s, 3)));
    s = srp_lr_schedule_default(SRP_LR_STEP, 0.1f, 10);
    s.step_size = 0;
    assert_true(isnan(srp_lr_at(&s, 3)));
    s = srp_lr_schedule_default(SRP_LR_CONSTANT, -0.1f, 10);
    assert_true(isnan(srp_lr_at(&s, 3)));
    s = srp_lr_schedule_default((srp_lr_kind)9, 0.1f, 10);
    assert_status(srp_lr_schedule_check(&s), SRP_ERR_INVALID_ARG);
    assert_true(isnan(srp_lr_at(NULL, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_momentum_coupled_decay),
        cmocka_unit_test(test_sgd_nesterov_decoupled_decay_clipped),
        cmocka_unit_test(test_sgd_without_momentum),
        cmocka_unit_test(test_lars_trust_ratio),
        cmocka_unit_test(test_lars_one_step_by_hand),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_param_defaults),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_step_rejects_bad_input_and_changes_nothing),
        cmocka_unit_test(test_create_validates),
        cmocka_unit_test(test_state_refs),
        cmocka_unit_test(test_restored_state_continues_exactly),
        cmocka_unit_test(test_threads_and_no_allocation),
        cmocka_unit_test(test_lr_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
