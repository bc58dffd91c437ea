/* The ViT-lite's checkpoints: the model's power-iteration state kept bit for
 * bit, a run stopped and resumed that is the run through, and the model's
 * configuration recorded and checked on every load. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vit_fixtures.h"

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

/* Whether the checkpoint at path holds a tensor of this name, as the
 * library's reader lists them. */
static int checkpoint_has(const char *path, const char *name)
{
    srp_checkpoint *c = NULL;
    assert_int_equal(srp_checkpoint_open(&c, path), SRP_OK);
    int found = 0;
    for (size_t i = 0; i < srp_checkpoint_count(c) && !found; i++) {
        srp_tensor_ref info;
        assert_int_equal(srp_checkpoint_info(c, i, &info), SRP_OK);
        found = strcmp(info.name, name) == 0;
    }
    srp_checkpoint_close(c);
    return found;
}

/* Stopped inside an epoch and resumed, a run gives the same metrics and the
 * same final checkpoint, bit for bit, as a run never stopped. */
/* The plain recipe, the default one's stem, erasing, weight average and
 * test-time flips, and the blocks' regularizers (each with its own state to
 * carry across a resume). */
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
    snprintf(args, sizeof(args), "'%s' --threads 1 %s", VIT_TRAIN_EXE, common);
    assert_resume_is_bit_exact(args, stops, &f);

    /* Resuming with other training options is refused. */
    assert_int_equal(run_train(out, "%s --lr 0.5 --resume %s", common, f.c_part), 2);
    assert_non_null(strstr(out, "other training options"));
    if (strstr(recipe, "--drop-path")) {
        /* the blocks' random states are in the checkpoint, and the rates in
         * its options: the same run without them is another run */
        assert_true(checkpoint_has(f.c_full, "blocks.1.dropout_rng"));
        assert_true(checkpoint_has(f.c_full, "blocks.1.attn.dropout_rng"));
        assert_int_equal(run_train(out,
                                   SMALL_MODEL "--epochs 2 --augment --checkpoint-every 5 "
                                               "--resume %s",
                                   f.c_part),
                         2);
        assert_non_null(strstr(out, "other training options"));
        /* ... but its model is this model: evaluating it needs no rates */
        assert_int_equal(run_train(out, SMALL_MODEL "--eval-only --resume %s", f.c_full), 0);
    }

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
    resume_is_bit_exact("--attn-dropout 0.1 --mlp-dropout 0.1 --drop-path 0.2");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_keeps_power_iteration_state),
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_checkpoint_holds_its_model),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
