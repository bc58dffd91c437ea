/* mt-train: trains a byte-level encoder-decoder (mt_model.h) to translate
 * the English messages of Debian's gettext catalogs (corpus.h) into German
 * (--lang), with sigmaReparam or a LayerNorm baseline, watching every
 * attention head's entropy (the encoder's, the decoder's self- and
 * cross-attentions); checkpoints and resumes exactly; prints validation
 * bits per byte, then translates the validation and test splits (greedy
 * or --beam, on the decoder's caches: translate.h) and prints their chrF2
 * next to the copy baseline's. `mt-train --help`.
 *
 * The skeleton (common/trainer.h) runs the jobs; what is the translator's
 * own is here: the batches of pairs padded by length, the loss over the
 * target bytes and EOS, the evaluations, the decoding. */
#define _POSIX_C_SOURCE 200809L /* getline, strdup */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam.h>

#include "chrf.h"
#include "common/budget.h"
#include "common/tensors.h"
#include "common/trainer.h"
#include "corpus.h"
#include "mt_model.h"
#include "mt_options.h"
#include "translate.h"

#define LN2 0.69314718055994530942 /* nats per bit */
#define CONFIG_FIELDS 11
/* Batches are padded to a multiple of MT_BUCKET positions (the length
 * caps aside): few shapes, so the attentions keep their plans for them
 * (attention.h), and little padding, since a batch is drawn from pairs of
 * one bucket. */
#define MT_BUCKET 32
#define MT_MAX_BUCKETS 64

typedef struct {
    ex_trainer base;
    mt_options opt;
    mt_corpus corpus;
    double copy_chrf[MT_SPLITS]; /* the copy baseline's chrF2 of each split */
    mt_model *model;
    mt_translator *translator;
    ex_schedule schedule;           /* --steps or --minutes; its plans in the checkpoint */
    uint64_t config[CONFIG_FIELDS]; /* the model's shape, in every checkpoint */
    /* the run's own state, in the checkpoint */
    float best_val_bpb;
    int finished; /* the training ran to its end (not --stop-after-steps) */
    /* per-step buffers, for local_batch pairs */
    uint32_t *src, *tgt;       /* [batch][max_src], [batch][max_tgt + 1] */
    size_t *src_len, *tgt_len; /* [batch] */
    int *labels;               /* [batch (max_tgt + 1)]: the scored positions' next tokens */
    float *scored, *dscored;   /* [batch (max_tgt + 1)][MT_VOCAB]: their logits, gradients */
    float *dlogits;            /* [batch][max_tgt + 1][MT_VOCAB] */
    size_t buckets;            /* of the training pairs, by length */
    size_t *bucket_pairs[MT_MAX_BUCKETS], bucket_count[MT_MAX_BUCKETS];
    size_t *val_order;          /* the validation pairs by bucket, then index */
    size_t eval_n, eval_stride; /* the evaluation's pairs: every stride-th of val_order */
} mt_trainer;

static const ex_plot_spec k_plot = {.score_key = "bpb",
                                    .eval_key = "bpb",
                                    .score_title = "bits per target byte",
                                    .score_label = "train (batch)",
                                    .eval_label = "validation"};

static mt_trainer *mt(ex_trainer *t) { return (mt_trainer *)t; }

/* ---- batches ---- */

/* Row r of a batch of n pairs, padded to S source and T target positions:
 * the source bytes; the target input BOS y_0 .. y_{n-1}, whose labels are
 * y_0 .. y_{n-1} EOS. */
static void put_pair(mt_trainer *t, size_t r, const mt_pair *p, size_t S, size_t T)
{
    const size_t ls = strlen(p->english), lt = strlen(p->translation);
    for (size_t i = 0; i < S; i++)
        t->src[r * S + i] = i < ls ? (uint8_t)p->english[i] : 0;
    t->src_len[r] = ls ? ls : 1; /* an empty message reads as one byte 0 */
    t->tgt[r * T] = MT_BOS;
    for (size_t i = 1; i < T; i++)
        t->tgt[r * T + i] = i - 1 < lt ? (uint8_t)p->translation[i - 1] : 0;
    t->tgt_len[r] = lt + 1;
}

/* The buckets: k < buckets holds the pairs whose longer side (the
 * target with its BOS) has up to (k + 1) MT_BUCKET positions; the last
 * one the rest, up to the model's caps. */
static size_t bucket_count(const mt_config *c)
{
    const size_t n = (c->max_tgt + MT_BUCKET - 1) / MT_BUCKET;
    return n < MT_MAX_BUCKETS ? n : MT_MAX_BUCKETS;
}

static size_t bucket_of(const mt_trainer *t, const mt_pair *p)
{
    const size_t ls = strlen(p->english), lt = strlen(p->translation) + 1;
    const size_t k = ((ls > lt ? ls : lt) + MT_BUCKET - 1) / MT_BUCKET - 1;
    return k < t->buckets ? k : t->buckets - 1;
}

/* Bucket k's padded lengths. */
static void bucket_sizes(const mt_trainer *t, size_t k, size_t *S, size_t *T)
{
    const mt_config *c = mt_get_config(t->model);
    const size_t L = (k + 1) * MT_BUCKET;
    const int last = k + 1 == t->buckets;
    *S = !last && L < c->max_src ? L : c->max_src;
    *T = !last && L < c->max_tgt + 1 ? L : c->max_tgt + 1;
}

/* The batch of pairs[0..n), padded to the largest bucket among them: the
 * padded sizes, and each pair's row. */
static void put_batch(mt_trainer *t, const mt_pair *const *pairs, size_t n, size_t *S, size_t *T)
{
    size_t k = 0;
    for (size_t r = 0; r < n; r++)
        k = bucket_of(t, pairs[r]) > k ? bucket_of(t, pairs[r]) : k;
    bucket_sizes(t, k, S, T);
    for (size_t r = 0; r < n; r++)
        put_pair(t, r, pairs[r], *S, *T);
}

/* Forward of the batch in the buffers; the logits of the positions that
 * score a label (each row's first tgt_len) packed into scored, with their
 * labels: *count of them. */
static srp_status forward_scored(mt_trainer *t, size_t n, size_t S, size_t T, int training,
                                 size_t *count)
{
    const float *logits;
    EX_TRY(mt_encode(t->model, t->src, t->src_len, n, S, training));
    EX_TRY(mt_decode(t->model, t->tgt, t->tgt_len, T, training, &logits));
    size_t k = 0;
    for (size_t r = 0; r < n; r++)
        for (size_t i = 0; i < t->tgt_len[r]; i++, k++) {
            memcpy(t->scored + k * MT_VOCAB, logits + (r * T + i) * MT_VOCAB,
                   sizeof(float) * MT_VOCAB);
            t->labels[k] = i + 1 < t->tgt_len[r] ? (int)t->tgt[r * T + i + 1] : MT_EOS;
        }
    *count = k;
    return SRP_OK;
}

/* ---- the schedule (common/budget.h) ---- */

static float lr_at(ex_trainer *base, uint64_t step)
{
    return ex_schedule_lr(&mt(base)->schedule, step);
}

/* Before each step: the --minutes plans and the end. */
static ex_code before_step(ex_trainer *base, int *done, ex_error *err)
{
    (void)err;
    *done = ex_schedule_before_step(&mt(base)->schedule, base);
    return EX_OK;
}

/* ---- evaluation ---- */

/* One batch of the validation cross-entropy: pairs first .. first + n - 1
 * of the evaluation's; sums[0] the nats, sums[1] the target bytes (each
 * pair's bytes and its EOS). */
static srp_status eval_batch(ex_trainer *base, size_t first, size_t n, double *sums)
{
    mt_trainer *t = mt(base);
    const mt_pair *pairs[n];
    for (size_t r = 0; r < n; r++)
        pairs[r] = &t->corpus.pairs[MT_VALIDATION][t->val_order[(first + r) * t->eval_stride]];
    size_t S, T, count;
    put_batch(t, pairs, n, &S, &T);
    EX_TRY(forward_scored(t, n, S, T, SRP_EVAL, &count));
    float loss;
    EX_TRY(srp_cross_entropy_forward(t->scored, t->labels, count, MT_VOCAB, 0.0f, &loss));
    sums[0] += (double)loss * (double)count;
    sums[1] += (double)count;
    return SRP_OK;
}

/* The validation cross-entropy in bits per target byte over `pairs` of
 * the split spread evenly (0: all), written as an "eval" line. */
static ex_code write_eval(mt_trainer *t, size_t pairs, int final, ex_error *err)
{
    const size_t all = t->corpus.count[MT_VALIDATION];
    t->eval_n = pairs == 0 || pairs >= all ? all : pairs;
    t->eval_stride = all / t->eval_n;
    double sums[2] = {0.0, 0.0};
    const ex_code code = ex_trainer_evaluate(&t->base, t->eval_n, eval_batch, sums, 2, err);
    if (code != EX_OK)
        return code;
    const double loss = sums[0] / sums[1], bpb = loss / LN2;
    ex_metrics_begin(&t->base.metrics, "eval");
    ex_metrics_string(&t->base.metrics, "set", "val");
    ex_metrics_number(&t->base.metrics, "step", (double)t->base.run.step);
    ex_metrics_number(&t->base.metrics, "seconds", ex_run_seconds(&t->base.run));
    ex_metrics_number(&t->base.metrics, "loss", loss);
    ex_metrics_number(&t->base.metrics, "bpb", bpb);
    ex_metrics_number(&t->base.metrics, "pairs", (double)t->eval_n);
    ex_metrics_number(&t->base.metrics, "bytes", sums[1]);
    ex_metrics_end(&t->base.metrics);
    ex_progress_break(&t->base.progress);
    printf("%s validation: %.4f bits per target byte (%zu pairs, %.0f bytes with their EOS)\n",
           final ? "final" : "", bpb, t->eval_n, sums[1]);
    if (bpb < t->best_val_bpb)
        t->best_val_bpb = (float)bpb;
    return EX_OK;
}

/* ---- translation ---- */

/* The translator (translate.h: greedy, or --beam), made at its first use. */
static ex_code translator(mt_trainer *t, ex_error *err)
{
    const srp_status st =
        t->translator ? SRP_OK
                      : mt_translator_create(&t->translator, t->model,
                                             mt_get_config(t->model)->max_batch, t->opt.beam);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "creating the translator");
}

/* Pairs ordered by source length (then index): batches of like lengths. */
static const mt_pair *g_sort_pairs;
static int by_source_length(const void *a, const void *b)
{
    const size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const size_t li = strlen(g_sort_pairs[i].english), lj = strlen(g_sort_pairs[j].english);
    return li != lj ? (li < lj ? -1 : 1) : (i < j ? -1 : i > j);
}

/* Translates split s: hyp[i] gets pair i's translation (each
 * max_tgt + 1 bytes), *score its chrF2. */
static ex_code translate_split(mt_trainer *t, mt_split s, char **hyp, double *score, ex_error *err)
{
    const mt_pair *pairs = t->corpus.pairs[s];
    const size_t n = t->corpus.count[s], B = t->base.local_batch;
    ex_code code = translator(t, err);
    if (code != EX_OK)
        return code;
    size_t *order = malloc(sizeof(size_t) * (n ? n : 1));
    if (!order)
        return ex_fail_status(err, SRP_ERR_NOMEM, "translating");
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    g_sort_pairs = pairs;
    qsort(order, n, sizeof(size_t), by_source_length);
    srp_status st = SRP_OK;
    for (size_t first = 0; first < n && st == SRP_OK; first += B) {
        const size_t m = n - first < B ? n - first : B;
        const char *src[m];
        char *out[m];
        for (size_t r = 0; r < m; r++) {
            src[r] = pairs[order[first + r]].english;
            out[r] = hyp[order[first + r]];
        }
        st = mt_translate(t->translator, src, m, out);
    }
    free(order);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "translating");
    mt_chrf_stats stats = {{0}, {0}, {0}};
    for (size_t i = 0; i < n; i++)
        if (mt_chrf_add(&stats, hyp[i], strlen(hyp[i]), pairs[i].translation,
                        strlen(pairs[i].translation)))
            return ex_fail_status(err, SRP_ERR_NOMEM, "scoring");
    *score = mt_chrf_score(&stats);
    return EX_OK;
}

/* --chrf: the splits translated and scored, next to the copy baseline,
 * with --show samples of the test split. */
static ex_code score_splits(mt_trainer *t, ex_error *err)
{
    static const char *const names[MT_SPLITS] = {"train", "validation", "test"};
    const int which = t->opt.chrf;
    const size_t width = mt_get_config(t->model)->max_tgt + 1;
    ex_code code = EX_OK;
    for (int s = MT_VALIDATION; s <= MT_TEST && code == EX_OK; s++) {
        const int wanted = which == MT_CHRF_BOTH || (which == MT_CHRF_VAL && s == MT_VALIDATION) ||
                           (which == MT_CHRF_TEST && s == MT_TEST);
        if (!wanted)
            continue;
        const size_t n = t->corpus.count[s];
        char *block = malloc(width * (n ? n : 1));
        char **hyp = malloc(sizeof(char *) * (n ? n : 1));
        if (!block || !hyp) {
            free(block);
            free(hyp);
            return ex_fail_status(err, SRP_ERR_NOMEM, "translating");
        }
        for (size_t i = 0; i < n; i++)
            hyp[i] = block + i * width;
        const double start = ex_now();
        double score = 0.0;
        code = translate_split(t, (mt_split)s, hyp, &score, err);
        if (code == EX_OK) {
            char how[32];
            if (t->opt.beam > 1)
                snprintf(how, sizeof(how), "beam %zu", t->opt.beam);
            else
                snprintf(how, sizeof(how), "greedy");
            printf("%s chrF2: %.2f (%s, %zu pairs, %.0f s); copy baseline %.2f\n", names[s], score,
                   how, n, ex_now() - start, t->copy_chrf[s]);
            ex_metrics_begin(&t->base.metrics, "chrf");
            ex_metrics_string(&t->base.metrics, "set", s == MT_TEST ? "test" : "val");
            ex_metrics_number(&t->base.metrics, "step", (double)t->base.run.step);
            ex_metrics_number(&t->base.metrics, "chrf", score);
            ex_metrics_number(&t->base.metrics, "beam", (double)t->opt.beam);
            ex_metrics_number(&t->base.metrics, "copy_chrf", t->copy_chrf[s]);
            ex_metrics_number(&t->base.metrics, "pairs", (double)n);
            ex_metrics_end(&t->base.metrics);
        }
        for (size_t i = 0; code == EX_OK && s == MT_TEST && i < t->opt.show && i < n; i++)
            printf("  %s\n    => %s\n    (reference: %s)\n", t->corpus.pairs[s][i].english, hyp[i],
                   t->corpus.pairs[s][i].translation);
        free(block);
        free(hyp);
    }
    fflush(stdout);
    return code;
}

/* --translate and --translate-file: each text's translation on a line of
 * its own, in batches of the model's. */
static ex_code translate_texts(mt_trainer *t, ex_error *err)
{
    const mt_options *o = &t->opt;
    const mt_config *c = mt_get_config(t->model);
    const size_t B = c->max_batch, width = c->max_tgt + 1;
    char *lines = NULL, *texts[B], *hyp[B];
    size_t cap = 0;
    FILE *f = o->translate_file ? fopen(o->translate_file, "r") : NULL;
    if (o->translate_file && !f)
        return ex_fail(err, EX_FAILED, "cannot open %s", o->translate_file);
    char *block = malloc(width * B);
    ex_code code = block ? translator(t, err) : ex_fail_status(err, SRP_ERR_NOMEM, "translating");
    for (size_t r = 0; r < B && block; r++)
        hyp[r] = block + r * width;
    int given = o->translate != NULL; /* the text of --translate, before the file's */
    while (code == EX_OK) {
        size_t n = 0;
        if (given) {
            texts[n++] = strdup(o->translate);
            given = 0;
        }
        while (f && n < B && getline(&lines, &cap, f) >= 0) {
            lines[strcspn(lines, "\r\n")] = '\0';
            texts[n++] = strdup(lines);
        }
        if (n == 0)
            break;
        int ok = 1;
        for (size_t r = 0; r < n; r++)
            ok &= texts[r] != NULL;
        const srp_status st =
            ok ? mt_translate(t->translator, (const char *const *)texts, n, hyp) : SRP_ERR_NOMEM;
        if (st != SRP_OK)
            code = ex_fail_status(err, st, "translating");
        for (size_t r = 0; r < n; r++) {
            if (code == EX_OK)
                printf("%s\n", hyp[r]);
            free(texts[r]);
        }
    }
    fflush(stdout);
    free(lines);
    free(block);
    if (f)
        fclose(f);
    return code;
}

/* ---- the run's lines ---- */

static void model_config_record(const mt_config *c, uint64_t *rec)
{
    const uint64_t v[CONFIG_FIELDS] = {c->max_src,    c->max_tgt,    c->dim,        c->heads,
                                       c->mlp_dim,    c->enc_layers, c->dec_layers, c->arch,
                                       c->gamma_init, c->qkv_sigma,  c->tie};
    memcpy(rec, v, sizeof(v));
}

/* The model's configuration, saved with every checkpoint and checked on
 * every load. */
static void metadata(ex_trainer *t, ex_metadata *meta)
{
    const mt_config *c = mt_get_config(mt(t)->model);
    static const char *const ties[] = {"none", "enc-dec", "all"};
    ex_metadata_init(meta, "mt", NULL);
    ex_metadata_add(meta, "arch", "%s", mt_arch_name(c->arch));
    ex_metadata_add(meta, "max-bytes", "%zu", c->max_src);
    ex_metadata_add(meta, "dim", "%zu", c->dim);
    ex_metadata_add(meta, "enc-layers", "%zu", c->enc_layers);
    ex_metadata_add(meta, "dec-layers", "%zu", c->dec_layers);
    ex_metadata_add(meta, "heads", "%zu", c->heads);
    ex_metadata_add(meta, "mlp-dim", "%zu", c->mlp_dim);
    ex_metadata_add(meta, "gamma-init", "%s", ex_gamma_init_name(c->gamma_init));
    ex_metadata_add(meta, "qkv-sigma", "%s", ex_qkv_sigma_name(c->qkv_sigma));
    ex_metadata_add(meta, "tie-embeddings", "%s", ties[c->tie]);
}

static void model_refs(ex_trainer *base, srp_tensor_list *list)
{
    mt_trainer *t = mt(base);
    ex_trainer_shape_ref(list, t->config, CONFIG_FIELDS);
    mt_model_state_refs(t->model, list);
}

static void state_refs(ex_trainer *base, srp_tensor_list *list)
{
    mt_trainer *t = mt(base);
    ex_schedule_state_refs(&t->schedule, list);
    srp_tensor_list_add(list, "train.best_val_bpb", NULL, SRP_DTYPE_F32, 0, NULL, &t->best_val_bpb);
}

static void header(ex_trainer *base, ex_metrics *m)
{
    mt_trainer *t = mt(base);
    ex_metrics_string(m, "model", "mt");
    ex_metrics_string(m, "arch", mt_arch_name(t->opt.model.arch));
    ex_metrics_string(m, "lang", t->opt.lang);
    ex_metrics_number(m, "train_pairs", (double)t->corpus.count[MT_TRAIN]);
    ex_metrics_number(m, "val_pairs", (double)t->corpus.count[MT_VALIDATION]);
    ex_metrics_number(m, "test_pairs", (double)t->corpus.count[MT_TEST]);
    ex_metrics_number(m, "copy_chrf_val", t->copy_chrf[MT_VALIDATION]);
    ex_metrics_number(m, "copy_chrf_test", t->copy_chrf[MT_TEST]);
}

static void describe_data(ex_trainer *base)
{
    mt_trainer *t = mt(base);
    const mt_corpus *c = &t->corpus;
    printf("corpus %s: %zu catalogs, %zu pairs (%zu repeats, %zu over %zu bytes dropped): %zu "
           "train, %zu validation, %zu test; fingerprint %016llx\n",
           t->opt.lang, c->catalogs, c->count[0] + c->count[1] + c->count[2], c->duplicates,
           c->too_long, t->opt.max_bytes, c->count[MT_TRAIN], c->count[MT_VALIDATION],
           c->count[MT_TEST], (unsigned long long)c->fingerprint);
    printf("copy baseline (the English as its translation), chrF2: validation %.2f, test %.2f\n",
           t->copy_chrf[MT_VALIDATION], t->copy_chrf[MT_TEST]);
    printf("training pairs by padded length:");
    for (size_t k = 0; k < t->buckets; k++) {
        size_t S, T;
        bucket_sizes(t, k, &S, &T);
        printf(" %zu up to %zu", t->bucket_count[k], T);
    }
    printf("\n");
}

static void describe_model(ex_trainer *base)
{
    mt_trainer *t = mt(base);
    const mt_options *o = &t->opt;
    const mt_config *c = mt_get_config(t->model);
    char reg[128];
    printf("translator: %s, %zu+%zu blocks, dim %zu, %zu heads, mlp %zu, up to %zu bytes%s | %s, "
           "lr %g, label smoothing %g | batch %zu\n",
           mt_arch_name(c->arch), c->enc_layers, c->dec_layers, c->dim, c->heads, c->mlp_dim,
           c->max_src, ex_regularizers_text(&c->reg, reg, sizeof(reg)),
           ex_optimizer_name(o->optim.optimizer), (double)o->optim.lr, (double)o->label_smoothing,
           o->run.batch);
}

/* ---- set-up ---- */

static srp_attention *attention_at(ex_trainer *t, size_t layer)
{
    return mt_attention_at(mt(t)->model, layer);
}

/* The validation pairs by bucket (then index), for evaluation order. */
static const mt_trainer *g_sort_trainer;
static int by_bucket(const void *a, const void *b)
{
    const size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const mt_pair *val = g_sort_trainer->corpus.pairs[MT_VALIDATION];
    const size_t ki = bucket_of(g_sort_trainer, &val[i]), kj = bucket_of(g_sort_trainer, &val[j]);
    return ki != kj ? (ki < kj ? -1 : 1) : (i < j ? -1 : i > j);
}

/* The training pairs' buckets and the validation pairs' order. */
static ex_code make_buckets(mt_trainer *t, ex_error *err)
{
    const mt_corpus *c = &t->corpus;
    for (size_t k = 0; k < t->buckets; k++)
        if (!(t->bucket_pairs[k] = malloc(sizeof(size_t) * c->count[MT_TRAIN])))
            return ex_fail_status(err, SRP_ERR_NOMEM, "buckets");
    for (size_t i = 0; i < c->count[MT_TRAIN]; i++) {
        const size_t k = bucket_of(t, &c->pairs[MT_TRAIN][i]);
        t->bucket_pairs[k][t->bucket_count[k]++] = i;
    }
    const size_t n = c->count[MT_VALIDATION];
    if (!(t->val_order = malloc(sizeof(size_t) * n)))
        return ex_fail_status(err, SRP_ERR_NOMEM, "buckets");
    for (size_t i = 0; i < n; i++)
        t->val_order[i] = i;
    g_sort_trainer = t;
    qsort(t->val_order, n, sizeof(size_t), by_bucket);
    return EX_OK;
}

/* The batches' buffers, for batch pairs of the model's sizes. */
static ex_code alloc_buffers(mt_trainer *t, size_t batch, ex_error *err)
{
    const mt_config *c = mt_get_config(t->model);
    const size_t B = batch, T = c->max_tgt + 1;
    t->src = malloc(sizeof(uint32_t) * B * c->max_src);
    t->tgt = malloc(sizeof(uint32_t) * B * T);
    t->src_len = malloc(sizeof(size_t) * B);
    t->tgt_len = malloc(sizeof(size_t) * B);
    t->labels = malloc(sizeof(int) * B * T);
    if (!t->src || !t->tgt || !t->src_len || !t->tgt_len || !t->labels ||
        !ex_alloc_floats(&t->scored, B * T * MT_VOCAB) ||
        !ex_alloc_floats(&t->dscored, B * T * MT_VOCAB) ||
        !ex_alloc_floats(&t->dlogits, B * T * MT_VOCAB))
        return ex_fail_status(err, SRP_ERR_NOMEM, "buffers");
    t->buckets = bucket_count(c);
    return EX_OK;
}

/* The corpus and its copy baselines, the model, the optimizer, the
 * schedule and the buffers. */
static ex_code build(ex_trainer *base, ex_error *err)
{
    mt_trainer *t = mt(base);
    mt_options *o = &t->opt;
    ex_code code = mt_corpus_load(&t->corpus, o->locale_dir, o->lang, o->max_bytes, stderr, err);
    for (int s = MT_VALIDATION; s <= MT_TEST && code == EX_OK; s++)
        code = mt_copy_baseline(&t->corpus, (mt_split)s, &t->copy_chrf[s], err);
    if (code != EX_OK)
        return code;
    if (t->corpus.count[MT_TRAIN] == 0 || t->corpus.count[MT_VALIDATION] == 0)
        return ex_fail(err, EX_FAILED, "the corpus has no training or no validation pairs");
    o->model.max_batch = base->local_batch;
    srp_status st = mt_create(&t->model, &o->model);
    if (st == SRP_OK)
        st = srp_param_list_create(&base->params);
    if (st == SRP_OK)
        st = mt_model_params(t->model, base->params);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the model");
    model_config_record(&o->model, t->config);
    base->linears = mt_linears(t->model);
    base->attention_at = attention_at;
    base->layers = mt_attention_count(t->model);
    base->heads = o->model.heads;
    base->tokens = o->model.max_tgt + 1;
    base->normalized = 1; /* rows of every length: 1 is uniform attention */
    if ((code = ex_schedule_build(&t->schedule, &o->optim, base, err)) != EX_OK)
        return code;
    if ((code = alloc_buffers(t, base->local_batch, err)) != EX_OK)
        return code;
    t->best_val_bpb = INFINITY;
    return make_buckets(t, err);
}

/* ---- the loop ---- */

/* This rank's share of a batch of random training pairs, forward, the
 * label-smoothed loss over the scored positions, backward. */
static srp_status forward_backward(ex_trainer *base, float *loss, double *sums, const char **stage)
{
    mt_trainer *t = mt(base);
    const size_t B = t->opt.run.batch, n = base->local_batch;
    const size_t first = (size_t)base->dist.rank * n;
    const mt_pair *pairs[n];
    (void)sums;
    /* the first pair uniformly, so its bucket in proportion to its
     * size; the others uniformly from that bucket */
    const mt_pair *train = t->corpus.pairs[MT_TRAIN];
    size_t k = bucket_of(t, &train[srp_rng_below(&base->data_rng, t->corpus.count[MT_TRAIN])]);
    for (size_t b = 0; b < B; b++) {
        const size_t i = t->bucket_pairs[k][srp_rng_below(&base->data_rng, t->bucket_count[k])];
        if (b >= first && b < first + n)
            pairs[b - first] = &train[i];
    }
    size_t S, T, count;
    put_batch(t, pairs, n, &S, &T);
    EX_TRY(forward_scored(t, n, S, T, SRP_TRAIN, &count));
    const float s = t->opt.label_smoothing;
    *stage = "loss";
    EX_TRY(srp_cross_entropy_forward(t->scored, t->labels, count, MT_VOCAB, s, loss));
    *stage = "gradient";
    EX_TRY(srp_cross_entropy_backward(t->scored, t->labels, count, MT_VOCAB, s, t->dscored));
    /* the packed gradients back to their positions, 0 at the padding */
    memset(t->dlogits, 0, sizeof(float) * n * T * MT_VOCAB);
    size_t at = 0;
    for (size_t r = 0; r < n; r++)
        for (size_t i = 0; i < t->tgt_len[r]; i++, at++)
            memcpy(t->dlogits + (r * T + i) * MT_VOCAB, t->dscored + at * MT_VOCAB,
                   sizeof(float) * MT_VOCAB);
    return mt_backward(t->model, t->dlogits);
}

static void train_fields(ex_trainer *t, ex_metrics *m, const ex_step_record *rec)
{
    ex_metrics_number(m, "seconds", ex_run_seconds(&t->run));
    ex_metrics_number(m, "loss", rec->loss);
    ex_metrics_number(m, "bpb", rec->loss / LN2);
}

static void progress(ex_trainer *base, const ex_step_record *rec)
{
    mt_trainer *t = mt(base);
    char elapsed[32];
    ex_format_duration(ex_run_seconds(&base->run), elapsed, sizeof(elapsed));
    ex_progress_print(&base->progress, base->run.step,
                      "step %llu/%llu | %s | %.2f s/step | loss %.4f | lr %.3g | lowest head "
                      "entropy %.2f of uniform",
                      (unsigned long long)base->run.step,
                      (unsigned long long)ex_schedule_steps(&t->schedule), elapsed,
                      ex_trainer_seconds_per_step(base), rec->loss, rec->lr,
                      ex_trainer_lowest_entropy(base));
}

static ex_code after_step(ex_trainer *base, ex_error *err)
{
    mt_trainer *t = mt(base);
    return base->run.step % t->opt.eval_every == 0 ? write_eval(t, t->opt.eval_pairs, 0, err)
                                                   : EX_OK;
}

/* The end: the training's last line, the validation cross-entropy over
 * every pair, the last checkpoint. */
static ex_code finish(ex_trainer *base, ex_error *err)
{
    mt_trainer *t = mt(base);
    ex_schedule_report(&t->schedule, base);
    t->finished = 1;
    const ex_code code = write_eval(t, 0, 1, err);
    return code == EX_OK ? ex_trainer_save(base, err) : code;
}

/* --chrf: the trained model's translations, scored (rank 0), when the
 * training ran to its end. */
static ex_code after_run(ex_trainer *base, ex_error *err)
{
    mt_trainer *t = mt(base);
    if (!ex_dist_is_root(&base->dist) || !t->finished)
        return EX_OK;
    const ex_code code = t->opt.chrf == MT_CHRF_NONE ? EX_OK : score_splits(t, err);
    return code == EX_OK && (t->opt.translate || t->opt.translate_file) ? translate_texts(t, err)
                                                                        : code;
}

/* --init: the model out of a checkpoint, with the shape it records, to
 * translate with (no training). */
static ex_code translate_from_checkpoint(mt_trainer *t, ex_error *err)
{
    const mt_options *o = &t->opt;
    uint64_t *v = t->config;
    ex_code code = ex_trainer_load_shape(o->init_path, v, CONFIG_FIELDS, err);
    if (code != EX_OK)
        return code;
    mt_config c = mt_config_default();
    c.max_src = v[0];
    c.max_tgt = v[1];
    c.dim = v[2];
    c.heads = v[3];
    c.mlp_dim = v[4];
    c.enc_layers = v[5];
    c.dec_layers = v[6];
    c.arch = (mt_arch)v[7];
    c.gamma_init = (srp_gamma_init)v[8];
    c.qkv_sigma = (srp_qkv_sigma)v[9];
    c.tie = (mt_tie)v[10];
    c.max_batch = o->run.batch;
    const srp_status st = v[7] < MT_ARCH_COUNT && v[8] <= SRP_GAMMA_INIT_ONE &&
                                  v[9] <= SRP_QKV_SIGMA_SEPARATE && v[10] < MT_TIE_COUNT &&
                                  v[0] <= 1024 && v[1] <= 1024
                              ? mt_create(&t->model, &c)
                              : SRP_ERR_FORMAT;
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "%s: its model configuration is not valid", o->init_path);
    code = ex_trainer_load_model(&t->base, o->init_path, mt_linears(t->model), err);
    if (code == EX_OK)
        code = alloc_buffers(t, c.max_batch, err);
    return code == EX_OK ? translate_texts(t, err) : code;
}

/* --init: translating from a checkpoint instead of training. */
static ex_code other_job(ex_trainer *base, int *done, ex_error *err)
{
    mt_trainer *t = mt(base);
    *done = t->opt.init_path != NULL;
    return *done && ex_dist_is_root(&base->dist) ? translate_from_checkpoint(t, err) : EX_OK;
}

static void cleanup(ex_trainer *base)
{
    mt_trainer *t = mt(base);
    mt_translator_destroy(t->translator);
    mt_destroy(t->model);
    mt_corpus_free(&t->corpus);
    free(t->src);
    free(t->tgt);
    free(t->src_len);
    free(t->tgt_len);
    free(t->labels);
    free(t->scored);
    free(t->dscored);
    free(t->dlogits);
    for (size_t k = 0; k < t->buckets; k++)
        free(t->bucket_pairs[k]);
    free(t->val_order);
}

static const ex_trainer_hooks k_hooks = {
    .program = "mt-train",
    .plot = &k_plot,
    .options = &mt_options_table,
    .other_job = other_job,
    .build = build,
    .describe_data = describe_data,
    .header = header,
    .describe_model = describe_model,
    .before_step = before_step,
    .forward_backward = forward_backward,
    .lr_at = lr_at,
    .train_fields = train_fields,
    .progress = progress,
    .after_step = after_step,
    .finish = finish,
    .after_run = after_run,
    .model_refs = model_refs,
    .state_refs = state_refs,
    .metadata = metadata,
    .cleanup = cleanup,
};

int main(int argc, char **argv)
{
    static mt_trainer t;
    return ex_trainer_main(&t.base, &k_hooks, &t.opt, argc, argv);
}
