/* The small layers around the sigmaReparam blocks: LayerNorm, GELU, softmax
 * cross-entropy, residual add, mean-pool and token select. Part of
 * <sigmareparam.h>; include that.
 *
 * Plain kernels over caller-owned float arrays (no handles): the forward
 * writes what its backward needs into arrays the caller passes back.
 * Definitions are PyTorch's (nn.LayerNorm, nn.GELU(), nn.CrossEntropyLoss).
 * Input gradients (dx, dlogits) are overwritten; parameter gradients
 * (dweight, dbias) accumulate (+=). Nothing allocates. On any error nothing
 * is written. Non-finite values: NaN or Inf in an input reaches the output
 * (IEEE; no pass is spent scanning; the losses do check their logits); from
 * finite inputs none of these makes a NaN (row statistics and sums are in
 * double), though a residual add can overflow to Inf, which the next
 * layer's forward reports (linear.h). Results are bit-identical for a
 * given thread count (and for these kernels, for any thread count). */
#ifndef SIGMAREPARAM_NN_H
#define SIGMAREPARAM_NN_H

#include <stddef.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * LayerNorm over the last dimension, as torch.nn.LayerNorm(d, eps):
 *     y = (x - mean) * rstd * weight + bias,   rstd = 1 / sqrt(var + eps)
 * with the biased variance (divide by d). Row statistics in double.
 * ====================================================================== */

/* x, y: [n][d] (y may be x); weight, bias: [d], either may be NULL (scale 1,
 * shift 0); mean, rstd: [n], saved for the backward, both may be NULL when
 * none follows. eps must be finite and > 0 (PyTorch's default: 1e-5).
 * Errors: NULL x/y, n or d = 0, bad eps: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_layernorm_forward(const float *x, const float *weight, const float *bias,
                                         size_t n, size_t d, float eps, float *y, float *mean,
                                         float *rstd);
/* x, dy, dx: [n][d]; mean, rstd: [n] from the forward on the same x.
 * dx is overwritten (it may be dy, not x); dweight, dbias: [d] accumulate,
 * either may be NULL (not wanted); weight NULL means scale 1. */
SRP_API srp_status srp_layernorm_backward(const float *x, const float *weight, const float *mean,
                                          const float *rstd, const float *dy, size_t n, size_t d,
                                          float *dx, float *dweight, float *dbias);

/* ======================================================================
 * GELU, the exact form (PyTorch's default, approximate='none'):
 *     y = 0.5 x (1 + erf(x / sqrt 2))
 *     dy/dx = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
 * ====================================================================== */

/* x, y: [n], y may be x. */
SRP_API srp_status srp_gelu_forward(const float *x, size_t n, float *y);
/* x: the forward's input; dy, dx: [n]; dx is overwritten and may be dy. */
SRP_API srp_status srp_gelu_backward(const float *x, const float *dy, size_t n, float *dx);
/* The same gradient, when the forward's output y = GELU(x) is at hand (it
 * usually is: it feeds the next layer): 0.5 (1 + erf(x / sqrt 2)) = y / x
 * needs no second erf, which makes it about twice as fast. Within a few
 * ulp of srp_gelu_backward. x, y, dy, dx: [n]; dx may be dy. */
SRP_API srp_status srp_gelu_backward_from_output(const float *x, const float *y, const float *dy,
                                                 size_t n, float *dx);

/* ======================================================================
 * Softmax cross-entropy, as torch.nn.CrossEntropyLoss(label_smoothing=s)
 * with the mean reduction: with p = softmax(z) of a row and label y,
 *     loss_row = (1 - s) (-log p_y) + (s / C) sum_c (-log p_c)
 * computed as logsumexp(z) - (1 - s) z_y - s mean_c(z_c) (row max
 * subtracted, sums in double), so huge logits do not overflow.
 * ====================================================================== */

/* logits: [n][classes]; labels: [n], each in [0, classes); s in [0, 1].
 * *loss = mean over the rows. Errors: NULL, n = 0, classes = 0, a label
 * out of range, s out of [0, 1]: SRP_ERR_INVALID_ARG; a non-finite loss
 * (NaN/Inf logits): SRP_ERR_NUMERIC. *loss is only written on success. */
SRP_API srp_status srp_cross_entropy_forward(const float *logits, const int *labels, size_t n,
                                             size_t classes, float label_smoothing, float *loss);
/* dlogits: [n][classes] = d(mean loss)/d(logits)
 *        = (softmax(z) - (1 - s) onehot(y) - s / C) / n, overwritten.
 * Same errors as the forward; non-finite logits: SRP_ERR_NUMERIC, and
 * dlogits is left untouched. dlogits must not alias logits. */
SRP_API srp_status srp_cross_entropy_backward(const float *logits, const int *labels, size_t n,
                                              size_t classes, float label_smoothing,
                                              float *dlogits);
/* *correct = number of rows whose argmax (the first one on ties, NaN never
 * wins) equals the label. Errors as the forward. */
SRP_API srp_status srp_accuracy_count(const float *logits, const int *labels, size_t n,
                                      size_t classes, size_t *correct);

/* ======================================================================
 * Residual add and gradient accumulation
 * ====================================================================== */

/* y = x + r; x, r, y: [n]; y may be x or r. The backward of a residual
 * branch is the same dy for both inputs: use srp_accumulate to sum the
 * gradient coming back through the branch into the skip path's. */
SRP_API srp_status srp_residual_add(const float *x, const float *r, size_t n, float *y);
/* acc += x; acc, x: [n]. */
SRP_API srp_status srp_accumulate(float *acc, const float *x, size_t n);

/* ======================================================================
 * Pooling over tokens (the head of a ViT): the mean of all tokens, or one
 * token (the class token)
 * ====================================================================== */

/* x: [batch][tokens][dim] -> y: [batch][dim], the mean over tokens. */
SRP_API srp_status srp_mean_pool_forward(const float *x, size_t batch, size_t tokens, size_t dim,
                                         float *y);
/* dy: [batch][dim] -> dx: [batch][tokens][dim] = dy / tokens, overwritten. */
SRP_API srp_status srp_mean_pool_backward(const float *dy, size_t batch, size_t tokens, size_t dim,
                                          float *dx);
/* y[b] = x[b][token]: [batch][tokens][dim] -> [batch][dim]. token >= tokens:
 * SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_token_select_forward(const float *x, size_t batch, size_t tokens, size_t dim,
                                            size_t token, float *y);
/* dx: [batch][tokens][dim] is overwritten: dy in row `token`, zeros elsewhere. */
SRP_API srp_status srp_token_select_backward(const float *dy, size_t batch, size_t tokens,
                                             size_t dim, size_t token, float *dx);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_NN_H */
