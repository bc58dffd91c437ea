/* The block with padding masks (srp_block_forward_masked) and the decoder
 * block (cfg.cross, srp_block_forward_cross): every gradient (dx,
 * dmemory, each linear's, each LayerNorm's) against central differences
 * of the double reference (reference_model.h) in every norm placement,
 * FUSED and SEPARATE, causal or not, with masks and with each regularizer
 * at a fixed mask; the padding rules (y 0 on padded rows, dy there
 * reaching nothing, padded x and memory rows read by nothing); NULL masks
 * the same bits as the unmasked calls; the kinds refusing each other's
 * calls; the lists; no allocation after the first forward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_model.h"
#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

typedef struct {
    size_t B, T, Tk, D, H, M;
    srp_norm_placement norm;
    int causal, cross;
    srp_qkv_sigma qkv_sigma;
    float attn_dropout, mlp_dropout, drop_path;
    const size_t *lens, *mem_lens; /* [B] or NULL */
} xshape;

static srp_block *make(const xshape *s, uint64_t seed)
{
    srp_block_config c = srp_block_config_default(s->D, s->H, s->M);
    c.norm = s->norm;
    c.causal = s->causal;
    c.cross = s->cross;
    c.max_memory_tokens = s->Tk;
    c.qkv_sigma = s->qkv_sigma;
    c.attn_dropout = s->attn_dropout;
    c.mlp_dropout = s->mlp_dropout;
    c.drop_path = s->drop_path;
    srp_block_config_seed(&c, seed);
    srp_block *b = NULL;
    assert_ok(srp_block_create(&b, &c, s->B, s->T));
    return b;
}

/* block_rule_mask (testutil.h, block.h's rule) into a new array. */
static double *rule_mask(size_t n, uint64_t key, float p)
{
    double *m = alloc_d(n);
    block_rule_mask(m, n, key, p);
    return m;
}

/* The masks the next training forward draws (block.h's order), into R;
 * out[] gets them for freeing. */
static void masks_for_next_forward(srp_block *b, const xshape *s, ref_block *R, double *out[6])
{
    memset(out, 0, 6 * sizeof(double *));
    if (s->attn_dropout > 0.0f) {
        srp_rng r = *srp_attention_dropout_rng(srp_block_attention(b));
        out[0] = rule_mask(s->B * s->H * s->T * s->T, srp_rng_next_u64(&r), s->attn_dropout);
        if (s->cross) {
            r = *srp_attention_dropout_rng(srp_block_cross_attention(b));
            out[1] = rule_mask(s->B * s->H * s->T * s->Tk, srp_rng_next_u64(&r), s->attn_dropout);
        }
    }
    srp_rng r = *srp_block_dropout_rng(b);
    if (s->mlp_dropout > 0.0f)
        out[2] = rule_mask(s->B * s->T * s->D, srp_rng_next_u64(&r), s->mlp_dropout);
    if (s->drop_path > 0.0f) {
        out[3] = rule_mask(s->B, srp_rng_next_u64(&r), s->drop_path);
        out[4] = rule_mask(s->B, srp_rng_next_u64(&r), s->drop_path);
        if (s->cross)
            out[5] = rule_mask(s->B, srp_rng_next_u64(&r), s->drop_path);
    }
    R->att.drop = out[0];
    R->xatt.drop = out[1];
    R->mlp_drop = out[2];
    R->path_attn = out[3];
    R->path_mlp = out[4];
    R->path_cross = out[5];
}

static srp_status forward(srp_block *b, const xshape *s, const float *x, const float *mem,
                          float *y, int training)
{
    return s->cross ? srp_block_forward_cross(b, x, s->B, s->T, s->lens, mem, s->Tk, s->mem_lens,
                                              y, training)
                    : srp_block_forward_masked(b, x, s->B, s->T, s->lens, y, training);
}

static srp_status backward(srp_block *b, const xshape *s, const float *dy, float *dx, float *dmem)
{
    return s->cross ? srp_block_backward_cross(b, dy, dx, dmem) : srp_block_backward(b, dy, dx);
}

typedef struct {
    ref_block blk;
    double *x, *mem, *r;
} problem;

static double loss(void *ctx)
{
    const problem *P = ctx;
    const size_t n = P->blk.B * P->blk.T * P->blk.D;
    double *y = alloc_d(n);
    ref_block_forward(&P->blk, P->x, y);
    const double l = ref_quadratic_loss(y, P->r, n);
    free(y);
    return l;
}

/* One training forward and backward of s against the reference. */
static void check_gradients(const xshape *s, uint64_t seed)
{
    const size_t n = s->B * s->T * s->D, nm = s->B * s->Tk * s->D;
    srp_rng r = seeded_rng(seed);
    srp_block *b = make(s, seed);
    randomize_block(b, &r, 0.1f);
    float *x = alloc_f(n), *y = alloc_f(n), *dy = alloc_f(n), *dx = alloc_f(n);
    float *mem = alloc_f(nm), *dmem = alloc_f(nm), *yref = alloc_f(n);
    fill_normal_f(&r, x, n, 1.0);
    fill_normal_f(&r, mem, nm, 1.0);
    problem P;
    if (s->cross)
        ref_block_init_cross(&P.blk, b, s->B, s->T, s->causal, s->Tk);
    else
        ref_block_init(&P.blk, b, s->B, s->T, s->causal);
    P.blk.att.key_len = s->lens;
    P.blk.xatt.key_len = s->mem_lens;
    double *m[6];
    masks_for_next_forward(b, s, &P.blk, m);
    P.x = alloc_d(n);
    P.mem = alloc_d(nm);
    P.r = alloc_d(n);
    to_double(x, P.x, n);
    to_double(mem, P.mem, nm);
    P.blk.memory = P.mem;
    fill_normal_d(&r, P.r, n, 1.0);

    assert_ok(forward(b, s, x, mem, y, SRP_TRAIN));
    double *yd = alloc_d(n);
    ref_block_forward(&P.blk, P.x, yd);
    to_float(yd, yref, n);
    assert_close_array(y, yref, n, 2e-5, "block y");
    for (size_t i = 0; i < n; i++)
        dy[i] = y[i] + (float)P.r[i];
    assert_ok(backward(b, s, dy, dx, dmem));

    const double tol = 2e-4;
    ref_assert_gradient(loss, &P, P.x, n, dx, tol, 0.0, "block dx");
    if (s->cross)
        ref_assert_gradient(loss, &P, P.mem, nm, dmem, tol, 0.0, "block dmemory");
    /* every linear of the block, in srp_block_linear's order */
    ref_linear *refs[12];
    size_t k = 0;
    for (size_t i = 0; i < P.blk.att.n_in; i++)
        refs[k++] = &P.blk.att.in_proj[i];
    refs[k++] = &P.blk.att.proj;
    for (size_t i = 0; s->cross && i < P.blk.xatt.n_in; i++)
        refs[k++] = &P.blk.xatt.in_proj[i];
    if (s->cross)
        refs[k++] = &P.blk.xatt.proj;
    refs[k++] = &P.blk.fc1;
    refs[k++] = &P.blk.fc2;
    assert_int_equal(k, srp_block_linear_count(b));
    for (size_t i = 0; i < k; i++) {
        const char *name;
        srp_linear *l = srp_block_linear(b, i, &name);
        ref_assert_linear_gradients(loss, &P, refs[i], l, tol, 1e-3, name);
    }
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        ref_assert_gradient(loss, &P, P.blk.ln_w[i], s->D, srp_layernorm_weight_grad(ln), tol,
                            1e-3, "norm dweight");
        ref_assert_gradient(loss, &P, P.blk.ln_b[i], s->D, srp_layernorm_bias_grad(ln), tol, 1e-3,
                            "norm dbias");
    }
    /* the padding rules: y and dx 0 on padded rows, dmemory on masked ones */
    for (size_t e = 0; s->lens && e < s->B; e++)
        for (size_t j = s->lens[e] * s->D; j < s->T * s->D; j++) {
            assert_true(y[e * s->T * s->D + j] == 0.0f);
            assert_true(dx[e * s->T * s->D + j] == 0.0f);
        }
    for (size_t e = 0; s->cross && s->mem_lens && e < s->B; e++)
        for (size_t j = s->mem_lens[e] * s->D; j < s->Tk * s->D; j++)
            assert_true(dmem[e * s->Tk * s->D + j] == 0.0f);
    for (int i = 0; i < 6; i++)
        free(m[i]);
    ref_block_free(&P.blk);
    free(yd);
    free(P.x);
    free(P.mem);
    free(P.r);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(mem);
    free(dmem);
    free(yref);
    srp_block_destroy(b);
}

static const size_t lens3[3] = {5, 2, 1}, mem_lens3[3] = {3, 4, 1};

static void test_decoder_gradients_match_central_differences(void **state)
{
    (void)state;
    static const float regs[3][3] = {{0, 0, 0}, {0.3f, 0, 0.5f}, {0.2f, 0.3f, 0.5f}};
    uint64_t seed = 100;
    for (int norm = 0; norm < 3; norm++)
        for (int causal = 0; causal < 2; causal++)
            for (int k = 0; k < 3; k++) {
                const int masked = (int)(seed % 2);
                const xshape s = {3,
                                  5,
                                  4,
                                  8,
                                  2,
                                  12,
                                  (srp_norm_placement)norm,
                                  causal,
                                  1,
                                  seed % 3 == 1 ? SRP_QKV_SIGMA_SEPARATE : SRP_QKV_SIGMA_FUSED,
                                  regs[k][0],
                                  regs[k][1],
                                  regs[k][2],
                                  masked ? lens3 : NULL,
                                  masked || k == 2 ? mem_lens3 : NULL};
                check_gradients(&s, seed++);
            }
}

static void test_masked_gradients_match_central_differences(void **state)
{
    (void)state;
    uint64_t seed = 200;
    for (int norm = 0; norm < 3; norm++)
        for (int causal = 0; causal < 2; causal++)
            for (int k = 0; k < 2; k++) {
                const xshape s = {3,    5,    5,    8,    2,     12,   (srp_norm_placement)norm,
                                  causal, 0,  (srp_qkv_sigma)(seed % 3),
                                  k ? 0.3f : 0.0f, k ? 0.2f : 0.0f, k ? 0.5f : 0.0f,
                                  lens3,  NULL};
                check_gradients(&s, seed++);
            }
}

/* Changing x's padded rows, the memory's masked rows and dy's padded rows
 * changes no y, no dx of a real row, no dmemory, no parameter gradient. */
static void test_padding_reaches_nothing(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++)
        for (int cross = 0; cross < 2; cross++) {
            const xshape s = {3,  5,     4, 8, 2, 12, (srp_norm_placement)norm, cross, cross,
                              SRP_QKV_SIGMA_FUSED, 0, 0, 0, lens3, cross ? mem_lens3 : NULL};
            const size_t n = s.B * s.T * s.D, nm = s.B * s.Tk * s.D;
            float *x = alloc_f(n), *dy = alloc_f(n), *mem = alloc_f(nm);
            float *y[2], *dx[2], *dmem[2];
            srp_block *b[2];
            srp_param_list *lists[2];
            srp_rng r = seeded_rng(7);
            fill_normal_f(&r, x, n, 1.0);
            fill_normal_f(&r, dy, n, 1.0);
            fill_normal_f(&r, mem, nm, 1.0);
            for (int run = 0; run < 2; run++) {
                for (size_t e = 0; run == 1 && e < s.B; e++) { /* garbage in the padding */
                    for (size_t j = s.lens[e] * s.D; j < s.T * s.D; j++) {
                        x[e * s.T * s.D + j] = 1e3f * (float)srp_rng_normal(&r);
                        dy[e * s.T * s.D + j] = 1e3f * (float)srp_rng_normal(&r);
                    }
                    for (size_t j = cross ? s.mem_lens[e] * s.D : s.Tk * s.D; j < s.Tk * s.D; j++)
                        mem[e * s.Tk * s.D + j] = 1e3f * (float)srp_rng_normal(&r);
                }
                b[run] = make(&s, 5);
                y[run] = alloc_f(n);
                dx[run] = alloc_f(n);
                dmem[run] = alloc_f(nm);
                assert_ok(forward(b[run], &s, x, mem, y[run], SRP_TRAIN));
                assert_ok(backward(b[run], &s, dy, dx[run], dmem[run]));
                assert_ok(srp_param_list_create(&lists[run]));
                assert_ok(srp_block_params(b[run], "blk", lists[run]));
            }
            assert_memory_equal(y[0], y[1], sizeof(float) * n);
            assert_memory_equal(dx[0], dx[1], sizeof(float) * n);
            if (cross)
                assert_memory_equal(dmem[0], dmem[1], sizeof(float) * nm);
            const srp_param *p0 = srp_param_list_entries(lists[0]);
            const srp_param *p1 = srp_param_list_entries(lists[1]);
            assert_int_equal(srp_param_list_count(lists[0]), srp_param_list_count(lists[1]));
            for (size_t i = 0; i < srp_param_list_count(lists[0]); i++)
                assert_memory_equal(p0[i].grad, p1[i].grad, sizeof(float) * p0[i].size);
            for (int run = 0; run < 2; run++) {
                srp_param_list_destroy(lists[run]);
                srp_block_destroy(b[run]);
                free(y[run]);
                free(dx[run]);
                free(dmem[run]);
            }
            free(x);
            free(dy);
            free(mem);
        }
}

/* NULL masks: the same bits as srp_block_forward/_backward, in training
 * (with every regularizer) and eval. */
static void test_null_mask_same_bits(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        const xshape s = {2, 6, 6, 8, 2, 12, (srp_norm_placement)norm, norm == 1, 0,
                          SRP_QKV_SIGMA_FUSED, 0.2f, 0.2f, 0.3f, NULL, NULL};
        const size_t n = s.B * s.T * s.D;
        srp_block *a = make(&s, 9), *b = make(&s, 9);
        float *x = alloc_f(n), *ya = alloc_f(n), *yb = alloc_f(n), *da = alloc_f(n);
        float *db = alloc_f(n);
        srp_rng r = seeded_rng(9);
        fill_normal_f(&r, x, n, 1.0);
        for (int training = 0; training < 2; training++) {
            assert_ok(srp_block_forward(a, x, s.B, s.T, ya, training ? SRP_TRAIN : SRP_EVAL));
            assert_ok(srp_block_forward_masked(b, x, s.B, s.T, NULL, yb,
                                               training ? SRP_TRAIN : SRP_EVAL));
            assert_memory_equal(ya, yb, sizeof(float) * n);
        }
        assert_ok(srp_block_backward(a, ya, da));
        assert_ok(srp_block_backward(b, yb, db));
        assert_memory_equal(da, db, sizeof(float) * n);
        for (size_t i = 0; i < srp_block_linear_count(a); i++) {
            srp_linear *la = srp_block_linear(a, i, NULL), *lb = srp_block_linear(b, i, NULL);
            assert_memory_equal(srp_linear_weight_grad(la), srp_linear_weight_grad(lb),
                                sizeof(float) * srp_linear_in_features(la) *
                                    srp_linear_out_features(la));
        }
        srp_block_destroy(a);
        srp_block_destroy(b);
        free(x);
        free(ya);
        free(yb);
        free(da);
        free(db);
    }
}

/* The kinds refuse each other's calls; the config's cross errors. */
static void test_kinds_and_config(void **state)
{
    (void)state;
    const xshape plain_s = {2, 4, 3, 8, 2, 12, SRP_NORM_PRE, 0, 0, SRP_QKV_SIGMA_FUSED, 0, 0, 0,
                            NULL, NULL};
    xshape cross_s = plain_s;
    cross_s.cross = 1;
    srp_block *plain = make(&plain_s, 1), *dec = make(&cross_s, 1);
    float x[2 * 4 * 8] = {0}, mem[2 * 3 * 8] = {0}, y[2 * 4 * 8], dm[2 * 3 * 8];
    assert_null(srp_block_cross_attention(plain));
    assert_non_null(srp_block_cross_attention(dec));
    assert_int_equal(srp_block_forward_cross(plain, x, 2, 4, NULL, mem, 3, NULL, y, SRP_TRAIN),
                     SRP_ERR_UNSUPPORTED);
    assert_int_equal(srp_block_forward(dec, x, 2, 4, y, SRP_TRAIN), SRP_ERR_UNSUPPORTED);
    assert_non_null(strstr(srp_last_error_detail(), "srp_block_forward_cross"));
    assert_int_equal(srp_block_forward_masked(dec, x, 2, 4, NULL, y, SRP_TRAIN),
                     SRP_ERR_UNSUPPORTED);
    assert_ok(srp_block_forward(plain, x, 2, 4, y, SRP_TRAIN));
    assert_int_equal(srp_block_backward_cross(plain, y, y, dm), SRP_ERR_UNSUPPORTED);
    assert_ok(srp_block_backward(plain, y, y));
    assert_ok(srp_block_forward_cross(dec, x, 2, 4, NULL, mem, 3, NULL, y, SRP_TRAIN));
    assert_int_equal(srp_block_backward(dec, y, y), SRP_ERR_UNSUPPORTED);
    assert_ok(srp_block_backward_cross(dec, y, y, dm));
    assert_int_equal(srp_block_backward_cross(dec, y, y, dm), SRP_ERR_ORDER);
    srp_block_cache *c = NULL;
    assert_int_equal(srp_block_cache_create(&c, dec, 2, 4), SRP_ERR_UNSUPPORTED);
    assert_null(c);
    /* memory sizes and lengths */
    const size_t bad_len[2] = {0, 1}, long_len[2] = {4, 1};
    assert_int_equal(srp_block_forward_cross(dec, x, 2, 4, NULL, mem, 4, NULL, y, SRP_TRAIN),
                     SRP_ERR_SHAPE);
    assert_int_equal(srp_block_forward_cross(dec, x, 2, 4, NULL, mem, 0, NULL, y, SRP_TRAIN),
                     SRP_ERR_SHAPE);
    assert_int_equal(srp_block_forward_cross(dec, x, 2, 4, NULL, mem, 3, bad_len, y, SRP_TRAIN),
                     SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_block_forward_cross(dec, x, 2, 4, NULL, mem, 3, long_len, y, SRP_TRAIN),
                     SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_block_forward_cross(dec, x, 2, 4, bad_len, mem, 3, NULL, y, SRP_TRAIN),
                     SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_block_forward_masked(plain, x, 2, 4, bad_len, y, SRP_TRAIN),
                     SRP_ERR_INVALID_ARG);
    const size_t too_long[2] = {5, 1};
    assert_int_equal(srp_block_forward_masked(plain, x, 2, 4, too_long, y, SRP_TRAIN),
                     SRP_ERR_INVALID_ARG);
    /* config: QK_V, a norm_cross_name that repeats one */
    srp_block_config cfg = srp_block_config_default(8, 2, 12);
    cfg.cross = 1;
    srp_block *bad = NULL;
    cfg.qkv_sigma = SRP_QKV_SIGMA_QK_V;
    assert_int_equal(srp_block_create(&bad, &cfg, 2, 4), SRP_ERR_INVALID_ARG);
    cfg.qkv_sigma = SRP_QKV_SIGMA_FUSED;
    cfg.norm_cross_name = "norm1";
    assert_int_equal(srp_block_create(&bad, &cfg, 2, 4), SRP_ERR_INVALID_ARG);
    cfg.norm_cross_name = NULL;
    assert_int_equal(srp_block_create(&bad, &cfg, 2, 4), SRP_ERR_INVALID_ARG);
    cfg.norm = SRP_NORM_NONE; /* no LayerNorm: the names are not read */
    assert_ok(srp_block_create(&bad, &cfg, 2, 4));
    assert_int_equal(srp_block_norm_count(bad), 0);
    srp_block_destroy(bad);
    srp_block_destroy(plain);
    srp_block_destroy(dec);
}

static int has(srp_param_list *l, const char *name)
{
    return srp_param_list_find(l, name) != SIZE_MAX;
}

static void test_lists_and_names(void **state)
{
    (void)state;
    for (int sep = 0; sep < 2; sep++) {
        xshape s = {2, 4, 3, 8, 2, 12, SRP_NORM_POST, 1, 1,
                    sep ? SRP_QKV_SIGMA_SEPARATE : SRP_QKV_SIGMA_FUSED, 0.1f, 0, 0, NULL, NULL};
        srp_block *b = make(&s, 2);
        srp_param_list *p = NULL;
        assert_ok(srp_param_list_create(&p));
        assert_ok(srp_block_params(b, "dec.0", p));
        assert_true(has(p, "dec.0.cross_attn.q.weight"));
        assert_true(has(p, sep ? "dec.0.cross_attn.k.weight" : "dec.0.cross_attn.kv.weight"));
        assert_true(!sep || has(p, "dec.0.cross_attn.v.gamma"));
        assert_true(has(p, "dec.0.cross_attn.proj.bias"));
        assert_true(has(p, "dec.0.norm_cross.weight"));
        assert_true(has(p, "dec.0.norm1.weight") && has(p, "dec.0.norm2.bias"));
        /* the linears in srp_block_linear's order: attn, cross_attn, mlp */
        const char *name;
        const size_t n_self = srp_attention_in_proj_count(srp_block_attention(b)) + 1;
        srp_linear *l = srp_block_linear(b, n_self, &name);
        assert_string_equal(name, "cross_attn.q");
        assert_ptr_equal(l, srp_attention_in_proj(srp_block_cross_attention(b), 0, NULL));
        l = srp_block_linear(b, n_self + (sep ? 3 : 2), &name);
        assert_string_equal(name, "cross_attn.proj");
        assert_ptr_equal(l, srp_attention_proj(srp_block_cross_attention(b)));
        srp_block_linear(b, srp_block_linear_count(b) - 2, &name);
        assert_string_equal(name, "mlp.fc1");
        assert_int_equal(srp_block_norm_count(b), 3);
        srp_block_norm(b, 2, &name);
        assert_string_equal(name, "norm_cross");
        srp_tensor_list *t = NULL;
        assert_ok(srp_tensor_list_create(&t));
        assert_ok(srp_block_state_refs(b, "dec.0", t));
        assert_true(srp_tensor_list_find(t, "dec.0.cross_attn.dropout_rng") != SIZE_MAX);
        assert_true(srp_tensor_list_find(t, "dec.0.cross_attn.q.u") != SIZE_MAX);
        srp_tensor_list_destroy(t);
        srp_param_list_destroy(p);
        srp_block_destroy(b);
    }
}

/* ---- cached decoding of the decoder block (block.h) ---- */

enum { DEPTH = 2 };

/* A stack of blocks of shape s for decoding: O(1) weights, u moved off the
 * top singular vector (the eval power step then gives a sigma of its own,
 * which the caches must take too), gamma times 0.35: test_block.c's
 * make_decode_stack says why it is lowered; a decoder block, with a third
 * branch, needs it lower than 0.5, where two full forwards of different
 * lengths without LayerNorm already differ by 1.1e-6 relative (at 0.35:
 * 5e-7 at most, and decoding 4e-7). */
static void make_decode_stack(const xshape *s, uint64_t seed, srp_block **blocks)
{
    srp_rng r = seeded_rng(seed);
    for (size_t l = 0; l < DEPTH; l++) {
        blocks[l] = make(s, seed + l);
        randomize_block(blocks[l], &r, 0.2f);
        for (size_t i = 0; i < srp_block_linear_count(blocks[l]); i++) {
            srp_linear *lin = srp_block_linear(blocks[l], i, NULL);
            fill_normal_f(&r, srp_linear_u(lin), srp_linear_in_features(lin), 1.0);
            *srp_linear_gamma(lin) *= 0.35f;
        }
    }
}

/* One position of batch sequences through the stack: step [batch][D], in place. */
static void decode_stack(srp_block **blocks, srp_block_cache **caches, float *step, size_t batch)
{
    for (size_t l = 0; l < DEPTH; l++)
        assert_ok(srp_block_decode(blocks[l], caches[l], step, batch, step));
}

/* The eval forward of the stack over x [batch][n][D] (memory [batch][mt][D]
 * with lens, for a decoder block) into y. */
static void forward_stack(srp_block **blocks, const float *x, size_t batch, size_t n,
                          const float *mem, size_t mt, const size_t *lens, float *y)
{
    const size_t rows = batch * n * srp_block_dim(blocks[0]);
    float *in = alloc_f(rows);
    memcpy(in, x, sizeof(float) * rows);
    for (size_t l = 0; l < DEPTH; l++) {
        if (mem)
            assert_ok(
                srp_block_forward_cross(blocks[l], in, batch, n, NULL, mem, mt, lens, y, SRP_EVAL));
        else
            assert_ok(srp_block_forward(blocks[l], in, batch, n, y, SRP_EVAL));
        memcpy(in, y, sizeof(float) * rows);
    }
    free(in);
}

/* Position t of sequence b of x [batch][T][D] into step's row b. */
static void position(float *step, const float *x, size_t batch, size_t T, size_t D, size_t t)
{
    for (size_t b = 0; b < batch; b++)
        memcpy(step + b * D, x + (b * T + t) * D, sizeof(float) * D);
}

/* Decoding a stack of decoder blocks position by position, against
 * srp_block_forward_cross in eval over the prefix: every norm placement,
 * FUSED and SEPARATE, a memory of the blocks' full length without and
 * with key lengths (one sequence using all of it, one a single key), and
 * a shorter memory with lengths; 1e-6 relative. */
static void check_decoder_decode(srp_norm_placement norm, srp_qkv_sigma mode, size_t mt,
                                 const size_t *lens)
{
    const xshape s = {3, 7, 6, 16, 4, 24, norm, 1, 1, mode, 0.0f, 0.0f, 0.0f, NULL, lens};
    const size_t B = s.B, T = s.T, D = s.D;
    srp_block *blocks[DEPTH];
    srp_block_cache *caches[DEPTH];
    make_decode_stack(&s, 80 + 3 * (uint64_t)norm + (uint64_t)mode, blocks);
    float *x = alloc_f(B * T * D), *mem = alloc_f(B * mt * D), *full = alloc_f(B * T * D);
    float *prefix = alloc_f(B * T * D), *step = alloc_f(B * D), *want = alloc_f(B * D);
    srp_rng r = seeded_rng(81);
    fill_normal_f(&r, x, B * T * D, 1.0);
    fill_normal_f(&r, mem, B * mt * D, 1.0);
    for (size_t l = 0; l < DEPTH; l++) {
        assert_ok(srp_block_cache_create(&caches[l], blocks[l], B, T));
        assert_status(srp_block_decode(blocks[l], caches[l], x, B, step), SRP_ERR_ORDER);
        assert_ok(srp_block_cache_set_memory(caches[l], mem, B, mt, lens));
    }
    double worst = 0.0;
    for (size_t t = 0; t < T; t++) {
        position(step, x, B, T, D, t);
        decode_stack(blocks, caches, step, B);
        assert_int_equal(srp_block_cache_length(caches[DEPTH - 1]), t + 1);
        const size_t n = t + 1;
        for (size_t b = 0; b < B; b++)
            memcpy(prefix + b * n * D, x + b * T * D, sizeof(float) * n * D);
        forward_stack(blocks, prefix, B, n, mem, mt, lens, full);
        position(want, full, B, n, D, t);
        const double rel = rel_max_diff(step, want, B * D);
        worst = fmax(worst, rel);
        if (rel > 1e-6)
            fail_msg("norm %d, qkv_sigma %d, memory %zu%s, position %zu: decoded vs "
                     "forward_cross %.3g relative",
                     (int)norm, (int)mode, mt, lens ? " masked" : "", t, rel);
    }
    assert_status(srp_block_decode(blocks[0], caches[0], step, B, step), SRP_ERR_SHAPE);
    /* set_memory starts again; reset forgets the memory */
    assert_ok(srp_block_cache_set_memory(caches[0], mem, B, mt, lens));
    assert_int_equal(srp_block_cache_length(caches[0]), 0);
    srp_block_cache_reset(caches[0]);
    assert_status(srp_block_decode(blocks[0], caches[0], step, B, step), SRP_ERR_ORDER);
    printf("norm %d, qkv_sigma %d, memory %zu%s: decoded vs forward_cross, worst %.2g relative\n",
           (int)norm, (int)mode, mt, lens ? " masked" : "", worst);
    for (size_t l = 0; l < DEPTH; l++) {
        srp_block_cache_destroy(caches[l]);
        srp_block_destroy(blocks[l]);
    }
    free(x);
    free(mem);
    free(full);
    free(prefix);
    free(step);
    free(want);
}

static void test_decoder_decode_matches_forward(void **state)
{
    (void)state;
    static const size_t full_lens[3] = {6, 1, 4}, short_lens[3] = {2, 4, 1};
    for (int norm = 0; norm < 3; norm++)
        for (int mode = 0; mode < 3; mode += 2) {
            check_decoder_decode((srp_norm_placement)norm, (srp_qkv_sigma)mode, 6, NULL);
            check_decoder_decode((srp_norm_placement)norm, (srp_qkv_sigma)mode, 6, full_lens);
            check_decoder_decode((srp_norm_placement)norm, (srp_qkv_sigma)mode, 4, short_lens);
        }
}

/* srp_block_cache_select: decode `before` positions of 3 sequences
 * (sources), keep rows {2, 0, 0, 2} (row 1 dropped, 0 and 2 twice, one
 * more row than before), decode 3 more positions; each output equals
 * decoding the picked sequences from scratch (their memories and lengths
 * picked too). before = 0: beams made from a decoder block's sources right
 * after set_memory. A plain causal block (s->cross 0) the same without a
 * memory. */
static void check_select(const xshape *s, size_t before)
{
    static const size_t rows[4] = {2, 0, 0, 2};
    const size_t B0 = 3, B1 = 4, T = before + 3, D = s->D, Tk = s->Tk;
    srp_block *blocks[DEPTH];
    srp_block_cache *caches[DEPTH], *fresh[DEPTH];
    make_decode_stack(s, 90 + before, blocks);
    float *x = alloc_f(B1 * T * D), *px = alloc_f(B1 * T * D), *mem = alloc_f(B0 * Tk * D);
    float *pmem = alloc_f(B1 * Tk * D), *step = alloc_f(B1 * D), *want = alloc_f(B1 * D);
    size_t plens[4];
    srp_rng r = seeded_rng(91);
    fill_normal_f(&r, x, B1 * T * D, 1.0);
    fill_normal_f(&r, mem, B0 * Tk * D, 1.0);
    /* the picked sequences: their first `before` positions are the old rows' */
    for (size_t i = 0; i < B1; i++) {
        memcpy(px + i * T * D, x + rows[i] * T * D, sizeof(float) * before * D);
        memcpy(px + (i * T + before) * D, x + (i * T + before) * D, sizeof(float) * 3 * D);
        memcpy(pmem + i * Tk * D, mem + rows[i] * Tk * D, sizeof(float) * Tk * D);
        plens[i] = s->mem_lens[rows[i]];
    }
    for (size_t l = 0; l < DEPTH; l++) {
        assert_ok(srp_block_cache_create(&caches[l], blocks[l], B1, T));
        assert_ok(srp_block_cache_create(&fresh[l], blocks[l], B1, T));
        if (s->cross) {
            assert_ok(srp_block_cache_set_memory(caches[l], mem, B0, Tk, s->mem_lens));
            assert_ok(srp_block_cache_set_memory(fresh[l], pmem, B1, Tk, plens));
        }
    }
    for (size_t t = 0; t < before; t++) {
        position(step, x, B0, T, D, t);
        decode_stack(blocks, caches, step, B0);
        position(step, px, B1, T, D, t);
        decode_stack(blocks, fresh, step, B1);
    }
    for (size_t l = 0; l < DEPTH; l++) {
        assert_ok(srp_block_cache_select(caches[l], rows, B1));
        assert_int_equal(srp_block_cache_length(caches[l]), before);
    }
    for (size_t t = before; t < T; t++) {
        position(step, px, B1, T, D, t);
        memcpy(want, step, sizeof(float) * B1 * D);
        decode_stack(blocks, caches, step, B1);
        decode_stack(blocks, fresh, want, B1);
        if (rel_max_diff(step, want, B1 * D) > 1e-6)
            fail_msg("cross %d, norm %d, %zu positions before select, position %zu: selected vs "
                     "fresh %.3g relative",
                     s->cross, (int)s->norm, before, t, rel_max_diff(step, want, B1 * D));
    }
    for (size_t l = 0; l < DEPTH; l++) {
        srp_block_cache_destroy(caches[l]);
        srp_block_cache_destroy(fresh[l]);
        srp_block_destroy(blocks[l]);
    }
    free(x);
    free(px);
    free(mem);
    free(pmem);
    free(step);
    free(want);
}

static void test_decode_select(void **state)
{
    (void)state;
    static const size_t mem_lens[3] = {5, 1, 3};
    for (int norm = 0; norm < 3; norm++)
        for (int mode = 0; mode < 3; mode += 2) {
            xshape s = {4,
                        8,
                        5,
                        16,
                        4,
                        24,
                        (srp_norm_placement)norm,
                        1,
                        1,
                        (srp_qkv_sigma)mode,
                        0.0f,
                        0.0f,
                        0.0f,
                        NULL,
                        mem_lens};
            check_select(&s, 3);
            check_select(&s, 0);
            s.cross = 0;
            check_select(&s, 3);
        }
}

#ifdef SRP_COUNT_ALLOCS
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        const xshape s = {4, 9, 7, 16, 2, 32, (srp_norm_placement)norm, 1, 1,
                          SRP_QKV_SIGMA_FUSED, 0.1f, 0.1f, 0.1f, lens3, mem_lens3};
        const size_t lens[4] = {9, 3, 1, 8}, mlens[4] = {7, 1, 2, 5};
        const size_t n = s.B * s.T * s.D, nm = s.B * s.Tk * s.D;
        srp_block *b = make(&s, 3);
        float *x = alloc_f(n), *y = alloc_f(n), *mem = alloc_f(nm), *dm = alloc_f(nm);
        srp_rng r = seeded_rng(3);
        fill_normal_f(&r, x, n, 1.0);
        fill_normal_f(&r, mem, nm, 1.0);
        /* warm-up: plans, threads */
        assert_ok(srp_block_forward_cross(b, x, s.B, s.T, lens, mem, s.Tk, mlens, y, SRP_TRAIN));
        assert_ok(srp_block_backward_cross(b, y, y, dm));
        alloc_counter_start();
        for (int it = 0; it < 2; it++) {
            assert_ok(
                srp_block_forward_cross(b, x, s.B, s.T, lens, mem, s.Tk, mlens, y, SRP_TRAIN));
            assert_ok(srp_block_backward_cross(b, y, y, dm));
            assert_ok(srp_block_forward_cross(b, x, s.B, s.T, NULL, mem, s.Tk, NULL, y, SRP_EVAL));
        }
        assert_int_equal(alloc_counter_stop(NULL), 0);
        srp_block_destroy(b);
        free(x);
        free(y);
        free(mem);
        free(dm);
    }
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_gradients_match_central_differences),
        cmocka_unit_test(test_masked_gradients_match_central_differences),
        cmocka_unit_test(test_padding_reaches_nothing),
        cmocka_unit_test(test_null_mask_same_bits),
        cmocka_unit_test(test_kinds_and_config),
        cmocka_unit_test(test_lists_and_names),
        cmocka_unit_test(test_decoder_decode_matches_forward),
        cmocka_unit_test(test_decode_select),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
