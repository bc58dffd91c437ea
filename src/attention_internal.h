/* Private to attention.c and entropy.c: the attention module's state. */
#ifndef SRP_ATTENTION_INTERNAL_H
#define SRP_ATTENTION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Shapes whose plans a module keeps: training and evaluation batches, say. */
#define SRP_ATTENTION_PLAN_SHAPES 4

typedef struct {
    size_t batch, tokens; /* 0: unused */
    uint64_t last_used;
    /* forward: S = scale Q K^T, O = A V; backward: dV = A^T dO, dA = dO V^T,
     * dQ = scale dS K, dK = scale dS^T Q */
    srp_bgemm *qk, *av, *dv, *da, *dq, *dk;
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
};

#endif
