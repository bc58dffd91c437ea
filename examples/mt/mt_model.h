/* The translation model: a byte-level encoder-decoder (the original
 * Transformer's shape) built on libsigmareparam's blocks.
 *
 *   source bytes [B][S] -> embedding + learned positions -> enc_layers
 *       encoder blocks (padding masked by the source lengths)
 *       -> (final LayerNorm) -> memory [B][S][D]
 *   target tokens [B][T] (BOS, then the target bytes) -> embedding +
 *       learned positions -> dec_layers decoder blocks (causal
 *       self-attention masked by the target lengths, cross-attention to
 *       the memory masked by the source lengths) -> (final LayerNorm)
 *       -> head -> logits [B][T][MT_VOCAB]
 *
 * The output vocabulary is the 256 bytes, BOS (never predicted: only an
 * input) and EOS; the two embeddings and the head may share one table
 * (mt_tie). The architectures (mt_arch) place the LayerNorms as
 * block.h says: sigma-postln and postln after each residual sum (no final
 * LayerNorm), preln before each branch (and a final LayerNorm after each
 * stack), sigma none at all; the sigma ones make every linear (the head's
 * too) a sigmaReparam one, the others plain linears. */
#ifndef MT_MODEL_H
#define MT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <sigmareparam.h>

#include "common/layers.h"

#define MT_BOS 256
#define MT_EOS 257
#define MT_VOCAB 258 /* bytes, BOS, EOS */

typedef enum {
    MT_ARCH_SIGMA_POSTLN = 0, /* sigmaReparam with post-LN: the paper's translation models */
    MT_ARCH_SIGMA,            /* sigmaReparam without LayerNorm */
    MT_ARCH_POSTLN,           /* plain linears, post-LN (needs warmup) */
    MT_ARCH_PRELN,            /* plain linears, pre-LN */
    MT_ARCH_COUNT
} mt_arch;

/* "sigma-postln", "sigma", "postln", "preln" */
const char *mt_arch_name(mt_arch a);

/* Which byte embeddings share one table. Source and target are bytes of
 * one alphabet (names and format strings pass through untranslated), so
 * the encoder may read the decoder's table: MT_TIE_ENC_DEC makes one
 * [MT_VOCAB][dim] table (the encoder uses its first 256 rows) whose
 * gradient sums both uses. MT_TIE_ALL also makes the head that table's
 * transpose (logits = h E^T, no bias; a plain product even in the sigma
 * archs), scaled as the original Transformer does: the table starts at
 * embed_std / sqrt(dim) and the inputs read sqrt(dim) E, so that the
 * inputs keep embed_std's scale and the logits stay near unit scale. */
typedef enum { MT_TIE_NONE = 0, MT_TIE_ENC_DEC, MT_TIE_ALL, MT_TIE_COUNT } mt_tie;

typedef struct {
    size_t max_src, max_tgt;       /* bytes of a source, of a target: 128, 128 */
    size_t dim, heads, mlp_dim;    /* 128, 4, 512 */
    size_t enc_layers, dec_layers; /* 2, 2 */
    size_t max_batch;              /* 32 */
    mt_arch arch;                  /* MT_ARCH_SIGMA_POSTLN */
    srp_gamma_init gamma_init;     /* SRP_GAMMA_INIT_SIGMA0 */
    srp_qkv_sigma qkv_sigma;       /* SRP_QKV_SIGMA_FUSED */
    float init_gain;               /* linear weights ~ N(0, (0.02 gain)^2), truncated: 1 */
    float embed_std;               /* token and position embeddings: 0.02 (mt-train's default: 1) */
    mt_tie tie;                    /* MT_TIE_NONE */
    ex_regularizers reg;           /* the blocks' (layers.h): off */
    uint64_t seed;
} mt_config;

mt_config mt_config_default(void);

typedef struct mt_model mt_model;

/* Checks the configuration (SRP_ERR_INVALID_ARG on sizes of 0, heads not
 * dividing dim, an unknown arch or tie, a bad gain or std) and allocates
 * everything. */
srp_status mt_create(mt_model **out, const mt_config *cfg);
void mt_destroy(mt_model *m);
const mt_config *mt_get_config(const mt_model *m);

/* The encoder: src [batch][src_tokens] bytes (< 256; those at and after
 * src_len[b], each in 1..src_tokens, are padding: any byte), src_tokens <=
 * max_src. Its memory stays for the decoder calls that follow. */
srp_status mt_encode(mt_model *m, const uint32_t *src, const size_t *src_len, size_t batch,
                     size_t src_tokens, int training);
/* The decoder over the last encoding's batch: tgt [batch][tgt_tokens]
 * (each < MT_VOCAB; padding at and after tgt_len[b], each in
 * 1..tgt_tokens, may be NULL: none), tgt_tokens <= max_tgt + 1 ->
 * *logits [batch][tgt_tokens][MT_VOCAB], valid until the next call. A
 * training backward needs mt_encode and mt_decode both in training. */
srp_status mt_decode(mt_model *m, const uint32_t *tgt, const size_t *tgt_len, size_t tgt_tokens,
                     int training, const float **logits);
/* dlogits: [batch][tgt_tokens][MT_VOCAB] of the last decode; 0 in padded
 * rows is expected (the blocks ignore them anyway). Every parameter
 * gradient accumulates. */
srp_status mt_backward(mt_model *m, const float *dlogits);

/* The model's lists (layers.h): params (the optimizer's and the gradient
 * norm's order: encoder.wte, encoder.wpe, decoder.wte, decoder.wpe,
 * every linear as mt_linears orders them, the blocks' LayerNorms and the
 * final ones; a tied table is one tensor, shared.wte, in encoder.wte's
 * place), state_refs (for checkpoints: the layers' own), linears
 * (encoder.blocks.<l>, decoder.blocks.<l>, head unless MT_TIE_ALL). */
srp_status mt_model_params(mt_model *m, srp_param_list *list);
srp_status mt_model_state_refs(mt_model *m, srp_tensor_list *list);
const ex_linear_names *mt_linears(const mt_model *m);
/* The watched attentions, enc_layers + 2 dec_layers of them: the
 * encoder's self-attentions, then the decoder's self-attentions, then
 * its cross-attentions (NULL out of range). */
size_t mt_attention_count(const mt_model *m);
srp_attention *mt_attention_at(mt_model *m, size_t layer);

/* Cached decoding (srp_block_decode): the decoder's eval forward one
 * position at a time against the memory of the model's last mt_encode
 * (in eval), each decoder block's keys and values kept, for up to
 * max_batch sequences of up to max_tgt + 1 positions. mt_decoder_start
 * takes that memory (its batch of sequences) and empties the caches;
 * mt_decoder_step feeds tokens [batch] at position mt_decoder_length and
 * gives that position's logits [batch][MT_VOCAB], those of mt_decode in
 * eval over the positions so far (within rounding), valid until the next
 * call; mt_decoder_select makes sequence i old sequence rows[i] (beam
 * search: rows may repeat, batch may change; srp_block_cache_select). The
 * weights are taken as they are at the start. It refers to the model
 * (destroy it first). Errors: the library's (a full decoder, a batch
 * other than the sequences': SRP_ERR_SHAPE; a step before a start:
 * SRP_ERR_ORDER); after an error mid-stack, start again. */
typedef struct mt_decoder mt_decoder;
srp_status mt_decoder_create(mt_decoder **out, mt_model *m, size_t max_batch);
void mt_decoder_destroy(mt_decoder *d);
srp_status mt_decoder_start(mt_decoder *d);
size_t mt_decoder_length(const mt_decoder *d);
srp_status mt_decoder_step(mt_decoder *d, const uint32_t *tokens, size_t batch,
                           const float **logits);
srp_status mt_decoder_select(mt_decoder *d, const size_t *rows, size_t batch);

#endif
