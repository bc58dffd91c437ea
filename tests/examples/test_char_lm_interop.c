/* char-lm-train's --export, --export-folded, --init-from, --eval-only
 * --logits and --ema: the exported model scores as the run's own, the
 * weight average exported, the flags refused together. The model's files
 * (lm_safetensors.h): test_char_lm.c; their logits against PyTorch's:
 * experiments/torch_check_lm.py. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm_model.h"
#include "testutil.h"
#include "trainer_harness.h"

#define run_lm(out, ...) run_programf(LM_TRAIN_EXE, out, sizeof(out), __VA_ARGS__)
/* A run's files in the scratch folder: a text of 40 short documents
 * (lines), the model it exports, its checkpoint, two logits files and
 * its metrics, named after prefix. */
typedef struct {
    char text[600], model[600], ckpt[600], a[600], b[600], metrics[600];
} run_files;

static void run_files_init(run_files *f, const char *prefix)
{
    scratch_path(f->text, sizeof(f->text), "interop.txt");
    char text[40 * 40], name[128];
    size_t len = 0;
    for (int d = 0; d < 40; d++)
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "%02d the quick brown fox jumps over dogs\n", d);
    write_bytes(f->text, text, len, 0);
    char *paths[5] = {f->model, f->ckpt, f->a, f->b, f->metrics};
    const char *suffixes[5] = {".safetensors", ".ckpt", "_ckpt_logits", "_export_logits", ".jsonl"};
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "%s%s", prefix, suffixes[i]);
        scratch_path(paths[i], 600, name);
    }
}

#define LM_FLAGS                                                                                   \
    "--context 16 --dim 16 --depth 2 --heads 2 --mlp-dim 32 --batch 4 --eval-windows 4 "

/* A short run with flags (--ema ...) that writes --checkpoint,
 * --export and --metrics, whose line says said and whose fingerprint (the
 * metrics' config) holds config (NULL: no "ema="); then the validation
 * windows' logits from the checkpoint as the run evaluated (--resume
 * --eval-only, with flags) and from the export (--init-from --eval-only):
 * the same, bit for bit. */
static void train_and_score_both(const run_files *f, const char *flags, const char *said,
                                 const char *config)
{
    static char out[1 << 16];
    assert_int_equal(run_lm(out,
                            LM_FLAGS "%s --text %s --steps 10 --warmup 2 --checkpoint %s "
                                     "--export %s --metrics %s",
                            flags, f->text, f->ckpt, f->model, f->metrics),
                     0);
    assert_non_null(strstr(out, said));
    char *m = read_text(f->metrics);
    if (config)
        assert_non_null(strstr(m, config));
    else
        assert_null(strstr(m, "ema="));
    free(m);
    assert_int_equal(run_lm(out, LM_FLAGS "%s --text %s --resume %s --eval-only --logits %s", flags,
                            f->text, f->ckpt, f->a),
                     0);
    assert_int_equal(run_lm(out, LM_FLAGS "--text %s --init-from %s --eval-only --logits %s",
                            f->text, f->model, f->b),
                     0);
    assert_non_null(strstr(out, "model from"));
    assert_true(same_bytes(f->a, f->b));
}

/* The exported model's "weights" metadata, and whether its wte.weight is
 * the checkpoint's wte (the live weights) bit for bit; *relative: their
 * squared difference over the live weights' squared norm. */
static int exported_is_live(const run_files *f, const char *weights, double *relative)
{
    srp_safetensors *file = NULL;
    assert_ok(srp_safetensors_open(&file, f->model));
    assert_string_equal(srp_safetensors_metadata(file, "weights"), weights);
    srp_safetensors_close(file);
    static float exported[256 * 16], live[256 * 16];
    const srp_tensor_ref e = {"wte.weight", SRP_DTYPE_F32, 2, {256, 16}, exported};
    const srp_tensor_ref l = {"wte", SRP_DTYPE_F32, 2, {256, 16}, live};
    assert_ok(srp_safetensors_load(f->model, &e, 1));
    assert_ok(srp_checkpoint_load(f->ckpt, &l, 1));
    double diff = 0.0, norm = 0.0;
    for (size_t k = 0; k < 256 * 16; k++) {
        diff += ((double)exported[k] - live[k]) * ((double)exported[k] - live[k]);
        norm += (double)live[k] * live[k];
    }
    *relative = diff / norm;
    return memcmp(exported, live, sizeof(live)) == 0;
}

/* The trainer's flags: --export then --init-from --eval-only scores the
 * validation text as the run's own checkpoint does; the live weights, said
 * so; the logits file's windows; the flags that do not go together, and a
 * file of another model, refused. */
static void test_export_and_init_from(void **state)
{
    (void)state;
    static char out[1 << 16];
    run_files f;
    run_files_init(&f, "trained");
    train_and_score_both(&f, "", "(the live weights)", NULL); /* --ema off: not in the config */
    double relative;
    assert_true(exported_is_live(&f, "live", &relative));
    /* 4 windows of 16 bytes and their logits */
    static float logits[4 * 16 * LM_VOCAB];
    static uint8_t tokens[4 * 16];
    const srp_tensor_ref refs[] = {{"tokens", SRP_DTYPE_U8, 2, {4, 16}, tokens},
                                   {"logits", SRP_DTYPE_F32, 3, {4, 16, LM_VOCAB}, logits}};
    assert_ok(srp_safetensors_load_strict(f.a, refs, 2));
    for (size_t k = 0; k < sizeof(tokens); k++) /* the text's bytes */
        assert_non_null(strchr("0123456789 abcdefghijklmnopqrstuvwxyz\n", tokens[k]));

    assert_int_equal(
        run_lm(out, LM_FLAGS "--text %s --init-from %s --resume %s", f.text, f.model, f.ckpt), 2);
    assert_int_equal(run_lm(out, LM_FLAGS "--text %s --steps 5 --logits %s", f.text, f.a), 2);
    assert_non_null(strstr(out, "--logits goes with --eval-only"));
    assert_int_equal(run_lm(out, LM_FLAGS "--text %s --eval-only", f.text), 2);
    assert_int_equal(
        run_lm(out, LM_FLAGS "--dim 32 --text %s --init-from %s --eval-only", f.text, f.model), 1);
    assert_non_null(strstr(out, "shape or dtype"));
    assert_int_equal(
        run_lm(out, LM_FLAGS "--depth 1 --text %s --init-from %s --eval-only", f.text, f.model), 1);
    assert_non_null(strstr(out, "unknown: blocks.1."));
}

/* --export of an --ema run writes the model the run evaluated: the weight
 * average with its own sigma, which scores the validation text as the
 * run's checkpoint does with its average swapped in (bit for bit), not the
 * live weights (but near them); the line and the metadata say "average".
 * The option is in the run's fingerprint when on. */
static void test_export_holds_the_weight_average(void **state)
{
    (void)state;
    run_files f;
    run_files_init(&f, "averaged");
    train_and_score_both(&f, "--ema 0.9", "(the weight average, its sigma recomputed)", " ema=0.9");
    double relative;
    assert_false(exported_is_live(&f, "average", &relative));
    assert_true(relative > 0.0 && relative < 0.25);

    /* --sample after an --ema run draws from the average too, which the
     * line says; --generate draws from the checkpoint's live weights
     * (without --ema the two are the same text: test_char_lm.c). */
    static char out[1 << 16], live[1 << 16];
    assert_int_equal(run_lm(out,
                            LM_FLAGS "--ema 0.9 --text %s --steps 30 --warmup 2 --checkpoint %s "
                                     "--sample 60 --prompt abc",
                            f.text, f.ckpt),
                     0);
    const char *sample = strstr(out, "sample (temperature 0.8, the weight average):\nabc");
    assert_non_null(sample);
    sample = strchr(sample, '\n') + 1;
    assert_int_equal(run_lm(live, "--generate %s --sample 60 --prompt abc", f.ckpt), 0);
    const char *from_live = strstr(live, "abc");
    assert_non_null(from_live);
    assert_true(strlen(sample) >= 63 && strlen(from_live) >= 63);
    assert_true(memcmp(sample, from_live, 63) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_and_init_from),
        cmocka_unit_test(test_export_holds_the_weight_average),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
