/* The char LM example: its model (causality, gradients), its text (split,
 * baselines) and char-lm-train run as a user runs it (learning, exact
 * resume, sampling, errors). The program's path comes from CMake
 * (LM_TRAIN_EXE). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tensors.h"
#include "lm_model.h"
#include "lm_safetensors.h"
#include "reference_model.h"
#include "testutil.h"
#include "text.h"
#include "trainer_harness.h"

/* Runs char-lm-train with the options fmt formats (trainer_harness.h); out is an
 * array, its size taken. */
#define run_lm(out, ...) run_programf(LM_TRAIN_EXE, out, sizeof(out), __VA_ARGS__)

/* A small model: context 8, 2 blocks of 2 heads, dim 8, MLP 12. */
static lm_config small_config(lm_arch arch, int tied, lm_positions positions)
{
    lm_config c = lm_config_default();
    c.context = 8;
    c.dim = 8;
    c.depth = 2;
    c.heads = 2;
    c.mlp_dim = 12;
    c.max_batch = 3;
    c.arch = arch;
    c.tied_head = tied;
    c.positions = positions;
    c.init_gain = 10.0f; /* weights of 0.2: attention far from uniform */
    c.embed_std = 1.0f;
    c.seed = 3;
    return c;
}

/* Changing the byte at position p changes no logit of an earlier position
 * (bit for bit), nor any logit of another sequence of the batch; it does
 * change position p's. Every architecture, tied and untied. */
static void test_causal_no_leak(void **state)
{
    (void)state;
    for (int arch = 0; arch < LM_ARCH_COUNT; arch++)
        for (int tied = 0; tied < 2; tied++) {
            lm_config c = small_config((lm_arch)arch, tied, (lm_positions)tied);
            lm_model *m;
            assert_ok(lm_create(&m, &c));
            const size_t B = 3, T = 8, V = LM_VOCAB;
            uint32_t tok[3 * 8];
            srp_rng r = seeded_rng(10 + (uint64_t)arch);
            for (size_t i = 0; i < B * T; i++)
                tok[i] = (uint32_t)srp_rng_below(&r, V);
            float *before = malloc(sizeof(float) * B * T * V);
            assert_non_null(before);
            const float *logits;
            assert_ok(lm_forward(m, tok, B, T, SRP_EVAL, &logits));
            memcpy(before, logits, sizeof(float) * B * T * V);
            for (size_t p = 1; p < T; p++) {
                tok[T + p] = (tok[T + p] + 1 + (uint32_t)srp_rng_below(&r, V - 1)) % V;
                assert_ok(lm_forward(m, tok, B, T, SRP_EVAL, &logits));
                /* sequence 1 before p, and sequences 0 and 2 entirely */
                assert_memory_equal(logits + T * V, before + T * V, sizeof(float) * p * V);
                assert_memory_equal(logits, before, sizeof(float) * T * V);
                assert_memory_equal(logits + 2 * T * V, before + 2 * T * V, sizeof(float) * T * V);
                assert_true(memcmp(logits + (T + p) * V, before + (T + p) * V, sizeof(float) * V) !=
                            0);
                memcpy(before, logits, sizeof(float) * B * T * V);
            }
            free(before);
            lm_destroy(m);
        }
}

/* Cached decoding (lm_decode), position by position to the end of the
 * context, gives the logits of lm_forward in eval over the same prefix
 * (1e-6 relative), for 3 sequences at once; every architecture, tied and
 * untied; a full decoder refuses, a reset starts again. */
static void test_decode_matches_forward(void **state)
{
    (void)state;
    for (int arch = 0; arch < LM_ARCH_COUNT; arch++)
        for (int tied = 0; tied < 2; tied++) {
            lm_config c = small_config((lm_arch)arch, tied, (lm_positions)tied);
            lm_model *m;
            assert_ok(lm_create(&m, &c));
            const size_t B = 3, T = 8, V = LM_VOCAB;
            uint32_t tok[3 * 8], prefix[3 * 8], step[3];
            srp_rng r = seeded_rng(20 + (uint64_t)arch);
            for (size_t i = 0; i < B * T; i++)
                tok[i] = (uint32_t)srp_rng_below(&r, V);
            lm_decoder *d;
            assert_ok(lm_decoder_create(&d, m, B));
            float want[3 * LM_VOCAB];
            for (size_t t = 0; t < T; t++) {
                const float *got, *full;
                for (size_t b = 0; b < B; b++)
                    step[b] = tok[b * T + t];
                assert_ok(lm_decode(d, step, B, &got));
                assert_int_equal(lm_decoder_length(d), t + 1);
                memcpy(want, got, sizeof want); /* lm_forward may not touch the decoder's */
                for (size_t b = 0; b < B; b++)
                    memcpy(prefix + b * (t + 1), tok + b * T, sizeof(uint32_t) * (t + 1));
                assert_ok(lm_forward(m, prefix, B, t + 1, SRP_EVAL, &full));
                for (size_t b = 0; b < B; b++) {
                    const double rel = rel_max_diff(want + b * V, full + (b * (t + 1) + t) * V, V);
                    if (rel > 1e-6)
                        fail_msg("%s (tied %d), position %zu, sequence %zu: decoded logits vs "
                                 "lm_forward %.3g relative",
                                 lm_arch_name((lm_arch)arch), tied, t, b, rel);
                }
            }
            assert_int_equal(lm_decode(d, step, B, NULL), SRP_ERR_SHAPE);
            lm_decoder_reset(d);
            assert_int_equal(lm_decoder_length(d), 0);
            assert_ok(lm_decode(d, step, 1, NULL));
            lm_decoder_destroy(d);
            lm_destroy(m);
        }
}

typedef struct {
    lm_model *m;
    const uint32_t *tok;
    const int *targets;
    size_t batch, tokens;
} lm_problem;

static double lm_loss(void *ctx)
{
    const lm_problem *P = ctx;
    const float *logits;
    float loss;
    assert_ok(lm_forward(P->m, P->tok, P->batch, P->tokens, SRP_EVAL, &logits));
    assert_ok(
        srp_cross_entropy_forward(logits, P->targets, P->batch * P->tokens, LM_VOCAB, 0.0f, &loss));
    return loss;
}

/* Every parameter's gradient against central differences of the loss, in
 * every architecture; the tied cases send the embedding's gradient
 * through both the lookup and the head. Tokens repeat, so that the
 * scatter-add sums several rows into one. */
static void test_backward_matches_differences(void **state)
{
    (void)state;
    const struct {
        lm_arch arch;
        int tied;
        lm_positions positions;
    } cases[] = {{LM_ARCH_SIGMA, 1, LM_POS_LEARNED},       {LM_ARCH_SIGMA, 0, LM_POS_FIXED},
                 {LM_ARCH_SIGMA_PRELN, 0, LM_POS_LEARNED}, {LM_ARCH_PRELN, 1, LM_POS_LEARNED},
                 {LM_ARCH_POSTLN, 0, LM_POS_LEARNED},      {LM_ARCH_SIGMA_POSTLN, 1, LM_POS_FIXED}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        lm_config c = small_config(cases[k].arch, cases[k].tied, cases[k].positions);
        c.init_gain = 5.0f;
        lm_model *m;
        assert_ok(lm_create(&m, &c));
        srp_param_list *plist = NULL;
        assert_ok(srp_param_list_create(&plist));
        assert_ok(lm_model_params(m, plist));
        const size_t count = srp_param_list_count(plist);
        srp_param *params = srp_param_list_entries(plist);
        srp_rng r = seeded_rng(20 + k);
        const size_t B = 2, T = 6; /* fewer tokens than the context */
        uint32_t tok[12];
        int targets[12];
        for (size_t i = 0; i < B * T; i++) {
            tok[i] = 'a' + (uint32_t)srp_rng_below(&r, 4);
            targets[i] = 'a' + (int)srp_rng_below(&r, 4);
        }
        randomize_params(plist, &r); /* non-trivial values everywhere */
        const float *logits;
        float *dlogits = malloc(sizeof(float) * B * T * LM_VOCAB);
        assert_non_null(dlogits);
        assert_ok(lm_forward(m, tok, B, T, SRP_EVAL, &logits));
        assert_ok(srp_cross_entropy_backward(logits, targets, B * T, LM_VOCAB, 0.0f, dlogits));
        assert_ok(lm_backward(m, dlogits));
        lm_problem P = {m, tok, targets, B, T};
        size_t checked = 0;
        int saw_wte = 0;
        for (size_t i = 0; i < count; i++) {
            const int wte = strcmp(params[i].name, "wte") == 0;
            for (int s = 0; s < (wte ? 12 : 4); s++) {
                /* wte: mostly rows of the tokens in use (the others only
                 * reach the loss through a tied head) */
                size_t j = (size_t)srp_rng_below(&r, params[i].size);
                if (wte && s % 3 != 0)
                    j = ('a' + (size_t)srp_rng_below(&r, 4)) * c.dim + j % c.dim;
                const double fd = ref_central_difference_f(lm_loss, &P, params[i].data + j, 1e-2f);
                const double an = params[i].grad[j];
                if (!(fabs(fd - an) <= 0.03 * fabs(fd) + 3e-4)) {
                    print_error("%s (tied %d): %s[%zu]: backward %.6g, differences %.6g\n",
                                lm_arch_name(c.arch), c.tied_head, params[i].name, j, an, fd);
                    fail();
                }
                saw_wte |= wte && fabs(an) > 1e-3;
                checked++;
            }
        }
        assert_true(saw_wte);
        assert_true(checked > 40);
        free(dlogits);
        srp_param_list_destroy(plist);
        lm_destroy(m);
    }
}

/* Paragraphs are documents; every 10th is validation text; a text of
 * fewer documents splits by bytes. */
static void test_text_split(void **state)
{
    (void)state;
    char buf[4096];
    size_t len = 0;
    for (int d = 1; d <= 25; d++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "doc %d line\nmore %d\n\n\n", d, d);
    lm_text t;
    ex_error err;
    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)buf, len, &err), EX_OK);
    assert_int_equal(t.documents, 25);
    const char *val = "doc 10 line\nmore 10\ndoc 20 line\nmore 20\n";
    assert_int_equal(t.val_len, strlen(val));
    assert_memory_equal(t.val, val, strlen(val));
    assert_int_equal(t.train_len + t.val_len, len - 25 * 2); /* each doc keeps one newline */
    assert_true(memcmp(t.train, "doc 1 line\nmore 1\ndoc 2 line\n", 29) == 0);
    lm_text_free(&t);

    const char *one = "a single paragraph of forty bytes, no more";
    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)one, strlen(one), &err), EX_OK);
    assert_int_equal(t.val_len, (strlen(one) + 1) / 10);
    assert_int_equal(t.train_len + t.val_len, strlen(one) + 1);
    lm_text_free(&t);

    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)"\n\n \n", 4, &err), EX_USAGE);
    assert_non_null(strstr(err.message, "empty"));

    /* Found by fuzz_text (tests/fuzz/corpus/text/crash-empty-append): a
     * trailing empty piece appended nothing to a buffer not yet allocated,
     * memcpy from NULL + 0, which UBSan (CI's sanitizer build) stops on. */
    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)"d2may  ", 7, &err), EX_OK);
    assert_int_equal(t.train_len + t.val_len, 8);
    lm_text_free(&t);
}

/* A document that repeats one seen before (trailing newlines aside) is
 * dropped before the split, wherever the two copies would have gone: the
 * 10th distinct document validates, and no repeat of a training document
 * is validation text. */
static void test_text_drops_repeated_documents(void **state)
{
    (void)state;
    static char buf[1 << 16];
    size_t len = 0;
    /* documents 1..30; after each multiple of 3 repeat an earlier one,
     * with extra trailing newlines or a \r to show they do not count */
    for (int d = 1; d <= 30; d++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "doc %d\n\n", d);
        if (d % 3 == 0)
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "doc %d%s\n\n", d - 1,
                                    d % 2 ? "\r\n" : "\n\n");
    }
    lm_text t;
    ex_error err;
    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)buf, len, &err), EX_OK);
    assert_int_equal(t.documents, 30);
    assert_int_equal(t.duplicates, 10);
    const char *val = "doc 10\ndoc 20\ndoc 30\n";
    assert_int_equal(t.val_len, strlen(val));
    assert_memory_equal(t.val, val, strlen(val));
    /* "doc 9" follows "doc 8" in training: its repeat was dropped */
    char *train = malloc(t.train_len + 1);
    assert_non_null(train);
    memcpy(train, t.train, t.train_len);
    train[t.train_len] = '\0';
    assert_non_null(strstr(train, "doc 8\ndoc 9\ndoc 11\n"));
    free(train);
    lm_text_free(&t);

    /* the same bytes in other documents are not repeats: a prefix, a
     * longer one, the same words spread differently */
    const char *distinct = "ab\n\nabc\n\nab c\n\na\nbc\n\nabcd";
    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)distinct, strlen(distinct), &err),
                     EX_OK);
    assert_int_equal(t.duplicates, 0);
    assert_int_equal(t.documents, 5);
    lm_text_free(&t);
}

/* The count models on a text small enough to work out by hand. */
static void test_baselines(void **state)
{
    (void)state;
    /* training text "abab\n" (5 bytes), validation "ab\n" */
    lm_text t = {(uint8_t *)"abab\n", (uint8_t *)"ab\n", 5, 3, 2, 0};
    lm_baselines b;
    ex_error err;
    assert_int_equal(lm_baselines_compute(&t, &b, &err), EX_OK);
    const double n = 5.0 + 256.0;
    const double pa = 3.0 / n, pb = 3.0 / n, pnl = 2.0 / n;
    assert_close_rel(b.unigram_bpc, -(log2(pa) + log2(pb) + log2(pnl)) / 3.0, 1e-12, 0.0,
                     "unigram");
    /* Witten-Bell: a is followed by b twice (1 kind); b by a once and \n
     * once (2 kinds). P(b|a) = (2 + 1 pb) / (2 + 1); P(\n|b) = (1 + 2 pnl) / (2 + 2). */
    const double p1 = (2.0 + pb) / 3.0, p2 = (1.0 + 2.0 * pnl) / 4.0;
    assert_close_rel(b.bigram_bpc, -(log2(p1) + log2(p2)) / 2.0, 1e-12, 0.0, "bigram");
}

/* A text of 40 alphabets, one a line: every byte determines the next, so
 * the model can drive its loss to near zero. One document (40 of them
 * would be repeats, dropped): its last tenth validates. Written as
 * alphabet.txt in the scratch folder, whose path goes into path. */
static void alphabet_text(char *path, size_t cap)
{
    scratch_path(path, cap, "alphabet.txt");
    char text[40 * 28];
    size_t len = 0;
    for (int d = 0; d < 40; d++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "abcdefghijklmnopqrstuvwxyz\n");
    write_bytes(path, text, len, 0);
}

#define SMALL_LM                                                                                   \
    "--context 16 --dim 32 --depth 2 --heads 2 --mlp-dim 64 --batch 8 --eval-every 20 "            \
    "--log-every 5 --bound-every 10 --warmup 10 "

static void test_overfits_a_tiny_text(void **state)
{
    (void)state;
    static char out[1 << 16];
    char text[512], metrics[512];
    scratch_path(metrics, sizeof(metrics), "overfit.jsonl");
    alphabet_text(text, sizeof(text));
    assert_int_equal(
        run_lm(out, SMALL_LM "--text %s --steps 300 --lr 0.01 --metrics %s", text, metrics), 0);
    const double train = last_value(metrics, "train", "loss");
    const double val = last_value(metrics, "eval", "bpc");
    if (!(train < 0.05) || !(val < 0.1)) {
        print_error("final training loss %.4f nats, validation %.4f bits per character\n%s", train,
                    val, out);
        fail();
    }
    /* the metrics hold bits per character, entropies, the bound, sigmas */
    char *m = read_text(metrics);
    assert_non_null(strstr(m, "\"bigram_bpc\":"));
    assert_non_null(strstr(m, "\"entropy_normalized\":[["));
    assert_non_null(strstr(m, "\"entropy_bound\":[["));
    assert_non_null(strstr(m, "\"sigma\":{\"blocks.0.attn.qkv\":"));
    assert_non_null(strstr(m, "\"gamma\":{\"blocks.0.attn.qkv\":"));
    free(m);
    assert_bound_terms_logged(metrics, 2, 2);
}

/* A checkpoint carries its model's configuration: 1 block into 2 stops
 * naming the option; --generate checks the file against the model it
 * builds from it. And a collapse warning in the one schema (collapse.h),
 * the entropies normalized (uniform 1), the line the ViT prints. */
static void test_checkpoint_holds_its_model_and_collapse_schema(void **state)
{
    (void)state;
    static char out[1 << 16];
    char text[512], ckpt[512], metrics[512];
    scratch_path(ckpt, sizeof(ckpt), "depth1.ckpt");
    scratch_path(metrics, sizeof(metrics), "collapse.jsonl");
    alphabet_text(text, sizeof(text));
#define META_LM "--context 16 --dim 32 --heads 2 --mlp-dim 64 --batch 8 --warmup 2 "
    assert_int_equal(
        run_lm(out, META_LM "--depth 1 --text %s --steps 5 --checkpoint %s", text, ckpt), 0);
    assert_int_equal(run_lm(out, META_LM "--depth 2 --text %s --steps 10 --resume %s", text, ckpt),
                     2);
    assert_non_null(strstr(out, "depth is 1 in the file, 2 here"));
    assert_int_equal(run_lm(out, "--generate %s --sample 8", ckpt), 0);
    /* the blocks' mask states, which only training reads, do not stop it */
    char masked[512];
    scratch_path(masked, sizeof(masked), "masked.ckpt");
    assert_int_equal(run_lm(out,
                            META_LM "--depth 2 --text %s --steps 3 --attn-dropout 0.1 "
                                    "--drop-path 0.2 --checkpoint %s",
                            text, masked),
                     0);
    assert_non_null(strstr(out, ", attention dropout 0.1, drop path 0.2 |"));
    assert_int_equal(run_lm(out, "--generate %s --sample 8", masked), 0);
    /* An older build's file, without metadata: its shapes decide, strictly. */
    char copy[512];
    scratch_path(copy, sizeof(copy), "old.ckpt");
    rewrite_checkpoint(ckpt, copy, NULL, 0, NULL, NULL);
    assert_int_equal(run_lm(out, META_LM "--depth 1 --text %s --steps 5 --resume %s", text, copy),
                     0);
    rewrite_checkpoint(ckpt, copy, NULL, 0, NULL, "blocks.1.attn.qkv.weight");
    assert_int_equal(run_lm(out, META_LM "--depth 1 --text %s --steps 5 --resume %s", text, copy),
                     1);
    assert_non_null(strstr(out, "blocks.1.attn.qkv.weight"));

    assert_int_equal(
        run_lm(out, META_LM "--depth 1 --text %s --steps 3 --collapse-fraction 0.999 --metrics %s",
               text, metrics),
        0);
    assert_non_null(strstr(out, "warning: step 1: entropy collapse: layer 0 head "));
    char *m = read_text(metrics);
    assert_non_null(strstr(m, "\"type\":\"collapse\""));
    assert_null(strstr(m, "entropy_normalized\":0")); /* the old LM field */
    free(m);
    assert_true(last_value(metrics, "collapse", "uniform") == 1.0);
    assert_true(last_value(metrics, "collapse", "entropy") <
                last_value(metrics, "collapse", "reference"));
#undef META_LM
}

/* Stopped and resumed, a run gives the same metrics and the same final
 * checkpoint, bit for bit, as a run never stopped; --generate samples
 * from the checkpoint alone, the same text as the run itself. */
static void test_resume_is_bit_exact_and_samples(void **state)
{
    (void)state;
    static char out[1 << 16], out2[1 << 16];
    char text[512], args[4096];
    alphabet_text(text, sizeof(text));
    resume_files f;
    resume_files_init(&f, "");
    char common[1024];
    snprintf(common, sizeof(common), SMALL_LM "--text %s --steps 50 --checkpoint-every 7", text);
    assert_int_equal(run_lm(out, "%s --metrics %s --checkpoint %s --sample 40 --prompt abc", common,
                            f.m_full, f.c_full),
                     0);
    const int stops[2] = {13, 31};
    snprintf(args, sizeof(args), "'%s' --threads 1 %s", LM_TRAIN_EXE, common);
    assert_resume_is_bit_exact(args, stops, &f);

    assert_int_equal(run_lm(out2, "%s --lr 0.5 --resume %s", common, f.c_part), 2);
    assert_non_null(strstr(out2, "other training options"));

    /* the sample after training, and from the checkpoint alone */
    const char *sample = strstr(out, "sample (temperature 0.8):\nabc");
    assert_non_null(sample);
    assert_int_equal(run_lm(out2, "--generate %s --sample 40 --prompt abc", f.c_full), 0);
    const char *again = strstr(out2, "abc");
    assert_non_null(again);
    assert_memory_equal(again, sample + strlen("sample (temperature 0.8):\n"), 44);
    /* 200 bytes, past the context of 16 many times (the cache refilled
     * from the last 8 bytes each time): the same seed, the same text */
    assert_int_equal(run_lm(out, "--generate %s --sample 200 --seed 5", f.c_full), 0);
    assert_int_equal(run_lm(out2, "--generate %s --sample 200 --seed 5", f.c_full), 0);
    assert_string_equal(out, out2);
    assert_true(strlen(out) > 200);
}

/* A --minutes run on the test clock (EX_TEST_CLOCK: the same on every
 * machine): it plans at step 25 and at each fraction of the budget, ends
 * its schedule within the budget and says how much it used; stopped before
 * its first plan and between two, and resumed, it makes the same plans and
 * ends in the same state, bit for bit. */
static void test_budget_resume_makes_the_same_plans(void **state)
{
    (void)state;
    char text[512];
    alphabet_text(text, sizeof(text));
    resume_files f;
    resume_files_init(&f, "budget_");
    /* a step of 0.1 s growing by 0.1 ms a step: 483 steps in the minute */
    char common[2048];
    snprintf(common, sizeof(common),
             "EX_TEST_CLOCK=0.1,0.0001 '%s' --threads 1 " SMALL_LM
             "--text %s --minutes 1 --checkpoint-every 50 --eval-windows 4",
             LM_TRAIN_EXE, text);
    const int stops[2] = {13, 200};
    assert_budget_run_resumes(common, "1", stops, &f);
}

/* The final validation figure scores every byte of the validation text
 * after its first, once: its whole windows of context bytes, and the bytes
 * after the last whole window from a window that ends at the text's end.
 * Recomputed here in double from the run's final checkpoint, one window at
 * a time; the count and the figure must match the run's. */
static void test_final_evaluation_scores_every_byte(void **state)
{
    (void)state;
    static char out[1 << 16], body[4096];
    char text[512], metrics[512], ckpt[512];
    scratch_path(text, sizeof(text), "every_byte.txt");
    scratch_path(metrics, sizeof(metrics), "every_byte.jsonl");
    scratch_path(ckpt, sizeof(ckpt), "every_byte.ckpt");
    size_t len = 0;
    for (int d = 0; len + 64 < sizeof(body); d++)
        len += (size_t)snprintf(body + len, sizeof(body) - len, "row %d of %d, said %d\n\n", d,
                                d * 7 % 11, d * d % 13);
    write_bytes(text, body, len, 0);
    assert_int_equal(run_lm(out, SMALL_LM "--text %s --steps 30 --metrics %s --checkpoint %s", text,
                            metrics, ckpt),
                     0);

    lm_text t;
    ex_error err;
    assert_int_equal(lm_text_from_buffer(&t, (const uint8_t *)body, len, &err), EX_OK);
    const size_t T = 16, scored = t.val_len - 1;
    assert_true(scored % T != 0); /* a tail after the whole windows */
    assert_true(last_value(metrics, "eval", "bytes") == (double)scored);
    char expect[128];
    snprintf(expect, sizeof(expect), "(all %zu bytes after the first;", scored);
    assert_non_null(strstr(out, expect));

    lm_config c = lm_config_default();
    c.context = T;
    c.dim = 32;
    c.depth = 2;
    c.heads = 2;
    c.mlp_dim = 64;
    c.max_batch = 1;
    lm_model *m;
    assert_int_equal(lm_create(&m, &c), SRP_OK);
    srp_tensor_list *list = NULL;
    assert_ok(srp_tensor_list_create(&list));
    uint64_t config[10];
    const size_t ten = 10;
    assert_ok(srp_tensor_list_add(list, "model.config", NULL, SRP_DTYPE_U64, 1, &ten, config));
    assert_ok(lm_model_state_refs(m, list));
    assert_ok(srp_checkpoint_load(ckpt, srp_tensor_list_refs(list), srp_tensor_list_count(list)));
    srp_tensor_list_destroy(list);
    double nats = 0.0;
    size_t counted = 0;
    uint32_t window[16];
    for (size_t w = 0; w <= scored / T; w++) {
        /* window w scores bytes w T + 1 .. w T + T; the last, the rest */
        const size_t start = w < scored / T ? w * T : t.val_len - 1 - T;
        const size_t first = w < scored / T ? 0 : T - (scored - (scored / T) * T);
        for (size_t i = 0; i < T; i++)
            window[i] = t.val[start + i];
        const float *logits;
        assert_int_equal(lm_forward(m, window, 1, T, SRP_EVAL, &logits), SRP_OK);
        for (size_t i = first; i < T; i++) {
            const float *row = logits + i * LM_VOCAB;
            double max = row[0], z = 0.0;
            for (int v = 1; v < LM_VOCAB; v++)
                max = fmax(max, row[v]);
            for (int v = 0; v < LM_VOCAB; v++)
                z += exp((double)row[v] - max);
            nats += max + log(z) - row[t.val[start + i + 1]];
            counted++;
        }
    }
    assert_int_equal(counted, scored);
    assert_close_rel(last_value(metrics, "eval", "loss"), nats / (double)scored, 1e-5, 0.0,
                     "the final validation loss");
    lm_destroy(m);
    lm_text_free(&t);
}

static void test_bad_input(void **state)
{
    (void)state;
    static char out[1 << 16];
    char path[512];

    scratch_path(path, sizeof(path), "missing.txt");
    assert_int_equal(run_lm(out, "--text %s --steps 5", path), 1);
    assert_non_null(strstr(out, "cannot open"));
    assert_non_null(strstr(out, path));

    scratch_path(path, sizeof(path), "empty.txt");
    write_bytes(path, "", 0, 0);
    assert_int_equal(run_lm(out, "--text %s --steps 5", path), 2);
    assert_non_null(strstr(out, "is empty"));

    scratch_path(path, sizeof(path), "blank.txt");
    write_bytes(path, "\n\n  \n", 5, 0);
    assert_int_equal(run_lm(out, "--text %s --steps 5", path), 2);
    assert_non_null(strstr(out, "empty"));

    scratch_path(path, sizeof(path), "short.txt.gz");
    write_bytes(path, "far too short for a context of 128 bytes\n", 41, 1);
    assert_int_equal(run_lm(out, "--text %s --steps 5", path), 2);
    assert_non_null(strstr(out, "too short for a context of 128"));

    assert_int_equal(run_lm(out, "--heads 3"), 2);
    assert_non_null(strstr(out, "--heads 3 must divide --dim 128"));
    assert_int_equal(run_lm(out, "--minutes 0"), 2);
    assert_non_null(strstr(out, "give --steps"));

    scratch_path(path, sizeof(path), "not_a_checkpoint.srp");
    write_bytes(path, "hello, not a checkpoint", 23, 0);
    assert_int_equal(run_lm(out, "--generate %s --sample 5", path), 1);
    assert_non_null(strstr(out, path));
    assert_int_equal(run_lm(out, "--generate %s", path), 2);
    assert_non_null(strstr(out, "--generate needs --sample"));
}

/* ---- the model in safetensors files (lm_safetensors.h; the trainer's
 * flags: test_char_lm_interop.c) ---- */

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
    assert_ok(lm_forward(m, tokens, 3, T, SRP_EVAL, &logits));
    memcpy(out, logits, sizeof(float) * 3 * T * LM_VOCAB);
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
    uint32_t tokens[3 * 8];
    some_tokens(tokens, 3 * 8, 5);
    static float la[3 * 8 * LM_VOCAB], lb[3 * 8 * LM_VOCAB];
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        lm_config c = small_config(variants[v].arch, variants[v].tied, variants[v].positions);
        c.qkv_sigma = variants[v].qkv;
        c.seed = 1;
        lm_model *a, *b;
        assert_ok(lm_create(&a, &c));
        c.seed = 2;
        assert_ok(lm_create(&b, &c));
        const float *logits;
        assert_ok(lm_forward(a, tokens, 3, 8, SRP_TRAIN, &logits)); /* u, sigma move */
        ex_error err = {""};
        assert_int_equal(lm_export(a, EX_OFFICIAL_EXPORT, path, "live", &err), EX_OK);
        srp_safetensors *f = NULL;
        assert_ok(srp_safetensors_open(&f, path));
        if (srp_safetensors_count(f) != variants[v].tensors)
            print_error("variant %zu: %zu tensors\n", v, srp_safetensors_count(f));
        assert_int_equal(srp_safetensors_count(f), variants[v].tensors);
        assert_string_equal(srp_safetensors_metadata(f, "weights"), "live");
        srp_safetensors_close(f);
        eval_logits(b, tokens, lb); /* before: other weights */
        assert_int_equal(lm_import(b, path, &err), EX_OK);
        for (size_t i = 0; i < lm_linears(a)->count; i++) { /* a's sigma: its training one */
            srp_linear *x = lm_linears(a)->linears[i], *y = lm_linears(b)->linears[i];
            if (srp_linear_reparam(x) != SRP_REPARAM_SIGMA)
                continue;
            assert_true(srp_linear_sigma(x) == srp_linear_sigma(y));
            assert_true(*srp_linear_gamma(x) == *srp_linear_gamma(y));
            assert_memory_equal(srp_linear_u(x), srp_linear_u(y),
                                sizeof(float) * srp_linear_in_features(x));
        }
        eval_logits(a, tokens, la);
        assert_memory_not_equal(la, lb, sizeof(la));
        eval_logits(b, tokens, lb);
        assert_memory_equal(la, lb, sizeof(la));
        lm_destroy(a);
        lm_destroy(b);
    }
}

/* The trainer's default kind of model, small, and a scratch path. */
static lm_model *default_model(char *path, size_t cap, const char *file)
{
    scratch_path(path, cap, file);
    lm_config c = small_config(LM_ARCH_SIGMA, 0, LM_POS_LEARNED);
    lm_model *m;
    assert_ok(lm_create(&m, &c));
    return m;
}

/* The default model's names and shapes, as PyTorch's modules hold them. */
static void test_names_and_shapes(void **state)
{
    (void)state;
    char path[600];
    lm_model *m = default_model(path, sizeof(path), "names.safetensors");
    ex_error err = {""};
    assert_int_equal(lm_export(m, EX_OFFICIAL_EXPORT, path, "live", &err), EX_OK);
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
    lm_model *m = default_model(path, sizeof(path), "folded.safetensors");
    uint32_t tokens[3 * 8];
    some_tokens(tokens, 3 * 8, 6);
    const float *logits;
    assert_ok(lm_forward(m, tokens, 3, 8, SRP_TRAIN, &logits));
    const ex_linear_names *lin = lm_linears(m);
    for (size_t i = 0; i < lin->count; i++) /* gamma / sigma far from 1 */
        *srp_linear_gamma(lin->linears[i]) *= 0.5f + 0.25f * (float)i;
    ex_error err = {""};
    assert_int_equal(lm_export(m, EX_OFFICIAL_FOLDED, path, "average", &err), EX_OK);
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
    lm_config c = small_config(LM_ARCH_SIGMA, 0, LM_POS_LEARNED);
    lm_model *m, *x;
    assert_ok(lm_create(&m, &c));
    ex_error err = {""};
    assert_int_equal(lm_export(m, EX_OFFICIAL_EXPORT, path, "live", &err), EX_OK);
    size_t bytes, after;
    float *before = model_state(m, &bytes);

    /* other models: the file of each into m says (in), and m's file into
     * each (out, when a name differs); in_not must not be said */
    static const struct {
        lm_arch arch;
        size_t depth, dim, heads;
        int tied;
        const char *in[2], *in_not, *out;
    } others[] = {
        /* pre-LN: LayerNorms m lacks; plain linears: no sigma, u */
        {LM_ARCH_PRELN, 2, 8, 2, 0,
         {"missing: blocks.0.attn.qkv.sigma", "unknown: blocks.0.ln1.weight"}, NULL,
         "missing: blocks.0.ln1.weight"},
        {LM_ARCH_SIGMA, 3, 8, 2, 0, {"unknown: blocks.2.attn.qkv.weight", NULL}, "missing",
         "missing: blocks.2.attn.qkv.weight"},
        {LM_ARCH_SIGMA, 2, 8, 2, 1, {"missing: lm_head.weight", NULL}, "unknown", NULL},
        /* the same names, another width */
        {LM_ARCH_SIGMA, 2, 16, 4, 0, {"shape or dtype", NULL}, NULL, NULL},
    };
    for (size_t k = 0; k < sizeof(others) / sizeof(others[0]); k++) {
        c.arch = others[k].arch;
        c.depth = others[k].depth;
        c.dim = others[k].dim;
        c.heads = others[k].heads;
        c.tied_head = others[k].tied;
        assert_ok(lm_create(&x, &c));
        assert_int_equal(lm_export(x, EX_OFFICIAL_EXPORT, other, "live", &err), EX_OK);
        assert_int_equal(lm_import(m, other, &err), EX_FAILED);
        for (size_t i = 0; i < 2 && others[k].in[i]; i++)
            assert_non_null(strstr(err.message, others[k].in[i]));
        if (others[k].in_not)
            assert_null(strstr(err.message, others[k].in_not));
        if (others[k].out) {
            assert_int_equal(lm_import(x, path, &err), EX_FAILED);
            assert_non_null(strstr(err.message, others[k].out));
        }
        lm_destroy(x);
    }
    /* a spectral norm that is no sigma; a file that is not there */
    rewrite_with(path, bad, "blocks.1.mlp.fc1.spectral_normed_weight.spectral_norm", -1.0f);
    assert_int_equal(lm_import(m, bad, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "blocks.1.mlp.fc1.spectral_normed_weight.spectral_norm"));
    rewrite_with(path, bad, "blocks.0.attn.proj.spectral_normed_weight.spectral_norm", NAN);
    assert_int_equal(lm_import(m, bad, &err), EX_FAILED);
    scratch_path(other, sizeof(other), "no-such.safetensors");
    assert_int_equal(lm_import(m, other, &err), EX_FAILED);
    assert_non_null(strstr(err.message, other));

    float *now = model_state(m, &after);
    assert_int_equal(after, bytes);
    assert_memory_equal(now, before, bytes);
    free(now);
    /* and the file the model wrote still loads */
    assert_int_equal(lm_import(m, path, &err), EX_OK);
    free(before);
    lm_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_causal_no_leak),
        cmocka_unit_test(test_decode_matches_forward),
        cmocka_unit_test(test_backward_matches_differences),
        cmocka_unit_test(test_text_split),
        cmocka_unit_test(test_text_drops_repeated_documents),
        cmocka_unit_test(test_baselines),
        cmocka_unit_test(test_overfits_a_tiny_text),
        cmocka_unit_test(test_checkpoint_holds_its_model_and_collapse_schema),
        cmocka_unit_test(test_resume_is_bit_exact_and_samples),
        cmocka_unit_test(test_budget_resume_makes_the_same_plans),
        cmocka_unit_test(test_final_evaluation_scores_every_byte),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_round_trip_is_bit_exact),
        cmocka_unit_test(test_names_and_shapes),
        cmocka_unit_test(test_folded_weights),
        cmocka_unit_test(test_mismatched_files_are_refused),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
