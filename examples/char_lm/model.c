/* The char LM's forward and backward over libsigmareparam layers (see
 * lm_model.h). All activations are allocated at create for max_batch rows of
 * the full context; forward and backward allocate nothing. */
#include "lm_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tensors.h"

#define LN_EPS 1e-5f /* torch.nn.LayerNorm's default, as nanoGPT */

struct lm_model {
    lm_config cfg;
    size_t batch, tokens; /* of the last forward */
    srp_embedding *wte;
    float *pos, *dpos;       /* [context][D]; dpos NULL for fixed positions */
    ex_stack stack;          /* the blocks and ln_f (pre-LN); xs[0]: embeddings plus positions */
    srp_linear *head;        /* NULL when tied */
    uint32_t *tok;           /* [rows]: the last forward's tokens */
    float *logits;           /* [rows][256] */
    ex_linear_names linears; /* every linear, named, for metrics and the lists */
};

lm_config lm_config_default(void)
{
    return (lm_config){.context = 128,
                       .dim = 128,
                       .depth = 4,
                       .heads = 4,
                       .mlp_dim = 512,
                       .max_batch = 32,
                       .arch = LM_ARCH_SIGMA,
                       .positions = LM_POS_LEARNED,
                       .gamma_init = SRP_GAMMA_INIT_SIGMA0,
                       .qkv_sigma = SRP_QKV_SIGMA_FUSED,
                       .init_gain = 1.0f,
                       .embed_std = 0.02f};
}

/* Each architecture's name, linears and norm placement. */
static const ex_arch k_archs[LM_ARCH_COUNT] = {
    [LM_ARCH_SIGMA] = {"sigma", 1, SRP_NORM_NONE},
    [LM_ARCH_SIGMA_PRELN] = {"sigma-preln", 1, SRP_NORM_PRE},
    [LM_ARCH_PRELN] = {"preln", 0, SRP_NORM_PRE},
    [LM_ARCH_POSTLN] = {"postln", 0, SRP_NORM_POST},
    [LM_ARCH_SIGMA_POSTLN] = {"sigma-postln", 1, SRP_NORM_POST}};

const char *lm_arch_name(lm_arch a) { return a < LM_ARCH_COUNT ? k_archs[a].name : "unknown"; }

static srp_linear_config linear_config(const lm_config *c, size_t in, size_t out, srp_rng *rng)
{
    return ex_linear_config(in, out, k_archs[c->arch].sigma, c->gamma_init, c->init_gain, rng);
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

/* The blocks' configuration; their seeds are drawn by ex_stack_init. */
static srp_block_config block_config(const lm_config *c)
{
    srp_block_config bc = ex_block_config(c->dim, c->heads, c->mlp_dim, k_archs[c->arch].sigma,
                                          c->gamma_init, c->init_gain, &c->reg);
    bc.norm = k_archs[c->arch].norm;
    bc.norm_eps = LN_EPS;
    bc.causal = 1;
    bc.qkv_sigma = c->qkv_sigma;
    bc.norm1_name = "ln1";
    bc.norm2_name = "ln2";
    return bc;
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
    /* Room for every linear (at most 3 input projections, proj, fc1 and fc2
     * a block, and the head), so that the appends, of short names, cannot
     * fail. */
    if (!ex_linear_names_init(&m->linears, 6 * c->depth + 1))
        goto fail;
    const srp_block_config bc = block_config(c);
    st = ex_stack_init(&m->stack, &bc, c->depth, bc.norm == SRP_NORM_PRE ? "ln_f" : NULL,
                       c->max_batch, c->context, &rng, &m->linears);
    if (st != SRP_OK)
        goto fail;
    if (!c->tied_head) {
        srp_linear_config lc = linear_config(c, D, LM_VOCAB, &rng);
        if ((st = srp_linear_create(&m->head, &lc)) != SRP_OK)
            goto fail;
        ex_linear_names_add(&m->linears, m->head, NULL, "lm_head");
    }
    st = SRP_ERR_NOMEM;
    m->tok = malloc(sizeof(uint32_t) * rows);
    if (!m->tok || !ex_alloc_floats(&m->logits, rows * LM_VOCAB))
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
    ex_stack_free(&m->stack);
    srp_linear_destroy(m->head);
    free(m->tok);
    free(m->logits);
    ex_linear_names_free(&m->linears);
    free(m);
}

const lm_config *lm_get_config(const lm_model *m) { return &m->cfg; }

srp_status lm_forward(lm_model *m, const uint32_t *tokens, size_t batch, size_t tokens_per_row,
                      int training, const float **logits)
{
    if (!m || !tokens || batch == 0 || batch > m->cfg.max_batch || tokens_per_row == 0 ||
        tokens_per_row > m->cfg.context)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, T = tokens_per_row, rows = batch * T;
    float *x0 = m->stack.xs[0];
    EX_TRY(srp_embedding_forward(m->wte, tokens, rows, x0)); /* checks the tokens */
    m->batch = batch;
    m->tokens = T;
    memcpy(m->tok, tokens, sizeof(uint32_t) * rows);
    for (size_t b = 0; b < batch; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t d = 0; d < D; d++)
                x0[(b * T + t) * D + d] += m->pos[t * D + d];
    const float *f;
    EX_TRY(ex_stack_forward(&m->stack, batch, T, training, &f));
    if (m->head)
        EX_TRY(srp_linear_forward(m->head, f, rows, m->logits, training));
    else
        EX_TRY(srp_embedding_logits(m->wte, f, rows, m->logits));
    if (logits)
        *logits = m->logits;
    return SRP_OK;
}

srp_status lm_backward(lm_model *m, const float *dlogits)
{
    if (!m || !dlogits || m->batch == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, T = m->tokens, rows = m->batch * T;
    ex_stack *s = &m->stack;
    const float *f = s->norm ? s->normed : s->xs[s->depth];
    if (m->head)
        EX_TRY(srp_linear_backward(m->head, f, dlogits, rows, ex_stack_output_grad(s)));
    else
        EX_TRY(srp_embedding_logits_backward(m->wte, f, dlogits, rows, ex_stack_output_grad(s)));
    EX_TRY(ex_stack_backward(s));
    const float *ds = s->d_stream;
    if (m->dpos)
        for (size_t b = 0; b < m->batch; b++)
            for (size_t t = 0; t < T; t++)
                for (size_t d = 0; d < D; d++)
                    m->dpos[t * D + d] += ds[(b * T + t) * D + d];
    return srp_embedding_backward(m->wte, m->tok, ds, rows);
}

srp_status lm_model_params(lm_model *m, srp_param_list *list)
{
    srp_embedding_params(m->wte, "wte", list);
    if (m->dpos)
        srp_param_list_add(list, "wpe", NULL, m->pos, m->dpos, m->cfg.context * m->cfg.dim,
                           SRP_PARAM_EMBEDDING);
    ex_linear_names_params(&m->linears, list);
    ex_stack_norm_params(&m->stack, list);
    return srp_param_list_status(list);
}

srp_status lm_model_state_refs(lm_model *m, srp_tensor_list *list)
{
    srp_embedding_state_refs(m->wte, "wte", list);
    if (m->dpos)
        srp_tensor_list_add_f32(list, "wpe", NULL, m->pos, m->cfg.context * m->cfg.dim);
    ex_stack_state_refs(&m->stack, list);
    if (m->head)
        srp_linear_state_refs(m->head, "lm_head", list);
    return srp_tensor_list_status(list);
}

const ex_linear_names *lm_linears(const lm_model *m) { return &m->linears; }

srp_attention *lm_attention_at(lm_model *m, size_t layer)
{
    return ex_stack_attention(&m->stack, layer);
}

struct lm_decoder {
    lm_model *m;
    size_t max_batch;
    ex_stack_cache cache; /* the blocks' caches; cache.x: the new position's stream */
    float *logits;        /* [max_batch][256] */
};

srp_status lm_decoder_create(lm_decoder **out, lm_model *m, size_t max_batch)
{
    if (!out || !m || max_batch == 0)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    lm_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return SRP_ERR_NOMEM;
    d->m = m;
    d->max_batch = max_batch;
    srp_status st = ex_stack_cache_init(&d->cache, &m->stack, max_batch, m->cfg.context);
    if (st == SRP_OK && !ex_alloc_floats(&d->logits, max_batch * LM_VOCAB))
        st = SRP_ERR_NOMEM;
    if (st != SRP_OK) {
        lm_decoder_destroy(d);
        return st;
    }
    *out = d;
    return SRP_OK;
}

void lm_decoder_destroy(lm_decoder *d)
{
    if (!d)
        return;
    ex_stack_cache_free(&d->cache);
    free(d->logits);
    free(d);
}

void lm_decoder_reset(lm_decoder *d)
{
    if (d)
        ex_stack_cache_reset(&d->cache);
}

size_t lm_decoder_length(const lm_decoder *d) { return d ? ex_stack_cache_length(&d->cache) : 0; }

srp_status lm_decode(lm_decoder *d, const uint32_t *tokens, size_t batch, const float **logits)
{
    if (!d || !tokens || batch == 0 || batch > d->max_batch)
        return SRP_ERR_INVALID_ARG;
    lm_model *m = d->m;
    const size_t D = m->cfg.dim, t = lm_decoder_length(d);
    if (t == m->cfg.context)
        return SRP_ERR_SHAPE;
    /* lm_forward's path for one position: embedding plus position t, the
     * blocks (each from its cache), the final LayerNorm, the head */
    float *x = d->cache.x;
    EX_TRY(srp_embedding_forward(m->wte, tokens, batch, x));
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < D; i++)
            x[b * D + i] += m->pos[t * D + i];
    const float *f;
    EX_TRY(ex_stack_decode(&d->cache, batch, &f));
    if (m->head)
        EX_TRY(srp_linear_forward(m->head, f, batch, d->logits, SRP_EVAL));
    else
        EX_TRY(srp_embedding_logits(m->wte, f, batch, d->logits));
    if (logits)
        *logits = d->logits;
    return SRP_OK;
}
