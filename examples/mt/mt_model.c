/* The translation model's forward and backward over libsigmareparam
 * layers (see mt_model.h). All activations are allocated at create for
 * max_batch rows of the longest source and target; forward and backward
 * allocate nothing. */
#include "mt_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tensors.h"

#define LN_EPS 1e-5f /* torch.nn.LayerNorm's default */

/* One side's input: token embedding (scaled) plus learned positions. */
typedef struct {
    srp_embedding *wte; /* the decoder's is the encoder's when tied (not its own) */
    float scale;        /* of the table's rows: 1, or sqrt(dim) with MT_TIE_ALL */
    float *pos, *dpos; /* [positions][D] */
    uint32_t *tok;     /* [max rows]: the last forward's tokens */
} mt_input;

struct mt_model {
    mt_config cfg;
    size_t batch, src_tokens, tgt_tokens; /* of the last encode, decode */
    size_t *src_len;                      /* [max_batch]: the last encode's lengths */
    mt_input src, tgt;
    ex_stack enc, dec; /* dec.xs[0]: the decoder's input */
    const float *memory;
    float *dmemory, *dmemory_block; /* [max_batch][max_src][D] */
    srp_linear *head;               /* NULL with MT_TIE_ALL: the head is tgt.wte's transpose */
    float *logits;           /* [max_batch][max_tgt + 1][MT_VOCAB] */
    ex_linear_names linears; /* every linear, named */
};

mt_config mt_config_default(void)
{
    return (mt_config){.max_src = 128,
                       .max_tgt = 128,
                       .dim = 128,
                       .heads = 4,
                       .mlp_dim = 512,
                       .enc_layers = 2,
                       .dec_layers = 2,
                       .max_batch = 32,
                       .arch = MT_ARCH_SIGMA_POSTLN,
                       .gamma_init = SRP_GAMMA_INIT_SIGMA0,
                       .qkv_sigma = SRP_QKV_SIGMA_FUSED,
                       .init_gain = 1.0f,
                       .embed_std = 0.02f};
}

static const ex_arch k_archs[MT_ARCH_COUNT] = {
    [MT_ARCH_SIGMA_POSTLN] = {"sigma-postln", 1, SRP_NORM_POST},
    [MT_ARCH_SIGMA] = {"sigma", 1, SRP_NORM_NONE},
    [MT_ARCH_POSTLN] = {"postln", 0, SRP_NORM_POST},
    [MT_ARCH_PRELN] = {"preln", 0, SRP_NORM_PRE}};

const char *mt_arch_name(mt_arch a) { return a < MT_ARCH_COUNT ? k_archs[a].name : "unknown"; }

static srp_linear_config linear_config(const mt_config *c, size_t in, size_t out, srp_rng *rng)
{
    return ex_linear_config(in, out, k_archs[c->arch].sigma, c->gamma_init, c->init_gain, rng);
}

/* An encoder (cross 0) or decoder (cross 1) block; seeds drawn by
 * ex_stack_init_named, and the cross-attention's here. */
static srp_block_config block_config(const mt_config *c, int cross)
{
    srp_block_config bc = ex_block_config(c->dim, c->heads, c->mlp_dim, k_archs[c->arch].sigma,
                                          c->gamma_init, c->init_gain, &c->reg);
    bc.norm = k_archs[c->arch].norm;
    bc.norm_eps = LN_EPS;
    bc.causal = cross;
    bc.cross = cross;
    bc.max_memory_tokens = c->max_src;
    bc.qkv_sigma = c->qkv_sigma;
    return bc;
}

/* shared: the table to use rather than one of its own (NULL: its own). */
static srp_status input_init(mt_input *in, size_t vocab, size_t positions, size_t rows,
                             const mt_config *c, srp_embedding *shared, srp_rng *rng)
{
    in->scale = c->tie == MT_TIE_ALL ? sqrtf((float)c->dim) : 1.0f;
    const uint64_t seed = srp_rng_next_u64(rng);
    if (shared)
        in->wte = shared;
    else
        EX_TRY(srp_embedding_create(&in->wte, vocab, c->dim, c->embed_std / in->scale, seed));
    if (!ex_alloc_floats(&in->pos, positions * c->dim) ||
        !ex_alloc_floats(&in->dpos, positions * c->dim) ||
        !(in->tok = malloc(sizeof(uint32_t) * rows)))
        return SRP_ERR_NOMEM;
    srp_rng_fill_trunc_normal(rng, in->pos, positions * c->dim, c->embed_std);
    return SRP_OK;
}

static void input_free(mt_input *in, int owns_wte)
{
    if (owns_wte)
        srp_embedding_destroy(in->wte);
    free(in->pos);
    free(in->dpos);
    free(in->tok);
}

/* x [batch][T][D] = scale wte(tok) + pos[t]; the tokens kept for the
 * backward. */
static srp_status input_forward(mt_input *in, const uint32_t *tok, size_t batch, size_t T, size_t D,
                                float *x)
{
    EX_TRY(srp_embedding_forward(in->wte, tok, batch * T, x)); /* checks the tokens */
    memcpy(in->tok, tok, sizeof(uint32_t) * batch * T);
    if (in->scale != 1.0f)
        for (size_t i = 0; i < batch * T * D; i++)
            x[i] *= in->scale;
    for (size_t b = 0; b < batch; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t d = 0; d < D; d++)
                x[(b * T + t) * D + d] += in->pos[t * D + d];
    return SRP_OK;
}

/* dx [batch][T][D]: scaled in place (the caller's last use of it); the
 * table's gradient accumulates (a tied one's sums both sides). */
static srp_status input_backward(mt_input *in, float *dx, size_t batch, size_t T, size_t D)
{
    for (size_t b = 0; b < batch; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t d = 0; d < D; d++)
                in->dpos[t * D + d] += dx[(b * T + t) * D + d];
    if (in->scale != 1.0f)
        for (size_t i = 0; i < batch * T * D; i++)
            dx[i] *= in->scale;
    return srp_embedding_backward(in->wte, in->tok, dx, batch * T);
}

srp_status mt_create(mt_model **out, const mt_config *cfg)
{
    if (!out || !cfg)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    const mt_config *c = cfg;
    if (c->max_src == 0 || c->max_tgt == 0 || c->dim == 0 || c->heads == 0 ||
        c->dim % c->heads != 0 || c->mlp_dim == 0 || c->enc_layers == 0 || c->dec_layers == 0 ||
        c->max_batch == 0 || c->arch >= MT_ARCH_COUNT || c->tie >= MT_TIE_COUNT ||
        !(c->init_gain > 0.0f) || !isfinite(c->init_gain) || !(c->embed_std > 0.0f) ||
        !isfinite(c->embed_std))
        return SRP_ERR_INVALID_ARG;
    mt_model *m = calloc(1, sizeof(*m));
    if (!m)
        return SRP_ERR_NOMEM;
    m->cfg = *c;
    const size_t D = c->dim, T = c->max_tgt + 1;
    const size_t src_rows = c->max_batch * c->max_src, tgt_rows = c->max_batch * T;
    srp_rng rng;
    srp_rng_seed(&rng, c->seed);
    const int tied = c->tie != MT_TIE_NONE; /* the encoder's table is then the decoder's */
    srp_status st = input_init(&m->src, tied ? MT_VOCAB : 256, c->max_src, src_rows, c, NULL, &rng);
    if (st == SRP_OK)
        st = input_init(&m->tgt, MT_VOCAB, T, tgt_rows, c, tied ? m->src.wte : NULL, &rng);
    if (st != SRP_OK)
        goto fail;
    st = SRP_ERR_NOMEM;
    /* room for every linear: at most 3 + 1 + 3 + 1 + 2 a block, the head */
    if (!ex_linear_names_init(&m->linears, 10 * (c->enc_layers + c->dec_layers) + 1))
        goto fail;
    const int pre = k_archs[c->arch].norm == SRP_NORM_PRE;
    const srp_block_config enc = block_config(c, 0);
    st = ex_stack_init_named(&m->enc, &enc, c->enc_layers, "encoder.blocks",
                             pre ? "encoder.ln_f" : NULL, c->max_batch, c->max_src, &rng,
                             &m->linears);
    if (st != SRP_OK)
        goto fail;
    const srp_block_config dec = block_config(c, 1);
    st = ex_stack_init_named(&m->dec, &dec, c->dec_layers, "decoder.blocks",
                             pre ? "decoder.ln_f" : NULL, c->max_batch, T, &rng, &m->linears);
    if (st != SRP_OK)
        goto fail;
    if (c->tie != MT_TIE_ALL) {
        srp_linear_config lc = linear_config(c, D, MT_VOCAB, &rng);
        if ((st = srp_linear_create(&m->head, &lc)) != SRP_OK)
            goto fail;
        ex_linear_names_add(&m->linears, m->head, NULL, "head");
    }
    st = SRP_ERR_NOMEM;
    m->src_len = calloc(c->max_batch, sizeof(size_t));
    if (!m->src_len || !ex_alloc_floats(&m->dmemory, src_rows * D) ||
        !ex_alloc_floats(&m->dmemory_block, src_rows * D) ||
        !ex_alloc_floats(&m->logits, tgt_rows * MT_VOCAB))
        goto fail;
    *out = m;
    return SRP_OK;
fail:
    mt_destroy(m);
    return st;
}

void mt_destroy(mt_model *m)
{
    if (!m)
        return;
    input_free(&m->src, 1);
    input_free(&m->tgt, m->tgt.wte != m->src.wte);
    ex_stack_free(&m->enc);
    ex_stack_free(&m->dec);
    srp_linear_destroy(m->head);
    free(m->src_len);
    free(m->dmemory);
    free(m->dmemory_block);
    free(m->logits);
    ex_linear_names_free(&m->linears);
    free(m);
}

const mt_config *mt_get_config(const mt_model *m) { return &m->cfg; }

/* Lengths each in 1..tokens. */
static int lengths_ok(const size_t *len, size_t batch, size_t tokens)
{
    for (size_t b = 0; b < batch; b++)
        if (len[b] == 0 || len[b] > tokens)
            return 0;
    return 1;
}

srp_status mt_encode(mt_model *m, const uint32_t *src, const size_t *src_len, size_t batch,
                     size_t src_tokens, int training)
{
    if (!m || !src || !src_len || batch == 0 || batch > m->cfg.max_batch || src_tokens == 0 ||
        src_tokens > m->cfg.max_src || !lengths_ok(src_len, batch, src_tokens))
        return SRP_ERR_INVALID_ARG;
    for (size_t i = 0; i < batch * src_tokens; i++) /* a tied table would take BOS and EOS */
        if (src[i] >= 256)
            return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, S = src_tokens;
    ex_stack *s = &m->enc;
    m->batch = 0;      /* no decode until this encode is through */
    m->tgt_tokens = 0; /* nor a backward of the last memory's decode */
    EX_TRY(input_forward(&m->src, src, batch, S, D, s->xs[0]));
    s->rows = batch * S;
    for (size_t l = 0; l < s->depth; l++)
        EX_TRY(srp_block_forward_masked(s->blocks[l], s->xs[l], batch, S, src_len, s->xs[l + 1],
                                        training));
    m->memory = s->xs[s->depth];
    if (s->norm) {
        EX_TRY(srp_layernorm_layer_forward(s->norm, m->memory, s->rows, s->normed, training));
        m->memory = s->normed;
    }
    memcpy(m->src_len, src_len, sizeof(size_t) * batch);
    m->batch = batch;
    m->src_tokens = S;
    return SRP_OK;
}

srp_status mt_decode(mt_model *m, const uint32_t *tgt, const size_t *tgt_len, size_t tgt_tokens,
                     int training, const float **logits)
{
    if (!m || !tgt || m->batch == 0 || tgt_tokens == 0 || tgt_tokens > m->cfg.max_tgt + 1 ||
        (tgt_len && !lengths_ok(tgt_len, m->batch, tgt_tokens)))
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, B = m->batch, T = tgt_tokens, rows = B * T;
    ex_stack *s = &m->dec;
    EX_TRY(input_forward(&m->tgt, tgt, B, T, D, s->xs[0]));
    s->rows = rows;
    for (size_t l = 0; l < s->depth; l++)
        EX_TRY(srp_block_forward_cross(s->blocks[l], s->xs[l], B, T, tgt_len, m->memory,
                                       m->src_tokens, m->src_len, s->xs[l + 1], training));
    const float *f = s->xs[s->depth];
    if (s->norm) {
        EX_TRY(srp_layernorm_layer_forward(s->norm, f, rows, s->normed, training));
        f = s->normed;
    }
    EX_TRY(m->head ? srp_linear_forward(m->head, f, rows, m->logits, training)
                   : srp_embedding_logits(m->tgt.wte, f, rows, m->logits));
    m->tgt_tokens = T;
    if (logits)
        *logits = m->logits;
    return SRP_OK;
}

srp_status mt_backward(mt_model *m, const float *dlogits)
{
    if (!m || !dlogits || m->batch == 0 || m->tgt_tokens == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, B = m->batch, T = m->tgt_tokens, S = m->src_tokens;
    ex_stack *dec = &m->dec, *enc = &m->enc;
    /* the decoder, from the head down; each block's memory gradient adds up */
    const float *f = dec->norm ? dec->normed : dec->xs[dec->depth];
    float *df = ex_stack_output_grad(dec);
    EX_TRY(m->head ? srp_linear_backward(m->head, f, dlogits, B * T, df)
                   : srp_embedding_logits_backward(m->tgt.wte, f, dlogits, B * T, df));
    float *ds = dec->d_stream;
    if (dec->norm)
        EX_TRY(
            srp_layernorm_layer_backward(dec->norm, dec->xs[dec->depth], dec->d_normed, B * T, ds));
    float *dmem = m->dmemory;
    memset(dmem, 0, sizeof(float) * B * S * D);
    for (size_t l = dec->depth; l-- > 0;) {
        EX_TRY(srp_block_backward_cross(dec->blocks[l], ds, ds, m->dmemory_block));
        EX_TRY(srp_accumulate(dmem, m->dmemory_block, B * S * D));
    }
    EX_TRY(input_backward(&m->tgt, ds, B, T, D));
    /* the encoder, from the memory's gradient */
    memcpy(ex_stack_output_grad(enc), dmem, sizeof(float) * B * S * D);
    EX_TRY(ex_stack_backward(enc));
    return input_backward(&m->src, enc->d_stream, B, S, D);
}

srp_status mt_model_params(mt_model *m, srp_param_list *list)
{
    const size_t D = m->cfg.dim;
    const int tied = m->tgt.wte == m->src.wte; /* one tensor, listed once */
    srp_embedding_params(m->src.wte, tied ? "shared.wte" : "encoder.wte", list);
    srp_param_list_add(list, "encoder.wpe", NULL, m->src.pos, m->src.dpos, m->cfg.max_src * D,
                       SRP_PARAM_EMBEDDING);
    if (!tied)
        srp_embedding_params(m->tgt.wte, "decoder.wte", list);
    srp_param_list_add(list, "decoder.wpe", NULL, m->tgt.pos, m->tgt.dpos, (m->cfg.max_tgt + 1) * D,
                       SRP_PARAM_EMBEDDING);
    ex_linear_names_params(&m->linears, list);
    ex_stack_norm_params(&m->enc, list);
    ex_stack_norm_params(&m->dec, list);
    return srp_param_list_status(list);
}

srp_status mt_model_state_refs(mt_model *m, srp_tensor_list *list)
{
    const size_t D = m->cfg.dim;
    const int tied = m->tgt.wte == m->src.wte;
    srp_embedding_state_refs(m->src.wte, tied ? "shared.wte" : "encoder.wte", list);
    srp_tensor_list_add_f32(list, "encoder.wpe", NULL, m->src.pos, m->cfg.max_src * D);
    if (!tied)
        srp_embedding_state_refs(m->tgt.wte, "decoder.wte", list);
    srp_tensor_list_add_f32(list, "decoder.wpe", NULL, m->tgt.pos, (m->cfg.max_tgt + 1) * D);
    ex_stack_state_refs(&m->enc, list);
    ex_stack_state_refs(&m->dec, list);
    if (m->head)
        srp_linear_state_refs(m->head, "head", list);
    return srp_tensor_list_status(list);
}

const ex_linear_names *mt_linears(const mt_model *m) { return &m->linears; }

size_t mt_attention_count(const mt_model *m) { return m->enc.depth + 2 * m->dec.depth; }

srp_attention *mt_attention_at(mt_model *m, size_t layer)
{
    const size_t E = m->enc.depth, Dd = m->dec.depth;
    if (layer < E)
        return ex_stack_attention(&m->enc, layer);
    if (layer < E + Dd)
        return ex_stack_attention(&m->dec, layer - E);
    return layer < E + 2 * Dd ? srp_block_cross_attention(m->dec.blocks[layer - E - Dd]) : NULL;
}

struct mt_decoder {
    mt_model *m;
    size_t max_batch;
    ex_stack_cache cache; /* the decoder blocks' caches; cache.x: the new position's stream */
    float *logits;        /* [max_batch][MT_VOCAB] */
};

srp_status mt_decoder_create(mt_decoder **out, mt_model *m, size_t max_batch)
{
    if (!out || !m || max_batch == 0)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    mt_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return SRP_ERR_NOMEM;
    d->m = m;
    d->max_batch = max_batch;
    srp_status st = ex_stack_cache_init(&d->cache, &m->dec, max_batch, m->cfg.max_tgt + 1);
    if (st == SRP_OK && !ex_alloc_floats(&d->logits, max_batch * MT_VOCAB))
        st = SRP_ERR_NOMEM;
    if (st != SRP_OK) {
        mt_decoder_destroy(d);
        return st;
    }
    *out = d;
    return SRP_OK;
}

void mt_decoder_destroy(mt_decoder *d)
{
    if (!d)
        return;
    ex_stack_cache_free(&d->cache);
    free(d->logits);
    free(d);
}

srp_status mt_decoder_start(mt_decoder *d)
{
    if (!d)
        return SRP_ERR_INVALID_ARG;
    const mt_model *m = d->m;
    if (m->batch == 0)
        return SRP_ERR_ORDER;
    for (size_t l = 0; l < m->dec.depth; l++)
        EX_TRY(srp_block_cache_set_memory(d->cache.caches[l], m->memory, m->batch, m->src_tokens,
                                          m->src_len));
    return SRP_OK;
}

size_t mt_decoder_length(const mt_decoder *d) { return d ? ex_stack_cache_length(&d->cache) : 0; }

srp_status mt_decoder_step(mt_decoder *d, const uint32_t *tokens, size_t batch,
                           const float **logits)
{
    if (!d || !tokens || batch == 0 || batch > d->max_batch)
        return SRP_ERR_INVALID_ARG;
    mt_model *m = d->m;
    const size_t D = m->cfg.dim, t = mt_decoder_length(d);
    if (t == m->cfg.max_tgt + 1)
        return SRP_ERR_SHAPE;
    /* mt_decode's path for one position: embedding plus position t, the
     * blocks (each from its cache), the final LayerNorm, the head */
    float *x = d->cache.x;
    EX_TRY(srp_embedding_forward(m->tgt.wte, tokens, batch, x));
    const float scale = m->tgt.scale;
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < D; i++)
            x[b * D + i] = scale * x[b * D + i] + m->tgt.pos[t * D + i]; /* 1 x is x */
    const float *f;
    EX_TRY(ex_stack_decode(&d->cache, batch, &f));
    EX_TRY(m->head ? srp_linear_forward(m->head, f, batch, d->logits, SRP_EVAL)
                   : srp_embedding_logits(m->tgt.wte, f, batch, d->logits));
    if (logits)
        *logits = d->logits;
    return SRP_OK;
}

srp_status mt_decoder_select(mt_decoder *d, const size_t *rows, size_t batch)
{
    if (!d || !rows || batch == 0 || batch > d->max_batch)
        return SRP_ERR_INVALID_ARG;
    for (size_t l = 0; l < d->m->dec.depth; l++)
        EX_TRY(srp_block_cache_select(d->cache.caches[l], rows, batch));
    return SRP_OK;
}
