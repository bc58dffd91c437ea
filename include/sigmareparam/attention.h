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
 * any thread count); eval forwards apply none and draw nothing. */
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
} srp_attention_config;

typedef struct srp_attention srp_attention;

SRP_API srp_attention_config srp_attention_config_default(size_t dim, size_t heads);
/* Workspace for max_batch x max_tokens is allocated here; forward and
 * backward allocate nothing. dim must be a multiple of heads; dropout in
 * [0, 1) (with dropout > 0, a second [B][H][T][T] array: A after it). */
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

/* The random state of the attention dropout: one draw per training forward
 * with dropout > 0. It is seeded at create from `seed` (after the linears'
 * seeds, which it does not change); save and restore it with a checkpoint
 * so that a resumed run draws the same masks (srp_block_state_refs lists
 * it). NULL for NULL. */
SRP_API srp_rng *srp_attention_dropout_rng(srp_attention *a);

/* The fused qkv linear; NULL unless qkv_sigma is SRP_QKV_SIGMA_FUSED. */
SRP_API srp_linear *srp_attention_qkv(srp_attention *a);
/* The input projections in the order of their columns of the [q | k | v]
 * row: 1, 2 or 3 of them (qkv_sigma), named "qkv"; "qk", "v"; or "q", "k",
 * "v" (name may be NULL). NULL for i out of range. */
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
 * of srp_attention_in_proj, by qkv_sigma), then the output projection under
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
 * mean and the min row entropy over batch and queries. Either pointer may
 * be NULL. Before any forward, or with track_entropy = 0: SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_attention_entropy(const srp_attention *a, float *mean_per_head,
                                         float *min_per_head);
/* The same divided by log(T) (1 = uniform attention); when causal, each
 * row is divided by the log of its number of unmasked keys, and rows with
 * one key (entropy 0 of 0) are left out. */
SRP_API srp_status srp_attention_entropy_normalized(const srp_attention *a, float *mean_per_head,
                                                    float *min_per_head);
/* Theorem 3.1 of the paper for the last forward's input, per head, the
 * minimum over the batch: no row of the attention can have a lower entropy,
 * and no entropy srp_attention_entropy measured is lower either.
 * s = ||M_h||_2 ||X~ X~^T||_2 with M_h = Q~_h^T K~_h / sqrt(dh), where
 * Q~_h = [W_hat_q,h | b_q,h] and X~ = [X | 1], all as they were in the last
 * forward (the weights are copied then, so an optimizer step in between
 * does not matter). The norms come from LAPACK's symmetric eigensolver,
 * raised by its error bound; the result is then lowered by proven margins
 * for the float rounding of the forward's logits and softmax (about 1e-6
 * nats at small s; see entropy.c), so that it is a bound on the measured
 * entropies too, not only on exact ones. This holds for the fp32 forward.
 *
 * Causal attention: the bound is on the MEAN row entropy (what
 * srp_attention_entropy's mean reports), not on the minimum: the first row
 * has one key and entropy 0, so the minimum bound is 0. Derivation. The
 * theorem rests on one fact: a logit row of 2-norm at most s has entropy
 * at least f(s, n), n its number of keys (srp_entropy_lower_bound; the
 * spike row attains it). Row i of the full logits is z = x~_i^T M X~^T, so
 * ||z|| <= ||x~_i|| ||M|| ||X~|| <= ||M|| ||X~ X~^T|| = s. A causal row i
 * is the softmax over the first k = i + 1 entries of z, a sub-vector, so
 * its norm is at most ||z|| <= s too, and its entropy is >= f(s, k). The
 * mean over the T rows is then >= (1/T) sum_{k=1..T} f(s, k), with f(s, 1)
 * = 0; with s the largest over the batch, it bounds every sequence's mean
 * and so the batch mean. The float margins are those above, each taken at
 * T >= k (they grow with the row length).
 *
 * NaN/Inf in the input or weights: SRP_ERR_NUMERIC. Allocates nothing;
 * costs a Gram matrix of min(T, D+1) rows and its eigenvalues per example:
 * compute it every so many steps, not every step. */
SRP_API srp_status srp_attention_entropy_bound(srp_attention *a, float *bound_per_head);
/* The bound as a function, for a given s and T (exposed for tests/tools). */
SRP_API double srp_entropy_lower_bound(double s, size_t tokens);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_ATTENTION_H */
