/* ViT-lite: a small vision transformer built on libsigmareparam.
 *
 *   patchify (p x p, row-major patch order, each patch [C][p][p])
 *   -> patch embedding (sigmaReparam linear C*p*p -> D)
 * or a convolutional stem (stem.h) whose last map, of K channels, is cut
 * into the same grid of patches, [q][q][K] each -> linear q*q*K -> D
 *   -> [CLS | patches] + position embedding                 [B][T][D], T = P + 1
 *   -> depth x srp_block: { x = x + attn(ln1(x)); x = x + fc2(gelu(fc1(ln2(x)))) }
 *   -> (final LayerNorm) -> CLS token, or the mean of all T tokens (pool)
 *   -> head (sigmaReparam linear D -> classes)
 *
 * LayerNorms are optional and off by default: with sigmaReparam the paper
 * trains without them. With sigma_reparam = 0 every linear is a plain one
 * (the paper's baseline, usually with layernorm = 1). */
#ifndef VIT_MODEL_H
#define VIT_MODEL_H

#include <stddef.h>

#include <sigmareparam.h>

#include "common/layers.h"
#include "stem.h"

/* What the head reads: the class token (ViT, the official code), or the
 * mean of all tokens, the class token included (global average pooling). */
typedef enum { VIT_POOL_CLS = 0, VIT_POOL_MEAN = 1 } vit_pool;

typedef struct {
    size_t channels, image_size, patch;         /* 1, 28, 4 */
    size_t dim, depth, heads, mlp_dim, classes; /* 128, 6, 4, 256, 10 */
    size_t max_batch;                           /* 128 */
    size_t stem_layers;                         /* 0: no convolutional stem (stem.h) */
    size_t stem_channels[VIT_STEM_MAX_LAYERS];  /* each stem layer's channels */
    size_t stem_strides[VIT_STEM_MAX_LAYERS];   /* and stride (1s) */
    int sigma_reparam;                          /* 1 */
    int layernorm;                              /* 0 */
    srp_gamma_init gamma_init;                  /* SRP_GAMMA_INIT_SIGMA0 */
    srp_qkv_sigma qkv_sigma;                    /* SRP_QKV_SIGMA_FUSED */
    vit_pool pool;                              /* VIT_POOL_CLS */
    float init_gain;                            /* weights ~ N(0, 0.02 gain), truncated */
    ex_regularizers reg;                        /* the blocks' (layers.h): off */
    uint64_t seed;
} vit_config;

/* The benchmark configuration (28x28x1, patch 4, D 128, depth 6, 4 heads,
 * MLP 256, batch 128, 10 classes); vit-lite-train's defaults differ (patch 7,
 * a larger init: vit_options.c). */
vit_config vit_config_default(void);

/* The side of the squares the patch embedding reads, in pixels of the
 * map it cuts: without a stem, the patch itself; with one, the stem's last
 * map (smaller by its strides) cut into the same grid of image_size /
 * patch squares a side (28 -> 4 at stride 2, three times: 1 for patch 7).
 * 0 when the patches or that grid do not tile their map. */
size_t vit_embed_patch(const vit_config *c);
/* The stem's last map's side (the image's without a stem); 0 for a stride
 * of 0. */
size_t vit_stem_side(const vit_config *c);

/* Between a map [B][C][S][S] (NCHW: the images, or the stem's last map)
 * and its squares of q x q pixels, P = (S / q)^2 in row-major order, as
 * the patch embedding reads them: [B][P][C][q][q] (the images'), or
 * [B][P][q][q][C] with channels_last (the stem's). to_patches: from the
 * map to the patches, else back. */
void vit_patches(const float *from, size_t batch, size_t channels, size_t side, size_t q,
                 int channels_last, int to_patches, float *to);

typedef struct vit_model vit_model;

srp_status vit_create(vit_model **out, const vit_config *cfg);
void vit_destroy(vit_model *m);
const vit_config *vit_get_config(const vit_model *m);
size_t vit_tokens(const vit_model *m);

/* images: [batch][C][H][W] -> the model's logits [batch][classes], valid
 * until the next forward. */
srp_status vit_forward(vit_model *m, const float *images, size_t batch, int training,
                       const float **logits);
/* dlogits: [batch][classes] of the last forward; gradients accumulate
 * (zero them through the optimizer: vit_model_params lists every one). */
srp_status vit_backward(vit_model *m, const float *dlogits);

/* The model's lists (layers.h). params: the trainable tensors with
 * timm-style names and their kinds, in the optimizer's, the weight
 * average's and the gradient norm's order: every linear as vit_linears
 * orders them, cls_token, pos_embed, then each block's norm1 and norm2 and
 * the final norm (with layernorm). state_refs: everything that defines the
 * model's behaviour, for checkpoints (the layers' own state refs, pointing
 * at the layers). linears: the stem's convolutions (stem.conv<l>),
 * patch_embed.proj, each block's (under blocks.<l>), head. */
srp_status vit_model_params(vit_model *m, srp_param_list *list);
srp_status vit_model_state_refs(vit_model *m, srp_tensor_list *list);
const ex_linear_names *vit_linears(const vit_model *m);
srp_attention *vit_attention_at(vit_model *m, size_t layer);

#endif
