/* The ViT-lite model in process: its backward against central differences,
 * and the convolutional stem against the convolutions it stands for. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reference_model.h"
#include "stem.h"
#include "testutil.h"
#include "vit_fixtures.h"

/* The model's backward wires the library's backwards together (residuals,
 * LayerNorms, GELU, token select, embeddings, every linear): check it
 * against central differences of the loss for sampled entries of every
 * tensor, weight matrices included. Eval forwards keep each layer's u at
 * its SVD vector, where sigma's derivative is v u^T to first order, as the
 * backward takes it. */
typedef struct {
    vit_model *m;
    const float *images;
    const int *labels;
    size_t batch;
} model_problem;

static double model_loss(void *ctx)
{
    const model_problem *P = ctx;
    const float *logits;
    float loss;
    assert_ok(vit_forward(P->m, P->images, P->batch, SRP_EVAL, &logits));
    assert_ok(srp_cross_entropy_forward(logits, P->labels, P->batch, 10, 0.0f, &loss));
    return loss;
}

static void test_model_backward_matches_differences(void **state)
{
    (void)state;
    /* without LayerNorms, with them, with a stem of one and of two
     * convolutions, the head on the mean of the tokens (without, then with
     * LayerNorms), and a stem of three convolutions at stride 2 (28 -> 14
     * -> 7 -> 4 pixels) */
    for (int variant = 0; variant < 7; variant++) {
        const int ln = variant == 1 || variant == 5;
        vit_config c = small_config(8, 3);
        c.layernorm = ln;
        c.pool = variant == 4 || variant == 5 ? VIT_POOL_MEAN : VIT_POOL_CLS;
        c.stem_layers = variant == 6 ? 3 : variant == 3 ? 2 : variant == 2 ? 1 : 0;
        c.stem_channels[0] = 3;
        c.stem_channels[1] = 2;
        c.stem_channels[2] = 3;
        if (variant == 6) { /* patches of 14: a 2x2 grid, 2x2 pixels of the 4x4 map each */
            c.stem_strides[0] = c.stem_strides[1] = c.stem_strides[2] = 2;
            c.patch = 14;
        }
        c.init_gain = 10.0f;
        c.seed = 5;
        vit_model *m = NULL;
        assert_ok(vit_create(&m, &c));
        srp_param_list *list = NULL;
        assert_ok(srp_param_list_create(&list));
        assert_ok(vit_model_params(m, list));
        const size_t np = srp_param_list_count(list);
        srp_param *params = srp_param_list_entries(list);
        srp_param_kind kinds[64];
        assert_true(np <= 64);
        for (size_t i = 0; i < np; i++)
            kinds[i] = srp_param_list_kind(list, i);
        srp_rng r = seeded_rng(9);
        float images[3 * 28 * 28], dlogits[30];
        const int labels[3] = {1, 7, 4};
        fill_normal_f(&r, images, 3 * 28 * 28, 1.0);
        for (size_t i = 0; i < np; i++) { /* non-trivial values everywhere */
            if (kinds[i] != SRP_PARAM_WEIGHT)
                fill_normal_f(&r, params[i].data, params[i].size,
                              kinds[i] == SRP_PARAM_GAMMA ? 0.2 : 0.3);
            if (kinds[i] == SRP_PARAM_GAMMA)
                params[i].data[0] += 1.5f;
            memset(params[i].grad, 0, sizeof(float) * params[i].size);
        }
        const float *logits;
        assert_ok(vit_forward(m, images, 3, SRP_EVAL, &logits));
        assert_ok(srp_cross_entropy_backward(logits, labels, 3, 10, 0.0f, dlogits));
        assert_ok(vit_backward(m, dlogits));
        model_problem P = {m, images, labels, 3};
        size_t checked = 0, weights_checked = 0;
        for (size_t i = 0; i < np; i++) {
            const int weight = kinds[i] == SRP_PARAM_WEIGHT;
            for (int k = 0; k < (weight ? 5 : 3) && (size_t)k < params[i].size; k++) {
                const size_t j = (size_t)srp_rng_below(&r, params[i].size);
                const double fd =
                    ref_central_difference_f(model_loss, &P, params[i].data + j, 1e-2f);
                const double an = params[i].grad[j];
                if (!(fabs(fd - an) <= 0.03 * fabs(fd) + 3e-4)) {
                    print_error("variant %d, %s[%zu]: backward %.6g, differences %.6g\n", variant,
                                params[i].name, j, an, fd);
                    fail();
                }
                checked++;
                weights_checked += weight;
            }
        }
        assert_true(weights_checked >= 5 * (1 + 4 * c.depth + 1));
        assert_true(checked > (ln ? 60u : 30u));
        srp_param_list_destroy(list);
        vit_destroy(m);
    }
}

/* The stem's output is the convolutions it stands for, computed here in
 * double directly on the raster images (each layer: W_hat = (gamma /
 * sigma) W of the forward, its bias, its stride, the GELU), read back in
 * patch order (vit_patches, channels last), with the kernels [K][C][3][3]
 * as PyTorch's. Stride 1 on
 * 6x6 images, and stride 2 then 1 on 7x7 ones (7 -> 4 -> 4, the last
 * windows half outside). */
static void test_stem_forward_is_the_convolution(void **state)
{
    (void)state;
    enum { B = 2, C = 2, MAXPIX = 49, L = 2, KMAX = 4 };
    const size_t channels[L] = {4, 3};
    const struct {
        size_t side, strides[L], patch;
    } cases[2] = {{6, {1, 1}, 3}, {7, {2, 1}, 2}};
    for (int t = 0; t < 2; t++) {
        const size_t S = cases[t].side, PIX = S * S, p = cases[t].patch;
        srp_rng r = seeded_rng(6);
        const srp_linear_config base = srp_linear_config_default(1, 1);
        vit_stem s;
        assert_ok(vit_stem_init(&s, L, channels, cases[t].strides, C, S, B, &base, &r));
        for (size_t l = 0; l < L; l++) { /* O(1) weights, a bias, gamma != sigma */
            const size_t c_in = l ? channels[l - 1] : C;
            fill_normal_f(&r, srp_conv2d_weight(s.conv[l]), channels[l] * 9 * c_in, 0.5);
            assert_ok(srp_linear_reinit_sigma(srp_conv2d_linear(s.conv[l])));
            fill_normal_f(&r, srp_conv2d_bias(s.conv[l]), channels[l], 0.3);
            *srp_conv2d_gamma(s.conv[l]) = 1.3f;
        }
        float images[B * C * MAXPIX];
        fill_normal_f(&r, images, B * C * PIX, 1.0);
        const float *map;
        assert_ok(vit_stem_forward(&s, images, B, SRP_TRAIN, &map));

        /* layer input, output: [b][y * side + x][channel], raster */
        static double maps[2][B][MAXPIX][KMAX];
        for (size_t b = 0; b < B; b++)
            for (size_t c = 0; c < C; c++)
                for (size_t i = 0; i < PIX; i++)
                    maps[0][b][i][c] = images[(b * C + c) * PIX + i];
        size_t in_side = S, side = S;
        for (size_t l = 0; l < L; l++) {
            const size_t c_in = l ? channels[l - 1] : C, K = channels[l], st = cases[t].strides[l];
            side = (in_side - 1) / st + 1;
            const float *w = srp_conv2d_weight(s.conv[l]), *bias = srp_conv2d_bias(s.conv[l]);
            const double scale = *srp_conv2d_gamma(s.conv[l]) / (double)srp_conv2d_sigma(s.conv[l]);
            for (size_t b = 0; b < B; b++)
                for (long y = 0; y < (long)side; y++)
                    for (long x = 0; x < (long)side; x++)
                        for (size_t k = 0; k < K; k++) {
                            double acc = 0.0;
                            for (long dy = -1; dy <= 1; dy++)
                                for (long dx = -1; dx <= 1; dx++) {
                                    const long sy = y * (long)st + dy, sx = x * (long)st + dx;
                                    if (sy < 0 || sy >= (long)in_side || sx < 0 ||
                                        sx >= (long)in_side)
                                        continue;
                                    for (size_t c = 0; c < c_in; c++) /* w: [K][C][3][3] */
                                        acc += w[(k * c_in + c) * 9 +
                                                 (size_t)((dy + 1) * 3 + dx + 1)] *
                                               maps[0][b][sy * (long)in_side + sx][c];
                                }
                            const double pre = bias[k] + scale * acc;
                            maps[1][b][y * (long)side + x][k] = 0.5 * pre * erfc(-pre / sqrt(2.0));
                        }
            memcpy(maps[0], maps[1], sizeof(maps[0]));
            in_side = side;
        }
        const size_t K = channels[L - 1], OPIX = side * side;
        static float out[B * MAXPIX * KMAX]; /* the last map as the patch embedding reads it */
        vit_patches(map, B, K, side, p, 1, 1, out);
        for (size_t b = 0; b < B; b++)
            for (size_t y = 0; y < side; y++)
                for (size_t x = 0; x < side; x++) {
                    /* patch (y / p, x / p) of side / p per row, pixel (y % p, x % p) in it */
                    const size_t at = (y / p * (side / p) + x / p) * p * p + y % p * p + x % p;
                    for (size_t k = 0; k < K; k++)
                        assert_close_rel(out[(b * OPIX + at) * K + k], maps[0][b][y * side + x][k],
                                         1e-5, 1.0, "stem output");
                }
        vit_stem_free(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_backward_matches_differences),
        cmocka_unit_test(test_stem_forward_is_the_convolution),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
