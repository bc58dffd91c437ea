/* A transformer block: sigmaReparam attention and a GELU MLP with
 * residuals. Part of <sigmareparam.h>; include that.
 *
 * x, y: [B][T][D]. attn is srp_attention (attention.h), fc1 (D -> mlp_dim)
 * and fc2 (mlp_dim -> D) are srp_linear, GELU the exact one (nn.h), ln1 and
 * ln2 srp_layernorm (layernorm.h). By norm placement:
 *     none:     mid = x + attn(x);          y = mid + fc2(gelu(fc1(mid)))
 *     pre-LN:   mid = x + attn(ln1(x));     y = mid + fc2(gelu(fc1(ln2(mid))))
 *     post-LN:  mid = ln1(x + attn(x));     y = ln2(mid + fc2(gelu(fc1(mid))))
 * (pre-LN is timm's ViT and GPT-2; post-LN the original Transformer; none
 * the paper's sigmaReparam without LayerNorm.)
 *
 * A decoder block (cfg.cross = 1, the original Transformer's decoder
 * layer) has a cross-attention xattn (attention.h, cfg.cross: q from the
 * stream, k and v from an encoder's memory [B][Tk][D]) between the
 * self-attention (causal when cfg.causal) and the MLP, with its own
 * LayerNorm lnc ("norm_cross"):
 *     none:     mid = x + attn(x);        cmid = mid + xattn(mid, mem);
 *               y = cmid + mlp(cmid)
 *     pre-LN:   mid = x + attn(ln1(x));   cmid = mid + xattn(lnc(mid), mem);
 *               y = cmid + mlp(ln2(cmid))
 *     post-LN:  mid = ln1(x + attn(x));   cmid = lnc(mid + xattn(mid, mem));
 *               y = ln2(cmid + mlp(cmid))
 * (mlp(.) = fc2(gelu(fc1(.)))). Its projections are sigmaReparam linears
 * made from the qkv and proj configs: "cross_attn.q" and "cross_attn.kv"
 * (qkv_sigma FUSED: k and v under one sigma) or "cross_attn.k",
 * "cross_attn.v" (SEPARATE), and "cross_attn.proj"; attn_dropout and
 * drop path act on it as on the self-attention.
 *
 * Padding masks (srp_block_forward_masked, and the key lengths of
 * srp_block_forward_cross): key_len[b] in 1..tokens marks positions
 * >= key_len[b] of sequence b as padding. The self-attention masks them
 * as keys (attention.h: exactly 0 weight) and as queries; the residuals,
 * LayerNorms, the cross-attention and the MLP still run on every position
 * (they act per position, so no real position reads a padded one), and
 * the block then sets y's padded rows to 0. So the block's function does
 * not depend on x's padded rows, and its backward ignores dy's padded
 * rows: dx is 0 there and no parameter gradient takes anything from them,
 * whatever the loss put there. memory_key_len masks the memory's padding
 * as keys of the cross-attention (dmemory is 0 in those rows). The computation is the one
 * the example models make with the separate layers, call for call, so a
 * model moves to the block with the same bits (the library's tests check it).
 *
 * Regularizers, each off by default and applied in training forwards only:
 *  - attention dropout on A after the softmax (attention.h; the entropies
 *    stay the softmax's);
 *  - dropout on the MLP's output, fc2(.) m / (1 - p), as timm's Mlp drop;
 *  - drop path (stochastic depth, as DeiT and timm's DropPath): per
 *    example, each branch (the attention's, the MLP's) is dropped with
 *    probability p and scaled by 1 / (1 - p) when kept:
 *    mid = x + s_b attn(.), s_b in {0, 1 / (1 - p)}; a decoder block's
 *    cross-attention branch likewise.
 * Their masks come from 64-bit keys drawn, one per mask and training
 * forward, from a random state (srp_rng) the block keeps, and from each
 * element's index: the same masks for any thread count, recomputed by the
 * backward. The block's state refs list that state (and the attention's),
 * so a resumed run draws the same masks. Per training forward, in order:
 * the MLP dropout's key (if mlp_dropout > 0), then the attention branch's
 * and the MLP branch's drop-path keys (if drop_path > 0); the attention
 * draws its own key from its own state. A decoder block draws one more,
 * last: the cross-attention branch's drop-path key (the cross-attention's
 * dropout draws from its own state). An element (example) i of a mask
 * with key k is kept when (h >> 11) 2^-53 >= p, h = splitmix64's output
 * mix of k + (i + 1) 0x9E3779B97F4A7C15.
 *
 * Memory: the block owns its layers and every activation its backward
 * needs, for max_batch x max_tokens, taken at create; forward and backward
 * allocate nothing (but the attention's plans at the first forward of a
 * shape, attention.h). Parameter gradients accumulate (+=). */
#ifndef SIGMAREPARAM_BLOCK_H
#define SIGMAREPARAM_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/attention.h"
#include "sigmareparam/core.h"
#include "sigmareparam/layernorm.h"
#include "sigmareparam/linear.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SRP_NORM_NONE = 0, /* no LayerNorm (sigmaReparam alone) */
    SRP_NORM_PRE,      /* LayerNorm before each branch (default) */
    SRP_NORM_POST      /* LayerNorm after each residual sum */
} srp_norm_placement;

typedef struct {
    size_t dim, heads, mlp_dim;
    srp_norm_placement norm; /* default SRP_NORM_PRE */
    float norm_eps;          /* default 1e-5 (torch.nn.LayerNorm's; timm's ViT: 1e-6) */
    int causal;              /* default 0 */
    int track_entropy;       /* default 1 (srp_attention_config) */
    srp_qkv_sigma qkv_sigma; /* default SRP_QKV_SIGMA_FUSED */
    /* The linears' mode, init, bias, gamma_init and power_iters, used as
     * given; their sizes are set by the block. qkv's and proj's seeds are
     * not read (the attention draws them from attn_seed, attention.h);
     * fc1's and fc2's are used as given. */
    srp_linear_config qkv, proj, fc1, fc2;
    /* The regularizers' rates, each in [0, 1); default 0 (off). */
    float attn_dropout, mlp_dropout, drop_path;
    /* Seeds: the attention's (its linears' init and its dropout's state),
     * and the block's regularizer state (mlp_dropout, drop_path). Set
     * together by srp_block_config_seed; the defaults are its seed 0. */
    uint64_t attn_seed, dropout_seed;
    /* The LayerNorms' names in the lists, under the block's prefix; default
     * "norm1" and "norm2" (timm), and a decoder block's "norm_cross".
     * Copied at create. */
    const char *norm1_name, *norm2_name, *norm_cross_name;
    /* A decoder block (default 0): a cross-attention between the
     * self-attention and the MLP (the top of the file), through
     * srp_block_forward_cross and srp_block_backward_cross only; its
     * memory has up to max_memory_tokens positions (0, the default:
     * max_tokens); cross_seed draws its linears' initial weights and its
     * dropout's state (as attn_seed the self-attention's). */
    int cross;
    size_t max_memory_tokens;
    uint64_t cross_seed;
} srp_block_config;

typedef struct srp_block srp_block;

SRP_API srp_block_config srp_block_config_default(size_t dim, size_t heads, size_t mlp_dim);
/* attn_seed, fc1.seed, fc2.seed, dropout_seed and cross_seed: five draws,
 * in that order, of an srp_rng seeded with seed. Two blocks from one config share
 * their initial weights unless their seeds differ. A model that draws its
 * layers' seeds from its own generator sets the fields itself instead. */
SRP_API void srp_block_config_seed(srp_block_config *cfg, uint64_t seed);

/* Errors: NULL; dim, heads, mlp_dim, max_batch or max_tokens 0; dim not a
 * multiple of heads; sizes that overflow; an unknown norm or qkv_sigma; a
 * rate outside [0, 1); norm_eps not finite and > 0; a NULL, empty, too
 * long (over 64 bytes) or repeated norm name (with a norm; with cross,
 * norm_cross_name too); cross with SRP_QKV_SIGMA_QK_V; a bad linear
 * config: SRP_ERR_INVALID_ARG (with a detail, srp_last_error_detail). */
SRP_API srp_status srp_block_create(srp_block **out, const srp_block_config *cfg, size_t max_batch,
                                    size_t max_tokens);
SRP_API void srp_block_destroy(srp_block *b);

/* x, y: [batch][tokens][dim], both the caller's; y must not overlap x. The
 * block keeps what its backward needs (x itself with pre-LN, which ln1's
 * backward takes). training: SRP_TRAIN (power steps; the regularizers
 * draw and apply their masks) or SRP_EVAL (no state changes, no
 * regularizer). Every layer is checked before any changes: on any error
 * no parameter, u, v, sigma, gamma or random state has changed.
 * Errors: NULL: SRP_ERR_INVALID_ARG; batch or tokens 0 or above the
 * maxima given at create: SRP_ERR_SHAPE; a linear's non-finite or zero
 * sigma or non-finite gamma: SRP_ERR_NUMERIC before anything runs (the
 * last forward can still be differentiated); NaN or Inf in x, in another
 * parameter, or from an overflow on the way: SRP_ERR_NUMERIC, and the
 * activations were overwritten: until the next successful forward the
 * backward returns SRP_ERR_UNSUPPORTED (as the attention's, attention.h). */
SRP_API srp_status srp_block_forward(srp_block *b, const float *x, size_t batch, size_t tokens,
                                     float *y, int training);
/* srp_block_forward with padding: key_len [batch], each in 1..tokens, or
 * NULL (the same bits as srp_block_forward). The top of the file says what
 * it masks (y's padded rows are 0). A length of 0 or above tokens:
 * SRP_ERR_INVALID_ARG, nothing changed. srp_block_backward differentiates
 * it. A decoder block refuses this and srp_block_forward
 * (SRP_ERR_UNSUPPORTED). */
SRP_API srp_status srp_block_forward_masked(srp_block *b, const float *x, size_t batch,
                                            size_t tokens, const size_t *key_len, float *y,
                                            int training);
/* The decoder block's forward (cfg.cross): x, y: [batch][tokens][dim] with
 * key_len [batch] (may be NULL) as srp_block_forward_masked; memory:
 * [batch][memory_tokens][dim], the encoder's output (copied), with
 * memory_key_len [batch], each in 1..memory_tokens (may be NULL).
 * Errors as srp_block_forward_masked's, and: memory NULL:
 * SRP_ERR_INVALID_ARG; memory_tokens 0 or above max_memory_tokens:
 * SRP_ERR_SHAPE; a memory length of 0 or above memory_tokens:
 * SRP_ERR_INVALID_ARG. A block without cfg.cross: SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_block_forward_cross(srp_block *b, const float *x, size_t batch,
                                           size_t tokens, const size_t *key_len,
                                           const float *memory, size_t memory_tokens,
                                           const size_t *memory_key_len, float *y, int training);
/* Backward of the last forward. dy, dx: [batch][tokens][dim] of that
 * forward; dx is overwritten and may be dy (in place, as a model's
 * residual stream). Every parameter gradient of the block accumulates.
 * The order rule of linear.h: before any forward or after a failed one:
 * SRP_ERR_UNSUPPORTED; two training forwards since the last backward, an
 * eval forward after a training one, a second backward of one forward, a
 * retry after SRP_ERR_ORDER: SRP_ERR_ORDER, nothing changed. NaN or Inf in
 * dy, or a non-finite gradient on the way: SRP_ERR_NUMERIC, no parameter
 * gradient has changed (dx may have been written), and the backward may
 * be retried. */
SRP_API srp_status srp_block_backward(srp_block *b, const float *dy, float *dx);
/* The backward of srp_block_forward_cross, with srp_block_backward's rules
 * (a decoder block refuses srp_block_backward, a plain block this:
 * SRP_ERR_UNSUPPORTED): dmemory [batch][memory_tokens][dim] is
 * overwritten with the memory's gradient (0 in its masked rows); a model
 * adds the gradients of the blocks that read one memory. No argument may
 * be NULL. */
SRP_API srp_status srp_block_backward_cross(srp_block *b, const float *dy, float *dx,
                                            float *dmemory);
SRP_API void srp_block_zero_grad(srp_block *b);

/* The parts. The attention, for its per-head entropies and their bound
 * (srp_attention_entropy, _entropy_normalized, _entropy_bound). */
SRP_API srp_attention *srp_block_attention(srp_block *b);
/* A decoder block's cross-attention (its entropies and bound the same
 * way); NULL without cfg.cross. */
SRP_API srp_attention *srp_block_cross_attention(srp_block *b);
/* The linears, in this order: the attention's input projections (1 to 3,
 * by qkv_sigma), its output projection, (a decoder block's cross-attention
 * projections,) fc1, fc2; named "attn.qkv" (or "attn.qk", "attn.v"; or
 * "attn.q", "attn.k", "attn.v"), "attn.proj", ("cross_attn.q",
 * "cross_attn.kv" or "cross_attn.k", "cross_attn.v", "cross_attn.proj",)
 * "mlp.fc1", "mlp.fc2" (name may be NULL). NULL for i out of range. */
SRP_API size_t srp_block_linear_count(const srp_block *b);
SRP_API srp_linear *srp_block_linear(srp_block *b, size_t i, const char **name);
/* The LayerNorms: ln1 (i = 0), ln2 (i = 1) and a decoder block's lnc
 * (i = 2) under their configured names; none with SRP_NORM_NONE. NULL for
 * i out of range. */
SRP_API size_t srp_block_norm_count(const srp_block *b);
SRP_API srp_layernorm *srp_block_norm(srp_block *b, size_t i, const char **name);
/* The regularizers' random state (mlp_dropout and drop_path draws). */
SRP_API srp_rng *srp_block_dropout_rng(srp_block *b);
SRP_API size_t srp_block_dim(const srp_block *b);
SRP_API srp_norm_placement srp_block_norm_placement(const srp_block *b);

/* Appends every trainable tensor under "prefix.": the linears' in the
 * order of srp_block_linear (srp_linear_params: "prefix.attn.qkv.weight",
 * ".bias", ".gamma", ...), then the LayerNorms' ("prefix.norm1.weight",
 * ".bias", ..., "prefix.norm_cross.weight"; kind SRP_PARAM_NORM). Errors as srp_param_list_add (a
 * name longer than SRP_TENSOR_MAX_NAME: SRP_ERR_INVALID_ARG); the entries
 * appended before an error stay. */
SRP_API srp_status srp_block_params(srp_block *b, const char *prefix, srp_param_list *list);
/* Appends the block's whole state, as srp_block_params orders it: each
 * linear's srp_linear_state_refs (weight, bias, and unless in NONE mode
 * gamma, u, v, sigma), each LayerNorm's weight and bias; then, only where
 * a regularizer is on, the random states as uint64 [4]:
 * "prefix.attn.dropout_rng" (attn_dropout > 0), a decoder block's
 * "prefix.cross_attn.dropout_rng" (attn_dropout > 0) and
 * "prefix.dropout_rng" (mlp_dropout or drop_path > 0). A checkpoint of them restores the block
 * bit for bit; load between a backward and the next forward. */
SRP_API srp_status srp_block_state_refs(srp_block *b, const char *prefix, srp_tensor_list *list);

/* Cached (incremental) decoding of a causal block, one new position of
 * each of `batch` sequences per call: the attention's keys and values in
 * its cache (srp_attention_decode, attention.h, whose rules hold here:
 * eval weights taken at position 0, reset after they change, the block's
 * state untouched); LayerNorm and the MLP act per position, so they need
 * none. After positions 0..t-1, decoding x_t gives row t of
 * srp_block_forward in SRP_EVAL over x_0..x_t, for every norm placement,
 * within about 1e-6 relative. A stack of blocks decodes block by block,
 * each with its own cache.
 *
 * A causal decoder block (cfg.cross) decodes the same way against a
 * memory: srp_block_cache_set_memory projects the memory's keys and values
 * for the cross-attention once (srp_attention_cache_set_memory) and starts
 * the sequences; decoding x_t then gives row t of srp_block_forward_cross
 * in SRP_EVAL over x_0..x_t (key_len NULL) and that memory (with its
 * memory_key_len), for every norm placement, within about 1e-6 relative.
 * Each decoder block of a stack sets the same memory (the encoder's
 * output) into its own cache.
 *
 * srp_block_cache_create: the attention's cache (srp_attention_cache_create:
 * its errors, SRP_ERR_UNSUPPORTED for a block that is not causal), a
 * decoder block's cross-attention cache (room for max_batch memories of
 * cfg.max_memory_tokens) and [max_batch] rows of scratch; set_memory,
 * decoding and select allocate nothing. The cache refers to the block:
 * destroy the cache first. reset (which forgets a decoder block's memory
 * too), length and threads as the attention's. */
typedef struct srp_block_cache srp_block_cache;
SRP_API srp_status srp_block_cache_create(srp_block_cache **out, const srp_block *b,
                                          size_t max_batch, size_t max_tokens);
SRP_API void srp_block_cache_destroy(srp_block_cache *c);
SRP_API void srp_block_cache_reset(srp_block_cache *c);
SRP_API size_t srp_block_cache_length(const srp_block_cache *c);
/* A decoder block's cache: memory [batch][memory_tokens][dim] (read, not
 * kept) with memory_key_len [batch] (each in 1..memory_tokens, or NULL),
 * as srp_block_forward_cross takes them. Sets the cross-attention's memory
 * (srp_attention_cache_set_memory) and empties the self-attention's cache:
 * length 0, batch fixed until the next set_memory or reset. Errors as
 * srp_attention_cache_set_memory's, each leaving the cache as it was
 * (NULL, batch or memory_tokens 0, a length of 0 or above memory_tokens:
 * SRP_ERR_INVALID_ARG; batch above max_batch, memory_tokens above
 * cfg.max_memory_tokens: SRP_ERR_SHAPE; NaN or Inf in memory, a zero or
 * non-finite sigma or gamma of the cross-attention: SRP_ERR_NUMERIC), and
 * a block that is not a decoder block: SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_block_cache_set_memory(srp_block_cache *c, const float *memory, size_t batch,
                                              size_t memory_tokens, const size_t *memory_key_len);
/* x, y: [batch][dim]; y may be x. Errors as srp_attention_decode's (the
 * cache as it was): NULL, another block's cache, batch 0:
 * SRP_ERR_INVALID_ARG; batch above max_batch or not the cached sequences'
 * count (a decoder block's: the memory's batch), a full cache:
 * SRP_ERR_SHAPE; a decoder block's cache without a memory (before
 * set_memory, or after reset): SRP_ERR_ORDER; a zero or non-finite sigma
 * or gamma of any linear (at position 0), NaN or Inf in y:
 * SRP_ERR_NUMERIC. */
SRP_API srp_status srp_block_decode(srp_block *b, srp_block_cache *c, const float *x, size_t batch,
                                    float *y);
/* Row selection, for beam search (srp_attention_cache_select): sequence i
 * becomes old sequence rows[i], i in 0..batch-1, in the self-attention's
 * keys and values and a decoder block's memory (keys, values, lengths);
 * rows may repeat and drop sequences, batch (up to max_batch) may differ
 * from the count held and is the count from then on. A decoder block's
 * cache holds its memory's sequences from set_memory on, so beams may be
 * made before the first position (rows {0, 0, 0, 1, 1, 1}: three of each
 * of two sources). A stack selects the same rows in every block's cache.
 * Allocates nothing. Errors, each leaving the cache as it was: NULL, batch
 * 0, rows[i] not below the count held: SRP_ERR_INVALID_ARG; batch above
 * max_batch: SRP_ERR_SHAPE; a cache that holds no sequences (nothing
 * decoded; a decoder block's: no memory): SRP_ERR_ORDER. */
SRP_API srp_status srp_block_cache_select(srp_block_cache *c, const size_t *rows, size_t batch);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_BLOCK_H */
