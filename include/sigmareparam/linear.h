/* The sigmaReparam linear layer. Part of <sigmareparam.h>; include that.
 *
 *     W_hat = (gamma / sigma) W        y = x W_hat^T + b
 *
 * W: [out][in] row-major, x: [n][in], y: [n][out]. sigma comes from the
 * power iteration (see spectral.h) on W itself; gamma is a learned scalar.
 * Semantics of SNLinear in apple/ml-sigma-reparam vision/layers.py:
 *  - training forward: power_iters steps update u (and v); sigma is taken
 *    from them and u, v, sigma of this forward are kept for its backward;
 *  - eval forward: one step from the stored u into scratch; the state (W,
 *    b, gamma, u, v) does not change, and repeated calls give the same
 *    bits. Like any forward it becomes "the last forward": srp_linear_sigma
 *    reports its sigma and a backward differentiates it;
 *  - backward treats u, v as constants, so dsigma/dW = v u^T:
 *        dx     = (gamma/sigma) dy W
 *        dgamma = s / sigma,                         s = <dy^T x, W>
 *        dW     = (gamma/sigma) dy^T x - (gamma s / sigma^2) v u^T
 *        db     = sum_n dy
 *    W_hat is never formed: gamma/sigma rides in the GEMM's alpha and the
 *    sigma term is one rank-1 update.
 * Precision (core.h): a layer created while bf16 GEMM inputs are active
 * rounds x, W and dy to bf16 (to nearest, ties to even) before each of the
 * three products (y, dx and G^T x, so dW and dgamma), which sum in fp32;
 * u, v, sigma, gamma, the bias, the gradients and every output stay fp32.
 * On the native path (srp_set_precision(SRP_PRECISION_BF16)) a subnormal
 * input, below 2^-126, may be read as 0, as the CPU's conversion
 * instruction reads it. srp_linear_forward_weight gives W_hat in fp32 for
 * the caller's own product.
 * Differences from the official code, on purpose: the bias starts at 0
 * (nn.Linear's default init is uniform), and the weight init truncates at
 * +-2 std (PyTorch's trunc_normal_ default truncates at +-2 absolute, which
 * for std 0.02 is no truncation): a truncation at 2 std keeps the init away
 * from rare large weights, and shrinks the effective std by a factor 0.88. */
#ifndef SIGMAREPARAM_LINEAR_H
#define SIGMAREPARAM_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SRP_REPARAM_SIGMA = 0, /* W_hat = gamma / sigma * W (default) */
    SRP_REPARAM_NONE,      /* plain linear: no power iteration, no gamma */
    SRP_REPARAM_STATS_ONLY /* uses W as is, but tracks sigma */
} srp_reparam;

typedef enum {
    SRP_GAMMA_INIT_SIGMA0 = 0, /* gamma0 = sigma(W0): W_hat = W at step 0 (official PyTorch) */
    SRP_GAMMA_INIT_ONE         /* gamma0 = 1 (the paper, official JAX) */
} srp_gamma_init;

typedef struct {
    size_t in_features, out_features;
    int bias;                  /* default 1 */
    srp_reparam reparam;       /* default SRP_REPARAM_SIGMA */
    srp_gamma_init gamma_init; /* default SRP_GAMMA_INIT_SIGMA0 */
    float init_std;            /* default 0.02 (multiply by a gain as needed) */
    int power_iters;           /* steps per training forward, default 1 */
    uint64_t seed;             /* weight init; default 0 */
} srp_linear_config;

typedef struct srp_linear srp_linear;

SRP_API srp_linear_config srp_linear_config_default(size_t in, size_t out);
/* W ~ truncated normal(init_std), b = 0, u and sigma from an exact SVD of W
 * (not in NONE mode), gamma per gamma_init. */
SRP_API srp_status srp_linear_create(srp_linear **out, const srp_linear_config *cfg);
SRP_API void srp_linear_destroy(srp_linear *l);

SRP_API size_t srp_linear_in_features(const srp_linear *l);
SRP_API size_t srp_linear_out_features(const srp_linear *l);
SRP_API srp_reparam srp_linear_reparam(const srp_linear *l);

/* Parameters and their gradients, owned by the layer. */
SRP_API float *srp_linear_weight(srp_linear *l);      /* [out][in] */
SRP_API float *srp_linear_weight_grad(srp_linear *l); /* [out][in] */
SRP_API float *srp_linear_bias(srp_linear *l);        /* [out], NULL without bias */
SRP_API float *srp_linear_bias_grad(srp_linear *l);   /* [out], NULL without bias */
/* gamma is learned in SIGMA mode only; in NONE and STATS_ONLY it stays 1
 * and its gradient stays 0 (the pointers are still valid). */
SRP_API float *srp_linear_gamma(srp_linear *l);
SRP_API float *srp_linear_gamma_grad(srp_linear *l);
/* The persistent power-iteration state: u (length in) and v (length out),
 * writable to restore a checkpoint (with srp_linear_set_sigma). A
 * checkpoint keeps both: the next step starts from u, and from v where
 * W u is zero. */
SRP_API float *srp_linear_u(srp_linear *l);
SRP_API float *srp_linear_v(srp_linear *l);

/* After W was set from outside (pretrained weights): u and sigma from an
 * exact SVD of the new W; gamma is kept. NONE mode: nothing to do. */
SRP_API srp_status srp_linear_reinit_sigma(srp_linear *l);
/* sigma used by the last forward (before any forward: the SVD value);
 * NaN in NONE mode, which tracks no sigma. */
SRP_API float srp_linear_sigma(const srp_linear *l);
/* Restores the tracked sigma (checkpoint load). NaN/Inf: SRP_ERR_NUMERIC;
 * negative: SRP_ERR_INVALID_ARG; in NONE mode only NaN is accepted. */
SRP_API srp_status srp_linear_set_sigma(srp_linear *l, float sigma);

/* x: [n][in], y: [n][out]. training = SRP_TRAIN runs power_iters steps and
 * keeps them (u, v, sigma move); SRP_EVAL runs one step from the stored u
 * into scratch and changes no state (see the top of this file).
 * Errors: NULL, n = 0 or n too large for BLAS: SRP_ERR_INVALID_ARG. A
 * non-finite or zero sigma (NaN/Inf in W, an all-zero W), a non-finite
 * gamma, or NaN/Inf anywhere in y (from x, from b, or an overflow of the
 * product): SRP_ERR_NUMERIC, and the layer is left as it was (u, v, sigma
 * and the last forward's backward included; y may have been written). So
 * no NaN leaves a forward that reports success. */
SRP_API srp_status srp_linear_forward(srp_linear *l, const float *x, size_t n, float *y,
                                      int training);
/* Backward of the last forward, for the same x. The caller passes x again:
 * a linear's input is the caller's activation, kept anyway for the layer
 * below, so the layer copies nothing (the attention, whose inner
 * activations are its own, keeps a copy instead: attention.h). The u, v and
 * sigma of that forward are the layer's, so only the last forward can be
 * differentiated, and only once. The backward is refused with
 * SRP_ERR_ORDER, changing no gradient, when two training forwards ran since
 * the last backward (one layer applied twice, as in siamese or contrastive
 * training), when an eval forward ran after the training forward, when that
 * forward was already differentiated (a second backward would add its
 * gradients again), and before any forward. A backward, done or refused,
 * consumes the pending forward: the refusal lasts until the next training
 * forward (or, with no training forward pending, an eval forward: finite
 * differences differentiate eval forwards, the last of them). A backward
 * that fails for another reason (NaN in dy) consumes nothing. Run forward
 * and backward in pairs: a shared layer applied twice is two layers sharing
 * nothing, or one pair at a time; gradient accumulation over micro-batches
 * is a forward and backward pair per micro-batch. dy: [n][out]; dx: [n][in] is overwritten and may be
 * NULL. dW, db, dgamma accumulate. NaN/Inf in x or dy (under bf16 inputs,
 * also a dy past bf16's largest value, 3.39e38): SRP_ERR_NUMERIC and
 * no gradient is touched (dx may be written). */
SRP_API srp_status srp_linear_backward(srp_linear *l, const float *x, const float *dy, size_t n,
                                       float *dx);

/* The same reparametrization for a product the caller computes itself, a
 * convolution say, whose kernel is this layer's W (flattened to [out][in])
 * and whose bias is srp_linear_bias(l).
 * srp_linear_forward_weight takes the forward's power step exactly as
 * srp_linear_forward does (training or eval) and writes
 * W_hat = (gamma / sigma) W to w_hat: [out][in]. A non-finite or zero sigma
 * or a non-finite gamma: SRP_ERR_NUMERIC, the layer as it was. Checking the
 * product's output is then the caller's.
 * srp_linear_backward_weight differentiates that forward (the same order
 * rules as srp_linear_backward): dw_hat = dL/dW_hat: [out][in], db = dL/db:
 * [out] (required with a bias, ignored without). dW, dgamma and db
 * accumulate by the chain rule above, with G^T x = dw_hat. NaN/Inf in
 * dw_hat or db: SRP_ERR_NUMERIC and no gradient is touched. */
SRP_API srp_status srp_linear_forward_weight(srp_linear *l, int training, float *w_hat);
SRP_API srp_status srp_linear_backward_weight(srp_linear *l, const float *dw_hat, const float *db);
/* The weight an eval forward multiplies with, for a deployment without
 * sigmaReparam (a plain nn.Linear): w_hat = (gamma / sigma) W, [out][in],
 * sigma from one power step from the stored u as srp_linear_forward(...,
 * SRP_EVAL) takes it, so that x w_hat^T + b is the eval forward's y (to
 * float rounding). STATS_ONLY and NONE: W itself. Changes nothing in the
 * layer (no power step is kept, the order of forwards and backwards
 * untouched). Allocates in + out floats of scratch: not for the training
 * loop. Errors: NULL: SRP_ERR_INVALID_ARG; a non-finite or zero sigma, a
 * non-finite gamma, an overflow: SRP_ERR_NUMERIC (w_hat may be written);
 * SRP_ERR_NOMEM. */
SRP_API srp_status srp_linear_folded_weight(const srp_linear *l, float *w_hat);
SRP_API void srp_linear_zero_grad(srp_linear *l);

/* Appends the layer's trainable entries to list (lists.h): "prefix.weight"
 * (SRP_PARAM_WEIGHT), "prefix.bias" (SRP_PARAM_BIAS, with a bias) and, in
 * SIGMA mode, "prefix.gamma" (SRP_PARAM_GAMMA). Errors as srp_param_list_add;
 * on one, the entries appended before it stay. */
SRP_API srp_status srp_linear_params(srp_linear *l, const char *prefix, srp_param_list *list);
/* Appends everything that defines the layer's behaviour, as named tensors
 * pointing into it (lists.h): "prefix.weight" [out][in], "prefix.bias" [out],
 * and unless in NONE mode "prefix.gamma", "prefix.u" [in], "prefix.v" [out]
 * and "prefix.sigma" (scalars f32). A checkpoint of them restores the layer
 * bit for bit: the next training forward continues from u and v, and
 * srp_linear_sigma reports the saved sigma. A load writes the layer
 * directly; do it between a backward and the next forward (a pending
 * forward's backward would mix the old step with the new weights). Errors
 * as srp_tensor_list_add; on one, the entries appended before it stay. */
SRP_API srp_status srp_linear_state_refs(srp_linear *l, const char *prefix, srp_tensor_list *list);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_LINEAR_H */
