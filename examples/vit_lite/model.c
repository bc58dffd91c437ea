/* ViT-lite forward and backward over libsigmareparam layers (see model.h).
 * All activations are allocated at create for max_batch; forward and
 * backward allocate nothing. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/layers.h"
#include "common/tensors.h"

#define LN_EPS 1e-6f /* timm's ViT LayerNorm eps */
#define NAME_LEN 48

struct vit_model {
    vit_config cfg;
    size_t patches, tokens, patch_len; /* P, T = P + 1, C p p (K p p with a stem) */
    size_t batch;                      /* of the last forward */
    srp_linear *embed, *head;
    vit_stem stem;     /* stem.layers 0: none */
    float *cls, *dcls; /* [D] */
    float *pos, *dpos; /* [T][D] */
    srp_block **blocks;
    srp_layernorm *final_ln; /* NULL without layernorm */
    float **xs;              /* depth + 1 residual streams [B*T][D]: xs[l] enters block l */
    float *final_out;        /* [B*T][D]: the final LayerNorm's output */
    float *patch_buf, *emb, *pooled, *logits; /* [B*P][CPP], [B*P][D], [B][D], [B][classes] */
    /* backward scratch: the residual stream's gradient, the final
     * LayerNorm's output gradient */
    float *d_stream, *d_final, *d_emb, *d_pooled;
    ex_linear_names linears; /* every linear, named, for metrics and the lists */
};

vit_config vit_config_default(void)
{
    vit_config c;
    memset(&c, 0, sizeof(c));
    c.channels = 1;
    c.image_size = 28;
    c.patch = 4;
    c.dim = 128;
    c.depth = 6;
    c.heads = 4;
    c.mlp_dim = 256;
    c.classes = 10;
    c.max_batch = 128;
    c.sigma_reparam = 1;
    c.layernorm = 0;
    c.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    c.qkv_sigma = SRP_QKV_SIGMA_FUSED;
    c.pool = VIT_POOL_CLS;
    for (size_t l = 0; l < VIT_STEM_MAX_LAYERS; l++)
        c.stem_strides[l] = 1;
    c.init_gain = 1.0f;
    c.seed = 0;
    return c;
}

size_t vit_stem_side(const vit_config *c)
{
    size_t side = c->image_size;
    for (size_t l = 0; l < c->stem_layers && l < VIT_STEM_MAX_LAYERS; l++) {
        if (c->stem_strides[l] == 0)
            return 0;
        side = vit_stem_out_side(side, c->stem_strides[l]);
    }
    return side;
}

size_t vit_embed_patch(const vit_config *c)
{
    if (c->patch == 0 || c->image_size % c->patch != 0)
        return 0;
    const size_t grid = c->image_size / c->patch, side = vit_stem_side(c);
    return grid && side % grid == 0 ? side / grid : 0;
}

/* A linear's configuration in this model; its seed drawn from rng (NULL:
 * left to whoever creates it). */
static srp_linear_config linear_config(const vit_config *c, size_t in, size_t out, srp_rng *rng)
{
    srp_linear_config lc = srp_linear_config_default(in, out);
    lc.reparam = c->sigma_reparam ? SRP_REPARAM_SIGMA : SRP_REPARAM_NONE;
    lc.gamma_init = c->gamma_init;
    lc.init_std = 0.02f * c->init_gain;
    if (rng)
        lc.seed = srp_rng_next_u64(rng);
    return lc;
}

srp_status vit_create(vit_model **out, const vit_config *cfg)
{
    if (!out || !cfg)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    const vit_config *c = cfg;
    const size_t q = vit_embed_patch(c); /* 0: the patches do not tile their map */
    if (c->channels == 0 || c->image_size == 0 || c->stem_layers > VIT_STEM_MAX_LAYERS || q == 0 ||
        c->dim == 0 || c->depth == 0 || c->heads == 0 || c->dim % c->heads != 0 ||
        c->mlp_dim == 0 || c->classes < 2 || c->max_batch == 0 || !(c->init_gain > 0.0f))
        return SRP_ERR_INVALID_ARG;
    vit_model *m = calloc(1, sizeof(*m));
    if (!m)
        return SRP_ERR_NOMEM;
    m->cfg = *c;
    const size_t side = c->image_size / c->patch, D = c->dim, B = c->max_batch;
    m->patches = side * side;
    m->tokens = m->patches + 1;
    const size_t K = c->stem_layers ? c->stem_channels[c->stem_layers - 1] : 0;
    m->patch_len = (K ? K : c->channels) * q * q;
    const size_t rows = B * m->tokens;
    srp_status st = SRP_ERR_NOMEM;
    srp_rng rng;
    srp_rng_seed(&rng, c->seed);
    /* Room for every linear (at most 3 input projections, proj, fc1 and fc2
     * a block), so that the appends below, of short names, cannot fail. */
    if (!ex_linear_names_init(&m->linears, c->stem_layers + 2 + 6 * c->depth))
        goto fail;

    srp_linear_config lc;
    if (K) {
        lc = linear_config(c, 1, 1, NULL); /* the stem sets the sizes and seeds */
        if ((st = vit_stem_init(&m->stem, c->stem_layers, c->stem_channels, c->stem_strides,
                                c->channels, c->image_size, q, B, &lc, &rng)) != SRP_OK)
            goto fail;
        char name[NAME_LEN];
        for (size_t l = 0; l < c->stem_layers; l++) {
            snprintf(name, sizeof(name), "conv%zu", l);
            ex_linear_names_add(&m->linears, srp_conv2d_linear(m->stem.conv[l]), "stem", name);
        }
    }
    lc = linear_config(c, m->patch_len, D, &rng);
    if ((st = srp_linear_create(&m->embed, &lc)) != SRP_OK)
        goto fail;
    st = SRP_ERR_NOMEM;
    ex_linear_names_add(&m->linears, m->embed, NULL, "patch_embed.proj");
    if (!ex_alloc_floats(&m->cls, D) || !ex_alloc_floats(&m->dcls, D) ||
        !ex_alloc_floats(&m->pos, m->tokens * D) || !ex_alloc_floats(&m->dpos, m->tokens * D))
        goto fail;
    srp_rng_fill_trunc_normal(&rng, m->pos, m->tokens * D, 0.02f);
    m->blocks = calloc(c->depth, sizeof(srp_block *));
    m->xs = calloc(c->depth + 1, sizeof(float *));
    if (!m->blocks || !m->xs)
        goto fail;
    for (size_t l = 0; l <= c->depth; l++)
        if (!ex_alloc_floats(&m->xs[l], rows * D))
            goto fail;
    for (size_t l = 0; l < c->depth; l++) {
        /* The attention sets its linears' sizes and draws their seeds from
         * its own seed; the rest of their configuration is ours. Seeds in
         * the order attention, fc1, fc2. */
        srp_block_config bc = srp_block_config_default(D, c->heads, c->mlp_dim);
        bc.norm = c->layernorm ? SRP_NORM_PRE : SRP_NORM_NONE;
        bc.norm_eps = LN_EPS;
        bc.qkv_sigma = c->qkv_sigma;
        bc.qkv = linear_config(c, D, 3 * D, NULL);
        bc.proj = linear_config(c, D, D, NULL);
        bc.attn_seed = srp_rng_next_u64(&rng);
        bc.fc1 = linear_config(c, D, c->mlp_dim, &rng);
        bc.fc2 = linear_config(c, c->mlp_dim, D, &rng);
        if ((st = srp_block_create(&m->blocks[l], &bc, B, m->tokens)) != SRP_OK)
            goto fail;
        ex_linear_names_add_block(&m->linears, m->blocks[l], l);
    }
    if (c->layernorm) {
        srp_layernorm_config nc = srp_layernorm_config_default(D);
        nc.eps = LN_EPS;
        if ((st = srp_layernorm_create(&m->final_ln, &nc, rows)) != SRP_OK)
            goto fail;
    }
    lc = linear_config(c, D, c->classes, &rng);
    if ((st = srp_linear_create(&m->head, &lc)) != SRP_OK)
        goto fail;
    st = SRP_ERR_NOMEM;
    /* with a stem, the embedding reads the stem's output instead */
    ex_linear_names_add(&m->linears, m->head, NULL, "head");
    if (!ex_alloc_floats(&m->patch_buf, K ? 1 : B * m->patches * m->patch_len) ||
        !ex_alloc_floats(&m->emb, B * m->patches * D) || !ex_alloc_floats(&m->pooled, B * D) ||
        !ex_alloc_floats(&m->logits, B * c->classes) || !ex_alloc_floats(&m->d_stream, rows * D) ||
        (c->layernorm &&
         (!ex_alloc_floats(&m->final_out, rows * D) || !ex_alloc_floats(&m->d_final, rows * D))) ||
        !ex_alloc_floats(&m->d_emb, B * m->patches * D) || !ex_alloc_floats(&m->d_pooled, B * D))
        goto fail;
    *out = m;
    return SRP_OK;
fail:
    vit_destroy(m);
    return st;
}

void vit_destroy(vit_model *m)
{
    if (!m)
        return;
    vit_stem_free(&m->stem);
    srp_linear_destroy(m->embed);
    srp_linear_destroy(m->head);
    free(m->cls);
    free(m->dcls);
    free(m->pos);
    free(m->dpos);
    for (size_t l = 0; m->blocks && l < m->cfg.depth; l++)
        srp_block_destroy(m->blocks[l]);
    free(m->blocks);
    if (m->xs)
        for (size_t l = 0; l <= m->cfg.depth; l++)
            free(m->xs[l]);
    free(m->xs);
    srp_layernorm_destroy(m->final_ln);
    free(m->final_out);
    free(m->patch_buf);
    free(m->emb);
    free(m->pooled);
    free(m->logits);
    free(m->d_stream);
    free(m->d_final);
    free(m->d_emb);
    free(m->d_pooled);
    ex_linear_names_free(&m->linears);
    free(m);
}

const vit_config *vit_get_config(const vit_model *m) { return &m->cfg; }
size_t vit_tokens(const vit_model *m) { return m->tokens; }

/* images [B][C][S][S] -> patches [B][P][C][p][p], P in row-major order. */
static void patchify(const vit_model *m, const float *images, size_t batch, float *out)
{
    const size_t C = m->cfg.channels, S = m->cfg.image_size, p = m->cfg.patch, side = S / p;
    for (size_t b = 0; b < batch; b++)
        for (size_t py = 0; py < side; py++)
            for (size_t px = 0; px < side; px++) {
                float *dst = out + ((b * m->patches) + py * side + px) * m->patch_len;
                for (size_t c = 0; c < C; c++)
                    for (size_t y = 0; y < p; y++)
                        memcpy(dst + (c * p + y) * p,
                               images + ((b * C + c) * S + py * p + y) * S + px * p,
                               sizeof(float) * p);
            }
}

srp_status vit_forward(vit_model *m, const float *images, size_t batch, int training,
                       const float **logits)
{
    if (!m || !images || batch == 0 || batch > m->cfg.max_batch)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, T = m->tokens, P = m->patches, rows = batch * T;
    m->batch = batch;
    const float *embed_in = m->patch_buf;
    if (m->stem.layers)
        EX_TRY(vit_stem_forward(&m->stem, images, batch, training, &embed_in));
    else
        patchify(m, images, batch, m->patch_buf);
    EX_TRY(srp_linear_forward(m->embed, embed_in, batch * P, m->emb, training));
    float *x0 = m->xs[0]; /* [B][T][D]: CLS, then the patches, plus positions */
    for (size_t b = 0; b < batch; b++) {
        for (size_t d = 0; d < D; d++)
            x0[b * T * D + d] = m->cls[d] + m->pos[d];
        for (size_t t = 1; t < T; t++)
            for (size_t d = 0; d < D; d++)
                x0[(b * T + t) * D + d] = m->emb[(b * P + t - 1) * D + d] + m->pos[t * D + d];
    }
    for (size_t l = 0; l < m->cfg.depth; l++)
        EX_TRY(srp_block_forward(m->blocks[l], m->xs[l], batch, T, m->xs[l + 1], training));
    const float *f_in = m->xs[m->cfg.depth];
    if (m->final_ln) {
        EX_TRY(srp_layernorm_layer_forward(m->final_ln, f_in, rows, m->final_out, training));
        f_in = m->final_out;
    }
    if (m->cfg.pool == VIT_POOL_MEAN)
        EX_TRY(srp_mean_pool_forward(f_in, batch, T, D, m->pooled));
    else
        EX_TRY(srp_token_select_forward(f_in, batch, T, D, 0, m->pooled));
    EX_TRY(srp_linear_forward(m->head, m->pooled, batch, m->logits, training));
    if (logits)
        *logits = m->logits;
    return SRP_OK;
}

srp_status vit_backward(vit_model *m, const float *dlogits)
{
    if (!m || !dlogits || m->batch == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t batch = m->batch, D = m->cfg.dim, T = m->tokens, P = m->patches;
    const size_t rows = batch * T;
    float *ds = m->d_stream; /* gradient of the residual stream, block by block */

    EX_TRY(srp_linear_backward(m->head, m->pooled, dlogits, batch, m->d_pooled));
    /* d(pooled) -> d(final stream): into d_final before a LayerNorm, else ds */
    float *d_final = m->final_ln ? m->d_final : ds;
    if (m->cfg.pool == VIT_POOL_MEAN)
        EX_TRY(srp_mean_pool_backward(m->d_pooled, batch, T, D, d_final));
    else
        EX_TRY(srp_token_select_backward(m->d_pooled, batch, T, D, 0, d_final));
    if (m->final_ln)
        EX_TRY(srp_layernorm_layer_backward(m->final_ln, m->xs[m->cfg.depth], d_final, rows, ds));
    for (size_t l = m->cfg.depth; l-- > 0;)
        EX_TRY(srp_block_backward(m->blocks[l], ds, ds)); /* d(xs[l + 1]) -> d(xs[l]) */
    /* ds = d(x0): CLS and position gradients, then the patch embedding. */
    for (size_t b = 0; b < batch; b++) {
        for (size_t t = 0; t < T; t++)
            for (size_t d = 0; d < D; d++)
                m->dpos[t * D + d] += ds[(b * T + t) * D + d];
        for (size_t d = 0; d < D; d++)
            m->dcls[d] += ds[b * T * D + d];
        memcpy(m->d_emb + b * P * D, ds + (b * T + 1) * D, sizeof(float) * P * D);
    }
    if (!m->stem.layers)
        return srp_linear_backward(m->embed, m->patch_buf, m->d_emb, batch * P, NULL);
    EX_TRY(srp_linear_backward(m->embed, vit_stem_output(&m->stem), m->d_emb, batch * P,
                               vit_stem_output_grad(&m->stem)));
    return vit_stem_backward(&m->stem);
}

srp_status vit_model_params(vit_model *m, srp_param_list *list)
{
    ex_linear_names_params(&m->linears, list);
    srp_param_list_add(list, "cls_token", NULL, m->cls, m->dcls, m->cfg.dim, SRP_PARAM_EMBEDDING);
    srp_param_list_add(list, "pos_embed", NULL, m->pos, m->dpos, m->tokens * m->cfg.dim,
                       SRP_PARAM_EMBEDDING);
    ex_blocks_norm_params(m->blocks, m->cfg.depth, list);
    if (m->final_ln)
        srp_layernorm_params(m->final_ln, "norm", list);
    return srp_param_list_status(list);
}

srp_status vit_model_state_refs(vit_model *m, srp_tensor_list *list)
{
    char prefix[NAME_LEN];
    for (size_t l = 0; l < m->stem.layers; l++) {
        snprintf(prefix, sizeof(prefix), "stem.conv%zu", l);
        srp_conv2d_state_refs(m->stem.conv[l], prefix, list);
    }
    srp_linear_state_refs(m->embed, "patch_embed.proj", list);
    srp_tensor_list_add_f32(list, "cls_token", NULL, m->cls, m->cfg.dim);
    srp_tensor_list_add_f32(list, "pos_embed", NULL, m->pos, m->tokens * m->cfg.dim);
    ex_blocks_state_refs(m->blocks, m->cfg.depth, list);
    if (m->final_ln)
        srp_layernorm_state_refs(m->final_ln, "norm", list);
    srp_linear_state_refs(m->head, "head", list);
    return srp_tensor_list_status(list);
}

const ex_linear_names *vit_linears(const vit_model *m) { return &m->linears; }

srp_attention *vit_attention_at(vit_model *m, size_t layer)
{
    return layer < m->cfg.depth ? srp_block_attention(m->blocks[layer]) : NULL;
}
