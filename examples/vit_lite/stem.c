/* The convolutional stem (stem.h): im2col over pixels in patch order, a
 * sigmaReparam linear and a GELU per layer. */
#include "stem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tensors.h"

void vit_stem_neighbours(size_t image_size, size_t patch, int *nb)
{
    const long S = (long)image_size, p = (long)patch, side = S / p;
    /* pixel (y, x) -> its index in patch order */
#define PATCH_ORDER(y, x) ((((y) / p) * side + (x) / p) * p * p + ((y) % p) * p + (x) % p)
    for (long y = 0; y < S; y++)
        for (long x = 0; x < S; x++) {
            int *w = nb + 9 * PATCH_ORDER(y, x);
            for (long dy = -1; dy <= 1; dy++)
                for (long dx = -1; dx <= 1; dx++) {
                    const long sy = y + dy, sx = x + dx;
                    *w++ = sy >= 0 && sy < S && sx >= 0 && sx < S ? (int)PATCH_ORDER(sy, sx) : -1;
                }
        }
#undef PATCH_ORDER
}

/* features: [B][S*S][C] -> cols: [B][S*S][9][C]; images in parallel */
void vit_stem_columns(const float *features, size_t batch, size_t pixels, size_t channels,
                      const int *nb, float *cols)
{
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++) {
        const float *f = features + b * pixels * channels;
        float *col = cols + b * pixels * 9 * channels;
        for (size_t r = 0; r < pixels; r++)
            for (size_t k = 0; k < 9; k++, col += channels) {
                const int src = nb[r * 9 + k];
                if (src < 0)
                    memset(col, 0, sizeof(float) * channels);
                else
                    memcpy(col, f + (size_t)src * channels, sizeof(float) * channels);
            }
    }
}

/* d_cols: [B][S*S][9][C] -> d_features: [B][S*S][C] (accumulated); images
 * in parallel, each summed in the same order at any thread count */
void vit_stem_columns_backward(const float *d_cols, size_t batch, size_t pixels, size_t channels,
                               const int *nb, float *d_features)
{
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++) {
        float *df = d_features + b * pixels * channels;
        const float *dc = d_cols + b * pixels * 9 * channels;
        for (size_t r = 0; r < pixels; r++)
            for (size_t k = 0; k < 9; k++, dc += channels) {
                const int src = nb[r * 9 + k];
                if (src < 0)
                    continue;
                float *dst = df + (size_t)src * channels;
                for (size_t c = 0; c < channels; c++)
                    dst[c] += dc[c];
            }
    }
}

/* The raster index y * S + x of the pixel at patch-order index r. */
static size_t raster_index(size_t image_size, size_t patch, size_t r)
{
    const size_t side = image_size / patch, in_patch = r % (patch * patch), q = r / (patch * patch);
    const size_t y = (q / side) * patch + in_patch / patch,
                 x = (q % side) * patch + in_patch % patch;
    return y * image_size + x;
}

srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, size_t in_channels,
                         size_t image_size, size_t patch, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng, ex_linear_table *names)
{
    memset(s, 0, sizeof(*s));
    if (layers == 0 || layers > VIT_STEM_MAX_LAYERS || !channels || in_channels == 0 ||
        patch == 0 || image_size % patch != 0 || max_batch == 0)
        return SRP_ERR_INVALID_ARG;
    size_t widest = 0;
    for (size_t l = 0; l < layers; l++) {
        if (channels[l] == 0)
            return SRP_ERR_INVALID_ARG;
        widest = channels[l] > widest ? channels[l] : widest;
    }
    s->layers = layers;
    memcpy(s->channels, channels, sizeof(size_t) * layers);
    s->in_channels = in_channels;
    s->pixels = image_size * image_size;
    s->max_batch = max_batch;
    const size_t rows = max_batch * s->pixels;
    srp_status st = SRP_ERR_NOMEM;
    s->neighbours = malloc(sizeof(int) * 9 * s->pixels);
    s->patch_order = malloc(sizeof(int) * s->pixels);
    if (!s->neighbours || !s->patch_order || !ex_alloc_floats(&s->in, rows * in_channels) ||
        !ex_alloc_floats(&s->d_cols, rows * 9 * widest) ||
        !ex_alloc_floats(&s->d_features, rows * widest))
        goto fail;
    vit_stem_neighbours(image_size, patch, s->neighbours);
    for (size_t r = 0; r < s->pixels; r++)
        s->patch_order[raster_index(image_size, patch, r)] = (int)r;
    for (size_t l = 0; l < layers; l++) {
        const size_t c_in = l == 0 ? in_channels : channels[l - 1];
        srp_linear_config lc = *base;
        lc.in_features = 9 * c_in;
        lc.out_features = channels[l];
        lc.seed = srp_rng_next_u64(rng);
        char name[32];
        snprintf(name, sizeof(name), "stem.conv%zu", l);
        if ((st = srp_linear_create(&s->conv[l], &lc)) != SRP_OK)
            goto fail;
        st = SRP_ERR_NOMEM;
        if (!ex_linears_add(names, s->conv[l], name) ||
            !ex_alloc_floats(&s->cols[l], rows * 9 * c_in) ||
            !ex_alloc_floats(&s->pre[l], rows * channels[l]) ||
            !ex_alloc_floats(&s->out[l], rows * channels[l]))
            goto fail;
    }
    return SRP_OK;
fail:
    vit_stem_free(s);
    return st;
}

void vit_stem_free(vit_stem *s)
{
    for (size_t l = 0; l < VIT_STEM_MAX_LAYERS; l++) {
        srp_linear_destroy(s->conv[l]);
        free(s->cols[l]);
        free(s->pre[l]);
        free(s->out[l]);
    }
    free(s->neighbours);
    free(s->patch_order);
    free(s->in);
    free(s->d_cols);
    free(s->d_features);
    memset(s, 0, sizeof(*s));
}

srp_status vit_stem_forward(vit_stem *s, const float *images, size_t batch, int training,
                            const float **out)
{
    if (!s->layers || !images || batch == 0 || batch > s->max_batch)
        return SRP_ERR_INVALID_ARG;
    const size_t C = s->in_channels, pixels = s->pixels, n = batch * pixels;
    /* images [B][C][S*S], raster order -> in [B][S*S][C], patch order */
    for (size_t b = 0; b < batch; b++)
        for (size_t c = 0; c < C; c++)
            for (size_t y = 0; y < pixels; y++)
                s->in[(b * pixels + (size_t)s->patch_order[y]) * C + c] =
                    images[(b * C + c) * pixels + y];
    for (size_t l = 0; l < s->layers; l++) {
        const size_t c_in = l == 0 ? C : s->channels[l - 1], K = s->channels[l];
        vit_stem_columns(l == 0 ? s->in : s->out[l - 1], batch, pixels, c_in, s->neighbours,
                         s->cols[l]);
        EX_TRY(srp_linear_forward(s->conv[l], s->cols[l], n, s->pre[l], training));
        EX_TRY(srp_gelu_forward(s->pre[l], n * K, s->out[l]));
    }
    s->batch = batch;
    *out = s->out[s->layers - 1];
    return SRP_OK;
}

float *vit_stem_output_grad(vit_stem *s) { return s->d_features; }

srp_status vit_stem_backward(vit_stem *s)
{
    if (!s->layers || s->batch == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t n = s->batch * s->pixels;
    float *d = s->d_features; /* d(out[l]), then d(pre[l]) in place */
    for (size_t l = s->layers; l-- > 0;) {
        EX_TRY(srp_gelu_backward_from_output(s->pre[l], s->out[l], d, n * s->channels[l], d));
        EX_TRY(srp_linear_backward(s->conv[l], s->cols[l], d, n, l ? s->d_cols : NULL));
        if (l) { /* d(cols[l]) -> d(out[l - 1]), over d(pre[l]), now consumed */
            memset(d, 0, sizeof(float) * n * s->channels[l - 1]);
            vit_stem_columns_backward(s->d_cols, s->batch, s->pixels, s->channels[l - 1],
                                      s->neighbours, d);
        }
    }
    return SRP_OK;
}
