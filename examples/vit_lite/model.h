/* ViT-lite: a small vision transformer built on libsigmareparam.
 *
 *   patchify (p x p, row-major patch order, each patch [C][p][p])
 *   -> patch embedding (sigmaReparam linear C*p*p -> D)
 *   -> [CLS | patches] + position embedding                 [B][T][D], T = P + 1
 *   -> depth x { x = x + attn(ln1(x)); x = x + fc2(gelu(fc1(ln2(x)))) }
 *   -> (final LayerNorm) -> CLS token -> head (sigmaReparam linear D -> classes)
 *
 * LayerNorms are optional and off by default: with sigmaReparam the paper
 * trains without them. With sigma_reparam = 0 every linear is a plain one
 * (the paper's baseline, usually with layernorm = 1). */
#ifndef VIT_MODEL_H
#define VIT_MODEL_H

#include <stddef.h>

#include <sigmareparam.h>

#include "common/tensors.h"

typedef struct {
    size_t channels, image_size, patch;         /* 1, 28, 4 */
    size_t dim, depth, heads, mlp_dim, classes; /* 128, 6, 4, 256, 10 */
    size_t max_batch;                           /* 128 */
    int sigma_reparam;                          /* 1 */
    int layernorm;                              /* 0 */
    srp_gamma_init gamma_init;                  /* SRP_GAMMA_INIT_SIGMA0 */
    srp_qkv_sigma qkv_sigma;                    /* SRP_QKV_SIGMA_FUSED */
    float init_gain;                            /* weights ~ N(0, 0.02 gain), truncated */
    uint64_t seed;
} vit_config;

/* The benchmark configuration (28x28x1, patch 4, D 128, depth 6, 4 heads,
 * MLP 256, batch 128, 10 classes); vit-lite-train's defaults differ (patch 7,
 * a larger init: vit_options.c). */
vit_config vit_config_default(void);

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
 * (zero them through the optimizer: vit_params lists every one). */
srp_status vit_backward(vit_model *m, const float *dlogits);

/* Trainable tensors with timm-style names and their kinds' defaults; kinds
 * (may be NULL) gets each entry's kind. out may be NULL to count. Returns
 * the count. */
size_t vit_params(vit_model *m, srp_param *out, srp_param_kind *kinds);

/* Everything that defines the model's behaviour, for checkpoints: the
 * parameters, and each sigmaReparam layer's power-iteration state (u, v,
 * sigma), appended to list. Before a save, call vit_state_sync_out; after
 * a load, vit_state_sync_in (it pushes the loaded sigmas into the layers). */
void vit_state_tensors(vit_model *m, ex_tensor_list *list);
void vit_state_sync_out(vit_model *m);
srp_status vit_state_sync_in(vit_model *m);

/* For metrics: the linear layers with their names, and the attentions. */
size_t vit_linear_count(const vit_model *m);
srp_linear *vit_linear_at(vit_model *m, size_t i, const char **name);
srp_attention *vit_attention_at(vit_model *m, size_t layer);

#endif
