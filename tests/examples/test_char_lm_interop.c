/* The char LM in safetensors files (lm_safetensors.h, char-lm-train
 * --export, --export-folded, --init-from): the round trip, the folded
 * weights, the refusals, and the weight average exported. The logits
 * against PyTorch's: experiments/torch_check_lm.py. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm_safetensors.h"
#include "model.h"
#include "testutil.h"
#include "trainer_harness.h"

#define run_lm(out, ...) run_programf(LM_TRAIN_EXE, out, sizeof(out), __VA_ARGS__)
#define ROWS 3

static lm_config small_config(lm_arch arch, uint64_t seed)
{
    lm_config c = lm_config_default();
    c.context = 8;
    c.dim = 8;
    c.depth = 2;
    c.heads = 2;
    c.mlp_dim = 12;
    c.max_batch = ROWS;
    c.arch = arch;
    c.init_gain = 10.0f; /* weights of 0.2: attention far from uniform */
    c.embed_std = 1.0f;
    c.seed = seed;
    return c;
}

static void some_tokens(uint32_t *tokens, size_t n, uint64_t seed)
{
    srp_rng r = seeded_rng(seed);
    for (size_t i = 0; i < n; i++)
        tokens[i] = (uint32_t)srp_rng_below(&r, 256);
}

/* The bytes of a tensor. */
static size_t ref_bytes(const srp_tensor_ref *r)
{
    size_t n = srp_dtype_size(r->dtype);
    for (size_t d = 0; d < r->ndim; d++)
        n *= r->shape[d];
    return n;
}

/* Every tensor of the model's checkpoint state (parameters, u, v, sigma),
 * one after another: what "unchanged" compares. */
static float *model_state(lm_model *m, size_t *count)
{
    srp_tensor_list *list = NULL;
    assert_ok(srp_tensor_list_create(&list));
    assert_ok(lm_model_state_refs(m, list));
    const srp_tensor_ref *refs = srp_tensor_list_refs(list);
    size_t total = 0;
    for (size_t k = 0; k < srp_tensor_list_count(list); k++)
        total += ref_bytes(&refs[k]);
    unsigned char *out = malloc(total), *at = out;
    assert_non_null(out);
    for (size_t k = 0; k < srp_tensor_list_count(list); k++) {
        memcpy(at, refs[k].data, ref_bytes(&refs[k]));
        at += ref_bytes(&refs[k]);
    }
    srp_tensor_list_destroy(list);
    *count = total;
    return (float *)out;
}

static void eval_logits(lm_model *m, const uint32_t *tokens, float *out)
{
    const float *logits;
    const size_t T = lm_get_config(m)->context;
    assert_ok(lm_forward(m, tokens, ROWS, T, SRP_EVAL, &logits));
    memcpy(out, logits, sizeof(float) * ROWS * T * LM_VOCAB);
}

/* Exported and imported into a model of other weights, every variant gives
 * the same eval logits bit for bit: the power iteration's state travels as
 * u and spectral_norm, v is rebuilt from u. */
static void test_round_trip_is_bit_exact(void **state)
{
    (void)state;
    static const struct {
        lm_arch arch;
        int tied;
        lm_positions positions;
        srp_qkv_sigma qkv;
        size_t tensors; /* in the file: 2 blocks, 4 or more linears each */
    } variants[] = {
        {LM_ARCH_SIGMA, 0, LM_POS_LEARNED, SRP_QKV_SIGMA_FUSED, 2 + 9 * 7},
        {LM_ARCH_SIGMA_PRELN, 1, LM_POS_LEARNED, SRP_QKV_SIGMA_QK_V, 2 + 10 * 7 + 10},
        {LM_ARCH_PRELN, 0, LM_POS_FIXED, SRP_QKV_SIGMA_FUSED, 1 + 9 * 2 + 10},
        {LM_ARCH_POSTLN, 0, LM_POS_LEARNED, SRP_QKV_SIGMA_FUSED, 2 + 9 * 2 + 8},
        {LM_ARCH_SIGMA_POSTLN, 0, LM_POS_LEARNED, SRP_QKV_SIGMA_SEPARATE, 2 + 13 * 7 + 8},
    };
    char path[600];
    scratch_path(path, sizeof(path), "lm.safetensors");
    uint32_t tokens[ROWS * 8];
    some_tokens(tokens, ROWS * 8, 5);
    static float la[ROWS * 8 * LM_VOCAB], lb[ROWS * 8 * LM_VOCAB];
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        lm_config c = small_config(variants[v].arch, 1);
        c.tied_head = variants[v].tied;
        c.positions = variants[v].positions;
        c.qkv_sigma = variants[v].qkv;
        lm_model *a, *b;
        assert_ok(lm_create(&a, &c));
        c.seed = 2;
        assert_ok(lm_create(&b, &c));
        const float *logits;
        assert_ok(lm_forward(a, tokens, ROWS, 8, SRP_TRAIN, &logits)); /* u, sigma move */
        ex_error err = {""};
        assert_int_equal(lm_export_safetensors(a, path, "live", &err), EX_OK);
        srp_safetensors *f = NULL;
        assert_ok(srp_safetensors_open(&f, path));
        if (srp_safetensors_count(f) != variants[v].tensors)
            print_error("variant %zu: %zu tensors\n", v, srp_safetensors_count(f));
        assert_int_equal(srp_safetensors_count(f), variants[v].tensors);
        assert_string_equal(srp_safetensors_metadata(f, "weights"), "live");
        srp_safetensors_close(f);
        eval_logits(a, tokens, la);
        eval_logits(b, tokens, lb);
        assert_memory_not_equal(la, lb, sizeof(la));
        assert_int_equal(lm_import_safetensors(b, path, &err), EX_OK);
        for (size_t i = 0; i < lm_linears(a)->count; i++) {
            srp_linear *x = lm_linears(a)->linears[i], *y = lm_linears(b)->linears[i];
            if (srp_linear_reparam(x) != SRP_REPARAM_SIGMA)
                continue;
            assert_true(srp_linear_sigma(x) == srp_linear_sigma(y));
            assert_true(*srp_linear_gamma(x) == *srp_linear_gamma(y));
            assert_memory_equal(srp_linear_u(x), srp_linear_u(y),
                                sizeof(float) * srp_linear_in_features(x));
        }
        eval_logits(b, tokens, lb);
        assert_memory_equal(la, lb, sizeof(la));
        lm_destroy(a);
        lm_destroy(b);
    }
}

/* The default model's names and shapes, as PyTorch's modules hold them. */
static void test_names_and_shapes(void **state)
{
    (void)state;
    char path[600];
    scratch_path(path, sizeof(path), "names.safetensors");
    lm_config c = small_config(LM_ARCH_SIGMA, 1);
    lm_model *m;
    assert_ok(lm_create(&m, &c));
    ex_error err = {""};
    assert_int_equal(lm_export_safetensors(m, path, "live", &err), EX_OK);
    static float wte[256 * 8], wpe[8 * 8], qkv_u[8], head_w[256 * 8], fc2_sigma[1], fc1_gamma[1];
    const srp_tensor_ref want[] = {
        {"wte.weight", SRP_DTYPE_F32, 2, {256, 8}, wte},
        {"wpe.weight", SRP_DTYPE_F32, 2, {8, 8}, wpe},
        {"blocks.1.attn.qkv.spectral_normed_weight.u", SRP_DTYPE_F32, 1, {8}, qkv_u},
        {"lm_head.spectral_normed_weight.weight", SRP_DTYPE_F32, 2, {256, 8}, head_w},
        {"blocks.0.mlp.fc2.spectral_normed_weight.spectral_norm", SRP_DTYPE_F32, 1, {1}, fc2_sigma},
        {"blocks.0.mlp.fc1.sigma", SRP_DTYPE_F32, 1, {1}, fc1_gamma}};
    assert_ok(srp_safetensors_load(path, want, sizeof(want) / sizeof(want[0])));
    const ex_linear_names *lin = lm_linears(m);
    assert_string_equal(lin->names[2], "blocks.0.mlp.fc1");
    assert_true(fc1_gamma[0] == *srp_linear_gamma(lin->linears[2]));
    assert_true(fc2_sigma[0] == srp_linear_sigma(lin->linears[3]));
    assert_memory_equal(qkv_u, srp_linear_u(lin->linears[4]), sizeof(qkv_u));
    assert_memory_equal(head_w, srp_linear_weight(lin->linears[lin->count - 1]), sizeof(head_w));
    lm_destroy(m);
}

/* --export-folded: per linear weight and bias alone, the weight
 * gamma / sigma * W with sigma from one power step from the stored u, as
 * the eval forward takes it (computed here in double). */
static void test_folded_weights(void **state)
{
    (void)state;
    char path[600];
    scratch_path(path, sizeof(path), "folded.safetensors");
    lm_config c = small_config(LM_ARCH_SIGMA, 1);
    lm_model *m;
    assert_ok(lm_create(&m, &c));
    uint32_t tokens[ROWS * 8];
    some_tokens(tokens, ROWS * 8, 6);
    const float *logits;
    assert_ok(lm_forward(m, tokens, ROWS, 8, SRP_TRAIN, &logits));
    const ex_linear_names *lin = lm_linears(m);
    for (size_t i = 0; i < lin->count; i++) /* gamma / sigma far from 1 */
        *srp_linear_gamma(lin->linears[i]) *= 0.5f + 0.25f * (float)i;
    ex_error err = {""};
    assert_int_equal(lm_export_folded(m, path, "average", &err), EX_OK);
    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_count(f), 2 + 2 * lin->count);
    assert_string_equal(srp_safetensors_metadata(f, "weights"), "average");
    srp_safetensors_close(f);
    for (size_t i = 0; i < lin->count; i++) {
        srp_linear *l = lin->linears[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const float *w = srp_linear_weight(l), *u = srp_linear_u(l);
        double *v = calloc(out, sizeof(double)), *u2 = calloc(in, sizeof(double)), nv = 0, nu = 0;
        float *folded = malloc(sizeof(float) * in * out);
        assert_non_null(v);
        assert_non_null(u2);
        assert_non_null(folded);
        for (size_t r = 0; r < out; r++) {
            for (size_t k = 0; k < in; k++)
                v[r] += (double)w[r * in + k] * u[k];
            nv += v[r] * v[r];
        }
        for (size_t k = 0; k < in; k++) {
            for (size_t r = 0; r < out; r++)
                u2[k] += (double)w[r * in + k] * v[r] / sqrt(nv);
            nu += u2[k] * u2[k];
        }
        double sigma = 0.0; /* v^T W u2, both normalized */
        for (size_t r = 0; r < out; r++)
            for (size_t k = 0; k < in; k++)
                sigma += v[r] / sqrt(nv) * w[r * in + k] * u2[k] / sqrt(nu);
        char name[128];
        snprintf(name, sizeof(name), "%s.weight", lin->names[i]);
        const srp_tensor_ref ref = {name, SRP_DTYPE_F32, 2, {out, in}, folded};
        assert_ok(srp_safetensors_load(path, &ref, 1));
        const double scale = *srp_linear_gamma(l) / sigma;
        for (size_t k = 0; k < in * out; k++)
            assert_true(fabs(folded[k] - scale * w[k]) <= 1e-5 * fabs(scale * w[k]) + 1e-7);
        free(v);
        free(u2);
        free(folded);
    }
    lm_destroy(m);
}

/* A copy of the safetensors file src at dst, every tensor as it is but the
 * one named `name`, whose first element becomes value. */
static void rewrite_with(const char *src, const char *dst, const char *name, float value)
{
    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, src));
    const size_t n = srp_safetensors_count(f);
    srp_tensor_ref *refs = calloc(n, sizeof(*refs));
    assert_non_null(refs);
    for (size_t k = 0; k < n; k++) {
        assert_ok(srp_safetensors_info(f, k, &refs[k]));
        refs[k].name = strdup(refs[k].name);
        refs[k].data = malloc(ref_bytes(&refs[k]) + 1);
        assert_ok(srp_safetensors_read(f, &refs[k], 1));
        if (strcmp(refs[k].name, name) == 0)
            *(float *)refs[k].data = value;
    }
    srp_safetensors_close(f);
    assert_ok(srp_safetensors_save(dst, refs, n, NULL, 0));
    for (size_t k = 0; k < n; k++) {
        free((void *)refs[k].name);
        free(refs[k].data);
    }
    free(refs);
}

/* A file of another model, or a bad one, is refused with what is missing
 * and unknown (or what is wrong), and the model is left as it was, to the
 * bit: its weights, u, v and sigma. */
static void test_mismatched_files_are_refused(void **state)
{
    (void)state;
    char path[600], other[600], bad[600];
    scratch_path(path, sizeof(path), "mine.safetensors");
    scratch_path(other, sizeof(other), "other.safetensors");
    scratch_path(bad, sizeof(bad), "bad.safetensors");
    lm_config c = small_config(LM_ARCH_SIGMA, 1);
    lm_model *m, *x;
    assert_ok(lm_create(&m, &c));
    ex_error err = {""};
    assert_int_equal(lm_export_safetensors(m, path, "live", &err), EX_OK);
    size_t bytes, after;
    float *before = model_state(m, &bytes);

    /* pre-LN: LayerNorms the model lacks; with plain linears: no sigma, u */
    c.arch = LM_ARCH_PRELN;
    assert_ok(lm_create(&x, &c));
    assert_int_equal(lm_export_safetensors(x, other, "live", &err), EX_OK);
    assert_int_equal(lm_import_safetensors(m, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "missing: blocks.0.attn.qkv.sigma"));
    assert_non_null(strstr(err.message, "unknown: blocks.0.ln1.weight"));
    assert_int_equal(lm_import_safetensors(x, path, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "missing: blocks.0.ln1.weight"));
    lm_destroy(x);
    /* one block more; one less */
    c.arch = LM_ARCH_SIGMA;
    c.depth = 3;
    assert_ok(lm_create(&x, &c));
    assert_int_equal(lm_export_safetensors(x, other, "live", &err), EX_OK);
    assert_int_equal(lm_import_safetensors(m, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "unknown: blocks.2.attn.qkv.weight"));
    assert_null(strstr(err.message, "missing"));
    assert_int_equal(lm_import_safetensors(x, path, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "missing: blocks.2.attn.qkv.weight"));
    lm_destroy(x);
    /* a tied head: no lm_head */
    c.depth = 2;
    c.tied_head = 1;
    assert_ok(lm_create(&x, &c));
    assert_int_equal(lm_export_safetensors(x, other, "live", &err), EX_OK);
    assert_int_equal(lm_import_safetensors(m, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "missing: lm_head.weight"));
    lm_destroy(x);
    /* the same names, another width */
    c.tied_head = 0;
    c.dim = 16;
    c.heads = 4;
    assert_ok(lm_create(&x, &c));
    assert_int_equal(lm_export_safetensors(x, other, "live", &err), EX_OK);
    assert_int_equal(lm_import_safetensors(m, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "shape or dtype"));
    lm_destroy(x);
    /* a spectral norm that is no sigma; a file that is not there */
    rewrite_with(path, bad, "blocks.1.mlp.fc1.spectral_normed_weight.spectral_norm", -1.0f);
    assert_int_equal(lm_import_safetensors(m, bad, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "blocks.1.mlp.fc1.spectral_normed_weight.spectral_norm"));
    rewrite_with(path, bad, "blocks.0.attn.proj.spectral_normed_weight.spectral_norm", NAN);
    assert_int_equal(lm_import_safetensors(m, bad, &err), EX_FAILED);
    scratch_path(other, sizeof(other), "no-such.safetensors");
    assert_int_equal(lm_import_safetensors(m, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, other));

    float *now = model_state(m, &after);
    assert_int_equal(after, bytes);
    assert_memory_equal(now, before, bytes);
    free(now);
    /* and the file the model wrote still loads */
    assert_int_equal(lm_import_safetensors(m, path, &err), EX_OK);
    free(before);
    lm_destroy(m);
}

/* A text of 40 short documents (lines), in the scratch folder. */
static void small_text(char *path, size_t cap)
{
    scratch_path(path, cap, "interop.txt");
    char text[40 * 40];
    size_t len = 0;
    for (int d = 0; d < 40; d++)
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "%02d the quick brown fox jumps over dogs\n", d);
    write_bytes(path, text, len, 0);
}

#define LM_FLAGS                                                                                   \
    "--context 16 --dim 16 --depth 2 --heads 2 --mlp-dim 32 --batch 4 --eval-windows 4 "

/* The trainer's flags: --export then --init-from --eval-only scores the
 * validation text as the run's own checkpoint does (the same logits, bit
 * for bit); the flags that do not go together are refused. */
static void test_export_and_init_from(void **state)
{
    (void)state;
    static char out[1 << 16];
    char text[512], model[600], ckpt[600], a[600], b[600];
    small_text(text, sizeof(text));
    scratch_path(model, sizeof(model), "trained.safetensors");
    scratch_path(ckpt, sizeof(ckpt), "trained.ckpt");
    scratch_path(a, sizeof(a), "ckpt_logits");
    scratch_path(b, sizeof(b), "export_logits");
    assert_int_equal(run_lm(out,
                            LM_FLAGS "--text %s --steps 10 --warmup 2 --checkpoint %s "
                                     "--export %s",
                            text, ckpt, model),
                     0);
    assert_non_null(strstr(out, "(the live weights)"));
    assert_int_equal(
        run_lm(out, LM_FLAGS "--text %s --resume %s --eval-only --logits %s", text, ckpt, a), 0);
    assert_int_equal(
        run_lm(out, LM_FLAGS "--text %s --init-from %s --eval-only --logits %s", text, model, b),
        0);
    assert_non_null(strstr(out, "model from"));
    size_t na, nb;
    unsigned char *ba = read_file_bytes(a, &na), *bb = read_file_bytes(b, &nb);
    assert_non_null(ba);
    assert_non_null(bb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
    /* 4 windows of 16 bytes and their logits */
    static float logits[4 * 16 * LM_VOCAB];
    static uint8_t tokens[4 * 16];
    const srp_tensor_ref refs[] = {{"tokens", SRP_DTYPE_U8, 2, {4, 16}, tokens},
                                   {"logits", SRP_DTYPE_F32, 3, {4, 16, LM_VOCAB}, logits}};
    assert_ok(srp_safetensors_load_strict(a, refs, 2));
    for (size_t k = 0; k < sizeof(tokens); k++) /* the text's bytes */
        assert_non_null(strchr("0123456789 abcdefghijklmnopqrstuvwxyz\n", tokens[k]));

    assert_int_equal(
        run_lm(out, LM_FLAGS "--text %s --init-from %s --resume %s", text, model, ckpt), 2);
    assert_int_equal(run_lm(out, LM_FLAGS "--text %s --steps 5 --logits %s", text, a), 2);
    assert_non_null(strstr(out, "--logits needs --eval-only"));
    assert_int_equal(run_lm(out, LM_FLAGS "--text %s --eval-only", text), 2);
    assert_int_equal(
        run_lm(out, LM_FLAGS "--dim 32 --text %s --init-from %s --eval-only", text, model), 1);
    assert_non_null(strstr(out, "shape or dtype"));
    assert_int_equal(
        run_lm(out, LM_FLAGS "--depth 1 --text %s --init-from %s --eval-only", text, model), 1);
    assert_non_null(strstr(out, "unknown: blocks.1."));
}

/* --export of an --ema run writes the model the run evaluated: the weight
 * average with its own sigma, which scores the validation text as the
 * run's checkpoint does with its average swapped in (bit for bit), not the
 * live weights; the line and the metadata say "average". The option is in
 * the run's fingerprint only when on (older checkpoints still resume). */
static void test_export_holds_the_weight_average(void **state)
{
    (void)state;
    static char out[1 << 16];
    char text[512], model[600], ckpt[600], a[600], b[600], metrics[600];
    small_text(text, sizeof(text));
    scratch_path(model, sizeof(model), "averaged.safetensors");
    scratch_path(ckpt, sizeof(ckpt), "averaged.ckpt");
    scratch_path(a, sizeof(a), "averaged_ckpt_logits");
    scratch_path(b, sizeof(b), "averaged_export_logits");
    scratch_path(metrics, sizeof(metrics), "averaged.jsonl");
    assert_int_equal(run_lm(out,
                            LM_FLAGS "--text %s --steps 10 --warmup 2 --ema 0.9 "
                                     "--checkpoint %s --export %s --metrics %s",
                            text, ckpt, model, metrics),
                     0);
    assert_non_null(strstr(out, "(the weight average, its sigma recomputed)"));
    char *m = read_text(metrics);
    assert_non_null(strstr(m, " ema=0.9"));
    free(m);
    assert_int_equal(run_lm(out, LM_FLAGS "--text %s --ema 0.9 --resume %s --eval-only --logits %s",
                            text, ckpt, a),
                     0);
    assert_non_null(strstr(out, "the weight average)"));
    assert_int_equal(
        run_lm(out, LM_FLAGS "--text %s --init-from %s --eval-only --logits %s", text, model, b),
        0);
    size_t na, nb;
    unsigned char *ba = read_file_bytes(a, &na), *bb = read_file_bytes(b, &nb);
    assert_non_null(ba);
    assert_non_null(bb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, model));
    assert_string_equal(srp_safetensors_metadata(f, "weights"), "average");
    srp_safetensors_close(f);
    static float exported[256 * 16], live[256 * 16];
    const srp_tensor_ref e = {"wte.weight", SRP_DTYPE_F32, 2, {256, 16}, exported};
    const srp_tensor_ref l = {"wte", SRP_DTYPE_F32, 2, {256, 16}, live};
    assert_ok(srp_safetensors_load(model, &e, 1));
    assert_ok(srp_checkpoint_load(ckpt, &l, 1));
    assert_memory_not_equal(exported, live, sizeof(live));
    /* the average differs from the weights by a little, not wholesale */
    double diff = 0.0, norm = 0.0;
    for (size_t k = 0; k < 256 * 16; k++) {
        diff += ((double)exported[k] - live[k]) * ((double)exported[k] - live[k]);
        norm += (double)live[k] * live[k];
    }
    assert_true(diff > 0.0 && diff < 0.25 * norm);

    /* --ema 0: the live weights, and no ema in the fingerprint */
    assert_int_equal(run_lm(out,
                            LM_FLAGS "--text %s --steps 10 --warmup 2 --checkpoint %s "
                                     "--export %s --metrics %s",
                            text, ckpt, model, metrics),
                     0);
    assert_non_null(strstr(out, "(the live weights)"));
    m = read_text(metrics);
    assert_null(strstr(m, "ema="));
    free(m);
    assert_ok(srp_safetensors_open(&f, model));
    assert_string_equal(srp_safetensors_metadata(f, "weights"), "live");
    srp_safetensors_close(f);
    assert_ok(srp_safetensors_load(model, &e, 1));
    assert_ok(srp_checkpoint_load(ckpt, &l, 1));
    assert_memory_equal(exported, live, sizeof(live));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_is_bit_exact),
        cmocka_unit_test(test_names_and_shapes),
        cmocka_unit_test(test_folded_weights),
        cmocka_unit_test(test_mismatched_files_are_refused),
        cmocka_unit_test(test_export_and_init_from),
        cmocka_unit_test(test_export_holds_the_weight_average),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
