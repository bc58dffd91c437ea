/* ViT-lite forward and backward over libsigmareparam layers (see vit_model.h).
 * All activations are allocated at create for max_batch; forward and
 * backward allocate nothing. */
#include "vit_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tensors.h"

#define LN_EPS 1e-6f /* timm's ViT LayerNorm eps */

struct vit_model {
    vit_config cfg;
    size_t patches, tokens, patch_len; /* P, T = P + 1, C p p (K q q with a stem) */
    size_t map_channels, map_side, q;  /* the map the patch embedding cuts: C, S, p or K, S_L, q */
    size_t batch;                      /* of the last forward */
    srp_linear *embed, *head;
    vit_stem stem;     /* stem.layers 0: none */
    float *cls, *dcls; /* [D] */
    float *pos, *dpos; /* [T][D] */
    ex_stack stack;    /* the blocks and the final LayerNorm; xs[0]: [CLS | patches] + pos */
    float *patch_buf, *emb, *pooled, *logits; /* [B*P][CPP], [B*P][D], [B][D], [B][classes] */
    float *d_patches, *d_emb, *d_pooled; /* backward: [B*P][CPP] (with a stem), [B*P][D], [B][D] */
    ex_linear_names linears;             /* every linear, named, for metrics and the lists */
};

vit_config vit_config_default(void)
{
    vit_config c = {.channels = 1,
                    .image_size = 28,
                    .patch = 4,
                    .dim = 128,
                    .depth = 6,
                    .heads = 4,
                    .mlp_dim = 256,
                    .classes = 10,
                    .max_batch = 128,
                    .sigma_reparam = 1,
                    .gamma_init = SRP_GAMMA_INIT_SIGMA0,
                    .qkv_sigma = SRP_QKV_SIGMA_FUSED,
                    .pool = VIT_POOL_CLS,
                    .init_gain = 1.0f};
    for (size_t l = 0; l < VIT_STEM_MAX_LAYERS; l++)
        c.stem_strides[l] = 1;
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
    return ex_linear_config(in, out, c->sigma_reparam, c->gamma_init, c->init_gain, rng);
}

/* The blocks' configuration: the attention sets its linears' sizes and
 * draws their seeds from its own seed; ex_stack_init draws the seeds. */
static srp_block_config block_config(const vit_config *c)
{
    srp_block_config bc = ex_block_config(c->dim, c->heads, c->mlp_dim, c->sigma_reparam,
                                          c->gamma_init, c->init_gain, &c->reg);
    bc.norm = c->layernorm ? SRP_NORM_PRE : SRP_NORM_NONE;
    bc.norm_eps = LN_EPS;
    bc.qkv_sigma = c->qkv_sigma;
    return bc;
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
    m->map_channels = K ? K : c->channels;
    m->map_side = vit_stem_side(c);
    m->q = q;
    m->patch_len = m->map_channels * q * q;
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
                                c->channels, c->image_size, B, &lc, &rng)) != SRP_OK)
            goto fail;
        char name[32];
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
    const srp_block_config bc = block_config(c);
    if ((st = ex_stack_init(&m->stack, &bc, c->depth, c->layernorm ? "norm" : NULL, B, m->tokens,
                            &rng, &m->linears)) != SRP_OK)
        goto fail;
    lc = linear_config(c, D, c->classes, &rng);
    if ((st = srp_linear_create(&m->head, &lc)) != SRP_OK)
        goto fail;
    st = SRP_ERR_NOMEM;
    ex_linear_names_add(&m->linears, m->head, NULL, "head");
    if (!ex_alloc_floats(&m->patch_buf, B * m->patches * m->patch_len) ||
        (K && !ex_alloc_floats(&m->d_patches, B * m->patches * m->patch_len)) ||
        !ex_alloc_floats(&m->emb, B * m->patches * D) || !ex_alloc_floats(&m->pooled, B * D) ||
        !ex_alloc_floats(&m->logits, B * c->classes) ||
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
    ex_stack_free(&m->stack);
    float *buffers[] = {m->cls,    m->dcls,   m->pos,       m->dpos,  m->patch_buf, m->emb,
                        m->pooled, m->logits, m->d_patches, m->d_emb, m->d_pooled};
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++)
        free(buffers[i]);
    ex_linear_names_free(&m->linears);
    free(m);
}

const vit_config *vit_get_config(const vit_model *m) { return &m->cfg; }
size_t vit_tokens(const vit_model *m) { return m->tokens; }

void vit_patches(const float *from, size_t batch, size_t channels, size_t side, size_t q,
                 int channels_last, int to_patches, float *to)
{
    const size_t C = channels, S = side, g = S / q;
    const size_t sc = channels_last ? 1 : q * q, sy = channels_last ? q * C : q,
                 sx = channels_last ? C : 1;
#pragma omp parallel for schedule(static) if (channels_last) /* the stem's maps are large */
    for (size_t b = 0; b < batch; b++)
        for (size_t py = 0; py < g; py++)
            for (size_t px = 0; px < g; px++)
                for (size_t c = 0; c < C; c++)
                    for (size_t y = 0; y < q; y++)
                        for (size_t x = 0; x < q; x++) {
                            const size_t at_map = ((b * C + c) * S + py * q + y) * S + px * q + x;
                            const size_t at_patch =
                                ((b * g + py) * g + px) * C * q * q + c * sc + y * sy + x * sx;
                            if (to_patches)
                                to[at_patch] = from[at_map];
                            else
                                to[at_map] = from[at_patch];
                        }
}

srp_status vit_forward(vit_model *m, const float *images, size_t batch, int training,
                       const float **logits)
{
    if (!m || !images || batch == 0 || batch > m->cfg.max_batch)
        return SRP_ERR_INVALID_ARG;
    const size_t D = m->cfg.dim, T = m->tokens, P = m->patches;
    m->batch = batch;
    const float *map = images; /* what the patch embedding cuts: the images or the stem's map */
    if (m->stem.layers)
        EX_TRY(vit_stem_forward(&m->stem, images, batch, training, &map));
    vit_patches(map, batch, m->map_channels, m->map_side, m->q, m->stem.layers > 0, 1,
                m->patch_buf);
    EX_TRY(srp_linear_forward(m->embed, m->patch_buf, batch * P, m->emb, training));
    float *x0 = m->stack.xs[0]; /* [B][T][D]: CLS, then the patches, plus positions */
    for (size_t b = 0; b < batch; b++) {
        for (size_t d = 0; d < D; d++)
            x0[b * T * D + d] = m->cls[d] + m->pos[d];
        for (size_t t = 1; t < T; t++)
            for (size_t d = 0; d < D; d++)
                x0[(b * T + t) * D + d] = m->emb[(b * P + t - 1) * D + d] + m->pos[t * D + d];
    }
    const float *f_in;
    EX_TRY(ex_stack_forward(&m->stack, batch, T, training, &f_in));
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
    EX_TRY(srp_linear_backward(m->head, m->pooled, dlogits, batch, m->d_pooled));
    float *d_final = ex_stack_output_grad(&m->stack); /* d(pooled) -> d(the stack's output) */
    if (m->cfg.pool == VIT_POOL_MEAN)
        EX_TRY(srp_mean_pool_backward(m->d_pooled, batch, T, D, d_final));
    else
        EX_TRY(srp_token_select_backward(m->d_pooled, batch, T, D, 0, d_final));
    EX_TRY(ex_stack_backward(&m->stack));
    const float *ds = m->stack.d_stream;
    /* ds = d(x0): CLS and position gradients, then the patch embedding. */
    for (size_t b = 0; b < batch; b++) {
        for (size_t t = 0; t < T; t++)
            for (size_t d = 0; d < D; d++)
                m->dpos[t * D + d] += ds[(b * T + t) * D + d];
        for (size_t d = 0; d < D; d++)
            m->dcls[d] += ds[b * T * D + d];
        memcpy(m->d_emb + b * P * D, ds + (b * T + 1) * D, sizeof(float) * P * D);
    }
    EX_TRY(srp_linear_backward(m->embed, m->patch_buf, m->d_emb, batch * P, m->d_patches));
    if (!m->stem.layers)
        return SRP_OK;
    vit_patches(m->d_patches, batch, m->map_channels, m->map_side, m->q, 1, 0,
                m->stem.d_out[m->stem.layers - 1]);
    return vit_stem_backward(&m->stem);
}

srp_status vit_model_params(vit_model *m, srp_param_list *list)
{
    ex_linear_names_params(&m->linears, list);
    srp_param_list_add(list, "cls_token", NULL, m->cls, m->dcls, m->cfg.dim, SRP_PARAM_EMBEDDING);
    srp_param_list_add(list, "pos_embed", NULL, m->pos, m->dpos, m->tokens * m->cfg.dim,
                       SRP_PARAM_EMBEDDING);
    ex_stack_norm_params(&m->stack, list);
    return srp_param_list_status(list);
}

srp_status vit_model_state_refs(vit_model *m, srp_tensor_list *list)
{
    for (size_t l = 0; l < m->stem.layers; l++) /* the table's first names: stem.conv<l> */
        srp_conv2d_state_refs(m->stem.conv[l], m->linears.names[l], list);
    srp_linear_state_refs(m->embed, "patch_embed.proj", list);
    srp_tensor_list_add_f32(list, "cls_token", NULL, m->cls, m->cfg.dim);
    srp_tensor_list_add_f32(list, "pos_embed", NULL, m->pos, m->tokens * m->cfg.dim);
    ex_stack_state_refs(&m->stack, list);
    srp_linear_state_refs(m->head, "head", list);
    return srp_tensor_list_status(list);
}

const ex_linear_names *vit_linears(const vit_model *m) { return &m->linears; }

srp_attention *vit_attention_at(vit_model *m, size_t layer)
{
    return ex_stack_attention(&m->stack, layer);
}
