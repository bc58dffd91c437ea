/* The transformer block (block.h): every gradient against central
 * differences of the double reference (reference_model.h) in every norm
 * placement, causal or not, with each regularizer at a fixed mask; the
 * same bits as the block the example models build from separate layers
 * today; the regularizers' masks (kept fraction, scaling, reproducible,
 * independent of the thread count, resumed from the state refs); the order
 * rule; bad input; the lists; no allocation after create. */
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
    size_t B, T, D, H, M;
    srp_norm_placement norm;
    int causal;
    srp_qkv_sigma qkv_sigma;
    float attn_dropout, mlp_dropout, drop_path;
} block_shape;

static srp_block_config shape_config(const block_shape *s, uint64_t seed)
{
    srp_block_config c = srp_block_config_default(s->D, s->H, s->M);
    c.norm = s->norm;
    c.causal = s->causal;
    c.qkv_sigma = s->qkv_sigma;
    c.attn_dropout = s->attn_dropout;
    c.mlp_dropout = s->mlp_dropout;
    c.drop_path = s->drop_path;
    srp_block_config_seed(&c, seed);
    return c;
}

static srp_block *make(const block_shape *s, uint64_t seed)
{
    const srp_block_config c = shape_config(s, seed);
    srp_block *b = NULL;
    assert_ok(srp_block_create(&b, &c, s->B, s->T));
    return b;
}

/* The parameters: randomize_block (testutil.h), so that every term of
 * every gradient shows. The masks: block_rule_mask (testutil.h), the rule
 * block.h documents written out again. */

typedef struct {
    double *att, *mlp, *path_attn, *path_mlp;
} masks;

/* The masks the block's next training forward on s draws, from copies of
 * its random states; set in R. */
static void masks_for_next_forward(srp_block *b, const block_shape *s, ref_block *R, masks *m)
{
    memset(m, 0, sizeof(*m));
    if (s->attn_dropout > 0.0f) {
        srp_rng r = *srp_attention_dropout_rng(srp_block_attention(b));
        const size_t n = s->B * s->H * s->T * s->T;
        m->att = alloc_d(n);
        block_rule_mask(m->att, n, srp_rng_next_u64(&r), s->attn_dropout);
    }
    srp_rng r = *srp_block_dropout_rng(b);
    if (s->mlp_dropout > 0.0f) {
        m->mlp = alloc_d(s->B * s->T * s->D);
        block_rule_mask(m->mlp, s->B * s->T * s->D, srp_rng_next_u64(&r), s->mlp_dropout);
    }
    if (s->drop_path > 0.0f) {
        m->path_attn = alloc_d(s->B);
        m->path_mlp = alloc_d(s->B);
        block_rule_mask(m->path_attn, s->B, srp_rng_next_u64(&r), s->drop_path);
        block_rule_mask(m->path_mlp, s->B, srp_rng_next_u64(&r), s->drop_path);
    }
    R->att.drop = m->att;
    R->mlp_drop = m->mlp;
    R->path_attn = m->path_attn;
    R->path_mlp = m->path_mlp;
}

static void masks_free(masks *m)
{
    free(m->att);
    free(m->mlp);
    free(m->path_attn);
    free(m->path_mlp);
}

/* ---- central differences of the double block ---- */

typedef struct {
    ref_block blk;
    double *x, *r; /* [B][T][D]; the loss 0.5 |y|^2 + <r, y> */
} block_problem;

static double block_loss(void *ctx)
{
    const block_problem *P = ctx;
    const size_t n = P->blk.B * P->blk.T * P->blk.D;
    double *y = alloc_d(n);
    ref_block_forward(&P->blk, P->x, y);
    const double loss = ref_quadratic_loss(y, P->r, n);
    free(y);
    return loss;
}

/* One training forward and backward of s against the reference. */
static void check_gradients(const block_shape *s, uint64_t seed)
{
    const size_t n = s->B * s->T * s->D;
    srp_rng r = seeded_rng(seed);
    srp_block *b = make(s, seed);
    randomize_block(b, &r, 0.2f);
    float *x = alloc_f(n), *y = alloc_f(n), *dy = alloc_f(n), *dx = alloc_f(n);
    float *yref = alloc_f(n);
    fill_normal_f(&r, x, n, 1.0);
    block_problem P;
    ref_block_init(&P.blk, b, s->B, s->T, s->causal);
    masks m;
    masks_for_next_forward(b, s, &P.blk, &m);
    P.x = alloc_d(n);
    P.r = alloc_d(n);
    to_double(x, P.x, n);
    fill_normal_d(&r, P.r, n, 1.0);

    assert_ok(srp_block_forward(b, x, s->B, s->T, y, SRP_TRAIN));
    double *yd = alloc_d(n);
    ref_block_forward(&P.blk, P.x, yd);
    to_float(yd, yref, n);
    assert_close_array(y, yref, n, 2e-5, "block y");
    for (size_t i = 0; i < n; i++)
        dy[i] = y[i] + (float)P.r[i];
    assert_ok(srp_block_backward(b, dy, dx));

    const double tol = 2e-4;
    ref_assert_gradient(block_loss, &P, P.x, n, dx, tol, 0.0, "block dx");
    srp_attention *a = srp_block_attention(b);
    for (size_t i = 0; i < P.blk.att.n_in; i++) {
        const char *name;
        srp_linear *l = srp_attention_in_proj(a, i, &name);
        ref_assert_linear_gradients(block_loss, &P, &P.blk.att.in_proj[i], l, tol, 1e-3, name);
    }
    const size_t nl = srp_block_linear_count(b);
    ref_assert_linear_gradients(block_loss, &P, &P.blk.att.proj, srp_attention_proj(a), tol, 1e-3,
                                "proj");
    ref_assert_linear_gradients(block_loss, &P, &P.blk.fc1, srp_block_linear(b, nl - 2, NULL), tol,
                                1e-3, "fc1");
    ref_assert_linear_gradients(block_loss, &P, &P.blk.fc2, srp_block_linear(b, nl - 1, NULL), tol,
                                1e-3, "fc2");
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        ref_assert_gradient(block_loss, &P, P.blk.ln_w[i], s->D, srp_layernorm_weight_grad(ln), tol,
                            1e-3, "norm dweight");
        ref_assert_gradient(block_loss, &P, P.blk.ln_b[i], s->D, srp_layernorm_bias_grad(ln), tol,
                            1e-3, "norm dbias");
    }
    free(yd);
    masks_free(&m);
    ref_block_free(&P.blk);
    free(P.x);
    free(P.r);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(yref);
    srp_block_destroy(b);
}

static void test_gradients_match_central_differences(void **state)
{
    (void)state;
    /* regularizers: none, each alone, all three */
    static const float regs[5][3] = {
        {0, 0, 0}, {0.3f, 0, 0}, {0, 0.4f, 0}, {0, 0, 0.5f}, {0.2f, 0.3f, 0.5f}};
    uint64_t seed = 1;
    for (int norm = 0; norm < 3; norm++)
        for (int causal = 0; causal < 2; causal++)
            for (int k = 0; k < 5; k++) {
                block_shape s = {3,          5,
                                 8,          2,
                                 12,         (srp_norm_placement)norm,
                                 causal,     (srp_qkv_sigma)(seed % 3),
                                 regs[k][0], regs[k][1],
                                 regs[k][2]};
                check_gradients(&s, seed++);
            }
}

/* ---- the example models' block, as they build it today from separate
 * layers (examples/vit_lite/model.c's inline block and
 * examples/char_lm/model.c's block_forward/_backward, which make the same
 * calls for none and pre-LN; examples/common/norm.c's LayerNorm) ---- */

typedef struct {
    int enabled;
    size_t dim;
    float eps;
    float *w, *b, *dw, *db, *out, *mean, *rstd;
} ex_norm_copy;

static void norm_init(ex_norm_copy *n, int enabled, size_t dim, size_t rows, float eps)
{
    memset(n, 0, sizeof(*n));
    n->enabled = enabled;
    n->dim = dim;
    n->eps = eps;
    if (!enabled)
        return;
    n->w = alloc_f(dim);
    n->b = alloc_f(dim);
    n->dw = alloc_f(dim);
    n->db = alloc_f(dim);
    n->out = alloc_f(rows * dim);
    n->mean = alloc_f(rows);
    n->rstd = alloc_f(rows);
    for (size_t i = 0; i < dim; i++)
        n->w[i] = 1.0f;
}

static void norm_free(ex_norm_copy *n)
{
    free(n->w);
    free(n->b);
    free(n->dw);
    free(n->db);
    free(n->out);
    free(n->mean);
    free(n->rstd);
}

static const float *norm_forward(ex_norm_copy *n, const float *x, size_t rows)
{
    if (!n->enabled)
        return x;
    assert_ok(srp_layernorm_forward(x, n->w, n->b, rows, n->dim, n->eps, n->out, n->mean, n->rstd));
    return n->out;
}

static void norm_backward_add(ex_norm_copy *n, const float *x, const float *dy, size_t rows,
                              float *d_stream, float *scratch)
{
    if (!n->enabled) {
        assert_ok(srp_accumulate(d_stream, dy, rows * n->dim));
        return;
    }
    assert_ok(
        srp_layernorm_backward(x, n->w, n->mean, n->rstd, dy, rows, n->dim, scratch, n->dw, n->db));
    assert_ok(srp_accumulate(d_stream, scratch, rows * n->dim));
}

typedef struct {
    srp_attention *attn;
    srp_linear *fc1, *fc2;
    ex_norm_copy ln1, ln2;
    int post;
    size_t D, mlp;
    float *mid, *sum, *h1, *g;
    float *branch_out, *d_branch, *d_norm, *d_mlp; /* the model's scratch */
} model_block;

/* The models' linear_config (vit_lite/model.c, char_lm/model.c). */
static srp_linear_config model_linear(size_t in, size_t out, srp_reparam mode, srp_rng *rng)
{
    srp_linear_config lc = srp_linear_config_default(in, out);
    lc.reparam = mode;
    lc.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    lc.init_std = 0.1f; /* attention that is not uniform */
    if (rng)
        lc.seed = srp_rng_next_u64(rng);
    return lc;
}

typedef struct {
    size_t B, T, D, H, M;
    srp_norm_placement norm;
    int causal;
    float eps;
    srp_qkv_sigma qkv_sigma;
    srp_reparam mode;
} model_shape;

/* What vit_create / create_block do for one block, seeds from the model's rng. */
static void model_block_create(model_block *mb, const model_shape *s, srp_rng *rng)
{
    memset(mb, 0, sizeof(*mb));
    const size_t D = s->D, rows = s->B * s->T;
    srp_attention_config ac = srp_attention_config_default(D, s->H);
    ac.causal = s->causal;
    ac.qkv_sigma = s->qkv_sigma;
    ac.qkv = model_linear(D, 3 * D, s->mode, NULL);
    ac.proj = model_linear(D, D, s->mode, NULL);
    ac.seed = srp_rng_next_u64(rng);
    assert_ok(srp_attention_create(&mb->attn, &ac, s->B, s->T));
    srp_linear_config lc = model_linear(D, s->M, s->mode, rng);
    assert_ok(srp_linear_create(&mb->fc1, &lc));
    lc = model_linear(s->M, D, s->mode, rng);
    assert_ok(srp_linear_create(&mb->fc2, &lc));
    norm_init(&mb->ln1, s->norm != SRP_NORM_NONE, D, rows, s->eps);
    norm_init(&mb->ln2, s->norm != SRP_NORM_NONE, D, rows, s->eps);
    mb->post = s->norm == SRP_NORM_POST;
    mb->D = D;
    mb->mlp = s->M;
    mb->mid = alloc_f(rows * D);
    mb->sum = alloc_f(rows * D);
    mb->h1 = alloc_f(rows * s->M);
    mb->g = alloc_f(rows * s->M);
    mb->branch_out = alloc_f(rows * D);
    mb->d_branch = alloc_f(rows * D);
    mb->d_norm = alloc_f(rows * D);
    mb->d_mlp = alloc_f(rows * (s->M > D ? s->M : D));
}

static void model_block_free(model_block *mb)
{
    srp_attention_destroy(mb->attn);
    srp_linear_destroy(mb->fc1);
    srp_linear_destroy(mb->fc2);
    norm_free(&mb->ln1);
    norm_free(&mb->ln2);
    free(mb->mid);
    free(mb->sum);
    free(mb->h1);
    free(mb->g);
    free(mb->branch_out);
    free(mb->d_branch);
    free(mb->d_norm);
    free(mb->d_mlp);
}

/* char_lm/model.c's block_forward (its pre-LN path is vit_forward's loop
 * body): x, y: [B][T][D]; post-LN's y is ln2's output, copied to y. */
static void model_block_forward(model_block *blk, const float *x, size_t B, size_t T, float *y,
                                int training)
{
    const size_t D = blk->D, rows = B * T, mlp = blk->mlp;
    /* post-LN: ln1 after the attention's residual, ln2 after the MLP's */
    const float *a_in = blk->post ? x : norm_forward(&blk->ln1, x, rows);
    assert_ok(srp_attention_forward(blk->attn, a_in, B, T, blk->branch_out, training));
    assert_ok(srp_residual_add(x, blk->branch_out, rows * D, blk->mid));
    const float *m_in = norm_forward(blk->post ? &blk->ln1 : &blk->ln2, blk->mid, rows);
    assert_ok(srp_linear_forward(blk->fc1, m_in, rows, blk->h1, training));
    assert_ok(srp_gelu_forward(blk->h1, rows * mlp, blk->g));
    assert_ok(srp_linear_forward(blk->fc2, blk->g, rows, blk->branch_out, training));
    if (!blk->post) {
        assert_ok(srp_residual_add(blk->mid, blk->branch_out, rows * D, y));
        return;
    }
    assert_ok(srp_residual_add(m_in, blk->branch_out, rows * D, blk->sum));
    memcpy(y, norm_forward(&blk->ln2, blk->sum, rows), sizeof(float) * rows * D);
}

/* char_lm/model.c's block_backward (pre-LN: vit_backward's loop body);
 * ds: d(y) in, d(x) out. */
static void model_block_backward(model_block *blk, const float *x, size_t rows, float *ds)
{
    const size_t D = blk->D, mlp = blk->mlp;
    if (blk->post) {
        const ex_norm_copy *n2 = &blk->ln2, *n1 = &blk->ln1;
        assert_ok(srp_layernorm_backward(blk->sum, n2->w, n2->mean, n2->rstd, ds, rows, D, ds,
                                         n2->dw, n2->db));
        assert_ok(srp_linear_backward(blk->fc2, blk->g, ds, rows, blk->d_mlp));
        assert_ok(
            srp_gelu_backward_from_output(blk->h1, blk->g, blk->d_mlp, rows * mlp, blk->d_mlp));
        assert_ok(srp_linear_backward(blk->fc1, n1->out, blk->d_mlp, rows, blk->d_branch));
        assert_ok(srp_accumulate(ds, blk->d_branch, rows * D));
        assert_ok(srp_layernorm_backward(blk->mid, n1->w, n1->mean, n1->rstd, ds, rows, D, ds,
                                         n1->dw, n1->db));
        assert_ok(srp_attention_backward(blk->attn, ds, blk->d_branch));
        assert_ok(srp_accumulate(ds, blk->d_branch, rows * D));
        return;
    }
    const float *m_in = blk->ln2.enabled ? blk->ln2.out : blk->mid;
    assert_ok(srp_linear_backward(blk->fc2, blk->g, ds, rows, blk->d_mlp));
    assert_ok(srp_gelu_backward_from_output(blk->h1, blk->g, blk->d_mlp, rows * mlp, blk->d_mlp));
    assert_ok(srp_linear_backward(blk->fc1, m_in, blk->d_mlp, rows, blk->d_branch));
    norm_backward_add(&blk->ln2, blk->mid, blk->d_branch, rows, ds, blk->d_norm);
    assert_ok(srp_attention_backward(blk->attn, ds, blk->d_branch));
    norm_backward_add(&blk->ln1, x, blk->d_branch, rows, ds, blk->d_norm);
}

/* The block as a model switching to it creates it: the same config, the
 * seeds drawn from the model's rng in the model's order. */
static srp_block *switched_block(const model_shape *s, srp_rng *rng)
{
    srp_block_config c = srp_block_config_default(s->D, s->H, s->M);
    c.norm = s->norm;
    c.norm_eps = s->eps;
    c.causal = s->causal;
    c.qkv_sigma = s->qkv_sigma;
    c.qkv = c.proj = c.fc1 = c.fc2 = model_linear(1, 1, s->mode, NULL);
    c.attn_seed = srp_rng_next_u64(rng);
    c.fc1.seed = srp_rng_next_u64(rng);
    c.fc2.seed = srp_rng_next_u64(rng);
    srp_block *b = NULL;
    assert_ok(srp_block_create(&b, &c, s->B, s->T));
    return b;
}

/* The linears of both, in the order of srp_block_linear. */
static srp_linear *model_linear_at(model_block *mb, size_t i)
{
    const size_t n_in = srp_attention_in_proj_count(mb->attn);
    if (i < n_in)
        return srp_attention_in_proj(mb->attn, i, NULL);
    return i == n_in ? srp_attention_proj(mb->attn) : i == n_in + 1 ? mb->fc1 : mb->fc2;
}

static void assert_linears_equal(srp_linear *a, srp_linear *b)
{
    const size_t in = srp_linear_in_features(a), out = srp_linear_out_features(a);
    assert_int_equal(in, srp_linear_in_features(b));
    assert_memory_equal(srp_linear_weight(a), srp_linear_weight(b), sizeof(float) * in * out);
    assert_memory_equal(srp_linear_weight_grad(a), srp_linear_weight_grad(b),
                        sizeof(float) * in * out);
    assert_memory_equal(srp_linear_bias(a), srp_linear_bias(b), sizeof(float) * out);
    assert_memory_equal(srp_linear_bias_grad(a), srp_linear_bias_grad(b), sizeof(float) * out);
    assert_memory_equal(srp_linear_gamma(a), srp_linear_gamma(b), sizeof(float));
    assert_memory_equal(srp_linear_gamma_grad(a), srp_linear_gamma_grad(b), sizeof(float));
    assert_memory_equal(srp_linear_u(a), srp_linear_u(b), sizeof(float) * in);
    assert_memory_equal(srp_linear_v(a), srp_linear_v(b), sizeof(float) * out);
    const float sa = srp_linear_sigma(a), sb = srp_linear_sigma(b);
    assert_memory_equal(&sa, &sb, sizeof(float));
}

static void assert_same_state(model_block *mb, srp_block *b)
{
    for (size_t i = 0; i < srp_block_linear_count(b); i++)
        assert_linears_equal(model_linear_at(mb, i), srp_block_linear(b, i, NULL));
    const size_t D = mb->D;
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        const ex_norm_copy *n = i == 0 ? &mb->ln1 : &mb->ln2;
        assert_memory_equal(srp_layernorm_weight(ln), n->w, sizeof(float) * D);
        assert_memory_equal(srp_layernorm_bias(ln), n->b, sizeof(float) * D);
        assert_memory_equal(srp_layernorm_weight_grad(ln), n->dw, sizeof(float) * D);
        assert_memory_equal(srp_layernorm_bias_grad(ln), n->db, sizeof(float) * D);
    }
    const size_t H = srp_attention_heads(mb->attn);
    float e1[8], e2[8], m1[8], m2[8];
    assert_true(H <= 8);
    const srp_status st = srp_attention_entropy(mb->attn, e1, m1); /* none before a forward */
    assert_status(srp_attention_entropy(srp_block_attention(b), e2, m2), st);
    if (st != SRP_OK)
        return;
    assert_memory_equal(e1, e2, sizeof(float) * H);
    assert_memory_equal(m1, m2, sizeof(float) * H);
    assert_ok(srp_attention_entropy_bound(mb->attn, e1)); /* Theorem 3.1, through the block */
    assert_ok(srp_attention_entropy_bound(srp_block_attention(b), e2));
    assert_memory_equal(e1, e2, sizeof(float) * H);
}

/* p -= lr g on every parameter of both, then zero the gradients: the next
 * step starts from moved weights, as in training. */
static void sgd_step(float *p, float *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] -= 1e-3f * g[i];
        g[i] = 0.0f;
    }
}

static void step_both(model_block *mb, srp_block *b)
{
    for (size_t i = 0; i < srp_block_linear_count(b); i++) {
        srp_linear *ls[2] = {model_linear_at(mb, i), srp_block_linear(b, i, NULL)};
        for (int k = 0; k < 2; k++) {
            srp_linear *l = ls[k];
            const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
            sgd_step(srp_linear_weight(l), srp_linear_weight_grad(l), in * out);
            sgd_step(srp_linear_bias(l), srp_linear_bias_grad(l), out);
            sgd_step(srp_linear_gamma(l), srp_linear_gamma_grad(l), 1);
        }
    }
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        ex_norm_copy *n = i == 0 ? &mb->ln1 : &mb->ln2;
        sgd_step(srp_layernorm_weight(ln), srp_layernorm_weight_grad(ln), mb->D);
        sgd_step(srp_layernorm_bias(ln), srp_layernorm_bias_grad(ln), mb->D);
        sgd_step(n->w, n->dw, mb->D);
        sgd_step(n->b, n->db, mb->D);
    }
}

/* Two blocks deep, as a model: seeds from one rng, two training steps
 * (forward, backward, update) and an eval forward, every bit compared. */
static void check_same_bits_as_model(const model_shape *s, uint64_t seed)
{
    enum { DEPTH = 2 };
    const size_t n = s->B * s->T * s->D;
    srp_rng model_rng, block_rng, data;
    srp_rng_seed(&model_rng, seed);
    srp_rng_seed(&block_rng, seed);
    srp_rng_seed(&data, seed + 100);
    model_block mb[DEPTH];
    srp_block *b[DEPTH];
    for (size_t l = 0; l < DEPTH; l++) {
        model_block_create(&mb[l], s, &model_rng);
        b[l] = switched_block(s, &block_rng);
        assert_same_state(&mb[l], b[l]);
    }
    float *xs[DEPTH + 1], *ys[DEPTH + 1];
    for (size_t l = 0; l <= DEPTH; l++) {
        xs[l] = alloc_f(n);
        ys[l] = alloc_f(n);
    }
    float *ds = alloc_f(n), *ds_block = alloc_f(n), *x_scribble = alloc_f(n);
    for (int step = 0; step < 3; step++) {
        const int training = step < 2 ? SRP_TRAIN : SRP_EVAL;
        fill_normal_f(&data, xs[0], n, 1.0);
        memcpy(ys[0], xs[0], sizeof(float) * n);
        for (size_t l = 0; l < DEPTH; l++) {
            model_block_forward(&mb[l], xs[l], s->B, s->T, xs[l + 1], training);
            /* the block keeps what it needs: its caller's x may change */
            memcpy(x_scribble, ys[l], sizeof(float) * n);
            assert_ok(srp_block_forward(b[l], x_scribble, s->B, s->T, ys[l + 1], training));
            memset(x_scribble, 0xff, sizeof(float) * n);
            assert_memory_equal(xs[l + 1], ys[l + 1], sizeof(float) * n);
        }
        if (!training)
            break;
        fill_normal_f(&data, ds, n, 0.01);
        memcpy(ds_block, ds, sizeof(float) * n);
        for (size_t l = DEPTH; l-- > 0;) {
            model_block_backward(&mb[l], xs[l], s->B * s->T, ds);
            assert_ok(srp_block_backward(b[l], ds_block, ds_block)); /* in place */
            assert_memory_equal(ds, ds_block, sizeof(float) * n);
            assert_same_state(&mb[l], b[l]);
        }
        for (size_t l = 0; l < DEPTH; l++)
            step_both(&mb[l], b[l]);
    }
    for (size_t l = 0; l < DEPTH; l++) {
        model_block_free(&mb[l]);
        srp_block_destroy(b[l]);
    }
    for (size_t l = 0; l <= DEPTH; l++) {
        free(xs[l]);
        free(ys[l]);
    }
    free(ds);
    free(ds_block);
    free(x_scribble);
}

static void test_same_bits_as_the_example_models(void **state)
{
    (void)state;
    /* the ViT: no LayerNorm or pre-LN (--layernorm), eps 1e-6, not causal;
     * above the parallel thresholds (B T D = 33792) */
    const model_shape vit[] = {
        {8, 33, 128, 4, 256, SRP_NORM_NONE, 0, 1e-6f, SRP_QKV_SIGMA_FUSED, SRP_REPARAM_SIGMA},
        {8, 33, 128, 4, 256, SRP_NORM_PRE, 0, 1e-6f, SRP_QKV_SIGMA_FUSED, SRP_REPARAM_SIGMA},
        {3, 17, 32, 4, 64, SRP_NORM_PRE, 0, 1e-6f, SRP_QKV_SIGMA_SEPARATE, SRP_REPARAM_NONE},
    };
    /* the char LM: none, pre-LN, post-LN, causal, eps 1e-5 */
    const model_shape lm[] = {
        {4, 32, 64, 4, 256, SRP_NORM_NONE, 1, 1e-5f, SRP_QKV_SIGMA_FUSED, SRP_REPARAM_SIGMA},
        {4, 32, 64, 4, 256, SRP_NORM_PRE, 1, 1e-5f, SRP_QKV_SIGMA_QK_V, SRP_REPARAM_NONE},
        {4, 32, 64, 4, 256, SRP_NORM_POST, 1, 1e-5f, SRP_QKV_SIGMA_FUSED, SRP_REPARAM_SIGMA},
        {2, 9, 16, 2, 64, SRP_NORM_POST, 1, 1e-5f, SRP_QKV_SIGMA_FUSED, SRP_REPARAM_STATS_ONLY},
    };
    for (size_t i = 0; i < sizeof(vit) / sizeof(vit[0]); i++)
        check_same_bits_as_model(&vit[i], 10 + i);
    for (size_t i = 0; i < sizeof(lm) / sizeof(lm[0]); i++)
        check_same_bits_as_model(&lm[i], 20 + i);
}

/* ---- the regularizers ---- */

/* A block whose attention branch is 0 (proj W = 0, b = 0) and whose
 * linears are plain (no power step): the training and eval forwards then
 * differ by the MLP branch's regularizers only, and y - x is that branch. */
static srp_block *mlp_probe(const block_shape *s, uint64_t seed)
{
    srp_block_config c = shape_config(s, seed);
    c.qkv.reparam = c.proj.reparam = c.fc1.reparam = c.fc2.reparam = SRP_REPARAM_NONE;
    c.fc1.init_std = c.fc2.init_std = 0.3f;
    srp_block *b = NULL;
    assert_ok(srp_block_create(&b, &c, s->B, s->T));
    srp_linear *proj = srp_attention_proj(srp_block_attention(b));
    memset(srp_linear_weight(proj), 0, sizeof(float) * s->D * s->D);
    return b;
}

static void test_mlp_dropout_and_drop_path_statistics(void **state)
{
    (void)state;
    const block_shape s = {64, 16, 64, 4, 128, SRP_NORM_NONE, 0, 0, 0.0f, 0.25f, 0.0f};
    const size_t n = s.B * s.T * s.D;
    float *x = alloc_f(n), *y_eval = alloc_f(n), *y = alloc_f(n), *y2 = alloc_f(n);
    srp_rng r = seeded_rng(4);
    fill_normal_f(&r, x, n, 1.0);
    srp_block *b = mlp_probe(&s, 3);
    assert_ok(srp_block_forward(b, x, s.B, s.T, y_eval, SRP_EVAL));
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
    /* kept: (y - x) = (y_eval - x) / (1 - p); dropped: y = x */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const double o = (double)y_eval[i] - x[i], ot = (double)y[i] - x[i];
        if (y[i] == x[i])
            continue;
        kept++;
        assert_close_rel(ot, o / 0.75, 1e-4, 1e-2, "kept element scaled by 1 / (1 - p)");
    }
    /* n = 65536: the binomial's sd is 0.0017 */
    const double frac = (double)kept / (double)n;
    if (fabs(frac - 0.75) > 0.01)
        fail_msg("kept fraction %.4f, expected 0.75", frac);
    /* a second training forward draws a new mask; eval forwards draw none */
    assert_ok(srp_block_forward(b, x, s.B, s.T, y2, SRP_TRAIN));
    assert_memory_not_equal(y, y2, sizeof(float) * n);
    assert_ok(srp_block_forward(b, x, s.B, s.T, y2, SRP_EVAL));
    assert_memory_equal(y_eval, y2, sizeof(float) * n);
    srp_block_destroy(b);

    /* drop path, per example: the whole MLP branch or none of it */
    const block_shape sp = {400, 4, 16, 2, 32, SRP_NORM_NONE, 0, 0, 0.0f, 0.0f, 0.3f};
    const size_t np = sp.B * sp.T * sp.D, len = sp.T * sp.D;
    float *xp = alloc_f(np), *ype = alloc_f(np), *yp = alloc_f(np);
    fill_normal_f(&r, xp, np, 1.0);
    b = mlp_probe(&sp, 5);
    assert_ok(srp_block_forward(b, xp, sp.B, sp.T, ype, SRP_EVAL));
    assert_ok(srp_block_forward(b, xp, sp.B, sp.T, yp, SRP_TRAIN));
    size_t kept_examples = 0;
    for (size_t e = 0; e < sp.B; e++) {
        const int dropped = memcmp(yp + e * len, xp + e * len, sizeof(float) * len) == 0;
        kept_examples += !dropped;
        for (size_t j = 0; !dropped && j < len; j++) {
            const size_t i = e * len + j;
            assert_close_rel((double)yp[i] - xp[i], ((double)ype[i] - xp[i]) / 0.7, 1e-4, 1e-2,
                             "kept example scaled by 1 / (1 - p)");
        }
    }
    const double frac_p = (double)kept_examples / (double)sp.B; /* sd 0.023 */
    if (fabs(frac_p - 0.7) > 0.08)
        fail_msg("kept examples %.3f, expected 0.7", frac_p);
    srp_block_destroy(b);
    free(x);
    free(y_eval);
    free(y);
    free(y2);
    free(xp);
    free(ype);
    free(yp);
}

/* Attention dropout seen through an attention whose output is A itself:
 * q = k = 0 (uniform rows, A = 1/T), v = x = one-hot of the token, proj =
 * identity. The mask is also the same bits on 1 and 2 threads. */
static void test_attention_dropout_statistics_and_threads(void **state)
{
    (void)state;
    enum { B = 40, T = 32, D = 32 }; /* one head: y[b][i][j] = Ad[b][0][i][j] */
    srp_attention_config c = srp_attention_config_default(D, 1);
    c.dropout = 0.2f;
    c.qkv.reparam = c.proj.reparam = SRP_REPARAM_NONE;
    c.seed = 8;
    srp_attention *a = NULL;
    assert_ok(srp_attention_create(&a, &c, B, T));
    float *wq = srp_linear_weight(srp_attention_qkv(a)),
          *wp = srp_linear_weight(srp_attention_proj(a));
    memset(wq, 0, sizeof(float) * 3 * D * D);
    memset(wp, 0, sizeof(float) * D * D);
    for (size_t i = 0; i < D; i++) {
        wq[(2 * D + i) * D + i] = 1.0f; /* v = x */
        wp[i * D + i] = 1.0f;
    }
    float *x = alloc_f(B * T * D), *y1 = alloc_f(B * T * D), *y2 = alloc_f(B * T * D);
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            x[(b * T + t) * D + t] = 1.0f;
    const srp_rng start = *srp_attention_dropout_rng(a);
    srp_set_num_threads(1);
    assert_ok(srp_attention_forward(a, x, B, T, y1, SRP_TRAIN));
    srp_rng after = *srp_attention_dropout_rng(a);
    *srp_attention_dropout_rng(a) = start; /* the same draw again, on 2 threads */
    srp_set_num_threads(2);
    assert_ok(srp_attention_forward(a, x, B, T, y2, SRP_TRAIN));
    assert_memory_equal(y1, y2, sizeof(float) * B * T * D);
    assert_memory_equal(srp_attention_dropout_rng(a), &after, sizeof(after));
    srp_rng expect = start; /* one draw per training forward */
    srp_rng_next_u64(&expect);
    assert_memory_equal(&after, &expect, sizeof(after));
    size_t kept = 0;
    const float value = (1.0f / T) * (1.0f / 0.8f);
    for (size_t i = 0; i < B * T * D; i++) {
        if (y1[i] != 0.0f) {
            kept++;
            assert_close_rel(y1[i], value, 1e-6, 0.0, "kept weight A / (1 - p)");
        }
    }
    const double frac = (double)kept / (B * T * D); /* sd 0.0018 */
    if (fabs(frac - 0.8) > 0.01)
        fail_msg("kept fraction %.4f, expected 0.8", frac);
    /* the entropies stay the softmax's: uniform rows, log T */
    float mean, min;
    assert_ok(srp_attention_entropy(a, &mean, &min));
    assert_close_rel(mean, log((double)T), 1e-6, 1.0, "entropy with dropout");
    /* eval: no mask, no draw */
    assert_ok(srp_attention_forward(a, x, B, T, y1, SRP_EVAL));
    for (size_t i = 0; i < B * T * D; i++)
        assert_close_rel(y1[i], 1.0 / T, 1e-6, 0.0, "eval attention weight");
    assert_memory_equal(srp_attention_dropout_rng(a), &after, sizeof(after));
    srp_attention_destroy(a);
    free(x);
    free(y1);
    free(y2);
}

/* An eval forward applies no dropout: a module with dropout 0.5 gives the
 * bits of one without, forward and backward. */
static void test_attention_dropout_off_changes_nothing(void **state)
{
    (void)state;
    enum { B = 3, T = 7, D = 16 };
    srp_attention_config c = srp_attention_config_default(D, 2);
    c.seed = 4;
    c.qkv.init_std = c.proj.init_std = 0.4f;
    srp_attention *a = NULL, *a2 = NULL;
    assert_ok(srp_attention_create(&a, &c, B, T));
    c.dropout = 0.5f;
    assert_ok(srp_attention_create(&a2, &c, B, T));
    float x[B * T * D], y[B * T * D], y2[B * T * D], dx[B * T * D], dx2[B * T * D];
    srp_rng r = seeded_rng(2);
    fill_normal_f(&r, x, B * T * D, 1.0);
    /* with dropout 0.5 an eval forward and its backward are the plain ones */
    assert_ok(srp_attention_forward(a, x, B, T, y, SRP_EVAL));
    assert_ok(srp_attention_forward(a2, x, B, T, y2, SRP_EVAL));
    assert_memory_equal(y, y2, sizeof(y));
    assert_ok(srp_attention_backward(a, y, dx));
    assert_ok(srp_attention_backward(a2, y, dx2));
    assert_memory_equal(dx, dx2, sizeof(dx));
    srp_attention_destroy(a);
    srp_attention_destroy(a2);
}

/* One seed, one sequence of masks; a checkpoint of the state refs taken
 * mid-run continues the same draws in a block created otherwise. */
static void test_regularizers_reproduce_and_resume(void **state)
{
    (void)state;
    const block_shape s = {4, 6, 16, 2, 32, SRP_NORM_PRE, 1, 0, 0.3f, 0.3f, 0.4f};
    const size_t n = s.B * s.T * s.D;
    float *x = alloc_f(n), *y[4], *yb = alloc_f(n), *dy = alloc_f(n);
    for (int k = 0; k < 4; k++)
        y[k] = alloc_f(n);
    srp_rng r = seeded_rng(6);
    fill_normal_f(&r, x, n, 1.0);
    fill_normal_f(&r, dy, n, 1.0);
    char dir[256], path[300];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "test_block"), 0);
    snprintf(path, sizeof(path), "%s/block.ckpt", dir);

    srp_block *a = make(&s, 11), *same = make(&s, 11), *other = make(&s, 12);
    srp_tensor_list *ta = NULL, *tother = NULL;
    assert_ok(srp_tensor_list_create(&ta));
    assert_ok(srp_tensor_list_create(&tother));
    assert_ok(srp_block_state_refs(a, "blocks.0", ta));
    assert_ok(srp_block_state_refs(other, "blocks.0", tother));
    assert_int_not_equal(srp_tensor_list_find(ta, "blocks.0.attn.dropout_rng"), SIZE_MAX);
    assert_int_not_equal(srp_tensor_list_find(ta, "blocks.0.dropout_rng"), SIZE_MAX);
    for (int k = 0; k < 4; k++) {
        if (k == 2) /* a checkpoint between a backward and the next forward */
            assert_ok(
                srp_checkpoint_save(path, srp_tensor_list_refs(ta), srp_tensor_list_count(ta)));
        assert_ok(srp_block_forward(a, x, s.B, s.T, y[k], SRP_TRAIN));
        assert_ok(srp_block_backward(a, dy, yb));
        assert_ok(srp_block_forward(same, x, s.B, s.T, yb, SRP_TRAIN));
        assert_memory_equal(y[k], yb, sizeof(float) * n); /* one seed, one mask */
        assert_ok(srp_block_backward(same, dy, yb));
    }
    assert_memory_not_equal(y[2], y[3], sizeof(float) * n); /* new masks each step */
    assert_ok(
        srp_checkpoint_load(path, srp_tensor_list_refs(tother), srp_tensor_list_count(tother)));
    for (int k = 2; k < 4; k++) {
        assert_ok(srp_block_forward(other, x, s.B, s.T, yb, SRP_TRAIN));
        assert_memory_equal(y[k], yb, sizeof(float) * n);
        assert_ok(srp_block_backward(other, dy, yb));
    }
    remove(path);
    scratch_dir_remove(dir);
    srp_tensor_list_destroy(ta);
    srp_tensor_list_destroy(tother);
    srp_block_destroy(a);
    srp_block_destroy(same);
    srp_block_destroy(other);
    free(x);
    free(yb);
    free(dy);
    for (int k = 0; k < 4; k++)
        free(y[k]);
}

/* ---- the contract ---- */

static void test_config_and_create(void **state)
{
    (void)state;
    srp_block_config c = srp_block_config_default(16, 4, 32);
    assert_int_equal(c.norm, SRP_NORM_PRE);
    assert_true(c.norm_eps == 1e-5f);
    assert_true(c.attn_dropout == 0.0f && c.mlp_dropout == 0.0f && c.drop_path == 0.0f);
    assert_string_equal(c.norm1_name, "norm1");
    assert_string_equal(c.norm2_name, "norm2");
    /* the default seeds: srp_block_config_seed(0), four draws */
    srp_rng r = seeded_rng(0);
    assert_true(c.attn_seed == srp_rng_next_u64(&r));
    assert_true(c.fc1.seed == srp_rng_next_u64(&r));
    assert_true(c.fc2.seed == srp_rng_next_u64(&r));
    assert_true(c.dropout_seed == srp_rng_next_u64(&r));

    srp_block *b = NULL;
    const struct {
        const char *what;
        int field;
    } bad[] = {{"heads", 0}, {"dim", 1},          {"mlp", 2},         {"norm", 3},
               {"eps", 4},   {"attn_dropout", 5}, {"mlp_dropout", 6}, {"drop_path", 7},
               {"names", 8}, {"same names", 9},   {"linear", 10},     {"qkv_sigma", 11}};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        srp_block_config e = c;
        switch (bad[k].field) {
        case 0: e.heads = 3; break;
        case 1: e.dim = 0; break;
        case 2: e.mlp_dim = 0; break;
        case 3: e.norm = (srp_norm_placement)7; break;
        case 4: e.norm_eps = NAN; break;
        case 5: e.attn_dropout = 1.0f; break;
        case 6: e.mlp_dropout = -0.1f; break;
        case 7: e.drop_path = NAN; break;
        case 8: e.norm2_name = ""; break;
        case 9: e.norm2_name = "norm1"; break;
        case 10: e.fc2.init_std = -1.0f; break;
        case 11: e.qkv_sigma = (srp_qkv_sigma)9; break;
        }
        if (srp_block_create(&b, &e, 2, 3) != SRP_ERR_INVALID_ARG)
            fail_msg("config with bad %s accepted", bad[k].what);
        assert_null(b);
    }
    assert_status(srp_block_create(&b, &c, 0, 3), SRP_ERR_INVALID_ARG);
    assert_status(srp_block_create(&b, &c, SIZE_MAX / 4, 8), SRP_ERR_INVALID_ARG);
    assert_status(srp_block_create(&b, NULL, 2, 3), SRP_ERR_INVALID_ARG);
    assert_status(srp_block_create(NULL, &c, 2, 3), SRP_ERR_INVALID_ARG);
    c.norm = SRP_NORM_NONE;
    c.norm1_name = NULL; /* no norm, no names needed */
    assert_ok(srp_block_create(&b, &c, 2, 3));
    assert_int_equal(srp_block_norm_count(b), 0);
    assert_null(srp_block_norm(b, 0, NULL));
    srp_block_destroy(b);
    srp_block_destroy(NULL);
    srp_block_zero_grad(NULL);
    assert_null(srp_block_attention(NULL));
    assert_null(srp_block_linear(NULL, 0, NULL));
    assert_int_equal(srp_block_linear_count(NULL), 0);
}

static void test_order_rule(void **state)
{
    (void)state;
    const block_shape s = {2, 3, 8, 2, 16, SRP_NORM_PRE, 0, 0, 0, 0, 0};
    const size_t n = s.B * s.T * s.D;
    srp_block *b = make(&s, 1);
    float *x = alloc_f(n), *y = alloc_f(n), *dx = alloc_f(n);
    srp_rng r = seeded_rng(1);
    fill_normal_f(&r, x, n, 1.0);
    assert_status(srp_block_backward(b, y, dx), SRP_ERR_UNSUPPORTED);
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
    assert_ok(srp_block_backward(b, y, dx));
    srp_linear *fc1 = srp_block_linear(b, 2, NULL);
    float dgamma = *srp_linear_gamma_grad(fc1);
    assert_status(srp_block_backward(b, y, dx), SRP_ERR_ORDER); /* a second backward */
    assert_non_null(strstr(srp_last_error_detail(), "srp_block_backward"));
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
    assert_status(srp_block_backward(b, y, dx), SRP_ERR_ORDER); /* two forwards */
    assert_status(srp_block_backward(b, y, dx), SRP_ERR_ORDER); /* the retry */
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_EVAL));
    assert_status(srp_block_backward(b, y, dx), SRP_ERR_ORDER); /* eval after train */
    assert_true(*srp_linear_gamma_grad(fc1) == dgamma);
    assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_EVAL)); /* eval alone: fine */
    assert_ok(srp_block_backward(b, y, dx));
    srp_block_destroy(b);
    free(x);
    free(y);
    free(dx);
}

/* Everything a failed call must leave as it was: parameters, gradients,
 * u, v, sigma, gamma, the random states. */
static uint32_t block_hash(srp_block *b)
{
    uint32_t h = 2166136261u;
#define MIX(p, bytes)                                                                              \
    do {                                                                                           \
        const unsigned char *q_ = (const unsigned char *)(p);                                      \
        for (size_t k_ = 0; k_ < (bytes); k_++)                                                    \
            h = (h ^ q_[k_]) * 16777619u;                                                          \
    } while (0)
    for (size_t i = 0; i < srp_block_linear_count(b); i++) {
        srp_linear *l = srp_block_linear(b, i, NULL);
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const float sigma = srp_linear_sigma(l);
        MIX(srp_linear_weight(l), sizeof(float) * in * out);
        MIX(srp_linear_weight_grad(l), sizeof(float) * in * out);
        MIX(srp_linear_bias(l), sizeof(float) * out);
        MIX(srp_linear_bias_grad(l), sizeof(float) * out);
        MIX(srp_linear_gamma(l), sizeof(float));
        MIX(srp_linear_gamma_grad(l), sizeof(float));
        MIX(srp_linear_u(l), sizeof(float) * in);
        MIX(srp_linear_v(l), sizeof(float) * out);
        MIX(&sigma, sizeof(float));
    }
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        const size_t d = srp_layernorm_dim(ln);
        MIX(srp_layernorm_weight(ln), sizeof(float) * d);
        MIX(srp_layernorm_bias(ln), sizeof(float) * d);
        MIX(srp_layernorm_weight_grad(ln), sizeof(float) * d);
        MIX(srp_layernorm_bias_grad(ln), sizeof(float) * d);
    }
    MIX(srp_block_dropout_rng(b), sizeof(srp_rng));
    MIX(srp_attention_dropout_rng(srp_block_attention(b)), sizeof(srp_rng));
#undef MIX
    return h;
}

static void test_bad_input(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        const block_shape s = {2, 4, 8, 2, 16, (srp_norm_placement)norm, 0, 0, 0.2f, 0.9f, 0.3f};
        const size_t n = s.B * s.T * s.D;
        srp_block *b = make(&s, 2);
        float *x = alloc_f(n + s.T * s.D), *y = alloc_f(n), *dy = alloc_f(n), *dx = alloc_f(n);
        srp_rng r = seeded_rng(2);
        fill_normal_f(&r, x, n + s.T * s.D, 1.0);
        fill_normal_f(&r, dy, n, 1.0);
        assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
        assert_ok(srp_block_backward(b, dy, dx));
        assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN)); /* its backward pending */
        uint32_t h0 = block_hash(b);

        /* sizes above the maxima, NULLs */
        assert_status(srp_block_forward(b, x, s.B + 1, s.T, y, SRP_TRAIN), SRP_ERR_SHAPE);
        assert_non_null(strstr(srp_last_error_detail(), "max_batch 2"));
        assert_status(srp_block_forward(b, x, s.B, s.T + 1, y, SRP_TRAIN), SRP_ERR_SHAPE);
        assert_non_null(strstr(srp_last_error_detail(), "max_tokens 4"));
        assert_status(srp_block_forward(b, x, 0, s.T, y, SRP_TRAIN), SRP_ERR_SHAPE);
        assert_status(srp_block_forward(b, NULL, s.B, s.T, y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
        assert_status(srp_block_forward(b, x, s.B, s.T, NULL, SRP_TRAIN), SRP_ERR_INVALID_ARG);
        assert_status(srp_block_backward(b, NULL, dx), SRP_ERR_INVALID_ARG);
        assert_status(srp_block_backward(b, dy, NULL), SRP_ERR_INVALID_ARG);
        assert_int_equal(block_hash(b), h0);

        /* NaN in dy: nothing changes, and a retry goes through */
        dy[5] = NAN;
        assert_status(srp_block_backward(b, dy, dx), SRP_ERR_NUMERIC);
        assert_non_null(strstr(srp_last_error_detail(), "srp_block_backward"));
        assert_int_equal(block_hash(b), h0);
        dy[5] = 0.5f;
        assert_ok(srp_block_backward(b, dy, dx));
        h0 = block_hash(b);

        /* a NaN weight in fc2 (its sigma): refused before anything runs */
        srp_linear *fc2 = srp_block_linear(b, srp_block_linear_count(b) - 1, NULL);
        float keep = srp_linear_weight(fc2)[3];
        srp_linear_weight(fc2)[3] = NAN;
        assert_status(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN), SRP_ERR_NUMERIC);
        srp_linear_weight(fc2)[3] = keep;
        h0 = block_hash(b);
        /* NaN in x, an overflow, a NaN bias of fc2 (most of its outputs
         * dropped by the MLP dropout): the attention has run, and still
         * nothing of the block is committed */
        const struct {
            float *where;
            float value;
        } cases[] = {{&x[9], NAN}, {&x[2], INFINITY}, {srp_linear_bias(fc2) + 1, NAN}};
        for (size_t k = 0; k < 3; k++) {
            keep = *cases[k].where;
            *cases[k].where = cases[k].value;
            assert_status(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN), SRP_ERR_NUMERIC);
            *cases[k].where = keep;
            assert_int_equal(block_hash(b), h0);
            assert_status(srp_block_backward(b, dy, dx), SRP_ERR_UNSUPPORTED);
        }
        /* finite but huge: an overflow in the MLP, after the attention */
        srp_linear *fc1 = srp_block_linear(b, srp_block_linear_count(b) - 2, NULL);
        const float g1 = *srp_linear_gamma(fc1), g2 = *srp_linear_gamma(fc2);
        *srp_linear_gamma(fc1) = *srp_linear_gamma(fc2) = 1e30f;
        assert_status(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN), SRP_ERR_NUMERIC);
        *srp_linear_gamma(fc1) = g1;
        *srp_linear_gamma(fc2) = g2;
        assert_int_equal(block_hash(b), h0);
        if (norm != SRP_NORM_PRE) { /* and in the attention's logits */
            float *xs = alloc_f(n);
            for (size_t i = 0; i < n; i++)
                xs[i] = x[i] * 1e30f;
            assert_status(srp_block_forward(b, xs, s.B, s.T, y, SRP_TRAIN), SRP_ERR_NUMERIC);
            assert_int_equal(block_hash(b), h0);
            free(xs);
        }
        if (norm == SRP_NORM_PRE) { /* a NaN in ln2, read after the attention */
            float *w2 = srp_layernorm_weight(srp_block_norm(b, 1, NULL));
            keep = w2[0];
            w2[0] = NAN;
            assert_status(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN), SRP_ERR_NUMERIC);
            w2[0] = keep;
            assert_int_equal(block_hash(b), h0);
        }
        assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN)); /* and it goes on */
        assert_ok(srp_block_backward(b, dy, dx));
        srp_block_destroy(b);
        free(x);
        free(y);
        free(dy);
        free(dx);
    }
}

/* The names the example models use: the ViT's "blocks.0.norm1", the LM's
 * "blocks.0.ln1", and the regularizers' states only when on. */
static void test_lists_and_names(void **state)
{
    (void)state;
    srp_block_config c = srp_block_config_default(8, 2, 16);
    srp_block *vit = NULL, *lm = NULL;
    assert_ok(srp_block_create(&vit, &c, 2, 3));
    c.norm = SRP_NORM_POST;
    c.norm1_name = "ln1";
    c.norm2_name = "ln2";
    c.qkv_sigma = SRP_QKV_SIGMA_QK_V;
    c.fc1.reparam = SRP_REPARAM_NONE;
    c.drop_path = 0.1f;
    assert_ok(srp_block_create(&lm, &c, 2, 3));

    const char *name;
    assert_int_equal(srp_block_linear_count(vit), 4);
    const char *vit_names[] = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
    for (size_t i = 0; i < 4; i++) {
        assert_non_null(srp_block_linear(vit, i, &name));
        assert_string_equal(name, vit_names[i]);
    }
    assert_null(srp_block_linear(vit, 4, &name));
    assert_ptr_equal(srp_block_linear(vit, 0, NULL), srp_attention_qkv(srp_block_attention(vit)));
    const char *lm_names[] = {"attn.qk", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2"};
    assert_int_equal(srp_block_linear_count(lm), 5);
    for (size_t i = 0; i < 5; i++) {
        srp_block_linear(lm, i, &name);
        assert_string_equal(name, lm_names[i]);
    }
    srp_block_norm(lm, 1, &name);
    assert_string_equal(name, "ln2");

    srp_param_list *p = NULL;
    srp_tensor_list *t = NULL;
    assert_ok(srp_param_list_create(&p));
    assert_ok(srp_tensor_list_create(&t));
    assert_ok(srp_block_params(vit, "blocks.0", p));
    const char *vit_params[] = {
        "blocks.0.attn.qkv.weight",  "blocks.0.attn.qkv.bias",  "blocks.0.attn.qkv.gamma",
        "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.attn.proj.gamma",
        "blocks.0.mlp.fc1.weight",   "blocks.0.mlp.fc1.bias",   "blocks.0.mlp.fc1.gamma",
        "blocks.0.mlp.fc2.weight",   "blocks.0.mlp.fc2.bias",   "blocks.0.mlp.fc2.gamma",
        "blocks.0.norm1.weight",     "blocks.0.norm1.bias",     "blocks.0.norm2.weight",
        "blocks.0.norm2.bias"};
    assert_int_equal(srp_param_list_count(p), 16);
    for (size_t i = 0; i < 16; i++)
        assert_string_equal(srp_param_list_entries(p)[i].name, vit_params[i]);
    assert_int_equal(srp_param_list_kind(p, 12), SRP_PARAM_NORM);
    assert_int_equal(srp_param_list_kind(p, 2), SRP_PARAM_GAMMA);
    assert_ok(srp_block_state_refs(vit, "blocks.0", t));
    /* 4 linears x 6 (weight, bias, gamma, u, v, sigma) + 2 norms x 2; no
     * random state with the regularizers off */
    assert_int_equal(srp_tensor_list_count(t), 28);
    assert_int_not_equal(srp_tensor_list_find(t, "blocks.0.mlp.fc2.u"), SIZE_MAX);
    assert_int_equal(srp_tensor_list_find(t, "blocks.0.dropout_rng"), SIZE_MAX);

    assert_ok(srp_block_params(lm, "blocks.1", p));
    assert_int_not_equal(srp_param_list_find(p, "blocks.1.attn.qk.gamma"), SIZE_MAX);
    assert_int_not_equal(srp_param_list_find(p, "blocks.1.ln1.weight"), SIZE_MAX);
    assert_int_equal(srp_param_list_find(p, "blocks.1.mlp.fc1.gamma"), SIZE_MAX); /* plain */
    assert_ok(srp_block_state_refs(lm, "blocks.1", t));
    const size_t rng_at = srp_tensor_list_find(t, "blocks.1.dropout_rng");
    assert_int_not_equal(rng_at, SIZE_MAX);
    assert_int_equal(srp_tensor_list_refs(t)[rng_at].dtype, SRP_DTYPE_U64);
    assert_int_equal(srp_tensor_list_refs(t)[rng_at].shape[0], 4);
    assert_int_equal(srp_tensor_list_find(t, "blocks.1.attn.dropout_rng"), SIZE_MAX);
    /* no prefix: the names alone; a prefix too long for a name: refused */
    srp_param_list *q = NULL;
    assert_ok(srp_param_list_create(&q));
    assert_ok(srp_block_params(lm, NULL, q));
    assert_string_equal(srp_param_list_entries(q)[0].name, "attn.qk.weight");
    char long_prefix[300];
    memset(long_prefix, 'a', sizeof(long_prefix) - 1);
    long_prefix[sizeof(long_prefix) - 1] = 0;
    assert_status(srp_block_params(lm, long_prefix, q), SRP_ERR_INVALID_ARG);
    assert_status(srp_block_params(NULL, "x", q), SRP_ERR_INVALID_ARG);
    assert_status(srp_block_state_refs(lm, "x", NULL), SRP_ERR_INVALID_ARG);
    srp_param_list_destroy(q);
    srp_param_list_destroy(p);
    srp_tensor_list_destroy(t);
    srp_block_destroy(vit);
    srp_block_destroy(lm);
}

/* ---- cached decoding (srp_block_decode) ---- */

/* A stack of causal blocks with O(1) weights (randomize) whose u is moved
 * off the top singular vector, so that the eval forward's power step gives
 * a sigma of its own: a decoder that skipped it, or took another scale,
 * would not match. gamma is halved: at randomize's full scale, without
 * LayerNorm, the logits grow so large that two full forwards of different
 * lengths already differ by 2e-6 relative (the softmax amplifies their
 * rounding); at half, they agree to 4e-7, and decoding must too. */
static void make_decode_stack(const block_shape *s, size_t depth, uint64_t seed, srp_block **blocks)
{
    srp_rng r = seeded_rng(seed);
    for (size_t l = 0; l < depth; l++) {
        blocks[l] = make(s, seed + l);
        randomize_block(blocks[l], &r, 0.2f);
        for (size_t i = 0; i < srp_block_linear_count(blocks[l]); i++) {
            srp_linear *lin = srp_block_linear(blocks[l], i, NULL);
            fill_normal_f(&r, srp_linear_u(lin), srp_linear_in_features(lin), 1.0);
            *srp_linear_gamma(lin) *= 0.5f;
        }
    }
}

/* Position by position through a stack of blocks, each with its cache, to
 * the caches' end: every position's output equals the last row of
 * srp_block_forward in eval over the same prefix (to 1e-6 relative), in
 * every norm placement and qkv_sigma mode, for 3 sequences at once. */
static void check_decode_matches_forward(srp_norm_placement norm, srp_qkv_sigma mode)
{
    enum { DEPTH = 2 };
    const block_shape s = {3, 9, 16, 4, 24, norm, 1, mode, 0.0f, 0.0f, 0.0f};
    const size_t B = s.B, T = s.T, D = s.D;
    srp_block *blocks[DEPTH];
    srp_block_cache *caches[DEPTH];
    make_decode_stack(&s, DEPTH, 40 + 3 * (uint64_t)norm + (uint64_t)mode, blocks);
    for (size_t l = 0; l < DEPTH; l++)
        assert_ok(srp_block_cache_create(&caches[l], blocks[l], B, T));
    float *x = alloc_f(B * T * D), *prefix = alloc_f(B * T * D), *full = alloc_f(B * T * D);
    float *step = alloc_f(B * D), *want = alloc_f(B * D);
    srp_rng r = seeded_rng(7);
    fill_normal_f(&r, x, B * T * D, 1.0);
    double worst = 0.0;
    for (size_t t = 0; t < T; t++) {
        /* the cached step: position t of each sequence, in place through the stack */
        for (size_t b = 0; b < B; b++)
            memcpy(step + b * D, x + (b * T + t) * D, sizeof(float) * D);
        for (size_t l = 0; l < DEPTH; l++) {
            assert_ok(srp_block_decode(blocks[l], caches[l], step, B, step));
            assert_int_equal(srp_block_cache_length(caches[l]), t + 1);
        }
        /* the full forward over positions 0..t */
        const size_t n = t + 1;
        for (size_t b = 0; b < B; b++)
            memcpy(prefix + b * n * D, x + b * T * D, sizeof(float) * n * D);
        for (size_t l = 0; l < DEPTH; l++) {
            assert_ok(srp_block_forward(blocks[l], prefix, B, n, full, SRP_EVAL));
            memcpy(prefix, full, sizeof(float) * B * n * D);
        }
        for (size_t b = 0; b < B; b++)
            memcpy(want + b * D, full + (b * n + t) * D, sizeof(float) * D);
        const double rel = rel_max_diff(step, want, B * D);
        worst = fmax(worst, rel);
        if (rel > 1e-6)
            fail_msg("norm %d, qkv_sigma %d, position %zu: decoded vs full forward %.3g relative",
                     (int)norm, (int)mode, t, rel);
    }
    /* full: one more position is refused, and a reset starts again */
    assert_status(srp_block_decode(blocks[0], caches[0], step, B, step), SRP_ERR_SHAPE);
    assert_non_null(strstr(srp_last_error_detail(), "full"));
    srp_block_cache_reset(caches[0]);
    assert_int_equal(srp_block_cache_length(caches[0]), 0);
    printf("norm %d, qkv_sigma %d: decoded vs full forward, worst %.2g relative\n", (int)norm,
           (int)mode, worst);
    for (size_t l = 0; l < DEPTH; l++) {
        srp_block_cache_destroy(caches[l]);
        srp_block_destroy(blocks[l]);
    }
    free(x);
    free(prefix);
    free(full);
    free(step);
    free(want);
}

static void test_decode_matches_forward(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++)
        for (int mode = 0; mode < 3; mode++)
            check_decode_matches_forward((srp_norm_placement)norm, (srp_qkv_sigma)mode);
}

/* Bad calls leave the cache as it was: a NaN in x, a batch other than the
 * cached sequences', another block's cache; the next good call gives the
 * bits of a cache that never saw them. The block itself is untouched by
 * decoding: its last forward can still be differentiated. */
static void test_decode_bad_input(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        const block_shape s = {2, 4, 8, 2, 16, (srp_norm_placement)norm, 1, 0, 0.0f, 0.0f, 0.0f};
        const size_t n = s.B * s.T * s.D;
        srp_block *b = make(&s, 5), *other = make(&s, 6);
        float *x = alloc_f(n), *y = alloc_f(n), *dx = alloc_f(n);
        float *a = alloc_f(s.B * s.D), *want = alloc_f(s.B * s.D), *got = alloc_f(s.B * s.D);
        srp_rng r = seeded_rng(5);
        fill_normal_f(&r, x, n, 1.0);
        srp_block_cache *c = NULL, *clean = NULL;
        assert_ok(srp_block_cache_create(&c, b, s.B, s.T));
        assert_ok(srp_block_cache_create(&clean, b, s.B, s.T));
        assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN)); /* its backward pending */
        const uint32_t h0 = block_hash(b);

        assert_ok(srp_block_decode(b, c, x, s.B, y));
        assert_ok(srp_block_decode(b, clean, x, s.B, y));
        memcpy(a, x + s.B * s.D, sizeof(float) * s.B * s.D);
        a[3] = NAN;
        assert_status(srp_block_decode(b, c, a, s.B, got), SRP_ERR_NUMERIC);
        assert_non_null(strstr(srp_last_error_detail(), "srp_block_decode"));
        a[3] = 0.25f;
        assert_status(srp_block_decode(b, c, a, 1, got), SRP_ERR_SHAPE);
        assert_status(srp_block_decode(b, c, a, s.B + 1, got), SRP_ERR_SHAPE);
        assert_status(srp_block_decode(b, c, a, 0, got), SRP_ERR_INVALID_ARG);
        assert_status(srp_block_decode(other, c, a, s.B, got), SRP_ERR_INVALID_ARG);
        assert_status(srp_block_decode(b, c, NULL, s.B, got), SRP_ERR_INVALID_ARG);
        assert_int_equal(srp_block_cache_length(c), 1);
        assert_ok(srp_block_decode(b, c, a, s.B, got));
        assert_ok(srp_block_decode(b, clean, a, s.B, want));
        assert_memory_equal(got, want, sizeof(float) * s.B * s.D);

        assert_int_equal(block_hash(b), h0);
        assert_ok(srp_block_backward(b, y, dx)); /* the training forward's, as before */

        /* a block that is not causal has no cache */
        block_shape full = s;
        full.causal = 0;
        srp_block *nc = make(&full, 7);
        srp_block_cache *none = NULL;
        assert_status(srp_block_cache_create(&none, nc, 1, 1), SRP_ERR_UNSUPPORTED);
        assert_null(none);
        srp_block_destroy(nc);
        srp_block_cache_destroy(c);
        srp_block_cache_destroy(clean);
        srp_block_destroy(b);
        srp_block_destroy(other);
        free(x);
        free(y);
        free(dx);
        free(a);
        free(want);
        free(got);
    }
}

#ifdef SRP_COUNT_ALLOCS
static void test_forward_backward_allocate_nothing(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        const block_shape s = {16, 33, 64,   4,    128, (srp_norm_placement)norm,
                               0,  0,  0.1f, 0.1f, 0.1f};
        const size_t n = s.B * s.T * s.D;
        srp_block *b = make(&s, 3);
        float *x = alloc_f(n), *y = alloc_f(n), *dx = alloc_f(n), e[4];
        srp_rng r = seeded_rng(3);
        fill_normal_f(&r, x, n, 1.0);
        assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN)); /* warm-up: plans, threads */
        assert_ok(srp_block_backward(b, y, dx));
        assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_EVAL));
        alloc_counter_start();
        for (int it = 0; it < 2; it++) {
            assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_TRAIN));
            assert_ok(srp_block_backward(b, y, y));
            assert_ok(srp_block_forward(b, x, s.B, s.T, y, SRP_EVAL));
            assert_ok(srp_attention_entropy(srp_block_attention(b), e, e));
        }
        assert_int_equal(alloc_counter_stop(NULL), 0);
        srp_block_destroy(b);
        free(x);
        free(y);
        free(dx);
    }
}

static void test_decode_allocates_nothing(void **state)
{
    (void)state;
    for (int norm = 0; norm < 3; norm++) {
        const block_shape s = {4, 32, 64, 4, 128, (srp_norm_placement)norm, 1, 0, 0.0f, 0.0f, 0.0f};
        srp_block *b = make(&s, 3);
        srp_block_cache *c = NULL;
        assert_ok(srp_block_cache_create(&c, b, s.B, s.T));
        float *x = alloc_f(s.B * s.D);
        srp_rng r = seeded_rng(3);
        fill_normal_f(&r, x, s.B * s.D, 1.0);
        assert_ok(srp_block_decode(b, c, x, s.B, x)); /* warm-up: the BLAS's threads */
        alloc_counter_start();
        for (size_t t = 1; t < s.T; t++)
            assert_ok(srp_block_decode(b, c, x, s.B, x));
        srp_block_cache_reset(c);
        assert_ok(srp_block_decode(b, c, x, s.B, x));
        assert_int_equal(alloc_counter_stop(NULL), 0);
        srp_block_cache_destroy(c);
        srp_block_destroy(b);
        free(x);
    }
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_match_central_differences),
        cmocka_unit_test(test_same_bits_as_the_example_models),
        cmocka_unit_test(test_mlp_dropout_and_drop_path_statistics),
        cmocka_unit_test(test_attention_dropout_statistics_and_threads),
        cmocka_unit_test(test_attention_dropout_off_changes_nothing),
        cmocka_unit_test(test_regularizers_reproduce_and_resume),
        cmocka_unit_test(test_config_and_create),
        cmocka_unit_test(test_order_rule),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_lists_and_names),
        cmocka_unit_test(test_decode_matches_forward),
        cmocka_unit_test(test_decode_bad_input),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_forward_backward_allocate_nothing),
        cmocka_unit_test(test_decode_allocates_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
