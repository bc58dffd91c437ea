/* char-lm-train: trains a byte-level causal language model with
 * sigmaReparam (or one of the LayerNorm baselines) on the text of Debian's
 * fortunes and jargon-text packages, watching every attention head's
 * entropy; checkpoints and resumes exactly; samples text.
 * `char-lm-train --help`.
 *
 * The jobs, in the order main runs them: parse the options; or plot an
 * existing metrics file; or sample from a checkpoint (--generate); load
 * the text and print the count-model baselines; build the model, the
 * optimizer and the buffers; train (fresh or resumed) until the steps or
 * the minutes run out, each step followed by the entropy watch, the
 * metrics, the progress line, the evaluations and the checkpoints; then
 * the final validation figure and a sample. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam.h>

#include "budget.h"
#include "common/checkpoint_file.h"
#include "common/collapse_log.h"
#include "common/dist.h"
#include "common/error.h"
#include "common/metrics.h"
#include "common/plot.h"
#include "common/progress.h"
#include "common/run_state.h"
#include "common/tensors.h"
#include "common/test_hooks.h"
#include "lm_options.h"
#include "model.h"
#include "text.h"

#define LN2 0.69314718055994530942 /* nats per bit */
#define CONFIG_FIELDS 10

/* Everything besides the model and the optimizer that a resumed run needs
 * to continue exactly: it all goes into the checkpoint. */
typedef struct {
    ex_run_state base; /* step, seconds, metrics lines, fingerprint */
    srp_rng data_rng;
    lm_budget budget; /* --minutes without --steps: the schedule's plans */
} run_state;

typedef struct {
    float loss, lr, grad_norm;
} step_record;

typedef struct {
    lm_options opt;
    ex_dist dist;       /* one process, or this rank of an mpirun job */
    size_t local_batch; /* this rank's share of the batch */
    lm_text text;
    lm_baselines baselines;
    lm_model *model;
    srp_param_list *param_list;
    srp_optim *optim;
    srp_lr_schedule schedule;
    run_state run;
    uint64_t config[CONFIG_FIELDS]; /* the model's shape, for --generate */
    ex_metrics metrics;
    ex_collapse_log watch;
    ex_progress progress;
    /* per-step buffers */
    uint32_t *tokens;                                 /* [batch][context] */
    int *targets;                                     /* [batch][context]: the next bytes */
    float *dlogits;                                   /* [batch][context][256] */
    float *ent_mean, *ent_min, *ent_norm, *ent_bound; /* [layers][heads] */
    float *bound_s, *bound_m_norm;                    /* [layers][heads]: the bound's terms */
    float *bound_x_norm;                              /* [layers] */
    float *linear_values;                             /* [linears] */
    double clock; /* --minutes: the budget's seconds used, by rank 0's clock */
    uint64_t steps_this_run;
    float best_val_bpc;
} trainer;

static const ex_plot_spec k_plot = {"bpc",           "bpc",        "bits per character",
                                    "train (batch)", "validation", 0};

/* ---------------------------------------------------------------------
 * Data
 * --------------------------------------------------------------------- */

static ex_code load_text(trainer *t, ex_error *err)
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

/* A training batch: random windows of the training text, each with the
 * bytes that follow its positions. Every rank draws the whole batch's
 * windows and keeps its share of them. */
static void sample_batch(trainer *t)
{
    const size_t B = t->opt.batch, T = t->opt.model.context;
    const size_t first = (size_t)t->dist.rank * t->local_batch;
    for (size_t b = 0; b < B; b++) {
        const size_t start = (size_t)srp_rng_below(&t->run.data_rng, t->text.train_len - T);
        if (b < first || b >= first + t->local_batch)
            continue;
        const size_t row = b - first;
        for (size_t i = 0; i < T; i++) {
            t->tokens[row * T + i] = t->text.train[start + i];
            t->targets[row * T + i] = t->text.train[start + i + 1];
        }
    }
}

/* ---------------------------------------------------------------------
 * Set-up
 * --------------------------------------------------------------------- */

/* The optimizer over the model's parameters: gammas at --gamma-lr-mult,
 * embeddings and biases at --embed-lr-mult, the rest at the lr. */
static ex_code build_optimizer(trainer *t, ex_error *err)
{
    const lm_options *o = &t->opt;
    srp_status st = srp_param_list_create(&t->param_list);
    if (st == SRP_OK)
        st = lm_model_params(t->model, t->param_list);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "parameter list");
    srp_param *params = srp_param_list_entries(t->param_list);
    const size_t count = srp_param_list_count(t->param_list);
    for (size_t i = 0; i < count; i++) {
        const srp_param_kind kind = srp_param_list_kind(t->param_list, i);
        if (kind == SRP_PARAM_GAMMA)
            params[i].lr_mult = o->gamma_lr_mult;
        else if (kind == SRP_PARAM_EMBEDDING || kind == SRP_PARAM_BIAS)
            params[i].lr_mult = o->embed_lr_mult;
    }
    srp_optim_config oc = srp_optim_config_default((srp_optim_kind)o->optimizer);
    oc.weight_decay = o->weight_decay;
    oc.momentum = o->momentum;
    oc.beta2 = o->beta2;
    st = srp_optim_create(&t->optim, params, count, &oc);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "creating the optimizer");
}

/* The lr schedule: --steps long; with --minutes alone, its length comes
 * from the budget's plans (budget.h), and t->schedule gives its kind,
 * rates and warmup. */
static void set_schedule(trainer *t)
{
    const lm_options *o = &t->opt;
    t->schedule = srp_lr_schedule_default((srp_lr_kind)o->schedule, o->lr,
                                          o->steps ? o->steps : (uint64_t)1 << 40);
    t->schedule.warmup_steps = o->warmup_steps;
    t->schedule.min_lr = o->min_lr;
    lm_budget_init(&t->run.budget);
}

/* The schedule's length; 0 while the budget has not planned it yet. */
static uint64_t schedule_steps(const trainer *t)
{
    return t->opt.steps ? t->opt.steps : lm_budget_total(&t->run.budget);
}

static float lr_at(const trainer *t, uint64_t step)
{
    return t->opt.steps ? srp_lr_at(&t->schedule, step)
                        : lm_budget_lr(&t->run.budget, &t->schedule, step);
}

static void model_config_record(const lm_config *c, uint64_t *rec)
{
    const uint64_t v[CONFIG_FIELDS] = {c->context,    c->dim,      c->depth,     c->heads,
                                       c->mlp_dim,    c->arch,     c->positions, c->tied_head,
                                       c->gamma_init, c->qkv_sigma};
    memcpy(rec, v, sizeof(v));
}

static ex_code build(trainer *t, ex_error *err)
{
    lm_options *o = &t->opt;
    ex_code code = ex_dist_split_batch(&t->dist, o->batch, &t->local_batch, err);
    if (code != EX_OK)
        return code;
    o->model.max_batch = t->local_batch;
    srp_status st = lm_create(&t->model, &o->model);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the model");
    model_config_record(&o->model, t->config);
    code = build_optimizer(t, err);
    if (code != EX_OK)
        return code;
    if (o->steps && o->warmup_steps >= o->steps)
        return ex_fail(err, EX_USAGE, "--warmup %llu must be below --steps %llu",
                       (unsigned long long)o->warmup_steps, (unsigned long long)o->steps);
    set_schedule(t);
    const size_t rows = t->local_batch * o->model.context;
    const size_t lh = o->model.depth * o->model.heads, nlin = lm_linears(t->model)->count;
    t->tokens = malloc(sizeof(uint32_t) * rows);
    t->targets = malloc(sizeof(int) * rows);
    t->dlogits = malloc(sizeof(float) * rows * LM_VOCAB);
    t->ent_mean = malloc(sizeof(float) * lh);
    t->ent_min = malloc(sizeof(float) * lh);
    t->ent_norm = malloc(sizeof(float) * lh);
    t->ent_bound = malloc(sizeof(float) * lh);
    t->bound_s = malloc(sizeof(float) * lh);
    t->bound_m_norm = malloc(sizeof(float) * lh);
    t->bound_x_norm = malloc(sizeof(float) * o->model.depth);
    t->linear_values = malloc(sizeof(float) * (nlin ? nlin : 1));
    if (!t->tokens || !t->targets || !t->dlogits || !t->ent_mean || !t->ent_min || !t->ent_norm ||
        !t->ent_bound || !t->bound_s || !t->bound_m_norm || !t->bound_x_norm || !t->linear_values)
        return ex_fail_status(err, SRP_ERR_NOMEM, "buffers");
    t->best_val_bpc = INFINITY;
    /* The watch sees each head's mean entropy over log(keys) per row: 1 is
     * uniform attention whatever the row's length. */
    srp_collapse_config cc = srp_collapse_config_default(o->model.depth, o->model.heads);
    cc.window = o->collapse_window;
    cc.fraction = o->collapse_fraction;
    cc.drop = o->collapse_drop;
    cc.uniform = 1.0f;
    return ex_collapse_log_init(&t->watch, &cc, err);
}

/* ---------------------------------------------------------------------
 * Checkpoints
 * --------------------------------------------------------------------- */

/* The model's tensors and its shape ("model.config"): what --generate
 * needs. */
typedef struct {
    lm_model *model; /* NULL: the shape alone */
    uint64_t *config;
} model_state;

static void model_tensors(void *ctx, srp_tensor_list *list)
{
    const model_state *s = ctx;
    const size_t n = CONFIG_FIELDS;
    srp_tensor_list_add(list, "model.config", NULL, SRP_DTYPE_U64, 1, &n, s->config);
    if (s->model)
        lm_model_state_refs(s->model, list);
}

/* All tensors of a checkpoint: the model's first, then the optimizer's
 * and the run's. */
static void checkpoint_tensors(void *ctx, srp_tensor_list *list)
{
    trainer *t = ctx;
    model_state model = {t->model, t->config};
    model_tensors(&model, list);
    srp_optim_state_refs(t->optim, list);
    const size_t four = 4;
    ex_run_tensors(&t->run.base, list);
    srp_tensor_list_add(list, "train.data_rng", NULL, SRP_DTYPE_U64, 1, &four, t->run.data_rng.s);
    lm_budget *b = &t->run.budget;
    const size_t plans = LM_BUDGET_PLANS;
    srp_tensor_list_add(list, "train.budget.count", NULL, SRP_DTYPE_U64, 0, NULL, &b->count);
    srp_tensor_list_add(list, "train.budget.steps", NULL, SRP_DTYPE_U64, 1, &plans, b->steps);
    srp_tensor_list_add(list, "train.budget.totals", NULL, SRP_DTYPE_U64, 1, &plans, b->totals);
    srp_tensor_list_add(list, "train.budget.clocks", NULL, SRP_DTYPE_F64, 1, &plans, b->clocks);
    srp_tensor_list_add(list, "train.budget.from_step", NULL, SRP_DTYPE_U64, 0, NULL,
                        &b->from_step);
    srp_tensor_list_add(list, "train.budget.from_clock", NULL, SRP_DTYPE_F64, 0, NULL,
                        &b->from_clock);
    srp_tensor_list_add(list, "train.best_val_bpc", NULL, SRP_DTYPE_F32, 0, NULL, &t->best_val_bpc);
    srp_collapse_state_refs(t->watch.watch, "train.collapse", list);
}

/* The model's configuration, saved with every checkpoint and checked on
 * every load: the options that make the model, by their names. */
static void model_metadata(const lm_config *c, ex_metadata *meta)
{
    static const char *const gamma_inits[] = {"sigma0", "one"};
    static const char *const qkv_sigmas[] = {"fused", "qk-v", "separate"};
    ex_metadata_init(meta, "char-lm", NULL);
    ex_metadata_add(meta, "arch", "%s", lm_arch_name(c->arch));
    ex_metadata_add(meta, "context", "%zu", c->context);
    ex_metadata_add(meta, "dim", "%zu", c->dim);
    ex_metadata_add(meta, "depth", "%zu", c->depth);
    ex_metadata_add(meta, "heads", "%zu", c->heads);
    ex_metadata_add(meta, "mlp-dim", "%zu", c->mlp_dim);
    ex_metadata_add(meta, "positions", "%s", c->positions == LM_POS_FIXED ? "fixed" : "learned");
    ex_metadata_add(meta, "tied-head", "%d", c->tied_head);
    ex_metadata_add(meta, "gamma-init", "%s", gamma_inits[c->gamma_init]);
    ex_metadata_add(meta, "qkv-sigma", "%s", qkv_sigmas[c->qkv_sigma]);
}

/* Rank 0 writes; every rank learns whether that worked. */
static ex_code save_checkpoint(trainer *t, ex_error *err)
{
    if (!t->opt.checkpoint_path)
        return EX_OK;
    ex_code code = EX_OK;
    if (ex_dist_is_root(&t->dist)) {
        ex_metadata meta;
        model_metadata(lm_get_config(t->model), &meta);
        code = ex_run_save(&t->run.base, checkpoint_tensors, t, t->metrics.lines,
                           t->opt.checkpoint_path, &meta, err);
    }
    return ex_dist_agree(&t->dist, code, err);
}

static ex_code load_checkpoint(trainer *t, const char *path, ex_error *err)
{
    ex_metadata meta;
    model_metadata(lm_get_config(t->model), &meta);
    return ex_run_load(&t->run.base, checkpoint_tensors, t, path, 0, &meta, err);
}

/* ---------------------------------------------------------------------
 * Evaluation and sampling
 * --------------------------------------------------------------------- */

/* Mean loss (nats per byte) of eval forwards over windows of the
 * validation text: consecutive windows of context bytes, each predicting
 * its next bytes; `windows` of them spread evenly over the text, or with
 * windows 0 all of them and one more that ends at the text's end, whose
 * last positions score the bytes the whole windows left: every byte after
 * the first is then scored once (*bytes_out). The ranks take turns at the
 * batches (of each one's share). */
static ex_code evaluate(trainer *t, size_t windows, double *loss_out, size_t *bytes_out,
                        ex_error *err)
{
    const size_t B = t->local_batch, T = t->opt.model.context, ranks = (size_t)t->dist.size;
    const size_t V = LM_VOCAB, all = (t->text.val_len - 1) / T;
    const int every = windows == 0 || windows >= all;
    const size_t n = every ? all : windows;
    const size_t stride = all / n;                                 /* in windows */
    const size_t tail = every ? t->text.val_len - 1 - all * T : 0; /* bytes after window n - 1 */
    const size_t count = n + (tail > 0);                           /* the tail's window last */
    double sum = 0.0;                                              /* nats over the bytes */
    ex_code code = EX_OK;
    for (size_t first = (size_t)t->dist.rank * B; first < count && code == EX_OK;
         first += ranks * B) {
        const size_t rows = count - first < B ? count - first : B;
        const size_t whole = first + rows > n ? rows - 1 : rows; /* rows before the tail's */
        for (size_t r = 0; r < rows; r++) {
            const size_t start = first + r < n ? (first + r) * stride * T : t->text.val_len - 1 - T;
            for (size_t i = 0; i < T; i++) {
                t->tokens[r * T + i] = t->text.val[start + i];
                t->targets[r * T + i] = t->text.val[start + i + 1];
            }
        }
        const float *logits;
        float loss = 0.0f, tail_loss = 0.0f;
        srp_status st = lm_forward(t->model, t->tokens, rows, T, SRP_EVAL, &logits);
        if (st == SRP_OK && ex_test_fail_due(t->dist.rank, t->run.base.step, "eval")) {
            code = ex_test_fail(err, t->run.base.step, "eval");
            break;
        }
        if (st == SRP_OK && whole)
            st = srp_cross_entropy_forward(logits, t->targets, whole * T, V, 0.0f, &loss);
        if (st == SRP_OK && whole < rows) {
            const size_t at = whole * T + T - tail; /* the tail window's last positions */
            st = srp_cross_entropy_forward(logits + at * V, t->targets + at, tail, V, 0.0f,
                                           &tail_loss);
        }
        if (st == SRP_ERR_NUMERIC) { /* a diverged model: say so, do not stop */
            loss = tail_loss = INFINITY;
            st = SRP_OK;
        }
        if (st != SRP_OK)
            code = ex_fail_status(err, st, "evaluation");
        sum += (double)loss * (double)(whole * T) + (whole < rows ? (double)tail_loss * tail : 0.0);
    }
    if ((code = ex_dist_agree(&t->dist, code, err)) != EX_OK)
        return code;
    const srp_status st = ex_dist_sum(&t->dist, &sum, 1);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "summing the evaluation over the ranks");
    *bytes_out = n * T + tail;
    *loss_out = sum / (double)*bytes_out;
    return EX_OK;
}

/* Prints n generated bytes after the prompt. Each step feeds the last
 * context bytes (or the text so far, padded: causal attention lets no
 * later position change an earlier one's logits) and draws the next byte
 * from softmax(logits / temperature) of the last real position. */
static ex_code generate(lm_model *m, const char *prompt, size_t n, float temperature, uint64_t seed,
                        ex_error *err)
{
    const size_t T = lm_get_config(m)->context;
    const size_t plen = prompt ? strlen(prompt) : 0;
    uint8_t *text = malloc(plen + n + 1);
    uint32_t *window = calloc(T, sizeof(uint32_t));
    double p[LM_VOCAB];
    if (!text || !window) {
        free(text);
        free(window);
        return ex_fail_status(err, SRP_ERR_NOMEM, "sampling");
    }
    size_t len = 0;
    if (plen)
        memcpy(text, prompt, plen);
    else
        text[0] = '\n'; /* no prompt: start as after a document */
    len = plen ? plen : 1;
    srp_rng rng;
    srp_rng_seed(&rng, seed ^ 0x5a3913ull);
    if (plen)
        fwrite(prompt, 1, plen, stdout);
    for (size_t k = 0; k < n; k++) {
        const size_t used = len < T ? len : T;
        for (size_t i = 0; i < used; i++)
            window[i] = text[len - used + i];
        const float *logits;
        const srp_status st = lm_forward(m, window, 1, T, SRP_EVAL, &logits);
        if (st != SRP_OK) {
            free(text);
            free(window);
            return ex_fail_status(err, st, "sampling");
        }
        const float *row = logits + (used - 1) * LM_VOCAB;
        double max = -INFINITY, z = 0.0;
        for (int c = 0; c < LM_VOCAB; c++)
            max = fmax(max, (double)row[c] / temperature);
        for (int c = 0; c < LM_VOCAB; c++)
            z += p[c] = exp((double)row[c] / temperature - max);
        double u = srp_rng_uniform(&rng) * z;
        int next = LM_VOCAB - 1;
        for (int c = 0; c < LM_VOCAB; c++)
            if ((u -= p[c]) < 0.0) {
                next = c;
                break;
            }
        text[len++] = (uint8_t)next;
        fputc(next, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
    free(text);
    free(window);
    return EX_OK;
}

/* --generate: the model out of a checkpoint, with the shape it records. */
static ex_code generate_from_checkpoint(const lm_options *o, ex_error *err)
{
    uint64_t config[CONFIG_FIELDS];
    /* The shape first, to build the model that the rest is checked against. */
    const srp_tensor_ref shape = {"model.config", SRP_DTYPE_U64, 1, {CONFIG_FIELDS}, config};
    const srp_status loaded = srp_checkpoint_load(o->generate_path, &shape, 1);
    if (loaded != SRP_OK)
        return ex_fail_statusf(err, loaded, "loading the checkpoint %s", o->generate_path);
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
    lm_model *m = NULL;
    srp_status st = config[5] < LM_ARCH_COUNT && config[6] <= LM_POS_FIXED &&
                            config[8] <= SRP_GAMMA_INIT_ONE && config[9] <= SRP_QKV_SIGMA_SEPARATE
                        ? lm_create(&m, &c)
                        : SRP_ERR_FORMAT;
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "%s: its model configuration is not valid",
                               o->generate_path);
    model_state model = {m, config};
    ex_metadata meta;
    model_metadata(&c, &meta);
    ex_code code = ex_tensors_load(model_tensors, &model, o->generate_path, 1, &meta, err);
    /* The file wrote each sigma into its layer: a bad one is refused. */
    for (size_t i = 0; code == EX_OK && i < lm_linears(m)->count; i++) {
        srp_linear *l = lm_linears(m)->linears[i];
        if ((st = srp_linear_set_sigma(l, srp_linear_sigma(l))) != SRP_OK)
            code = ex_fail_statusf(err, st, "%s: a sigma in it is not valid", o->generate_path);
    }
    if (code == EX_OK)
        code = generate(m, o->prompt, o->sample, o->temperature, o->seed, err);
    lm_destroy(m);
    return code;
}

/* ---------------------------------------------------------------------
 * Training
 * --------------------------------------------------------------------- */

/* One optimization step: this rank's share of the batch (all of it in one
 * process), its gradients averaged with the other ranks'. */
static ex_code train_step(trainer *t, step_record *rec, ex_error *err)
{
    const lm_options *o = &t->opt;
    const size_t rows = t->local_batch * o->model.context;
    sample_batch(t);
    const float *logits;
    float loss = NAN, norm = NAN;
    const char *stage = "activations"; /* the part of the step under way, for its error */
    srp_status st =
        lm_forward(t->model, t->tokens, t->local_batch, o->model.context, SRP_TRAIN, &logits);
    if (st == SRP_OK) {
        stage = "loss";
        st = srp_cross_entropy_forward(logits, t->targets, rows, LM_VOCAB, 0.0f, &loss);
    }
    if (st == SRP_OK) {
        stage = "gradient";
        st = srp_cross_entropy_backward(logits, t->targets, rows, LM_VOCAB, 0.0f, t->dlogits);
    }
    if (st == SRP_OK)
        st = lm_backward(t->model, t->dlogits);
    st = ex_dist_average_gradients(&t->dist, st); /* every rank, failed or not */
    if (st == SRP_OK)
        st = srp_optim_clip_grad_norm(t->optim, o->clip > 0.0f ? o->clip : FLT_MAX, &norm);
    const float lr = lr_at(t, t->run.base.step);
    if (st == SRP_OK) {
        stage = "weights";
        st = srp_optim_step(t->optim, lr);
    }
    const int injected =
        st == SRP_OK && ex_test_fail_due(t->dist.rank, t->run.base.step + 1, "step");
    if (injected)
        st = SRP_ERR_UNSUPPORTED;
    /* The batch's loss over the ranks, and whether every rank got through
     * its optimizer step: a rank that failed alone there must not leave
     * the others waiting in the next collective call. */
    double loss_sum = loss;
    st = ex_dist_sum_agree(&t->dist, &loss_sum, 1, st);
    if (st == SRP_OK)
        st = ex_dist_sync_spectral(&t->dist);
    if (injected)
        return ex_test_fail(err, t->run.base.step + 1, "step");
    if (st == SRP_ERR_PEER)
        return ex_fail(err, EX_FAILED,
                       "step %llu failed on another rank (its message says why); every rank stops",
                       (unsigned long long)t->run.base.step + 1);
    if (st == SRP_ERR_NUMERIC) {
        ex_fail(err, EX_NONFINITE, "the %s became non-finite at step %llu; training stopped.%s%s",
                stage, (unsigned long long)t->run.base.step,
                o->checkpoint_path ? " The last good checkpoint is " : "",
                o->checkpoint_path ? o->checkpoint_path : "");
        ex_append_detail(err, st);
        return EX_NONFINITE;
    }
    if (st != SRP_OK)
        return ex_fail_status(err, st, "training step");
    srp_optim_zero_grad(t->optim);
    rec->loss = (float)(loss_sum / (double)t->dist.size);
    rec->lr = lr;
    rec->grad_norm = norm;
    return EX_OK;
}

/* Per-head entropy of the last forward, and with_bound the bound too, of
 * the whole global batch: every rank reads its share's, they agree that
 * every rank could, then the figures are reduced over the ranks. */
static ex_code collect_entropy(trainer *t, int with_bound, ex_error *err)
{
    const size_t H = t->opt.model.heads, lh = t->opt.model.depth * H;
    srp_status st = SRP_OK;
    for (size_t l = 0; l < t->opt.model.depth && st == SRP_OK; l++) {
        srp_attention *a = lm_attention_at(t->model, l);
        st = srp_attention_entropy(a, t->ent_mean + l * H, t->ent_min + l * H);
        if (st == SRP_OK)
            st = srp_attention_entropy_normalized(a, t->ent_norm + l * H, NULL);
        if (st == SRP_OK && with_bound)
            st = srp_attention_entropy_bound_terms(a, t->ent_bound + l * H, t->bound_s + l * H,
                                                   t->bound_m_norm + l * H, t->bound_x_norm + l);
    }
    const ex_code code =
        ex_dist_agree_status(&t->dist, st, "attention entropy", "entropy", t->run.base.step, err);
    if (code != EX_OK)
        return code;
    /* Means averaged over the ranks' equal shares; minimums the least of
     * the ranks'. Causal attention's bound is on each rank's mean row
     * entropy (attention.h), so the mean of the ranks' bounds bounds the
     * mean of their means over equal shares: the batch's mean, logged
     * beside it. Its terms, s and the norms, are the largest of the
     * ranks'. */
    st = ex_dist_mean_min(&t->dist, t->ent_mean, t->ent_min, lh);
    if (st == SRP_OK)
        st = ex_dist_mean_min(&t->dist, t->ent_norm, NULL, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_mean_min(&t->dist, t->ent_bound, NULL, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_max(&t->dist, t->bound_s, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_max(&t->dist, t->bound_m_norm, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_max(&t->dist, t->bound_x_norm, t->opt.model.depth);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "attention entropy over the ranks");
}

static void write_train_metrics(trainer *t, const step_record *rec, int with_bound)
{
    const size_t L = t->opt.model.depth, H = t->opt.model.heads;
    ex_metrics *m = &t->metrics;
    ex_metrics_begin(m, "train");
    ex_metrics_number(m, "step", (double)t->run.base.step);
    ex_metrics_number(m, "seconds", ex_run_seconds(&t->run.base));
    ex_metrics_number(m, "loss", rec->loss);
    ex_metrics_number(m, "bpc", rec->loss / LN2);
    ex_metrics_number(m, "lr", rec->lr);
    ex_metrics_number(m, "grad_norm", rec->grad_norm);
    ex_metrics_matrix(m, "entropy_mean", t->ent_mean, L, H);
    ex_metrics_matrix(m, "entropy_min", t->ent_min, L, H);
    ex_metrics_matrix(m, "entropy_normalized", t->ent_norm, L, H);
    if (with_bound) {
        ex_metrics_matrix(m, "entropy_bound", t->ent_bound, L, H);
        ex_metrics_matrix(m, "entropy_bound_s", t->bound_s, L, H);
        ex_metrics_matrix(m, "entropy_bound_m_norm", t->bound_m_norm, L, H);
        ex_metrics_vector(m, "entropy_bound_x_gram_norm", t->bound_x_norm, L);
    }
    const size_t nlin = lm_linears(t->model)->count;
    for (int which = 0; which < 2; which++) {
        for (size_t i = 0; i < nlin; i++) {
            srp_linear *l = lm_linears(t->model)->linears[i];
            t->linear_values[i] = which == 0 ? srp_linear_sigma(l) : *srp_linear_gamma(l);
        }
        ex_metrics_named(m, which == 0 ? "sigma" : "gamma", lm_linears(t->model)->names,
                         t->linear_values, nlin);
    }
    ex_metrics_end(m);
}

static void print_progress(trainer *t, const step_record *rec)
{
    const size_t lh = t->opt.model.depth * t->opt.model.heads;
    float lowest = INFINITY;
    for (size_t i = 0; i < lh; i++)
        lowest = fminf(lowest, t->ent_norm[i]);
    const double per_step = (ex_now() - t->run.base.started) / (double)t->steps_this_run;
    char elapsed[32];
    ex_format_duration(ex_run_seconds(&t->run.base), elapsed, sizeof(elapsed));
    ex_progress_print(&t->progress, t->run.base.step,
                      "step %llu/%llu | %s | %.0f bytes/s | loss %.4f = %.3f bits/char | lr %.3g "
                      "| lowest head entropy %.2f of uniform",
                      (unsigned long long)t->run.base.step, (unsigned long long)schedule_steps(t),
                      elapsed, (double)(t->opt.batch * t->opt.model.context) / per_step, rec->loss,
                      rec->loss / LN2, rec->lr, lowest);
}

static ex_code write_eval(trainer *t, size_t windows, int final, ex_error *err)
{
    double loss = NAN;
    size_t bytes = 0;
    const ex_code code = evaluate(t, windows, &loss, &bytes, err);
    if (code != EX_OK)
        return code;
    const double bpc = loss / LN2;
    ex_metrics_begin(&t->metrics, "eval");
    ex_metrics_string(&t->metrics, "set", "val");
    ex_metrics_number(&t->metrics, "step", (double)t->run.base.step);
    ex_metrics_number(&t->metrics, "seconds", ex_run_seconds(&t->run.base));
    ex_metrics_number(&t->metrics, "loss", loss);
    ex_metrics_number(&t->metrics, "bpc", bpc);
    ex_metrics_number(&t->metrics, "windows", (double)(windows ? windows : 0));
    ex_metrics_number(&t->metrics, "bytes", (double)bytes);
    ex_metrics_end(&t->metrics);
    ex_progress_break(&t->progress);
    if (final)
        printf("validation: %.4f bits per character (all %zu bytes after the first; bigram "
               "%.4f, unigram %.4f)\n",
               bpc, bytes, t->baselines.bigram_bpc, t->baselines.unigram_bpc);
    else
        printf("step %llu: validation %.4f bits per character (%zu windows)\n",
               (unsigned long long)t->run.base.step, bpc, windows);
    if (bpc < t->best_val_bpc)
        t->best_val_bpc = (float)bpc;
    return EX_OK;
}

/* Rank 0's budget clock on every rank (the test clock with EX_TEST_CLOCK):
 * every rank then plans and stops at the same step. */
static double budget_clock(trainer *t)
{
    double clock;
    if (!ex_test_clock(t->run.base.step, &clock))
        clock = ex_run_seconds(&t->run.base);
    ex_dist_broadcast(&t->dist, &clock, 1);
    return clock;
}

/* With --minutes and no --steps: the schedule's length, planned and
 * planned again as the budget is used (budget.h). */
static void plan_schedule(trainer *t)
{
    const lm_options *o = &t->opt;
    double per_step;
    if (o->steps || !lm_budget_update(&t->run.budget, (double)o->minutes * 60.0, t->run.base.step,
                                      t->clock, o->warmup_steps + 1, &per_step))
        return;
    const lm_budget *b = &t->run.budget;
    ex_progress_break(&t->progress);
    printf("plan %llu at step %llu (%.0f%% of the budget): %.0f ms per step, so the schedule runs "
           "%llu steps in the %.4g minutes\n",
           (unsigned long long)b->count, (unsigned long long)t->run.base.step,
           100.0 * t->clock / ((double)o->minutes * 60.0), per_step * 1e3,
           (unsigned long long)lm_budget_total(b), (double)o->minutes);
    ex_metrics_begin(&t->metrics, "plan");
    ex_metrics_number(&t->metrics, "step", (double)t->run.base.step);
    ex_metrics_number(&t->metrics, "budget_seconds", t->clock);
    ex_metrics_number(&t->metrics, "ms_per_step", per_step * 1e3);
    ex_metrics_number(&t->metrics, "schedule_steps", (double)lm_budget_total(b));
    ex_metrics_end(&t->metrics);
}

static ex_code after_step(trainer *t, const step_record *rec, ex_error *err)
{
    const lm_options *o = &t->opt;
    const int log_now = t->run.base.step % o->log_every == 0;
    const int bound_now = o->bound_every && t->run.base.step % o->bound_every == 0;
    ex_code code = collect_entropy(t, bound_now, err);
    if (code != EX_OK)
        return code;
    size_t warnings = 0;
    if ((code = ex_collapse_log_update(&t->watch, t->run.base.step, t->ent_norm,
                                       ex_dist_is_root(&t->dist), &t->metrics, &t->progress,
                                       &warnings, err)) != EX_OK)
        return code;
    if (warnings && o->stop_on_collapse) {
        code = save_checkpoint(t, err);
        return code != EX_OK ? code
                             : ex_fail(err, EX_COLLAPSE,
                                       "stopped on entropy collapse (--stop-on-collapse)%s%s",
                                       o->checkpoint_path ? "; checkpoint " : "",
                                       o->checkpoint_path ? o->checkpoint_path : "");
    }
    if (log_now || bound_now)
        write_train_metrics(t, rec, bound_now);
    if (ex_progress_due(&t->progress, t->run.base.step))
        print_progress(t, rec);
    if (o->check_replicas && t->run.base.step % o->check_replicas == 0 &&
        (code = ex_dist_check_replicas(&t->dist, t->run.base.step, err)) != EX_OK)
        return code;
    if (t->run.base.step % o->eval_every == 0 &&
        (code = write_eval(t, o->eval_windows, 0, err)) != EX_OK)
        return code;
    return t->run.base.step % o->checkpoint_every == 0 ? save_checkpoint(t, err) : EX_OK;
}

/* Whether the run has reached its end: the schedule's steps, or the
 * minutes (t->clock, rank 0's). */
static int finished(const trainer *t)
{
    const uint64_t total = schedule_steps(t);
    if (total && t->run.base.step >= total)
        return 1;
    return t->opt.minutes > 0.0f && t->clock >= (double)t->opt.minutes * 60.0;
}

/* The last line of the training: the steps and time, and with --minutes
 * how much of the budget the run used and whether the schedule ended. */
static void report_training(trainer *t)
{
    const lm_options *o = &t->opt;
    ex_progress_break(&t->progress);
    printf("trained %llu steps in %.0f s", (unsigned long long)t->run.base.step,
           ex_run_seconds(&t->run.base));
    if (!(o->minutes > 0.0f)) {
        printf("\n");
        return;
    }
    const double budget = (double)o->minutes * 60.0, used = t->clock / budget;
    const uint64_t total = schedule_steps(t);
    printf(": %.1f%% of the %.4g-minute budget; ", 100.0 * used, (double)o->minutes);
    if (total && t->run.base.step >= total)
        printf("the schedule ran to its end\n");
    else
        printf("the budget ran out at step %llu of the schedule's %llu\n",
               (unsigned long long)t->run.base.step, (unsigned long long)total);
    ex_metrics_begin(&t->metrics, "budget");
    ex_metrics_number(&t->metrics, "step", (double)t->run.base.step);
    ex_metrics_number(&t->metrics, "schedule_steps", (double)total);
    ex_metrics_number(&t->metrics, "minutes", o->minutes);
    ex_metrics_number(&t->metrics, "budget_used", used);
    ex_metrics_number(&t->metrics, "plans", (double)t->run.budget.count);
    ex_metrics_end(&t->metrics);
}

static ex_code train(trainer *t, ex_error *err)
{
    const lm_options *o = &t->opt;
    t->run.base.started = ex_now();
    ex_progress_start(&t->progress);
    t->progress.last_step = t->run.base.step;
    srp_profile_enable(o->profile);
    for (;;) {
        if (o->minutes > 0.0f) /* one broadcast a step */
            t->clock = budget_clock(t);
        plan_schedule(t);
        if (finished(t))
            break;
        if (o->stop_after_steps && t->run.base.step >= o->stop_after_steps) {
            ex_progress_break(&t->progress);
            printf("stopped after step %llu as asked (--stop-after-steps; %.1f ms per step in "
                   "this run); resume with --resume %s\n",
                   (unsigned long long)t->run.base.step,
                   1e3 * (ex_now() - t->run.base.started) /
                       (double)(t->steps_this_run ? t->steps_this_run : 1),
                   o->checkpoint_path ? o->checkpoint_path : "(no --checkpoint given)");
            return save_checkpoint(t, err);
        }
        step_record rec = {NAN, NAN, NAN};
        ex_code code = train_step(t, &rec, err);
        if (code != EX_OK)
            return code;
        t->run.base.step++;
        t->steps_this_run++;
        if ((code = after_step(t, &rec, err)) != EX_OK)
            return code;
    }
    report_training(t);
    ex_code code = write_eval(t, 0, 1, err);
    if (code == EX_OK)
        code = save_checkpoint(t, err);
    return code;
}

static void write_header(trainer *t)
{
    const lm_options *o = &t->opt;
    ex_metrics *m = &t->metrics;
    ex_metrics_begin(m, "header");
    ex_metrics_string(m, "model", "char-lm");
    ex_metrics_string(m, "arch", lm_arch_name(o->model.arch));
    ex_metrics_number(m, "layers", (double)o->model.depth);
    ex_metrics_number(m, "heads", (double)o->model.heads);
    ex_metrics_number(m, "tokens", (double)o->model.context);
    ex_metrics_number(m, "log_tokens", log((double)o->model.context));
    ex_metrics_number(m, "train_bytes", (double)t->text.train_len);
    ex_metrics_number(m, "val_bytes", (double)t->text.val_len);
    ex_metrics_number(m, "documents", (double)t->text.documents);
    ex_metrics_number(m, "duplicates_dropped", (double)t->text.duplicates);
    ex_metrics_number(m, "unigram_bpc", t->baselines.unigram_bpc);
    ex_metrics_number(m, "bigram_bpc", t->baselines.bigram_bpc);
    ex_metrics_string(m, "config", t->run.base.fingerprint);
    ex_metrics_end(m);
}

/* The jobs of a run after the options: see the top of this file. */
static ex_code run(trainer *t, ex_error *err)
{
    lm_options *o = &t->opt;
    if (o->plot_only) {
        if (!ex_dist_is_root(&t->dist))
            return EX_OK;
        const ex_code code = ex_plot(o->plot_only, o->plot_path, &k_plot, err);
        if (code == EX_OK)
            printf("wrote %s\n", o->plot_path);
        return code;
    }
    srp_set_num_threads((int)o->threads);
    if (o->generate_path)
        return ex_dist_is_root(&t->dist) ? generate_from_checkpoint(o, err) : EX_OK;
    printf("char-lm-train: libsigmareparam %s, GEMM backend %s, OpenBLAS kernels %s, %d threads\n",
           srp_version_string(), srp_gemm_backend(), srp_openblas_core(), srp_get_num_threads());
    ex_code code = load_text(t, err);
    if (code == EX_OK)
        code = build(t, err);
    if ((code = ex_dist_agree(&t->dist, code, err)) != EX_OK)
        return code;
    printf("text: %zu documents (%zu repeats of them dropped), %zu training bytes, %zu "
           "validation bytes (every %dth document)\n",
           t->text.documents, t->text.duplicates, t->text.train_len, t->text.val_len, LM_VAL_EVERY);
    printf("baselines on the validation text: unigram %.4f, bigram %.4f bits per character\n",
           t->baselines.unigram_bpc, t->baselines.bigram_bpc);
    lm_options_fingerprint(o, t->run.base.fingerprint, sizeof(t->run.base.fingerprint));
    t->run.base.ranks = (uint64_t)t->dist.size;
    if ((code = ex_dist_same_options(&t->dist, t->run.base.fingerprint, err)) != EX_OK ||
        (code = ex_dist_attach(&t->dist, srp_param_list_entries(t->param_list),
                               srp_param_list_count(t->param_list), lm_linears(t->model)->linears,
                               lm_linears(t->model)->count, err)) != EX_OK)
        return code;
    ex_dist_describe(&t->dist, stdout);
    srp_rng_seed(&t->run.data_rng, o->seed ^ 0xda7a5eedull);
    if (o->resume_path) {
        if ((code = ex_dist_agree(&t->dist, load_checkpoint(t, o->resume_path, err), err)) != EX_OK)
            return code;
        printf("resumed from %s at step %llu\n", o->resume_path,
               (unsigned long long)t->run.base.step);
    }
    code = ex_metrics_open(&t->metrics, ex_dist_is_root(&t->dist) ? o->metrics_path : NULL,
                           o->resume_path ? t->run.base.metrics_lines : 0, err);
    if ((code = ex_dist_agree(&t->dist, code, err)) != EX_OK)
        return code;
    if (!o->resume_path)
        write_header(t);
    const lm_config *c = lm_get_config(t->model);
    printf("char LM: %s, %zu blocks, dim %zu, %zu heads, context %zu, %s positions, %s head | %s, "
           "lr %g | batch %zu\n",
           lm_arch_name(c->arch), c->depth, c->dim, c->heads, c->context,
           c->positions == LM_POS_FIXED ? "fixed" : "learned", c->tied_head ? "tied" : "untied",
           o->optimizer == SRP_OPTIM_ADAMW  ? "AdamW"
           : o->optimizer == SRP_OPTIM_LARS ? "LARS"
                                            : "SGD",
           (double)o->lr, o->batch);
    if ((code = train(t, err)) != EX_OK)
        return code;
    if (o->profile)
        ex_print_profile(stdout, ex_now() - t->run.base.started, t->steps_this_run,
                         "the trainer's own work");
    ex_dist_report(&t->dist, ex_now() - t->run.base.started, stdout);
    if (!ex_dist_is_root(&t->dist))
        return EX_OK;
    if (o->sample) {
        printf("sample (temperature %g):\n", (double)o->temperature);
        if ((code = generate(t->model, o->prompt, o->sample, o->temperature, o->seed, err)) !=
            EX_OK)
            return code;
    }
    return ex_plot_at_end(&t->metrics, o->metrics_path, o->plot_path, &k_plot, err);
}

static void cleanup(trainer *t)
{
    ex_metrics_close(&t->metrics);
    ex_collapse_log_free(&t->watch);
    srp_optim_destroy(t->optim);
    lm_destroy(t->model);
    lm_text_free(&t->text);
    srp_param_list_destroy(t->param_list);
    free(t->tokens);
    free(t->targets);
    free(t->dlogits);
    free(t->ent_mean);
    free(t->ent_min);
    free(t->ent_norm);
    free(t->ent_bound);
    free(t->bound_s);
    free(t->bound_m_norm);
    free(t->bound_x_norm);
    free(t->linear_values);
}

int main(int argc, char **argv)
{
    static trainer t;
    ex_error err = {""};
    ex_report_write_limits();
    ex_code code = ex_dist_init(&t.dist, &argc, &argv, &err);
    lm_options_default(&t.opt);
    if (code == EX_OK)
        code = ex_dist_agree(&t.dist, lm_options_parse(&t.opt, argc, argv, &err), &err);
    if (code == EX_USAGE) {
        fprintf(stderr, "%s: %s\n\n", argv[0], err.message);
        if (ex_dist_is_root(&t.dist))
            lm_options_usage(argv[0], stderr);
        ex_dist_finalize(&t.dist);
        return ex_exit_code(code);
    }
    if (code == EX_OK)
        code = run(&t, &err);
    ex_progress_break(&t.progress);
    if (code != EX_OK && code != EX_HELP)
        ex_dist_print_error(&t.dist, &err);
    cleanup(&t);
    ex_dist_finalize(&t.dist);
    return ex_exit_code(code);
}
