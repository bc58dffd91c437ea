/* ViT-lite's optional convolutional stem: L layers of 3x3 convolution
 * (stride 1, zero padding), each a sigmaReparam linear over every pixel's
 * 3x3 neighbourhood followed by a GELU, before the patch embedding. Layer l
 * has K_l channels; its kernel is the linear's weight [K_l][3][3][C_in]
 * (channels last).
 *
 * The output is in patch order, [B][P][p][p][K] (P patches in row-major
 * order, p x p pixels each, channels last): the patch embedding's input
 * [B*P][p*p*K] as it is. Two ways to get there:
 *  - with oneDNN (builds with VIT_STEM_ONEDNN), the layers are its direct
 *    convolutions (conv3x3.h) on raster-order maps [B][S][S][C], with the
 *    kernel W_hat from srp_linear_forward_weight, and the last map is
 *    gathered into patch order;
 *  - without, every map is kept in patch order, and a layer is im2col (a
 *    neighbour table) and the linear's GEMM. */
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
    size_t in_channels, pixels, max_batch; /* C, S*S, B */
    srp_linear *conv[VIT_STEM_MAX_LAYERS];
    int *patch_order;                /* [S*S]: raster index -> index in patch order */
    float *in;                       /* [B][S*S][C]: the images, channels last, in the
                                        maps' order */
    float *pre[VIT_STEM_MAX_LAYERS]; /* [B*S*S][K_l]: layer l's output before its GELU */
    float *out[VIT_STEM_MAX_LAYERS]; /* [B*S*S][K_l]: after it */
    float *d_features;               /* [B*S*S][K_max]: d(output) from the caller, then
                                        backward scratch */
    /* oneDNN's convolutions; maps in raster order */
    struct vit_conv3x3 *op[VIT_STEM_MAX_LAYERS];
    float *w_hat[VIT_STEM_MAX_LAYERS]; /* [K_l][9*C_l]: the forward's kernels */
    float *dw_hat, *db, *zero_bias;    /* [K_max][9*C_max], [K_max], [K_max]: backward scratch */
    float *patch_out;                  /* [B*S*S][K_last]: the output, in patch order */
    float *d_maps;                     /* [B*S*S][K_max]: backward, the gradient of a map */
    /* im2col; maps in patch order */
    int *neighbours;                  /* [S*S][9]: each pixel's neighbours, -1 outside */
    float *cols[VIT_STEM_MAX_LAYERS]; /* [B*S*S][9*C_l]: layer l's input columns */
    float *d_cols;                    /* [B*S*S][9*C_max]: backward */
    size_t batch;                     /* of the last forward */
} vit_stem;

/* layers 1..VIT_STEM_MAX_LAYERS of channels[l] each over images [C][S][S]
 * cut into p x p patches; each linear's seed from rng, its configuration
 * from base (sizes set here), named stem.conv<l> in names. */
srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, size_t in_channels,
                         size_t image_size, size_t patch, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng, ex_linear_table *names);
void vit_stem_free(vit_stem *s);

/* images [B][C][S][S] -> *out [B*S*S][K_last] in patch order, valid until
 * the next forward. */
srp_status vit_stem_forward(vit_stem *s, const float *images, size_t batch, int training,
                            const float **out);
/* The last forward's output, as *out gave it. */
const float *vit_stem_output(const vit_stem *s);
/* Where the caller writes the gradient of the last forward's output,
 * [B*S*S][K_last], before vit_stem_backward (which then uses it as scratch). */
float *vit_stem_output_grad(vit_stem *s);
/* Backward from vit_stem_output_grad's gradient; the linears' gradients
 * accumulate. */
srp_status vit_stem_backward(vit_stem *s);

/* "16,32" -> *layers 2, channels {16, 32}; NULL or "0": no stem. 0, or -1
 * for anything but 0 or up to VIT_STEM_MAX_LAYERS counts of 1 to 1024. */
int vit_stem_parse(const char *list, size_t *layers, size_t *channels);
/* The list as vit_stem_parse reads it back: "16,32", or "0" for none. */
#define VIT_STEM_TEXT_MAX (5 * VIT_STEM_MAX_LAYERS + 1)
void vit_stem_format(size_t layers, const size_t *channels, char *buf, size_t len);

/* Exposed for tests. The neighbours of every pixel in patch order:
 * nb [S*S][9], the 3x3 window row by row, -1 outside the image. */
void vit_stem_neighbours(size_t image_size, size_t patch, int *nb);
/* features [B][S*S][C] in patch order -> cols [B][S*S][9][C], zeros
 * outside the image; and its adjoint, d_features += the columns' gradient
 * summed back onto the pixels they copied. */
void vit_stem_columns(const float *features, size_t batch, size_t pixels, size_t channels,
                      const int *nb, float *cols);
void vit_stem_columns_backward(const float *d_cols, size_t batch, size_t pixels, size_t channels,
                               const int *nb, float *d_features);

#endif
