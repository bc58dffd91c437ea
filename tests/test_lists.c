/* A model's parameter list and state-tensor list (lists.h), and the
 * linear's entries in them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

static void test_param_list_names_kinds_and_defaults(void **state)
{
    (void)state;
    srp_param_list *l = NULL;
    assert_ok(srp_param_list_create(&l));
    assert_int_equal(srp_param_list_count(l), 0);
    assert_null(srp_param_list_entries(l));
    float w[6], dw[6], b[2], db[2];
    assert_ok(srp_param_list_add(l, "blocks.0.fc", "weight", w, dw, 6, SRP_PARAM_WEIGHT));
    assert_ok(srp_param_list_add(l, "blocks.0.fc", "bias", b, db, 2, SRP_PARAM_BIAS));
    assert_ok(srp_param_list_add(l, "cls_token", NULL, b, db, 2, SRP_PARAM_EMBEDDING));
    assert_ok(srp_param_list_add(l, NULL, "pos", b, db, 2, SRP_PARAM_EMBEDDING));
    assert_int_equal(srp_param_list_count(l), 4);
    const srp_param *p = srp_param_list_entries(l);
    assert_string_equal(p[0].name, "blocks.0.fc.weight");
    assert_string_equal(p[1].name, "blocks.0.fc.bias");
    assert_string_equal(p[2].name, "cls_token");
    assert_string_equal(p[3].name, "pos");
    assert_true(p[0].data == w && p[0].grad == dw && p[0].size == 6);
    /* srp_param_make's defaults by kind: only weights decay and take LARS */
    assert_int_equal(p[0].weight_decay, 1);
    assert_int_equal(p[0].lars, 1);
    assert_int_equal(p[1].weight_decay, 0);
    assert_int_equal(p[1].lars, 0);
    assert_int_equal(srp_param_list_kind(l, 1), SRP_PARAM_BIAS);
    assert_int_equal(srp_param_list_kind(l, 2), SRP_PARAM_EMBEDDING);
    assert_int_equal(srp_param_list_find(l, "blocks.0.fc.bias"), 1);
    assert_int_equal(srp_param_list_find(l, "blocks.0.fc"), SIZE_MAX);
    assert_ok(srp_param_list_status(l));
    srp_param_list_destroy(l);
    srp_param_list_destroy(NULL);
}

/* A bad append changes nothing and is remembered; later good appends work. */
static void test_param_list_refuses_and_remembers(void **state)
{
    (void)state;
    srp_param_list *l = NULL;
    assert_ok(srp_param_list_create(&l));
    float w[4], dw[4];
    assert_ok(srp_param_list_add(l, "a", "weight", w, dw, 4, SRP_PARAM_WEIGHT));
    assert_status(srp_param_list_add(l, "a", "weight", w, dw, 4, SRP_PARAM_WEIGHT),
                  SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "\"a.weight\" is already in the list"));
    assert_status(srp_param_list_status(l), SRP_ERR_INVALID_ARG);
    assert_status(srp_param_list_add(l, NULL, "", w, dw, 4, SRP_PARAM_WEIGHT), SRP_ERR_INVALID_ARG);
    assert_status(srp_param_list_add(l, "b", NULL, NULL, dw, 4, SRP_PARAM_WEIGHT),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_param_list_add(l, "b", NULL, w, dw, 0, SRP_PARAM_WEIGHT), SRP_ERR_INVALID_ARG);
    assert_status(srp_param_list_add(l, "b", NULL, w, dw, 4, (srp_param_kind)99),
                  SRP_ERR_INVALID_ARG);
    char longname[SRP_TENSOR_MAX_NAME + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_status(srp_param_list_add(l, longname, NULL, w, dw, 4, SRP_PARAM_WEIGHT),
                  SRP_ERR_INVALID_ARG);
    longname[SRP_TENSOR_MAX_NAME] = '\0'; /* exactly the limit is fine */
    assert_ok(srp_param_list_add(l, longname, NULL, w, dw, 4, SRP_PARAM_WEIGHT));
    assert_int_equal(srp_param_list_count(l), 2);
    assert_status(srp_param_list_status(l), SRP_ERR_INVALID_ARG); /* the first failure */
    assert_status(srp_param_list_add(NULL, "c", NULL, w, dw, 4, SRP_PARAM_WEIGHT),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_param_list_status(NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_param_list_create(NULL), SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(l);
}

/* Many entries: every name found at its index, duplicates of each refused.
 * The hash index keeps this linear; a quadratic scan of 200k names would
 * take minutes, this a fraction of a second. */
static void test_lists_hold_many_names(void **state)
{
    (void)state;
    enum { COUNT = 200000 };
    srp_tensor_list *t = NULL;
    assert_ok(srp_tensor_list_create(&t));
    static float one[1];
    char name[32];
    for (size_t i = 0; i < COUNT; i++) {
        snprintf(name, sizeof(name), "t%zu", i);
        assert_ok(srp_tensor_list_add(t, name, NULL, SRP_DTYPE_F32, 0, NULL, one));
    }
    for (size_t i = 0; i < COUNT; i += 997) {
        snprintf(name, sizeof(name), "t%zu", i);
        assert_int_equal(srp_tensor_list_find(t, name), i);
        assert_status(srp_tensor_list_add(t, name, NULL, SRP_DTYPE_F32, 0, NULL, one),
                      SRP_ERR_INVALID_ARG);
    }
    assert_int_equal(srp_tensor_list_count(t), COUNT);
    assert_int_equal(srp_tensor_list_find(t, "t200000"), SIZE_MAX);
    srp_tensor_list_destroy(t);
}

static void test_tensor_list_shapes_and_params(void **state)
{
    (void)state;
    srp_tensor_list *t = NULL;
    assert_ok(srp_tensor_list_create(&t));
    float m[6], v[3], s;
    uint64_t step;
    const size_t shape[2] = {2, 3};
    assert_ok(srp_tensor_list_add(t, "m", NULL, SRP_DTYPE_F32, 2, shape, m));
    assert_ok(srp_tensor_list_add_f32(t, "v", NULL, v, 3));
    assert_ok(srp_tensor_list_add(t, "s", NULL, SRP_DTYPE_F32, 0, NULL, &s));
    assert_ok(srp_tensor_list_add(t, "train", "step", SRP_DTYPE_U64, 0, NULL, &step));
    const size_t big[5] = {1, 1, 1, 1, 1};
    assert_status(srp_tensor_list_add(t, "x", NULL, SRP_DTYPE_F32, 5, big, m), SRP_ERR_INVALID_ARG);
    assert_status(srp_tensor_list_add(t, "x", NULL, (srp_dtype)77, 1, big, m), SRP_ERR_INVALID_ARG);
    assert_status(srp_tensor_list_add(t, "x", NULL, SRP_DTYPE_F32, 1, NULL, m), SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_tensor_list_count(t), 4);
    const srp_tensor_ref *r = srp_tensor_list_refs(t);
    assert_int_equal(r[0].ndim, 2);
    assert_int_equal(r[0].shape[1], 3);
    assert_int_equal(r[2].ndim, 0);
    assert_string_equal(r[3].name, "train.step");
    assert_int_equal(r[3].dtype, SRP_DTYPE_U64);

    /* a parameter list goes in whole, or not at all */
    srp_param_list *p = NULL;
    assert_ok(srp_param_list_create(&p));
    float a[2], da[2];
    assert_ok(srp_param_list_add(p, "a", NULL, a, da, 2, SRP_PARAM_WEIGHT));
    assert_ok(srp_param_list_add(p, "v", NULL, a, da, 2, SRP_PARAM_WEIGHT)); /* "v" is taken */
    assert_status(srp_tensor_list_add_params(t, p), SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_tensor_list_count(t), 4);
    assert_int_equal(srp_tensor_list_find(t, "a"), SIZE_MAX);
    srp_tensor_list_destroy(t);
    assert_ok(srp_tensor_list_create(&t));
    assert_ok(srp_tensor_list_add_params(t, p));
    assert_int_equal(srp_tensor_list_count(t), 2);
    assert_int_equal(srp_tensor_list_refs(t)[1].shape[0], 2);
    /* an incomplete parameter list is refused: it would save as a whole model */
    assert_status(srp_param_list_add(p, "a", NULL, a, da, 2, SRP_PARAM_WEIGHT), SRP_ERR_INVALID_ARG);
    srp_tensor_list *t2 = NULL;
    assert_ok(srp_tensor_list_create(&t2));
    assert_status(srp_tensor_list_add_params(t2, p), SRP_ERR_INVALID_ARG);
    assert_status(srp_tensor_list_status(t2), SRP_ERR_INVALID_ARG);
    srp_tensor_list_destroy(t2);
    srp_tensor_list_destroy(t);
    srp_param_list_destroy(p);
}

static srp_linear *make(uint64_t seed, srp_reparam mode, int bias)
{
    srp_linear_config c = srp_linear_config_default(5, 3);
    c.seed = seed;
    c.reparam = mode;
    c.bias = bias;
    srp_linear *l = NULL;
    assert_ok(srp_linear_create(&l, &c));
    return l;
}

static void test_linear_params_by_mode(void **state)
{
    (void)state;
    const char *want[3][3] = {{"fc.weight", "fc.bias", "fc.gamma"},
                              {"fc.weight", "fc.bias", NULL},
                              {"fc.weight", "fc.bias", NULL}};
    const srp_reparam modes[3] = {SRP_REPARAM_SIGMA, SRP_REPARAM_NONE, SRP_REPARAM_STATS_ONLY};
    for (int m = 0; m < 3; m++) {
        srp_linear *l = make(1, modes[m], 1);
        srp_param_list *p = NULL;
        assert_ok(srp_param_list_create(&p));
        assert_ok(srp_linear_params(l, "fc", p));
        const size_t n = want[m][2] ? 3 : 2;
        assert_int_equal(srp_param_list_count(p), n);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(srp_param_list_entries(p)[i].name, want[m][i]);
        assert_true(srp_param_list_entries(p)[0].data == srp_linear_weight(l));
        assert_int_equal(srp_param_list_entries(p)[0].size, 15);
        if (n == 3) {
            assert_true(srp_param_list_entries(p)[2].data == srp_linear_gamma(l));
            assert_int_equal(srp_param_list_kind(p, 2), SRP_PARAM_GAMMA);
        }
        srp_param_list_destroy(p);
        srp_linear_destroy(l);
    }
    srp_linear *nobias = make(1, SRP_REPARAM_SIGMA, 0);
    srp_param_list *p = NULL;
    assert_ok(srp_param_list_create(&p));
    assert_ok(srp_linear_params(nobias, "fc", p));
    assert_int_equal(srp_param_list_count(p), 2);
    assert_string_equal(srp_param_list_entries(p)[1].name, "fc.gamma");
    assert_status(srp_linear_params(NULL, "fc", p), SRP_ERR_INVALID_ARG);
    assert_status(srp_linear_params(nobias, "fc", NULL), SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(p);
    srp_linear_destroy(nobias);
}

/* A layer's state refs through a checkpoint make a twin that continues bit
 * for bit: the same sigma reported, the same next training step. */
static void test_linear_state_refs_restore_the_layer(void **state)
{
    (void)state;
    char dir[512], path[600];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "srp_lists"), 0);
    snprintf(path, sizeof(path), "%s/linear.ckpt", dir);
    srp_linear *a = make(3, SRP_REPARAM_SIGMA, 1), *b = make(4, SRP_REPARAM_SIGMA, 1);
    float x[2 * 5], y[2 * 3], yb[2 * 3], dy[2 * 3];
    srp_rng r;
    srp_rng_seed(&r, 9);
    fill_normal_f(&r, x, 10, 1.0);
    fill_normal_f(&r, dy, 6, 1.0);
    for (int step = 0; step < 3; step++) { /* move u, v, sigma, gamma, b away from init */
        assert_ok(srp_linear_forward(a, x, 2, y, SRP_TRAIN));
        assert_ok(srp_linear_backward(a, x, dy, 2, NULL));
        *srp_linear_gamma(a) -= 0.1f * *srp_linear_gamma_grad(a);
        srp_linear_bias(a)[1] -= 0.1f * srp_linear_bias_grad(a)[1];
        srp_linear_zero_grad(a);
    }
    srp_tensor_list *ta = NULL, *tb = NULL;
    assert_ok(srp_tensor_list_create(&ta));
    assert_ok(srp_tensor_list_create(&tb));
    assert_ok(srp_linear_state_refs(a, "fc", ta));
    assert_ok(srp_linear_state_refs(b, "fc", tb));
    assert_int_equal(srp_tensor_list_count(ta), 6);
    const char *names[6] = {"fc.weight", "fc.bias", "fc.gamma", "fc.u", "fc.v", "fc.sigma"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(srp_tensor_list_refs(ta)[i].name, names[i]);
    assert_ok(srp_checkpoint_save(path, srp_tensor_list_refs(ta), srp_tensor_list_count(ta)));
    assert_ok(srp_checkpoint_load(path, srp_tensor_list_refs(tb), srp_tensor_list_count(tb)));
    assert_true(srp_linear_sigma(b) == srp_linear_sigma(a));
    assert_ok(srp_linear_forward(a, x, 2, y, SRP_TRAIN));
    assert_ok(srp_linear_forward(b, x, 2, yb, SRP_TRAIN));
    assert_memory_equal(y, yb, sizeof(y));
    assert_true(srp_linear_sigma(b) == srp_linear_sigma(a));
    assert_memory_equal(srp_linear_u(a), srp_linear_u(b), 5 * sizeof(float));

    /* NONE mode: weight and bias only */
    srp_linear *plain = make(5, SRP_REPARAM_NONE, 1);
    srp_tensor_list *tp = NULL;
    assert_ok(srp_tensor_list_create(&tp));
    assert_ok(srp_linear_state_refs(plain, "p", tp));
    assert_int_equal(srp_tensor_list_count(tp), 2);
    assert_status(srp_linear_state_refs(plain, "p", tp), SRP_ERR_INVALID_ARG); /* names taken */
    srp_tensor_list_destroy(tp);
    srp_linear_destroy(plain);

    srp_tensor_list_destroy(ta);
    srp_tensor_list_destroy(tb);
    srp_linear_destroy(a);
    srp_linear_destroy(b);
    assert_int_equal(scratch_dir_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_list_names_kinds_and_defaults),
        cmocka_unit_test(test_param_list_refuses_and_remembers),
        cmocka_unit_test(test_lists_hold_many_names),
        cmocka_unit_test(test_tensor_list_shapes_and_params),
        cmocka_unit_test(test_linear_params_by_mode),
        cmocka_unit_test(test_linear_state_refs_restore_the_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
