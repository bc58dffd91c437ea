/* Multi-head softmax attention with sigmaReparam projections and per-head
 * entropy tracking. Part of <sigmareparam.h>; include that.
 *
 * x: [B][T][D], H heads, dh = D / H, timm layout: qkv is one sigmaReparam
 * linear D -> 3D (one sigma for the fused matrix, as the official ViT) whose
 * output row is [q | k | v]; head h owns columns h*dh .. h*dh+dh-1 of each
 * part. Or, by srp_qkv_sigma, the same row from two or three linears with
 * a sigma each. Per head: S = Q K^T / sqrt(dh), A = softmax_rows(S) (optionally
 * causal), O = A V; y = proj(concat_h O) with proj a sigmaReparam D -> D.
 *
 * The entropy of every attention row, H_i = -sum_j A_ij log A_ij, is computed
 * in the softmax pass as log Z_i - sum_j A_ij (S_ij - m_i) (no log of 0) and
 * reduced per head to the mean and the min over batch and queries of the
 * last forward. Entropy collapse = a head's entropy falling towards 0.
 *
 * Attention dropout (off by default): in a training forward, A is
 * replaced by A m / (1 - p) in O = A V, m_ij ~ Bernoulli(1 - p), as
 * timm's attn_drop; the entropies (and the bound) stay those of the
 * softmax A. The mask comes from one 64-bit key drawn per training forward
 * from the module's own srp_rng and each entry's index (the same mask for
 * any thread count); eval forwards apply none and draw nothing.
 *
 * Padding masks: a key length per sequence, key_len[b] in 1..(keys), for
 * sequences shorter than the batch's (srp_attention_forward_masked,
 * srp_attention_forward_cross). Key j of example b is masked when
 * j >= key_len[b] (on top of the causal mask when causal): its weight is
 * exactly 0 in every row. In a self-attention, query row i >= key_len[b]
 * is padding too: its attention row is all 0, its y row is 0 (not proj's
 * bias) and its dy row is ignored, so its dx row is 0, as are the
 * gradients that reach a masked key. Padded positions of x (and of the
 * memory) still go through the projections: keep them finite (zeros,
 * say). The entropies (mean, min, normalized) are taken over the query
 * rows that attend and their unmasked keys only.
 *
 * Cross-attention (cfg.cross = 1): queries from x [B][Tq][D], keys and
 * values from a memory [B][Tk][D] (Tq != Tk allowed), as in an
 * encoder-decoder's decoder: q = x W_hat_q^T + b_q (a linear D -> D named
 * "q"), [k | v] = memory W_hat_kv^T + b_kv under one sigma (qkv_sigma
 * FUSED: a linear D -> 2D named "kv", k in its first D columns) or under
 * a sigma each (SEPARATE: "k" and "v", D -> D each); QK_V and causal are
 * refused at create. Per head S = Q K^T / sqrt(dh) ([Tq][Tk]), A, O and y
 * as above; key_len masks the memory's padding (every query row attends). */
#ifndef SIGMAREPARAM_ATTENTION_H
#define SIGMAREPARAM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/linear.h"
#include "sigmareparam/lists.h"
#include "sigmareparam/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How many sigmas the projections to q, k and v have. */
typedef enum {
    SRP_QKV_SIGMA_FUSED =
        0,                 /* one linear D -> 3D with one sigma (timm, the official vision code) */
    SRP_QKV_SIGMA_QK_V,    /* q and k share a linear D -> 2D, v has its own D -> D */
    SRP_QKV_SIGMA_SEPARATE /* q, k and v each have a linear D -> D, a sigma and a gamma */
} srp_qkv_sigma;

typedef struct {
    size_t dim, heads;
    int causal;        /* default 0 */
    int track_entropy; /* default 1; 0 skips the entropy (saves a little time) */
    float dropout;     /* on the attention weights, in [0, 1); default 0 (off) */
    /* The official JAX speech code's disjoint_type 0, 1 and 2. Default FUSED. */
    srp_qkv_sigma qkv_sigma;
    /* qkv (for every input projection) and proj: their mode, init, bias,
     * gamma_init and power_iters are used as given; their in/out sizes and
     * seeds are not read (the module sets the sizes from dim and draws the
     * seeds from `seed`). */
    srp_linear_config qkv, proj;
    uint64_t seed;
    /* Cross-attention (default 0): keys and values from a memory, through
     * srp_attention_forward_cross and srp_attention_backward_cross only. */
    int cross;
    /* With cross: the longest memory a forward may pass (its workspace is
     * sized for it); 0 (the default): max_tokens. */
    size_t max_memory_tokens;
} srp_attention_config;

typedef struct srp_attention srp_attention;

SRP_API srp_attention_config srp_attention_config_default(size_t dim, size_t heads);
/* Workspace for max_batch x max_tokens (queries; keys: max_tokens, or
 * cfg.max_memory_tokens for a cross-attention) is allocated here; forward
 * and backward allocate nothing. dim must be a multiple of heads; dropout
 * in [0, 1) (with dropout > 0, a second [B][H][T][Tk] array: A after it);
 * cross with causal or with SRP_QKV_SIGMA_QK_V: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_attention_create(srp_attention **out, const srp_attention_config *cfg,
                                        size_t max_batch, size_t max_tokens);
SRP_API void srp_attention_destroy(srp_attention *a);

/* x, y: [batch][tokens][dim]. batch or tokens above the maxima given at
 * create: SRP_ERR_SHAPE. The input is copied (the backward and the entropy
 * bound use the copy), so x may change after the call: the module keeps
 * all its activations (q, k, v, the attention, the heads' outputs) for its
 * backward, and its input with them, where a linear takes its input again
 * at the backward (linear.h). The first forward at a new (batch, tokens)
 * shape builds the batched products for it (allocates); the module keeps
 * those of its last 4 shapes. qkv and proj are
 * both checked (power step, sigma, gamma) before either changes: on such an
 * error the module is as it was, the last forward's caches included.
 * NaN/Inf in y (from x, or from an overflow of the logits on the way):
 * SRP_ERR_NUMERIC; no parameter, u, v, sigma or gamma has changed, but the
 * activations were overwritten: until the next successful forward the
 * backward, the entropies and the bound return SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_attention_forward(srp_attention *a, const float *x, size_t batch,
                                         size_t tokens, float *y, int training);
/* srp_attention_forward with padding: key_len [batch], each in 1..tokens
 * (the top of the file says what it masks); NULL: no mask, the same bits
 * as srp_attention_forward. A length of 0 or above tokens:
 * SRP_ERR_INVALID_ARG and nothing changes. srp_attention_backward
 * differentiates it. A cross-attention module refuses srp_attention_forward
 * and this (SRP_ERR_UNSUPPORTED). */
SRP_API srp_status srp_attention_forward_masked(srp_attention *a, const float *x, size_t batch,
                                                size_t tokens, const size_t *key_len, float *y,
                                                int training);
/* Cross-attention (cfg.cross): x, y: [batch][tokens][dim] (the queries),
 * memory: [batch][memory_tokens][dim] (keys and values), key_len:
 * [batch], each in 1..memory_tokens, or NULL for none. tokens above
 * max_tokens or memory_tokens above max_memory_tokens: SRP_ERR_SHAPE; a
 * length of 0 or above memory_tokens: SRP_ERR_INVALID_ARG; both inputs
 * are copied; otherwise as srp_attention_forward (errors, the failure
 * rules, the plans kept per (batch, tokens, memory_tokens)). A
 * self-attention module: SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_attention_forward_cross(srp_attention *a, const float *x, size_t batch,
                                               size_t tokens, const float *memory,
                                               size_t memory_tokens, const size_t *key_len,
                                               float *y, int training);
/* Backward of the last forward, whose activations the module keeps. Before
 * any forward: SRP_ERR_UNSUPPORTED. When that forward is not the one meant
 * (two training forwards since the last backward, or an eval forward after
 * the training forward), or was already differentiated (a second backward
 * of one forward, a retry after SRP_ERR_ORDER): SRP_ERR_ORDER and nothing
 * changes; the refusal lasts until the next training forward, as for
 * srp_linear_backward (linear.h). dy: [batch][tokens][dim]; dx (same shape)
 * is overwritten, or skipped when NULL. qkv and proj accumulate their
 * parameter gradients. A non-finite gradient anywhere in the module (NaN or
 * Inf in dy, or an overflow on the way): SRP_ERR_NUMERIC, and no parameter
 * gradient of either layer has changed (dx may have been written). */
SRP_API srp_status srp_attention_backward(srp_attention *a, const float *dy, float *dx);
/* The backward of srp_attention_forward_cross, with the rules of
 * srp_attention_backward: dy, dx: [batch][tokens][dim]; dmemory:
 * [batch][memory_tokens][dim], overwritten (0 in the masked rows); either
 * may be NULL. A self-attention module: SRP_ERR_UNSUPPORTED (and
 * srp_attention_backward refuses a cross-attention module alike). */
SRP_API srp_status srp_attention_backward_cross(srp_attention *a, const float *dy, float *dx,
                                                float *dmemory);

/* The random state of the attention dropout: one draw per training forward
 * with dropout > 0. It is seeded at create from `seed` (after the linears'
 * seeds, which it does not change); save and restore it with a checkpoint
 * so that a resumed run draws the same masks (srp_block_state_refs lists
 * it). NULL for NULL. */
SRP_API srp_rng *srp_attention_dropout_rng(srp_attention *a);

/* The fused qkv linear; NULL unless qkv_sigma is SRP_QKV_SIGMA_FUSED (and
 * the module a self-attention). */
SRP_API srp_linear *srp_attention_qkv(srp_attention *a);
/* The input projections in the order of their columns of the [q | k | v]
 * row: 1, 2 or 3 of them (qkv_sigma), named "qkv"; "qk", "v"; or "q", "k",
 * "v"; for a cross-attention "q", "kv" or "q", "k", "v" (q reads x, the
 * others the memory). name may be NULL. NULL for i out of range. */
SRP_API size_t srp_attention_in_proj_count(const srp_attention *a);
SRP_API srp_linear *srp_attention_in_proj(srp_attention *a, size_t i, const char **name);
SRP_API srp_linear *srp_attention_proj(srp_attention *a);
SRP_API size_t srp_attention_heads(const srp_attention *a);
SRP_API size_t srp_attention_dim(const srp_attention *a);
/* Zeroes the parameter gradients of every projection. NULL: nothing. */
SRP_API void srp_attention_zero_grad(srp_attention *a);

/* Appends the projections' trainable entries to list (lists.h), each as
 * srp_linear_params: the input projections under "prefix.qkv"; or
 * "prefix.qk", "prefix.v"; or "prefix.q", "prefix.k", "prefix.v" (the names
 * of srp_attention_in_proj, by qkv_sigma; "prefix.q", "prefix.kv" for a
 * fused cross-attention), then the output projection under
 * "prefix.proj": "prefix.qkv.weight", "prefix.qkv.bias", "prefix.qkv.gamma",
 * ... Errors as srp_param_list_add; on one, the entries appended before it
 * stay. */
SRP_API srp_status srp_attention_params(srp_attention *a, const char *prefix, srp_param_list *list);
/* The same projections' state, each as srp_linear_state_refs (weight, bias,
 * gamma, u, v, sigma). A checkpoint of them restores the module bit for
 * bit (its activations are not state: the next forward makes them). Load
 * between a backward and the next forward. */
SRP_API srp_status srp_attention_state_refs(srp_attention *a, const char *prefix,
                                            srp_tensor_list *list);

/* Per head (arrays of length heads), in nats, of the last forward: the
 * mean and the min row entropy over batch and queries (those that attend:
 * a padded query row is left out). Either pointer may be NULL. Before any forward, or with track_entropy = 0: SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_attention_entropy(const srp_attention *a, float *mean_per_head,
                                         float *min_per_head);
/* The same divided by log(T) (1 = uniform attention); when causal or
 * masked, each row is divided by the log of its number of unmasked keys,
 * and rows with one key (entropy 0 of 0) are left out. */
SRP_API srp_status srp_attention_entropy_normalized(const srp_attention *a, float *mean_per_head,
                                                    float *min_per_head);
/* Theorem 3.1 of the paper for the last forward's input, per head, the
 * minimum over the batch: no row of the attention can have a lower entropy,
 * and no entropy srp_attention_entropy measured is lower either.
 * s = ||M_h||_2 ||X~ X~^T||_2 with M_h = Q~_h^T K~_h / sqrt(dh), where
 * X~ = [X | 1], Q~_h = [W_hat_q,h | b_q,h] and K~_h = [W_hat_k,h | 0], all
 * as they were in the last forward (the weights are copied then, so an
 * optimizer step in between does not matter). The norms come from LAPACK's
 * symmetric eigensolver, raised by its error bound; the result is then
 * lowered by proven margins for the float rounding of the forward's logits
 * and softmax (about 1e-6 nats at small s; see entropy.c), so that it is a
 * bound on the measured entropies too, not only on exact ones. This holds
 * for the fp32 forward.
 *
 * Why the key bias is left out of K~ (the paper's X~ M X~^T keeps it).
 * Logit i, j is q_i . k_j / sqrt(dh) with q_i = Q~ x~_i and
 * k_j = W_hat_k x_j + b_k, so it is x~_i^T M x~_j + c_i with
 * c_i = q_i . b_k / sqrt(dh): the same for every key j of row i. Softmax
 * ignores a constant added to a row (exp(z_j + c) / sum_l exp(z_l + c) =
 * exp(z_j) / sum_l exp(z_l)), so row i of the attention, and its entropy,
 * is that of z = x~_i^T M X~^T alone, and the theorem applies to z. The
 * shift can only enlarge s: with the bias, ||M|| is that of
 * Q~^T [W_hat_k | b_k], whose columns include those of Q~^T [W_hat_k | 0].
 * (The float logits do include the shift; entropy.c's margins are written
 * so that they hold whatever its size.)
 *
 * Causal attention: the bound is on the MEAN row entropy (what
 * srp_attention_entropy's mean reports), not on the minimum: the first row
 * has one key and entropy 0, so the minimum bound is 0. Derivation. The
 * theorem rests on one fact: a logit row of 2-norm at most s has entropy
 * at least f(s, n), n its number of keys (srp_entropy_lower_bound; the
 * spike row attains it). Row i of the logits is z + c_i 1 with
 * z = x~_i^T M X~^T, and ||z|| <= ||x~_i|| ||M|| ||X~|| <= ||M|| ||X~ X~^T||
 * = s. A causal row i is the softmax over the first k = i + 1 entries, a
 * sub-vector of z shifted by c_i, whose entropy is that of the sub-vector
 * of z, of norm at most ||z|| <= s: so it is >= f(s, k). The mean over the
 * T rows is then >= (1/T) sum_{k=1..T} f(s, k), with f(s, 1) = 0; with s the
 * largest over the batch, it bounds every sequence's mean and so the batch
 * mean. The float margins are those above, each taken at T >= k (they grow
 * with the row length).
 *
 * Padding masks (srp_attention_forward_masked). The bound is the minimum
 * (causal: the mean) over the rows that attend, as the entropies are.
 * Derivation. No logit of an unmasked row i and unmasked key j of example
 * b reads a padded row of x, so row i is a sub-vector of
 * z = x~_i^T M X~_L^T (X~_L: the first L = key_len[b] rows of X~_b),
 * shifted by c_i, with ||z|| <= ||M|| ||X~_L X~_L^T|| = s_b: the padded
 * rows, whatever they hold, do not enter s_b. Without causality the row
 * has L keys: entropy >= f(s_b, L); causal, row i < L has i + 1 keys:
 * entropy >= f(s_b, i + 1). The bound is min_b f(s_b, L_b), or the mean
 * over all unmasked rows sum_b sum_{k=1..L_b} f(s_b, k) / sum_b L_b (each
 * f >= 0 lowers a row's entropy, the weights are the rows counted); a
 * sequence of length 1 makes it 0, as it should (one key, entropy 0).
 *
 * Cross-attention. Logit row i of example b is z + c_i 1 with
 * z = x~_i^T M Mem~_b^T, M = Q~_h^T K~_h / sqrt(dh) as above (K~ from the
 * memory's projection, its bias again only a shift c_i), Mem~_b = [Mem_b | 1]
 * over the memory's first L = key_len[b] rows (the masked ones are cut).
 * ||z|| <= ||x~_i|| ||M|| ||Mem~_b||_2 <= ||M|| g_b with
 * g_b = max_i ||x~_i|| ||Mem~_b||_2: a row of L keys of norm at most
 * s_b = ||M|| g_b, so its entropy is >= f(s_b, L), and the bound is
 * min_b f(s_b, L_b). (Not the paper's square X M X^T: with two inputs the
 * Gram norm ||X~ X~^T|| becomes this product of norms, with the query
 * side's largest row norm rather than its spectral norm, which is
 * tighter and as cheap.) srp_attention_entropy_bound_terms reports
 * x_gram_norm = max_b g_b for a cross-attention (and, with masks,
 * max_b ||X~_L X~_L^T||), s = ||M_h|| x_gram_norm. The float margins of
 * entropy.c hold as they are: eps takes its Frobenius norms from the rows
 * that make q and k (the queries' x, the memory's unmasked rows), and the
 * softmax's margin is taken at the row length Tk >= L.
 *
 * Several shards (data parallel, as the trainers run under MPI): rank r
 * holds n_r sequences of T tokens, computes its entropies and its bound
 * B_r on them, and the ranks reduce. Per head:
 *  - Full attention, the minimum over all ranks' rows: the all-rank minimum
 *    entropy is min_r E_min,r, and B_r <= E_min,r for every r, so
 *    min_r B_r <= min_r E_min,r. Reduce the bounds with MIN, as the
 *    entropies. (min_r B_r is also the bound at the largest s of the ranks:
 *    f falls as s grows.)
 *  - Causal attention, the mean over all ranks' rows: the all-rank mean is
 *    E = sum_r w_r E_r with w_r = n_r / sum_l n_l (every sequence has T
 *    rows), E_r the rank's mean. B_r <= E_r and w_r >= 0, so
 *    sum_r w_r B_r <= E: the shard-size-weighted mean of the ranks' bounds
 *    (with equal shards, the plain mean). The same holds for any weights
 *    w_r >= 0 summing to 1 that the entropy's own reduction uses: reduce
 *    the bound with the entropy's weights.
 *  - Rounding: compute the reduced bound with the same operations, in the
 *    same order, as the reduced entropy (one allreduce of both, or the same
 *    code). Round-to-nearest is monotone, so B_r <= E_r for every r still
 *    gives fl(bound) <= fl(entropy). The minimum rounds nothing.
 *
 * NaN/Inf in the input or weights: SRP_ERR_NUMERIC (srp_last_error_detail
 * says which). A q or k that overflowed to -Inf in a forward that succeeded
 * (y finite) gives the bound 0. Allocates nothing;
 * costs a Gram matrix of min(T, D+1) rows and its eigenvalues per example:
 * compute it every so many steps, not every step. */
SRP_API srp_status srp_attention_entropy_bound(srp_attention *a, float *bound_per_head);
/* The same bound with what it is made of, so that a bound of 0 can be
 * read: per head (arrays of length heads) the bound, s, and ||M_h||_2; and
 * x_gram_norm (one float), the largest ||X~_b X~_b^T||_2 over the batch;
 * s = ||M_h|| x_gram_norm. s and the norms are the upper bounds the bound
 * is computed from (rounded up to float); the bound is f(s', T) minus the
 * softmax's margin, with s' = s (1 + about 1e-6) + the logits' rounding
 * (entropy.c). The bound is below 0.01 nats once s exceeds log T by
 * about 7 to 8 (s = 10 at T = 17, 12 at T = 128): a head whose logits may
 * spread that far. Any output may be NULL.
 * srp_attention_entropy_bound is this with bound_per_head only. */
SRP_API srp_status srp_attention_entropy_bound_terms(srp_attention *a, float *bound_per_head,
                                                     float *s_per_head, float *m_norm_per_head,
                                                     float *x_gram_norm);
/* Theorem 3.1's f(s, T) itself, for s = ||M|| ||X X^T|| (as above) and T
 * keys, before any margin: what the calls above evaluate per head, for a
 * plot or a bound of your own. s < 0 or NaN: NaN; T < 2 or s = Inf: 0. */
SRP_API double srp_entropy_lower_bound(double s, size_t tokens);

/* Cached (incremental) decoding of causal self-attention: one new position
 * of each of `batch` sequences per call, each attending to its own earlier
 * positions, whose keys and values the cache keeps. After positions
 * 0..t-1 were decoded, decoding x_t gives row t of srp_attention_forward
 * in eval over x_0..x_t (the same function; the floats round differently,
 * within about 1e-6 relative), at O(t D) a position instead of a forward
 * over all of them. No dropout, no backward, no entropies: the module's
 * state (u, v, sigma, gamma, its last forward and its backward) is not
 * touched, and the cache is the caller's, one per stream of sequences.
 *
 * And of cross-attention (cfg.cross): srp_attention_cache_set_memory
 * projects a memory's keys and values once and keeps them, with each
 * sequence's key length; decoding x_t then gives row t of
 * srp_attention_forward_cross in eval over that memory (within about 1e-6
 * relative). Cross-attention has no causal mask, so each row depends on
 * its own x_t only; the length still counts the positions decoded (up to
 * max_tokens), as a decoder block's self-attention counts them.
 *
 * The weights are the eval forward's W_hat = gamma / sigma W, sigma from
 * one power step from the stored u (srp_linear_forward in SRP_EVAL),
 * taken at position 0 (cross: at set_memory) and kept for the sequence:
 * after the weights, u, gamma or sigma change (an optimizer step, a
 * checkpoint load), reset the cache (and set the memory again), whose
 * keys and values were made with the old ones.
 *
 * srp_attention_cache_create: room for max_batch sequences of max_tokens
 * positions (a [max_batch][max_tokens][3 dim] array of floats, and little
 * more), independent of the module's own maxima; for a cross-attention,
 * room for max_batch memories of the module's max_memory_tokens (a
 * [max_batch][max_memory_tokens][2 dim] array, and little more). Decoding,
 * set_memory and select allocate nothing. Errors: NULL:
 * SRP_ERR_INVALID_ARG; a module that is neither causal nor a
 * cross-attention: SRP_ERR_UNSUPPORTED; max_batch or max_tokens 0, or
 * sizes past SIZE_MAX bytes or BLAS's int: SRP_ERR_INVALID_ARG. The cache
 * refers to the module: destroy the cache first. A decode (and
 * set_memory) uses the module as a forward does (its linears' scratch, at
 * position 0): not at the same time as another call on the module from
 * another thread. reset: empty again, for new sequences of any batch up
 * to max_batch (a cross-attention's cache forgets its memory too). length:
 * the positions decoded (0 for NULL). */
typedef struct srp_attention_cache srp_attention_cache;
SRP_API srp_status srp_attention_cache_create(srp_attention_cache **out, const srp_attention *a,
                                              size_t max_batch, size_t max_tokens);
SRP_API void srp_attention_cache_destroy(srp_attention_cache *c);
SRP_API void srp_attention_cache_reset(srp_attention_cache *c);
SRP_API size_t srp_attention_cache_length(const srp_attention_cache *c);
/* A cross-attention's cache: memory [batch][memory_tokens][dim] (the
 * encoder's output; read here, not kept), memory_key_len [batch], each in
 * 1..memory_tokens, or NULL (every memory position is a key), as
 * srp_attention_forward_cross takes them. Projects the memory's keys and
 * values (the module's eval scales, taken now and kept), keeps them and
 * the lengths, and starts the cache's sequences: length 0, batch fixed
 * until the next set_memory or reset. Errors, each leaving the cache as it
 * was: NULL, batch or memory_tokens 0, a length of 0 or above
 * memory_tokens: SRP_ERR_INVALID_ARG; batch above the cache's max_batch,
 * memory_tokens above the module's max_memory_tokens: SRP_ERR_SHAPE; a
 * self-attention's cache: SRP_ERR_UNSUPPORTED; NaN or Inf in memory, a
 * zero or non-finite sigma or gamma: SRP_ERR_NUMERIC. Only a projection
 * that overflows float (finite memory and weights) leaves the cache
 * empty, as after a reset (SRP_ERR_NUMERIC too). */
SRP_API srp_status srp_attention_cache_set_memory(srp_attention_cache *c, const float *memory,
                                                  size_t batch, size_t memory_tokens,
                                                  const size_t *memory_key_len);
/* x, y: [batch][dim], position length of each sequence; y may be x. The
 * first call after create or reset fixes batch until the next reset (a
 * cross-attention's: set_memory fixed it). Errors, each leaving the cache
 * as it was: NULL, a cache made for another module, batch 0:
 * SRP_ERR_INVALID_ARG; batch above the cache's max_batch or not the count
 * of the sequences it holds, a full cache (length == max_tokens):
 * SRP_ERR_SHAPE; a cross-attention's cache without a memory (before
 * set_memory, or after reset): SRP_ERR_ORDER; a zero or non-finite sigma
 * or gamma (at position 0), NaN or Inf in y (from x, or an overflow):
 * SRP_ERR_NUMERIC (y may have been written). */
SRP_API srp_status srp_attention_decode(srp_attention *a, srp_attention_cache *c, const float *x,
                                        size_t batch, float *y);
/* Row selection, for beam search: the cache's sequence i becomes its old
 * sequence rows[i], for i in 0..batch-1: its keys and values (self), or
 * its memory's keys, values and key length (cross). rows [batch] may
 * repeat a sequence and leave some out; batch may differ from the count
 * the cache holds (up to max_batch), and is the count from then on; the
 * length is unchanged. Allocates nothing (scratch from create). Errors,
 * each leaving the cache as it was: NULL, batch 0, rows[i] not below the
 * count of sequences the cache holds: SRP_ERR_INVALID_ARG; batch above
 * max_batch: SRP_ERR_SHAPE; a cache that holds no sequences (self:
 * nothing decoded since create or reset; cross: no memory):
 * SRP_ERR_ORDER. */
SRP_API srp_status srp_attention_cache_select(srp_attention_cache *c, const size_t *rows,
                                              size_t batch);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_ATTENTION_H */
