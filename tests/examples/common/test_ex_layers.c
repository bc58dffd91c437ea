/* examples/common/layers.c: the table of named linears, the models' linear
 * configuration, and the trunk (ex_stack), checked against the library's
 * blocks and LayerNorm called one by one: the same bits forward and
 * backward, under the names the checkpoints use. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/layers.h"
#include "testutil.h"

static void test_linear_names(void **state)
{
    (void)state;
    srp_linear *l[3];
    for (int i = 0; i < 3; i++) {
        const srp_linear_config c = srp_linear_config_default(2 + (size_t)i, 3);
        assert_ok(srp_linear_create(&l[i], &c));
    }
    ex_linear_names t;
    assert_true(ex_linear_names_init(&t, 2));
    assert_true(ex_linear_names_add(&t, l[0], NULL, "head"));
    char prefix[EX_LAYER_NAME_MAX];
    memset(prefix, 'p', sizeof(prefix));
    prefix[EX_LAYER_NAME_MAX - 5] = '\0'; /* + ".name": no room for the NUL */
    assert_false(ex_linear_names_add(&t, l[1], prefix, "name"));
    prefix[EX_LAYER_NAME_MAX - 6] = '\0'; /* + ".name" fits */
    assert_true(ex_linear_names_add(&t, l[1], prefix, "name"));
    assert_false(ex_linear_names_add(&t, l[2], NULL, "full"));
    assert_int_equal(t.count, 2);
    assert_string_equal(t.names[0], "head");
    assert_int_equal(strlen(t.names[1]), EX_LAYER_NAME_MAX - 1);
    assert_true(t.linears[1] == l[1]);

    srp_param_list *list;
    assert_ok(srp_param_list_create(&list));
    ex_linear_names_params(&t, list);
    assert_ok(srp_param_list_status(list));
    /* each linear's weight, bias and gamma, under its name, in table order */
    assert_int_equal(srp_param_list_count(list), 6);
    srp_param *p = srp_param_list_entries(list);
    assert_string_equal(p[0].name, "head.weight");
    assert_true(p[0].data == srp_linear_weight(l[0]));
    assert_true(p[3].data == srp_linear_weight(l[1]));
    assert_int_equal(p[3].size, 3 * 3);
    srp_param_list_destroy(list);
    ex_linear_names_free(&t);
    assert_null(t.linears);
    for (int i = 0; i < 3; i++)
        srp_linear_destroy(l[i]);
}

static void test_linear_config(void **state)
{
    (void)state;
    srp_rng r = seeded_rng(3), same = seeded_rng(3);
    const srp_linear_config c = ex_linear_config(5, 7, 1, SRP_GAMMA_INIT_ONE, 2.5f, &r);
    const srp_linear_config def = srp_linear_config_default(5, 7);
    assert_int_equal(c.in_features, 5);
    assert_int_equal(c.out_features, 7);
    assert_int_equal(c.reparam, SRP_REPARAM_SIGMA);
    assert_int_equal(c.gamma_init, SRP_GAMMA_INIT_ONE);
    assert_true(c.init_std == 0.02f * 2.5f);
    assert_true(c.seed == srp_rng_next_u64(&same));
    assert_int_equal(c.bias, def.bias);
    const srp_linear_config plain = ex_linear_config(5, 7, 0, SRP_GAMMA_INIT_SIGMA0, 1.0f, NULL);
    assert_int_equal(plain.reparam, SRP_REPARAM_NONE);
    assert_true(plain.seed == def.seed);
    assert_true(plain.init_std == 0.02f);
}

enum { D = 8, H = 2, MLP = 12, DEPTH = 2, B = 2, T = 3 };

/* The stack of depth blocks with a final LayerNorm "final", and the same
 * layers made one by one (their seeds drawn as ex_stack_init documents). */
typedef struct {
    ex_stack s;
    ex_linear_names names;
    srp_block *blocks[DEPTH];
    srp_layernorm *norm;
} trunks;

static void trunks_make(trunks *k, const char *norm_name)
{
    srp_block_config bc = srp_block_config_default(D, H, MLP);
    bc.norm_eps = 1e-3f;
    srp_rng r = seeded_rng(11), again = seeded_rng(11);
    assert_true(ex_linear_names_init(&k->names, 16));
    assert_ok(ex_stack_init(&k->s, &bc, DEPTH, norm_name, B, T, &r, &k->names));
    for (int l = 0; l < DEPTH; l++) {
        srp_block_config c = bc;
        c.attn_seed = srp_rng_next_u64(&again);
        c.fc1.seed = srp_rng_next_u64(&again);
        c.fc2.seed = srp_rng_next_u64(&again);
        assert_ok(srp_block_create(&k->blocks[l], &c, B, T));
    }
    k->norm = NULL;
    if (norm_name) {
        srp_layernorm_config nc = srp_layernorm_config_default(D);
        nc.eps = bc.norm_eps;
        assert_ok(srp_layernorm_create(&k->norm, &nc, B * T));
    }
}

static void trunks_free(trunks *k)
{
    ex_stack_free(&k->s);
    ex_linear_names_free(&k->names);
    for (int l = 0; l < DEPTH; l++)
        srp_block_destroy(k->blocks[l]);
    srp_layernorm_destroy(k->norm);
}

/* Forward and backward through the stack equal the layers called in
 * order, bit for bit; with and without the final LayerNorm. */
static void test_stack_is_its_layers(void **state)
{
    (void)state;
    for (int with_norm = 0; with_norm < 2; with_norm++) {
        trunks k;
        trunks_make(&k, with_norm ? "final" : NULL);
        srp_rng r = seeded_rng(5);
        float x[B * T * D], dy[B * T * D], h[DEPTH + 1][B * T * D], y[B * T * D];
        fill_normal_f(&r, x, B * T * D, 1.0);
        fill_normal_f(&r, dy, B * T * D, 1.0);
        memcpy(k.s.xs[0], x, sizeof(x));
        const float *out;
        assert_ok(ex_stack_forward(&k.s, B, T, SRP_TRAIN, &out));

        memcpy(h[0], x, sizeof(x));
        for (int l = 0; l < DEPTH; l++)
            assert_ok(srp_block_forward(k.blocks[l], h[l], B, T, h[l + 1], SRP_TRAIN));
        const float *want = h[DEPTH];
        if (with_norm) {
            assert_ok(srp_layernorm_layer_forward(k.norm, h[DEPTH], B * T, y, SRP_TRAIN));
            want = y;
        }
        assert_memory_equal(out, want, sizeof(x));

        memcpy(ex_stack_output_grad(&k.s), dy, sizeof(dy));
        assert_ok(ex_stack_backward(&k.s));
        float d[B * T * D];
        if (with_norm)
            assert_ok(srp_layernorm_layer_backward(k.norm, h[DEPTH], dy, B * T, d));
        else
            memcpy(d, dy, sizeof(d));
        for (int l = DEPTH; l-- > 0;)
            assert_ok(srp_block_backward(k.blocks[l], d, d));
        assert_memory_equal(k.s.d_stream, d, sizeof(d));
        /* and the parameters' gradients */
        for (int l = 0; l < DEPTH; l++)
            for (size_t i = 0; i < srp_block_linear_count(k.blocks[l]); i++) {
                srp_linear *a = srp_block_linear(k.s.blocks[l], i, NULL);
                srp_linear *b = srp_block_linear(k.blocks[l], i, NULL);
                assert_memory_equal(srp_linear_weight_grad(a), srp_linear_weight_grad(b),
                                    sizeof(float) * srp_linear_in_features(a) *
                                        srp_linear_out_features(a));
            }
        trunks_free(&k);
    }
}

/* The names: every linear under blocks.<l>, then the LayerNorms' params
 * after them (each block's, then the final one's); the state refs block
 * by block, then the final LayerNorm's; the attention of each layer. */
static void test_stack_names(void **state)
{
    (void)state;
    trunks k;
    srp_block_config bc = srp_block_config_default(D, H, MLP);
    srp_rng r = seeded_rng(1);
    assert_true(ex_linear_names_init(&k.names, 16));
    assert_ok(ex_stack_init(&k.s, &bc, DEPTH, "final", B, T, &r, &k.names));
    const size_t per_block = srp_block_linear_count(k.s.blocks[0]);
    assert_int_equal(k.names.count, DEPTH * per_block);
    assert_string_equal(k.names.names[0], "blocks.0.attn.qkv");
    assert_string_equal(k.names.names[per_block], "blocks.1.attn.qkv");
    assert_string_equal(k.names.names[2 * per_block - 1], "blocks.1.mlp.fc2");

    srp_param_list *params;
    assert_ok(srp_param_list_create(&params));
    ex_stack_norm_params(&k.s, params);
    assert_ok(srp_param_list_status(params));
    const size_t np = srp_param_list_count(params);
    assert_int_equal(np, 2 * (DEPTH * 2 + 1)); /* norm1, norm2 per block, final: weight, bias */
    srp_param *p = srp_param_list_entries(params);
    assert_string_equal(p[0].name, "blocks.0.norm1.weight");
    assert_string_equal(p[np - 1].name, "final.bias");
    srp_param_list_destroy(params);

    srp_tensor_list *refs;
    assert_ok(srp_tensor_list_create(&refs));
    ex_stack_state_refs(&k.s, refs);
    assert_ok(srp_tensor_list_status(refs));
    const size_t nr = srp_tensor_list_count(refs);
    const srp_tensor_ref *t = srp_tensor_list_refs(refs);
    assert_true(strncmp(t[0].name, "blocks.0.", 9) == 0);
    assert_true(strncmp(t[nr - 3].name, "blocks.1.", 9) == 0);
    assert_string_equal(t[nr - 1].name, "final.bias");
    assert_true(srp_tensor_list_find(refs, "blocks.1.attn.qkv.weight") != SIZE_MAX);
    srp_tensor_list_destroy(refs);

    assert_true(ex_stack_attention(&k.s, 1) == srp_block_attention(k.s.blocks[1]));
    assert_null(ex_stack_attention(&k.s, DEPTH));
    ex_stack_free(&k.s);
    ex_linear_names_free(&k.names);
}

/* ex_block_config takes the regularizers' rates; in a stack, each block's
 * regularizer state is its own, and the initial weights are those of the
 * stack without regularizers. */
static void test_regularizers_reach_the_blocks(void **state)
{
    (void)state;
    const ex_regularizers off = {0}, on = {0.125f, 0.25f, 0.375f};
    const srp_block_config bc = ex_block_config(D, H, MLP, 1, SRP_GAMMA_INIT_SIGMA0, 1.0f, &on);
    assert_true(bc.attn_dropout == 0.125f && bc.mlp_dropout == 0.25f && bc.drop_path == 0.375f);
    const srp_block_config plain = ex_block_config(D, H, MLP, 1, SRP_GAMMA_INIT_SIGMA0, 1.0f, &off);
    assert_true(plain.attn_dropout == 0.0f && plain.mlp_dropout == 0.0f && plain.drop_path == 0.0f);
    char text[128];
    assert_string_equal(ex_regularizers_text(&off, text, sizeof(text)), "");
    assert_string_equal(ex_regularizers_text(&on, text, sizeof(text)),
                        ", attention dropout 0.125, MLP dropout 0.25, drop path 0.375");
    const ex_regularizers some = {0.5f, 0.0f, 0.25f};
    assert_string_equal(ex_regularizers_text(&some, text, sizeof(text)),
                        ", attention dropout 0.5, drop path 0.25");

    ex_stack s[2];
    ex_linear_names names[2];
    for (int i = 0; i < 2; i++) {
        srp_rng r = seeded_rng(4);
        assert_true(ex_linear_names_init(&names[i], 16));
        assert_ok(ex_stack_init(&s[i], i ? &bc : &plain, DEPTH, NULL, B, T, &r, &names[i]));
    }
    for (int l = 0; l < DEPTH; l++)
        for (size_t i = 0; i < srp_block_linear_count(s[0].blocks[l]); i++) {
            srp_linear *a = srp_block_linear(s[0].blocks[l], i, NULL);
            srp_linear *b = srp_block_linear(s[1].blocks[l], i, NULL);
            assert_memory_equal(srp_linear_weight(a), srp_linear_weight(b),
                                sizeof(float) * srp_linear_in_features(a) *
                                    srp_linear_out_features(a));
        }
    const srp_rng *r0 = srp_block_dropout_rng(s[1].blocks[0]);
    const srp_rng *r1 = srp_block_dropout_rng(s[1].blocks[1]);
    assert_memory_not_equal(r0, r1, sizeof(*r0));

    /* the masks act in training forwards only */
    srp_rng r = seeded_rng(6);
    fill_normal_f(&r, s[0].xs[0], B * T * D, 1.0);
    memcpy(s[1].xs[0], s[0].xs[0], sizeof(float) * B * T * D);
    for (int training = 0; training < 2; training++) {
        const float *y[2];
        for (int i = 0; i < 2; i++)
            assert_ok(ex_stack_forward(&s[i], B, T, training ? SRP_TRAIN : SRP_EVAL, &y[i]));
        const int same = memcmp(y[0], y[1], sizeof(float) * B * T * D) == 0;
        assert_int_equal(same, !training);
    }
    for (int i = 0; i < 2; i++) {
        ex_stack_free(&s[i]);
        ex_linear_names_free(&names[i]);
    }

    /* drop path alone rises from 0 at the first block: that block keeps no
     * random state, the last one does */
    const ex_regularizers path = {0.0f, 0.0f, 0.5f};
    const srp_block_config pc = ex_block_config(D, H, MLP, 1, SRP_GAMMA_INIT_SIGMA0, 1.0f, &path);
    srp_rng r2 = seeded_rng(4);
    assert_true(ex_linear_names_init(&names[0], 16));
    assert_ok(ex_stack_init(&s[0], &pc, DEPTH, NULL, B, T, &r2, &names[0]));
    srp_tensor_list *refs;
    assert_ok(srp_tensor_list_create(&refs));
    ex_stack_state_refs(&s[0], refs);
    assert_ok(srp_tensor_list_status(refs));
    assert_true(srp_tensor_list_find(refs, "blocks.0.dropout_rng") == SIZE_MAX);
    assert_true(srp_tensor_list_find(refs, "blocks.1.dropout_rng") != SIZE_MAX);
    srp_tensor_list_destroy(refs);
    ex_stack_free(&s[0]);
    ex_linear_names_free(&names[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_names),
        cmocka_unit_test(test_linear_config),
        cmocka_unit_test(test_stack_is_its_layers),
        cmocka_unit_test(test_stack_names),
        cmocka_unit_test(test_regularizers_reach_the_blocks),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
