/* The translation example: its model (gradients against central
 * differences in every architecture, padding and causality, no allocation
 * in the training step or the cached decoding) and mt-train
 * run as a user runs it on a catalog written here (learning, exact
 * resume, the translations and their chrF2, errors). The program's path
 * comes from CMake (MT_TRAIN_EXE). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "corpus.h"
#include "mo_writer.h"
#include "mt_model.h"
#include "reference_model.h"
#include "testutil.h"
#include "trainer_harness.h"
#include "translate.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

#define run_mt(out, ...) run_programf(MT_TRAIN_EXE, out, sizeof(out), __VA_ARGS__)
/* The trainer tests' model and recipe (after --locale-dir DIR). */
#define SMALL_MT                                                                                   \
    "--dim 16 --heads 2 --mlp-dim 32 --enc-layers 2 --dec-layers 1 --max-bytes 24 --batch 8 "      \
    "--warmup 5 --lr 0.01 --eval-pairs 0 --log-every 5 --chrf none "

/* A tiny model: sources of up to 6 bytes, targets of up to 5 (6 decoder
 * positions with BOS), 2 + 2 blocks of 2 heads, dim 8, MLP 12. */
static mt_config tiny_config(mt_arch arch)
{
    mt_config c = mt_config_default();
    c.max_src = 6;
    c.max_tgt = 5;
    c.dim = 8;
    c.heads = 2;
    c.mlp_dim = 12;
    c.enc_layers = 2;
    c.dec_layers = 2;
    c.max_batch = 2;
    c.arch = arch;
    c.init_gain = 5.0f; /* weights of 0.1: attention far from uniform */
    c.embed_std = 1.0f;
    c.seed = 7;
    return c;
}

/* A batch of 2: sources of 6 and 3 bytes, targets of 6 and 4 positions. */
#define B 2
#define S 6
#define T 6
static const size_t k_src_len[B] = {6, 3}, k_tgt_len[B] = {6, 4};

typedef struct {
    mt_model *m;
    const uint32_t *src, *tgt;
    const int *labels; /* [B][T]: -1 at the padding */
    float smoothing;
} mt_problem;

/* The label-smoothed cross-entropy over the scored positions, as mt-train
 * takes it: logits of the unpadded positions packed, their mean. */
static double mt_loss_and_grad(const mt_problem *P, float *dlogits)
{
    const float *logits;
    assert_ok(mt_encode(P->m, P->src, k_src_len, B, S, SRP_EVAL));
    assert_ok(mt_decode(P->m, P->tgt, k_tgt_len, T, SRP_EVAL, &logits));
    float packed[B * T * MT_VOCAB], dpacked[B * T * MT_VOCAB];
    int labels[B * T];
    size_t n = 0;
    for (size_t i = 0; i < B * T; i++)
        if (P->labels[i] >= 0) {
            memcpy(packed + n * MT_VOCAB, logits + i * MT_VOCAB, sizeof(float) * MT_VOCAB);
            labels[n++] = P->labels[i];
        }
    float loss;
    assert_ok(srp_cross_entropy_forward(packed, labels, n, MT_VOCAB, P->smoothing, &loss));
    if (dlogits) {
        assert_ok(srp_cross_entropy_backward(packed, labels, n, MT_VOCAB, P->smoothing, dpacked));
        memset(dlogits, 0, sizeof(float) * B * T * MT_VOCAB);
        n = 0;
        for (size_t i = 0; i < B * T; i++)
            if (P->labels[i] >= 0)
                memcpy(dlogits + i * MT_VOCAB, dpacked + MT_VOCAB * n++, sizeof(float) * MT_VOCAB);
    }
    return loss;
}

static double mt_loss(void *ctx) { return mt_loss_and_grad(ctx, NULL); }

/* Random bytes from a small alphabet (so that tokens repeat and the
 * embeddings' scatter-adds sum rows), BOS first in each target, the
 * labels the next tokens then EOS, -1 at the padding. */
static void tiny_batch(srp_rng *r, uint32_t *src, uint32_t *tgt, int *labels)
{
    for (size_t b = 0; b < B; b++) {
        for (size_t i = 0; i < S; i++)
            src[b * S + i] = 'a' + (uint32_t)srp_rng_below(r, 4);
        tgt[b * T] = MT_BOS;
        for (size_t i = 1; i < T; i++)
            tgt[b * T + i] = 'a' + (uint32_t)srp_rng_below(r, 4);
        for (size_t i = 0; i < T; i++)
            labels[b * T + i] = i + 1 < k_tgt_len[b]    ? (int)tgt[b * T + i + 1]
                                : i + 1 == k_tgt_len[b] ? MT_EOS
                                                        : -1;
    }
}

/* Every parameter's gradient of the model c (both embeddings and position
 * tables, every linear of the encoder, the decoder's self- and
 * cross-attentions, the head, the LayerNorms) against central differences
 * of the whole model's loss, with padding on both sides. */
static void backward_matches_differences(const mt_config *cfg, uint64_t seed)
{
    const mt_config c = *cfg;
    mt_model *m;
    assert_ok(mt_create(&m, &c));
    srp_param_list *plist = NULL;
    assert_ok(srp_param_list_create(&plist));
    assert_ok(mt_model_params(m, plist));
    const size_t count = srp_param_list_count(plist);
    srp_param *params = srp_param_list_entries(plist);
    srp_rng r = seeded_rng(seed);
    uint32_t src[B * S], tgt[B * T];
    int labels[B * T];
    tiny_batch(&r, src, tgt, labels);
    randomize_params(plist, &r); /* non-trivial values everywhere */
    mt_problem P = {m, src, tgt, labels, 0.1f};
    float *dlogits = malloc(sizeof(float) * B * T * MT_VOCAB);
    assert_non_null(dlogits);
    mt_loss_and_grad(&P, dlogits);
    assert_ok(mt_backward(m, dlogits));
    size_t checked = 0, cross = 0;
    for (size_t i = 0; i < count; i++) {
        const int table = strstr(params[i].name, ".wte") || strstr(params[i].name, ".wpe");
        size_t nonzero = 0;
        for (int s = 0; s < (table ? 10 : 4); s++) {
            size_t j = (size_t)srp_rng_below(&r, params[i].size);
            if (strstr(params[i].name, ".wte")) /* rows of the tokens in use */
                j = ('a' + (size_t)srp_rng_below(&r, 4)) * c.dim + j % c.dim;
            if (strstr(params[i].name, ".wpe")) /* positions every batch row uses */
                j = (size_t)srp_rng_below(&r, 3) * c.dim + j % c.dim;
            const double fd = ref_central_difference_f(mt_loss, &P, params[i].data + j, 1e-2f);
            const double an = params[i].grad[j];
            if (!(fabs(fd - an) <= 0.03 * fabs(fd) + 3e-4)) {
                print_error("%s: %s[%zu]: backward %.6g, differences %.6g\n", mt_arch_name(c.arch),
                            params[i].name, j, an, fd);
                fail();
            }
            nonzero += an != 0.0;
            checked++;
        }
        cross += strstr(params[i].name, "cross_attn") && nonzero > 0;
        /* every tensor reaches the loss (the encoder through the
         * cross-attention): a gradient of 0 everywhere checks nothing
         * (a table's rows may be a token that only pads) */
        if (nonzero == 0 && !table) {
            print_error("%s: %s: no gradient at the entries checked\n", mt_arch_name(c.arch),
                        params[i].name);
            fail();
        }
    }
    assert_true(cross >= 4);
    assert_true(checked > 100);
    free(dlogits);
    srp_param_list_destroy(plist);
    mt_destroy(m);
}

/* ... in every architecture. */
static void test_backward_matches_differences(void **state)
{
    (void)state;
    for (int arch = 0; arch < MT_ARCH_COUNT; arch++) {
        const mt_config c = tiny_config((mt_arch)arch);
        backward_matches_differences(&c, 30 + (uint64_t)arch);
    }
}

/* Tied embeddings (mt_tie): one table, listed once, whose gradient is the
 * sum of the encoder's and the decoder's uses (and the head's with
 * MT_TIE_ALL: its rows 'a'..'d' are checked, every one of which each side
 * reads), against central differences in every architecture. */
static void test_tied_backward_matches_differences(void **state)
{
    (void)state;
    for (int tie = MT_TIE_ENC_DEC; tie < MT_TIE_COUNT; tie++)
        for (int arch = 0; arch < MT_ARCH_COUNT; arch++) {
            mt_config c = tiny_config((mt_arch)arch);
            c.tie = (mt_tie)tie;
            mt_model *m;
            assert_ok(mt_create(&m, &c));
            srp_param_list *plist = NULL;
            assert_ok(srp_param_list_create(&plist));
            assert_ok(mt_model_params(m, plist));
            size_t tables = 0, heads = 0;
            for (size_t i = 0; i < srp_param_list_count(plist); i++) {
                const char *name = srp_param_list_entries(plist)[i].name;
                tables += strstr(name, ".wte") != NULL;
                heads += strncmp(name, "head", 4) == 0;
                if (strstr(name, ".wte"))
                    assert_string_equal(name, "shared.wte");
            }
            assert_int_equal(tables, 1);
            assert_int_equal(heads, tie == MT_TIE_ALL ? 0 : 2 + (arch <= MT_ARCH_SIGMA));
            srp_param_list_destroy(plist);
            mt_destroy(m);
            backward_matches_differences(&c, 60 + (uint64_t)(4 * tie + arch));
        }
}

/* Bytes in the padding (of the source, of the target) change no logit of
 * an unpadded position, bit for bit; a target token changes no logit
 * before it (causal); a source byte changes the logits of every target
 * position of its own sequence and of no other. */
/* Each decoder block's cross-attention has weights of its own from the
 * start, as each block's self-attention has. */
static void test_decoder_blocks_start_apart(void **state)
{
    (void)state;
    const mt_config c = tiny_config(MT_ARCH_SIGMA_POSTLN);
    mt_model *m;
    assert_ok(mt_create(&m, &c));
    const ex_linear_names *t = mt_linears(m);
    srp_linear *proj[2] = {NULL, NULL};
    for (size_t i = 0; i < t->count; i++)
        for (int l = 0; l < 2; l++) {
            char name[64];
            snprintf(name, sizeof(name), "decoder.blocks.%d.cross_attn.proj", l);
            if (strcmp(t->names[i], name) == 0)
                proj[l] = t->linears[i];
        }
    assert_non_null(proj[0]);
    assert_non_null(proj[1]);
    assert_memory_not_equal(srp_linear_weight(proj[0]), srp_linear_weight(proj[1]),
                            sizeof(float) * c.dim * c.dim);
    mt_destroy(m);
}

static void test_padding_and_causality(void **state)
{
    (void)state;
    for (int arch = 0; arch < MT_ARCH_COUNT; arch++) {
        mt_config c = tiny_config((mt_arch)arch);
        mt_model *m;
        assert_ok(mt_create(&m, &c));
        srp_rng r = seeded_rng(40 + (uint64_t)arch);
        uint32_t src[B * S], tgt[B * T];
        int labels[B * T];
        tiny_batch(&r, src, tgt, labels);
        static float before[B * T * MT_VOCAB];
        const float *logits;
        assert_ok(mt_encode(m, src, k_src_len, B, S, SRP_EVAL));
        assert_ok(mt_decode(m, tgt, k_tgt_len, T, SRP_EVAL, &logits));
        memcpy(before, logits, sizeof(before));
        const size_t row1 = T * MT_VOCAB, kept1 = k_tgt_len[1] * MT_VOCAB;
        /* the padding: source 1 after 3 bytes, target 1 after 4 positions */
        src[S + 4] = 'z';
        tgt[T + 5] = 'z';
        assert_ok(mt_encode(m, src, k_src_len, B, S, SRP_EVAL));
        assert_ok(mt_decode(m, tgt, k_tgt_len, T, SRP_EVAL, &logits));
        assert_memory_equal(logits, before, sizeof(float) * row1);
        assert_memory_equal(logits + row1, before + row1, sizeof(float) * kept1);
        /* causality: target 0's token 3 changes positions 3.. only */
        tgt[3] = 'y';
        assert_ok(mt_decode(m, tgt, k_tgt_len, T, SRP_EVAL, &logits));
        assert_memory_equal(logits, before, sizeof(float) * 3 * MT_VOCAB);
        assert_true(
            memcmp(logits + 3 * MT_VOCAB, before + 3 * MT_VOCAB, sizeof(float) * MT_VOCAB) != 0);
        assert_memory_equal(logits + row1, before + row1, sizeof(float) * kept1);
        memcpy(before, logits, sizeof(before));
        /* a real source byte of sequence 1 reaches its every position */
        src[S + 1] = 'y';
        assert_ok(mt_encode(m, src, k_src_len, B, S, SRP_EVAL));
        assert_ok(mt_decode(m, tgt, k_tgt_len, T, SRP_EVAL, &logits));
        assert_memory_equal(logits, before, sizeof(float) * row1);
        for (size_t i = 0; i < k_tgt_len[1]; i++)
            assert_true(memcmp(logits + row1 + i * MT_VOCAB, before + row1 + i * MT_VOCAB,
                               sizeof(float) * MT_VOCAB) != 0);
        /* bad calls */
        const size_t zero[B] = {0, 1}, long_len[B] = {7, 1};
        assert_int_equal(mt_encode(m, src, zero, B, S, SRP_EVAL), SRP_ERR_INVALID_ARG);
        assert_int_equal(mt_encode(m, src, long_len, B, S, SRP_EVAL), SRP_ERR_INVALID_ARG);
        assert_int_equal(mt_encode(m, src, k_src_len, 3, S, SRP_EVAL), SRP_ERR_INVALID_ARG);
        /* refused calls change nothing: the last encoding still decodes */
        assert_ok(mt_decode(m, tgt, k_tgt_len, T, SRP_EVAL, &logits));
        assert_memory_equal(logits, before, sizeof(float) * row1);
        assert_int_equal(mt_decode(m, tgt, zero, T, SRP_EVAL, NULL), SRP_ERR_INVALID_ARG);
        assert_int_equal(mt_decode(m, tgt, NULL, T + 1, SRP_EVAL, NULL), SRP_ERR_INVALID_ARG);
        mt_destroy(m);
    }
}

/* ---- decoding ---- */

/* The cached decoder's logits, position by position, against mt_decode in
 * eval over the same prefix (1e-5 relative), every architecture untied
 * and tied, two sources of different lengths at once. */
static void test_cached_decoding_matches_recomputation(void **state)
{
    (void)state;
    for (int k = 0; k < MT_ARCH_COUNT * MT_TIE_COUNT; k++) { /* every arch, untied and tied */
        const int arch = k % MT_ARCH_COUNT;
        mt_config c = tiny_config((mt_arch)arch);
        c.tie = (mt_tie)(k / MT_ARCH_COUNT);
        mt_model *m;
        assert_ok(mt_create(&m, &c));
        srp_rng r = seeded_rng(50 + (uint64_t)k);
        uint32_t src[B * S], tgt[B * T], prefix[B * T], step[B];
        int labels[B * T];
        tiny_batch(&r, src, tgt, labels);
        mt_decoder *d;
        assert_ok(mt_decoder_create(&d, m, B));
        assert_int_equal(mt_decoder_start(d), SRP_ERR_ORDER); /* nothing encoded yet */
        assert_ok(mt_encode(m, src, k_src_len, B, S, SRP_EVAL));
        assert_ok(mt_decoder_start(d));
        float want[B * MT_VOCAB];
        for (size_t t = 0; t < T; t++) {
            const float *got, *full;
            for (size_t b = 0; b < B; b++)
                step[b] = tgt[b * T + t];
            assert_ok(mt_decoder_step(d, step, B, &got));
            assert_int_equal(mt_decoder_length(d), t + 1);
            memcpy(want, got, sizeof(want));
            for (size_t b = 0; b < B; b++)
                memcpy(prefix + b * (t + 1), tgt + b * T, sizeof(uint32_t) * (t + 1));
            assert_ok(mt_decode(m, prefix, NULL, t + 1, SRP_EVAL, &full));
            for (size_t b = 0; b < B; b++) {
                const double rel = rel_max_diff(want + b * MT_VOCAB,
                                                full + (b * (t + 1) + t) * MT_VOCAB, MT_VOCAB);
                if (rel > 1e-5)
                    fail_msg("%s, tie %d: position %zu, sequence %zu: cached logits vs "
                             "mt_decode %.3g relative",
                             mt_arch_name((mt_arch)arch), (int)c.tie, t, b, rel);
            }
        }
        assert_int_equal(mt_decoder_step(d, step, B, NULL), SRP_ERR_SHAPE); /* full */
        mt_decoder_destroy(d);
        mt_destroy(m);
    }
}

#ifdef SRP_COUNT_ALLOCS
/* mt-train's step (encode, decode and backward in training, then an eval
 * encode and decode) and translation's cached decoding (start, step,
 * select) allocate nothing after the first call, in every architecture
 * and tie. */
static void test_step_and_decoding_allocate_nothing(void **state)
{
    (void)state;
    static const size_t rows[B] = {1, 1};
    for (int case_ = 0; case_ < MT_ARCH_COUNT * MT_TIE_COUNT; case_++) {
        mt_config c = tiny_config((mt_arch)(case_ / MT_TIE_COUNT));
        c.tie = (mt_tie)(case_ % MT_TIE_COUNT);
        mt_model *m;
        assert_ok(mt_create(&m, &c));
        mt_decoder *d;
        assert_ok(mt_decoder_create(&d, m, B));
        srp_rng r = seeded_rng(70 + (uint64_t)case_);
        uint32_t src[B * S], tgt[B * T];
        int labels[B * T];
        tiny_batch(&r, src, tgt, labels);
        static float dlogits[B * T * MT_VOCAB];
        fill_normal_f(&r, dlogits, B * T * MT_VOCAB, 1.0);
        const float *logits;
        for (int round = 0; round < 2; round++) { /* round 0 warms up: plans, threads */
            if (round == 1)
                alloc_counter_start();
            assert_ok(mt_encode(m, src, k_src_len, B, S, SRP_TRAIN));
            assert_ok(mt_decode(m, tgt, k_tgt_len, T, SRP_TRAIN, &logits));
            assert_ok(mt_backward(m, dlogits));
            assert_ok(mt_encode(m, src, k_src_len, B, S, SRP_EVAL));
            assert_ok(mt_decode(m, tgt, NULL, T, SRP_EVAL, &logits));
            assert_ok(mt_decoder_start(d));
            for (size_t t = 0; t < T; t++) {
                assert_ok(mt_decoder_step(d, tgt + t, B, &logits));
                assert_ok(mt_decoder_select(d, rows, B));
            }
            if (round == 1)
                assert_int_equal(alloc_counter_stop(NULL), 0);
        }
        mt_decoder_destroy(d);
        mt_destroy(m);
    }
}
#endif

/* A hypothesis of the reference search. */
typedef struct {
    char text[T];
    size_t len;
    double score;
} hypothesis;

static int by_score(const void *a, const void *b)
{
    const double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x > y ? -1 : x < y ? 1 : 0;
}

/* translate.h's search for one source, by full recomputation: every
 * step runs the encoder and the whole decoder again over each live
 * hypothesis (K at most, the model's batch). beam 1 is greedy decoding. */
static void reference_search(mt_model *m, const char *source, size_t K, char *out)
{
    const size_t ls = strlen(source), limit = 2 * ls + 16 < T - 1 ? 2 * ls + 16 : T - 1;
    hypothesis live[4], next[4];
    size_t n_live = 1, finished = 0;
    double best = -INFINITY;
    live[0] = (hypothesis){{0}, 0, 0.0};
    out[0] = '\0';
    uint32_t src[4 * S], tgt[4 * T];
    size_t src_len[4], tgt_len[4];
    static double cand[4 * MT_VOCAB][3]; /* score, parent, token */
    while (n_live > 0 && finished < K) {
        for (size_t j = 0; j < n_live; j++) {
            for (size_t i = 0; i < S; i++)
                src[j * S + i] = i < ls ? (uint8_t)source[i] : 0;
            src_len[j] = ls;
            tgt[j * T] = MT_BOS;
            for (size_t i = 1; i < T; i++)
                tgt[j * T + i] = i - 1 < live[j].len ? (uint8_t)live[j].text[i - 1] : 0;
            tgt_len[j] = live[j].len + 1;
        }
        const float *logits;
        assert_ok(mt_encode(m, src, src_len, n_live, S, SRP_EVAL));
        assert_ok(mt_decode(m, tgt, tgt_len, T, SRP_EVAL, &logits));
        size_t n = 0;
        for (size_t j = 0; j < n_live; j++) {
            if (live[j].len == limit) {
                const double norm = live[j].score / (double)(live[j].len + 1);
                if (finished++ == 0 || norm > best) {
                    best = norm;
                    memcpy(out, live[j].text, live[j].len);
                    out[live[j].len] = '\0';
                }
                continue;
            }
            const float *z = logits + (j * T + live[j].len) * MT_VOCAB;
            double max = -INFINITY, sum = 0.0;
            for (int v = 0; v < MT_VOCAB; v++)
                if (v != MT_BOS)
                    max = fmax(max, z[v]);
            for (int v = 0; v < MT_VOCAB; v++)
                if (v != MT_BOS)
                    sum += exp((double)z[v] - max);
            for (int v = 0; v < MT_VOCAB; v++)
                if (v != MT_BOS) {
                    cand[n][0] = live[j].score + (double)z[v] - max - log(sum);
                    cand[n][1] = (double)j;
                    cand[n++][2] = v;
                }
        }
        qsort(cand, n, sizeof(cand[0]), by_score);
        size_t kept = 0;
        for (size_t k = 0; k < n && kept < K && finished < K; k++) {
            const hypothesis *p = &live[(size_t)cand[k][1]];
            if ((int)cand[k][2] == MT_EOS) {
                const double norm = cand[k][0] / (double)(p->len + 1);
                if (finished++ == 0 || norm > best) {
                    best = norm;
                    memcpy(out, p->text, p->len);
                    out[p->len] = '\0';
                }
                continue;
            }
            next[kept] = *p;
            next[kept].text[p->len] = (char)(int)cand[k][2];
            next[kept].len = p->len + 1;
            next[kept++].score = cand[k][0];
        }
        memcpy(live, next, sizeof(hypothesis) * kept);
        n_live = kept;
    }
    if (finished == 0) /* never: a hypothesis at its limit finishes */
        fail_msg("no hypothesis finished");
}

/* Greedy decoding and beam search on the caches (mt_translate) give what
 * the same searches give by full recomputation, for several sources at
 * once (of different lengths, so that their rows are selected apart), in
 * every architecture. The head's bias for EOS is raised so that
 * hypotheses end at different lengths, some before the limit and some at
 * it, for these initial weights (the last assertion checks it; with much
 * more, the length-normalised score prefers short translations only).
 * Without the caches' row selection the beam search's texts differ
 * (checked once). */
static void test_translate_matches_recomputation(void **state)
{
    (void)state;
    const char *const sources[4] = {"abcdef", "ab", "dcb", "a"};
    unsigned lengths = 0; /* the translations' lengths seen, as bits */
    for (int arch = 0; arch < MT_ARCH_COUNT; arch++) {
        mt_config c = tiny_config((mt_arch)arch);
        c.max_batch = 4;
        mt_model *m;
        assert_ok(mt_create(&m, &c));
        srp_param_list *plist = NULL;
        assert_ok(srp_param_list_create(&plist));
        assert_ok(mt_model_params(m, plist));
        for (size_t i = 0; i < srp_param_list_count(plist); i++) /* EOS a little more likely */
            if (strcmp(srp_param_list_entries(plist)[i].name, "head.bias") == 0)
                srp_param_list_entries(plist)[i].data[MT_EOS] = 0.05f;
        srp_param_list_destroy(plist);
        for (size_t K = 1; K <= 3; K += 2) {
            mt_translator *tr;
            assert_ok(mt_translator_create(&tr, m, 4, K));
            char got[4][T], want[T];
            char *out[4] = {got[0], got[1], got[2], got[3]};
            assert_ok(mt_translate(tr, sources, 4, out));
            for (size_t s = 0; s < 4; s++) {
                reference_search(m, sources[s], K, want);
                lengths |= 1u << strlen(want); /* bytes of 0 end it early: still a length */
                if (strcmp(got[s], want) != 0)
                    fail_msg("%s, beam %zu, source %zu: cached \"%s\", recomputed \"%s\"",
                             mt_arch_name((mt_arch)arch), K, s, got[s], want);
            }
            mt_translator_destroy(tr);
        }
        mt_destroy(m);
    }
    /* hypotheses that end early and late: EOS and the limit both decide */
    assert_true(__builtin_popcount(lengths) >= 2 && lengths >> 3);
}

/* ---- mt-train ---- */

/* A German catalog of 400 messages under the scratch folder's locale/de,
 * in a catalog the manifest names: "open file 17" => "Datei 17 öffnen",
 * and the like. Its locale folder into dir. */
static void write_catalog(char *dir, size_t cap)
{
    static const char *const verbs[][2] = {
        {"open", "öffnen"}, {"close", "schließen"}, {"save", "speichern"}, {"print", "drucken"}};
    static const char *const nouns[][2] = {
        {"file", "Datei"}, {"folder", "Ordner"}, {"window", "Fenster"}, {"page", "Seite"}};
    enum { N = 400 };
    static char text[N][2][48];
    static mo_entry e[N];
    for (int i = 0; i < N; i++) {
        const int v = i % 4, n = (i / 4) % 4, k = i / 16;
        const int le = snprintf(text[i][0], 48, "%s %s %d", verbs[v][0], nouns[n][0], k);
        const int lg = snprintf(text[i][1], 48, "%s %d %s", nouns[n][1], k, verbs[v][1]);
        e[i] = (mo_entry){text[i][0], text[i][1], (size_t)le, (size_t)lg};
    }
    /* (msgfmt sorts the originals; the reader does not need it) */
    static uint8_t buf[64 * 1024];
    const size_t len = mo_write(buf, e, N, 0);
    char path[1024];
    scratch_path(dir, cap, "locale");
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/de", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/de/LC_MESSAGES", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/de/LC_MESSAGES/%s.mo", dir, mt_manifest[0].domain);
    write_bytes(path, buf, len, 0);
}

/* mt-train learns the toy catalog (validation bits per byte far below the
 * uniform 8), logs every watched attention's entropies and bound (2
 * encoder, 1 decoder self-, 1 cross-attention), translates the splits
 * and scores them, and a text after training and from its checkpoint; a
 * run stopped twice and resumed is bit for bit the run through; other
 * options on resume, and a language without catalogs, are refused. */
static void test_trainer_learns_resumes_and_translates(void **state)
{
    (void)state;
    static char out[1 << 16];
    char locale[512], common[2048], args[4096];
    write_catalog(locale, sizeof(locale));
    resume_files f;
    resume_files_init(&f, "mt_");
    snprintf(common, sizeof(common),
             "--locale-dir %s " SMALL_MT "--steps 40 --eval-every 20 --bound-every 10", locale);
    assert_int_equal(run_mt(out, "%s --metrics %s --checkpoint %s", common, f.m_full, f.c_full), 0);
    assert_non_null(strstr(out, "final validation:"));
    const double bpb = last_value(f.m_full, "eval", "bpb");
    assert_true(bpb < 4.0); /* uniform over 258 tokens: 8.01 */
    assert_bound_terms_logged(f.m_full, 2 + 2 * 1, 2);
    const int stops[2] = {13, 27};
    snprintf(args, sizeof(args), "'%s' --threads 1 %s", MT_TRAIN_EXE, common);
    assert_resume_is_bit_exact(args, stops, &f);

    assert_int_equal(run_mt(out, "%s --lr 0.5 --resume %s", common, f.c_part), 2);
    assert_non_null(strstr(out, "other training options"));
    assert_int_equal(run_mt(out, "%s --lang xx", common), 2);
    assert_non_null(strstr(out, "de")); /* the languages there are */

    /* translations: chrF2 of both splits next to the copy baseline's;
     * --translate after training and from the checkpoint alone agree */
    assert_int_equal(run_mt(out,
                            "%s --chrf both --show 2 --steps 60 --checkpoint %s --translate "
                            "'open page 9'",
                            common, f.c_full),
                     0);
    assert_non_null(strstr(out, "validation chrF2: "));
    assert_non_null(strstr(out, "test chrF2: "));
    assert_non_null(strstr(out, "copy baseline"));
    assert_non_null(strstr(out, "    => "));
    const char *last = out + strlen(out) - 1; /* the translation: the last line */
    while (last > out && last[-1] != '\n')
        last--;
    static char again[1 << 12];
    assert_int_equal(run_mt(again, "--init %s --translate 'open page 9'", f.c_full), 0);
    assert_string_equal(again, last);
    assert_int_equal(run_mt(again, "--init %s", f.c_full), 2);
    assert_non_null(strstr(again, "--init needs --translate"));

    /* the same from a checkpoint of a tied model (the tie is recorded),
     * trained with the regularizers: --init skips their mask states */
    assert_int_equal(run_mt(out,
                            "%s --tie-embeddings all --attn-dropout 0.1 --mlp-dropout 0.1 "
                            "--steps 20 --checkpoint %s --translate 'open page 9'",
                            common, f.c_part),
                     0);
    last = out + strlen(out) - 1;
    while (last > out && last[-1] != '\n')
        last--;
    assert_int_equal(run_mt(again, "--init %s --translate 'open page 9'", f.c_part), 0);
    assert_string_equal(again, last);
}

/* mt-train's --minutes on the test clock (EX_TEST_CLOCK: the same on every
 * machine), the schedule examples/common/budget.h shares with the LM: it
 * plans at step 25 and at each fraction of the budget, ends its schedule
 * within the budget and says how much it used; stopped before its first
 * plan and between two, and resumed, it makes the same plans and ends in
 * the same state, bit for bit. */
static void test_budget_resume_makes_the_same_plans(void **state)
{
    (void)state;
    char locale[512], common[4096];
    write_catalog(locale, sizeof(locale));
    resume_files f;
    resume_files_init(&f, "budget_");
    /* a step of 0.1 s growing by 0.1 ms a step: about 115 steps in 12 s */
    snprintf(common, sizeof(common),
             "EX_TEST_CLOCK=0.1,0.0001 '%s' --threads 1 --locale-dir %s " SMALL_MT
             "--eval-every 50 --minutes 0.2 --checkpoint-every 20",
             MT_TRAIN_EXE, locale);
    const int stops[2] = {13, 60};
    assert_budget_run_resumes(common, "0.2", stops, &f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_matches_differences),
        cmocka_unit_test(test_tied_backward_matches_differences),
        cmocka_unit_test(test_decoder_blocks_start_apart),
        cmocka_unit_test(test_padding_and_causality),
        cmocka_unit_test(test_cached_decoding_matches_recomputation),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_step_and_decoding_allocate_nothing),
#endif
        cmocka_unit_test(test_translate_matches_recomputation),
        cmocka_unit_test(test_trainer_learns_resumes_and_translates),
        cmocka_unit_test(test_budget_resume_makes_the_same_plans),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
