/* vit-lite-train: trains the ViT-lite on Fashion-MNIST (or MNIST, CIFAR-10,
 * a synthetic set) with sigmaReparam, watching every attention head's
 * entropy; checkpoints and resumes exactly. `vit-lite-train --help`.
 *
 * The skeleton (common/trainer.h) runs the jobs: the options, the run's
 * phases, the loop, the update, the entropy watch, metrics, checkpoints.
 * What is the ViT's own is here: the images and their augmentation, the
 * model, the epochs and their evaluations (with test-time flips and the
 * weight average), --eval-only, --logits, --export and --init-from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam.h>

#include "common/tensors.h"
#include "common/trainer.h"
#include "data.h"
#include "vit_model.h"
#include "official_names.h"
#include "vit_options.h"

typedef struct {
    ex_trainer base;
    vit_options opt;
    vit_data data;
    vit_model *model;
    srp_lr_schedule schedule;
    /* the run's own state, in the checkpoint */
    srp_rng aug_rng;
    uint64_t epoch, pos; /* pos: batches done in this epoch */
    uint64_t *order;     /* [train count]: this epoch's example order */
    uint64_t steps_per_epoch, total_steps;
    /* per-step buffers */
    float *images, *dlogits;
    int *labels;
    unsigned char *flip, *mirror; /* [batch]: this step's flips; all set (TTA) */
    int *shift;                   /* [batch][2]: this step's shifts */
    int *erase;                   /* [batch][4]: this step's erased rectangles */
    float *logits_sum;            /* [batch][classes]: TTA's average */
    float report_at[8];           /* --report-at accuracies, ascending */
    size_t nreport;
    double reached_at[8];      /* seconds when first reached; < 0: not yet */
    const vit_dataset *scored; /* what evaluate() scores */
} vit_trainer;

static const ex_plot_spec k_plot = {.score_key = "acc",
                                    .eval_key = "acc",
                                    .score_title = "accuracy",
                                    .score_label = "train (batch)",
                                    .eval_label = "evaluation",
                                    .unit_range = 1};

static vit_trainer *vt(ex_trainer *t) { return (vit_trainer *)t; }

/* ---- options ---- */

/* --report-at "0.9,0.92" into report_at (ascending). */
static ex_code parse_report_at(vit_trainer *t, ex_error *err)
{
    const char *p = t->opt.report_at;
    t->nreport = 0;
    while (p && *p) {
        char *end = NULL;
        const double v = strtod(p, &end);
        if (end == p || !(v > 0.0 && v <= 1.0) || t->nreport == 8 ||
            (t->nreport && v <= t->report_at[t->nreport - 1]) || (*end != ',' && *end != '\0'))
            return ex_fail(err, EX_USAGE,
                           "--report-at takes up to 8 ascending accuracies in (0, 1], like "
                           "0.9,0.92 (not '%s')",
                           t->opt.report_at);
        t->reached_at[t->nreport] = -1.0;
        t->report_at[t->nreport++] = (float)v;
        p = *end == ',' ? end + 1 : end;
    }
    return EX_OK;
}

/* ---- data and model ---- */

static ex_code load_data(vit_trainer *t, ex_error *err)
{
    const vit_options *o = &t->opt;
    ex_code code;
    switch (o->dataset) {
    case VIT_DATA_SYNTHETIC:
        code = vit_make_synthetic(o->synthetic_train, o->synthetic_test, o->run.seed ^ 0x5717,
                                  &t->data, err);
        break;
    case VIT_DATA_CIFAR10: code = vit_load_cifar10(o->data_dir, &t->data, err); break;
    default:
        code = vit_load_idx(o->data_dir ? o->data_dir : VIT_DEFAULT_DATA_DIR,
                            o->data_dir ? NULL
                                        : "install the Debian package dataset-fashion-mnist "
                                          "(sudo apt-get install dataset-fashion-mnist) or pass "
                                          "--data-dir",
                            &t->data, err);
    }
    return code == EX_OK && o->val ? vit_split_validation(&t->data, o->val, err) : code;
}

/* The images' shape against the model's options. */
static ex_code check_shapes(vit_trainer *t, ex_error *err)
{
    vit_options *o = &t->opt;
    const vit_dataset *tr = &t->data.train;
    if (tr->height != tr->width)
        return ex_fail(err, EX_USAGE, "images are %zux%zu: the model takes square ones", tr->height,
                       tr->width);
    o->model.image_size = tr->height;
    if (tr->height % o->model.patch != 0)
        return ex_fail(err, EX_USAGE, "images are %zux%zu, which patches of %zu do not tile",
                       tr->height, tr->width, o->model.patch);
    if (vit_embed_patch(&o->model) == 0) {
        const size_t side = vit_stem_side(&o->model), grid = tr->height / o->model.patch;
        return ex_fail(err, EX_USAGE,
                       "the stem's last map is %zux%zu, which a %zux%zu grid of patches does not "
                       "tile",
                       side, side, grid, grid);
    }
    if (tr->count < o->run.batch)
        return ex_fail(err, EX_USAGE, "the training set (%zu images) is smaller than a batch (%zu)",
                       tr->count, o->run.batch);
    return EX_OK;
}

/* The optimizer over the model's parameters, each kind with its treatment:
 * gammas (--gamma-lr-mult, --gamma-lars); biases, embeddings and the
 * LayerNorms' scales and shifts (--bias-lr-mult): LARS leaves such vectors
 * out of its trust ratio (You et al. exclude biases and BatchNorm's), so
 * at LARS's lr of about 2 a plain step on a LayerNorm scale of 1 would be
 * far too large; weight matrices at the lr. */
static ex_code build_optimizer(vit_trainer *t, ex_error *err)
{
    const vit_options *o = &t->opt;
    srp_status st = srp_param_list_create(&t->base.params);
    if (st == SRP_OK)
        st = vit_model_params(t->model, t->base.params);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "parameter list");
    const float b = o->bias_lr_mult, lr_mult[5] = {1.0f, b, o->gamma_lr_mult, b, b};
    srp_optim_config oc = srp_optim_config_default((srp_optim_kind)o->optimizer);
    oc.weight_decay = o->weight_decay;
    oc.wd_mode = o->optimizer == SRP_OPTIM_LARS ? SRP_WD_COUPLED : (srp_wd_mode)o->wd_mode;
    oc.momentum = o->momentum;
    oc.nesterov = o->nesterov && o->momentum > 0.0f; /* torch: Nesterov needs momentum */
    oc.lars_eta = o->lars_eta;
    return ex_trainer_create_optimizer(&t->base, &oc, lr_mult, o->gamma_lars,
                                       "--momentum, --nesterov, --wd-mode", err);
}

static srp_attention *attention_at(ex_trainer *t, size_t layer)
{
    return vit_attention_at(vt(t)->model, layer);
}

static ex_code build(ex_trainer *base, ex_error *err)
{
    vit_trainer *t = vt(base);
    vit_options *o = &t->opt;
    ex_code code = parse_report_at(t, err);
    if (code == EX_OK)
        code = load_data(t, err);
    if (code == EX_OK)
        code = check_shapes(t, err);
    if (code != EX_OK)
        return code;
    const vit_dataset *tr = &t->data.train;
    o->model.channels = tr->channels;
    o->model.classes = (size_t)tr->classes;
    o->model.max_batch = base->local_batch;
    o->model.seed = o->run.seed;
    o->model.reg = o->run.reg;
    srp_status st = vit_create(&t->model, &o->model);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the model");
    const vit_config *c = vit_get_config(t->model);
    base->linears = vit_linears(t->model);
    base->attention_at = attention_at;
    base->layers = c->depth;
    base->heads = c->heads;
    base->tokens = vit_tokens(t->model);
    base->average_decay = o->ema;
    if ((code = build_optimizer(t, err)) != EX_OK)
        return code;

    t->steps_per_epoch = tr->count / o->run.batch;
    t->total_steps = t->steps_per_epoch * o->epochs;
    t->schedule = srp_lr_schedule_default((srp_lr_kind)o->schedule, o->lr, t->total_steps);
    t->schedule.warmup_steps = o->warmup_steps;
    t->schedule.min_lr = o->min_lr;
    if (srp_lr_schedule_check(&t->schedule) != SRP_OK)
        return ex_fail(err, EX_USAGE,
                       "the schedule does not fit the run (--warmup %llu must be "
                       "below the %llu steps)",
                       (unsigned long long)o->warmup_steps, (unsigned long long)t->total_steps);
    const size_t batch = o->run.batch, image = tr->channels * tr->height * tr->width;
    t->images = malloc(sizeof(float) * batch * image);
    t->dlogits = malloc(sizeof(float) * batch * c->classes);
    t->labels = malloc(sizeof(int) * batch);
    t->flip = malloc(batch);
    t->mirror = malloc(batch);
    t->shift = malloc(sizeof(int) * 2 * batch);
    t->erase = malloc(sizeof(int) * 4 * batch);
    t->logits_sum = malloc(sizeof(float) * batch * c->classes);
    t->order = malloc(sizeof(uint64_t) * tr->count);
    if (!t->images || !t->dlogits || !t->labels || !t->flip || !t->mirror || !t->shift ||
        !t->erase || !t->logits_sum || !t->order)
        return ex_fail_status(err, SRP_ERR_NOMEM, "buffers");
    memset(t->mirror, 1, batch);
    srp_rng_seed(&t->aug_rng, o->run.seed ^ 0xa0a0a0a0ull);
    return EX_OK;
}

/* ---- checkpoints ---- */

static void model_refs(ex_trainer *t, srp_tensor_list *list)
{
    vit_model_state_refs(vt(t)->model, list);
}

static void state_refs(ex_trainer *base, srp_tensor_list *list)
{
    vit_trainer *t = vt(base);
    const size_t four = 4, count = t->data.train.count;
    srp_tensor_list_add(list, "train.aug_rng", NULL, SRP_DTYPE_U64, 1, &four, t->aug_rng.s);
    srp_tensor_list_add(list, "train.epoch", NULL, SRP_DTYPE_U64, 0, NULL, &t->epoch);
    srp_tensor_list_add(list, "train.position", NULL, SRP_DTYPE_U64, 0, NULL, &t->pos);
    srp_tensor_list_add(list, "train.order", NULL, SRP_DTYPE_U64, 1, &count, t->order);
}

/* The model's configuration, saved with every checkpoint and checked on
 * every load: the options that make the model, by their names. */
static void model_metadata(ex_trainer *t, ex_metadata *meta)
{
    const vit_config *c = vit_get_config(vt(t)->model);
    /* A file of an older build would load its stem's kernels permuted: they
     * had the same shapes, channels last, before the stem moved onto
     * srp_conv2d. Without a stem, its shapes can tell. */
    ex_metadata_init(meta, "vit-lite",
                     c->stem_layers ? "the stem's kernels became [out][in][3][3] (OIHW)" : NULL);
    ex_metadata_add(meta, "stem-layout", "oihw");
    char stem[64] = "none";
    for (size_t l = 0, used = 0; l < c->stem_layers && used < sizeof(stem); l++) {
        const int n = snprintf(stem + used, sizeof(stem) - used, "%s%zu/%zu", l ? "," : "",
                               c->stem_channels[l], c->stem_strides[l]);
        used += n > 0 ? (size_t)n : 0;
    }
    ex_metadata_add(meta, "stem", "%s", stem);
    ex_metadata_add(meta, "channels", "%zu", c->channels);
    ex_metadata_add(meta, "image-size", "%zu", c->image_size);
    ex_metadata_add(meta, "classes", "%zu", c->classes);
    ex_metadata_add(meta, "patch", "%zu", c->patch);
    ex_metadata_add(meta, "dim", "%zu", c->dim);
    ex_metadata_add(meta, "depth", "%zu", c->depth);
    ex_metadata_add(meta, "heads", "%zu", c->heads);
    ex_metadata_add(meta, "mlp-dim", "%zu", c->mlp_dim);
    ex_metadata_add(meta, "no-sn", "%d", !c->sigma_reparam);
    ex_metadata_add(meta, "layernorm", "%d", c->layernorm);
    ex_metadata_add(meta, "gamma-init", "%s", ex_gamma_init_name(c->gamma_init));
    ex_metadata_add(meta, "qkv-sigma", "%s", ex_qkv_sigma_name(c->qkv_sigma));
    ex_metadata_add(meta, "pool", "%s", c->pool == VIT_POOL_MEAN ? "mean" : "cls");
}

/* ---- evaluation ---- */

/* The logits of an eval forward of examples first .. first + n of d,
 * averaged with those of their mirrors with --tta-flip (then in
 * logits_sum); the labels into t->labels. */
static srp_status eval_logits(vit_trainer *t, const vit_dataset *d, size_t first, size_t n,
                              const float **logits)
{
    vit_gather_batch(d, NULL, first, n, NULL, t->images, t->labels);
    srp_status st = vit_forward(t->model, t->images, n, SRP_EVAL, logits);
    if (st != SRP_OK || !t->opt.tta_flip)
        return st;
    const size_t m = n * vit_get_config(t->model)->classes;
    memcpy(t->logits_sum, *logits, sizeof(float) * m);
    const vit_augment mirror = {t->mirror, NULL, NULL};
    vit_gather_batch(d, NULL, first, n, &mirror, t->images, t->labels);
    if ((st = vit_forward(t->model, t->images, n, SRP_EVAL, logits)) != SRP_OK)
        return st;
    for (size_t k = 0; k < m; k++)
        t->logits_sum[k] = 0.5f * (t->logits_sum[k] + (*logits)[k]);
    *logits = t->logits_sum;
    return SRP_OK;
}

/* One batch of an evaluation of t->scored: its loss and correct answers. */
static srp_status eval_batch(ex_trainer *base, size_t first, size_t n, double *sums)
{
    vit_trainer *t = vt(base);
    const size_t classes = vit_get_config(t->model)->classes;
    const float *logits;
    float loss;
    size_t correct;
    EX_TRY(eval_logits(t, t->scored, first, n, &logits));
    EX_TRY(srp_cross_entropy_forward(logits, t->labels, n, classes, 0.0f, &loss));
    EX_TRY(srp_accuracy_count(logits, t->labels, n, classes, &correct));
    sums[0] += (double)loss * (double)n;
    sums[1] += (double)correct;
    return SRP_OK;
}

/* Mean loss and accuracy over a dataset, in eval mode (the averaged weights
 * with --ema), the ranks taking turns at its batches. */
static ex_code evaluate(vit_trainer *t, const vit_dataset *d, float *loss, float *acc,
                        ex_error *err)
{
    double sums[2] = {0.0, 0.0};
    t->scored = d;
    const ex_code code = ex_trainer_evaluate(&t->base, d->count, eval_batch, sums, 2, err);
    *loss = (float)(sums[0] / (double)d->count);
    *acc = (float)(sums[1] / (double)d->count);
    return code;
}

/* ---- one step ---- */

/* Random erasing (Zhong et al., 2020), with probability p: a rectangle of
 * 2-40% of the image's area and aspect ratio 0.3-3.3 (log-uniform), clipped
 * to the image. rect: x, y, width, height; width 0 when none. The draws are
 * the same whether or not the image is erased, so that p does not shift the
 * other augmentations' random numbers. */
static void draw_erase_rectangle(srp_rng *rng, float p, const vit_dataset *d, int rect[4])
{
    const double u = srp_rng_uniform(rng), area = 0.02 + 0.38 * srp_rng_uniform(rng);
    const double aspect = exp(log(0.3) + (log(3.3) - log(0.3)) * srp_rng_uniform(rng));
    const double image_area = (double)d->width * (double)d->height;
    int w = (int)lround(sqrt(area * image_area / aspect));
    int h = (int)lround(sqrt(area * image_area * aspect));
    w = w < 1 ? 1 : w > (int)d->width ? (int)d->width : w;
    h = h < 1 ? 1 : h > (int)d->height ? (int)d->height : h;
    rect[0] = (int)srp_rng_below(rng, d->width - (size_t)w + 1);
    rect[1] = (int)srp_rng_below(rng, d->height - (size_t)h + 1);
    rect[2] = u < p ? w : 0;
    rect[3] = h;
}

/* This rank's share of the epoch's next batch (every rank draws the whole
 * batch's augmentation, so that the shares together are the one-process
 * batch), forward, loss, accuracy, backward. sums[0]: correct answers. */
static srp_status forward_backward(ex_trainer *base, float *loss, double *sums, const char **stage)
{
    vit_trainer *t = vt(base);
    const vit_options *o = &t->opt;
    const size_t batch = base->local_batch, classes = vit_get_config(t->model)->classes;
    const size_t share = (size_t)base->dist.rank * batch, global = o->run.batch;
    if (o->augment)
        for (size_t i = 0; i < global; i++)
            t->flip[i] = (unsigned char)srp_rng_below(&t->aug_rng, 2);
    for (size_t i = 0; i < 2 * global && o->translate; i++)
        t->shift[i] = (int)srp_rng_below(&t->aug_rng, 2 * o->translate + 1) - (int)o->translate;
    for (size_t i = 0; i < global && o->erase > 0.0f; i++)
        draw_erase_rectangle(&t->aug_rng, o->erase, &t->data.train, t->erase + 4 * i);
    const vit_augment aug = {o->augment ? t->flip + share : NULL,
                             o->translate ? t->shift + 2 * share : NULL,
                             o->erase > 0.0f ? t->erase + 4 * share : NULL};
    vit_gather_batch(&t->data.train, t->order, t->pos * global + share, batch, &aug, t->images,
                     t->labels);
    t->pos++;
    const float *logits;
    size_t correct = 0;
    srp_status st = vit_forward(t->model, t->images, batch, SRP_TRAIN, &logits);
    if (st == SRP_OK) {
        *stage = "loss";
        st = srp_cross_entropy_forward(logits, t->labels, batch, classes, o->label_smoothing, loss);
    }
    if (st == SRP_OK)
        st = srp_accuracy_count(logits, t->labels, batch, classes, &correct);
    if (st == SRP_OK) {
        *stage = "gradient";
        st = srp_cross_entropy_backward(logits, t->labels, batch, classes, o->label_smoothing,
                                        t->dlogits);
    }
    sums[0] = (double)correct;
    return st == SRP_OK ? vit_backward(t->model, t->dlogits) : st;
}

static float lr_at(ex_trainer *t, uint64_t step) { return srp_lr_at(&vt(t)->schedule, step); }

static void position(ex_trainer *t, char *buf, size_t len)
{
    snprintf(buf, len, " (epoch %llu)", (unsigned long long)vt(t)->epoch + 1);
}

static void train_fields(ex_trainer *t, ex_metrics *m, const ex_step_record *rec)
{
    ex_metrics_number(m, "epoch", (double)vt(t)->epoch);
    ex_metrics_number(m, "loss", rec->loss);
    ex_metrics_number(m, "acc", (float)(rec->sums[0] / (double)vt(t)->opt.run.batch));
}

static int progress_due(ex_trainer *t) { return vt(t)->pos == vt(t)->steps_per_epoch; }

static void progress(ex_trainer *base, const ex_step_record *rec)
{
    vit_trainer *t = vt(base);
    const double per_step = ex_trainer_seconds_per_step(base);
    char eta[32];
    ex_format_duration(per_step * (double)(t->total_steps - base->run.step), eta, sizeof(eta));
    ex_progress_print(&base->progress, base->run.step,
                      "epoch %llu/%zu step %llu/%llu | %.0f img/s | loss %.4f acc %.3f | lr %.4g "
                      "| lowest head entropy %.3f | ETA %s",
                      (unsigned long long)t->epoch + 1, t->opt.epochs,
                      (unsigned long long)base->run.step, (unsigned long long)t->total_steps,
                      (double)t->opt.run.batch / per_step, rec->loss,
                      (float)(rec->sums[0] / (double)t->opt.run.batch), rec->lr,
                      ex_trainer_lowest_entropy(base), eta);
}

/* ---- epochs ---- */

/* An evaluation line of the metrics: which set, when, loss and accuracy. */
static void write_eval_metrics(vit_trainer *t, const char *set, float loss, float acc)
{
    ex_metrics *m = &t->base.metrics;
    ex_metrics_begin(m, "eval");
    ex_metrics_string(m, "set", set);
    ex_metrics_number(m, "step", (double)t->base.run.step);
    ex_metrics_number(m, "epoch", (double)t->epoch);
    ex_metrics_number(m, "seconds", ex_run_seconds(&t->base.run));
    ex_metrics_number(m, "loss", loss);
    ex_metrics_number(m, "acc", acc);
    ex_metrics_end(m);
}

/* At an epoch's end: the accuracy on the validation split (with --val) or
 * the test set, then the next epoch's order. */
static ex_code end_epoch(vit_trainer *t, ex_error *err)
{
    const int on_val = t->data.val.count > 0;
    float loss, acc;
    const double t0 = ex_now();
    const ex_code code = evaluate(t, on_val ? &t->data.val : &t->data.test, &loss, &acc, err);
    if (code != EX_OK)
        return code;
    const double seconds = ex_run_seconds(&t->base.run);
    write_eval_metrics(t, on_val ? "val" : "test", loss, acc);
    for (size_t i = 0; i < t->nreport; i++)
        if (t->reached_at[i] < 0.0 && acc >= t->report_at[i])
            t->reached_at[i] = seconds;
    ex_progress_break(&t->base.progress);
    printf("epoch %llu: %s accuracy %.4f, %s loss %.4f (%.0f s of training, eval %.1f s)\n",
           (unsigned long long)t->epoch + 1, on_val ? "validation" : "test", acc,
           on_val ? "validation" : "test", loss, seconds, ex_now() - t0);
    t->epoch++;
    t->pos = 0;
    if (t->epoch < t->opt.epochs)
        srp_rng_permutation(&t->base.data_rng, t->order, t->data.train.count);
    return EX_OK;
}

/* Before each step: the end of an epoch whose batches are done; the end of
 * the training after the last. */
static ex_code before_step(ex_trainer *base, int *done, ex_error *err)
{
    vit_trainer *t = vt(base);
    const ex_code code = t->pos == t->steps_per_epoch ? end_epoch(t, err) : EX_OK;
    *done = t->epoch >= t->opt.epochs;
    return code;
}

/* After the last epoch: the last checkpoint; the test set, once, when the
 * epochs used --val; and the times --report-at asked for. */
static ex_code finish(ex_trainer *base, ex_error *err)
{
    vit_trainer *t = vt(base);
    ex_code code = ex_trainer_save(base, err);
    if (code == EX_OK && t->data.val.count > 0) {
        float loss, acc;
        if ((code = evaluate(t, &t->data.test, &loss, &acc, err)) != EX_OK)
            return code;
        write_eval_metrics(t, "test", loss, acc);
        printf("test accuracy %.4f, test loss %.4f (%zu images, reported only)\n", acc, loss,
               t->data.test.count);
    }
    const char *set = t->data.val.count ? "validation" : "test";
    for (size_t i = 0; code == EX_OK && i < t->nreport; i++) {
        if (t->reached_at[i] >= 0.0)
            printf("time to %.2f%% %s accuracy: %.0f s\n", 100.0 * t->report_at[i], set,
                   t->reached_at[i]);
        else
            printf("time to %.2f%% %s accuracy: not reached\n", 100.0 * t->report_at[i], set);
    }
    return code;
}

/* ---- the other jobs ---- */

/* --logits: eval logits of the whole test set, [count][classes], to a
 * safetensors file (what experiments/torch_check.py compares with PyTorch's). */
static ex_code write_logits(ex_trainer *base, ex_error *err)
{
    vit_trainer *t = vt(base);
    const vit_dataset *d = &t->data.test;
    const size_t classes = vit_get_config(t->model)->classes, batch = t->base.local_batch;
    float *all = malloc(sizeof(float) * d->count * classes);
    if (!all)
        return ex_fail(err, EX_FAILED, "out of memory for %zu logits", d->count * classes);
    /* The model evaluate() scored. */
    const ex_code code = ex_trainer_swap_in_average(&t->base, err);
    if (code != EX_OK) {
        free(all);
        return code;
    }
    srp_status st = SRP_OK;
    for (size_t first = 0; st == SRP_OK && first < d->count; first += batch) {
        const size_t n = d->count - first < batch ? d->count - first : batch;
        const float *logits;
        st = eval_logits(t, d, first, n, &logits);
        if (st == SRP_OK)
            memcpy(all + first * classes, logits, sizeof(float) * n * classes);
    }
    ex_trainer_swap_out_average(&t->base);
    if (st == SRP_OK) {
        const srp_tensor_ref ref = {"logits", SRP_DTYPE_F32, 2, {d->count, classes}, all};
        st = srp_safetensors_save(t->opt.run.logits_path, &ref, 1, NULL, 0);
    }
    free(all);
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "writing logits to %s", t->opt.run.logits_path);
    printf("wrote %s\n", t->opt.run.logits_path);
    return EX_OK;
}

/* --eval-only: the test set scored (the weight average swapped in, when
 * there is one), as the run's final evaluation. */
static ex_code score(ex_trainer *base, int average, ex_error *err)
{
    vit_trainer *t = vt(base);
    float loss, acc;
    const ex_code code = evaluate(t, &t->data.test, &loss, &acc, err);
    if (code == EX_OK)
        printf("test accuracy %.4f, test loss %.4f (%zu images, %s)\n", acc, loss,
               t->data.test.count, average ? "the weight average" : "the weights");
    return code;
}

/* The model under the official PyTorch names, or folded for inference. */
static ex_code write_model_file(ex_trainer *base, ex_official_use use, const char *path,
                                const char *weights, ex_error *err)
{
    vit_model *m = vt(base)->model;
    return use == EX_OFFICIAL_FOLDED ? vit_export_folded(m, path, weights, err)
                                     : vit_export_safetensors(m, path, weights, err);
}

static ex_code read_model_file(ex_trainer *base, const char *path, ex_error *err)
{
    return vit_import_safetensors(vt(base)->model, path, err);
}

static const ex_official_hooks k_files = {read_model_file, write_model_file, score, write_logits};

static void start_fresh(ex_trainer *t)
{
    srp_rng_permutation(&t->data_rng, vt(t)->order, vt(t)->data.train.count);
}

static void describe_model(ex_trainer *base)
{
    vit_trainer *t = vt(base);
    const vit_config *c = vit_get_config(t->model);
    char reg[128];
    printf("ViT-lite: %zu blocks, dim %zu, %zu heads, %zu tokens, %s%s%s | %s, %zu train / %zu "
           "val / %zu test | %llu steps of %zu\n",
           c->depth, c->dim, c->heads, vit_tokens(t->model),
           c->sigma_reparam ? "sigmaReparam" : "plain linears", c->layernorm ? " + LayerNorm" : "",
           ex_regularizers_text(&c->reg, reg, sizeof(reg)), vit_dataset_name(t->opt.dataset),
           t->data.train.count, t->data.val.count, t->data.test.count,
           (unsigned long long)t->total_steps, t->opt.run.batch);
}

static void cleanup(ex_trainer *base)
{
    vit_trainer *t = vt(base);
    vit_destroy(t->model);
    vit_data_free(&t->data);
    void *buffers[] = {t->images, t->dlogits, t->labels,     t->flip, t->mirror,
                       t->shift,  t->erase,   t->logits_sum, t->order};
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++)
        free(buffers[i]);
}

static const ex_trainer_hooks k_hooks = {
    .program = "vit-lite-train",
    .plot = &k_plot,
    .step_sums = 1,
    .options = &vit_options_table,
    .build = build,
    .before_training = ex_official_before_training,
    .start_fresh = start_fresh,
    .describe_model = describe_model,
    .before_step = before_step,
    .forward_backward = forward_backward,
    .lr_at = lr_at,
    .position = position,
    .train_fields = train_fields,
    .progress = progress,
    .progress_due = progress_due,
    .finish = finish,
    .after_run = ex_official_export_run,
    .model_refs = model_refs,
    .state_refs = state_refs,
    .metadata = model_metadata,
    .cleanup = cleanup,
    .files = &k_files,
};

int main(int argc, char **argv)
{
    static vit_trainer t;
    return ex_trainer_main(&t.base, &k_hooks, &t.opt, argc, argv);
}
