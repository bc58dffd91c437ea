/* vit-lite-train runs as a user runs it: it learns, takes odd dataset sizes,
 * follows the validation protocol, watches for entropy collapse, stops on a
 * non-finite loss with its code, and plots its metrics. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit_fixtures.h"

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
    /* The first line names what runs and why: auto picks fp32 where bf16
     * cannot run, and where it can, whichever its probe found faster. */
    const int bf16_runs = srp_set_precision(SRP_PRECISION_BF16) == SRP_OK;
    srp_set_precision(SRP_PRECISION_FP32);
    assert_true(strstr(out, " threads, precision fp32 (auto: ") ||
                (bf16_runs && strstr(out, " threads, precision bf16 (auto: ")));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_the_synthetic_set),
        cmocka_unit_test(test_odd_dataset_sizes),
        cmocka_unit_test(test_stop_on_collapse),
        cmocka_unit_test(test_validation_protocol),
        cmocka_unit_test(test_non_finite_loss_stops_with_its_code),
        cmocka_unit_test(test_plot_renders_a_png),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
