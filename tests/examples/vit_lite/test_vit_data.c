/* The ViT-lite's data: the IDX (Fashion-MNIST, plain and gzip) and CIFAR-10
 * readers, their errors, and the batch gather's augmentations. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "testutil.h"
#include "vit_fixtures.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_reader_reads_plain_and_gzip),
        cmocka_unit_test(test_idx_reader_rejects_bad_files),
        cmocka_unit_test(test_cifar10_reader),
        cmocka_unit_test(test_augmentation),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
