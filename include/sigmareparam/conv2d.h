/* The sigmaReparam 2-D convolution. Part of <sigmareparam.h>; include that.
 *
 *     W_hat = (gamma / sigma) W        y = conv2d(x, W_hat) + b
 *
 * As the official SNConv2d (apple/ml-sigma-reparam vision/layers.py): the
 * kernel W [out_ch][in_ch][k][k] is, row-major, the matrix [out_ch][in_ch k k]
 * of a sigmaReparam linear, whose sigma, gamma and power iteration it uses
 * unchanged. The layer holds that linear (srp_conv2d_linear), so the modes
 * (SIGMA, NONE, STATS_ONLY), gamma_init, the init, the order in which
 * forwards and backwards may run and the error contract are the linear's
 * (linear.h); only the product is a convolution:
 *
 *     y[b][o][i][j] = b[o] + sum_{c,p,q} W_hat[o][c][p][q]
 *                            x[b][c][i s + p - pad][j s + q - pad]
 *
 * with zero padding pad on every side, stride s, dilation 1, groups 1, and
 * out_h = (height + 2 pad - k) / s + 1 (the same for the width), as
 * PyTorch's conv2d. Layout NCHW as PyTorch stores it: x [batch][in_ch][height]
 * [width], y [batch][out_ch][out_h][out_w], W [out_ch][in_ch][k][k]; a weight
 * moves to and from PyTorch without a transpose. The kernel is square (k x k)
 * and stride and padding are the same on both axes.
 *
 * Backward, with G = dy, u and v constants, and X^T G the products of every
 * kernel tap with the output gradient (dL/dW_hat):
 *     dx = conv2d's transpose of G with W_hat
 *     dW += (gamma/sigma) dL/dW_hat - (gamma s / sigma^2) v u^T,  s = <dL/dW_hat, W>
 *     dgamma += s / sigma           db += sum_{b,i,j} G[b][.][i][j]
 * the linear's formulas with its G^T x replaced by dL/dW_hat.
 *
 * Precision (core.h): a layer created under srp_set_precision(BF16) reads
 * x, W_hat and dy rounded to bf16 and sums in fp32 when it runs its
 * largest shape (the maxima given at create) on one of oneDNN's bf16
 * kernels that the tests found right (3x3 kernels on CPUs with
 * avx512_bf16 or AMX; not oneDNN 2.6's 1x1 and GEMM-based ones, which
 * give wrong outputs); every other shape, and every layer elsewhere, in
 * fp32. The gradients, sigma and every output stay fp32. */
#ifndef SIGMAREPARAM_CONV2D_H
#define SIGMAREPARAM_CONV2D_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/linear.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    size_t in_channels, out_channels;
    size_t kernel;             /* k: the kernel is k x k */
    size_t stride;             /* default 1 */
    size_t padding;            /* zeros on every side; default 0 */
    /* The linear's fields, as srp_linear_config has them: */
    int bias;                  /* default 1 */
    srp_reparam reparam;       /* default SRP_REPARAM_SIGMA */
    srp_gamma_init gamma_init; /* default SRP_GAMMA_INIT_SIGMA0 */
    float init_std;            /* default 0.02: W ~ truncated normal(init_std), as the linear's;
                                  the official init_multiplier (a gain) is init_std / 0.02 */
    int power_iters;           /* steps per training forward, default 1 */
    uint64_t seed;             /* weight init; default 0 */
} srp_conv2d_config;

typedef struct srp_conv2d srp_conv2d;

SRP_API srp_conv2d_config srp_conv2d_config_default(size_t in_ch, size_t out_ch, size_t kernel);
/* A layer for up to max_batch images of up to max_height x max_width pixels;
 * every workspace is taken here. W ~ truncated normal(init_std) (drawn as
 * the linear draws its [out][in k k] weight), b = 0, u and sigma from an
 * exact SVD, gamma per gamma_init. Errors: NULL, a zero size or maximum, a
 * stride of 0, a bad linear field (srp_linear_create's), sizes whose
 * products overflow: SRP_ERR_INVALID_ARG; a kernel larger than the padded
 * maximal image: SRP_ERR_INVALID_ARG; SRP_ERR_NOMEM. */
SRP_API srp_status srp_conv2d_create(srp_conv2d **out, const srp_conv2d_config *cfg,
                                     size_t max_batch, size_t max_height, size_t max_width);
SRP_API void srp_conv2d_destroy(srp_conv2d *c);

/* out_h = (height + 2 padding - kernel) / stride + 1, and out_w likewise.
 * Errors: NULL: SRP_ERR_INVALID_ARG; a zero size: SRP_ERR_INVALID_ARG; the
 * kernel larger than the padded image: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_conv2d_output_size(const srp_conv2d *c, size_t height, size_t width,
                                          size_t *out_h, size_t *out_w);

/* The linear that holds W (as [out_ch][in_ch k k]), b, gamma, u, v and
 * sigma: what the weight average, metrics and checkpoints of linears walk.
 * Run the convolution through srp_conv2d_forward/_backward, not through it. */
SRP_API srp_linear *srp_conv2d_linear(srp_conv2d *c);

/* Parameters and state, owned by the layer (the linear's arrays). */
SRP_API float *srp_conv2d_weight(srp_conv2d *c);      /* [out_ch][in_ch][k][k] */
SRP_API float *srp_conv2d_weight_grad(srp_conv2d *c); /* [out_ch][in_ch][k][k] */
SRP_API float *srp_conv2d_bias(srp_conv2d *c);        /* [out_ch], NULL without bias */
SRP_API float *srp_conv2d_bias_grad(srp_conv2d *c);   /* [out_ch], NULL without bias */
SRP_API float *srp_conv2d_gamma(srp_conv2d *c);       /* 1 and unlearned outside SIGMA mode */
SRP_API float *srp_conv2d_gamma_grad(srp_conv2d *c);
SRP_API float *srp_conv2d_u(srp_conv2d *c); /* [in_ch k k], the power iteration's */
SRP_API float *srp_conv2d_v(srp_conv2d *c); /* [out_ch] */
/* sigma of the last forward (before any: the SVD's); NaN in NONE mode. */
SRP_API float srp_conv2d_sigma(const srp_conv2d *c);

/* x: [batch][in_ch][height][width] -> y: [batch][out_ch][out_h][out_w].
 * training = SRP_TRAIN takes power_iters steps and keeps them; SRP_EVAL
 * takes one into scratch and changes no state, as the linear's forward.
 * Errors: NULL, a zero size: SRP_ERR_INVALID_ARG; batch, height or width
 * above the maxima given at create: SRP_ERR_SHAPE; a kernel larger than the
 * padded image: SRP_ERR_INVALID_ARG; a non-finite or zero sigma, a
 * non-finite gamma, or NaN/Inf anywhere in y (from x, b, or an overflow):
 * SRP_ERR_NUMERIC. On any error the layer is left as it was, u, v, sigma
 * and the pending backward included (y may have been written). */
SRP_API srp_status srp_conv2d_forward(srp_conv2d *c, const float *x, size_t batch, size_t height,
                                      size_t width, float *y, int training);
/* Backward of the last forward, with its x again (of its sizes) and dy:
 * [batch][out_ch][out_h][out_w]. dx: that forward's x's shape, overwritten;
 * NULL when not needed. dW, db and dgamma accumulate. The linear's order
 * rules hold (linear.h): only the last forward, once; otherwise
 * SRP_ERR_ORDER with no gradient changed. NULL c, x or dy:
 * SRP_ERR_INVALID_ARG. NaN/Inf in dy, or in a pixel of x that the
 * convolution reads: SRP_ERR_NUMERIC and no gradient is touched (dx may be
 * written); the forward stays pending, to be differentiated by a retry. */
SRP_API srp_status srp_conv2d_backward(srp_conv2d *c, const float *x, const float *dy, float *dx);
SRP_API void srp_conv2d_zero_grad(srp_conv2d *c);

/* The layer's entries as srp_linear_params appends them: "prefix.weight"
 * (SRP_PARAM_WEIGHT), "prefix.bias" (with a bias), "prefix.gamma" (SIGMA
 * mode). */
SRP_API srp_status srp_conv2d_params(srp_conv2d *c, const char *prefix, srp_param_list *list);
/* The layer's state as srp_linear_state_refs lists it, but the weight as
 * the 4-D tensor it is: "prefix.weight" [out_ch][in_ch][k][k], "prefix.bias"
 * [out_ch], and unless in NONE mode "prefix.gamma", "prefix.u" [in_ch k k],
 * "prefix.v" [out_ch], "prefix.sigma". The same rules for a load. */
SRP_API srp_status srp_conv2d_state_refs(srp_conv2d *c, const char *prefix, srp_tensor_list *list);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_CONV2D_H */
