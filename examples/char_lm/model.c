/* The char LM's forward and backward over libsigmareparam layers (see
 * model.h). All activations are allocated at create for max_batch rows of
 * the full context; forward and backward allocate nothing. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/norm.h"

#define LN_EPS 1e-5f /* torch.nn.LayerNorm's default, as nanoGPT */
#define NAME_LEN 48

typedef struct {
    srp_attention *attn;
    srp_linear *fc1, *fc2;
    ex_norm ln1, ln2;
    float *mid; /* [rows][D]: pre-LN/none: x + attn(.); post-LN: the sum before ln1 */
    float *sum; /* [rows][D]: post-LN: the sum before ln2 (unused otherwise) */
    float *h1;  /* [rows][mlp]: fc1 output, before GELU */
    float *g;   /* [rows][mlp]: GELU output */
} lm_block;

struct lm_model {
    lm_config cfg;
    size_t batch, tokens; /* of the last forward */
    srp_embedding *wte;
    float *pos, *dpos; /* [context][D]; dpos NULL for fixed positions */
    lm_block *blocks;
    ex_norm ln_f;
    srp_linear *head; /* NULL when tied */
    uint32_t *tok;    /* [rows]: the last forward's tokens */
    float *x0;        /* [rows][D]: embeddings plus positions */
    float **outs;     /* [depth]: each block's output, [rows][D] (post-LN: its ln2.out) */
    float *logits;    /* [rows][256] */
    /* backward scratch */
    float *branch_out, *d_stream, *d_branch, *d_norm, *d_mlp; /* [rows][D or mlp] */
    ex_linear_table linears;
};

lm_config lm_config_default(void)
{
    lm_config c;
    memset(&c, 0, sizeof(c));
    c.context = 128;
    c.dim = 128;
    c.depth = 4;
    c.heads = 4;
    c.mlp_dim = 512;
    c.max_batch = 32;
    c.arch = LM_ARCH_SIGMA;
    c.positions = LM_POS_LEARNED;
    c.tied_head = 0;
    c.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    c.qkv_sigma = SRP_QKV_SIGMA_FUSED;
    c.init_gain = 1.0f;
    c.embed_std = 0.02f;
    return c;
}

const char *lm_arch_name(lm_arch a)
{
    static const char *names[] = {"sigma", "sigma-preln", "preln", "postln", "sigma-postln"};
    return a < LM_ARCH_COUNT ? names[a] : "unknown";
}

int lm_arch_sigma(lm_arch a)
{
    return a == LM_ARCH_SIGMA || a == LM_ARCH_SIGMA_PRELN || a == LM_ARCH_SIGMA_POSTLN;
}
int lm_arch_preln(lm_arch a) { return a == LM_ARCH_SIGMA_PRELN || a == LM_ARCH_PRELN; }
int lm_arch_postln(lm_arch a) { return a == LM_ARCH_POSTLN || a == LM_ARCH_SIGMA_POSTLN; }

static srp_linear_config linear_config(const lm_config *c, size_t in, size_t out, srp_rng *rng)
{
    srp_linear_config lc = srp_linear_config_default(in, out);
    lc.reparam = lm_arch_sigma(c->arch) ? SRP_REPARAM_SIGMA : SRP_REPARAM_NONE;
    lc.gamma_init = c->gamma_init;
    lc.init_std = 0.02f * c->init_gain;
    if (rng)
        lc.seed = srp_rng_next_u64(rng);
    return lc;
}

/* The sinusoids of Vaswani et al., scaled: pos[t][2i] = s sin(t w_i),
 * pos[t][2i+1] = s cos(t w_i), w_i = 10000^(-2i/D). */
static void fixed_positions(float *pos, size_t context, size_t dim, float scale)
{
    for (size_t t = 0; t < context; t++)
        for (size_t d = 0; d < dim; d++) {
            const double w = pow(10000.0, -(double)(d - d % 2) / (double)dim);
            pos[t * dim + d] = scale * (float)(d % 2 ? cos((double)t * w) : sin((double)t * w));
        }
}

static srp_status create_block(lm_model *m, size_t l, srp_rng *rng)
{
    const lm_config *c = &m->cfg;
    lm_block *b = &m->blocks[l];
    const size_t D = c->dim, rows = c->max_batch * c->context;
    srp_attention_config ac = srp_attention_config_default(D, c->heads);
    ac.causal = 1;
    ac.qkv_sigma = c->qkv_sigma;
    ac.qkv = linear_config(c, D, 3 * D, NULL);
    ac.proj = linear_config(c, D, D, NULL);
    ac.seed = srp_rng_next_u64(rng);
    srp_status st = srp_attention_create(&b->attn, &ac, c->max_batch, c->context);
    if (st != SRP_OK)
        return st;
    srp_linear_config lc = linear_config(c, D, c->mlp_dim, rng);
    if ((st = srp_linear_create(&b->fc1, &lc)) != SRP_OK)
        return st;
    lc = linear_config(c, c->mlp_dim, D, rng);
    if ((st = srp_linear_create(&b->fc2, &lc)) != SRP_OK)
        return st;
    char name[NAME_LEN];
    for (size_t i = 0; i < srp_attention_in_proj_count(b->attn); i++) {
        const char *part;
        srp_linear *in = srp_attention_in_proj(b->attn, i, &part);
        snprintf(name, sizeof(name), "blocks.%zu.attn.%s", l, part);
        if (!ex_linears_add(&m->linears, in, name))
            return SRP_ERR_NOMEM;
    }
    snprintf(name, sizeof(name), "blocks.%zu.attn.proj", l);
    if (!ex_linears_add(&m->linears, srp_attention_proj(b->attn), name))
        return SRP_ERR_NOMEM;
    snprintf(name, sizeof(name), "blocks.%zu.mlp.fc1", l);
    if (!ex_linears_add(&m->linears, b->fc1, name))
        return SRP_ERR_NOMEM;
    snprintf(name, sizeof(name), "blocks.%zu.mlp.fc2", l);
    if (!ex_linears_add(&m->linears, b->fc2, name))
        return SRP_ERR_NOMEM;
    const int ln = lm_arch_preln(c->arch) || lm_arch_postln(c->arch);
    if (!ex_norm_init(&b->ln1, ln, D, rows, LN_EPS) ||
        !ex_norm_init(&b->ln2, ln, D, rows, LN_EPS) || !ex_alloc_floats(&b->mid, rows * D) ||
        !ex_alloc_floats(&b->h1, rows * c->mlp_dim) || !ex_alloc_floats(&b->g, rows * c->mlp_dim) ||
        (lm_arch_postln(c->arch) && !ex_alloc_floats(&b->sum, rows * D)))
        return SRP_ERR_NOMEM;
    return SRP_OK;
}

srp_status lm_create(lm_model **out, const lm_config *cfg)
{
    if (!out || !cfg)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    const lm_config *c = cfg;
    if (c->context == 0 || c->dim == 0 || c->depth == 0 || c->heads == 0 ||
        c->dim % c->heads != 0 || c->mlp_dim == 0 || c->max_batch == 0 ||
        c->arch >= LM_ARCH_COUNT || !(c->init_gain > 0.0f) || !isfinite(c->init_gain) ||
        !(c->embed_std > 0.0f) || !isfinite(c->embed_std))
        return SRP_ERR_INVALID_ARG;
    lm_model *m = calloc(1, sizeof(*m));
    if (!m)
        return SRP_ERR_NOMEM;
    m->cfg = *c;
    const size_t D = c->dim, rows = c->max_batch * c->context;
    srp_rng rng;
    srp_rng_seed(&rng, c->seed);
    srp_status st =
        srp_embedding_create(&m->wte, LM_VOCAB, D, c->embed_std, srp_rng_next_u64(&rng));
    if (st != SRP_OK)
        goto fail;
    st = SRP_ERR_NOMEM;
    if (!ex_alloc_floats(&m->pos, c->context * D))
        goto fail;
    if (c->positions == LM_POS_LEARNED) {
        srp_rng_fill_trunc_normal(&rng, m->pos, c->context * D, c->embed_std);
        if (!ex_alloc_floats(&m->dpos, c->context * D))
            goto fail;
    } else {
        fixed_positions(m->pos, c->context, D, c->embed_std);
    }
    m->blocks = calloc(c->depth, sizeof(lm_block));
    m->outs = calloc(c->depth, sizeof(float *));
    if (!m->blocks || !m->outs)
        goto fail;
    for (size_t l = 0; l < c->depth; l++) {
        if ((st = create_block(m, l, &rng)) != SRP_OK)
            goto fail;
        st = SRP_ERR_NOMEM;
        if (lm_arch_postln(c->arch))
            m->outs[l] = m->blocks[l].ln2.out;
        else if (!ex_alloc_floats(&m->outs[l], rows * D))
            goto fail;
    }
    if (!ex_norm_init(&m->ln_f, lm_arch_preln(c->arch), D, rows, LN_EPS))
        goto fail;
    if (!c->tied_head) {
        srp_linear_config lc = linear_config(c, D, LM_VOCAB, &rng);
        if ((st = srp_linear_create(&m->head, &lc)) != SRP_OK)
            goto fail;
        st = SRP_ERR_NOMEM;
        if (!ex_linears_add(&m->linears, m->head, "lm_head"))
            goto fail;
    }
    const size_t wide = c->mlp_dim > D ? c->mlp_dim : D;
    m->tok = malloc(sizeof(uint32_t) * rows);
    if (!m->tok || !ex_alloc_floats(&m->x0, rows * D) ||
        !ex_alloc_floats(&m->logits, rows * LM_VOCAB) ||
        !ex_alloc_floats(&m->branch_out, rows * D) || !ex_alloc_floats(&m->d_stream, rows * D) ||
        !ex_alloc_floats(&m->d_branch, rows * D) || !ex_alloc_floats(&m->d_norm, rows * D) ||
        !ex_alloc_floats(&m->d_mlp, rows * wide))
        goto fail;
    *out = m;
    return SRP_OK;
fail:
    lm_destroy(m);
    return st;
}

void lm_destroy(lm_model *m)
{
    if (!m)
        return;
    srp_embedding_destroy(m->wte);
    free(m->pos);
    free(m->dpos);
    const int post = lm_arch_postln(m->cfg.arch);
    for (size_t l = 0; m->blocks && l < m->cfg.depth; l++) {
        lm_block *b = &m->blocks[l];
        srp_attention_destroy(b->attn);
        srp_linear_destroy(b->fc1);
        srp_linear_destroy(b->fc2);
        ex_norm_free(&b->ln1);
        ex_norm_free(&b->ln2);
        free(b->mid);
        free(b->sum);
        free(b->h1);
        free(b->g);
        if (!post && m->outs)
            free(m->outs[l]);
    }
    free(m->blocks);
    free(m->outs);
    ex_norm_free(&m->ln_f);
    srp_linear_destroy(m->head);
    free(m->tok);
    free(m->x0);
    free(m->logits);
    free(m->branch_out);
    free(m->d_stream);
    free(m->d_branch);
    free(m->d_norm);
    free(m->d_mlp);
    ex_linears_free(&m->linears);
    free(m);
}

const lm_config *lm_get_config(const lm_model *m) { return &m->cfg; }

/* x, y: [B][T][D]. See model.h for the two block orders. */
static srp_status block_forward(lm_model *m, lm_block *blk, const float *x, float *y, int training)
{
    const size_t D = m->cfg.dim, rows = m->batch * m->tokens, mlp = m->cfg.mlp_dim;
    const float *a_in, *m_in;
    if (lm_arch_postln(m->cfg.arch)) {
        EX_TRY(srp_attention_forward(blk->attn, x, m->batch, m->tokens, m->branch_out, training));
        EX_TRY(srp_residual_add(x, m->branch_out, rows * D, blk->mid));
        EX_TRY(ex_norm_forward(&blk->ln1, blk->mid, rows, &m_in));
        EX_TRY(srp_linear_forward(blk->fc1, m_in, rows, blk->h1, training));
        EX_TRY(srp_gelu_forward(blk->h1, rows * mlp, blk->g));
        EX_TRY(srp_linear_forward(blk->fc2, blk->g, rows, m->branch_out, training));
        EX_TRY(srp_residual_add(m_in, m->branch_out, rows * D, blk->sum));
        const float *out;
        return ex_norm_forward(&blk->ln2, blk->sum, rows, &out); /* into y = ln2.out */
    }
    EX_TRY(ex_norm_forward(&blk->ln1, x, rows, &a_in));
    EX_TRY(srp_attention_forward(blk->attn, a_in, m->batch, m->tokens, m->branch_out, training));
    EX_TRY(srp_residual_add(x, m->branch_out, rows * D, blk->mid));
    EX_TRY(ex_norm_forward(&blk->ln2, blk->mid, rows, &m_in));
    EX_TRY(srp_linear_forward(blk->fc1, m_in, rows, blk->h1, training));
    EX_TRY(srp_gelu_forward(blk->h1, rows * mlp, blk->g));
    EX_TRY(srp_linear_forward(blk->fc2, blk->g, rows, m->branch_out, training));
    return srp_residual_add(blk->mid, m->branch_out, rows * D, y);
}

srp_status lm_forward(lm_model *m, const uint32_t *tokens, size_t batch, size_t tokens_per_row,
                      int training, const float **logits)
{
    if (!m || !tokens || batch == 0 || batch > m->cfg.max_batch || tokens_per_row == 0 ||
        tokens_per_row > m->cfg.context)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, T = tokens_per_row, rows = batch * T;
    EX_TRY(srp_embedding_forward(m->wte, tokens, rows, m->x0)); /* checks the tokens */
    m->batch = batch;
    m->tokens = T;
    memcpy(m->tok, tokens, sizeof(uint32_t) * rows);
    for (size_t b = 0; b < batch; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t d = 0; d < D; d++)
                m->x0[(b * T + t) * D + d] += m->pos[t * D + d];
    const float *x = m->x0;
    for (size_t l = 0; l < m->cfg.depth; l++) {
        EX_TRY(block_forward(m, &m->blocks[l], x, m->outs[l], training));
        x = m->outs[l];
    }
    const float *f;
    EX_TRY(ex_norm_forward(&m->ln_f, x, rows, &f));
    if (m->head)
        EX_TRY(srp_linear_forward(m->head, f, rows, m->logits, training));
    else
        EX_TRY(srp_embedding_logits(m->wte, f, rows, m->logits));
    if (logits)
        *logits = m->logits;
    return SRP_OK;
}

/* ds: d(block output) on entry, d(block input x) on return. */
static srp_status block_backward(lm_model *m, lm_block *blk, const float *x, float *ds)
{
    const size_t rows = m->batch * m->tokens, mlp = m->cfg.mlp_dim;
    const size_t D = m->cfg.dim;
    if (lm_arch_postln(m->cfg.arch)) {
        const ex_norm *n2 = &blk->ln2, *n1 = &blk->ln1;
        /* y = ln2(sum), sum = mid_n + mlp(mid_n), mid_n = ln1(mid), mid = x + attn(x) */
        EX_TRY(srp_layernorm_backward(blk->sum, n2->w, n2->mean, n2->rstd, ds, rows, D, ds, n2->dw,
                                      n2->db));
        EX_TRY(srp_linear_backward(blk->fc2, blk->g, ds, rows, m->d_mlp));
        EX_TRY(srp_gelu_backward_from_output(blk->h1, blk->g, m->d_mlp, rows * mlp, m->d_mlp));
        EX_TRY(srp_linear_backward(blk->fc1, n1->out, m->d_mlp, rows, m->d_branch));
        EX_TRY(srp_accumulate(ds, m->d_branch, rows * D));
        EX_TRY(srp_layernorm_backward(blk->mid, n1->w, n1->mean, n1->rstd, ds, rows, D, ds, n1->dw,
                                      n1->db));
        EX_TRY(srp_attention_backward(blk->attn, ds, m->d_branch));
        return srp_accumulate(ds, m->d_branch, rows * D);
    }
    const float *m_in = blk->ln2.enabled ? blk->ln2.out : blk->mid;
    EX_TRY(srp_linear_backward(blk->fc2, blk->g, ds, rows, m->d_mlp));
    EX_TRY(srp_gelu_backward_from_output(blk->h1, blk->g, m->d_mlp, rows * mlp, m->d_mlp));
    EX_TRY(srp_linear_backward(blk->fc1, m_in, m->d_mlp, rows, m->d_branch));
    EX_TRY(ex_norm_backward_add(&blk->ln2, blk->mid, m->d_branch, rows, ds, m->d_norm));
    EX_TRY(srp_attention_backward(blk->attn, ds, m->d_branch));
    return ex_norm_backward_add(&blk->ln1, x, m->d_branch, rows, ds, m->d_norm);
}

srp_status lm_backward(lm_model *m, const float *dlogits)
{
    if (!m || !dlogits || m->batch == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, T = m->tokens, rows = m->batch * T, L = m->cfg.depth;
    float *ds = m->d_stream;
    const float *last = m->outs[L - 1];
    const float *f = m->ln_f.enabled ? m->ln_f.out : last;
    float *dh = m->ln_f.enabled ? m->d_norm : ds;
    if (m->head)
        EX_TRY(srp_linear_backward(m->head, f, dlogits, rows, dh));
    else
        EX_TRY(srp_embedding_logits_backward(m->wte, f, dlogits, rows, dh));
    if (m->ln_f.enabled)
        EX_TRY(srp_layernorm_backward(last, m->ln_f.w, m->ln_f.mean, m->ln_f.rstd, dh, rows, D, ds,
                                      m->ln_f.dw, m->ln_f.db));
    for (size_t l = L; l-- > 0;)
        EX_TRY(block_backward(m, &m->blocks[l], l ? m->outs[l - 1] : m->x0, ds));
    if (m->dpos)
        for (size_t b = 0; b < m->batch; b++)
            for (size_t t = 0; t < T; t++)
                for (size_t d = 0; d < D; d++)
                    m->dpos[t * D + d] += ds[(b * T + t) * D + d];
    return srp_embedding_backward(m->wte, m->tok, ds, rows);
}

void lm_params(lm_model *m, ex_param_list *list)
{
    const size_t D = m->cfg.dim;
    ex_params_add(list, "wte", NULL, srp_embedding_weight(m->wte),
                  srp_embedding_weight_grad(m->wte), LM_VOCAB * D, SRP_PARAM_EMBEDDING);
    if (m->dpos)
        ex_params_add(list, "wpe", NULL, m->pos, m->dpos, m->cfg.context * D, SRP_PARAM_EMBEDDING);
    ex_linears_params(&m->linears, list);
    char prefix[NAME_LEN];
    for (size_t l = 0; l < m->cfg.depth; l++) {
        snprintf(prefix, sizeof(prefix), "blocks.%zu.ln1", l);
        ex_norm_params(&m->blocks[l].ln1, prefix, list);
        snprintf(prefix, sizeof(prefix), "blocks.%zu.ln2", l);
        ex_norm_params(&m->blocks[l].ln2, prefix, list);
    }
    ex_norm_params(&m->ln_f, "ln_f", list);
}

void lm_state_tensors(lm_model *m, ex_tensor_list *list)
{
    ex_param_list params;
    ex_params_init(&params);
    lm_params(m, &params);
    ex_model_state_tensors(&params, &m->linears, list); /* copies the names */
    ex_params_free(&params);
}

ex_linear_table *lm_linears(lm_model *m) { return &m->linears; }

srp_attention *lm_attention_at(lm_model *m, size_t layer)
{
    return layer < m->cfg.depth ? m->blocks[layer].attn : NULL;
}
