/* A 3x3 convolution, zero padding 1, stride s, on oneDNN's primitives: the
 * stem's layers when the build has oneDNN (stem.h). Its direct
 * convolutions read the feature maps where they lie, where im2col would
 * first copy every pixel nine times.
 *
 * x: [B][S][S][C] and y: [B][S'][S'][K] (NHWC, raster order), S' = (S - 1) /
 * s + 1, w: [K][3][3][C]
 * (OHWI: a sigmaReparam linear's [K][9C] weight as it is), b: [K].
 * The primitives for a batch size are made on its first call and kept (a
 * few sizes: training's and evaluation's); after that a call allocates
 * nothing. For a given thread count the results are the same bits on every
 * run. */
#ifndef VIT_CONV3X3_H
#define VIT_CONV3X3_H

#include <stddef.h>

#include <sigmareparam.h>

typedef struct vit_conv3x3 vit_conv3x3;

/* input_grad = 0: the backward computes no dx (a first layer). */
srp_status vit_conv3x3_create(vit_conv3x3 **out, size_t in_side, size_t stride, size_t in_channels,
                              size_t out_channels, int input_grad);
void vit_conv3x3_destroy(vit_conv3x3 *c);

/* y = conv(x, w) + b */
srp_status vit_conv3x3_forward(vit_conv3x3 *c, size_t batch, const float *x, const float *w,
                               const float *b, float *y);
/* From dy = dL/dy: dw = dL/dw: [K][3][3][C] and db = dL/db: [K]
 * (overwritten), and dx = dL/dx (overwritten; made with input_grad only). */
srp_status vit_conv3x3_backward(vit_conv3x3 *c, size_t batch, const float *x, const float *w,
                                const float *dy, float *dw, float *db, float *dx);

#endif
