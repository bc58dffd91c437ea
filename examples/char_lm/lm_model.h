/* The char LM: a GPT-style causal transformer over bytes, built on
 * libsigmareparam.
 *
 *   tokens [B][T] -> embedding (E, not reparametrized) + positions  [B][T][D]
 *   -> depth x block -> (final LayerNorm) -> head -> logits [B][T][256]
 *
 * The head is tied (logits = h E^T) or its own linear D -> 256. The blocks
 * (srp_block) by architecture (lm_arch):
 *   sigma, preln, sigma-preln: x = x + attn(ln1(x)); x = x + mlp(ln2(x)),
 *       the LayerNorms (and the final one) only in the *preln ones;
 *   postln, sigma-postln:      x = ln1(x + attn(x)); x = ln2(x + mlp(x)),
 *       no final LayerNorm (the stream leaves a LayerNorm already);
 * with mlp = fc2(gelu(fc1(.))) and causal attention. The sigma ones make
 * every linear a sigmaReparam one (the untied head too), the others use
 * plain linears. Position p of row t: learned (N(0, embed_std^2)) or fixed,
 * the sinusoids of "Attention is all you need" scaled by embed_std, so that
 * either kind sits at the scale of the token embeddings. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <sigmareparam.h>

#include "common/layers.h"

#define LM_VOCAB 256

typedef enum {
    LM_ARCH_SIGMA = 0,    /* sigmaReparam, no LayerNorm: the paper's default and ours */
    LM_ARCH_SIGMA_PRELN,  /* sigmaReparam with pre-LN */
    LM_ARCH_PRELN,        /* plain linears, pre-LN: the usual baseline */
    LM_ARCH_POSTLN,       /* plain linears, post-LN: the unstable one */
    LM_ARCH_SIGMA_POSTLN, /* sigmaReparam with post-LN ("post spectral") */
    LM_ARCH_COUNT
} lm_arch;

/* "sigma", "sigma-preln", "preln", "postln", "sigma-postln" */
const char *lm_arch_name(lm_arch a);

typedef enum { LM_POS_LEARNED = 0, LM_POS_FIXED } lm_positions;

typedef struct {
    size_t context, dim, depth, heads, mlp_dim; /* 128, 128, 4, 4, 512 */
    size_t max_batch;                           /* 32 */
    lm_arch arch;                               /* LM_ARCH_SIGMA */
    lm_positions positions;                     /* LM_POS_LEARNED */
    int tied_head;                              /* 0 */
    srp_gamma_init gamma_init;                  /* SRP_GAMMA_INIT_SIGMA0 */
    srp_qkv_sigma qkv_sigma;                    /* SRP_QKV_SIGMA_FUSED */
    float init_gain; /* linear weights ~ N(0, (0.02 gain)^2), truncated: 1 */
    float embed_std; /* token and learned position embeddings: 0.02 */
    ex_regularizers reg; /* the blocks' (layers.h): off */
    uint64_t seed;
} lm_config;

lm_config lm_config_default(void);

typedef struct lm_model lm_model;

/* Checks the configuration (SRP_ERR_INVALID_ARG on sizes of 0, heads not
 * dividing dim, a bad gain or std) and allocates everything. */
srp_status lm_create(lm_model **out, const lm_config *cfg);
void lm_destroy(lm_model *m);
const lm_config *lm_get_config(const lm_model *m);

/* tokens: [batch][tokens] (tokens <= context, each < 256) -> logits
 * [batch][tokens][256], valid until the next forward. */
srp_status lm_forward(lm_model *m, const uint32_t *tokens, size_t batch, size_t tokens_per_row,
                      int training, const float **logits);
/* dlogits: [batch][tokens][256] of the last forward; gradients accumulate. */
srp_status lm_backward(lm_model *m, const float *dlogits);

/* The model's lists (layers.h), names as nanoGPT's. params: the trainable
 * tensors with their kinds, in the optimizer's and the gradient norm's
 * order: wte, wpe (learned positions), every linear as lm_linears orders
 * them, each block's ln1 and ln2, ln_f. state_refs: the parameters,
 * each sigmaReparam layer's u, v, sigma and the blocks' mask states (with
 * regularizers), for checkpoints (the layers' own state refs). linears:
 * each block's (under blocks.<l>), then lm_head (untied). */
srp_status lm_model_params(lm_model *m, srp_param_list *list);
srp_status lm_model_state_refs(lm_model *m, srp_tensor_list *list);
const ex_linear_names *lm_linears(const lm_model *m);
srp_attention *lm_attention_at(lm_model *m, size_t layer);

/* Cached decoding (srp_block_decode): the model's eval forward one
 * position at a time, each block's keys and values kept, for up to
 * max_batch sequences of up to context positions. lm_decode feeds tokens
 * [batch] (one per sequence) at position lm_decoder_length and gives that
 * position's logits [batch][256], those of lm_forward in eval over the
 * positions so far (within rounding), valid until the next call. A full
 * decoder (length == context, the learned positions' end): SRP_ERR_SHAPE;
 * lm_decoder_reset starts again (the caller re-feeds what it keeps). The
 * weights are taken as they are at position 0: reset after they change.
 * On an error mid-stack the blocks' caches may disagree: reset. Made
 * apart from the model, which training never needs it for; it refers to
 * the model (destroy it first). */
typedef struct lm_decoder lm_decoder;
srp_status lm_decoder_create(lm_decoder **out, lm_model *m, size_t max_batch);
void lm_decoder_destroy(lm_decoder *d);
void lm_decoder_reset(lm_decoder *d);
size_t lm_decoder_length(const lm_decoder *d);
srp_status lm_decode(lm_decoder *d, const uint32_t *tokens, size_t batch, const float **logits);

#endif
