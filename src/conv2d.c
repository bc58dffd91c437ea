/* The sigmaReparam 2-D convolution: y = conv2d(x, (gamma / sigma) W) + b.
 *
 * x: [B][C][H][W], y: [B][K][OH][OW], W: [K][C][k][k], which row-major is
 * the [out][in] = [K][C k k] weight of an internal srp_linear. The linear
 * owns the reparametrization: its power step and checks (prepare), the
 * scale gamma / sigma, the order rules, and the backward's formulas, which
 * take dL/dW_hat (srp_linear_backward_weight). This file computes the
 * product and the gradients of its two inputs, in one of two ways:
 *  - through the GEMM door's convolution (blas_conv.c: oneDNN's direct
 *    convolution, made at create for the largest shape), with
 *    W_hat = scale W formed first;
 *  - as im2col and srp_sgemm, scale in the GEMM's alpha, over groups of n
 *    images (as many as make a wide GEMM):
 *        cols   [C k k][n OH OW]: column (b, i, j) holds the window that
 *                                 output pixel (i, j) of image b reads
 *        Y      = scale W cols     [K][n OH OW]  -> y, b added
 *        dW_hat = G cols^T         [K][C k k]    (G: dy as [K][n OH OW])
 *        dcols  = scale W^T G      [C k k][n OH OW] -> dx, each column
 *                                 summed back onto the pixels it copied
 * The door runs the shape it was made for (max_batch, max_height,
 * max_width); every other shape, and every shape where the build has no
 * such convolution, runs im2col. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* An im2col GEMM takes enough images to have this many columns (a GEMM
 * this wide runs near its peak), and one at least. */
#define GEMM_COLUMNS 4096

struct srp_conv2d {
    size_t in_ch, out_ch, kernel, stride, padding;
    size_t max_batch, max_height, max_width;
    size_t patch;   /* in_ch kernel^2: a row of W */
    srp_linear *lin;
    srp_conv *door; /* the door's convolution of the largest shape, or NULL */
    size_t group;   /* images per im2col GEMM */
    float *cols;    /* [patch][group max_oh max_ow]: columns, then their gradient */
    float *prod;    /* [out_ch][group max_oh max_ow]: the GEMM's Y, then G */
    float *w_hat;   /* [out_ch][patch]: scale W, for the door */
    float *dw_hat;  /* [out_ch][patch]: dL/dW_hat */
    float *db;      /* [out_ch]: dL/db */
    double *db_acc; /* [out_ch]: its sums */
    /* the last forward that succeeded */
    size_t batch, height, width;
    int by_door;
};

srp_conv2d_config srp_conv2d_config_default(size_t in_ch, size_t out_ch, size_t kernel)
{
    const srp_linear_config l = srp_linear_config_default(in_ch * kernel * kernel, out_ch);
    srp_conv2d_config c;
    memset(&c, 0, sizeof(c));
    c.in_channels = in_ch;
    c.out_channels = out_ch;
    c.kernel = kernel;
    c.stride = 1;
    c.padding = 0;
    c.bias = l.bias;
    c.reparam = l.reparam;
    c.gamma_init = l.gamma_init;
    c.init_std = l.init_std;
    c.power_iters = l.power_iters;
    c.seed = l.seed;
    return c;
}

/* One side of the output: (side + 2 pad - k) / s + 1; 0 when the kernel is
 * larger than the padded side (or the sum overflows). */
static size_t out_side(const srp_conv2d *c, size_t side)
{
    if (side > SIZE_MAX - 2 * c->padding || side + 2 * c->padding < c->kernel)
        return 0;
    return (side + 2 * c->padding - c->kernel) / c->stride + 1;
}

/* a * b * c * d fits size_t (and then floats of it, as bytes) */
static int product_fits(size_t a, size_t b, size_t c, size_t d)
{
    const size_t limit = SIZE_MAX / sizeof(double);
    size_t p = a;
    const size_t f[3] = {b, c, d};
    for (int i = 0; i < 3; i++) {
        if (f[i] && p > limit / f[i])
            return 0;
        p *= f[i];
    }
    return 1;
}

void srp_conv2d_destroy(srp_conv2d *c)
{
    if (!c)
        return;
    srp_linear_destroy(c->lin);
    srp_conv_destroy(c->door);
    free(c);
}

/* The buffers, in the block of the layer (srp_arena_new). */
static void layout(void *obj, srp_arena *a)
{
    srp_conv2d *c = obj;
    const size_t columns = c->group * out_side(c, c->max_height) * out_side(c, c->max_width);
    SRP_ARENA_FLOATS(a, c->patch * columns, &c->cols);
    SRP_ARENA_FLOATS(a, c->out_ch * columns, &c->prod);
    SRP_ARENA_FLOATS(a, c->out_ch * c->patch, &c->w_hat, &c->dw_hat);
    SRP_ARENA_FLOATS(a, c->out_ch, &c->db);
    SRP_ARENA_DOUBLES(a, c->out_ch, &c->db_acc);
}

srp_status srp_conv2d_create(srp_conv2d **out, const srp_conv2d_config *cfg, size_t max_batch,
                             size_t max_height, size_t max_width)
{
    if (!out || !cfg) {
        if (out)
            *out = NULL;
        return SRP_FAIL_NULL(out, cfg);
    }
    *out = NULL;
    if (cfg->in_channels == 0 || cfg->out_channels == 0 || cfg->kernel == 0 || cfg->stride == 0 ||
        max_batch == 0 || max_height == 0 || max_width == 0)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_conv2d_create: a size is 0 (in_channels %zu, out_channels %zu, kernel "
                        "%zu, stride %zu, max_batch %zu, max_height %zu, max_width %zu)",
                        cfg->in_channels, cfg->out_channels, cfg->kernel, cfg->stride, max_batch,
                        max_height, max_width);
    if (cfg->padding > SIZE_MAX / 4 || !product_fits(cfg->in_channels, cfg->kernel, cfg->kernel, 1))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_conv2d_create: in_channels %zu x kernel %zu x kernel overflows, or "
                        "padding %zu is absurd",
                        cfg->in_channels, cfg->kernel, cfg->padding);
    srp_conv2d proto = {.in_ch = cfg->in_channels,
                        .out_ch = cfg->out_channels,
                        .kernel = cfg->kernel,
                        .stride = cfg->stride,
                        .padding = cfg->padding,
                        .max_batch = max_batch,
                        .max_height = max_height,
                        .max_width = max_width,
                        .patch = cfg->in_channels * cfg->kernel * cfg->kernel};
    const size_t oh = out_side(&proto, max_height), ow = out_side(&proto, max_width);
    if (oh == 0 || ow == 0)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_conv2d_create: kernel %zu larger than the padded largest image "
                        "%zu x %zu (padding %zu)",
                        cfg->kernel, max_height, max_width, cfg->padding);
    const size_t pixels = oh * ow; /* fits: oh <= max_height + 1, ow likewise */
    proto.group = (GEMM_COLUMNS + pixels - 1) / pixels;
    if (proto.group > max_batch)
        proto.group = max_batch;
    /* every buffer's size, and the GEMMs' sizes, fit */
    const size_t widest = proto.patch > proto.out_ch ? proto.patch : proto.out_ch;
    if (!product_fits(max_batch, proto.in_ch, max_height, max_width) ||
        !product_fits(max_batch, proto.out_ch, oh, ow) ||
        !product_fits(widest, proto.group, pixels, 1) ||
        !product_fits(proto.out_ch, proto.patch, 1, 1) || !srp_blas_size_ok(proto.patch) ||
        !srp_blas_size_ok(proto.out_ch) || !srp_blas_size_ok(proto.group * pixels))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_conv2d_create: max_batch %zu x %zu channels x %zu x %zu pixels: a "
                        "buffer past SIZE_MAX bytes or a GEMM past BLAS's int",
                        max_batch, cfg->in_channels, max_height, max_width);
    srp_conv2d *c = srp_arena_new(&proto, sizeof(proto), layout);
    if (!c)
        return SRP_ERR_NOMEM;

    srp_linear_config lc = srp_linear_config_default(c->patch, c->out_ch);
    lc.bias = cfg->bias;
    lc.reparam = cfg->reparam;
    lc.gamma_init = cfg->gamma_init;
    lc.init_std = cfg->init_std;
    lc.power_iters = cfg->power_iters;
    lc.seed = cfg->seed;
    /* The layer holds W, sigma and gamma; the products are the door's or
     * im2col's, so its own GEMMs never run. */
    srp_status st = srp_linear_create_fp32(&c->lin, &lc);
    const srp_conv_desc d = {
        .batch = max_batch,
        .in_ch = c->in_ch,
        .out_ch = c->out_ch,
        .height = max_height,
        .width = max_width,
        .kernel = c->kernel,
        .stride = c->stride,
        .padding = c->padding,
        .bias = cfg->bias != 0,
        .bf16_inputs = srp_gemm_inputs_active() == SRP_INPUTS_BF16_NATIVE,
    };
    if (st == SRP_OK)
        st = srp_conv_create(&c->door, &d);
    if (st != SRP_OK) {
        srp_conv2d_destroy(c);
        return st;
    }
    *out = c;
    return SRP_OK;
}

/* *oh x *ow, the output of a height x width image; SRP_ERR_INVALID_ARG,
 * with a detail naming call, when the kernel is larger than the padded
 * image. */
static srp_status output_size(const srp_conv2d *c, const char *call, size_t height, size_t width,
                              size_t *oh, size_t *ow)
{
    *oh = out_side(c, height);
    *ow = out_side(c, width);
    if (*oh == 0 || *ow == 0)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: kernel %zu larger than the padded image %zu x %zu (padding %zu)", call,
                        c->kernel, height, width, c->padding);
    return SRP_OK;
}

srp_status srp_conv2d_output_size(const srp_conv2d *c, size_t height, size_t width, size_t *out_h,
                                  size_t *out_w)
{
    if (!c || !out_h || !out_w)
        return SRP_FAIL_NULL(c, out_h, out_w);
    if (height == 0 || width == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_conv2d_output_size: height %zu, width %zu: a "
                        "size is 0", height, width);
    size_t oh, ow; /* the caller's untouched on failure */
    const srp_status st = output_size(c, "srp_conv2d_output_size", height, width, &oh, &ow);
    if (st == SRP_OK) {
        *out_h = oh;
        *out_w = ow;
    }
    return st;
}

srp_linear *srp_conv2d_linear(srp_conv2d *c) { return c ? c->lin : NULL; }
float *srp_conv2d_weight(srp_conv2d *c) { return c ? srp_linear_weight(c->lin) : NULL; }
float *srp_conv2d_weight_grad(srp_conv2d *c) { return c ? srp_linear_weight_grad(c->lin) : NULL; }
float *srp_conv2d_bias(srp_conv2d *c) { return c ? srp_linear_bias(c->lin) : NULL; }
float *srp_conv2d_bias_grad(srp_conv2d *c) { return c ? srp_linear_bias_grad(c->lin) : NULL; }
float *srp_conv2d_gamma(srp_conv2d *c) { return c ? srp_linear_gamma(c->lin) : NULL; }
float *srp_conv2d_gamma_grad(srp_conv2d *c) { return c ? srp_linear_gamma_grad(c->lin) : NULL; }
float *srp_conv2d_u(srp_conv2d *c) { return c ? srp_linear_u(c->lin) : NULL; }
float *srp_conv2d_v(srp_conv2d *c) { return c ? srp_linear_v(c->lin) : NULL; }
float srp_conv2d_sigma(const srp_conv2d *c) { return c ? srp_linear_sigma(c->lin) : NAN; }

void srp_conv2d_zero_grad(srp_conv2d *c)
{
    if (c)
        srp_linear_zero_grad(c->lin);
}

/* ---- im2col ---- */

/* The output columns [lo, hi) whose input column ox s + q - pad lies in
 * [0, side): the others read the zero padding. */
static void valid_range(const srp_conv2d *c, size_t q, size_t side, size_t out, size_t *lo,
                        size_t *hi)
{
    const size_t s = c->stride, p = c->padding;
    *lo = q >= p ? 0 : (p - q + s - 1) / s;
    *hi = side + p <= q ? 0 : (side + p - q + s - 1) / s;
    if (*hi > out)
        *hi = out;
    if (*lo > *hi)
        *lo = *hi;
}

/* x: [n][C][H][W] -> cols: [C k k][n OH OW]; rows in parallel */
static void im2col(const srp_conv2d *c, const float *x, size_t n, size_t H, size_t W, size_t OH,
                   size_t OW, float *cols)
{
    const size_t k = c->kernel, s = c->stride, ld = n * OH * OW;
    const long rows = (long)c->patch;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (c->patch * ld >= SRP_PARALLEL_MIN_ELEMS)
    for (long r = 0; r < rows; r++) {
        const size_t ch = (size_t)r / (k * k), ky = (size_t)r / k % k, kx = (size_t)r % k;
        size_t lo, hi;
        valid_range(c, kx, W, OW, &lo, &hi);
        for (size_t b = 0; b < n; b++)
            for (size_t oy = 0; oy < OH; oy++) {
                float *dst = cols + (size_t)r * ld + (b * OH + oy) * OW;
                const size_t iy = oy * s + ky; /* + padding */
                if (iy < c->padding || iy - c->padding >= H) {
                    memset(dst, 0, sizeof(float) * OW);
                    continue;
                }
                const float *src = x + ((b * c->in_ch + ch) * H + iy - c->padding) * W;
                memset(dst, 0, sizeof(float) * lo);
                for (size_t ox = lo; ox < hi; ox++)
                    dst[ox] = src[ox * s + kx - c->padding];
                memset(dst + hi, 0, sizeof(float) * (OW - hi));
            }
    }
}

/* dcols: [C k k][n OH OW] -> dx: [n][C][H][W], each pixel the sum of the
 * columns that copied it, in a fixed order; images and channels in
 * parallel */
static void col2im(const srp_conv2d *c, const float *dcols, size_t n, size_t H, size_t W, size_t OH,
                   size_t OW, float *dx)
{
    const size_t k = c->kernel, s = c->stride, ld = n * OH * OW;
    const long planes = (long)(n * c->in_ch);
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (c->patch * ld >= SRP_PARALLEL_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        const size_t b = (size_t)pl / c->in_ch, ch = (size_t)pl % c->in_ch;
        float *plane = dx + (size_t)pl * H * W;
        memset(plane, 0, sizeof(float) * H * W);
        for (size_t ky = 0; ky < k; ky++)
            for (size_t kx = 0; kx < k; kx++) {
                const float *row = dcols + ((ch * k + ky) * k + kx) * ld + b * OH * OW;
                size_t lo, hi;
                valid_range(c, kx, W, OW, &lo, &hi);
                for (size_t oy = 0; oy < OH; oy++) {
                    const size_t iy = oy * s + ky;
                    if (iy < c->padding || iy - c->padding >= H)
                        continue;
                    float *dst = plane + (iy - c->padding) * W;
                    for (size_t ox = lo; ox < hi; ox++) /* ox s + kx >= padding from lo on */
                        dst[ox * s + kx - c->padding] += row[oy * OW + ox];
                }
            }
    }
}

/* y[b][o][:] = prod[o][b pixels ..] + bias[o] for the group's n images.
 * prod: [K][n pixels], y: [n][K][pixels] */
static void ungroup(const srp_conv2d *c, const float *prod, size_t n, size_t pixels,
                    const float *bias, float *y)
{
    const long planes = (long)(n * c->out_ch);
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * c->out_ch * pixels >= SRP_PARALLEL_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        const size_t b = (size_t)pl / c->out_ch, o = (size_t)pl % c->out_ch;
        const float *src = prod + (o * n + b) * pixels;
        float *dst = y + (size_t)pl * pixels;
        const float add = bias ? bias[o] : 0.0f;
        for (size_t i = 0; i < pixels; i++)
            dst[i] = src[i] + add;
    }
}

/* prod[o][b pixels ..] = dy[b][o][:], and acc[o] += its sum in double (the
 * images in order: the same bits at any thread count). dy: [n][K][pixels] */
static void group_gradient(const srp_conv2d *c, const float *dy, size_t n, size_t pixels,
                           float *prod, double *acc)
{
    const long outs = (long)c->out_ch;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * c->out_ch * pixels >= SRP_PARALLEL_MIN_ELEMS)
    for (long o = 0; o < outs; o++) {
        double sum = acc[o];
        for (size_t b = 0; b < n; b++) {
            const float *src = dy + (b * c->out_ch + (size_t)o) * pixels;
            memcpy(prod + ((size_t)o * n + b) * pixels, src, sizeof(float) * pixels);
            for (size_t i = 0; i < pixels; i++)
                sum += (double)src[i];
        }
        acc[o] = sum;
    }
}

static void im2col_forward(srp_conv2d *c, const float *x, size_t batch, size_t H, size_t W,
                           size_t OH, size_t OW, float scale, float *y)
{
    const size_t pixels = OH * OW;
    const float *bias = srp_linear_bias(c->lin), *w = srp_linear_weight(c->lin);
    for (size_t b0 = 0; b0 < batch; b0 += c->group) {
        const size_t n = batch - b0 < c->group ? batch - b0 : c->group, cols_n = n * pixels;
        im2col(c, x + b0 * c->in_ch * H * W, n, H, W, OH, OW, c->cols);
        /* Y = scale W cols: [K][n pixels] = [K][patch] x [patch][n pixels] */
        srp_sgemm(0, 0, c->out_ch, cols_n, c->patch, scale, w, c->patch, c->cols, cols_n, 0.0f,
                  c->prod, cols_n);
        ungroup(c, c->prod, n, pixels, bias, y + b0 * c->out_ch * pixels);
    }
}

static void im2col_backward(srp_conv2d *c, const float *x, const float *dy, float *dx, float scale)
{
    const size_t H = c->height, W = c->width, OH = out_side(c, H), OW = out_side(c, W);
    const size_t pixels = OH * OW;
    const float *w = srp_linear_weight(c->lin);
    for (size_t o = 0; o < c->out_ch; o++)
        c->db_acc[o] = 0.0;
    for (size_t b0 = 0; b0 < c->batch; b0 += c->group) {
        const size_t n = c->batch - b0 < c->group ? c->batch - b0 : c->group, cols_n = n * pixels;
        group_gradient(c, dy + b0 * c->out_ch * pixels, n, pixels, c->prod, c->db_acc);
        im2col(c, x + b0 * c->in_ch * H * W, n, H, W, OH, OW, c->cols);
        /* dW_hat (+)= G cols^T: [K][patch] = [K][n pixels] x [n pixels][patch] */
        srp_sgemm(0, 1, c->out_ch, c->patch, cols_n, 1.0f, c->prod, cols_n, c->cols, cols_n,
                  b0 ? 1.0f : 0.0f, c->dw_hat, c->patch);
        if (dx) /* dcols = scale W^T G: [patch][n pixels] = [patch][K] x [K][n pixels] */
            srp_sgemm(1, 0, c->patch, cols_n, c->out_ch, scale, w, c->patch, c->prod, cols_n, 0.0f,
                      c->cols, cols_n);
        if (dx)
            col2im(c, c->cols, n, H, W, OH, OW, dx + b0 * c->in_ch * H * W);
    }
    for (size_t o = 0; o < c->out_ch; o++)
        c->db[o] = (float)c->db_acc[o];
}

/* w_hat = scale W, for the door. w_hat, W: [K][patch] */
static void scale_weight(srp_conv2d *c, float scale)
{
    const float *w = srp_linear_weight(c->lin);
    const size_t count = c->out_ch * c->patch;
    for (size_t i = 0; i < count; i++)
        c->w_hat[i] = scale * w[i];
}

/* ---- forward and backward ---- */

srp_status srp_conv2d_forward(srp_conv2d *c, const float *x, size_t batch, size_t height,
                              size_t width, float *y, int training)
{
    if (!c || !x || !y)
        return SRP_FAIL_NULL(c, x, y);
    if (batch == 0 || height == 0 || width == 0)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_conv2d_forward: batch %zu, height %zu, width %zu: a size is 0", batch,
                        height, width);
    if (batch > c->max_batch || height > c->max_height || width > c->max_width)
        return srp_fail(SRP_ERR_SHAPE,
                        "srp_conv2d_forward: batch %zu, height %zu, width %zu above the maxima "
                        "given at create (%zu, %zu, %zu)",
                        batch, height, width, c->max_batch, c->max_height, c->max_width);
    size_t OH, OW;
    srp_status st = output_size(c, "srp_conv2d_forward", height, width, &OH, &OW);
    if (st != SRP_OK)
        return st;
    st = srp_linear_forward_prepare(c->lin, training);
    if (st != SRP_OK)
        return srp_fail(st, "srp_conv2d_forward: the weight's power step gave a non-finite or "
                            "zero sigma, or gamma is not finite");
    const float scale = srp_linear_prepared_scale(c->lin);
    const int by_door =
        c->door && batch == c->max_batch && height == c->max_height && width == c->max_width;
    int done = 0;
    if (by_door) {
        scale_weight(c, scale);
        if (!srp_all_finite(c->w_hat, c->out_ch * c->patch))
            return srp_fail(SRP_ERR_NUMERIC,
                            "srp_conv2d_forward: gamma / sigma times the weight overflows");
        const uint64_t t0 = srp_profile_begin();
        done = srp_conv_forward(c->door, x, c->w_hat, srp_linear_bias(c->lin), y);
        srp_profile_end(SRP_PROF_CONVOLUTION, t0);
    }
    if (!done) {
        const uint64_t t0 = srp_profile_begin();
        im2col_forward(c, x, batch, height, width, OH, OW, scale, y);
        srp_profile_end(SRP_PROF_CONVOLUTION, t0);
    }
    /* NaN or Inf in x or b, or an overflow: reported here, the layer as it
     * was. */
    const uint64_t t0 = srp_profile_begin();
    const int finite = srp_all_finite(y, batch * c->out_ch * OH * OW);
    srp_profile_end(SRP_PROF_FINITE_CHECK, t0);
    if (!finite)
        return srp_fail(SRP_ERR_NUMERIC,
                        "srp_conv2d_forward: NaN or Inf in y [%zu][%zu][%zu][%zu] (from x, the "
                        "bias, or an overflow)",
                        batch, c->out_ch, OH, OW);
    srp_linear_forward_commit(c->lin, training);
    c->batch = batch;
    c->height = height;
    c->width = width;
    c->by_door = by_door && done;
    return SRP_OK;
}

srp_status srp_conv2d_backward(srp_conv2d *c, const float *x, const float *dy, float *dx)
{
    if (!c || !x || !dy)
        return SRP_FAIL_NULL(c, x, dy);
    srp_status st = srp_linear_backward_order(c->lin, "srp_conv2d_backward");
    if (st != SRP_OK)
        return st;
    if (c->batch == 0) /* the linear ran a forward of its own: none of ours to differentiate */
        return srp_fail(SRP_ERR_ORDER, "srp_conv2d_backward: no convolution forward ran");
    /* the scale of the forward being differentiated */
    const float scale = srp_linear_forward_scale(c->lin);
    int done = 0;
    if (c->by_door) {
        scale_weight(c, scale);
        const uint64_t t0 = srp_profile_begin();
        done = srp_conv_backward(c->door, x, c->w_hat, dy, c->dw_hat, c->db, dx);
        srp_profile_end(SRP_PROF_CONVOLUTION, t0);
    }
    if (!done) {
        const uint64_t t0 = srp_profile_begin();
        im2col_backward(c, x, dy, dx, scale);
        srp_profile_end(SRP_PROF_CONVOLUTION, t0);
    }
    st = srp_linear_backward_weight(c->lin, c->dw_hat, c->db);
    if (st == SRP_ERR_NUMERIC)
        return srp_fail(st, "srp_conv2d_backward: NaN or Inf in the gradient of the weight or "
                            "the bias (from x or dy)");
    return st;
}

/* ---- lists ---- */

srp_status srp_conv2d_params(srp_conv2d *c, const char *prefix, srp_param_list *list)
{
    if (!c || !list)
        return SRP_FAIL_NULL(c, list);
    return srp_linear_params(c->lin, prefix, list);
}

srp_status srp_conv2d_state_refs(srp_conv2d *c, const char *prefix, srp_tensor_list *list)
{
    if (!c || !list)
        return SRP_FAIL_NULL(c, list);
    /* The linear's list, with the weight in its 4-D shape. */
    srp_tensor_list *own = NULL;
    srp_status st = srp_tensor_list_create(&own);
    if (st == SRP_OK)
        st = srp_linear_state_refs(c->lin, prefix, own);
    const srp_tensor_ref *refs = srp_tensor_list_refs(own);
    for (size_t i = 0; st == SRP_OK && i < srp_tensor_list_count(own); i++) {
        srp_tensor_ref r = refs[i];
        if (r.data == srp_linear_weight(c->lin)) {
            const size_t shape[4] = {c->out_ch, c->in_ch, c->kernel, c->kernel};
            st = srp_tensor_list_add(list, NULL, r.name, r.dtype, 4, shape, r.data);
        } else {
            st = srp_tensor_list_add(list, NULL, r.name, r.dtype, r.ndim, r.shape, r.data);
        }
    }
    srp_tensor_list_destroy(own);
    return st;
}
