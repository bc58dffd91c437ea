/* The convolutional stem (stem.h): per layer a sigmaReparam kernel, a 3x3
 * convolution (oneDNN's, or im2col and a GEMM) and a GELU. */
#include "stem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tensors.h"
#ifdef VIT_STEM_ONEDNN
#include "conv3x3.h"
#endif

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

int vit_stem_parse(const char *list, size_t *layers, size_t *channels)
{
    *layers = 0;
    if (!list || strcmp(list, "0") == 0)
        return 0;
    const char *p = list;
    for (;;) {
        char *end;
        errno = 0;
        const unsigned long v = strtoul(p, &end, 10);
        if (end == p || *p == '-' || *p == '+' || errno || v == 0 || v > 1024 ||
            *layers == VIT_STEM_MAX_LAYERS || (*end != ',' && *end != '\0'))
            return -1;
        channels[(*layers)++] = (size_t)v;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

void vit_stem_format(size_t layers, const size_t *channels, char *buf, size_t len)
{
    snprintf(buf, len, "0");
    for (size_t l = 0, at = 0; l < layers && at < len; l++)
        at += (size_t)snprintf(buf + at, len - at, "%s%zu", l ? "," : "", channels[l]);
}

/* The raster index y * S + x of the pixel at patch-order index r. */
static size_t raster_index(size_t image_size, size_t patch, size_t r)
{
    const size_t side = image_size / patch, in_patch = r % (patch * patch), q = r / (patch * patch);
    const size_t y = (q / side) * patch + in_patch / patch,
                 x = (q % side) * patch + in_patch % patch;
    return y * image_size + x;
}

/* The widest map, of all layers' outputs (K_max) or inputs (C_max). */
static size_t widest_map(const vit_stem *s, int inputs)
{
    size_t widest = inputs ? s->in_channels : 0;
    for (size_t l = 0; l < s->layers - (inputs ? 1 : 0); l++)
        widest = s->channels[l] > widest ? s->channels[l] : widest;
    return widest;
}

/* The buffers and convolutions of one way of computing the layers. */
#ifdef VIT_STEM_ONEDNN
static srp_status alloc_convolutions(vit_stem *s, size_t image_size)
{
    const size_t rows = s->max_batch * s->pixels, widest = widest_map(s, 0);
    const size_t widest_in = widest_map(s, 1);
    if (!ex_alloc_floats(&s->dw_hat, widest * 9 * widest_in) || !ex_alloc_floats(&s->db, widest) ||
        !ex_alloc_floats(&s->zero_bias, widest) ||
        !ex_alloc_floats(&s->patch_out, rows * s->channels[s->layers - 1]) ||
        !ex_alloc_floats(&s->d_maps, rows * widest))
        return SRP_ERR_NOMEM;
    memset(s->zero_bias, 0, sizeof(float) * widest);
    for (size_t l = 0; l < s->layers; l++) {
        const size_t c_in = l == 0 ? s->in_channels : s->channels[l - 1];
        EX_TRY(vit_conv3x3_create(&s->op[l], image_size, c_in, s->channels[l], l > 0));
        if (!ex_alloc_floats(&s->w_hat[l], s->channels[l] * 9 * c_in))
            return SRP_ERR_NOMEM;
    }
    return SRP_OK;
}
#else
static srp_status alloc_columns(vit_stem *s, size_t image_size, size_t patch)
{
    const size_t rows = s->max_batch * s->pixels, widest = widest_map(s, 1);
    s->neighbours = malloc(sizeof(int) * 9 * s->pixels);
    if (!s->neighbours || !ex_alloc_floats(&s->d_cols, rows * 9 * widest))
        return SRP_ERR_NOMEM;
    vit_stem_neighbours(image_size, patch, s->neighbours);
    for (size_t l = 0; l < s->layers; l++) {
        const size_t c_in = l == 0 ? s->in_channels : s->channels[l - 1];
        if (!ex_alloc_floats(&s->cols[l], rows * 9 * c_in))
            return SRP_ERR_NOMEM;
    }
    return SRP_OK;
}
#endif

srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, size_t in_channels,
                         size_t image_size, size_t patch, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng, ex_linear_table *names)
{
    memset(s, 0, sizeof(*s));
    if (layers == 0 || layers > VIT_STEM_MAX_LAYERS || !channels || in_channels == 0 ||
        patch == 0 || image_size % patch != 0 || max_batch == 0)
        return SRP_ERR_INVALID_ARG;
    for (size_t l = 0; l < layers; l++)
        if (channels[l] == 0)
            return SRP_ERR_INVALID_ARG;
    s->layers = layers;
    memcpy(s->channels, channels, sizeof(size_t) * layers);
    s->in_channels = in_channels;
    s->pixels = image_size * image_size;
    s->max_batch = max_batch;
    const size_t rows = max_batch * s->pixels;
    const size_t widest = widest_map(s, 0);
    srp_status st = SRP_ERR_NOMEM;
    s->patch_order = malloc(sizeof(int) * s->pixels);
    if (!s->patch_order || !ex_alloc_floats(&s->in, rows * in_channels) ||
        !ex_alloc_floats(&s->d_features, rows * widest))
        goto fail;
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
            !ex_alloc_floats(&s->pre[l], rows * channels[l]) ||
            !ex_alloc_floats(&s->out[l], rows * channels[l]))
            goto fail;
    }
#ifdef VIT_STEM_ONEDNN
    st = alloc_convolutions(s, image_size);
#else
    st = alloc_columns(s, image_size, patch);
#endif
    if (st == SRP_OK)
        return SRP_OK;
fail:
    vit_stem_free(s);
    return st;
}

void vit_stem_free(vit_stem *s)
{
    for (size_t l = 0; l < VIT_STEM_MAX_LAYERS; l++) {
        srp_linear_destroy(s->conv[l]);
        free(s->pre[l]);
        free(s->out[l]);
#ifdef VIT_STEM_ONEDNN
        vit_conv3x3_destroy(s->op[l]);
#endif
        free(s->w_hat[l]);
        free(s->cols[l]);
    }
    free(s->patch_order);
    free(s->in);
    free(s->d_features);
    free(s->dw_hat);
    free(s->db);
    free(s->zero_bias);
    free(s->patch_out);
    free(s->d_maps);
    free(s->neighbours);
    free(s->d_cols);
    memset(s, 0, sizeof(*s));
}

#ifdef VIT_STEM_ONEDNN
/* maps [B][S*S][K] in raster order <-> [B][S*S][K] in patch order; images
 * in parallel */
static void to_patch_order(const vit_stem *s, const float *raster, size_t batch, size_t K,
                           float *patches)
{
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < s->pixels; y++)
            memcpy(patches + (b * s->pixels + (size_t)s->patch_order[y]) * K,
                   raster + (b * s->pixels + y) * K, sizeof(float) * K);
}

static void to_raster_order(const vit_stem *s, const float *patches, size_t batch, size_t K,
                            float *raster)
{
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < s->pixels; y++)
            memcpy(raster + (b * s->pixels + y) * K,
                   patches + (b * s->pixels + (size_t)s->patch_order[y]) * K, sizeof(float) * K);
}

static const float *bias_of(const vit_stem *s, size_t l)
{
    const float *b = srp_linear_bias(s->conv[l]);
    return b ? b : s->zero_bias;
}
#endif

srp_status vit_stem_forward(vit_stem *s, const float *images, size_t batch, int training,
                            const float **out)
{
    if (!s->layers || !images || batch == 0 || batch > s->max_batch)
        return SRP_ERR_INVALID_ARG;
    const size_t C = s->in_channels, pixels = s->pixels, n = batch * pixels;
    /* images [B][C][S*S] -> in [B][S*S][C], in the maps' order */
    for (size_t b = 0; b < batch; b++)
        for (size_t c = 0; c < C; c++)
            for (size_t y = 0; y < pixels; y++) {
#ifdef VIT_STEM_ONEDNN
                const size_t at = y;
#else
                const size_t at = (size_t)s->patch_order[y];
#endif
                s->in[(b * pixels + at) * C + c] = images[(b * C + c) * pixels + y];
            }
    for (size_t l = 0; l < s->layers; l++) {
        const size_t c_in = l == 0 ? C : s->channels[l - 1], K = s->channels[l];
        const float *x = l == 0 ? s->in : s->out[l - 1];
#ifdef VIT_STEM_ONEDNN
        (void)c_in;
        EX_TRY(srp_linear_forward_weight(s->conv[l], training, s->w_hat[l]));
        EX_TRY(vit_conv3x3_forward(s->op[l], batch, x, s->w_hat[l], bias_of(s, l), s->pre[l]));
#else
        vit_stem_columns(x, batch, pixels, c_in, s->neighbours, s->cols[l]);
        EX_TRY(srp_linear_forward(s->conv[l], s->cols[l], n, s->pre[l], training));
#endif
        EX_TRY(srp_gelu_forward(s->pre[l], n * K, s->out[l]));
    }
    s->batch = batch;
#ifdef VIT_STEM_ONEDNN
    to_patch_order(s, s->out[s->layers - 1], batch, s->channels[s->layers - 1], s->patch_out);
#endif
    *out = vit_stem_output(s);
    return SRP_OK;
}

const float *vit_stem_output(const vit_stem *s)
{
#ifdef VIT_STEM_ONEDNN
    return s->patch_out;
#else
    return s->out[s->layers - 1];
#endif
}

float *vit_stem_output_grad(vit_stem *s) { return s->d_features; }

srp_status vit_stem_backward(vit_stem *s)
{
    if (!s->layers || s->batch == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t n = s->batch * s->pixels;
#ifdef VIT_STEM_ONEDNN
    /* d(out[l]) in d, then d(pre[l]) in place; d(out[l - 1]) into other */
    float *d = s->d_maps, *other = s->d_features;
    to_raster_order(s, s->d_features, s->batch, s->channels[s->layers - 1], d);
    for (size_t l = s->layers; l-- > 0;) {
        EX_TRY(srp_gelu_backward_from_output(s->pre[l], s->out[l], d, n * s->channels[l], d));
        EX_TRY(vit_conv3x3_backward(s->op[l], s->batch, l ? s->out[l - 1] : s->in, s->w_hat[l], d,
                                    s->dw_hat, s->db, l ? other : NULL));
        EX_TRY(srp_linear_backward_weight(s->conv[l], s->dw_hat, s->db));
        float *t = d;
        d = other;
        other = t;
    }
#else
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
#endif
    return SRP_OK;
}
