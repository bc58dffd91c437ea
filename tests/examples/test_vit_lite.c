/* The ViT-lite example: its data readers, and vit-lite-train run as a user
 * runs it (learning, exact resume, errors, plots). The program's path comes
 * from CMake (VIT_TRAIN_EXE). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "data.h"
#include "vit_model.h"
#include "official_names.h"
#include "reference_model.h"
#include "stem.h"
#include "testutil.h"
#include "trainer_harness.h"

/* Runs vit-lite-train with the options fmt formats (trainer_harness.h); out is an
 * array, its size taken. */
#define run_train(out, ...) run_programf(VIT_TRAIN_EXE, out, sizeof(out), __VA_ARGS__)

/* An IDX file of unsigned bytes: header for dims, then `data_len` bytes. */
static size_t make_idx(unsigned char *buf, int ndims, const size_t *dims, size_t data_len)
{
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++) {
        buf[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        buf[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        buf[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        buf[7 + 4 * i] = (unsigned char)dims[i];
    }
    const size_t head = 4 + 4 * (size_t)ndims;
    for (size_t i = 0; i < data_len; i++)
        buf[head + i] = (unsigned char)(i * 7 % 10); /* also valid labels */
    return head + data_len;
}

/* A folder with the four Fashion-MNIST files, train and test images each. */
static void make_idx_dir_sized(const char *dir, int gzip, size_t train, size_t test)
{
    const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    const size_t counts[4] = {train, train, test, test};
    unsigned char *buf = malloc(4 + 12 + (train > test ? train : test) * 28 * 28);
    assert_non_null(buf);
    mkdir(dir, 0700);
    for (int i = 0; i < 4; i++) {
        const size_t dims[3] = {counts[i], 28, 28};
        const int nd = i % 2 == 0 ? 3 : 1;
        const size_t n = make_idx(buf, nd, dims, nd == 3 ? counts[i] * 28 * 28 : counts[i]);
        char path[512];
        snprintf(path, sizeof(path), "%s/%s%s", dir, names[i], gzip ? ".gz" : "");
        write_bytes(path, buf, n, gzip);
    }
    free(buf);
}

/* The tiny folder most tests use: 20 train, 10 test images. */
static void make_idx_dir(const char *dir, int gzip) { make_idx_dir_sized(dir, gzip, 20, 10); }

static void test_idx_reader_reads_plain_and_gzip(void **state)
{
    (void)state;
    for (int gzip = 0; gzip < 2; gzip++) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/idx%d", scratch_dir(), gzip);
        make_idx_dir(dir, gzip);
        vit_data d;
        ex_error err;
        assert_int_equal(vit_load_idx(dir, NULL, &d, &err), EX_OK);
        assert_int_equal(d.train.count, 20);
        assert_int_equal(d.test.count, 10);
        assert_int_equal(d.train.height, 28);
        assert_int_equal(d.train.labels[3], 21 % 10);
        /* normalized with the training set's statistics: mean 0, std 1 */
        double sum = 0.0, sumsq = 0.0;
        const size_t n = 20 * 28 * 28;
        for (size_t i = 0; i < n; i++) {
            sum += d.train.images[i];
            sumsq += (double)d.train.images[i] * d.train.images[i];
        }
        assert_true(fabs(sum / n) < 1e-4);
        assert_close_rel(sumsq / n, 1.0, 1e-4, 0.0, "normalized variance");
        vit_data_free(&d);
    }
}

/* Each broken file gives an error naming the file and the problem. */
static void test_idx_reader_rejects_bad_files(void **state)
{
    (void)state;
    static unsigned char buf[4 + 12 + 4 * 28 * 28 + 16];
    const size_t dims[3] = {4, 28, 28};
    char path[512];
    scratch_path(path, sizeof(path), "bad.idx");
    struct {
        const char *what;
        size_t len;
        int edit; /* 0 none, 1 magic, 2 type, 3 ndims, 4 huge dim, 5 zero dim,
                     6 a header claiming 200 GB (found by fuzz_idx: the reader
                     took it all up front; ASan's allocator stops on that) */
        const char *expect;
    } cases[] = {
        {"truncated header", 7, 0, "header"},
        {"truncated data", 16 + 4 * 28 * 28 - 5, 0, "truncated"},
        {"trailing bytes", 16 + 4 * 28 * 28 + 3, 0, "longer"},
        {"bad magic", 16 + 4 * 28 * 28, 1, "magic"},
        {"not ubyte", 16 + 4 * 28 * 28, 2, "magic"},
        {"wrong rank", 16 + 4 * 28 * 28, 3, "magic"},
        {"huge dimension", 16 + 4 * 28 * 28, 4, "dimension"},
        {"zero dimension", 16 + 4 * 28 * 28, 5, "dimension"},
        {"huge claim, little data", 16 + 4 * 28 * 28, 6, "truncated"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        make_idx(buf, 3, dims, 4 * 28 * 28 + 16);
        if (cases[c].edit == 1)
            buf[0] = 0x1f;
        if (cases[c].edit == 2)
            buf[2] = 0x0d;
        if (cases[c].edit == 3)
            buf[3] = 2;
        if (cases[c].edit == 4)
            buf[4] = 0x7f;
        if (cases[c].edit == 5)
            memset(buf + 8, 0, 4);
        if (cases[c].edit == 6) { /* 525,056 x 512 x 768 bytes claimed */
            const unsigned char claim[12] = {0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0};
            memcpy(buf + 4, claim, sizeof(claim));
        }
        for (int gzip = 0; gzip < 2; gzip++) {
            write_bytes(path, buf, cases[c].len, gzip);
            size_t got[3];
            unsigned char *data = (unsigned char *)1;
            ex_error err;
            if (vit_read_idx(path, 3, got, &data, &err) == EX_OK || data != NULL ||
                !strstr(err.message, path) || !strstr(err.message, cases[c].expect)) {
                print_error("%s (gzip %d): expected an error with '%s', got '%s'\n", cases[c].what,
                            gzip, cases[c].expect, err.message);
                fail();
            }
        }
    }
    vit_data d;
    ex_error err;
    assert_int_equal(vit_load_idx("/nonexistent-dir", "install the package X", &d, &err),
                     EX_FAILED);
    assert_non_null(strstr(err.message, "train-images-idx3-ubyte"));
    assert_non_null(strstr(err.message, "install the package X"));
}

/* CIFAR-10 binary batches: records of a label byte and 3x32x32 pixels. */
static void test_cifar10_reader(void **state)
{
    (void)state;
    enum { RECORD = 1 + 3 * 32 * 32, PER_FILE = 3 };
    static unsigned char buf[PER_FILE * RECORD + 7];
    char dir[512], path[600];
    scratch_path(dir, sizeof(dir), "cifar");
    mkdir(dir, 0700);
    for (int f = 0; f <= 5; f++) {
        for (int r = 0; r < PER_FILE; r++) {
            buf[r * RECORD] = (unsigned char)((f * PER_FILE + r) % 10);
            for (int i = 1; i < RECORD; i++)
                buf[r * RECORD + i] = (unsigned char)(i * (r + 1) + f);
        }
        if (f < 5)
            snprintf(path, sizeof(path), "%s/data_batch_%d.bin", dir, f + 1);
        else
            snprintf(path, sizeof(path), "%s/test_batch.bin", dir);
        write_bytes(path, buf, PER_FILE * RECORD, 0);
    }
    vit_data d;
    ex_error err;
    assert_int_equal(vit_load_cifar10(dir, &d, &err), EX_OK);
    assert_int_equal(d.train.count, 5 * PER_FILE);
    assert_int_equal(d.test.count, PER_FILE);
    assert_int_equal(d.train.channels, 3);
    assert_int_equal(d.train.height, 32);
    assert_int_equal(d.train.labels[7], 7);
    assert_true(d.std[0] > 0.0f && d.std[2] > 0.0f);
    vit_data_free(&d);

    /* a partial record, and a label byte out of range */
    write_bytes(path, buf, PER_FILE * RECORD - 5, 0);
    assert_int_equal(vit_load_cifar10(dir, &d, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "test_batch.bin"));
    buf[RECORD] = 17;
    write_bytes(path, buf, PER_FILE * RECORD, 0);
    assert_int_equal(vit_load_cifar10(dir, &d, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "label 17"));
}

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

/* A small model: 7x7 patches (17 tokens), 2 blocks of 2 heads, MLP 16. */
static vit_config small_config(size_t dim, size_t max_batch)
{
    vit_config c = vit_config_default();
    c.patch = 7;
    c.dim = dim;
    c.depth = 2;
    c.heads = 2;
    c.mlp_dim = 16;
    c.max_batch = max_batch;
    return c;
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

/* A checkpoint of the model keeps every sigmaReparam layer's whole power-
 * iteration state (u, v, sigma) and gamma, bit for bit: a model made from
 * another seed and loaded from it is the same model. */
static void test_checkpoint_keeps_power_iteration_state(void **state)
{
    (void)state;
    vit_config c = small_config(16, 2);
    vit_model *m[2];
    for (int k = 0; k < 2; k++) {
        c.seed = 100 + (uint64_t)k;
        assert_ok(vit_create(&m[k], &c));
    }
    srp_rng r = seeded_rng(4);
    float images[2 * 28 * 28];
    fill_normal_f(&r, images, 2 * 28 * 28, 1.0);
    for (int step = 0; step < 3; step++) /* training forwards move u, v, sigma */
        assert_ok(vit_forward(m[0], images, 2, SRP_TRAIN, NULL));
    char path[512];
    scratch_path(path, sizeof(path), "model_state.srp");
    srp_tensor_list *list[2];
    for (int k = 0; k < 2; k++) {
        assert_ok(srp_tensor_list_create(&list[k]));
        assert_ok(vit_model_state_refs(m[k], list[k]));
    }
    assert_ok(
        srp_checkpoint_save(path, srp_tensor_list_refs(list[0]), srp_tensor_list_count(list[0])));
    assert_ok(
        srp_checkpoint_load(path, srp_tensor_list_refs(list[1]), srp_tensor_list_count(list[1])));
    srp_tensor_list_destroy(list[0]);
    srp_tensor_list_destroy(list[1]);
    assert_true(vit_linears(m[0])->count > 0);
    for (size_t i = 0; i < vit_linears(m[0])->count; i++) {
        srp_linear *a = vit_linears(m[0])->linears[i];
        srp_linear *b = vit_linears(m[1])->linears[i];
        const size_t in = srp_linear_in_features(a), out = srp_linear_out_features(a);
        assert_memory_equal(srp_linear_weight(a), srp_linear_weight(b), sizeof(float) * in * out);
        assert_memory_equal(srp_linear_u(a), srp_linear_u(b), sizeof(float) * in);
        assert_memory_equal(srp_linear_v(a), srp_linear_v(b), sizeof(float) * out);
        assert_true(srp_linear_sigma(a) == srp_linear_sigma(b));
        assert_true(*srp_linear_gamma(a) == *srp_linear_gamma(b));
    }
    vit_destroy(m[0]);
    vit_destroy(m[1]);
}

static void test_cli_errors(void **state)
{
    (void)state;
    static char out[1 << 16];
    assert_int_equal(run_train(out, "--no-such-flag"), 2);
    assert_non_null(strstr(out, "unknown option '--no-such-flag'"));
    assert_non_null(strstr(out, "usage:"));
    assert_int_equal(run_train(out, "--lr abc"), 2);
    assert_non_null(strstr(out, "--lr"));
    assert_int_equal(run_train(out, "--epochs 0"), 2);
    assert_int_equal(run_train(out, "--optimizer rmsprop"), 2);
    assert_non_null(strstr(out, "sgd|lars|adamw"));
    assert_int_equal(run_train(out, "--dim 128 --heads 3"), 2);
    assert_int_equal(run_train(out, "--eval-only"), 2);
    assert_int_equal(run_train(out, "--logits l.safetensors"), 2);
    assert_non_null(strstr(out, "--logits goes with --eval-only"));
    for (size_t i = 0; i < 8; i++) { /* a stem list that is not one */
        static const char *bad[] = {"--stem 3,x",  "--stem 16,",  "--stem 1,2,3,4,5",
                                    "--stem 0,8",  "--stem 16/0", "--stem 16/5",
                                    "--stem 16/,", "--stem 16/-2"};
        assert_int_equal(run_train(out, "%s", bad[i]), 2);
        assert_non_null(strstr(out, "up to 4 channel counts"));
    }
    /* a patch grid that does not tile the stem's last map (28 -> 14 at
     * stride 2; patches of 7: a 4x4 grid) */
    assert_int_equal(run_train(out, "--dataset synthetic --synthetic-train 64 --synthetic-test 16 "
                                    "--stem 4/2 --patch 7"),
                     2);
    assert_non_null(
        strstr(out, "the stem's last map is 14x14, which a 4x4 grid of patches does not tile"));
    assert_int_equal(run_train(out, "--help"), 0);
    assert_non_null(strstr(out, "--stop-on-collapse"));
    /* A precision that cannot run here says why (this version has no bf16
     * GEMM path on any CPU); one that is none of the three, which they are. */
    assert_int_equal(run_train(out, "--dataset synthetic --precision bf16"), 2);
    assert_non_null(strstr(out, "--precision bf16: srp_set_precision: "));
    assert_int_equal(run_train(out, "--precision fp16"), 2);
    assert_non_null(strstr(out, "fp32|bf16|auto"));

    /* a missing data directory, and a corrupt IDX header */
    assert_int_equal(run_train(out, "--data-dir /nonexistent-dir"), 1);
    assert_non_null(strstr(out, "/nonexistent-dir/train-images-idx3-ubyte"));
    char dir[512], file[600];
    scratch_path(dir, sizeof(dir), "corrupt");
    make_idx_dir(dir, 1);
    snprintf(file, sizeof(file), "%s/t10k-images-idx3-ubyte.gz", dir);
    const unsigned char junk[16] = {0x12, 0x34, 0, 3};
    write_bytes(file, junk, sizeof(junk), 1);
    assert_int_equal(run_train(out, "--data-dir %s", dir), 1);
    assert_non_null(strstr(out, file));
    assert_non_null(strstr(out, "magic"));
}

#define SMALL_MODEL                                                                                \
    "--dataset synthetic --synthetic-train 2048 --synthetic-test 512 --dim 32 --depth 2 "          \
    "--heads 2 --mlp-dim 64 --batch 64 --log-every 4 --bound-every 8 " PLAIN_RECIPE
/* The tests' model predates the stem, separate q, k, v sigmas, erasing,
 * weight average, test-time flips and the cosine's floor of the default
 * recipe (and is the official model, for --export);
 * test_resume_is_bit_exact runs them too. */
#define PLAIN_RECIPE "--stem 0 --qkv-sigma fused --erase 0 --ema 0 --no-tta-flip --min-lr 0 "

static void test_learns_the_synthetic_set(void **state)
{
    (void)state;
    static char out[1 << 16];
    char metrics[512];
    scratch_path(metrics, sizeof(metrics), "learn.jsonl");
    /* No flips: they turn the synthetic set's stroke angles into others,
     * which caps it near 60%. */
    const double t0 = now_seconds();
    assert_int_equal(run_train(out,
                               SMALL_MODEL "--epochs 6 --no-augment --precision auto "
                                           "--metrics %s",
                               metrics),
                     0);
    const double seconds = now_seconds() - t0;
    /* The first line names what runs: auto picks fp32 where bf16 cannot
     * run, which is every CPU in this version. */
    assert_non_null(strstr(out, " threads, precision fp32 (auto)\n"));
    /* the default recipe on a small model learns this set (99.6% measured):
     * at least 95% test accuracy, and a test loss far below log 10 = 2.30 */
    const double acc = last_value(metrics, "eval", "acc");
    const double loss = last_value(metrics, "eval", "loss");
    if (!(acc >= 0.95) || !(loss < 0.5)) {
        print_error("after %.1f s: test accuracy %.3f (chance 0.1), test loss %.3f\n%s", seconds,
                    acc, loss, out);
        fail();
    }
    /* the metrics hold entropies, bounds, sigmas and gammas */
    char *text = read_text(metrics);
    assert_non_null(strstr(text, "\"entropy_mean\":[["));
    assert_non_null(strstr(text, "\"entropy_bound\":[["));
    assert_non_null(strstr(text, "\"sigma\":{\"patch_embed.proj\":"));
    assert_non_null(strstr(text, "\"gamma\":{\"patch_embed.proj\":"));
    free(text);
}

/* Stopped inside an epoch and resumed, a run gives the same metrics and the
 * same final checkpoint, bit for bit, as a run never stopped. */
/* The plain recipe, and the default one's stem, erasing, weight average and
 * test-time flips (each with its own state to carry across a resume). */
static void resume_is_bit_exact(const char *recipe)
{
    static char out[1 << 16];
    char args[4096];
    resume_files f;
    resume_files_init(&f, "");
    char common[1024];
    snprintf(common, sizeof(common), SMALL_MODEL "--epochs 2 --augment --checkpoint-every 5 %s",
             recipe);
    assert_int_equal(run_train(out, "%s --metrics %s --checkpoint %s", common, f.m_full, f.c_full),
                     0);
    /* 32 steps per epoch: stop at 19, inside the second epoch, then twice more */
    const int stops[2] = {19, 45};
    snprintf(args, sizeof(args), "'%s' --threads 2 %s", VIT_TRAIN_EXE, common);
    assert_resume_is_bit_exact(args, stops, &f);

    /* Resuming with other training options is refused. */
    assert_int_equal(run_train(out, "%s --lr 0.5 --resume %s", common, f.c_part), 2);
    assert_non_null(strstr(out, "other training options"));

    /* --eval-only reads the model back, with its weight average when the
     * run kept one, and gives the run's test accuracy and loss. */
    assert_int_equal(run_train(out, "%s --eval-only --resume %s", common, f.c_full), 0);
    char expect[128];
    snprintf(expect, sizeof(expect), "test accuracy %.4f, test loss %.4f (",
             last_value(f.m_full, "eval", "acc"), last_value(f.m_full, "eval", "loss"));
    assert_non_null(strstr(out, expect));
    assert_non_null(strstr(out, strstr(recipe, "--ema") ? "images, the weight average)"
                                                        : "images, the weights)"));

    /* --logits writes the logits of the model scored: with an average in
     * the checkpoint, not those of the weights (--ema 0). */
    char l_avg[512], l_live[512];
    scratch_path(l_avg, sizeof(l_avg), "avg.safetensors");
    scratch_path(l_live, sizeof(l_live), "live.safetensors");
    assert_int_equal(
        run_train(out, "%s --eval-only --resume %s --logits %s", common, f.c_full, l_avg), 0);
    assert_int_equal(
        run_train(out, "%s --ema 0 --eval-only --resume %s --logits %s", common, f.c_full, l_live),
        0);
    size_t n_avg, n_live;
    unsigned char *avg = read_file_bytes(l_avg, &n_avg), *live = read_file_bytes(l_live, &n_live);
    assert_non_null(avg);
    assert_non_null(live);
    assert_int_equal(n_avg, n_live);
    assert_int_equal(memcmp(avg, live, n_avg) == 0, strstr(recipe, "--ema") == NULL);
    free(avg);
    free(live);
}

static void test_resume_is_bit_exact(void **state)
{
    (void)state;
    resume_is_bit_exact("");
    resume_is_bit_exact("--stem 4,4 --erase 0.5 --ema 0.99 --tta-flip");
}

/* Dataset sizes a user can give: fewer training than test images, counts
 * that are not multiples of the batch, an IDX folder whose test set is the
 * larger. Every buffer must fit them (the sanitizer build checks). */
static void test_odd_dataset_sizes(void **state)
{
    (void)state;
    static char out[1 << 16];
    char ckpt[512];
    scratch_path(ckpt, sizeof(ckpt), "odd.ckpt");
    const char *model = "--dim 16 --depth 1 --heads 2 --mlp-dim 16 --batch 48 --epochs 1 ";
    assert_int_equal(
        run_train(
            out,
            "%s--dataset synthetic --synthetic-train 200 --synthetic-test 1000 --checkpoint %s",
            model, ckpt),
        0);
    assert_non_null(strstr(out, "test accuracy"));
    assert_int_equal(
        run_train(out,
                  "%s--dataset synthetic --synthetic-train 200 --synthetic-test 1000 --eval-only "
                  "--resume %s",
                  model, ckpt),
        0);
    assert_non_null(strstr(out, "(1000 images, the weight average)"));

    char dir[512];
    scratch_path(dir, sizeof(dir), "idx_big_test");
    make_idx_dir_sized(dir, 0, 20, 50);
    assert_int_equal(run_train(out,
                               "--dim 16 --depth 1 --heads 2 --mlp-dim 16 --batch 8 --epochs 1 "
                               "--data-dir %s",
                               dir),
                     0);
    assert_non_null(strstr(out, "test accuracy"));
}

/* The trainer's side: a warning naming layer and head on stderr and in the
 * metrics, and --stop-on-collapse stopping with exit code 4 and a
 * checkpoint that loads. A fraction of 0.999 of log T makes the first
 * sharpening of any head a collapse. */
static void test_stop_on_collapse(void **state)
{
    (void)state;
    static char out[1 << 16];
    char metrics[512], ckpt[512];
    scratch_path(metrics, sizeof(metrics), "collapse.jsonl");
    scratch_path(ckpt, sizeof(ckpt), "collapse.ckpt");
    assert_int_equal(
        run_train(out,
                  SMALL_MODEL
                  "--epochs 2 --collapse-fraction 0.999 --stop-on-collapse --metrics %s "
                  "--checkpoint %s",
                  metrics, ckpt),
        4);
    assert_non_null(strstr(out, "warning: step"));
    assert_non_null(strstr(out, "entropy collapse: layer"));
    assert_non_null(strstr(out, "--stop-on-collapse"));
    char *text = read_text(metrics);
    /* the one schema of collapse.h, as the LM writes it */
    assert_non_null(strstr(text, "\"type\":\"collapse\""));
    assert_non_null(strstr(text, "\"kind\":\"low\""));
    assert_null(strstr(text, "\"type\":\"warning\""));
    const double step = last_value(metrics, "collapse", "step");
    assert_true(step >= 1.0 && last_value(metrics, "collapse", "layer") >= 0.0 &&
                last_value(metrics, "collapse", "head") >= 0.0);
    const double entropy = last_value(metrics, "collapse", "entropy");
    const double reference = last_value(metrics, "collapse", "reference");
    assert_true(entropy < reference);
    /* the entropies are in nats: uniform is log T */
    assert_close_rel(last_value(metrics, "collapse", "uniform"),
                     last_value(metrics, "header", "log_tokens"), 1e-6, 0.0, "uniform");
    free(text);
    assert_int_equal(run_train(out, SMALL_MODEL "--eval-only --resume %s", ckpt), 0);
    /* without --stop-on-collapse the same run warns and goes on to the end */
    assert_int_equal(run_train(out, SMALL_MODEL "--epochs 2 --collapse-fraction 0.999"), 0);
    assert_non_null(strstr(out, "entropy collapse: layer"));
    assert_non_null(strstr(out, "epoch 2: test accuracy"));
}

/* A checkpoint carries its model's configuration, and a load checks it:
 * 8 heads into 4 (the same tensor shapes) stops naming the option, for a
 * resume and an evaluation; a tensor the model does not have is listed by
 * name; a file missing a key, or any metadata (an older build's, before the
 * stem's kernels were OIHW), is refused, not loaded permuted; the same file
 * rewritten with everything resumes. With the stem and the weight average,
 * so that their tensors and keys are in it. */
static void test_checkpoint_holds_its_model(void **state)
{
    (void)state;
    static char out[1 << 16];
    char metrics[512], ckpt[512], copy[512];
    scratch_path(metrics, sizeof(metrics), "model8.jsonl");
    scratch_path(ckpt, sizeof(ckpt), "model8.ckpt");
    scratch_path(copy, sizeof(copy), "copy.ckpt");
#define META_BASE                                                                                  \
    "--dataset synthetic --synthetic-train 256 --synthetic-test 64 --dim 32 --depth 2 "            \
    "--mlp-dim 32 --batch 32 --epochs 1 --log-every 1 --bound-every 2 --stem 8/2 --patch 4 "
    assert_int_equal(run_train(out,
                               META_BASE "--heads 8 --stop-after-steps 4 --metrics %s "
                                         "--checkpoint %s",
                               metrics, ckpt),
                     0);
    assert_bound_terms_logged(metrics, 2, 8);

    assert_int_equal(run_train(out, META_BASE "--heads 4 --eval-only --resume %s", ckpt), 2);
    assert_non_null(strstr(out, "heads is 8 in the file, 4 here"));
    assert_int_equal(run_train(out, META_BASE "--heads 4 --resume %s", ckpt), 2);
    assert_non_null(strstr(out, "heads is 8 in the file, 4 here"));

    static const char *const keys[] = {"model", "stem-layout", "stem", "channels", "image-size",
                                       "classes", "patch", "dim", "depth", "heads", "mlp-dim",
                                       "no-sn", "layernorm", "gamma-init", "qkv-sigma", "pool"};
    const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
    rewrite_checkpoint(ckpt, copy, keys, nkeys, NULL, "blocks.7.attn.extra");
    assert_int_equal(run_train(out, META_BASE "--heads 8 --resume %s", copy), 1);
    assert_non_null(strstr(out, "blocks.7.attn.extra"));
    assert_int_equal(run_train(out, META_BASE "--heads 8 --eval-only --resume %s", copy), 1);
    assert_non_null(strstr(out, "does not have: blocks.7.attn.extra"));

    rewrite_checkpoint(ckpt, copy, keys, nkeys, "heads", NULL);
    assert_int_equal(run_train(out, META_BASE "--heads 8 --resume %s", copy), 2);
    assert_non_null(strstr(out, "heads is not in the file (8 here)"));

    rewrite_checkpoint(ckpt, copy, keys, 0, NULL, NULL);
    assert_int_equal(run_train(out, META_BASE "--heads 8 --eval-only --resume %s", copy), 2);
    assert_non_null(strstr(out, "records no model configuration"));
    assert_non_null(strstr(out, "(OIHW)"));

    rewrite_checkpoint(ckpt, copy, keys, nkeys, NULL, NULL);
    assert_int_equal(run_train(out, META_BASE "--heads 8 --resume %s", copy), 0);
    assert_non_null(strstr(out, "resumed from"));
#undef META_BASE
}

/* Shifts move the image and fill in the background; a flip mirrors first
 * (the shift is of the mirrored image). */
static void test_augmentation(void **state)
{
    (void)state;
    enum { S = 6 };
    float pixels[S * S], out[S * S];
    int label[1] = {3}, got;
    for (int i = 0; i < S * S; i++)
        pixels[i] = (float)(i + 1);
    const vit_dataset d = {1, 1, S, S, pixels, label, 10, {-0.5f, 0.0f, 0.0f}};
    const int shift[2] = {2, -1}; /* right 2, up 1 */
    const unsigned char flip[1] = {1};
    for (int with_flip = 0; with_flip < 2; with_flip++) {
        const vit_augment aug = {with_flip ? flip : NULL, shift, NULL};
        vit_gather_batch(&d, NULL, 0, 1, &aug, out, &got);
        assert_int_equal(got, 3);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                const int sy = y + 1, sx0 = x - 2, sx = with_flip ? S - 1 - sx0 : sx0;
                const float want = sy < S && sx0 >= 0 ? pixels[sy * S + sx] : -0.5f;
                assert_true(out[y * S + x] == want);
            }
    }
    /* random erasing: the rectangle x 1-3, y 2-3 becomes the background */
    const int rect[4] = {1, 2, 3, 2};
    const vit_augment erase = {NULL, NULL, rect};
    vit_gather_batch(&d, NULL, 0, 1, &erase, out, &got);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            const int inside = x >= 1 && x < 4 && y >= 2 && y < 4;
            assert_true(out[y * S + x] == (inside ? -0.5f : pixels[y * S + x]));
        }
}

/* Flips, random and at test time, are on by default only where a mirror
 * keeps the class: Fashion-MNIST (and CIFAR-10), not MNIST (a mirrored
 * digit is no digit) nor the synthetic set (a mirrored stroke has another
 * class's angle); --augment, --no-augment, --tta-flip and --no-tta-flip
 * still decide when given. What a run used is in its fingerprint (the
 * metrics' header), and the synthetic set's default run is the one with
 * --no-augment --no-tta-flip, bit for bit. */
static void test_flips_by_dataset(void **state)
{
    (void)state;
    static char out[1 << 16];
    char dir[512], metrics[512], other[512];
    scratch_path(dir, sizeof(dir), "flips");
    make_idx_dir_sized(dir, 0, 32, 16);
    scratch_path(metrics, sizeof(metrics), "flips.jsonl");
    scratch_path(other, sizeof(other), "flips_explicit.jsonl");
    const struct {
        const char *data, *flags;
        int flips;
    } cases[] = {
        {"--dataset fashion-mnist --data-dir", "", 1},
        {"--dataset mnist --data-dir", "", 0},
        {"--dataset synthetic --synthetic-train 32 --synthetic-test 16", "", 0},
        {"--dataset fashion-mnist --data-dir", "--no-augment --no-tta-flip", 0},
        {"--dataset mnist --data-dir", "--augment --tta-flip", 1},
        {"--dataset synthetic --synthetic-train 32 --synthetic-test 16", "--augment", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const int idx = strstr(cases[i].data, "--data-dir") != NULL;
        assert_int_equal(
            run_train(out,
                      "%s %s %s --dim 16 --depth 1 --heads 2 --mlp-dim 16 --stem 0 --batch 16 "
                      "--epochs 1 --metrics %s",
                      cases[i].data, idx ? dir : "", cases[i].flags, metrics),
            0);
        char *text = read_text(metrics);
        char augment[32], tta[32];
        snprintf(augment, sizeof(augment), " augment=%d ", cases[i].flips != 0);
        snprintf(tta, sizeof(tta), " tta-flip=%d ", cases[i].flips > 0);
        if (!strstr(text, augment) || !strstr(text, tta)) {
            print_error("%s %s: expected%s and%s in\n%s\n", cases[i].data, cases[i].flags, augment,
                        tta, text);
            fail();
        }
        free(text);
    }
    const char *synthetic = "--dataset synthetic --synthetic-train 64 --synthetic-test 32 "
                            "--dim 16 --depth 1 --heads 2 --mlp-dim 16 --stem 0 --batch 16 "
                            "--epochs 2";
    assert_int_equal(run_train(out, "%s --metrics %s", synthetic, metrics), 0);
    assert_int_equal(run_train(out, "%s --no-augment --no-tta-flip --metrics %s", synthetic, other),
                     0);
    assert_true(same_but_time(metrics, other, 0));
    assert_int_equal(run_train(out, "%s --augment --metrics %s", synthetic, other), 0);
    assert_false(same_but_time(metrics, other, 0));
}

/* The protocol: with --val the epochs are judged on the held-out images and
 * the test set is evaluated once at the end; --report-at prints when each
 * accuracy was reached; the eval lines carry their set and the seconds. */
static void test_validation_protocol(void **state)
{
    (void)state;
    static char out[1 << 16];
    char metrics[512];
    scratch_path(metrics, sizeof(metrics), "val.jsonl");
    assert_int_equal(
        run_train(out,
                  SMALL_MODEL
                  "--epochs 3 --no-augment --translate 1 --tta-flip --ema 0.99 --val 256 "
                  "--report-at 0.2,0.999 --metrics %s",
                  metrics),
        0);
    assert_non_null(strstr(out, "1792 train / 256 val / 512 test"));
    assert_non_null(strstr(out, "epoch 3: validation accuracy"));
    assert_non_null(strstr(out, "(512 images, reported only)"));
    assert_non_null(strstr(out, "time to 20.00% validation accuracy: "));
    assert_null(strstr(out, "time to 20.00% validation accuracy: not reached"));
    assert_non_null(strstr(out, "time to 99.90% validation accuracy: not reached"));
    char *text = read_text(metrics);
    assert_non_null(strstr(text, "\"type\":\"eval\",\"set\":\"val\""));
    assert_non_null(strstr(text, "\"type\":\"eval\",\"set\":\"test\""));
    assert_non_null(strstr(text, "\"seconds\":"));
    free(text);
    assert_int_equal(run_train(out, "--val 999999 --dataset synthetic"), 2);
    assert_non_null(strstr(out, "leaves no training images"));
    assert_int_equal(run_train(out, "--report-at 0.9,0.8"), 2);
}

/* A stem list spelled with spaces, leading zeros or a stride of 1 is the
 * same run: the options' fingerprint (what --resume checks, the metrics'
 * config) holds the list as parsed. */
static void test_stem_spellings_are_one_run(void **state)
{
    (void)state;
    static char out[1 << 16];
    char metrics[512];
    scratch_path(metrics, sizeof(metrics), "stem-spelling.jsonl");
    assert_int_equal(
        run_train(
            out,
            "--dataset synthetic --synthetic-train 256 --synthetic-test 64 --dim 16 --depth 1 "
            "--heads 2 --mlp-dim 16 --batch 32 --stem ' 4/1, 04' --stop-after-steps 1 --metrics %s",
            metrics),
        0);
    char *text = read_text(metrics);
    assert_non_null(strstr(text, " stem=4,4 "));
    free(text);
}

static void test_non_finite_loss_stops_with_its_code(void **state)
{
    (void)state;
    static char out[1 << 16];
    char ckpt[512];
    scratch_path(ckpt, sizeof(ckpt), "diverge.ckpt");
    /* plain linears and a huge learning rate: the loss blows up */
    assert_int_equal(run_train(out,
                               SMALL_MODEL "--no-sn --optimizer sgd --lr 1e4 --epochs 3 "
                                           "--checkpoint %s --checkpoint-every 1",
                               ckpt),
                     3);
    /* the step after the blow-up overflows in the forward: named as such */
    assert_non_null(strstr(out, "the activations became non-finite"));
    assert_non_null(strstr(out, ckpt));
    /* the last good checkpoint is still a valid one */
    assert_int_equal(run_train(out, SMALL_MODEL "--no-sn --eval-only --resume %s", ckpt), 0);
}

static void test_plot_renders_a_png(void **state)
{
    (void)state;
    if (system("command -v gnuplot > /dev/null 2>&1") != 0) {
        print_message("gnuplot is not installed: skipping the plot test "
                      "(sudo apt-get install gnuplot-nox)\n");
        skip();
    }
    static char out[1 << 16];
    char metrics[512], png[512];
    scratch_path(metrics, sizeof(metrics), "plot.jsonl");
    scratch_path(png, sizeof(png), "plot.png");
    assert_int_equal(run_train(out, SMALL_MODEL "--epochs 1 --metrics %s --plot %s", metrics, png),
                     0);
    size_t size;
    unsigned char *bytes = read_file_bytes(png, &size);
    assert_non_null(bytes);
    assert_true(size > 1000 && memcmp(bytes, "\x89PNG", 4) == 0);
    free(bytes);
    remove(png);
    /* the standalone way, from the metrics file alone */
    assert_int_equal(run_train(out, "--plot-only %s --plot %s", metrics, png), 0);
    bytes = read_file_bytes(png, &size);
    assert_non_null(bytes);
    assert_true(size > 1000 && memcmp(bytes, "\x89PNG", 4) == 0);
    free(bytes);
    assert_int_equal(run_train(out, "--plot-only /nonexistent.jsonl --plot %s", png), 1);
}

/* --export / --init-from: the model under the official PyTorch names. A
 * round trip gives the same eval logits bit for bit (the power-iteration
 * state travels as u and spectral_norm); a file of another model is
 * refused with the names it lacks or should not have, and nothing changes. */
static void test_official_names_round_trip(void **state)
{
    (void)state;
    char path[600], other[600];
    scratch_path(path, sizeof(path), "official.safetensors");
    scratch_path(other, sizeof(other), "official_ln.safetensors");
    vit_config c = small_config(8, 2);
    c.seed = 1;
    vit_model *a, *b, *ln;
    assert_ok(vit_create(&a, &c));
    c.seed = 2;
    assert_ok(vit_create(&b, &c));
    c.layernorm = 1;
    assert_ok(vit_create(&ln, &c));
    float images[2 * 28 * 28];
    srp_rng r = seeded_rng(4);
    fill_normal_f(&r, images, 2 * 28 * 28, 1.0);
    const float *logits;
    assert_ok(vit_forward(a, images, 2, SRP_TRAIN, &logits)); /* u and sigma leave the SVD's */
    ex_error err = {""};
    assert_int_equal(vit_export_safetensors(a, path, "live", &err), EX_OK);

    /* the official layout: 10 SNLinears of 7 tensors, cls_token, pos_embed */
    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_count(f), 10 * 7 + 2);
    static const struct {
        const char *name;
        size_t ndim, shape[3];
    } want[] = {{"cls_token", 3, {1, 1, 8}},
                {"pos_embed", 3, {1, 17, 8}},
                {"patch_embed.proj.weight", 2, {8, 49}},
                {"blocks.1.attn.qkv.spectral_normed_weight.u", 1, {8}},
                {"blocks.1.attn.qkv.spectral_normed_weight.weight", 2, {24, 8}},
                {"blocks.0.mlp.fc1.spectral_normed_weight.spectral_norm", 1, {1}},
                {"head.sigma", 1, {1}},
                {"head.effective_spectral_norm", 1, {1}}};
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        int found = 0;
        for (size_t k = 0; k < srp_safetensors_count(f); k++) {
            srp_tensor_ref info;
            assert_ok(srp_safetensors_info(f, k, &info));
            if (strcmp(info.name, want[w].name) != 0)
                continue;
            found = 1;
            assert_int_equal(info.ndim, want[w].ndim);
            assert_memory_equal(info.shape, want[w].shape, want[w].ndim * sizeof(size_t));
        }
        if (!found)
            print_error("%s is not in the file\n", want[w].name);
        assert_true(found);
    }
    srp_safetensors_close(f);

    assert_int_equal(vit_import_safetensors(b, path, &err), EX_OK);
    for (size_t i = 0; i < vit_linears(a)->count; i++) {
        srp_linear *la_ = vit_linears(a)->linears[i], *lb_ = vit_linears(b)->linears[i];
        assert_memory_equal(srp_linear_u(la_), srp_linear_u(lb_),
                            sizeof(float) * srp_linear_in_features(la_));
        assert_true(srp_linear_sigma(la_) == srp_linear_sigma(lb_));
        assert_true(*srp_linear_gamma(la_) == *srp_linear_gamma(lb_));
    }
    float la[2 * 10], lb[2 * 10];
    assert_ok(vit_forward(a, images, 2, SRP_EVAL, &logits));
    memcpy(la, logits, sizeof(la));
    assert_ok(vit_forward(b, images, 2, SRP_EVAL, &logits));
    memcpy(lb, logits, sizeof(lb));
    assert_memory_equal(la, lb, sizeof(la));

    /* folded: plain nn.Linear names, gamma / sigma * W baked in, which the
     * plain model (--no-sn) reads and evaluates as a does */
    char folded[600];
    scratch_path(folded, sizeof(folded), "folded.safetensors");
    for (size_t i = 0; i < vit_linears(a)->count; i++) /* gamma / sigma far from 1 */
        *srp_linear_gamma(vit_linears(a)->linears[i]) *= 0.5f + 0.25f * (float)i;
    assert_ok(vit_forward(a, images, 2, SRP_EVAL, &logits));
    memcpy(la, logits, sizeof(la));
    assert_int_equal(vit_export_folded(a, folded, "live", &err), EX_OK);
    vit_config pc = small_config(8, 2);
    pc.sigma_reparam = 0;
    vit_model *plain;
    assert_ok(vit_create(&plain, &pc));
    assert_int_equal(vit_import_safetensors(plain, folded, &err), EX_OK);
    float lp[2 * 10];
    assert_ok(vit_forward(plain, images, 2, SRP_EVAL, &logits));
    memcpy(lp, logits, sizeof(lp));
    assert_close_array(lp, la, 2 * 10, 1e-5, "the folded model's logits");
    assert_int_equal(vit_import_safetensors(b, folded, &err), EX_FAILED); /* not an SN model */
    assert_non_null(strstr(err.message, "missing: patch_embed.proj.sigma"));
    vit_destroy(plain);

    /* another model's file: the names it lacks, the names it should not have */
    assert_int_equal(vit_export_safetensors(ln, other, "live", &err), EX_OK);
    srp_linear *head = vit_linears(b)->linears[vit_linears(b)->count - 1];
    const float keep = srp_linear_weight(head)[0];
    assert_int_equal(vit_import_safetensors(b, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "unknown: blocks.0.norm1.weight"));
    assert_int_equal(vit_import_safetensors(ln, path, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "missing: blocks.0.norm1.weight"));
    assert_true(srp_linear_weight(head)[0] == keep);
    scratch_path(other, sizeof(other), "no-such.safetensors");
    assert_int_equal(vit_import_safetensors(b, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, other));
    vit_destroy(a);
    vit_destroy(b);
    vit_destroy(ln);

    /* the plain model: nn.Linear and timm's nn.Conv2d patch embedding */
    c.layernorm = 0;
    c.sigma_reparam = 0;
    assert_ok(vit_create(&a, &c));
    assert_int_equal(vit_export_safetensors(a, path, "live", &err), EX_OK);
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_count(f), 10 * 2 + 2);
    for (size_t k = 0; k < srp_safetensors_count(f); k++) {
        srp_tensor_ref info;
        assert_ok(srp_safetensors_info(f, k, &info));
        if (strcmp(info.name, "patch_embed.proj.weight") == 0) {
            const size_t conv[4] = {8, 1, 7, 7};
            assert_int_equal(info.ndim, 4);
            assert_memory_equal(info.shape, conv, sizeof(conv));
        }
    }
    srp_safetensors_close(f);
    assert_int_equal(vit_import_safetensors(a, path, &err), EX_OK);
    vit_destroy(a);

    /* the trainer's default kind of model: a stem (two convolutions at
     * stride 1, so that the patch embedding cuts 7 x 7 patches of 3
     * channels, ours channels last) and q, k, v under SNLinears of their
     * own; the round trip gives the same logits bit for bit */
    c.sigma_reparam = 1;
    c.qkv_sigma = SRP_QKV_SIGMA_SEPARATE;
    c.stem_layers = 2;
    c.stem_channels[0] = 2;
    c.stem_channels[1] = 3;
    c.seed = 5;
    assert_ok(vit_create(&a, &c));
    c.seed = 6;
    assert_ok(vit_create(&b, &c));
    assert_ok(vit_forward(a, images, 2, SRP_TRAIN, &logits));
    assert_int_equal(vit_export_safetensors(a, path, "live", &err), EX_OK);
    assert_int_equal(vit_import_safetensors(b, path, &err), EX_OK);
    assert_ok(vit_forward(a, images, 2, SRP_EVAL, &logits));
    memcpy(la, logits, sizeof(la));
    assert_ok(vit_forward(b, images, 2, SRP_EVAL, &logits));
    assert_memory_equal(la, logits, sizeof(la));
    /* names and shapes: SNConv2d kernels flattened, three SNLinears q, k, v;
     * the patch embedding's columns in PyTorch's (c, y, x) order: column
     * c 49 + y 7 + x of the file is ours (y 7 + x) 3 + c */
    static float embed[8 * 3 * 49], conv1[3 * 2 * 9], q_u[8];
    const srp_tensor_ref named[] = {
        {"patch_embed.proj.weight", SRP_DTYPE_F32, 2, {8, 3 * 49}, embed},
        {"stem.conv1.weight", SRP_DTYPE_F32, 2, {3, 2 * 9}, conv1},
        {"blocks.1.attn.q.spectral_normed_weight.u", SRP_DTYPE_F32, 1, {8}, q_u}};
    assert_ok(srp_safetensors_load(path, named, 3));
    const float *ours = srp_linear_weight(vit_linears(a)->linears[2]);
    assert_true(embed[5 * 147 + 2 * 49 + 1 * 7 + 4] == ours[5 * 147 + (1 * 7 + 4) * 3 + 2]);
    assert_memory_not_equal(embed, ours, sizeof(embed));
    assert_memory_equal(conv1, srp_linear_weight(vit_linears(a)->linears[1]), sizeof(conv1));
    vit_destroy(a);
    vit_destroy(b);

    /* --pool mean has no official counterpart */
    c.pool = VIT_POOL_MEAN;
    assert_ok(vit_create(&a, &c));
    assert_int_equal(vit_export_safetensors(a, path, "live", &err), EX_USAGE);
    assert_non_null(strstr(err.message, "--pool cls"));
    vit_destroy(a);
}

/* The trainer's flags: the exported model evaluates as the trained one. */
static void test_export_and_init_from(void **state)
{
    (void)state;
    static char out[1 << 16];
    char model[600];
    scratch_path(model, sizeof(model), "trained.safetensors");
    const char *common = SMALL_MODEL "--epochs 1";
    assert_int_equal(run_train(out, "%s --export %s", common, model), 0);
    const char *acc = strstr(out, "test accuracy");
    assert_non_null(acc);
    char trained[64];
    snprintf(trained, sizeof(trained), "%.19s", acc); /* "test accuracy 0.xxxx" */
    assert_int_equal(run_train(out, "%s --init-from %s --eval-only", common, model), 0);
    assert_non_null(strstr(out, trained));
    assert_int_equal(run_train(out, "%s --init-from %s --resume %s", common, model, model), 2);
    assert_int_equal(run_train(out, "%s --dim 16 --init-from %s", common, model), 1);
    assert_non_null(strstr(out, "shape or dtype"));
}

/* A tensor of a safetensors file, as written. */
static void read_exported(const char *path, const char *name, size_t n, float *data)
{
    const srp_tensor_ref ref = {name, SRP_DTYPE_F32, 2, {n / 49, 49}, data};
    assert_ok(srp_safetensors_load(path, &ref, 1));
}

/* --export of an --ema run writes the model the run evaluated: the weight
 * average with its own sigma, not the live weights. Imported, it scores
 * the test set as the run's checkpoint does with its average swapped in
 * (the same logits, bit for bit); its weights are not the checkpoint's live
 * ones; the line and the metadata say "average". Without an average, the
 * live weights, and they say so. */
static void test_export_holds_the_weight_average(void **state)
{
    (void)state;
    static char out[1 << 16];
    char model[600], ckpt[600], from_ckpt[600], from_export[600];
    scratch_path(model, sizeof(model), "averaged.safetensors");
    scratch_path(ckpt, sizeof(ckpt), "averaged.ckpt");
    scratch_path(from_ckpt, sizeof(from_ckpt), "averaged_ckpt_logits");
    scratch_path(from_export, sizeof(from_export), "averaged_export_logits");
    const char *common = SMALL_MODEL "--epochs 1 --ema 0.9";
    assert_int_equal(run_train(out, "%s --checkpoint %s --export %s", common, ckpt, model), 0);
    assert_non_null(strstr(out, "(the weight average, its sigma recomputed)"));
    assert_int_equal(
        run_train(out, "%s --resume %s --eval-only --logits %s", common, ckpt, from_ckpt), 0);
    assert_non_null(strstr(out, "the weight average)"));
    assert_int_equal(
        run_train(out, "%s --init-from %s --eval-only --logits %s", common, model, from_export),
        0);
    size_t na, nb;
    unsigned char *a = read_file_bytes(from_ckpt, &na), *b = read_file_bytes(from_export, &nb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);

    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, model));
    assert_string_equal(srp_safetensors_metadata(f, "weights"), "average");
    srp_safetensors_close(f);
    enum { N = 32 * 49 };
    static float exported[N], live[N];
    read_exported(model, "patch_embed.proj.weight", N, exported);
    const srp_tensor_ref ref = {"patch_embed.proj.weight", SRP_DTYPE_F32, 2, {32, 49}, live};
    assert_ok(srp_checkpoint_load(ckpt, &ref, 1));
    assert_memory_not_equal(exported, live, sizeof(live));

    /* --ema 0: the live weights */
    assert_int_equal(run_train(out, SMALL_MODEL "--epochs 1 --checkpoint %s --export %s", ckpt,
                               model),
                     0);
    assert_non_null(strstr(out, "(the live weights)"));
    assert_ok(srp_safetensors_open(&f, model));
    assert_string_equal(srp_safetensors_metadata(f, "weights"), "live");
    srp_safetensors_close(f);
    read_exported(model, "patch_embed.proj.weight", N, exported);
    assert_ok(srp_checkpoint_load(ckpt, &ref, 1));
    assert_memory_equal(exported, live, sizeof(live));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_reader_reads_plain_and_gzip),
        cmocka_unit_test(test_idx_reader_rejects_bad_files),
        cmocka_unit_test(test_cifar10_reader),
        cmocka_unit_test(test_model_backward_matches_differences),
        cmocka_unit_test(test_stem_forward_is_the_convolution),
        cmocka_unit_test(test_checkpoint_keeps_power_iteration_state),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_learns_the_synthetic_set),
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_odd_dataset_sizes),
        cmocka_unit_test(test_stop_on_collapse),
        cmocka_unit_test(test_checkpoint_holds_its_model),
        cmocka_unit_test(test_augmentation),
        cmocka_unit_test(test_flips_by_dataset),
        cmocka_unit_test(test_validation_protocol),
        cmocka_unit_test(test_stem_spellings_are_one_run),
        cmocka_unit_test(test_non_finite_loss_stops_with_its_code),
        cmocka_unit_test(test_plot_renders_a_png),
        cmocka_unit_test(test_official_names_round_trip),
        cmocka_unit_test(test_export_and_init_from),
        cmocka_unit_test(test_export_holds_the_weight_average),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
