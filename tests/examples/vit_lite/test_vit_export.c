/* The ViT-lite under the official PyTorch names: --export and --init-from,
 * the folded export, and the weight average as the exported model. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "official_names.h"
#include "testutil.h"
#include "vit_fixtures.h"

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
        cmocka_unit_test(test_official_names_round_trip),
        cmocka_unit_test(test_export_and_init_from),
        cmocka_unit_test(test_export_holds_the_weight_average),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
