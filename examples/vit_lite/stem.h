/* ViT-lite's optional convolutional stem: L layers of 3x3 sigmaReparam
 * convolution (srp_conv2d: zero padding 1, stride 1 or more) each followed
 * by a GELU, before the patch embedding. Layer l has K_l channels and
 * stride s_l; its map is S_{l+1} pixels a side, S_{l+1} = (S_l - 1) / s_l
 * + 1 (S_0 the image's: 28 -> 14 -> 7 -> 4 at stride 2, as PyTorch's
 * Conv2d(padding=1) gives); its kernel is [K_l][C_l][3][3], as PyTorch's.
 *
 * The maps are NCHW, [B][K_l][S_{l+1}][S_{l+1}], as the library's
 * convolution takes them; the output is the last one. */
#ifndef VIT_STEM_H
#define VIT_STEM_H

#include <stddef.h>

#include <sigmareparam.h>

#define VIT_STEM_MAX_LAYERS 4

typedef struct {
    size_t layers;                         /* L */
    size_t channels[VIT_STEM_MAX_LAYERS];  /* K_l */
    size_t strides[VIT_STEM_MAX_LAYERS];   /* s_l */
    size_t sides[VIT_STEM_MAX_LAYERS + 1]; /* S_l: sides[0] the image's, sides[L] the output's */
    size_t in_channels, max_batch;         /* C, B */
    srp_conv2d *conv[VIT_STEM_MAX_LAYERS];
    float *in;                         /* [B][C][S_0][S_0]: the last forward's images */
    float *pre[VIT_STEM_MAX_LAYERS];   /* [B][K_l][S_{l+1}][S_{l+1}]: layer l before its GELU */
    float *out[VIT_STEM_MAX_LAYERS];   /* the same after it */
    float *d_out[VIT_STEM_MAX_LAYERS]; /* backward: d(out[l]), then d(pre[l]) in its place */
    size_t batch;                      /* of the last forward */
} vit_stem;

/* The side of a 3x3 convolution's output, zero padding 1: (side - 1) /
 * stride + 1. */
size_t vit_stem_out_side(size_t side, size_t stride);

/* layers 1..VIT_STEM_MAX_LAYERS of channels[l] each at strides[l] (1 to
 * VIT_STEM_MAX_STRIDE) over images [C][S][S]; each convolution's seed from
 * rng, its linear fields (reparam, gamma_init, init_std, ...) from base. */
srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, const size_t *strides,
                         size_t in_channels, size_t image_size, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng);
void vit_stem_free(vit_stem *s);

/* images [B][C][S][S] -> *out, the last map out[L - 1], valid until the
 * next forward. */
srp_status vit_stem_forward(vit_stem *s, const float *images, size_t batch, int training,
                            const float **out);
/* Backward from d(*out), which the caller writes into d_out[L - 1]; the
 * convolutions' gradients accumulate. */
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

#endif
