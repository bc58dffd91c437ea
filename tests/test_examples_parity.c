/* The library's collapse watch and weight average against the copies in
 * examples/common that the trainers use today (collapse.c, ema.c): on the
 * same inputs, the same warnings and the same bits, and checkpoints of the
 * same names, dtypes and shapes, so that the trainers can move onto the
 * library without changing a bit of their runs. Delete this test with
 * those two files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "common/collapse.h"
#include "common/ema.h"

/* ---- the collapse watch ---- */

enum { LAYERS = 3, HEADS = 4, HT = LAYERS * HEADS, STEPS = 600, MAXEV = 2 * HT };

typedef struct {
    size_t count;
    srp_collapse_event ev[MAXEV];
} ex_events;

static void collect(void *ctx, size_t index, ex_collapse_kind kind, float value, float reference)
{
    ex_events *e = ctx;
    assert_true(e->count < MAXEV);
    srp_collapse_event *ev = &e->ev[e->count++];
    ev->layer = index / HEADS;
    ev->head = index % HEADS;
    ev->kind = kind == EX_COLLAPSE_LOW ? SRP_COLLAPSE_LOW : SRP_COLLAPSE_DROP;
    ev->entropy = value;
    ev->reference = reference;
}

/* Entropies that wander, collapse now and then, and recover: [STEPS][HT]. */
static void walk(float *e, uint64_t seed)
{
    srp_rng r;
    srp_rng_seed(&r, seed);
    for (size_t h = 0; h < HT; h++) {
        double x = 2.5;
        for (size_t s = 0; s < STEPS; s++) {
            x += 0.25 * srp_rng_normal(&r);
            if (srp_rng_uniform(&r) < 0.02)
                x *= 0.15;
            x = x < 0.0 ? 0.02 : x > 2.9 ? 2.9 : x;
            e[s * HT + h] = (float)x;
        }
    }
}

static void test_collapse_same_warnings(void **state)
{
    (void)state;
    float *e = malloc(sizeof(float) * STEPS * HT);
    assert_non_null(e);
    walk(e, 31);
    /* the trainers' two settings: nats against log T (ViT), and normalized */
    const float uniforms[2] = {logf(50.0f), 1.0f};
    for (int u = 0; u < 2; u++) {
        const float scale = uniforms[u] / 2.9f;
        srp_collapse_config c = srp_collapse_config_default(LAYERS, HEADS);
        c.window = 40;
        c.fraction = 0.15f;
        c.drop = 0.7f;
        c.uniform = uniforms[u];
        srp_collapse *w = NULL;
        assert_ok(srp_collapse_create(&w, &c));
        ex_collapse_watch ex;
        ex_error err;
        assert_int_equal(ex_collapse_init(&ex, HT, c.window, c.fraction, c.drop, c.uniform, &err),
                         EX_OK);
        size_t events = 0;
        float step_e[HT];
        for (size_t s = 0; s < STEPS; s++) {
            for (size_t h = 0; h < HT; h++)
                step_e[h] = e[s * HT + h] * scale;
            ex_events want = {0};
            const int n_ex = ex_collapse_update(&ex, step_e, collect, &want);
            srp_collapse_event got[MAXEV];
            size_t n = 0;
            assert_ok(srp_collapse_update(w, s, step_e, got, MAXEV, &n));
            assert_int_equal(n, (size_t)n_ex);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(got[i].step, s);
                assert_int_equal(got[i].layer, want.ev[i].layer);
                assert_int_equal(got[i].head, want.ev[i].head);
                assert_int_equal(got[i].kind, want.ev[i].kind);
                assert_memory_equal(&got[i].entropy, &want.ev[i].entropy, sizeof(float));
                assert_memory_equal(&got[i].reference, &want.ev[i].reference, sizeof(float));
                assert_string_equal(srp_collapse_kind_name(got[i].kind),
                                    ex_collapse_kind_name(got[i].kind == SRP_COLLAPSE_LOW
                                                              ? EX_COLLAPSE_LOW
                                                              : EX_COLLAPSE_DROP));
            }
            events += n;
        }
        assert_true(events > 20);
        print_message("uniform %.3f: %zu warnings alike\n", (double)uniforms[u], events);

        /* the state: the names, dtypes and shapes of the trainers' checkpoints,
         * and the same bytes */
        srp_tensor_list *el_list = NULL;
        assert_ok(srp_tensor_list_create(&el_list));
        ex_collapse_tensors(&ex, "train.collapse", el_list);
        const size_t el_count = srp_tensor_list_count(el_list);
        const srp_tensor_ref *el_refs = srp_tensor_list_refs(el_list);
        srp_tensor_list *sl = NULL;
        assert_ok(srp_tensor_list_create(&sl));
        assert_ok(srp_collapse_state_refs(w, "train.collapse", sl));
        assert_int_equal(srp_tensor_list_count(sl), el_count);
        for (size_t i = 0; i < el_count; i++) {
            const srp_tensor_ref *a = &srp_tensor_list_refs(sl)[i], *b = &el_refs[i];
            assert_string_equal(a->name, b->name);
            assert_int_equal(a->dtype, b->dtype);
            assert_int_equal(a->ndim, b->ndim);
            size_t elems = 1;
            for (size_t d = 0; d < a->ndim; d++) {
                assert_int_equal(a->shape[d], b->shape[d]);
                elems *= a->shape[d];
            }
            assert_memory_equal(a->data, b->data, elems * srp_dtype_size(a->dtype));
        }
        srp_tensor_list_destroy(sl);
        srp_tensor_list_destroy(el_list);
        ex_collapse_free(&ex);
        srp_collapse_destroy(w);
    }
    free(e);
}

/* ---- the weight average ---- */

enum { NX = 4, D0 = 8, D1 = 12, D2 = 6, BIG = 40000 };

/* Linears in a chain (SIGMA with a bias, SIGMA without, NONE) and a large
 * parameter (the threaded path), trained by SGD. */
typedef struct {
    srp_linear *lin[3];
    float *big, *dbig;
    srp_param_list *params;
    float x[NX * D0], h1[NX * D1], h2[NX * D2], y[NX * D2];
    float dy[NX * D2], dh2[NX * D2], dh1[NX * D1];
    srp_rng rng;
} model;

static void model_init(model *m)
{
    memset(m, 0, sizeof *m);
    const size_t in[3] = {D0, D1, D2}, out[3] = {D1, D2, D2};
    const srp_reparam modes[3] = {SRP_REPARAM_SIGMA, SRP_REPARAM_SIGMA, SRP_REPARAM_NONE};
    const char *names[3] = {"fc1", "fc2", "head"};
    assert_ok(srp_param_list_create(&m->params));
    for (int i = 0; i < 3; i++) {
        srp_linear_config c = srp_linear_config_default(in[i], out[i]);
        c.reparam = modes[i];
        c.bias = i != 1;
        c.init_std = 0.4f;
        c.seed = 40 + (uint64_t)i;
        assert_ok(srp_linear_create(&m->lin[i], &c));
        assert_ok(srp_linear_params(m->lin[i], names[i], m->params));
    }
    m->big = malloc(sizeof(float) * BIG);
    m->dbig = calloc(BIG, sizeof(float));
    assert_non_null(m->big);
    assert_non_null(m->dbig);
    srp_rng_seed(&m->rng, 77);
    fill_normal_f(&m->rng, m->big, BIG, 1.0);
    assert_ok(
        srp_param_list_add(m->params, "big", NULL, m->big, m->dbig, BIG, SRP_PARAM_EMBEDDING));
    fill_normal_f(&m->rng, m->x, NX * D0, 1.0);
}

static void model_free(model *m)
{
    for (int i = 0; i < 3; i++)
        srp_linear_destroy(m->lin[i]);
    free(m->big);
    free(m->dbig);
    srp_param_list_destroy(m->params);
}

static void model_forward(model *m, int training)
{
    assert_ok(srp_linear_forward(m->lin[0], m->x, NX, m->h1, training));
    assert_ok(srp_linear_forward(m->lin[1], m->h1, NX, m->h2, training));
    assert_ok(srp_linear_forward(m->lin[2], m->h2, NX, m->y, training));
}

static void model_step(model *m)
{
    fill_normal_f(&m->rng, m->dy, NX * D2, 1.0);
    fill_normal_f(&m->rng, m->dbig, BIG, 1.0);
    model_forward(m, SRP_TRAIN);
    assert_ok(srp_linear_backward(m->lin[2], m->h2, m->dy, NX, m->dh2));
    assert_ok(srp_linear_backward(m->lin[1], m->h1, m->dh2, NX, m->dh1));
    assert_ok(srp_linear_backward(m->lin[0], m->x, m->dh1, NX, NULL));
    srp_param *p = srp_param_list_entries(m->params);
    for (size_t i = 0; i < srp_param_list_count(m->params); i++)
        for (size_t k = 0; k < p[i].size; k++) {
            p[i].data[k] -= 0.03f * p[i].grad[k];
            p[i].grad[k] = 0.0f;
        }
}

/* What the trainers' evaluation and checkpoints see of a model. */
static void assert_models_equal(model *a, model *b)
{
    const srp_param *pa = srp_param_list_entries(a->params),
                    *pb = srp_param_list_entries(b->params);
    for (size_t i = 0; i < srp_param_list_count(a->params); i++)
        assert_memory_equal(pa[i].data, pb[i].data, pa[i].size * sizeof(float));
    for (int i = 0; i < 2; i++) {
        const size_t in = srp_linear_in_features(a->lin[i]),
                     out = srp_linear_out_features(a->lin[i]);
        assert_memory_equal(srp_linear_u(a->lin[i]), srp_linear_u(b->lin[i]), in * sizeof(float));
        assert_memory_equal(srp_linear_v(a->lin[i]), srp_linear_v(b->lin[i]), out * sizeof(float));
        const float sa = srp_linear_sigma(a->lin[i]), sb = srp_linear_sigma(b->lin[i]);
        assert_memory_equal(&sa, &sb, sizeof sa);
    }
}

static void test_weight_average_same_bits(void **state)
{
    (void)state;
    const int threads_before = srp_get_num_threads();
    srp_set_num_threads(2);
    model lib, ex;
    model_init(&lib);
    model_init(&ex);
    srp_weight_average_config c = srp_weight_average_config_default();
    c.decay = 0.97f; /* the warm-up hands over at t = 290: both regimes */
    srp_weight_average *a = NULL;
    assert_ok(srp_weight_average_create(&a, lib.params, lib.lin, 3, &c));
    ex_ema e;
    ex_error err;
    assert_int_equal(ex_ema_init(&e, srp_param_list_entries(ex.params),
                                 srp_param_list_count(ex.params), ex.lin, 3, c.decay, &err),
                     EX_OK);
    srp_tensor_list *sl = NULL;
    assert_ok(srp_tensor_list_create(&sl));
    assert_ok(srp_weight_average_state_refs(a, "train.ema", sl));
    const srp_tensor_ref *avg = srp_tensor_list_refs(sl);
    for (int s = 0; s < 320; s++) {
        model_step(&lib);
        model_step(&ex);
        assert_ok(srp_weight_average_update(a));
        ex_ema_update(&e);
        assert_memory_equal(avg[0].data, e.shadow, e.total * sizeof(float));
        if (s % 80 != 79)
            continue;
        /* an evaluation: swap in, eval forwards, swap out */
        assert_ok(srp_weight_average_swap_in(a));
        assert_int_equal(ex_ema_swap_in(&e, &err), EX_OK);
        assert_models_equal(&lib, &ex);
        model_forward(&lib, SRP_EVAL);
        model_forward(&ex, SRP_EVAL);
        assert_memory_equal(lib.y, ex.y, sizeof lib.y);
        assert_ok(srp_weight_average_swap_out(a));
        ex_ema_swap_out(&e);
        assert_models_equal(&lib, &ex);
    }
    /* the trainers' checkpoint entries: names, dtypes, shapes, bytes */
    srp_tensor_list *el = NULL;
    assert_ok(srp_tensor_list_create(&el));
    ex_ema_tensors(&e, "train.ema", el);
    const srp_tensor_ref *el_refs = srp_tensor_list_refs(el);
    assert_int_equal(srp_tensor_list_count(el), srp_tensor_list_count(sl));
    for (size_t i = 0; i < srp_tensor_list_count(el); i++) {
        assert_string_equal(avg[i].name, el_refs[i].name);
        assert_int_equal(avg[i].dtype, el_refs[i].dtype);
        assert_int_equal(avg[i].ndim, el_refs[i].ndim);
        assert_int_equal(avg[i].shape[0], el_refs[i].shape[0]);
    }
    assert_memory_equal(avg[1].data, el_refs[1].data, sizeof(uint64_t));
    srp_tensor_list_destroy(el);
    srp_tensor_list_destroy(sl);
    ex_ema_free(&e);
    srp_weight_average_destroy(a);
    model_free(&lib);
    model_free(&ex);
    srp_set_num_threads(threads_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collapse_same_warnings),
        cmocka_unit_test(test_weight_average_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
