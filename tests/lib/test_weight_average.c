/* The sigma-aware weight average (weight_average.h): the update rule
 * against a double reference, the swap in (averages in, u, v and sigma
 * for them) and out (every bit of the live model back), its state through
 * a checkpoint, bad input, threads and allocations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

enum { NX = 3, IN = 6, HID = 5, MID = 4, OUT = 3, EXTRA = 7 };

/* Three linears in a chain (SIGMA with a bias, STATS_ONLY, NONE) and one
 * more parameter, all in one list. */
typedef struct {
    srp_linear *lin[3];
    float extra[EXTRA], dextra[EXTRA];
    srp_param_list *params;
    float x[NX * IN], h1[NX * HID], h2[NX * MID], y[NX * OUT];
    float dy[NX * OUT], dh2[NX * MID], dh1[NX * HID];
    srp_rng rng;
} model;

static void model_init(model *m, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    const size_t sizes[4] = {IN, HID, MID, OUT};
    const srp_reparam modes[3] = {SRP_REPARAM_SIGMA, SRP_REPARAM_STATS_ONLY, SRP_REPARAM_NONE};
    const char *names[3] = {"fc1", "fc2", "fc3"};
    assert_ok(srp_param_list_create(&m->params));
    for (int i = 0; i < 3; i++) {
        srp_linear_config c = srp_linear_config_default(sizes[i], sizes[i + 1]);
        c.reparam = modes[i];
        c.init_std = 0.5f;
        c.seed = seed + (uint64_t)i;
        assert_ok(srp_linear_create(&m->lin[i], &c));
        assert_ok(srp_linear_params(m->lin[i], names[i], m->params));
    }
    srp_rng_seed(&m->rng, seed + 100);
    fill_normal_f(&m->rng, m->extra, EXTRA, 1.0);
    assert_ok(srp_param_list_add(m->params, "extra", NULL, m->extra, m->dextra, EXTRA,
                                 SRP_PARAM_EMBEDDING));
    fill_normal_f(&m->rng, m->x, NX * IN, 1.0);
}

static void model_free(model *m)
{
    for (int i = 0; i < 3; i++)
        srp_linear_destroy(m->lin[i]);
    srp_param_list_destroy(m->params);
}

static void model_forward(model *m, int training)
{
    assert_ok(srp_linear_forward(m->lin[0], m->x, NX, m->h1, training));
    assert_ok(srp_linear_forward(m->lin[1], m->h1, NX, m->h2, training));
    assert_ok(srp_linear_forward(m->lin[2], m->h2, NX, m->y, training));
}

static void model_backward(model *m)
{
    assert_ok(srp_linear_backward(m->lin[2], m->h2, m->dy, NX, m->dh2));
    assert_ok(srp_linear_backward(m->lin[1], m->h1, m->dh2, NX, m->dh1));
    assert_ok(srp_linear_backward(m->lin[0], m->x, m->dh1, NX, NULL));
}

/* One training step: forward, backward, SGD on every entry, grads zeroed.
 * u, v, sigma move with the forward, every parameter with the step. */
static void model_step(model *m)
{
    fill_normal_f(&m->rng, m->dy, NX * OUT, 1.0);
    fill_normal_f(&m->rng, m->dextra, EXTRA, 1.0);
    model_forward(m, SRP_TRAIN);
    model_backward(m);
    srp_param *p = srp_param_list_entries(m->params);
    for (size_t i = 0; i < srp_param_list_count(m->params); i++)
        for (size_t k = 0; k < p[i].size; k++) {
            p[i].data[k] -= 0.05f * p[i].grad[k];
            p[i].grad[k] = 0.0f;
        }
}

static srp_weight_average *make_average(model *m, float decay)
{
    srp_weight_average_config c = srp_weight_average_config_default();
    c.decay = decay;
    srp_weight_average *a = NULL;
    assert_ok(srp_weight_average_create(&a, m->params, m->lin, 3, &c));
    return a;
}

/* The averages, as the state refs show them (valid until the next call). */
static srp_tensor_list *g_refs;
static const float *averages(srp_weight_average *a, size_t *total)
{
    srp_tensor_list_destroy(g_refs);
    g_refs = NULL;
    srp_tensor_list *t = NULL;
    assert_ok(srp_tensor_list_create(&t));
    assert_ok(srp_weight_average_state_refs(a, "ema", t));
    g_refs = t;
    *total = srp_tensor_list_refs(t)[0].shape[0];
    return srp_tensor_list_refs(t)[0].data;
}

/* Every bit of the model a swap must give back. */
typedef struct {
    unsigned char *bytes;
    size_t n;
} snapshot;

static void put(snapshot *s, const void *p, size_t n)
{
    s->bytes = realloc(s->bytes, s->n + n);
    assert_non_null(s->bytes);
    memcpy(s->bytes + s->n, p, n);
    s->n += n;
}

static snapshot take(model *m)
{
    snapshot s = {NULL, 0};
    const srp_param *p = srp_param_list_entries(m->params);
    for (size_t i = 0; i < srp_param_list_count(m->params); i++) {
        put(&s, p[i].data, p[i].size * sizeof(float));
        put(&s, p[i].grad, p[i].size * sizeof(float));
    }
    for (int i = 0; i < 3; i++) {
        srp_linear *l = m->lin[i];
        const float sigma = srp_linear_sigma(l);
        put(&s, &sigma, sizeof sigma);
        if (srp_linear_reparam(l) == SRP_REPARAM_NONE)
            continue; /* its u and v are not state */
        put(&s, srp_linear_u(l), srp_linear_in_features(l) * sizeof(float));
        put(&s, srp_linear_v(l), srp_linear_out_features(l) * sizeof(float));
    }
    return s;
}

static void assert_same(snapshot a, snapshot b)
{
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.bytes, b.bytes, a.n);
    free(a.bytes);
    free(b.bytes);
}

/* a = d a + (1 - d) p, d = min(decay, (1 + t) / (10 + t)), in double,
 * through both regimes of d (decay 0.8 takes over at t = 35). */
static void test_update_rule_against_double(void **state)
{
    (void)state;
    model m;
    model_init(&m, 1);
    const float decay = 0.8f;
    srp_weight_average *a = make_average(&m, decay);
    size_t total;
    averages(a, &total);
    double *ref = malloc(sizeof(double) * total);
    assert_non_null(ref);
    for (uint64_t t = 0; t < 60; t++) {
        model_step(&m);
        assert_ok(srp_weight_average_update(a));
        assert_int_equal(srp_weight_average_updates(a), t + 1);
        const double warm = (1.0 + (double)t) / (10.0 + (double)t);
        const double d = warm < decay ? warm : decay;
        const srp_param *p = srp_param_list_entries(m.params);
        double scale = 0.0;
        for (size_t i = 0, k0 = 0; i < srp_param_list_count(m.params); k0 += p[i].size, i++)
            for (size_t k = 0; k < p[i].size; k++) {
                ref[k0 + k] = t == 0 ? p[i].data[k] : d * ref[k0 + k] + (1.0 - d) * p[i].data[k];
                scale = fmax(scale, fabs(ref[k0 + k]));
            }
        const float *avg = averages(a, &total);
        if (t == 0) /* the first update copies */
            for (size_t i = 0, k0 = 0; i < srp_param_list_count(m.params); k0 += p[i].size, i++)
                assert_memory_equal(avg + k0, p[i].data, p[i].size * sizeof(float));
        /* a few float roundings per update, and the average forgets them */
        assert_close_to_double(avg, ref, total, 2e-6, scale, "average");
    }
    free(ref);
    srp_weight_average_destroy(a);
    model_free(&m);
}

/* Swapped in: the parameters are the averages, and each linear has u, v,
 * sigma of its averaged weight, the bits srp_linear_reinit_sigma gives.
 * Swapped out: every bit of the live model back; a pending backward and
 * the steps after it are those of a twin that never swapped. */
static void test_swap_in_and_out(void **state)
{
    (void)state;
    model m, twin;
    model_init(&m, 2);
    model_init(&twin, 2);
    srp_weight_average *a = make_average(&m, 0.9f);
    for (int s = 0; s < 12; s++) {
        model_step(&m);
        model_step(&twin);
        assert_ok(srp_weight_average_update(a));
    }
    /* in the middle of a step: a forward whose backward is pending */
    fill_normal_f(&m.rng, m.dy, NX * OUT, 1.0);
    fill_normal_f(&twin.rng, twin.dy, NX * OUT, 1.0);
    model_forward(&m, SRP_TRAIN);
    model_forward(&twin, SRP_TRAIN);
    const snapshot live = take(&m);

    assert_ok(srp_weight_average_swap_in(a));
    assert_int_equal(srp_weight_average_swapped(a), 1);
    size_t total;
    const float *avg = averages(a, &total);
    const srp_param *p = srp_param_list_entries(m.params);
    for (size_t i = 0, k0 = 0; i < srp_param_list_count(m.params); k0 += p[i].size, i++)
        assert_memory_equal(p[i].data, avg + k0, p[i].size * sizeof(float));
    for (int i = 0; i < 2; i++) { /* SIGMA and STATS_ONLY: what reinit gives */
        srp_linear *l = m.lin[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        srp_linear_config c = srp_linear_config_default(in, out);
        c.reparam = srp_linear_reparam(l);
        srp_linear *r = NULL;
        assert_ok(srp_linear_create(&r, &c));
        memcpy(srp_linear_weight(r), srp_linear_weight(l), in * out * sizeof(float));
        assert_ok(srp_linear_reinit_sigma(r));
        assert_memory_equal(srp_linear_u(r), srp_linear_u(l), in * sizeof(float));
        assert_memory_equal(srp_linear_v(r), srp_linear_v(l), out * sizeof(float));
        assert_true(srp_linear_sigma(r) == srp_linear_sigma(l));
        srp_linear_destroy(r);
        /* that is sigma of the averaged weight, and not the live one's */
        float exact;
        assert_ok(srp_spectral_norm_exact(srp_linear_weight(l), out, in, &exact));
        assert_close_rel(srp_linear_sigma(l), exact, 1e-6, 0.0, "sigma of the average");
        const float live_sigma = srp_linear_sigma(twin.lin[i]);
        assert_true(fabsf(srp_linear_sigma(l) - live_sigma) > 1e-3f * live_sigma);
    }
    assert_true(isnan(srp_linear_sigma(m.lin[2]))); /* NONE tracks none */
    assert_status(srp_weight_average_swap_in(a), SRP_ERR_ORDER);
    assert_status(srp_weight_average_update(a), SRP_ERR_ORDER);
    assert_int_equal(srp_weight_average_updates(a), 12);
    assert_ok(srp_weight_average_swap_out(a));
    assert_int_equal(srp_weight_average_swapped(a), 0);
    assert_ok(srp_weight_average_swap_out(a)); /* not swapped: nothing */
    assert_same(live, take(&m));
    model_backward(&m); /* the pending backward is the twin's */
    model_backward(&twin);
    assert_same(take(&m), take(&twin));

    /* an evaluation of the average between steps: eval forwards (they move
     * the reported sigma), then the live model back, every bit */
    const snapshot before_eval = take(&m);
    assert_ok(srp_weight_average_swap_in(a));
    model_forward(&m, SRP_EVAL);
    assert_ok(srp_weight_average_swap_out(a));
    assert_same(before_eval, take(&m));
    for (int s = 0; s < 3; s++) {
        model_step(&m);
        model_step(&twin);
        assert_memory_equal(m.y, twin.y, sizeof m.y);
    }
    assert_same(take(&m), take(&twin));
    srp_weight_average_destroy(a);
    model_free(&m);
    model_free(&twin);
}

/* Bad calls change nothing: the average, its count, the model. */
static void test_bad_input(void **state)
{
    (void)state;
    model m;
    model_init(&m, 3);
    srp_weight_average_config c = srp_weight_average_config_default();
    assert_true(c.decay == 0.999f);
    srp_weight_average *a = (srp_weight_average *)&c;
    assert_status(srp_weight_average_create(NULL, m.params, m.lin, 3, &c), SRP_ERR_INVALID_ARG);
    assert_status(srp_weight_average_create(&a, NULL, m.lin, 3, &c), SRP_ERR_INVALID_ARG);
    assert_null(a);
    assert_status(srp_weight_average_create(&a, m.params, NULL, 3, &c), SRP_ERR_INVALID_ARG);
    assert_status(srp_weight_average_create(&a, m.params, m.lin, 3, NULL), SRP_ERR_INVALID_ARG);
    srp_linear *with_null[2] = {m.lin[0], NULL};
    assert_status(srp_weight_average_create(&a, m.params, with_null, 2, &c), SRP_ERR_INVALID_ARG);
    const float decays[4] = {1.0f, -0.1f, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        c.decay = decays[i];
        assert_status(srp_weight_average_create(&a, m.params, m.lin, 3, &c), SRP_ERR_INVALID_ARG);
    }
    c.decay = 0.0f; /* the average is the last parameters */
    assert_ok(srp_weight_average_create(&a, m.params, NULL, 0, &c));
    srp_weight_average_destroy(a);
    c.decay = 0.9f;
    srp_param_list *empty = NULL;
    assert_ok(srp_param_list_create(&empty));
    assert_status(srp_weight_average_create(&a, empty, NULL, 0, &c), SRP_ERR_INVALID_ARG);
    float w[2], g[2];
    assert_ok(srp_param_list_add(empty, "w", NULL, w, g, 2, SRP_PARAM_WEIGHT));
    assert_status(srp_param_list_add(empty, "w", NULL, w, g, 2, SRP_PARAM_WEIGHT),
                  SRP_ERR_INVALID_ARG); /* the list failed an append: incomplete */
    assert_status(srp_weight_average_create(&a, empty, NULL, 0, &c), SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(empty);
    assert_null(a);
    assert_status(srp_weight_average_update(NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_weight_average_swap_in(NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_weight_average_swap_out(NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_weight_average_state_refs(NULL, "e", NULL), SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_weight_average_updates(NULL), 0);
    assert_int_equal(srp_weight_average_swapped(NULL), 0);
    srp_weight_average_destroy(NULL);

    a = make_average(&m, 0.9f);
    /* before any update: nothing to swap in, the live model is evaluated */
    snapshot before = take(&m);
    assert_ok(srp_weight_average_swap_in(a));
    assert_int_equal(srp_weight_average_swapped(a), 0);
    assert_ok(srp_weight_average_swap_out(a));
    assert_same(before, take(&m));
    for (int s = 0; s < 4; s++) {
        model_step(&m);
        assert_ok(srp_weight_average_update(a));
    }
    size_t total;
    const float *avg = averages(a, &total);
    float *avg0 = malloc(total * sizeof(float));
    assert_non_null(avg0);
    memcpy(avg0, avg, total * sizeof(float));

    /* NaN or Inf in a parameter: the update refuses, nothing changes */
    model_step(&m);
    const float keep = m.extra[3];
    m.extra[3] = NAN;
    assert_status(srp_weight_average_update(a), SRP_ERR_NUMERIC);
    m.extra[3] = INFINITY;
    assert_status(srp_weight_average_update(a), SRP_ERR_NUMERIC);
    m.extra[3] = keep;
    assert_int_equal(srp_weight_average_updates(a), 4);
    assert_memory_equal(averages(a, &total), avg0, total * sizeof(float));

    /* NaN in an average (a corrupt load): the swap in refuses */
    float *avg_rw = (float *)averages(a, &total);
    before = take(&m);
    avg_rw[total - 1] = NAN;
    assert_status(srp_weight_average_swap_in(a), SRP_ERR_NUMERIC);
    assert_int_equal(srp_weight_average_swapped(a), 0);
    assert_same(before, take(&m));
    avg_rw[total - 1] = avg0[total - 1];

    /* An averaged weight of the SIGMA linear that is all zero: its sigma
     * is 0 and gamma / sigma undefined. Listed after the others, so that
     * they were prepared first: still nothing of the model changes. */
    srp_linear *order[3] = {m.lin[1], m.lin[2], m.lin[0]};
    srp_weight_average_config cz = srp_weight_average_config_default();
    srp_weight_average *z = NULL;
    assert_ok(srp_weight_average_create(&z, m.params, order, 3, &cz));
    float *wz = srp_linear_weight(m.lin[0]);
    const size_t nw = IN * HID;
    float *saved_w = malloc(nw * sizeof(float));
    assert_non_null(saved_w);
    memcpy(saved_w, wz, nw * sizeof(float));
    memset(wz, 0, nw * sizeof(float));
    assert_ok(srp_weight_average_update(z)); /* copies the zero weight */
    memcpy(wz, saved_w, nw * sizeof(float));
    before = take(&m);
    assert_status(srp_weight_average_swap_in(z), SRP_ERR_NUMERIC);
    assert_non_null(strstr(srp_last_error_detail(), "linears[2]"));
    assert_int_equal(srp_weight_average_swapped(z), 0);
    assert_same(before, take(&m));
    srp_weight_average_destroy(z);
    free(saved_w);
    free(avg0);
    srp_weight_average_destroy(a);
    model_free(&m);
}

/* The averages and the count through a checkpoint: a twin model and
 * average loaded from it continue bit for bit, swaps included. */
static void test_state_refs_round_trip(void **state)
{
    (void)state;
    char dir[512], path[600];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "srp_wavg"), 0);
    snprintf(path, sizeof(path), "%s/run.ckpt", dir);
    model m, n;
    model_init(&m, 4);
    model_init(&n, 5);
    srp_weight_average *a = make_average(&m, 0.95f), *b = make_average(&n, 0.95f);
    for (int s = 0; s < 6; s++) {
        model_step(&m);
        assert_ok(srp_weight_average_update(a));
    }
    srp_tensor_list *ta = NULL, *tb = NULL;
    assert_ok(srp_tensor_list_create(&ta));
    assert_ok(srp_tensor_list_create(&tb));
    const char *names[3] = {"fc1", "fc2", "fc3"};
    for (int i = 0; i < 3; i++) {
        assert_ok(srp_linear_state_refs(m.lin[i], names[i], ta));
        assert_ok(srp_linear_state_refs(n.lin[i], names[i], tb));
    }
    assert_ok(srp_tensor_list_add_f32(ta, "extra", NULL, m.extra, EXTRA));
    assert_ok(srp_tensor_list_add_f32(tb, "extra", NULL, n.extra, EXTRA));
    assert_ok(srp_tensor_list_add(ta, "rng", NULL, SRP_DTYPE_U64, 1, (size_t[]){4}, m.rng.s));
    assert_ok(srp_tensor_list_add(tb, "rng", NULL, SRP_DTYPE_U64, 1, (size_t[]){4}, n.rng.s));
    assert_ok(srp_tensor_list_add_f32(ta, "x", NULL, m.x, NX * IN));
    assert_ok(srp_tensor_list_add_f32(tb, "x", NULL, n.x, NX * IN));
    assert_ok(srp_weight_average_state_refs(a, "train.ema", ta));
    assert_ok(srp_weight_average_state_refs(b, "train.ema", tb));
    const srp_tensor_ref *r = srp_tensor_list_refs(ta) + srp_tensor_list_count(ta) - 2;
    assert_string_equal(r[0].name, "train.ema.average");
    assert_int_equal(r[0].dtype, SRP_DTYPE_F32);
    assert_int_equal(r[0].shape[0], IN * HID + HID + 1 + HID * MID + MID + MID * OUT + OUT + EXTRA);
    assert_string_equal(r[1].name, "train.ema.updates");
    assert_int_equal(r[1].dtype, SRP_DTYPE_U64);
    assert_int_equal(r[1].ndim, 0);
    assert_ok(srp_checkpoint_save(path, srp_tensor_list_refs(ta), srp_tensor_list_count(ta)));
    assert_ok(srp_checkpoint_load(path, srp_tensor_list_refs(tb), srp_tensor_list_count(tb)));
    assert_int_equal(srp_weight_average_updates(b), 6);
    for (int s = 0; s < 5; s++) {
        model_step(&m);
        model_step(&n);
        assert_ok(srp_weight_average_update(a));
        assert_ok(srp_weight_average_update(b));
    }
    size_t ta_n, tb_n;
    const float *av = averages(a, &ta_n);
    float *copy = malloc(ta_n * sizeof(float));
    assert_non_null(copy);
    memcpy(copy, av, ta_n * sizeof(float));
    assert_memory_equal(copy, averages(b, &tb_n), ta_n * sizeof(float));
    assert_ok(srp_weight_average_swap_in(a));
    assert_ok(srp_weight_average_swap_in(b));
    assert_same(take(&m), take(&n));
    assert_ok(srp_weight_average_swap_out(a));
    assert_ok(srp_weight_average_swap_out(b));
    assert_same(take(&m), take(&n));
    free(copy);
    srp_tensor_list_destroy(ta);
    srp_tensor_list_destroy(tb);
    srp_weight_average_destroy(a);
    srp_weight_average_destroy(b);
    model_free(&m);
    model_free(&n);
    assert_int_equal(scratch_dir_remove(dir), 0);
}

/* Entries large enough for the threaded path: the same bits for 1 and 2
 * threads, and (outside the sanitizer build) no allocation in an update. */
static void test_threads_and_no_allocation(void **state)
{
    (void)state;
    enum { BIG = 50000, SMALL = 300 };
    float *p = malloc(sizeof(float) * (BIG + SMALL)), *g = calloc(BIG + SMALL, sizeof(float));
    float *out[2];
    assert_non_null(p);
    assert_non_null(g);
#ifdef SRP_COUNT_ALLOCS
    /* the counter must see the library's mallocs, or this proves nothing
     * (as test_optim, skip the count where it does not) */
    srp_param_list *probe = NULL;
    alloc_counter_start();
    assert_ok(srp_param_list_create(&probe));
    const int counts_library = alloc_counter_stop(NULL) > 0;
    srp_param_list_destroy(probe);
    if (!counts_library)
        print_message("alloc counter does not see the library's mallocs: not counted\n");
#endif
    const int threads_before = srp_get_num_threads();
    for (int run = 0; run < 2; run++) {
        srp_set_num_threads(run + 1);
        srp_rng r = seeded_rng(8);
        fill_normal_f(&r, p, BIG + SMALL, 1.0);
        srp_param_list *l = NULL;
        assert_ok(srp_param_list_create(&l));
        assert_ok(srp_param_list_add(l, "big", NULL, p, g, BIG, SRP_PARAM_WEIGHT));
        assert_ok(srp_param_list_add(l, "small", NULL, p + BIG, g + BIG, SMALL, SRP_PARAM_BIAS));
        srp_weight_average_config c = srp_weight_average_config_default();
        c.decay = 0.99f;
        srp_weight_average *a = NULL;
        assert_ok(srp_weight_average_create(&a, l, NULL, 0, &c));
        for (int t = 0; t < 20; t++) {
            for (size_t k = 0; k < BIG + SMALL; k++)
                p[k] += 0.01f * (float)srp_rng_normal(&r);
#ifdef SRP_COUNT_ALLOCS
            alloc_counter_start();
#endif
            assert_ok(srp_weight_average_update(a));
#ifdef SRP_COUNT_ALLOCS
            const size_t allocs = alloc_counter_stop(NULL);
            if (counts_library && t > 0) /* the first region may start the thread pool */
                assert_int_equal(allocs, 0);
#endif
        }
        size_t total;
        const float *avg = averages(a, &total);
        assert_int_equal(total, BIG + SMALL);
        out[run] = malloc(total * sizeof(float));
        assert_non_null(out[run]);
        memcpy(out[run], avg, total * sizeof(float));
        srp_weight_average_destroy(a);
        srp_param_list_destroy(l);
    }
    srp_set_num_threads(threads_before);
    assert_memory_equal(out[0], out[1], (BIG + SMALL) * sizeof(float));
    free(out[0]);
    free(out[1]);
    free(p);
    free(g);
}

static int teardown(void **state)
{
    (void)state;
    srp_tensor_list_destroy(g_refs);
    g_refs = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_rule_against_double),
        cmocka_unit_test(test_swap_in_and_out),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_state_refs_round_trip),
        cmocka_unit_test(test_threads_and_no_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
