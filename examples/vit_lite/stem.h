/* ViT-lite's optional convolutional stem: L layers of 3x3 convolution
 * (zero padding 1, stride 1 or more), each a sigmaReparam linear over every
 * output pixel's 3x3 window followed by a GELU, before the patch embedding.
 * Layer l has K_l channels and stride s_l; its map is S_{l+1} pixels a
 * side, S_{l+1} = (S_l - 1) / s_l + 1 (S_0 the image's: 28 -> 14 -> 7 -> 4
 * at stride 2, as PyTorch's Conv2d(padding=1) gives); its kernel is the
 * linear's weight [K_l][3][3][C_l] (channels last).
 *
 * The output is the last map in patch order, [B][P][p][p][K] (P patches
 * of p x p pixels of the last map, row-major, channels last): the patch
 * embedding's input [B*P][p*p*K] as it is. Two ways to get there:
 *  - with oneDNN (builds with VIT_STEM_ONEDNN), the layers are its direct
 *    convolutions (conv3x3.h) on raster-order maps [B][S_l][S_l][C], with
 *    the kernel W_hat from srp_linear_forward_weight, and the last map is
 *    gathered into patch order;
 *  - without, a layer is im2col (a window table) and the linear's GEMM,
 *    the maps in raster order but the last, whose rows the window table
 *    puts in patch order. */
#ifndef VIT_STEM_H
#define VIT_STEM_H

#include <stddef.h>

#include <sigmareparam.h>

#include "common/linears.h"

struct vit_conv3x3;

#define VIT_STEM_MAX_LAYERS 4

typedef struct {
    size_t layers;                         /* L */
    size_t channels[VIT_STEM_MAX_LAYERS];  /* K_l */
    size_t strides[VIT_STEM_MAX_LAYERS];   /* s_l */
    size_t sides[VIT_STEM_MAX_LAYERS + 1]; /* S_l: sides[0] the image's, sides[L] the output's */
    size_t in_channels, max_batch;         /* C, B */
    srp_linear *conv[VIT_STEM_MAX_LAYERS];
    float *in;                       /* [B][S_0^2][C]: the images, channels last, raster order */
    float *pre[VIT_STEM_MAX_LAYERS]; /* [B*S_{l+1}^2][K_l]: layer l's output before its GELU */
    float *out[VIT_STEM_MAX_LAYERS]; /* [B*S_{l+1}^2][K_l]: after it */
    float *d_features;               /* [largest map]: d(output) from the caller, then
                                        backward scratch */
    /* oneDNN's convolutions; maps in raster order */
    struct vit_conv3x3 *op[VIT_STEM_MAX_LAYERS];
    int *patch_order; /* [S_L^2]: the last map's raster index -> its index in patch order */
    float *w_hat[VIT_STEM_MAX_LAYERS]; /* [K_l][9*C_l]: the forward's kernels */
    float *dw_hat, *db, *zero_bias;    /* [K_max][9*C_max], [K_max], [K_max]: backward scratch */
    float *patch_out;                  /* [B*S_L^2][K_L]: the output, in patch order */
    float *d_maps;                     /* [largest map]: backward, the gradient of a map */
    /* im2col; maps in raster order, the last one's rows in patch order */
    int *windows[VIT_STEM_MAX_LAYERS]; /* [S_{l+1}^2][9]: each output row's inputs, -1 outside */
    float *cols[VIT_STEM_MAX_LAYERS];  /* [B*S_{l+1}^2][9*C_l]: layer l's input columns */
    float *d_cols;                     /* [largest columns]: backward */
    size_t batch;                      /* of the last forward */
} vit_stem;

/* The side of a 3x3 convolution's output, zero padding 1: (side - 1) /
 * stride + 1. */
size_t vit_stem_out_side(size_t side, size_t stride);

/* layers 1..VIT_STEM_MAX_LAYERS of channels[l] each at strides[l] (1 to
 * VIT_STEM_MAX_STRIDE) over images [C][S][S], the last map cut into p x p
 * patches (p must divide its side); each linear's seed from rng, its
 * configuration from base (sizes set here), named stem.conv<l> in names. */
srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, const size_t *strides,
                         size_t in_channels, size_t image_size, size_t patch, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng, ex_linear_table *names);
void vit_stem_free(vit_stem *s);

/* images [B][C][S][S] -> *out [B*S_L^2][K_L] in patch order, valid until
 * the next forward. */
srp_status vit_stem_forward(vit_stem *s, const float *images, size_t batch, int training,
                            const float **out);
/* The last forward's output, as *out gave it. */
const float *vit_stem_output(const vit_stem *s);
/* Where the caller writes the gradient of the last forward's output,
 * [B*S_L^2][K_L], before vit_stem_backward (which then uses it as scratch). */
float *vit_stem_output_grad(vit_stem *s);
/* Backward from vit_stem_output_grad's gradient; the linears' gradients
 * accumulate. */
srp_status vit_stem_backward(vit_stem *s);

/* "16,32/2" -> *layers 2, channels {16, 32}, strides {1, 2}; NULL or "0":
 * no stem. 0, or -1 for anything but 0 or up to VIT_STEM_MAX_LAYERS entries
 * "K" or "K/s", K from 1 to 1024, s from 1 to VIT_STEM_MAX_STRIDE. */
#define VIT_STEM_MAX_STRIDE 4
int vit_stem_parse(const char *list, size_t *layers, size_t *channels, size_t *strides);
/* The list as vit_stem_parse reads it back: "16,32/2" (no "/1"), or "0". */
#define VIT_STEM_TEXT_MAX (7 * VIT_STEM_MAX_LAYERS + 1)
void vit_stem_format(size_t layers, const size_t *channels, const size_t *strides, char *buf,
                     size_t len);

/* Exposed for tests. The 3x3 windows of a convolution from a map of side
 * in_side at this stride: win [S_out^2][9], each output row's nine input
 * pixels (raster indices, the window row by row, -1 outside the map); the
 * rows in raster order, or with patch > 0 in patch order of p x p patches. */
void vit_stem_windows(size_t in_side, size_t stride, size_t patch, int *win);
/* features [B][in_pixels][C] -> cols [B][out_pixels][9][C], zeros
 * outside the map; and its adjoint, d_features += the columns' gradient
 * summed back onto the pixels they copied. */
void vit_stem_columns(const float *features, size_t batch, size_t in_pixels, size_t out_pixels,
                      size_t channels, const int *win, float *cols);
void vit_stem_columns_backward(const float *d_cols, size_t batch, size_t in_pixels,
                               size_t out_pixels, size_t channels, const int *win,
                               float *d_features);

#endif
