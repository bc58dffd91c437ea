/* Private to attention.c and entropy.c: the attention module's state. */
#ifndef SRP_ATTENTION_INTERNAL_H
#define SRP_ATTENTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Shapes whose plans a module keeps: training and evaluation batches, say. */
#define SRP_ATTENTION_PLAN_SHAPES 4

typedef struct {
    size_t batch, tokens; /* 0: unused; tokens: the queries */
    uint64_t last_used;
    /* forward: S = scale Q K^T, O = A V; backward: dV = A^T dO, dA = dO V^T,
     * dQ = scale dS K, dK = scale dS^T Q */
    srp_bgemm *qk, *av, *dv, *da, *dq, *dk;
    size_t keys; /* the keys: tokens, or the memory's length (cross-attention) */
} srp_attention_plans;

struct srp_attention {
    size_t dim, heads, head_dim;
    int causal, track_entropy;
    size_t max_batch, max_tokens;
    /* The projections of x to the [q | k | v] row, by qkv_sigma: qkv (one
     * linear D -> 3D); qk (D -> 2D) and v; or q, k and v (D -> D each).
     * in_proj[i] writes the columns from in_col[i] on. */
    srp_qkv_sigma qkv_sigma;
    size_t n_in;
    srp_linear *in_proj[3];
    size_t in_col[3];
    srp_linear *proj;

    /* The last forward. */
    size_t batch, tokens;
    int have_forward;
    srp_call_order order; /* which forward the backward may differentiate */
    float *x;       /* [B][T][D] copy of the input */
    float *qkv_out; /* [B][T][3D]: [q | k | v] per token */
    float *att;     /* [B][H][T][T] softmax probabilities */
    float *o_cat;   /* [B][T][D] heads' outputs side by side: proj's input */

    /* Attention dropout (attention.h): the rate, the random state, and the
     * last forward's key (its mask, recomputed by the backward) and A
     * after the mask ([B][H][T][T], allocated with dropout > 0). */
    float dropout;
    srp_rng dropout_rng;
    int dropped; /* the last forward applied the mask */
    uint64_t dropout_key;
    float *att_drop;

    /* Per (b, h) pair of the last forward: sums and minima of the row
     * entropies, raw and divided by log(keys); reduced per head on demand. */
    double *pair_sum, *pair_sum_norm;
    float *pair_min, *pair_min_norm;
    double *inv_log_keys; /* [max_tokens + 1]: 1 / log(k), 0 for k < 2 */

    /* Backward workspaces. */
    float *d_ocat; /* [B][T][D] */
    float *d_qkv;  /* [B][T][3D] */
    float *d_att;  /* [B][H][T][T]: dA, then dS */

    /* The six batched products of the core, per (batch, tokens) shape met
     * (attention.c); built on first use of a shape. */
    srp_attention_plans plans[SRP_ATTENTION_PLAN_SHAPES];
    uint64_t plan_clock; /* for least-recently-used replacement */
    /* The plans of the prepared forward. */
    srp_attention_plans *fwd_plans;

    /* What the bound needs from the last forward: the q and k weight rows
     * ([2D][D]: q's, then k's) and biases ([2D]), and the gamma / sigma of
     * the linears they came from. */
    float *fwd_wqk, *fwd_bqk;
    float fwd_scale_q, fwd_scale_k;

    /* Entropy-bound workspaces (entropy.c), in double. */
    double *bound_x;      /* [T][D + 1]: X~ of one example */
    double *bound_gram;   /* [gram_n][gram_n] */
    double *bound_vecs;   /* eigenvalues [bound_vec_len], then LAPACK's work [3 bound_vec_len] */
    double *bound_qk;     /* Q~, K~ of one head: [2][dh][D + 1]; G_q, G_k and two more [dh][dh] */
    size_t gram_n;        /* min(max_tokens, D + 1) */
    size_t bound_vec_len; /* max(gram_n, dh) */

    /* Cross-attention and padding masks (attention.h). With cross, q
     * sits in qkv_out and dq in d_qkv ([B][T][D], rows D apart), k and v
     * in kv_out and their gradients in d_kv; in_col[] are then the
     * projections' columns of a virtual [q | k | v] row (q's linear at 0,
     * the memory's from D on), which is what copy_qk_weights reads. */
    int cross;
    size_t max_keys;      /* the most keys: max_tokens, or the memory's maximum */
    size_t keys;          /* the last forward's keys: tokens, or the memory's length */
    float *mem;           /* [B][Tk][D] copy of the memory (cross) */
    float *kv_out, *d_kv; /* [B][Tk][2D]: [k | v] per memory token, and its gradient (cross) */
    int masked;           /* the last forward had key lengths */
    size_t *key_len;      /* [max_batch]: those lengths */
    float *dy_masked;     /* [B][T][D]: dy with the padded query rows zeroed (self, masked) */
    double *bound_g;      /* [max_batch]: each example's input factor of s (entropy.c) */
};

/* The keys that query row r of example b attends to in the last forward:
 * its causal prefix, cut at the example's key length when masked; 0 for a
 * padded query row of a masked self-attention (its weights are all 0). */
size_t srp_attention_row_keys(const srp_attention *a, size_t b, size_t r);

/* The forward and backward in halves, for a module built around the
 * attention (the block) that checks all its layers before it changes any;
 * srp_attention_forward/_backward are these in a row, after their argument
 * and order checks.
 * forward_prepare (batch, tokens within the maxima): the plans for the
 * shape (built on first use: it may allocate) and every linear's power
 * step into scratch; nothing of the module changes. forward_compute,
 * after it: y, and every activation the backward needs; from its start
 * the module has no forward to differentiate; SRP_ERR_NUMERIC when y is
 * not finite (no forward pending then). forward_commit, once the caller
 * accepts y: the linears' steps, the bound's copy of the weights, the
 * dropout's draw, the order; it cannot fail. */
srp_status srp_attention_forward_prepare(srp_attention *a, size_t batch, size_t tokens,
                                         int training);
srp_status srp_attention_forward_compute(srp_attention *a, const float *x, size_t batch,
                                         size_t tokens, float *y, int training);
void srp_attention_forward_commit(srp_attention *a, int training);
/* backward_prepare, for the last forward (have_forward set; the order rule
 * is the caller's): dx (may be NULL) and every gradient into the linears'
 * scratch, checked; no gradient changes. backward_commit adds them in and
 * consumes the forward; it cannot fail. */
srp_status srp_attention_backward_prepare(srp_attention *a, const float *dy, float *dx);
void srp_attention_backward_commit(srp_attention *a);
/* The same halves for padding masks and cross-attention (the block's
 * encoder and decoder layers): prepare for keys keys (memory_tokens, or
 * tokens); compute with memory (NULL for self-attention) and key_len
 * (NULL: none; checked by the caller); backward_prepare_cross with
 * dmemory (may be NULL). With keys = tokens and NULL, these are the calls
 * above. */
srp_status srp_attention_forward_prepare_keys(srp_attention *a, size_t batch, size_t tokens,
                                              size_t keys, int training);
srp_status srp_attention_forward_compute_masked(srp_attention *a, const float *x,
                                                const float *memory, size_t batch, size_t tokens,
                                                size_t keys, const size_t *key_len, float *y,
                                                int training);
srp_status srp_attention_backward_prepare_cross(srp_attention *a, const float *dy, float *dx,
                                                float *dmemory);

/* Cached decoding (attention_decode.c) in the same halves, for the block.
 * decode_check: the arguments srp_attention_decode refuses besides NULL
 * (another module's cache, batch 0, above the cache's max_batch or not its
 * sequences' count, a cross-attention's cache without a memory, a full
 * cache); nothing changes. decode_compute, after
 * it: y, and the new position's [q | k | v] into the cache's next slot,
 * which does not count yet (at position 0 it first takes the linears' eval
 * power steps, failing with SRP_ERR_NUMERIC on a zero or non-finite sigma
 * or gamma); y may be x; y is not checked. decode_commit, once the caller
 * accepts y: the position counts; it cannot fail. */
srp_status srp_attention_decode_check(const srp_attention *a, const srp_attention_cache *c,
                                      size_t batch, const char *call);
srp_status srp_attention_decode_compute(srp_attention *a, srp_attention_cache *c, const float *x,
                                        size_t batch, float *y);
void srp_attention_decode_commit(srp_attention_cache *c, size_t batch);
/* A cross-attention cache's memory in the same halves (the block sets its
 * cross-attention's): memory_check refuses what
 * srp_attention_cache_set_memory refuses besides NULL and NaN (a
 * self-attention's cache, sizes, lengths); memory_set, after it: NaN in
 * memory or a bad scale, the cache as it was; the memory's keys and values
 * projected and kept, the length 0 (an overflow there: SRP_ERR_NUMERIC and
 * the cache empty, as after a reset). */
srp_status srp_attention_memory_check(const srp_attention_cache *c, size_t batch,
                                      size_t memory_tokens, const size_t *memory_key_len,
                                      const char *call);
srp_status srp_attention_memory_set(srp_attention_cache *c, const float *memory, size_t batch,
                                    size_t memory_tokens, const size_t *memory_key_len,
                                    const char *call);
/* Row selection in the same halves: select_check refuses what
 * srp_attention_cache_select refuses besides NULL (nothing changes);
 * select_apply moves the rows (a cache that holds no sequences yet, a
 * block's self-attention before its first position, stays as it is); it
 * cannot fail. */
srp_status srp_attention_cache_select_check(const srp_attention_cache *c, const size_t *rows,
                                            size_t batch, const char *call);
void srp_attention_cache_select_apply(srp_attention_cache *c, const size_t *rows, size_t batch);

#endif
