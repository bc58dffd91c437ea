/* vit-lite-train: trains the ViT-lite on Fashion-MNIST (or MNIST, CIFAR-10,
 * a synthetic set) with sigmaReparam, watching every attention head's
 * entropy; checkpoints and resumes exactly. `vit-lite-train --help`.
 *
 * The jobs, in the order main runs them: parse the options; or plot an
 * existing metrics file; load the data; build the model, the optimizer and
 * the buffers; then either evaluate a checkpoint, or train (fresh or
 * resumed) epoch by epoch, each step followed by the entropy watch, the
 * metrics, the progress line and the checkpoints. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam.h>

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
#include "data.h"
#include "model.h"
#include "official_names.h"
#include "vit_options.h"

/* Everything besides the model and the optimizer that a resumed run needs
 * to continue exactly: it all goes into the checkpoint. */
typedef struct {
    ex_run_state base; /* step, seconds, metrics lines, fingerprint */
    srp_rng data_rng, aug_rng;
    uint64_t epoch, pos; /* pos: batches done in this epoch */
    uint64_t *order;     /* [train count]: this epoch's example order */
} run_state;

/* One step's figures, for the metrics and the progress line. */
typedef struct {
    float loss, acc, lr, grad_norm;
} step_record;

typedef struct {
    vit_options opt;
    ex_dist dist;       /* one process, or this rank of an mpirun job */
    size_t local_batch; /* this rank's share of the batch */
    vit_data data;
    vit_model *model;
    srp_param_list *param_list;
    srp_param *params; /* param_list's entries */
    size_t nparams;
    srp_optim *optim;
    srp_lr_schedule schedule;
    run_state run;
    ex_metrics metrics;
    ex_collapse_log watch;
    ex_progress progress;
    srp_weight_average *ema;        /* with --ema */
    uint64_t steps_per_epoch, total_steps;
    /* per-step buffers */
    float *images, *dlogits;
    int *labels;
    unsigned char *flip, *mirror;          /* [batch]: this step's flips; all set (TTA) */
    int *shift;                            /* [batch][2]: this step's shifts */
    int *erase;                            /* [batch][4]: this step's erased rectangles */
    float *logits_sum;                     /* [batch][classes]: TTA's average */
    float *ent_mean, *ent_min, *ent_bound; /* [layers][heads] */
    float *bound_s, *bound_m_norm;         /* [layers][heads]: the bound's terms */
    float *bound_x_norm;                   /* [layers] */
    float report_at[8];                    /* --report-at accuracies, ascending */
    size_t nreport;
    double reached_at[8]; /* seconds when first reached; < 0: not yet */
    float *linear_values; /* [linears]: the metrics' sigma and gamma maps */
    uint64_t steps_this_run;
} trainer;

static const ex_plot_spec k_plot = {"acc", "acc", "accuracy", "train (batch)", "evaluation", 1};

static ex_code load_data(trainer *t, ex_error *err)
{
    const vit_options *o = &t->opt;
    ex_code code;
    switch (o->dataset) {
    case VIT_DATA_SYNTHETIC:
        code = vit_make_synthetic(o->synthetic_train, o->synthetic_test, o->seed ^ 0x5717, &t->data,
                                  err);
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

/* --report-at "0.9,0.92" into t->report_at (ascending). */
static ex_code parse_report_at(trainer *t, ex_error *err)
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

/* The optimizer over the model's parameters, each kind with its treatment:
 * gammas (--gamma-lr-mult, --gamma-lars); biases, embeddings and the
 * LayerNorms' scales and shifts (--bias-lr-mult): LARS leaves such vectors
 * out of its trust ratio (You et al. exclude biases and BatchNorm's), so
 * at LARS's lr of about 2 a plain step on a LayerNorm scale of 1 would be
 * far too large; weight matrices at the lr. */
static ex_code build_optimizer(trainer *t, ex_error *err)
{
    const vit_options *o = &t->opt;
    srp_status st = srp_param_list_create(&t->param_list);
    if (st == SRP_OK)
        st = vit_model_params(t->model, t->param_list);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "parameter list");
    t->params = srp_param_list_entries(t->param_list);
    t->nparams = srp_param_list_count(t->param_list);
    for (size_t i = 0; i < t->nparams; i++) {
        const srp_param_kind kind = srp_param_list_kind(t->param_list, i);
        if (kind == SRP_PARAM_GAMMA) {
            t->params[i].lr_mult = o->gamma_lr_mult;
            t->params[i].lars = o->gamma_lars;
        } else if (kind == SRP_PARAM_BIAS || kind == SRP_PARAM_EMBEDDING ||
                   kind == SRP_PARAM_NORM) {
            t->params[i].lr_mult = o->bias_lr_mult;
        }
    }
    srp_optim_config oc = srp_optim_config_default((srp_optim_kind)o->optimizer);
    oc.weight_decay = o->weight_decay;
    oc.wd_mode = o->optimizer == SRP_OPTIM_LARS ? SRP_WD_COUPLED : (srp_wd_mode)o->wd_mode;
    oc.momentum = o->momentum;
    oc.nesterov = o->nesterov && o->momentum > 0.0f; /* torch: Nesterov needs momentum */
    oc.lars_eta = o->lars_eta;
    st = srp_optim_create(&t->optim, t->params, t->nparams, &oc);
    if (st != SRP_OK)
        return ex_fail_status(err, st,
                              "creating the optimizer (check --momentum, --nesterov, --wd-mode)");
    return EX_OK;
}

/* --ema: the weight average of every parameter, each linear's sigma
 * recomputed for the averages. */
static ex_code build_average(trainer *t, ex_error *err)
{
    srp_weight_average_config ac = srp_weight_average_config_default();
    ac.decay = t->opt.ema;
    const ex_linear_names *linears = vit_linears(t->model);
    const srp_status st = srp_weight_average_create(&t->ema, t->param_list, linears->linears,
                                                    linears->count, &ac);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "creating the weight average");
}

static ex_code build(trainer *t, ex_error *err)
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
    if (tr->count < o->batch)
        return ex_fail(err, EX_USAGE, "the training set (%zu images) is smaller than a batch (%zu)",
                       tr->count, o->batch);
    ex_code code = ex_dist_split_batch(&t->dist, o->batch, &t->local_batch, err);
    if (code != EX_OK)
        return code;
    o->model.channels = tr->channels;
    o->model.classes = (size_t)tr->classes;
    o->model.max_batch = t->local_batch;
    o->model.seed = o->seed;
    srp_status st = vit_create(&t->model, &o->model);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the model");
    code = build_optimizer(t, err);
    if (code != EX_OK)
        return code;

    t->steps_per_epoch = tr->count / o->batch;
    t->total_steps = t->steps_per_epoch * o->epochs;
    t->schedule = srp_lr_schedule_default((srp_lr_kind)o->schedule, o->lr, t->total_steps);
    t->schedule.warmup_steps = o->warmup_steps;
    t->schedule.min_lr = o->min_lr;
    if (srp_lr_schedule_check(&t->schedule) != SRP_OK)
        return ex_fail(err, EX_USAGE,
                       "the schedule does not fit the run (--warmup %llu must be "
                       "below the %llu steps)",
                       (unsigned long long)o->warmup_steps, (unsigned long long)t->total_steps);

    const vit_config *c = vit_get_config(t->model);
    const size_t image = tr->channels * tr->height * tr->width, lh = c->depth * c->heads;
    const size_t nlin = vit_linears(t->model)->count;
    t->images = malloc(sizeof(float) * o->batch * image);
    t->dlogits = malloc(sizeof(float) * o->batch * c->classes);
    t->labels = malloc(sizeof(int) * o->batch);
    t->flip = malloc(o->batch);
    t->mirror = malloc(o->batch);
    t->shift = malloc(sizeof(int) * 2 * o->batch);
    t->erase = malloc(sizeof(int) * 4 * o->batch);
    t->logits_sum = malloc(sizeof(float) * o->batch * c->classes);
    t->run.order = malloc(sizeof(uint64_t) * tr->count);
    t->ent_mean = malloc(sizeof(float) * lh);
    t->ent_min = malloc(sizeof(float) * lh);
    t->ent_bound = malloc(sizeof(float) * lh);
    t->bound_s = malloc(sizeof(float) * lh);
    t->bound_m_norm = malloc(sizeof(float) * lh);
    t->bound_x_norm = malloc(sizeof(float) * c->depth);
    t->linear_values = malloc(sizeof(float) * nlin);
    if (!t->images || !t->dlogits || !t->labels || !t->flip || !t->mirror || !t->shift ||
        !t->erase || !t->logits_sum || !t->run.order || !t->ent_mean || !t->ent_min ||
        !t->ent_bound || !t->bound_s || !t->bound_m_norm || !t->bound_x_norm || !t->linear_values)
        return ex_fail_status(err, SRP_ERR_NOMEM, "buffers");
    memset(t->mirror, 1, o->batch);
    if (o->ema > 0.0f && (code = build_average(t, err)) != EX_OK)
        return code;
    srp_collapse_config cc = srp_collapse_config_default(c->depth, c->heads);
    cc.window = o->collapse_window;
    cc.fraction = o->collapse_fraction;
    cc.drop = o->collapse_drop;
    cc.uniform = (float)log((double)vit_tokens(t->model)); /* the entropies are in nats */
    return ex_collapse_log_init(&t->watch, &cc, err);
}

/* All tensors of a checkpoint: the model's first (so that a model alone
 * loads from the list's head), then the optimizer's and the run's. */
static void checkpoint_tensors(void *ctx, srp_tensor_list *list)
{
    trainer *t = ctx;
    vit_model_state_refs(t->model, list);
    srp_optim_state_refs(t->optim, list);
    run_state *rs = &t->run;
    const size_t four = 4, count = t->data.train.count;
    ex_run_tensors(&rs->base, list);
    srp_tensor_list_add(list, "train.data_rng", NULL, SRP_DTYPE_U64, 1, &four, rs->data_rng.s);
    srp_tensor_list_add(list, "train.aug_rng", NULL, SRP_DTYPE_U64, 1, &four, rs->aug_rng.s);
    srp_tensor_list_add(list, "train.epoch", NULL, SRP_DTYPE_U64, 0, NULL, &rs->epoch);
    srp_tensor_list_add(list, "train.position", NULL, SRP_DTYPE_U64, 0, NULL, &rs->pos);
    srp_tensor_list_add(list, "train.order", NULL, SRP_DTYPE_U64, 1, &count, rs->order);
    srp_collapse_state_refs(t->watch.watch, "train.collapse", list);
    if (t->ema)
        srp_weight_average_state_refs(t->ema, "train.ema", list);
}

/* The model's configuration, saved with every checkpoint and checked on
 * every load: the options that make the model, by their names. */
static void model_metadata(const trainer *t, ex_metadata *meta)
{
    const vit_config *c = vit_get_config(t->model);
    static const char *const gamma_inits[] = {"sigma0", "one"};
    static const char *const qkv_sigmas[] = {"fused", "qk-v", "separate"};
    /* A file of an older build would load its stem's kernels permuted: they
     * had the same shapes, channels last, before the stem moved onto
     * srp_conv2d. Without a stem, its shapes can tell. */
    ex_metadata_init(meta, "vit-lite",
                     c->stem_layers ? "the stem's kernels became [out][in][3][3] (OIHW)" : NULL);
    /* The stem kernels' layout: OIHW since srp_conv2d (channels last before). */
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
    ex_metadata_add(meta, "gamma-init", "%s", gamma_inits[c->gamma_init]);
    ex_metadata_add(meta, "qkv-sigma", "%s", qkv_sigmas[c->qkv_sigma]);
    ex_metadata_add(meta, "pool", "%s", c->pool == VIT_POOL_MEAN ? "mean" : "cls");
}

/* Rank 0 writes; every rank learns whether that worked. */
static ex_code save_checkpoint(trainer *t, ex_error *err)
{
    if (!t->opt.checkpoint_path)
        return EX_OK;
    ex_code code = EX_OK;
    if (ex_dist_is_root(&t->dist)) {
        ex_metadata meta;
        model_metadata(t, &meta);
        code = ex_run_save(&t->run.base, checkpoint_tensors, t, t->metrics.lines,
                           t->opt.checkpoint_path, &meta, err);
    }
    return ex_dist_agree(&t->dist, code, err);
}

static void model_tensors(void *ctx, srp_tensor_list *list)
{
    vit_model_state_refs(((trainer *)ctx)->model, list);
}

/* Loads a checkpoint into the model (model_only) or the whole run. */
static ex_code load_checkpoint(trainer *t, const char *path, int model_only, ex_error *err)
{
    ex_metadata meta;
    model_metadata(t, &meta);
    return ex_run_load(&t->run.base, model_only ? model_tensors : checkpoint_tensors, t, path,
                       model_only, &meta, err);
}

/* --eval-only: the weight average of a training checkpoint, when it has
 * one and --ema is on, so that the model evaluated is the one the run
 * reported; *found says whether it had. The model came out of the same
 * file already, so a name missing is the only format error left. */
static ex_code load_average(trainer *t, const char *path, int *found, ex_error *err)
{
    *found = 0;
    if (!t->ema)
        return EX_OK;
    srp_tensor_list *list = NULL;
    srp_status st = srp_tensor_list_create(&list);
    if (st == SRP_OK)
        st = srp_weight_average_state_refs(t->ema, "train.ema", list);
    if (st == SRP_OK)
        st = srp_checkpoint_load(path, srp_tensor_list_refs(list), srp_tensor_list_count(list));
    srp_tensor_list_destroy(list);
    if (st == SRP_ERR_NOT_FOUND) { /* written with --ema 0 */
        srp_clear_last_error();
        return EX_OK;
    }
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "loading the weight average from %s", path);
    *found = 1;
    return EX_OK;
}

/* The logits of an eval forward of examples first .. first + n of d,
 * averaged with those of their mirrors with --tta-flip (then in
 * logits_sum); the labels into t->labels. */
static srp_status eval_logits(trainer *t, const vit_dataset *d, size_t first, size_t n,
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

/* The model evaluation scores: with --ema, the weight average (once it has
 * had an update) in place of the weights until average_out. */
static ex_code average_in(trainer *t, ex_error *err)
{
    const srp_status st = t->ema ? srp_weight_average_swap_in(t->ema) : SRP_OK;
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "sigma of the averaged weights");
}

static void average_out(trainer *t)
{
    if (t->ema)
        srp_weight_average_swap_out(t->ema); /* swapped in, or nothing to do: cannot fail */
}

/* Mean loss and accuracy over a dataset, in eval mode (the averaged weights
 * with --ema). The ranks take turns at its batches (of each one's share). */
static ex_code evaluate(trainer *t, const vit_dataset *d, float *loss, float *acc, ex_error *err)
{
    const size_t batch = t->local_batch, classes = vit_get_config(t->model)->classes;
    const size_t ranks = (size_t)t->dist.size;
    double loss_sum = 0.0;
    size_t correct = 0;
    ex_code code = average_in(t, err);
    for (size_t first = (size_t)t->dist.rank * batch; first < d->count && code == EX_OK;
         first += ranks * batch) {
        const size_t n = d->count - first < batch ? d->count - first : batch;
        const float *logits;
        srp_status st = eval_logits(t, d, first, n, &logits);
        if (st == SRP_OK && ex_test_fail_due(t->dist.rank, t->run.base.step, "eval")) {
            code = ex_test_fail(err, t->run.base.step, "eval");
            break;
        }
        float l = 0.0f;
        size_t c = 0;
        if (st == SRP_OK)
            st = srp_cross_entropy_forward(logits, t->labels, n, classes, 0.0f, &l);
        if (st == SRP_OK)
            st = srp_accuracy_count(logits, t->labels, n, classes, &c);
        if (st == SRP_ERR_NUMERIC) { /* a diverged model: say so, do not stop */
            l = INFINITY;
            c = 0;
            st = SRP_OK;
        }
        if (st != SRP_OK)
            code = ex_fail_status(err, st, "evaluation");
        loss_sum += (double)l * (double)n;
        correct += c;
    }
    average_out(t);
    code = ex_dist_agree(&t->dist, code, err);
    double sums[2] = {loss_sum, (double)correct};
    srp_status st = SRP_OK;
    if (code == EX_OK && (st = ex_dist_sum(&t->dist, sums, 2)) != SRP_OK)
        code = ex_fail_status(err, st, "summing the evaluation over the ranks");
    *loss = (float)(sums[0] / (double)d->count);
    *acc = (float)(sums[1] / (double)d->count);
    return code;
}

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

/* One optimization step on the next batch of the epoch's order: this
 * rank's share of it (all of it in one process), its gradients averaged
 * with the other ranks'. Every rank draws the whole batch's augmentation,
 * so that the shares together are the one-process batch. */
static ex_code train_step(trainer *t, step_record *rec, ex_error *err)
{
    const vit_options *o = &t->opt;
    const size_t batch = t->local_batch, classes = vit_get_config(t->model)->classes;
    const size_t share = (size_t)t->dist.rank * batch;
    if (o->augment)
        for (size_t i = 0; i < o->batch; i++)
            t->flip[i] = (unsigned char)srp_rng_below(&t->run.aug_rng, 2);
    for (size_t i = 0; i < 2 * o->batch && o->translate; i++)
        t->shift[i] = (int)srp_rng_below(&t->run.aug_rng, 2 * o->translate + 1) - (int)o->translate;
    for (size_t i = 0; i < o->batch && o->erase > 0.0f; i++)
        draw_erase_rectangle(&t->run.aug_rng, o->erase, &t->data.train, t->erase + 4 * i);
    const vit_augment aug = {o->augment ? t->flip + share : NULL,
                             o->translate ? t->shift + 2 * share : NULL,
                             o->erase > 0.0f ? t->erase + 4 * share : NULL};
    vit_gather_batch(&t->data.train, t->run.order, t->run.pos * o->batch + share, batch, &aug,
                     t->images, t->labels);
    const float *logits;
    float loss = NAN, norm = NAN;
    size_t correct = 0;
    const char *stage = "activations"; /* the part of the step under way, for its error */
    srp_status st = vit_forward(t->model, t->images, batch, SRP_TRAIN, &logits);
    if (st == SRP_OK) {
        stage = "loss";
        st =
            srp_cross_entropy_forward(logits, t->labels, batch, classes, o->label_smoothing, &loss);
    }
    if (st == SRP_OK)
        st = srp_accuracy_count(logits, t->labels, batch, classes, &correct);
    if (st == SRP_OK) {
        stage = "gradient";
        st = srp_cross_entropy_backward(logits, t->labels, batch, classes, o->label_smoothing,
                                        t->dlogits);
    }
    if (st == SRP_OK)
        st = vit_backward(t->model, t->dlogits);
    st = ex_dist_average_gradients(&t->dist, st); /* every rank, failed or not */
    if (st == SRP_OK)
        st = srp_optim_clip_grad_norm(t->optim, o->clip > 0.0f ? o->clip : FLT_MAX, &norm);
    const float lr = srp_lr_at(&t->schedule, t->run.base.step);
    if (st == SRP_OK) {
        stage = "weights";
        st = srp_optim_step(t->optim, lr);
    }
    const int injected =
        st == SRP_OK && ex_test_fail_due(t->dist.rank, t->run.base.step + 1, "step");
    if (injected)
        st = SRP_ERR_UNSUPPORTED;
    /* The batch's figures over the ranks, and whether every rank got
     * through its optimizer step: a rank that failed alone there must not
     * leave the others waiting in the next collective call. */
    double sums[2] = {loss, (double)correct};
    st = ex_dist_sum_agree(&t->dist, sums, 2, st);
    if (st == SRP_OK)
        st = ex_dist_sync_spectral(&t->dist);
    if (injected)
        return ex_test_fail(err, t->run.base.step + 1, "step");
    if (st == SRP_ERR_PEER)
        return ex_fail(err, EX_FAILED,
                       "step %llu failed on another rank (its message says why); every rank stops",
                       (unsigned long long)t->run.base.step + 1);
    if (st == SRP_ERR_NUMERIC) {
        ex_fail(err, EX_NONFINITE,
                "the %s became non-finite at step %llu (epoch %llu); training stopped.%s%s", stage,
                (unsigned long long)t->run.base.step, (unsigned long long)t->run.epoch,
                o->checkpoint_path ? " The last good checkpoint is " : "",
                o->checkpoint_path ? o->checkpoint_path : "");
        ex_append_detail(err, st);
        return EX_NONFINITE;
    }
    if (st != SRP_OK)
        return ex_fail_status(err, st, "training step");
    srp_optim_zero_grad(t->optim); /* every trainable tensor is in its list */
    if (t->ema && (st = srp_weight_average_update(t->ema)) != SRP_OK)
        return ex_fail_status(err, st, "the weight average");
    rec->loss = (float)(sums[0] / (double)t->dist.size);
    rec->acc = (float)(sums[1] / (double)o->batch);
    rec->lr = lr;
    rec->grad_norm = norm;
    return EX_OK;
}

/* Per-head entropy of the last forward, and with_bound the bound too, of
 * the whole global batch: every rank reads its share's, they agree that
 * every rank could, then the figures are reduced over the ranks. */
static ex_code collect_entropy(trainer *t, int with_bound, ex_error *err)
{
    const vit_config *c = vit_get_config(t->model);
    const size_t lh = c->depth * c->heads;
    srp_status st = SRP_OK;
    for (size_t l = 0; l < c->depth && st == SRP_OK; l++) {
        srp_attention *a = vit_attention_at(t->model, l);
        st = srp_attention_entropy(a, t->ent_mean + l * c->heads, t->ent_min + l * c->heads);
        if (st == SRP_OK && with_bound)
            st = srp_attention_entropy_bound_terms(a, t->ent_bound + l * c->heads,
                                                   t->bound_s + l * c->heads,
                                                   t->bound_m_norm + l * c->heads,
                                                   t->bound_x_norm + l);
    }
    const ex_code code =
        ex_dist_agree_status(&t->dist, st, "attention entropy", "entropy", t->run.base.step, err);
    if (code != EX_OK)
        return code;
    /* Means averaged over the ranks' equal shares; minimums the least of
     * the ranks'. The bound is the least of the ranks' bounds: each rank's
     * bounds every row of its share (attention.h), so the least bounds
     * every row of the batch, and so the minimum logged beside it. Its
     * terms, s and the norms, are the largest of the ranks': the bound at
     * the largest s is the least. */
    st = ex_dist_mean_min(&t->dist, t->ent_mean, t->ent_min, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_mean_min(&t->dist, NULL, t->ent_bound, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_max(&t->dist, t->bound_s, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_max(&t->dist, t->bound_m_norm, lh);
    if (st == SRP_OK && with_bound)
        st = ex_dist_max(&t->dist, t->bound_x_norm, c->depth);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "attention entropy over the ranks");
}

static void write_train_metrics(trainer *t, const step_record *rec, int with_bound)
{
    const vit_config *c = vit_get_config(t->model);
    ex_metrics *m = &t->metrics;
    ex_metrics_begin(m, "train");
    ex_metrics_number(m, "step", (double)t->run.base.step);
    ex_metrics_number(m, "epoch", (double)t->run.epoch);
    ex_metrics_number(m, "loss", rec->loss);
    ex_metrics_number(m, "acc", rec->acc);
    ex_metrics_number(m, "lr", rec->lr);
    ex_metrics_number(m, "grad_norm", rec->grad_norm);
    ex_metrics_matrix(m, "entropy_mean", t->ent_mean, c->depth, c->heads);
    ex_metrics_matrix(m, "entropy_min", t->ent_min, c->depth, c->heads);
    if (with_bound) {
        ex_metrics_matrix(m, "entropy_bound", t->ent_bound, c->depth, c->heads);
        ex_metrics_matrix(m, "entropy_bound_s", t->bound_s, c->depth, c->heads);
        ex_metrics_matrix(m, "entropy_bound_m_norm", t->bound_m_norm, c->depth, c->heads);
        ex_metrics_vector(m, "entropy_bound_x_gram_norm", t->bound_x_norm, c->depth);
    }
    const size_t nlin = vit_linears(t->model)->count;
    for (int which = 0; which < 2; which++) {
        for (size_t i = 0; i < nlin; i++) {
            srp_linear *l = vit_linears(t->model)->linears[i];
            t->linear_values[i] = which == 0 ? srp_linear_sigma(l) : *srp_linear_gamma(l);
        }
        ex_metrics_named(m, which == 0 ? "sigma" : "gamma", vit_linears(t->model)->names,
                         t->linear_values, nlin);
    }
    ex_metrics_end(m);
}

static void print_progress(trainer *t, const step_record *rec)
{
    const size_t lh = vit_get_config(t->model)->depth * vit_get_config(t->model)->heads;
    float lowest = INFINITY;
    for (size_t i = 0; i < lh; i++)
        lowest = fminf(lowest, t->ent_mean[i]);
    const double per_step = (ex_now() - t->run.base.started) / (double)t->steps_this_run;
    char eta[32];
    ex_format_duration(per_step * (double)(t->total_steps - t->run.base.step), eta, sizeof(eta));
    ex_progress_print(&t->progress, t->run.base.step,
                      "epoch %llu/%zu step %llu/%llu | %.0f img/s | loss %.4f acc %.3f | lr %.4g "
                      "| lowest head entropy %.3f | ETA %s",
                      (unsigned long long)t->run.epoch + 1, t->opt.epochs,
                      (unsigned long long)t->run.base.step, (unsigned long long)t->total_steps,
                      (double)t->opt.batch / per_step, rec->loss, rec->acc, rec->lr, lowest, eta);
}

/* After each step: entropies and the collapse watch, metrics, the
 * progress line, the periodic checkpoint. */
static ex_code after_step(trainer *t, const step_record *rec, ex_error *err)
{
    const vit_options *o = &t->opt;
    const int log_now = t->run.base.step % o->log_every == 0;
    const int bound_now = o->bound_every && t->run.base.step % o->bound_every == 0;
    ex_code code = collect_entropy(t, bound_now, err);
    if (code != EX_OK)
        return code;
    size_t warnings = 0;
    if ((code = ex_collapse_log_update(&t->watch, t->run.base.step, t->ent_mean,
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
    if (o->check_replicas && t->run.base.step % o->check_replicas == 0 &&
        (code = ex_dist_check_replicas(&t->dist, t->run.base.step, err)) != EX_OK)
        return code;
    if (log_now || bound_now)
        write_train_metrics(t, rec, bound_now);
    if (ex_progress_due(&t->progress, t->run.base.step) || t->run.pos == t->steps_per_epoch)
        print_progress(t, rec);
    return t->run.base.step % o->checkpoint_every == 0 ? save_checkpoint(t, err) : EX_OK;
}

/* An evaluation line of the metrics: which set, when, loss and accuracy. */
static void write_eval_metrics(trainer *t, const char *set, float loss, float acc)
{
    ex_metrics_begin(&t->metrics, "eval");
    ex_metrics_string(&t->metrics, "set", set);
    ex_metrics_number(&t->metrics, "step", (double)t->run.base.step);
    ex_metrics_number(&t->metrics, "epoch", (double)t->run.epoch);
    ex_metrics_number(&t->metrics, "seconds", ex_run_seconds(&t->run.base));
    ex_metrics_number(&t->metrics, "loss", loss);
    ex_metrics_number(&t->metrics, "acc", acc);
    ex_metrics_end(&t->metrics);
}

/* At an epoch's end: the accuracy on the validation split (with --val) or
 * the test set, then the next epoch's order. */
static ex_code end_epoch(trainer *t, ex_error *err)
{
    const int on_val = t->data.val.count > 0;
    float loss, acc;
    const double t0 = ex_now();
    const ex_code code = evaluate(t, on_val ? &t->data.val : &t->data.test, &loss, &acc, err);
    if (code != EX_OK)
        return code;
    const double seconds = ex_run_seconds(&t->run.base);
    write_eval_metrics(t, on_val ? "val" : "test", loss, acc);
    for (size_t i = 0; i < t->nreport; i++)
        if (t->reached_at[i] < 0.0 && acc >= t->report_at[i])
            t->reached_at[i] = seconds;
    ex_progress_break(&t->progress);
    printf("epoch %llu: %s accuracy %.4f, %s loss %.4f (%.0f s of training, eval %.1f s)\n",
           (unsigned long long)t->run.epoch + 1, on_val ? "validation" : "test", acc,
           on_val ? "validation" : "test", loss, seconds, ex_now() - t0);
    t->run.epoch++;
    t->run.pos = 0;
    if (t->run.epoch < t->opt.epochs)
        srp_rng_permutation(&t->run.data_rng, t->run.order, t->data.train.count);
    return EX_OK;
}

/* After the last epoch: the test set, once, when the epochs used --val;
 * and the times --report-at asked for. */
static ex_code final_report(trainer *t, ex_error *err)
{
    if (t->data.val.count > 0) {
        float loss, acc;
        const ex_code code = evaluate(t, &t->data.test, &loss, &acc, err);
        if (code != EX_OK)
            return code;
        write_eval_metrics(t, "test", loss, acc);
        printf("test accuracy %.4f, test loss %.4f (%zu images, reported only)\n", acc, loss,
               t->data.test.count);
    }
    for (size_t i = 0; i < t->nreport; i++) {
        if (t->reached_at[i] >= 0.0)
            printf("time to %.2f%% %s accuracy: %.0f s\n", 100.0 * t->report_at[i],
                   t->data.val.count ? "validation" : "test", t->reached_at[i]);
        else
            printf("time to %.2f%% %s accuracy: not reached\n", 100.0 * t->report_at[i],
                   t->data.val.count ? "validation" : "test");
    }
    return EX_OK;
}

static ex_code train(trainer *t, ex_error *err)
{
    const vit_options *o = &t->opt;
    t->run.base.started = ex_now();
    ex_progress_start(&t->progress);
    t->progress.last_step = t->run.base.step;
    srp_profile_enable(o->profile);
    while (t->run.epoch < o->epochs) {
        while (t->run.pos < t->steps_per_epoch) {
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
            step_record rec = {NAN, NAN, NAN, NAN};
            ex_code code = train_step(t, &rec, err);
            if (code != EX_OK)
                return code;
            t->run.base.step++;
            t->run.pos++;
            t->steps_this_run++;
            if ((code = after_step(t, &rec, err)) != EX_OK)
                return code;
        }
        const ex_code code = end_epoch(t, err);
        if (code != EX_OK)
            return code;
    }
    const ex_code code = save_checkpoint(t, err);
    return code == EX_OK ? final_report(t, err) : code;
}

/* --logits: eval logits of the whole test set, [count][classes], to a
 * safetensors file (what scripts/torch_check.py compares with PyTorch's). */
static ex_code write_logits(trainer *t, ex_error *err)
{
    const vit_dataset *d = &t->data.test;
    const size_t classes = vit_get_config(t->model)->classes, batch = t->local_batch;
    float *all = malloc(sizeof(float) * d->count * classes);
    if (!all)
        return ex_fail(err, EX_FAILED, "out of memory for %zu logits", d->count * classes);
    const ex_code code = average_in(t, err); /* the model evaluate() scored */
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
    average_out(t);
    if (st == SRP_OK) {
        const srp_tensor_ref ref = {"logits", SRP_DTYPE_F32, 2, {d->count, classes}, all};
        st = srp_safetensors_save(t->opt.logits_path, &ref, 1, NULL, 0);
    }
    free(all);
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "writing logits to %s", t->opt.logits_path);
    printf("wrote %s\n", t->opt.logits_path);
    return EX_OK;
}

/* --export: the model (the live weights, not an --ema average), under the
 * official PyTorch names. */
static ex_code export_model(trainer *t, ex_error *err)
{
    if (!t->opt.export_path || !ex_dist_is_root(&t->dist))
        return EX_OK;
    const ex_code code = vit_export_safetensors(t->model, t->opt.export_path, err);
    if (code == EX_OK)
        printf("wrote %s\n", t->opt.export_path);
    return code;
}

/* The jobs of a run after the options: see the top of this file. */
static ex_code run(trainer *t, ex_error *err)
{
    vit_options *o = &t->opt;
    if (o->plot_only) {
        if (!ex_dist_is_root(&t->dist))
            return EX_OK;
        const ex_code code = ex_plot(o->plot_only, o->plot_path, &k_plot, err);
        if (code == EX_OK)
            printf("wrote %s\n", o->plot_path);
        return code;
    }
    srp_set_num_threads((int)o->threads);
    printf("vit-lite-train: libsigmareparam %s, GEMM backend %s, OpenBLAS kernels %s, %d threads\n",
           srp_version_string(), srp_gemm_backend(), srp_openblas_core(), srp_get_num_threads());
    ex_code code = parse_report_at(t, err);
    if (code == EX_OK)
        code = load_data(t, err);
    if (code == EX_OK)
        code = build(t, err);
    if ((code = ex_dist_agree(&t->dist, code, err)) != EX_OK)
        return code;
    vit_options_fingerprint(o, t->run.base.fingerprint, sizeof(t->run.base.fingerprint));
    t->run.base.ranks = (uint64_t)t->dist.size;
    if ((code = ex_dist_same_options(&t->dist, t->run.base.fingerprint, err)) != EX_OK ||
        (code = ex_dist_attach(&t->dist, t->params, t->nparams, vit_linears(t->model)->linears,
                               vit_linears(t->model)->count, err)) != EX_OK)
        return code;
    ex_dist_describe(&t->dist, stdout);
    srp_rng_seed(&t->run.data_rng, o->seed ^ 0xda7a5eedull);
    srp_rng_seed(&t->run.aug_rng, o->seed ^ 0xa0a0a0a0ull);

    if (o->init_from) {
        if ((code = ex_dist_agree(&t->dist, vit_import_safetensors(t->model, o->init_from, err),
                                  err)) != EX_OK)
            return code;
        printf("model from %s\n", o->init_from);
    }
    if (o->eval_only) {
        float loss, acc;
        int average = 0;
        if (o->resume_path)
            code = ex_dist_agree(&t->dist, load_checkpoint(t, o->resume_path, 1, err), err);
        if (code == EX_OK && o->resume_path)
            code = ex_dist_agree(&t->dist, load_average(t, o->resume_path, &average, err), err);
        if (code == EX_OK)
            code = evaluate(t, &t->data.test, &loss, &acc, err);
        if (code == EX_OK)
            printf("test accuracy %.4f, test loss %.4f (%zu images, %s)\n", acc, loss,
                   t->data.test.count, average ? "the weight average" : "the weights");
        if (code == EX_OK && o->logits_path && ex_dist_is_root(&t->dist))
            code = write_logits(t, err);
        return code == EX_OK ? export_model(t, err) : code;
    }
    if (o->resume_path) {
        if ((code = ex_dist_agree(&t->dist, load_checkpoint(t, o->resume_path, 0, err), err)) !=
            EX_OK)
            return code;
        printf("resumed from %s at step %llu (epoch %llu)\n", o->resume_path,
               (unsigned long long)t->run.base.step, (unsigned long long)t->run.epoch + 1);
    } else {
        srp_rng_permutation(&t->run.data_rng, t->run.order, t->data.train.count);
    }
    code = ex_metrics_open(&t->metrics, ex_dist_is_root(&t->dist) ? o->metrics_path : NULL,
                           o->resume_path ? t->run.base.metrics_lines : 0, err);
    if ((code = ex_dist_agree(&t->dist, code, err)) != EX_OK)
        return code;
    const vit_config *c = vit_get_config(t->model);
    if (!o->resume_path) {
        ex_metrics_begin(&t->metrics, "header");
        ex_metrics_number(&t->metrics, "layers", (double)c->depth);
        ex_metrics_number(&t->metrics, "heads", (double)c->heads);
        ex_metrics_number(&t->metrics, "tokens", (double)vit_tokens(t->model));
        ex_metrics_number(&t->metrics, "log_tokens", log((double)vit_tokens(t->model)));
        ex_metrics_string(&t->metrics, "config", t->run.base.fingerprint);
        ex_metrics_end(&t->metrics);
    }
    printf("ViT-lite: %zu blocks, dim %zu, %zu heads, %zu tokens, %s%s | %s, %zu train / %zu val "
           "/ %zu test | %llu steps of %zu\n",
           c->depth, c->dim, c->heads, vit_tokens(t->model),
           c->sigma_reparam ? "sigmaReparam" : "plain linears", c->layernorm ? " + LayerNorm" : "",
           vit_dataset_name(o->dataset), t->data.train.count, t->data.val.count, t->data.test.count,
           (unsigned long long)t->total_steps, o->batch);
    if ((code = train(t, err)) != EX_OK || (code = export_model(t, err)) != EX_OK)
        return code;
    if (o->profile)
        ex_print_profile(stdout, ex_now() - t->run.base.started, t->steps_this_run,
                         "the trainer's own work");
    ex_dist_report(&t->dist, ex_now() - t->run.base.started, stdout);
    return ex_dist_is_root(&t->dist)
               ? ex_plot_at_end(&t->metrics, o->metrics_path, o->plot_path, &k_plot, err)
               : EX_OK;
}

static void cleanup(trainer *t)
{
    ex_metrics_close(&t->metrics);
    ex_collapse_log_free(&t->watch);
    srp_optim_destroy(t->optim);
    vit_destroy(t->model);
    vit_data_free(&t->data);
    srp_param_list_destroy(t->param_list);
    free(t->images);
    free(t->dlogits);
    free(t->labels);
    free(t->flip);
    free(t->mirror);
    free(t->shift);
    free(t->erase);
    free(t->logits_sum);
    free(t->run.order);
    srp_weight_average_destroy(t->ema);
    free(t->ent_mean);
    free(t->ent_min);
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
    vit_options_default(&t.opt);
    if (code == EX_OK)
        code = ex_dist_agree(&t.dist, vit_options_parse(&t.opt, argc, argv, &err), &err);
    if (code == EX_USAGE) {
        fprintf(stderr, "%s: %s\n\n", argv[0], err.message);
        if (ex_dist_is_root(&t.dist))
            vit_options_usage(argv[0], stderr);
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
