/* char-lm-train: trains a byte-level causal language model with
 * sigmaReparam (or one of the LayerNorm baselines) on the text of Debian's
 * fortunes and jargon-text packages, watching every attention head's
 * entropy; checkpoints and resumes exactly; samples text.
 * `char-lm-train --help`.
 *
 * The skeleton (common/trainer.h) runs the jobs: the options, the run's
 * phases, the loop, the update, the entropy watch, metrics, checkpoints.
 * What is the LM's own is here: the text and its count-model baselines,
 * the model, the evaluations on the validation text, sampling and
 * --generate, --export and --init-from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam.h>

#include "common/budget.h"
#include "common/official_file.h"
#include "common/tensors.h"
#include "common/trainer.h"
#include "lm_options.h"
#include "lm_model.h"
#include "lm_safetensors.h"
#include "text.h"

#define LN2 0.69314718055994530942 /* nats per bit */
#define CONFIG_FIELDS 10

typedef struct {
    ex_trainer base;
    lm_options opt;
    lm_text text;
    lm_baselines baselines;
    lm_model *model;
    ex_schedule schedule;           /* --steps or --minutes; its plans in the checkpoint */
    uint64_t config[CONFIG_FIELDS]; /* the model's shape, for --generate */
    /* the run's own state, in the checkpoint */
    float best_val_bpc;
    /* per-step buffers */
    uint32_t *tokens; /* [batch][context] */
    int *targets;     /* [batch][context]: the next bytes */
    float *dlogits;   /* [batch][context][256] */
    size_t eval_n, eval_stride, eval_tail; /* evaluate()'s windows, stride, tail bytes */
} lm_trainer;

static const ex_plot_spec k_plot = {.score_key = "bpc",
                                    .eval_key = "bpc",
                                    .score_title = "bits per character",
                                    .score_label = "train (batch)",
                                    .eval_label = "validation"};

static lm_trainer *lt(ex_trainer *t) { return (lm_trainer *)t; }

static ex_code load_text(lm_trainer *t, ex_error *err)
{
    const lm_options *o = &t->opt;
    ex_code code = o->text_path ? lm_text_load_file(&t->text, o->text_path, err)
                                : lm_text_load_default(&t->text, err);
    if (code == EX_OK)
        code = lm_text_check_context(&t->text, o->model.context,
                                     o->text_path ? o->text_path : "the default text", err);
    if (code == EX_OK)
        code = lm_baselines_compute(&t->text, &t->baselines, err);
    return code;
}

/* Row `row` of the batch: the context bytes at text, each with the byte
 * that follows it. */
static void put_window(lm_trainer *t, size_t row, const uint8_t *text)
{
    const size_t T = t->opt.model.context;
    for (size_t i = 0; i < T; i++) {
        t->tokens[row * T + i] = text[i];
        t->targets[row * T + i] = text[i + 1];
    }
}

/* A training batch: random windows of the training text. Every rank draws
 * the whole batch's windows and keeps its share of them. */
static void sample_batch(lm_trainer *t)
{
    const size_t B = t->opt.run.batch, T = t->opt.model.context;
    const size_t first = (size_t)t->base.dist.rank * t->base.local_batch;
    for (size_t b = 0; b < B; b++) {
        const size_t start = (size_t)srp_rng_below(&t->base.data_rng, t->text.train_len - T);
        if (b >= first && b < first + t->base.local_batch)
            put_window(t, b - first, t->text.train + start);
    }
}

static float lr_at(ex_trainer *base, uint64_t step)
{
    return ex_schedule_lr(&lt(base)->schedule, step);
}

static void model_config_record(const lm_config *c, uint64_t *rec)
{
    const uint64_t v[CONFIG_FIELDS] = {c->context,    c->dim,      c->depth,     c->heads,
                                       c->mlp_dim,    c->arch,     c->positions, c->tied_head,
                                       c->gamma_init, c->qkv_sigma};
    memcpy(rec, v, sizeof(v));
}

/* The model's configuration, saved with every checkpoint and checked on
 * every load: the options that make the model, by their names. */
static void metadata(ex_trainer *t, ex_metadata *meta)
{
    const lm_config *c = lm_get_config(lt(t)->model);
    ex_metadata_init(meta, "char-lm", NULL);
    ex_metadata_add(meta, "arch", "%s", lm_arch_name(c->arch));
    ex_metadata_add(meta, "context", "%zu", c->context);
    ex_metadata_add(meta, "dim", "%zu", c->dim);
    ex_metadata_add(meta, "depth", "%zu", c->depth);
    ex_metadata_add(meta, "heads", "%zu", c->heads);
    ex_metadata_add(meta, "mlp-dim", "%zu", c->mlp_dim);
    ex_metadata_add(meta, "positions", "%s", c->positions == LM_POS_FIXED ? "fixed" : "learned");
    ex_metadata_add(meta, "tied-head", "%d", c->tied_head);
    ex_metadata_add(meta, "gamma-init", "%s", ex_gamma_init_name(c->gamma_init));
    ex_metadata_add(meta, "qkv-sigma", "%s", ex_qkv_sigma_name(c->qkv_sigma));
}

/* One batch of an evaluation: windows first .. first + rows - 1 (the
 * tail's last), forward, the nats over the bytes they score. */
static srp_status eval_batch(ex_trainer *base, size_t first, size_t rows, double *sums)
{
    lm_trainer *t = lt(base);
    const size_t T = t->opt.model.context, V = LM_VOCAB, n = t->eval_n, tail = t->eval_tail;
    const size_t whole = first + rows > n ? rows - 1 : rows; /* rows before the tail's */
    for (size_t r = 0; r < rows; r++) {
        const size_t start =
            first + r < n ? (first + r) * t->eval_stride * T : t->text.val_len - 1 - T;
        put_window(t, r, t->text.val + start);
    }
    const float *logits;
    float loss = 0.0f, tail_loss = 0.0f;
    EX_TRY(lm_forward(t->model, t->tokens, rows, T, SRP_EVAL, &logits));
    if (whole)
        EX_TRY(srp_cross_entropy_forward(logits, t->targets, whole * T, V, 0.0f, &loss));
    if (whole < rows) {
        const size_t at = whole * T + T - tail; /* the tail window's last positions */
        EX_TRY(
            srp_cross_entropy_forward(logits + at * V, t->targets + at, tail, V, 0.0f, &tail_loss));
    }
    sums[0] += (double)loss * (double)(whole * T) + (whole < rows ? (double)tail_loss * tail : 0.0);
    return SRP_OK;
}

/* Mean loss (nats per byte) of eval forwards over windows of the
 * validation text: consecutive windows of context bytes, each predicting
 * its next bytes; `windows` of them spread evenly over the text, or with
 * windows 0 all of them and one more that ends at the text's end, whose
 * last positions score the bytes the whole windows left: every byte after
 * the first is then scored once (*bytes_out). The ranks take turns at the
 * batches (of each one's share). */
static ex_code evaluate(lm_trainer *t, size_t windows, double *loss_out, size_t *bytes_out,
                        ex_error *err)
{
    const size_t T = t->opt.model.context, all = (t->text.val_len - 1) / T;
    const int every = windows == 0 || windows >= all;
    t->eval_n = every ? all : windows;
    t->eval_stride = all / t->eval_n;                         /* in windows */
    t->eval_tail = every ? t->text.val_len - 1 - all * T : 0; /* bytes after window n - 1 */
    double sum = 0.0;                                         /* nats over the bytes */
    const ex_code code =
        ex_trainer_evaluate(&t->base, t->eval_n + (t->eval_tail > 0), eval_batch, &sum, 1, err);
    if (code != EX_OK)
        return code;
    *bytes_out = t->eval_n * T + t->eval_tail;
    *loss_out = sum / (double)*bytes_out;
    return EX_OK;
}

/* Prints n generated bytes after the prompt, each drawn from
 * softmax(logits / temperature) of the last position. The model decodes
 * with its blocks' caches (lm_decode): one position per byte while the
 * text fits the context of T bytes (its learned positions). When the
 * context is full, the cache starts again from the text's last T/2 bytes,
 * re-fed one position each, so that a refill's cost is spread over the
 * T/2 bytes generated before the next one: after the first T bytes, a
 * byte is conditioned on the last T/2 to T bytes before it (recomputing
 * the whole window for every byte, as before the cache, gave it the last
 * T, at T times the cost). The same seed gives the same text. */
static ex_code generate(lm_model *m, const char *prompt, size_t n, float temperature, uint64_t seed,
                        ex_error *err)
{
    const size_t T = lm_get_config(m)->context, keep = T / 2, plen = prompt ? strlen(prompt) : 0;
    uint32_t *window = calloc(T, sizeof(uint32_t)); /* the bytes in the cache, oldest first */
    lm_decoder *dec = NULL;
    srp_status st = window ? lm_decoder_create(&dec, m, 1) : SRP_ERR_NOMEM;
    size_t used = 0;
    if (plen == 0 && window)
        window[used++] = '\n'; /* no prompt: start as after a document */
    for (size_t i = plen > T ? plen - T : 0; i < plen && window; i++)
        window[used++] = (uint8_t)prompt[i];
    if (plen)
        fwrite(prompt, 1, plen, stdout);
    const float *logits = NULL;
    for (size_t i = 0; i < used && st == SRP_OK; i++)
        st = lm_decode(dec, window + i, 1, &logits);
    srp_rng rng;
    srp_rng_seed(&rng, seed ^ 0x5a3913ull);
    double p[LM_VOCAB];
    for (size_t k = 0; k < n && st == SRP_OK; k++) {
        double max = -INFINITY, z = 0.0;
        for (int c = 0; c < LM_VOCAB; c++)
            max = fmax(max, (double)logits[c] / temperature);
        for (int c = 0; c < LM_VOCAB; c++)
            z += p[c] = exp((double)logits[c] / temperature - max);
        double u = srp_rng_uniform(&rng) * z;
        int next = LM_VOCAB - 1;
        for (int c = 0; c < LM_VOCAB; c++)
            if ((u -= p[c]) < 0.0) {
                next = c;
                break;
            }
        fputc(next, stdout);
        if (k + 1 == n)
            break;
        if (used == T) { /* full: start again from the last keep bytes */
            memmove(window, window + T - keep, sizeof(uint32_t) * keep);
            used = keep;
            lm_decoder_reset(dec);
            for (size_t i = 0; i < used && st == SRP_OK; i++)
                st = lm_decode(dec, window + i, 1, NULL);
        }
        window[used++] = (uint32_t)next;
        if (st == SRP_OK)
            st = lm_decode(dec, window + used - 1, 1, &logits);
    }
    fputc('\n', stdout);
    fflush(stdout);
    lm_decoder_destroy(dec);
    free(window);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "sampling");
}

/* The model's tensors and its shape ("model.config"): what --generate
 * needs. */
static void model_refs(ex_trainer *base, srp_tensor_list *list)
{
    lm_trainer *t = lt(base);
    ex_trainer_shape_ref(list, t->config, CONFIG_FIELDS);
    lm_model_state_refs(t->model, list);
}

/* --generate: the model out of a checkpoint, with the shape it records. */
static ex_code generate_from_checkpoint(lm_trainer *t, ex_error *err)
{
    const lm_options *o = &t->opt;
    uint64_t *config = t->config;
    /* The shape first, to build the model that the rest is checked against. */
    ex_code code = ex_trainer_load_shape(o->generate_path, config, CONFIG_FIELDS, err);
    if (code != EX_OK)
        return code;
    lm_config c = lm_config_default();
    c.context = config[0];
    c.dim = config[1];
    c.depth = config[2];
    c.heads = config[3];
    c.mlp_dim = config[4];
    c.arch = (lm_arch)config[5];
    c.positions = (lm_positions)config[6];
    c.tied_head = (int)config[7];
    c.gamma_init = (srp_gamma_init)config[8];
    c.qkv_sigma = (srp_qkv_sigma)config[9];
    c.max_batch = 1;
    const srp_status st = config[5] < LM_ARCH_COUNT && config[6] <= LM_POS_FIXED &&
                                  config[8] <= SRP_GAMMA_INIT_ONE &&
                                  config[9] <= SRP_QKV_SIGMA_SEPARATE
                              ? lm_create(&t->model, &c)
                              : SRP_ERR_FORMAT;
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "%s: its model configuration is not valid",
                               o->generate_path);
    /* The rest, the file's metadata checked against this model's. */
    code = ex_trainer_load_model(&t->base, o->generate_path, lm_linears(t->model), err);
    return code == EX_OK
               ? generate(t->model, o->prompt, o->sample, o->temperature, o->run.seed, err)
               : code;
}

static ex_code write_eval(lm_trainer *t, size_t windows, int final, ex_error *err)
{
    double loss = NAN;
    size_t bytes = 0;
    const ex_code code = evaluate(t, windows, &loss, &bytes, err);
    if (code != EX_OK)
        return code;
    const double bpc = loss / LN2;
    ex_metrics_begin(&t->base.metrics, "eval");
    ex_metrics_string(&t->base.metrics, "set", "val");
    ex_metrics_number(&t->base.metrics, "step", (double)t->base.run.step);
    ex_metrics_number(&t->base.metrics, "seconds", ex_run_seconds(&t->base.run));
    ex_metrics_number(&t->base.metrics, "loss", loss);
    ex_metrics_number(&t->base.metrics, "bpc", bpc);
    ex_metrics_number(&t->base.metrics, "windows", (double)(windows ? windows : 0));
    ex_metrics_number(&t->base.metrics, "bytes", (double)bytes);
    ex_metrics_end(&t->base.metrics);
    ex_progress_break(&t->base.progress);
    if (final)
        printf("validation: %.4f bits per character (all %zu bytes after the first; bigram "
               "%.4f, unigram %.4f)\n",
               bpc, bytes, t->baselines.bigram_bpc, t->baselines.unigram_bpc);
    else
        printf("step %llu: validation %.4f bits per character (%zu windows)\n",
               (unsigned long long)t->base.run.step, bpc, windows);
    if (bpc < t->best_val_bpc)
        t->best_val_bpc = (float)bpc;
    return EX_OK;
}

static void header(ex_trainer *base, ex_metrics *m)
{
    lm_trainer *t = lt(base);
    const lm_options *o = &t->opt;
    ex_metrics_string(m, "model", "char-lm");
    ex_metrics_string(m, "arch", lm_arch_name(o->model.arch));
    ex_metrics_number(m, "train_bytes", (double)t->text.train_len);
    ex_metrics_number(m, "val_bytes", (double)t->text.val_len);
    ex_metrics_number(m, "documents", (double)t->text.documents);
    ex_metrics_number(m, "duplicates_dropped", (double)t->text.duplicates);
    ex_metrics_number(m, "unigram_bpc", t->baselines.unigram_bpc);
    ex_metrics_number(m, "bigram_bpc", t->baselines.bigram_bpc);
}

/* ---- set-up ---- */

static srp_attention *attention_at(ex_trainer *t, size_t layer)
{
    return lm_attention_at(lt(t)->model, layer);
}

/* The text, the model, the optimizer (gammas at --gamma-lr-mult,
 * embeddings and biases at --embed-lr-mult, the rest at the lr), the
 * schedule and the buffers. */
static ex_code build(ex_trainer *base, ex_error *err)
{
    lm_trainer *t = lt(base);
    lm_options *o = &t->opt;
    ex_code code = load_text(t, err);
    if (code != EX_OK)
        return code;
    o->model.max_batch = base->local_batch;
    srp_status st = lm_create(&t->model, &o->model);
    if (st == SRP_OK)
        st = srp_param_list_create(&base->params);
    if (st == SRP_OK)
        st = lm_model_params(t->model, base->params);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the model");
    model_config_record(&o->model, t->config);
    base->linears = lm_linears(t->model);
    base->attention_at = attention_at;
    base->layers = o->model.depth;
    base->heads = o->model.heads;
    base->tokens = o->model.context;
    /* The watch sees each head's mean entropy over log(keys) per row: 1 is
     * uniform attention whatever the row's length. */
    base->normalized = 1;
    base->average_decay = o->ema;
    if ((code = ex_schedule_build(&t->schedule, &o->optim, base, err)) != EX_OK)
        return code;
    const size_t rows = base->local_batch * o->model.context;
    t->tokens = malloc(sizeof(uint32_t) * rows);
    t->targets = malloc(sizeof(int) * rows);
    t->dlogits = malloc(sizeof(float) * rows * LM_VOCAB);
    if (!t->tokens || !t->targets || !t->dlogits)
        return ex_fail_status(err, SRP_ERR_NOMEM, "buffers");
    t->best_val_bpc = INFINITY;
    return EX_OK;
}

static void describe_data(ex_trainer *base)
{
    lm_trainer *t = lt(base);
    printf("text: %zu documents (%zu repeats of them dropped), %zu training bytes, %zu "
           "validation bytes (every %dth document)\n",
           t->text.documents, t->text.duplicates, t->text.train_len, t->text.val_len, LM_VAL_EVERY);
    printf("baselines on the validation text: unigram %.4f, bigram %.4f bits per character\n",
           t->baselines.unigram_bpc, t->baselines.bigram_bpc);
}

static void describe_model(ex_trainer *base)
{
    lm_trainer *t = lt(base);
    const lm_options *o = &t->opt;
    const lm_config *c = lm_get_config(t->model);
    char reg[128];
    printf("char LM: %s, %zu blocks, dim %zu, %zu heads, context %zu, %s positions, %s head%s | "
           "%s, lr %g | batch %zu\n",
           lm_arch_name(c->arch), c->depth, c->dim, c->heads, c->context,
           c->positions == LM_POS_FIXED ? "fixed" : "learned", c->tied_head ? "tied" : "untied",
           ex_regularizers_text(&c->reg, reg, sizeof(reg)), ex_optimizer_name(o->optim.optimizer),
           (double)o->optim.lr, o->run.batch);
}

/* ---- checkpoints ---- */

static void state_refs(ex_trainer *base, srp_tensor_list *list)
{
    lm_trainer *t = lt(base);
    ex_schedule_state_refs(&t->schedule, list);
    srp_tensor_list_add(list, "train.best_val_bpc", NULL, SRP_DTYPE_F32, 0, NULL, &t->best_val_bpc);
}

/* ---- the loop ---- */

/* This rank's share of a batch of random windows, forward, loss, backward. */
static srp_status forward_backward(ex_trainer *base, float *loss, double *sums, const char **stage)
{
    lm_trainer *t = lt(base);
    const size_t T = t->opt.model.context, rows = base->local_batch * T;
    (void)sums;
    sample_batch(t);
    const float *logits;
    srp_status st = lm_forward(t->model, t->tokens, base->local_batch, T, SRP_TRAIN, &logits);
    if (st == SRP_OK) {
        *stage = "loss";
        st = srp_cross_entropy_forward(logits, t->targets, rows, LM_VOCAB, 0.0f, loss);
    }
    if (st == SRP_OK) {
        *stage = "gradient";
        st = srp_cross_entropy_backward(logits, t->targets, rows, LM_VOCAB, 0.0f, t->dlogits);
    }
    return st == SRP_OK ? lm_backward(t->model, t->dlogits) : st;
}

static void train_fields(ex_trainer *t, ex_metrics *m, const ex_step_record *rec)
{
    ex_metrics_number(m, "seconds", ex_run_seconds(&t->run));
    ex_metrics_number(m, "loss", rec->loss);
    ex_metrics_number(m, "bpc", rec->loss / LN2);
}

static void progress(ex_trainer *base, const ex_step_record *rec)
{
    lm_trainer *t = lt(base);
    char elapsed[32];
    ex_format_duration(ex_run_seconds(&base->run), elapsed, sizeof(elapsed));
    ex_progress_print(&base->progress, base->run.step,
                      "step %llu/%llu | %s | %.0f bytes/s | loss %.4f = %.3f bits/char | lr %.3g "
                      "| lowest head entropy %.2f of uniform",
                      (unsigned long long)base->run.step,
                      (unsigned long long)ex_schedule_steps(&t->schedule), elapsed,
                      (double)(t->opt.run.batch * t->opt.model.context) /
                          ex_trainer_seconds_per_step(base),
                      rec->loss, rec->loss / LN2, rec->lr, ex_trainer_lowest_entropy(base));
}

/* --eval-every: the validation figure on --eval-windows windows. */
static ex_code after_step(ex_trainer *base, ex_error *err)
{
    lm_trainer *t = lt(base);
    return base->run.step % t->opt.eval_every == 0 ? write_eval(t, t->opt.eval_windows, 0, err)
                                                   : EX_OK;
}

/* Before each step: the --minutes plans and the end (budget.h). */
static ex_code before_step(ex_trainer *base, int *done, ex_error *err)
{
    (void)err;
    *done = ex_schedule_before_step(&lt(base)->schedule, base);
    return EX_OK;
}

/* The end: the training's last line, the validation figure over every
 * byte, the last checkpoint. */
static ex_code finish(ex_trainer *base, ex_error *err)
{
    ex_schedule_report(&lt(base)->schedule, base);
    const ex_code code = write_eval(lt(base), 0, 1, err);
    return code == EX_OK ? ex_trainer_save(base, err) : code;
}

/* --generate: sampling from a checkpoint instead of training. */
static ex_code other_job(ex_trainer *base, int *done, ex_error *err)
{
    const lm_options *o = &lt(base)->opt;
    *done = o->generate_path != NULL;
    return *done && ex_dist_is_root(&base->dist) ? generate_from_checkpoint(lt(base), err) : EX_OK;
}

/* ---- models in safetensors files ---- */

/* --logits: the eval logits of evaluate()'s --eval-windows windows of the
 * validation text (all whole windows with 0), of the model it scores,
 * with their tokens, to a safetensors file (what
 * experiments/torch_check_lm.py compares with PyTorch's). */
static ex_code write_logits(ex_trainer *base, ex_error *err)
{
    lm_trainer *t = lt(base);
    const size_t T = t->opt.model.context, V = LM_VOCAB, batch = t->base.local_batch;
    const size_t all = (t->text.val_len - 1) / T, want = t->opt.eval_windows;
    const size_t n = want == 0 || want >= all ? all : want, stride = all / n;
    float *logits_all = malloc(sizeof(float) * n * T * V);
    uint8_t *tokens = malloc(n * T);
    if (!logits_all || !tokens) {
        free(logits_all);
        free(tokens);
        return ex_fail(err, EX_FAILED, "out of memory for %zu windows' logits", n);
    }
    ex_code code = ex_trainer_swap_in_average(&t->base, err); /* the model evaluate() scored */
    srp_status st = SRP_OK;
    for (size_t first = 0; code == EX_OK && st == SRP_OK && first < n; first += batch) {
        const size_t rows = n - first < batch ? n - first : batch;
        for (size_t r = 0; r < rows; r++) {
            put_window(t, r, t->text.val + (first + r) * stride * T);
            for (size_t i = 0; i < T; i++)
                tokens[(first + r) * T + i] = (uint8_t)t->tokens[r * T + i];
        }
        const float *logits;
        st = lm_forward(t->model, t->tokens, rows, T, SRP_EVAL, &logits);
        if (st == SRP_OK)
            memcpy(logits_all + first * T * V, logits, sizeof(float) * rows * T * V);
    }
    ex_trainer_swap_out_average(&t->base);
    if (code == EX_OK && st == SRP_OK) {
        const srp_tensor_ref refs[2] = {{"tokens", SRP_DTYPE_U8, 2, {n, T}, tokens},
                                        {"logits", SRP_DTYPE_F32, 3, {n, T, V}, logits_all}};
        st = srp_safetensors_save(t->opt.run.logits_path, refs, 2, NULL, 0);
    }
    free(logits_all);
    free(tokens);
    if (code == EX_OK && st != SRP_OK)
        code = ex_fail_statusf(err, st, "writing logits to %s", t->opt.run.logits_path);
    if (code == EX_OK)
        printf("wrote %s\n", t->opt.run.logits_path);
    return code;
}

/* --eval-only: the validation text scored (the weight average swapped
 * in, when there is one), as the run's final evaluation. */
static ex_code score(ex_trainer *base, int average, ex_error *err)
{
    double loss = NAN;
    size_t bytes = 0;
    const ex_code code = evaluate(lt(base), 0, &loss, &bytes, err);
    if (code == EX_OK)
        printf("validation: %.4f bits per character (all %zu bytes after the first; %s)\n",
               loss / LN2, bytes, average ? "the weight average" : "the weights");
    return code;
}

/* The model under PyTorch's names, or folded for inference. */
static ex_code write_model_file(ex_trainer *base, ex_official_use use, const char *path,
                                const char *weights, ex_error *err)
{
    return lm_export(lt(base)->model, use, path, weights, err);
}

static ex_code read_model_file(ex_trainer *base, const char *path, ex_error *err)
{
    return lm_import(lt(base)->model, path, err);
}

static const ex_official_hooks k_files = {read_model_file, write_model_file, score, write_logits};

/* --export, --export-folded; --sample: text from the trained model. */
static ex_code after_run(ex_trainer *base, ex_error *err)
{
    const lm_options *o = &lt(base)->opt;
    const ex_code code = ex_official_export_run(base, err);
    if (code != EX_OK || !ex_dist_is_root(&base->dist) || !o->sample)
        return code;
    printf("sample (temperature %g%s):\n", (double)o->temperature,
           base->average ? ", the weight average" : "");
    /* the model the run evaluated and exported: the average under --ema */
    ex_code sampled = ex_trainer_swap_in_average(base, err);
    if (sampled == EX_OK)
        sampled = generate(lt(base)->model, o->prompt, o->sample, o->temperature, o->run.seed, err);
    ex_trainer_swap_out_average(base);
    return sampled;
}

static void cleanup(ex_trainer *base)
{
    lm_trainer *t = lt(base);
    lm_destroy(t->model);
    lm_text_free(&t->text);
    free(t->tokens);
    free(t->targets);
    free(t->dlogits);
}

static const ex_trainer_hooks k_hooks = {
    .program = "char-lm-train",
    .plot = &k_plot,
    .options = &lm_options_table,
    .other_job = other_job,
    .build = build,
    .describe_data = describe_data,
    .before_training = ex_official_before_training,
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
    .files = &k_files,
};

int main(int argc, char **argv)
{
    static lm_trainer t;
    return ex_trainer_main(&t.base, &k_hooks, &t.opt, argc, argv);
}
