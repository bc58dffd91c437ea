/* The double-precision reference the tests check the library against: the
 * sigmaReparam linear, the multi-head attention and LayerNorm computed
 * naively in double, the loss that the gradient tests differentiate, and central
 * differences. One copy for every test: a fix lands in one place. */
#ifndef SRP_REFERENCE_MODEL_H
#define SRP_REFERENCE_MODEL_H

#include <stddef.h>

#include "sigmareparam.h"

/* One power step from u0, in the official order: v = normalize(W u0),
 * u1 = normalize(W^T v); returns sigma = v^T W u1. w: [out][in] */
double ref_power_step(const double *w, size_t out, size_t in, const double *u0, double *v,
                      double *u1);

typedef struct {
    size_t in, out;
    int sigma_mode;       /* W_hat = (gamma / sigma) W; otherwise W as is */
    double *w, *b, gamma; /* w: [out][in]; b: zeros for a layer without bias */
    double *u, *v;        /* the forward's power-iteration vectors, held constant */
} ref_linear;

/* A copy of l's parameters, with u, v of the power step that l's next
 * forward takes from its current u. */
void ref_linear_init(ref_linear *L, srp_linear *l);
void ref_linear_free(ref_linear *L);
/* sigma = v^T W u */
double ref_linear_sigma(const ref_linear *L);
/* y = x W_hat^T + b. x: [n][in], y: [n][out] */
void ref_linear_forward(const ref_linear *L, const double *x, size_t n, double *y);

typedef struct {
    size_t B, T, D, H;
    int causal;
    size_t n_in;          /* the input projections, as srp_attention_in_proj */
    ref_linear in_proj[3];
    size_t in_col[3];     /* each one's first column of the [q | k | v] row */
    ref_linear proj;
    /* Attention dropout at a fixed mask: A's multipliers, 0 or 1 / (1 - p),
     * [B][H][T][T]; NULL (ref_attention_init's) for none. Not owned. */
    const double *drop;
    /* Cross-attention (in_proj[0] reads x, the others the memory) with Tk
     * memory tokens; key lengths [B] (NULL: none, ref_attention_init's;
     * not owned), as attention.h defines the masks. Self-attention: Tk = T. */
    int cross;
    size_t Tk;
    const size_t *key_len;
} ref_attention;

/* The attention a as its next forward on batch x tokens will compute it. */
void ref_attention_init(ref_attention *R, srp_attention *a, size_t batch, size_t tokens,
                        int causal);
void ref_attention_free(ref_attention *R);
/* timm's attention (attention.h); ent (may be NULL): [B][H][T] row entropies.
 * x, y: [B][T][D] */
void ref_attention_forward(const ref_attention *R, const double *x, double *y, double *ent);
/* The cross-attention a (cfg.cross) as its next forward on batch x tokens
 * queries and keys memory tokens computes it. */
void ref_attention_init_cross(ref_attention *R, srp_attention *a, size_t batch, size_t tokens,
                              size_t keys);
/* ref_attention_forward with a memory [B][Tk][D] (cross; ignored
 * otherwise) and the key lengths; ent's rows of padded queries are NaN. */
void ref_attention_forward_memory(const ref_attention *R, const double *x, const double *memory,
                                  double *y, double *ent);

/* The mean of x[0..d), and 1 / sqrt(var + eps) of its biased variance
 * into *rstd: LayerNorm's statistics of a row. */
double ref_row_mean(const double *x, size_t d, double eps, double *rstd);
/* torch.nn.LayerNorm(d, eps) over the rows: the biased variance; w, b may
 * be NULL (1 and 0). x, y: [n][d] */
void ref_layernorm_forward(const double *x, const double *w, const double *b, size_t n, size_t d,
                           double eps, double *y);

/* The exact GELU, 0.5 x (1 + erf(x / sqrt 2)). */
double ref_gelu(double x);

/* The transformer block (block.h) in double, at fixed regularizer masks. */
typedef struct {
    size_t B, T, D, M; /* M: the MLP's width */
    srp_norm_placement norm;
    double eps;
    ref_attention att;
    ref_linear fc1, fc2;
    double *ln_w[3], *ln_b[3]; /* ln1, ln2, lnc: [D] each; NULL without LayerNorm */
    /* Multipliers, 0 or 1 / (1 - p), NULL for none; not owned: the MLP
     * dropout's [B][T][D], drop path's on the attention branch, on the
     * MLP branch and on the cross-attention branch [B]. (The attentions'
     * are att.drop and xatt.drop.) */
    const double *mlp_drop, *path_attn, *path_mlp, *path_cross;
    /* Padding (block.h): the self-attention's key lengths are att.key_len
     * (y's padded rows are 0 then). A decoder block: its cross-attention
     * (key lengths xatt.key_len) and the memory [B][xatt.Tk][D] (not
     * owned). */
    int cross;
    ref_attention xatt;
    const double *memory;
} ref_block;

/* The block b as its next forward on batch x tokens computes it, without
 * regularizers (set the masks after). */
void ref_block_init(ref_block *R, srp_block *b, size_t batch, size_t tokens, int causal);
/* The same for a decoder block with memory_tokens memory rows (set the
 * memory after). */
void ref_block_init_cross(ref_block *R, srp_block *b, size_t batch, size_t tokens, int causal,
                          size_t memory_tokens);
void ref_block_free(ref_block *R);
/* x, y: [B][T][D] */
void ref_block_forward(const ref_block *R, const double *x, double *y);

/* The tests' loss: 0.5 |y|^2 + <r, y>, so that dL/dy = y + r. */
double ref_quadratic_loss(const double *y, const double *r, size_t n);

/* grad[i] = central difference of loss(ctx) in p[i], for i < count, with
 * step 1e-6 max(1, |p[i]|); p is restored. */
typedef double (*ref_loss_fn)(void *ctx);
void ref_central_differences(ref_loss_fn loss, void *ctx, double *p, size_t count, double *grad);
/* The same for one float parameter, with step h. */
double ref_central_difference_f(ref_loss_fn loss, void *ctx, float *p, float h);

/* got[0..count) against the central differences of loss(ctx) in p
 * (assert_close_to_double with tol and floor; what names it in a
 * failure). Returns the differences' largest magnitude, the gradient's
 * scale. */
double ref_assert_gradient(ref_loss_fn loss, void *ctx, double *p, size_t count, const float *got,
                           double tol, double floor, const char *what);
/* A linear's dW, db and dgamma against central differences in L's
 * parameters, named "<name> dW" and so on: dW with floor, db at the scale
 * of dW (at least floor; a bias whose gradient is 0, such as the key
 * bias, shows only rounding noise), dgamma with floor 1e-3. */
void ref_assert_linear_gradients(ref_loss_fn loss, void *ctx, ref_linear *L, srp_linear *l,
                                 double tol, double floor, const char *name);

#endif
