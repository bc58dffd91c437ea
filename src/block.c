/* A transformer block (block.h): attention and a GELU MLP with residuals,
 * LayerNorm none, pre or post.
 *
 * Forward, with P_a, P_m the drop-path scales of the two branches (1 when
 * off) and M the MLP dropout (identity when off):
 *   none/pre: a_in = ln1(x) (pre) or x;   mid = x + P_a attn(a_in)
 *             m_in = ln2(mid) (pre) or mid;   y = mid + P_m M fc2(gelu(fc1(m_in)))
 *   post:     mid = x + P_a attn(x);   m_in = ln1(mid)
 *             sum = m_in + P_m M fc2(gelu(fc1(m_in)));   y = ln2(sum)
 * Backward, ds the residual stream's gradient (dy in, dx out, in place):
 *   none/pre: d_fc2 = M P_m ds; fc2, GELU, fc1 backward -> d_branch;
 *             ds += ln2'(d_branch) (pre) or d_branch;
 *             attn backward of P_a ds -> d_branch; ds += ln1'(d_branch) or d_branch
 *   post:     ds = ln2'(ds); d_fc2 = M P_m ds; fc2, GELU, fc1 -> d_branch;
 *             ds += d_branch; ds = ln1'(ds); attn backward of P_a ds -> d_branch;
 *             ds += d_branch
 * A decoder block (cfg.cross) adds, after the self-attention's residual,
 * c_in = lnc(mid) (pre), ln1(mid) (post) or mid; cmid = (post ? c_in : mid)
 * + P_c xattn(c_in, memory); the MLP stage then reads cmid where it read
 * mid, through ln2 (pre) or lnc (post); its backward runs the same steps in
 * reverse between the MLP's and the self-attention's. With key lengths the
 * padded rows of y are set to 0 and those of dy are zeroed first (block.h).
 * These are the calls the example models make with separate layers, in the
 * same order and on the same buffers' values (the LayerNorm backward into
 * a scratch and srp_accumulate, GELU's backward from its output), so that
 * the bits are theirs. Every layer runs in prepare/compute/commit halves:
 * nothing changes until the whole block has succeeded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "dropout.h"
#include "layernorm_internal.h"

/* Longest norm name accepted (a name is a part of a tensor's name). */
#define NORM_NAME_MAX 64

struct srp_block {
    size_t dim, heads, mlp, max_batch, max_tokens;
    int cross;
    srp_norm_placement norm;
    float mlp_dropout, drop_path;
    srp_attention *attn;
    srp_linear *fc1, *fc2;
    srp_layernorm *ln1, *ln2; /* NULL without LayerNorm */
    /* A decoder block (cfg.cross): the cross-attention and its LayerNorm
     * (NULL without LayerNorm); max_memory: the longest memory. */
    srp_attention *xattn;
    srp_layernorm *lnc;
    size_t max_memory;
    char norm_names[3][NORM_NAME_MAX + 1];
    srp_rng rng; /* the MLP dropout's and drop path's draws */

    /* The last forward. */
    size_t batch, tokens;
    int masked;       /* the last forward had (self) key lengths, in key_len */
    size_t *key_len;  /* [max_batch] */
    int have_forward;
    srp_call_order order;
    int mlp_dropped, path_dropped; /* the masks it applied */
    uint64_t mlp_key;
    float *path_scale; /* [3][max_batch]: the attention branch's, the MLP's, the cross's */
    float *x;          /* [rows][D]: pre-LN, the input (ln1's backward takes it) */
    float *mid;        /* [rows][D]: x + attn(.) (post-LN: before ln1) */
    float *m_in;       /* [rows][D]: the MLP's input, ln2(mid) (pre) or ln1(mid) (post) */
    float *sum;        /* [rows][D]: post-LN, ln2's input */
    float *c_in;       /* [rows][D]: cross, with LayerNorm: the cross-attention's input */
    float *cmid;       /* [rows][D]: cross: the stream after the cross residual */
    float *h1, *g;     /* [rows][mlp]: fc1's output, GELU's */
    /* Scratch. branch: a branch's output, then in the backward the
     * gradient a regularizer scales; d_branch: a branch's input gradient,
     * and in a pre-LN forward ln1's output. */
    float *branch, *d_branch; /* [rows][D] */
    float *d_mlp;             /* [rows][mlp] */
};

srp_block_config srp_block_config_default(size_t dim, size_t heads, size_t mlp_dim)
{
    srp_block_config c;
    memset(&c, 0, sizeof(c));
    c.dim = dim;
    c.heads = heads;
    c.mlp_dim = mlp_dim;
    c.norm = SRP_NORM_PRE;
    c.norm_eps = 1e-5f;
    c.causal = 0;
    c.track_entropy = 1;
    c.qkv_sigma = SRP_QKV_SIGMA_FUSED;
    c.qkv = srp_linear_config_default(dim, 3 * dim);
    c.proj = srp_linear_config_default(dim, dim);
    c.fc1 = srp_linear_config_default(dim, mlp_dim);
    c.fc2 = srp_linear_config_default(mlp_dim, dim);
    c.norm1_name = "norm1";
    c.norm2_name = "norm2";
    c.norm_cross_name = "norm_cross";
    srp_block_config_seed(&c, 0);
    return c;
}

void srp_block_config_seed(srp_block_config *cfg, uint64_t seed)
{
    if (!cfg)
        return;
    srp_rng r;
    srp_rng_seed(&r, seed);
    cfg->attn_seed = srp_rng_next_u64(&r);
    cfg->fc1.seed = srp_rng_next_u64(&r);
    cfg->fc2.seed = srp_rng_next_u64(&r);
    cfg->dropout_seed = srp_rng_next_u64(&r);
    cfg->cross_seed = srp_rng_next_u64(&r); /* last: the others as before it */
}

static int rate_ok(float p) { return p >= 0.0f && p < 1.0f; }

static int name_ok(const char *s) { return s && s[0] && strlen(s) <= NORM_NAME_MAX; }

/* What srp_attention_create and srp_linear_create do not check themselves. */
static srp_status check_config(const srp_block_config *c, size_t max_batch, size_t max_tokens)
{
    if (!c)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_block_create: config is NULL");
    if (c->dim == 0 || c->heads == 0 || c->dim % c->heads != 0 || c->mlp_dim == 0 ||
        max_batch == 0 || max_tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_block_create: dim %zu, heads %zu, mlp_dim %zu, max_batch %zu, "
                        "max_tokens %zu (want all > 0, dim a multiple of heads)",
                        c->dim, c->heads, c->mlp_dim, max_batch, max_tokens);
    if (max_tokens > SIZE_MAX / max_batch ||
        max_batch * max_tokens >
            SIZE_MAX / sizeof(float) / (c->mlp_dim > c->dim ? c->mlp_dim : c->dim))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_block_create: max_batch %zu x max_tokens %zu rows overflow", max_batch,
                        max_tokens);
    if (c->norm != SRP_NORM_NONE && c->norm != SRP_NORM_PRE && c->norm != SRP_NORM_POST)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_block_create: norm %d is no srp_norm_placement",
                        (int)c->norm);
    if (!rate_ok(c->attn_dropout) || !rate_ok(c->mlp_dropout) || !rate_ok(c->drop_path))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_block_create: attn_dropout %g, mlp_dropout %g, drop_path %g (want "
                        "each in [0, 1))",
                        (double)c->attn_dropout, (double)c->mlp_dropout, (double)c->drop_path);
    if (c->norm != SRP_NORM_NONE) {
        if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
            return srp_fail(SRP_ERR_INVALID_ARG,
                            "srp_block_create: norm_eps %g (want finite and > 0)",
                            (double)c->norm_eps);
        if (!name_ok(c->norm1_name) || !name_ok(c->norm2_name) ||
            strcmp(c->norm1_name, c->norm2_name) == 0)
            return srp_fail(SRP_ERR_INVALID_ARG,
                            "srp_block_create: norm1_name and norm2_name must be two different "
                            "names of 1 to %d bytes",
                            NORM_NAME_MAX);
        if (c->cross && (!name_ok(c->norm_cross_name) ||
                         strcmp(c->norm_cross_name, c->norm1_name) == 0 ||
                         strcmp(c->norm_cross_name, c->norm2_name) == 0))
            return srp_fail(SRP_ERR_INVALID_ARG,
                            "srp_block_create: norm_cross_name must be a name of 1 to %d bytes "
                            "other than norm1_name and norm2_name",
                            NORM_NAME_MAX);
    }
    if (c->cross && c->qkv_sigma == SRP_QKV_SIGMA_QK_V)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_block_create: cross with SRP_QKV_SIGMA_QK_V (the cross-attention's "
                        "q reads x, k and v the memory: use FUSED or SEPARATE)");
    return SRP_OK;
}

/* The activations and scratch, in the block's allocation (srp_arena_new):
 * x with pre-LN only, m_in with LayerNorm, sum with post-LN. */
static void layout(void *obj, srp_arena *a)
{
    srp_block *b = obj;
    const size_t D = b->dim, M = b->mlp, rows = b->max_batch * b->max_tokens;
    const int pre = b->norm == SRP_NORM_PRE, post = b->norm == SRP_NORM_POST;
    SRP_ARENA_FLOATS(a, 3 * b->max_batch, &b->path_scale);
    SRP_ARENA_FLOATS(a, pre ? rows * D : 0, &b->x);
    SRP_ARENA_FLOATS(a, pre || post ? rows * D : 0, &b->m_in);
    SRP_ARENA_FLOATS(a, post ? rows * D : 0, &b->sum);
    SRP_ARENA_FLOATS(a, rows * D, &b->mid, &b->branch, &b->d_branch);
    SRP_ARENA_FLOATS(a, rows * M, &b->h1, &b->g, &b->d_mlp);
    SRP_ARENA_FLOATS(a, b->cross && (pre || post) ? rows * D : 0, &b->c_in);
    SRP_ARENA_FLOATS(a, b->cross ? rows * D : 0, &b->cmid);
    b->key_len = srp_arena_take(a, b->max_batch, sizeof(size_t));
}

srp_status srp_block_create(srp_block **out, const srp_block_config *cfg, size_t max_batch,
                            size_t max_tokens)
{
    if (!out)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_block_create: out is NULL");
    *out = NULL;
    srp_status st = check_config(cfg, max_batch, max_tokens);
    if (st != SRP_OK)
        return st;
    const size_t D = cfg->dim, M = cfg->mlp_dim, rows = max_batch * max_tokens;
    srp_block *b =
        SRP_ARENA_NEW(srp_block, layout, .dim = D, .heads = cfg->heads, .mlp = M,
                      .max_batch = max_batch, .max_tokens = max_tokens, .norm = cfg->norm,
                      .mlp_dropout = cfg->mlp_dropout, .drop_path = cfg->drop_path,
                      .cross = cfg->cross != 0);
    if (!b)
        return SRP_ERR_NOMEM;
    srp_rng_seed(&b->rng, cfg->dropout_seed);

    /* The attention, then fc1 and fc2: the example models' order. */
    srp_attention_config ac = srp_attention_config_default(D, cfg->heads);
    ac.causal = cfg->causal;
    ac.track_entropy = cfg->track_entropy;
    ac.qkv_sigma = cfg->qkv_sigma;
    ac.dropout = cfg->attn_dropout;
    ac.qkv = cfg->qkv;
    ac.proj = cfg->proj;
    ac.seed = cfg->attn_seed;
    st = srp_attention_create(&b->attn, &ac, max_batch, max_tokens);
    if (st == SRP_OK && b->cross) { /* the cross-attention: the same linears' configs */
        ac.causal = 0;
        ac.cross = 1;
        ac.max_memory_tokens = cfg->max_memory_tokens ? cfg->max_memory_tokens : max_tokens;
        ac.seed = cfg->cross_seed;
        b->max_memory = ac.max_memory_tokens;
        st = srp_attention_create(&b->xattn, &ac, max_batch, max_tokens);
    }
    srp_linear_config lc = cfg->fc1;
    lc.in_features = D;
    lc.out_features = M;
    if (st == SRP_OK)
        st = srp_linear_create(&b->fc1, &lc);
    lc = cfg->fc2;
    lc.in_features = M;
    lc.out_features = D;
    if (st == SRP_OK)
        st = srp_linear_create(&b->fc2, &lc);
    if (st == SRP_OK && b->norm != SRP_NORM_NONE) {
        srp_layernorm_config nc = srp_layernorm_config_default(D);
        nc.eps = cfg->norm_eps;
        st = srp_layernorm_create(&b->ln1, &nc, rows);
        if (st == SRP_OK)
            st = srp_layernorm_create(&b->ln2, &nc, rows);
        strcpy(b->norm_names[0], cfg->norm1_name); /* lengths checked */
        strcpy(b->norm_names[1], cfg->norm2_name);
        if (st == SRP_OK && b->cross) {
            st = srp_layernorm_create(&b->lnc, &nc, rows);
            strcpy(b->norm_names[2], cfg->norm_cross_name);
        }
    }
    if (st != SRP_OK) {
        srp_block_destroy(b);
        return st;
    }
    *out = b;
    return SRP_OK;
}

void srp_block_destroy(srp_block *b)
{
    if (!b)
        return;
    srp_attention_destroy(b->attn);
    srp_attention_destroy(b->xattn);
    srp_layernorm_destroy(b->lnc);
    srp_linear_destroy(b->fc1);
    srp_linear_destroy(b->fc2);
    srp_layernorm_destroy(b->ln1);
    srp_layernorm_destroy(b->ln2);
    free(b);
}

/* The stream the MLP stage reads (before its LayerNorm): mid, or with a
 * cross-attention the stream after it. */
static float *mlp_stream(const srp_block *b) { return b->cross ? b->cmid : b->mid; }

/* The LayerNorm before the MLP (pre-LN: ln2) or after the residual before
 * it (post-LN: ln1, or the cross-attention's with one); NULL without. */
static srp_layernorm *mlp_norm(const srp_block *b)
{
    if (b->norm == SRP_NORM_PRE)
        return b->ln2;
    return b->cross ? b->lnc : b->ln1;
}

/* The MLP's input of the last forward. */
static const float *mlp_input(const srp_block *b)
{
    return b->norm == SRP_NORM_NONE ? mlp_stream(b) : b->m_in;
}

/* The cross-attention's input of the last forward: cross_norm(mid), or mid
 * without LayerNorm. (pre-LN: lnc before the sublayer; post-LN: ln1 after
 * the self-attention's residual.) */
static const float *cross_input(const srp_block *b)
{
    return b->norm == SRP_NORM_NONE ? b->mid : b->c_in;
}

/* A forward that failed after its layers began to overwrite their
 * activations: no layer of the block has a forward to differentiate. */
static srp_status forward_lost(srp_block *b, srp_status st)
{
    b->order = SRP_PENDING_NONE;
    b->attn->order = SRP_PENDING_NONE;
    if (b->xattn)
        b->xattn->order = SRP_PENDING_NONE;
    if (b->ln1)
        b->ln1->order = b->ln2->order = SRP_PENDING_NONE;
    if (b->lnc)
        b->lnc->order = SRP_PENDING_NONE;
    return srp_fail(st, "srp_block_forward: NaN or Inf on the way (in x, in a parameter, or an "
                        "overflow); the activations are lost until the next forward");
}

/* Rows [b][key_len[b]..tokens) of x [batch][tokens][D] to 0, when masked. */
static void zero_padded_rows(const srp_block *b, float *x)
{
    for (size_t e = 0; b->masked && e < b->batch; e++)
        memset(x + (e * b->tokens + b->key_len[e]) * b->dim, 0,
               sizeof(float) * (b->tokens - b->key_len[e]) * b->dim);
}

/* Key lengths, when given: each in 1..keys. */
static srp_status check_key_len(const char *call, const char *what, const size_t *len,
                                size_t batch, size_t keys)
{
    for (size_t e = 0; len && e < batch; e++)
        if (len[e] == 0 || len[e] > keys)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s[%zu] is %zu (want 1..%zu)", call, what, e,
                            len[e], keys);
    return SRP_OK;
}

/* What one forward reads: the queries' stream x and its key lengths, and
 * for a decoder block the memory and its. */
typedef struct {
    const float *x;
    size_t batch, tokens;
    const size_t *key_len;
    const float *memory;
    size_t memory_tokens;
    const size_t *memory_key_len;
} block_input;

/* The forward of every kind, after the caller's checks. */
static srp_status run_forward(srp_block *b, const block_input *in, float *y, int training)
{
    const size_t batch = in->batch, tokens = in->tokens, rows = batch * tokens, D = b->dim,
                 n = rows * D;
    const float *x = in->x;
    /* Every linear's power step and checks first. */
    srp_status st = srp_attention_forward_prepare(b->attn, batch, tokens, training);
    if (st == SRP_OK && b->xattn)
        st = srp_attention_forward_prepare_keys(b->xattn, batch, tokens, in->memory_tokens,
                                                training);
    if (st == SRP_OK)
        st = srp_linear_forward_prepare(b->fc1, training);
    if (st == SRP_OK)
        st = srp_linear_forward_prepare(b->fc2, training);
    if (st != SRP_OK)
        return srp_fail(st, "srp_block_forward: a linear's sigma or gamma is zero or not finite "
                            "(or its plans could not be built)");

    /* From here the activations are overwritten. */
    b->have_forward = 0;
    b->batch = batch;
    b->tokens = tokens;
    b->masked = in->key_len != NULL;
    if (in->key_len)
        memcpy(b->key_len, in->key_len, sizeof(size_t) * batch);
    srp_rng next = b->rng; /* committed with the forward */
    b->mlp_dropped = training && b->mlp_dropout > 0.0f;
    b->path_dropped = training && b->drop_path > 0.0f;
    if (b->mlp_dropped)
        b->mlp_key = srp_rng_next_u64(&next);
    float *scale_attn = b->path_scale, *scale_mlp = b->path_scale + b->max_batch;
    float *scale_cross = b->path_scale + 2 * b->max_batch;
    if (b->path_dropped) {
        srp_drop_path_scales(scale_attn, batch, srp_rng_next_u64(&next), b->drop_path);
        srp_drop_path_scales(scale_mlp, batch, srp_rng_next_u64(&next), b->drop_path);
        if (b->cross)
            srp_drop_path_scales(scale_cross, batch, srp_rng_next_u64(&next), b->drop_path);
    }

    const float *a_in = x;
    if (b->norm == SRP_NORM_PRE) {
        memcpy(b->x, x, sizeof(float) * n);
        srp_layernorm_layer_compute(b->ln1, x, rows, b->d_branch);
        a_in = b->d_branch;
    }
    st = srp_attention_forward_compute_masked(b->attn, a_in, NULL, batch, tokens, tokens,
                                              in->key_len, b->branch, training);
    if (st != SRP_OK)
        return forward_lost(b, st);
    int finite = 1;
    if (b->path_dropped)
        finite = srp_scale_examples(b->branch, b->branch, batch, tokens * D, scale_attn);
    srp_residual_add(x, b->branch, n, b->mid);
    if (b->cross) { /* pre: cmid = mid + xattn(lnc(mid)); post: cmid = c_in + xattn(c_in) */
        if (b->norm != SRP_NORM_NONE)
            srp_layernorm_layer_compute(b->norm == SRP_NORM_PRE ? b->lnc : b->ln1, b->mid, rows,
                                        b->c_in);
        const float *c_in = cross_input(b);
        st = srp_attention_forward_compute_masked(b->xattn, c_in, in->memory, batch, tokens,
                                                  in->memory_tokens, in->memory_key_len,
                                                  b->branch, training);
        if (st != SRP_OK)
            return forward_lost(b, st);
        if (b->path_dropped)
            finite &= srp_scale_examples(b->branch, b->branch, batch, tokens * D, scale_cross);
        srp_residual_add(b->norm == SRP_NORM_POST ? c_in : b->mid, b->branch, n, b->cmid);
    }
    if (b->norm != SRP_NORM_NONE)
        srp_layernorm_layer_compute(mlp_norm(b), mlp_stream(b), rows, b->m_in);
    const float *m_in = mlp_input(b);
    srp_linear_forward_compute(b->fc1, m_in, rows, b->h1, b->mlp);
    srp_gelu_forward(b->h1, rows * b->mlp, b->g);
    srp_linear_forward_compute(b->fc2, b->g, rows, b->branch, D);
    /* A regularizer could drop a NaN from y: each looks at what it gets. */
    if (b->mlp_dropped)
        finite &= srp_dropout_apply(b->branch, b->branch, n, b->mlp_key, b->mlp_dropout);
    if (b->path_dropped)
        finite &= srp_scale_examples(b->branch, b->branch, batch, tokens * D, scale_mlp);
    if (b->norm == SRP_NORM_POST) {
        srp_residual_add(m_in, b->branch, n, b->sum);
        srp_layernorm_layer_compute(b->ln2, b->sum, rows, y);
    } else {
        srp_residual_add(mlp_stream(b), b->branch, n, y);
    }
    zero_padded_rows(b, y);
    const uint64_t t0 = srp_profile_begin();
    finite = finite && srp_all_finite(y, n);
    srp_profile_end(SRP_PROF_FINITE_CHECK, t0);
    if (!finite)
        return forward_lost(b, SRP_ERR_NUMERIC);

    srp_attention_forward_commit(b->attn, training);
    if (b->xattn)
        srp_attention_forward_commit(b->xattn, training);
    srp_linear_forward_commit(b->fc1, training);
    srp_linear_forward_commit(b->fc2, training);
    if (b->ln1) {
        srp_layernorm_layer_commit(b->ln1, training);
        srp_layernorm_layer_commit(b->ln2, training);
    }
    if (b->lnc)
        srp_layernorm_layer_commit(b->lnc, training);
    b->rng = next;
    b->have_forward = 1;
    srp_order_forward(&b->order, training);
    return SRP_OK;
}

/* The checks every forward makes of the queries' side. */
static srp_status check_queries(const srp_block *b, const char *call, int cross, size_t batch,
                                size_t tokens, const size_t *key_len)
{
    if (b->cross != cross)
        return srp_fail(SRP_ERR_UNSUPPORTED, "%s: the block is %s: use %s", call,
                        b->cross ? "a decoder block (cfg.cross)" : "not a decoder block",
                        b->cross ? "srp_block_forward_cross" : "srp_block_forward(_masked)");
    if (batch == 0 || tokens == 0 || batch > b->max_batch || tokens > b->max_tokens)
        return srp_fail(SRP_ERR_SHAPE,
                        "%s: batch %zu, tokens %zu (want 1 to max_batch %zu, 1 to max_tokens "
                        "%zu, given at create)",
                        call, batch, tokens, b->max_batch, b->max_tokens);
    return check_key_len(call, "key_len", key_len, batch, tokens);
}

srp_status srp_block_forward(srp_block *b, const float *x, size_t batch, size_t tokens, float *y,
                             int training)
{
    return srp_block_forward_masked(b, x, batch, tokens, NULL, y, training);
}

srp_status srp_block_forward_masked(srp_block *b, const float *x, size_t batch, size_t tokens,
                                    const size_t *key_len, float *y, int training)
{
    static const char call[] = "srp_block_forward";
    if (!b || !x || !y)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is NULL", call,
                        !b   ? "the block"
                        : !x ? "x"
                             : "y");
    const srp_status st = check_queries(b, call, 0, batch, tokens, key_len);
    if (st != SRP_OK)
        return st;
    const block_input in = {x, batch, tokens, key_len, NULL, 0, NULL};
    return run_forward(b, &in, y, training);
}

srp_status srp_block_forward_cross(srp_block *b, const float *x, size_t batch, size_t tokens,
                                   const size_t *key_len, const float *memory,
                                   size_t memory_tokens, const size_t *memory_key_len, float *y,
                                   int training)
{
    static const char call[] = "srp_block_forward_cross";
    if (!b || !x || !memory || !y)
        return SRP_FAIL_NULL(b, x, memory, y);
    srp_status st = check_queries(b, call, 1, batch, tokens, key_len);
    if (st == SRP_OK && (memory_tokens == 0 || memory_tokens > b->max_memory))
        st = srp_fail(SRP_ERR_SHAPE,
                      "%s: memory_tokens %zu (want 1 to max_memory_tokens %zu, given at create)",
                      call, memory_tokens, b->max_memory);
    if (st == SRP_OK)
        st = check_key_len(call, "memory_key_len", memory_key_len, batch, memory_tokens);
    if (st != SRP_OK)
        return st;
    const block_input in = {x, batch, tokens, key_len, memory, memory_tokens, memory_key_len};
    return run_forward(b, &in, y, training);
}

/* The gradient of fc2's output from ds, the MLP branch's after its
 * regularizers: ds itself, or M P_m ds in b->branch. */
static const float *mlp_output_grad(srp_block *b, const float *ds)
{
    const size_t n = b->batch * b->tokens * b->dim;
    const float *g = ds;
    if (b->mlp_dropped) {
        srp_dropout_apply(g, b->branch, n, b->mlp_key, b->mlp_dropout);
        g = b->branch;
    }
    if (b->path_dropped) {
        srp_scale_examples(g, b->branch, b->batch, b->tokens * b->dim,
                           b->path_scale + b->max_batch);
        g = b->branch;
    }
    return g;
}

/* The gradient of an attention's output: ds, or P ds in b->branch, with
 * the drop-path scales of branch (0: the self-attention's, 2: the cross's). */
static const float *attention_output_grad(srp_block *b, const float *ds, size_t branch)
{
    if (!b->path_dropped)
        return ds;
    srp_scale_examples(ds, b->branch, b->batch, b->tokens * b->dim,
                       b->path_scale + branch * b->max_batch);
    return b->branch;
}

/* fc2, GELU and fc1 backward from fc2's output gradient d_out: d_branch
 * gets the MLP input's gradient. */
static srp_status mlp_backward(srp_block *b, const float *d_out)
{
    const size_t rows = b->batch * b->tokens;
    srp_status st = srp_linear_backward_prepare(b->fc2, b->g, d_out, b->dim, rows, b->d_mlp, 0);
    if (st != SRP_OK)
        return st;
    srp_gelu_backward_from_output(b->h1, b->g, b->d_mlp, rows * b->mlp, b->d_mlp);
    return srp_linear_backward_prepare(b->fc1, mlp_input(b), b->d_mlp, b->mlp, rows, b->d_branch,
                                       0);
}

/* ds += the gradient d_branch sends through ln (its input x) or, without
 * LayerNorm, d_branch itself: what ex_norm_backward_add computed. */
static srp_status add_through_norm(srp_block *b, srp_layernorm *ln, const float *x, float *ds)
{
    const size_t n = b->batch * b->tokens * b->dim;
    if (!ln)
        return srp_accumulate(ds, b->d_branch, n);
    const srp_status st = srp_layernorm_layer_backward_prepare(ln, x, b->d_branch, ln->stage);
    return st != SRP_OK ? st : srp_accumulate(ds, ln->stage, n);
}

/* none and pre-LN; ds: d(y) in, d(x) out; dmemory with a cross-attention. */
static srp_status backward_pre(srp_block *b, float *ds, float *dmemory)
{
    const int pre = b->norm == SRP_NORM_PRE;
    srp_status st = mlp_backward(b, mlp_output_grad(b, ds));
    if (st == SRP_OK) /* ds = d(stream): d(mid), or d(cmid) */
        st = add_through_norm(b, pre ? b->ln2 : NULL, mlp_stream(b), ds);
    if (st == SRP_OK && b->cross) {
        st = srp_attention_backward_prepare_cross(b->xattn, attention_output_grad(b, ds, 2),
                                                  b->d_branch, dmemory);
        if (st == SRP_OK) /* ds = d(mid) */
            st = add_through_norm(b, pre ? b->lnc : NULL, b->mid, ds);
    }
    if (st == SRP_OK)
        st = srp_attention_backward_prepare(b->attn, attention_output_grad(b, ds, 0),
                                            b->d_branch);
    if (st == SRP_OK)
        st = add_through_norm(b, pre ? b->ln1 : NULL, b->x, ds);
    return st;
}

/* post-LN; ds: d(y) in, d(x) out; dmemory with a cross-attention. */
static srp_status backward_post(srp_block *b, float *ds, float *dmemory)
{
    const size_t n = b->batch * b->tokens * b->dim;
    srp_status st = srp_layernorm_layer_backward_prepare(b->ln2, b->sum, ds, ds); /* d(sum) */
    if (st == SRP_OK)
        st = mlp_backward(b, mlp_output_grad(b, ds));
    if (st == SRP_OK)
        st = srp_accumulate(ds, b->d_branch, n); /* d(m_in) */
    if (st == SRP_OK && b->cross) {
        st = srp_layernorm_layer_backward_prepare(b->lnc, b->cmid, ds, ds); /* d(cmid) */
        if (st == SRP_OK)
            st = srp_attention_backward_prepare_cross(b->xattn, attention_output_grad(b, ds, 2),
                                                      b->d_branch, dmemory);
        if (st == SRP_OK)
            st = srp_accumulate(ds, b->d_branch, n); /* d(c_in) */
    }
    if (st == SRP_OK)
        st = srp_layernorm_layer_backward_prepare(b->ln1, b->mid, ds, ds); /* d(mid) */
    if (st == SRP_OK)
        st = srp_attention_backward_prepare(b->attn, attention_output_grad(b, ds, 0),
                                            b->d_branch);
    if (st == SRP_OK)
        st = srp_accumulate(ds, b->d_branch, n);
    return st;
}

/* The backward of every kind, after the NULL checks. */
static srp_status run_backward(srp_block *b, const char *call, int cross, const float *dy,
                               float *dx, float *dmemory)
{
    if (b->cross != cross)
        return srp_fail(SRP_ERR_UNSUPPORTED, "%s: the block is %s: use %s", call,
                        b->cross ? "a decoder block (cfg.cross)" : "not a decoder block",
                        b->cross ? "srp_block_backward_cross" : "srp_block_backward");
    if (!b->have_forward)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: no forward to differentiate (none yet, or the last one failed)",
                        call);
    const srp_status order = srp_order_backward(&b->order, call);
    if (order != SRP_OK)
        return order;
    const size_t n = b->batch * b->tokens * b->dim;
    if (dx != dy)
        memcpy(dx, dy, sizeof(float) * n);
    zero_padded_rows(b, dx); /* y is 0 there: dy there is ignored */
    srp_status st = b->norm == SRP_NORM_POST ? backward_post(b, dx, dmemory)
                                             : backward_pre(b, dx, dmemory);
    if (st == SRP_OK && !srp_all_finite(dx, n))
        st = SRP_ERR_NUMERIC;
    if (st != SRP_OK)
        return srp_fail(st, "%s: NaN or Inf in dy or in a gradient on the way", call);
    srp_linear_backward_commit(b->fc2);
    srp_linear_backward_commit(b->fc1);
    if (b->xattn)
        srp_attention_backward_commit(b->xattn);
    srp_attention_backward_commit(b->attn);
    if (b->ln1) {
        srp_layernorm_layer_backward_commit(b->ln2);
        srp_layernorm_layer_backward_commit(b->ln1);
    }
    if (b->lnc)
        srp_layernorm_layer_backward_commit(b->lnc);
    srp_order_backward_done(&b->order);
    return SRP_OK;
}

srp_status srp_block_backward(srp_block *b, const float *dy, float *dx)
{
    if (!b || !dy || !dx)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_block_backward: %s is NULL",
                        !b    ? "the block"
                        : !dy ? "dy"
                              : "dx");
    return run_backward(b, "srp_block_backward", 0, dy, dx, NULL);
}

srp_status srp_block_backward_cross(srp_block *b, const float *dy, float *dx, float *dmemory)
{
    if (!b || !dy || !dx || !dmemory)
        return SRP_FAIL_NULL(b, dy, dx, dmemory);
    return run_backward(b, "srp_block_backward_cross", 1, dy, dx, dmemory);
}

void srp_block_zero_grad(srp_block *b)
{
    for (size_t i = 0; b && i < srp_block_linear_count(b); i++)
        srp_linear_zero_grad(srp_block_linear(b, i, NULL));
    srp_layernorm_zero_grad(b ? b->ln1 : NULL);
    srp_layernorm_zero_grad(b ? b->ln2 : NULL);
    srp_layernorm_zero_grad(b ? b->lnc : NULL);
}

srp_attention *srp_block_attention(srp_block *b) { return b ? b->attn : NULL; }
srp_attention *srp_block_cross_attention(srp_block *b) { return b ? b->xattn : NULL; }
size_t srp_block_dim(const srp_block *b) { return b ? b->dim : 0; }
srp_norm_placement srp_block_norm_placement(const srp_block *b)
{
    return b ? b->norm : SRP_NORM_NONE;
}
srp_rng *srp_block_dropout_rng(srp_block *b) { return b ? &b->rng : NULL; }

/* The cross-attention's linears: its input projections and proj; 0
 * without. */
static size_t cross_linear_count(const srp_block *b)
{
    return b->xattn ? srp_attention_in_proj_count(b->xattn) + 1 : 0;
}

size_t srp_block_linear_count(const srp_block *b)
{
    return b ? srp_attention_in_proj_count(b->attn) + 3 + cross_linear_count(b) : 0;
}

srp_linear *srp_block_linear(srp_block *b, size_t i, const char **name)
{
    static const char *in_names[3][3] = {
        {"attn.qkv"}, {"attn.qk", "attn.v"}, {"attn.q", "attn.k", "attn.v"}};
    static const char *cross_names[3][4] = {{"cross_attn.q", "cross_attn.kv", "cross_attn.proj"},
                                            {0},
                                            {"cross_attn.q", "cross_attn.k", "cross_attn.v",
                                             "cross_attn.proj"}};
    if (!b || i >= srp_block_linear_count(b))
        return NULL;
    const size_t n_in = srp_attention_in_proj_count(b->attn), n_cross = cross_linear_count(b);
    const char *nm;
    srp_linear *l;
    if (i < n_in) {
        l = srp_attention_in_proj(b->attn, i, NULL);
        nm = in_names[b->attn->qkv_sigma][i];
    } else if (i > n_in && i <= n_in + n_cross) { /* after attn.proj, before the MLP */
        const size_t j = i - n_in - 1;
        l = j + 1 < n_cross ? srp_attention_in_proj(b->xattn, j, NULL) : b->xattn->proj;
        nm = cross_names[b->xattn->qkv_sigma][j];
    } else if (i == n_in) {
        l = b->attn->proj;
        nm = "attn.proj";
    } else {
        const int first = i == n_in + n_cross + 1;
        l = first ? b->fc1 : b->fc2;
        nm = first ? "mlp.fc1" : "mlp.fc2";
    }
    if (name)
        *name = nm;
    return l;
}

size_t srp_block_norm_count(const srp_block *b) { return b && b->ln1 ? (b->lnc ? 3 : 2) : 0; }

srp_layernorm *srp_block_norm(srp_block *b, size_t i, const char **name)
{
    if (!b || i >= srp_block_norm_count(b))
        return NULL;
    if (name)
        *name = b->norm_names[i];
    return i == 0 ? b->ln1 : i == 1 ? b->ln2 : b->lnc;
}

/* "prefix.part" into buf [SRP_TENSOR_MAX_NAME + 1] (just part without a
 * prefix). */
static srp_status join(char *buf, const char *prefix, const char *part, const char *call)
{
    const int has = prefix && prefix[0];
    const int len =
        snprintf(buf, SRP_TENSOR_MAX_NAME + 1, "%s%s%s", has ? prefix : "", has ? "." : "", part);
    if (len < 0 || len > SRP_TENSOR_MAX_NAME)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: prefix \"%.32s...\" makes names longer than SRP_TENSOR_MAX_NAME", call,
                        has ? prefix : "");
    return SRP_OK;
}

/* What one list does with a linear and a LayerNorm named "prefix.part". */
typedef struct {
    srp_status (*linear)(srp_linear *, const char *, void *);
    srp_status (*norm)(srp_layernorm *, const char *, void *);
    const char *call;
} list_adder;

/* Every linear, then both LayerNorms, under their names. */
static srp_status add_parts(srp_block *b, const char *prefix, const list_adder *add, void *list)
{
    char name[SRP_TENSOR_MAX_NAME + 1];
    const char *part = NULL;
    srp_status st = SRP_OK;
    for (size_t i = 0; i < srp_block_linear_count(b) && st == SRP_OK; i++) {
        srp_linear *l = srp_block_linear(b, i, &part);
        st = join(name, prefix, part, add->call);
        if (st == SRP_OK)
            st = add->linear(l, name, list);
    }
    for (size_t i = 0; i < srp_block_norm_count(b) && st == SRP_OK; i++) {
        srp_layernorm *ln = srp_block_norm(b, i, &part);
        st = join(name, prefix, part, add->call);
        if (st == SRP_OK)
            st = add->norm(ln, name, list);
    }
    return st;
}

static srp_status linear_params(srp_linear *l, const char *name, void *list)
{
    return srp_linear_params(l, name, list);
}
static srp_status norm_params(srp_layernorm *ln, const char *name, void *list)
{
    return srp_layernorm_params(ln, name, list);
}
static srp_status linear_state(srp_linear *l, const char *name, void *list)
{
    return srp_linear_state_refs(l, name, list);
}
static srp_status norm_state(srp_layernorm *ln, const char *name, void *list)
{
    return srp_layernorm_state_refs(ln, name, list);
}

srp_status srp_block_params(srp_block *b, const char *prefix, srp_param_list *list)
{
    static const list_adder add = {linear_params, norm_params, "srp_block_params"};
    return b && list ? add_parts(b, prefix, &add, list) : SRP_FAIL_NULL(b, list);
}

srp_status srp_block_state_refs(srp_block *b, const char *prefix, srp_tensor_list *list)
{
    static const list_adder add = {linear_state, norm_state, "srp_block_state_refs"};
    if (!b || !list)
        return SRP_FAIL_NULL(b, list);
    srp_status st = add_parts(b, prefix, &add, list);
    const size_t shape[1] = {4};
    if (st == SRP_OK && b->attn->dropout > 0.0f)
        st = srp_tensor_list_add(list, prefix, "attn.dropout_rng", SRP_DTYPE_U64, 1, shape,
                                 b->attn->dropout_rng.s);
    if (st == SRP_OK && b->xattn && b->xattn->dropout > 0.0f)
        st = srp_tensor_list_add(list, prefix, "cross_attn.dropout_rng", SRP_DTYPE_U64, 1, shape,
                                 b->xattn->dropout_rng.s);
    if (st == SRP_OK && (b->mlp_dropout > 0.0f || b->drop_path > 0.0f))
        st = srp_tensor_list_add(list, prefix, "dropout_rng", SRP_DTYPE_U64, 1, shape, b->rng.s);
    return st;
}

/* ---- cached decoding (block.h) ----
 * One position of each sequence through the block: the attention from its
 * cache (attention_decode.c), a decoder block's cross-attention from its
 * cache of the memory, LayerNorm and MLP per position, as the eval forward
 * computes them, with fc1's and fc2's eval scales taken at position 0 as
 * the attention's are. Nothing of the block changes. */

struct srp_block_cache {
    const srp_block *owner;
    srp_attention_cache *attn;
    srp_attention_cache *xattn; /* a decoder block's: its memory's keys and values */
    size_t max_batch;
    float fc1_scale, fc2_scale;
    /* [max_batch][D]: the attention's input (pre-LN: ln1(x); then the
     * cross-attention's, c_in), a branch's output, mid, the MLP's input, a
     * decoder block's cmid; [max_batch][mlp]: fc1's output, GELU's */
    float *a_in, *branch, *mid, *m_in, *cmid, *h;
};

static void cache_layout(void *obj, srp_arena *arena)
{
    srp_block_cache *c = obj;
    const size_t rows = c->max_batch;
    SRP_ARENA_FLOATS(arena, rows * c->owner->dim, &c->a_in, &c->branch, &c->mid, &c->m_in);
    SRP_ARENA_FLOATS(arena, c->owner->cross ? rows * c->owner->dim : 0, &c->cmid);
    SRP_ARENA_FLOATS(arena, rows * c->owner->mlp, &c->h);
}

srp_status srp_block_cache_create(srp_block_cache **out, const srp_block *b, size_t max_batch,
                                  size_t max_tokens)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!b)
        return SRP_FAIL_NULL(b);
    srp_attention_cache *attn = NULL, *xattn = NULL;
    srp_status st = srp_attention_cache_create(&attn, b->attn, max_batch, max_tokens);
    if (st == SRP_OK && b->cross)
        st = srp_attention_cache_create(&xattn, b->xattn, max_batch, max_tokens);
    if (st != SRP_OK) {
        srp_attention_cache_destroy(attn);
        return st; /* with the attention cache's detail */
    }
    if (!srp_linear_batch_ok(b->fc1, max_batch) || !srp_linear_batch_ok(b->fc2, max_batch)) {
        srp_attention_cache_destroy(attn);
        srp_attention_cache_destroy(xattn);
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_block_cache_create: max_batch %zu is too many rows for the MLP",
                        max_batch);
    }
    srp_block_cache *c =
        SRP_ARENA_NEW(srp_block_cache, cache_layout, .owner = b, .max_batch = max_batch);
    if (!c) {
        srp_attention_cache_destroy(attn);
        srp_attention_cache_destroy(xattn);
        return SRP_ERR_NOMEM;
    }
    c->attn = attn;
    c->xattn = xattn;
    *out = c;
    return SRP_OK;
}

void srp_block_cache_destroy(srp_block_cache *c)
{
    if (!c)
        return;
    srp_attention_cache_destroy(c->attn);
    srp_attention_cache_destroy(c->xattn);
    free(c);
}

void srp_block_cache_reset(srp_block_cache *c)
{
    if (c) {
        srp_attention_cache_reset(c->attn);
        srp_attention_cache_reset(c->xattn);
    }
}

size_t srp_block_cache_length(const srp_block_cache *c)
{
    return c ? srp_attention_cache_length(c->attn) : 0;
}

srp_status srp_block_cache_set_memory(srp_block_cache *c, const float *memory, size_t batch,
                                      size_t memory_tokens, const size_t *memory_key_len)
{
    static const char call[] = "srp_block_cache_set_memory";
    if (!c || !memory)
        return SRP_FAIL_NULL(c, memory);
    if (!c->xattn)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: the block is not a decoder block (cfg.cross): it has no memory", call);
    srp_status st =
        srp_attention_memory_check(c->xattn, batch, memory_tokens, memory_key_len, call);
    if (st == SRP_OK)
        st = srp_attention_memory_set(c->xattn, memory, batch, memory_tokens, memory_key_len, call);
    if (st == SRP_OK)
        srp_attention_cache_reset(c->attn); /* new sequences for the new memory */
    return st;
}

srp_status srp_block_cache_select(srp_block_cache *c, const size_t *rows, size_t batch)
{
    static const char call[] = "srp_block_cache_select";
    if (!c || !rows)
        return SRP_FAIL_NULL(c, rows);
    /* A decoder block holds its memory's sequences from set_memory on,
     * before the self-attention's first position. */
    const srp_status st =
        srp_attention_cache_select_check(c->xattn ? c->xattn : c->attn, rows, batch, call);
    if (st != SRP_OK)
        return st;
    srp_attention_cache_select_apply(c->attn, rows, batch);
    if (c->xattn)
        srp_attention_cache_select_apply(c->xattn, rows, batch);
    return SRP_OK;
}

/* LayerNorm of rows x [n][D] into y with ln's parameters: the kernel the
 * layer runs, without touching the layer's statistics. */
static void norm_rows(const srp_layernorm *ln, const float *x, size_t n, float *y)
{
    srp_layernorm_forward(x, ln->w, ln->b, n, ln->dim, ln->eps, y, NULL, NULL);
}

srp_status srp_block_decode(srp_block *b, srp_block_cache *c, const float *x, size_t batch,
                            float *y)
{
    static const char call[] = "srp_block_decode";
    if (!b || !c || !x || !y)
        return SRP_FAIL_NULL(b, c, x, y);
    if (c->owner != b)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: the cache was made for another block", call);
    srp_status st = srp_attention_decode_check(b->attn, c->attn, batch, call);
    if (st == SRP_OK && b->cross)
        st = srp_attention_decode_check(b->xattn, c->xattn, batch, call);
    if (st != SRP_OK)
        return st;
    if (srp_attention_cache_length(c->attn) == 0) { /* the MLP's eval scales, as the attention's */
        st = srp_linear_forward_prepare(b->fc1, SRP_EVAL);
        c->fc1_scale = srp_linear_prepared_scale(b->fc1);
        if (st == SRP_OK)
            st = srp_linear_forward_prepare(b->fc2, SRP_EVAL);
        c->fc2_scale = srp_linear_prepared_scale(b->fc2);
        if (st != SRP_OK)
            return srp_fail(st, "%s: fc1's or fc2's sigma or gamma is zero or not finite", call);
    }
    const size_t D = b->dim, n = batch * D;
    const int pre = b->norm == SRP_NORM_PRE, post = b->norm == SRP_NORM_POST;
    /* The eval forward's path (block.c's top), one position a sequence. */
    const float *a_in = x;
    if (pre) {
        norm_rows(b->ln1, x, batch, c->a_in);
        a_in = c->a_in;
    }
    st = srp_attention_decode_compute(b->attn, c->attn, a_in, batch, c->branch);
    if (st != SRP_OK)
        return st;
    srp_residual_add(x, c->branch, n, c->mid);
    const float *stream = c->mid; /* what the MLP stage reads */
    if (b->cross) { /* pre: cmid = mid + xattn(lnc(mid)); post: cmid = c_in + xattn(c_in) */
        const float *c_in = c->mid;
        if (b->norm != SRP_NORM_NONE) {
            norm_rows(pre ? b->lnc : b->ln1, c->mid, batch, c->a_in);
            c_in = c->a_in;
        }
        st = srp_attention_decode_compute(b->xattn, c->xattn, c_in, batch, c->branch);
        if (st != SRP_OK)
            return st;
        srp_residual_add(post ? c_in : c->mid, c->branch, n, c->cmid);
        stream = c->cmid;
    }
    const float *m_in = stream;
    if (b->norm != SRP_NORM_NONE) {
        norm_rows(mlp_norm(b), stream, batch, c->m_in);
        m_in = c->m_in;
    }
    srp_linear_forward_scaled(b->fc1, c->fc1_scale, m_in, batch, c->h, b->mlp);
    srp_gelu_forward(c->h, batch * b->mlp, c->h);
    srp_linear_forward_scaled(b->fc2, c->fc2_scale, c->h, batch, c->branch, D);
    if (post) {
        srp_residual_add(m_in, c->branch, n, c->mid); /* sum, in mid's place */
        norm_rows(b->ln2, c->mid, batch, y);
    } else {
        srp_residual_add(stream, c->branch, n, y);
    }
    if (!srp_all_finite(y, n))
        return srp_fail(SRP_ERR_NUMERIC,
                        "%s: NaN or Inf in y (from x, a parameter, or an overflow); the cache is "
                        "as it was",
                        call);
    srp_attention_decode_commit(c->attn, batch);
    if (b->cross)
        srp_attention_decode_commit(c->xattn, batch);
    return SRP_OK;
}
