/* A model's parameter list and state-tensor list (lists.h), and the
 * entries of the linear, the attention and the embedding in them. */
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
    srp_rng r = seeded_rng(9);
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

enum { AD = 8, AH = 2, AB = 2, AT = 5, AN = AB * AT * AD };

static srp_attention *make_attention(uint64_t seed, srp_qkv_sigma mode)
{
    srp_attention_config c = srp_attention_config_default(AD, AH);
    c.seed = seed;
    c.qkv_sigma = mode;
    c.qkv.init_std = c.proj.init_std = 0.3f; /* attention that is not uniform */
    srp_attention *a = NULL;
    assert_ok(srp_attention_create(&a, &c, AB, AT));
    return a;
}

/* The names follow srp_attention_in_proj's, each projection as a linear. */
static void test_attention_params_names_and_kinds(void **state)
{
    (void)state;
    const char *in_names[3][3] = {{"qkv"}, {"qk", "v"}, {"q", "k", "v"}};
    const size_t n_in[3] = {1, 2, 3};
    const char *suffix[3] = {"weight", "bias", "gamma"};
    const srp_param_kind kinds[3] = {SRP_PARAM_WEIGHT, SRP_PARAM_BIAS, SRP_PARAM_GAMMA};
    const char *state_suffix[6] = {"weight", "bias", "gamma", "u", "v", "sigma"};
    for (int m = 0; m < 3; m++) {
        srp_attention *a = make_attention(1, (srp_qkv_sigma)m);
        srp_param_list *p = NULL;
        srp_tensor_list *t = NULL;
        assert_ok(srp_param_list_create(&p));
        assert_ok(srp_tensor_list_create(&t));
        assert_ok(srp_attention_params(a, "blocks.0.attn", p));
        assert_ok(srp_attention_state_refs(a, "blocks.0.attn", t));
        assert_int_equal(srp_param_list_count(p), 3 * (n_in[m] + 1));
        assert_int_equal(srp_tensor_list_count(t), 6 * (n_in[m] + 1));
        char want[64];
        for (size_t l = 0; l <= n_in[m]; l++) {
            const char *lname = l < n_in[m] ? in_names[m][l] : "proj";
            srp_linear *lin =
                l < n_in[m] ? srp_attention_in_proj(a, l, NULL) : srp_attention_proj(a);
            for (size_t k = 0; k < 3; k++) {
                const size_t i = 3 * l + k;
                snprintf(want, sizeof want, "blocks.0.attn.%s.%s", lname, suffix[k]);
                assert_string_equal(srp_param_list_entries(p)[i].name, want);
                assert_int_equal(srp_param_list_kind(p, i), kinds[k]);
            }
            assert_true(srp_param_list_entries(p)[3 * l].data == srp_linear_weight(lin));
            assert_true(srp_param_list_entries(p)[3 * l + 1].grad == srp_linear_bias_grad(lin));
            for (size_t k = 0; k < 6; k++) {
                snprintf(want, sizeof want, "blocks.0.attn.%s.%s", lname, state_suffix[k]);
                assert_string_equal(srp_tensor_list_refs(t)[6 * l + k].name, want);
            }
            assert_true(srp_tensor_list_refs(t)[6 * l + 3].data == srp_linear_u(lin));
        }
        srp_param_list_destroy(p);
        srp_tensor_list_destroy(t);
        srp_attention_destroy(a);
    }

    /* no prefix: the projections' own names; a prefix too long for a list:
     * refused and remembered; NULLs */
    srp_attention *a = make_attention(1, SRP_QKV_SIGMA_FUSED);
    srp_param_list *p = NULL;
    assert_ok(srp_param_list_create(&p));
    assert_ok(srp_attention_params(a, NULL, p));
    assert_string_equal(srp_param_list_entries(p)[0].name, "qkv.weight");
    assert_string_equal(srp_param_list_entries(p)[5].name, "proj.gamma");
    char longname[SRP_TENSOR_MAX_NAME + 1];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_status(srp_attention_params(a, longname, p), SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_param_list_count(p), 6);
    assert_status(srp_param_list_status(p), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_params(NULL, "a", p), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_params(a, "a", NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_attention_state_refs(NULL, "a", (srp_tensor_list *)NULL),
                  SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(p);
    srp_attention_destroy(a);
}

/* One training step of the attention with its gradients through the list:
 * forward, backward, SGD on every entry, zero_grad. */
static void attention_step(srp_attention *a, srp_param_list *p, const float *x, const float *dy,
                           float *y, float *dx)
{
    assert_ok(srp_attention_forward(a, x, AB, AT, y, SRP_TRAIN));
    assert_ok(srp_attention_backward(a, dy, dx));
    srp_param *e = srp_param_list_entries(p);
    for (size_t i = 0; i < srp_param_list_count(p); i++)
        for (size_t k = 0; k < e[i].size; k++)
            e[i].data[k] -= 0.05f * e[i].grad[k];
    srp_attention_zero_grad(a);
    for (size_t i = 0; i < srp_param_list_count(p); i++)
        for (size_t k = 0; k < e[i].size; k++)
            assert_true(e[i].grad[k] == 0.0f);
}

/* A trained attention's state refs through a checkpoint make a twin of
 * another seed that continues bit for bit. */
static void test_attention_state_refs_restore_the_module(void **state)
{
    (void)state;
    char dir[512], path[600];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "srp_lists"), 0);
    snprintf(path, sizeof(path), "%s/attention.ckpt", dir);
    float x[AN], dy[AN], ya[AN], yb[AN], dxa[AN], dxb[AN];
    srp_rng r = seeded_rng(21);
    fill_normal_f(&r, x, AN, 1.0);
    fill_normal_f(&r, dy, AN, 1.0);
    for (int m = 0; m < 3; m++) {
        srp_attention *a = make_attention(7, (srp_qkv_sigma)m),
                      *b = make_attention(8, (srp_qkv_sigma)m);
        srp_param_list *pa = NULL, *pb = NULL;
        assert_ok(srp_param_list_create(&pa));
        assert_ok(srp_param_list_create(&pb));
        assert_ok(srp_attention_params(a, "attn", pa));
        assert_ok(srp_attention_params(b, "attn", pb));
        for (int step = 0; step < 3; step++) /* move weights, u, v, sigma, gamma from init */
            attention_step(a, pa, x, dy, ya, dxa);
        srp_tensor_list *ta = NULL, *tb = NULL;
        assert_ok(srp_tensor_list_create(&ta));
        assert_ok(srp_tensor_list_create(&tb));
        assert_ok(srp_attention_state_refs(a, "attn", ta));
        assert_ok(srp_attention_state_refs(b, "attn", tb));
        assert_ok(srp_checkpoint_save(path, srp_tensor_list_refs(ta), srp_tensor_list_count(ta)));
        assert_ok(srp_checkpoint_load(path, srp_tensor_list_refs(tb), srp_tensor_list_count(tb)));
        attention_step(a, pa, x, dy, ya, dxa);
        attention_step(b, pb, x, dy, yb, dxb);
        assert_memory_equal(ya, yb, sizeof(ya));
        assert_memory_equal(dxa, dxb, sizeof(dxa));
        float ea[AH], eb[AH];
        assert_ok(srp_attention_entropy(a, ea, NULL));
        assert_ok(srp_attention_entropy(b, eb, NULL));
        assert_memory_equal(ea, eb, sizeof(ea));
        for (size_t i = 0; i < srp_tensor_list_count(ta); i++) { /* and every state after it */
            const srp_tensor_ref *ra = &srp_tensor_list_refs(ta)[i],
                                 *rb = &srp_tensor_list_refs(tb)[i];
            const size_t n = ra->ndim == 0   ? 1
                             : ra->ndim == 1 ? ra->shape[0]
                                             : ra->shape[0] * ra->shape[1];
            assert_memory_equal(ra->data, rb->data, n * sizeof(float));
        }
        srp_tensor_list_destroy(ta);
        srp_tensor_list_destroy(tb);
        srp_param_list_destroy(pa);
        srp_param_list_destroy(pb);
        srp_attention_destroy(a);
        srp_attention_destroy(b);
    }
    srp_attention_zero_grad(NULL);
    assert_int_equal(scratch_dir_remove(dir), 0);
}

/* The table under the prefix itself, as the example LM names it ("wte");
 * through a checkpoint, a twin continues bit for bit. */
static void test_embedding_lists(void **state)
{
    (void)state;
    enum { EV = 11, ED = 6, EN = 7 };
    srp_embedding *a = NULL, *b = NULL;
    assert_ok(srp_embedding_create(&a, EV, ED, 0.5f, 3));
    assert_ok(srp_embedding_create(&b, EV, ED, 0.5f, 4));
    srp_param_list *p = NULL;
    srp_tensor_list *ta = NULL, *tb = NULL;
    assert_ok(srp_param_list_create(&p));
    assert_ok(srp_tensor_list_create(&ta));
    assert_ok(srp_tensor_list_create(&tb));
    assert_ok(srp_embedding_params(a, "wte", p));
    assert_int_equal(srp_param_list_count(p), 1);
    const srp_param *e = srp_param_list_entries(p);
    assert_string_equal(e[0].name, "wte");
    assert_int_equal(srp_param_list_kind(p, 0), SRP_PARAM_EMBEDDING);
    assert_int_equal(e[0].weight_decay, 0);
    assert_true(e[0].data == srp_embedding_weight(a) && e[0].grad == srp_embedding_weight_grad(a));
    assert_int_equal(e[0].size, EV * ED);
    assert_ok(srp_embedding_state_refs(a, "wte", ta));
    assert_ok(srp_embedding_state_refs(b, "wte", tb));
    const srp_tensor_ref *r = srp_tensor_list_refs(ta);
    assert_string_equal(r[0].name, "wte");
    assert_int_equal(r[0].dtype, SRP_DTYPE_F32);
    assert_int_equal(r[0].ndim, 2);
    assert_int_equal(r[0].shape[0], EV);
    assert_int_equal(r[0].shape[1], ED);
    assert_status(srp_embedding_params(a, NULL, p), SRP_ERR_INVALID_ARG);  /* an empty name */
    assert_status(srp_embedding_params(a, "wte", p), SRP_ERR_INVALID_ARG); /* taken */
    assert_status(srp_embedding_params(NULL, "x", p), SRP_ERR_INVALID_ARG);
    assert_status(srp_embedding_state_refs(a, "x", NULL), SRP_ERR_INVALID_ARG);

    /* train a: a step of lookups and scatter-adds, SGD */
    const uint32_t tok[EN] = {1, 4, 4, 0, 10, 3, 1};
    float x[EN * ED], dx[EN * ED], xb[EN * ED];
    srp_rng rng = seeded_rng(5);
    fill_normal_f(&rng, dx, EN * ED, 1.0);
    for (int step = 0; step < 2; step++) {
        assert_ok(srp_embedding_forward(a, tok, EN, x));
        assert_ok(srp_embedding_backward(a, tok, dx, EN));
        for (size_t k = 0; k < EV * ED; k++)
            srp_embedding_weight(a)[k] -= 0.1f * srp_embedding_weight_grad(a)[k];
        srp_embedding_zero_grad(a);
    }
    char dir[512], path[600];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "srp_lists"), 0);
    snprintf(path, sizeof(path), "%s/embedding.ckpt", dir);
    assert_ok(srp_checkpoint_save(path, srp_tensor_list_refs(ta), srp_tensor_list_count(ta)));
    assert_ok(srp_checkpoint_load(path, srp_tensor_list_refs(tb), srp_tensor_list_count(tb)));
    assert_ok(srp_embedding_forward(a, tok, EN, x));
    assert_ok(srp_embedding_forward(b, tok, EN, xb));
    assert_memory_equal(x, xb, sizeof(x));
    assert_ok(srp_embedding_backward(a, tok, dx, EN));
    assert_ok(srp_embedding_backward(b, tok, dx, EN));
    assert_memory_equal(srp_embedding_weight_grad(a), srp_embedding_weight_grad(b),
                        EV * ED * sizeof(float));
    assert_int_equal(scratch_dir_remove(dir), 0);
    srp_param_list_destroy(p);
    srp_tensor_list_destroy(ta);
    srp_tensor_list_destroy(tb);
    srp_embedding_destroy(a);
    srp_embedding_destroy(b);
}

/* The optimizer's state in the list style: the same tensors, names and
 * data as srp_optim_tensor_refs gives. */
static void test_optim_state_refs_match_tensor_refs(void **state)
{
    (void)state;
    srp_linear *l = make(6, SRP_REPARAM_SIGMA, 1);
    srp_param_list *p = NULL;
    assert_ok(srp_param_list_create(&p));
    assert_ok(srp_linear_params(l, "fc", p));
    srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_ADAMW);
    srp_optim *o = NULL;
    assert_ok(srp_optim_create(&o, srp_param_list_entries(p), srp_param_list_count(p), &oc));
    srp_tensor_ref refs[16];
    const size_t n = srp_optim_tensor_count(o);
    assert_int_equal(n, 1 + 3 * 2);
    assert_ok(srp_optim_tensor_refs(o, refs, 16));
    srp_tensor_list *t = NULL;
    assert_ok(srp_tensor_list_create(&t));
    assert_ok(srp_optim_state_refs(o, t));
    assert_int_equal(srp_tensor_list_count(t), n);
    for (size_t i = 0; i < n; i++) {
        const srp_tensor_ref *r = &srp_tensor_list_refs(t)[i];
        assert_string_equal(r->name, refs[i].name);
        assert_true(r->data == refs[i].data);
        assert_int_equal(r->dtype, refs[i].dtype);
        assert_int_equal(r->ndim, refs[i].ndim);
        assert_int_equal(r->shape[0], refs[i].shape[0]);
    }
    assert_status(srp_optim_state_refs(o, t), SRP_ERR_INVALID_ARG); /* the names are taken */
    assert_status(srp_optim_state_refs(NULL, t), SRP_ERR_INVALID_ARG);
    assert_status(srp_optim_state_refs(o, NULL), SRP_ERR_INVALID_ARG);
    srp_tensor_list_destroy(t);
    srp_optim_destroy(o);
    srp_param_list_destroy(p);
    srp_linear_destroy(l);
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
        cmocka_unit_test(test_optim_state_refs_match_tensor_refs),
        cmocka_unit_test(test_attention_params_names_and_kinds),
        cmocka_unit_test(test_attention_state_refs_restore_the_module),
        cmocka_unit_test(test_embedding_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
