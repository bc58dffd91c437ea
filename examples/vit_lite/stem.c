/* The convolutional stem (stem.h): per layer a sigmaReparam 3x3
 * convolution (the library's srp_conv2d) and a GELU, on NCHW maps. */
#include "stem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tensors.h"

size_t vit_stem_out_side(size_t side, size_t stride) { return (side - 1) / stride + 1; }

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

static size_t pixels_of(const vit_stem *s, size_t l) { return s->sides[l] * s->sides[l]; }

srp_status vit_stem_init(vit_stem *s, size_t layers, const size_t *channels, const size_t *strides,
                         size_t in_channels, size_t image_size, size_t max_batch,
                         const srp_linear_config *base, srp_rng *rng)
{
    memset(s, 0, sizeof(*s));
    if (layers == 0 || layers > VIT_STEM_MAX_LAYERS || !channels || !strides || in_channels == 0 ||
        image_size == 0 || max_batch == 0)
        return SRP_ERR_INVALID_ARG;
    s->sides[0] = image_size;
    for (size_t l = 0; l < layers; l++) {
        if (channels[l] == 0 || strides[l] == 0 || strides[l] > VIT_STEM_MAX_STRIDE)
            return SRP_ERR_INVALID_ARG;
        s->sides[l + 1] = vit_stem_out_side(s->sides[l], strides[l]);
    }
    s->layers = layers;
    memcpy(s->channels, channels, sizeof(size_t) * layers);
    memcpy(s->strides, strides, sizeof(size_t) * layers);
    s->in_channels = in_channels;
    s->max_batch = max_batch;
    srp_status st = SRP_ERR_NOMEM;
    if (!ex_alloc_floats(&s->in, max_batch * pixels_of(s, 0) * in_channels))
        goto fail;
    for (size_t l = 0; l < layers; l++) {
        const size_t n = max_batch * pixels_of(s, l + 1) * channels[l];
        srp_conv2d_config cc =
            srp_conv2d_config_default(l ? channels[l - 1] : in_channels, channels[l], 3);
        cc.stride = strides[l];
        cc.padding = 1;
        cc.bias = base->bias;
        cc.reparam = base->reparam;
        cc.gamma_init = base->gamma_init;
        cc.init_std = base->init_std;
        cc.power_iters = base->power_iters;
        cc.seed = srp_rng_next_u64(rng);
        if ((st = srp_conv2d_create(&s->conv[l], &cc, max_batch, s->sides[l], s->sides[l])) !=
            SRP_OK)
            goto fail;
        st = SRP_ERR_NOMEM;
        if (!ex_alloc_floats(&s->pre[l], n) || !ex_alloc_floats(&s->out[l], n) ||
            !ex_alloc_floats(&s->d_out[l], n))
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
        srp_conv2d_destroy(s->conv[l]);
        free(s->pre[l]);
        free(s->out[l]);
        free(s->d_out[l]);
    }
    free(s->in);
    memset(s, 0, sizeof(*s));
}

srp_status vit_stem_forward(vit_stem *s, const float *images, size_t batch, int training,
                            const float **out)
{
    if (!s->layers || !images || batch == 0 || batch > s->max_batch)
        return SRP_ERR_INVALID_ARG;
    /* a copy: the first layer's backward reads the images again */
    memcpy(s->in, images, sizeof(float) * batch * s->in_channels * pixels_of(s, 0));
    for (size_t l = 0; l < s->layers; l++) {
        const float *x = l == 0 ? s->in : s->out[l - 1];
        EX_TRY(srp_conv2d_forward(s->conv[l], x, batch, s->sides[l], s->sides[l], s->pre[l],
                                  training));
        EX_TRY(
            srp_gelu_forward(s->pre[l], batch * pixels_of(s, l + 1) * s->channels[l], s->out[l]));
    }
    s->batch = batch;
    *out = s->out[s->layers - 1];
    return SRP_OK;
}

srp_status vit_stem_backward(vit_stem *s)
{
    if (!s->layers || s->batch == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t B = s->batch;
    for (size_t l = s->layers; l-- > 0;) { /* d(out[l]) -> d(pre[l]) in place -> d(out[l - 1]) */
        float *d = s->d_out[l];
        EX_TRY(srp_gelu_backward_from_output(s->pre[l], s->out[l], d,
                                             B * pixels_of(s, l + 1) * s->channels[l], d));
        EX_TRY(srp_conv2d_backward(s->conv[l], l ? s->out[l - 1] : s->in, d,
                                   l ? s->d_out[l - 1] : NULL));
    }
    return SRP_OK;
}
