/* The char LM's forward and backward over libsigmareparam layers (see
 * model.h). All activations are allocated at create for max_batch rows of
 * the full context; forward and backward allocate nothing. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/layers.h"
#include "common/tensors.h"

#define LN_EPS 1e-5f /* torch.nn.LayerNorm's default, as nanoGPT */

struct lm_model {
    lm_config cfg;
    size_t batch, tokens; /* of the last forward */
    srp_embedding *wte;
    float *pos, *dpos; /* [context][D]; dpos NULL for fixed positions */
    srp_block **blocks;
    srp_layernorm *ln_f; /* NULL without pre-LN */
    srp_linear *head;    /* NULL when tied */
    uint32_t *tok;       /* [rows]: the last forward's tokens */
    float *x0;           /* [rows][D]: embeddings plus positions */
    float **outs;        /* [depth]: each block's output, [rows][D] */
    float *f_out;        /* [rows][D]: ln_f's output (pre-LN) */
    float *logits;       /* [rows][256] */
    /* backward scratch: the residual stream's gradient, the head's input
     * gradient before ln_f */
    float *d_stream, *d_norm; /* [rows][D] */
    ex_linear_names linears;  /* every linear, named, for metrics and the lists */
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
    const size_t D = c->dim;
    /* Seeds in the order attention, fc1, fc2. */
    srp_block_config bc = srp_block_config_default(D, c->heads, c->mlp_dim);
    bc.norm = lm_arch_preln(c->arch)    ? SRP_NORM_PRE
              : lm_arch_postln(c->arch) ? SRP_NORM_POST
                                        : SRP_NORM_NONE;
    bc.norm_eps = LN_EPS;
    bc.causal = 1;
    bc.qkv_sigma = c->qkv_sigma;
    bc.qkv = linear_config(c, D, 3 * D, NULL);
    bc.proj = linear_config(c, D, D, NULL);
    bc.attn_seed = srp_rng_next_u64(rng);
    bc.fc1 = linear_config(c, D, c->mlp_dim, rng);
    bc.fc2 = linear_config(c, c->mlp_dim, D, rng);
    bc.norm1_name = "ln1";
    bc.norm2_name = "ln2";
    srp_status st = srp_block_create(&m->blocks[l], &bc, c->max_batch, c->context);
    if (st != SRP_OK)
        return st;
    ex_linear_names_add_block(&m->linears, m->blocks[l], l);
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
    m->blocks = calloc(c->depth, sizeof(srp_block *));
    m->outs = calloc(c->depth, sizeof(float *));
    /* Room for every linear (at most 3 input projections, proj, fc1 and fc2
     * a block, and the head), so that the appends, of short names, cannot
     * fail. */
    if (!m->blocks || !m->outs || !ex_linear_names_init(&m->linears, 6 * c->depth + 1))
        goto fail;
    for (size_t l = 0; l < c->depth; l++) {
        if ((st = create_block(m, l, &rng)) != SRP_OK)
            goto fail;
        st = SRP_ERR_NOMEM;
        if (!ex_alloc_floats(&m->outs[l], rows * D))
            goto fail;
    }
    if (lm_arch_preln(c->arch)) {
        srp_layernorm_config nc = srp_layernorm_config_default(D);
        nc.eps = LN_EPS;
        if ((st = srp_layernorm_create(&m->ln_f, &nc, rows)) != SRP_OK)
            goto fail;
        st = SRP_ERR_NOMEM;
        if (!ex_alloc_floats(&m->f_out, rows * D) || !ex_alloc_floats(&m->d_norm, rows * D))
            goto fail;
    }
    if (!c->tied_head) {
        srp_linear_config lc = linear_config(c, D, LM_VOCAB, &rng);
        if ((st = srp_linear_create(&m->head, &lc)) != SRP_OK)
            goto fail;
        ex_linear_names_add(&m->linears, m->head, NULL, "lm_head");
        st = SRP_ERR_NOMEM;
    }
    m->tok = malloc(sizeof(uint32_t) * rows);
    if (!m->tok || !ex_alloc_floats(&m->x0, rows * D) ||
        !ex_alloc_floats(&m->logits, rows * LM_VOCAB) || !ex_alloc_floats(&m->d_stream, rows * D))
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
    for (size_t l = 0; m->blocks && l < m->cfg.depth; l++)
        srp_block_destroy(m->blocks[l]);
    for (size_t l = 0; m->outs && l < m->cfg.depth; l++)
        free(m->outs[l]);
    free(m->blocks);
    free(m->outs);
    srp_layernorm_destroy(m->ln_f);
    srp_linear_destroy(m->head);
    free(m->tok);
    free(m->x0);
    free(m->f_out);
    free(m->logits);
    free(m->d_stream);
    free(m->d_norm);
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
        EX_TRY(srp_block_forward(m->blocks[l], x, batch, T, m->outs[l], training));
        x = m->outs[l];
    }
    const float *f = x;
    if (m->ln_f) {
        EX_TRY(srp_layernorm_layer_forward(m->ln_f, x, rows, m->f_out, training));
        f = m->f_out;
    }
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
    const size_t D = m->cfg.dim, T = m->tokens, rows = m->batch * T, L = m->cfg.depth;
    float *ds = m->d_stream;
    const float *last = m->outs[L - 1];
    const float *f = m->ln_f ? m->f_out : last;
    float *dh = m->ln_f ? m->d_norm : ds;
    if (m->head)
        EX_TRY(srp_linear_backward(m->head, f, dlogits, rows, dh));
    else
        EX_TRY(srp_embedding_logits_backward(m->wte, f, dlogits, rows, dh));
    if (m->ln_f)
        EX_TRY(srp_layernorm_layer_backward(m->ln_f, last, dh, rows, ds));
    for (size_t l = L; l-- > 0;)
        EX_TRY(srp_block_backward(m->blocks[l], ds, ds)); /* d(its output) -> d(its input) */
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
    ex_blocks_norm_params(m->blocks, m->cfg.depth, list);
    if (m->ln_f)
        srp_layernorm_params(m->ln_f, "ln_f", list);
    return srp_param_list_status(list);
}

srp_status lm_model_state_refs(lm_model *m, srp_tensor_list *list)
{
    srp_embedding_state_refs(m->wte, "wte", list);
    if (m->dpos)
        srp_tensor_list_add_f32(list, "wpe", NULL, m->pos, m->cfg.context * m->cfg.dim);
    ex_blocks_state_refs(m->blocks, m->cfg.depth, list);
    if (m->ln_f)
        srp_layernorm_state_refs(m->ln_f, "ln_f", list);
    if (m->head)
        srp_linear_state_refs(m->head, "lm_head", list);
    return srp_tensor_list_status(list);
}

const ex_linear_names *lm_linears(const lm_model *m) { return &m->linears; }

srp_attention *lm_attention_at(lm_model *m, size_t layer)
{
    return layer < m->cfg.depth ? srp_block_attention(m->blocks[layer]) : NULL;
}
