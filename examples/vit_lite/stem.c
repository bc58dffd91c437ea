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

size_t vit_stem_out_side(size_t side, size_t stride) { return (side - 1) / stride + 1; }

void vit_stem_windows(size_t in_side, size_t stride, size_t patch, int *win)
{
    const long S = (long)in_side, s = (long)stride, O = (long)vit_stem_out_side(in_side, stride);
    const long p = (long)patch, side = p ? O / p : 0;
    for (long oy = 0; oy < O; oy++)
        for (long ox = 0; ox < O; ox++) {
            /* this output pixel's row: raster, or patch (oy / p, ox / p), pixel in it */
            const long row =
                p ? ((oy / p) * side + ox / p) * p * p + (oy % p) * p + ox % p : oy * O + ox;
            int *w = win + 9 * row;
            for (long dy = -1; dy <= 1; dy++)
                for (long dx = -1; dx <= 1; dx++) {
                    const long y = oy * s + dy, x = ox * s + dx;
                    *w++ = y >= 0 && y < S && x >= 0 && x < S ? (int)(y * S + x) : -1;
                }
        }
}

/* features: [B][in_pixels][C] -> cols: [B][out_pixels][9][C]; images in
 * parallel */
void vit_stem_columns(const float *features, size_t batch, size_t in_pixels, size_t out_pixels,
                      size_t channels, const int *win, float *cols)
{
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++) {
        const float *f = features + b * in_pixels * channels;
        float *col = cols + b * out_pixels * 9 * channels;
        for (size_t r = 0; r < out_pixels; r++)
            for (size_t k = 0; k < 9; k++, col += channels) {
                const int src = win[r * 9 + k];
                if (src < 0)
                    memset(col, 0, sizeof(float) * channels);
                else
                    memcpy(col, f + (size_t)src * channels, sizeof(float) * channels);
            }
    }
}

/* d_cols: [B][out_pixels][9][C] -> d_features: [B][in_pixels][C]
 * (accumulated); images in parallel, each summed in the same order at any
 * thread count */
void vit_stem_columns_backward(const float *d_cols, size_t batch, size_t in_pixels,
                               size_t out_pixels, size_t channels, const int *win,
                               float *d_features)
{
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++) {
        float *df = d_features + b * in_pixels * channels;
        const float *dc = d_cols + b * out_pixels * 9 * channels;
        for (size_t r = 0; r < out_pixels; r++)
            for (size_t k = 0; k < 9; k++, dc += channels) {
                const int src = win[r * 9 + k];
                if (src < 0)
                    continue;
                float *dst = df + (size_t)src * channels;
                for (size_t c = 0; c < channels; c++)
                    dst[c] += dc[c];
            }
    }
}

/* A count from 1 to max at p, as strtoul reads it (leading blanks allowed,
 * no sign); its end in *end, or 0 for none. */
static unsigned long count_at(const char *p, unsigned long max, char **end)
{
    errno = 0;
    const unsigned long v = strtoul(p, end, 10);
    const char *q = p;
    while (*q == ' ' || *q == '\t')
        q++;
    return *end == p || *q == '-' || *q == '+' || errno || v > max ? 0 : v;
}

int vit_stem_parse(const char *list, size_t *layers, size_t *channels, size_t *strides)
{
    *layers = 0;
    if (!list || strcmp(list, "0") == 0)
        return 0;
    const char *p = list;
    for (;;) {
        char *end;
        const unsigned long k = count_at(p, 1024, &end);
        unsigned long stride = 1;
        if (k && *end == '/')
            stride = count_at(end + 1, VIT_STEM_MAX_STRIDE, &end);
        if (k == 0 || stride == 0 || *layers == VIT_STEM_MAX_LAYERS ||
            (*end != ',' && *end != '\0'))
            return -1;
        channels[*layers] = (size_t)k;
        strides[(*layers)++] = (size_t)stride;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

void vit_stem_format(size_t layers, const size_t *channels, const size_t *strides, char *buf,
                     size_t len)
{
    snprintf(buf, len, "0");
    for (size_t l = 0, at = 0; l < layers && at < len; l++) {
        at += (size_t)snprintf(buf + at, len - at, "%s%zu", l ? "," : "", channels[l]);
        if (strides[l] != 1 && at < len)
            at += (size_t)snprintf(buf + at, len - at, "/%zu", strides[l]);
    }
}

static size_t in_channels_of(const vit_stem *s, size_t l)
{
    return l == 0 ? s->in_channels : s->channels[l - 1];
}

static size_t pixels_of(const vit_stem *s, size_t l) { return s->sides[l] * s->sides[l]; }

/* The most floats of any layer's output map, or of its columns, at the
 * largest batch. */
static size_t largest_map(const vit_stem *s, int columns)
{
    size_t largest = 0;
    for (size_t l = 0; l < s->layers; l++) {
        const size_t n =
            pixels_of(s, l + 1) * (columns ? 9 * in_channels_of(s, l) : s->channels[l]);
        largest = n > largest ? n : largest;
    }
    return s->max_batch * largest;
}

/* The buffers and convolutions of one way of computing the layers. */
#ifdef VIT_STEM_ONEDNN
/* The raster index y * side + x of the pixel at patch-order index r of a
 * map of this side. */
static size_t raster_index(size_t side, size_t patch, size_t r)
{
    const size_t per_row = side / patch, in_patch = r % (patch * patch), q = r / (patch * patch);
    const size_t y = (q / per_row) * patch + in_patch / patch,
                 x = (q % per_row) * patch + in_patch % patch;
    return y * side + x;
}

/* The most channels of any layer's output (K_max) or input (C_max). */
static size_t widest(const vit_stem *s, int inputs)
{
    size_t w = 0;
    for (size_t l = 0; l < s->layers; l++) {
        const size_t c = inputs ? in_channels_of(s, l) : s->channels[l];
        w = c > w ? c : w;
    }
    return w;
}

static srp_status alloc_convolutions(vit_stem *s, size_t patch)
{
    const size_t K_last = s->channels[s->layers - 1], last_pixels = pixels_of(s, s->layers);
    s->patch_order = malloc(sizeof(int) * last_pixels);
    if (!s->patch_order)
        return SRP_ERR_NOMEM;
    for (size_t r = 0; r < last_pixels; r++)
        s->patch_order[raster_index(s->sides[s->layers], patch, r)] = (int)r;
    if (!ex_alloc_floats(&s->dw_hat, widest(s, 0) * 9 * widest(s, 1)) ||
        !ex_alloc_floats(&s->db, widest(s, 0)) || !ex_alloc_floats(&s->zero_bias, widest(s, 0)) ||
        !ex_alloc_floats(&s->patch_out, s->max_batch * last_pixels * K_last) ||
        !ex_alloc_floats(&s->d_maps, largest_map(s, 0)))
        return SRP_ERR_NOMEM;
    memset(s->zero_bias, 0, sizeof(float) * widest(s, 0));
    for (size_t l = 0; l < s->layers; l++) {
        const size_t c_in = in_channels_of(s, l);
        EX_TRY(
            vit_conv3x3_create(&s->op[l], s->sides[l], s->strides[l], c_in, s->channels[l], l > 0));
        if (!ex_alloc_floats(&s->w_hat[l], s->channels[l] * 9 * c_in))
            return SRP_ERR_NOMEM;
    }
    return SRP_OK;
}
#else
static srp_status alloc_columns(vit_stem *s, size_t patch)
{
    if (!ex_alloc_floats(&s->d_cols, largest_map(s, 1)))
        return SRP_ERR_NOMEM;
    for (size_t l = 0; l < s->layers; l++) {
        const size_t out_pixels = pixels_of(s, l + 1);
        s->windows[l] = malloc(sizeof(int) * 9 * out_pixels);
        if (!s->windows[l] ||
            !ex_alloc_floats(&s->cols[l], s->max_batch * out_pixels * 9 * in_channels_of(s, l)))
            return SRP_ERR_NOMEM;
        vit_stem_windows(s->sides[l], s->strides[l], l + 1 == s->layers ? patch : 0, s->windows[l]);
    }
    return SRP_OK;
}
#endif

srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, const size_t *strides,
                         size_t in_channels, size_t image_size, size_t patch, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng, ex_linear_table *names)
{
    memset(s, 0, sizeof(*s));
    if (layers == 0 || layers > VIT_STEM_MAX_LAYERS || !channels || !strides || in_channels == 0 ||
        image_size == 0 || patch == 0 || max_batch == 0)
        return SRP_ERR_INVALID_ARG;
    s->sides[0] = image_size;
    for (size_t l = 0; l < layers; l++) {
        if (channels[l] == 0 || strides[l] == 0 || strides[l] > VIT_STEM_MAX_STRIDE)
            return SRP_ERR_INVALID_ARG;
        s->sides[l + 1] = vit_stem_out_side(s->sides[l], strides[l]);
    }
    if (s->sides[layers] % patch != 0)
        return SRP_ERR_INVALID_ARG;
    s->layers = layers;
    memcpy(s->channels, channels, sizeof(size_t) * layers);
    memcpy(s->strides, strides, sizeof(size_t) * layers);
    s->in_channels = in_channels;
    s->max_batch = max_batch;
    srp_status st = SRP_ERR_NOMEM;
    if (!ex_alloc_floats(&s->in, max_batch * pixels_of(s, 0) * in_channels) ||
        !ex_alloc_floats(&s->d_features, largest_map(s, 0)))
        goto fail;
    for (size_t l = 0; l < layers; l++) {
        const size_t rows = max_batch * pixels_of(s, l + 1);
        srp_linear_config lc = *base;
        lc.in_features = 9 * in_channels_of(s, l);
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
    st = alloc_convolutions(s, patch);
#else
    st = alloc_columns(s, patch);
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
        free(s->windows[l]);
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
    free(s->d_cols);
    memset(s, 0, sizeof(*s));
}

#ifdef VIT_STEM_ONEDNN
/* the last map [B][S_L^2][K] in raster order <-> [B][S_L^2][K] in patch
 * order; images in parallel */
static void to_patch_order(const vit_stem *s, const float *raster, size_t batch, size_t K,
                           float *patches)
{
    const size_t pixels = pixels_of(s, s->layers);
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < pixels; y++)
            memcpy(patches + (b * pixels + (size_t)s->patch_order[y]) * K,
                   raster + (b * pixels + y) * K, sizeof(float) * K);
}

static void to_raster_order(const vit_stem *s, const float *patches, size_t batch, size_t K,
                            float *raster)
{
    const size_t pixels = pixels_of(s, s->layers);
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < pixels; y++)
            memcpy(raster + (b * pixels + y) * K,
                   patches + (b * pixels + (size_t)s->patch_order[y]) * K, sizeof(float) * K);
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
    const size_t C = s->in_channels, pixels = pixels_of(s, 0);
    /* images [B][C][S*S] -> in [B][S*S][C] */
    for (size_t b = 0; b < batch; b++)
        for (size_t c = 0; c < C; c++)
            for (size_t y = 0; y < pixels; y++)
                s->in[(b * pixels + y) * C + c] = images[(b * C + c) * pixels + y];
    for (size_t l = 0; l < s->layers; l++) {
        const size_t K = s->channels[l], n = batch * pixels_of(s, l + 1);
        const float *x = l == 0 ? s->in : s->out[l - 1];
#ifdef VIT_STEM_ONEDNN
        EX_TRY(srp_linear_forward_weight(s->conv[l], training, s->w_hat[l]));
        EX_TRY(vit_conv3x3_forward(s->op[l], batch, x, s->w_hat[l], bias_of(s, l), s->pre[l]));
#else
        vit_stem_columns(x, batch, pixels_of(s, l), pixels_of(s, l + 1), in_channels_of(s, l),
                         s->windows[l], s->cols[l]);
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
    const size_t B = s->batch;
#ifdef VIT_STEM_ONEDNN
    /* d(out[l]) in d, then d(pre[l]) in place; d(out[l - 1]) into other */
    float *d = s->d_maps, *other = s->d_features;
    to_raster_order(s, s->d_features, B, s->channels[s->layers - 1], d);
    for (size_t l = s->layers; l-- > 0;) {
        EX_TRY(srp_gelu_backward_from_output(s->pre[l], s->out[l], d,
                                             B * pixels_of(s, l + 1) * s->channels[l], d));
        EX_TRY(vit_conv3x3_backward(s->op[l], B, l ? s->out[l - 1] : s->in, s->w_hat[l], d,
                                    s->dw_hat, s->db, l ? other : NULL));
        EX_TRY(srp_linear_backward_weight(s->conv[l], s->dw_hat, s->db));
        float *t = d;
        d = other;
        other = t;
    }
#else
    float *d = s->d_features; /* d(out[l]), then d(pre[l]) in place */
    for (size_t l = s->layers; l-- > 0;) {
        const size_t n = B * pixels_of(s, l + 1);
        EX_TRY(srp_gelu_backward_from_output(s->pre[l], s->out[l], d, n * s->channels[l], d));
        EX_TRY(srp_linear_backward(s->conv[l], s->cols[l], d, n, l ? s->d_cols : NULL));
        if (l) { /* d(cols[l]) -> d(out[l - 1]), over d(pre[l]), now consumed */
            memset(d, 0, sizeof(float) * B * pixels_of(s, l) * s->channels[l - 1]);
            vit_stem_columns_backward(s->d_cols, B, pixels_of(s, l), pixels_of(s, l + 1),
                                      s->channels[l - 1], s->windows[l], d);
        }
    }
#endif
    return SRP_OK;
}
