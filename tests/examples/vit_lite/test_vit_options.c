/* vit-lite-train's options: the command line's errors, the defaults that
 * depend on the dataset, and the fingerprint of what a run used. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit_fixtures.h"

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
    /* bf16 runs where the build and the CPU can (the library says whether:
     * core.h), and elsewhere says why, exit 2; a precision that is none of
     * the four names them. */
    const int bf16_runs = srp_set_precision(SRP_PRECISION_BF16) == SRP_OK;
    srp_set_precision(SRP_PRECISION_FP32);
    const char *tiny = "--dataset synthetic --synthetic-train 64 --synthetic-test 16 --dim 16 "
                       "--depth 1 --heads 2 --mlp-dim 16 --batch 32 --epochs 1";
    if (bf16_runs) {
        assert_int_equal(run_train(out, "%s --precision bf16", tiny), 0);
        assert_non_null(strstr(out, " threads, precision bf16\n"));
    } else {
        assert_int_equal(run_train(out, "%s --precision bf16", tiny), 2);
        assert_non_null(strstr(out, "--precision bf16: srp_set_precision: "));
    }
    assert_int_equal(run_train(out, "--precision fp16"), 2);
    assert_non_null(strstr(out, "fp32|bf16|auto|bf16-reference"));
    /* bf16's results on the reference path run on any CPU, and say so */
    assert_int_equal(run_train(out, "--dataset synthetic --synthetic-train 64 --synthetic-test 16 "
                                    "--dim 16 --depth 1 --heads 2 --mlp-dim 16 --batch 32 "
                                    "--epochs 1 --precision bf16-reference"),
                     0);
    assert_non_null(strstr(out, " threads, precision bf16 (reference path)\n"));

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

/* --precision auto is recorded as what it resolved to (the first line
 * says which), so that a checkpoint resumes under the precision that wrote
 * it: an explicit request of that precision resumes, the other one is
 * refused. */
static void test_auto_precision_is_recorded_resolved(void **state)
{
    (void)state;
    static char out[1 << 16];
    char metrics[512], ckpt[512];
    scratch_path(metrics, sizeof(metrics), "auto.jsonl");
    scratch_path(ckpt, sizeof(ckpt), "auto.ckpt");
    const char *tiny = "--dataset synthetic --synthetic-train 64 --synthetic-test 16 --dim 16 "
                       "--depth 1 --heads 2 --mlp-dim 16 --stem 0 --batch 16 --epochs 2";
    assert_int_equal(run_train(out,
                               "%s --precision auto --stop-after-steps 2 --checkpoint %s "
                               "--metrics %s",
                               tiny, ckpt, metrics),
                     0);
    const int bf16 = strstr(out, " threads, precision bf16 (auto: ") != NULL;
    assert_true(bf16 || strstr(out, " threads, precision fp32 (auto: "));
    char *text = read_text(metrics);
    assert_non_null(strstr(text, bf16 ? " precision=bf16 " : " precision=fp32 "));
    free(text);
    assert_int_equal(
        run_train(out, "%s --precision %s --resume %s", tiny, bf16 ? "fp32" : "bf16", ckpt), 2);
    assert_int_equal(
        run_train(out, "%s --precision %s --resume %s", tiny, bf16 ? "bf16" : "fp32", ckpt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_flips_by_dataset),
        cmocka_unit_test(test_stem_spellings_are_one_run),
        cmocka_unit_test(test_auto_precision_is_recorded_resolved),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
